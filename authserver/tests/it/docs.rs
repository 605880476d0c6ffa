//! The configuration reference documents every environment variable the binary reads.

use authserver::config::ENV_OVERRIDES;

#[test]
fn configuration_reference_mentions_every_environment_variable() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(path).expect("docs/configuration.md exists");
    let mut missing = Vec::new();
    for o in ENV_OVERRIDES {
        for var in std::iter::once(o.var).chain(o.alias) {
            if !doc.contains(&format!("`{var}`")) {
                missing.push(var);
            }
        }
        let yaml_path = o.path.join(".");
        if !doc.contains(&format!("`{yaml_path}`")) {
            missing.push(o.var);
        }
    }
    for var in ["GATEHOUSE_CONFIG", "OTEL_EXPORTER_OTLP_ENDPOINT"] {
        if !doc.contains(&format!("`{var}`")) {
            missing.push(var);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document {missing:?}"
    );
}
