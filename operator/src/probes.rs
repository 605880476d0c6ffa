//! `/healthz`, `/readyz` and `/metrics` on `--probe-addr`.
//!
//! `/healthz` answers 200 while the leader's controllers work, and 503 with the reason
//! when one stopped or its watch has failed for longer than [`health::threshold`] (see
//! [`crate::health`]); a standby is healthy. `/readyz` answers 200 once start-up
//! finished (configuration read, Kubernetes API reachable); a standby replica waiting for
//! the leader Lease is ready too, and the body says which it is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::health;
use crate::metrics::Metrics;

/// What the probe endpoints read.
#[derive(Clone)]
pub struct ProbeState {
    pub metrics: Arc<Metrics>,
    /// Start-up finished.
    pub ready: watch::Receiver<bool>,
    /// This replica holds the leader Lease.
    pub leader: watch::Receiver<bool>,
    /// How long a running controller's watch may fail ([`health::threshold`]).
    pub health_threshold: Duration,
}

/// The probe routes.
pub fn router(state: ProbeState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(state): State<ProbeState>) -> impl IntoResponse {
    let controllers = state.metrics.health.snapshot();
    match health::assess(&controllers, Instant::now(), state.health_threshold) {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {reason}\n"),
        ),
    }
}

async fn readyz(State(state): State<ProbeState>) -> impl IntoResponse {
    if !*state.ready.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n");
    }
    if *state.leader.borrow() {
        (StatusCode::OK, "ready (leader)\n")
    } else {
        (StatusCode::OK, "ready (standby)\n")
    }
}

async fn metrics(State(state): State<ProbeState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Serves the probes on `addr` until `shutdown` turns true.
pub async fn serve(
    addr: SocketAddr,
    state: ProbeState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(listen = %listener.local_addr()?, "probes and metrics listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        use tower::ServiceExt as _;
        let response = app
            .clone()
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_start_up_and_names_the_role() {
        let (ready_tx, ready) = watch::channel(false);
        let (leader_tx, leader) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        metrics.observe("identitytenant", std::time::Duration::from_millis(1), None);
        let app = router(ProbeState {
            metrics,
            ready,
            leader,
            health_threshold: Duration::from_mins(15),
        });
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready_tx.send_replace(true);
        assert_eq!(
            get(&app, "/readyz").await,
            (StatusCode::OK, "ready (standby)\n".into())
        );
        leader_tx.send_replace(true);
        assert_eq!(get(&app, "/readyz").await.1, "ready (leader)\n");
        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains(
                "gatehouse_operator_reconciliations_total{controller=\"identitytenant\"} 1"
            )
        );
    }

    #[tokio::test]
    async fn healthz_fails_with_the_reason_when_a_running_controller_stopped() {
        let (_ready_tx, ready) = watch::channel(true);
        let (_leader_tx, leader) = watch::channel(true);
        let metrics = Arc::new(Metrics::new());
        let app = router(ProbeState {
            metrics: Arc::clone(&metrics),
            ready,
            leader,
            health_threshold: Duration::from_mins(15),
        });
        let (halt_tx, halt) = watch::channel(false);
        // A controller whose stream ends while nobody halted it.
        health::supervise(
            Arc::clone(&metrics.health),
            "oidcclient",
            halt.clone(),
            async {},
        )
        .await;
        assert_eq!(
            get(&app, "/healthz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "unhealthy: controller oidcclient stopped: its event stream ended\n".into()
            )
        );
        // Stopping on purpose (shutdown, lost Lease) is healthy.
        let metrics = Arc::new(Metrics::new());
        let (_ready_tx, ready) = watch::channel(true);
        let (_leader_tx, leader) = watch::channel(true);
        let app = router(ProbeState {
            metrics: Arc::clone(&metrics),
            ready,
            leader,
            health_threshold: Duration::from_mins(15),
        });
        halt_tx.send_replace(true);
        health::supervise(Arc::clone(&metrics.health), "oidcclient", halt, async {}).await;
        assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok\n".into()));
    }
}
