//! The admin gRPC API (`proto/gatehouse/admin/v1/admin.proto`): served on its own port,
//! bearer-token authenticated, for the operator and other automation.

mod convert;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;
use tonic::{Request, Status};

pub use service::AdminService;

/// Generated protobuf types, client and server.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("gatehouse.admin.v1");
}

/// Checks `authorization: Bearer <token>` in constant time.
#[derive(Clone)]
pub struct BearerAuth {
    expected: Arc<SecretString>,
}

impl BearerAuth {
    pub fn new(token: SecretString) -> Self {
        Self {
            expected: Arc::new(token),
        }
    }

    pub fn check(&self, req: &Request<()>) -> Result<(), Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let expected = self.expected.expose_secret().as_bytes();
        if bool::from(presented.as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }
}

/// Serves the admin API on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    service: AdminService,
    token: SecretString,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let auth = BearerAuth::new(token);
    let svc =
        proto::admin_server::AdminServer::with_interceptor(service, move |req: Request<()>| {
            auth.check(&req).map(|()| req)
        });
    tracing::info!(listen = %addr, "admin gRPC API listening");
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_shutdown(addr, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("admin gRPC server failed on {addr} (admin.listen): {e}"))
}
