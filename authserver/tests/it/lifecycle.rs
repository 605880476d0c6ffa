//! Process lifecycle: graceful shutdown on SIGTERM, and a database that is not there.

use std::time::{Duration, Instant};

use crate::harness::{Backend, Cli, TestDb, free_port, new_encryption_key};

on_both_backends!(
    sigterm_stops_the_server_promptly_with_exit_code_zero,
    unreachable_database_fails_clearly_after_retrying,
);

async fn sigterm_stops_the_server_promptly_with_exit_code_zero(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    server.get("/jwks").await.unwrap();
    let (status, took, logs) = server.terminate().await;
    assert!(status.success(), "exit {status}:\n{logs}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}

async fn unreachable_database_fails_clearly_after_retrying(backend: Backend) {
    let scratch = tempfile::tempdir().unwrap();
    // Nothing listens on port 1; the SQLite file's directory does not exist.
    let (url, named) = match backend {
        Backend::Postgres => (
            "postgres://x@127.0.0.1:1/db".to_owned(),
            "127.0.0.1:1/db".to_owned(),
        ),
        Backend::Sqlite => {
            let path = scratch.path().join("missing-dir").join("authserver.db");
            (
                format!("sqlite://{}", path.display()),
                path.display().to_string(),
            )
        }
    };
    let cli = Cli::new()
        .env("DATABASE_URL", url.as_str())
        .env("ENCRYPTION_KEY", new_encryption_key())
        .env("GATEHOUSE_DATABASE_STARTUP_TIMEOUT_SECONDS", "2");
    let listen = format!("127.0.0.1:{}", free_port());
    for args in [
        vec!["serve", "--listen", listen.as_str()],
        vec!["migrate"],
        vec!["keys", "list"],
    ] {
        let started = Instant::now();
        let out = cli.clone().args(args.clone()).run().await;
        let took = started.elapsed();
        out.assert_code(1)
            .assert_stderr_contains("failed to connect to the database")
            .assert_stderr_contains(&named)
            .assert_stderr_contains("unreachable after");
        assert!(
            out.stderr.contains("database unreachable, retrying"),
            "{args:?} retries with backoff: {out}"
        );
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
            "{args:?} honours the 2 s startup window: took {took:?}"
        );
    }
    assert!(!scratch.path().join("missing-dir").exists());
}
