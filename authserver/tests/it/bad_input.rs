//! Bad input at every door (security review, "Prove it"): oversized bodies and
//! parameters, malformed encodings, repeated parameters and huge headers each get a clear
//! 4xx, nothing is stored, and the server stays healthy. One table, one server.

use crate::authorize_flow::{CB, authorize_url};
use crate::harness::oauth::create_client;
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(every_bad_input_gets_a_clear_4xx_and_changes_nothing);

/// How a case is sent (over a raw connection: the server may answer and close before a
/// large body is sent, which an HTTP client library reports as a failure).
enum Send {
    /// A form POST to `path` with this body and content type, with its Content-Length.
    Post(&'static str, Vec<u8>, &'static str),
    /// A form POST whose body is streamed without a Content-Length.
    Streamed(&'static str, usize),
    /// A GET of this path and query.
    Get(String),
    /// A GET of `path` with an extra header of this size.
    HugeHeader(&'static str, usize),
}

#[allow(clippy::too_many_lines)] // the table
async fn every_bad_input_gets_a_clear_4xx_and_changes_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let app = create_client(&db, "app", &["--redirect-uri", CB]).await;
    let server = db.serve_in_process().await;
    let form = "application/x-www-form-urlencoded";
    let mib = 1024 * 1024;
    let authorize = authorize_url(&db, "app", &[]);
    let authorize = &authorize[authorize.find("/authorize").unwrap()..];
    let cases: Vec<(&str, Send, &[u16])> = vec![
        (
            "5 MiB body at /token",
            Send::Post("/token", vec![b'a'; 5 * mib], form),
            &[413],
        ),
        (
            "5 MiB body at /login",
            Send::Post("/login", vec![b'a'; 5 * mib], form),
            &[413],
        ),
        (
            "5 MiB body streamed to /introspect",
            Send::Streamed("/introspect", 5 * mib),
            &[413],
        ),
        (
            "1 MiB password",
            Send::Post(
                "/login",
                format!("username=alice&_csrf=x&password={}", "p".repeat(mib)).into_bytes(),
                form,
            ),
            &[413],
        ),
        (
            "100 KiB parameter at /authorize",
            Send::Get(format!("{authorize}&state={}", "x".repeat(100 * 1024))),
            &[400, 414, 431],
        ),
        (
            "10 KiB parameter at /authorize",
            Send::Get(format!("{authorize}&login_hint={}", "x".repeat(10 * 1024))),
            &[400],
        ),
        (
            "malformed UTF-8",
            Send::Post(
                "/token",
                b"grant_type=client_%FF%FEcredentials".to_vec(),
                form,
            ),
            &[400],
        ),
        (
            "raw invalid UTF-8 bytes",
            Send::Post("/token", b"grant_type=\xff\xfe".to_vec(), form),
            &[400],
        ),
        (
            "duplicate parameter",
            Send::Post(
                "/token",
                b"grant_type=client_credentials&grant_type=refresh_token".to_vec(),
                form,
            ),
            &[400],
        ),
        (
            "bad percent-encoding",
            Send::Post(
                "/token",
                b"grant_type=client%G1credentials&scope=%".to_vec(),
                form,
            ),
            &[400],
        ),
        (
            "duplicate parameter at /authorize",
            Send::Get(format!("{authorize}&client_id=app")),
            &[400],
        ),
        (
            "wrong content type",
            Send::Post(
                "/token",
                b"{\"grant_type\":\"client_credentials\"}".to_vec(),
                "application/json",
            ),
            &[400],
        ),
        (
            "invalid Content-Length",
            Send::Post("/token", Vec::new(), "x-bad-length"),
            &[400],
        ),
        (
            "huge header",
            Send::HugeHeader("/.well-known/openid-configuration", 512 * 1024),
            &[431],
        ),
    ];
    let before = db.snapshot().await;
    let sessions_before = db.scalar("SELECT count(*) FROM browser_sessions").await;
    let host = server.host().to_owned();
    let auth = app.basic();
    for (name, send, want) in cases {
        let status = match send {
            Send::Post(path, body, "x-bad-length") => {
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
                     Content-Type: {form}\r\nContent-Length: 12abc\r\n\r\n"
                );
                raw(&server, &head, &body, None).await
            }
            Send::Post(path, body, content_type) => {
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
                     Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                raw(&server, &head, &body, None).await
            }
            Send::Streamed(path, size) => {
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
                     Content-Type: {form}\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                raw(&server, &head, &[], Some(size)).await
            }
            Send::Get(target) => {
                let head = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
                raw(&server, &head, &[], None).await
            }
            Send::HugeHeader(path, size) => {
                let head = format!(
                    "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Filler: {}\r\n\r\n",
                    "f".repeat(size)
                );
                raw(&server, &head, &[], None).await
            }
        };
        assert!(
            want.contains(&status),
            "{name}: got {status}, want one of {want:?}"
        );
        assert_eq!(db.snapshot().await, before, "{name} changed the database");
        assert_eq!(
            db.scalar("SELECT count(*) FROM browser_sessions").await,
            sessions_before,
            "{name} stored a browser session"
        );
        let health = server.get("/healthz").await.unwrap();
        assert_eq!(health.status(), 200, "{name}: the server is unhealthy");
    }
}

/// Sends `head`, then `body` (or `chunked` bytes in 64 KiB chunks) over a new connection,
/// tolerating the server closing early, and returns the status it answered with.
async fn raw(server: &Server, head: &str, body: &[u8], chunked: Option<usize>) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut sent = sock.write_all(head.as_bytes()).await.is_ok();
    for part in body.chunks(65_536) {
        if !sent {
            break;
        }
        sent = sock.write_all(part).await.is_ok();
    }
    if let Some(size) = chunked {
        let chunk = format!("10000\r\n{}\r\n", "a".repeat(65_536));
        for _ in 0..size / 65_536 {
            if !sent {
                break;
            }
            sent = sock.write_all(chunk.as_bytes()).await.is_ok();
        }
        if sent {
            let _ = sock.write_all(b"0\r\n\r\n").await;
        }
    }
    let mut buf = vec![0u8; 64];
    let n = sock.read(&mut buf).await.unwrap_or(0);
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
}
