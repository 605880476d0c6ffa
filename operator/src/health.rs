//! Whether the leader's controllers still work, for the liveness probe (`/healthz`).
//!
//! A process that serves HTTP is not necessarily doing its job: a controller whose event
//! stream ended reconciles nothing again, and one whose watch the API server keeps
//! refusing (RBAC removed, API server unreachable from this node) acts on an ever older
//! picture. Restarting the pod is the remedy for both (a fresh client, and leadership
//! moves to the standby meanwhile), so `/healthz` answers 503 then.
//!
//! The signals come from outside the reconcilers: [`supervise`] wraps each controller's
//! run future, [`WatchHealthLayer`] sits in the Kubernetes client and sees every LIST and
//! WATCH of the three custom resources, and [`crate::metrics::Metrics::observe`] records
//! each reconcile. [`assess`] is the decision, a pure function.
//!
//! Not detected: a single reconcile that hangs (every call it makes has a timeout), and a
//! watch that stays connected but receives nothing (kube-runtime reconnects an idle watch
//! after about five minutes, which then succeeds or fails like any other).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use tokio::sync::watch;

use crate::{client, keyset, tenant};

/// What is known about one controller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerHealth {
    /// Since when it runs; `None` while it does not (standby, or stopped on purpose).
    pub running_since: Option<Instant>,
    /// Why it stopped although it was meant to run.
    pub ended: Option<String>,
    /// The last reconcile attempt, successful or not.
    pub last_reconcile: Option<Instant>,
    /// The last LIST or WATCH of its resource that the API server accepted.
    pub last_watch_ok: Option<Instant>,
    /// Since when every LIST or WATCH of its resource failed, and the last error.
    pub watch_failing_since: Option<(Instant, String)>,
}

/// The controllers' state, shared by the client layer, the metrics and the probe.
#[derive(Debug, Default)]
pub struct Health {
    controllers: Mutex<BTreeMap<&'static str, ControllerHealth>>,
}

impl Health {
    fn update(&self, controller: &'static str, f: impl FnOnce(&mut ControllerHealth)) {
        if let Ok(mut all) = self.controllers.lock() {
            f(all.entry(controller).or_default());
        }
    }

    /// `controller` starts running now.
    pub fn started(&self, controller: &'static str, now: Instant) {
        self.update(controller, |c| {
            *c = ControllerHealth {
                running_since: Some(now),
                ..ControllerHealth::default()
            };
        });
    }

    /// `controller` stopped because it was told to (shutdown, lost Lease).
    pub fn stopped(&self, controller: &'static str) {
        self.update(controller, |c| c.running_since = None);
    }

    /// `controller` stopped although nobody asked it to.
    pub fn ended(&self, controller: &'static str, why: &str) {
        self.update(controller, |c| c.ended = Some(why.to_owned()));
    }

    /// One reconcile attempt of `controller` finished.
    pub fn reconciled(&self, controller: &'static str, now: Instant) {
        self.update(controller, |c| c.last_reconcile = Some(now));
    }

    /// A LIST or WATCH of `controller`'s resource was accepted.
    pub fn watch_ok(&self, controller: &'static str, now: Instant) {
        self.update(controller, |c| {
            c.last_watch_ok = Some(now);
            c.watch_failing_since = None;
        });
    }

    /// A LIST or WATCH of `controller`'s resource failed with `error`.
    pub fn watch_failed(&self, controller: &'static str, now: Instant, error: String) {
        self.update(controller, |c| {
            let since = c
                .watch_failing_since
                .as_ref()
                .map_or(now, |(since, _)| *since);
            c.watch_failing_since = Some((since, error));
        });
    }

    /// A copy of every controller's state.
    pub fn snapshot(&self) -> BTreeMap<&'static str, ControllerHealth> {
        self.controllers
            .lock()
            .map(|all| all.clone())
            .unwrap_or_default()
    }
}

/// How long a running controller may go without a working watch: three resync periods
/// (every object reconciles at least once per period, so this is well past any normal
/// pause), and never under five minutes, so a short API server outage or upgrade with
/// `--resync-seconds 10` does not restart the operator.
pub fn threshold(resync: Duration) -> Duration {
    (resync * 3).max(Duration::from_mins(5))
}

/// `Ok` when every running controller works; otherwise why not (the first problem, by
/// controller name). Controllers that do not run (a standby) are healthy.
pub fn assess(
    controllers: &BTreeMap<&'static str, ControllerHealth>,
    now: Instant,
    threshold: Duration,
) -> Result<(), String> {
    let age = |t: Instant| now.saturating_duration_since(t);
    for (name, c) in controllers {
        if let Some(why) = &c.ended {
            return Err(format!("controller {name} stopped: {why}"));
        }
        let Some(since) = c.running_since else {
            continue;
        };
        if let Some((failing, error)) = &c.watch_failing_since
            && age(*failing) > threshold
        {
            return Err(format!(
                "controller {name}: listing and watching its resources has failed for {}s: {error}",
                age(*failing).as_secs()
            ));
        }
        if c.last_watch_ok.is_none() && c.last_reconcile.is_none() && age(since) > threshold {
            return Err(format!(
                "controller {name}: no list or watch of its resources succeeded in the {}s since it started",
                age(since).as_secs()
            ));
        }
    }
    Ok(())
}

