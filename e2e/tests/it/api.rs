//! A kube `Client` against the fake API server: the semantics kube-runtime relies on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crds::{IdentityTenant, OidcClient, OidcClientStatus};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::conditions;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::support::{api_error, create_namespace, start, wait_for};

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

fn oidc_client(name: &str) -> OidcClient {
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
        "metadata": {"name": name},
        "spec": {"tenantRef": "acme", "grantTypes": ["client_credentials"]},
    }))
    .unwrap()
}

fn rv(obj: &impl Resource) -> u64 {
    obj.resource_version().unwrap().parse().unwrap()
}

/// `Options::request_latency` stands for a real API server's round trip: every request,
/// answered or refused, waits that long first; the default fake answers at once.
#[tokio::test]
async fn a_request_latency_delays_every_request() {
    let latency = Duration::from_millis(150);
    let fake = e2e::FakeApiServer::start_with(e2e::Options {
        request_latency: latency,
        ..e2e::Options::default()
    })
    .await
    .expect("fake apiserver starts");
    let namespaces: Api<Namespace> = Api::all(fake.client().expect("client"));
    for _ in 0..2 {
        let started = Instant::now();
        namespaces.get("default").await.expect("default exists");
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    }
    let started = Instant::now();
    assert_eq!(api_error(namespaces.get("nowhere").await).0, 404);
    assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
}

