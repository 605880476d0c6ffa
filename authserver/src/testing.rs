//! Test support: the whole auth server in-process, for the crate's unit tests and (with
//! the `testing` feature) its integration tests — one fixture for both.
//!
//! [`TestApp`] opens a fresh database (SQLite in a temp dir, or PostgreSQL from the
//! test kit), the services and the [`AppState`] exactly as `serve` does, with a fixed
//! clock ([`NOW`]) unless the caller brings settings and a clock of its own. Requests go
//! through the router without a socket ([`TestApp::send`], tower's `oneshot`), or over
//! loopback to [`TestApp::listen`] where a client library needs a URL. Fixtures
//! (clients, users) are created through the services, never by running the CLI.

// Test support: a set-up step that fails panics with its reason, failing the test.
#![allow(clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::Connection as _;
use tower::ServiceExt as _;

use crate::clients::{Actor, SecretRequest};
use crate::clock::{Clock, FixedClock};
use crate::commands::Context;
use crate::config::Settings;
use crate::domain::client::ClientSpec;
use crate::domain::tenant::Tenant;
use crate::domain::user::NewUser;
use crate::http::AppState;
use crate::store::Backend;
use crate::store::users::StoredUser;

/// The fixed time of every test app made by [`TestApp::new`].
pub const NOW: i64 = 1_800_000_000;

/// The issuer of tenant `main` (the host requests are sent to).
pub const ISSUER: &str = "https://id.example.com";

/// The password of every user made by [`TestApp::user`].
pub const PASSWORD: &str = "correct horse battery staple";

