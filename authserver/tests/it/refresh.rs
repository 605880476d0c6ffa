//! The refresh_token grant: rotation on every use, reuse detection revoking the family,
//! scope narrowing, client binding, DPoP-bound refresh tokens of public clients, and
//! revocation (RFC 7009) of a refresh token revoking its grant.

use jsonwebtoken::Algorithm;
use reqwest::header;
use serde_json::{Value, json};

use crate::code_grant::{
    Plant, create_user, plant_code, redeem, sha256_hex, verify_id_token, web_client,
};
use crate::harness::jose::ClientKey;
use crate::harness::oauth::{Creds, Reply, create_client, is_active, post_form, revoke, send};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    refresh_tokens_rotate_and_keep_the_identity,
    a_reused_refresh_token_revokes_the_family,
    scope_and_client_checks_change_nothing,
    public_clients_get_dpop_bound_refresh_tokens,
    revoking_a_refresh_token_revokes_its_grant,
    concurrent_uses_of_one_refresh_token_are_reuse,
);

async fn refresh(server: &Server, creds: &Creds, token: &str, extra: &[(&str, &str)]) -> Reply {
    let mut params = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    params.extend_from_slice(extra);
    let req = if creds.secret.is_some() {
        post_form(server, "/token", &params).header(header::AUTHORIZATION, creds.basic())
    } else {
        params.push(("client_id", &creds.id));
        post_form(server, "/token", &params)
    };
    send(req).await
}

/// Redeems a fresh code of `creds` for `alice` with `scope`; returns the token response.
async fn tokens(db: &TestDb, server: &Server, creds: &Creds, alice: &str, scope: &str) -> Value {
    let code = plant_code(db, &Plant::new(&creds.id, alice, scope)).await;
    redeem(server, creds, &code, &[]).await.ok().clone()
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_owned()
}

async fn refresh_tokens_rotate_and_keep_the_identity(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &["--refresh-token-lifetime", "3600"]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let first = tokens(&db, &server, &web, &alice, "openid profile offline_access").await;
    let first_id = verify_id_token(
        &server,
        &s(&first, "id_token"),
        Algorithm::RS256,
        &issuer,
        "web",
    )
    .await;

    let second = refresh(&server, &web, &s(&first, "refresh_token"), &[])
        .await
        .ok()
        .clone();
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(second["scope"], "openid profile offline_access");
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    let id = verify_id_token(
        &server,
        &s(&second, "id_token"),
        Algorithm::RS256,
        &issuer,
        "web",
    )
    .await;
    assert_eq!(id["sub"], first_id["sub"]);
    assert_eq!(id["auth_time"], first_id["auth_time"]);
    assert_eq!(id["sid"], first_id["sid"]);
    assert!(id.get("nonce").is_none(), "no nonce on refresh: {id}");
    assert_eq!(id["preferred_username"], "alice");
    // Old token rotated, new one live; sliding expiry is the client's lifetime, capped
    // by the grant.
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM refresh_tokens WHERE token_hash = '{}' AND rotated_at IS NOT NULL",
            sha256_hex(&s(&first, "refresh_token"))
        ))
        .await,
        1
    );
    let life = db
        .scalar(&format!(
            "SELECT r.expires_at - r.created_at FROM refresh_tokens r WHERE token_hash = '{}'",
            sha256_hex(&s(&second, "refresh_token"))
        ))
        .await;
    assert_eq!(life, 3600);
    assert!(is_active(&server, &web, &s(&second, "refresh_token")).await);
    assert!(!is_active(&server, &web, &s(&first, "refresh_token")).await);
    // Narrowing.
    let third = refresh(
        &server,
        &web,
        &s(&second, "refresh_token"),
        &[("scope", "openid")],
    )
    .await
    .ok()
    .clone();
    assert_eq!(third["scope"], "openid");
    let id = verify_id_token(
        &server,
        &s(&third, "id_token"),
        Algorithm::RS256,
        &issuer,
        "web",
    )
    .await;
    assert!(id.get("preferred_username").is_none(), "{id}");
    // The grant keeps its scope: the next refresh may ask for all of it again.
    let fourth = refresh(&server, &web, &s(&third, "refresh_token"), &[])
        .await
        .ok()
        .clone();
    assert_eq!(fourth["scope"], "openid profile offline_access");

    // A client set to refresh without offline_access gets a refresh token anyway.
    let always = web_client(&db, "always", &["--refresh-without-offline-access"]).await;
    drop(server);
    let server = db.serve_in_process().await;
    let t = tokens(&db, &server, &always, &alice, "openid").await;
    assert!(t.get("refresh_token").is_some(), "{t}");
    let t = tokens(&db, &server, &web, &alice, "openid").await;
    assert!(t.get("refresh_token").is_none(), "{t}");
}

