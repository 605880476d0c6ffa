//! private_key_jwt client authentication (RFC 7523): assertions signed by the client's
//! key, found in a JWK Set registered inline (admin API) or at a `jwks_uri` (a tiny HTTP
//! server in the test); single-use `jti`, bounded `exp`, `aud` = token endpoint or issuer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::harness::admin::{machine_spec, serve_with_admin, upsert};
use crate::harness::jose::{ClientKey, now};
use crate::harness::oauth::{Reply, create_client, post_form, send, verify_access_token};
use crate::harness::{Backend, Server, TestDb};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

on_both_backends!(
    assertions_against_an_inline_jwks_are_single_use_and_bounded,
    assertions_against_a_jwks_uri_verify_with_the_published_key,
    a_huge_or_internal_jwks_uri_costs_the_server_nothing,
    the_token_endpoint_as_audience_needs_the_compatibility_setting,
);

async fn with_assertion(server: &Server, assertion: &str, extra: &[(&str, &str)]) -> Reply {
    let mut params = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    params.extend_from_slice(extra);
    send(post_form(server, "/token", &params)).await
}

#[allow(clippy::too_many_lines)] // one case per RFC 7523 §3 check
async fn assertions_against_an_inline_jwks_are_single_use_and_bounded(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (server, mut admin) = serve_with_admin(&db).await;
    let issuer = db.issuer("");
    let token_endpoint = format!("{issuer}/token");
    let key = ClientKey::es256();
    let registered = upsert(
        &mut admin,
        authserver::admin::proto::ClientSpec {
            token_endpoint_auth_method: "private_key_jwt".to_owned(),
            jwks_json: Some(key.jwks().to_string()),
            ..machine_spec("signer")
        },
    )
    .await;
    crate::harness::admin::assert_upsert_outcome(&registered, "created");
    assert_eq!(
        registered.generated_secret, None,
        "no secret for private_key_jwt"
    );

    // aud is the issuer (alone or in a list); client_id may accompany the assertion.
    let first = key.assertion("signer", &issuer, &json!({}));
    let r = with_assertion(&server, &first, &[]).await;
    let claims = verify_access_token(
        &server,
        r.ok()["access_token"].as_str().unwrap(),
        Algorithm::ES256,
        &issuer,
        "signer",
    )
    .await;
    assert_eq!(claims["sub"], "signer");
    for aud in [json!(issuer), json!(["https://elsewhere.example", issuer])] {
        let a = key.assertion("signer", "", &json!({ "aud": aud }));
        with_assertion(&server, &a, &[("client_id", "signer")])
            .await
            .ok();
    }
    // Just inside the lifetime bound (300 s) is fine.
    let a = key.assertion("signer", &issuer, &json!({ "exp": now() + 290 }));
    with_assertion(&server, &a, &[]).await.ok();

    let before = db.snapshot().await;
    let audit_before = db.audit().await.len();
    let other = ClientKey::es256();
    // Signed by another key under the registered key's kid.
    let forged = other.sign(
        &json!({ "typ": "JWT", "kid": key.kid }),
        &json!({ "iss": "signer", "sub": "signer", "aud": issuer,
            "jti": "forged", "iat": now(), "exp": now() + 60 }),
    );
    let tampered = {
        let mut parts: Vec<String> = key
            .assertion("signer", &token_endpoint, &json!({}))
            .split('.')
            .map(str::to_owned)
            .collect();
        let claims = json!({ "iss": "signer", "sub": "signer", "aud": issuer,
            "jti": "tampered", "exp": now() + 60 });
        parts[1] = crate::harness::jose::b64url(claims.to_string().as_bytes());
        parts.join(".")
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("replayed assertion", first.clone(), "replayed_assertion"),
        (
            "wrong aud",
            key.assertion("signer", "https://other.example/token", &json!({})),
            "bad_assertion",
        ),
        (
            // Audience injection (2025): only the issuer is accepted by default.
            "the token endpoint as aud",
            key.assertion("signer", &token_endpoint, &json!({})),
            "bad_assertion",
        ),
        (
            "expired",
            key.assertion(
                "signer",
                &token_endpoint,
                &json!({ "iat": now() - 600, "exp": now() - 120 }),
            ),
            "bad_assertion",
        ),
        (
            "exp more than 300 s ahead",
            key.assertion("signer", &issuer, &json!({ "exp": now() + 900 })),
            "bad_assertion",
        ),
        ("signed by another key", forged, "bad_assertion"),
        ("claims changed after signing", tampered, "bad_assertion"),
        (
            "no jti",
            key.assertion("signer", &issuer, &json!({ "jti": null })),
            "bad_assertion",
        ),
        (
            "iss differs from sub",
            key.assertion("signer", &issuer, &json!({ "iss": "someone" })),
            "bad_assertion",
        ),
    ];
    for (name, assertion, _) in &cases {
        let r = with_assertion(&server, assertion, &[]).await;
        r.assert_invalid_client();
        assert_eq!(db.snapshot().await, before, "{name} changed the database");
    }
    let audit = db.audit().await;
    let reasons: Vec<String> = audit[audit_before..]
        .iter()
        .map(|row| {
            let parts: Vec<&str> = row.splitn(4, '|').collect();
            assert_eq!(
                &parts[..3],
                ["client.auth_failed", "signer", "signer"],
                "{row}"
            );
            let details: Value = serde_json::from_str(parts[3]).unwrap();
            details["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected: Vec<&str> = cases.iter().map(|c| c.2).collect();
    assert_eq!(reasons, expected);

    // The assertion's key is the client's only credential: a Basic client cannot use one.
    let basic = upsert(&mut admin, machine_spec("basic")).await;
    assert!(basic.generated_secret.is_some());
    let a = key.assertion("basic", &issuer, &json!({}));
    with_assertion(&server, &a, &[])
        .await
        .assert_invalid_client();
}

/// Serves `GET /jwks.json` from `jwks`, counting fetches.
async fn jwks_server(jwks: Value) -> (u16, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetches);
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(jwks)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, fetches)
}

async fn assertions_against_a_jwks_uri_verify_with_the_published_key(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let key = ClientKey::ed25519();
    let (port, fetches) = jwks_server(key.jwks()).await;
    let jwks_uri = format!("http://127.0.0.1:{port}/jwks.json");
    let creds = create_client(
        &db,
        "remote-keys",
        &["--auth-method", "private_key_jwt", "--jwks-uri", &jwks_uri],
    )
    .await;
    assert_eq!(creds.secret, None, "no secret for private_key_jwt");

    for _ in 0..3 {
        let a = key.assertion("remote-keys", &issuer, &json!({}));
        let r = with_assertion(&server, &a, &[]).await;
        let token = r.ok()["access_token"].as_str().unwrap().to_owned();
        let claims =
            verify_access_token(&server, &token, Algorithm::ES256, &issuer, "remote-keys").await;
        assert_eq!(claims["client_id"], "remote-keys");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "the key set is cached");

    let before = db.snapshot().await;
    let stranger = ClientKey::ed25519();
    let a = stranger.assertion("remote-keys", &issuer, &json!({}));
    with_assertion(&server, &a, &[])
        .await
        .assert_invalid_client();
    assert_eq!(db.snapshot().await, before);
}

/// A server that answers every request with an endless body, counting requests and the
/// bytes it managed to write before the reader hung up.
async fn endless_server() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (hits, written) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h, w) = (Arc::clone(&hits), Arc::clone(&written));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (h, w) = (Arc::clone(&h), Arc::clone(&w));
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                h.fetch_add(1, Ordering::SeqCst);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"keys\":[\"";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'A'; 64 * 1024];
                // 400 MiB at most, as in the report.
                for _ in 0..6400 {
                    if sock.write_all(&chunk).await.is_err() {
                        return;
                    }
                    w.fetch_add(chunk.len(), Ordering::SeqCst);
                }
            });
        }
    });
    (port, hits, written)
}

