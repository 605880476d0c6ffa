//! TLS for the admin API (`admin.tls_cert_file`, `admin.tls_key_file`).
//!
//! tonic's own `ServerTlsConfig` fixes the certificate when the server starts. Ours is a
//! mounted `kubernetes.io/tls` Secret that cert-manager renews every few weeks, so the
//! listener does the handshakes itself with a certificate resolver whose key pair is
//! read again every few seconds: a renewed certificate is served without a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, crypto::ring};
use tokio_rustls::server::TlsStream;

use crate::config::AdminTls;

/// How often the certificate files are read again: the kubelet updates a mounted
/// Secret within about a minute of its change, so seconds here add nothing noticeable.
pub const RELOAD: Duration = Duration::from_secs(5);

/// A client that opens a connection and never finishes the handshake holds only a task
/// for this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses a PEM certificate chain and its private key into a key pair rustls serves.
/// The errors name what is wrong, never the key's content.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("admin.tls_cert_file: not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("admin.tls_cert_file: no PEM certificate in the file".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("admin.tls_key_file: not a PEM private key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!("admin.tls_key_file: unusable with the certificate of admin.tls_cert_file: {e}")
    })
}

/// The key pair currently served; replaced when the files change and parse.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|k| Arc::clone(&k))
    }
}

async fn read_pair(files: &AdminTls) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |path: PathBuf, setting: &'static str| async move {
        tokio::fs::read(&path)
            .await
            .map_err(|e| format!("{setting}: cannot read {}: {e}", path.display()))
    };
    Ok((
        read(files.cert_file.clone(), "admin.tls_cert_file").await?,
        read(files.key_file.clone(), "admin.tls_key_file").await?,
    ))
}

/// Builds the acceptor from the files (an error names the setting) and keeps it
/// current: while the files are unchanged nothing is parsed; a pair that does not parse
/// or match (a Secret caught mid-update) keeps the previous one served and is logged.
pub async fn acceptor(files: AdminTls) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(ring::default_provider());
    let (cert, key) = read_pair(&files).await?;
    let resolver = Arc::new(Reloading {
        current: RwLock::new(Arc::new(certified_key(&cert, &key, &provider)?)),
    });
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("admin TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio::spawn(async move {
        let mut loaded = (cert, key);
        loop {
            tokio::time::sleep(RELOAD).await;
            let next = match read_pair(&files).await {
                Ok(pair) if pair != loaded => pair,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "admin TLS certificate not reloaded; serving the previous one");
                    continue;
                }
            };
            match certified_key(&next.0, &next.1, &provider) {
                Ok(pair) => {
                    if let Ok(mut current) = resolver.current.write() {
                        *current = Arc::new(pair);
                    }
                    tracing::info!(cert_file = %files.cert_file.display(), "admin TLS certificate reloaded");
                    loaded = next;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin TLS certificate not reloaded; serving the previous one");
                }
            }
        }
    });
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections on `listener` and yields those whose handshake succeeded. Each
/// handshake runs in its own task, so a slow or hostile client delays nobody else.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> (
    impl futures::Stream<Item = std::io::Result<TlsStream<TcpStream>>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => log_refused(peer, &e.to_string()),
                    Err(_) => log_refused(peer, "handshake timed out"),
                }
            });
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|conn| (conn, rx))
    });
    (stream, accept)
}

fn log_refused(peer: SocketAddr, why: &str) {
    // A client with the wrong CA or plaintext: debug, as a port scan would be.
    tracing::debug!(%peer, error = why, "admin API: TLS handshake failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT_A: &[u8] = testkit::tls::SERVER_A_CRT;
    const KEY_A: &[u8] = testkit::tls::SERVER_A_KEY;
    const KEY_B: &[u8] = testkit::tls::SERVER_B_KEY;

    fn load(cert: &[u8], key: &[u8]) -> Result<CertifiedKey, String> {
        certified_key(cert, key, &ring::default_provider())
    }

    #[test]
    fn a_matching_pem_pair_loads() {
        let pair = load(CERT_A, KEY_A).unwrap();
        assert_eq!(pair.cert.len(), 1);
    }

    #[test]
    fn a_bad_pair_names_the_setting_and_never_the_key() {
        let mismatch = load(CERT_A, KEY_B).unwrap_err();
        assert!(
            mismatch.starts_with("admin.tls_key_file: unusable"),
            "{mismatch}"
        );
        let no_cert = load(b"not pem", KEY_A).unwrap_err();
        assert!(no_cert.starts_with("admin.tls_cert_file:"), "{no_cert}");
        let key_as_cert = load(KEY_A, KEY_A).unwrap_err();
        assert!(
            key_as_cert.starts_with("admin.tls_cert_file:"),
            "{key_as_cert}"
        );
        let cert_as_key = load(CERT_A, CERT_A).unwrap_err();
        assert!(
            cert_as_key.starts_with("admin.tls_key_file:"),
            "{cert_as_key}"
        );
        let key_text = String::from_utf8_lossy(KEY_A);
        let key_body = key_text.lines().nth(1).unwrap();
        for e in [mismatch, no_cert, key_as_cert, cert_as_key] {
            assert!(!e.contains(key_body), "{e}");
        }
    }
}
