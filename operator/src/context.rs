//! What every reconcile gets: the Kubernetes client, the admin API, the operator's
//! configuration, the Event sink, metrics, the migration gate, a clock, and the per-object
//! failure counts behind exponential backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crds::{IdentityTenant, OidcClient, SigningKeySet};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::admin_client::AdminApi;
use crate::metrics::Metrics;
use crate::migration::MigrationState;

/// Operator settings the reconcilers need (parsed and validated from [`crate::args::Args`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the purge CronJobs, migration Jobs, the status ConfigMap and the Lease live.
    pub namespace: String,
    /// The authserver image the Jobs and CronJobs run.
    pub authserver_image: String,
    /// Secret with key `DATABASE_URL`, referenced (never read) by Jobs and CronJobs.
    pub database_secret: String,
    /// Secret with key `ENCRYPTION_KEY`, referenced (never read) by Jobs and CronJobs.
    pub encryption_secret: String,
    /// ConfigMap with `config.yaml`, mounted into Jobs and CronJobs at /etc/gatehouse.
    pub authserver_config_map: Option<String>,
    /// Longest time between two reconciles of one object (drift correction).
    pub resync: Duration,
    /// `activeDeadlineSeconds` of the migration Job: a pod that cannot start (image pull,
    /// missing Secret, unschedulable) fails the Job after this long.
    pub migration_deadline: Duration,
    /// Reconciles each controller runs at once.
    pub concurrency: u16,
    /// Added to every pod the operator creates.
    pub job_pods: crate::authserver_pod::PodOverlay,
    /// The watched namespaces and the instance (which objects are ours).
    pub scope: crate::scope::Scope,
}

/// Where time comes from: the system clock in production, a fixed one in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// An Event as published, kept by [`Events::capture`] for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
    /// `Kind namespace/name` (or `Kind name`) of the regarding object.
    pub object: String,
}

/// Where Kubernetes Events go: the API server, or (tests) a list.
#[derive(Clone)]
pub enum Events {
    Kube(Arc<Recorder>),
    Capture(Arc<Mutex<Vec<RecordedEvent>>>),
}

impl Events {
    /// An in-memory sink; read it back with [`Events::recorded`].
    pub fn capture() -> Self {
        Events::Capture(Arc::default())
    }

    /// What a capturing sink received so far (empty for the Kubernetes sink).
    pub fn recorded(&self) -> Vec<RecordedEvent> {
        match self {
            Events::Kube(_) => Vec::new(),
            Events::Capture(list) => list.lock().expect("event list lock").clone(),
        }
    }

