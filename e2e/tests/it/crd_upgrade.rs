//! The CRD upgrade runbook (docs/kubernetes.md "CRD upgrade"): Helm never upgrades
//! `crds/`, so the new CRDs are applied first with `kubectl apply --server-side
//! --force-conflicts -f charts/gatehouse/crds/`. Checked against the fake API server,
//! which prunes fields a CRD's schema does not know, as the real one does: with the old
//! CRD a new field is dropped; after the server-side apply of the shipped files it is
//! kept, and the objects created before are untouched.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt as _;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{create_namespace, start};

const CRD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/gatehouse/crds");

/// The shipped CRD files, as `kubectl apply -f charts/gatehouse/crds/` reads them.
fn shipped_crds() -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(CRD_DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    files
        .iter()
        .map(|f| serde_yaml::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

/// The OidcClient CRD as an older release shipped it: without `spec.displayName`.
fn older(crd: &Value) -> Value {
    let mut old = crd.clone();
    let spec = &mut old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert!(
        spec.as_object_mut()
            .unwrap()
            .remove("displayName")
            .is_some()
    );
    old
}

fn client_object(display_name: Option<&str>) -> Value {
    let mut spec = json!({
        "tenantRef": "acme",
        "redirectUris": ["https://shop.example.com/callback"],
    });
    if let Some(name) = display_name {
        spec["displayName"] = json!(name);
    }
    json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
           "metadata": {"name": "web", "namespace": "shop"}, "spec": spec})
}

#[tokio::test]
async fn new_crds_applied_server_side_first_keep_new_fields_and_existing_objects() {
    let (_fake, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // The release before: installed by `helm install` (a create).
    for crd in shipped_crds() {
        let crd = if crd["spec"]["names"]["kind"] == "OidcClient" {
            older(&crd)
        } else {
            crd
        };
        crds.create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await
        .unwrap();
    }
    create_namespace(&client, "shop", json!({})).await;
    let resource = ApiResource {
        group: "gatehouse.dev".into(),
        version: "v1alpha1".into(),
        api_version: "gatehouse.dev/v1alpha1".into(),
        kind: "OidcClient".into(),
        plural: "oidcclients".into(),
    };
    let clients: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &resource);
    let apply = |obj: Value| {
        let clients = clients.clone();
        async move {
            clients
                .patch(
                    "web",
                    &PatchParams::apply("kubectl").force(),
                    &Patch::Apply(&obj),
                )
                .await
                .unwrap()
        }
    };
    let before = apply(client_object(Some("Shop"))).await;
    assert!(
        before.data["spec"].get("displayName").is_none(),
        "the old schema prunes the new field: {}",
        before.data["spec"]
    );

    // The runbook: kubectl apply --server-side --force-conflicts -f charts/gatehouse/crds/
    for crd in shipped_crds() {
        let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
        crds.patch(
            &name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    let upgraded = crds.get("oidcclients.gatehouse.dev").await.unwrap();
    let schema = serde_json::to_value(&upgraded.spec.versions[0].schema).unwrap();
    assert!(
        schema["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .get("displayName")
            .is_some(),
        "the upgraded CRD serves the new field"
    );

    let existing = clients.get("web").await.unwrap();
    assert_eq!(
        existing.uid(),
        before.uid(),
        "objects survive a CRD upgrade"
    );
    assert_eq!(
        existing.data["spec"]["redirectUris"],
        json!(["https://shop.example.com/callback"])
    );
    let after = apply(client_object(Some("Shop"))).await;
    assert_eq!(
        after.data["spec"]["displayName"], "Shop",
        "the new field is kept"
    );
}

#[test]
fn the_runbook_names_the_command_this_test_follows() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/kubernetes.md"
    ))
    .unwrap();
    assert!(
        doc.contains("kubectl apply --server-side --force-conflicts -f charts/gatehouse/crds/")
    );
}
