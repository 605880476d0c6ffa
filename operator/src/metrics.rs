//! Prometheus metrics of the operator, served on `/metrics` by [`crate::probes`], and the
//! controllers' [`Health`] that the same bookkeeping feeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::health::Health;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The operator's metrics, in their own registry (no process-global state).
pub struct Metrics {
    registry: Registry,
    /// `gatehouse_operator_reconciliations_total{controller}`.
    pub reconciliations: IntCounterVec,
    /// `gatehouse_operator_reconcile_errors_total{controller, reason}`; `reason` is the
    /// error's stable `category()`.
    pub errors: IntCounterVec,
    /// `gatehouse_operator_reconcile_duration_seconds{controller}`.
    pub duration: HistogramVec,
    /// `gatehouse_operator_leader`: 1 while this replica holds the Lease.
    pub leader: IntGauge,
    /// `gatehouse_operator_migration_succeeded`: 1 once the schema migration of the
    /// configured image has succeeded.
    pub migration_succeeded: IntGauge,
    /// Each reconcile is also a heartbeat of its controller (`/healthz`).
    pub health: Arc<Health>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "gatehouse_operator_reconciliations_total",
                "Reconciliations started, by controller.",
            ),
            &["controller"],
        )
        .expect("valid metric definition");
        let errors = IntCounterVec::new(
            Opts::new(
                "gatehouse_operator_reconcile_errors_total",
                "Failed reconciliations, by controller and reason.",
            ),
            &["controller", "reason"],
        )
        .expect("valid metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_operator_reconcile_duration_seconds",
                "Duration of reconciliations, by controller.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller"],
        )
        .expect("valid metric definition");
        let leader = IntGauge::new(
            "gatehouse_operator_leader",
            "1 while this replica holds the leader Lease.",
        )
        .expect("valid metric definition");
        let migration_succeeded = IntGauge::new(
            "gatehouse_operator_migration_succeeded",
            "1 once the schema migration of the configured authserver image has succeeded.",
        )
        .expect("valid metric definition");
        for c in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(leader.clone()),
            Box::new(migration_succeeded.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            reconciliations,
            errors,
            duration,
            leader,
            migration_succeeded,
            health: Arc::default(),
        }
    }

    /// Counts one reconcile of `controller` that took `elapsed` and failed with
    /// `error_category`, if it failed.
    pub fn observe(
        &self,
        controller: &'static str,
        elapsed: Duration,
        error_category: Option<&str>,
    ) {
        self.health.reconciled(controller, Instant::now());
        self.reconciliations.with_label_values(&[controller]).inc();
        self.duration
            .with_label_values(&[controller])
            .observe(elapsed.as_secs_f64());
        if let Some(reason) = error_category {
            self.errors.with_label_values(&[controller, reason]).inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_durations_are_exported() {
        let m = Metrics::new();
        m.observe("oidcclient", Duration::from_millis(20), None);
        m.observe(
            "oidcclient",
            Duration::from_millis(30),
            Some("AuthServerUnavailable"),
        );
        let text = m.render();
        assert!(
            text.contains(r#"gatehouse_operator_reconciliations_total{controller="oidcclient"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"gatehouse_operator_reconcile_errors_total{controller="oidcclient",reason="AuthServerUnavailable"} 1"#
        ));
        assert!(text.contains(
            r#"gatehouse_operator_reconcile_duration_seconds_count{controller="oidcclient"} 2"#
        ));
        assert!(text.contains("gatehouse_operator_leader 0"));
    }
}
