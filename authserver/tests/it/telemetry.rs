//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, request spans are exported over
//! OTLP/gRPC as children of the caller's W3C `traceparent`, and the request's log lines
//! carry the trace id. Without it, nothing is exported and no trace id is logged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use reqwest::header;

use crate::harness::oauth::{access_token, create_client, post_form, send};
use crate::harness::{Backend, TestDb, free_port};

/// (trace id hex, parent span id hex, span name) of every exported span.
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

#[derive(Clone, Default)]
struct Collector(Received);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push((
                        hex(&span.trace_id),
                        hex(&span.parent_span_id),
                        span.name.clone(),
                    ));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Starts a collector on a free port; returns the port and what it receives.
fn start_collector() -> (u16, Received) {
    let received = Received::default();
    let port = free_port();
    let collector = Collector(Arc::clone(&received));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve(([127, 0, 0, 1], port).into()),
    );
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_join_the_callers_trace_and_logs_carry_the_trace_id() {
    let (port, received) = start_collector();

    let db = TestDb::migrated(Backend::Sqlite).await;
    let server = db
        .cli()
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        // Export promptly instead of the default 5 s batch delay.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .serve(db.port)
        .await;
    let resp = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/jwks", db.port))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT}-01"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());

    let deadline = Instant::now() + Duration::from_secs(10);
    let span = loop {
        let found = received
            .lock()
            .unwrap()
            .iter()
            // Its database spans end (and are exported) before the request span.
            .find(|(t, _, name)| t == TRACE_ID && name.starts_with("GET "))
            .cloned();
        if let Some(s) = found {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no span of trace {TRACE_ID} exported; got {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        span.1, PARENT,
        "the request span is a child of the caller's span"
    );
    assert_eq!(span.2, "GET {issuer}/jwks");

    let logs = server.logs_with(r#""route":"{issuer}/jwks""#).await;
    let line = logs
        .lines()
        .find(|l| l.contains(r#""route":"{issuer}/jwks""#))
        .unwrap_or_else(|| panic!("no request log line:\n{logs}"));
    assert!(
        line.contains(&format!(r#""trace_id":"{TRACE_ID}""#)),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_no_trace_id_is_logged() {
    let db = TestDb::migrated(Backend::Sqlite).await;
    let server = db.serve().await;
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/jwks", db.port))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT}-01"))
        .send()
        .await
        .unwrap();
    let logs = server.logs_with(r#""route":"{issuer}/jwks""#).await;
    let line = logs
        .lines()
        .find(|l| l.contains(r#""route":"{issuer}/jwks""#))
        .unwrap_or_else(|| panic!("no request log line:\n{logs}"));
    assert!(!line.contains("trace_id"), "{line}");
}

on_both_backends!(a_server_error_is_logged_once_with_the_requests_trace_id);

/// A database failure that is not an outage (a table gone) answers 500 `server_error`
/// with nothing of the database in the body, and is logged exactly once: at ERROR,
/// inside the request's span, so with the caller's trace id.
async fn a_server_error_is_logged_once_with_the_requests_trace_id(backend: Backend) {
    let (port, _received) = start_collector();
    let db = TestDb::migrated(backend).await;
    let creds = create_client(&db, "svc", &[]).await;
    let server = db
        .cli()
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .serve(db.port)
        .await;
    let access = access_token(&server, &creds).await;

    db.execute("ALTER TABLE revoked_tokens RENAME TO revoked_tokens_gone")
        .await;
    let r = send(
        post_form(&server, "/introspect", &[("token", &access)])
            .header(header::AUTHORIZATION, creds.basic())
            .header("traceparent", format!("00-{TRACE_ID}-{PARENT}-01")),
    )
    .await;
    r.assert_error(500, "server_error");
    let body = r.body.to_string();
    for text in ["revoked_tokens", "does not exist", "no such table"] {
        assert!(!body.contains(text), "{text:?} in {body}");
    }

    // The request's own line is written after the failure's.
    let logs = server.logs_with(r#""status":500"#).await;
    let failures: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("revoked_tokens"))
        .collect();
    assert_eq!(failures.len(), 1, "{logs}");
    let line = failures[0];
    assert!(line.contains(r#""level":"ERROR""#), "{line}");
    assert!(line.contains(r#""message":"request failed""#), "{line}");
    assert!(
        line.contains(&format!(r#""trace_id":"{TRACE_ID}""#)),
        "{line}"
    );
}
