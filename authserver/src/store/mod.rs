//! Storage: one interface, two drivers (PostgreSQL for production, SQLite for standalone).
//!
//! Queries are written once in portable SQL (`$n` placeholders work on both) and run on
//! whichever pool is configured via [`with_pool!`]; each arm is compiled for its own
//! driver, so there is no `Any` indirection and no backend branch inside a query. What
//! truly differs per backend (locking, change notification) lives in `migrate` and
//! `changes` and in the per-backend migration folders.

pub mod audit;
pub mod authorization_requests;
pub mod changes;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod devices;
pub mod email;
pub mod federation;
pub mod grants;
pub mod health;
pub mod mfa;
pub mod migrate;
pub mod passkeys;
pub mod purge;
pub mod replay;
pub mod sessions;
pub mod signing_keys;
pub mod stats;
pub mod tenants;
#[cfg(test)]
pub(crate) mod testing;
pub mod throttle;
pub mod unit;
pub mod users;
mod warm;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseSettings;
pub use health::{DatabaseHealth, Unavailable};
pub(crate) use unit::on_conn;
pub use unit::{Conn, UnitOfWork};

/// Storage errors the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("conflicts with existing data ({constraint})")]
    Conflict { constraint: String },
    #[error("invalid database URL: {0}")]
    BadUrl(#[source] sqlx::Error),
    /// `target` is the URL without password or query, so it is safe to print.
    #[error("database {target} unreachable after {waited_seconds} s")]
    Unreachable {
        target: String,
        waited_seconds: u64,
        #[source]
        source: sqlx::Error,
    },
    #[error("failed to migrate the database schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The client id was deleted and is retired (tombstoned) until `reusable_at`.
    #[error("the client id is retired (deleted); it can be purged from {reusable_at}")]
    Retired { reusable_at: i64 },
    /// Someone else manages the object (the operator's `OidcClient`).
    #[error("managed by {0}")]
    Managed(String),
    /// The object changed since the version the caller names (`If-Match`).
    #[error("the object changed since it was read")]
    Stale,
    /// The database cannot be used right now (down, unreachable, no connection within
    /// the deadline, or refused without trying during an outage): retry later. The HTTP
    /// edge answers it with 503 and `Retry-After`, never 500.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Unavailable),
}

impl Error {
    /// Whether this is an outage (retry later) rather than a bug or bad data.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// Whether `e`, or any error in its source chain, says the database is unavailable.
/// Walks the chain because services wrap store errors (some transparently, which hides
/// the store error itself but not its [`Unavailable`] source).
pub fn is_unavailable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if e.is::<Unavailable>() || e.downcast_ref::<Error>().is_some_and(Error::is_unavailable) {
            return true;
        }
        current = e.source();
    }
    false
}

/// Errors that mean the connection, not the statement, failed: the server is down,
/// unreachable, shutting down or refusing connections. SQLSTATE class 08 is "connection
/// exception"; 57P01–57P03 are admin/crash shutdown and "cannot connect now" (starting
/// up or in recovery); 53300 is "too many connections".
fn is_connection_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return Error::Conflict {
                constraint: db.constraint().unwrap_or("unique").to_owned(),
            };
        }
        if matches!(e, sqlx::Error::RowNotFound) {
            return Error::NotFound;
        }
        if is_connection_failure(&e) {
            return Error::Unavailable(Unavailable::Failed(e));
        }
        Error::Database(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(Clone, Debug)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// How long a pooled PostgreSQL connection may sit idle before it is pinged when handed
/// out again (see `Store::connect`).
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The database handle every component shares. Cheap to clone; clones share the pool
/// and its [`DatabaseHealth`].
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    health: Arc<DatabaseHealth>,
    /// Revocations of tokens and grants this process committed (shared by every clone),
    /// so caches of token state drop at once instead of at the change feed's pace.
    revocations: Arc<crate::cache::Revocations>,
    /// PostgreSQL connections kept between calls, sparing sqlx's ping on release
    /// ([`warm`]).
    warm: Arc<warm::Warm>,
}

