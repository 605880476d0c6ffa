//! Authentication and RBAC through a kube `Client` with a ServiceAccount's kubeconfig: the
//! fake refuses what the stored roles do not grant, as a real API server does.

use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource as _};
use serde_json::{Value, json};

use crate::support::{api_error, start};

const OPERATOR: &str = "system:serviceaccount:default:op";

/// Applies `yaml` (RBAC objects, ServiceAccounts) as the harness.
async fn apply(client: &Client, yaml: &str) {
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let obj: Value = serde::Deserialize::deserialize(doc).unwrap();
        let (group, version) = obj["apiVersion"]
            .as_str()
            .unwrap()
            .rsplit_once('/')
            .unwrap_or(("", "v1"));
        let kind = obj["kind"].as_str().unwrap();
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let plural = format!("{}s", kind.to_lowercase());
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, &plural);
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        let api: Api<kube::api::DynamicObject> = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let obj: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
        api.patch(&name, &PatchParams::apply("test"), &Patch::Apply(&obj))
            .await
            .unwrap();
    }
}

/// The fake with ServiceAccount `default/op` and a client from its kubeconfig file.
async fn start_as_service_account() -> (e2e::FakeApiServer, Client, Client) {
    let (fake, admin) = start().await;
    apply(
        &admin,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: op, namespace: default}\n",
    )
    .await;
    let path = fake
        .kubeconfig_for_service_account("default", "op")
        .unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();
    (fake, admin, client)
}

fn forbidden<T: std::fmt::Debug>(result: kube::Result<T>) -> String {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 && s.reason == "Forbidden" => s.message,
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn a_service_account_may_do_only_what_its_roles_grant() {
    let (fake, admin, client) = start_as_service_account().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        forbidden(secrets.get("db").await),
        format!(
            r#"secrets "db" is forbidden: User "{OPERATOR}" cannot get resource "secrets" in API group "" in the namespace "default""#
        )
    );
    // Discovery is granted to every authenticated user.
    client.apiserver_version().await.unwrap();
    client.list_api_groups().await.unwrap();
    client.list_core_api_versions().await.unwrap();

    apply(
        &admin,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secrets, namespace: default}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list, create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: secrets, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secrets}
subjects: [{kind: ServiceAccount, name: op}]
"#,
    )
    .await;
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "db"}})).unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    secrets.get("db").await.unwrap();
    secrets.list(&ListParams::default()).await.unwrap();
    // The verbs the Role does not name, the namespaces it is not in, the cluster scope.
    assert!(
        forbidden(secrets.delete("db", &DeleteParams::default()).await)
            .contains(r#"cannot delete resource "secrets""#)
    );
    let elsewhere: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    assert!(
        forbidden(elsewhere.list(&ListParams::default()).await).ends_with(
            r#"cannot list resource "secrets" in API group "" in the namespace "kube-system""#
        )
    );
    let all: Api<Secret> = Api::all(client.clone());
    assert_eq!(
        forbidden(all.list(&ListParams::default()).await),
        format!(
            r#"secrets is forbidden: User "{OPERATOR}" cannot list resource "secrets" in API group "" at the cluster scope"#
        )
    );
    // The harness is not authorized: it still deletes.
    Api::<Secret>::namespaced(admin, "default")
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    // Each refusal is recorded, for a run to check that its client was never refused.
    let denied = fake.denied_requests();
    assert_eq!(denied.len(), 4, "{denied:#?}");
    assert!(
        denied[0].starts_with(r#"secrets "db" is forbidden"#),
        "{denied:#?}"
    );
}

#[tokio::test]
async fn a_watcher_needs_watch_as_well_as_list() {
    let (_fake, admin, client) = start_as_service_account().await;
    let role = |verbs: &str| {
        format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: cm}}
rules: [{{apiGroups: [""], resources: [configmaps], verbs: {verbs}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: cm}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cm}}
subjects: [{{kind: ServiceAccount, name: op, namespace: default}}]
"#
        )
    };
    let api: Api<ConfigMap> = Api::all(client);
    // The initial LIST, then the first change, which needs a WATCH.
    let next_change = |api: Api<ConfigMap>, admin: Client| async move {
        let mut stream = Box::pin(watcher(api, watcher::Config::default()));
        loop {
            match stream.try_next().await? {
                Some(watcher::Event::InitDone) => break,
                Some(_) => {}
                None => unreachable!("a watcher does not end"),
            }
        }
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"generateName": "c-"}})).unwrap();
        Api::<ConfigMap>::namespaced(admin, "default")
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        stream.try_next().await
    };
    apply(&admin, &role("[list]")).await;
    let error = next_change(api.clone(), admin.clone()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains(r#"cannot watch resource "configmaps" in API group "" at the cluster scope"#),
        "{error}"
    );
    apply(&admin, &role("[list, watch]")).await;
    let event = next_change(api, admin).await.unwrap();
    assert!(matches!(event, Some(watcher::Event::Apply(_))), "{event:?}");
}

