//! Field ownership through the store's write paths, case by case as the server-side
//! apply documentation describes it
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>).

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{FieldManager, Store, Subresource};
use crate::fake_apiserver::patch::PatchKind;
use crate::fake_apiserver::resources::ResourceType;

fn store() -> Store {
    let (changed, _) = watch::channel(0);
    let mut store = Store::new(1000, changed, None);
    store.ensure_namespace("default").unwrap();
    store
}

fn config_maps(store: &Store) -> ResourceType {
    store.resource("", "v1", "configmaps").unwrap()
}

fn oidc_clients(store: &Store) -> ResourceType {
    store
        .resource("gatehouse.dev", "v1alpha1", "oidcclients")
        .unwrap()
}

fn write(
    store: &mut Store,
    rt: &ResourceType,
    kind: PatchKind,
    sub: Subresource,
    manager: &FieldManager<'_>,
    body: Value,
) -> crate::fake_apiserver::error::Result<Value> {
    store.patch(rt, Some("default"), "x", kind, body, sub, manager, false)
}

fn applier(name: &str) -> FieldManager<'_> {
    FieldManager {
        query: Some(name),
        ..FieldManager::default()
    }
}

fn forced(name: &str) -> FieldManager<'_> {
    FieldManager {
        force: true,
        ..applier(name)
    }
}

/// Server-side apply of ConfigMap `x` with `data`.
fn apply_data(
    store: &mut Store,
    manager: &FieldManager<'_>,
    data: &Value,
) -> crate::fake_apiserver::error::Result<Value> {
    let rt = config_maps(store);
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": data});
    write(
        store,
        &rt,
        PatchKind::Apply,
        Subresource::Main,
        manager,
        body,
    )
}

/// Server-side apply of OidcClient `x`'s status.
fn apply_status(
    store: &mut Store,
    manager: &FieldManager<'_>,
    status: &Value,
) -> crate::fake_apiserver::error::Result<Value> {
    let rt = oidc_clients(store);
    let body =
        json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient", "status": status});
    write(
        store,
        &rt,
        PatchKind::Apply,
        Subresource::Status,
        manager,
        body,
    )
}

fn create_oidc_client(store: &mut Store) {
    let rt = oidc_clients(store);
    store
        .create(
            &rt,
            Some("default"),
            json!({"metadata": {"name": "x"}, "spec": {"tenantRef": "acme"}}),
            "creator",
            false,
        )
        .unwrap();
}

/// `(manager, operation, subresource, fieldsV1)` of every managedFields entry, Apply
/// first, then by manager (the real order goes by time, too coarse to test).
fn owners(obj: &Value) -> Vec<(String, String, String, Value)> {
    let mut owners: Vec<_> = obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
                e["subresource"].as_str().unwrap_or_default().to_owned(),
                e["fieldsV1"].clone(),
            )
        })
        .collect();
    owners.sort_by(|a, b| (&a.1, &a.0, &a.2).cmp(&(&b.1, &b.0, &b.2)));
    owners
}

fn owner(manager: &str, operation: &str, fields: Value) -> (String, String, String, Value) {
    (manager.into(), operation.into(), String::new(), fields)
}

fn status_owner(manager: &str, fields: Value) -> (String, String, String, Value) {
    (manager.into(), "Apply".into(), "status".into(), fields)
}

#[test]
fn apply_records_its_manager_with_the_applied_fields() {
    let mut s = store();
    let created = apply_data(&mut s, &applier("m"), &json!({"a": "1"})).unwrap();
    assert_eq!(
        owners(&created),
        [owner("m", "Apply", json!({"f:data": {"f:a": {}}}))]
    );
    let entry = &created["metadata"]["managedFields"][0];
    assert_eq!(entry["apiVersion"], "v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert!(entry["time"].is_string());
    assert!(entry.get("subresource").is_none());
}

#[test]
fn apply_removes_the_fields_its_manager_no_longer_sends() {
    let mut s = store();
    apply_data(&mut s, &applier("m"), &json!({"a": "1", "b": "2"})).unwrap();
    let out = apply_data(&mut s, &applier("m"), &json!({"a": "1"})).unwrap();
    assert_eq!(out["data"], json!({"a": "1"}));
    assert_eq!(
        owners(&out),
        [owner("m", "Apply", json!({"f:data": {"f:a": {}}}))]
    );
}

#[test]
fn a_field_another_manager_also_applied_survives_when_one_drops_it() {
    let mut s = store();
    apply_data(&mut s, &applier("one"), &json!({"a": "1", "b": "2"})).unwrap();
    // The same value: shared ownership, no conflict.
    apply_data(&mut s, &applier("two"), &json!({"b": "2"})).unwrap();
    let out = apply_data(&mut s, &applier("one"), &json!({"a": "1"})).unwrap();
    assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        owners(&out),
        [
            owner("one", "Apply", json!({"f:data": {"f:a": {}}})),
            owner("two", "Apply", json!({"f:data": {"f:b": {}}})),
        ]
    );
    // Once its last owner drops it, it goes.
    let out = apply_data(&mut s, &applier("two"), &json!({"c": "3"})).unwrap();
    assert_eq!(out["data"], json!({"a": "1", "c": "3"}));
}

