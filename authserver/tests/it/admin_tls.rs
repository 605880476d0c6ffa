//! The admin API over TLS (`admin.tls_cert_file`, `admin.tls_key_file`): the server is
//! verified against its CA, the bearer token is still required, and a renewed
//! certificate (a cert-manager Secret the kubelet updated) is served without a restart.
//! Certificates: `testing/tls/` (see its `generate.sh`), found through `testkit::tls`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use authserver::admin::proto::HealthRequest;
use authserver::admin::proto::admin_client::AdminClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::harness::admin::{admin_cli, authed};
use crate::harness::{Backend, POLL, TestDb, free_port};

fn fixture(name: &str) -> PathBuf {
    testkit::tls::dir().join(name)
}

/// A channel to `https://localhost:{port}` trusting only `ca` (connected lazily).
fn channel(port: u16, ca: &str) -> AdminClient<Channel> {
    let pem = std::fs::read(fixture(ca)).unwrap();
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    AdminClient::new(endpoint.connect_lazy())
}

/// Polls `health` (authenticated) until it succeeds; panics with the last error.
async fn wait_healthy(admin: &mut AdminClient<Channel>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.health(authed(HealthRequest {})).await {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < deadline, "{what}: {e:?}"),
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_server_is_verified_the_token_required_and_a_renewed_certificate_served() {
    let db = TestDb::migrated(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(fixture("server-a.crt"), &cert).unwrap();
    std::fs::copy(fixture("server-a.key"), &key).unwrap();
    let port = free_port();
    let server = admin_cli(&db, port)
        .env("GATEHOUSE_ADMIN_TLS_CERT_FILE", cert.display().to_string())
        .env("GATEHOUSE_ADMIN_TLS_KEY_FILE", key.display().to_string())
        .serve(db.port)
        .await;

    let mut trusted = channel(port, "ca-a.crt");
    wait_healthy(&mut trusted, "TLS admin API with the right CA").await;
    let no_token = trusted.health(HealthRequest {}).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated, "{no_token:?}");

    // Another CA: the handshake fails before any request is made.
    let mut other_ca = channel(port, "ca-b.crt");
    let refused = other_ca.health(authed(HealthRequest {})).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // And a plaintext client gets nowhere.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let e = AdminClient::new(plain.connect_lazy())
        .health(authed(HealthRequest {}))
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);

    // Renewal: the kubelet swaps the Secret's files; the server picks them up.
    std::fs::copy(fixture("server-b.crt"), &cert).unwrap();
    std::fs::copy(fixture("server-b.key"), &key).unwrap();
    wait_healthy(&mut other_ca, "the renewed certificate (CA b)").await;
    server.logs_with("admin TLS certificate reloaded").await;
    // New connections no longer see the old certificate.
    let e = channel(port, "ca-a.crt")
        .health(authed(HealthRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_the_certificate_stops_serve_naming_the_setting() {
    let db = TestDb::migrated(Backend::Sqlite).await;
    let out = admin_cli(&db, free_port())
        .env(
            "GATEHOUSE_ADMIN_TLS_CERT_FILE",
            fixture("server-a.crt").display().to_string(),
        )
        .env(
            "GATEHOUSE_ADMIN_TLS_KEY_FILE",
            fixture("server-b.key").display().to_string(),
        )
        .args(["serve", "--listen", &format!("127.0.0.1:{}", db.port)])
        .run()
        .await;
    assert_ne!(out.code(), Some(0), "{out}");
    out.assert_stderr_contains("admin.tls_key_file");
    assert!(!out.stderr.contains("PRIVATE KEY"), "{out}");
}