    /// Publishes an Event about `regarding`. Failing to publish is logged, never fatal:
    /// Events are diagnostics, and the status condition carries the same information.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: impl Into<String>,
    ) {
        let note = note.into();
        match self {
            Events::Kube(recorder) => {
                let event = Event {
                    type_,
                    reason: reason.to_owned(),
                    // The Events API caps the note at 1 kB.
                    note: Some(truncate(&note, 1000)),
                    action: "Reconcile".to_owned(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, regarding).await {
                    tracing::warn!(error = %e, reason, "failed to publish Event");
                }
            }
            Events::Capture(list) => {
                let object = match &regarding.namespace {
                    Some(ns) => format!(
                        "{} {ns}/{}",
                        regarding.kind.as_deref().unwrap_or_default(),
                        regarding.name.as_deref().unwrap_or_default()
                    ),
                    None => format!(
                        "{} {}",
                        regarding.kind.as_deref().unwrap_or_default(),
                        regarding.name.as_deref().unwrap_or_default()
                    ),
                };
                list.lock().expect("event list lock").push(RecordedEvent {
                    warning: type_ == EventType::Warning,
                    reason: reason.to_owned(),
                    note,
                    object,
                });
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes (at a character boundary), marking the cut: for
/// Kubernetes fields with a size limit (Event notes, condition messages).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Shared state of the three controllers.
pub struct Context {
    pub client: kube::Client,
    pub admin: Arc<dyn AdminApi>,
    pub config: Config,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Whether the schema migration for the configured image has succeeded.
    pub migration: watch::Receiver<MigrationState>,
    /// Consecutive failures per object (`kind/namespace/name`), for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The OidcClient controllers' caches (one per watched namespace, or one for the
    /// whole cluster), for conflict checks without a LIST per reconcile; unset (tests),
    /// the reconciler LISTs through the API.
    pub client_store: OnceLock<Vec<Store<DeserializeGuard<OidcClient>>>>,
    /// Same for SigningKeySets.
    pub keyset_store: OnceLock<Store<DeserializeGuard<SigningKeySet>>>,
    /// The IdentityTenant controller's cache: the client and key set reconcilers read
    /// their tenant from it instead of a GET per reconcile.
    pub tenant_store: OnceLock<Store<DeserializeGuard<IdentityTenant>>>,
    /// The purge CronJobs' cache, set by the tenant controller ([`crate::tenant::Inputs`]).
    pub cronjob_store: OnceLock<Store<k8s_openapi::api::batch::v1::CronJob>>,
    /// Namespaces (their labels decide `allowedNamespaces`), cached by the client
    /// controllers' watches (one per watched namespace, or one for all of them).
    pub namespace_store: OnceLock<Vec<Store<Namespace>>>,
    /// Metadata (no data) of the Secrets in the watched namespaces, cached by the client
    /// controllers' watches: their versions tell a reconcile whether a credentials or
    /// referenced Secret changed without a GET.
    pub secret_meta_store: OnceLock<Vec<Store<PartialObjectMeta<Secret>>>>,
    /// What each object's last successful reconcile saw ([`crate::settled`]).
    pub settled: crate::settled::Settled,
    /// The secret each client's credentials Secret holds, by fingerprint
    /// ([`crate::client::KnownSecrets`]).
    pub known_secrets: crate::client::KnownSecrets,
}

impl Context {
    pub fn new(
        client: kube::Client,
        admin: Arc<dyn AdminApi>,
        config: Config,
        events: Events,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        migration: watch::Receiver<MigrationState>,
    ) -> Self {
        Self {
            client,
            admin,
            config,
            events,
            metrics,
            clock,
            migration,
            failures: Mutex::default(),
            client_store: OnceLock::new(),
            keyset_store: OnceLock::new(),
            tenant_store: OnceLock::new(),
            cronjob_store: OnceLock::new(),
            namespace_store: OnceLock::new(),
            secret_meta_store: OnceLock::new(),
            settled: crate::settled::Settled::default(),
            known_secrets: crate::client::KnownSecrets::default(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The schema migration's gate is open: reconciles may run their steps.
    pub fn gate_open(&self) -> bool {
        self.migration.borrow().gate().is_ok()
    }

    /// Records one more failure of `key` and returns how long to wait before the next
    /// attempt: 5 s, 10 s, 20 s … doubling up to the resync interval (at most 5 min).
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_delay(*n, self.config.resync)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

/// First retry after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry interval after failures.
pub const BACKOFF_MAX: Duration = Duration::from_mins(5);

/// The delay after the `n`th consecutive failure (`n` ≥ 1).
pub fn backoff_delay(n: u32, resync: Duration) -> Duration {
    let cap = BACKOFF_MAX.min(resync).max(BACKOFF_BASE);
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_the_cap() {
        let resync = Duration::from_mins(5);
        let delays: Vec<u64> = (1..=9)
            .map(|n| backoff_delay(n, resync).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX, resync).as_secs(), 300);
        // A short resync interval caps the backoff too.
        assert_eq!(backoff_delay(5, Duration::from_secs(30)).as_secs(), 30);
    }

    #[test]
    fn long_event_notes_are_cut_on_a_character_boundary() {
        let note = "é".repeat(600);
        let cut = truncate(&note, 1000);
        assert!(cut.len() <= 1000 + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 1000), "short");
    }
}
