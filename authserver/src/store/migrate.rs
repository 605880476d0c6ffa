//! Embedded, forward-only schema migrations, one set per backend.
//!
//! On PostgreSQL every runner first takes a session-level advisory lock, so any number of
//! `authserver migrate` processes (a migration Job retried, two operators) serialize: the
//! first applies, the others then find the schema current.

use sqlx::migrate::Migrator;

use super::{Error, Pool, Result, Store};

static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Arbitrary but fixed: "gatehous" in ASCII. Shared by every Gatehouse version.
const ADVISORY_LOCK_KEY: i64 = 0x6761_7465_686f_7573;

/// A migration the binary knows, by version and description (e.g. `0001_foundation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationName(pub String);

impl std::fmt::Display for MigrationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the database schema stands relative to this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations this binary has that the database lacks (oldest first).
    pub pending: Vec<MigrationName>,
    /// Newest version applied in the database, if any.
    pub current_version: Option<i64>,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

fn migrator(pool: &Pool) -> &'static Migrator {
    match pool {
        Pool::Postgres(_) => &POSTGRES,
        Pool::Sqlite(_) => &SQLITE,
    }
}

fn name(m: &sqlx::migrate::Migration) -> MigrationName {
    MigrationName(format!(
        "{:04}_{}",
        m.version,
        m.description.replace(' ', "_")
    ))
}

/// The newest migration version this binary embeds for `backend`.
pub fn latest_version(store: &Store) -> i64 {
    migrator(&store.pool)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

impl Store {
    /// Compares applied migrations with the embedded ones. A missing bookkeeping table
    /// means nothing is applied.
    #[tracing::instrument(name = "db.schema_status", skip_all)]
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        let applied: Vec<i64> = match super::with_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
            .fetch_all(pool)
            .await
        }) {
            Ok(v) => v,
            Err(sqlx::Error::Database(e))
                if e.message().contains("_sqlx_migrations")
                    || e.code().as_deref() == Some("42P01") =>
            {
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        let pending = migrator(&self.pool)
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .map(name)
            .collect();
        Ok(SchemaStatus {
            pending,
            current_version: applied.iter().copied().max(),
        })
    }

    /// Applies every pending migration and returns the names of those this call applied
    /// (empty: the schema was already up to date).
    #[tracing::instrument(name = "db.migrate", skip_all)]
    pub async fn migrate(&self) -> Result<Vec<MigrationName>> {
        match &self.pool {
            Pool::Postgres(pool) => {
                // One connection holds the lock for the whole run; advisory locks belong to
                // the session, and the lock is released explicitly (or when it closes).
                let mut conn = pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(ADVISORY_LOCK_KEY)
                    .execute(&mut *conn)
                    .await?;
                let result = async {
                    let before = self.schema_status().await?;
                    POSTGRES.run(&mut *conn).await.map_err(Error::Migrate)?;
                    Ok::<_, Error>(before.pending)
                }
                .await;
                let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(ADVISORY_LOCK_KEY)
                    .execute(&mut *conn)
                    .await;
                let applied = result?;
                unlock?;
                Ok(applied)
            }
            Pool::Sqlite(pool) => {
                // SQLite serializes writers itself; the migrator's transaction suffices.
                let before = self.schema_status().await?;
                SQLITE.run(pool).await.map_err(Error::Migrate)?;
                Ok(before.pending)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Rows written before a migration survive it (STYLE §6), on both backends.

    use sqlx::Connection as _;

    use super::{POSTGRES, SQLITE};

    /// A tenant, a user and a device as the schema before `0011_devices` had them.
    const BEFORE_0011: [&str; 3] = [
        "INSERT INTO tenants (id, issuer, display_name, created_at, updated_at) \
         VALUES ('t', 'https://id.example.com', 'T', 1, 1)",
        "INSERT INTO users (tenant_id, user_id, username, username_normalized, created_at, \
         updated_at) VALUES ('t', 'u', 'alice', 'alice', 1, 1)",
        "INSERT INTO known_devices (tenant_id, user_id, device_hash, first_seen_at, \
         last_seen_at) VALUES ('t', 'u', 'h', 10, 20)",
    ];
    const AFTER: &str = "SELECT device_hash, first_seen_at, last_seen_at, trusted_until, \
                         country, latitude FROM known_devices";

    type Row = (String, i64, i64, Option<i64>, Option<String>, Option<f64>);

    #[tokio::test]
    async fn known_devices_keep_their_rows_through_the_devices_migration() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        SQLITE.run_to(10, &mut c).await.unwrap();
        for sql in BEFORE_0011 {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        SQLITE.run(&mut c).await.unwrap();
        let row: Row = sqlx::query_as(AFTER).fetch_one(&mut c).await.unwrap();
        assert_eq!(row, ("h".into(), 10, 20, None, None, None), "sqlite");

        let db = testkit::postgres::Database::create("gh_migrate").await;
        let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
        POSTGRES.run_to(10, &mut c).await.unwrap();
        for sql in BEFORE_0011 {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        POSTGRES.run(&mut c).await.unwrap();
        let row: Row = sqlx::query_as(AFTER).fetch_one(&mut c).await.unwrap();
        assert_eq!(row, ("h".into(), 10, 20, None, None, None), "postgres");
    }
}
