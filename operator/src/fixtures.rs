//! Test fixtures: a scripted Kubernetes API server (`tower_test` behind `kube::Client`)
//! that asserts each request in order, an in-memory fake of the admin API, object
//! builders and a fixed clock, like kube-rs/controller-rs's `src/fixtures.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{IdentityTenant, OidcClient, SigningKeySet};
use http::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::admin_client::{AdminApi, AdminError, AdminErrorKind, AdminResult, proto};
use crate::context::{Clock, Config, Context, Events};
use crate::metrics::Metrics;
use crate::migration::MigrationState;

/// 2026-01-01T00:00:00Z, the time every test runs at.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_767_225_600).unwrap()
}

/// A clock stopped at [`now`].
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

pub fn clock() -> FixedClock {
    FixedClock(now())
}

/// The operator configuration of the tests.
pub fn config() -> Config {
    Config {
        namespace: "gatehouse".into(),
        authserver_image: "ghcr.io/gatehouse-dev/authserver:1.2.3".into(),
        database_secret: "gatehouse-database".into(),
        encryption_secret: "gatehouse-encryption".into(),
        authserver_config_map: None,
        resync: Duration::from_mins(5),
        migration_deadline: std::time::Duration::from_mins(10),
        concurrency: 4,
        job_pods: crate::authserver_pod::PodOverlay::default(),
        scope: crate::scope::Scope::default(),
    }
}

/// A context over `client` and `admin`, with Events captured and the migration `state`.
pub fn context(client: Client, admin: Arc<FakeAdmin>, state: MigrationState) -> Arc<Context> {
    context_in(client, admin, state, crate::scope::Scope::default())
}

/// [`context`] of an operator with `scope` (watched namespaces, instance).
pub fn context_in(
    client: Client,
    admin: Arc<FakeAdmin>,
    state: MigrationState,
    scope: crate::scope::Scope,
) -> Arc<Context> {
    let (tx, rx) = watch::channel(state);
    // The sender may go: reconciles only read the current state.
    drop(tx);
    Arc::new(Context::new(
        client,
        admin,
        Config { scope, ..config() },
        Events::capture(),
        Arc::new(Metrics::new()),
        Arc::new(clock()),
        rx,
    ))
}

// ---------------------------------------------------------------------------------------
// Objects

fn metadata(name: &str, namespace: Option<&str>, uid: &str) -> Value {
    let mut m = json!({
        "name": name,
        "uid": uid,
        "generation": 1,
        "resourceVersion": "100",
        "creationTimestamp": "2025-12-01T00:00:00Z",
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// IdentityTenant `acme` (issuer `https://id.example.com/t/acme`, namespaces labelled
/// `gatehouse.dev/tenant=acme` allowed), with `spec` merged over those defaults.
pub fn tenant(spec: Value) -> IdentityTenant {
    let mut base = json!({
        "issuer": "https://id.example.com/t/acme",
        "displayName": "ACME",
        "allowedNamespaces": {"matchLabels": {"gatehouse.dev/tenant": "acme"}},
    });
    merge(&mut base, spec);
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1",
        "kind": "IdentityTenant",
        "metadata": metadata("acme", None, "uid-tenant-acme"),
        "spec": base,
    }))
    .unwrap()
}

/// OidcClient `shop/web` of tenant `acme` (confidential, client_credentials), with `spec`
/// merged over those defaults.
pub fn client(spec: Value) -> OidcClient {
    let mut base = json!({
        "tenantRef": "acme",
        "grantTypes": ["client_credentials"],
        "scopes": ["billing.read"],
    });
    merge(&mut base, spec);
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1",
        "kind": "OidcClient",
        "metadata": metadata("web", Some("shop"), "uid-client-web"),
        "spec": base,
    }))
    .unwrap()
}

/// SigningKeySet `acme` for tenant `acme` (RS256 and ES256), with `spec` merged over it.
pub fn keyset(spec: Value) -> SigningKeySet {
    let mut base = json!({"tenantRef": "acme", "algorithms": ["RS256", "ES256"]});
    merge(&mut base, spec);
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1",
        "kind": "SigningKeySet",
        "metadata": metadata("acme", None, "uid-keyset-acme"),
        "spec": base,
    }))
    .unwrap()
}

