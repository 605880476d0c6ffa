//! Deleting a client revokes everything issued to it and retires its id (security review,
//! defect 1). The attack as reported: a user holds a refresh token of the public client
//! `spa` and an access token and consent of the confidential client `web`; both clients
//! are deleted and created again with new redirect URIs. Before the fix the old refresh
//! token refreshed, the old access token introspected active and `/authorize` for the new
//! `web` sent a code to the new redirect URI without asking for consent.

use std::time::{Duration, Instant};

use reqwest::header;
use serde_json::Value;

use crate::authorize_flow::{CB, PASSWORD, VERIFIER, authorize_url, client_params, settle};
use crate::harness::browser::{Browser, create_user};
use crate::harness::oauth::{Creds, Reply, create_client, field, introspect, post_form, send};
use crate::harness::{Backend, POLL, Server, TestDb};

on_both_backends!(
    a_deleted_client_leaves_nothing_a_new_client_with_its_id_could_inherit,
    deleting_through_the_admin_api_retires_the_id_too,
);

const SCOPE: &str = "openid email offline_access";
const NEW_CB: &str = "https://attacker.example/cb";

fn scoped(db: &TestDb, client: &str) -> String {
    authorize_url(db, client, &[])
        .replace("scope=openid+email", "scope=openid+email+offline_access")
}

/// Signs alice in (when needed), consents for `client` and redeems the code (Basic auth
/// when `creds` has a secret, `client_id` in the body for a public client).
pub(crate) async fn tokens_for(server: &Server, db: &TestDb, b: &Browser, creds: &Creds) -> Value {
    let mut page = settle(b, b.get(&scoped(db, &creds.id)).await).await;
    if page.body.contains("name=\"password\"") {
        page = settle(
            b,
            b.submit(&page, &[("username", "alice"), ("password", PASSWORD)])
                .await,
        )
        .await;
    }
    assert!(
        page.body.contains("name=\"decision\" value=\"allow\""),
        "consent page expected: {}",
        page.body
    );
    let done = b.submit(&page, &[("decision", "allow")]).await;
    let code = client_params(&done)["code"].clone();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", VERIFIER),
    ];
    if creds.secret.is_none() {
        form.push(("client_id", creds.id.as_str()));
    }
    let mut req = post_form(server, "/token", &form);
    if creds.secret.is_some() {
        req = req.header(header::AUTHORIZATION, creds.basic());
    }
    send(req).await.ok().clone()
}

pub(crate) async fn refresh_public(server: &Server, client: &str, token: &str) -> Reply {
    send(post_form(
        server,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client),
        ],
    ))
    .await
}

