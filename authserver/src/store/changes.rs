//! Cross-process change feed: tells this pod when another process changed a cached table.
//! PostgreSQL pushes through `LISTEN gatehouse_changes` (sent by triggers, delivered on
//! commit); SQLite has no push, so the trigger-maintained `change_counter` is polled.

use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{Pool, Store};
use crate::cache::Epoch;

/// PostgreSQL channel the migration's triggers notify.
pub const CHANNEL: &str = "gatehouse_changes";

/// Tables whose notifications mean a token or grant was revoked (or deleted): they drop
/// only the caches of token state (`Cached::dropped_on_revocation`). On SQLite their
/// triggers advance the one counter, which drops every cache.
const REVOCATION_TABLES: [&str; 2] = ["revoked_tokens", "grants"];

/// The payload of the heartbeat every pod sends on [`CHANNEL`]: receiving any pod's
/// proves this pod's listener delivers, which caches of token state require (see
/// `cache::FEED_FRESHNESS`). It changes nothing.
const HEARTBEAT: &str = "heartbeat";

/// How often a pod sends its heartbeat; a few within `cache::FEED_FRESHNESS`.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// How often SQLite's counter is read; well under the one-second propagation target.
const SQLITE_POLL: Duration = Duration::from_millis(250);

impl Store {
    /// Watches for changes until the task is aborted or the pool closed, bumping `epoch`
    /// on each. Connection loss resyncs it: notifications may have been missed meanwhile.
    /// On PostgreSQL the listener also reports to the database's shared health: failing to reconnect within
    /// the request deadline marks the database unavailable, reconnecting clears that.
    pub fn spawn_change_watcher(&self, epoch: Epoch) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            match &store.pool {
                Pool::Postgres(pool) => {
                    tokio::join!(
                        listen_postgres(&store, pool.clone(), epoch),
                        heartbeat(pool.clone())
                    );
                }
                Pool::Sqlite(_) => poll_sqlite(store.clone(), epoch).await,
            }
        })
    }

    async fn change_generation(&self) -> super::Result<i64> {
        Ok(super::with_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT generation FROM change_counter WHERE id = 1")
                .fetch_one(pool)
                .await
        })?)
    }
}

/// A listener on [`CHANNEL`] within `deadline`. It does not reconnect by itself
/// (`eager_reconnect` off): a lost connection comes back here, where the attempt is
/// bounded and its outcome reported.
async fn listen(pool: &sqlx::PgPool, deadline: Duration) -> Result<PgListener, String> {
    let connect = async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match tokio::time::timeout(deadline, connect).await {
        Ok(Ok(listener)) => Ok(listener),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {} ms", deadline.as_millis())),
    }
}

/// Sends [`HEARTBEAT`] every [`HEARTBEAT_EVERY`] until the pool is closed. Failures are
/// silent and bounded: the requests that need the database find an outage and report
/// it; a missing heartbeat only stops token state from being served from memory.
async fn heartbeat(pool: sqlx::PgPool) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        let send = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(HEARTBEAT)
            .execute(&pool);
        if let Ok(Err(e)) = tokio::time::timeout(HEARTBEAT_EVERY * 4, send).await {
            tracing::debug!(error = %e, "change feed heartbeat not sent");
        }
    }
}

async fn listen_postgres(store: &Store, pool: sqlx::PgPool, epoch: Epoch) {
    let mut backoff = Duration::from_millis(250);
    // Attempts that failed since the listener was last connected. The first is a WARN;
    // the retries of the same outage are debug lines (the store logs the outage itself
    // once), and the reconnection says how many it took.
    let mut failed_attempts = 0u32;
    loop {
        // Shutdown closed the pool: nothing to watch for any more, and nothing to report.
        if pool.is_closed() {
            return;
        }
        let mut listener = match listen(&pool, store.health.acquire_timeout()).await {
            Ok(l) => l,
            Err(_) if pool.is_closed() => return,
            Err(e) => {
                store.report_failure(&format!("change listener: {e}"));
                if failed_attempts == 0 {
                    tracing::warn!(error = %e, "change listener cannot connect, retrying until it can");
                } else {
                    tracing::debug!(error = %e, attempt = failed_attempts + 1, "change listener cannot connect, retrying");
                }
                failed_attempts = failed_attempts.saturating_add(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        store.report_success();
        if failed_attempts > 0 {
            tracing::info!(
                attempts = failed_attempts,
                "change listener connected again"
            );
            failed_attempts = 0;
        }
        backoff = Duration::from_millis(250);
        // Anything may have changed while we were not listening.
        epoch.resync();
        epoch.feed_alive();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.payload() == HEARTBEAT => epoch.feed_alive(),
                Ok(Some(n)) => {
                    tracing::debug!(table = n.payload(), "change notification");
                    epoch.feed_alive();
                    if REVOCATION_TABLES.contains(&n.payload()) {
                        epoch.revoked();
                    } else {
                        epoch.bump();
                    }
                }
                Ok(None) => {
                    tracing::warn!("change listener connection lost, reconnecting");
                    epoch.resync();
                    break;
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "change listener failed, reconnecting");
                    epoch.resync();
                    break;
                }
            }
        }
    }
}

async fn poll_sqlite(store: Store, epoch: Epoch) {
    let mut last = None;
    let mut tick = tokio::time::interval(SQLITE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if store.is_closed() {
            return;
        }
        match store.change_generation().await {
            Ok(g) => {
                if last.is_some_and(|l| l != g) {
                    epoch.bump();
                }
                last = Some(g);
                epoch.feed_alive();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read change counter"),
        }
    }
}