fn merge(base: &mut Value, over: Value) {
    if let (Some(b), Value::Object(o)) = (base.as_object_mut(), over) {
        for (k, v) in o {
            b.insert(k, v);
        }
    }
}

/// Builder-style changes to test objects.
pub trait TestObject: kube::Resource + Sized {
    /// With the operator's finalizer, as after the first reconcile.
    fn finalized(mut self) -> Self {
        self.meta_mut().finalizers = Some(vec![crate::controller::FINALIZER.to_owned()]);
        self
    }

    /// Being deleted (deletionTimestamp set).
    fn deleting(mut self) -> Self {
        self.meta_mut().deletion_timestamp = Some(Time(now()));
        self
    }

    fn annotated(mut self, key: &str, value: &str) -> Self {
        self.meta_mut()
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }

    fn labelled(mut self, key: &str, value: &str) -> Self {
        self.meta_mut()
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }

    fn in_namespace(mut self, namespace: &str) -> Self {
        self.meta_mut().namespace = Some(namespace.to_owned());
        self
    }

    fn named(mut self, name: &str, uid: &str) -> Self {
        self.meta_mut().name = Some(name.to_owned());
        self.meta_mut().uid = Some(uid.to_owned());
        self
    }

    fn created_at(mut self, rfc3339: &str) -> Self {
        self.meta_mut().creation_timestamp = Some(Time(rfc3339.parse().unwrap()));
        self
    }
}

impl<K: kube::Resource> TestObject for K {}

/// A Secret as the API server returns it.
pub fn secret(
    namespace: &str,
    name: &str,
    data: &[(&str, &str)],
    owner_uid: Option<&str>,
) -> Value {
    use base64::Engine as _;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    let mut s = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7", "uid": format!("uid-secret-{name}")},
        "type": "Opaque",
        "data": data,
    });
    if let Some(uid) = owner_uid {
        s["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient", "name": "web",
            "uid": uid, "controller": true,
        }]);
        s["metadata"]["labels"] = json!({
            "app.kubernetes.io/managed-by": "gatehouse-operator",
            "app.kubernetes.io/name": "gatehouse",
            "app.kubernetes.io/component": "client-credentials",
            "gatehouse.dev/oidcclient": "web",
        });
    }
    s
}

/// Decodes a Secret body's `data` (as applied by the operator) into strings.
pub fn secret_data(body: &Value) -> BTreeMap<String, String> {
    use base64::Engine as _;
    body["data"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap())
                        .unwrap();
                    (k.clone(), String::from_utf8(bytes).unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Namespace with labels.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A list response.
#[allow(clippy::needless_pass_by_value)] // reads best at the call sites
pub fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "100"}, "items": items})
}

// ---------------------------------------------------------------------------------------
// Scripted API server

type Check = Box<dyn FnOnce(&Value) + Send>;

enum Reply {
    /// Answer with the request body (what the API server returns for an apply, roughly).
    Echo,
    Json(StatusCode, Value),
}

/// One expected request and its answer.
pub struct Step {
    method: Method,
    path: String,
    query: Vec<String>,
    content_type: Option<&'static str>,
    field_manager: Option<String>,
    check: Option<Check>,
    reply: Reply,
}

