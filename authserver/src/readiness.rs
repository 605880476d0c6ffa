//! Readiness: whether this process should receive traffic. The database is reachable,
//! its schema is what this binary expects, startup initialisation finished, and no
//! shutdown began. Served as `/readyz` by `http::health`; the database figures are
//! `/metrics`'.
//!
//! A check answers within [`READINESS_DEADLINE`] whatever the database does: at once
//! while the database is marked unavailable (`store::health`), and with "did not
//! answer" when its checks take longer than the deadline. A Kubernetes readiness probe
//! gives up after one second by default; an answer after that is no answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::{PoolStats, Store};

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
    /// their connection (see `http::health::close_connections_while_draining`).
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

/// The database as `/metrics` reports it.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseFigures {
    pub pool: PoolStats,
    /// Not marked unavailable (no outage in progress).
    pub available: bool,
}

impl Readiness {
    /// The connection pool's figures and whether the database is available, read
    /// without touching the database.
    pub fn database(&self) -> DatabaseFigures {
        DatabaseFigures {
            pool: self.store.pool_stats(),
            available: !self.store.health().is_unavailable(),
        }
    }
}
