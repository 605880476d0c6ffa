//! A workspace binary as a child process.
//!
//! - [`Command`]: one invocation with a clean environment (only `PATH`, plus what the
//!   test sets), so nothing from the test process (`DATABASE_URL`, `RUST_LOG`, …) leaks
//!   in. [`Command::run`] captures the output of a one-shot command, [`Command::spawn`]
//!   starts a long-running one.
//! - [`Process`]: a running child, its stdout and stderr in files, killed on drop;
//!   [`Process::wait_http_ok`] waits until an HTTP URL answers 200 (a server's readiness).
//! - [`workspace_binary`]: where `cargo` put another workspace package's binary, refused
//!   when older than that package's sources.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a one-shot command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_mins(2);
/// How long a server may take to become healthy or ready.
pub const START_TIMEOUT: Duration = Duration::from_mins(1);

/// `$CARGO_TARGET_DIR/<profile>`: a test binary is `…/<profile>/deps/<name>-<hash>`.
pub fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no current_exe: {e}"))?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| "the test binary is not under target/<profile>/deps".to_owned())
}

/// The build of workspace binary `name` (from the package in directory `package` of the
/// workspace root) next to the running test binary, or the file
/// `GATEHOUSE_<NAME>_BIN` names (`name` upper-cased, `-` as `_`).
///
/// The binary must be newer than every source file of its package in this checkout.
/// Cargo's uplifted dep-info next to a binary is not a reliable record of which checkout
/// built it (it is not rewritten on every relink when several checkouts share a target
/// directory), so freshness is judged by modification times: `cargo test --workspace`
/// builds the binaries before running any test, and a stale one — sources edited after
/// it was built, e.g. when running one package's tests alone — is refused with the
/// command that fixes it.
pub fn workspace_binary(name: &str, package: &str) -> Result<PathBuf, String> {
    let var = format!("GATEHOUSE_{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{var}={} is not a file", path.display()))
        };
    }
    let build = format!("cargo build -p {package}");
    let path = target_dir()?.join(name);
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|_| {
            format!(
                "{} is missing: run `{build}` first (`cargo test --workspace` builds it), \
                 or set {var}",
                path.display()
            )
        })?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the testkit crate is in the workspace")?;
    let mut pending = vec![root.join(package).join("src")];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let p = entry.path();
            let meta = entry.metadata().map_err(|e| e.to_string())?;
            if meta.is_dir() {
                pending.push(p);
            } else if p.extension().is_some_and(|e| e == "rs")
                && meta.modified().map_err(|e| e.to_string())? > modified
            {
                return Err(format!(
                    "{} is older than {}: run `{build}`",
                    path.display(),
                    p.display()
                ));
            }
        }
    }
    Ok(path)
}

/// One invocation of a binary. The environment starts empty but for `PATH`.
#[derive(Debug, Clone)]
pub struct Command {
    program: PathBuf,
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

impl Command {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
        .env("PATH", std::env::var("PATH").unwrap_or_default())
    }

    /// Sets `key` (replacing an earlier value).
    #[must_use]
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.into()));
        self
    }

    #[must_use]
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Feeds `text` to the command's stdin (otherwise stdin is empty).
    #[must_use]
    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The value set for `key`, if any.
    pub fn get_env(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The arguments so far (for messages).
    pub fn arguments(&self) -> &[String] {
        &self.args
    }

    fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs to completion (at most [`COMMAND_TIMEOUT`]) and captures the output.
    pub async fn run(&self) -> Output {
        let what = format!("{} {:?}", self.program.display(), self.args);
        let out = if let Some(text) = self.stdin.clone() {
            // tokio's pipe writers need `io-util`, which the workspace does not otherwise
            // use: feed stdin from a blocking thread instead.
            let mut cmd = self.std_command();
            cmd.stdin(Stdio::piped())
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
                .unwrap_or_else(|_| panic!("{what} did not finish in time"))
                .expect("join the command thread")
                .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
        } else {
            let mut cmd = tokio::process::Command::from(self.std_command());
            cmd.stdin(Stdio::null()).kill_on_drop(true);
            tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
                .await
                .unwrap_or_else(|_| panic!("{what} did not finish in time"))
                .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
        };
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts the command; its stdout and stderr go to files in a directory of their
    /// own (prefix `name`), kept until the [`Process`] is dropped.
    pub fn spawn(&self, name: &str) -> Process {
        let logs = tempfile::Builder::new()
            .prefix(&format!("{name}-log-"))
            .tempdir()
            .expect("create a log dir");
        let stdout = logs.path().join("stdout.log");
        let stderr = logs.path().join("stderr.log");
        let mut cmd = tokio::process::Command::from(self.std_command());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create stdout.log"))
            .stderr(std::fs::File::create(&stderr).expect("create stderr.log"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        Process {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            logs,
        }
    }
}

/// A running child process, killed when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: tokio::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    logs: tempfile::TempDir,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// The directory the logs are in.
    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }

    /// Everything the process printed so far (stdout then stderr).
    pub fn logs(&self) -> String {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics (with the logs) if the process has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll the child") {
            panic!("{} exited ({status}):\n{}", self.name, self.logs());
        }
    }

    /// Its exit status once it has exited (`None` while it runs).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the child")
    }

    /// The name it was spawned with (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Polls `url` until it answers 200 (at most [`START_TIMEOUT`]); fails early, with
    /// the logs, if the process exits. `host` is sent as the `Host` header when given.
    pub async fn wait_http_ok(&mut self, url: &str, host: Option<&str>) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                panic!(
                    "{} exited ({status}) before {url} answered:\n{}",
                    self.name,
                    self.logs()
                );
            }
            let mut request = http.get(url);
            if let Some(host) = host {
                request = request.header(reqwest::header::HOST, host);
            }
            if let Ok(r) = request.send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not answer 200 within {START_TIMEOUT:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(crate::POLL).await;
        }
    }

    /// Sends SIGTERM without waiting for anything.
    pub fn sigterm(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Waits (at most a minute) for the process to exit, e.g. after
    /// [`Process::sigterm`]; returns its exit status and everything it logged.
    pub async fn wait_exit(mut self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_mins(1), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit:\n{}", self.name, self.logs()))
            .expect("wait for the child");
        (status, self.logs())
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its status,
    /// how long that took, and its logs.
    pub async fn terminate(self) -> (ExitStatus, Duration, String) {
        let started = Instant::now();
        self.sigterm();
        let (status, logs) = self.wait_exit().await;
        (status, started.elapsed(), logs)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
