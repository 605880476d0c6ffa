//! Introspection (RFC 7662) and revocation (RFC 7009): active tokens are described,
//! every inactive one — expired, revoked, malformed, another tenant's, tampered, of a
//! deleted client — gets `{"active":false}` and nothing else; only authenticated
//! clients may ask; revocation of unknown or foreign tokens succeeds without effect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::harness::jose::{b64url, now, unb64url};
use crate::harness::oauth::{
    Creds, access_token, create_client, introspect, is_active, post_form, revoke, send, token,
};
use crate::harness::{Backend, POLL, Server, TestDb};

on_both_backends!(
    introspection_describes_an_active_token,
    inactive_tokens_get_active_false_and_nothing_else,
    revocation_follows_rfc_7009,
    only_the_tokens_client_its_audience_and_trusted_resource_servers_may_introspect,
);

/// Security review, defect 6: any confidential client could introspect any client's
/// tokens. Now a token is described only to its own client, to a client its `aud`
/// names, and to clients registered with `--introspect-any-token`; everyone else gets
/// `{"active":false}`, exactly what an unknown token gets.
async fn only_the_tokens_client_its_audience_and_trusted_resource_servers_may_introspect(
    backend: Backend,
) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let app = create_client(&db, "app", &["--audiences", "orders urn:other"]).await;
    let orders = create_client(&db, "orders", &[]).await;
    let intruder = create_client(&db, "intruder", &[]).await;
    let trusted = create_client(&db, "gateway", &["--introspect-any-token"]).await;
    let r = token(&server, &app, &[("resource", "orders")]).await;
    let for_orders = r.ok()["access_token"].as_str().unwrap().to_owned();
    let r = token(&server, &app, &[("resource", "urn:other")]).await;
    let for_other = r.ok()["access_token"].as_str().unwrap().to_owned();

    let before = db.snapshot().await;
    assert!(
        is_active(&server, &app, &for_orders).await,
        "its own client"
    );
    assert!(
        is_active(&server, &orders, &for_orders).await,
        "its audience"
    );
    assert!(
        is_active(&server, &trusted, &for_orders).await,
        "a trusted introspector"
    );
    assert!(is_active(&server, &trusted, &for_other).await);
    for (caller, token) in [(&intruder, &for_orders), (&orders, &for_other)] {
        let r = introspect(&server, caller, token).await;
        assert_eq!(
            r.ok(),
            &json!({ "active": false }),
            "{} learnt about it",
            caller.id
        );
    }
    assert_eq!(db.snapshot().await, before, "introspection changes nothing");
}

/// Tenants `main` (issuer at the root) and `other` (under `/t/other`) on one server.
async fn two_tenants(backend: Backend) -> (TestDb, Server) {
    let db = TestDb::migrated(backend).await;
    db.write_config(
        "config.yaml",
        &db.tenant_config(&[("main", ""), ("other", "/t/other")]),
    );
    let server = db.serve_in_process().await;
    (db, server)
}

async fn introspection_describes_an_active_token(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let app = create_client(
        &db,
        "app",
        &["--scopes", "read write", "--audiences", "urn:api"],
    )
    .await;
    let rs = create_client(
        &db,
        "api",
        &[
            "--auth-method",
            "client_secret_post",
            "--introspect-any-token",
        ],
    )
    .await;
    let r = token(&server, &app, &[("scope", "read"), ("resource", "urn:api")]).await;
    let access = r.ok()["access_token"].as_str().unwrap().to_owned();

    // The resource server authenticates with client_secret_post, as registered.
    let r = send(post_form(
        &server,
        "/introspect",
        &[
            ("token", &access),
            ("token_type_hint", "access_token"),
            ("client_id", &rs.id),
            ("client_secret", rs.secret()),
        ],
    ))
    .await;
    let body = r.ok().clone();
    let iat = body["iat"].as_i64().expect("iat");
    assert!((now() - 30..=now() + 5).contains(&iat), "{body}");
    let jti = body["jti"].as_str().expect("jti").to_owned();
    assert_eq!(
        body,
        json!({
            "active": true,
            "scope": "read",
            "client_id": "app",
            "sub": "app",
            "aud": "urn:api",
            "iss": db.issuer(""),
            "iat": iat,
            "exp": iat + 600,
            "jti": jti,
            "token_type": "Bearer",
        })
    );
}

