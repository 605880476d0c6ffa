//! `/healthz` (the process answers) and `/readyz` (the database is reachable, the schema
//! is what this binary expects, startup initialisation finished, and no shutdown began).
//!
//! `/readyz` answers within [`READINESS_DEADLINE`] whatever the database does: at once
//! with 503 while the database is marked unavailable (`store::health`), and with 503 when
//! its checks take longer than the deadline. A Kubernetes readiness probe gives up after
//! one second by default; an answer after that is no answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::retry_after_outage;
use crate::store::Store;

/// The longest `/readyz` takes to answer.
pub const READINESS_DEADLINE: Duration = Duration::from_millis(500);

/// Readiness beyond "database reachable": set by the startup sequence.
#[derive(Debug)]
pub struct Readiness {
    store: Store,
    /// `None` once startup initialisation succeeded; otherwise why not yet.
    startup: RwLock<Option<String>>,
    behind_logged: AtomicBool,
    /// SIGTERM arrived: not ready, whatever the database says.
    draining: AtomicBool,
}

impl Readiness {
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            startup: RwLock::new(Some("starting".to_owned())),
            behind_logged: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    /// Shutdown began: `/readyz` answers 503 from now on, and HTTP/1 responses close
    /// their connection (see [`close_connections_while_draining`]).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn set_startup(&self, pending: Option<String>) {
        if let Ok(mut s) = self.startup.write() {
            *s = pending;
        }
    }

    /// `Ok` when ready, otherwise the reason; within [`READINESS_DEADLINE`].
    pub async fn check(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("shutting down".to_owned());
        }
        if let Some((since, reason)) = self.store.health().outage() {
            return Err(format!(
                "database unavailable for {} s: {reason}",
                Instant::now().saturating_duration_since(since).as_secs()
            ));
        }
        match tokio::time::timeout(READINESS_DEADLINE, self.check_database()).await {
            Ok(checked) => checked?,
            Err(_) => {
                return Err(format!(
                    "database did not answer within {} ms",
                    READINESS_DEADLINE.as_millis()
                ));
            }
        }
        if let Some(reason) = self.startup.read().ok().and_then(|s| s.clone()) {
            return Err(reason);
        }
        Ok(())
    }

    /// The database answers and its schema is the one this binary expects.
    async fn check_database(&self) -> Result<(), String> {
        self.store
            .ping()
            .await
            .map_err(|e| format!("database unreachable: {e}"))?;
        let status = self
            .store
            .schema_status()
            .await
            .map_err(|e| format!("cannot read schema version: {e}"))?;
        if !status.is_current() {
            let missing: Vec<String> = status.pending.iter().map(ToString::to_string).collect();
            let reason = format!(
                "database schema is behind this binary: missing migration(s) {}; run `authserver migrate`",
                missing.join(", ")
            );
            if !self.behind_logged.swap(true, Ordering::SeqCst) {
                tracing::warn!(missing = %missing.join(","), "database schema is behind; not ready until `authserver migrate` has run");
            }
            return Err(reason);
        }
        self.behind_logged.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// While the process drains, each HTTP/1 response carries `Connection: close`: a client
/// holding a keep-alive connection never sees the load balancer drop this pod, so it is
/// told to reconnect (and reaches a ready pod) before this one stops listening, instead
/// of racing the listener's close with its next request. (HTTP/2 has no such header.)
pub async fn close_connections_while_draining(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let version = req.version();
    let http1 = version == Version::HTTP_10 || version == Version::HTTP_11;
    let mut resp = next.run(req).await;
    if http1 && state.readiness.is_draining() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
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
