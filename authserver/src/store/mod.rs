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
pub mod grants;
pub mod mfa;
pub mod migrate;
pub mod purge;
pub mod replay;
pub mod sessions;
pub mod signing_keys;
pub mod tenants;
#[cfg(test)]
pub(crate) mod testing;
pub mod throttle;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseSettings;

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

/// The database handle every component shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

/// Runs the same body against whichever pool backs the store; `$pool` is bound to a
/// `&PgPool` or `&SqlitePool`. The body must be valid for both drivers.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Postgres($pool) => $body,
            $crate::store::Pool::Sqlite($pool) => $body,
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
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            // IMMEDIATE takes the write lock up front: a deferred transaction that
            // reads and then writes fails at once with SQLITE_BUSY(_SNAPSHOT) when another
            // writer got there first, while IMMEDIATE waits `busy_timeout` for its turn.
            $crate::store::Pool::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}
pub(crate) use in_transaction;

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
                .connect_lazy_with(opts);
            Pool::Postgres(pool)
        };
        let store = Self { pool };
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
        with_pool!(self, pool => {
            let conn = pool.connect_options().connect().await?;
            conn.close().await
        })
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
        let (size, idle, max) = with_pool!(self, pool => (
            pool.size(),
            u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            pool.options().get_max_connections(),
        ));
        PoolStats { size, idle, max }
    }

    /// Closes every connection (on shutdown).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }
}

#[cfg(test)]
mod tests {
    use super::describe_url;

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
