//! Leader election with a `coordination.k8s.io/v1` Lease (`gatehouse-operator` in the
//! operator's namespace), so several replicas can run and only one reconciles.
//!
//! Every [`RENEW_INTERVAL`] a replica reads the Lease and, with the `resourceVersion` it
//! read (optimistic concurrency: a concurrent writer makes the write fail with 409),
//! renews it when it holds it, takes it over when the holder let it expire (no renewal
//! for `leaseDurationSeconds`), or creates it when absent. A leader that cannot renew
//! for [`LEASE_DURATION`] steps down (the caller then stops), so two replicas never act as
//! leader at once as long as clocks agree to within the renewal margin. On shutdown the
//! leader releases the Lease so a standby takes over at once.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::context::Clock;
use crate::metrics::Metrics;

/// Name of the Lease.
pub const LEASE_NAME: &str = "gatehouse-operator";
/// How long a Lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the Lease is renewed (or its takeover attempted).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);

/// A leader that could not renew for this long steps down: a renewal interval before
/// the Lease expires for the others.
const STEP_DOWN_AFTER: Duration = Duration::from_secs(10);

/// Who competes for the Lease, and where.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub namespace: String,
    pub identity: String,
}

fn lease_seconds() -> i32 {
    i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX)
}

/// Whether a Lease held by someone else has expired at `now`.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or_else(lease_seconds));
    renewed.0 + jiff::SignedDuration::from_secs(duration) < now
}

/// One round: renew, take over, or create the Lease. `Ok(true)` when this candidate
/// holds it afterwards; `Ok(false)` when someone else does (or won a race).
pub async fn try_acquire(
    api: &Api<Lease>,
    candidate: &Candidate,
    now: Timestamp,
) -> kube::Result<bool> {
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.to_owned()),
                namespace: Some(candidate.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(candidate.identity.clone()),
                lease_duration_seconds: Some(lease_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(candidate.identity.as_str());
    if !ours {
        let vacant = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !vacant && !expired(&spec, now) {
            return Ok(false);
        }
        spec.holder_identity = Some(candidate.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(lease_seconds());
    lease.spec = Some(spec);
    // `replace` sends the resourceVersion we read: a concurrent change makes it fail.
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => {
            if !ours {
                tracing::info!(identity = %candidate.identity, "acquired the leader Lease");
            }
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up (if held) so a standby replica takes over without waiting for it
/// to expire.
pub async fn release(api: &Api<Lease>, candidate: &Candidate, now: Timestamp) -> kube::Result<()> {
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
        return Ok(());
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(candidate.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(now));
    lease.spec = Some(spec);
    api.replace(LEASE_NAME, &PostParams::default(), &lease)
        .await?;
    tracing::info!(identity = %candidate.identity, "released the leader Lease");
    Ok(())
}

/// Competes for the Lease until `shutdown` turns true, publishing whether this replica
/// leads on `leader`. Releases the Lease on the way out.
pub async fn run(
    client: Client,
    candidate: Candidate,
    clock: Arc<dyn Clock>,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &candidate.namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        let held = match try_acquire(&api, &candidate, clock.now()).await {
            Ok(held) => {
                if held {
                    last_renewal = Some(tokio::time::Instant::now());
                }
                held
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to renew the leader Lease");
                // Keep leading only while the last renewal is still valid.
                last_renewal.is_some_and(|t| t.elapsed() < STEP_DOWN_AFTER)
            }
        };
        if !held {
            last_renewal = None;
        }
        metrics.leader.set(i64::from(held));
        leader.send_if_modified(|current| {
            let changed = *current != held;
            *current = held;
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(RENEW_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    if *leader.borrow() {
        if let Err(e) = release(&api, &candidate, clock.now()).await {
            tracing::warn!(error = %e, "failed to release the leader Lease");
        }
        leader.send_replace(false);
        metrics.leader.set(0);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures::{self, ApiServerVerifier, Step};

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/gatehouse/leases";

    fn lease_path() -> String {
        format!("{LEASES}/{LEASE_NAME}")
    }

    fn me() -> Candidate {
        Candidate {
            namespace: "gatehouse".into(),
            identity: "operator-a".into(),
        }
    }

    /// One acquisition attempt by `me()` at the fixed test time.
    async fn acquire(client: kube::Client) -> bool {
        try_acquire(
            &Api::namespaced(client, "gatehouse"),
            &me(),
            fixtures::now(),
        )
        .await
        .unwrap()
    }

    fn lease(holder: Option<&str>, renewed: &str, transitions: i32) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": "gatehouse", "resourceVersion": "41"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": renewed, "renewTime": renewed, "leaseTransitions": transitions},
        })
    }

    #[tokio::test]
    async fn an_absent_lease_is_created() {
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&lease_path()).not_found(),
            Step::post(LEASES).check(|body| {
                assert_eq!(body["spec"]["holderIdentity"], "operator-a");
                assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
                assert_eq!(body["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
            }),
        ]);
        assert!(acquire(client).await);
        verifier.done().await;
    }

    #[tokio::test]
    async fn a_fresh_lease_of_another_holder_is_left_alone() {
        let (client, verifier) =
            ApiServerVerifier::run(vec![Step::get(&lease_path()).respond(lease(
                Some("operator-b"),
                "2025-12-31T23:59:55.000000Z",
                3,
            ))]);
        assert!(!acquire(client).await);
        verifier.done().await;
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_with_its_resource_version() {
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&lease_path()).respond(lease(
                Some("operator-b"),
                "2025-12-31T23:59:30.000000Z",
                3,
            )),
            Step::put(&lease_path()).check(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "41");
                assert_eq!(body["spec"]["holderIdentity"], "operator-a");
                assert_eq!(body["spec"]["leaseTransitions"], 4);
                assert_eq!(body["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
            }),
        ]);
        assert!(acquire(client).await);
        verifier.done().await;
    }

    #[tokio::test]
    async fn the_holder_renews() {
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&lease_path()).respond(lease(
                Some("operator-a"),
                "2025-12-31T23:59:55.000000Z",
                2,
            )),
            Step::put(&lease_path()).check(|body| {
                assert_eq!(body["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
                assert_eq!(
                    body["spec"]["leaseTransitions"], 2,
                    "a renewal is no transition"
                );
            }),
        ]);
        assert!(acquire(client).await);
        verifier.done().await;
    }

    #[tokio::test]
    async fn losing_a_race_is_not_an_error() {
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&lease_path()).respond(lease(None, "2025-12-31T23:00:00.000000Z", 1)),
            Step::put(&lease_path()).fails(409, "Conflict"),
        ]);
        assert!(!acquire(client).await);
        verifier.done().await;
    }

    #[tokio::test]
    async fn release_hands_the_lease_back() {
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&lease_path()).respond(lease(
                Some("operator-a"),
                "2025-12-31T23:59:55.000000Z",
                2,
            )),
            Step::put(&lease_path()).check(|body| {
                assert!(body["spec"].get("holderIdentity").is_none());
                assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
            }),
        ]);
        release(
            &Api::namespaced(client, "gatehouse"),
            &me(),
            fixtures::now(),
        )
        .await
        .unwrap();
        verifier.done().await;
    }
}
