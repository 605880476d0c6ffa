//! DPoP at the token endpoint (RFC 9449): proofs signed by the client's own key bind the
//! token to its thumbprint (`cnf.jkt`); bad or replayed proofs are refused with
//! `invalid_dpop_proof`; server nonces when required; clients registered as DPoP-bound
//! must send a proof.

use jsonwebtoken::Algorithm;
use reqwest::header;
use serde_json::{Value, json};

use crate::harness::admin::{admin_cli, connect, machine_spec, upsert};
use crate::harness::jose::{ClientKey, now, with_private_member};
use crate::harness::oauth::{
    Creds, Reply, create_client, introspect, post_form, send, verify_access_token,
};
use crate::harness::{Backend, Server, TestDb, free_port};

on_both_backends!(
    a_valid_proof_binds_the_token_to_the_key_thumbprint,
    bad_proofs_are_refused_and_change_nothing,
    required_nonces_are_handed_out_and_accepted,
    a_client_registered_as_dpop_bound_must_send_a_proof,
);

/// A client_credentials request with Basic auth and the given `DPoP` header values.
async fn with_proofs(server: &Server, creds: &Creds, proofs: &[&str]) -> Reply {
    let mut r = post_form(server, "/token", &[("grant_type", "client_credentials")])
        .header(header::AUTHORIZATION, creds.basic());
    for p in proofs {
        r = r.header("DPoP", *p);
    }
    send(r).await
}

async fn a_valid_proof_binds_the_token_to_the_key_thumbprint(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let htu = format!("{issuer}/token");
    let creds = create_client(&db, "bound", &["--scopes", "read"]).await;
    let rs = create_client(&db, "resource-server", &["--introspect-any-token"]).await;

    for key in [ClientKey::es256(), ClientKey::ed25519()] {
        let jkt = key.thumbprint();
        let proof = key.dpop_proof("POST", &htu, &json!({}), &json!({}));
        let r = with_proofs(&server, &creds, &[&proof]).await;
        let body = r.ok();
        assert_eq!(body["token_type"], "DPoP", "{body}");
        let token = body["access_token"].as_str().unwrap();
        let claims = verify_access_token(&server, token, Algorithm::ES256, &issuer, "bound").await;
        assert_eq!(claims["cnf"], json!({ "jkt": jkt }), "{claims}");

        let i = introspect(&server, &rs, token).await;
        let i = i.ok();
        assert_eq!(i["active"], true, "{i}");
        assert_eq!(i["token_type"], "DPoP", "{i}");
        assert_eq!(i["cnf"], json!({ "jkt": jkt }), "{i}");
    }

    // Without a proof, the same client gets a plain bearer token.
    let r = with_proofs(&server, &creds, &[]).await;
    assert_eq!(r.ok()["token_type"], "Bearer");
    let token = r.body["access_token"].as_str().unwrap();
    let i = introspect(&server, &rs, token).await;
    assert_eq!(i.ok()["token_type"], "Bearer");
    assert!(i.body.get("cnf").is_none(), "{:?}", i.body);
}

#[allow(clippy::too_many_lines)] // one case per check of RFC 9449 §4.3
async fn bad_proofs_are_refused_and_change_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let htu = format!("{issuer}/token");
    let creds = create_client(&db, "bound", &[]).await;
    let key = ClientKey::es256();
    let used = key.dpop_proof("POST", &htu, &json!({}), &json!({}));
    with_proofs(&server, &creds, &[&used]).await.ok();
    assert_eq!(db.scalar("SELECT count(*) FROM dpop_jti").await, 1);

    let other = ClientKey::es256();
    let no_patch = json!({});
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("replayed proof", vec![used.clone()]),
        (
            "htu of another endpoint",
            vec![key.dpop_proof(
                "POST",
                &format!("{issuer}/introspect"),
                &no_patch,
                &no_patch,
            )],
        ),
        (
            "htu of another server",
            vec![key.dpop_proof("POST", "https://other.example/token", &no_patch, &no_patch)],
        ),
        (
            "htm GET",
            vec![key.dpop_proof("GET", &htu, &no_patch, &no_patch)],
        ),
        (
            "iat five minutes old",
            vec![key.dpop_proof("POST", &htu, &no_patch, &json!({ "iat": now() - 300 }))],
        ),
        (
            "iat five minutes ahead",
            vec![key.dpop_proof("POST", &htu, &no_patch, &json!({ "iat": now() + 300 }))],
        ),
        (
            "private key in the jwk",
            vec![key.dpop_proof(
                "POST",
                &htu,
                &json!({ "jwk": with_private_member(&key.public_jwk()) }),
                &no_patch,
            )],
        ),
        (
            "typ JWT",
            vec![key.dpop_proof("POST", &htu, &json!({ "typ": "JWT" }), &no_patch)],
        ),
        (
            "no typ",
            vec![key.dpop_proof("POST", &htu, &json!({ "typ": null }), &no_patch)],
        ),
        (
            "no jwk",
            vec![key.dpop_proof("POST", &htu, &json!({ "jwk": null }), &no_patch)],
        ),
        (
            "jwk of another key",
            vec![key.dpop_proof(
                "POST",
                &htu,
                &json!({ "jwk": other.public_jwk() }),
                &no_patch,
            )],
        ),
        (
            "no jti",
            vec![key.dpop_proof("POST", &htu, &no_patch, &json!({ "jti": null }))],
        ),
        ("not a JWS", vec!["not-a-proof".to_owned()]),
        (
            "two DPoP headers",
            vec![
                key.dpop_proof("POST", &htu, &no_patch, &no_patch),
                key.dpop_proof("POST", &htu, &no_patch, &no_patch),
            ],
        ),
    ];
    let before = db.snapshot().await;
    for (name, proofs) in &cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let r = with_proofs(&server, &creds, &proofs).await;
        assert_eq!(
            r.body["error"], "invalid_dpop_proof",
            "{name}: {:?}",
            r.body
        );
        r.assert_error(400, "invalid_dpop_proof");
        assert_eq!(db.snapshot().await, before, "{name} changed the database");
    }
    // A request refused for something else leaves its valid proof unused: the same
    // proof works once the request is fixed.
    let proof = key.dpop_proof("POST", &htu, &no_patch, &no_patch);
    let r = send(
        post_form(
            &server,
            "/token",
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .header(header::AUTHORIZATION, creds.basic())
        .header("DPoP", &proof),
    )
    .await;
    r.assert_error(400, "invalid_scope");
    assert_eq!(
        db.snapshot().await,
        before,
        "the refused request used the proof"
    );
    assert_eq!(
        with_proofs(&server, &creds, &[&proof]).await.ok()["token_type"],
        "DPoP"
    );

    // A client-side mistake in a proof does not burn its jti: corrected, it is accepted.
    let jti = "corrected-proof";
    let wrong = key.dpop_proof("GET", &htu, &no_patch, &json!({ "jti": jti }));
    with_proofs(&server, &creds, &[&wrong])
        .await
        .assert_error(400, "invalid_dpop_proof");
    let right = key.dpop_proof("POST", &htu, &no_patch, &json!({ "jti": jti }));
    assert_eq!(
        with_proofs(&server, &creds, &[&right]).await.ok()["token_type"],
        "DPoP"
    );
}

