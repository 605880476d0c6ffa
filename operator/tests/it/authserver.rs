//! A real `authserver serve` with its admin API, on a fresh PostgreSQL database.
//!
//! The binary is the one `cargo build -p authserver` (or `cargo test --workspace`) puts
//! next to this test binary (`target/debug/authserver`), or `GATEHOUSE_AUTHSERVER_BIN`.
//! When it is missing the tests that need it print how to build it and pass without
//! running. The database is created with `psql` on the server that
//! `OPERATOR_IT_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres` names (the role needs CREATEDB), and
//! dropped afterwards; the operator crate links no database driver.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long the server may take to start.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// The authserver binary, if built.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GATEHOUSE_AUTHSERVER_BIN") {
        let path = PathBuf::from(path);
        return path.exists().then_some(path);
    }
    // target/debug/deps/it-<hash> → target/debug/authserver
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("authserver");
    path.exists().then_some(path)
}

fn admin_url() -> String {
    std::env::var("OPERATOR_IT_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A database created for one test, dropped with it.
pub struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Database {
    pub fn create() -> Self {
        let admin_url = admin_url();
        let name = format!("gh_op_{}", random_hex(6));
        psql(&admin_url, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!("cannot create a test database on {admin_url} (set OPERATOR_IT_DATABASE_URL to a role with CREATEDB): {e}")
        });
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("a database URL ends in /<database>");
        let url = format!("{base}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A running `authserver serve` with the admin API enabled; killed on drop.
pub struct AuthServer {
    child: Child,
    pub http_port: u16,
    pub admin_port: u16,
    pub token: String,
    logs: tempfile::TempDir,
    _db: Database,
}

impl AuthServer {
    /// Migrates a fresh database and starts `serve`. Fails, saying how to build it, when
    /// the binary is not built (`cargo test --workspace` builds it first).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`AuthServer::start`] with extra environment variables for `serve`.
    pub async fn start_with(env: &[(&str, String)]) -> Self {
        let Some(bin) = binary() else {
            panic!(
                "the authserver binary is not built next to this test binary: run \
                 `cargo build -p authserver && cargo test -p operator` (`cargo test \
                 --workspace` builds it), or set GATEHOUSE_AUTHSERVER_BIN"
            );
        };
        let db = Database::create();
        let key = random_hex(32);
        let token = random_hex(24);
        let http_port = free_port();
        let admin_port = free_port();
        let logs = tempfile::tempdir().unwrap();
        let command = |args: &[&str]| {
            let mut c = Command::new(&bin);
            c.args(["--listen", &format!("127.0.0.1:{http_port}")])
                .args(args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("DATABASE_URL", &db.url)
                .env("ENCRYPTION_KEY", &key)
                .env("GATEHOUSE_ADMIN_TOKEN", &token)
                .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .kill_on_drop(true);
            c
        };
        let migrate = tokio::time::timeout(START_TIMEOUT, command(&["migrate"]).output())
            .await
            .expect("authserver migrate finishes")
            .expect("spawn authserver migrate");
        assert!(
            migrate.status.success(),
            "authserver migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        let child = command(&["serve"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::fs::File::create(logs.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(logs.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("spawn authserver serve");
        let server = Self {
            child,
            http_port,
            admin_port,
            token,
            logs,
            _db: db,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let http_ok = http
                .get(format!("http://127.0.0.1:{}/readyz", self.http_port))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let admin_ok = tokio::net::TcpStream::connect(("127.0.0.1", self.admin_port))
                .await
                .is_ok();
            if http_ok && admin_ok {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "authserver did not become ready: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn admin_addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// A tenant issuer on this server.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("http://127.0.0.1:{}/t/{tenant}", self.http_port)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
