//! PostgreSQL connections kept checked out between store calls.
//!
//! sqlx pings every connection it takes back (`PoolConnection::return_to_pool` sends a
//! Sync and waits for its ReadyForQuery), and has no option to skip it: a store call of
//! one statement cost two round trips, and the pings were an eighth of a refresh grant's
//! server CPU (perf on `benches/load.sh`). A connection whose call finished cleanly — no
//! transaction open, nothing queued to send — is kept here instead and handed to the next
//! call, which then makes one round trip. A call that fails with `?` or is cancelled
//! drops its connection, which goes back to sqlx and its ping: that is what the ping is
//! for (a cancelled statement, a rollback still queued).
//!
//! Kept connections are checked out as far as sqlx knows, so the calls that use them
//! take turns through a fair (first come, first served) semaphore of
//! `(max_connections - 2) / 2` turns, each holding at most one connection: the rest
//! stays with sqlx for transactions, units of work and the change listener (a pool of 3
//! or fewer keeps nothing — a unit of work could otherwise wait for the one connection
//! a kept one holds), and a call waiting for a connection is served in order — handing a finished call's
//! connection to whichever call came next, instead of to sqlx's queue, made some calls
//! wait for hundreds of milliseconds while others never waited (p99 of refresh grants
//! 39 → 280 ms). One unused for longer than [`super::PING_IDLE_AFTER`] goes back to
//! sqlx, which pings it before it is used again and reaps it by its idle and lifetime
//! rules.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use sqlx::Connection as _;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};

use super::PING_IDLE_AFTER;

type Kept = (PoolConnection<Postgres>, Instant);

/// The kept connections of one pool (shared by every clone of the store).
#[derive(Debug)]
pub(super) struct Warm {
    state: Mutex<State>,
    /// Turns of the calls that use kept connections (see the module docs).
    turns: Arc<Semaphore>,
    max_turns: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Most recently used last.
    kept: Vec<Kept>,
    /// Set by [`Warm::close`]: the pool is closing and waits for every connection.
    closed: bool,
}

impl Warm {
    /// For a pool of `max_connections` (see the module docs).
    pub(super) fn new(max_connections: u32) -> Self {
        let turns = usize::try_from(max_connections.saturating_sub(2) / 2).unwrap_or(0);
        Self {
            state: Mutex::default(),
            turns: Arc::new(Semaphore::new(turns)),
            max_turns: turns,
        }
    }

    /// Whether connections are kept at all (a pool of more than 3).
    pub(super) fn enabled(&self) -> bool {
        self.max_turns > 0
    }

    /// Waits for this call's turn, in order of arrival; `PoolClosed` once closing.
    /// Only when [`Warm::enabled`]: there are no turns otherwise.
    pub(super) async fn turn(&self) -> Result<OwnedSemaphorePermit, sqlx::Error> {
        Arc::clone(&self.turns)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)
    }

    /// The most recently used kept connection, if it was used within
    /// [`PING_IDLE_AFTER`]; stale ones go back to sqlx ([`Warm::release_stale`]).
    pub(super) fn take(&self, now: Instant) -> Option<PoolConnection<Postgres>> {
        let (found, stale) = {
            let mut guard = self.state.lock().expect("warm connections lock");
            let stale = stale_ones(&mut guard.kept, now);
            (guard.kept.pop().map(|(conn, _)| conn), stale)
        };
        // Outside the lock: dropping hands the connections back to sqlx (a spawned ping).
        drop(stale);
        found
    }

    /// Gives the connections unused for [`PING_IDLE_AFTER`] back to sqlx: before a
    /// checkout from sqlx (a transaction, a call that found none kept), so that
    /// connections kept while the load was different do not shrink the pool.
    pub(super) fn release_stale(&self, now: Instant) {
        let stale = {
            let mut guard = self.state.lock().expect("warm connections lock");
            stale_ones(&mut guard.kept, now)
        };
        drop(stale);
    }

    /// Keeps `conn` for the next call if its call left it clean and there is room;
    /// otherwise it goes back to sqlx.
    pub(super) fn keep(&self, conn: PoolConnection<Postgres>, now: Instant) {
        if !clean(&conn) {
            return;
        }
        let mut guard = self.state.lock().expect("warm connections lock");
        // No more than there are turns (a call that found none kept checked one out).
        if guard.closed || guard.kept.len() >= self.max_turns {
            return;
        }
        guard.kept.push((conn, now));
    }

    /// Gives every kept connection back and keeps none from now on: the pool is closing
    /// and waits until every connection is back.
    pub(super) fn close(&self) {
        self.turns.close();
        let kept = {
            let mut guard = self.state.lock().expect("warm connections lock");
            guard.closed = true;
            std::mem::take(&mut guard.kept)
        };
        drop(kept);
    }

    /// How many connections are kept (idle, for the pool figures).
    pub(super) fn len(&self) -> usize {
        self.state.lock().expect("warm connections lock").kept.len()
    }
}

/// Removes and returns the kept connections unused for [`PING_IDLE_AFTER`] (`kept` is in
/// the order they were kept, so they are at the front).
fn stale_ones(kept: &mut Vec<Kept>, now: Instant) -> Vec<Kept> {
    let fresh_from =
        kept.partition_point(|(_, at)| now.saturating_duration_since(*at) >= PING_IDLE_AFTER);
    kept.drain(..fresh_from).collect()
}

