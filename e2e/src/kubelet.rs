//! The fake API server's kubelet and Job controller: it runs `batch/v1` Jobs as local
//! processes, and leaves them hanging where a real cluster would.
//!
//! When a Job is created (directly, by server-side apply, or by
//! [`FakeApiServer::trigger_cronjob`]), the kubelet creates its Pod object
//! (`{job}-{suffix}`, labelled `batch.kubernetes.io/job-name` and `job-name`, owned by the
//! Job) in phase `Pending` and marks the Job active (`startTime`, `active: 1`,
//! `ready: 0`). It then tries to start the pod template's **first container** on this
//! machine, in the real kubelet's order:
//! 1. **Volumes**: a missing non-`optional` `secret`/`configMap` volume source (or item
//!    key) keeps the container `waiting` with reason `ContainerCreating` and records a
//!    Warning Event `FailedMount` (`MountVolume.SetUp failed for volume "v" : secret "x"
//!    not found`).
//! 2. **Image**: an unmapped image without a `command` cannot be "pulled": `ErrImagePull`,
//!    a second later `ImagePullBackOff` (`Back-off pulling image "…"`), retried with the
//!    kubelet's back-off (10 s doubling to 5 min), failing each time.
//! 3. **Environment**: a missing non-`optional` Secret, ConfigMap or key in `env` or
//!    `envFrom` keeps it `waiting` with `CreateContainerConfigError` and the kubelet's
//!    message (`secret "x" not found`, `couldn't find key K in Secret ns/x`).
//!
//! Steps 1 and 3 are retried on every store change and every 200 ms, so creating the
//! missing object starts the container. Once the process runs, the Pod is `Running`
//! (`containerStatuses[0]`: `state.running.startedAt`, `imageID`, `containerID`, ready)
//! and the Job `ready: 1`. When it exits, the combined stdout/stderr is stored as the pod
//! log (served at `pods/{name}/log`; before the container starts that endpoint answers
//! 400 `… is waiting to start: <reason>` like the real one) and the Pod ends `Succeeded`
//! or `Failed` (`terminated` with exit code, `imageID` kept), the Job `succeeded: 1` with
//! `Complete`, or `failed: 1` with `FailureTarget` + `Failed`, reason
//! `BackoffLimitExceeded` and a message naming the exit status.
//!
//! The Job controller's part:
//! - `activeDeadlineSeconds`, counted from when the Job started, pending or running:
//!   the process and its process group are killed (SIGKILL, no grace period; exit code
//!   137), the Pod ends `Failed` (a never-started container as `terminated`,
//!   `ContainerStatusUnknown`), the Job `failed: 1` with `FailureTarget` + `Failed`,
//!   reason `DeadlineExceeded`, message `Job was active longer than specified deadline`.
//!   A real controller then deletes the Pod; the fake keeps it, with its log.
//! - Deleting the Pod (directly, or with its Job by garbage collection) kills the
//!   process the same way; a Job that still exists fails (`BackoffLimitExceeded`: there
//!   are no retries).
//!
//! How a container becomes a process:
//! - **Program**: an image matching an [`ImageMapping`] (by repository suffix, tag and
//!   digest ignored) runs the mapped local binary: with no `command`, the binary gets
//!   `args`; with a `command` whose first word has the binary's file name (e.g.
//!   `/usr/local/bin/authserver`), that word is replaced by the binary. Any other `command`
//!   runs as given on this machine (`/bin/sh -c …` works for any image). A program that
//!   cannot be started fails the Job (`StartError`).
//! - **Environment**: only the container's: `env` (`value` with `$(VAR)` expansion,
//!   `valueFrom.secretKeyRef`, `configMapKeyRef`, `fieldRef` for `metadata.namespace`,
//!   `metadata.name`, `metadata.uid`, `spec.nodeName`, `spec.serviceAccountName`,
//!   `status.podIP`) and `envFrom` (Secrets and ConfigMaps, with `prefix`), read from the
//!   store when the container starts; plus `PATH` from this process and `HOME` set to the
//!   pod's temporary directory.
//! - **Volumes**: `configMap`, `secret` and `emptyDir` volumes are written to a temporary
//!   directory per pod; every occurrence of a mount's `mountPath` (longest first, `subPath`
//!   honoured) in `command`, `args`, `env` values and `workingDir` is replaced by that local
//!   directory. A program that reads a mounted path it was not told about through those
//!   will not find it. Other volume types fail the Job.
//! - The working directory is `workingDir` (rewritten as above) or the pod's temporary
//!   directory; stdin is closed.
//!
//! Not modelled: retries (`backoffLimit`: one attempt, so a failed container fails the
//! Job at once), `parallelism`/`completions` > 1, init and sidecar containers, containers
//! after the first, resource limits, security contexts, probes (running means ready),
//! graceful termination, `ttlSecondsAfterFinished`, pod logs while the process runs
//! (stored when it ends), and running CronJobs on their schedule (trigger them with
//! [`FakeApiServer::trigger_cronjob`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::fake_apiserver::{
    ApiError, FakeApiServer, FieldSelector, LabelSelector, ObjKey, ResourceType, Shared, Store,
};

/// How long [`FakeApiServer::trigger_cronjob`] waits for the Job.
pub const JOB_TIMEOUT: Duration = Duration::from_mins(5);

/// Maps container images to local binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMapping {
    /// Matches an image whose repository (without tag or digest) equals this or ends in
    /// `/` followed by this: `authserver` matches `ghcr.io/gatehouse-dev/authserver:0.1.0`.
    pub repository: String,
    /// The local binary that stands in for the image's entrypoint.
    pub binary: PathBuf,
}

impl ImageMapping {
    /// Maps images of `repository` to `binary`.
    pub fn new(repository: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        Self {
            repository: repository.into(),
            binary: binary.into(),
        }
    }

