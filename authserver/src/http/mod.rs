//! The HTTP surface: per-tenant protocol endpoints under each issuer, plus process-level
//! health and metrics. `app` assembles the public router and `ops_app` the one of the
//! optional operations listener (`server.ops_listen`); each endpoint family has its module.

mod browser;
mod cors;
mod discovery;
mod document;
mod error;
mod health;
mod jwks;
mod management;
pub mod metrics;
mod observe;
pub mod tenant_routing;
#[cfg(test)]
pub(crate) mod testing;
mod token;
mod upstream_token;
mod userinfo;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use crate::readiness::Readiness;
pub use error::ApiError;
pub use health::{not_ready, waiting_probes};

use crate::clock::Clock;
use crate::config::IpNet;
use crate::keys::KeyService;
use crate::mfa::MfaService;
use crate::store::Store;
use crate::tenants::TenantDirectory;
use crate::throttle::LoginThrottle;
use metrics::Metrics;

/// What every handler can reach: the services behind one `Arc`.
///
/// Every request clones the state several times (each middleware with state, each
/// `State` extractor). One shared count per clone instead of one per service: with
/// two dozen `Arc`s, the counts bouncing between cores cost several percent of a
/// JWKS request's CPU (`perf`, README Benchmarks), and the futures that hold a clone
/// shrink to a pointer.
#[derive(Clone)]
pub struct AppState(Arc<AppServices>);

impl AppState {
    /// The state of a server with these services.
    pub fn new(services: AppServices) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppServices;

    fn deref(&self) -> &AppServices {
        &self.0
    }
}

/// The services of [`AppState`].
pub struct AppServices {
    pub store: Store,
    pub oauth: Arc<crate::oauth::OAuthService>,
    pub keys: Arc<KeyService>,
    pub tenants: Arc<TenantDirectory>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub trusted_proxies: Arc<Vec<IpNet>>,
    /// OpenTelemetry export is on: join callers' traces and name spans by route.
    pub tracing_export: bool,
    pub clock: Arc<dyn Clock>,
    /// Login, consent and logout pages.
    pub ui: Arc<crate::ui::Templates>,
    /// Browser sessions and signed-in accounts.
    pub sessions: Arc<crate::session::SessionService>,
    pub users: Arc<crate::users::UserService>,
    /// TOTP and recovery codes (enrolment, verification, status).
    pub mfa: Arc<MfaService>,
    /// Passkeys (WebAuthn registration and assertions).
    pub passkeys: Arc<crate::passkeys::PasskeyService>,
    /// Per-username and per-IP sign-in throttling.
    pub login_throttle: Arc<LoginThrottle>,
    /// E-mail verification, password reset, registration, new-device notice.
    pub email: Arc<crate::email::EmailFlows>,
    /// Upstream identity providers (discovery, keys, code exchange).
    pub federation: Arc<crate::federation::FederationService>,
    /// Remembered devices, GeoIP and impossible travel.
    pub devices: Arc<crate::devices::DeviceService>,
    /// The serialised discovery documents and JWK Sets.
    pub documents: Arc<Documents>,
}

/// The per-tenant documents served as stored bytes (see [`document`]).
#[derive(Debug, Default)]
pub struct Documents {
    discovery: document::DocumentCache<Arc<crate::domain::tenant::Tenant>>,
    jwks: document::DocumentCache<crate::keys::JwksVersion>,
}

/// Endpoints served under every tenant's issuer path. Paths here are relative to the
/// issuer; each one that exists must also be advertised by `discovery`.
fn tenant_router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(discovery::router())
        .merge(jwks::router())
        .merge(token::router())
        .merge(browser::router(state))
        .merge(userinfo::router())
        .merge(upstream_token::router())
        .merge(management::router(state))
        .route(
            &format!("{}/{{*rest}}", crate::management::API_PATH),
            axum::routing::any(management::not_found),
        )
        .fallback(|| async { ApiError::NotFound })
}

/// The largest request body any endpoint reads (forms and JSON are a few KiB).
pub const MAX_REQUEST_BODY: u64 = 64 * 1024;

/// The refusal of a request whose declared body is larger than any endpoint reads,
/// before a byte of it is read: a 5 MiB upload costs a header, not 5 MiB. Bodies
/// without a declared length are cut off by each endpoint's own limit. Called by
/// [`observe::observe`] for every request of the public listener.
fn refuse_body(req: &axum::extract::Request) -> Option<axum::response::Response> {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()
        .map(|v| v.trim().parse::<u64>());
    match declared {
        Some(Ok(n)) if n > MAX_REQUEST_BODY => Some(axum::response::IntoResponse::into_response(
            ApiError::PayloadTooLarge,
        )),
        Some(Err(_)) => Some(axum::response::IntoResponse::into_response(
            ApiError::OAuth(crate::oauth::OAuthError::invalid_request(
                "invalid Content-Length",
            )),
        )),
        _ => None,
    }
}

/// Which process-level endpoints the public listener serves besides the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicOps {
    /// `/healthz`, `/readyz` and `/metrics`: no separate operations listener.
    All,
    /// `/healthz` and `/readyz` only, and `/readyz` without its reason: the operations
    /// listener serves the full set. The probes stay because standalone setups and load
    /// balancers health-check the public port; `/metrics` goes because it describes the
    /// deployment (routes, pool sizes, key counts) to anyone who can reach the Ingress,
    /// and so does a readiness reason (database errors).
    ProbesOnly,
}

/// The whole HTTP application, with every process-level endpoint (no ops listener).
pub fn app(state: AppState) -> Router {
    public_app(state, PublicOps::All)
}

/// The public HTTP application: the protocol under each issuer plus `ops`.
pub fn public_app(state: AppState, ops: PublicOps) -> Router {
    // One middleware per router, each doing all its per-request work: every layer is
    // another boxed future and service clone on every request (README, Benchmarks).
    let tenant_app = tenant_router(&state)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::tenant_request,
        ))
        .with_state(state.clone());
    let router = Router::new().route("/healthz", get(health::healthz));
    let router = match ops {
        PublicOps::All => router
            .route("/readyz", get(health::readyz))
            .route("/metrics", get(metrics::render)),
        PublicOps::ProbesOnly => router.route("/readyz", get(health::readyz_without_reason)),
    };
    router
        .fallback(move |st, req| tenant_routing::dispatch(st, tenant_app.clone(), req))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the requests in
/// flight finish. Handlers see the client's address (`ConnectInfo`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The operations listener (`server.ops_listen`): `/healthz`, `/readyz` (with its
/// reason) and `/metrics`, nothing else. Requests here are not counted in the HTTP
/// metrics: probes and scrapes every few seconds would drown the protocol traffic.
pub fn ops_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn(observe::log_failures))
        .with_state(state)
}
