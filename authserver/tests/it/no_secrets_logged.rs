//! No secret reaches the log, even at `RUST_LOG=trace` (security review, "Prove it"):
//! one server runs the browser flow with a second factor, client_credentials (plain and
//! DPoP-bound), refresh, introspection, revocation and admin API calls; then the whole
//! log is searched for every secret those requests carried.

use authserver::admin::proto::{
    SetUserPasswordRequest, UpsertClientRequest, upsert_client_request,
};
use authserver::mfa::totp;
use reqwest::header;
use serde_json::json;

use crate::authorize_flow::{CB, PASSWORD, VERIFIER, authorize_url, client_params, settle};
use crate::harness::admin::{ADMIN_TOKEN, admin_cli, authed, connect, machine_spec};
use crate::harness::browser::{Browser, create_user};
use crate::harness::jose::ClientKey;
use crate::harness::oauth::{create_client, field, introspect, post_form, revoke, send, token};
use crate::harness::{Backend, TestDb, free_port};

on_both_backends!(no_secret_is_ever_logged_even_at_trace);

#[allow(clippy::too_many_lines)] // one journey through every kind of secret
async fn no_secret_is_ever_logged_even_at_trace(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
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
            "--first-party",
        ],
    )
    .await;
    let machine = create_client(&db, "machine", &["--introspect-any-token"]).await;
    let (totp_secret, recovery_codes) = crate::mfa::enrol(&db, "alice").await;
    let admin_port = free_port();
    let server = admin_cli(&db, admin_port)
        .env("RUST_LOG", "trace")
        .serve(db.port)
        .await;
    let mut admin = connect(admin_port).await;
    let issuer = db.issuer("");
    let mut secrets: Vec<(&str, String)> = vec![
        ("client secret", web.secret().to_owned()),
        ("client secret", machine.secret().to_owned()),
        ("password", PASSWORD.to_owned()),
        ("ENCRYPTION_KEY", db.key().to_owned()),
        ("admin token", ADMIN_TOKEN.to_owned()),
        ("PKCE verifier", VERIFIER.to_owned()),
        ("recovery code", recovery_codes[0].clone()),
    ];

    // The browser: password, TOTP, code, tokens.
    let b = Browser::new();
    let login = settle(&b, b.get(&authorize_url(&db, "web", &[])).await).await;
    secrets.push(("_csrf", login.input("_csrf").unwrap()));
    let url = authorize_url(&db, "web", &[])
        .replace("scope=openid+email", "scope=openid+email+offline_access");
    let login = settle(&b, b.get(&url).await).await;
    let mfa = settle(
        &b,
        b.submit(&login, &[("username", "alice"), ("password", PASSWORD)])
            .await,
    )
    .await;
    assert!(mfa.body.contains("name=\"totp\""), "{}", mfa.body);
    let now = authserver::clock::Clock::now(&authserver::clock::SystemClock);
    let code = totp_secret.code_at_step(totp::step(now));
    secrets.push(("TOTP code", code.clone()));
    secrets.push(("TOTP secret", totp::base32_encode(totp_secret.as_bytes())));
    let done = settle(&b, b.submit(&mfa, &[("totp", &code)]).await).await;
    let authorization_code = client_params(&done)["code"].clone();
    secrets.push(("authorization code", authorization_code.clone()));
    let cookies = b.cookies(&issuer).unwrap_or_default();
    for pair in cookies.split("; ") {
        if let Some((name, value)) = pair.split_once('=')
            && name.starts_with("gatehouse-")
        {
            secrets.push(("session cookie", value.to_owned()));
        }
    }
    assert!(
        secrets.iter().any(|(k, _)| *k == "session cookie"),
        "{cookies}"
    );
    let tokens = send(
        post_form(
            &server,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &authorization_code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
            ],
        )
        .header(header::AUTHORIZATION, web.basic()),
    )
    .await
    .ok()
    .clone();
    for t in ["access_token", "refresh_token", "id_token"] {
        secrets.push((t, field(&tokens, t)));
    }
    let refreshed = send(
        post_form(
            &server,
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &field(&tokens, "refresh_token")),
            ],
        )
        .header(header::AUTHORIZATION, web.basic()),
    )
    .await
    .ok()
    .clone();
    secrets.push(("rotated refresh token", field(&refreshed, "refresh_token")));

    // Machines: client_credentials, DPoP, introspection, revocation.
    let plain = field(token(&server, &machine, &[]).await.ok(), "access_token");
    secrets.push(("access token", plain.clone()));
    let key = ClientKey::es256();
    let proof = key.dpop_proof("POST", &format!("{issuer}/token"), &json!({}), &json!({}));
    secrets.push(("DPoP proof", proof.clone()));
    let bound = send(
        post_form(&server, "/token", &[("grant_type", "client_credentials")])
            .header(header::AUTHORIZATION, machine.basic())
            .header("DPoP", proof),
    )
    .await;
    secrets.push(("DPoP-bound token", field(bound.ok(), "access_token")));
    introspect(&server, &machine, &plain).await.ok();
    introspect(&server, &machine, &field(&tokens, "access_token"))
        .await
        .ok();
    assert_eq!(revoke(&server, &machine, &plain, &[]).await.status, 200);
    // A failed authentication logs the attempt, never the secret tried.
    let wrong = "a-wrong-secret-that-must-not-be-logged-0123456789";
    secrets.push(("wrong secret", wrong.to_owned()));
    token(&server, &machine.with_secret(wrong), &[])
        .await
        .assert_invalid_client();

    // The admin API: a generated client secret and a password set over gRPC.
    let generated = admin
        .upsert_client(authed(UpsertClientRequest {
            managed_by: String::new(),
            tenant_id: "main".into(),
            spec: Some(machine_spec("batch")),
            secret: Some(upsert_client_request::Secret::GenerateIfMissing(true)),
        }))
        .await
        .unwrap()
        .into_inner()
        .generated_secret
        .unwrap();
    secrets.push(("generated client secret", generated));
    let new_password = "a-new-password-for-alice-over-grpc";
    secrets.push(("password set over gRPC", new_password.to_owned()));
    admin
        .set_user_password(authed(SetUserPasswordRequest {
            tenant_id: "main".into(),
            username: "alice".into(),
            password: new_password.into(),
        }))
        .await
        .unwrap();

    let logs = server.logs_settled().await;
    assert!(
        logs.lines().count() > 100 && logs.contains("TRACE"),
        "the server logged at trace level"
    );
    for (what, secret) in &secrets {
        assert!(secret.len() >= 6, "{what} is too short to search for");
        assert!(!logs.contains(secret.as_str()), "the log contains a {what}");
    }
}