impl Step {
    fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            query: Vec::new(),
            content_type: None,
            field_manager: None,
            check: None,
            reply: Reply::Echo,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }

    /// `POST path` (answered with the request body).
    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }

    /// `PUT path` (answered with the request body).
    pub fn put(path: &str) -> Self {
        Self::new(Method::PUT, path)
    }

    /// `DELETE path`.
    pub fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path).respond(json!({
            "apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}
        }))
    }

    /// A server-side apply: `PATCH path?fieldManager=<manager>&force=true` with
    /// `application/apply-patch+yaml`.
    pub fn apply(path: &str, manager: &str) -> Self {
        let mut s = Self::new(Method::PATCH, path);
        s.content_type = Some("application/apply-patch+yaml");
        s.field_manager = Some(manager.to_owned());
        s
    }

    /// A JSON patch (what the finalizer helper sends).
    pub fn json_patch(path: &str) -> Self {
        let mut s = Self::new(Method::PATCH, path);
        s.content_type = Some("application/json-patch+json");
        s
    }

    /// The query must contain `fragment` (URL-encoded as sent).
    pub fn query(mut self, fragment: &str) -> Self {
        self.query.push(fragment.to_owned());
        self
    }

    /// Runs `check` on the JSON request body.
    pub fn check(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(check));
        self
    }

    /// Answers 200 with `body`.
    pub fn respond(mut self, body: Value) -> Self {
        self.reply = Reply::Json(StatusCode::OK, body);
        self
    }

    /// Answers with the object, serialized.
    pub fn respond_obj(self, obj: &impl serde::Serialize) -> Self {
        self.respond(serde_json::to_value(obj).unwrap())
    }

    /// Answers 404 NotFound.
    pub fn not_found(mut self) -> Self {
        self.reply = Reply::Json(
            StatusCode::NOT_FOUND,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
        );
        self
    }

    /// Answers with an API error whose message is the reason.
    pub fn fails(self, code: u16, reason: &str) -> Self {
        self.fails_with(code, reason, reason)
    }

    /// Answers with an API error and the API server's `message`.
    pub fn fails_with(mut self, code: u16, reason: &str, message: &str) -> Self {
        self.reply = Reply::Json(
            StatusCode::from_u16(code).unwrap(),
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                   "reason": reason, "code": code, "message": message, "metadata": {}}),
        );
        self
    }
}

/// Serves the scripted [`Step`]s in order, asserting each request.
pub struct ApiServerVerifier {
    task: tokio::task::JoinHandle<()>,
}

impl ApiServerVerifier {
    /// A client whose requests must be exactly `steps`, in order.
    pub fn run(steps: Vec<Step>) -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let task = tokio::spawn(async move {
            for (i, step) in steps.into_iter().enumerate() {
                let (req, send) = handle
                    .next_request()
                    .await
                    .unwrap_or_else(|| panic!("step {i}: expected {} {}", step.method, step.path));
                let query = req.uri().query().unwrap_or_default().to_owned();
                let what = format!("step {i}: {} {}?{query}", req.method(), req.uri().path());
                assert_eq!(req.method(), step.method, "{what}");
                assert_eq!(req.uri().path(), step.path, "{what}");
                for fragment in &step.query {
                    assert!(
                        query.contains(fragment.as_str()),
                        "{what}: query lacks {fragment}"
                    );
                }
                if let Some(ct) = step.content_type {
                    assert_eq!(req.headers()["content-type"], ct, "{what}");
                }
                if let Some(manager) = &step.field_manager {
                    assert!(
                        query.contains(&format!("fieldManager={}", manager.replace('/', "%2F"))),
                        "{what}: wrong field manager, expected {manager}"
                    );
                    assert!(query.contains("force=true"), "{what}: apply without force");
                }
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                };
                if let Some(check) = step.check {
                    check(&body);
                }
                let (status, reply) = match step.reply {
                    Reply::Echo => (StatusCode::OK, body),
                    Reply::Json(status, v) => (status, v),
                };
                send.send_response(
                    Response::builder()
                        .status(status)
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
            }
        });
        (client, Self { task })
    }

    /// Waits until every step was served (and its assertions passed).
    pub async fn done(self) {
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the code under test made fewer requests than scripted")
            .expect("a scripted request failed its assertions");
    }
}

// ---------------------------------------------------------------------------------------
// Fake admin API

/// A client registration in the fake.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeClient {
    pub spec: proto::ClientSpec,
    /// Currently valid secrets, the current one first.
    pub secrets: Vec<String>,
}