    /// Maps images named `name` (any registry, tag or digest) to the workspace's debug
    /// build of the binary `name`: `$CARGO_TARGET_DIR/debug/{name}`, or `target/debug/{name}`
    /// under the workspace root when `CARGO_TARGET_DIR` is unset.
    pub fn cargo_binary(name: &str) -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
        Self::new(name, target.join("debug").join(name))
    }

    /// Whether `image` is one of this mapping's.
    pub fn matches(&self, image: &str) -> bool {
        let repo = repository(image);
        repo == self.repository
            || repo
                .strip_suffix(self.repository.as_str())
                .is_some_and(|prefix| prefix.ends_with('/'))
    }

    fn entrypoint_name(&self) -> Option<&std::ffi::OsStr> {
        self.binary.file_name()
    }
}

/// `registry/repo:tag@sha256:…` → `registry/repo`.
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// A finished Job, as [`FakeApiServer::wait_for_job`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The Job's namespace.
    pub namespace: String,
    /// The Job's name.
    pub name: String,
    /// The Pod that ran it.
    pub pod: Option<String>,
    /// `Complete` (true) or `Failed` (false).
    pub succeeded: bool,
    /// The process's exit code, if it started (137 when it was killed: deadline or
    /// deletion).
    pub exit_code: Option<i32>,
    /// The `Failed` condition's message.
    pub message: Option<String>,
    /// The pod log: the process's stdout and stderr, interleaved as read.
    pub log: String,
}

/// Why a kubelet helper could not report a Job.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The CronJob or Job to read does not exist (or was deleted while waiting).
    #[error("failed to find {kind} {namespace}/{name}")]
    NotFound {
        /// `Job` or `CronJob`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Creating the Job from a CronJob failed.
    #[error("failed to create a Job from CronJob {namespace}/{name}")]
    CreateJob {
        /// Namespace.
        namespace: String,
        /// CronJob name.
        name: String,
        /// The API error.
        #[source]
        source: ApiError,
    },
    /// The Job did not finish in time.
    #[error("failed to see Job {namespace}/{name} finish within {timeout:?}")]
    Timeout {
        /// Namespace.
        namespace: String,
        /// Job name.
        name: String,
        /// How long was waited.
        timeout: Duration,
    },
}

fn rt(store: &Store, group: &str, plural: &str) -> Option<ResourceType> {
    let version = "v1";
    store.resource(group, version, plural)
}

impl FakeApiServer {
    /// Waits until Job `namespace/name` has a `Complete` or `Failed` condition and
    /// returns its outcome and log.
    pub async fn wait_for_job(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<JobRun, KubeletError> {
        wait_for_job(self.shared(), namespace, name, timeout).await
    }

    /// Creates a Job from CronJob `namespace/name`'s `jobTemplate`, as `kubectl create job
    /// --from=cronjob/{name}` does (name `{name}-manual-{suffix}`, annotation
    /// `cronjob.kubernetes.io/instantiate: manual`, owned by the CronJob), and waits up to
    /// [`JOB_TIMEOUT`] for it to finish.
    pub async fn trigger_cronjob(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<JobRun, KubeletError> {
        let job_name = {
            let mut store = self.shared().lock();
            let not_found = || KubeletError::NotFound {
                kind: "CronJob",
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            };
            let (Some(cj_rt), Some(job_rt)) =
                (rt(&store, "batch", "cronjobs"), rt(&store, "batch", "jobs"))
            else {
                return Err(not_found());
            };
            let cj = store
                .get(&cj_rt, Some(namespace), name)
                .map_err(|_| not_found())?;
            let template = &cj["spec"]["jobTemplate"];
            let prefix: String = name.chars().take(52).collect();
            let job_name = format!("{prefix}-manual-{}", store.random_suffix());
            let mut annotations = template["metadata"]["annotations"].clone();
            if !annotations.is_object() {
                annotations = json!({});
            }
            annotations["cronjob.kubernetes.io/instantiate"] = "manual".into();
            let job = json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": job_name,
                    "namespace": namespace,
                    "labels": template["metadata"]["labels"].clone(),
                    "annotations": annotations,
                    "ownerReferences": [{
                        "apiVersion": "batch/v1", "kind": "CronJob", "name": name,
                        "uid": cj["metadata"]["uid"].clone(),
                        "controller": true, "blockOwnerDeletion": true,
                    }],
                },
                "spec": template["spec"].clone(),
            });
            store
                .create(
                    &job_rt,
                    Some(namespace),
                    strip_nulls(job),
                    // What `kubectl create job --from=cronjob/…` records.
                    "kubectl-create",
                    false,
                )
                .map_err(|source| KubeletError::CreateJob {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    source,
                })?;
            job_name
        };
        self.wait_for_job(namespace, &job_name, JOB_TIMEOUT).await
    }

    /// The stored log of a pod the kubelet ran.
    pub fn pod_log(&self, namespace: &str, pod: &str) -> Option<String> {
        self.shared()
            .lock()
            .pod_logs
            .get(&(namespace.to_owned(), pod.to_owned()))
            .cloned()
    }
}

fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            *x = strip_nulls(std::mem::take(x));
        }
    }
    v
}

fn job_finished(job: &Value) -> Option<bool> {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .find_map(|c| match c["type"].as_str() {
            Some("Complete") => Some(true),
            Some("Failed") => Some(false),
            _ => None,
        })
}