/// Runs a controller's future, recording that it runs and whether it ended on purpose
/// (`halt` turned true first) or by itself.
pub async fn supervise(
    health: Arc<Health>,
    controller: &'static str,
    halt: watch::Receiver<bool>,
    run: impl Future<Output = ()>,
) {
    health.started(controller, Instant::now());
    run.await;
    if *halt.borrow() {
        health.stopped(controller);
    } else {
        tracing::error!(
            controller,
            "controller stopped unexpectedly; /healthz now fails so the pod restarts"
        );
        health.ended(controller, "its event stream ended");
    }
}

/// The controller whose primary resource `method path` lists or watches: a GET of the
/// collection `/apis/gatehouse.dev/<version>/[namespaces/<ns>/]<plural>`. Owned
/// resources (Secrets, CronJobs) are not counted: their watches only add triggers.
fn watched_controller(method: &Method, path: &str) -> Option<&'static str> {
    const WATCHED: [(&str, &str); 3] = [
        ("identitytenants", tenant::CONTROLLER),
        ("oidcclients", client::CONTROLLER),
        ("signingkeysets", keyset::CONTROLLER),
    ];
    if method != Method::GET {
        return None;
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let collection = match segments.as_slice() {
        ["", "apis", "gatehouse.dev", _version, plural]
        | [
            "",
            "apis",
            "gatehouse.dev",
            _version,
            "namespaces",
            _,
            plural,
        ] => *plural,
        _ => return None,
    };
    WATCHED
        .iter()
        .find(|(plural, _)| *plural == collection)
        .map(|(_, controller)| *controller)
}

/// A tower layer for the Kubernetes client that reports each LIST and WATCH of the
/// custom resources to [`Health`] (added with `kube::client::ClientBuilder::with_layer`).
#[derive(Clone)]
pub struct WatchHealthLayer {
    health: Arc<Health>,
}

impl WatchHealthLayer {
    pub fn new(health: Arc<Health>) -> Self {
        Self { health }
    }
}

impl<S> tower::Layer<S> for WatchHealthLayer {
    type Service = WatchHealthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WatchHealthService {
            inner,
            health: Arc::clone(&self.health),
        }
    }
}

