//! Gatehouse's test kit: what the integration tests of `authserver`, `operator` and `e2e`
//! share, so that none of them keeps its own copy.
//!
//! - [`postgres`]: the PostgreSQL admin connection (`DATABASE_URL`, or one ephemeral
//!   cluster per test process) and a [`postgres::Database`] per test, dropped with it.
//! - [`process`]: a workspace binary as a child process — a one-shot command whose
//!   output is captured, or a long-running one (a server) whose logs go to files, killed
//!   on drop, with readiness waits.
//! - [`smtp`]: an SMTP server that records the mail a test's server sends.
//! - [`mmdb`]: a tiny MaxMind DB (GeoIP) writer for the databases tests need.
//! - [`free_port`], [`random_hex`], [`wait_until`], and the TLS fixtures in [`tls`].
//!
//! It depends on no Gatehouse crate: fixtures that need the auth server's library live
//! in that crate's own test support (`authserver::testing`).

// All of this crate is test support: a failed set-up step panics with its reason, as a
// test would (clippy.toml's allow-*-in-tests covers only `#[test]` functions).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod mmdb;
pub mod postgres;
pub mod process;
pub mod smtp;
pub mod tls;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Poll interval while waiting on a condition.
pub const POLL: Duration = Duration::from_millis(20);

/// A loopback port nobody in this process has been given before (the kernel's pick,
/// released at once: a test binds it itself, or hands it to a child process).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        if GIVEN.lock().expect("port set").insert(port) {
            return port;
        }
    }
}

/// `n` random bytes as lowercase hex, from the kernel.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// Polls `check` every [`POLL`] until it returns `Some`; panics naming `what` after
/// `timeout`. Tests wait on a condition, never for a fixed time (STYLE §7).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
