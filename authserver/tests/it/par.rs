//! Pushed authorization requests (RFC 9126): the client authenticates, the request is
//! validated exactly like one sent to /authorize, and a single-use `request_uri` comes
//! back. Bad requests get a JSON error and store nothing.

use reqwest::header;
use serde_json::json;

use crate::harness::jose::ClientKey;
use crate::harness::oauth::{Creds, Reply, create_client, post_form, send};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    a_pushed_request_returns_a_single_use_request_uri,
    bad_pushed_requests_are_refused_and_store_nothing,
    a_dpop_proof_at_par_binds_the_request_to_the_key,
);

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "https://app.example.com/cb";

async fn web_client(db: &TestDb) -> Creds {
    create_client(
        db,
        "web",
        &[
            "--grant-types",
            "authorization_code,refresh_token",
            "--redirect-uri",
            REDIRECT,
        ],
    )
    .await
}

fn good_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile"),
        ("state", "af0ifjsldkj"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

async fn push(server: &Server, creds: &Creds, params: &[(&str, &str)]) -> Reply {
    send(post_form(server, "/par", params).header(header::AUTHORIZATION, creds.basic())).await
}

async fn stored(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM authorization_requests")
        .await
}

async fn a_pushed_request_returns_a_single_use_request_uri(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let creds = web_client(&db).await;

    let r = push(&server, &creds, &good_params()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.body.clone();
    let uri = body["request_uri"].as_str().expect("request_uri");
    let handle = uri
        .strip_prefix("urn:ietf:params:oauth:request_uri:")
        .expect("the RFC 9126 URN prefix");
    assert!(handle.len() >= 43, "{uri}");
    assert_eq!(body["expires_in"], 60);

    // Stored once, pushed, by hash only: the handle itself is nowhere in the table.
    let rows = db
        .rows(
            "SELECT id_hash || '|' || client_id || '|' || params FROM authorization_requests \
             WHERE pushed",
        )
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(!rows[0].contains(handle), "{rows:?}");
    assert!(rows[0].contains("|web|"), "{rows:?}");

    // Each push gets its own request_uri.
    let again = push(&server, &creds, &good_params()).await;
    assert_eq!(again.status, 201);
    assert_ne!(again.body["request_uri"], body["request_uri"]);
    assert_eq!(stored(&db).await, 2);
}

async fn bad_pushed_requests_are_refused_and_store_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let creds = web_client(&db).await;

    // No client authentication.
    let r = send(post_form(&server, "/par", &good_params())).await;
    r.assert_error(401, "invalid_client");
    // Wrong secret.
    let r = push(&server, &creds.with_secret(&"x".repeat(43)), &good_params()).await;
    r.assert_error(401, "invalid_client");

    let with = |name: &'static str, value: Option<&'static str>| {
        let mut p = good_params();
        p.retain(|(k, _)| *k != name);
        if let Some(v) = value {
            p.push((name, v));
        }
        p
    };
    let cases = [
        (
            with("redirect_uri", Some("https://evil.example.com/cb")),
            "invalid_request",
        ),
        (
            with("code_challenge_method", Some("plain")),
            "invalid_request",
        ),
        (with("code_challenge", None), "invalid_request"),
        (
            with("response_type", Some("token")),
            "unsupported_response_type",
        ),
        (with("scope", Some("openid admin")), "invalid_scope"),
        (
            with("request_uri", Some("urn:ietf:params:oauth:request_uri:abc")),
            "invalid_request",
        ),
        (with("client_id", Some("someone-else")), "invalid_request"),
    ];
    for (params, code) in cases {
        let r = push(&server, &creds, &params).await;
        r.assert_error(400, code);
        assert!(
            r.body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{params:?}: {:?}",
            r.body
        );
    }
    assert_eq!(stored(&db).await, 0);
}

async fn a_dpop_proof_at_par_binds_the_request_to_the_key(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let creds = web_client(&db).await;
    let key = ClientKey::es256();
    let htu = format!("{}/par", db.issuer(""));

    let proof = key.dpop_proof("POST", &htu, &json!({}), &json!({}));
    let r = send(
        post_form(&server, "/par", &good_params())
            .header(header::AUTHORIZATION, creds.basic())
            .header("DPoP", proof),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let params = db
        .rows("SELECT params FROM authorization_requests")
        .await
        .pop()
        .unwrap();
    let params: serde_json::Value = serde_json::from_str(&params).unwrap();
    assert_eq!(params["dpop_jkt"], key.thumbprint(), "{params}");

    // A dpop_jkt naming another key than the proof's is refused.
    let other = ClientKey::ed25519();
    let proof = key.dpop_proof("POST", &htu, &json!({}), &json!({}));
    let mut p = good_params();
    let jkt = other.thumbprint();
    p.push(("dpop_jkt", &jkt));
    let r = send(
        post_form(&server, "/par", &p)
            .header(header::AUTHORIZATION, creds.basic())
            .header("DPoP", proof),
    )
    .await;
    r.assert_error(400, "invalid_dpop_proof");
    assert_eq!(stored(&db).await, 1);
}
