//! The generated CRD YAML and docs in the repository are what the types generate.

use crate::repo_root;

#[test]
fn committed_generated_files_are_current() {
    let mismatches = crds::generate::check(&repo_root());
    assert!(
        mismatches.is_empty(),
        "generated files are out of date; run `cargo run -p crds --bin crdgen`:\n{}",
        mismatches
            .iter()
            .map(|m| format!("  {}: {}", m.path, m.summary))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn chart_and_manifest_hold_one_file_per_crd_and_all_three_together() {
    let files = crds::generate::files();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for name in [
        "identitytenants.gatehouse.dev",
        "oidcclients.gatehouse.dev",
        "signingkeysets.gatehouse.dev",
    ] {
        let path = format!("charts/gatehouse/crds/{name}.yaml");
        assert!(
            paths.contains(&path.as_str()),
            "{path} missing from {paths:?}"
        );
    }
    let all = files
        .iter()
        .find(|f| f.path == "manifests/crds.yaml")
        .expect("manifests/crds.yaml is generated");
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&all.contents)
        .map(|doc| {
            let crd: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
            crd["spec"]["names"]["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds, ["IdentityTenant", "OidcClient", "SigningKeySet"]);
}
