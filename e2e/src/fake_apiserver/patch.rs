//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge
//! patch (treated as a merge patch, `$`-directives dropped) and server-side apply
//! (a merge of the applied configuration into the live object; the store then removes
//! what the manager stopped applying and checks conflicts, see `managed`).
//!
//! Not modelled: list merging by key (`containers` by name, `listType: map` lists in
//! apply, …) — lists are replaced whole; the meaning of
//! `$patch`/`$retainKeys`/`$setElementOrder` directives (dropped).

use json_patch::PatchOperation;
use serde_json::Value;

use super::error::{ApiError, Result};

/// The PATCH content types the fake understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json` (applied as a merge patch)
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchKind {
    /// From a `Content-Type` header value (parameters such as `charset` ignored).
    pub fn from_content_type(ct: &str) -> Result<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }

    /// Parses a request body of this kind (apply bodies are YAML, a superset of JSON).
    pub fn parse_body(self, body: &[u8]) -> Result<Value> {
        let parsed = if self == Self::Apply {
            serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| ApiError::bad_request(format!("failed to parse patch body: {e}")))
    }
}

/// Applies `patch` of kind `kind` to a copy of `live` and returns the result.
pub fn apply(kind: PatchKind, live: &Value, patch: &Value) -> Result<Value> {
    let mut doc = live.clone();
    match kind {
        PatchKind::Json => json_patch(&mut doc, patch)?,
        PatchKind::Merge | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("patch body must be a JSON object"));
            }
            json_patch::merge(&mut doc, patch);
        }
        PatchKind::StrategicMerge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("patch body must be a JSON object"));
            }
            json_patch::merge(&mut doc, &without_directives(patch));
        }
    }
    Ok(doc)
}

/// A strategic merge patch without its `$`-directives (`$setElementOrder/…`, `$patch`,
/// `$retainKeys`, `$deleteFromPrimitiveList/…`, which kubectl's client-side apply sends):
/// merged as a plain merge patch they would otherwise land in the object.
fn without_directives(patch: &Value) -> Value {
    match patch {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

fn json_patch(doc: &mut Value, patch: &Value) -> Result<()> {
    let ops: Vec<PatchOperation> = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    for op in &ops {
        match op {
            PatchOperation::Test(test) => {
                let pointer = test.path.as_str();
                // Like the real server's JSON-patch library: testing for `null` succeeds
                // when the parent exists and the member is missing (kube's `finalizer()`
                // relies on this for `test /metadata/finalizers == null`).
                let ok = if let Some(v) = doc.pointer(pointer) {
                    *v == test.value
                } else {
                    let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
                    test.value.is_null() && doc.pointer(parent).is_some()
                };
                if !ok {
                    return Err(ApiError::unprocessable(format!(
                        "the server rejected our request due to an error in our request: \
                         testing value {pointer} failed"
                    )));
                }
            }
            other => json_patch::patch(doc, std::slice::from_ref(other)).map_err(|e| {
                ApiError::unprocessable(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_for_null_passes_on_a_missing_member_and_fails_on_a_present_one() {
        let live = json!({"metadata": {"name": "a"}});
        let add = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        let patched = apply(PatchKind::Json, &live, &add).unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["f"]));
        let err = apply(PatchKind::Json, &patched, &add).unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
    }

    #[test]
    fn strategic_merge_directives_are_dropped() {
        let live = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "b"}],
                                    "containers": [{"name": "b", "$patch": "replace"}]}});
        let out = apply(PatchKind::StrategicMerge, &live, &patch).unwrap();
        assert_eq!(out, json!({"spec": {"containers": [{"name": "b"}]}}));
    }

    #[test]
    fn merge_patch_null_removes_and_lists_are_replaced() {
        let live = json!({"a": {"b": 1, "c": [1, 2]}});
        let out = apply(
            PatchKind::Merge,
            &live,
            &json!({"a": {"b": null, "c": [3]}}),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"c": [3]}}));
    }
}
