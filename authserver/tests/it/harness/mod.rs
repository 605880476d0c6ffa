//! Test harness: real databases and the real `authserver` binary as child processes.
//!
//! - [`TestDb`]: a fresh database per test with its own random `ENCRYPTION_KEY`, a scratch
//!   directory and a config file declaring tenant `main`. PostgreSQL databases are created
//!   on the server `DATABASE_URL` names, or on an ephemeral cluster the test kit starts
//!   itself (see [`testkit::postgres`]); SQLite databases are files in the scratch
//!   directory.
//! - [`Cli`]: one `authserver` invocation with a clean environment; [`Cli::run`] captures
//!   its output, [`Cli::serve`] starts `serve` and waits until it is ready.
//! - [`Server`]: a running `serve`, killed on drop; its logs are kept in files.

pub mod admin;
pub mod browser;
pub mod github;
pub mod jose;
pub mod oauth;
mod process;
pub mod proxy;
pub mod slapd;
pub mod webauthn;

use std::fmt::Write as _;
use std::path::PathBuf;

use sqlx::Connection as _;

pub use process::{Cli, Output, POLL, Server, free_port};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs an `async fn name(backend: Backend)` once per backend, as the tests
/// `name::postgres` and `name::sqlite`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::harness::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await;
            }
        }
    )*};
}

pub use testkit::random_hex;

/// A fresh 64-hex-character ENCRYPTION_KEY.
pub fn new_encryption_key() -> String {
    random_hex(32)
}