/// State of the fake admin API.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Every call, as `Method(args)`, in order.
    pub calls: Vec<String>,
    pub tenants: BTreeMap<String, proto::Tenant>,
    pub clients: BTreeMap<(String, String), FakeClient>,
    /// Ids of deleted clients: the server refuses to register them again.
    pub retired: std::collections::BTreeSet<(String, String)>,
    pub keys: BTreeMap<String, Vec<proto::SigningKey>>,
    /// Every call fails with this error while set.
    pub fail: Option<AdminError>,
    /// Calls of this method fail with the error.
    pub fail_method: Option<(&'static str, AdminError)>,
    /// `next_rotation` the fake reports.
    pub next_rotation: Option<i64>,
    /// Whether `if_due` rotates (the fake has no notion of age).
    pub rotation_due: bool,
    /// Upstream providers (by id) whose check fails, with the reason; every other
    /// provider of a tenant's settings checks out.
    pub upstreams_down: BTreeMap<String, String>,
    counter: u32,
}

/// An in-memory admin API with the server's semantics where the reconcilers depend on
/// them (secret issuance and rotation, NOT_FOUND for unknown tenants and clients).
#[derive(Debug, Default)]
pub struct FakeAdmin {
    pub state: Mutex<FakeState>,
}

impl FakeAdmin {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A fake that already has tenant `acme`.
    pub fn with_tenant() -> Arc<Self> {
        let fake = Self::new();
        fake.state().tenants.insert(
            "acme".into(),
            proto::Tenant {
                id: "acme".into(),
                issuer: "https://id.example.com/t/acme".into(),
                display_name: "ACME".into(),
                settings_json: "{}".into(),
                created_at: 0,
                updated_at: 0,
            },
        );
        fake
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Every call fails with `kind` from now on.
    pub fn fail_with(&self, kind: AdminErrorKind, message: &str) {
        self.state().fail = Some(AdminError::new(kind, message));
    }

    /// The check of upstream provider `id` fails with `message` from now on.
    pub fn upstream_down(&self, id: &str, message: &str) {
        self.state()
            .upstreams_down
            .insert(id.to_owned(), message.to_owned());
    }

    /// The check of upstream provider `id` passes again.
    pub fn upstream_up(&self, id: &str) {
        self.state().upstreams_down.remove(id);
    }

    /// Calls of `method` fail with `kind`.
    pub fn fail_method(&self, method: &'static str, kind: AdminErrorKind, message: &str) {
        self.state().fail_method = Some((method, AdminError::new(kind, message)));
    }

    fn enter(
        &self,
        method: &'static str,
        args: &str,
    ) -> AdminResult<std::sync::MutexGuard<'_, FakeState>> {
        let mut s = self.state();
        s.calls.push(format!("{method}({args})"));
        if let Some(e) = &s.fail {
            return Err(e.clone());
        }
        if let Some((m, e)) = &s.fail_method
            && *m == method
        {
            return Err(e.clone());
        }
        Ok(s)
    }
}

impl FakeState {
    fn new_secret(&mut self) -> String {
        self.counter += 1;
        format!("generated-secret-{:04}-{}", self.counter, "x".repeat(40))
    }

    fn require_tenant(&self, id: &str) -> AdminResult<()> {
        if self.tenants.contains_key(id) {
            Ok(())
        } else {
            Err(AdminError::new(
                AdminErrorKind::NotFound,
                format!("tenant {id:?} does not exist"),
            ))
        }
    }
}

/// The fake's `Client.secret_fingerprint` of a secret (the server's is a hash of its
/// keyed digest; any function of the secret that does not show it serves here).
pub fn fingerprint(secret: &str) -> String {
    format!("fp-{}", crate::authserver_pod::short_hash(secret))
}

fn uses_secret(spec: &proto::ClientSpec) -> bool {
    matches!(
        spec.token_endpoint_auth_method.as_str(),
        "client_secret_basic" | "client_secret_post" | ""
    ) && spec.client_type != "public"
}

#[tonic::async_trait]
impl AdminApi for FakeAdmin {
    async fn health(&self) -> AdminResult<proto::HealthResponse> {
        let _s = self.enter("Health", "")?;
        Ok(proto::HealthResponse {
            database_reachable: true,
            schema_current: true,
            schema_version: 2,
            pending_migrations: vec![],
        })
    }

