//! `/healthz` (the process answers) and `/readyz` (the database is reachable, the schema
//! is what this binary expects, and startup initialisation finished).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::store::Store;

/// Readiness beyond "database reachable": set by the startup sequence.
#[derive(Debug)]
pub struct Readiness {
    store: Store,
    /// `None` once startup initialisation succeeded; otherwise why not yet.
    startup: RwLock<Option<String>>,
    behind_logged: AtomicBool,
}

impl Readiness {
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            startup: RwLock::new(Some("starting".to_owned())),
            behind_logged: AtomicBool::new(false),
        })
    }

    pub fn set_startup(&self, pending: Option<String>) {
        if let Ok(mut s) = self.startup.write() {
            *s = pending;
        }
    }

    /// `Ok` when ready, otherwise the reason.
    pub async fn check(&self) -> Result<(), String> {
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
        if let Some(reason) = self.startup.read().ok().and_then(|s| s.clone()) {
            return Err(reason);
        }
        Ok(())
    }
}

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `/readyz` on the public port when the operations listener has the detailed one: the
/// reason (a database error, a missing migration) is for operators, not the internet.
pub async fn readyz_without_reason(State(state): State<AppState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        )
            .into_response(),
    }
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}
