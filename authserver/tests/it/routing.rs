//! Tenant routing by issuer (host + path prefix) and the headers every response carries.

use reqwest::StatusCode;
use reqwest::header::{
    HeaderMap, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use serde_json::json;

use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    tenants_sharing_a_host_are_routed_by_path_prefix,
    security_headers_are_on_every_response,
);

async fn tenants_sharing_a_host_are_routed_by_path_prefix(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let config = db.write_config(
        "two.yaml",
        &db.tenant_config(&[("a", "/t/a"), ("b", "/t/b")]),
    );
    let server = db
        .cli()
        .args(["--config", &config.display().to_string()])
        .serve_in_process(db.port)
        .await;

    let mut kids = Vec::new();
    for id in ["a", "b"] {
        let issuer = db.issuer(&format!("/t/{id}"));
        let (status, _, doc) = server
            .get_json(&format!("/t/{id}/.well-known/openid-configuration"))
            .await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert_eq!(doc["issuer"], issuer.as_str());
        assert_eq!(doc["jwks_uri"], format!("{issuer}/jwks"));
        let tenant_kids = server.kids(&format!("/t/{id}/jwks")).await;
        assert_eq!(tenant_kids.len(), 3);
        kids.push(tenant_kids);
    }
    assert!(
        kids[0].iter().all(|k| !kids[1].contains(k)),
        "tenants never share keys"
    );

    for path in [
        "/t/c/.well-known/openid-configuration",
        "/t/ab/.well-known/openid-configuration",
        "/.well-known/openid-configuration",
        "/t/a/no-such-endpoint",
    ] {
        let (status, _, body) = server.get_json(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body, json!({"error": "not_found"}), "{path}");
    }
    let r = server
        .get_with_host("/t/a/.well-known/openid-configuration", "other.example")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "unknown host");
}

fn assert_security_headers(what: &str, h: &HeaderMap, hsts: bool) {
    assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    assert_eq!(h[X_FRAME_OPTIONS], "DENY", "{what}");
    assert_eq!(h[REFERRER_POLICY], "no-referrer", "{what}");
    match h.get(STRICT_TRANSPORT_SECURITY) {
        Some(v) if hsts => assert!(v.to_str().unwrap().starts_with("max-age="), "{what}"),
        None if !hsts => {}
        other => panic!("{what}: Strict-Transport-Security {other:?}, expected: {hsts}"),
    }
}

async fn security_headers_are_on_every_response(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    // A second tenant with an https issuer. Without a trusted proxy the scheme of a
    // request is unknown, so it is reached directly by its Host header.
    let yaml = format!(
        "{}  - id: secure\n    issuer: https://secure.example.com\n",
        db.tenant_config(&[("main", "")])
    );
    let config = db.write_config("https.yaml", &yaml);
    let server: Server = db
        .cli()
        .args(["--config", &config.display().to_string()])
        .serve_in_process(db.port)
        .await;

    for (path, status) in [
        ("/healthz", StatusCode::OK),
        ("/readyz", StatusCode::OK),
        ("/metrics", StatusCode::OK),
        ("/.well-known/openid-configuration", StatusCode::OK),
        ("/jwks", StatusCode::OK),
        ("/no-such-endpoint", StatusCode::NOT_FOUND),
    ] {
        let r = server.get(path).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_security_headers(path, r.headers(), false);
    }
    let r = server
        .get_with_host("/nowhere", "unknown.example")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_security_headers("unknown host", r.headers(), false);

    for (path, status) in [
        ("/.well-known/openid-configuration", StatusCode::OK),
        ("/jwks", StatusCode::OK),
        ("/no-such-endpoint", StatusCode::NOT_FOUND),
    ] {
        let r = server
            .get_with_host(path, "secure.example.com")
            .await
            .unwrap();
        assert_eq!(r.status(), status, "https tenant {path}");
        assert_security_headers(&format!("https tenant {path}"), r.headers(), true);
        if status == StatusCode::OK && path.ends_with("configuration") {
            let doc: serde_json::Value = r.json().await.unwrap();
            assert_eq!(doc["issuer"], "https://secure.example.com");
        }
    }
}