async fn wait_for_job(
    shared: &Arc<Shared>,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<JobRun, KubeletError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changed = shared.changed.clone();
    loop {
        changed.borrow_and_update();
        {
            let store = shared.lock();
            let job = rt(&store, "batch", "jobs")
                .and_then(|job_rt| store.get(&job_rt, Some(namespace), name).ok())
                .ok_or_else(|| KubeletError::NotFound {
                    kind: "Job",
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })?;
            if let Some(succeeded) = job_finished(&job) {
                return Ok(job_run(&store, namespace, name, &job, succeeded));
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() {
                return Err(KubeletError::Timeout { namespace: namespace.to_owned(), name: name.to_owned(), timeout });
            },
            () = tokio::time::sleep_until(deadline) => {
                return Err(KubeletError::Timeout { namespace: namespace.to_owned(), name: name.to_owned(), timeout });
            }
        }
    }
}

fn job_run(store: &Store, namespace: &str, name: &str, job: &Value, succeeded: bool) -> JobRun {
    let pod = rt(store, "", "pods").and_then(|pod_rt| {
        let labels = LabelSelector::parse(&format!("batch.kubernetes.io/job-name={name}")).ok()?;
        let (pods, _) = store.list(&pod_rt, Some(namespace), &labels, &FieldSelector::default());
        pods.into_iter().next()
    });
    let pod_name = pod
        .as_ref()
        .and_then(|p| p["metadata"]["name"].as_str())
        .map(str::to_owned);
    // Only a container that started has a process exit code; a pod stopped while pending
    // reports 137 (`ContainerStatusUnknown`) or 128 (`StartError`) without `startedAt`.
    let exit_code = pod.as_ref().and_then(|p| {
        let terminated = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        terminated.get("startedAt")?;
        terminated["exitCode"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
    });
    let message = job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed")
        .and_then(|c| c["message"].as_str())
        .map(str::to_owned);
    let log = pod_name
        .as_ref()
        .and_then(|p| store.pod_logs.get(&(namespace.to_owned(), p.clone())))
        .cloned()
        .unwrap_or_default();
    JobRun {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        pod: pod_name,
        succeeded,
        exit_code,
        message,
        log,
    }
}

/// The kubelet loop: runs each created Job; at shutdown running processes are killed.
pub(crate) async fn run(shared: Arc<Shared>, mut jobs: mpsc::UnboundedReceiver<ObjKey>) {
    let mut running = JoinSet::new();
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            key = jobs.recv() => match key {
                Some(key) => { running.spawn(run_job(Arc::clone(&shared), key)); }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        }
    }
    // Dropping the set aborts the Job tasks; their processes are killed on drop.
    running.abort_all();
}

/// How often a pending pod's container is retried when no store change woke the kubelet.
const RETRY: Duration = Duration::from_millis(200);
/// How long `ErrImagePull` shows before `ImagePullBackOff`: a real kubelet reports the
/// back-off from its next pod sync on.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(1);
/// The image pull back-off: 10 s, doubling, at most 5 minutes, as in the kubelet.
const PULL_BACKOFF: (Duration, Duration) = (Duration::from_secs(10), Duration::from_mins(5));

/// The Job and Pod one kubelet task works on.
struct PodRun {
    job: Value,
    job_key: ObjKey,
    pod_key: ObjKey,
    container: String,
    image: String,
    /// The Pod's `status.startTime` (also the Job's).
    start_time: String,
    /// `activeDeadlineSeconds` after the Job started.
    deadline: Option<tokio::time::Instant>,
}

/// A container ready to start.
struct Launch {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    /// The pod's temporary directory, `HOME` of the process.
    home: PathBuf,
}

/// Why the container cannot start yet (the pod stays `Pending`), or at all.
#[derive(Debug, PartialEq, Eq)]
enum NotReady {
    /// A volume's Secret or ConfigMap (or an item's key) is missing: `ContainerCreating`,
    /// with this `FailedMount` message in an Event.
    Mount(String),
    /// An unmapped image without a command: the "pull" fails (`ErrImagePull`, then
    /// `ImagePullBackOff`).
    Image,
    /// An env source is missing: `CreateContainerConfigError` with the kubelet's message.
    Config(String),
    /// Something the fake cannot run: the Job fails at once.
    Unsupported(String),
}

/// What ended a pod's container before its process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The Job controller's `activeDeadlineSeconds`.
    Deadline,
    /// The Pod was deleted (by hand, or with its Job).
    PodDeleted,
}

/// How a pod's container ended.
enum Ended {
    /// The process exited: its exit code (128 + signal when killed by one) and, on
    /// failure, a message.
    Exited { code: i32, failure: Option<String> },
    /// The container could not be started (`StartError`).
    StartError(String),
    /// The pod was stopped from outside.
    Stopped(Stop),
}