/// No transaction open and nothing queued to send (a dropped transaction queues its
/// ROLLBACK): the next statement may use the connection as it is. Output a call left
/// unread is drained by the next statement before it starts.
fn clean(conn: &PgConnection) -> bool {
    !conn.is_in_transaction() && !conn.should_flush()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A pool of `max` connections to a database of its own (dropped with the guard).
    async fn pool(max: u32) -> (testkit::postgres::Database, sqlx::PgPool) {
        let db = testkit::postgres::Database::create("gh_warm").await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max)
            .connect(db.url())
            .await
            .expect("connect");
        (db, pool)
    }

    #[tokio::test]
    async fn a_clean_connection_is_kept_for_the_next_call_until_it_goes_stale() {
        let (_db, pool) = pool(6).await;
        let warm = Warm::new(6);
        let t0 = Instant::now();
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
        warm.keep(conn, t0);
        assert_eq!(warm.len(), 1);
        assert_eq!(pool.num_idle(), 0, "checked out as far as sqlx knows");
        let conn = warm.take(t0 + Duration::from_millis(10)).expect("kept");
        assert_eq!(warm.len(), 0);

        // Stale: given back to sqlx instead of handed out.
        warm.keep(conn, t0);
        assert!(warm.take(t0 + PING_IDLE_AFTER).is_none());
        assert_eq!(warm.len(), 0);
        let second = pool.acquire().await.unwrap();
        warm.keep(second, t0);
        warm.release_stale(t0 + Duration::from_millis(10));
        assert_eq!(warm.len(), 1, "still fresh");
        warm.release_stale(t0 + PING_IDLE_AFTER);
        assert_eq!(warm.len(), 0, "stale: back to sqlx before a checkout");
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.num_idle() != 2 {
            assert!(
                Instant::now() < deadline,
                "the connections went back to sqlx"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_connection_in_a_transaction_or_with_a_rollback_queued_is_not_kept() {
        let (_db, pool) = pool(6).await;
        let warm = Warm::new(6);
        let now = Instant::now();
        let mut conn = pool.acquire().await.unwrap();
        let tx = conn.begin().await.unwrap();
        drop(tx);
        warm.keep(conn, now);
        assert_eq!(warm.len(), 0, "a rollback queued");

        let mut conn = pool.acquire().await.unwrap();
        let tx = conn.begin().await.unwrap();
        std::mem::forget(tx);
        warm.keep(conn, now);
        assert_eq!(warm.len(), 0, "a transaction open");
    }

    /// A unit of work checks its connection out of sqlx: a kept connection must never be
    /// the one it waits for (with one connection in all it was: timed out after 1 s).
    #[tokio::test]
    async fn a_unit_of_work_never_waits_for_a_kept_connection() {
        for max in [1, 2, 3, 4, 6] {
            let db = testkit::postgres::Database::create("gh_warm").await;
            let store = crate::store::Store::connect(&crate::config::DatabaseSettings {
                url: secrecy::SecretString::from(db.url().to_owned()),
                max_connections: max,
                connect_timeout_seconds: 5,
                startup_timeout_seconds: 10,
                acquire_timeout_ms: crate::config::DEFAULT_ACQUIRE_TIMEOUT_MS,
            })
            .await
            .expect("connects");
            store.ping().await.expect("a call");
            let unit = tokio::time::timeout(Duration::from_millis(500), store.begin())
                .await
                .unwrap_or_else(|_| panic!("max {max}: the unit of work waited"))
                .expect("a unit of work");
            if max > 1 {
                store.ping().await.expect("a call beside the unit");
            }
            unit.commit().await.expect("commit");
            store.close().await;
        }
    }

    #[tokio::test]
    async fn calls_take_turns_in_order_of_arrival_and_none_after_close() {
        let warm = Arc::new(Warm::new(4));
        assert!(warm.enabled() && !Warm::new(3).enabled());
        let first = warm.turn().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..3 {
            let (warm, order) = (Arc::clone(&warm), Arc::clone(&order));
            waiting.push(tokio::spawn(async move {
                let turn = warm.turn().await.unwrap();
                order.lock().unwrap().push(i);
                drop(turn);
            }));
            // Each queued before the next arrives.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(order.lock().unwrap().is_empty(), "one turn: all wait");
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [0, 1, 2],
            "first come, first served"
        );

        let held = warm.turn().await.unwrap();
        let late = tokio::spawn({
            let warm = Arc::clone(&warm);
            async move { warm.turn().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        warm.close();
        assert!(matches!(late.await.unwrap(), Err(sqlx::Error::PoolClosed)));
        drop(held);
    }

    #[tokio::test]
    async fn at_most_one_per_turn_is_kept_and_none_after_close() {
        let (_db, pool) = pool(6).await;
        let warm = Warm::new(6);
        let now = Instant::now();
        for _ in 0..3 {
            warm.keep(pool.acquire().await.unwrap(), now);
        }
        assert_eq!(warm.len(), 2, "(6 - 2) / 2 turns");
        Warm::new(3).keep(pool.acquire().await.unwrap(), now);
        warm.close();
        assert_eq!(warm.len(), 0);
        warm.keep(pool.acquire().await.unwrap(), now);
        assert_eq!(warm.len(), 0, "closing: nothing kept");
        tokio::time::timeout(Duration::from_secs(5), pool.close())
            .await
            .expect("every connection went back, so the pool closes");
    }
}
