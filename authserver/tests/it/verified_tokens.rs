//! The cache of verified access tokens (`oauth::verified`): a token introspected before
//! is answered from memory, and every way a token stops being active reaches the cache —
//! this process's revocations at once, another process's (another pod, the CLI, an
//! operator's SQL) within a second through the change feed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::code_grant::{Plant, create_user, plant_code, redeem, web_client};
use crate::harness::jose::unb64url;
use crate::harness::oauth::{
    Creds, access_token, create_client, introspect, is_active, post_form, send,
};
use crate::harness::{Backend, POLL, Server, TestDb};

/// Another process's revocation must reach this pod's cache within this.
const WITHIN: Duration = Duration::from_secs(1);

on_both_backends!(
    a_token_seen_before_is_answered_from_the_cache,
    another_processes_revocations_reach_the_cache_within_a_second,
    this_processes_revocations_reach_the_cache_at_once,
);

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn lookups(server: &Server) -> (f64, f64) {
    let text = server.get_text("/metrics").await;
    (
        sample(
            &text,
            "gatehouse_verified_token_cache_lookups_total{result=\"hit\"}",
        ),
        sample(
            &text,
            "gatehouse_verified_token_cache_lookups_total{result=\"miss\"}",
        ),
    )
}

fn claim(token: &str, name: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWS");
    let claims: Value = serde_json::from_slice(&unb64url(payload)).expect("JSON claims");
    claims[name].clone()
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_owned()
}

/// `grant_type=refresh_token` with `token`, as the confidential client `web`.
async fn refresh(server: &Server, web: &Creds, token: &str) -> crate::harness::oauth::Reply {
    send(
        post_form(
            server,
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .header(reqwest::header::AUTHORIZATION, web.basic()),
    )
    .await
}

/// A user's tokens from a planted code (`openid offline_access`).
async fn user_tokens(db: &TestDb, server: &Server, web: &Creds, user: &str) -> Value {
    let code = plant_code(db, &Plant::new(&web.id, user, "openid offline_access")).await;
    redeem(server, web, &code, &[]).await.ok().clone()
}

/// Introspects `token` until it is inactive; how long that took (panics after `WITHIN`).
pub async fn inactive_within(server: &Server, rs: &Creds, token: &str, what: &str) -> Duration {
    let start = Instant::now();
    while is_active(server, rs, token).await {
        assert!(
            start.elapsed() < WITHIN,
            "{what}: token still active after {WITHIN:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let took = start.elapsed();
    println!("{what}: inactive after {} ms", took.as_millis());
    took
}

async fn a_token_seen_before_is_answered_from_the_cache(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let app = create_client(&db, "app", &[]).await;
    let access = access_token(&server, &app).await;
    let first = introspect(&server, &app, &access).await.ok().clone();
    let (hits, misses) = lookups(&server).await;
    assert_eq!((hits, misses), (0.0, 1.0));
    // The same answer, from memory.
    for _ in 0..3 {
        assert_eq!(introspect(&server, &app, &access).await.ok(), &first);
    }
    assert_eq!(lookups(&server).await, (3.0, 1.0));
    // A tampered copy is another key: verified afresh, and refused.
    let mut tampered = access.clone();
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(!is_active(&server, &app, &tampered).await);
    // Only active tokens are kept: the refused one misses again.
    assert!(!is_active(&server, &app, &tampered).await);
    assert_eq!(lookups(&server).await, (3.0, 3.0));
    // Who may see the answer is decided per caller, also for a cached token.
    let other = create_client(&db, "other", &[]).await;
    assert_eq!(
        introspect(&server, &other, &access).await.ok(),
        &serde_json::json!({ "active": false })
    );
}

async fn another_processes_revocations_reach_the_cache_within_a_second(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let rs = create_client(&db, "api", &["--introspect-any-token"]).await;
    let app = create_client(&db, "app", &[]).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let bob = create_user(&db, "bob").await;

    // A denylisted access token (another pod's /revoke).
    let machine = access_token(&server, &app).await;
    assert!(is_active(&server, &rs, &machine).await);
    assert!(is_active(&server, &rs, &machine).await);
    db.execute(&format!(
        "INSERT INTO revoked_tokens (tenant_id, jti, expires_at, revoked_at) \
         VALUES ('main', '{}', {}, 0)",
        claim(&machine, "jti").as_str().expect("jti"),
        claim(&machine, "exp").as_i64().expect("exp"),
    ))
    .await;
    inactive_within(&server, &rs, &machine, "denylisted by another process").await;

    // A revoked grant (another pod's refresh-token reuse detection, consent revocation).
    let t = user_tokens(&db, &server, &web, &alice).await;
    let access = s(&t, "access_token");
    assert!(is_active(&server, &rs, &access).await);
    assert!(is_active(&server, &rs, &access).await);
    db.execute(&format!(
        "UPDATE grants SET revoked_at = 1 WHERE user_id = '{alice}'"
    ))
    .await;
    inactive_within(&server, &rs, &access, "grant revoked by another process").await;

    // A deleted user: the grant goes with it (ON DELETE CASCADE).
    let t = user_tokens(&db, &server, &web, &bob).await;
    let access = s(&t, "access_token");
    assert!(is_active(&server, &rs, &access).await);
    assert!(is_active(&server, &rs, &access).await);
    let out = db
        .cli()
        .args(["users", "delete", "--username", "bob"])
        .run()
        .await;
    assert!(out.status.success(), "{out:?}");
    inactive_within(&server, &rs, &access, "user deleted by the CLI").await;

    // A deleted client (its tokens die with it).
    let machine = access_token(&server, &app).await;
    assert!(is_active(&server, &rs, &machine).await);
    assert!(is_active(&server, &rs, &machine).await);
    let out = db
        .cli()
        .args(["clients", "delete", "--id", "app"])
        .run()
        .await;
    assert!(out.status.success(), "{out:?}");
    inactive_within(&server, &rs, &machine, "client deleted by the CLI").await;
}

async fn this_processes_revocations_reach_the_cache_at_once(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let rs = create_client(&db, "api", &["--introspect-any-token"]).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;

    // Reuse of a rotated refresh token revokes the family: its access tokens, seen
    // (and cached) before, are inactive in the very next request.
    let first = user_tokens(&db, &server, &web, &alice).await;
    let rotated = refresh(&server, &web, &s(&first, "refresh_token"))
        .await
        .ok()
        .clone();
    for t in [&first, &rotated] {
        assert!(is_active(&server, &rs, &s(t, "access_token")).await);
        assert!(is_active(&server, &rs, &s(t, "access_token")).await);
    }
    refresh(&server, &web, &s(&first, "refresh_token"))
        .await
        .assert_error(400, "invalid_grant");
    for t in [&first, &rotated] {
        assert!(
            !is_active(&server, &rs, &s(t, "access_token")).await,
            "a revoked family's access token is served from the cache"
        );
    }

    // Revoking the refresh token (RFC 7009) revokes the grant: at once as well.
    let t = user_tokens(&db, &server, &web, &alice).await;
    let access = s(&t, "access_token");
    assert!(is_active(&server, &rs, &access).await);
    assert!(is_active(&server, &rs, &access).await);
    let r = send(
        post_form(&server, "/revoke", &[("token", &s(&t, "refresh_token"))])
            .header(reqwest::header::AUTHORIZATION, web.basic()),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!is_active(&server, &rs, &access).await);
}
