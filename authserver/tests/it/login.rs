//! The sign-in pages against the real binary: the form, generic failures, CSRF, session
//! cookies and timeouts, the per-user session limit, the account chooser, logout, and the
//! security headers of every page. Driven like a browser (cookie jar, forms by field
//! name).

use crate::harness::browser::{Browser, Page, create_user, fast};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    login_page_is_accessible_and_carries_the_security_headers,
    sign_in_succeeds_and_every_failure_looks_the_same,
    a_missing_or_wrong_csrf_token_is_refused_and_changes_nothing,
    idle_and_absolute_timeouts_end_the_session,
    activity_is_written_at_most_once_a_minute,
    signing_in_beyond_max_sessions_per_user_evicts_the_oldest,
    bound_sessions_end_when_the_user_agent_changes,
    the_account_chooser_switches_between_signed_in_accounts,
    logout_without_a_hint_asks_first_and_checks_the_return_address,
    logout_with_an_id_token_hint_ends_that_session_at_once,
    templates_dir_overrides_a_page_and_a_broken_template_stops_start_up,
    session_data_can_be_encrypted_and_accounts_per_browser_are_limited,
    mfa_enrolment_verification_and_recovery_codes_in_the_browser,
    repeated_failures_lock_the_username_with_the_time_left,
    a_parallel_burst_of_guesses_is_checked_at_most_max_failures_times,
    tenants_on_one_host_keep_their_own_sessions,
    a_hint_whose_sid_is_gone_ends_that_users_accounts_in_this_browser,
    concurrent_sign_ins_all_succeed,
);

/// Many browsers signing in at once: every sign-in writes a session, and none may fail
/// on the other writers (SQLite serialises writers; its transactions take the write
/// lock up front and wait for it).
async fn concurrent_sign_ins_all_succeed(backend: Backend) {
    const USERS: usize = 8;
    let db = TestDb::migrated(backend).await;
    // One user each: attempts in flight count towards a username's lockout budget.
    for i in 0..USERS {
        create_user(&db, &format!("user{i}"), PASSWORD).await;
    }
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let mut tasks = Vec::new();
    for i in 0..USERS {
        let issuer = issuer.clone();
        tasks.push(tokio::spawn(async move {
            let p = Browser::new()
                .sign_in(&issuer, &format!("user{i}"), PASSWORD)
                .await;
            (
                p.status.as_u16(),
                p.body.contains("You are signed in"),
                p.body,
            )
        }));
    }
    for t in tasks {
        let (status, signed_in, body) = t.await.unwrap();
        assert_eq!((status, signed_in), (200, true), "{body}");
    }
    assert_eq!(count(&db, "sessions").await, i64::try_from(USERS).unwrap());
}

const PASSWORD: &str = "correct horse battery staple";
/// The session cookie of tenant `main` on an http issuer: `8` hex characters of
/// SHA-256("main") after the name.
const COOKIE: &str = "gatehouse-session-0d6e4079";

/// Tenant `main` with `settings` (a JSON object as YAML flow text), written to the config.
fn with_settings(db: &TestDb, settings: &str) {
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    settings: {settings}\n",
            db.issuer("")
        ),
    );
}

async fn serve(db: &TestDb) -> Server {
    fast(db.cli()).serve_in_process(db.port).await
}

fn assert_page_headers(p: &Page) {
    let csp = p
        .header("content-security-policy")
        .expect("CSP on every page");
    assert_eq!(
        csp,
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
         img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(p.header("cache-control"), Some("no-store"));
    assert_eq!(p.header("x-frame-options"), Some("DENY"));
    assert_eq!(p.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(p.header("x-content-type-options"), Some("nosniff"));
    assert!(
        p.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        p.headers
    );
}

async fn count(db: &TestDb, table: &str) -> i64 {
    db.scalar(&format!("SELECT count(*) FROM {table}")).await
}

async fn login_page_is_accessible_and_carries_the_security_headers(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = serve(&db).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    let p = b.get(&format!("{issuer}/login")).await;
    p.assert_status(200);
    assert_page_headers(&p);
    for needle in [
        "<html lang=\"en\" dir=\"ltr\">",
        "<label for=\"username\">",
        "<label for=\"password\">",
        "name=\"username\"",
        "name=\"password\"",
        "name=\"_csrf\"",
        "<button type=\"submit\">",
        "Tenant main",
    ] {
        assert!(p.body.contains(needle), "{needle} missing: {}", p.body);
    }
    assert!(!p.body.contains("<script"), "no scripts on the login page");
    // http issuer: no __Host- prefix and no Secure (a browser would drop it).
    let cookies = p.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(
        cookies[0].starts_with(&format!("{COOKIE}="))
            && cookies[0].contains("HttpOnly")
            && cookies[0].contains("SameSite=Lax")
            && cookies[0].contains("Path=/")
            && !cookies[0].contains("Secure"),
        "{cookies:?}"
    );
    assert_eq!(count(&db, "browser_sessions").await, 1);
    // The cookie is a handle; the database keeps only its hash.
    let value = cookies[0]
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches(&format!("{COOKIE}="))
        .to_owned();
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM browser_sessions WHERE id_hash = '{value}' OR data LIKE '%{value}%'"
        ))
        .await,
        0
    );

    // The same browser reuses its session.
    let again = b.get(&format!("{issuer}/login")).await;
    assert!(again.set_cookies().is_empty());
    assert_eq!(count(&db, "browser_sessions").await, 1);

    // The stylesheet is same-origin and long-cached; a page without a form makes no row.
    let css = server.get("/assets/gatehouse.css").await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(
        css.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let other = Browser::new();
    other
        .get(&format!("{issuer}/logout"))
        .await
        .assert_status(200);
    assert_eq!(count(&db, "browser_sessions").await, 1);
}