async fn run_job(shared: Arc<Shared>, key: ObjKey) {
    let Some(pod) = start_pod(&shared, &key) else {
        return;
    };
    // Outside the pod's future so that what was logged before a stop is kept.
    let log = Mutex::new(Vec::new());
    let ended = match tempfile::Builder::new().prefix("fake-pod-").tempdir() {
        Err(e) => Ended::StartError(format!(
            "fake kubelet: failed to create the pod directory: {e}"
        )),
        Ok(dir) => {
            let stop = stopped(&shared, &pod);
            tokio::pin!(stop);
            run_pod(&shared, &pod, dir.path(), &log, stop).await
        }
    };
    let log = String::from_utf8_lossy(&log.into_inner().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    finish(&shared, &pod, &ended, log);
}

/// Resolves when the Job's deadline passes or the Pod is deleted.
async fn stopped(shared: &Shared, pod: &PodRun) -> Stop {
    let deadline = async {
        match pod.deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let deleted = async {
        let mut changed = shared.changed.clone();
        loop {
            changed.borrow_and_update();
            if shared
                .lock()
                .get_key(&pod.pod_key)
                .is_none_or(|p| !p["metadata"]["deletionTimestamp"].is_null())
            {
                return;
            }
            if changed.changed().await.is_err() {
                // The server is shutting down; the kubelet task is aborted with it.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = deadline => Stop::Deadline,
        () = deleted => Stop::PodDeleted,
    }
}

/// Waits `duration` (or, with `changed`, until the store changes, whichever is first);
/// `Some` when the pod was stopped meanwhile.
async fn pause(
    stop: &mut Pin<&mut impl Future<Output = Stop>>,
    duration: Duration,
    changed: Option<&mut tokio::sync::watch::Receiver<u64>>,
) -> Option<Stop> {
    let change = async {
        match changed {
            Some(rx) => {
                let _ = rx.changed().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        s = stop.as_mut() => Some(s),
        () = tokio::time::sleep(duration) => None,
        () = change => None,
    }
}

/// Keeps the pod `Pending` until its container can start, then runs it.
async fn run_pod(
    shared: &Shared,
    pod: &PodRun,
    dir: &Path,
    log: &Mutex<Vec<u8>>,
    mut stop: Pin<&mut impl Future<Output = Stop>>,
) -> Ended {
    let mut changed = shared.changed.clone();
    let mut pull_backoff = PULL_BACKOFF.0;
    let mut mount_events = BTreeSet::new();
    let launch = loop {
        changed.borrow_and_update();
        let attempt = {
            let store = shared.lock();
            prepare(
                &store,
                &shared.options.images,
                &pod.job,
                &pod.pod_key.name,
                dir,
            )
        };
        let waited = match attempt {
            Ok(launch) => break launch,
            Err(NotReady::Unsupported(message)) => return Ended::StartError(message),
            Err(NotReady::Mount(message)) => {
                {
                    let mut store = shared.lock();
                    set_waiting(&mut store, pod, "ContainerCreating", None);
                    if mount_events.insert(message.clone()) {
                        record_event(&mut store, pod, "FailedMount", &message);
                    }
                }
                pause(&mut stop, RETRY, Some(&mut changed)).await
            }
            Err(NotReady::Config(message)) => {
                set_waiting(
                    &mut shared.lock(),
                    pod,
                    "CreateContainerConfigError",
                    Some(&message),
                );
                pause(&mut stop, RETRY, Some(&mut changed)).await
            }
            Err(NotReady::Image) => {
                // Mappings are fixed at start, so a retry fails again; the states and
                // their timing are what a real kubelet shows for an image it cannot pull.
                let message = format!(
                    "fake kubelet: failed to pull image {:?}: no ImageMapping matches it and the container has no command",
                    pod.image
                );
                set_waiting(&mut shared.lock(), pod, "ErrImagePull", Some(&message));
                if let Some(s) = pause(&mut stop, ERR_IMAGE_PULL_SHOWN, None).await {
                    return Ended::Stopped(s);
                }
                let message = format!("Back-off pulling image {:?}", pod.image);
                set_waiting(&mut shared.lock(), pod, "ImagePullBackOff", Some(&message));
                let backoff = pull_backoff;
                pull_backoff = (pull_backoff * 2).min(PULL_BACKOFF.1);
                pause(&mut stop, backoff, None).await
            }
        };
        if let Some(s) = waited {
            return Ended::Stopped(s);
        }
    };
    let child = match spawn(&launch) {
        Ok(child) => child,
        Err(message) => return Ended::StartError(message),
    };
    set_running(&mut shared.lock(), pod);
    execute(child, log, stop).await
}

/// Creates the Job's Pod (`Pending`, its container `ContainerCreating`) and marks the Job
/// active; `None` when the Job is gone or suspended.
fn start_pod(shared: &Shared, key: &ObjKey) -> Option<PodRun> {
    let mut store = shared.lock();
    let job = store.get_key(key)?.clone();
    if job["spec"]["suspend"].as_bool() == Some(true) {
        return None;
    }
    let pod_rt = rt(&store, "", "pods")?;
    let job_name = key.name.as_str();
    let template = &job["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    let uid = job["metadata"]["uid"].clone();
    for (k, v) in [
        ("batch.kubernetes.io/job-name", json!(job_name)),
        ("job-name", json!(job_name)),
        ("batch.kubernetes.io/controller-uid", uid.clone()),
        ("controller-uid", uid.clone()),
    ] {
        labels[k] = v;
    }
    let prefix: String = job_name.chars().take(57).collect();
    let pod_name = format!("{prefix}-{}", store.random_suffix());
    let new_pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": key.namespace,
            "labels": labels,
            "annotations": template["metadata"]["annotations"].clone(),
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": template["spec"].clone(),
    });
    let pod_key = ObjKey::new(&pod_rt, Some(&key.namespace), &pod_name);
    if let Err(error) = store.create(
        &pod_rt,
        Some(&key.namespace),
        strip_nulls(new_pod),
        // The job controller creates a Job's pods.
        "kube-controller-manager",
        false,
    ) {
        tracing::warn!(%error, job = %job_name, "fake kubelet could not create the pod");
        return None;
    }
    let container = &template["spec"]["containers"][0];
    let pod = PodRun {
        deadline: job["spec"]["activeDeadlineSeconds"]
            .as_u64()
            .map(|s| tokio::time::Instant::now() + Duration::from_secs(s)),
        job_key: key.clone(),
        pod_key,
        container: container["name"].as_str().unwrap_or("main").to_owned(),
        image: container["image"].as_str().unwrap_or_default().to_owned(),
        start_time: crate::fake_apiserver::now_rfc3339(),
        job,
    };
    set_waiting(&mut store, &pod, "ContainerCreating", None);
    store.set_status(
        key,
        json!({"startTime": pod.start_time, "active": 1, "ready": 0, "terminating": 0,
               "uncountedTerminatedPods": {}}),
    );
    Some(pod)
}

/// A fake but stable image digest: the image's own when it is pinned by one, otherwise the
/// SHA-256 of the image reference. Real kubelets report the resolved digest here.
fn image_id(image: &str) -> String {
    let digest = match image.split_once('@') {
        Some((_, digest)) => digest.to_owned(),
        None => format!("sha256:{}", sha256_hex(image)),
    };
    format!("docker-pullable://{}@{digest}", repository(image))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

/// The Pod status around the first container's status.
fn pod_status(pod: &PodRun, phase: &str, ready: bool, state: &Value, started: bool) -> Value {
    let ready_s = if ready { "True" } else { "False" };
    let mut container = json!({
        "name": pod.container, "image": pod.image, "ready": ready, "restartCount": 0,
        "started": started, "state": state,
        // Empty until the image is "pulled", as on a real node.
        "imageID": if state.get("waiting").is_some() { String::new() } else { image_id(&pod.image) },
    });
    if state.get("waiting").is_none() {
        container["containerID"] = format!("containerd://{}", sha256_hex(&pod.pod_key.name)).into();
    }
    json!({
        "phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "startTime": pod.start_time,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready_s},
            {"type": "Ready", "status": ready_s},
        ],
        "containerStatuses": [container],
    })
}

fn set_waiting(store: &mut Store, pod: &PodRun, reason: &str, message: Option<&str>) {
    let mut waiting = json!({"reason": reason});
    if let Some(m) = message {
        waiting["message"] = m.into();
    }
    // An unchanged status is a no-op write: no event, no wake-up of the retry loop.
    let status = pod_status(pod, "Pending", false, &json!({"waiting": waiting}), false);
    store.set_status(&pod.pod_key, status);
}

fn set_running(store: &mut Store, pod: &PodRun) {
    let now = crate::fake_apiserver::now_rfc3339();
    let status = pod_status(
        pod,
        "Running",
        true,
        &json!({"running": {"startedAt": now}}),
        true,
    );
    store.set_status(&pod.pod_key, status);
    // No readiness probes are modelled, so a running container is ready.
    store.set_status(
        &pod.job_key,
        json!({"startTime": pod.start_time, "active": 1, "ready": 1, "terminating": 0,
               "uncountedTerminatedPods": {}}),
    );
}

/// A core/v1 Warning Event about the pod, as the kubelet records one.
fn record_event(store: &mut Store, pod: &PodRun, reason: &str, message: &str) {
    let Some(event_rt) = rt(store, "", "events") else {
        return;
    };
    let now = crate::fake_apiserver::now_rfc3339();
    let uid = store
        .get_key(&pod.pod_key)
        .map_or(Value::Null, |p| p["metadata"]["uid"].clone());
    let name = format!("{}.{}", pod.pod_key.name, store.random_suffix());
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": pod.pod_key.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.pod_key.name,
                           "namespace": pod.pod_key.namespace, "uid": uid},
        "reason": reason, "message": message, "type": "Warning", "count": 1,
        "source": {"component": "kubelet", "host": "fake-node"},
        "reportingComponent": "kubelet", "reportingInstance": "fake-node",
        "firstTimestamp": now, "lastTimestamp": now,
    });
    if let Err(error) = store.create(
        &event_rt,
        Some(&pod.pod_key.namespace),
        strip_nulls(event),
        "kubelet",
        false,
    ) {
        tracing::warn!(%error, pod = %pod.pod_key.name, "fake kubelet could not record an event");
    }
}

fn finish(shared: &Shared, pod: &PodRun, ended: &Ended, log: String) {
    let mut store = shared.lock();
    let now = crate::fake_apiserver::now_rfc3339();
    if let Some(current) = store.get_key(&pod.pod_key) {
        let started_at = current["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
            .as_str()
            .map(str::to_owned);
        let (exit_code, reason, message) = match ended {
            Ended::Exited { code, failure } => (
                *code,
                if failure.is_none() {
                    "Completed"
                } else {
                    "Error"
                },
                None,
            ),
            Ended::StartError(m) => (128, "StartError", Some(m.clone())),
            // Killed with SIGKILL: the fake has no grace period.
            Ended::Stopped(_) if started_at.is_some() => (137, "Error", None),
            Ended::Stopped(_) => (
                137,
                "ContainerStatusUnknown",
                Some("The container could not be located when the pod was terminated".to_owned()),
            ),
        };
        let mut terminated = json!({"exitCode": exit_code, "reason": reason, "finishedAt": now});
        if let Some(at) = started_at {
            terminated["startedAt"] = at.into();
        }
        if let Some(m) = message {
            terminated["message"] = m.into();
        }
        let succeeded = matches!(ended, Ended::Exited { failure: None, .. });
        let phase = if succeeded { "Succeeded" } else { "Failed" };
        let status = pod_status(pod, phase, false, &json!({"terminated": terminated}), false);
        store.set_status(&pod.pod_key, status);
        store.pod_logs.insert(
            (pod.pod_key.namespace.clone(), pod.pod_key.name.clone()),
            log,
        );
    }
    let condition = |t: &str, reason: &str, message: &str| {
        json!({"type": t, "status": "True", "reason": reason, "message": message,
               "lastProbeTime": now, "lastTransitionTime": now})
    };
    let backoff_limit = |detail: &str| {
        (
            "BackoffLimitExceeded",
            format!("Job has reached the specified backoff limit ({detail})"),
        )
    };
    let failure = match ended {
        Ended::Exited { failure: None, .. } => None,
        Ended::Exited {
            failure: Some(m), ..
        }
        | Ended::StartError(m) => Some(backoff_limit(m)),
        Ended::Stopped(Stop::Deadline) => Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline".to_owned(),
        )),
        // With retries unmodelled, a deleted pod is the Job's one failed attempt.
        Ended::Stopped(Stop::PodDeleted) => Some(backoff_limit(&format!(
            "fake kubelet: pod {} was deleted",
            pod.pod_key.name
        ))),
    };
    let status = match failure {
        None => json!({
            "startTime": pod.start_time, "completionTime": now, "succeeded": 1, "ready": 0,
            "terminating": 0, "uncountedTerminatedPods": {},
            "conditions": [
                condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
            ],
        }),
        Some((reason, message)) => json!({
            "startTime": pod.start_time, "failed": 1, "ready": 0, "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [condition("FailureTarget", reason, &message), condition("Failed", reason, &message)],
        }),
    };
    // A no-op when the Job is gone (deleted with its pod).
    store.set_status(&pod.job_key, status);
}

/// Builds the process for the Job's first container (see the module docs), checking
/// what a real kubelet checks in its order: volumes, image, then the container's env.
fn prepare(
    store: &Store,
    images: &[ImageMapping],
    job: &Value,
    pod_name: &str,
    dir: &Path,
) -> Result<Launch, NotReady> {
    let namespace = job["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod_spec = &job["spec"]["template"]["spec"];
    let container = &pod_spec["containers"][0];
    if !container.is_object() {
        return Err(NotReady::Unsupported(
            "fake kubelet: the pod template has no container".into(),
        ));
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mounts = mount_volumes(store, namespace, pod_spec, container, dir)?;
    let image = container["image"].as_str().unwrap_or_default();
    let mapping = images.iter().find(|m| m.matches(image));
    let command = strings(&container["command"]);
    if command.is_empty() && mapping.is_none() {
        return Err(NotReady::Image);
    }
    let env = resolve_env(store, namespace, pod_name, pod_spec, container)?;
    let rewrite = |s: &str| {
        mounts.iter().fold(s.to_owned(), |acc, (from, to)| {
            acc.replace(from.as_str(), to)
        })
    };
    let expand_all =
        |v: Vec<String>| -> Vec<String> { v.iter().map(|s| rewrite(&expand(s, &env))).collect() };
    let command = expand_all(command);
    let args = expand_all(strings(&container["args"]));
    let (program, args) = match (command.split_first(), mapping) {
        (Some((first, rest)), m) => {
            let program = match m {
                Some(m) if Path::new(first).file_name() == m.entrypoint_name() => {
                    m.binary.to_string_lossy().into_owned()
                }
                _ => first.clone(),
            };
            (program, rest.iter().cloned().chain(args).collect())
        }
        (None, Some(m)) => (m.binary.to_string_lossy().into_owned(), args),
        (None, None) => return Err(NotReady::Image),
    };
    let env = env.into_iter().map(|(k, v)| (k, rewrite(&v))).collect();
    let workdir = container["workingDir"]
        .as_str()
        .map_or_else(|| dir.to_path_buf(), |w| PathBuf::from(rewrite(w)));
    Ok(Launch {
        program,
        args,
        env,
        workdir,
        home: dir.to_path_buf(),
    })
}

/// `$(VAR)` references to earlier variables are expanded, `$$` escapes `$`; unknown
/// references stay as written, as in Kubernetes.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = tail.strip_prefix("$(").and_then(|t| t.split_once(')'))
            && let Some((_, value)) = env.iter().rev().find(|(k, _)| k == name)
        {
            out.push_str(value);
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn decode(v: &Value) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `(kind, name)` → the object's data as text (Secret data decoded).
fn source_data(
    store: &Store,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Option<BTreeMap<String, String>> {
    let plural = if kind == "Secret" {
        "secrets"
    } else {
        "configmaps"
    };
    let source_rt = rt(store, "", plural)?;
    let obj = store.get(&source_rt, Some(namespace), name).ok()?;
    let mut data = BTreeMap::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let text = if kind == "Secret" {
            decode(v)
        } else {
            v.as_str().map(str::to_owned)
        };
        data.insert(k.clone(), text.unwrap_or_default());
    }
    for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
        data.insert(k.clone(), decode(v).unwrap_or_default());
    }
    Some(data)
}

fn resolve_env(
    store: &Store,
    namespace: &str,
    pod_name: &str,
    pod_spec: &Value,
    container: &Value,
) -> Result<Vec<(String, String)>, NotReady> {
    let mut env: Vec<(String, String)> = Vec::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or_default();
        let (kind, source) = if from["secretRef"].is_object() {
            ("Secret", &from["secretRef"])
        } else {
            ("ConfigMap", &from["configMapRef"])
        };
        let name = source["name"].as_str().unwrap_or_default();
        match source_data(store, namespace, kind, name) {
            Some(data) => env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v))),
            None if source["optional"].as_bool() == Some(true) => {}
            None => {
                return Err(NotReady::Config(format!(
                    "{} \"{name}\" not found",
                    kind.to_lowercase()
                )));
            }
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        let value_from = &var["valueFrom"];
        let value = if let Some(v) = var["value"].as_str() {
            Some(expand(v, &env))
        } else if value_from.is_object() {
            let key_ref = |r: &Value, kind: &str| -> Result<Option<String>, NotReady> {
                let source = r["name"].as_str().unwrap_or_default();
                let key = r["key"].as_str().unwrap_or_default();
                let optional = r["optional"].as_bool() == Some(true);
                match source_data(store, namespace, kind, source) {
                    Some(data) => match data.get(key) {
                        Some(v) => Ok(Some(v.clone())),
                        None if optional => Ok(None),
                        None => Err(NotReady::Config(format!(
                            "couldn't find key {key} in {kind} {namespace}/{source}"
                        ))),
                    },
                    None if optional => Ok(None),
                    None => Err(NotReady::Config(format!(
                        "{} \"{source}\" not found",
                        kind.to_lowercase()
                    ))),
                }
            };
            if value_from["secretKeyRef"].is_object() {
                key_ref(&value_from["secretKeyRef"], "Secret")?
            } else if value_from["configMapKeyRef"].is_object() {
                key_ref(&value_from["configMapKeyRef"], "ConfigMap")?
            } else if let Some(path) = value_from["fieldRef"]["fieldPath"].as_str() {
                Some(match path {
                    "metadata.namespace" => namespace.to_owned(),
                    "metadata.name" => pod_name.to_owned(),
                    "metadata.uid" => format!("fake-pod-{pod_name}"),
                    "spec.nodeName" => "fake-node".to_owned(),
                    "spec.serviceAccountName" => pod_spec["serviceAccountName"]
                        .as_str()
                        .unwrap_or("default")
                        .to_owned(),
                    "status.podIP" | "status.hostIP" => "127.0.0.1".to_owned(),
                    other => {
                        return Err(NotReady::Unsupported(format!(
                            "fake kubelet: unsupported fieldRef {other}"
                        )));
                    }
                })
            } else {
                return Err(NotReady::Unsupported(format!(
                    "fake kubelet: unsupported valueFrom for {name}"
                )));
            }
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            env.retain(|(k, _)| k != name);
            env.push((name.to_owned(), value));
        }
    }
    Ok(env)
}

