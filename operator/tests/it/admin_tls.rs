//! The operator's admin client ([`GrpcAdmin`]) against a real `authserver serve` whose
//! admin API is on TLS: the server is verified against the CA bundle
//! (`--admin-ca-file`), a bundle of another CA fails, a bundle replaced on disk is
//! picked up while running, and the bearer token is still required. Certificates: `testing/tls/` (see its `generate.sh`), found through `testkit::tls`.

use std::path::PathBuf;

use operator::admin_client::{AdminApi as _, AdminErrorKind, GrpcAdmin};
use secrecy::SecretString;

use crate::authserver::AuthServer;

fn fixture(name: &str) -> PathBuf {
    testkit::tls::dir().join(name)
}

#[tokio::test]
async fn the_admin_client_verifies_the_tls_server_and_still_sends_its_token() {
    let file = |name: &str| fixture(name).display().to_string();
    let server = AuthServer::start_with(&[
        ("GATEHOUSE_ADMIN_TLS_CERT_FILE", file("server-a.crt")),
        ("GATEHOUSE_ADMIN_TLS_KEY_FILE", file("server-a.key")),
    ])
    .await;
    // The certificate names localhost: connect by that name, as the chart connects by
    // the Service's DNS name.
    let addr = format!("https://localhost:{}", server.admin_port);
    let token = SecretString::from(server.token.clone());
    let ca_a = std::fs::read(fixture("ca-a.crt")).unwrap();
    let ca_b = std::fs::read(fixture("ca-b.crt")).unwrap();

    let admin = GrpcAdmin::connect_lazy_tls(&addr, &ca_a, &token).unwrap();
    let health = admin.health().await.unwrap();
    assert!(
        health.database_reachable && health.schema_current,
        "{health:?}"
    );

    let other_ca = GrpcAdmin::connect_lazy_tls(&addr, &ca_b, &token).unwrap();
    let e = other_ca.health().await.unwrap_err();
    assert!(e.is(AdminErrorKind::Unavailable), "{e:?}");

    let wrong_token = SecretString::from("w".repeat(48));
    let e = GrpcAdmin::connect_lazy_tls(&addr, &ca_a, &wrong_token)
        .unwrap()
        .health()
        .await
        .unwrap_err();
    assert!(e.is(AdminErrorKind::Unauthenticated), "{e:?}");

    // The operator's own wiring: flags, CA file, token file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{}\n", server.token)).unwrap();
    let admin = GrpcAdmin::from_flags(&addr, Some(&fixture("ca-a.crt")), &dir.path().join("token"))
        .unwrap();
    admin.health().await.unwrap();
    // A CA bundle replaced on disk (cert-manager renewing the CA) is picked up without a
    // restart: wrong at start, right a few seconds after the file changed.
    let ca_file = dir.path().join("ca.crt");
    std::fs::copy(fixture("ca-b.crt"), &ca_file).unwrap();
    let admin = GrpcAdmin::from_flags(&addr, Some(&ca_file), &dir.path().join("token")).unwrap();
    let e = admin.health().await.unwrap_err();
    assert!(e.is(AdminErrorKind::Unavailable), "{e:?}");
    std::fs::copy(fixture("ca-a.crt"), &ca_file).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while let Err(e) = admin.health().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new CA bundle was not picked up: {e:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // A bundle that turns unusable keeps the last good one.
    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    admin.health().await.unwrap();
    // A plaintext client cannot talk to the TLS port.
    let plain = GrpcAdmin::connect_lazy(&format!("http://127.0.0.1:{}", server.admin_port), &token)
        .unwrap();
    assert!(plain.health().await.is_err());
}