/// A fresh database for one test, dropped (best effort) with it.
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    url: String,
    key: String,
    /// Port reserved for this database's primary server; tenant `main`'s issuer uses it.
    pub port: u16,
    dir: tempfile::TempDir,
    _pg: Option<testkit::postgres::Database>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-it-")
            .tempdir()
            .expect("create scratch dir");
        let (url, pg) = match backend {
            Backend::Postgres => {
                let db = testkit::postgres::Database::create("gh").await;
                (db.url().to_owned(), Some(db))
            }
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("authserver.db").display()),
                None,
            ),
        };
        let port = free_port();
        let db = Self {
            backend,
            url,
            key: new_encryption_key(),
            port,
            dir,
            _pg: pg,
        };
        db.write_config("config.yaml", &db.tenant_config(&[("main", "")]));
        db
    }

    /// A fresh database with the schema applied, through the library (as
    /// `authserver migrate` does; the tests of that command run it themselves).
    pub async fn migrated(backend: Backend) -> Self {
        let db = Self::new(backend).await;
        let store = authserver::store::Store::connect(&authserver::config::DatabaseSettings {
            url: secrecy::SecretString::from(db.url.clone()),
            max_connections: 2,
            connect_timeout_seconds: 5,
            startup_timeout_seconds: 10,
            acquire_timeout_ms: authserver::config::DEFAULT_ACQUIRE_TIMEOUT_MS,
        })
        .await
        .expect("connect to the test database");
        store.migrate().await.expect("migrate the test database");
        store.close().await;
        db
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The database URL (for tests that use the authserver library directly).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The issuer `http://127.0.0.1:{port}{path}` of this database's primary server.
    pub fn issuer(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// YAML declaring tenants `(id, issuer path)` on this database's primary server.
    pub fn tenant_config(&self, tenants: &[(&str, &str)]) -> String {
        let mut yaml = String::from("tenants:\n");
        for (id, path) in tenants {
            let _ = write!(
                yaml,
                "  - id: {id}\n    issuer: {}\n    display_name: Tenant {id}\n",
                self.issuer(path)
            );
        }
        yaml
    }

    /// Writes a file into the scratch dir and returns its path.
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write config file");
        path
    }

    /// The `authserver` command with this database, its key and its config file.
    pub fn cli(&self) -> Cli {
        Cli::new()
            .env("DATABASE_URL", &self.url)
            .env("ENCRYPTION_KEY", &self.key)
            // The tests' fake JWKS and breach servers listen on loopback over plain http.
            .env("GATEHOUSE_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8")
            .env("GATEHOUSE_OUTBOUND_ALLOW_HTTP", "true")
            .env(
                "GATEHOUSE_CONFIG",
                self.dir.path().join("config.yaml").display().to_string(),
            )
    }

    /// Starts `serve` on the primary port and waits until it is ready.
    pub async fn serve(&self) -> Server {
        self.cli().serve(self.port).await
    }

    /// The same server in this test process ([`Cli::serve_in_process`]).
    pub async fn serve_in_process(&self) -> Server {
        self.cli().serve_in_process(self.port).await
    }

    /// The CLI's commands in-process on this database ([`Cli::commands`]).
    pub async fn commands(&self) -> authserver::testing::Commands {
        self.cli().commands().await
    }

    /// Whether the database exists at all and has `table`.
    pub async fn has_table(&self, table: &str) -> bool {
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_name = $1)",
                )
                .bind(table)
                .fetch_one(&mut c)
                .await
                .unwrap()
            }
            Backend::Sqlite => {
                if !self.sqlite_path().exists() {
                    return false;
                }
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                )
                .bind(table)
                .fetch_one(&mut c)
                .await
                .unwrap()
                    > 0
            }
        }
    }

    /// Path of the SQLite file (SQLite only).
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("authserver.db")
    }

    /// Runs a query returning one integer.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// Runs a statement (a test moving stored state, e.g. time that "has passed").
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
        }
    }

    /// Runs a query returning rows of text, each row's columns joined with `|`.
    pub async fn rows(&self, sql: &str) -> Vec<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// Every row a protocol request or an admin call could change (tenants, clients and
    /// their secret digests, the revocation denylist, replay caches, DPoP nonces, signing
    /// keys), each as `table|columns…`, ordered: compare before and after a rejected
    /// request to prove it changed nothing. Audit events are left out: recording a
    /// failure is the one write a rejected request is expected to make.
    pub async fn snapshot(&self) -> Vec<String> {
        let hex = match self.backend {
            Backend::Postgres => "encode(digest, 'hex')",
            Backend::Sqlite => "hex(digest)",
        };
        let opt = |c: &str| format!("coalesce(CAST({c} AS TEXT), '-')");
        let queries = [
            "SELECT 'tenants|' || id || '|' || issuer || '|' || display_name FROM tenants"
                .to_owned(),
            "SELECT 'clients|' || tenant_id || '|' || client_id || '|' || spec || '|' || \
             CAST(updated_at AS TEXT) FROM clients"
                .to_owned(),
            format!(
                "SELECT 'client_secrets|' || tenant_id || '|' || client_id || '|' || {hex} \
                 || '|' || {} FROM client_secrets",
                opt("expires_at")
            ),
            "SELECT 'revoked_tokens|' || tenant_id || '|' || jti FROM revoked_tokens".to_owned(),
            "SELECT 'assertion_jti|' || tenant_id || '|' || client_id || '|' || jti \
             FROM assertion_jti"
                .to_owned(),
            "SELECT 'dpop_jti|' || tenant_id || '|' || jti FROM dpop_jti".to_owned(),
            "SELECT 'dpop_nonces|' || tenant_id || '|' || nonce FROM dpop_nonces".to_owned(),
            "SELECT 'retired_clients|' || tenant_id || '|' || client_id || '|' || \
             CAST(reusable_at AS TEXT) FROM retired_clients"
                .to_owned(),
        ];
        let mut rows = Vec::new();
        for q in queries {
            rows.extend(self.rows(&q).await);
        }
        rows.extend(
            self.key_snapshot()
                .await
                .into_iter()
                .map(|k| format!("signing_keys|{k}")),
        );
        rows.sort();
        rows
    }

    /// Audit events as `event|actor|subject|details`, oldest first.
    pub async fn audit(&self) -> Vec<String> {
        self.rows(
            "SELECT event || '|' || coalesce(actor, '-') || '|' || coalesce(subject, '-') \
             || '|' || details FROM audit_events ORDER BY id",
        )
        .await
    }

    /// Every signing key row as `tenant|kid|kek_id|superseded_at` plus the sealed private
    /// key in hex, ordered: a snapshot to prove a failed command changed nothing.
    pub async fn key_snapshot(&self) -> Vec<String> {
        let hex = match self.backend {
            Backend::Postgres => "encode(private_key, 'hex')",
            Backend::Sqlite => "hex(private_key)",
        };
        self.rows(&format!(
            "SELECT tenant_id || '|' || kid || '|' || kek_id || '|' || \
             coalesce(CAST(superseded_at AS TEXT), '-') || '|' || {hex} \
             FROM signing_keys ORDER BY tenant_id, kid"
        ))
        .await
    }
}

/// The discovery document of `issuer`, fetched as a relying party would.
pub async fn discovery(issuer: &str) -> serde_json::Value {
    reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