/// Writes the container's volumes under `dir` and returns `(mountPath, local path)`
/// pairs, longest mount path first.
fn mount_volumes(
    store: &Store,
    namespace: &str,
    pod_spec: &Value,
    container: &Value,
    dir: &Path,
) -> Result<Vec<(String, String)>, NotReady> {
    let io_error = |what: &str, path: &Path, e: std::io::Error| {
        NotReady::Unsupported(format!(
            "fake kubelet: failed to {what} {}: {e}",
            path.display()
        ))
    };
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(vol_name), Some(mount_path)) =
            (mount["name"].as_str(), mount["mountPath"].as_str())
        else {
            continue;
        };
        let volume = pod_spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == vol_name)
            .ok_or_else(|| {
                NotReady::Unsupported(format!("fake kubelet: volume {vol_name:?} is not defined"))
            })?;
        let local = dir.join("volumes").join(vol_name);
        std::fs::create_dir_all(&local).map_err(|e| io_error("create", &local, e))?;
        let source = if volume["configMap"].is_object() {
            Some((
                "ConfigMap",
                &volume["configMap"],
                volume["configMap"]["name"].as_str(),
            ))
        } else if volume["secret"].is_object() {
            Some((
                "Secret",
                &volume["secret"],
                volume["secret"]["secretName"].as_str(),
            ))
        } else if volume["emptyDir"].is_object() {
            None
        } else {
            return Err(NotReady::Unsupported(format!(
                "fake kubelet: volume {vol_name:?} has a type the fake does not support"
            )));
        };
        if let Some((kind, spec, Some(name))) = source {
            let optional = spec["optional"].as_bool() == Some(true);
            // The kubelet's FailedMount messages.
            let failed_mount = |what: String| {
                NotReady::Mount(format!(
                    "MountVolume.SetUp failed for volume \"{vol_name}\" : {what}"
                ))
            };
            let lower = kind.to_lowercase();
            match source_data(store, namespace, kind, name) {
                Some(data) => {
                    let items: Vec<(String, String)> = match spec["items"].as_array() {
                        Some(items) => items
                            .iter()
                            .filter_map(|i| {
                                Some((
                                    i["key"].as_str()?.to_owned(),
                                    i["path"].as_str()?.to_owned(),
                                ))
                            })
                            .collect(),
                        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
                    };
                    for (key, path) in items {
                        let Some(value) = data.get(&key) else {
                            if optional {
                                continue;
                            }
                            let what = if kind == "Secret" { "secret" } else { "config" };
                            return Err(failed_mount(format!(
                                "{lower} references non-existent {what} key: {key}"
                            )));
                        };
                        let file = local.join(&path);
                        if let Some(parent) = file.parent() {
                            std::fs::create_dir_all(parent)
                                .map_err(|e| io_error("create", parent, e))?;
                        }
                        std::fs::write(&file, value).map_err(|e| io_error("write", &file, e))?;
                    }
                }
                None if optional => {}
                None => return Err(failed_mount(format!("{lower} \"{name}\" not found"))),
            }
        }
        let target = match mount["subPath"].as_str() {
            Some(sub) if !sub.is_empty() => local.join(sub),
            _ => local,
        };
        mounts.push((
            mount_path.trim_end_matches('/').to_owned(),
            target.to_string_lossy().into_owned(),
        ));
    }
    mounts.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    Ok(mounts)
}

