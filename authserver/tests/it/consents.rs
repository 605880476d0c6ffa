//! Consents a user gave: listed and revoked through the admin gRPC API, the CLI and the
//! signed-in user's own page (`{issuer}/account/consents`).
//! Revoking a consent revokes every live grant of the user for that client (refresh
//! tokens refused, access tokens inactive) and the next authorization asks again; bad
//! input names the field and changes nothing. The consent is given in the scripted
//! browser and its code redeemed at `/token`, as a relying party would.

use authserver::admin::proto::admin_client::AdminClient;
use authserver::admin::proto::{ListUserConsentsRequest, RevokeUserConsentRequest};
use reqwest::header;
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;

use crate::authorize_flow::{CB, PASSWORD, VERIFIER, authorize_url, client_params, settle};
use crate::harness::admin::{admin_cli, authed, connect};
use crate::harness::browser::{Browser, create_user, fast};
use crate::harness::oauth::{Creds, Reply, create_client, field, is_active, post_form, send};
use crate::harness::{Backend, Server, TestDb, free_port};

on_both_backends!(
    revoking_a_consent_over_grpc_revokes_its_grants,
    bad_grpc_requests_name_the_field_and_change_nothing,
    the_cli_lists_and_revokes_consents,
    the_account_page_lists_and_revokes_consents,
);

const SCOPE: &str = "openid email offline_access";

/// Users alice and bob, the non-first-party client `app` (refresh tokens allowed) and
/// a server with the admin API.
struct Setup {
    db: TestDb,
    server: Server,
    admin: AdminClient<Channel>,
    app: Creds,
}

async fn setup(backend: Backend) -> Setup {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    create_user(&db, "bob", PASSWORD).await;
    let app = create_client(
        &db,
        "app",
        &[
            "--redirect-uri",
            CB,
            "--grant-types",
            "authorization_code,refresh_token",
            "--scopes",
            SCOPE,
        ],
    )
    .await;
    let admin_port = free_port();
    let server = fast(admin_cli(&db, admin_port)).serve(db.port).await;
    let admin = connect(admin_port).await;
    Setup {
        db,
        server,
        admin,
        app,
    }
}

fn scoped_url(db: &TestDb) -> String {
    authorize_url(db, "app", &[]).replace("scope=openid+email", "scope=openid+email+offline_access")
}

/// Signs `username` in, consents to `app` and redeems the code: the token response.
async fn consent_and_redeem(s: &Setup, b: &Browser, username: &str) -> Value {
    let login = settle(b, b.get(&scoped_url(&s.db)).await).await;
    login.assert_status(200);
    let consent = settle(
        b,
        b.submit(&login, &[("username", username), ("password", PASSWORD)])
            .await,
    )
    .await;
    consent.assert_status(200);
    assert!(
        consent.body.contains("name=\"decision\" value=\"allow\""),
        "{}",
        consent.body
    );
    let done = b.submit(&consent, &[("decision", "allow")]).await;
    let code = client_params(&done)["code"].clone();
    let tokens = redeem(s, &code).await;
    tokens.ok().clone()
}

async fn redeem(s: &Setup, code: &str) -> Reply {
    send(
        post_form(
            &s.server,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
            ],
        )
        .header(header::AUTHORIZATION, s.app.basic()),
    )
    .await
}