/// Signs an access token with tenant `main`'s active ES256 key, loaded through the
/// authserver library from the test database (test setup: the server never issues
/// tokens with these claims).
async fn mint(db: &TestDb, claims: &Value) -> String {
    use authserver::cache::Epoch;
    use authserver::clock::SystemClock;
    use authserver::config::DatabaseSettings;
    use authserver::crypto::kek::Kek;
    use authserver::domain::signing_key::{Algorithm, KeyPolicy};
    use authserver::keys::KeyService;
    use authserver::store::Store;

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
    let signer = keys
        .signer("main", Algorithm::Es256)
        .await
        .unwrap()
        .expect("tenant main has an active ES256 key");
    let token = signer.sign_jwt("at+jwt", claims).unwrap();
    store.close().await;
    token
}

/// Flips one bit in the signature of a compact JWS.
fn flip_signature_bit(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = unb64url(sig);
    sig[10] ^= 0x01;
    format!("{input}.{}", b64url(&sig))
}

#[allow(clippy::too_many_lines)] // one case per reason a token is inactive
async fn inactive_tokens_get_active_false_and_nothing_else(backend: Backend) {
    let (db, server) = two_tenants(backend).await;
    let issuer = db.issuer("");
    let app = create_client(&db, "app", &["--tenant", "main"]).await;
    let rs = create_client(&db, "api", &["--tenant", "main", "--introspect-any-token"]).await;
    let gone = create_client(&db, "gone", &["--tenant", "main"]).await;
    let elsewhere = create_client(&db, "app", &["--tenant", "other"]).await;
    let other_rs =
        create_client(&db, "api", &["--tenant", "other", "--introspect-any-token"]).await;

    let claims = |iat: i64, exp: i64| {
        json!({ "iss": issuer, "sub": "app", "client_id": "app", "aud": "app",
            "iat": iat, "exp": exp, "jti": crate::harness::random_hex(16) })
    };
    // Minting works: the same claims, unexpired, are active.
    let minted = mint(&db, &claims(now(), now() + 300)).await;
    assert!(is_active(&server, &rs, &minted).await);
    let expired = mint(&db, &claims(now() - 1200, now() - 600)).await;

    let revoked = access_token(&server, &app).await;
    revoke(&server, &app, &revoked, &[]).await.ok();

    let foreign = {
        let r = send(
            post_form(
                &server,
                "/t/other/token",
                &[("grant_type", "client_credentials")],
            )
            .header(header::AUTHORIZATION, elsewhere.basic()),
        )
        .await;
        r.ok()["access_token"].as_str().unwrap().to_owned()
    };
    // …which is active in its own tenant.
    let r = send(
        post_form(&server, "/t/other/introspect", &[("token", &foreign)])
            .header(header::AUTHORIZATION, other_rs.basic()),
    )
    .await;
    assert_eq!(r.ok()["active"], true, "{:?}", r.body);

    let tampered = flip_signature_bit(&access_token(&server, &app).await);
    let unsigned = {
        let t = access_token(&server, &app).await;
        let (input, _) = t.rsplit_once('.').unwrap();
        format!("{input}.")
    };
    let of_deleted_client = access_token(&server, &gone).await;
    assert!(is_active(&server, &rs, &of_deleted_client).await);
    db.cli()
        .args(["clients", "delete", "--id", "gone", "--tenant", "main"])
        .run()
        .await
        .assert_success();
    // The deletion reaches the server's client cache within a second.
    let started = Instant::now();
    while is_active(&server, &rs, &of_deleted_client).await {
        assert!(started.elapsed() < Duration::from_secs(2), "still active");
        tokio::time::sleep(POLL).await;
    }

    let before = db.snapshot().await;
    let cases = [
        ("expired", expired),
        ("revoked", revoked),
        ("malformed", "not-a-token".to_owned()),
        ("three garbage parts", "a.b.c".to_owned()),
        ("another tenant's token", foreign),
        ("flipped signature bit", tampered),
        ("no signature", unsigned),
        ("client deleted", of_deleted_client),
        ("empty-ish", ".".to_owned()),
    ];
    for (name, t) in &cases {
        let r = introspect(&server, &rs, t).await;
        assert_eq!(r.ok(), &json!({ "active": false }), "{name}");
    }
    assert_eq!(db.snapshot().await, before);

    // Only authenticated, confidential clients may introspect.
    let live = access_token(&server, &app).await;
    let spa = create_client(
        &db,
        "spa",
        &[
            "--public",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--tenant",
            "main",
        ],
    )
    .await;
    let before = db.snapshot().await;
    let unauthenticated = [
        (
            "no credentials",
            post_form(&server, "/introspect", &[("token", &live)]),
        ),
        (
            "wrong secret",
            post_form(&server, "/introspect", &[("token", &live)])
                .header(header::AUTHORIZATION, rs.with_secret("wrong").basic()),
        ),
        (
            "public client",
            post_form(
                &server,
                "/introspect",
                &[("token", &live), ("client_id", &spa.id)],
            ),
        ),
        (
            "client of another tenant",
            post_form(&server, "/introspect", &[("token", &live)])
                .header(header::AUTHORIZATION, other_rs.basic()),
        ),
    ];
    for (name, request) in unauthenticated {
        let r = send(request).await;
        assert_eq!(r.status, 401, "{name}: {r:?}");
        r.assert_invalid_client();
        assert!(r.body.get("active").is_none(), "{name}");
        assert_eq!(db.snapshot().await, before, "{name}");
    }
}

