//! Languages on the account pages and in the e-mail flows: the browser's
//! `Accept-Language`, a user's preference (the `locale` claim, chosen on the profile
//! page) that wins over it once the user signs in, the tenant's `defaultLocale`, and
//! English when nothing asks for another language. Mails go out in the recipient's
//! language (their preference, else the page's, else the tenant's), with
//! `Content-Language`.

use base64::Engine as _;
use testkit::smtp::{Received, SmtpSink};

use crate::harness::browser::{Browser, Page, create_user, fast};
use crate::harness::{Backend, Server, TestDb, free_port};

on_both_backends!(
    the_account_pages_follow_the_browsers_language,
    a_users_preference_wins_over_the_browser_after_sign_in,
    the_preference_is_chosen_on_the_profile_page_and_a_bogus_one_changes_nothing,
    a_reset_mail_is_in_the_recipients_language,
    a_mail_without_a_preference_follows_the_tenant_default,
);

const PASSWORD: &str = "correct horse battery staple";

/// The account pages, each with a heading only its German version has.
const GERMAN_PAGES: &[(&str, &str)] = &[
    ("/account", "<h1>Ihr Konto</h1>"),
    ("/account/profile", "<h1>Profil</h1>"),
    ("/account/password", "<h1>Passwort ändern</h1>"),
    ("/account/security", "Authenticator-App</h2>"),
    ("/account/passkeys", "<h1>Passkeys</h1>"),
    ("/account/sessions", "<h1>Wo Sie angemeldet sind</h1>"),
    ("/account/consents", "<h1>Apps mit Zugriff</h1>"),
    ("/account/activity", "<h1>Letzte Aktivität</h1>"),
];

struct Setup {
    db: TestDb,
    sink: SmtpSink,
    _server: Server,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        self.db.issuer(path)
    }

    /// The users' `username|profile`, sorted: what a refused change must leave alone.
    async fn profiles(&self) -> Vec<String> {
        self.db
            .rows(
                "SELECT username || '|' || coalesce(email, '-') || '|' || \
                 CAST(profile AS TEXT) FROM users ORDER BY username",
            )
            .await
    }

    /// Sets `username`'s profile claims (a JSON object).
    async fn set_profile(&self, username: &str, profile: &str) {
        self.db
            .execute(&format!(
                "UPDATE users SET profile = '{profile}' WHERE username = '{username}'"
            ))
            .await;
    }

    /// Requests a password reset for `email` in `b`; the page after the POST.
    async fn forgot(&self, b: &Browser, email: &str) -> Page {
        let form = b.get(&self.url("/password/forgot")).await;
        form.assert_status(200);
        b.submit(&form, &[("email", email)]).await
    }
}

/// Tenant `main` with `settings` (its policy, JSON), mail to a sink, and alice and bob
/// with verified addresses and no language preference.
async fn setup(backend: Backend, settings: &str) -> Setup {
    let db = TestDb::migrated(backend).await;
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    settings: {settings}\n",
            db.issuer("")
        ),
    );
    create_user(&db, "alice", PASSWORD).await;
    create_user(&db, "bob", PASSWORD).await;
    db.execute("UPDATE users SET email = username || '@example.com', email_verified = TRUE")
        .await;
    let smtp_port = free_port();
    let sink = SmtpSink::start(smtp_port).await;
    let server = fast(db.cli())
        .env("GATEHOUSE_EMAIL_SMTP_HOST", "127.0.0.1")
        .env("GATEHOUSE_EMAIL_SMTP_PORT", smtp_port.to_string())
        .env("GATEHOUSE_EMAIL_SMTP_SECURITY", "plain")
        .env("GATEHOUSE_EMAIL_FROM", "Gatehouse <id@example.com>")
        .env("GATEHOUSE_EMAIL_POLL_INTERVAL_MS", "100")
        .serve_in_process(db.port)
        .await;
    Setup {
        db,
        sink,
        _server: server,
    }
}

/// `b` signed in as `username`.
async fn sign_in(s: &Setup, b: &Browser, username: &str) {
    let p = b.sign_in(&s.url(""), username, PASSWORD).await;
    p.assert_status(200);
}

fn lang_of(page: &Page) -> &str {
    let at = page
        .body
        .find("<html lang=\"")
        .unwrap_or_else(|| panic!("no lang: {}", page.body))
        + "<html lang=\"".len();
    &page.body[at..at + page.body[at..].find('"').unwrap()]
}