async fn pump(mut from: impl AsyncRead + Unpin, into: &Mutex<Vec<u8>>) {
    // On the heap: the futures of running Jobs stay small.
    let mut buf = vec![0_u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        into.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(&buf[..n]);
    }
}

fn spawn(launch: &Launch) -> Result<Child, String> {
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
        .env("HOME", &launch.home)
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&launch.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that stopping the container also stops what it
        // started (`sh -c` children), as stopping a real container does.
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
        .map_err(|e| format!("fake kubelet: failed to start {}: {e}", launch.program))
}

/// Runs the container's process to its end, or kills it (and its process group) when the
/// pod is stopped.
async fn execute(
    mut child: Child,
    log: &Mutex<Vec<u8>>,
    stop: Pin<&mut impl Future<Output = Stop>>,
) -> Ended {
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let result = {
        let run = async {
            let pumps = async {
                if let Some(out) = stdout {
                    pump(out, log).await;
                }
            };
            let pumps_err = async {
                if let Some(err) = stderr {
                    pump(err, log).await;
                }
            };
            let ((), (), status) = tokio::join!(pumps, pumps_err, child.wait());
            status
        };
        tokio::select! {
            status = run => Ok(status),
            s = stop => Err(s),
        }
    };
    match result {
        Err(stop) => {
            kill_group(&mut child).await;
            Ended::Stopped(stop)
        }
        Ok(Err(e)) => Ended::Exited {
            code: 128,
            failure: Some(format!("fake kubelet: failed to wait for the process: {e}")),
        },
        Ok(Ok(status)) => Ended::Exited {
            code: status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(128),
            failure: (!status.success())
                .then(|| format!("fake kubelet: container exited with {status}")),
        },
    }
}

