//! The fake API server's kubelet: it runs `batch/v1` Jobs as local processes.
//!
//! When a Job is created (directly, by server-side apply, or by
//! [`FakeApiServer::trigger_cronjob`]), the kubelet creates its Pod object
//! (`{job}-{suffix}`, labelled `batch.kubernetes.io/job-name` and `job-name`, owned by the
//! Job), runs the pod template's **first container** on this machine, stores the combined
//! stdout/stderr as the pod log (served at `pods/{name}/log`), and sets the Pod's and the
//! Job's status: `succeeded: 1` with a `Complete` condition, or `failed: 1` with a `Failed`
//! condition whose message names the exit code (or why the container could not start).
//!
//! How a container becomes a process:
//! - **Program**: an image matching an [`ImageMapping`] (by repository suffix, tag and
//!   digest ignored) runs the mapped local binary: with no `command`, the binary gets
//!   `args`; with a `command` whose first word has the binary's file name (e.g.
//!   `/usr/local/bin/authserver`), that word is replaced by the binary. Any other `command`
//!   runs as given on this machine (`/bin/sh -c …` works for any image). An unmapped image
//!   without a `command` fails the Job.
//! - **Environment**: only the container's: `env` (`value` with `$(VAR)` expansion,
//!   `valueFrom.secretKeyRef`, `configMapKeyRef`, `fieldRef` for `metadata.namespace`,
//!   `metadata.name`, `metadata.uid`, `spec.nodeName`, `spec.serviceAccountName`,
//!   `status.podIP`) and `envFrom` (Secrets and ConfigMaps, with `prefix`), read from the
//!   store when the Job starts; plus `PATH` from this process and `HOME` set to the pod's
//!   temporary directory. A missing Secret, ConfigMap or key that is not `optional` fails
//!   the Job with `CreateContainerConfigError` (a real kubelet would keep the pod pending).
//! - **Volumes**: `configMap`, `secret` and `emptyDir` volumes are written to a temporary
//!   directory per pod; every occurrence of a mount's `mountPath` (longest first, `subPath`
//!   honoured) in `command`, `args`, `env` values and `workingDir` is replaced by that local
//!   directory. A program that reads a mounted path it was not told about through those
//!   will not find it. Other volume types fail the Job.
//! - The working directory is `workingDir` (rewritten as above) or the pod's temporary
//!   directory; stdin is closed; `activeDeadlineSeconds` kills the process
//!   (`DeadlineExceeded`).
//!
//! Not modelled: retries (`backoffLimit`: one attempt), `parallelism`/`completions` > 1,
//! init and sidecar containers, containers after the first, resource limits, security
//! contexts, probes, image pulling, `ttlSecondsAfterFinished`, and running CronJobs on
//! their schedule (trigger them with [`FakeApiServer::trigger_cronjob`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
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
    /// The process's exit code, if it ran and exited.
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
    let exit_code = pod.as_ref().and_then(|p| {
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
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

/// A container ready to start.
struct Launch {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    /// The pod's temporary directory, `HOME` of the process.
    home: PathBuf,
    deadline: Option<Duration>,
}

/// How a container ended.
struct Outcome {
    exit_code: Option<i32>,
    log: String,
    /// `None` on success; the Job's failure reason and message otherwise.
    failure: Option<(&'static str, String)>,
}

async fn run_job(shared: Arc<Shared>, key: ObjKey) {
    let Some((job, pod_key)) = start_pod(&shared, &key) else {
        return;
    };
    let outcome = match tempfile::Builder::new().prefix("fake-pod-").tempdir() {
        Err(e) => Outcome {
            exit_code: None,
            log: String::new(),
            failure: Some((
                "BackoffLimitExceeded",
                format!("fake kubelet: failed to create the pod directory: {e}"),
            )),
        },
        Ok(dir) => {
            let launch = {
                let store = shared.lock();
                prepare(
                    &store,
                    &shared.options.images,
                    &job,
                    &pod_key.name,
                    dir.path(),
                )
            };
            match launch {
                Ok(launch) => execute(launch).await,
                Err(message) => Outcome {
                    exit_code: None,
                    log: String::new(),
                    failure: Some(("BackoffLimitExceeded", message)),
                },
            }
        }
    };
    finish(&shared, &key, &pod_key, outcome);
}

/// Creates the Job's Pod and marks both running; `None` when the Job is gone or suspended.
fn start_pod(shared: &Shared, key: &ObjKey) -> Option<(Value, ObjKey)> {
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
    let pod = json!({
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
        strip_nulls(pod),
        // The job controller creates a Job's pods.
        "kube-controller-manager",
        false,
    ) {
        tracing::warn!(%error, job = %job_name, "fake kubelet could not create the pod");
        return None;
    }
    let now = crate::fake_apiserver::now_rfc3339();
    store.set_status(
        &pod_key,
        json!({"phase": "Running", "podIP": "127.0.0.1", "startTime": now}),
    );
    store.set_status(key, json!({"active": 1, "startTime": now}));
    Some((job, pod_key))
}

fn finish(shared: &Shared, job_key: &ObjKey, pod_key: &ObjKey, outcome: Outcome) {
    let mut store = shared.lock();
    store.pod_logs.insert(
        (pod_key.namespace.clone(), pod_key.name.clone()),
        outcome.log,
    );
    let now = crate::fake_apiserver::now_rfc3339();
    let started = store
        .get_key(job_key)
        .map_or_else(|| now.clone().into(), |j| j["status"]["startTime"].clone());
    let container = store
        .get_key(pod_key)
        .and_then(|p| p["spec"]["containers"][0]["name"].as_str())
        .unwrap_or("main")
        .to_owned();
    let terminated = json!({
        "exitCode": outcome.exit_code.unwrap_or(128),
        "reason": if outcome.failure.is_none() { "Completed" } else { "Error" },
        "finishedAt": now,
    });
    let phase = if outcome.failure.is_none() {
        "Succeeded"
    } else {
        "Failed"
    };
    store.set_status(
        pod_key,
        json!({"phase": phase, "podIP": "127.0.0.1", "startTime": started,
               "containerStatuses": [{"name": container, "ready": false, "restartCount": 0,
                                      "state": {"terminated": terminated}}]}),
    );
    let condition = |t: &str, reason: &str, message: &str| {
        json!({"type": t, "status": "True", "reason": reason, "message": message,
               "lastProbeTime": now, "lastTransitionTime": now})
    };
    let status = match &outcome.failure {
        None => json!({
            "startTime": started, "completionTime": now, "succeeded": 1,
            "conditions": [
                condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
            ],
        }),
        Some((reason, message)) => json!({
            "startTime": started, "failed": 1,
            "conditions": [condition("FailureTarget", reason, message), condition("Failed", reason, message)],
        }),
    };
    store.set_status(job_key, status);
}

/// Builds the process for the Job's first container (see the module docs).
fn prepare(
    store: &Store,
    images: &[ImageMapping],
    job: &Value,
    pod_name: &str,
    dir: &Path,
) -> Result<Launch, String> {
    let namespace = job["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod_spec = &job["spec"]["template"]["spec"];
    let container = &pod_spec["containers"][0];
    if !container.is_object() {
        return Err("fake kubelet: the pod template has no container".into());
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let env = resolve_env(store, namespace, pod_name, pod_spec, container)?;
    let mounts = mount_volumes(store, namespace, pod_spec, container, dir)?;
    let rewrite = |s: &str| {
        mounts.iter().fold(s.to_owned(), |acc, (from, to)| {
            acc.replace(from.as_str(), to)
        })
    };
    let expand_all =
        |v: Vec<String>| -> Vec<String> { v.iter().map(|s| rewrite(&expand(s, &env))).collect() };
    let command = expand_all(strings(&container["command"]));
    let args = expand_all(strings(&container["args"]));
    let image = container["image"].as_str().unwrap_or_default();
    let mapping = images.iter().find(|m| m.matches(image));
    let (program, args) = match (command.split_first(), mapping) {
        (None, Some(m)) => (m.binary.to_string_lossy().into_owned(), args),
        (None, None) => {
            return Err(format!(
                "fake kubelet: image {image:?} has no local mapping and the container has no command"
            ));
        }
        (Some((first, rest)), m) => {
            let program = match m {
                Some(m) if Path::new(first).file_name() == m.entrypoint_name() => {
                    m.binary.to_string_lossy().into_owned()
                }
                _ => first.clone(),
            };
            (program, rest.iter().cloned().chain(args).collect())
        }
    };
    let env = env.into_iter().map(|(k, v)| (k, rewrite(&v))).collect();
    let workdir = container["workingDir"]
        .as_str()
        .map_or_else(|| dir.to_path_buf(), |w| PathBuf::from(rewrite(w)));
    let deadline = job["spec"]["activeDeadlineSeconds"]
        .as_u64()
        .map(Duration::from_secs);
    Ok(Launch {
        program,
        args,
        env,
        workdir,
        home: dir.to_path_buf(),
        deadline,
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
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let config_error = |what: String| format!("CreateContainerConfigError: {what}");
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
                return Err(config_error(format!(
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
            let key_ref = |r: &Value, kind: &str| -> Result<Option<String>, String> {
                let source = r["name"].as_str().unwrap_or_default();
                let key = r["key"].as_str().unwrap_or_default();
                let optional = r["optional"].as_bool() == Some(true);
                match source_data(store, namespace, kind, source) {
                    Some(data) => match data.get(key) {
                        Some(v) => Ok(Some(v.clone())),
                        None if optional => Ok(None),
                        None => Err(config_error(format!(
                            "couldn't find key {key} in {kind} {namespace}/{source}"
                        ))),
                    },
                    None if optional => Ok(None),
                    None => Err(config_error(format!(
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
                        return Err(config_error(format!(
                            "fake kubelet: unsupported fieldRef {other}"
                        )));
                    }
                })
            } else {
                return Err(config_error(format!(
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
) -> Result<Vec<(String, String)>, String> {
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
            .ok_or_else(|| format!("fake kubelet: volume {vol_name:?} is not defined"))?;
        let local = dir.join("volumes").join(vol_name);
        std::fs::create_dir_all(&local)
            .map_err(|e| format!("fake kubelet: failed to create {}: {e}", local.display()))?;
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
            return Err(format!(
                "fake kubelet: volume {vol_name:?} has a type the fake does not support"
            ));
        };
        if let Some((kind, spec, Some(name))) = source {
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
                        let file = local.join(&path);
                        if let Some(parent) = file.parent() {
                            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                        }
                        std::fs::write(&file, data.get(&key).cloned().unwrap_or_default())
                            .map_err(|e| {
                                format!("fake kubelet: failed to write {}: {e}", file.display())
                            })?;
                    }
                }
                None if spec["optional"].as_bool() == Some(true) => {}
                None => {
                    return Err(format!(
                        "CreateContainerConfigError: {} \"{name}\" not found",
                        kind.to_lowercase()
                    ));
                }
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

async fn execute(launch: Launch) -> Outcome {
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
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                exit_code: None,
                log: String::new(),
                failure: Some((
                    "BackoffLimitExceeded",
                    format!("fake kubelet: failed to start {}: {e}", launch.program),
                )),
            };
        }
    };
    let log = Mutex::new(Vec::new());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let pumps = async {
            if let Some(out) = stdout {
                pump(out, &log).await;
            }
        };
        let pumps_err = async {
            if let Some(err) = stderr {
                pump(err, &log).await;
            }
        };
        let ((), (), status) = tokio::join!(pumps, pumps_err, child.wait());
        status
    };
    let result = match launch.deadline {
        Some(d) => tokio::time::timeout(d, run).await.ok(),
        None => Some(run.await),
    };
    let (exit_code, failure) = match result {
        None => {
            // Best effort: the process may have exited just now.
            let _ = child.kill().await;
            (
                None,
                Some((
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline".to_owned(),
                )),
            )
        }
        Some(Err(e)) => (
            None,
            Some((
                "BackoffLimitExceeded",
                format!("fake kubelet: failed to wait for the process: {e}"),
            )),
        ),
        Some(Ok(status)) if status.success() => (status.code(), None),
        Some(Ok(status)) => (
            status.code(),
            Some((
                "BackoffLimitExceeded",
                format!(
                    "Job has reached the specified backoff limit (fake kubelet: container exited with {status})"
                ),
            )),
        ),
    };
    let log = String::from_utf8_lossy(&log.into_inner().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    Outcome {
        exit_code,
        log,
        failure,
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
    fn references_expand_and_dollar_dollar_escapes() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("x$(A)y $(B) $$(A) $", &env), "x1y $(B) $(A) $");
    }
}
