//! A password set or a second factor removed by an administrator ends the user's
//! sessions and revokes their refresh tokens (security review, defect 4): whoever held
//! the old credential — the reason for most resets — must not keep a way in. The
//! setting `sessions.revoke_on_credential_reset: false` turns it off.

use reqwest::header;
use serde_json::Value;

use crate::authorize_flow::{CB, PASSWORD, authorize_url, settle};
use crate::client_retirement::tokens_for;
use crate::harness::browser::{Browser, create_user};
use crate::harness::oauth::{Creds, Reply, create_client, field, is_active, post_form, send};
use crate::harness::{Backend, Cli, Server, TestDb};

on_both_backends!(
    setting_a_password_ends_the_users_sessions_and_refresh_tokens,
    resetting_mfa_ends_the_users_sessions_and_refresh_tokens,
    the_revocation_can_be_turned_off,
);

struct Setup {
    db: TestDb,
    server: Server,
    web: Creds,
    rs: Creds,
}

async fn setup(backend: Backend) -> Setup {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    create_user(&db, "bob", PASSWORD).await;
    let web = create_client(
        &db,
        "web",
        &[
            "--redirect-uri",
            CB,
            "--grant-types",
            "authorization_code,refresh_token",
            "--scopes",
            "openid email offline_access",
        ],
    )
    .await;
    let rs = create_client(&db, "rs", &["--introspect-any-token"]).await;
    let server = db.serve_in_process().await;
    Setup {
        db,
        server,
        web,
        rs,
    }
}

fn cli(db: &TestDb) -> Cli {
    db.cli()
        .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", "http://127.0.0.1:1")
        .env("GATEHOUSE_PASSWORDS_HIBP_TIMEOUT_SECONDS", "1")
}

async fn refresh(s: &Setup, token: &str) -> Reply {
    send(
        post_form(
            &s.server,
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .header(header::AUTHORIZATION, s.web.basic()),
    )
    .await
}

/// Alice (signed in, with tokens) and Bob, the bystander.
struct Signed {
    browser: Browser,
    tokens: Value,
}

async fn sign_in(s: &Setup, username: &str) -> Signed {
    let browser = Browser::new();
    browser
        .sign_in(&s.db.issuer(""), username, PASSWORD)
        .await
        .assert_status(200);
    let tokens = tokens_for(&s.server, &s.db, &browser, &s.web).await;
    Signed { browser, tokens }
}

/// Whether the browser still has a signed-in account (the authorize request goes
/// straight to the client instead of the sign-in form).
async fn signed_in(s: &Setup, b: &Browser) -> bool {
    let p = settle(b, b.get(&authorize_url(&s.db, "web", &[])).await).await;
    !p.body.contains("name=\"password\"")
}

async fn assert_ended(s: &Setup, who: &Signed) {
    refresh(s, &field(&who.tokens, "refresh_token"))
        .await
        .assert_error(400, "invalid_grant");
    assert!(!is_active(&s.server, &s.rs, &field(&who.tokens, "access_token")).await);
    assert!(
        !signed_in(s, &who.browser).await,
        "the browser is signed out"
    );
}

async fn assert_alive(s: &Setup, who: &Signed) {
    assert!(is_active(&s.server, &s.rs, &field(&who.tokens, "access_token")).await);
    assert!(signed_in(s, &who.browser).await);
    // Introspected by its own client (a refresh would rotate it).
    assert!(is_active(&s.server, &s.web, &field(&who.tokens, "refresh_token")).await);
}

fn details(audit: &[String], event: &str) -> Value {
    let line = audit
        .iter()
        .rev()
        .find(|e| e.starts_with(&format!("{event}|")))
        .unwrap_or_else(|| panic!("no {event} in {audit:?}"));
    serde_json::from_str(line.splitn(4, '|').nth(3).unwrap()).unwrap()
}

async fn setting_a_password_ends_the_users_sessions_and_refresh_tokens(backend: Backend) {
    let s = setup(backend).await;
    let alice = sign_in(&s, "alice").await;
    let bob = sign_in(&s, "bob").await;
    cli(&s.db)
        .args([
            "users",
            "set-password",
            "--username",
            "alice",
            "--password-stdin",
        ])
        .stdin("a-new-l0ng-passphrase\n")
        .run()
        .await
        .assert_success();
    assert_ended(&s, &alice).await;
    assert_alive(&s, &bob).await;
    let d = details(&s.db.audit().await, "user.password_set");
    assert_eq!(d["sessions_ended"], 1, "{d}");
    assert_eq!(d["grants_revoked"], 1, "{d}");
}

async fn resetting_mfa_ends_the_users_sessions_and_refresh_tokens(backend: Backend) {
    let s = setup(backend).await;
    let alice = sign_in(&s, "alice").await;
    let bob = sign_in(&s, "bob").await;
    crate::mfa::enrol(&s.db, "alice").await;
    cli(&s.db)
        .args(["users", "reset-mfa", "--username", "alice"])
        .run()
        .await
        .assert_success();
    assert_ended(&s, &alice).await;
    assert_alive(&s, &bob).await;
    let d = details(&s.db.audit().await, "mfa.removed");
    assert_eq!(d["sessions_ended"], 1, "{d}");
    // Nothing to remove: nothing ends either.
    let before = s.db.snapshot().await;
    cli(&s.db)
        .args(["users", "reset-mfa", "--username", "bob"])
        .run()
        .await
        .assert_success();
    assert_eq!(s.db.snapshot().await, before);
    assert_alive(&s, &bob).await;
}

async fn the_revocation_can_be_turned_off(backend: Backend) {
    let s = setup(backend).await;
    let alice = sign_in(&s, "alice").await;
    cli(&s.db)
        .env("GATEHOUSE_SESSIONS_REVOKE_ON_CREDENTIAL_RESET", "false")
        .args([
            "users",
            "set-password",
            "--username",
            "alice",
            "--password-stdin",
        ])
        .stdin("a-new-l0ng-passphrase\n")
        .run()
        .await
        .assert_success();
    assert_alive(&s, &alice).await;
}