    async fn upsert_tenant(
        &self,
        req: proto::UpsertTenantRequest,
    ) -> AdminResult<proto::UpsertTenantResponse> {
        let mut s = self.enter("UpsertTenant", &req.id)?;
        let tenant = proto::Tenant {
            id: req.id.clone(),
            issuer: req.issuer.trim_end_matches('/').to_owned(),
            display_name: req.display_name,
            settings_json: req.settings_json,
            created_at: 0,
            updated_at: 0,
        };
        let changed = s.tenants.get(&req.id) != Some(&tenant);
        s.tenants.insert(req.id, tenant.clone());
        Ok(proto::UpsertTenantResponse {
            tenant: Some(tenant),
            changed,
        })
    }

    async fn delete_tenant(&self, id: &str) -> AdminResult<bool> {
        let mut s = self.enter("DeleteTenant", id)?;
        s.clients.retain(|(t, _), _| t != id);
        s.retired.retain(|(t, _)| t != id);
        s.keys.remove(id);
        Ok(s.tenants.remove(id).is_some())
    }

    /// As the server: one check per provider of the stored settings, in order.
    async fn check_upstreams(&self, tenant_id: &str) -> AdminResult<Vec<proto::UpstreamCheck>> {
        let s = self.enter("CheckUpstreams", tenant_id)?;
        s.require_tenant(tenant_id)?;
        let settings: Value =
            serde_json::from_str(&s.tenants[tenant_id].settings_json).unwrap_or_default();
        let providers = settings["federation"]["providers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(providers
            .iter()
            .map(|p| {
                let id = p["id"].as_str().unwrap_or_default().to_owned();
                let down = s.upstreams_down.get(&id);
                proto::UpstreamCheck {
                    kind: p["kind"].as_str().unwrap_or("oidc").to_owned(),
                    ok: down.is_none(),
                    message: down
                        .cloned()
                        .unwrap_or_else(|| "fake: reachable".to_owned()),
                    provider_id: id,
                }
            })
            .collect())
    }

    async fn upsert_client(
        &self,
        req: proto::UpsertClientRequest,
    ) -> AdminResult<proto::UpsertClientResponse> {
        let spec = req.spec.clone().unwrap_or_default();
        let how = match &req.secret {
            Some(proto::upsert_client_request::Secret::SuppliedSecret(_)) => "supplied",
            Some(proto::upsert_client_request::Secret::GenerateIfMissing(_)) => "generate",
            Some(proto::upsert_client_request::Secret::ExpectSecretFingerprint(_)) => "expect",
            None => "none",
        };
        let mut s = self.enter(
            "UpsertClient",
            &format!("{}/{}, {how}", req.tenant_id, spec.client_id),
        )?;
        s.require_tenant(&req.tenant_id)?;
        let key = (req.tenant_id.clone(), spec.client_id.clone());
        if s.retired.contains(&key) {
            return Err(AdminError::new(
                AdminErrorKind::ClientIdRetired,
                format!("client id {:?} is retired", spec.client_id),
            ));
        }
        let existing = s.clients.get(&key).cloned();
        let mut secrets = existing
            .as_ref()
            .map(|c| c.secrets.clone())
            .unwrap_or_default();
        let mut generated = None;
        let mut secret_changed = false;
        if uses_secret(&spec) {
            match req.secret {
                // As the server: the current secret must be the one named, else ABORTED
                // and nothing changed (a missing client too).
                Some(proto::upsert_client_request::Secret::ExpectSecretFingerprint(f))
                    if secrets.first().map(|s| fingerprint(s)) != Some(f.clone()) =>
                {
                    return Err(AdminError::new(
                        AdminErrorKind::Other,
                        format!("client {:?} changed since it was read", spec.client_id),
                    ));
                }
                // The server replaces all secrets unless the supplied one is the current
                // one (a rotation overlap survives re-supplying it).
                Some(proto::upsert_client_request::Secret::SuppliedSecret(v))
                    if secrets.first() != Some(&v) =>
                {
                    secrets = vec![v];
                    secret_changed = true;
                }
                Some(
                    proto::upsert_client_request::Secret::SuppliedSecret(_)
                    | proto::upsert_client_request::Secret::ExpectSecretFingerprint(_),
                ) => {}
                _ if secrets.is_empty() => {
                    let new = s.new_secret();
                    secrets = vec![new.clone()];
                    generated = Some(new);
                    secret_changed = true;
                }
                _ => {}
            }
        } else {
            secret_changed = !secrets.is_empty();
            secrets.clear();
        }
        let outcome = match &existing {
            None => proto::UpsertOutcome::Created,
            Some(c) if c.spec != spec || secret_changed => proto::UpsertOutcome::Updated,
            Some(_) => proto::UpsertOutcome::Unchanged,
        };
        s.clients.insert(
            key,
            FakeClient {
                spec: spec.clone(),
                secrets: secrets.clone(),
            },
        );
        Ok(proto::UpsertClientResponse {
            // Only the typed field: the operator must not depend on the legacy name.
            outcome_name: String::new(),
            outcome: outcome.into(),
            generated_secret: generated,
            client: Some(proto::Client {
                tenant_id: req.tenant_id,
                spec: Some(spec),
                valid_secrets: u32::try_from(secrets.len()).unwrap(),
                created_at: 0,
                updated_at: 0,
                secret_fingerprint: secrets.first().map(|s| fingerprint(s)).unwrap_or_default(),
            }),
        })
    }