#[test]
fn changing_another_managers_field_conflicts_unless_forced_which_moves_it() {
    let mut s = store();
    let before = apply_data(&mut s, &applier("one"), &json!({"a": "1", "b": "1"})).unwrap();
    let err = apply_data(&mut s, &applier("two"), &json!({"a": "2"})).unwrap_err();
    assert_eq!((err.code, err.reason), (409, "Conflict"));
    assert_eq!(
        err.message,
        r#"Apply failed with 1 conflict: conflict with "one": .data.a"#
    );
    assert_eq!(
        err.status()["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"one\"", "field": ".data.a"}])
    );
    let rt = config_maps(&s);
    assert_eq!(
        s.get(&rt, Some("default"), "x").unwrap(),
        before,
        "a conflict changes nothing"
    );

    let out = apply_data(&mut s, &forced("two"), &json!({"a": "2"})).unwrap();
    assert_eq!(out["data"], json!({"a": "2", "b": "1"}));
    assert_eq!(
        owners(&out),
        [
            owner("one", "Apply", json!({"f:data": {"f:b": {}}})),
            owner("two", "Apply", json!({"f:data": {"f:a": {}}})),
        ]
    );
    // "one" lost `a`, so dropping it no longer removes it.
    let out = apply_data(&mut s, &applier("one"), &json!({"b": "1"})).unwrap();
    assert_eq!(out["data"], json!({"a": "2", "b": "1"}));
}

#[test]
fn conflicts_with_several_managers_are_listed_per_manager() {
    let mut s = store();
    apply_data(&mut s, &applier("one"), &json!({"a": "1", "b": "1"})).unwrap();
    apply_data(&mut s, &applier("two"), &json!({"c": "1"})).unwrap();
    let err = apply_data(
        &mut s,
        &applier("three"),
        &json!({"a": "3", "b": "3", "c": "3"}),
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 3 conflicts: conflicts with \"one\"\n- .data.a\n- .data.b\n\
         conflicts with \"two\"\n- .data.c"
    );
}

#[test]
fn an_update_takes_fields_from_an_applier_so_its_next_apply_conflicts() {
    let mut s = store();
    apply_data(&mut s, &applier("one"), &json!({"a": "1", "b": "1"})).unwrap();
    let rt = config_maps(&s);
    let edited = write(
        &mut s,
        &rt,
        PatchKind::Merge,
        Subresource::Main,
        &applier("editor"),
        json!({"data": {"a": "2"}}),
    )
    .unwrap();
    assert_eq!(
        owners(&edited),
        [
            owner("one", "Apply", json!({"f:data": {"f:b": {}}})),
            owner("editor", "Update", json!({"f:data": {"f:a": {}}})),
        ]
    );
    let time = edited["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "editor")
        .unwrap()["time"]
        .as_str()
        .unwrap()
        .to_owned();

    let err = apply_data(&mut s, &applier("one"), &json!({"a": "1", "b": "1"})).unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        format!(
            r#"Apply failed with 1 conflict: conflict with "editor" using v1 at {time}: .data.a"#
        )
    );
    // Sending the value it has now is no conflict: shared with the editor.
    let out = apply_data(&mut s, &applier("one"), &json!({"a": "2", "b": "1"})).unwrap();
    assert_eq!(
        owners(&out),
        [
            owner("one", "Apply", json!({"f:data": {"f:a": {}, "f:b": {}}})),
            owner("editor", "Update", json!({"f:data": {"f:a": {}}})),
        ]
    );
}

#[test]
fn an_update_without_a_field_manager_is_recorded_under_the_user_agent_or_unknown() {
    let mut s = store();
    apply_data(&mut s, &applier("one"), &json!({"a": "1"})).unwrap();
    let rt = config_maps(&s);
    let by_agent = FieldManager {
        user_agent: Some("kubectl/v1.35.2 (linux/amd64)"),
        ..FieldManager::default()
    };
    write(
        &mut s,
        &rt,
        PatchKind::Merge,
        Subresource::Main,
        &by_agent,
        json!({"data": {"b": "2"}}),
    )
    .unwrap();
    let out = write(
        &mut s,
        &rt,
        PatchKind::Json,
        Subresource::Main,
        &FieldManager::default(),
        json!([{"op": "remove", "path": "/data/a"}]),
    )
    .unwrap();
    // Removing "one"'s only field removes its entry; a removal is owned by nobody.
    assert_eq!(
        owners(&out),
        [owner("kubectl", "Update", json!({"f:data": {"f:b": {}}}))]
    );
    assert_eq!(out["data"], json!({"b": "2"}));
}

#[test]
fn apply_without_a_field_manager_is_refused() {
    let mut s = store();
    let err = apply_data(&mut s, &FieldManager::default(), &json!({"a": "1"})).unwrap_err();
    assert_eq!(err.code, 422);
}