async fn a_reused_refresh_token_revokes_the_family(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let first = tokens(&db, &server, &web, &alice, "openid offline_access").await;
    let second = refresh(&server, &web, &s(&first, "refresh_token"), &[])
        .await
        .ok()
        .clone();
    // An attacker replays the first (rotated) token.
    refresh(&server, &web, &s(&first, "refresh_token"), &[])
        .await
        .assert_error(400, "invalid_grant");
    // Everything of the family is dead, the legitimate holder's newest token included.
    refresh(&server, &web, &s(&second, "refresh_token"), &[])
        .await
        .assert_error(400, "invalid_grant");
    for t in ["access_token", "refresh_token"] {
        assert!(!is_active(&server, &web, &s(&first, t)).await, "first {t}");
        assert!(
            !is_active(&server, &web, &s(&second, t)).await,
            "second {t}"
        );
    }
    let audit = db.audit().await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.starts_with(&format!("refresh_token.reuse_detected|web|{alice}|")))
            .count(),
        1,
        "{audit:?}"
    );
    // Other grants of the same user are untouched.
    let other = tokens(&db, &server, &web, &alice, "openid offline_access").await;
    refresh(&server, &web, &s(&other, "refresh_token"), &[])
        .await
        .ok();
}

async fn state(db: &TestDb) -> Vec<String> {
    let mut rows = db
        .rows(
            "SELECT token_hash || '|' || coalesce(CAST(rotated_at AS TEXT), '-') FROM refresh_tokens",
        )
        .await;
    rows.extend(
        db.rows("SELECT grant_id || '|' || coalesce(CAST(revoked_at AS TEXT), '-') FROM grants")
            .await,
    );
    rows.extend(db.rows("SELECT jti FROM grant_access_tokens").await);
    rows.extend(db.snapshot().await);
    rows.sort();
    rows
}

async fn scope_and_client_checks_change_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let other = web_client(&db, "other", &[]).await;
    let machine = create_client(&db, "machine", &["--scopes", "read"]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let t = tokens(&db, &server, &web, &alice, "openid offline_access").await;
    let token = s(&t, "refresh_token");
    let before = state(&db).await;
    refresh(&server, &web, &token, &[("scope", "openid profile")])
        .await
        .assert_error(400, "invalid_scope");
    refresh(&server, &other, &token, &[])
        .await
        .assert_error(400, "invalid_grant");
    refresh(&server, &machine, &token, &[])
        .await
        .assert_error(400, "unauthorized_client");
    refresh(&server, &web, "garbage", &[])
        .await
        .assert_error(400, "invalid_grant");
    // Another client cannot see or revoke it either.
    assert!(!is_active(&server, &other, &token).await);
    revoke(
        &server,
        &other,
        &token,
        &[("token_type_hint", "refresh_token")],
    )
    .await
    .ok();
    assert_eq!(state(&db).await, before, "nothing changed");
    refresh(&server, &web, &token, &[]).await.ok();
}