async fn sign_in_succeeds_and_every_failure_looks_the_same(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    // A user without a password (set by an admin later).
    db.rows(
        "INSERT INTO users (tenant_id, user_id, username, username_normalized, email_verified, \
         profile, created_at, updated_at) VALUES ('main', 'u-nopw', 'nopw', 'nopw', FALSE, '{}', 0, 0) \
         RETURNING user_id",
    )
    .await;
    let _server = serve(&db).await;
    let issuer = db.issuer("");

    let b = Browser::new();
    let mut bodies = Vec::new();
    for (user, password) in [
        ("alice", "wrong password!"),
        ("mallory", PASSWORD),
        ("nopw", PASSWORD),
    ] {
        let p = b.sign_in(&issuer, user, password).await;
        p.assert_status(200);
        assert_page_headers(&p);
        assert!(
            p.body
                .contains("<p class=\"alert\" role=\"alert\">Incorrect username or password.</p>"),
            "{}",
            p.body
        );
        assert!(!p.body.contains(password));
        bodies.push(p.body.replace(user, "USER"));
    }
    assert_eq!(bodies[0], bodies[1], "unknown user vs wrong password");
    assert_eq!(bodies[0], bodies[2], "no password vs wrong password");
    assert_eq!(count(&db, "sessions").await, 0);
    let audit = db.audit().await;
    let failed: Vec<_> = audit
        .iter()
        .filter(|e| e.starts_with("login.failed|"))
        .collect();
    assert_eq!(failed.len(), 3, "{audit:?}");
    assert!(failed[0].contains("bad_password"), "{failed:?}");
    assert!(failed[1].contains("unknown_user") && !failed[1].contains("mallory"));
    assert!(failed[2].contains("no_password") && failed[2].contains("u-nopw"));
    assert!(
        audit
            .iter()
            .all(|e| !e.contains(PASSWORD) && !e.contains("wrong password"))
    );

    let before = b.cookies(&issuer).unwrap();
    let p = b.sign_in(&issuer, "alice", PASSWORD).await;
    p.assert_status(200);
    assert!(p.body.contains("You are signed in"), "{}", p.body);
    assert!(p.body.contains("alice"));
    // The session id is replaced at sign-in (fixation).
    let after = b.cookies(&issuer).unwrap();
    assert_ne!(before, after);
    assert_eq!(count(&db, "browser_sessions").await, 1);
    let rows = db
        .rows("SELECT user_id || '|' || amr || '|' || acr FROM sessions")
        .await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].ends_with("|[\"pwd\"]|1"), "{rows:?}");
    let audit = db.audit().await;
    assert!(audit.iter().any(|e| e.starts_with("login.succeeded|user|")));
    assert!(audit.iter().any(|e| e.starts_with("session.created|user|")));
}