#[test]
fn create_records_the_creator_and_a_no_op_write_records_nothing() {
    let mut s = store();
    let rt = config_maps(&s);
    let created = s
        .create(
            &rt,
            Some("default"),
            json!({"metadata": {"name": "x", "labels": {"l": "v"}}, "data": {"a": "1"}}),
            "creator",
            false,
        )
        .unwrap();
    assert_eq!(
        owners(&created),
        [owner(
            "creator",
            "Update",
            json!({"f:metadata": {"f:labels": {"f:l": {}}}, "f:data": {"f:a": {}}})
        )]
    );
    let same = write(
        &mut s,
        &rt,
        PatchKind::Merge,
        Subresource::Main,
        &applier("other"),
        json!({"data": {"a": "1"}}),
    )
    .unwrap();
    assert_eq!(
        same, created,
        "nothing changed, so nobody new owns anything"
    );
}

#[test]
fn a_no_op_apply_keeps_the_version_but_a_new_co_owner_is_a_change() {
    let mut s = store();
    let first = apply_data(&mut s, &applier("one"), &json!({"a": "1"})).unwrap();
    let again = apply_data(&mut s, &applier("one"), &json!({"a": "1"})).unwrap();
    assert_eq!(again, first);
    let shared = apply_data(&mut s, &applier("two"), &json!({"a": "1"})).unwrap();
    assert_eq!(shared["data"], first["data"]);
    assert_ne!(
        shared["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
        "managedFields changed"
    );
    assert_eq!(owners(&shared).len(), 2);
}

#[test]
fn a_status_apply_removes_the_status_fields_its_manager_dropped_and_only_those() {
    let mut s = store();
    create_oidc_client(&mut s);
    apply_status(
        &mut s,
        &forced("ctl"),
        &json!({"clientId": "c", "secretName": "s", "observedGeneration": 1}),
    )
    .unwrap();

    // Another manager's partial status leaves the controller's fields alone …
    let out = apply_status(
        &mut s,
        &forced("ctl-invalid-object"),
        &json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "False"}]}),
    )
    .unwrap();
    assert_eq!(out["status"]["clientId"], "c");
    assert_eq!(out["status"]["secretName"], "s");
    assert_eq!(
        owners(&out),
        [
            status_owner(
                "ctl",
                json!({"f:status": {"f:clientId": {}, "f:secretName": {}}})
            ),
            status_owner(
                "ctl-invalid-object",
                json!({"f:status": {"f:conditions": {}, "f:observedGeneration": {}}})
            ),
            owner("creator", "Update", json!({"f:spec": {"f:tenantRef": {}}})),
        ],
        "forced: observedGeneration moved to the new manager"
    );

    // … the same manager's removes every status field it stopped sending.
    let out = apply_status(
        &mut s,
        &forced("ctl"),
        &json!({"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]}),
    )
    .unwrap();
    assert_eq!(
        out["status"],
        json!({"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]})
    );
    assert_eq!(out["spec"], json!({"tenantRef": "acme"}));
}

#[test]
fn status_and_main_resource_managers_are_separate() {
    let mut s = store();
    create_oidc_client(&mut s);
    let rt = oidc_clients(&s);
    apply_status(&mut s, &applier("ctl"), &json!({"clientId": "c"})).unwrap();
    // The same manager applying the object without a status removes no status field,
    // and a status in a main-resource apply is neither written nor owned.
    let out = write(
        &mut s,
        &rt,
        PatchKind::Apply,
        Subresource::Main,
        &applier("ctl"),
        json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
               "spec": {"tenantRef": "acme", "displayName": "X"}, "status": {"clientId": "other"}}),
    )
    .unwrap();
    assert_eq!(out["status"], json!({"clientId": "c"}));
    assert_eq!(
        owners(&out),
        [
            owner(
                "ctl",
                "Apply",
                json!({"f:spec": {"f:displayName": {}, "f:tenantRef": {}}})
            ),
            status_owner("ctl", json!({"f:status": {"f:clientId": {}}})),
            owner("creator", "Update", json!({"f:spec": {"f:tenantRef": {}}})),
        ]
    );

    let err = apply_status(&mut s, &applier("other"), &json!({"clientId": "d"})).unwrap_err();
    assert_eq!(
        err.message,
        r#"Apply failed with 1 conflict: conflict with "ctl" with subresource "status": .status.clientId"#
    );
}

#[test]
fn lists_are_owned_and_replaced_whole() {
    let mut s = store();
    create_oidc_client(&mut s);
    apply_status(
        &mut s,
        &applier("ctl"),
        &json!({"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "True"}]}),
    )
    .unwrap();
    let err = apply_status(
        &mut s,
        &applier("other"),
        &json!({"conditions": [{"type": "Ready", "status": "False"}]}),
    )
    .unwrap_err();
    assert_eq!(err.message.lines().count(), 1);
    assert!(
        err.message.ends_with(": .status.conditions"),
        "{}",
        err.message
    );
}