/// Security review, defect 3: a `jwks_uri` that streams 400 MiB raised the server's RSS
/// by 800 MiB on one unauthenticated request, and every request fetched (twice). Now the
/// body is cut off at 256 KiB, the failure is remembered (one fetch for many requests),
/// and a `jwks_uri` on an internal address is never contacted.
async fn a_huge_or_internal_jwks_uri_costs_the_server_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let issuer = db.issuer("");
    let (port, hits, written) = endless_server().await;
    create_client(
        &db,
        "hoarder",
        &[
            "--auth-method",
            "private_key_jwt",
            "--jwks-uri",
            &format!("http://127.0.0.1:{port}/jwks.json"),
        ],
    )
    .await;
    create_client(
        &db,
        "metadata",
        &[
            "--auth-method",
            "private_key_jwt",
            "--jwks-uri",
            "https://169.254.169.254/latest/meta-data/jwks.json",
        ],
    )
    .await;
    let before = db.snapshot().await;
    let dummy = ClientKey::es256();
    for _ in 0..3 {
        let a = dummy.assertion("hoarder", &issuer, &json!({}));
        with_assertion(&server, &a, &[])
            .await
            .assert_invalid_client();
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch, then the failure is remembered"
    );
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent < 16 * 1024 * 1024,
        "the server read {sent} bytes before hanging up (cap 256 KiB plus socket buffers)"
    );
    let a = dummy.assertion("metadata", &issuer, &json!({}));
    with_assertion(&server, &a, &[])
        .await
        .assert_invalid_client();
    // The refusal is logged.
    server.logs_with("is not allowed").await;
    assert_eq!(db.snapshot().await, before, "nothing was stored");
    let health = server
        .get("/.well-known/openid-configuration")
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the server stays healthy");
}

/// `tokens.client_assertion_accept_endpoint_audience: true` lets a client library that
/// can only name the token endpoint authenticate; the issuer keeps working.
async fn the_token_endpoint_as_audience_needs_the_compatibility_setting(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let admin_port = crate::harness::free_port();
    let server = crate::harness::admin::admin_cli(&db, admin_port)
        .env(
            "GATEHOUSE_TOKENS_CLIENT_ASSERTION_ACCEPT_ENDPOINT_AUDIENCE",
            "true",
        )
        .serve(db.port)
        .await;
    let mut admin = crate::harness::admin::connect(admin_port).await;
    let issuer = db.issuer("");
    let key = ClientKey::es256();
    upsert(
        &mut admin,
        authserver::admin::proto::ClientSpec {
            token_endpoint_auth_method: "private_key_jwt".to_owned(),
            jwks_json: Some(key.jwks().to_string()),
            ..machine_spec("legacy")
        },
    )
    .await;
    for aud in [format!("{issuer}/token"), issuer.clone()] {
        let a = key.assertion("legacy", &aud, &json!({}));
        with_assertion(&server, &a, &[]).await.ok();
    }
}
