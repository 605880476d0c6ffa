//! The language of the pages: `ui_locales` of the authorization request first, then
//! the user's preference (the `locale` profile claim), then the browser's
//! `Accept-Language`, then the tenant's `defaultLocale`; English when none names a
//! language the server has. Catalogues added from `ui.locales_dir` count like the
//! shipped ones, and right-to-left languages get `dir="rtl"`.

use crate::authorize_flow::{CB, PASSWORD, authorize_url};
use crate::harness::browser::{Browser, Page, create_user, decode_entities, fast};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    the_browser_language_and_the_tenant_default_choose_the_pages_language,
    ui_locales_holds_for_the_whole_sign_in_and_beats_the_browser,
    the_users_preference_beats_the_browser_after_the_password,
    an_added_right_to_left_catalogue_is_offered_and_marked_rtl,
);

/// A database whose tenant `main` has `settings`, user alice, client `app`, and a
/// server started with `env`.
async fn setup(backend: Backend, settings: &str, env: &[(&str, &str)]) -> (TestDb, Server) {
    let db = TestDb::migrated(backend).await;
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    settings: {settings}\n",
            db.issuer("")
        ),
    );
    create_user(&db, "alice", PASSWORD).await;
    db.cli()
        .args(["clients", "create", "--id", "app", "--redirect-uri", CB])
        .run()
        .await
        .assert_success();
    let mut cli = fast(db.cli());
    for (k, v) in env {
        cli = cli.env(k, *v);
    }
    let server = cli.serve_in_process(db.port).await;
    (db, server)
}

