//! API errors rendered as `meta/v1 Status` objects with the real server's `reason` and
//! `code`, so clients branch on them as they would against Kubernetes (kube's
//! `get_opt` on `NotFound`, `finalizer()` retrying on a failed JSON-patch `test`, …).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::managed::path_string;
use super::resources::ResourceType;

/// A failed request, answered as a `Status` object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code, also the `Status.code`.
    pub code: u16,
    /// `Status.reason`: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, …
    pub reason: &'static str,
    /// Human-readable message, worded like the real server's.
    pub message: String,
    /// `Status.details` (name, group, kind, causes), when known.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": rt.group, "kind": rt.plural}));
        self
    }

    /// 404 for an object.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.group_resource()),
        )
        .with_details(rt, name)
    }

    /// 404 for a URL the fake does not serve.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 on create when the name is taken.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.group_resource()),
        )
        .with_details(rt, name)
    }

    /// 409 on a stale `resourceVersion` or failed precondition.
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.group_resource()
            ),
        )
        .with_details(rt, name)
    }

    /// 409 for a server-side apply that would change fields other managers own: one
    /// `(manager as described, field)` per conflict, worded like the real server (one
    /// `FieldManagerConflict` cause each; the message groups them by manager).
    pub fn apply_conflict(conflicts: &[(String, Vec<String>)]) -> Self {
        let message = if let [(manager, path)] = conflicts {
            format!(
                "Apply failed with 1 conflict: conflict with {manager}: {}",
                path_string(path)
            )
        } else {
            let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (manager, path) in conflicts {
                by_manager
                    .entry(manager)
                    .or_default()
                    .push(format!("- {}", path_string(path)));
            }
            let lines: Vec<String> = by_manager
                .into_iter()
                .flat_map(|(manager, paths)| {
                    std::iter::once(format!("conflicts with {manager}")).chain(paths)
                })
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        let mut err = Self::new(409, "Conflict", message);
        err.details = Some(json!({
            "causes": conflicts
                .iter()
                .map(|(manager, path)| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {manager}"),
                    "field": path_string(path),
                }))
                .collect::<Vec<_>>(),
        }));
        err
    }

    /// 422 with one cause per invalid field (`field`, `message`).
    pub fn invalid(rt: &ResourceType, name: &str, causes: &[(String, String)]) -> Self {
        let text = causes
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut err = Self::new(
            422,
            "Invalid",
            format!("{}.{} \"{name}\" is invalid: {text}", rt.kind, rt.group),
        )
        .with_details(rt, name);
        if let Some(Value::Object(d)) = err.details.as_mut() {
            d.insert(
                "causes".into(),
                causes
                    .iter()
                    .map(|(field, message)| {
                        json!({"reason": "FieldValueInvalid", "field": field, "message": message})
                    })
                    .collect(),
            );
        }
        err
    }

    /// 422 for a JSON patch that cannot be applied (a failed `test` included), as the
    /// real server's patch handler answers.
    pub fn unprocessable(message: String) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }

    /// 403, e.g. creating into a namespace that is being deleted.
    pub fn forbidden(message: String) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 403 from the authorizer, as the real server's `NewForbidden(groupResource, name,
    /// message)`: `<resource>[.<group>] ["<name>"] is forbidden: <message>`, or
    /// `forbidden: <message>` without a resource; `details` leave out what is empty.
    pub(crate) fn forbidden_resource(
        group: &str,
        resource: &str,
        name: &str,
        message: &str,
    ) -> Self {
        let qualified = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        let text = match (qualified.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {message}"),
            (false, true) => format!("{qualified} is forbidden: {message}"),
            (false, false) => format!("{qualified} \"{name}\" is forbidden: {message}"),
        };
        let mut details = serde_json::Map::new();
        for (key, value) in [("name", name), ("group", group), ("kind", resource)] {
            if !value.is_empty() {
                details.insert(key.into(), value.into());
            }
        }
        let mut err = Self::new(403, "Forbidden", text);
        err.details = Some(Value::Object(details));
        err
    }

    /// 401 for a request whose credentials the server does not know.
    pub(crate) fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".into())
    }

    /// 405 for a verb a route does not support.
    pub fn method_not_allowed(message: String) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 410 for a watch from a `resourceVersion` older than the kept history.
    pub fn expired(rv: u64) -> Self {
        Self::new(410, "Expired", format!("too old resource version: {rv}"))
    }

    /// 415 for a PATCH content type the fake does not know.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - the fake API server accepts \
                 application/json, application/json-patch+json, application/merge-patch+json, \
                 application/strategic-merge-patch+json and application/apply-patch+yaml \
                 (got {content_type:?})"
            ),
        )
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status())).into_response()
    }
}

/// `Result` with [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;
