//! The admin gRPC API (`proto/gatehouse/admin/v1/admin.proto`): served on its own port,
//! bearer-token authenticated (over TLS too: the certificate authenticates the server,
//! the token the caller), for the operator and other automation.

mod convert;
mod service;
pub mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret as _, SecretString};

use crate::config::SecretSource;
use subtle::ConstantTimeEq as _;
use tonic::{Request, Status};

pub use service::AdminService;

/// Generated protobuf types, client and server.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("gatehouse.admin.v1");
}

/// How often a token file (`admin.token_file`, a mounted Secret) is read again: a
/// rotated Secret reaches the kubelet's copy within about a minute, and us soon after.
const TOKEN_RELOAD: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks `authorization: Bearer <token>` in constant time. A token from a file is read
/// again every few seconds, so rotating it needs no restart; while the file is missing
/// (its Secret not created yet) every call is refused.
#[derive(Clone)]
pub struct BearerAuth {
    expected: Arc<RwLock<Option<SecretString>>>,
}

impl BearerAuth {
    pub fn new(source: &SecretSource) -> Self {
        let auth = Self {
            expected: Arc::new(RwLock::new(None)),
        };
        match source {
            SecretSource::Value(token) => auth.set(Some(token.clone())),
            SecretSource::File(path) => {
                auth.set(read_token(path));
                let (auth, path) = (auth.clone(), path.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(TOKEN_RELOAD).await;
                        let text = tokio::fs::read_to_string(&path).await.ok();
                        auth.set(text.and_then(|t| token_of(&t)));
                    }
                });
            }
        }
        auth
    }

    fn set(&self, token: Option<SecretString>) {
        if let Ok(mut slot) = self.expected.write() {
            let changed = match (&*slot, &token) {
                (Some(a), Some(b)) => a.expose_secret() != b.expose_secret(),
                (None, None) => false,
                _ => true,
            };
            if changed {
                tracing::info!(available = token.is_some(), "admin API token loaded");
            }
            *slot = token;
        }
    }

    pub fn check(&self, req: &Request<()>) -> Result<(), Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let guard = self
            .expected
            .read()
            .map_err(|_| Status::internal("internal error"))?;
        let Some(expected) = guard.as_ref() else {
            return Err(Status::unauthenticated(
                "the admin token is not available yet (admin.token_file)",
            ));
        };
        if bool::from(
            presented
                .as_bytes()
                .ct_eq(expected.expose_secret().as_bytes()),
        ) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }
}

fn read_token(path: &std::path::Path) -> Option<SecretString> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| token_of(&t))
}

/// A usable token: trimmed, at least 32 characters (config validation says the same).
fn token_of(text: &str) -> Option<SecretString> {
    let t = text.trim();
    (t.len() >= 32).then(|| SecretString::from(t.to_owned()))
}

/// Serves the admin API on `addr` (over TLS with `tls`, from [`tls::acceptor`]) until
/// `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    service: AdminService,
    token: SecretSource,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let auth = BearerAuth::new(&token);
    let svc =
        proto::admin_server::AdminServer::with_interceptor(service, move |req: Request<()>| {
            auth.check(&req).map(|()| req)
        });
    let failed = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("admin gRPC server failed on {addr} (admin.listen): {e}")
    };
    let Some(acceptor) = tls else {
        tracing::info!(listen = %addr, tls = false, "admin gRPC API listening");
        return tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_shutdown(addr, shutdown)
            .await
            .map_err(|e| failed(&e));
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| failed(&e))?;
    tracing::info!(listen = %addr, tls = true, "admin gRPC API listening");
    let (incoming, accept) = tls::incoming(listener, acceptor);
    let served = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    accept.abort();
    served.map_err(|e| failed(&e))
}
