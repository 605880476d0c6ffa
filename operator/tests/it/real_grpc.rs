//! The reconcilers against a real auth server (admin gRPC API and token endpoint) on a
//! fresh PostgreSQL database; Kubernetes is the in-memory fake.

use std::sync::Arc;
use std::time::Duration;

use crds::{
    IdentityTenant, OidcClient, ROTATE_ANNOTATION, ROTATE_SECRET_ANNOTATION, SigningKeySet,
};
use operator::admin_client::{AdminApi as _, GrpcAdmin, proto};
use operator::context::{Context, Events};
use operator::controller::ReconcileError as _;
use operator::{client, keyset, tenant};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::authserver::AuthServer;
use crate::kube_fake::FakeKube;
use crate::{
    GROUP_VERSION, context, eventually, key_set, machine_client, namespace, ready, secret_data,
};

const WAIT: Duration = Duration::from_secs(10);

struct Env {
    server: AuthServer,
    fake: FakeKube,
    ctx: Arc<Context>,
    admin: GrpcAdmin,
    http: reqwest::Client,
}

/// A running auth server, a fake cluster with namespace `shop` (allowed by tenant
/// `acme`), tenant `acme` (deletionPolicy Delete), key set `acme` and OidcClient
/// `shop/web` (client_credentials).
async fn env() -> Env {
    let server = AuthServer::start().await;
    let (kube, fake) = FakeKube::start();
    let admin = GrpcAdmin::connect_lazy(
        &server.admin_addr(),
        &SecretString::from(server.token.clone()),
    )
    .unwrap();
    let ctx = context(kube, Arc::new(admin.clone()), Events::capture());
    fake.insert(namespace("shop", "acme"));
    fake.insert(crate::tenant("acme", &server.issuer("acme"), "Delete"));
    fake.insert(key_set("acme"));
    fake.insert(machine_client("shop", "web", "acme"));
    Env {
        server,
        fake,
        ctx,
        admin,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn tenant(&self) -> Value {
        self.fake
            .get(GROUP_VERSION, "identitytenants", None, "acme")
            .unwrap()
    }

    fn client_obj(&self) -> Option<Value> {
        self.fake
            .get(GROUP_VERSION, "oidcclients", Some("shop"), "web")
    }

    fn key_set(&self) -> Value {
        self.fake
            .get(GROUP_VERSION, "signingkeysets", None, "acme")
            .unwrap()
    }

    fn secret(&self) -> Option<Value> {
        self.fake.get("v1", "secrets", Some("shop"), "web-oidc")
    }

    /// Reconciles the tenant until it is Ready (the first pass adds the finalizer).
    async fn settle_tenant(&self) -> Value {
        for _ in 0..3 {
            let t: IdentityTenant = serde_json::from_value(self.tenant()).unwrap();
            if tenant::reconcile(Arc::new(t), self.ctx.clone())
                .await
                .is_err()
            {
                break;
            }
            if ready(&self.tenant()).0 == "True" {
                return self.tenant();
            }
        }
        panic!(
            "tenant not Ready: {:#}\n{}",
            self.tenant()["status"],
            self.server.stderr()
        );
    }

    async fn reconcile_client(&self) -> Result<(), client::Error> {
        let c: OidcClient = serde_json::from_value(self.client_obj().unwrap()).unwrap();
        client::reconcile(Arc::new(c), self.ctx.clone())
            .await
            .map(|_| ())
    }

    async fn settle_client(&self) -> Value {
        for _ in 0..3 {
            if self.reconcile_client().await.is_err() {
                break;
            }
            let c = self.client_obj().unwrap();
            if ready(&c).0 == "True" {
                return c;
            }
        }
        panic!(
            "client not Ready: {:#}\n{}",
            self.client_obj().unwrap()["status"],
            self.server.stderr()
        );
    }

    async fn reconcile_key_set(&self) -> Value {
        let k: SigningKeySet = serde_json::from_value(self.key_set()).unwrap();
        keyset::reconcile(Arc::new(k), self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("key set reconcile failed: {e}\n{}", self.server.stderr()));
        self.key_set()
    }

    /// Tenant, keys and client reconciled; returns (client id, secret, issuer) from the
    /// Secret the operator applied.
    async fn registered(&self) -> (String, String, String) {
        self.settle_tenant().await;
        self.reconcile_key_set().await;
        self.settle_client().await;
        self.credentials()
    }

    fn credentials(&self) -> (String, String, String) {
        let data = secret_data(&self.secret().expect("the credentials Secret exists"));
        (
            data["CLIENT_ID"].clone(),
            data["CLIENT_SECRET"].clone(),
            data["ISSUER_URL"].clone(),
        )
    }

    /// `POST {issuer}/token` with client_credentials and HTTP Basic client auth.
    async fn token(&self, issuer: &str, id: &str, secret: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{issuer}/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn jwks_kids(&self, issuer: &str) -> Vec<String> {
        let jwks: Value = self
            .http
            .get(format!("{issuer}/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kid"].as_str().map(Into::into))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applied_secret_gets_tokens_until_the_client_is_deleted() {
    let env = env().await;
    let t = env.settle_tenant().await;
    assert_eq!(t["status"]["issuer"], env.server.issuer("acme"));
    assert_eq!(
        t["status"]["discoveryUrl"],
        format!(
            "{}/.well-known/openid-configuration",
            env.server.issuer("acme")
        )
    );
    let discovery = env
        .http
        .get(t["status"]["discoveryUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), StatusCode::OK, "the tenant is served");
    // The purge CronJob was applied too.
    let cron = env
        .fake
        .get(
            "batch/v1",
            "cronjobs",
            Some("gatehouse"),
            "gatehouse-purge-acme",
        )
        .unwrap();
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");

    env.reconcile_key_set().await;
    let c = env.settle_client().await;
    assert_eq!(c["status"]["clientId"], "shop-web");
    let (id, secret, issuer) = env.credentials();
    assert_eq!(id, "shop-web");
    assert_eq!(issuer, env.server.issuer("acme"));

    let (status, body) = env.token(&issuer, &id, &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    let (status, _) = env.token(&issuer, &id, &format!("{secret}x")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a wrong secret is refused"
    );

    // Delete (deletionPolicy Delete, the default for clients): the finalizer runs
    // DeleteClient, then the object goes.
    env.fake
        .delete(GROUP_VERSION, "oidcclients", Some("shop"), "web");
    env.reconcile_client().await.unwrap();
    assert!(env.client_obj().is_none(), "finalizer removed, object gone");
    eventually(
        "the token endpoint to reject the deleted client",
        WAIT,
        || async {
            let (status, _) = env.token(&issuer, &id, &secret).await;
            (status == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_changed_through_the_admin_api_is_set_back_on_the_next_reconcile() {
    let env = env().await;
    let (id, secret, issuer) = env.registered().await;
    // Someone changes the client behind the operator's back: other scopes, new secret.
    let spec = proto::ClientSpec {
        client_id: id.clone(),
        client_type: "confidential".into(),
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["admin".into()],
        token_endpoint_auth_method: "client_secret_basic".into(),
        ..proto::ClientSpec::default()
    };
    env.admin
        .upsert_client(proto::UpsertClientRequest {
            managed_by: String::new(),
            tenant_id: "acme".into(),
            spec: Some(spec),
            secret: Some(proto::upsert_client_request::Secret::SuppliedSecret(
                "h".repeat(40),
            )),
        })
        .await
        .unwrap();
    eventually(
        "the hand-set secret to replace the operator's",
        WAIT,
        || async {
            (env.token(&issuer, &id, &secret).await.0 == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;

    env.reconcile_client().await.unwrap();
    let (status, body) = eventually("the operator's secret to work again", WAIT, || async {
        let r = env.token(&issuer, &id, &secret).await;
        (r.0 == StatusCode::OK).then_some(r)
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["scope"], "billing.read",
        "the spec's scopes are back"
    );
    assert!(
        env.ctx
            .events
            .recorded()
            .iter()
            .any(|e| e.reason == "ClientUpdated"),
        "{:?}",
        env.ctx.events.recorded()
    );
}

fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_secret_is_restored_with_working_credentials() {
    let env = env().await;
    let (id, old_secret, issuer) = env.registered().await;
    env.fake.delete("v1", "secrets", Some("shop"), "web-oidc");
    assert!(env.secret().is_none());
    env.reconcile_client().await.unwrap();
    let (same_id, new_secret, _) = env.credentials();
    assert_eq!(same_id, id);
    assert_ne!(
        new_secret, old_secret,
        "the plaintext was lost: a new secret was issued"
    );
    assert_eq!(env.token(&issuer, &id, &new_secret).await.0, StatusCode::OK);
    // The lost one keeps working for the overlap (apps still holding it).
    assert_eq!(env.token(&issuer, &id, &old_secret).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotate_secret_annotation_issues_a_new_secret_and_keeps_the_old_for_the_overlap() {
    let env = env().await;
    let (id, old_secret, issuer) = env.registered().await;
    env.fake
        .edit(GROUP_VERSION, "oidcclients", Some("shop"), "web", |c| {
            c["metadata"]["annotations"] = json!({ROTATE_SECRET_ANNOTATION: "2026-01-01"});
        });
    env.reconcile_client().await.unwrap();
    let c = env.client_obj().unwrap();
    assert_eq!(c["status"]["lastSecretRotationAnnotation"], "2026-01-01");
    let (_, new_secret, _) = env.credentials();
    assert_ne!(new_secret, old_secret);
    assert_eq!(env.token(&issuer, &id, &new_secret).await.0, StatusCode::OK);
    assert_eq!(
        env.token(&issuer, &id, &old_secret).await.0,
        StatusCode::OK,
        "overlap"
    );
    // Reconciling again does not rotate again.
    env.reconcile_client().await.unwrap();
    assert_eq!(env.credentials().1, new_secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_rotation_publishes_the_new_kid_in_the_jwks() {
    let env = env().await;
    env.settle_tenant().await;
    let issuer = env.server.issuer("acme");
    let k = env.reconcile_key_set().await;
    assert_eq!(ready(&k).0, "True", "{k:#}");
    let first: Vec<String> = k["status"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first.len(), 2, "one key per algorithm: {k:#}");
    assert!(k["status"]["nextRotation"].is_string());
    let published = env.jwks_kids(&issuer).await;
    assert!(
        first.iter().all(|kid| published.contains(kid)),
        "{published:?}"
    );

    env.fake
        .edit(GROUP_VERSION, "signingkeysets", None, "acme", |k| {
            k["metadata"]["annotations"] = json!({ROTATE_ANNOTATION: "now"});
        });
    let k = env.reconcile_key_set().await;
    assert_eq!(k["status"]["lastRotationAnnotation"], "now");
    let new: Vec<String> = k["status"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .filter(|kid| !first.contains(kid))
        .collect();
    assert_eq!(new.len(), 2, "a new key per algorithm: {k:#}");
    eventually("the JWKS to publish the new kids", WAIT, || async {
        let kids = env.jwks_kids(&issuer).await;
        new.iter().all(|kid| kids.contains(kid)).then_some(())
    })
    .await;
    assert!(
        env.ctx
            .events
            .recorded()
            .iter()
            .any(|e| e.reason == "KeysRotated"),
        "{:?}",
        env.ctx.events.recorded()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_the_server_rejects_is_invalid_spec_naming_the_field() {
    let env = env().await;
    env.fake
        .edit(GROUP_VERSION, "identitytenants", None, "acme", |t| {
            // Plain http on a non-loopback host: the CRD's CEL rule would reject it; the
            // fake API server does not run CEL, so the auth server's check is what answers.
            t["spec"]["issuer"] = json!("http://id.example.com/t/acme");
        });
    let mut last = None;
    for _ in 0..2 {
        let t: IdentityTenant = serde_json::from_value(env.tenant()).unwrap();
        last = tenant::reconcile(Arc::new(t), env.ctx.clone()).await.err();
    }
    let err = last.expect("the reconcile fails");
    assert!(err.awaits_change());
    let (status, reason, message) = ready(&env.tenant());
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.issuer:"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_with_policy_delete_removes_it_from_the_server() {
    let env = env().await;
    let (id, secret, issuer) = env.registered().await;
    env.fake
        .delete(GROUP_VERSION, "identitytenants", None, "acme");
    let t: IdentityTenant = serde_json::from_value(env.tenant()).unwrap();
    tenant::reconcile(Arc::new(t), env.ctx.clone())
        .await
        .unwrap();
    assert!(
        env.fake
            .get(GROUP_VERSION, "identitytenants", None, "acme")
            .is_none()
    );
    eventually("the issuer to stop being served", WAIT, || async {
        let s = env
            .http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .status();
        (s == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert_ne!(env.token(&issuer, &id, &secret).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_unreachable_admin_api_is_auth_server_unavailable() {
    // Needs no auth server: nothing listens on the port.
    let (kube, fake) = FakeKube::start();
    let port = crate::authserver::free_port();
    let admin = GrpcAdmin::connect_lazy(
        &format!("http://127.0.0.1:{port}"),
        &SecretString::from("t".repeat(32)),
    )
    .unwrap();
    let ctx = context(kube, Arc::new(admin), Events::capture());
    fake.insert(crate::tenant(
        "acme",
        "https://id.example.com/t/acme",
        "Retain",
    ));
    for _ in 0..2 {
        let t: IdentityTenant = serde_json::from_value(
            fake.get(GROUP_VERSION, "identitytenants", None, "acme")
                .unwrap(),
        )
        .unwrap();
        let _ = tenant::reconcile(Arc::new(t), ctx.clone()).await;
    }
    let t = fake
        .get(GROUP_VERSION, "identitytenants", None, "acme")
        .unwrap();
    let (status, reason, message) = ready(&t);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "AuthServerUnavailable"),
        "{message}"
    );
    let warnings: Vec<_> = ctx
        .events
        .recorded()
        .into_iter()
        .filter(|e| e.warning)
        .collect();
    assert_eq!(warnings[0].reason, "AuthServerUnavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_the_auth_server_may_not_fetch_is_upstream_unreachable_over_the_wire() {
    let env = env().await;
    env.fake.insert(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "corp-oidc", "namespace": "gatehouse"},
        "data": {"client-secret": "czNjcmV0"}}));
    // A plain-http upstream: the auth server's default outbound rules refuse it, and the
    // check runs under the same rules as a sign-in.
    let provider = json!([{"id": "corp", "displayName": "Corp",
        "issuer": "http://127.0.0.1:9/corp", "clientId": "gatehouse",
        "clientSecretRef": {"name": "corp-oidc"}}]);
    env.fake
        .edit(GROUP_VERSION, "identitytenants", None, "acme", |t| {
            t["spec"]["federation"] = json!({"providers": provider});
        });
    // The first reconcile adds the finalizer.
    let mut failed = None;
    for _ in 0..3 {
        let t: IdentityTenant = serde_json::from_value(env.tenant()).unwrap();
        if let Err(e) = tenant::reconcile(Arc::new(t), env.ctx.clone()).await {
            failed = Some(e);
            break;
        }
    }
    let err = failed.expect("the upstream check fails");
    assert_eq!(err.category(), "UpstreamUnreachable");
    let (status, reason, message) = ready(&env.tenant());
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "UpstreamUnreachable")
    );
    assert!(
        message.contains(
            "corp (oidc): discovery http://127.0.0.1:9/corp/.well-known/openid-configuration: \
             plain http is not allowed (outbound.allow_http)"
        ),
        "{message}"
    );
    // Registered all the same: the server answers for the tenant.
    let checks = env.admin.check_upstreams("acme").await.unwrap();
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].ok);

    // Without the provider the tenant is Ready again.
    env.fake
        .edit(GROUP_VERSION, "identitytenants", None, "acme", |t| {
            t["spec"]["federation"] = json!({"providers": []});
        });
    let (_, reason, message) = ready(&env.settle_tenant().await);
    assert_eq!(reason, "Reconciled", "{message}");
    assert_eq!(env.admin.check_upstreams("acme").await.unwrap(), []);
}