/// A migrated database, its tenants with their keys, and the state over it.
pub struct TestApp {
    pub state: AppState,
    ctx: Context,
    fixed: Option<Arc<FixedClock>>,
    url: String,
    // Held for their Drop: the SQLite file's directory, the PostgreSQL database.
    #[allow(dead_code)]
    dir: Option<tempfile::TempDir>,
    #[allow(dead_code)]
    pg: Option<testkit::postgres::Database>,
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

/// Settings for a fresh test database: tenant `main` at [`ISSUER`], breached-password
/// checks that warn and never leave the machine, a new ENCRYPTION_KEY.
fn default_settings(url: &str) -> Settings {
    let yaml = format!(
        "database:\n  url: {url}\n\
         passwords:\n  breached: warn\n  hibp_base_url: http://127.0.0.1:1\n\
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
    crate::config::from_yaml(&yaml, &source, &env).expect("test settings are valid")
}

/// The settings `authserver ARGS… serve` would run with, `env` standing in for its
/// environment: the flags parsed by the same CLI, the configuration loaded the same way.
pub fn settings_from(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Settings> {
    use clap::Parser as _;
    let cli = crate::cli::Cli::try_parse_from(
        std::iter::once("authserver")
            .chain(args.iter().map(String::as_str))
            .chain(["serve"]),
    )?;
    let source = crate::config::Source {
        config_file: cli
            .global
            .config
            .or_else(|| env("GATEHOUSE_CONFIG").map(std::path::PathBuf::from)),
        dev: cli.global.dev,
        data_dir: Some(cli.global.data_dir),
        listen: cli.global.listen,
    };
    crate::config::load(&source, env)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {}", e.problems().join("; ")))
}

impl TestApp {
    /// A fresh database on `backend`, tenant `main`, the clock fixed at [`NOW`].
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("app.db").display()),
                None,
            ),
            Backend::Postgres => {
                let db = testkit::postgres::Database::create("gh_app").await;
                (db.url().to_owned(), Some(db))
            }
        };
        let clock = FixedClock::new(NOW);
        let mut app = Self::open(default_settings(&url), clock.clone())
            .await
            .expect("the test app starts");
        app.fixed = Some(clock);
        app.dir = Some(dir);
        app.pg = pg;
        app
    }

    /// The app for `settings` (a database the caller owns), on `clock`: migrated,
    /// tenants declared and their keys created, as `serve` starts.
    pub async fn open(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let url = secrecy::ExposeSecret::expose_secret(&settings.database.url).to_owned();
        let ctx = crate::commands::open_with_clock(settings, true, clock).await?;
        // PostgreSQL is migrated by the migration Job in production, never on start-up.
        ctx.store.migrate().await?;
        crate::commands::serve::initialise(&ctx).await?;
        let state = crate::commands::serve::build_state(&ctx).await?;
        state.readiness.set_startup(None);
        Ok(Self {
            state,
            ctx,
            fixed: None,
            url,
            dir: None,
            pg: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.state.store.backend()
    }

    /// The fixed clock every service reads ([`TestApp::new`] only).
    pub fn clock(&self) -> &Arc<FixedClock> {
        self.fixed.as_ref().expect("a TestApp with a fixed clock")
    }

    /// One pass of the outbox sender (what each pod's loop does every
    /// `email.poll_interval`): claims and sends the due mail.
    pub async fn deliver_mail(&self) -> crate::email::sender::Pass {
        match crate::email::Outbox::new(
            self.ctx.store.clone(),
            Arc::clone(&self.ctx.kek),
            Arc::clone(&self.ctx.clock),
            &self.ctx.settings.email,
        )
        .expect("valid SMTP settings")
        {
            Some(outbox) => outbox.deliver_due().await,
            None => panic!("no SMTP relay configured (email.smtp_host)"),
        }
    }

    /// The settings the app was started with.
    pub fn settings(&self) -> &Settings {
        &self.ctx.settings
    }

    /// Tenant `id` as stored.
    pub async fn tenant(&self, id: &str) -> Arc<Tenant> {
        Arc::new(
            self.state
                .store
                .get_tenant(id)
                .await
                .expect("read the tenant")
                .unwrap_or_else(|| panic!("tenant {id} exists")),
        )
    }

    /// Registers a client in tenant `main`; returns its generated secret, if it has one.
    pub async fn client(&self, spec: ClientSpec) -> Option<SecretString> {
        self.client_in("main", spec).await
    }

    /// Registers a client in `tenant`; returns its generated secret, if it has one.
    pub async fn client_in(&self, tenant: &str, spec: ClientSpec) -> Option<SecretString> {
        self.state
            .oauth
            .clients
            .create(tenant, &spec, SecretRequest::GenerateIfMissing, Actor::Cli)
            .await
            .expect("client")
            .generated_secret
    }

    /// Creates user `username` in tenant `main` with password [`PASSWORD`].
    pub async fn user(&self, username: &str) -> StoredUser {
        self.state
            .users
            .create(
                "main",
                &NewUser {
                    username: username.into(),
                    email: None,
                    email_verified: false,
                    profile: serde_json::Map::new(),
                },
                &SecretString::from(PASSWORD),
                Actor::Cli,
            )
            .await
            .expect("user")
    }

    /// Sends `req` (its URI a path under the issuer) through the whole router.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let (mut parts, body) = req.into_parts();
        parts.headers.insert(
            axum::http::header::HOST,
            axum::http::HeaderValue::from_static("id.example.com"),
        );
        let resp = crate::http::app(self.state.clone())
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

    /// Serves the public app (as `serve` does without an operations listener, with the
    /// change feed that keeps caches coherent with writes from elsewhere) on `addr`
    /// (`127.0.0.1:0` for any port), until the returned value is dropped.
    pub async fn listen(&self, addr: SocketAddr) -> Listening {
        // A server on this port that was just dropped may still hold it for a moment
        // (its task ends asynchronously): wait for it, as a restarted process would.
        let listener = testkit::wait_until(
            &format!("{addr} to be free"),
            std::time::Duration::from_secs(10),
            || async { tokio::net::TcpListener::bind(addr).await.ok() },
        )
        .await;
        let addr = listener.local_addr().expect("a bound address");
        let app = crate::http::public_app(self.state.clone(), crate::http::PublicOps::All)
            .into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // Detached: it ends once its connections have closed after the stop signal.
        tokio::spawn(async move {
            let mut stopped = stopped;
            // Graceful: on drop, stop accepting and close idle keep-alive connections,
            // so a client's pooled connection cannot reach this app after it is gone.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        });
        let watcher = self.ctx.store.spawn_change_watcher(self.ctx.epoch.clone());
        // The outbox sender, as `serve` runs it (when an SMTP relay is configured).
        let mail = crate::commands::serve::spawn_mail_sender(&self.ctx, stop.subscribe())
            .expect("the test's SMTP settings are valid");
        Listening {
            addr,
            stop,
            watcher,
            mail,
        }
    }
}

/// An in-process server on a loopback port; stops when dropped.
#[derive(Debug)]
pub struct Listening {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    watcher: tokio::task::JoinHandle<()>,
    mail: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.watcher.abort();
        if let Some(mail) = &self.mail {
            mail.abort();
        }
    }
}

/// The CLI's commands run in-process on a context of their own (as a separate
/// `authserver clients …` process would run beside a server), without a child process:
/// the same flags, parsed by the same [`crate::cli::Cli`], the same services.
pub struct Commands {
    ctx: Context,
}

impl Commands {
    /// Opens the database as a command does: current schema required, declared tenants
    /// created.
    pub async fn open(settings: Settings) -> anyhow::Result<Self> {
        let ctx = crate::commands::open(settings, true).await?;
        crate::commands::require_current_schema(&ctx.store).await?;
        crate::commands::keys::ensure_declared_tenants(&ctx).await?;
        Ok(Self { ctx })
    }

    /// `authserver clients create ARGS…`: the JSON it prints (`client_id`, and
    /// `client_secret` when one was generated).
    pub async fn create_client(&self, args: &[&str]) -> anyhow::Result<Value> {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(
            ["authserver", "clients", "create"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        let crate::cli::Command::Clients(crate::cli::ClientsCommand::Create(args)) = cli.command
        else {
            anyhow::bail!("not a clients create command");
        };
        crate::commands::clients::create_value(&self.ctx, *args).await
    }

    /// `authserver users create ARGS…` with `password` on stdin: the JSON it prints
    /// (`user_id`, `username`).
    pub async fn create_user(&self, args: &[&str], password: &str) -> anyhow::Result<Value> {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(
            ["authserver", "users", "create"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        let crate::cli::Command::Users(crate::cli::UsersCommand::Create(args)) = cli.command else {
            anyhow::bail!("not a users create command");
        };
        crate::commands::users::create_value(&self.ctx, *args, &SecretString::from(password)).await
    }

    /// The store, for fixtures the CLI has no command for.
    pub fn store(&self) -> &crate::store::Store {
        &self.ctx.store
    }
}

impl Drop for Commands {
    fn drop(&mut self) {
        // As the process would on exit: no connection outlives the command.
        let store = self.ctx.store.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { store.close().await });
        }
    }
}

/// Log lines (JSON, with the current span) written on this thread while the guard lives.
pub struct CapturedLogs {
    lines: Arc<Mutex<Vec<u8>>>,
    /// Dropped first (fields drop in order): the subscriber is gone before the next
    /// capture may start.
    _guard: tracing::subscriber::DefaultGuard,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// One capture at a time in a test process. Which callsites any subscriber wants is
/// cached for the whole process; with captures starting and ending on several test
/// threads at once, an event of a capture still running went missing now and then (a
/// server error's log line, once in a full run).
static CAPTURING: Mutex<()> = Mutex::new(());

/// The turn of a test that installs a subscriber of its own: one at a time, with the
/// captures (see `CAPTURING`). Creating a subscriber makes every callsite ask again
/// which subscribers want it, while a capture's events go on elsewhere.
pub fn subscriber_turn() -> std::sync::MutexGuard<'static, ()> {
    // A capture whose test failed left the lock poisoned: the next may still run.
    CAPTURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CapturedLogs {
    /// Captures from now on, at `debug`. The test's runtime must be current-thread, so
    /// the requests run on this thread.
    pub fn start() -> Self {
        let turn = subscriber_turn();
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
        let guard = tracing::subscriber::set_default(subscriber);
        // A callsite first hit by another test's thread, with no subscriber there, may
        // have cached "never interested": have every callsite ask again, now that this
        // thread has one (else a line is lost now and then when tests run in parallel).
        tracing::callsite::rebuild_interest_cache();
        Self {
            lines,
            _guard: guard,
            _turn: turn,
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

    /// The database statements run so far (sqlx's summary of each, e.g. `INSERT INTO
    /// login_throttles …`): one per round trip.
    pub fn statements(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l["target"] == "sqlx::query")
            .map(|l| l["summary"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Ends the capture and, on PostgreSQL (`backend`), asserts that exactly the
    /// statements `expected` ran, in order, each named by how its summary begins.
    /// SQLite runs (and logs) its statements on a thread of its own, out of the
    /// captured thread's sight; its round trips cost nothing anyway.
    pub fn assert_postgres_statements(self, backend: &str, expected: &[&str]) {
        let statements = self.statements();
        drop(self);
        if backend != "postgres" {
            return;
        }
        assert_eq!(statements.len(), expected.len(), "{statements:?}");
        for (ran, want) in statements.iter().zip(expected) {
            assert!(
                ran.starts_with(want),
                "{ran:?} is not {want:?}: {statements:?}"
            );
        }
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