async fn refresh(s: &Setup, token: &str) -> Reply {
    send(
        post_form(
            &s.server,
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .header(header::AUTHORIZATION, s.app.basic()),
    )
    .await
}

async fn user_id(db: &TestDb, username: &str) -> String {
    db.rows(&format!(
        "SELECT user_id FROM users WHERE username = '{username}'"
    ))
    .await
    .remove(0)
}

/// Consents, grants (with their revocation) and the denylist: what a revocation changes.
async fn consent_state(db: &TestDb) -> Vec<String> {
    let mut rows = Vec::new();
    for q in [
        "SELECT 'consent|' || user_id || '|' || client_id || '|' || scope FROM consents",
        "SELECT 'grant|' || grant_id || '|' || coalesce(CAST(revoked_at AS TEXT), '-') FROM grants",
        "SELECT 'revoked|' || jti FROM revoked_tokens",
    ] {
        rows.extend(db.rows(q).await);
    }
    rows.sort();
    rows
}

fn list(tenant: &str, username: &str) -> tonic::Request<ListUserConsentsRequest> {
    authed(ListUserConsentsRequest {
        tenant_id: tenant.to_owned(),
        username: username.to_owned(),
    })
}

fn revoke(tenant: &str, username: &str, client: &str) -> tonic::Request<RevokeUserConsentRequest> {
    authed(RevokeUserConsentRequest {
        tenant_id: tenant.to_owned(),
        username: username.to_owned(),
        client_id: client.to_owned(),
    })
}

/// Asserts that the refresh token is refused and the access token is inactive.
async fn assert_dead(s: &Setup, tokens: &Value) {
    refresh(s, &field(tokens, "refresh_token"))
        .await
        .assert_error(400, "invalid_grant");
    assert!(
        !is_active(&s.server, &s.app, &field(tokens, "access_token")).await,
        "the access token introspects inactive"
    );
}

#[allow(clippy::too_many_lines)] // one journey, asserted step by step
async fn revoking_a_consent_over_grpc_revokes_its_grants(backend: Backend) {
    let mut s = setup(backend).await;
    let alice_browser = Browser::new();
    let alice_tokens = consent_and_redeem(&s, &alice_browser, "alice").await;
    let bob_tokens = consent_and_redeem(&s, &Browser::new(), "bob").await;
    assert!(is_active(&s.server, &s.app, &field(&alice_tokens, "access_token")).await);

    let listed = s
        .admin
        .list_user_consents(list("main", "alice"))
        .await
        .unwrap()
        .into_inner()
        .consents;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].client_id, "app");
    assert_eq!(listed[0].scopes, ["email", "offline_access", "openid"]);
    assert!(listed[0].granted_at > 0 && listed[0].updated_at >= listed[0].granted_at);

    let revoked = s
        .admin
        .revoke_user_consent(revoke("main", "alice", "app"))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked);
    assert_dead(&s, &alice_tokens).await;
    assert!(
        s.admin
            .list_user_consents(list("main", "alice"))
            .await
            .unwrap()
            .into_inner()
            .consents
            .is_empty()
    );

    // Audited once, naming the user and the client, never a token.
    let alice = user_id(&s.db, "alice").await;
    let audit: Vec<String> =
        s.db.audit()
            .await
            .into_iter()
            .filter(|e| e.starts_with("consent.revoked|"))
            .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(
        audit[0].starts_with(&format!("consent.revoked|admin-api|{alice}|")),
        "{audit:?}"
    );
    let details: Value = serde_json::from_str(audit[0].splitn(4, '|').nth(3).unwrap()).unwrap();
    assert_eq!(details["client_id"], "app", "{audit:?}");
    assert_eq!(details["grants_revoked"], 1, "{audit:?}");
    for t in ["access_token", "refresh_token", "id_token"] {
        assert!(!audit[0].contains(&field(&alice_tokens, t)), "{t} in audit");
    }

    // Nothing left to revoke: false, nothing changed.
    let before = consent_state(&s.db).await;
    let again = s
        .admin
        .revoke_user_consent(revoke("main", "alice", "app"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.revoked);
    assert_eq!(consent_state(&s.db).await, before);

    // Bob's consent and tokens are untouched.
    assert_eq!(
        s.admin
            .list_user_consents(list("main", "bob"))
            .await
            .unwrap()
            .into_inner()
            .consents
            .len(),
        1
    );
    refresh(&s, &field(&bob_tokens, "refresh_token")).await.ok();

    // Alice is still signed in, but the client must ask for consent again.
    let asked = settle(&alice_browser, alice_browser.get(&scoped_url(&s.db)).await).await;
    asked.assert_status(200);
    assert!(asked.body.contains("name=\"decision\""), "{}", asked.body);
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    message_start: &str,
) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{message_start}: {status:?}");
    assert!(
        status.message().starts_with(message_start),
        "{message_start}: {status:?}"
    );
}

