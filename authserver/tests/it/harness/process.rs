//! The `authserver` binary as a child process: one-shot commands and running servers.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_authserver");

/// How long a one-shot command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_mins(2);
/// How long a server may take to become healthy or ready.
const START_TIMEOUT: Duration = Duration::from_mins(1);
/// Poll interval while waiting on a condition.
pub const POLL: Duration = Duration::from_millis(20);

/// A loopback port nobody in this process has been given before.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// One `authserver` invocation. The environment starts empty (only `PATH`), so nothing
/// from the test process (its own `DATABASE_URL`, `RUST_LOG`, …) leaks in.
#[derive(Debug, Clone, Default)]
pub struct Cli {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit: {self}");
        self
    }

    /// Panics unless stderr contains `text` (and never a panic message).
    #[track_caller]
    pub fn assert_stderr_contains(&self, text: &str) -> &Self {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}: {self}");
        assert!(
            !self.stderr.contains("panicked"),
            "the binary panicked: {self}"
        );
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Cli {
    pub fn new() -> Self {
        Self::default().env("PATH", std::env::var("PATH").unwrap_or_default())
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Feeds `text` to the command's stdin (otherwise stdin is empty).
    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs to completion and captures the output.
    pub async fn run(&self) -> Output {
        let out = if let Some(text) = self.stdin.clone() {
            // tokio's pipe writers need `io-util`, which the crate does not otherwise use:
            // feed stdin from a blocking thread instead.
            let mut cmd = std::process::Command::new(BIN);
            cmd.args(&self.args)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let run = tokio::task::spawn_blocking(move || {
                use std::io::Write as _;
                let mut child = cmd.spawn()?;
                if let Some(mut pipe) = child.stdin.take() {
                    pipe.write_all(text.as_bytes())?;
                }
                child.wait_with_output()
            });
            tokio::time::timeout(COMMAND_TIMEOUT, run)
                .await
                .unwrap_or_else(|_| panic!("authserver {:?} did not finish in time", self.args))
                .expect("join the command thread")
                .expect("spawn authserver")
        } else {
            tokio::time::timeout(COMMAND_TIMEOUT, self.command().output())
                .await
                .unwrap_or_else(|_| panic!("authserver {:?} did not finish in time", self.args))
                .expect("spawn authserver")
        };
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `serve --listen 127.0.0.1:{port}` and waits until `/healthz` answers.
    pub async fn spawn(&self, port: u16) -> Server {
        let logs = tempfile::Builder::new()
            .prefix("gatehouse-it-log-")
            .tempdir()
            .expect("create log dir");
        let stdout = logs.path().join("stdout.log");
        let stderr = logs.path().join("stderr.log");
        let child = self
            .command()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn authserver serve");
        let mut server = Server {
            child,
            port,
            host: format!("127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            stdout,
            stderr,
            _logs: logs,
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
}

/// A running `authserver serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: tokio::process::Child,
    pub port: u16,
    /// Host header sent with every request; the issuer's authority, so another
    /// instance behind "the same hostname" can be addressed (see [`Server::with_host`]).
    host: String,
    http: reqwest::Client,
    stdout: PathBuf,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
}

impl Server {
    /// Sends every later request with `Host: {host}`.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("server is running")
    }

    /// Everything the server logged so far (stdout then stderr).
    pub fn logs(&self) -> String {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }

    /// Polls `path` until it answers 200; fails early if the process exits.
    async fn wait_for(&mut self, path: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "authserver serve exited ({status}) before {path} answered:\n{}",
                    self.logs()
                );
            }
            if let Ok(r) = self.get(path).await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not answer 200 within {START_TIMEOUT:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(POLL).await;
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
        let started = Instant::now();
        self.sigterm();
        let (status, logs) = self.wait_exit().await;
        (status, started.elapsed(), logs)
    }

    /// Sends SIGTERM without waiting for anything.
    pub fn sigterm(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Waits (bounded) for the process to exit, e.g. after [`Server::sigterm`]; returns
    /// its exit status and everything it logged.
    pub async fn wait_exit(mut self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_mins(1), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("server did not exit:\n{}", self.logs()))
            .unwrap();
        (status, self.logs())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