    async fn delete_client(&self, tenant_id: &str, client_id: &str) -> AdminResult<bool> {
        let mut s = self.enter("DeleteClient", &format!("{tenant_id}/{client_id}"))?;
        let key = (tenant_id.to_owned(), client_id.to_owned());
        let existed = s.clients.remove(&key).is_some();
        if existed {
            s.retired.insert(key);
        }
        Ok(existed)
    }

    async fn rotate_client_secret(
        &self,
        req: proto::RotateClientSecretRequest,
    ) -> AdminResult<proto::RotateClientSecretResponse> {
        let mut s = self.enter(
            "RotateClientSecret",
            &format!(
                "{}/{}, overlap={}{}",
                req.tenant_id,
                req.client_id,
                req.overlap_seconds,
                if req.supplied_secret.is_some() {
                    ", supplied"
                } else {
                    ""
                }
            ),
        )?;
        let key = (req.tenant_id.clone(), req.client_id.clone());
        if !s.clients.contains_key(&key) {
            return Err(AdminError::new(
                AdminErrorKind::NotFound,
                "client does not exist",
            ));
        }
        let (new, generated) = if let Some(v) = req.supplied_secret {
            (v, None)
        } else {
            let v = s.new_secret();
            (v.clone(), Some(v))
        };
        let client = s.clients.get_mut(&key).unwrap();
        let previous = client.secrets.first().cloned();
        client.secrets = std::iter::once(new).chain(previous).collect();
        Ok(proto::RotateClientSecretResponse {
            generated_secret: generated,
            previous_secret_expires_at: 0,
        })
    }

    async fn list_signing_keys(
        &self,
        req: proto::ListSigningKeysRequest,
    ) -> AdminResult<proto::SigningKeySet> {
        let s = self.enter("ListSigningKeys", &req.tenant_id)?;
        s.require_tenant(&req.tenant_id)?;
        Ok(proto::SigningKeySet {
            keys: s.keys.get(&req.tenant_id).cloned().unwrap_or_default(),
            next_rotation: s.next_rotation,
        })
    }

