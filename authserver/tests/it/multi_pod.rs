//! Several processes on one database: a key change made through the CLI reaches every
//! other running server within a second (PostgreSQL LISTEN/NOTIFY; SQLite polls a
//! trigger-maintained counter), though their JWKS caches live for 30 s.

use std::time::{Duration, Instant};

use crate::harness::{Backend, Cli, TestDb, free_port};

/// The target is one second; the assertion leaves room for a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(2);

on_both_backends!(rotation_through_the_cli_reaches_another_server_within_a_second);

async fn rotation_through_the_cli_reaches_another_server_within_a_second(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data").display().to_string();
    // PostgreSQL: two `serve` pods and the CLI. SQLite: `serve --dev` and the CLI on the
    // same data dir, the standalone setup.
    let (first, other, rotate) = match backend {
        Backend::Postgres => {
            let first = db.serve().await;
            // Behind one load balancer, both pods see the issuer's Host header.
            let other = db
                .cli()
                .serve(free_port())
                .await
                .with_host(format!("127.0.0.1:{}", db.port));
            (Some(first), other, db.cli())
        }
        Backend::Sqlite => {
            let dev = Cli::new().args(["--dev", "--data-dir", data_dir.as_str()]);
            let port = free_port();
            (None, dev.serve(port).await, dev)
        }
    };
    // Warm the other server's cache.
    let old = other.kids("/jwks").await;
    assert_eq!(old.len(), 3);

    let cli_started = Instant::now();
    let out = rotate.args(["keys", "rotate"]).run().await;
    out.assert_success();
    let cli_took = cli_started.elapsed();
    let took = other
        .wait_for_kids("/jwks", DEADLINE, |kids| {
            kids.len() == 6 && old.iter().all(|k| kids.contains(k))
        })
        .await;
    // The commit happened while the CLI ran: the true delay lies between these two.
    println!(
        "{backend:?}: new kids visible on the other server {} ms after `keys rotate` exited \
         ({} ms after it started)",
        took.as_millis(),
        (cli_took + took).as_millis()
    );
    if let Some(first) = first {
        first
            .wait_for_kids("/jwks", DEADLINE, |kids| kids.len() == 6)
            .await;
    }
}