/// Runs the same body on a connection from whichever pool backs the store; `$pool` is
/// bound to a `&mut PgConnection` or `&mut SqliteConnection` (pass `&mut *pool` to use
/// it twice). The body must be valid for both drivers.
///
/// On PostgreSQL the connection is one a finished call left clean ([`warm`]) or comes
/// through [`Store::gated`]: refused at once while the database is unavailable, and at
/// most `database.acquire_timeout_ms` of waiting otherwise. A body that completes hands
/// it on to the next call; one that returns early (`?`) gives it back to sqlx. SQLite is
/// embedded: a slow checkout there is lock contention, which waiting resolves, not an
/// outage.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Postgres(pool) => {
                // For bodies that open their own transaction (`pool.begin()`).
                #[allow(unused_imports)]
                use sqlx::Connection as _;
                let (mut conn, turn) = $store.pg_connection(pool).await?;
                let $pool = &mut *conn;
                let out = $body;
                $store.keep_warm(conn);
                drop(turn);
                out
            }
            $crate::store::Pool::Sqlite(pool) => {
                #[allow(unused_imports)]
                use sqlx::Connection as _;
                let mut conn = $crate::store::checkout(pool)
                    .await
                    .map_err($crate::store::Error::from)?;
                let $pool = &mut *conn;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// Like [`with_pool!`] inside a transaction: `$tx` is the open transaction; it is
/// committed when the body returns `Ok`, rolled back (dropped) otherwise.
macro_rules! in_transaction {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Postgres(pool) => {
                let mut $tx = $store.pg_begin(pool).await?;
                let out = $body;
                $crate::store::Store::pg_commit($tx).await?;
                out
            }
            // IMMEDIATE takes the write lock up front: a deferred transaction that
            // reads and then writes fails at once with SQLITE_BUSY(_SNAPSHOT) when another
            // writer got there first, while IMMEDIATE waits `busy_timeout` for its turn.
            $crate::store::Pool::Sqlite(pool) => {
                // Boxed for the reason `checkout` boxes: it holds one.
                let mut $tx = Box::pin(pool.begin_with("BEGIN IMMEDIATE")).await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}
pub(crate) use in_transaction;

/// A connection from `pool`'s checkout, boxed where it is made. sqlx's checkout future is
/// large (it holds a whole connection handshake: 4 KiB in a debug build), and a future
/// is copied whole each time it moves — into a timeout, into the future of the call
/// around it — and is as large as its largest state: inline, it made every store call's
/// future carry it and copy it several times per call, even when a kept connection made
/// the checkout unnecessary (a tenth of a refresh grant's instructions).
pub(crate) fn checkout<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> std::pin::Pin<
    Box<
        impl std::future::Future<
            Output = std::result::Result<sqlx::pool::PoolConnection<DB>, sqlx::Error>,
        > + 'static,
    >,
> {
    Box::pin(pool.acquire())
}

/// The error of a store task that did not finish: cancelled (the runtime is shutting
/// down, like a closed pool) or panicked.
fn task_failed(e: &tokio::task::JoinError) -> sqlx::Error {
    if e.is_cancelled() {
        sqlx::Error::PoolClosed
    } else {
        sqlx::Error::WorkerCrashed
    }
}

/// The pool itself (`$pool`: `&PgPool` or `&SqlitePool`), for what is not a store call:
/// statistics, shutdown.
macro_rules! match_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Postgres($pool) => $body,
            Pool::Sqlite($pool) => $body,
        }
    };
}

/// The database URL for messages: scheme, user, host, port and database (or the SQLite
/// path), never the password or query parameters (which may carry one).
pub fn describe_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.scheme() != "sqlite" => {
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        _ => url.split(['?', '#']).next().unwrap_or(url).to_owned(),
    }
}

