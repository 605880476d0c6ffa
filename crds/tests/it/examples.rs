//! `manifests/examples/` deserialize into the Rust types without losing a field, pass
//! the CRDs' CEL rules, and fit together (one tenant that allows the clients' namespace).
//! Their OpenAPI validation is `scripts/validate-examples.sh` (Python jsonschema).

use std::collections::BTreeMap;

use crds::{IdentityTenant, OidcClient, SigningKeySet};
use kube::core::cel::{validate_cel, validate_cel_update};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::repo_root;

/// Every document of every example file, with its file name.
fn example_docs() -> Vec<(String, Value)> {
    let dir = repo_root().join("manifests/examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no examples in {}", dir.display());
    let mut docs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            docs.push((name.clone(), value));
        }
    }
    docs
}

fn of_kind<K: DeserializeOwned>(kind: &str) -> Vec<(String, K, Value)> {
    example_docs()
        .into_iter()
        .filter(|(_, doc)| doc["kind"] == kind)
        .map(|(file, doc)| {
            let typed = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{file}: {kind} does not deserialize: {e}"));
            (file, typed, doc)
        })
        .collect()
}

/// Paths in `input` that are missing or different in `output` (a field the types do
/// not know is dropped on the way through them, as the API server would prune it).
fn lost_fields(input: &Value, output: &Value, path: &str, lost: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &format!("{path}.{k}"), lost),
                    None => lost.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{path}[{i}]"), lost);
            }
        }
        (a, b) if a == b => {}
        _ => lost.push(format!("{path} ({input} became {output})")),
    }
}

fn check_kind<K>(kind: &str) -> Vec<(String, K)>
where
    K: DeserializeOwned + serde::Serialize + kube::CustomResourceExt,
{
    let mut out = Vec::new();
    for (file, typed, doc) in of_kind::<K>(kind) {
        let mut lost = Vec::new();
        lost_fields(&doc, &serde_json::to_value(&typed).unwrap(), "", &mut lost);
        assert!(
            lost.is_empty(),
            "{file}: fields lost through the Rust types: {lost:?}"
        );
        if let Err(errors) = validate_cel(&typed) {
            panic!("{file}: CEL rules fail: {errors:?}");
        }
        if let Err(errors) = validate_cel_update(&typed, &typed) {
            panic!("{file}: CEL transition rules fail on a no-op update: {errors:?}");
        }
        out.push((file, typed));
    }
    out
}

#[test]
fn every_example_is_a_known_kind() {
    let known = ["IdentityTenant", "OidcClient", "SigningKeySet", "Namespace"];
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (file, doc) in example_docs() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        assert!(
            known.contains(&kind.as_str()),
            "{file}: unexpected kind {kind:?}"
        );
        *counts.entry(kind).or_default() += 1;
    }
    assert_eq!(counts["IdentityTenant"], 1);
    assert_eq!(counts["OidcClient"], 2);
    assert_eq!(counts["SigningKeySet"], 1);
}

#[test]
fn examples_deserialize_losslessly_and_pass_the_cel_rules() {
    assert_eq!(check_kind::<IdentityTenant>("IdentityTenant").len(), 1);
    assert_eq!(check_kind::<OidcClient>("OidcClient").len(), 2);
    assert_eq!(check_kind::<SigningKeySet>("SigningKeySet").len(), 1);
}

#[test]
fn examples_fit_together() {
    let (_, tenant) = check_kind::<IdentityTenant>("IdentityTenant").remove(0);
    assert_eq!(tenant.metadata.name.as_deref(), Some("acme"));
    assert_eq!(tenant.spec.issuer, "https://id.example.com/t/acme");
    let selector = tenant
        .spec
        .allowed_namespaces
        .expect("the tenant allows some namespaces");
    let wanted = selector.match_labels.expect("selects by label");

    let namespace = example_docs()
        .into_iter()
        .find(|(_, d)| d["kind"] == "Namespace")
        .expect("namespace.yaml")
        .1;
    for (key, value) in &wanted {
        assert_eq!(namespace["metadata"]["labels"][key], *value.as_str());
    }
    let ns = namespace["metadata"]["name"].as_str().unwrap();

    let clients: BTreeMap<String, OidcClient> =
        check_kind::<OidcClient>("OidcClient").into_iter().collect();
    for (file, client) in &clients {
        assert_eq!(client.spec.tenant_ref, "acme", "{file}");
        assert_eq!(client.metadata.namespace.as_deref(), Some(ns), "{file}");
    }
    let web = &clients["web-client.yaml"];
    assert_eq!(web.client_id(), "shop-web");
    assert_eq!(web.secret_name(), "web-oidc");
    let machine = &clients["machine-client.yaml"];
    assert_eq!(machine.client_id(), "shop-billing-worker");
    assert_eq!(machine.secret_name(), "billing-worker-oidc");
    assert!(!machine.spec.audiences.is_empty());

    let (_, keys) = check_kind::<SigningKeySet>("SigningKeySet").remove(0);
    assert_eq!(keys.spec.tenant_ref, "acme");
    // The auth server refuses an ID token algorithm the tenant has no key for.
    let alg = web
        .spec
        .id_token_signing_alg
        .expect("the web example sets one");
    assert!(keys.spec.algorithms.contains(&alg), "{alg:?}");
}