/// See [`WatchHealthLayer`].
#[derive(Clone)]
pub struct WatchHealthService<S> {
    inner: S,
    health: Arc<Health>,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for WatchHealthService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let watched = watched_controller(req.method(), req.uri().path());
        let response = self.inner.call(req);
        let health = Arc::clone(&self.health);
        Box::pin(async move {
            let result = response.await;
            if let Some(controller) = watched {
                let now = Instant::now();
                match &result {
                    Ok(r) if r.status().is_success() => health.watch_ok(controller, now),
                    Ok(r) => health.watch_failed(controller, now, format!("HTTP {}", r.status())),
                    Err(e) => health.watch_failed(controller, now, e.to_string()),
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_mins(1);
    const THRESHOLD: Duration = Duration::from_mins(15);

    fn running(since: Instant) -> ControllerHealth {
        ControllerHealth {
            running_since: Some(since),
            ..ControllerHealth::default()
        }
    }

    fn one(c: ControllerHealth) -> BTreeMap<&'static str, ControllerHealth> {
        BTreeMap::from([("oidcclient", c)])
    }

    #[test]
    fn a_standby_without_controllers_is_healthy() {
        assert_eq!(assess(&BTreeMap::new(), Instant::now(), THRESHOLD), Ok(()));
        let stopped = ControllerHealth::default();
        assert_eq!(assess(&one(stopped), Instant::now(), THRESHOLD), Ok(()));
    }

    #[test]
    fn a_controller_whose_stream_ended_is_unhealthy_at_once() {
        let t0 = Instant::now();
        let c = ControllerHealth {
            ended: Some("its event stream ended".into()),
            last_watch_ok: Some(t0),
            ..running(t0)
        };
        assert_eq!(
            assess(&one(c), t0, THRESHOLD),
            Err("controller oidcclient stopped: its event stream ended".into())
        );
    }

    #[test]
    fn a_watch_failing_for_longer_than_the_threshold_is_unhealthy() {
        let t0 = Instant::now();
        let c = ControllerHealth {
            last_watch_ok: Some(t0),
            // Reconciles from the requeue queue go on while the watch fails: not enough.
            last_reconcile: Some(t0 + 20 * MIN),
            watch_failing_since: Some((t0 + MIN, "HTTP 403 Forbidden".into())),
            ..running(t0)
        };
        assert_eq!(assess(&one(c.clone()), t0 + 15 * MIN, THRESHOLD), Ok(()));
        let e = assess(&one(c), t0 + 17 * MIN, THRESHOLD).unwrap_err();
        assert_eq!(
            e,
            "controller oidcclient: listing and watching its resources has failed for 960s: HTTP 403 Forbidden"
        );
    }

    #[test]
    fn a_controller_that_never_listed_is_unhealthy_after_the_threshold() {
        let t0 = Instant::now();
        assert_eq!(assess(&one(running(t0)), t0 + 14 * MIN, THRESHOLD), Ok(()));
        let e = assess(&one(running(t0)), t0 + 16 * MIN, THRESHOLD).unwrap_err();
        assert!(
            e.contains("no list or watch of its resources succeeded"),
            "{e}"
        );
    }

    #[test]
    fn an_idle_controller_with_a_quiet_healthy_watch_stays_healthy() {
        // No objects, so no reconciles; the watch connected once, hours ago.
        let t0 = Instant::now();
        let c = ControllerHealth {
            last_watch_ok: Some(t0),
            ..running(t0)
        };
        assert_eq!(assess(&one(c), t0 + 300 * MIN, THRESHOLD), Ok(()));
    }

    #[test]
    fn the_threshold_is_three_resyncs_but_at_least_five_minutes() {
        assert_eq!(threshold(5 * MIN), 15 * MIN);
        assert_eq!(threshold(Duration::from_secs(10)), 5 * MIN);
    }

    #[test]
    fn a_success_clears_the_failure_and_failures_keep_their_start() {
        let health = Health::default();
        let t0 = Instant::now();
        health.started("oidcclient", t0);
        health.watch_failed("oidcclient", t0 + MIN, "a".into());
        health.watch_failed("oidcclient", t0 + 2 * MIN, "b".into());
        let c = health.snapshot()["oidcclient"].clone();
        assert_eq!(c.watch_failing_since, Some((t0 + MIN, "b".into())));
        health.watch_ok("oidcclient", t0 + 3 * MIN);
        let c = health.snapshot()["oidcclient"].clone();
        assert_eq!(
            (c.watch_failing_since, c.last_watch_ok),
            (None, Some(t0 + 3 * MIN))
        );
    }

    #[test]
    fn only_collection_gets_of_the_custom_resources_count_as_watches() {
        let get = |p: &str| watched_controller(&Method::GET, p);
        assert_eq!(
            get("/apis/gatehouse.dev/v1alpha1/identitytenants"),
            Some(tenant::CONTROLLER)
        );
        assert_eq!(
            get("/apis/gatehouse.dev/v1alpha1/oidcclients"),
            Some(client::CONTROLLER)
        );
        assert_eq!(
            get("/apis/gatehouse.dev/v1alpha1/namespaces/shop/oidcclients"),
            Some(client::CONTROLLER)
        );
        assert_eq!(
            get("/apis/gatehouse.dev/v1alpha1/signingkeysets"),
            Some(keyset::CONTROLLER)
        );
        assert_eq!(
            get("/apis/gatehouse.dev/v1alpha1/identitytenants/acme"),
            None
        );
        assert_eq!(get("/apis/batch/v1/namespaces/gatehouse/cronjobs"), None);
        assert_eq!(get("/api/v1/secrets"), None);
        assert_eq!(
            watched_controller(
                &Method::PATCH,
                "/apis/gatehouse.dev/v1alpha1/identitytenants"
            ),
            None
        );
    }

    #[tokio::test]
    async fn the_client_layer_reports_accepted_and_refused_watches() {
        use tower::{Layer as _, ServiceExt as _};
        let health = Arc::new(Health::default());
        let layer = WatchHealthLayer::new(Arc::clone(&health));
        let status = |code: u16| {
            layer.layer(tower::service_fn(move |_req: Request<()>| async move {
                Ok::<_, std::io::Error>(Response::builder().status(code).body(()).unwrap())
            }))
        };
        let list = || {
            Request::get("/apis/gatehouse.dev/v1alpha1/oidcclients?watch=true")
                .body(())
                .unwrap()
        };
        status(403).oneshot(list()).await.unwrap();
        let c = health.snapshot()["oidcclient"].clone();
        assert_eq!(c.watch_failing_since.unwrap().1, "HTTP 403 Forbidden");
        status(200).oneshot(list()).await.unwrap();
        let c = health.snapshot()["oidcclient"].clone();
        assert!(c.watch_failing_since.is_none() && c.last_watch_ok.is_some());
        let refused = layer.layer(tower::service_fn(|_req: Request<()>| async {
            Err::<Response<()>, _>(std::io::Error::other("connection refused"))
        }));
        refused.oneshot(list()).await.unwrap_err();
        let c = health.snapshot()["oidcclient"].clone();
        assert_eq!(c.watch_failing_since.unwrap().1, "connection refused");
    }
}
