//! The `authserver` binary as a child process (on the test kit's [`testkit::process`]):
//! one-shot commands and running servers.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use std::sync::Arc;

use authserver::clock::SystemClock;
use authserver::testing::{Commands, Listening, TestApp};

pub use testkit::process::Output;
pub use testkit::{POLL, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_authserver");

/// One `authserver` invocation. The environment starts empty (only `PATH`), so nothing
/// from the test process (its own `DATABASE_URL`, `RUST_LOG`, …) leaks in.
#[derive(Debug, Clone)]
pub struct Cli(testkit::process::Command);

impl Default for Cli {
    fn default() -> Self {
        Self::new()
    }
}

impl Cli {
    pub fn new() -> Self {
        Self(testkit::process::Command::new(PathBuf::from(BIN)))
    }

    pub fn env(self, key: &str, value: impl Into<String>) -> Self {
        Self(self.0.env(key, value))
    }

    pub fn env_remove(self, key: &str) -> Self {
        Self(self.0.env_remove(key))
    }

    /// Feeds `text` to the command's stdin (otherwise stdin is empty).
    pub fn stdin(self, text: impl Into<String>) -> Self {
        Self(self.0.stdin(text))
    }

    pub fn args<I, S>(self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(self.0.args(args))
    }

    /// Runs to completion and captures the output.
    pub async fn run(&self) -> Output {
        self.0.run().await
    }

    /// Starts `serve --listen 127.0.0.1:{port}` and waits until `/healthz` answers.
    pub async fn spawn(&self, port: u16) -> Server {
        let process = self
            .0
            .clone()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .spawn("gatehouse-it");
        let mut server = Server {
            runner: Runner::Process(Box::new(process)),
            port,
            host: format!("127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        server.wait_for("/healthz").await;
        server
    }

    /// Starts `serve` on `port` and waits until `/readyz` answers 200.
    pub async fn serve(&self, port: u16) -> Server {
        let mut server = self.spawn(port).await;
        server.wait_ready().await;
        server
    }

    /// The settings `authserver` would run with from this command's flags and
    /// environment (`GATEHOUSE_CONFIG`, `DATABASE_URL`, `GATEHOUSE_…`), on `listen`.
    pub fn settings(&self, listen: Option<String>) -> authserver::config::Settings {
        let mut args = self.0.arguments().to_vec();
        if let Some(listen) = listen {
            args.extend(["--listen".to_owned(), listen]);
        }
        let env = |name: &str| {
            self.0
                .get_env(name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        authserver::testing::settings_from(&args, &env)
            .unwrap_or_else(|e| panic!("the test's configuration is invalid: {e:#}"))
    }

    /// What `serve` on `port` answers, in this test process: the same settings, the
    /// services and router `serve` builds, on the system clock, over loopback — for
    /// protocol tests that need no process of their own (start-up, signals, logs).
    pub async fn serve_in_process(&self, port: u16) -> Server {
        let settings = self.settings(Some(format!("127.0.0.1:{port}")));
        let app = TestApp::open(settings, Arc::new(SystemClock))
            .await
            .unwrap_or_else(|e| panic!("the in-process server does not start: {e:#}"));
        let listening = app.listen(([127, 0, 0, 1], port).into()).await;
        Server {
            runner: Runner::InProcess {
                listening,
                app: Box::new(app),
            },
            port,
            host: format!("127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// The CLI's commands in-process ([`authserver::testing::Commands`]) with this
    /// command's settings: fixtures without a child process.
    pub async fn commands(&self) -> Commands {
        Commands::open(self.settings(None))
            .await
            .unwrap_or_else(|e| panic!("cannot open the database for a command: {e:#}"))
    }
}

/// What runs a [`Server`].
enum Runner {
    /// `authserver serve`, a child process.
    Process(Box<testkit::process::Process>),
    /// The app in this test process, held for its Drop (field order is drop order:
    /// stop serving first).
    InProcess {
        #[allow(dead_code)]
        listening: Listening,
        #[allow(dead_code)]
        app: Box<TestApp>,
    },
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Process(p) => p.fmt(f),
            Self::InProcess { .. } => f.write_str("in-process"),
        }
    }
}

const NOT_A_PROCESS: &str =
    "an in-process server has no process (pid, logs, signals): use serve(), not serve_in_process()";

/// A running `authserver serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    runner: Runner,
    pub port: u16,
    /// Host header sent with every request; the issuer's authority, so another
    /// instance behind "the same hostname" can be addressed (see [`Server::with_host`]).
    host: String,
    http: reqwest::Client,
}

impl Server {
    /// Sends every later request with `Host: {host}`.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    fn process(&self) -> &testkit::process::Process {
        match &self.runner {
            Runner::Process(p) => p,
            Runner::InProcess { .. } => panic!("{NOT_A_PROCESS}"),
        }
    }

    fn into_process(self) -> testkit::process::Process {
        match self.runner {
            Runner::Process(p) => *p,
            Runner::InProcess { .. } => panic!("{NOT_A_PROCESS}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process().pid()
    }

    /// Everything the server logged so far (stdout then stderr).
    pub fn logs(&self) -> String {
        self.process().logs()
    }

    /// The server's log once it contains `text`: log lines reach the output from a
    /// thread of their own, in batches a few milliseconds apart, so a line about a
    /// request that just finished may not be there yet.
    pub async fn logs_with(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(text) {
                return logs;
            }
            assert!(Instant::now() < deadline, "no {text:?} in the log:\n{logs}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// The log once the writer has caught up — unchanged for 50 ms (it writes its
    /// batches a few milliseconds apart), or as it is after 5 s of steady logging — for
    /// tests that look for what must *not* be in it.
    pub async fn logs_settled(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.logs();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.logs();
            if now == last || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }

    /// Polls `path` until it answers 200; fails early if the process exits. An
    /// in-process server is ready once it listens.
    async fn wait_for(&mut self, path: &str) {
        let url = self.url(path);
        if let Runner::Process(p) = &mut self.runner {
            p.wait_http_ok(&url, Some(&self.host)).await;
        }
    }

    pub async fn wait_ready(&mut self) {
        self.wait_for("/readyz").await;
    }

    /// `http://127.0.0.1:{port}{path}`: where requests to this process go.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The HTTP client, for requests the helpers do not cover (other methods).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The Host header this server's requests carry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `POST {path}` with this server's Host header, to be completed by the caller.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header(reqwest::header::HOST, &self.host)
    }

    /// `GET http://127.0.0.1:{port}{path}` with this server's Host header.
    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.get_with_host(path, &self.host).await
    }

    pub async fn get_with_host(
        &self,
        path: &str,
        host: &str,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .header(reqwest::header::HOST, host)
            .send()
            .await
    }

    /// GET `path`, returning status, headers and the body parsed as JSON.
    pub async fn get_json(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        let r = self.get(path).await.expect("request succeeds");
        let (status, headers) = (r.status(), r.headers().clone());
        let body = r.text().await.unwrap();
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {body}"));
        (status, headers, json)
    }

    /// GET `path` as text, asserting 200.
    pub async fn get_text(&self, path: &str) -> String {
        let r = self.get(path).await.expect("request succeeds");
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.text().await.unwrap()
    }

    /// The kids of the JWKS at `path`, sorted.
    pub async fn kids(&self, path: &str) -> Vec<String> {
        let (status, _, jwks) = self.get_json(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {jwks}");
        let mut kids: Vec<String> = jwks["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect();
        kids.sort();
        kids
    }

    /// Polls the JWKS at `path` until `done(kids)` holds; returns how long that took.
    /// Panics with the last kids seen after `timeout`.
    pub async fn wait_for_kids(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let kids = self.kids(path).await;
            if done(&kids) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "JWKS at {path} still {kids:?} after {timeout:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub async fn terminate(self) -> (ExitStatus, Duration, String) {
        self.into_process().terminate().await
    }

    /// Sends SIGTERM without waiting for anything.
    pub fn sigterm(&self) {
        self.process().sigterm();
    }

    /// Waits (bounded) for the process to exit, e.g. after [`Server::sigterm`]; returns
    /// its exit status and everything it logged.
    pub async fn wait_exit(self) -> (ExitStatus, String) {
        self.into_process().wait_exit().await
    }
}