async fn revocation_follows_rfc_7009(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let app = create_client(&db, "app", &[]).await;
    let intruder = create_client(&db, "intruder", &[]).await;
    let rs = create_client(&db, "api", &["--introspect-any-token"]).await;
    let spa = create_client(
        &db,
        "spa",
        &["--public", "--redirect-uri", "http://127.0.0.1/cb"],
    )
    .await;
    let access = access_token(&server, &app).await;

    // Unknown tokens, and tokens of another client: 200, nothing happens.
    let before = db.snapshot().await;
    let unknown = revoke(&server, &app, "not-a-token", &[]).await;
    assert_eq!(unknown.status, 200, "{unknown:?}");
    assert_eq!(unknown.header("cache-control"), Some("no-store"));
    assert_eq!(unknown.body, Value::Null, "empty body");
    let foreign = revoke(&server, &intruder, &access, &[]).await;
    assert_eq!(foreign.status, 200, "{foreign:?}");
    assert!(is_active(&server, &rs, &access).await);
    // A public client may call the endpoint (RFC 7009 §2.1) but not for another's token.
    let r = send(post_form(
        &server,
        "/revoke",
        &[("token", &access), ("client_id", &spa.id)],
    ))
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(is_active(&server, &rs, &access).await);

    // Errors: unknown hint, no client authentication. Nothing changes.
    revoke(&server, &app, &access, &[("token_type_hint", "foo")])
        .await
        .assert_error(400, "unsupported_token_type");
    send(post_form(&server, "/revoke", &[("token", &access)]))
        .await
        .assert_invalid_client();
    let wrong = Creds {
        id: "app".into(),
        secret: Some("wrong".into()),
    };
    revoke(&server, &wrong, &access, &[])
        .await
        .assert_invalid_client();
    assert!(is_active(&server, &rs, &access).await);
    assert_eq!(db.snapshot().await, before);

    // The owner revokes it: inactive at once, on the denylist until it would expire.
    let r = revoke(
        &server,
        &app,
        &access,
        &[("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!is_active(&server, &rs, &access).await);
    assert_eq!(db.scalar("SELECT count(*) FROM revoked_tokens").await, 1);
    let ttl = db
        .scalar("SELECT expires_at - revoked_at FROM revoked_tokens")
        .await;
    assert!((595..=600).contains(&ttl), "{ttl}");
    // Revoking again is fine and changes nothing.
    let after = db.snapshot().await;
    assert_eq!(revoke(&server, &app, &access, &[]).await.status, 200);
    assert_eq!(db.snapshot().await, after);
}
