//! The API server accepts a CRD only if its schema is structural
//! (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema)
//! and every CEL rule's `fieldPath` names a field of the schema. No API server runs here,
//! so these are checked on the generated schemas directly.

use serde_json::Value;

/// Keys a structural schema forbids inside allOf/anyOf/oneOf/not.
const FORBIDDEN_IN_JUNCTORS: [&str; 5] = [
    "type",
    "description",
    "default",
    "additionalProperties",
    "nullable",
];

fn has_type(node: &Value) -> bool {
    node.get("type").is_some()
        || node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

fn check(node: &Value, path: &str, in_junctor: bool, problems: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        return;
    };
    if in_junctor {
        for key in FORBIDDEN_IN_JUNCTORS {
            if map.contains_key(key) {
                problems.push(format!("{path}: `{key}` inside a junctor"));
            }
        }
    }
    let mut children: Vec<(String, &Value)> = Vec::new();
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        children.extend(properties.iter().map(|(k, v)| (format!("{path}.{k}"), v)));
    }
    if let Some(items) = map.get("items") {
        children.push((format!("{path}[]"), items));
    }
    if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
        children.push((format!("{path}{{}}"), extra));
    }
    for (child_path, child) in children {
        if !in_junctor && !has_type(child) {
            problems.push(format!("{child_path}: no type"));
        }
        check(child, &child_path, in_junctor, problems);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, branch) in map
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            // Every field a branch mentions must be specified outside the junctor too.
            for field in branch["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                if node["properties"].get(field).is_none() {
                    problems.push(format!("{path}.{junctor}[{i}]: {field} not in properties"));
                }
            }
            check(branch, &format!("{path}.{junctor}[{i}]"), true, problems);
        }
    }
    if let Some(not) = map.get("not") {
        check(not, &format!("{path}.not"), true, problems);
    }
    for rule in map
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(field_path) = rule["fieldPath"].as_str() {
            let target = field_path
                .trim_start_matches('.')
                .split('.')
                .try_fold(node, |n, key| n["properties"].get(key));
            if target.is_none() {
                problems.push(format!("{path}: fieldPath {field_path} names no field"));
            }
        }
        let reason = rule["reason"].as_str().unwrap_or("FieldValueInvalid");
        if ![
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        ]
        .contains(&reason)
        {
            problems.push(format!("{path}: reason {reason}"));
        }
    }
}

#[test]
fn every_crd_schema_is_structural() {
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
        assert_eq!(schema["type"], "object", "{name}: root type");
        let mut problems = Vec::new();
        check(&schema, "", false, &mut problems);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }
}

#[test]
fn the_check_catches_what_the_api_server_rejects() {
    let mut problems = Vec::new();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "source": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "oneOf": [{"required": ["a"], "type": "object"}, {"properties": {"b": {}}}],
            },
        },
        "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".missing"}],
    });
    check(&schema, "", false, &mut problems);
    assert_eq!(
        problems,
        [
            ".source.oneOf[0]: `type` inside a junctor",
            ".source.oneOf[1]: b not in properties",
            ".untyped: no type",
            ": fieldPath .missing names no field",
        ]
    );
}
