//! `/metrics`: Prometheus text with request counts by route and status, pool gauges and
//! signing keys by state, under a configurable prefix.

use reqwest::StatusCode;

use crate::harness::{Backend, TestDb};

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

on_both_backends!(
    metrics_count_requests_by_route_and_status_with_pool_and_key_gauges,
    metrics_prefix_is_configurable,
);

async fn metrics_count_requests_by_route_and_status_with_pool_and_key_gauges(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
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
        .serve(db.port)
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