    async fn rotate_signing_keys(
        &self,
        req: proto::RotateSigningKeysRequest,
    ) -> AdminResult<proto::RotateSigningKeysResponse> {
        let mut s = self.enter(
            "RotateSigningKeys",
            // The typed field, so the tests prove the operator sets it.
            &format!(
                "{}, {}",
                req.tenant_id,
                crate::keyset::mode_name(req.rotation())
            ),
        )?;
        s.require_tenant(&req.tenant_id)?;
        let mode = req.rotation();
        let now_mode = mode == proto::RotationMode::Now;
        let algorithms = req
            .policy
            .as_ref()
            .map(|p| p.algorithms.clone())
            .unwrap_or_default();
        // As the server: a delay shorter than its JWKS max-age (900 s) is refused; unset
        // means its default (max-age + 60 s).
        let delay = match req.policy.as_ref().and_then(|p| p.promotion_delay_seconds) {
            Some(d) if d < 900 => {
                return Err(AdminError::new(
                    AdminErrorKind::InvalidArgument,
                    format!(
                        "policy.promotion_delay_seconds: {d} s is shorter than the JWKS \
                         max-age of 900 s (the Cache-Control of the JWKS)"
                    ),
                ));
            }
            Some(d) => i64::try_from(d).unwrap(),
            None => 960,
        };
        let due = s.rotation_due;
        let t = now().as_second();
        let mut created = Vec::new();
        for alg in algorithms {
            let has = s.keys.get(&req.tenant_id).is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.alg == alg && k.key_state() == proto::KeyState::Active)
            });
            let rotate = match mode {
                proto::RotationMode::Bootstrap => !has,
                proto::RotationMode::IfDue => !has || due,
                _ => true,
            };
            if !rotate {
                continue;
            }
            s.counter += 1;
            let kid = format!("{}-{}", alg.to_lowercase(), s.counter);
            let keys = s.keys.entry(req.tenant_id.clone()).or_default();
            // A first key and an emergency one sign at once; a replacement is published
            // first and signs after the promotion delay, as the server does.
            let activates_at = if !has || now_mode { t } else { t + delay };
            for k in keys
                .iter_mut()
                .filter(|k| k.alg == alg && k.key_state() != proto::KeyState::Retired)
            {
                if now_mode {
                    k.set_key_state(proto::KeyState::Retired);
                    k.superseded_at = Some(t);
                    k.retires_at = Some(t);
                } else if k.superseded_at.is_none() {
                    k.superseded_at = Some(activates_at);
                    k.retires_at = Some(activates_at + 7200);
                }
            }
            let key = proto::SigningKey {
                kid,
                alg: alg.clone(),
                // Only the typed state: the operator must not depend on the name.
                state: String::new(),
                key_state: if activates_at > t {
                    proto::KeyState::Pending
                } else {
                    proto::KeyState::Active
                }
                .into(),
                created_at: t,
                activates_at,
                superseded_at: None,
                retires_at: None,
                source: "generated".into(),
            };
            keys.push(key.clone());
            created.push(key);
        }
        Ok(proto::RotateSigningKeysResponse {
            created,
            key_set: Some(proto::SigningKeySet {
                keys: s.keys.get(&req.tenant_id).cloned().unwrap_or_default(),
                next_rotation: s.next_rotation,
            }),
        })
    }

    async fn import_signing_key(
        &self,
        req: proto::ImportSigningKeyRequest,
    ) -> AdminResult<proto::ImportSigningKeyResponse> {
        let mut s = self.enter(
            "ImportSigningKey",
            &format!("{}, {}", req.tenant_id, req.alg),
        )?;
        s.require_tenant(&req.tenant_id)?;
        if !req.private_key_pem.contains("BEGIN PRIVATE KEY") {
            return Err(AdminError::new(
                AdminErrorKind::InvalidArgument,
                "private_key_pem: not a PKCS#8 PEM private key",
            ));
        }
        let kid = format!(
            "imported-{}-{}",
            req.alg.to_lowercase(),
            short(&req.private_key_pem)
        );
        let keys = s.keys.entry(req.tenant_id.clone()).or_default();
        let imported = !keys.iter().any(|k| k.kid == kid);
        if imported {
            keys.push(proto::SigningKey {
                kid: kid.clone(),
                alg: req.alg,
                state: String::new(),
                key_state: proto::KeyState::Active.into(),
                created_at: now().as_second(),
                activates_at: now().as_second(),
                superseded_at: None,
                retires_at: None,
                source: "imported".into(),
            });
        }
        Ok(proto::ImportSigningKeyResponse { kid, imported })
    }
}

fn short(s: &str) -> String {
    crate::authserver_pod::short_hash(s)
}

/// Asserts that a status apply body has `Ready` with `status` and `reason`, and returns
/// its message.
#[track_caller]
pub fn assert_ready(body: &Value, status: &str, reason: &str) -> String {
    let ready = &body["status"]["conditions"][0];
    assert_eq!(ready["type"], "Ready", "{body:#}");
    assert_eq!(ready["status"], status, "{body:#}");
    assert_eq!(ready["reason"], reason, "{body:#}");
    ready["message"].as_str().unwrap_or_default().to_owned()
}