/// Connection pool figures for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl Store {
    /// Connects, retrying with exponential backoff until `startup_timeout_seconds`: a pod
    /// that starts before its database should wait, not crash-loop.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self> {
        let url = settings.url.expose_secret();
        let acquire = Duration::from_secs(settings.connect_timeout_seconds.max(1));
        let pool = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(Error::BadUrl)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(acquire)
                .connect_lazy_with(opts);
            Pool::Sqlite(pool)
        } else {
            let opts = PgConnectOptions::from_str(url)
                .map_err(Error::BadUrl)?
                .application_name("gatehouse-authserver");
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(acquire)
                // sqlx pings every connection before handing it out: a second round trip
                // for every statement. A connection that answered within the last
                // `PING_IDLE_AFTER` is evidently alive; only one idle for longer (a
                // proxy or a restart may have closed it meanwhile) is pinged.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for < PING_IDLE_AFTER {
                            return Ok(true);
                        }
                        sqlx::Connection::ping(conn).await.map(|()| true)
                    })
                })
                .connect_lazy_with(opts);
            Pool::Postgres(pool)
        };
        // SQLite connections are not pinged when they go back: none is kept.
        let warm_of = if matches!(pool, Pool::Postgres(_)) {
            settings.max_connections
        } else {
            0
        };
        let store = Self {
            pool,
            health: Arc::new(DatabaseHealth::new(Duration::from_millis(
                settings.acquire_timeout_ms.max(1),
            ))),
            revocations: Arc::default(),
            warm: Arc::new(warm::Warm::new(warm_of)),
        };
        store.wait_reachable(settings, &describe_url(url)).await?;
        Ok(store)
    }

    /// Retries a direct connection with exponential backoff until `startup_timeout_seconds`
    /// have passed. Each attempt is a fresh connection rather than a pool checkout: the
    /// pool would retry internally until its acquire timeout (overshooting the window)
    /// and then report only "pool timed out", hiding why.
    async fn wait_reachable(&self, settings: &DatabaseSettings, target: &str) -> Result<()> {
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_secs(settings.startup_timeout_seconds);
        let per_attempt = Duration::from_secs(settings.connect_timeout_seconds.max(1));
        let mut delay = Duration::from_millis(250);
        loop {
            let budget = per_attempt
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .max(Duration::from_millis(100));
            let error = match tokio::time::timeout(budget, self.probe()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {} ms", budget.as_millis()),
                )),
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Unreachable {
                    target: target.to_owned(),
                    waited_seconds: start.elapsed().as_secs(),
                    source: error,
                });
            }
            let wait = delay.min(deadline - now);
            tracing::warn!(
                database = target,
                error = %error,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "database unreachable, retrying"
            );
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Opens and closes one connection outside the pool.
    async fn probe(&self) -> std::result::Result<(), sqlx::Error> {
        use sqlx::{ConnectOptions as _, Connection as _};
        match &self.pool {
            Pool::Postgres(pool) => pool.connect_options().connect().await?.close().await,
            Pool::Sqlite(pool) => pool.connect_options().connect().await?.close().await,
        }
    }

    /// This database's shared availability state.
    pub fn health(&self) -> &Arc<DatabaseHealth> {
        &self.health
    }

    /// The count of revocations this process committed; see [`crate::cache::Epoch::new`].
    pub fn revocations(&self) -> &Arc<crate::cache::Revocations> {
        &self.revocations
    }

    /// Counts a committed revocation of tokens or grants (called after the commit: a
    /// cache load racing the write then cannot keep the token's old state).
    pub(crate) fn revoked(&self) {
        self.revocations.record();
    }

    /// A PostgreSQL connection for one [`with_pool!`] call, and the call's turn
    /// ([`warm`]; held until the connection is handed on): a kept connection if there
    /// is a fresh one, else a checkout. Both through [`Store::gated`]: an outage refuses
    /// at once, and the wait for a turn and a connection together is bounded.
    async fn pg_connection(
        &self,
        pool: &sqlx::PgPool,
    ) -> Result<(
        sqlx::pool::PoolConnection<sqlx::Postgres>,
        Option<tokio::sync::OwnedSemaphorePermit>,
    )> {
        self.gated(async {
            if !self.warm.enabled() {
                return Ok((checkout(pool).await?, None));
            }
            let turn = self.warm.turn().await?;
            let conn = match self.warm.take(Instant::now()) {
                Some(conn) => conn,
                None => checkout(pool).await?,
            };
            Ok((conn, Some(turn)))
        })
        .await
    }

    /// A PostgreSQL transaction, through [`Store::gated`].
    ///
    /// sqlx counts a transaction only once PostgreSQL has answered its `BEGIN`: a `begin`
    /// dropped in between — the gate's deadline, a client that went away — left the
    /// connection inside a transaction sqlx did not know of, and it went back to the pool
    /// that way; later calls' statements ran in it, uncommitted and holding their locks.
    /// So the `BEGIN` runs in a task of its own, which finishes whatever becomes of the
    /// caller: a transaction nobody waits for any more is dropped there, and that rolls
    /// it back. Only the checkout is given up with the caller, so that callers that gave
    /// up leave no work behind in an overloaded pool.
    async fn pg_begin(
        &self,
        pool: &sqlx::PgPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.gated(async {
            let conn = checkout(pool).await?;
            // `Transaction::begin` is what `Pool::begin` runs after its checkout; it is
            // the one way to begin on a connection the pool owns (`'static`).
            tokio::spawn(sqlx::Transaction::begin(conn, None))
                .await
                .map_err(|e| task_failed(&e))?
        })
        .await
    }

    /// Commits `tx` in a task of its own, for the reason `pg_begin` begins in one: a
    /// `COMMIT` given up on the wire (a client that hung up) is committed by PostgreSQL
    /// all the same, but sqlx, which never read the answer, would take the transaction
    /// for open and send a `ROLLBACK` before the connection's next use — answered with
    /// the notice "there is no transaction in progress".
    pub(crate) async fn pg_commit(tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<()> {
        tokio::spawn(tx.commit())
            .await
            .map_err(|e| task_failed(&e))??;
        Ok(())
    }

    /// Hands the connection of a finished [`with_pool!`] call on to the next ([`warm`]).
    fn keep_warm(&self, conn: sqlx::pool::PoolConnection<sqlx::Postgres>) {
        self.warm.keep(conn, Instant::now());
    }

    /// A connection or transaction (`acquire`) for one store call, through the
    /// availability gate: refused at once while the database is unavailable, otherwise
    /// given `database.acquire_timeout_ms`, and its outcome updates the shared state.
    async fn gated<T>(
        &self,
        acquire: impl Future<Output = std::result::Result<T, sqlx::Error>>,
    ) -> Result<T> {
        let now = Instant::now();
        self.health.admit(now).map_err(Error::Unavailable)?;
        self.warm.release_stale(now);
        let deadline = self.health.acquire_timeout();
        let failure = match tokio::time::timeout(deadline, acquire).await {
            Ok(Ok(conn)) => {
                self.report_success();
                return Ok(conn);
            }
            // This process closed its pool (shutdown): the database is fine, so nothing
            // is marked unavailable, logged or probed.
            Ok(Err(e @ sqlx::Error::PoolClosed)) => {
                return Err(Error::Unavailable(Unavailable::Failed(e)));
            }
            Ok(Err(e)) => Unavailable::Failed(e),
            // Overload: refuse this request (503), keep serving the others.
            Err(_) if self.health.busy(Instant::now()) => {
                return Err(Error::Unavailable(Unavailable::Busy(deadline)));
            }
            Err(_) => Unavailable::TimedOut(deadline),
        };
        self.report_failure(&failure.to_string());
        Err(Error::Unavailable(failure))
    }

    /// Reports that the database answered; logs a recovery.
    pub(crate) fn report_success(&self) {
        if let health::Transition::Recovered { outage } = self.health.succeeded(Instant::now()) {
            log_recovery(outage);
        }
    }

    /// Reports a failure to reach the database: marks it unavailable (logged once per
    /// outage) and starts the recovery probe unless one is running.
    pub(crate) fn report_failure(&self, reason: &str) {
        let (transition, start_probe) = self.health.failed(reason, Instant::now());
        if transition == health::Transition::BecameUnavailable {
            tracing::warn!(
                error = reason,
                "database unavailable: requests that need it are refused until it answers again"
            );
        }
        if start_probe {
            let store = self.clone();
            tokio::spawn(async move { store.probe_until_available().await });
        }
    }

    /// Probes the database every [`health::PROBE_INTERVAL`] until it answers (or someone
    /// else saw it answer). At most one runs per process: see [`DatabaseHealth::failed`].
    async fn probe_until_available(self) {
        loop {
            tokio::time::sleep(health::PROBE_INTERVAL).await;
            let ok = if self.health.is_unavailable() {
                Some(self.probe_pool().await)
            } else {
                None
            };
            let (transition, again) = self.health.probe_result(ok, Instant::now());
            if let health::Transition::Recovered { outage } = transition {
                log_recovery(outage);
            }
            if !again {
                return;
            }
            tracing::debug!("database still unavailable");
        }
    }

    /// One round trip through the pool (not the gate, which would refuse it), within
    /// the request deadline: the pool can hand out a working connection again.
    async fn probe_pool(&self) -> bool {
        let ping = async {
            match &self.pool {
                Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
                Pool::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
            }
        };
        matches!(
            tokio::time::timeout(self.health.acquire_timeout(), ping).await,
            Ok(Ok(()))
        )
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// A trivial round trip.
    #[tracing::instrument(name = "db.ping", skip_all)]
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle, max) = match_pool!(self, pool => (
            pool.size(),
            u32::try_from(pool.num_idle() + self.warm.len()).unwrap_or(u32::MAX),
            pool.options().get_max_connections(),
        ));
        PoolStats { size, idle, max }
    }

    /// Whether [`Store::close`] was called.
    pub fn is_closed(&self) -> bool {
        match_pool!(self, pool => pool.is_closed())
    }

    /// Closes every connection (on shutdown), once nothing uses the pool any more: a
    /// call after this fails with `PoolClosed`, which is neither an outage nor logged.
    pub async fn close(&self) {
        // The pool waits for every checked-out connection, kept ones too.
        self.warm.close();
        match_pool!(self, pool => pool.close().await);
    }
}

