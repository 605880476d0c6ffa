//! Leader election with a `coordination.k8s.io/v1` Lease (`gatehouse-operator` in the
//! operator's namespace), so several replicas can run and only one reconciles.
//!
//! The semantics are client-go's (`tools/leaderelection`), for the same reasons:
//! - A Lease held by someone else counts as expired only when this replica has seen the
//!   *same* record, unchanged, for `leaseDurationSeconds` of its own monotonic time. The
//!   holder's `renewTime` is written by another machine's clock and is never compared
//!   with ours, so clock skew cannot hand the Lease to a second leader.
//! - Every round (read, then write with the `resourceVersion` read: a concurrent writer
//!   loses with 409) runs under a timeout. The leader must renew within
//!   [`RENEW_DEADLINE`] of the start of its last successful round, else it stops leading;
//!   a standby can take over only [`LEASE_DURATION`] after it saw that renewal, so the
//!   old leader has stopped its controllers for at least the difference (5 s) before
//!   anybody else starts.
//! - On shutdown the Lease is released only after the caller says its controllers have
//!   stopped, so a standby never starts while the old leader is still writing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::context::Clock;
use crate::metrics::Metrics;

/// Name of the Lease of the default instance (a named one appends `-<instance>`).
pub const LEASE_NAME: &str = "gatehouse-operator";
/// How long a standby waits, after it last saw the Lease change, before taking it over.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A leader that has not renewed within this time (measured from the start of its last
/// successful round) stops leading.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between rounds, for the leader (renewal) and the standbys (acquisition).
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Who competes for the Lease, and where.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub namespace: String,
    /// The Lease: [`LEASE_NAME`], with the instance appended for a named instance, so
    /// two instances sharing a namespace each elect their own leader.
    pub lease: String,
    pub identity: String,
}

fn lease_seconds() -> i32 {
    i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX)
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// There is none: create it.
    Create,
    /// We hold it: write a new `renewTime`.
    Renew,
    /// It is vacant, or its holder stopped renewing: write ourselves in.
    TakeOver,
    /// Someone else holds it and renewed it recently enough.
    Wait,
}

/// The record this replica last saw and when it first saw it (its own monotonic time).
#[derive(Debug, Clone)]
pub struct Observed {
    pub record: LeaseSpec,
    pub since: Instant,
}

/// Decides from what was read. `observed` must already be updated with this read
/// (see [`Elector::observe`]), so its `since` is when this exact record was first seen.
pub fn plan(
    lease: Option<&LeaseSpec>,
    me: &str,
    observed: Option<&Observed>,
    now: Instant,
) -> Plan {
    let Some(spec) = lease else {
        return Plan::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => Plan::Renew,
        None | Some("") => Plan::TakeOver,
        Some(_) => {
            let duration = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or_else(lease_seconds))
                    .unwrap_or(0),
            );
            match observed {
                Some(seen) if seen.record == *spec && seen.since + duration <= now => {
                    Plan::TakeOver
                }
                _ => Plan::Wait,
            }
        }
    }
}

/// One replica's side of the election: the Lease API and what it has observed.
pub struct Elector {
    api: Api<Lease>,
    candidate: Candidate,
    clock: Arc<dyn Clock>,
    observed: Option<Observed>,
}

impl Elector {
    pub fn new(client: Client, candidate: Candidate, clock: Arc<dyn Clock>) -> Self {
        Self {
            api: Api::namespaced(client, &candidate.namespace),
            candidate,
            clock,
            observed: None,
        }
    }

    /// Remembers `record`, restarting the expiry wait when it differs from the last one.
    fn observe(&mut self, record: &LeaseSpec, now: Instant) {
        if self.observed.as_ref().is_none_or(|o| o.record != *record) {
            self.observed = Some(Observed {
                record: record.clone(),
                since: now,
            });
        }
    }