/// A header value with its RFC 2047 encoded words (`=?utf-8?b?…?=`, `?q?`) decoded.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    for word in value.split_whitespace() {
        let inner = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .and_then(|w| {
                let mut parts = w.splitn(3, '?');
                Some((parts.next()?, parts.next()?, parts.next()?))
            });
        let decoded = match inner {
            Some((charset, enc, text)) if charset.eq_ignore_ascii_case("utf-8") => {
                let bytes = if enc.eq_ignore_ascii_case("b") {
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap()
                } else {
                    quoted_printable(&text.replace('_', " "))
                };
                String::from_utf8(bytes).unwrap()
            }
            _ => format!(" {word} "),
        };
        out.push_str(&decoded);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Quoted-printable (RFC 2045 §6.7) undone.
fn quoted_printable(s: &str) -> Vec<u8> {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The mail's `text/plain` part with its transfer encoding undone.
fn text_part(mail: &Received) -> String {
    part(mail, "text/plain")
}

/// The mail's part of `content_type` with its transfer encoding undone.
fn part(mail: &Received, content_type: &str) -> String {
    let at = mail
        .data
        .find(&format!("Content-Type: {content_type}"))
        .unwrap_or_else(|| panic!("no {content_type} part: {}", mail.data));
    let part = &mail.data[at..];
    let (head, body) = part.split_once("\r\n\r\n").unwrap();
    let body = &body[..body.find("\r\n--").unwrap_or(body.len())];
    let head = head.to_ascii_lowercase();
    let bytes = if head.contains("content-transfer-encoding: base64") {
        base64::engine::general_purpose::STANDARD
            .decode(body.replace("\r\n", ""))
            .unwrap()
    } else if head.contains("content-transfer-encoding: quoted-printable") {
        quoted_printable(body)
    } else {
        body.as_bytes().to_vec()
    };
    String::from_utf8(bytes).unwrap()
}

async fn the_account_pages_follow_the_browsers_language(backend: Backend) {
    let s = setup(backend, "{}").await;
    let german = Browser::with_accept_language("de-DE,de;q=0.9,en;q=0.5");
    sign_in(&s, &german, "alice").await;
    for (path, heading) in GERMAN_PAGES {
        let p = german.get(&s.url(path)).await;
        p.assert_status(200);
        assert_eq!(lang_of(&p), "de", "{path}");
        assert!(p.body.contains(heading), "{path}: {}", p.body);
        // The navigation too, and nothing of it left in English.
        assert!(p.body.contains(">Übersicht</a>"), "{path}: {}", p.body);
        assert!(!p.body.contains(">Overview</a>"), "{path}");
    }
    let overview = german.get(&s.url("/account")).await;
    assert!(
        overview
            .body
            .contains("<dt>Benutzername</dt><dd>alice</dd>"),
        "{}",
        overview.body
    );
    let sessions = german.get(&s.url("/account/sessions")).await;
    assert!(
        sessions.body.contains("Dieser Browser"),
        "{}",
        sessions.body
    );
    assert!(sessions.body.contains("Hier abmelden"), "{}", sessions.body);
    let activity = german.get(&s.url("/account/activity")).await;
    assert!(
        activity.body.contains("<th scope=\"col\">Wann</th>")
            && activity.body.contains("<td>Angemeldet</td>"),
        "{}",
        activity.body
    );

    // The server's messages as well: a refused password change, with the policy's
    // number in the sentence.
    let form = german.get(&s.url("/account/password")).await;
    let refused = german
        .submit(
            &form,
            &[
                ("current_password", PASSWORD),
                ("new_password", "kurz"),
                ("confirm_password", "kurz"),
            ],
        )
        .await;
    refused.assert_status(400);
    assert!(
        refused
            .body
            .contains("Neues Passwort: mindestens 8 Zeichen."),
        "{}",
        refused.body
    );
    let wrong = german
        .submit(
            &form,
            &[
                ("current_password", "falsch"),
                ("new_password", "ein ganz neues Passwort"),
                ("confirm_password", "ein ganz neues Passwort"),
            ],
        )
        .await;
    assert!(
        wrong
            .body
            .contains("Ihr aktuelles Passwort ist nicht richtig."),
        "{}",
        wrong.body
    );

    // Without a wish, English.
    let plain = Browser::new();
    sign_in(&s, &plain, "bob").await;
    let p = plain.get(&s.url("/account")).await;
    assert_eq!(lang_of(&p), "en");
    assert!(p.body.contains("<h1>Your account</h1>"), "{}", p.body);
    assert!(
        p.body.contains("<dt>Username</dt><dd>bob</dd>"),
        "{}",
        p.body
    );
}

async fn a_users_preference_wins_over_the_browser_after_sign_in(backend: Backend) {
    let s = setup(backend, "{}").await;
    s.set_profile("alice", r#"{"locale":"de"}"#).await;
    let english = Browser::with_accept_language("en");
    let form = english.get(&s.url("/login")).await;
    assert_eq!(lang_of(&form), "en", "nobody signed in yet: the browser's");
    sign_in(&s, &english, "alice").await;
    for (path, heading) in GERMAN_PAGES {
        let p = english.get(&s.url(path)).await;
        p.assert_status(200);
        assert_eq!(lang_of(&p), "de", "{path}");
        assert!(p.body.contains(heading), "{path}: {}", p.body);
    }
    // Bob has no preference: his browser's language.
    let bobs = Browser::with_accept_language("en");
    sign_in(&s, &bobs, "bob").await;
    let p = bobs.get(&s.url("/account")).await;
    assert_eq!(lang_of(&p), "en");
    assert!(p.body.contains("<h1>Your account</h1>"), "{}", p.body);
}

#[allow(clippy::too_many_lines)] // one journey, asserted step by step
async fn the_preference_is_chosen_on_the_profile_page_and_a_bogus_one_changes_nothing(
    backend: Backend,
) {
    let s = setup(backend, "{}").await;
    let b = Browser::new();
    sign_in(&s, &b, "alice").await;
    let url = s.url("/account/profile");
    let form = b.get(&url).await;
    form.assert_status(200);
    assert_eq!(lang_of(&form), "en");
    for option in [
        "<option value=\"\" selected>Browser default</option>",
        "<option value=\"en\" lang=\"en\" dir=\"ltr\">English</option>",
        "<option value=\"de\" lang=\"de\" dir=\"ltr\">Deutsch</option>",
    ] {
        assert!(form.body.contains(option), "{option}: {}", form.body);
    }
    assert!(form.body.contains("<select id=\"locale\" name=\"locale\""));

    // Anything but a language we have is refused, and nothing changes.
    let before = s.profiles().await;
    let events_before = s.db.audit().await.len();
    let long = "de".repeat(5000);
    for bogus in ["fr", "xx-!!", "de\r\nX-Injected: 1", "DE ", long.as_str()] {
        let p = b
            .submit(
                &form,
                &[
                    ("name", ""),
                    ("email", "alice@example.com"),
                    ("locale", bogus),
                ],
            )
            .await;
        p.assert_status(400);
        assert!(
            p.body
                .contains("role=\"alert\">Choose one of the languages offered."),
            "{bogus:?}: {}",
            p.body
        );
        assert_eq!(lang_of(&p), "en");
        assert!(!p.body.contains(&long), "the value is not echoed");
        assert!(!p.body.contains("X-Injected"), "the value is not echoed");
        assert_eq!(s.profiles().await, before, "{bogus:?}");
    }
    assert_eq!(s.db.audit().await.len(), events_before, "nothing audited");
    // Still English.
    assert_eq!(lang_of(&b.get(&s.url("/account")).await), "en");

    // German: saved as the `locale` claim, and the very next page is German.
    let p = b
        .submit(
            &form,
            &[
                ("name", ""),
                ("email", "alice@example.com"),
                ("locale", "de"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location().unwrap(), format!("{url}?done=profile"));
    let shown = b.follow(&p).await;
    shown.assert_status(200);
    assert_eq!(lang_of(&shown), "de");
    assert!(
        shown.body.contains("Ihr Profil wurde gespeichert."),
        "{}",
        shown.body
    );
    assert!(
        shown
            .body
            .contains("<option value=\"de\" lang=\"de\" dir=\"ltr\" selected>Deutsch</option>"),
        "{}",
        shown.body
    );
    let alice =
        s.db.rows("SELECT CAST(profile AS TEXT) FROM users WHERE username = 'alice'")
            .await;
    let profile: serde_json::Value = serde_json::from_str(&alice[0]).unwrap();
    assert_eq!(profile["locale"], "de", "{profile}");
    let updated: Vec<String> =
        s.db.audit()
            .await
            .into_iter()
            .filter(|e| e.starts_with("user.profile_updated|"))
            .collect();
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert!(updated[0].contains("\"locale\""), "{updated:?}");
    // Bob's row is his own.
    assert!(
        s.profiles()
            .await
            .iter()
            .any(|r| r == "bob|bob@example.com|{}"),
        "{:?}",
        s.profiles().await
    );
    // Another browser of alice's, asking for English, gets German once she signs in.
    let elsewhere = Browser::with_accept_language("en");
    sign_in(&s, &elsewhere, "alice").await;
    assert_eq!(lang_of(&elsewhere.get(&s.url("/account")).await), "de");

    // Back to the browser's language: the claim is gone, the next page is English.
    let p = b
        .submit(
            &shown,
            &[("name", ""), ("email", "alice@example.com"), ("locale", "")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let shown = b.follow(&p).await;
    assert_eq!(lang_of(&shown), "en");
    assert!(
        shown.body.contains("Your profile was saved."),
        "{}",
        shown.body
    );
    assert!(
        s.profiles()
            .await
            .iter()
            .any(|r| r == "alice|alice@example.com|{}"),
        "{:?}",
        s.profiles().await
    );
}

async fn a_reset_mail_is_in_the_recipients_language(backend: Backend) {
    let s = setup(backend, "{}").await;
    s.set_profile("alice", r#"{"locale":"de"}"#).await;
    // Asked for from an English page: the mail is in alice's language all the same.
    let b = Browser::with_accept_language("en");
    let sent = s.forgot(&b, "alice@example.com").await;
    sent.assert_status(200);
    assert_eq!(lang_of(&sent), "en");
    assert!(sent.body.contains("Check your inbox"), "{}", sent.body);
    let mails = s.sink.wait_for(1).await;
    let mail = &mails[0];
    assert_eq!(mail.to, ["alice@example.com"]);
    let subject = decode_words(&mail.header("subject").unwrap_or_default());
    assert_eq!(subject, "Passwort zurücksetzen für Tenant main");
    assert_eq!(mail.header("content-language").as_deref(), Some("de"));
    let text = text_part(mail);
    assert!(text.starts_with("Hallo alice,"), "{text}");
    assert!(
        text.contains("jemand hat angefordert, das Passwort Ihres Kontos zurückzusetzen"),
        "{text}"
    );
    assert!(text.contains("läuft in 30 Minuten ab"), "{text}");
    assert!(text.contains(&s.url("/password/reset?token=")), "{text}");
    let html = part(mail, "text/html");
    assert!(html.contains("<html lang=\"de\" dir=\"ltr\">"), "{html}");
    assert!(html.contains("Hallo alice,"), "{html}");

    // Bob has no preference: the page's language (English here).
    s.forgot(&b, "bob@example.com").await.assert_status(200);
    let mails = s.sink.wait_for(2).await;
    let mail = &mails[1];
    assert_eq!(mail.to, ["bob@example.com"]);
    assert_eq!(
        decode_words(&mail.header("subject").unwrap_or_default()),
        "Reset your password for Tenant main"
    );
    assert_eq!(mail.header("content-language").as_deref(), Some("en"));
    assert!(text_part(mail).starts_with("Hello bob,"));
}

async fn a_mail_without_a_preference_follows_the_tenant_default(backend: Backend) {
    let s = setup(backend, r#"{"defaultLocale": "de"}"#).await;
    s.set_profile("alice", r#"{"locale":"en"}"#).await;
    // A browser that names no language: the tenant's, for the page and bob's mail.
    let b = Browser::new();
    let sent = s.forgot(&b, "bob@example.com").await;
    sent.assert_status(200);
    assert_eq!(lang_of(&sent), "de");
    assert!(
        sent.body.contains("Sehen Sie in Ihr Postfach"),
        "{}",
        sent.body
    );
    let mails = s.sink.wait_for(1).await;
    assert_eq!(
        decode_words(&mails[0].header("subject").unwrap_or_default()),
        "Passwort zurücksetzen für Tenant main"
    );
    assert_eq!(mails[0].header("content-language").as_deref(), Some("de"));
    assert!(text_part(&mails[0]).starts_with("Hallo bob,"));
    // The link's page and its refusals are German too, with the policy's number.
    let link = mails[0]
        .link(&s.url("/password/reset?token="))
        .unwrap_or_else(|| panic!("no link in {}", mails[0].decoded()));
    let form = b.get(&link).await;
    form.assert_status(200);
    assert!(
        form.body.contains("<h1>Neues Passwort wählen</h1>"),
        "{}",
        form.body
    );
    for (new, confirm, message) in [
        (
            "kurz",
            "kurz",
            "Das Passwort muss mindestens 8 Zeichen haben.",
        ),
        (
            "ein ganz neues Passwort",
            "ein anderes Passwort",
            "Die beiden Passwörter stimmen nicht überein.",
        ),
    ] {
        let p = b
            .submit(
                &form,
                &[("new_password", new), ("confirm_password", confirm)],
            )
            .await;
        p.assert_status(400);
        assert!(p.body.contains(message), "{message}: {}", p.body);
    }
    // Alice's own preference beats the tenant's.
    s.forgot(&b, "alice@example.com").await.assert_status(200);
    let mails = s.sink.wait_for(2).await;
    assert_eq!(
        decode_words(&mails[1].header("subject").unwrap_or_default()),
        "Reset your password for Tenant main"
    );
    assert!(text_part(&mails[1]).starts_with("Hello alice,"));
}
