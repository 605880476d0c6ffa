//! Process lifecycle: graceful shutdown on SIGTERM, and a database that is not there.

use std::time::{Duration, Instant};

use std::io::ErrorKind;

use reqwest::StatusCode;
use tokio::net::TcpStream;

use crate::harness::oauth::{access_token, create_client};
use crate::harness::{Backend, Cli, POLL, TestDb, free_port, new_encryption_key};

on_both_backends!(
    sigterm_stops_the_server_promptly_with_exit_code_zero,
    sigterm_turns_unready_serves_through_the_delay_and_drains_without_warnings,
    unreachable_database_fails_clearly_after_retrying,
    a_missing_key_file_keeps_serve_unready_until_its_secret_appears,
    the_admin_token_file_is_read_again_without_a_restart,
);

/// GitOps bootstrap (operator/chart issue, defect 1): the ENCRYPTION_KEY comes from a
/// mounted Secret that may be created after the pod starts. Until the file exists the
/// process stays up, `/healthz` answers and `/readyz` says why it is not ready.
async fn a_missing_key_file_keeps_serve_unready_until_its_secret_appears(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ENCRYPTION_KEY");
    let mut server = db
        .cli()
        .env_remove("ENCRYPTION_KEY")
        .env(
            "GATEHOUSE_ENCRYPTION_KEY_FILE",
            key_file.display().to_string(),
        )
        .spawn(db.port)
        .await;
    let (status, _, body) = server.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting for the ENCRYPTION_KEY")
                && r.contains("does not exist yet")),
        "{body}"
    );
    // A malformed key is reported, never echoed.
    std::fs::write(&key_file, "not-a-key-but-a-secret-looking-value").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = server.get_json("/readyz").await;
        if body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("64 hexadecimal"))
        {
            assert!(!body.to_string().contains("secret-looking"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(crate::harness::POLL).await;
    }
    // The Secret appears (as the kubelet writes it): the server starts and is ready.
    std::fs::write(&key_file, format!("{}\n", db.key())).unwrap();
    server.wait_ready().await;
    assert_eq!(server.get("/jwks").await.unwrap().status(), 200);
    assert!(
        !server.logs_settled().await.contains(db.key()),
        "the key was logged"
    );
}

/// The admin token comes from a mounted Secret: rotating the Secret reaches the running
/// server without a restart (operator/chart issue, defect 1).
async fn the_admin_token_file_is_read_again_without_a_restart(backend: Backend) {
    use crate::harness::admin::{connect, with_token};
    use authserver::admin::proto::HealthRequest;
    let db = TestDb::migrated(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let admin_port = free_port();
    let _server = db
        .cli()
        .env(
            "GATEHOUSE_ADMIN_TOKEN_FILE",
            token_file.display().to_string(),
        )
        .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .serve(db.port)
        .await;
    let mut admin = connect(admin_port).await;
    let first = "first-admin-token-0123456789abcdef-0123";
    let second = "second-admin-token-0123456789abcdef-012";
    // No file yet: every call is refused.
    let e = admin
        .health(with_token(HealthRequest {}, first))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    for (now_valid, no_longer) in [(first, None), (second, Some(first))] {
        std::fs::write(&token_file, format!("{now_valid}\n")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while admin
            .health(with_token(HealthRequest {}, now_valid))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "token {now_valid} not picked up");
            tokio::time::sleep(crate::harness::POLL).await;
        }
        if let Some(old) = no_longer {
            let e = admin
                .health(with_token(HealthRequest {}, old))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
        }
    }
}

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
    assert_eq!(warnings(&logs), Vec::<&str>::new(), "{logs}");
}

/// The log lines at WARN or ERROR (JSON or pretty format).
fn warnings(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| {
            [
                "\"level\":\"WARN\"",
                "\"level\":\"ERROR\"",
                " WARN ",
                " ERROR ",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect()
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) {
    while !data.is_empty() {
        stream.writable().await.unwrap();
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Everything the peer sends until it closes the connection.
async fn read_to_end(stream: &TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.readable().await.unwrap();
        match stream.try_read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Issue 16 item 5: on SIGTERM `/readyz` fails at once while requests are still served
/// for `server.shutdown_delay_seconds` (load balancers stop routing here meanwhile);
/// then the listener closes, a request in flight at that moment still completes with
/// 200, background tasks stop before the pool closes, and the process exits 0 without a
/// single WARN or ERROR line (it used to log two about a closed pool).
async fn sigterm_turns_unready_serves_through_the_delay_and_drains_without_warnings(
    backend: Backend,
) {
    const DELAY: Duration = Duration::from_secs(6);
    let db = TestDb::migrated(backend).await;
    let creds = create_client(&db, "svc", &[]).await;
    let server = db
        .cli()
        .env(
            "GATEHOUSE_SERVER_SHUTDOWN_DELAY_SECONDS",
            DELAY.as_secs().to_string(),
        )
        .serve(db.port)
        .await;
    let access = access_token(&server, &creds).await;

    // A request in flight across the listener's close: its head and part of its body now,
    // the rest once the listener is gone.
    let body = "grant_type=client_credentials";
    let in_flight = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        server.host(),
        creds.basic(),
        body.len()
    );
    write_all(&in_flight, head.as_bytes()).await;
    write_all(&in_flight, &body.as_bytes()[..10]).await;

    let signalled = Instant::now();
    server.sigterm();
    loop {
        let (status, headers, body) = server.get_json("/readyz").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["reason"], "shutting down", "{body}");
            assert_eq!(headers["connection"], "close");
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "/readyz still {status} after SIGTERM"
        );
        tokio::time::sleep(POLL).await;
    }

    // Not ready, yet serving: every request succeeds, and asks its client to reconnect
    // (elsewhere) instead of keeping the connection.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (server, creds, access) = (&server, &creds, access.clone());
        clients.push(async move {
            for _ in 0..5 {
                for r in [
                    crate::harness::oauth::token(server, creds, &[]).await,
                    crate::harness::oauth::introspect(server, creds, &access).await,
                ] {
                    r.ok();
                    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
                }
            }
        });
    }
    for c in clients {
        c.await;
    }
    assert!(
        signalled.elapsed() < DELAY,
        "the requests above were meant to run within the delay; the machine is too slow"
    );

    // The listener closes after the delay, not before.
    loop {
        match TcpStream::connect(("127.0.0.1", server.port)).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            _ => {}
        }
        assert!(
            signalled.elapsed() < DELAY + Duration::from_secs(20),
            "the listener stayed open"
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(signalled.elapsed() >= DELAY, "closed before the delay");

    // The request in flight completes.
    write_all(&in_flight, &body.as_bytes()[10..]).await;
    let reply = read_to_end(&in_flight).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.contains("\"access_token\""), "{reply}");

    let (status, logs) = server.wait_exit().await;
    assert!(status.success(), "exit {status}:\n{logs}");
    assert_eq!(warnings(&logs), Vec::<&str>::new(), "{logs}");
    assert!(logs.contains("shutting down: not ready"), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
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
