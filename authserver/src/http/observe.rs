//! Per-request cross-cutting work: a tracing span (joined to the caller's W3C trace when
//! OpenTelemetry is on), one log line (and one more for a failure on our side, see
//! [`ServerFailure`]), metrics, and security headers.

use std::time::Instant;

use axum::extract::{Extension, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use super::AppState;
use super::error::ServerFailure;
use super::tenant_routing::{CurrentTenant, TenantLabel};

/// The matched route inside the tenant router (response extension).
#[derive(Debug, Clone)]
struct RouteLabel(MatchedPath);

/// The one middleware of the tenant router: exposes the matched path to the outer
/// [`observe`] and applies the endpoint's CORS policy ([`super::cors`]).
pub async fn tenant_request(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    req: Request,
    next: Next,
) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = super::cors::apply(&state, &tenant, req, next).await;
    if let Some(route) = route {
        resp.extensions_mut().insert(RouteLabel(route));
    }
    resp
}

/// The one middleware of the public listener, around everything: a span, the body
/// limit ([`super::refuse_body`]), the `Connection: close` of a draining pod, security
/// headers, metrics and the access-log line.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let version = req.version();
    let outer_route = req.extensions().get::<MatchedPath>().cloned();
    let span = tracing::info_span!(
        "http_request",
        http.method = %method,
        http.route = tracing::field::Empty,
        http.status = tracing::field::Empty,
        tenant = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    // Without an exporter there is no trace to join: keep the hot path free of it.
    if state.tracing_export {
        crate::telemetry::join_remote_trace(&span, &HeaderExtractor(req.headers()));
    }

    let mut resp = match super::refuse_body(&req) {
        Some(refused) => refused,
        None => next.run(req).instrument(span.clone()).await,
    };
    super::health::close_connection_while_draining(&state, version, &mut resp);

    let tenant = resp.extensions().get::<TenantLabel>().cloned();
    let route = match (resp.extensions().get::<RouteLabel>(), outer_route) {
        (Some(inner), _) => format!("{{issuer}}{}", inner.0.as_str()),
        (None, Some(outer)) => outer.as_str().to_owned(),
        // Unmatched paths are not labels: that would let clients mint metric series.
        (None, None) => "unmatched".to_owned(),
    };
    let status = resp.status();
    security_headers(&mut resp, tenant.as_ref().is_some_and(|t| t.https));
    let took = start.elapsed();
    let method = method.as_str();
    state.metrics.observe_request(method, &route, status, took);

    let tenant_id = tenant.as_ref().map_or("", |t| t.id.as_str());
    span.in_scope(|| {
        ServerFailure::log(&resp);
        tracing::info!(
            method = %method,
            route = %route,
            status = status.as_u16(),
            latency_ms = took.as_secs_f64() * 1000.0,
            tenant = tenant_id,
            "request"
        );
    });
    // Recorded after the log line so it does not repeat them; exported with the span.
    // Without an exporter nobody reads them, and each record re-formats the span's
    // fields for the log (measured: a fifth of a JWKS request's CPU at RUST_LOG=info).
    if state.tracing_export {
        crate::telemetry::rename(&span, format!("{method} {route}"));
        span.record("http.route", route.as_str());
        span.record("http.status", status.as_u16());
        span.record("tenant", tenant_id);
    }
    resp
}

/// For routers without [`observe`] (the operations listener): logs the failure a
/// response answers, once.
pub async fn log_failures(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    ServerFailure::log(&resp);
    resp
}

fn security_headers(resp: &mut Response, https_issuer: bool) {
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if https_issuer {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}

/// A request's headers as the carrier of a W3C trace context.
struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}
