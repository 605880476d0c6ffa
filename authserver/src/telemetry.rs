//! Logging and tracing setup. JSON logs on stderr in production, pretty in `--dev`; level from
//! config or `RUST_LOG`. OpenTelemetry export is opt-in: only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set is a tracer built; otherwise no OTel layer exists
//! and nothing is paid for it.

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

mod json;
mod sink;

/// Flushes and stops the OTLP exporter, and writes the queued log lines, when dropped (at
/// process exit).
#[derive(Default)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    logs: Option<sink::FlushOnDrop>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("otlp", &self.provider.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "failed to flush traces");
        }
        // Last: the exporter's warning above is still written.
        self.logs.take();
    }
}

/// Installs the global subscriber. `otlp_endpoint` is `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn init(level: &str, format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_new(level)?;
    // Logs go to stderr: stdout is the command's output (`keys list --json`, `migrate`),
    // which scripts parse and must not find log lines in. Written by a thread of their
    // own (see `sink`): a stalled log pipe must not stall the async workers.
    let logs = sink::Sink::spawn(std::io::stderr(), sink::CAPACITY)?;
    let mut guard = Guard {
        provider: None,
        logs: Some(logs.flush_on_drop()),
    };
    let fmt_layer = match format {
        // The lines of `.json().flatten_event(true).with_current_span(true)
        // .with_span_list(false)`, written faster (see `json`).
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(logs)
            .json()
            .fmt_fields(json::SpanFields)
            .event_format(json::JsonLine::<json::UtcMicros>::default())
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(logs)
            .compact()
            .boxed(),
    };
    let otel_layer = match otlp_endpoint {
        Some(endpoint) if !endpoint.is_empty() => {
            // The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers, timeout).
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("gatehouse-authserver")
                        .build(),
                )
                .build();
            let tracer = provider.tracer("gatehouse");
            guard.provider = Some(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        _ => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()?;
    Ok(guard)
}

/// Makes `span` a child of the caller's W3C `traceparent` (if any; `carrier` reads the
/// request's headers) and records the trace id on it, so every log line inside the
/// request carries it. Without an OTel layer the span has no OTel context and this does
/// nothing measurable.
pub fn join_remote_trace(
    span: &tracing::Span,
    carrier: &dyn opentelemetry::propagation::Extractor,
) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        // Only fails when no OTel layer is installed: then there is nothing to join.
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", trace_id.to_string());
    }
}

/// Names the exported span after its route, known only once routing is done (the OTel
/// span has started by then, so `otel.name` would be ignored). No-op without OTel.
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}