async fn a_missing_or_wrong_csrf_token_is_refused_and_changes_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    let form = b.get(&format!("{issuer}/login")).await;
    let sessions_before = db
        .rows("SELECT id_hash || data FROM browser_sessions")
        .await;
    let url = format!("{issuer}/login");
    for fields in [
        vec![("username", "alice"), ("password", PASSWORD)],
        vec![
            ("_csrf", "forged"),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    ] {
        let p = b.post(&url, &fields).await;
        p.assert_status(403);
        assert_page_headers(&p);
        assert!(p.body.contains("role=\"alert\""));
        assert_eq!(count(&db, "sessions").await, 0);
        assert_eq!(
            db.rows("SELECT id_hash || data FROM browser_sessions")
                .await,
            sessions_before
        );
    }
    // A browser without a session cannot post at all.
    let stranger = Browser::new();
    let p = stranger
        .post(
            &url,
            &[
                ("_csrf", &form.input("_csrf").unwrap()),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    p.assert_status(403);
    assert_eq!(count(&db, "sessions").await, 0);
    assert_eq!(count(&db, "browser_sessions").await, 1);
    assert!(
        !db.audit().await.iter().any(|e| e.starts_with("login.")),
        "a refused form does not even count as an attempt"
    );
    // The real form still works.
    b.submit(&form, &[("username", "alice"), ("password", PASSWORD)])
        .await
        .assert_status(200);
    assert_eq!(count(&db, "sessions").await, 1);
}

async fn idle_and_absolute_timeouts_end_the_session(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    with_settings(
        &db,
        "{session: {idleTimeoutSeconds: 60, absoluteTimeoutSeconds: 300}}",
    );
    create_user(&db, "alice", PASSWORD).await;
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let chooser = format!("{issuer}/select-account");

    for (what, sql) in [
        // Idle: no activity until after the idle expiry.
        (
            "idle",
            "UPDATE browser_sessions SET expires_at = expires_at - 61",
        ),
        // Absolute: kept alive, but created longer ago than the absolute timeout.
        (
            "absolute",
            "UPDATE browser_sessions SET created_at = created_at - 301",
        ),
    ] {
        let b = Browser::new();
        b.sign_in(&issuer, "alice", PASSWORD)
            .await
            .assert_status(200);
        let p = b.get(&chooser).await;
        p.assert_status(200);
        assert!(p.body.contains("alice"), "{what}: {}", p.body);
        // Sessions are created with the tenant's timeouts.
        assert_eq!(
            db.scalar("SELECT max(expires_at - created_at) FROM sessions")
                .await,
            300
        );
        assert_eq!(
            db.scalar("SELECT max(idle_expires_at - created_at) FROM sessions")
                .await,
            60
        );
        db.rows(&format!("{sql} RETURNING id_hash")).await;
        let p = b.get(&chooser).await;
        assert_eq!(p.status, 303, "{what}: an expired session is no session");
        assert!(p.location().unwrap().ends_with("/login"), "{what}");
        assert_eq!(count(&db, "browser_sessions").await, 0, "{what}");
        assert_eq!(count(&db, "sessions").await, 0, "{what}");
    }
}

async fn signing_in_beyond_max_sessions_per_user_evicts_the_oldest(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    with_settings(&db, "{session: {maxSessionsPerUser: 2}}");
    create_user(&db, "alice", PASSWORD).await;
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let browsers = [Browser::new(), Browser::new(), Browser::new()];
    let mut sids = Vec::new();
    for b in &browsers {
        // Earlier sign-ins are older (the clock has one-second resolution).
        db.rows("UPDATE sessions SET created_at = created_at - 10 RETURNING sid")
            .await;
        b.sign_in(&issuer, "alice", PASSWORD)
            .await
            .assert_status(200);
        sids.push(
            db.rows("SELECT sid FROM sessions ORDER BY created_at DESC, sid")
                .await,
        );
    }
    assert_eq!(count(&db, "sessions").await, 2);
    // The first browser's account is the one that went.
    let first_sid = sids[0][0].clone();
    assert!(
        !db.rows("SELECT sid FROM sessions")
            .await
            .contains(&first_sid),
        "oldest session evicted"
    );
    let p = browsers[0].get(&format!("{issuer}/select-account")).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let audit = db.audit().await;
    let evicted: Vec<_> = audit
        .iter()
        .filter(|e| e.starts_with("session.evicted|"))
        .collect();
    assert_eq!(evicted.len(), 1, "{audit:?}");
    assert!(evicted[0].contains(&first_sid));
}

async fn bound_sessions_end_when_the_user_agent_changes(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    with_settings(&db, "{session: {bindUserAgent: true, bindIp: true}}");
    create_user(&db, "alice", PASSWORD).await;
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let b = Browser::with_user_agent("Browser/1");
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    // Same IP and User-Agent: still signed in.
    b.get(&format!("{issuer}/select-account"))
        .await
        .assert_status(200);
    // Same cookie, another User-Agent: the session ends.
    let cookie = b.cookies(&issuer).unwrap();
    let thief = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = thief
        .get(format!("{issuer}/select-account"))
        .header("cookie", cookie)
        .header("user-agent", "Other/2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(count(&db, "sessions").await, 0);
    assert_eq!(count(&db, "browser_sessions").await, 0);
    let audit = db.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e.starts_with("session.revoked|") && e.contains("user_agent_changed")),
        "{audit:?}"
    );
}

async fn the_account_chooser_switches_between_signed_in_accounts(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    create_user(&db, "bob", PASSWORD).await;
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    b.sign_in(&issuer, "bob", PASSWORD).await.assert_status(200);
    assert_eq!(count(&db, "sessions").await, 2);
    assert_eq!(count(&db, "browser_sessions").await, 1);

    let chooser = b.get(&format!("{issuer}/select-account")).await;
    chooser.assert_status(200);
    assert_page_headers(&chooser);
    assert!(chooser.body.contains(">alice</button>"), "{}", chooser.body);
    assert!(chooser.body.contains(">bob</button>"));
    assert!(chooser.body.contains("Use another account"));
    let alice = account_value(&chooser, "alice");
    let p = b.submit(&chooser, &[("account", &alice)]).await;
    p.assert_status(200);
    assert!(
        p.body
            .contains("Signed in as <strong><bdi>alice</bdi></strong>"),
        "{}",
        p.body
    );
    // "Use another account" goes to the sign-in form.
    let chooser = b.get(&format!("{issuer}/select-account")).await;
    let p = b.submit(&chooser, &[("account", "other")]).await;
    assert_eq!(p.status, 303);
    assert!(p.location().unwrap().ends_with("/login"));
    let form = b.follow(&p).await;
    form.assert_status(200);
    assert!(form.body.contains("name=\"password\""));
    // Signing the same user in again replaces that account, it does not add one.
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    assert_eq!(count(&db, "sessions").await, 2);
    // Without a valid _csrf nothing changes.
    let p = b
        .post(&format!("{issuer}/select-account"), &[("account", "0")])
        .await;
    p.assert_status(403);
}

async fn logout_without_a_hint_asks_first_and_checks_the_return_address(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    db.cli()
        .args([
            "clients",
            "create",
            "--id",
            "rp",
            "--redirect-uri",
            "https://rp.example/cb",
            "--post-logout-redirect-uri",
            "https://rp.example/bye",
        ])
        .run()
        .await
        .assert_success();
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);

    // Unregistered return address, unknown client, or no client: an error page, never a
    // redirect, and the session stays.
    for query in [
        "client_id=rp&post_logout_redirect_uri=https://evil.example/bye",
        "client_id=nope&post_logout_redirect_uri=https://rp.example/bye",
        "post_logout_redirect_uri=https://rp.example/bye",
        "id_token_hint=not.a.token",
    ] {
        let p = b.get(&format!("{issuer}/logout?{query}")).await;
        p.assert_status(400);
        assert!(p.location().is_none());
        assert!(p.body.contains("role=\"alert\""), "{query}: {}", p.body);
        assert_page_headers(&p);
    }
    assert_eq!(count(&db, "sessions").await, 1);

    // No hint: a confirmation page; a GET alone signs nobody out.
    let confirm = b
        .get(&format!(
            "{issuer}/logout?client_id=rp&post_logout_redirect_uri=https://rp.example/bye&state=xyz"
        ))
        .await;
    confirm.assert_status(200);
    assert_page_headers(&confirm);
    assert!(confirm.body.contains("alice"));
    assert_eq!(count(&db, "sessions").await, 1);
    // A forged confirmation changes nothing.
    b.post(&format!("{issuer}/logout"), &[("_csrf", "x")])
        .await
        .assert_status(403);
    assert_eq!(count(&db, "sessions").await, 1);

    let p = b
        .submit(
            &confirm,
            &[
                ("client_id", &confirm.input("client_id").unwrap()),
                (
                    "post_logout_redirect_uri",
                    &confirm.input("post_logout_redirect_uri").unwrap(),
                ),
                ("state", &confirm.input("state").unwrap()),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location().unwrap(), "https://rp.example/bye?state=xyz");
    assert!(
        p.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{COOKIE}=;")) && c.contains("Max-Age=0")),
        "{:?}",
        p.set_cookies()
    );
    assert_eq!(count(&db, "sessions").await, 0);
    assert_eq!(count(&db, "browser_sessions").await, 0);
    let audit = db.audit().await;
    assert!(
        audit.iter().any(|e| e.starts_with("logout|user|")),
        "{audit:?}"
    );

    // Signed out already: no confirmation needed, the signed-out page.
    let p = b.get(&format!("{issuer}/logout")).await;
    p.assert_status(200);
    assert!(p.body.contains("You have been signed out"));
}

async fn templates_dir_overrides_a_page_and_a_broken_template_stops_start_up(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("signed_out.html"),
        "{% extends \"base.html\" %}{% block content %}<h1>Custom goodbye</h1>{% endblock %}",
    )
    .unwrap();
    let dir_s = dir.path().display().to_string();
    {
        let _server = fast(db.cli())
            .env("GATEHOUSE_UI_TEMPLATES_DIR", &dir_s)
            .serve_in_process(db.port)
            .await;
        let p = Browser::new()
            .get(&format!("{}/logout", db.issuer("")))
            .await;
        p.assert_status(200);
        assert!(p.body.contains("Custom goodbye"), "{}", p.body);
        assert!(p.body.contains("Tenant main"), "the layout still applies");
    }
    std::fs::write(dir.path().join("consent.html"), "{% for %}").unwrap();
    let out = db
        .cli()
        .env("GATEHOUSE_UI_TEMPLATES_DIR", &dir_s)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .run()
        .await;
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("consent.html"), "{out}");
}