async fn required_nonces_are_handed_out_and_accepted(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db
        .cli()
        .env("GATEHOUSE_DPOP_REQUIRE_NONCE", "true")
        .serve_in_process(db.port)
        .await;
    let htu = format!("{}/token", db.issuer(""));
    let creds = create_client(&db, "bound", &[]).await;
    let key = ClientKey::es256();
    let jkt = key.thumbprint();

    let no_nonce = key.dpop_proof("POST", &htu, &json!({}), &json!({ "jti": "first-try" }));
    let jti_before = db.rows("SELECT jti FROM dpop_jti").await;
    let r = with_proofs(&server, &creds, &[&no_nonce]).await;
    r.assert_error(400, "use_dpop_nonce");
    let nonce = r
        .header("dpop-nonce")
        .expect("DPoP-Nonce header")
        .to_owned();
    assert!(nonce.len() >= 16, "{nonce}");
    assert_eq!(db.rows("SELECT jti FROM dpop_jti").await, jti_before);

    // The retry carries the nonce (same jti: the refused proof was not recorded).
    let retry = key.dpop_proof(
        "POST",
        &htu,
        &json!({}),
        &json!({ "jti": "first-try", "nonce": nonce }),
    );
    let r = with_proofs(&server, &creds, &[&retry]).await;
    let body = r.ok();
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(&crate::harness::jose::unb64url(
        token.split('.').nth(1).unwrap(),
    ))
    .unwrap();
    assert_eq!(claims["cnf"]["jkt"], jkt.as_str());
    let next = r
        .header("dpop-nonce")
        .expect("a nonce for the next request")
        .to_owned();

    // That nonce works for the next proof; a made-up one does not.
    let p = key.dpop_proof("POST", &htu, &json!({}), &json!({ "nonce": next }));
    with_proofs(&server, &creds, &[&p]).await.ok();
    let p = key.dpop_proof("POST", &htu, &json!({}), &json!({ "nonce": "made-up" }));
    let r = with_proofs(&server, &creds, &[&p]).await;
    r.assert_error(400, "use_dpop_nonce");
    assert!(r.header("dpop-nonce").is_some());
}

async fn a_client_registered_as_dpop_bound_must_send_a_proof(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let admin_port = free_port();
    let server = admin_cli(&db, admin_port).serve(db.port).await;
    let mut admin = connect(admin_port).await;
    let created = upsert(
        &mut admin,
        authserver::admin::proto::ClientSpec {
            dpop_bound_access_tokens: true,
            ..machine_spec("must-bind")
        },
    )
    .await;
    let creds = Creds {
        id: "must-bind".to_owned(),
        secret: created.generated_secret,
    };
    let before = db.snapshot().await;
    let r = with_proofs(&server, &creds, &[]).await;
    r.assert_error(400, "invalid_dpop_proof");
    assert_eq!(db.snapshot().await, before);

    let key = ClientKey::ed25519();
    let proof = key.dpop_proof(
        "POST",
        &format!("{}/token", db.issuer("")),
        &json!({}),
        &json!({}),
    );
    let r = with_proofs(&server, &creds, &[&proof]).await;
    assert_eq!(r.ok()["token_type"], "DPoP");
}