    /// One round: create, renew or take over the Lease. `Ok(true)` when this candidate
    /// holds it afterwards; `Ok(false)` when someone else does (or won a race).
    pub async fn try_acquire_or_renew(&mut self) -> kube::Result<bool> {
        let wall = MicroTime(self.clock.now());
        let Some(mut lease) = self.api.get_opt(&self.candidate.lease).await? else {
            let spec = LeaseSpec {
                holder_identity: Some(self.candidate.identity.clone()),
                lease_duration_seconds: Some(lease_seconds()),
                acquire_time: Some(wall.clone()),
                renew_time: Some(wall),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.candidate.lease.clone()),
                    namespace: Some(self.candidate.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observe(&spec, Instant::now());
                    tracing::info!(identity = %self.candidate.identity, "created the leader Lease");
                    Ok(true)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let now = Instant::now();
        self.observe(&current, now);
        let mut spec = current;
        let planned = plan(
            Some(&spec),
            &self.candidate.identity,
            self.observed.as_ref(),
            now,
        );
        match planned {
            Plan::Wait => return Ok(false),
            Plan::Renew => {}
            Plan::Create | Plan::TakeOver => {
                spec.holder_identity = Some(self.candidate.identity.clone());
                spec.acquire_time = Some(wall.clone());
                spec.lease_transitions =
                    Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
        }
        spec.renew_time = Some(wall);
        spec.lease_duration_seconds = Some(lease_seconds());
        lease.spec = Some(spec.clone());
        // `replace` sends the resourceVersion we read: a concurrent change makes it fail.
        match self
            .api
            .replace(&self.candidate.lease, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observe(&spec, Instant::now());
                if planned != Plan::Renew {
                    tracing::info!(identity = %self.candidate.identity, "acquired the leader Lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (if held) so a standby replica takes over without waiting for it
    /// to expire.
    pub async fn release(&mut self) -> kube::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.candidate.lease).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.candidate.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(self.clock.now()));
        lease.spec = Some(spec);
        self.api
            .replace(&self.candidate.lease, &PostParams::default(), &lease)
            .await?;
        tracing::info!(identity = %self.candidate.identity, "released the leader Lease");
        Ok(())
    }
}

/// Competes for the Lease until `release` turns true, publishing whether this replica
/// leads on `leader`. The caller turns `release` true once its controllers have stopped;
/// until then a leader keeps renewing. A leader that misses [`RENEW_DEADLINE`] publishes
/// `false` and keeps competing (the caller decides whether to exit).
pub async fn run(
    elector: Elector,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    release: watch::Receiver<bool>,
) {
    run_with(elector, leader, metrics, release, RETRY_PERIOD).await;
}

async fn run_with(
    mut elector: Elector,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    mut release: watch::Receiver<bool>,
    retry: Duration,
) {
    // Start of the last successful round while leading.
    let mut renewed: Option<Instant> = None;
    loop {
        let started = Instant::now();
        // A leader's round may last until its renew deadline; a standby's one period.
        let budget = renewed.map_or(retry, |t| RENEW_DEADLINE.saturating_sub(started - t));
        let held = match tokio::time::timeout(budget, elector.try_acquire_or_renew()).await {
            Ok(Ok(true)) => {
                renewed = Some(started);
                true
            }
            Ok(Ok(false)) => false,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "failed to read or write the leader Lease");
                renewed.is_some_and(|t| t.elapsed() < RENEW_DEADLINE)
            }
            Err(_) => {
                tracing::warn!(timeout = ?budget, "the leader Lease round timed out");
                renewed.is_some_and(|t| t.elapsed() < RENEW_DEADLINE)
            }
        };
        if !held {
            if renewed.is_some() {
                tracing::error!(identity = %elector.candidate.identity, "could not renew the leader Lease in time: no longer leading");
            }
            renewed = None;
        }
        metrics.leader.set(i64::from(held));
        leader.send_if_modified(|current| {
            let changed = *current != held;
            *current = held;
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            _ = release.wait_for(|stop| *stop) => break,
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        metrics.leader.set(0);
        match tokio::time::timeout(RENEW_DEADLINE, elector.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "failed to release the leader Lease"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};

    use jiff::Timestamp;

    use super::*;
    use crate::fixtures::{self, ApiServerVerifier, Step};

    type Timeline = Arc<Mutex<Vec<(Instant, &'static str, bool)>>>;

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/gatehouse/leases";

    fn lease_path() -> String {
        format!("{LEASES}/{LEASE_NAME}")
    }

    fn me() -> Candidate {
        Candidate {
            namespace: "gatehouse".into(),
            lease: LEASE_NAME.into(),
            identity: "operator-a".into(),
        }
    }

    fn elector(client: Client) -> Elector {
        Elector::new(client, me(), Arc::new(fixtures::clock()))
    }

    fn lease(holder: Option<&str>, renewed: &str, transitions: i32) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": "gatehouse", "resourceVersion": "41"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": renewed, "renewTime": renewed, "leaseTransitions": transitions},
        })
    }

    fn spec(holder: Option<&str>, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(Into::into),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn the_plan_follows_client_go() {
        let now = Instant::now();
        let other = spec(Some("operator-b"), fixtures::now());
        let seen = |since| Observed {
            record: other.clone(),
            since,
        };
        assert_eq!(plan(None, "operator-a", None, now), Plan::Create);
        assert_eq!(
            plan(
                Some(&spec(Some("operator-a"), fixtures::now())),
                "operator-a",
                None,
                now
            ),
            Plan::Renew
        );
        assert_eq!(
            plan(Some(&spec(None, fixtures::now())), "operator-a", None, now),
            Plan::TakeOver
        );
        assert_eq!(
            plan(
                Some(&spec(Some(""), fixtures::now())),
                "operator-a",
                None,
                now
            ),
            Plan::TakeOver
        );
        // First sight of someone else's Lease: wait a whole duration, whatever it says.
        assert_eq!(
            plan(Some(&other), "operator-a", Some(&seen(now)), now),
            Plan::Wait
        );
        assert_eq!(
            plan(
                Some(&other),
                "operator-a",
                Some(&seen(now)),
                now + Duration::from_secs(14)
            ),
            Plan::Wait
        );
        assert_eq!(
            plan(
                Some(&other),
                "operator-a",
                Some(&seen(now)),
                now + LEASE_DURATION
            ),
            Plan::TakeOver
        );
        // A record that changed since (a renewal) starts the wait again.
        let mut renewed = other.clone();
        renewed.renew_time = Some(MicroTime(
            fixtures::now() + jiff::SignedDuration::from_secs(2),
        ));
        assert_eq!(
            plan(
                Some(&renewed),
                "operator-a",
                Some(&seen(now)),
                now + LEASE_DURATION
            ),
            Plan::Wait
        );
    }

    #[test]
    fn the_holders_clock_does_not_matter() {
        // A renewTime an hour in the past (the holder's clock is behind ours) is no
        // reason to take over on first sight; one in the future no reason to wait longer.
        let now = Instant::now();
        for skew in [-3600, 3600] {
            let record = spec(
                Some("operator-b"),
                fixtures::now() + jiff::SignedDuration::from_secs(skew),
            );
            let seen = Observed {
                record: record.clone(),
                since: now,
            };
            assert_eq!(
                plan(Some(&record), "operator-a", Some(&seen), now),
                Plan::Wait
            );
            assert_eq!(
                plan(
                    Some(&record),
                    "operator-a",
                    Some(&seen),
                    now + LEASE_DURATION
                ),
                Plan::TakeOver
            );
        }
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
        assert!(elector(client).try_acquire_or_renew().await.unwrap());
        verifier.done().await;
    }

    #[tokio::test(start_paused = true)]
    async fn another_holders_lease_is_taken_over_only_after_it_stayed_unchanged_for_its_duration() {
        // Renewed "an hour ago" by the holder's clock: irrelevant. What counts is that
        // this replica sees the same record for 15 s of its own time.
        let stale = lease(Some("operator-b"), "2025-12-31T23:00:00.000000Z", 3);
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&lease_path()).respond(stale.clone()),
            Step::get(&lease_path()).respond(stale.clone()),
            Step::get(&lease_path()).respond(stale),
            Step::put(&lease_path()).check(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "41");
                assert_eq!(body["spec"]["holderIdentity"], "operator-a");
                assert_eq!(body["spec"]["leaseTransitions"], 4);
                assert_eq!(body["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
            }),
        ]);
        let mut elector = elector(client);
        assert!(
            !elector.try_acquire_or_renew().await.unwrap(),
            "first sight"
        );
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!elector.try_acquire_or_renew().await.unwrap(), "14 s later");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(elector.try_acquire_or_renew().await.unwrap(), "15 s later");
        verifier.done().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewed_lease_is_left_alone() {
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&lease_path()).respond(lease(
                Some("operator-b"),
                "2025-12-31T23:00:00.000000Z",
                3,
            )),
            Step::get(&lease_path()).respond(lease(
                Some("operator-b"),
                "2025-12-31T23:00:10.000000Z",
                3,
            )),
        ]);
        let mut elector = elector(client);
        assert!(!elector.try_acquire_or_renew().await.unwrap());
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(
            !elector.try_acquire_or_renew().await.unwrap(),
            "it changed: wait again"
        );
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
                assert_eq!(body["spec"]["acquireTime"], "2025-12-31T23:59:55.000000Z");
            }),
        ]);
        assert!(elector(client).try_acquire_or_renew().await.unwrap());
        verifier.done().await;
    }

    #[tokio::test]
    async fn losing_a_race_is_not_an_error() {
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&lease_path()).respond(lease(None, "2025-12-31T23:00:00.000000Z", 1)),
            Step::put(&lease_path()).fails(409, "Conflict"),
        ]);
        assert!(!elector(client).try_acquire_or_renew().await.unwrap());
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
        elector(client).release().await.unwrap();
        verifier.done().await;
    }

    /// An in-memory Lease store behind a `kube::Client` per replica: GET, POST, PUT with
    /// `resourceVersion` conflicts (409) as the API server does, and a switch per replica
    /// that makes its calls hang (a stalled connection, an overloaded API server).
    #[derive(Default)]
    struct LeaseServer {
        lease: Mutex<Option<Value>>,
        version: Mutex<u64>,
    }

    impl LeaseServer {
        fn handle(&self, method: &Method, body: &[u8]) -> (StatusCode, Value) {
            let mut lease = self.lease.lock().unwrap();
            let mut version = self.version.lock().unwrap();
            let status = |code: u16, reason: &str| {
                json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                       "reason": reason, "code": code, "message": reason, "metadata": {}})
            };
            match *method {
                Method::GET => match lease.as_ref() {
                    Some(l) => (StatusCode::OK, l.clone()),
                    None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
                },
                Method::POST | Method::PUT => {
                    let mut new: Value = serde_json::from_slice(body).unwrap();
                    let exists = lease.is_some();
                    if *method == Method::POST && exists {
                        return (StatusCode::CONFLICT, status(409, "AlreadyExists"));
                    }
                    if *method == Method::PUT {
                        let live = lease
                            .as_ref()
                            .map(|l| l["metadata"]["resourceVersion"].clone());
                        if live != Some(new["metadata"]["resourceVersion"].clone()) {
                            return (StatusCode::CONFLICT, status(409, "Conflict"));
                        }
                    }
                    *version += 1;
                    new["metadata"]["resourceVersion"] = json!(version.to_string());
                    *lease = Some(new.clone());
                    (StatusCode::OK, new)
                }
                _ => (
                    StatusCode::METHOD_NOT_ALLOWED,
                    status(405, "MethodNotAllowed"),
                ),
            }
        }

        fn holder(&self) -> Option<String> {
            self.lease
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|l| l["spec"]["holderIdentity"].as_str().map(ToOwned::to_owned))
        }

        /// A client of this server for one replica; `stalled` makes its calls hang.
        fn client(self: &Arc<Self>, stalled: Arc<AtomicBool>) -> Client {
            let server = Arc::clone(self);
            let service = tower::service_fn(move |req: Request<Body>| {
                let server = Arc::clone(&server);
                let stalled = Arc::clone(&stalled);
                async move {
                    if stalled.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    let method = req.method().clone();
                    let bytes = req.into_body().collect_bytes().await.unwrap();
                    let (code, reply) = server.handle(&method, &bytes);
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .status(code)
                            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                            .unwrap(),
                    )
                }
            });
            Client::new(service, "gatehouse")
        }
    }

    /// A wall clock that runs with tokio's (paused) time, `skew` seconds off.
    struct SkewedClock {
        start: Instant,
        at_start: Timestamp,
    }

    impl Clock for SkewedClock {
        fn now(&self) -> Timestamp {
            let elapsed = jiff::SignedDuration::try_from(self.start.elapsed()).unwrap();
            self.at_start + elapsed
        }
    }

    fn skewed(skew: i64) -> Arc<dyn Clock> {
        Arc::new(SkewedClock {
            start: Instant::now(),
            at_start: fixtures::now() + jiff::SignedDuration::from_secs(skew),
        })
    }

    struct Replica {
        leader: watch::Receiver<bool>,
        stalled: Arc<AtomicBool>,
        release: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    fn replica(server: &Arc<LeaseServer>, identity: &str, skew: i64) -> Replica {
        let stalled = Arc::new(AtomicBool::new(false));
        let elector = Elector::new(
            server.client(Arc::clone(&stalled)),
            Candidate {
                namespace: "gatehouse".into(),
                lease: LEASE_NAME.into(),
                identity: identity.into(),
            },
            skewed(skew),
        );
        let (leader_tx, leader) = watch::channel(false);
        let (release, release_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            elector,
            leader_tx,
            Arc::new(Metrics::new()),
            release_rx,
        ));
        Replica {
            leader,
            stalled,
            release,
            task,
        }
    }

    /// Records (time, replica, leading) for every change of either replica's flag.
    fn timeline(replicas: &[(&'static str, watch::Receiver<bool>)]) -> Timeline {
        let log = Arc::new(Mutex::new(Vec::new()));
        for (name, rx) in replicas {
            let (name, mut rx, log) = (*name, rx.clone(), Arc::clone(&log));
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let leading = *rx.borrow_and_update();
                    log.lock().unwrap().push((Instant::now(), name, leading));
                }
            });
        }
        log
    }

    /// Never two leaders at once, by the flags each replica published.
    fn assert_one_leader_at_a_time(log: &[(Instant, &str, bool)]) {
        let mut leading: HashMap<&str, bool> = HashMap::new();
        for (_, name, flag) in log {
            leading.insert(name, *flag);
            assert!(
                leading.values().filter(|l| **l).count() <= 1,
                "two leaders at once: {log:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_leader_stops_leading_before_a_standby_with_a_skewed_clock_takes_over() {
        let server = Arc::new(LeaseServer::default());
        // A's wall clock is an hour behind, B's ten minutes ahead.
        let a = replica(&server, "operator-a", -3600);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let b = replica(&server, "operator-b", 600);
        let log = timeline(&[("a", a.leader.clone()), ("b", b.leader.clone())]);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            *a.leader.borrow() && !*b.leader.borrow(),
            "A created the Lease and keeps it"
        );
        assert_eq!(server.holder().as_deref(), Some("operator-a"));

        // A's API calls hang from now on (its GET/PUT never answer).
        let stalled_at = Instant::now();
        a.stalled.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert!(!*a.leader.borrow(), "A stepped down");
        assert!(*b.leader.borrow(), "B took over");
        assert_eq!(server.holder().as_deref(), Some("operator-b"));

        let log = log.lock().unwrap().clone();
        assert_one_leader_at_a_time(&log);
        let a_down = log.iter().find(|(_, n, l)| *n == "a" && !l).unwrap().0;
        let b_up = log.iter().find(|(_, n, l)| *n == "b" && *l).unwrap().0;
        assert!(
            a_down - stalled_at <= RENEW_DEADLINE,
            "A led {:?} after its last renewal began",
            a_down - stalled_at
        );
        assert!(
            b_up - a_down >= Duration::from_secs(3), // lease duration − renew deadline − one retry period
            "B started {:?} after A stopped",
            b_up - a_down
        );
        a.task.abort();
        b.task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_is_released_only_when_the_caller_says_its_controllers_stopped() {
        let server = Arc::new(LeaseServer::default());
        let a = replica(&server, "operator-a", 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = replica(&server, "operator-b", 0);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(*a.leader.borrow());
        // Draining takes a while: A keeps renewing, B keeps waiting.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(server.holder().as_deref(), Some("operator-a"));
        assert!(!*b.leader.borrow());
        a.release.send_replace(true);
        a.task.await.unwrap();
        assert_eq!(server.holder(), None, "released");
        assert!(!*a.leader.borrow());
        tokio::time::sleep(RETRY_PERIOD * 2).await;
        assert!(*b.leader.borrow(), "B took the released Lease at once");
        b.task.abort();
    }
}