/// The chooser button's `value` for `username`.
fn account_value(chooser: &Page, username: &str) -> String {
    let end = chooser
        .body
        .find(&format!(">{username}</button>"))
        .unwrap_or_else(|| panic!("no button for {username}: {}", chooser.body));
    let start = chooser.body[..end].rfind("value=\"").unwrap() + "value=\"".len();
    chooser.body[start..end].trim_end_matches('"').to_owned()
}

/// An ID token signed with tenant `main`'s active key, as the token endpoint would.
async fn id_token(db: &TestDb, claims: &serde_json::Value) -> String {
    signed_jwt(db, "JWT", claims).await
}

/// A JWT of type `typ` signed with tenant `main`'s active key.
async fn signed_jwt(db: &TestDb, typ: &str, claims: &serde_json::Value) -> String {
    use std::sync::Arc;

    use authserver::cache::Epoch;
    use authserver::clock::SystemClock;
    use authserver::config::DatabaseSettings;
    use authserver::crypto::kek::Kek;
    use authserver::domain::signing_key::{Algorithm, KeyPolicy};
    use authserver::keys::KeyService;
    use authserver::store::Store;
    use secrecy::SecretString;

    let store = Store::connect(&DatabaseSettings {
        url: SecretString::from(db.url().to_owned()),
        max_connections: 1,
        connect_timeout_seconds: 5,
        startup_timeout_seconds: 10,
        acquire_timeout_ms: authserver::config::DEFAULT_ACQUIRE_TIMEOUT_MS,
    })
    .await
    .unwrap();
    let kek = Kek::from_hex(&SecretString::from(db.key().to_owned())).unwrap();
    let keys = KeyService::new(
        store.clone(),
        Arc::new(kek),
        KeyPolicy::default(),
        Arc::new(SystemClock),
        &Epoch::default(),
    );
    let mut signer = None;
    for alg in Algorithm::ALL {
        if let Some(s) = keys.signer("main", alg).await.unwrap() {
            signer = Some(s);
            break;
        }
    }
    let token = signer
        .expect("tenant main has an active key")
        .sign_jwt(typ, claims)
        .unwrap();
    store.close().await;
    token
}