/// The page's `<html lang dir>` and its `<h1>`.
fn language_of(page: &Page) -> (String, String, String) {
    let body = decode_entities(&page.body);
    let html = body
        .split("<html")
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap_or_else(|| panic!("no <html>: {body}"))
        .to_owned();
    let attr = |name: &str| {
        html.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    let h1 = body
        .split("<h1>")
        .nth(1)
        .and_then(|s| s.split("</h1>").next())
        .unwrap_or_default()
        .to_owned();
    (attr("lang"), attr("dir"), h1)
}

async fn the_browser_language_and_the_tenant_default_choose_the_pages_language(backend: Backend) {
    let (db, server) = setup(backend, "{}", &[]).await;
    let login = db.issuer("/login");
    let page = Browser::new().get(&login).await;
    page.assert_status(200);
    assert_eq!(
        language_of(&page),
        ("en".into(), "ltr".into(), "Sign in".into())
    );
    let german = Browser::new().speaking("fr-CA, de-AT;q=0.8, en;q=0.5");
    let page = german.get(&login).await;
    assert_eq!(
        language_of(&page),
        ("de".into(), "ltr".into(), "Anmelden".into())
    );
    assert!(page.body.contains("Benutzername"), "{}", page.body);
    assert!(
        page.header("content-security-policy").is_some(),
        "a translated page keeps its headers"
    );
    // A failed sign-in says so in the page's language.
    let failed = german
        .submit(&page, &[("username", "alice"), ("password", "wrong")])
        .await;
    failed.assert_status(200);
    assert!(
        decode_entities(&failed.body).contains("Benutzername oder Passwort ist falsch."),
        "{}",
        failed.body
    );
    // Error pages rendered for a failed request are translated too.
    let stale = german
        .get(&db.issuer("/authorize/continue?request=nope"))
        .await;
    stale.assert_status(400);
    assert_eq!(language_of(&stale).0, "de");
    assert!(
        decode_entities(&stale.body).contains("Diese Anmeldeanfrage ist abgelaufen"),
        "{}",
        stale.body
    );
    let forged = german.post(&login, &[("username", "alice")]).await;
    forged.assert_status(403);
    assert!(
        decode_entities(&forged.body).contains("Dieses Formular ist abgelaufen"),
        "{}",
        forged.body
    );
    // Nonsense and an oversized header are no error: English.
    let junk = Browser::new().speaking(&"x-!!;q=banana, ".repeat(2000));
    let page = junk.get(&login).await;
    page.assert_status(200);
    assert_eq!(language_of(&page).0, "en");
    drop(server);

    // The tenant's default applies when the browser names nothing we have.
    let (db, _server) = setup(backend, r#"{"defaultLocale": "de"}"#, &[]).await;
    let login = db.issuer("/login");
    assert_eq!(language_of(&Browser::new().get(&login).await).0, "de");
    assert_eq!(
        language_of(&Browser::new().speaking("ja, fr").get(&login).await).0,
        "de"
    );
    assert_eq!(
        language_of(&Browser::new().speaking("en-GB").get(&login).await).0,
        "en",
        "the browser's language beats the tenant's default"
    );
    let discovery = crate::harness::discovery(&db.issuer("")).await;
    assert_eq!(
        discovery["ui_locales_supported"],
        serde_json::json!(["en", "de"])
    );
}

async fn ui_locales_holds_for_the_whole_sign_in_and_beats_the_browser(backend: Backend) {
    let (db, _server) = setup(backend, "{}", &[]).await;
    let b = Browser::new().speaking("en-US,en;q=0.9");
    let start = b
        .get(&authorize_url(&db, "app", &[("ui_locales", "fr-FR de")]))
        .await;
    let login = b.follow(&start).await;
    login.assert_status(200);
    assert_eq!(
        language_of(&login),
        ("de".into(), "ltr".into(), "Anmelden".into())
    );
    let mut consent = b
        .submit(&login, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    while consent.status == 303 {
        consent = b.follow(&consent).await;
    }
    consent.assert_status(200);
    assert_eq!(language_of(&consent).2, "Zugriff erlauben?");
    assert!(
        decode_entities(&consent.body).contains("Ihre E-Mail-Adresse sehen"),
        "{}",
        consent.body
    );
    let code = b.submit(&consent, &[("decision", "allow")]).await;
    assert!(
        code.location().is_some_and(|l| l.starts_with(CB)),
        "{} {}",
        code.status,
        code.body
    );

    // A later request without ui_locales is in the browser's language again.
    let again = b
        .get(&authorize_url(&db, "app", &[("prompt", "login")]))
        .await;
    let login = b.follow(&again).await;
    assert_eq!(language_of(&login).0, "en");
}

async fn the_users_preference_beats_the_browser_after_the_password(backend: Backend) {
    let (db, _server) = setup(backend, "{}", &[]).await;
    db.execute(r#"UPDATE users SET profile = '{"locale": "de"}' WHERE username = 'alice'"#)
        .await;
    let b = Browser::new().speaking("en");
    let start = b.get(&authorize_url(&db, "app", &[])).await;
    let login = b.follow(&start).await;
    assert_eq!(language_of(&login).0, "en", "nobody is known yet");
    let mut page = b
        .submit(&login, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    while page.status == 303 {
        page = b.follow(&page).await;
    }
    page.assert_status(200);
    assert_eq!(language_of(&page).2, "Zugriff erlauben?");
    // An authorization request's ui_locales still comes first.
    let b2 = b.speaking("de");
    let start = b2
        .get(&authorize_url(&db, "app", &[("ui_locales", "en")]))
        .await;
    let mut page = b2.follow(&start).await;
    while page.status == 303 {
        page = b2.follow(&page).await;
    }
    assert_eq!(language_of(&page).0, "en", "{}", page.body);
}

async fn an_added_right_to_left_catalogue_is_offered_and_marked_rtl(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ar.ftl"),
        "login-title = تسجيل الدخول\nlogin-username = اسم المستخدم\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("de.ftl"), "login-title = Einloggen\n").unwrap();
    let locales = dir.path().display().to_string();
    let (db, _server) = setup(backend, "{}", &[("GATEHOUSE_UI_LOCALES_DIR", &locales)]).await;
    let page = Browser::new()
        .speaking("ar")
        .get(&db.issuer("/login"))
        .await;
    page.assert_status(200);
    let (lang, dir_attr, h1) = language_of(&page);
    assert_eq!((lang.as_str(), dir_attr.as_str()), ("ar", "rtl"));
    assert_eq!(h1, "تسجيل الدخول");
    assert!(page.body.contains("اسم المستخدم"), "{}", page.body);
    // What the new catalogue lacks comes from English, never as a raw id.
    assert!(page.body.contains(">Password<"), "{}", page.body);
    // The override changed one German message and kept the others.
    let de = Browser::new()
        .speaking("de")
        .get(&db.issuer("/login"))
        .await;
    assert_eq!(language_of(&de).2, "Einloggen");
    assert!(de.body.contains("Benutzername"), "{}", de.body);
    let discovery = crate::harness::discovery(&db.issuer("")).await;
    assert_eq!(
        discovery["ui_locales_supported"],
        serde_json::json!(["en", "de", "ar"])
    );
}