async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        // kill(1) rather than a signal call: the workspace forbids `unsafe`.
        let killed = tokio::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if let Err(error) = killed {
            tracing::warn!(%error, pid, "fake kubelet could not run kill(1) for a process group");
        }
    }
    // Kills the process if kill(1) could not, and reaps it either way.
    if let Err(error) = child.kill().await {
        tracing::debug!(%error, "fake kubelet: the container process was already gone");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_by_repository_suffix_ignoring_tag_and_digest() {
        let m = ImageMapping::new("authserver", "/bin/true");
        assert!(m.matches("ghcr.io/gatehouse-dev/authserver:0.1.0"));
        assert!(m.matches("authserver"));
        assert!(m.matches("localhost:5000/authserver@sha256:abc"));
        assert!(!m.matches("ghcr.io/gatehouse-dev/not-authserver:1"));
        assert_eq!(repository("localhost:5000/x"), "localhost:5000/x");
    }

    #[test]
    fn image_ids_are_the_pinned_digest_or_a_stable_hash_of_the_reference() {
        let pinned = "localhost:5000/authserver@sha256:0123";
        assert_eq!(
            image_id(pinned),
            "docker-pullable://localhost:5000/authserver@sha256:0123"
        );
        let tagged = image_id("ghcr.io/gatehouse-dev/authserver:0.1.0");
        assert_eq!(tagged, image_id("ghcr.io/gatehouse-dev/authserver:0.1.0"));
        assert_ne!(tagged, image_id("ghcr.io/gatehouse-dev/authserver:0.1.1"));
        let digest = tagged
            .strip_prefix("docker-pullable://ghcr.io/gatehouse-dev/authserver@sha256:")
            .expect("repository without the tag");
        assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    fn store_with_namespace() -> Store {
        let (changed, _) = tokio::sync::watch::channel(0);
        let mut store = Store::new(100, changed, None);
        store.ensure_namespace("ns").expect("namespace");
        store
    }

    fn job_with(container: &Value, volumes: &Value) -> Value {
        json!({"metadata": {"namespace": "ns", "name": "j"}, "spec": {"template": {"spec": {
            "containers": [container], "volumes": volumes,
        }}}})
    }

    #[test]
    fn a_missing_volume_source_is_reported_before_the_image_and_the_env() {
        let store = store_with_namespace();
        let dir = tempfile::tempdir().expect("tempdir");
        let container = json!({
            "name": "main", "image": "unmapped",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "X"}}}],
            "volumeMounts": [{"name": "v", "mountPath": "/v"}],
        });
        let volumes = json!([{"name": "v", "secret": {"secretName": "vs"}}]);
        let prepare = |job: &Value| prepare(&store, &[], job, "p", dir.path()).err();
        assert_eq!(
            prepare(&job_with(&container, &volumes)),
            Some(NotReady::Mount(
                "MountVolume.SetUp failed for volume \"v\" : secret \"vs\" not found".into()
            ))
        );
        let optional = json!([{"name": "v", "secret": {"secretName": "vs", "optional": true}}]);
        assert_eq!(
            prepare(&job_with(&container, &optional)),
            Some(NotReady::Image)
        );
        let mut with_command = container.clone();
        with_command["command"] = json!(["/bin/true"]);
        assert_eq!(
            prepare(&job_with(&with_command, &optional)),
            Some(NotReady::Config("secret \"s\" not found".into()))
        );
        let env_from = json!({"name": "main", "image": "x", "command": ["/bin/true"],
                              "envFrom": [{"configMapRef": {"name": "cm"}}]});
        assert_eq!(
            prepare(&job_with(&env_from, &json!([]))),
            Some(NotReady::Config("configmap \"cm\" not found".into()))
        );
    }

    #[test]
    fn a_missing_volume_item_key_is_a_failed_mount_unless_optional() {
        let mut store = store_with_namespace();
        let rt = rt(&store, "", "configmaps").expect("configmaps");
        store
            .create(
                &rt,
                Some("ns"),
                json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
                "test",
                false,
            )
            .expect("create");
        let dir = tempfile::tempdir().expect("tempdir");
        let container = json!({"name": "main", "image": "x", "command": ["/bin/true"],
                               "volumeMounts": [{"name": "v", "mountPath": "/v"}]});
        let items = |optional: bool| {
            json!([{"name": "v", "configMap": {"name": "c", "optional": optional,
                    "items": [{"key": "a", "path": "a"}, {"key": "b", "path": "b"}]}}])
        };
        let result = prepare(
            &store,
            &[],
            &job_with(&container, &items(false)),
            "p",
            dir.path(),
        );
        assert_eq!(
            result.err(),
            Some(NotReady::Mount(
                "MountVolume.SetUp failed for volume \"v\" : configmap references non-existent config key: b".into()
            ))
        );
        let result = prepare(
            &store,
            &[],
            &job_with(&container, &items(true)),
            "p",
            dir.path(),
        );
        assert!(result.is_ok());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("volumes/v/a")).expect("item a"),
            "1"
        );
    }

    #[test]
    fn references_expand_and_dollar_dollar_escapes() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("x$(A)y $(B) $$(A) $", &env), "x1y $(B) $(A) $");
    }
}