async fn userinfo_status(server: &Server, token: &str) -> u16 {
    server
        .http()
        .get(server.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until the server has seen a registry change (its change feed), proven by `check`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(3);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 3 s: {what}");
        tokio::time::sleep(POLL).await;
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.scalar(&format!("SELECT count(*) FROM {sql}")).await
}

struct Setup {
    db: TestDb,
    server: Server,
    spa: Creds,
    /// A resource server allowed to introspect every token of the tenant.
    rs: Creds,
    spa_tokens: Value,
    web_tokens: Value,
    browser: Browser,
}

async fn setup(backend: Backend) -> Setup {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    let flow = [
        "--redirect-uri",
        CB,
        "--grant-types",
        "authorization_code,refresh_token",
        "--scopes",
        SCOPE,
    ];
    let spa = create_client(&db, "spa", &[&["--public"][..], &flow].concat()).await;
    let web = create_client(&db, "web", &flow).await;
    let rs = create_client(&db, "rs", &["--introspect-any-token"]).await;
    let server = db.serve_in_process().await;
    let browser = Browser::new();
    let spa_tokens = tokens_for(&server, &db, &browser, &spa).await;
    let web_tokens = tokens_for(&server, &db, &browser, &web).await;
    // A pending interactive request of `web` (a second browser, never signed in).
    let pending = Browser::new();
    settle(&pending, pending.get(&scoped(&db, "web")).await)
        .await
        .assert_status(200);
    Setup {
        db,
        server,
        spa,
        rs,
        spa_tokens,
        web_tokens,
        browser,
    }
}

/// Everything of `spa` and `web` is dead: refresh refused, access token inactive at
/// introspection and refused at userinfo.
async fn assert_all_dead(s: &Setup) {
    let spa_refresh = field(&s.spa_tokens, "refresh_token");
    let r = refresh_public(&s.server, &s.spa.id, &spa_refresh).await;
    assert_ne!(r.status, 200, "the old spa refresh token refreshed: {r:?}");
    let web_access = field(&s.web_tokens, "access_token");
    let r = introspect(&s.server, &s.rs, &web_access).await;
    assert_eq!(r.ok()["active"], false, "{r:?}");
    assert_eq!(userinfo_status(&s.server, &web_access).await, 401);
}

#[allow(clippy::too_many_lines)] // one attack, asserted step by step
async fn a_deleted_client_leaves_nothing_a_new_client_with_its_id_could_inherit(backend: Backend) {
    let s = Box::pin(setup(backend)).await;
    let web_access = field(&s.web_tokens, "access_token");
    assert_eq!(
        introspect(&s.server, &s.rs, &web_access).await.ok()["active"],
        true
    );
    assert_eq!(
        count(&s.db, "consents WHERE client_id IN ('spa', 'web')").await,
        2
    );
    assert!(
        count(
            &s.db,
            "authorization_requests WHERE client_id = 'web' AND consumed_at IS NULL"
        )
        .await
            >= 1,
        "the second browser's request is pending"
    );

    for id in ["spa", "web"] {
        let out =
            s.db.cli()
                .args(["clients", "delete", "--id", id])
                .run()
                .await;
        out.assert_success();
        let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(v["deleted"], id, "{out}");
        assert_eq!(v["grants_revoked"], 1, "{out}");
        assert_eq!(v["consents_deleted"], 1, "{out}");
        assert!(v["retired_until"].as_i64().unwrap() > 0, "{out}");
    }
    // One transaction per client took everything with it.
    for table in [
        "consents",
        "authorization_requests",
        "authorization_codes",
        "clients",
    ] {
        assert_eq!(
            count(&s.db, &format!("{table} WHERE client_id IN ('spa', 'web')")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(
            &s.db,
            "grants WHERE revoked_at IS NULL AND client_id IN ('spa', 'web')"
        )
        .await,
        0
    );
    eventually("the deletion reaches the server", || async {
        introspect(&s.server, &s.rs, &web_access).await.ok()["active"] == false
    })
    .await;
    assert_all_dead(&s).await;

    // Re-registering a retired id exits 2 naming it, and changes nothing.
    let before = s.db.snapshot().await;
    for id in ["spa", "web"] {
        let out =
            s.db.cli()
                .args(["clients", "create", "--id", id, "--redirect-uri", NEW_CB])
                .run()
                .await;
        out.assert_code(2)
            .assert_stderr_contains(&format!("client id \"{id}\" is retired"));
    }
    let out =
        s.db.cli()
            .args(["clients", "purge-retired", "--id", "web"])
            .run()
            .await;
    out.assert_code(2)
        .assert_stderr_contains("cannot be purged before");
    assert_eq!(s.db.snapshot().await, before);
    let out = s.db.cli().args(["clients", "list-retired"]).run().await;
    out.assert_success();
    let listed: Vec<String> = out
        .stdout
        .lines()
        .map(|l| field(&serde_json::from_str(l).unwrap(), "client_id"))
        .collect();
    assert_eq!(listed, ["spa", "web"]);

    // Once the longest token lifetime has passed (moved here by hand), the ids can be
    // freed and registered again; the new clients inherit nothing.
    s.db.execute("UPDATE retired_clients SET reusable_at = 0")
        .await;
    for id in ["spa", "web"] {
        let out =
            s.db.cli()
                .args(["clients", "purge-retired", "--id", id])
                .run()
                .await;
        out.assert_success();
    }
    let flow = [
        "--redirect-uri",
        NEW_CB,
        "--grant-types",
        "authorization_code,refresh_token",
        "--scopes",
        SCOPE,
    ];
    create_client(&s.db, "spa", &[&["--public"][..], &flow].concat()).await;
    create_client(&s.db, "web", &flow).await;
    assert_all_dead(&s).await;
    let url = scoped(&s.db, "web").replace(
        &url::form_urlencoded::byte_serialize(CB.as_bytes()).collect::<String>(),
        &url::form_urlencoded::byte_serialize(NEW_CB.as_bytes()).collect::<String>(),
    );
    eventually("the new client reaches the server", || async {
        s.browser.get(&url).await.status != 400
    })
    .await;
    let page = settle(&s.browser, s.browser.get(&url).await).await;
    assert!(
        !page.location().is_some_and(|l| l.starts_with(NEW_CB)),
        "a code went to the new redirect URI without consent"
    );
    page.assert_status(200);
    assert!(
        page.body.contains("name=\"decision\" value=\"allow\""),
        "the new client asks for consent: {}",
        page.body
    );

    let audit: Vec<String> = s
        .db
        .audit()
        .await
        .into_iter()
        .filter(|e| e.starts_with("client.deleted|") || e.starts_with("client.retired_id_purged|"))
        .collect();
    assert_eq!(audit.len(), 4, "{audit:?}");
    for t in ["access_token", "refresh_token", "id_token"] {
        let v = field(&s.web_tokens, t);
        assert!(!audit.iter().any(|e| e.contains(&v)), "{t} in the audit");
    }
}

async fn deleting_through_the_admin_api_retires_the_id_too(backend: Backend) {
    use authserver::admin::proto::{
        DeleteClientRequest, PurgeRetiredClientRequest, UpsertClientRequest,
    };
    let db = TestDb::migrated(backend).await;
    let (_server, mut admin) = crate::harness::admin::serve_with_admin(&db).await;
    let spec = crate::harness::admin::machine_spec("batch");
    crate::harness::admin::upsert(&mut admin, spec.clone()).await;
    let deleted = admin
        .delete_client(crate::harness::admin::authed(DeleteClientRequest {
            tenant_id: "main".into(),
            client_id: "batch".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);
    assert!(deleted.retired_until > 0);

    let before = db.snapshot().await;
    let refused = admin
        .upsert_client(crate::harness::admin::authed(UpsertClientRequest {
            managed_by: String::new(),
            tenant_id: "main".into(),
            spec: Some(spec),
            secret: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("client id \"batch\" is retired"),
        "{refused:?}"
    );
    let early = admin
        .purge_retired_client(crate::harness::admin::authed(PurgeRetiredClientRequest {
            tenant_id: "main".into(),
            client_id: "batch".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition, "{early:?}");
    let unknown = admin
        .purge_retired_client(crate::harness::admin::authed(PurgeRetiredClientRequest {
            tenant_id: "main".into(),
            client_id: "never-existed".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    assert_eq!(db.snapshot().await, before);
}
