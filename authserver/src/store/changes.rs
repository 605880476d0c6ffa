//! Cross-process change feed: tells this pod when another process changed a cached table.
//! PostgreSQL pushes through `LISTEN gatehouse_changes` (sent by triggers, delivered on
//! commit); SQLite has no push, so the trigger-maintained `change_counter` is polled.

use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{Pool, Store};
use crate::cache::Epoch;

/// PostgreSQL channel the migration's triggers notify.
pub const CHANNEL: &str = "gatehouse_changes";

/// How often SQLite's counter is read; well under the one-second propagation target.
const SQLITE_POLL: Duration = Duration::from_millis(250);

impl Store {
    /// Watches for changes until the task is dropped, bumping `epoch` on each. Connection
    /// loss also bumps it: notifications may have been missed meanwhile.
    pub fn spawn_change_watcher(&self, epoch: Epoch) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            match &store.pool {
                Pool::Postgres(pool) => listen_postgres(pool.clone(), epoch).await,
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

async fn listen_postgres(pool: sqlx::PgPool, epoch: Epoch) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "change listener cannot connect, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "change listener cannot LISTEN, retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(250);
        // Anything may have changed while we were not listening.
        epoch.bump();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    tracing::debug!(table = n.payload(), "change notification");
                    epoch.bump();
                }
                Ok(None) => {
                    tracing::warn!("change listener connection lost, reconnecting");
                    epoch.bump();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change listener failed, reconnecting");
                    epoch.bump();
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
        match store.change_generation().await {
            Ok(g) => {
                if last.is_some_and(|l| l != g) {
                    epoch.bump();
                }
                last = Some(g);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read change counter"),
        }
    }
}