#[allow(clippy::too_many_lines)] // one journey, asserted step by step
async fn logout_with_an_id_token_hint_ends_that_session_at_once(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    for id in ["rp", "other"] {
        db.cli()
            .args([
                "clients",
                "create",
                "--id",
                id,
                "--redirect-uri",
                &format!("https://{id}.example/cb"),
                "--post-logout-redirect-uri",
                &format!("https://{id}.example/bye"),
            ])
            .run()
            .await
            .assert_success();
    }
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    let sid = db.rows("SELECT sid FROM sessions").await.remove(0);
    let now = crate::harness::jose::now();
    // Expired long ago: a hint names a session, it does not authenticate.
    let claims = serde_json::json!({
        "iss": issuer, "sub": "someone", "aud": "rp", "sid": sid,
        "iat": now - 7200, "exp": now - 3600,
    });
    let hint = id_token(&db, &claims).await;
    let mut foreign = claims.clone();
    foreign["iss"] = serde_json::json!("http://127.0.0.1:1");
    let foreign = id_token(&db, &foreign).await;
    let (head, _) = hint.rsplit_once('.').unwrap();
    let forged = format!("{head}.AAAA");
    // Signed by us, but not ID tokens: an access token, and a token without `sub`.
    let access_token = signed_jwt(&db, "at+jwt", &claims).await;
    let mut no_sub = claims.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    let no_sub = id_token(&db, &no_sub).await;

    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    for (query, why) in [
        (format!("id_token_hint={}", enc(&foreign)), "another issuer"),
        (format!("id_token_hint={}", enc(&forged)), "bad signature"),
        (
            format!("id_token_hint={}", enc(&access_token)),
            "an access token",
        ),
        (format!("id_token_hint={}", enc(&no_sub)), "no sub"),
        (
            format!("id_token_hint={}&client_id=other", enc(&hint)),
            "client_id is not the hint's audience",
        ),
        (
            format!(
                "id_token_hint={}&post_logout_redirect_uri={}",
                enc(&hint),
                enc("https://other.example/bye")
            ),
            "another client's return address",
        ),
    ] {
        let p = b.get(&format!("{issuer}/logout?{query}")).await;
        assert_eq!(p.status, 400, "{why}: {}", p.body);
        assert!(p.location().is_none(), "{why}");
        assert_eq!(count(&db, "sessions").await, 1, "{why}");
    }

    // Security review, defect 5: a valid hint sent by another browser (here: one without
    // the cookie, as an attacker holding alice's ID token would) ends nothing. It still
    // returns to the registered URI: there is nothing to sign out in that browser.
    let logout_url = format!(
        "{issuer}/logout?id_token_hint={}&post_logout_redirect_uri={}&state=s1",
        enc(&hint),
        enc("https://rp.example/bye")
    );
    let before = db.rows("SELECT sid FROM sessions").await;
    let p = Browser::new().get(&logout_url).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location().unwrap(), "https://rp.example/bye?state=s1");
    assert_eq!(db.rows("SELECT sid FROM sessions").await, before);
    assert!(
        !db.audit().await.iter().any(|e| e.starts_with("logout|")),
        "nothing was signed out"
    );
    // Another signed-in browser sending the hint keeps its own account and alice's.
    let other = Browser::new();
    other
        .sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    let p = other.get(&logout_url).await;
    assert!(
        p.location().is_none(),
        "no redirect before the user confirms"
    );
    assert_eq!(
        count(&db, &format!("sessions WHERE sid = '{sid}'")).await,
        1
    );
    assert_eq!(count(&db, "sessions").await, 2);

    // The browser that holds the session ends it at once with the hint.
    let p = b.get(&logout_url).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location().unwrap(), "https://rp.example/bye?state=s1");
    assert_eq!(
        count(&db, &format!("sessions WHERE sid = '{sid}'")).await,
        0
    );
    assert_eq!(
        count(&db, "sessions").await,
        1,
        "the other browser's account stays"
    );
    let audit = db.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e.starts_with("logout|user|") && e.contains(&sid)),
        "{audit:?}"
    );
    // The browser that held it is signed out.
    let p = b.get(&format!("{issuer}/select-account")).await;
    assert_eq!(p.status, 303);
}

async fn session_data_can_be_encrypted_and_accounts_per_browser_are_limited(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    for u in ["alice", "bob", "carol"] {
        create_user(&db, u, PASSWORD).await;
    }
    let _server = fast(db.cli())
        .env("GATEHOUSE_SESSIONS_ENCRYPT_DATA", "true")
        .env("GATEHOUSE_SESSIONS_MAX_ACCOUNTS", "2")
        .serve_in_process(db.port)
        .await;
    let issuer = db.issuer("");
    let b = Browser::new();
    let form = b.get(&format!("{issuer}/login")).await;
    let csrf = form.input("_csrf").unwrap();
    let data = db.rows("SELECT data FROM browser_sessions").await;
    assert_eq!(data.len(), 1);
    assert!(data[0].starts_with("enc1:"), "{data:?}");
    assert!(!data[0].contains(&csrf) && !data[0].contains("csrf"));
    // Encrypted data still works: the CSRF token checks out.
    for u in ["alice", "bob", "carol"] {
        db.rows("UPDATE sessions SET created_at = created_at - 10 RETURNING sid")
            .await;
        b.sign_in(&issuer, u, PASSWORD).await.assert_status(200);
    }
    // Two accounts per browser: alice (the oldest) was signed out.
    assert_eq!(count(&db, "sessions").await, 2);
    let chooser = b.get(&format!("{issuer}/select-account")).await;
    assert!(
        !chooser.body.contains(">alice</button>"),
        "{}",
        chooser.body
    );
    assert!(chooser.body.contains(">bob</button>") && chooser.body.contains(">carol</button>"));
    assert!(
        db.audit()
            .await
            .iter()
            .any(|e| e.starts_with("session.evicted|")),
    );
}