#[tokio::test]
async fn crud_round_trip_with_not_found_already_exists_and_conflict() {
    let (_fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = api
        .create(&PostParams::default(), &config_map("app", &[("a", "1")]))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert!(created.creation_timestamp().is_some());
    assert_eq!(created.namespace().as_deref(), Some("default"));
    assert_eq!(api.get("app").await.unwrap(), created);

    let again = api
        .create(&PostParams::default(), &config_map("app", &[]))
        .await;
    assert_eq!(api_error(again), (409, "AlreadyExists".into()));

    let mut updated = created.clone();
    updated.data = Some(BTreeMap::from([("a".into(), "2".into())]));
    let replaced = api
        .replace("app", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert!(rv(&replaced) > rv(&created));
    assert_eq!(replaced.uid(), created.uid());

    // `updated` still carries the old resourceVersion.
    let stale = api.replace("app", &PostParams::default(), &updated).await;
    assert_eq!(api_error(stale), (409, "Conflict".into()));

    api.delete("app", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(api.get("app").await), (404, "NotFound".into()));
    assert!(api.get_opt("app").await.unwrap().is_none());
    let gone = api.delete("app", &DeleteParams::default()).await;
    assert_eq!(api_error(gone), (404, "NotFound".into()));

    let in_missing_ns: Api<ConfigMap> = Api::namespaced(client, "nowhere");
    let orphan = in_missing_ns
        .create(&PostParams::default(), &config_map("x", &[]))
        .await;
    assert_eq!(api_error(orphan), (404, "NotFound".into()));
}

#[tokio::test]
async fn lists_filter_by_namespace_and_selectors_and_watches_resume_from_a_version() {
    let (_fake, client) = start().await;
    create_namespace(&client, "a", json!({})).await;
    create_namespace(&client, "b", json!({})).await;
    for (ns, name, tier) in [
        ("a", "one", "web"),
        ("a", "two", "db"),
        ("b", "three", "web"),
    ] {
        let mut s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"tier": tier}},
            "stringData": {"k": name},
        }))
        .unwrap();
        s.metadata.namespace = None;
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &s)
            .await
            .unwrap();
    }
    let all: Api<Secret> = Api::all(client.clone());
    let list = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 3);
    // stringData is folded into data, as the real server does.
    let one = &list.items.iter().find(|s| s.name_any() == "one").unwrap();
    assert_eq!(one.data.as_ref().unwrap()["k"].0, b"one");
    assert!(one.string_data.is_none());

    let web = all
        .list(&ListParams::default().labels("tier=web"))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 2);
    let set_based = all
        .list(&ListParams::default().labels("tier in (db),!missing"))
        .await
        .unwrap();
    assert_eq!(set_based.items.len(), 1);
    let by_name = Api::<Secret>::namespaced(client.clone(), "a")
        .list(&ListParams::default().fields("metadata.name=two"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    // Watch from the list's version: only later changes, in order.
    let start_rv = list.metadata.resource_version.unwrap();
    let a: Api<Secret> = Api::namespaced(client.clone(), "a");
    a.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    a.delete("two", &DeleteParams::default()).await.unwrap();
    Api::<Secret>::namespaced(client.clone(), "b")
        .delete("three", &DeleteParams::default())
        .await
        .unwrap();

    let events: Vec<(String, String)> = all
        .watch(&WatchParams::default().timeout(1), &start_rv)
        .await
        .unwrap()
        .try_filter_map(|e| async move {
            Ok(match e {
                WatchEvent::Added(s) => Some(("ADDED".into(), s.name_any())),
                WatchEvent::Modified(s) => Some(("MODIFIED".into(), s.name_any())),
                WatchEvent::Deleted(s) => Some(("DELETED".into(), s.name_any())),
                WatchEvent::Bookmark(_) => None,
                WatchEvent::Error(e) => panic!("watch error {e:?}"),
            })
        })
        .try_collect()
        .await
        .unwrap();
    let expected: Vec<(String, String)> = [
        ("MODIFIED", "one"),
        ("DELETED", "two"),
        ("DELETED", "three"),
    ]
    .iter()
    .map(|(t, n)| ((*t).to_owned(), (*n).to_owned()))
    .collect();
    assert_eq!(events, expected);

    // A namespaced watch with a selector sees only its objects.
    let only_a: Vec<String> = a
        .watch(&WatchParams::default().timeout(1).labels("x=y"), &start_rv)
        .await
        .unwrap()
        .try_filter_map(|e| async move {
            Ok(match e {
                WatchEvent::Bookmark(_) => None,
                other => Some(format!("{other:?}")),
            })
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(only_a, ["Added event"], "label x=y starts matching: ADDED");
}

#[tokio::test]
async fn watches_send_bookmarks_and_end_at_their_timeout() {
    let (fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let rv = fake.resource_version().to_string();
    let started = Instant::now();
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .boxed();
    let mut bookmarks = 0;
    while let Some(event) = stream.next().await {
        if let WatchEvent::Bookmark(b) = event.unwrap() {
            assert_eq!(b.metadata.resource_version, rv);
            bookmarks += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(bookmarks >= 1, "an idle watch gets bookmarks");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(5),
        "ended after {elapsed:?}"
    );
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_accepts_force() {
    let (_fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let apply = |data: Value| {
        Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "applied"}, "data": data}))
    };
    let created = api
        .patch(
            "applied",
            &PatchParams::apply("one"),
            &apply(json!({"a": "1"})),
        )
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["a"], "1");

    let merged = api
        .patch(
            "applied",
            &PatchParams::apply("two").force(),
            &apply(json!({"b": "2"})),
        )
        .await
        .unwrap();
    let data = merged.data.clone().unwrap();
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("1", "2"));
    assert_eq!(merged.uid(), created.uid());

    let same = api
        .patch(
            "applied",
            &PatchParams::apply("two").force(),
            &apply(json!({"b": "2"})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.resource_version(),
        merged.resource_version(),
        "a no-op apply changes nothing"
    );

    let wrong_kind = api
        .patch(
            "applied",
            &PatchParams::apply("one"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "applied"}}),
            ),
        )
        .await;
    assert_eq!(api_error(wrong_kind).0, 400);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed_and_json_patch_tests_are_enforced() {
    let (_fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm = config_map("held", &[]);
    cm.metadata.finalizers = Some(vec!["test.gatehouse.dev/hold".into()]);
    let created = api.create(&PostParams::default(), &cm).await.unwrap();

    api.delete("held", &DeleteParams::default()).await.unwrap();
    let deleting = api.get("held").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());

    let add_while_deleting = api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["test.gatehouse.dev/hold", "other"]}}),
            ),
        )
        .await;
    assert_eq!(api_error(add_while_deleting).0, 422);

    // A failed `test` op is rejected (kube's finalizer() relies on it) and changes nothing.
    let wrong_test: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "someone-else"},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]))
    .unwrap();
    let rejected = api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Json::<()>(wrong_test),
        )
        .await;
    assert_eq!(api_error(rejected), (422, "Invalid".into()));
    assert!(api.get_opt("held").await.unwrap().is_some());

    let remove: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "test.gatehouse.dev/hold"},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]))
    .unwrap();
    api.patch("held", &PatchParams::default(), &Patch::Json::<()>(remove))
        .await
        .unwrap();
    wait_for(
        &api,
        "held",
        conditions::is_deleted(&created.uid().unwrap()),
    )
    .await;
    assert!(api.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn status_subresource_is_isolated_and_generation_follows_the_spec() {
    let (_fake, client) = start().await;
    create_namespace(&client, "shop", json!({})).await;
    let api: Api<OidcClient> = Api::namespaced(client, "shop");
    let mut obj = oidc_client("web");
    obj.status = Some(OidcClientStatus {
        client_id: Some("ignored-on-create".into()),
        ..OidcClientStatus::default()
    });
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.status.is_none(), "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    let with_status = api
        .patch_status(
            "web",
            &PatchParams::apply("test").force(),
            &Patch::Apply(
                json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
                                 "status": {"clientId": "shop-web", "observedGeneration": 1}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        with_status.status.as_ref().unwrap().client_id.as_deref(),
        Some("shop-web")
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status writes keep generation"
    );

    // A status write cannot change the spec; a main write cannot change the status.
    let spec_via_status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tenantRef": "other"}})),
        )
        .await
        .unwrap();
    assert_eq!(spec_via_status.spec.tenant_ref, "acme");
    let status_via_main = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"clientId": "changed"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        status_via_main
            .status
            .as_ref()
            .unwrap()
            .client_id
            .as_deref(),
        Some("shop-web")
    );
    assert_eq!(
        status_via_main.resource_version(),
        with_status.resource_version(),
        "ignored changes are a no-op: no new resourceVersion"
    );

    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep generation"
    );
    assert!(rv(&labelled) > rv(&with_status));

    let respecced = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "Web"}})),
        )
        .await
        .unwrap();
    assert_eq!(respecced.metadata.generation, Some(2));
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents_unless_another_owner_lives() {
    let (_fake, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let owner = cms
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    let other = cms
        .create(&PostParams::default(), &config_map("other-owner", &[]))
        .await
        .unwrap();
    let owned_by = |owners: &[&ConfigMap], name: &str| -> Secret {
        let refs: Vec<_> = owners
            .iter()
            .map(|o| o.controller_owner_ref(&()).unwrap())
            .collect();
        let mut s: Secret = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        s.metadata.owner_references = Some(refs);
        s
    };
    let child = secrets
        .create(&PostParams::default(), &owned_by(&[&owner], "child"))
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &owned_by(&[&owner, &other], "shared"),
        )
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    wait_for(
        &secrets,
        "child",
        conditions::is_deleted(&child.uid().unwrap()),
    )
    .await;
    let shared = secrets.get("shared").await.unwrap();
    let owners: Vec<String> = shared
        .owner_references()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(owners, ["other-owner"]);

    // Orphan propagation keeps dependents and drops the reference.
    cms.delete("other-owner", &DeleteParams::orphan())
        .await
        .unwrap();
    let orphaned = secrets.get("shared").await.unwrap();
    assert!(orphaned.owner_references().is_empty());
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents_first() {
    let (_fake, client) = start().await;
    create_namespace(&client, "temp", json!({})).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "temp");
    let mut held = config_map("held", &[]);
    held.metadata.finalizers = Some(vec!["test.gatehouse.dev/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.create(&PostParams::default(), &config_map("plain", &[]))
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.get("temp").await.unwrap();
    namespaces
        .delete("temp", &DeleteParams::default())
        .await
        .unwrap();

    let terminating = namespaces.get("temp").await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert!(cms.get_opt("plain").await.unwrap().is_none());
    let refused = cms
        .create(&PostParams::default(), &config_map("new", &[]))
        .await;
    assert_eq!(api_error(refused).0, 403);

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for(
        &namespaces,
        "temp",
        conditions::is_deleted(&ns.uid().unwrap()),
    )
    .await;
}

#[tokio::test]
async fn applied_crds_default_prune_and_validate_custom_resources() {
    let (_fake, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds::crds() {
        let applied = crds
            .patch(
                &crd.name_any(),
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap();
        let established = applied
            .status
            .unwrap()
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established);
    }
    let raw: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<IdentityTenant>(&()),
    );
    let example: Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/examples/tenant.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut extra = example.clone();
    extra["spec"]["notAField"] = json!(true);
    extra["spec"]
        .as_object_mut()
        .unwrap()
        .remove("deletionPolicy");
    raw.create(
        &PostParams::default(),
        &serde_json::from_value(extra).unwrap(),
    )
    .await
    .unwrap();
    let stored = raw.get("acme").await.unwrap();
    assert!(
        stored.data["spec"].get("notAField").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(
        stored.data["spec"]["deletionPolicy"], "Retain",
        "defaults are filled in"
    );
    let typed: Api<IdentityTenant> = Api::all(client.clone());
    assert_eq!(
        typed.get("acme").await.unwrap().spec.issuer,
        "https://id.example.com/t/acme"
    );

    let mut invalid = example.clone();
    invalid["metadata"]["name"] = json!("broken");
    invalid["spec"].as_object_mut().unwrap().remove("issuer");
    invalid["spec"]["deletionPolicy"] = json!("Sometimes");
    let rejected = raw
        .create(
            &PostParams::default(),
            &serde_json::from_value(invalid).unwrap(),
        )
        .await;
    let Err(kube::Error::Api(status)) = rejected else {
        panic!("expected a 422, got {rejected:?}");
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.contains("spec.issuer: Required value"),
        "{}",
        status.message
    );
    assert!(
        status
            .message
            .contains("spec.deletionPolicy: Unsupported value"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn the_kubeconfig_file_points_at_the_server() {
    let (fake, _) = start().await;
    let kubeconfig = Kubeconfig::read_from(fake.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let names: Vec<String> = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["default", "kube-system"]);
}

#[tokio::test]
async fn a_patch_carrying_a_stale_resource_version_conflicts() {
    let (_fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &config_map("cas", &[]))
        .await
        .unwrap();
    let fresh =
        json!({"metadata": {"resourceVersion": created.resource_version()}, "data": {"a": "1"}});
    api.patch("cas", &PatchParams::default(), &Patch::Merge(&fresh))
        .await
        .unwrap();
    let stale = api
        .patch("cas", &PatchParams::default(), &Patch::Merge(&fresh))
        .await;
    assert_eq!(api_error(stale), (409, "Conflict".into()));
}

#[tokio::test]
async fn a_watch_from_before_the_kept_history_gets_410_expired() {
    let fake = e2e::FakeApiServer::start_with(e2e::Options {
        history_limit: 2,
        ..e2e::Options::default()
    })
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(fake.client().unwrap(), "default");
    for name in ["a", "b", "c", "d"] {
        api.create(&PostParams::default(), &config_map(name, &[]))
            .await
            .unwrap();
    }
    let first = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed()
        .next()
        .await
        .unwrap()
        .unwrap();
    let WatchEvent::Error(status) = first else {
        panic!("expected an ERROR event, got {first:?}");
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn streaming_lists_send_initial_events_then_changes() {
    use kube::runtime::watcher::{self, Event};

    let (_fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &config_map("existing", &[]))
        .await
        .unwrap();
    let mut events =
        watcher::watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(crate::support::WAIT, events.next())
        .await
        .unwrap()
    {
        match event.unwrap() {
            Event::Init => seen.push("init".to_owned()),
            Event::InitApply(o) => seen.push(format!("init-apply {}", o.name_any())),
            Event::InitDone => {
                seen.push("init-done".to_owned());
                api.create(&PostParams::default(), &config_map("later", &[]))
                    .await
                    .unwrap();
            }
            Event::Apply(o) => {
                seen.push(format!("apply {}", o.name_any()));
                break;
            }
            Event::Delete(o) => seen.push(format!("delete {}", o.name_any())),
        }
    }
    assert_eq!(
        seen,
        ["init", "init-apply existing", "init-done", "apply later"]
    );
}

#[tokio::test]
async fn applied_crds_enforce_their_cel_rules_including_transition_rules() {
    let (_fake, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    create_namespace(&client, "shop", json!({})).await;
    let clients: Api<OidcClient> = Api::namespaced(client, "shop");

    let mut public_machine = oidc_client("public-machine");
    public_machine.spec.client_type = crds::oidc_client::ClientType::Public;
    let rejected = clients
        .create(&PostParams::default(), &public_machine)
        .await;
    let Err(kube::Error::Api(status)) = rejected else {
        panic!("expected a 422, got {rejected:?}");
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("client_credentials needs a confidential client"),
        "{}",
        status.message
    );

    let mut pinned = oidc_client("pinned");
    pinned.spec.client_id = Some("shop-pinned".into());
    clients
        .create(&PostParams::default(), &pinned)
        .await
        .unwrap();
    let changed = clients
        .patch(
            "pinned",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clientId": "other"}})),
        )
        .await;
    let Err(kube::Error::Api(status)) = changed else {
        panic!("expected a 422, got {changed:?}");
    };
    assert!(
        status.message.contains("clientId is immutable"),
        "{}",
        status.message
    );
    // Other changes to the same object still pass the transition rule.
    clients
        .patch(
            "pinned",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "Pinned"}})),
        )
        .await
        .unwrap();
}

fn apply_config_map(data: &Value) -> Patch<Value> {
    Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "owned"}, "data": data}))
}

/// `(manager, operation, subresource)` of each managedFields entry, sorted.
fn managers(obj: &impl Resource) -> Vec<(String, String, String)> {
    let mut m: Vec<_> = obj
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .map(|e| {
            (
                e.manager.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
                e.subresource.clone().unwrap_or_default(),
            )
        })
        .collect();
    m.sort();
    m
}

fn entry(manager: &str, operation: &str, subresource: &str) -> (String, String, String) {
    (manager.into(), operation.into(), subresource.into())
}

fn data(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

#[tokio::test]
async fn server_side_apply_removes_fields_its_manager_stopped_applying_unless_shared() {
    let (_fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let one = PatchParams::apply("one");
    let two = PatchParams::apply("two");
    api.patch(
        "owned",
        &one,
        &apply_config_map(&json!({"a": "1", "b": "2"})),
    )
    .await
    .unwrap();
    // Applying the value a field already has is no conflict: both own it.
    let shared = api
        .patch("owned", &two, &apply_config_map(&json!({"b": "2"})))
        .await
        .unwrap();
    assert_eq!(
        managers(&shared),
        [entry("one", "Apply", ""), entry("two", "Apply", "")]
    );
    let entry_one = &shared.metadata.managed_fields.as_ref().unwrap()[0];
    assert_eq!(entry_one.fields_type.as_deref(), Some("FieldsV1"));
    assert_eq!(
        entry_one.fields_v1.as_ref().unwrap().0,
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );

    let dropped_b = api
        .patch("owned", &one, &apply_config_map(&json!({"a": "1"})))
        .await
        .unwrap();
    assert_eq!(
        data(&dropped_b),
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
        "b is still applied by two"
    );
    let dropped_again = api
        .patch("owned", &two, &apply_config_map(&json!({"c": "3"})))
        .await
        .unwrap();
    assert_eq!(
        data(&dropped_again),
        BTreeMap::from([("a".into(), "1".into()), ("c".into(), "3".into())]),
        "b had no owner left"
    );
    assert_eq!(api.get("owned").await.unwrap(), dropped_again);
}

#[tokio::test]
async fn server_side_apply_conflicts_on_another_managers_field_unless_forced() {
    let (_fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let before = api
        .patch(
            "owned",
            &PatchParams::apply("one"),
            &apply_config_map(&json!({"a": "1", "b": "1"})),
        )
        .await
        .unwrap();

    let refused = api
        .patch(
            "owned",
            &PatchParams::apply("two"),
            &apply_config_map(&json!({"a": "2"})),
        )
        .await;
    let Err(kube::Error::Api(status)) = refused else {
        panic!("expected a 409, got {refused:?}");
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        r#"Apply failed with 1 conflict: conflict with "one": .data.a"#
    );
    let causes = &status.details.as_ref().unwrap().causes;
    assert_eq!(
        (
            causes[0].reason.as_str(),
            causes[0].field.as_str(),
            causes[0].message.as_str()
        ),
        ("FieldManagerConflict", ".data.a", r#"conflict with "one""#)
    );
    assert_eq!(api.get("owned").await.unwrap(), before, "nothing changed");

    let forced = api
        .patch(
            "owned",
            &PatchParams::apply("two").force(),
            &apply_config_map(&json!({"a": "2"})),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&forced),
        BTreeMap::from([("a".into(), "2".into()), ("b".into(), "1".into())])
    );
    // `a` moved to two, so one dropping it removes nothing; one dropping `b` does.
    let out = api
        .patch(
            "owned",
            &PatchParams::apply("one"),
            &apply_config_map(&json!({"z": "0"})),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&out),
        BTreeMap::from([("a".into(), "2".into()), ("z".into(), "0".into())])
    );
}

#[tokio::test]
async fn an_update_takes_a_field_from_an_applier_whose_next_apply_then_conflicts() {
    let (_fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let one = PatchParams::apply("one");
    api.patch("owned", &one, &apply_config_map(&json!({"a": "1"})))
        .await
        .unwrap();
    let editor = PatchParams {
        field_manager: Some("editor".into()),
        ..PatchParams::default()
    };
    let edited = api
        .patch("owned", &editor, &Patch::Merge(json!({"data": {"a": "2"}})))
        .await
        .unwrap();
    assert_eq!(managers(&edited), [entry("editor", "Update", "")]);

    let refused = api
        .patch("owned", &one, &apply_config_map(&json!({"a": "1"})))
        .await;
    let Err(kube::Error::Api(status)) = refused else {
        panic!("expected a 409, got {refused:?}");
    };
    assert_eq!(status.code, 409);
    assert!(
        status
            .message
            .starts_with(r#"Apply failed with 1 conflict: conflict with "editor" using v1 at "#),
        "{}",
        status.message
    );
    assert!(status.message.ends_with(": .data.a"), "{}", status.message);

    // An update without a field manager is recorded under the user agent's product
    // name, or `unknown` (kube-rs sends no user agent).
    let anonymous = api
        .patch(
            "owned",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        managers(&anonymous),
        [
            entry("editor", "Update", ""),
            entry("unknown", "Update", "")
        ]
    );
}

fn ready_condition(status: &str) -> Value {
    json!({"type": "Ready", "status": status, "reason": "Test", "message": "",
           "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1})
}

fn status_apply(status: &Value) -> Patch<Value> {
    Patch::Apply(
        json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
                        "status": status}),
    )
}

#[tokio::test]
async fn a_status_apply_removes_the_status_fields_only_its_own_manager_dropped() {
    let (_fake, client) = start().await;
    create_namespace(&client, "shop", json!({})).await;
    let api: Api<OidcClient> = Api::namespaced(client, "shop");
    api.create(&PostParams::default(), &oidc_client("web"))
        .await
        .unwrap();
    let controller = PatchParams::apply("gatehouse-operator/oidcclient").force();
    api.patch_status(
        "web",
        &controller,
        &status_apply(&json!({"clientId": "shop-web", "secretName": "web-oidc",
                              "observedGeneration": 1, "conditions": [ready_condition("True")]})),
    )
    .await
    .unwrap();

    // Under a manager of its own, a partial status keeps the controller's other fields.
    let partial = json!({"observedGeneration": 1, "conditions": [ready_condition("False")]});
    let other = api
        .patch_status(
            "web",
            &PatchParams::apply("gatehouse-operator/oidcclient-invalid-object").force(),
            &status_apply(&partial),
        )
        .await
        .unwrap();
    let status = other.status.clone().unwrap();
    assert_eq!(status.client_id.as_deref(), Some("shop-web"));
    assert_eq!(status.secret_name.as_deref(), Some("web-oidc"));
    assert_eq!(status.conditions[0].status, "False");
    assert_eq!(
        managers(&other),
        [
            entry("gatehouse-operator/oidcclient", "Apply", "status"),
            entry(
                "gatehouse-operator/oidcclient-invalid-object",
                "Apply",
                "status"
            ),
            entry("unknown", "Update", ""),
        ]
    );

    // Under the controller's manager the same partial status removes them.
    let same_manager = api
        .patch_status("web", &controller, &status_apply(&partial))
        .await
        .unwrap();
    let status = same_manager.status.clone().unwrap();
    assert_eq!(status.client_id, None);
    assert_eq!(status.secret_name, None);
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        same_manager.spec, other.spec,
        "a status write never touches the spec"
    );
}

#[tokio::test]
async fn requests_are_counted_by_user_verb_and_resource() {
    let (fake, harness) = start().await;
    let user = e2e::UserInfo::new("counted", ["system:masters"]);
    let client = fake.client_for(&user).unwrap();
    let before = fake.request_counts();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("a", &[("k", "v")]))
        .await
        .unwrap();
    maps.get("a").await.unwrap();
    maps.get("a").await.unwrap();
    maps.list(&ListParams::default()).await.unwrap();
    let refused = Api::<ConfigMap>::namespaced(harness, "default")
        .get("missing")
        .await;
    assert_eq!(api_error(refused).0, 404);

    let window = fake.request_counts().since(&before);
    let mine = window.of("counted");
    assert_eq!(mine.count("create", "configmaps"), 1);
    assert_eq!(mine.count("get", "configmaps"), 2);
    assert_eq!(mine.count("list", "configmaps"), 1);
    assert_eq!(mine.total(), 4, "{mine:?}");
    assert_eq!(
        window
            .of(e2e::fake_apiserver::HARNESS)
            .count("get", "configmaps"),
        1,
        "a request that fails after routing is counted too"
    );
}
