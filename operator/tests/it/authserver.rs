//! A real `authserver serve` with its admin API, on a fresh PostgreSQL database (both
//! from the test kit: [`testkit::process`], [`testkit::postgres`]).
//!
//! The binary is the one `cargo build -p authserver` (or `cargo test --workspace`) puts
//! next to this test binary (`target/debug/authserver`), or `GATEHOUSE_AUTHSERVER_BIN`;
//! a missing or stale one fails the test with the command that builds it. The database
//! is created on the server `DATABASE_URL` names (the role needs CREATEDB), or on the
//! ephemeral cluster the test kit starts without it, and dropped afterwards.

use std::time::Duration;

use testkit::process::{Command, Process};

pub use testkit::free_port;

/// How long the server may take to start.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// A running `authserver serve` with the admin API enabled; killed on drop.
pub struct AuthServer {
    process: Process,
    pub http_port: u16,
    pub admin_port: u16,
    pub token: String,
    _db: testkit::postgres::Database,
}

impl AuthServer {
    /// Migrates a fresh database and starts `serve`. Fails, saying how to build it, when
    /// the binary is not built (`cargo test --workspace` builds it first).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`AuthServer::start`] with extra environment variables for `serve`.
    pub async fn start_with(env: &[(&str, String)]) -> Self {
        let bin = testkit::process::workspace_binary("authserver", "authserver")
            .unwrap_or_else(|e| panic!("{e}"));
        let db = testkit::postgres::Database::create("gh_op").await;
        let key = testkit::random_hex(32);
        let token = testkit::random_hex(24);
        let http_port = free_port();
        let admin_port = free_port();
        let command = Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{http_port}")])
            .env("DATABASE_URL", db.url())
            .env("ENCRYPTION_KEY", &key)
            .env("GATEHOUSE_ADMIN_TOKEN", &token)
            .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("RUST_LOG", "info");
        command
            .clone()
            .args(["migrate"])
            .run()
            .await
            .assert_success();
        let mut serve = command.args(["serve"]);
        for (k, v) in env {
            serve = serve.env(k, v.clone());
        }
        let mut process = serve.spawn("gatehouse-op-authserver");
        process
            .wait_http_ok(&format!("http://127.0.0.1:{http_port}/readyz"), None)
            .await;
        testkit::wait_until("the admin API to listen", START_TIMEOUT, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", admin_port))
                .await
                .ok()
        })
        .await;
        Self {
            process,
            http_port,
            admin_port,
            token,
            _db: db,
        }
    }

    /// The server's log so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn admin_addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// A tenant issuer on this server.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("http://127.0.0.1:{}/t/{tenant}", self.http_port)
    }
}
