//! Helpers shared by the test modules.

use std::fmt::Debug;
use std::time::Duration;

use e2e::FakeApiServer;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

/// How long a test waits for something the fake or a controller should do at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// A fresh fake API server and a client for it.
pub async fn start() -> (FakeApiServer, Client) {
    let fake = FakeApiServer::start().await.expect("fake apiserver starts");
    let client = fake.client().expect("client for the fake");
    (fake, client)
}

/// Creates namespace `name` with `labels`.
pub async fn create_namespace(client: &Client, name: &str, labels: serde_json::Value) {
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
    )
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// The `(code, reason)` of an API error, for asserting on it.
pub fn api_error<T: Debug>(result: kube::Result<T>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Waits (watching, no polling) until `cond` holds for object `name`, and returns it.
pub async fn wait_for<K>(api: &Api<K>, name: &str, cond: impl Condition<K>) -> Option<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {name}"))
        .expect("watch for the condition")
}