#[allow(clippy::too_many_lines)] // one journey, asserted step by step
async fn mfa_enrolment_verification_and_recovery_codes_in_the_browser(backend: Backend) {
    use authserver::mfa::totp::{self, Secret};

    let db = TestDb::migrated(backend).await;
    with_settings(&db, "{mfa: {required: true}}");
    create_user(&db, "alice", PASSWORD).await;
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let now = || crate::harness::jose::now();

    // Required but not set up: enrol after the password, before any session exists.
    let b = Browser::new();
    let p = b.sign_in(&issuer, "alice", PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(p.location().unwrap().ends_with("/login/mfa/enroll"));
    assert_eq!(count(&db, "sessions").await, 0);
    let enrol = b.follow(&p).await;
    enrol.assert_status(200);
    assert_page_headers(&enrol);
    assert!(
        crate::harness::browser::decode_entities(&enrol.body)
            .contains("src=\"data:image/svg+xml;base64,"),
        "{}",
        enrol.body
    );
    assert!(enrol.body.contains("<label for=\"totp\">"));
    let start =
        enrol.body.find("<code class=\"secret\">").unwrap() + "<code class=\"secret\">".len();
    let end = start + enrol.body[start..].find("</code>").unwrap();
    let secret = Secret::from_bytes(totp::base32_decode(&enrol.body[start..end]).unwrap());

    // A wrong code: the page again with an error, nothing enrolled.
    let again = b.submit(&enrol, &[("totp", "000000")]).await;
    again.assert_status(200);
    assert!(
        again
            .body
            .contains("role=\"alert\">That code is not valid."),
        "{}",
        again.body
    );
    assert_eq!(count(&db, "sessions").await, 0);
    // The retry page shows the key already scanned, which still works.
    let start =
        again.body.find("<code class=\"secret\">").unwrap() + "<code class=\"secret\">".len();
    let end = start + again.body[start..].find("</code>").unwrap();
    let shown = Secret::from_bytes(totp::base32_decode(&again.body[start..end]).unwrap());
    assert!(shown == secret, "the retry page replaced the key");
    let codes_page = b
        .submit(&again, &[("totp", &secret.code_at_step(totp::step(now())))])
        .await;
    codes_page.assert_status(200);
    let codes: Vec<String> = codes_page
        .body
        .split("<li><code>")
        .skip(1)
        .map(|c| c.split("</code>").next().unwrap().to_owned())
        .collect();
    assert!(codes.len() >= 5, "{}", codes_page.body);
    assert_eq!(
        count(&db, "sessions").await,
        0,
        "not signed in before continuing"
    );
    let done = b.submit(&codes_page, &[]).await;
    done.assert_status(200);
    assert!(done.body.contains("You are signed in"), "{}", done.body);
    assert_eq!(
        db.rows("SELECT amr || '|' || acr FROM sessions").await,
        vec!["[\"pwd\",\"otp\",\"mfa\"]|2".to_owned()]
    );

    // Enrolled: the next sign-in asks for a code; a recovery code works once.
    let b2 = Browser::new();
    let p = b2.sign_in(&issuer, "alice", PASSWORD).await;
    assert!(
        p.location().unwrap().ends_with("/login/mfa"),
        "{:?}",
        p.location()
    );
    let form = b2.follow(&p).await;
    form.assert_status(200);
    assert!(form.body.contains("name=\"totp\""));
    let wrong = b2.submit(&form, &[("totp", "123456")]).await;
    wrong.assert_status(200);
    assert!(wrong.body.contains("That code is not valid."));
    let ok = b2.submit(&wrong, &[("totp", &codes[0])]).await;
    ok.assert_status(200);
    assert!(ok.body.contains("You are signed in"), "{}", ok.body);
    assert_eq!(count(&db, "sessions").await, 2);

    let b3 = Browser::new();
    let p = b3.sign_in(&issuer, "alice", PASSWORD).await;
    let form = b3.follow(&p).await;
    let reused = b3.submit(&form, &[("totp", &codes[0])]).await;
    assert!(
        reused.body.contains("That code is not valid."),
        "a recovery code works once"
    );
    let ok = b3
        .submit(
            &reused,
            &[("totp", &secret.code_at_step(totp::step(now()) + 1))],
        )
        .await;
    ok.assert_status(200);
    assert!(ok.body.contains("You are signed in"), "{}", ok.body);
    // Without the password step, the MFA pages send the browser back to the form.
    let p = Browser::new().get(&format!("{issuer}/login/mfa")).await;
    assert_eq!(p.status, 303);
    assert!(p.location().unwrap().ends_with("/login"));
}

async fn repeated_failures_lock_the_username_with_the_time_left(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    let _server = fast(db.cli())
        .env("GATEHOUSE_LOGIN_MAX_FAILURES", "3")
        .env("GATEHOUSE_LOGIN_LOCKOUT_SECONDS", "120")
        .serve_in_process(db.port)
        .await;
    let issuer = db.issuer("");
    let b = Browser::new();
    for _ in 0..2 {
        let p = b.sign_in(&issuer, "alice", "wrong password!").await;
        p.assert_status(200);
        assert!(p.body.contains("Incorrect username or password."));
    }
    let p = b.sign_in(&issuer, "alice", "wrong password!").await;
    p.assert_status(429);
    assert!(
        p.body
            .contains("Too many failed attempts. Try again in 2 minutes."),
        "{}",
        p.body
    );
    assert!(p.header("retry-after").is_some());
    // Locked: even the right password is refused, without a session.
    let p = b.sign_in(&issuer, "alice", PASSWORD).await;
    p.assert_status(429);
    assert!(
        p.body
            .contains("role=\"alert\">Too many failed attempts. Try again in 2 minutes."),
        "{}",
        p.body
    );
    assert_eq!(count(&db, "sessions").await, 0);
    let audit = db.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e.starts_with("login.failed|") && e.contains("\"locked\"")),
        "{audit:?}"
    );
    // An unknown username locks the same way (no enumeration through the lockout).
    for _ in 0..3 {
        b.sign_in(&issuer, "nobody", "wrong password!").await;
    }
    let p = b.sign_in(&issuer, "nobody", "wrong password!").await;
    p.assert_status(429);
    // Another user is not affected.
    create_user(&db, "bob", PASSWORD).await;
    let p = Browser::new().sign_in(&issuer, "bob", PASSWORD).await;
    p.assert_status(200);
}