#[tokio::test]
async fn an_apply_that_creates_needs_create_as_well_as_patch() {
    let (_fake, admin, client) = start_as_service_account().await;
    let role = |verbs: &str| {
        format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: cm, namespace: default}}
rules: [{{apiGroups: [""], resources: [configmaps], verbs: {verbs}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: cm, namespace: default}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm}}
subjects: [{{kind: ServiceAccount, name: op}}]
"#
        )
    };
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "status"}});
    let ssa = PatchParams::apply("op").force();
    apply(&admin, &role("[patch]")).await;
    assert!(
        forbidden(api.patch("status", &ssa, &Patch::Apply(&cm)).await).contains(
            r#"configmaps "status" is forbidden: User "system:serviceaccount:default:op" cannot create resource "configmaps""#
        )
    );
    apply(&admin, &role("[create, patch]")).await;
    api.patch("status", &ssa, &Patch::Apply(&cm)).await.unwrap();
    // Once it exists, patch alone is enough.
    apply(&admin, &role("[patch]")).await;
    api.patch("status", &ssa, &Patch::Apply(&cm)).await.unwrap();
}

#[tokio::test]
async fn events_need_a_grant_in_the_events_k8s_io_group() {
    let (_fake, admin, client) = start_as_service_account().await;
    let role = |group: &str| {
        format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: events}}
rules: [{{apiGroups: ["{group}"], resources: [events], verbs: [create, patch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: events}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: events}}
subjects: [{{kind: ServiceAccount, name: op, namespace: default}}]
"#
        )
    };
    let sa = Api::<ServiceAccount>::namespaced(admin.clone(), "default")
        .get("op")
        .await
        .unwrap();
    let reference: ObjectReference = sa.object_ref(&());
    let recorder = Recorder::new(client, Reporter::from("op"));
    let event = Event {
        type_: EventType::Normal,
        reason: "Tested".into(),
        note: None,
        action: "Test".into(),
        secondary: None,
    };
    // The core group's Events are another resource.
    apply(&admin, &role("")).await;
    let error = recorder.publish(&event, &reference).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains(r#"cannot create resource "events" in API group "events.k8s.io""#),
        "{error}"
    );
    apply(&admin, &role("events.k8s.io")).await;
    recorder.publish(&event, &reference).await.unwrap();
    // The same event again is a PATCH of its series.
    recorder.publish(&event, &reference).await.unwrap();
}

#[tokio::test]
async fn unknown_tokens_and_deleted_service_accounts_are_unauthorized() {
    let (fake, admin, client) = start_as_service_account().await;
    client.apiserver_version().await.unwrap();
    Api::<ServiceAccount>::namespaced(admin, "default")
        .delete("op", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_error(client.list_api_groups().await),
        (401, "Unauthorized".into())
    );

    let mut config = fake.config();
    config.auth_info = serde_json::from_value(json!({"token": "made-up"})).unwrap();
    let stranger = Client::try_from(config).unwrap();
    assert_eq!(
        api_error(stranger.apiserver_version().await),
        (401, "Unauthorized".into())
    );
    assert_eq!(
        fake.denied_requests(),
        ["GET /apis: Unauthorized", "GET /version: Unauthorized"]
    );
}

#[tokio::test]
async fn users_and_groups_are_subjects_too() {
    let (fake, admin) = start().await;
    apply(
        &admin,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: Group, name: devs}, {kind: User, name: carol}]
"#,
    )
    .await;
    for (user, granted) in [
        (e2e::UserInfo::new("alice", ["devs"]), true),
        (e2e::UserInfo::new("carol", Vec::<String>::new()), true),
        (e2e::UserInfo::new("bob", ["ops"]), false),
    ] {
        let api: Api<ConfigMap> = Api::namespaced(fake.client_for(&user).unwrap(), "default");
        let result = api.list(&ListParams::default()).await;
        assert_eq!(result.is_ok(), granted, "{user:?}: {result:?}");
    }
}