async fn bad_grpc_requests_name_the_field_and_change_nothing(backend: Backend) {
    let mut s = setup(backend).await;
    let tokens = consent_and_redeem(&s, &Browser::new(), "alice").await;
    let before = consent_state(&s.db).await;
    let audit_before = s.db.audit().await;

    assert_status(
        s.admin.list_user_consents(list("", "alice")).await,
        Code::InvalidArgument,
        "tenant_id: ",
    );
    assert_status(
        s.admin.list_user_consents(list("main", "")).await,
        Code::InvalidArgument,
        "username: ",
    );
    assert_status(
        s.admin.list_user_consents(list("nope", "alice")).await,
        Code::NotFound,
        "tenant \"nope\" does not exist",
    );
    assert_status(
        s.admin.list_user_consents(list("main", "nobody")).await,
        Code::NotFound,
        "user \"nobody\" does not exist in tenant \"main\"",
    );
    for (tenant, user, client, code, start) in [
        ("", "alice", "app", Code::InvalidArgument, "tenant_id: "),
        ("main", "", "app", Code::InvalidArgument, "username: "),
        ("main", "alice", "", Code::InvalidArgument, "client_id: "),
        (
            "main",
            "alice",
            "no such/client",
            Code::InvalidArgument,
            "client_id: ",
        ),
        (
            "nope",
            "alice",
            "app",
            Code::NotFound,
            "tenant \"nope\" does not exist",
        ),
        (
            "main",
            "nobody",
            "app",
            Code::NotFound,
            "user \"nobody\" does not exist in tenant \"main\"",
        ),
    ] {
        assert_status(
            s.admin
                .revoke_user_consent(revoke(tenant, user, client))
                .await,
            code,
            start,
        );
    }
    // Another user's consent is not alice's: bob has none, so nothing is revoked.
    assert!(
        !s.admin
            .revoke_user_consent(revoke("main", "bob", "app"))
            .await
            .unwrap()
            .into_inner()
            .revoked
    );
    assert_eq!(consent_state(&s.db).await, before);
    assert_eq!(s.db.audit().await, audit_before);
    refresh(&s, &field(&tokens, "refresh_token")).await.ok();
}

#[allow(clippy::too_many_lines)] // one command per bad input, asserted in turn
async fn the_cli_lists_and_revokes_consents(backend: Backend) {
    let s = setup(backend).await;
    let tokens = consent_and_redeem(&s, &Browser::new(), "alice").await;
    let cli = || s.db.cli().args(["users"]);

    let out = cli().args(["consents", "--username", "alice"]).run().await;
    out.assert_success();
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["client_id"], "app");
    assert_eq!(
        lines[0]["scopes"],
        serde_json::json!(["email", "offline_access", "openid"])
    );
    assert!(lines[0]["granted_at"].as_i64().unwrap() > 0);
    let none = cli()
        .args(["consents", "--username", "bob", "--tenant", "main"])
        .run()
        .await;
    none.assert_success();
    assert_eq!(none.stdout.trim(), "", "{none}");

    // Bad input: exit 1 for an unknown user, 2 for bad flags; nothing changes.
    let before = consent_state(&s.db).await;
    cli()
        .args(["consents", "--username", "nobody"])
        .run()
        .await
        .assert_code(1)
        .assert_stderr_contains("user \"nobody\" does not exist in tenant \"main\"");
    cli()
        .args([
            "revoke-consent",
            "--username",
            "nobody",
            "--client-id",
            "app",
        ])
        .run()
        .await
        .assert_code(1)
        .assert_stderr_contains("user \"nobody\" does not exist in tenant \"main\"");
    cli()
        .args(["revoke-consent", "--username", "alice"])
        .run()
        .await
        .assert_code(2)
        .assert_stderr_contains("--client-id");
    cli()
        .args([
            "revoke-consent",
            "--username",
            "alice",
            "--client-id",
            "a b",
        ])
        .run()
        .await
        .assert_code(2)
        .assert_stderr_contains("client_id: ");
    cli()
        .args(["consents"])
        .run()
        .await
        .assert_code(2)
        .assert_stderr_contains("--username");
    assert_eq!(consent_state(&s.db).await, before);

    let out = cli()
        .args([
            "revoke-consent",
            "--username",
            "alice",
            "--client-id",
            "app",
        ])
        .run()
        .await;
    out.assert_success();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["revoked"], true, "{out}");
    assert_dead(&s, &tokens).await;
    let alice = user_id(&s.db, "alice").await;
    assert!(
        s.db.audit()
            .await
            .iter()
            .any(|e| e.starts_with(&format!("consent.revoked|cli|{alice}|"))),
    );
    let again = cli()
        .args([
            "revoke-consent",
            "--username",
            "alice",
            "--client-id",
            "app",
        ])
        .run()
        .await;
    again.assert_success();
    let v: Value = serde_json::from_str(again.stdout.trim()).unwrap();
    assert_eq!(v["revoked"], false, "{again}");
    let out = cli().args(["consents", "--username", "alice"]).run().await;
    out.assert_success();
    assert_eq!(out.stdout.trim(), "");
}

