//! `/healthz` (the process answers) and `/readyz` ([`crate::readiness`]: the database is
//! reachable, the schema is what this binary expects, startup initialisation finished,
//! and no shutdown began), 503 with the reason when not ready.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::retry_after_outage;

/// While the process drains, each HTTP/1 response carries `Connection: close`: a client
/// holding a keep-alive connection never sees the load balancer drop this pod, so it is
/// told to reconnect (and reaches a ready pod) before this one stops listening, instead
/// of racing the listener's close with its next request. (HTTP/2 has no such header.)
/// Called by [`super::observe::observe`] for every response of the public listener.
pub fn close_connection_while_draining(state: &AppState, version: Version, resp: &mut Response) {
    let http1 = version == Version::HTTP_10 || version == Version::HTTP_11;
    if http1 && state.readiness.is_draining() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// The probes served while `serve` waits for its encryption key: `/healthz`, and a
/// `/readyz` that is never ready, saying why (`reason`, as it changes) when
/// `with_reason`.
pub fn waiting_probes(reason: Arc<RwLock<String>>, with_reason: bool) -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let reason =
                    with_reason.then(|| reason.read().map(|r| r.clone()).unwrap_or_default());
                async move { not_ready(reason.as_deref()) }
            }),
        )
}

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `/readyz` on the public port when the operations listener has the detailed one: the
/// reason (a database error, a missing migration) is for operators, not the internet.
pub async fn readyz_without_reason(State(state): State<AppState>) -> Response {
    readiness(&state, false).await
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    readiness(&state, true).await
}

/// 200 `{"status": "ready"}`, or [`not_ready`].
async fn readiness(state: &AppState, with_reason: bool) -> Response {
    match state.readiness.check().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => not_ready(with_reason.then_some(reason.as_str())),
    }
}

/// Every not-ready answer, here and while `serve` waits for its key: 503
/// `{"status": "not_ready"}` with the error body's `error` (and, when given, the reason
/// as `reason` and `error_description`), `Retry-After`, not cacheable.
pub fn not_ready(reason: Option<&str>) -> Response {
    let mut body = json!({"status": "not_ready", "error": "temporarily_unavailable"});
    if let Some(reason) = reason {
        body["reason"] = reason.into();
        body["error_description"] = reason.into();
    }
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    super::error::no_store(resp.headers_mut());
    retry_after_outage(resp.headers_mut());
    resp
}
