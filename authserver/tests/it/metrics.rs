//! `/metrics`: Prometheus text with request counts by route and status, pool gauges and
//! signing keys by state, under a configurable prefix.

use reqwest::StatusCode;

use crate::harness::{Backend, TestDb, free_port};

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

on_both_backends!(
    metrics_count_requests_by_route_and_status_with_pool_and_key_gauges,
    metrics_prefix_is_configurable,
    the_ops_listener_serves_metrics_and_probes_and_the_public_port_no_metrics,
    while_waiting_for_the_key_the_ops_listener_answers_probes_with_the_reason,
);

/// `GET http://127.0.0.1:{port}{path}`: status and body.
async fn get(port: u16, path: &str) -> (StatusCode, String) {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"));
    (r.status(), r.text().await.unwrap())
}

/// Operational surface: with `server.ops_listen` the Ingress-facing port no longer
/// publishes `/metrics`; the probes stay there for standalone users and load balancers.
async fn the_ops_listener_serves_metrics_and_probes_and_the_public_port_no_metrics(
    backend: Backend,
) {
    let db = TestDb::migrated(backend).await;
    let ops = free_port();
    let server = db
        .cli()
        .env("GATEHOUSE_SERVER_OPS_LISTEN", format!("127.0.0.1:{ops}"))
        .serve(db.port)
        .await;
    server.get("/jwks").await.unwrap();

    let (status, text) = get(ops, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let jwks = r#"gatehouse_http_requests_total{method="GET",route="{issuer}/jwks",status="200"}"#;
    assert_eq!(sample(&text, jwks), Some(1.0), "{text}");
    assert_eq!(get(ops, "/healthz").await.0, StatusCode::OK);
    let (status, body) = get(ops, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ready"}"#)
    );
    // Only the operational endpoints: the protocol is not reachable here.
    assert_eq!(get(ops, "/jwks").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(ops, "/.well-known/openid-configuration").await.0,
        StatusCode::NOT_FOUND
    );

    let r = server.get("/metrics").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!r.text().await.unwrap().contains("gatehouse_"));
    assert_eq!(
        server.get("/healthz").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        server.get("/readyz").await.unwrap().status(),
        StatusCode::OK
    );
    // Scrapes and probes are not protocol traffic: they are not counted.
    let text = get(ops, "/metrics").await.1;
    assert!(!text.contains(r#"route="/metrics""#), "{text}");
}

/// The kubelet probes the ops port: it must answer while `serve` waits for its
/// ENCRYPTION_KEY Secret, and only it tells why the pod is not ready.
async fn while_waiting_for_the_key_the_ops_listener_answers_probes_with_the_reason(
    backend: Backend,
) {
    let db = TestDb::migrated(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let ops = free_port();
    let server = db
        .cli()
        .env_remove("ENCRYPTION_KEY")
        .env(
            "GATEHOUSE_ENCRYPTION_KEY_FILE",
            dir.path().join("ENCRYPTION_KEY").display().to_string(),
        )
        .env("GATEHOUSE_SERVER_OPS_LISTEN", format!("127.0.0.1:{ops}"))
        .spawn(db.port)
        .await;
    assert_eq!(get(ops, "/healthz").await.0, StatusCode::OK);
    let (status, body) = get(ops, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("waiting for the ENCRYPTION_KEY"), "{body}");
    let (status, _, body) = server.get_json("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        serde_json::json!({"status": "not_ready", "error": "temporarily_unavailable"})
    );

    std::fs::write(dir.path().join("ENCRYPTION_KEY"), db.key()).unwrap();
    let mut server = server;
    server.wait_ready().await;
    let (status, body) = get(ops, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ready"}"#)
    );
}

async fn metrics_count_requests_by_route_and_status_with_pool_and_key_gauges(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    for _ in 0..2 {
        let r = server
            .get("/.well-known/openid-configuration")
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    server.get("/jwks").await.unwrap();
    let r = server.get("/no-such-endpoint").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let text = server.get_text("/metrics").await;
    let discovery = r#"gatehouse_http_requests_total{method="GET",route="{issuer}/.well-known/openid-configuration",status="200"}"#;
    assert_eq!(sample(&text, discovery), Some(2.0), "{text}");
    let jwks = r#"gatehouse_http_requests_total{method="GET",route="{issuer}/jwks",status="200"}"#;
    assert_eq!(sample(&text, jwks), Some(1.0), "{text}");
    // Unknown paths share one label value: clients cannot mint series.
    let unmatched = r#"gatehouse_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    assert_eq!(sample(&text, unmatched), Some(1.0), "{text}");
    assert!(
        text.contains(r#"gatehouse_http_request_duration_seconds_bucket{route="{issuer}/jwks",status="200",le="#),
        "{text}"
    );
    assert!(sample(&text, r#"gatehouse_db_pool_connections{state="idle"}"#).is_some());
    assert!(sample(&text, r#"gatehouse_db_pool_connections{state="in_use"}"#).is_some());
    assert_eq!(
        sample(&text, "gatehouse_db_pool_max_connections"),
        Some(10.0)
    );
    let workers = sample(&text, r#"gatehouse_runtime{measure="workers"}"#);
    assert!(workers.is_some_and(|n| n >= 1.0), "{text}");
    let alive = sample(&text, r#"gatehouse_runtime{measure="alive_tasks"}"#);
    assert!(
        alive.is_some_and(|n| n >= 1.0),
        "the listeners at least: {text}"
    );
    assert!(sample(&text, r#"gatehouse_runtime{measure="global_queue_depth"}"#).is_some());
    for (state, n) in [
        ("pending", 0.0),
        ("active", 3.0),
        ("retiring", 0.0),
        ("retired", 0.0),
    ] {
        let series = format!(r#"gatehouse_signing_keys{{state="{state}"}}"#);
        assert_eq!(sample(&text, &series), Some(n), "{series}\n{text}");
    }
}

async fn metrics_prefix_is_configurable(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db
        .cli()
        .env("GATEHOUSE_METRICS_PREFIX", "idp_")
        .serve_in_process(db.port)
        .await;
    server.get("/jwks").await.unwrap();
    let text = server.get_text("/metrics").await;
    let jwks = r#"idp_http_requests_total{method="GET",route="{issuer}/jwks",status="200"}"#;
    assert_eq!(sample(&text, jwks), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, r#"idp_signing_keys{state="active"}"#),
        Some(3.0)
    );
    assert!(!text.contains("gatehouse_"), "{text}");
}