async fn the_account_page_lists_and_revokes_consents(backend: Backend) {
    let s = setup(backend).await;
    let issuer = s.db.issuer("");
    let url = format!("{issuer}/account/consents");
    let b = Browser::new();
    let tokens = consent_and_redeem(&s, &b, "alice").await;
    let bob_tokens = consent_and_redeem(&s, &Browser::new(), "bob").await;

    // Not signed in: to the sign-in page, and a POST is a CSRF failure.
    let stranger = Browser::new();
    let p = stranger.get(&url).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        p.location().unwrap(),
        format!("{issuer}/login?return_to=account")
    );

    let listed = b.get(&url).await;
    listed.assert_status(200);
    for text in [
        "<h2 id=\"consent-1\">app</h2>",
        "Sign you in with your account",
        "See your email address",
        "Keep access while you are not using it",
        "<button type=\"submit\"",
        "Signed in as <strong><bdi>alice</bdi></strong>",
    ] {
        assert!(listed.body.contains(text), "{text}: {}", listed.body);
    }
    assert_eq!(listed.input("client_id").as_deref(), Some("app"));
    assert_eq!(listed.form_action().as_deref(), Some(url.as_str()));
    let csrf = listed.input("_csrf").unwrap();

    // Missing or wrong _csrf, or another browser's session: 403 and nothing changed.
    let before = consent_state(&s.db).await;
    for (who, fields) in [
        (&b, vec![("client_id", "app")]),
        (&b, vec![("_csrf", "wrong"), ("client_id", "app")]),
        (&b, vec![("_csrf", ""), ("client_id", "app")]),
        (
            &stranger,
            vec![("_csrf", csrf.as_str()), ("client_id", "app")],
        ),
    ] {
        who.post(&url, &fields).await.assert_status(403);
    }
    // No or a malformed client_id: 400, nothing changed.
    for client in ["", "a b"] {
        b.post(&url, &[("_csrf", csrf.as_str()), ("client_id", client)])
            .await
            .assert_status(400);
    }
    assert_eq!(consent_state(&s.db).await, before);
    // Still alive: the refresh token rotates; the new pair is what the revocation must reach.
    let tokens = refresh(&s, &field(&tokens, "refresh_token"))
        .await
        .ok()
        .clone();

    let done = b.submit(&listed, &[("client_id", "app")]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location().unwrap(), format!("{url}?done=consent"));
    let after = b.get(&url).await;
    after.assert_status(200);
    assert!(
        after.body.contains("No application has access"),
        "{}",
        after.body
    );
    assert!(!after.body.contains("name=\"client_id\""));
    assert_dead(&s, &tokens).await;
    let alice = user_id(&s.db, "alice").await;
    assert!(
        s.db.audit()
            .await
            .iter()
            .any(|e| e.starts_with(&format!("consent.revoked|user|{alice}|"))),
    );
    // Bob's consent is his own.
    assert_eq!(
        s.db.rows("SELECT client_id FROM consents").await,
        vec!["app".to_owned()]
    );
    refresh(&s, &field(&bob_tokens, "refresh_token")).await.ok();
}