async fn activity_is_written_at_most_once_a_minute(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    let chooser = format!("{issuer}/select-account");
    // 30 s ago: not written again.
    db.rows("UPDATE browser_sessions SET last_seen_at = last_seen_at - 30, expires_at = expires_at - 30 RETURNING id_hash")
        .await;
    db.rows("UPDATE sessions SET idle_expires_at = idle_expires_at - 30 RETURNING sid")
        .await;
    let before = activity(&db).await;
    b.get(&chooser).await.assert_status(200);
    assert_eq!(activity(&db).await, before, "no write within a minute");
    // 61 s ago: written, idle expiries move forward.
    db.rows("UPDATE browser_sessions SET last_seen_at = last_seen_at - 31, expires_at = expires_at - 31 RETURNING id_hash")
        .await;
    let before = activity(&db).await;
    b.get(&chooser).await.assert_status(200);
    let after = activity(&db).await;
    assert_ne!(after, before);
    let parse = |row: &str| -> Vec<i64> { row.split('|').map(|v| v.parse().unwrap()).collect() };
    let (b0, a0) = (parse(&before[0]), parse(&after[0]));
    assert!(
        a0[0] > b0[0] && a0[1] > b0[1] && a0[2] > b0[2],
        "{before:?} -> {after:?}"
    );
}

/// `last_seen_at|expires_at` of the browser and `idle_expires_at` of its account.
async fn activity(db: &TestDb) -> Vec<String> {
    db.rows(
        "SELECT CAST(b.last_seen_at AS TEXT) || '|' || CAST(b.expires_at AS TEXT) || '|' \
         || CAST(s.idle_expires_at AS TEXT) FROM browser_sessions b JOIN sessions s \
         ON s.tenant_id = b.tenant_id AND s.browser_id_hash = b.id_hash",
    )
    .await
}

