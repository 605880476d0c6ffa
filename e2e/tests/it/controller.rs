//! A real `kube::runtime::Controller` against the fake: a tiny controller over
//! `OidcClient` that adds a finalizer, applies an owned Secret with server-side apply and
//! sets the status, watched with `.owns()` — the shape of the Gatehouse operator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::OidcClient;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as EventObject;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::wait::conditions;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::support::{create_namespace, start, wait_for};

const FINALIZER: &str = "test.gatehouse.dev/cleanup";
const MANAGER: &str = "e2e-test-controller";

struct Context {
    client: Client,
    recorder: Recorder,
    /// Objects whose cleanup ran, in order.
    cleaned: Mutex<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("failed to write to the API: {0}")]
    Kube(#[from] kube::Error),
    #[error("failed to run the finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

async fn apply(obj: Arc<OidcClient>, ctx: &Context) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-oidc"), "namespace": ns,
                     "ownerReferences": [obj.controller_owner_ref(&())]},
        "stringData": {"CLIENT_ID": format!("{ns}-{name}")},
    });
    Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &format!("{name}-oidc"),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    let status = json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
        "status": {"observedGeneration": obj.meta().generation, "clientId": format!("{ns}-{name}"),
                   "secretName": format!("{name}-oidc")},
    });
    Api::<OidcClient>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await?;
    // Published on every reconcile: the first creates the Event, later ones patch its series.
    ctx.recorder
        .publish(
            &KubeEvent {
                type_: EventType::Normal,
                reason: "Reconciled".into(),
                note: Some("Secret applied".into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            &obj.object_ref(&()),
        )
        .await?;
    Ok(Action::requeue(Duration::from_mins(5)))
}

async fn reconcile(obj: Arc<OidcClient>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<OidcClient> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(o) => apply(o, &ctx).await,
            Event::Cleanup(o) => {
                ctx.cleaned.lock().unwrap().push(o.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(_obj: Arc<OidcClient>, _err: &Error, _ctx: Arc<Context>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

fn client_object(name: &str) -> OidcClient {
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
        "metadata": {"name": name},
        "spec": {"tenantRef": "acme", "grantTypes": ["client_credentials"]},
    }))
    .unwrap()
}

fn reconciled(obj: Option<&OidcClient>) -> bool {
    obj.is_some_and(|o| {
        o.finalizers().iter().any(|f| f == FINALIZER)
            && o.status.as_ref().and_then(|s| s.observed_generation) == o.meta().generation
    })
}

#[tokio::test]
async fn controller_reconciles_existing_and_new_objects_and_cleans_up_on_delete() {
    let (_fake, client) = start().await;
    create_namespace(&client, "shop", json!({})).await;
    let clients: Api<OidcClient> = Api::namespaced(client.clone(), "shop");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop");
    clients
        .create(&PostParams::default(), &client_object("before"))
        .await
        .unwrap();

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: None,
            },
        ),
        cleaned: Mutex::new(Vec::new()),
    });
    let controller = Controller::new(
        Api::<OidcClient>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, Arc::clone(&ctx))
    .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    // Created before the controller started: picked up by the initial LIST.
    let before = wait_for(&clients, "before", reconciled).await.unwrap();
    assert_eq!(
        before.status.unwrap().client_id.as_deref(),
        Some("shop-before")
    );
    let secret = secrets.get("before-oidc").await.unwrap();
    assert_eq!(secret.data.unwrap()["CLIENT_ID"].0, b"shop-before");
    assert_eq!(secret.metadata.owner_references.unwrap()[0].name, "before");

    // Created after: picked up by the WATCH.
    clients
        .create(&PostParams::default(), &client_object("after"))
        .await
        .unwrap();
    let after = wait_for(&clients, "after", reconciled).await.unwrap();

    // A spec change is reconciled again (generation 2 observed).
    clients
        .patch(
            "after",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "After"}})),
        )
        .await
        .unwrap();
    let respecced = wait_for(&clients, "after", reconciled).await.unwrap();
    assert_eq!(respecced.meta().generation, Some(2));

    // The owned Secret deleted by hand comes back through `.owns()`.
    let lost = secrets.get("before-oidc").await.unwrap();
    secrets
        .delete("before-oidc", &DeleteParams::default())
        .await
        .unwrap();
    let restored = wait_for(&secrets, "before-oidc", |s: Option<&Secret>| {
        s.is_some_and(|s| s.uid() != lost.uid())
    })
    .await
    .unwrap();
    assert!(restored.uid().is_some());

    // Deletion: the finalizer's cleanup runs, then the object and its Secret go.
    let after_secret = secrets.get("after-oidc").await.unwrap();
    clients
        .delete("after", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &clients,
        "after",
        conditions::is_deleted(&after.uid().unwrap()),
    )
    .await;
    wait_for(
        &secrets,
        "after-oidc",
        conditions::is_deleted(&after_secret.uid().unwrap()),
    )
    .await;
    assert_eq!(*ctx.cleaned.lock().unwrap(), ["after"]);

    assert_events_recorded(&client).await;
    assert!(clients.get_opt("before").await.unwrap().is_some());

    controller.abort();
}

/// Events (events.k8s.io/v1) were recorded, repeated ones as a series.
async fn assert_events_recorded(client: &Client) {
    let events = Api::<EventObject>::namespaced(client.clone(), "shop")
        .list(&ListParams::default())
        .await
        .unwrap();
    let for_before: Vec<&EventObject> = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("before"))
        .collect();
    assert!(!for_before.is_empty());
    assert!(
        for_before
            .iter()
            .all(|e| e.reason.as_deref() == Some("Reconciled"))
    );
    assert!(
        events.items.iter().any(|e| e.series.is_some()),
        "a repeated event is patched into a series"
    );
}