async fn public_clients_get_dpop_bound_refresh_tokens(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_client(
        &db,
        "spa",
        &[
            "--public",
            "--redirect-uri",
            crate::code_grant::REDIRECT,
            "--grant-types",
            "authorization_code,refresh_token",
            "--scopes",
            "openid offline_access",
        ],
    )
    .await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let htu = db.issuer("/token");
    let key = ClientKey::es256();
    let proof = || key.dpop_proof("POST", &htu, &json!({}), &json!({}));
    let code = plant_code(&db, &Plant::new("spa", &alice, "openid offline_access")).await;
    let r = send(
        post_form(
            &server,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", crate::code_grant::REDIRECT),
                ("code_verifier", crate::code_grant::VERIFIER),
                ("client_id", "spa"),
            ],
        )
        .header("DPoP", proof()),
    )
    .await;
    let body = r.ok().clone();
    assert_eq!(body["token_type"], "DPoP");
    let token = s(&body, "refresh_token");
    let with_proof = |p: Option<String>, t: String| {
        let mut req = post_form(
            &server,
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &t),
                ("client_id", "spa"),
            ],
        );
        if let Some(p) = p {
            req = req.header("DPoP", p);
        }
        send(req)
    };
    with_proof(None, token.clone())
        .await
        .assert_error(400, "invalid_dpop_proof");
    let other_key = ClientKey::es256();
    with_proof(
        Some(other_key.dpop_proof("POST", &htu, &json!({}), &json!({}))),
        token.clone(),
    )
    .await
    .assert_error(400, "invalid_grant");
    let r = with_proof(Some(proof()), token.clone()).await;
    let next = r.ok().clone();
    assert_eq!(next["token_type"], "DPoP");
    // Still bound after rotation.
    with_proof(None, s(&next, "refresh_token"))
        .await
        .assert_error(400, "invalid_dpop_proof");
    with_proof(Some(proof()), s(&next, "refresh_token"))
        .await
        .ok();
}

async fn revoking_a_refresh_token_revokes_its_grant(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let t = tokens(&db, &server, &web, &alice, "openid offline_access").await;
    let second = refresh(&server, &web, &s(&t, "refresh_token"), &[])
        .await
        .ok()
        .clone();
    assert!(is_active(&server, &web, &s(&t, "access_token")).await);
    let r = revoke(
        &server,
        &web,
        &s(&second, "refresh_token"),
        &[("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{r:?}");
    for body in [&t, &second] {
        assert!(!is_active(&server, &web, &s(body, "access_token")).await);
        assert!(!is_active(&server, &web, &s(body, "refresh_token")).await);
    }
    refresh(&server, &web, &s(&second, "refresh_token"), &[])
        .await
        .assert_error(400, "invalid_grant");
    // Without a hint too.
    let t = tokens(&db, &server, &web, &alice, "openid offline_access").await;
    revoke(&server, &web, &s(&t, "refresh_token"), &[]).await;
    assert!(!is_active(&server, &web, &s(&t, "access_token")).await);
}

async fn concurrent_uses_of_one_refresh_token_are_reuse(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    for _ in 0..3 {
        let t = tokens(&db, &server, &web, &alice, "openid offline_access").await;
        let token = s(&t, "refresh_token");
        let (a, b) = tokio::join!(
            refresh(&server, &web, &token, &[]),
            refresh(&server, &web, &token, &[])
        );
        let (won, lost) = if a.status == reqwest::StatusCode::OK {
            (a, b)
        } else {
            (b, a)
        };
        let next = won.ok().clone();
        lost.assert_error(400, "invalid_grant");
        for k in ["access_token", "refresh_token"] {
            assert!(!is_active(&server, &web, &s(&next, k)).await, "{k}");
        }
    }
    let audit = db.audit().await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.starts_with("refresh_token.reuse_detected|"))
            .count(),
        3,
        "{audit:?}"
    );
}
