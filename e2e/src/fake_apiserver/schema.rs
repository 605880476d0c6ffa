//! Structural-schema handling for custom resources whose CRD was written to the fake:
//! defaulting, pruning of unknown fields and validation against `openAPIV3Schema`.
//!
//! Modelled: `type` (object, array, string, integer, number, boolean), `properties`,
//! `additionalProperties`, `required`, `default`, `nullable` (a null in a non-nullable
//! field is dropped, as the real server does), `enum`, `minimum`/`maximum`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`, `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-int-or-string`, and `oneOf`/`anyOf`/`allOf` as far as their branches'
//! `required` lists go (what schemars emits for Rust enums); CEL rules
//! (`x-kubernetes-validations`, including transition rules on `oldSelf`) through kube's
//! client-side evaluator (kube-cel), see [`check_cel`].
//! Not modelled: `pattern`, `format`, `multipleOf`, list types (`x-kubernetes-list-type`
//! uniqueness), `not`, CEL cost limits, ratcheting.

use serde_json::{Map, Value};

/// Defaults, prunes and validates `obj` (a whole custom resource) in place; returns one
/// `(field path, message)` per violation.
pub(crate) fn apply(obj: &mut Value, schema: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    walk(obj, schema, "", true, &mut errors);
    errors
}

/// Evaluates the schema's CEL rules. Only rules that evaluate to false reject the object;
/// a rule kube-cel cannot compile or evaluate (a function it lacks) is logged and
/// skipped, so the fake never refuses an object the real server would accept for that
/// reason.
pub(crate) fn check_cel(
    schema: &Value,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), Vec<(String, String)>> {
    use kube::core::cel::{ErrorKind, compile_schema, validate_compiled};
    let Err(errors) = validate_compiled(&compile_schema(schema), obj, old) else {
        return Ok(());
    };
    let mut causes = Vec::new();
    for e in errors.into_vec() {
        match e.kind {
            ErrorKind::ValidationFailure | ErrorKind::InvalidResult => causes.push((
                field(&e.field_path),
                format!("Invalid value: \"object\": {}", e.message),
            )),
            _ => {
                tracing::warn!(
                    rule = %e.rule,
                    error = %e.message,
                    "fake apiserver skipped a CEL rule it cannot evaluate"
                );
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(causes)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn field(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}

fn walk(v: &mut Value, s: &Value, path: &str, root: bool, errors: &mut Vec<(String, String)>) {
    let int_or_string = s["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if int_or_string {
        if !matches!(type_name(v), "integer" | "string") {
            errors.push((
                field(path),
                format!("Invalid value: {v}: must be an integer or a string"),
            ));
        }
        return;
    }
    if let Some(expected) = s["type"].as_str() {
        let actual = type_name(v);
        let ok = actual == expected || (expected == "number" && actual == "integer");
        if !ok {
            errors.push((
                field(path),
                format!(
                    "Invalid value: \"{actual}\": {} in body must be of type {expected}: \"{actual}\"",
                    field(path)
                ),
            ));
            return;
        }
    }
    if let Some(allowed) = s["enum"].as_array()
        && !allowed.contains(v)
    {
        let list = allowed
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        errors.push((
            field(path),
            format!("Unsupported value: {v}: supported values: {list}"),
        ));
    }
    match v {
        Value::Object(map) => walk_object(map, s, path, root, errors),
        Value::Array(items) => {
            check_len(
                items.len(),
                s,
                "minItems",
                "maxItems",
                "items",
                path,
                errors,
            );
            for (i, item) in items.iter_mut().enumerate() {
                if let Some(item_schema) = s.get("items") {
                    walk(item, item_schema, &format!("{path}[{i}]"), false, errors);
                }
            }
        }
        Value::String(text) => {
            check_len(
                text.chars().count(),
                s,
                "minLength",
                "maxLength",
                "characters",
                path,
                errors,
            );
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(min) = s["minimum"].as_f64()
                && x < min
            {
                errors.push((
                    field(path),
                    format!("Invalid value: {n}: should be greater than or equal to {min}"),
                ));
            }
            if let Some(max) = s["maximum"].as_f64()
                && x > max
            {
                errors.push((
                    field(path),
                    format!("Invalid value: {n}: should be less than or equal to {max}"),
                ));
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn check_len(
    len: usize,
    s: &Value,
    min_key: &str,
    max_key: &str,
    unit: &str,
    path: &str,
    errors: &mut Vec<(String, String)>,
) {
    if let Some(min) = s[min_key].as_u64()
        && (len as u64) < min
    {
        errors.push((
            field(path),
            format!("Invalid value: {len}: must have at least {min} {unit}"),
        ));
    }
    if let Some(max) = s[max_key].as_u64()
        && (len as u64) > max
    {
        errors.push((
            field(path),
            format!("Too long: may not have more than {max} {unit}"),
        ));
    }
}

fn walk_object(
    map: &mut Map<String, Value>,
    s: &Value,
    path: &str,
    root: bool,
    errors: &mut Vec<(String, String)>,
) {
    let preserve = s["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    let properties = s["properties"].as_object();
    let additional = s.get("additionalProperties").filter(|a| a.is_object());

    // Defaults first, so that defaulted fields are then validated like given ones.
    if let Some(props) = properties {
        for (key, prop) in props {
            if !map.contains_key(key)
                && let Some(default) = prop.get("default")
            {
                map.insert(key.clone(), default.clone());
            }
        }
    }

    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        // apiVersion, kind and metadata at the root are the server's, not the schema's.
        if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let prop = properties.and_then(|p| p.get(&key)).or(additional);
        let Some(prop) = prop else {
            if !preserve && (properties.is_some() || s.get("additionalProperties").is_none()) {
                map.remove(&key);
            }
            continue;
        };
        if map.get(&key).is_some_and(Value::is_null) && prop["nullable"].as_bool() != Some(true) {
            map.remove(&key);
            continue;
        }
        if let Some(value) = map.get_mut(&key) {
            walk(value, prop, &join(path, &key), false, errors);
        }
    }

    for req in s["required"].as_array().into_iter().flatten() {
        if let Some(req) = req.as_str()
            && !map.contains_key(req)
        {
            errors.push((join(path, req), "Required value".to_owned()));
        }
    }

    let satisfied = |branch: &Value| {
        branch["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .all(|k| map.contains_key(k))
    };
    if let Some(branches) = s["oneOf"].as_array()
        && branches.iter().filter(|b| satisfied(b)).count() != 1
    {
        errors.push((
            field(path),
            "Invalid value: must validate one and only one schema (oneOf)".to_owned(),
        ));
    }
    if let Some(branches) = s["anyOf"].as_array()
        && !branches.iter().any(satisfied)
    {
        errors.push((
            field(path),
            "Invalid value: must validate at least one schema (anyOf)".to_owned(),
        ));
    }
    if let Some(branches) = s["allOf"].as_array()
        && !branches.iter().all(satisfied)
    {
        errors.push((
            field(path),
            "Invalid value: must validate all the schemas (allOf)".to_owned(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "minLength": 1},
                "kind": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "count": {"type": "integer", "minimum": 1},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}
        }})
    }

    #[test]
    fn defaults_are_filled_and_unknown_fields_pruned() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"},
            "spec": {"name": "n", "extra": 1, "labels": {"a": "b"}, "free": {"any": [1]}, "count": null}});
        assert!(apply(&mut o, &schema()).is_empty());
        assert_eq!(
            o["spec"],
            json!({"name": "n", "kind": "a", "labels": {"a": "b"}, "free": {"any": [1]}})
        );
        assert_eq!(o["metadata"]["name"], "n");
    }

    #[test]
    fn missing_required_wrong_type_and_enum_are_reported() {
        let mut o = json!({"spec": {"kind": "c", "count": "1"}});
        let errs = apply(&mut o, &schema());
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["spec.count", "spec.kind", "spec.name"], "{errs:?}");
    }
}
