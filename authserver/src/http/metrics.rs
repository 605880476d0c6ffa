//! `GET /metrics`: Prometheus text exposition. A registry per process (no global), so
//! tests and multiple servers in one process never share counters.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use super::AppState;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_connections: IntGaugeVec,
    pool_max: IntGauge,
    database_available: IntGauge,
    keys: IntGaugeVec,
    runtime: IntGaugeVec,
    verified_lookups: IntCounterVec,
    verified_entries: IntGauge,
}

impl Metrics {
    /// Builds the registry; `prefix` (e.g. `gatehouse_`) starts every metric name.
    pub fn new(prefix: &str) -> Result<Self, prometheus::Error> {
        let p = |name: &str| format!("{prefix}{name}");
        let requests = IntCounterVec::new(
            Opts::new(
                p("http_requests_total"),
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                p("http_request_duration_seconds"),
                "HTTP request latency by route and status",
            )
            .buckets(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "status"],
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                p("db_pool_connections"),
                "Database pool connections by state",
            ),
            &["state"],
        )?;
        let pool_max = IntGauge::new(
            p("db_pool_max_connections"),
            "Configured maximum of database pool connections",
        )?;
        let database_available = IntGauge::new(
            p("database_available"),
            "1 while the database answers, 0 while it is marked unavailable (requests that need it get 503)",
        )?;
        let keys = IntGaugeVec::new(
            Opts::new(p("signing_keys"), "Signing keys of all tenants by state"),
            &["state"],
        )?;
        // A queue that grows while tasks stay alive is the signature of a stalled worker
        // (see docs/operations.md, "What runs where").
        let runtime = IntGaugeVec::new(
            Opts::new(
                p("runtime"),
                "Async runtime: workers, alive tasks and the depth of the shared run queue",
            ),
            &["measure"],
        )?;
        let verified_lookups = IntCounterVec::new(
            Opts::new(
                p("verified_token_cache_lookups_total"),
                "Access tokens looked up in the cache of verified tokens (introspection, userinfo), by result",
            ),
            &["result"],
        )?;
        let verified_entries = IntGauge::new(
            p("verified_token_cache_entries"),
            "Access tokens held in the cache of verified tokens",
        )?;
        let registry = Registry::new();
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_max.clone()))?;
        registry.register(Box::new(database_available.clone()))?;
        registry.register(Box::new(keys.clone()))?;
        registry.register(Box::new(runtime.clone()))?;
        registry.register(Box::new(verified_lookups.clone()))?;
        registry.register(Box::new(verified_entries.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool_connections,
            pool_max,
            database_available,
            keys,
            runtime,
            verified_lookups,
            verified_entries,
        })
    }

    /// Records one finished request.
    pub fn observe_request(&self, method: &str, route: &str, status: StatusCode, took: Duration) {
        let status = status.as_str();
        self.requests
            .with_label_values(&[method, route, status])
            .inc();
        self.latency
            .with_label_values(&[route, status])
            .observe(took.as_secs_f64());
    }
}

pub async fn render(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    let database = state.readiness.database();
    let pool = database.pool;
    m.pool_connections
        .with_label_values(&["idle"])
        .set(i64::from(pool.idle));
    m.pool_connections
        .with_label_values(&["in_use"])
        .set(i64::from(pool.size.saturating_sub(pool.idle)));
    m.pool_max.set(i64::from(pool.max));
    m.database_available.set(i64::from(database.available));
    let rt = tokio::runtime::Handle::current().metrics();
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    for (measure, value) in [
        ("workers", rt.num_workers()),
        ("alive_tasks", rt.num_alive_tasks()),
        ("global_queue_depth", rt.global_queue_depth()),
    ] {
        m.runtime.with_label_values(&[measure]).set(gauge(value));
    }
    // The cache counts for itself (no registry on the request path); the counters
    // catch up with it here.
    let counts = state.oauth.verified.counts();
    for (result, total) in [("hit", counts.hits), ("miss", counts.misses)] {
        let counter = m.verified_lookups.with_label_values(&[result]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }
    m.verified_entries.set(gauge(counts.entries));
    // Key counts are read at scrape time: states change with time, not with writes.
    if let Ok(counts) = state.keys.count_by_state().await {
        for (s, n) in counts {
            m.keys
                .with_label_values(&[s.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut buf) {
        return super::ApiError::internal(e).into_response();
    }
    let mut resp = buf.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