fn log_recovery(outage: Duration) {
    tracing::info!(
        outage_ms = u64::try_from(outage.as_millis()).unwrap_or(u64::MAX),
        "database available again"
    );
}

#[cfg(test)]
mod tests {
    use super::describe_url;

    /// No store call's future holds sqlx's checkout inline (see `checkout`): each is
    /// smaller than either backend's checkout alone. (Before, `get_client`'s future held
    /// SQLite's, and `pg_connection` boxed one holding PostgreSQL's.)
    #[tokio::test]
    async fn a_store_calls_future_does_not_hold_a_checkout() {
        let t = super::testing::sqlite().await;
        let store = &t.store;
        let super::Pool::Sqlite(sqlite) = &store.pool else {
            unreachable!("a SQLite store")
        };
        let pg = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let checkout =
            std::mem::size_of_val(&pg.acquire()).min(std::mem::size_of_val(&sqlite.acquire()));
        let sizes = [
            (
                "get_client",
                std::mem::size_of_val(&store.get_client("t", "c")),
            ),
            (
                "pg_connection",
                std::mem::size_of_val(&store.pg_connection(&pg)),
            ),
            ("pg_begin", std::mem::size_of_val(&store.pg_begin(&pg))),
        ];
        for (call, size) in sizes {
            assert!(
                size < checkout,
                "{call}: {size} bytes, a checkout {checkout}"
            );
        }
    }

    #[test]
    fn described_urls_carry_no_password() {
        assert_eq!(
            describe_url("postgres://app:s3cret@db.internal:5432/idp?password=x&sslmode=require"),
            "postgres://app@db.internal:5432/idp"
        );
        assert_eq!(
            describe_url("sqlite:///var/lib/gatehouse/authserver.db?mode=rwc"),
            "sqlite:///var/lib/gatehouse/authserver.db"
        );
    }
}
