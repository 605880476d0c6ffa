//! Operator integration tests (one binary, STYLE §7):
//!
//! - [`real_grpc`]: the reconcile functions against a real `authserver serve` on
//!   PostgreSQL (Kubernetes side: [`kube_fake`]); credentials from the applied Secret get
//!   tokens, deleted clients are rejected, rotated keys show up in the JWKS. Needs the
//!   authserver binary: `cargo build -p authserver && cargo test -p operator`.
//! - [`controller_loop`]: the real kube-runtime `Controller`s (LIST, WATCH, `.owns()`)
//!   against [`kube_fake`] and an in-memory admin API.

// All of this crate is test code, but clippy.toml's allow-*-in-tests only covers
// `#[test]` functions, not the helpers they share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin_stub;
mod admin_tls;
mod authserver;
mod controller_loop;
mod docs;
mod kube_fake;
mod rbac;
mod real_grpc;

use std::sync::Arc;
use std::time::Duration;

use operator::admin_client::AdminApi;
use operator::context::{Config, Context, Events, SystemClock};
use operator::metrics::Metrics;
use operator::migration::MigrationState;
use serde_json::{Value, json};
use tokio::sync::watch;

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
        job_pods: operator::authserver_pod::PodOverlay::default(),
        scope: operator::scope::Scope::default(),
    }
}

/// A context with the migration done and Events kept in memory (or sent to the API
/// server with `events`).
pub fn context(client: kube::Client, admin: Arc<dyn AdminApi>, events: Events) -> Arc<Context> {
    let (tx, rx) = watch::channel(MigrationState::Succeeded);
    drop(tx);
    Arc::new(Context::new(
        client,
        admin,
        config(),
        events,
        Arc::new(Metrics::new()),
        Arc::new(SystemClock),
        rx,
    ))
}

pub const GROUP_VERSION: &str = "gatehouse.dev/v1alpha1";

pub fn namespace(name: &str, tenant: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": {"gatehouse.dev/tenant": tenant}}})
}

pub fn tenant(name: &str, issuer: &str, deletion_policy: &str) -> Value {
    json!({"apiVersion": GROUP_VERSION, "kind": "IdentityTenant", "metadata": {"name": name},
           "spec": {"issuer": issuer, "displayName": "ACME",
                    "allowedNamespaces": {"matchLabels": {"gatehouse.dev/tenant": name}},
                    "deletionPolicy": deletion_policy}})
}

pub fn machine_client(namespace: &str, name: &str, tenant: &str) -> Value {
    json!({"apiVersion": GROUP_VERSION, "kind": "OidcClient",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"tenantRef": tenant, "grantTypes": ["client_credentials"],
                    "scopes": ["billing.read"], "secretRotationOverlapSeconds": 3600}})
}

pub fn key_set(tenant: &str) -> Value {
    json!({"apiVersion": GROUP_VERSION, "kind": "SigningKeySet", "metadata": {"name": tenant},
           "spec": {"tenantRef": tenant, "algorithms": ["RS256", "ES256"],
                    "rotationIntervalDays": 90, "overlapWindowSeconds": 7200}})
}

/// The decoded `data` of a Secret.
pub fn secret_data(secret: &Value) -> std::collections::BTreeMap<String, String> {
    use base64::Engine as _;
    secret["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            (k.clone(), String::from_utf8(bytes).unwrap())
        })
        .collect()
}

/// The `Ready` condition of an object as (status, reason, message).
pub fn ready(obj: &Value) -> (String, String, String) {
    let c = obj["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
        c["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Polls `check` (every 20 ms, up to `timeout`) until it returns `Some`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