/// `n` copies of `form` posted at once with the same cookie and `_csrf`, each with the
/// fields `fields(i)`; the statuses.
async fn burst(
    b: &Browser,
    form: &Page,
    n: usize,
    fields: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> Vec<u16> {
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..n {
        let (b, form, fields) = (b.clone(), form.clone(), fields(i));
        posts.spawn(async move {
            let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.submit(&form, &refs).await.status.as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = posts.join_next().await {
        statuses.push(s.unwrap());
    }
    statuses
}

async fn a_parallel_burst_of_guesses_is_checked_at_most_max_failures_times(backend: Backend) {
    use authserver::mfa::totp;

    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    create_user(&db, "bob", PASSWORD).await;
    let _server = fast(db.cli())
        .env("GATEHOUSE_LOGIN_MAX_FAILURES", "3")
        .env("GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP", "1000")
        .serve_in_process(db.port)
        .await;
    let issuer = db.issuer("");
    let failed = |audit: &[String], reason: &str| {
        audit
            .iter()
            .filter(|e| e.starts_with("login.failed|") && e.contains(reason))
            .count()
    };

    // Passwords: 40 guesses at once, one cookie and one _csrf.
    let b = Browser::new();
    let form = b.get(&format!("{issuer}/login")).await;
    let statuses = burst(&b, &form, 40, |i| {
        vec![
            ("username", "alice".to_owned()),
            ("password", format!("guess number {i}")),
        ]
    })
    .await;
    let audit = db.audit().await;
    assert_eq!(failed(&audit, "bad_password"), 3, "{audit:?}");
    assert_eq!(failed(&audit, "\"locked\""), 37, "{audit:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        38,
        "{statuses:?}"
    );
    // Locked: the right password is refused too.
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(429);
    assert_eq!(count(&db, "sessions").await, 0);

    // Second factor: bob's password is right, then 40 code guesses at once.
    let (secret, _) = crate::mfa::enrol(&db, "bob").await;
    let now = crate::harness::jose::now();
    let valid: Vec<String> = (-2..=2)
        .map(|d| secret.code_at_step(totp::step(now) + d))
        .collect();
    let b = Browser::new();
    let p = b.sign_in(&issuer, "bob", PASSWORD).await;
    assert!(p.location().unwrap().ends_with("/login/mfa"), "{}", p.body);
    let form = b.follow(&p).await;
    form.assert_status(200);
    let before = db.audit().await.len();
    let statuses = burst(&b, &form, 40, |i| {
        let mut code = format!("{:06}", 100_000 + i * 7919);
        if valid.contains(&code) {
            code = format!("{:06}", 999_999 - i);
        }
        vec![("totp", code)]
    })
    .await;
    let audit = db.audit().await;
    let mfa_failed = audit[before..]
        .iter()
        .filter(|e| e.starts_with("mfa.failed|"))
        .count();
    assert_eq!(mfa_failed, 3, "{audit:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        38,
        "{statuses:?}"
    );
    let right = b
        .submit(&form, &[("totp", &secret.code_at_step(totp::step(now)))])
        .await;
    right.assert_status(429);
    assert_eq!(count(&db, "sessions").await, 0);
}

async fn tenants_on_one_host_keep_their_own_sessions(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    db.write_config(
        "config.yaml",
        &db.tenant_config(&[("acme", "/t/acme"), ("beta", "/t/beta")]),
    );
    let _server = serve(&db).await;
    for tenant in ["acme", "beta"] {
        fast(db.cli())
            .args([
                "users",
                "create",
                "--tenant",
                tenant,
                "--username",
                "alice",
                "--password-stdin",
            ])
            .stdin(format!("{PASSWORD}\n"))
            .run()
            .await
            .assert_success();
    }
    let (acme, beta) = (db.issuer("/t/acme"), db.issuer("/t/beta"));
    let b = Browser::new();
    let p = b.sign_in(&acme, "alice", PASSWORD).await;
    assert!(p.body.contains("You are signed in"), "{}", p.body);
    // Tenant beta's pages set their own cookie and leave acme's alone.
    let form = b.get(&format!("{beta}/login")).await;
    form.assert_status(200);
    let set = form.set_cookies();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(set[0].starts_with("gatehouse-session-"), "{set:?}");
    let chooser = b.get(&format!("{acme}/select-account")).await;
    chooser.assert_status(200);
    assert!(chooser.body.contains(">alice</button>"), "{}", chooser.body);
    // Signing in at beta too: both tenants keep their account.
    let p = b.sign_in(&beta, "alice", PASSWORD).await;
    assert!(p.body.contains("You are signed in"), "{}", p.body);
    for issuer in [&acme, &beta] {
        let chooser = b.get(&format!("{issuer}/select-account")).await;
        assert!(
            chooser.body.contains(">alice</button>"),
            "{issuer}: {}",
            chooser.body
        );
    }
    assert_eq!(count(&db, "sessions").await, 2);
}

async fn a_hint_whose_sid_is_gone_ends_that_users_accounts_in_this_browser(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    create_user(&db, "bob", PASSWORD).await;
    db.cli()
        .args([
            "clients",
            "create",
            "--id",
            "rp",
            "--redirect-uri",
            "https://rp.example/cb",
            "--post-logout-redirect-uri",
            "https://rp.example/bye",
        ])
        .run()
        .await
        .assert_success();
    let _server = serve(&db).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    let old_sid = db.rows("SELECT sid FROM sessions").await.remove(0);
    let alice = db
        .rows("SELECT user_id FROM users WHERE username = 'alice'")
        .await
        .remove(0);
    // Signing in again replaces the account: the ID token's sid is gone.
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    b.sign_in(&issuer, "bob", PASSWORD).await.assert_status(200);
    assert_eq!(count(&db, "sessions").await, 2);
    // A sub that names no account here: asked first, nothing ended.
    let p = hint_logout(&db, &b, &old_sid, "someone-else").await;
    p.assert_status(200);
    assert!(p.body.contains("name=\"_csrf\""), "{}", p.body);
    assert_eq!(count(&db, "sessions").await, 2);
    // alice's sub: her current account ends, bob's stays.
    let p = hint_logout(&db, &b, &old_sid, &alice).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location().unwrap(), "https://rp.example/bye");
    assert_eq!(
        db.rows("SELECT u.username FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.user_id = s.user_id")
            .await,
        vec!["bob".to_owned()]
    );
}

/// `GET /logout` in `b` with a hint naming `sid` and `sub` for client `rp`.
async fn hint_logout(db: &TestDb, b: &Browser, sid: &str, sub: &str) -> Page {
    let issuer = db.issuer("");
    let now = crate::harness::jose::now();
    let claims = serde_json::json!({
        "iss": issuer, "sub": sub, "aud": "rp", "sid": sid,
        "iat": now - 60, "exp": now + 3600,
    });
    let hint = id_token(db, &claims).await;
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    b.get(&format!(
        "{issuer}/logout?id_token_hint={}&post_logout_redirect_uri={}",
        enc(&hint),
        enc("https://rp.example/bye")
    ))
    .await
}
