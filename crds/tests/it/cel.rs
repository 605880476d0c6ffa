//! Every CEL rule of the three CRDs compiles, uses only variables a CRD rule may use, and
//! passes kube-cel's cost heuristic (bounded lists and strings), as the API server
//! requires before it accepts a CRD. The rules' behaviour is unit-tested beside the types.

use kube::core::cel::{AnalysisWarning, ScopeContext, WarningKind, analyze_rule, compile_schema};
use serde_json::Value;

/// Variables a rule binds with a comprehension macro (`list.all(u, …)`).
fn bound_variables(rule: &str) -> Vec<String> {
    let mut vars = Vec::new();
    for m in ["all", "exists", "exists_one", "map", "filter"] {
        let call = format!(".{m}(");
        for (i, _) in rule.match_indices(&call) {
            let var = rule[i + call.len()..]
                .split(',')
                .next()
                .unwrap_or("")
                .trim();
            if !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                vars.push(var.to_owned());
            }
        }
    }
    vars
}

/// kube-cel 0.8 lists a comprehension's iteration variable among the rule's free
/// variables and so reports it as out of scope; the API server binds it. Only that
/// warning is dropped.
fn binds(warning: &AnalysisWarning, bound: &[String]) -> bool {
    warning.kind == WarningKind::WrongScope
        && bound
            .iter()
            .any(|v| warning.message.starts_with(&format!("variable '{v}' ")))
}

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
                let bound = bound_variables(rule);
                let warnings: Vec<_> = analyze_rule(rule, &compiled, ScopeContext::CrdValidation)
                    .into_iter()
                    .filter(|w| !binds(w, &bound))
                    .collect();
                assert!(warnings.is_empty(), "{name}{path}: {rule}: {warnings:?}");
                total += 1;
            }
        }
    }
    // 1 root + 1 issuer + 4 nested (tenant: devices among them), 2 root + 10 spec + 1
    // tenantRef + 1 jwksUri +
    // 1 sectorIdentifierUri + 2 redirect lists + 1 origins (client), 2 spec + tenantRef +
    // algorithms + source (key set).
    assert_eq!(total, 6 + 18 + 5);
}

#[test]
fn only_comprehension_variables_are_exempt_from_the_scope_check() {
    let rule = "self.items.all(u, u.size() > 0) && request.name == 'x'";
    assert_eq!(bound_variables(rule), ["u"]);
    let compiled = compile_schema(&serde_json::json!({
        "type": "object",
        "properties": {"items": {"type": "array", "maxItems": 4,
                                 "items": {"type": "string", "maxLength": 8}}}
    }));
    let kept: Vec<_> = analyze_rule(rule, &compiled, ScopeContext::CrdValidation)
        .into_iter()
        .filter(|w| !binds(w, &bound_variables(rule)))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].message.starts_with("variable 'request' "),
        "{kept:?}"
    );
}
