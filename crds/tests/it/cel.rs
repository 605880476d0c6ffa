//! Every CEL rule of the three CRDs compiles, uses only variables a CRD rule may use, and
//! passes kube-cel's cost heuristic (bounded lists and strings), as the API server
//! requires before it accepts a CRD. The rules' behaviour is unit-tested beside the types.

use kube::core::cel::{ScopeContext, analyze_rule, compile_schema};
use serde_json::Value;

/// `(path, rule)` for every `x-kubernetes-validations` entry under `node`.
fn rules(node: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match node {
        Value::Object(map) => {
            if map.contains_key("x-kubernetes-validations") {
                out.push((path.to_owned(), node.clone()));
            }
            for (key, child) in map {
                if key != "x-kubernetes-validations" && key != "default" {
                    rules(child, &format!("{path}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                rules(child, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_rule_compiles_within_scope_and_cost_budget() {
    let mut total = 0;
    for crd in crds::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .unwrap(),
        )
        .unwrap();
        let mut nodes = Vec::new();
        rules(&schema, "", &mut nodes);
        for (path, node) in nodes {
            let compiled = compile_schema(&node);
            let errors: Vec<String> = compiled
                .compilation_errors()
                .iter()
                .map(|e| format!("{e:?}"))
                .collect();
            assert!(errors.is_empty(), "{name}{path}: {errors:?}");
            for rule in node["x-kubernetes-validations"].as_array().unwrap() {
                let rule = rule["rule"].as_str().unwrap();
                let warnings = analyze_rule(rule, &compiled, ScopeContext::CrdValidation);
                assert!(warnings.is_empty(), "{name}{path}: {rule}: {warnings:?}");
                total += 1;
            }
        }
    }
    // 1 root + 1 issuer + 3 nested (tenant), 1 root + 9 spec + 1 tenantRef + 1 jwksUri +
    // 2 redirect lists + 1 origins (client), 2 spec + tenantRef + algorithms + source (key set).
    assert_eq!(total, 5 + 15 + 5);
}
