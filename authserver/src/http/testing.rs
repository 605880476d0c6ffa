//! An in-process server for unit tests of the HTTP edge: the whole [`AppState`] on a
//! fresh database (SQLite or PostgreSQL) with a fixed clock, requests sent through
//! [`super::app`] without a socket, and the log lines those requests write.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::Connection as _;
use tower::ServiceExt as _;

use super::AppState;
use crate::clients::{Actor, SecretRequest};
use crate::clock::FixedClock;
use crate::domain::client::ClientSpec;
use crate::store::Backend;
use crate::store::testing::PgDatabase;

/// The fixed time of every test app.
pub const NOW: i64 = 1_800_000_000;

/// The issuer of tenant `main` (the host requests are sent to).
pub const ISSUER: &str = "https://id.example.com";

/// A migrated database, tenant `main` with its keys, and the state over it.
pub struct TestApp {
    pub state: AppState,
    url: String,
    // Held for their Drop: the SQLite file's directory, the PostgreSQL database.
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

/// `Authorization: Basic …` (RFC 6749 §2.3.1: form-encoded, then base64).
pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A response as a test reads it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as text (for "never contains" checks) and as JSON (`Null` if it is not).
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("http.db").display()),
                None,
            ),
            Backend::Postgres => {
                let db = PgDatabase::create().await;
                (db.url().to_owned(), Some(db))
            }
        };
        let yaml = format!(
            "database:\n  url: {url}\n\
             tenants:\n  - id: main\n    issuer: {ISSUER}\n    display_name: Main\n"
        );
        let source = crate::config::Source {
            config_file: None,
            dev: false,
            data_dir: None,
            listen: None,
        };
        let key = crate::crypto::kek::Kek::generate_hex();
        let key = secrecy::ExposeSecret::expose_secret(&key).to_owned();
        let env = move |name: &str| (name == "ENCRYPTION_KEY").then(|| key.clone());
        let settings = crate::config::from_yaml(&yaml, &source, &env).expect("settings");
        let clock = FixedClock::new(NOW);
        let ctx = crate::commands::open_with_clock(settings, true, clock)
            .await
            .expect("context");
        // PostgreSQL is migrated by the migration Job in production, never on start-up.
        ctx.store.migrate().await.expect("migrate");
        crate::commands::serve::initialise(&ctx)
            .await
            .expect("tenant");
        let state = crate::commands::serve::build_state(&ctx)
            .await
            .expect("state");
        Self {
            state,
            url,
            _dir: dir,
            _pg: pg,
        }
    }

    pub fn backend(&self) -> Backend {
        self.state.store.backend()
    }

    /// Registers a client; returns its generated secret, if it has one.
    pub async fn client(&self, spec: ClientSpec) -> Option<SecretString> {
        self.state
            .oauth
            .clients
            .create("main", &spec, SecretRequest::GenerateIfMissing, Actor::Cli)
            .await
            .expect("client")
            .generated_secret
    }

    /// Sends `req` (its URI a path under the issuer) through the whole router.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let (mut parts, body) = req.into_parts();
        parts.headers.insert(
            axum::http::header::HOST,
            axum::http::HeaderValue::from_static("id.example.com"),
        );
        let resp = super::app(self.state.clone())
            .oneshot(Request::from_parts(parts, body))
            .await
            .expect("the router answers");
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status: parts.status,
            headers: parts.headers,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// `POST path` with a form body and extra headers.
    pub async fn post_form(&self, path: &str, form: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::post(path).header(
            axum::http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(Body::from(form.to_owned())).expect("request"))
            .await
    }

    /// Runs `sql` on a connection of its own, behind the server's back (a test breaking
    /// a table to make the database fail).
    pub async fn sql(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend() {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::query(sql).execute(&mut c).await.expect("statement");
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::query(sql).execute(&mut c).await.expect("statement");
            }
        }
    }

    /// Marks the database unavailable, as the first failed connection of an outage
    /// does: every request that needs it is refused until a probe succeeds (none runs).
    /// PostgreSQL only: SQLite is embedded and never gated, so it has no outages.
    pub fn outage(&self) {
        assert_eq!(self.backend(), Backend::Postgres, "SQLite has no outages");
        self.state
            .store
            .health()
            .failed("test: the database is down", std::time::Instant::now());
    }
}

/// Log lines (JSON, with the current span) written on this thread while the guard lives.
pub struct CapturedLogs {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl CapturedLogs {
    /// Captures from now on, at `debug`. The test's runtime must be current-thread, so
    /// the requests run on this thread.
    pub fn start() -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(move || Writer(Arc::clone(&sink)))
            .finish();
        Self {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines written so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.lines.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
