//! Schema migration gating. Once per authserver image (and per image digest, when the
//! pods report one) the operator runs a Job `gatehouse-migrate-<tag>-<hash>`
//! (`authserver migrate`, same image and database Secret as the auth pods), waits for
//! it, and records the image and its digest in the ConfigMap `gatehouse-operator-status`.
//! Until then every reconcile of a tenant, client or key set stops with `Ready=False`,
//! reason `MigrationPending` (naming the pod's waiting reason, e.g. `ImagePullBackOff`)
//! or `MigrationFailed`, because the admin API of a newer auth server may need the new
//! schema.
//!
//! The Job cannot hang: `activeDeadlineSeconds` (`--migration-deadline-seconds`) fails it
//! when its pod never starts (an image that cannot be pulled, a missing Secret, no node),
//! and the failure is announced in a Warning Event on the Job with the pod's last log
//! lines or its waiting reason. The Job's name hashes its whole spec, so changing the
//! image, the Secrets or the pod overlay starts a new Job; a failed Job is left in place
//! (its pods' logs stay readable) and deleting it retries.
//!
//! After a success the operator keeps looking at the auth pods: one that runs the
//! configured image with a digest not migrated yet (a re-pushed tag) makes it migrate
//! again, with a Job pinned to that digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource as _, ResourceExt as _};
use serde_json::json;
use tokio::sync::watch;

use crate::authserver_pod::{self, bounded_name, short_hash};
use crate::context::{Clock, Config, Events, truncate};
use crate::metrics::Metrics;

/// The ConfigMap (in `--namespace`) where the operator records what it migrated.
pub const STATUS_CONFIG_MAP: &str = "gatehouse-operator-status";
/// Key of the migrated image in [`STATUS_CONFIG_MAP`].
pub const MIGRATED_IMAGE_KEY: &str = "migratedImage";
/// Key of the digests migrated for that image (comma-separated, newest last).
pub const MIGRATED_DIGESTS_KEY: &str = "migratedDigests";
/// Field manager of the migration Job and the status ConfigMap.
pub const FIELD_MANAGER: &str = "gatehouse-operator/migration";
/// `app.kubernetes.io/component` of migration Jobs.
const COMPONENT: &str = "migration";
/// Label selector of the auth server's pods (the chart's Deployment), narrowed to the
/// instance (the chart labels the auth pods of a named instance with it).
const AUTH_PODS: &str = "app.kubernetes.io/name=gatehouse,app.kubernetes.io/component=authserver";
/// How often the Job is checked while it runs.
const POLL: Duration = Duration::from_secs(5);
/// How often the auth pods' digests are checked after a success.
const RECHECK: Duration = Duration::from_secs(30);
/// Retries of the migration pod before the Job counts as failed.
const BACKOFF_LIMIT: i32 = 3;
/// Digests remembered per image (a rolling update runs two at once).
const DIGESTS_KEPT: usize = 10;
/// Log lines of the failed pod quoted in the Event.
const LOG_LINES: i64 = 20;

/// Where the schema migration for the configured image stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// Not checked yet, or the Job has not finished.
    Pending { message: String },
    /// The Job failed; `message` carries its failure condition.
    Failed { message: String },
    /// The schema is migrated for the configured image.
    Succeeded,
}

/// Why a reconcile must wait for the migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Pending(String),
    Failed(String),
}

impl MigrationState {
    /// The initial state: nothing checked yet.
    pub fn unchecked(image: &str) -> Self {
        MigrationState::Pending {
            message: format!("checking the schema migration for {image}"),
        }
    }

    /// `Ok` once reconciles may talk to the auth server.
    pub fn gate(&self) -> Result<(), Gate> {
        match self {
            MigrationState::Succeeded => Ok(()),
            MigrationState::Pending { message } => Err(Gate::Pending(message.clone())),
            MigrationState::Failed { message } => Err(Gate::Failed(message.clone())),
        }
    }
}

/// Why checking or starting the migration failed (the check is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read ConfigMap {STATUS_CONFIG_MAP}: {0}")]
    ReadStatus(#[source] kube::Error),
    #[error("failed to list pods ({what}): {source}")]
    ListPods {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read migration Job {name}: {source}")]
    ReadJob {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to create migration Job {name}: {source}")]
    CreateJob {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to record the migration in ConfigMap {STATUS_CONFIG_MAP}: {0}")]
    RecordStatus(#[source] kube::Error),
}

/// `gatehouse-migrate-<tag>-<hash>`: a readable tag, a hash of the image and of
/// `fingerprint` (the Job's spec), at most 63 characters (the name becomes a label value).
pub fn job_name(image: &str, fingerprint: &str) -> String {
    // The tag is what follows the last ':' after the last '/', before any digest.
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let tag = match last.rsplit_once(':') {
        Some((_, tag)) => tag,
        None if image.contains('@') => "digest",
        None => "latest",
    };
    let mut sanitized: String = tag
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    sanitized.truncate(36);
    let sanitized = sanitized.trim_matches('-');
    let sanitized = if sanitized.is_empty() {
        "image"
    } else {
        sanitized
    };
    bounded_name(
        "gatehouse-migrate-",
        &format!(
            "{sanitized}-{}",
            short_hash(&format!("{image}\n{fingerprint}"))
        ),
        63,
    )
}

/// The migration Job running `image` (the configured one, or it pinned to a digest).
pub fn build_job(config: &Config, image: &str) -> Job {
    let mut labels = authserver_pod::labels(COMPONENT);
    // In the spec's hash too: two instances sharing a namespace get Jobs of their own.
    labels.extend(config.scope.labels());
    let mut template =
        authserver_pod::pod_template(config, labels.clone(), vec!["migrate".to_owned()]);
    if let Some(container) = template
        .spec
        .as_mut()
        .and_then(|s| s.containers.first_mut())
    {
        container.image = Some(image.to_owned());
    }
    let spec = JobSpec {
        backoff_limit: Some(BACKOFF_LIMIT),
        active_deadline_seconds: Some(
            i64::try_from(config.migration_deadline.as_secs()).unwrap_or(i64::MAX),
        ),
        // No ttlSecondsAfterFinished: the result (and a failure's pod logs) stays
        // visible until the next image's migration succeeds.
        template,
        ..JobSpec::default()
    };
    let fingerprint = serde_json::to_string(&spec).unwrap_or_default();
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(image, &fingerprint)),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "gatehouse.dev/authserver-image".to_owned(),
                image.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Why a Job's pod is not running, when its status says: a container waiting with a
/// reason (`ImagePullBackOff`, `CreateContainerConfigError`, …) or no node to run on.
pub fn pod_waiting(pod: &Pod) -> Option<String> {
    let name = pod.name_any();
    let status = pod.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in statuses {
        if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = &waiting.reason
        {
            let detail = match &waiting.message {
                Some(m) if !m.is_empty() => format!("{reason}: {}", truncate(m, 300)),
                _ => reason.clone(),
            };
            return Some(format!("pod {name} waiting: {detail}"));
        }
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            format!(
                "pod {name} not scheduled: {}",
                truncate(c.message.as_deref().unwrap_or("no reason given"), 300)
            )
        })
}

/// The `sha256:…` digest in a container status's `imageID`
/// (`docker-pullable://repo@sha256:…`, `repo@sha256:…` or `sha256:…`).
pub fn digest(image_id: &str) -> Option<&str> {
    let tail = image_id.rsplit('@').next()?;
    let hex = tail.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(tail)
}

/// Digests of the containers in `pods` that run `image`.
pub fn digests_of(pods: &[Pod], image: &str) -> Vec<String> {
    let mut found = Vec::new();
    for pod in pods {
        let Some(spec) = &pod.spec else { continue };
        for container in spec
            .containers
            .iter()
            .filter(|c| c.image.as_deref() == Some(image))
        {
            let id = pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .find(|s| s.name == container.name)
                .map(|s| s.image_id.as_str());
            if let Some(d) = id.and_then(digest)
                && !found.iter().any(|f| f == d)
            {
                found.push(d.to_owned());
            }
        }
    }
    found
}

/// What the status ConfigMap says was migrated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub image: Option<String>,
    pub digests: Vec<String>,
}

impl Recorded {
    fn from_config_map(cm: Option<ConfigMap>) -> Self {
        let data = cm.and_then(|cm| cm.data).unwrap_or_default();
        Recorded {
            image: data.get(MIGRATED_IMAGE_KEY).cloned(),
            digests: data
                .get(MIGRATED_DIGESTS_KEY)
                .map(|d| {
                    d.split(',')
                        .filter(|s| !s.is_empty())
                        .map(ToOwned::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Which image must be migrated: `None` when everything running is migrated; the
/// configured image when it is new; it pinned to a digest when an auth pod runs a digest
/// of the migrated image that was not migrated (a re-pushed tag). A record without
/// digests (a kubelet that reports none) counts as migrated for every digest.
pub fn to_migrate(image: &str, recorded: &Recorded, running: &[String]) -> Option<String> {
    if recorded.image.as_deref() != Some(image) {
        return Some(image.to_owned());
    }
    if recorded.digests.is_empty() {
        return None;
    }
    let new = running.iter().find(|d| !recorded.digests.contains(d))?;
    let repository = image.split('@').next().unwrap_or(image);
    Some(format!("{repository}@{new}"))
}

/// What a Job's status (and its pods') says about the migration.
pub fn job_state(job: &Job, pods: &[Pod]) -> MigrationState {
    let name = job.name_any();
    let status = job.status.clone().unwrap_or_default();
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if condition("Complete").is_some() {
        return MigrationState::Succeeded;
    }
    if let Some(failed) = condition("Failed") {
        let detail = match (&failed.reason, &failed.message) {
            (Some(r), Some(m)) => format!("{r}: {m}"),
            (Some(r), None) => r.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => "failed".to_owned(),
        };
        return MigrationState::Failed {
            message: format!(
                "migration Job {name} failed ({detail}); see `kubectl logs job/{name}` and its Events, fix the cause and delete the Job to retry"
            ),
        };
    }
    let mut message = format!(
        "waiting for migration Job {name} (active {}, failed {})",
        status.active.unwrap_or(0),
        status.failed.unwrap_or(0)
    );
    if let Some(waiting) = pods.iter().find_map(pod_waiting) {
        message.push_str(": ");
        message.push_str(&waiting);
        if let Some(deadline) = job.spec.as_ref().and_then(|s| s.active_deadline_seconds) {
            let _ = write!(message, "; the Job fails after {deadline} s");
        }
    }
    MigrationState::Pending { message }
}

/// The newest pod first.
fn newest_first(mut pods: Vec<Pod>) -> Vec<Pod> {
    pods.sort_by_key(|p| std::cmp::Reverse(p.creation_timestamp()));
    pods
}

async fn list_pods(pods: &Api<Pod>, selector: &str) -> Result<Vec<Pod>, Error> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| newest_first(l.items))
        .map_err(|source| Error::ListPods {
            what: selector.to_owned(),
            source,
        })
}

fn job_pods_selector(job: &str) -> String {
    format!("batch.kubernetes.io/job-name={job}")
}

/// The outcome of one check, and the Job it looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub state: MigrationState,
    pub job: Option<String>,
}

/// One check: record → which image needs migrating → its Job → record a success.
pub async fn step(client: &Client, config: &Config, clock: &dyn Clock) -> Result<Checked, Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &config.namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let recorded = Recorded::from_config_map(
        config_maps
            .get_opt(&config.scope.name(STATUS_CONFIG_MAP))
            .await
            .map_err(Error::ReadStatus)?,
    );
    let running = if recorded.image.as_deref() == Some(config.authserver_image.as_str())
        && !recorded.digests.is_empty()
    {
        digests_of(
            &list_pods(&pods, &config.scope.narrow(AUTH_PODS)).await?,
            &config.authserver_image,
        )
    } else {
        Vec::new()
    };
    let Some(image) = to_migrate(&config.authserver_image, &recorded, &running) else {
        return Ok(Checked {
            state: MigrationState::Succeeded,
            job: None,
        });
    };

    let jobs: Api<Job> = Api::namespaced(client.clone(), &config.namespace);
    let wanted = build_job(config, &image);
    let name = wanted.name_any();
    let Some(job) = jobs.get_opt(&name).await.map_err(|source| Error::ReadJob {
        name: name.clone(),
        source,
    })?
    else {
        jobs.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&wanted),
        )
        .await
        .map_err(|source| Error::CreateJob {
            name: name.clone(),
            source,
        })?;
        tracing::info!(job = %name, %image, "started schema migration Job");
        return Ok(Checked {
            state: MigrationState::Pending {
                message: format!("started migration Job {name} for {image}"),
            },
            job: Some(name),
        });
    };

    let job_pods = list_pods(&pods, &job_pods_selector(&name)).await?;
    let state = job_state(&job, &job_pods);
    if state == MigrationState::Succeeded {
        let mut digests = if recorded.image.as_deref() == Some(config.authserver_image.as_str()) {
            recorded.digests
        } else {
            Vec::new()
        };
        for d in digests_of(&job_pods, &image) {
            if !digests.contains(&d) {
                digests.push(d);
            }
        }
        if digests.len() > DIGESTS_KEPT {
            digests.drain(..digests.len() - DIGESTS_KEPT);
        }
        let mut status_labels = authserver_pod::labels("operator-status");
        status_labels.extend(config.scope.labels());
        let record = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": config.scope.name(STATUS_CONFIG_MAP),
                "namespace": config.namespace,
                "labels": status_labels,
            },
            "data": {
                MIGRATED_IMAGE_KEY: config.authserver_image,
                MIGRATED_DIGESTS_KEY: digests.join(","),
                "migrationJob": name,
                "migratedAt": clock.now().to_string(),
            },
        });
        config_maps
            .patch(
                &config.scope.name(STATUS_CONFIG_MAP),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&record),
            )
            .await
            .map_err(Error::RecordStatus)?;
        tracing::info!(job = %name, %image, "schema migration succeeded");
        delete_previous_jobs(&jobs, &name, &config.scope).await;
    }
    Ok(Checked {
        state,
        job: Some(name),
    })
}

/// Deletes migration Jobs of earlier images (best effort: they are only history).
/// Only this instance's: another instance in the namespace keeps its history.
async fn delete_previous_jobs(jobs: &Api<Job>, current: &str, scope: &crate::scope::Scope) {
    let selector = scope.narrow(&format!(
        "{},{}={COMPONENT}",
        authserver_pod::MANAGED_SELECTOR,
        authserver_pod::COMPONENT
    ));
    let list = match jobs.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "failed to list earlier migration Jobs");
            return;
        }
    };
    for job in list.items.iter().filter(|j| j.name_any() != current) {
        if let Err(e) = jobs
            .delete(&job.name_any(), &DeleteParams::background())
            .await
        {
            tracing::warn!(job = %job.name_any(), error = %e, "failed to delete an earlier migration Job");
        }
    }
}

/// The note of the Warning Event on a failed Job: its failure and the newest pod's last
/// log lines, or why that pod never started. Fits the Events API's 1 kB.
pub fn failure_note(message: &str, pod: Option<&Pod>, log: Option<&str>) -> String {
    let mut note = truncate(message, 400);
    match (pod, log.map(str::trim).filter(|l| !l.is_empty())) {
        (Some(pod), Some(log)) => {
            // Keep the end of the log: the error is in the last lines.
            let mut start = log.len().saturating_sub(500);
            while !log.is_char_boundary(start) {
                start += 1;
            }
            let _ = write!(
                note,
                "; last log lines of pod {}: {}",
                pod.name_any(),
                &log[start..]
            );
        }
        (Some(pod), None) => match pod_waiting(pod) {
            Some(waiting) => {
                let _ = write!(note, "; it never started: {waiting}");
            }
            None => {
                let _ = write!(note, "; pod {} left no log", pod.name_any());
            }
        },
        (None, _) => note.push_str("; no pod was created (check quotas and admission)"),
    }
    note
}

/// Publishes the Warning Event `MigrationFailed` on the failed Job.
async fn announce_failure(
    client: &Client,
    namespace: &str,
    name: &str,
    events: &Events,
    message: &str,
) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(Some(job)) = jobs.get_opt(name).await else {
        return;
    };
    let newest = list_pods(&pods, &job_pods_selector(name))
        .await
        .ok()
        .and_then(|p| p.into_iter().next());
    let log = match &newest {
        Some(pod) => pods
            .logs(
                &pod.name_any(),
                &LogParams {
                    tail_lines: Some(LOG_LINES),
                    limit_bytes: Some(4096),
                    ..LogParams::default()
                },
            )
            .await
            .ok(),
        None => None,
    };
    let reference: ObjectReference = job.object_ref(&());
    events
        .publish(
            &reference,
            EventType::Warning,
            "MigrationFailed",
            failure_note(message, newest.as_ref(), log.as_deref()),
        )
        .await;
}

/// Checks every [`POLL`] (every [`RECHECK`] once migrated) until `shutdown` turns true,
/// publishing each new state on `state`.
pub async fn run(
    client: Client,
    config: Config,
    clock: Arc<dyn Clock>,
    events: Events,
    state: watch::Sender<MigrationState>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut pause = POLL;
        match step(&client, &config, clock.as_ref()).await {
            Ok(Checked { state: next, job }) => {
                if let MigrationState::Failed { message } = &next
                    && *state.borrow() != next
                {
                    tracing::error!(%message, "schema migration failed");
                    if let Some(job) = &job {
                        announce_failure(&client, &config.namespace, job, &events, message).await;
                    }
                }
                let done = next == MigrationState::Succeeded;
                state.send_if_modified(|current| {
                    let changed = *current != next;
                    *current = next;
                    changed
                });
                metrics.migration_succeeded.set(i64::from(done));
                if done {
                    pause = RECHECK;
                }
            }
            Err(e) => tracing::warn!(error = %e, "failed to check the schema migration; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures::{self, ApiServerVerifier, Step, config};

    const IMAGE: &str = "ghcr.io/gatehouse-dev/authserver:1.2.3";
    const DIGEST_A: &str =
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn job_names_carry_the_tag_and_a_hash_of_image_and_spec() {
        let name = job_name(IMAGE, "spec");
        assert!(name.starts_with("gatehouse-migrate-1-2-3-"), "{name}");
        assert_eq!(name.len(), "gatehouse-migrate-1-2-3-".len() + 8);
        assert_ne!(name, job_name("docker.io/other/authserver:1.2.3", "spec"));
        assert_ne!(
            name,
            job_name(IMAGE, "another spec"),
            "a changed spec retries"
        );
        assert!(job_name("registry:5000/authserver", "").starts_with("gatehouse-migrate-latest-"));
        assert!(
            job_name("ghcr.io/x/authserver@sha256:abcdef", "")
                .starts_with("gatehouse-migrate-digest-")
        );
        assert!(
            job_name("ghcr.io/x/authserver:v1.0@sha256:abcdef", "")
                .starts_with("gatehouse-migrate-v1-0-")
        );
        let long = job_name(&format!("x/authserver:{}", "v".repeat(200)), "");
        assert!(long.len() <= 63, "{long}");
        let odd = job_name("x/authserver:___", "");
        assert!(odd.starts_with("gatehouse-migrate-image-"), "{odd}");
    }

    #[test]
    fn a_named_instance_gets_a_job_and_a_status_config_map_of_its_own() {
        let blue = Config {
            scope: crate::scope::Scope::parse("", "blue").unwrap(),
            ..config()
        };
        let job = build_job(&blue, IMAGE);
        assert_ne!(job.name_any(), build_job(&config(), IMAGE).name_any());
        assert_eq!(
            job.labels()
                .get(crate::scope::INSTANCE_LABEL)
                .map(String::as_str),
            Some("blue")
        );
        assert_eq!(
            blue.scope.name(STATUS_CONFIG_MAP),
            "gatehouse-operator-status-blue"
        );
    }

    #[tokio::test]
    async fn a_named_instance_reads_its_own_status_config_map_and_auth_pods() {
        let blue = Config {
            scope: crate::scope::Scope::parse("", "blue").unwrap(),
            ..config()
        };
        let cm = status_map(&json!({"migratedImage": IMAGE, "migratedDigests": DIGEST_A}));
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(&format!("{CM}-blue")).respond(cm),
            Step::get(PODS)
                .query(
                    "app.kubernetes.io%2Fcomponent%3Dauthserver%2Cgatehouse.dev%2Finstance%3Dblue",
                )
                .respond(pod_list(&[running_pod(
                    "auth-1",
                    IMAGE,
                    &format!("ghcr.io/x@{DIGEST_A}"),
                )])),
        ]);
        let checked = step(&client, &blue, &fixtures::clock()).await.unwrap();
        verifier.done().await;
        assert_eq!(checked.state, MigrationState::Succeeded);
    }

    #[test]
    fn the_job_runs_migrate_with_a_deadline_and_a_backoff_limit_and_no_ttl() {
        let job = serde_json::to_value(build_job(&config(), IMAGE)).unwrap();
        assert_eq!(job["metadata"]["namespace"], "gatehouse");
        assert_eq!(job["spec"]["backoffLimit"], 3);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
        assert!(job["spec"].get("ttlSecondsAfterFinished").is_none());
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["migrate"])
        );
        assert_eq!(
            job["metadata"]["labels"]["app.kubernetes.io/component"],
            "migration"
        );
    }

    #[test]
    fn a_changed_deadline_secret_or_overlay_names_a_new_job_and_a_digest_is_pinned() {
        let base = build_job(&config(), IMAGE).name_any();
        let mut c = config();
        c.migration_deadline = Duration::from_mins(1);
        assert_ne!(build_job(&c, IMAGE).name_any(), base);
        let mut c = config();
        c.database_secret = "other-db".into();
        assert_ne!(build_job(&c, IMAGE).name_any(), base);
        let mut c = config();
        c.job_pods = crate::authserver_pod::PodOverlay::parse(
            r#"{"annotations": {"sidecar.istio.io/inject": "false"}}"#,
        )
        .unwrap();
        assert_ne!(build_job(&c, IMAGE).name_any(), base);
        assert_eq!(build_job(&config(), IMAGE).name_any(), base, "stable");
        let pinned = format!("ghcr.io/gatehouse-dev/authserver:1.2.3@{DIGEST_B}");
        let job = serde_json::to_value(build_job(&config(), &pinned)).unwrap();
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["image"],
            pinned
        );
    }

    fn job_with(conditions: Vec<(&str, Option<&str>, Option<&str>)>) -> Job {
        let mut job = build_job(&config(), IMAGE);
        job.status = Some(JobStatus {
            active: Some(1),
            conditions: Some(
                conditions
                    .into_iter()
                    .map(|(t, reason, message)| JobCondition {
                        type_: t.into(),
                        status: "True".into(),
                        reason: reason.map(Into::into),
                        message: message.map(Into::into),
                        ..JobCondition::default()
                    })
                    .collect(),
            ),
            ..JobStatus::default()
        });
        job
    }

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn waiting_pod(reason: &str, message: &str) -> Pod {
        pod(json!({
            "metadata": {"name": "gatehouse-migrate-1-2-3-x-abcde", "namespace": "gatehouse"},
            "spec": {"containers": [{"name": "authserver", "image": IMAGE}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "authserver", "ready": false, "restartCount": 0, "image": IMAGE, "imageID": "",
                "state": {"waiting": {"reason": reason, "message": message}}}]},
        }))
    }

    fn running_pod(name: &str, image: &str, image_id: &str) -> Pod {
        pod(json!({
            "metadata": {"name": name, "namespace": "gatehouse"},
            "spec": {"containers": [{"name": "authserver", "image": image}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "authserver", "ready": true, "restartCount": 0, "image": image,
                "imageID": image_id, "state": {"running": {}}}]},
        }))
    }

    #[test]
    fn a_waiting_pod_is_named_in_the_pending_message_with_the_deadline() {
        let pods = [waiting_pod(
            "CreateContainerConfigError",
            "secret \"gatehouse-database\" not found",
        )];
        let MigrationState::Pending { message } = job_state(&job_with(vec![]), &pods) else {
            panic!("expected Pending");
        };
        assert!(
            message.contains(
                "pod gatehouse-migrate-1-2-3-x-abcde waiting: CreateContainerConfigError: secret \"gatehouse-database\" not found"
            ),
            "{message}"
        );
        assert!(message.contains("fails after 600 s"), "{message}");
        let unscheduled = pod(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/3 nodes are available: 3 node(s) had untolerated taint"}]},
        }));
        assert_eq!(
            pod_waiting(&unscheduled).as_deref(),
            Some("pod p not scheduled: 0/3 nodes are available: 3 node(s) had untolerated taint")
        );
        assert_eq!(pod_waiting(&running_pod("p", IMAGE, "")), None);
        let long = waiting_pod("ErrImagePull", &"x".repeat(5000));
        assert!(
            pod_waiting(&long).unwrap().len() < 400,
            "messages are clipped"
        );
    }

    #[test]
    fn job_status_maps_to_pending_failed_or_succeeded() {
        assert!(
            matches!(job_state(&job_with(vec![]), &[]), MigrationState::Pending { message } if message.contains("active 1"))
        );
        assert_eq!(
            job_state(&job_with(vec![("Complete", None, None)]), &[]),
            MigrationState::Succeeded
        );
        let MigrationState::Failed { message } = job_state(
            &job_with(vec![(
                "Failed",
                Some("DeadlineExceeded"),
                Some("Job was active longer than specified deadline"),
            )]),
            &[],
        ) else {
            panic!("expected Failed");
        };
        assert!(
            message.contains("DeadlineExceeded: Job was active longer than specified deadline"),
            "{message}"
        );
        assert!(
            message.contains("kubectl logs job/gatehouse-migrate-1-2-3-"),
            "{message}"
        );
    }

    #[test]
    fn the_failure_event_quotes_the_end_of_the_log_or_why_the_pod_never_started() {
        let p = running_pod("m-1", IMAGE, "");
        let log = format!(
            "{}\nERROR relation \"x\" already exists\n",
            "line\n".repeat(300)
        );
        let note = failure_note(
            "migration Job m failed (BackoffLimitExceeded)",
            Some(&p),
            Some(&log),
        );
        assert!(note.starts_with("migration Job m failed"), "{note}");
        assert!(
            note.ends_with("ERROR relation \"x\" already exists"),
            "{note}"
        );
        assert!(note.len() <= 1000, "fits an Event: {}", note.len());
        let w = waiting_pod("ImagePullBackOff", "Back-off pulling image \"ghcr.io/x\"");
        let note = failure_note("failed (DeadlineExceeded)", Some(&w), Some(""));
        assert!(
            note.ends_with("it never started: pod gatehouse-migrate-1-2-3-x-abcde waiting: ImagePullBackOff: Back-off pulling image \"ghcr.io/x\""),
            "{note}"
        );
        assert!(failure_note("failed", None, None).contains("no pod was created"));
    }

    #[test]
    fn digests_come_from_image_ids_of_the_configured_image_only() {
        assert_eq!(
            digest(&format!("docker-pullable://ghcr.io/x@{DIGEST_A}")),
            Some(DIGEST_A)
        );
        assert_eq!(digest(&format!("ghcr.io/x@{DIGEST_A}")), Some(DIGEST_A));
        assert_eq!(digest(DIGEST_A), Some(DIGEST_A));
        assert_eq!(digest("sha256:short"), None);
        assert_eq!(digest(""), None);
        let pods = [
            running_pod("a", IMAGE, &format!("ghcr.io/x@{DIGEST_A}")),
            running_pod("b", IMAGE, &format!("ghcr.io/x@{DIGEST_A}")),
            running_pod(
                "c",
                "ghcr.io/gatehouse-dev/authserver:1.2.2",
                &format!("ghcr.io/x@{DIGEST_B}"),
            ),
            running_pod("d", IMAGE, ""),
        ];
        assert_eq!(digests_of(&pods, IMAGE), vec![DIGEST_A.to_owned()]);
    }

    #[test]
    fn a_new_image_or_an_unmigrated_digest_of_the_same_tag_migrates() {
        let recorded = |image: Option<&str>, digests: &[&str]| Recorded {
            image: image.map(Into::into),
            digests: digests.iter().map(|d| (*d).to_owned()).collect(),
        };
        assert_eq!(
            to_migrate(IMAGE, &recorded(None, &[]), &[]).as_deref(),
            Some(IMAGE)
        );
        assert_eq!(
            to_migrate(
                IMAGE,
                &recorded(Some("ghcr.io/gatehouse-dev/authserver:1.2.2"), &[DIGEST_A]),
                &[]
            )
            .as_deref(),
            Some(IMAGE)
        );
        assert_eq!(
            to_migrate(
                IMAGE,
                &recorded(Some(IMAGE), &[DIGEST_A]),
                &[DIGEST_A.into()]
            ),
            None
        );
        // A re-pushed tag: pin the Job to the digest the pods run.
        assert_eq!(
            to_migrate(
                IMAGE,
                &recorded(Some(IMAGE), &[DIGEST_A]),
                &[DIGEST_A.into(), DIGEST_B.into()]
            ),
            Some(format!("{IMAGE}@{DIGEST_B}"))
        );
        // No digest was ever reported (a kubelet without imageID): the image counts.
        assert_eq!(
            to_migrate(IMAGE, &recorded(Some(IMAGE), &[]), &[DIGEST_B.into()]),
            None
        );
    }

    #[test]
    fn the_gate_opens_only_after_success() {
        assert!(MigrationState::Succeeded.gate().is_ok());
        assert_eq!(
            MigrationState::unchecked("img").gate(),
            Err(Gate::Pending(
                "checking the schema migration for img".into()
            ))
        );
        assert_eq!(
            MigrationState::Failed {
                message: "boom".into()
            }
            .gate(),
            Err(Gate::Failed("boom".into()))
        );
    }

    const CM: &str = "/api/v1/namespaces/gatehouse/configmaps/gatehouse-operator-status";
    const PODS: &str = "/api/v1/namespaces/gatehouse/pods";
    const JOBS: &str = "/apis/batch/v1/namespaces/gatehouse/jobs";

    fn status_map(data: &Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "gatehouse-operator-status", "namespace": "gatehouse"},
            "data": data})
    }

    fn pod_list(pods: &[Pod]) -> Value {
        fixtures::list(
            "v1",
            "PodList",
            pods.iter()
                .map(|p| serde_json::to_value(p).unwrap())
                .collect(),
        )
    }

    async fn check(steps: Vec<Step>) -> Checked {
        let (client, verifier) = ApiServerVerifier::run(steps);
        let checked = step(&client, &config(), &fixtures::clock()).await.unwrap();
        verifier.done().await;
        checked
    }

    #[tokio::test]
    async fn a_recorded_image_without_digests_needs_no_job() {
        let cm = status_map(&json!({"migratedImage": IMAGE}));
        let checked = check(vec![Step::get(CM).respond(cm)]).await;
        assert_eq!(checked.state, MigrationState::Succeeded);
    }

    #[tokio::test]
    async fn a_recorded_digest_that_all_auth_pods_run_needs_no_job() {
        let cm = status_map(&json!({"migratedImage": IMAGE, "migratedDigests": DIGEST_A}));
        let checked = check(vec![
            Step::get(CM).respond(cm),
            Step::get(PODS)
                .query("labelSelector=app.kubernetes.io%2Fname%3Dgatehouse%2Capp.kubernetes.io%2Fcomponent%3Dauthserver")
                .respond(pod_list(&[running_pod("auth-1", IMAGE, &format!("ghcr.io/x@{DIGEST_A}"))])),
        ])
        .await;
        assert_eq!(checked.state, MigrationState::Succeeded);
    }

    #[tokio::test]
    async fn a_re_pushed_tag_starts_a_job_pinned_to_the_new_digest() {
        let cm = status_map(&json!({"migratedImage": IMAGE, "migratedDigests": DIGEST_A}));
        let pinned = format!("{IMAGE}@{DIGEST_B}");
        let job_path = format!("{JOBS}/{}", build_job(&config(), &pinned).name_any());
        let checked = check(vec![
            Step::get(CM).respond(cm),
            Step::get(PODS).respond(pod_list(&[
                running_pod("auth-1", IMAGE, &format!("ghcr.io/x@{DIGEST_A}")),
                running_pod("auth-2", IMAGE, &format!("ghcr.io/x@{DIGEST_B}")),
            ])),
            Step::get(&job_path).not_found(),
            Step::apply(&job_path, FIELD_MANAGER).check(move |body| {
                assert_eq!(
                    body["spec"]["template"]["spec"]["containers"][0]["image"],
                    pinned
                );
            }),
        ])
        .await;
        assert!(
            matches!(&checked.state, MigrationState::Pending { message } if message.contains(DIGEST_B)),
            "{checked:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_job_is_created_with_server_side_apply() {
        let name = build_job(&config(), IMAGE).name_any();
        let job_path = format!("{JOBS}/{name}");
        let checked = check(vec![
            Step::get(CM).not_found(),
            Step::get(&job_path).not_found(),
            Step::apply(&job_path, FIELD_MANAGER).check(|body| {
                assert_eq!(body["kind"], "Job");
                assert_eq!(body["spec"]["activeDeadlineSeconds"], 600);
                assert_eq!(
                    body["spec"]["template"]["spec"]["containers"][0]["args"],
                    json!(["migrate"])
                );
            }),
        ])
        .await;
        assert!(
            matches!(checked.state, MigrationState::Pending { message } if message.contains("started migration Job"))
        );
        assert_eq!(checked.job, Some(name));
    }

    #[tokio::test]
    async fn a_pending_job_names_its_waiting_pod() {
        let name = build_job(&config(), IMAGE).name_any();
        let job_path = format!("{JOBS}/{name}");
        let checked = check(vec![
            Step::get(CM).not_found(),
            Step::get(&job_path).respond_obj(&job_with(vec![])),
            Step::get(PODS)
                .query(&format!(
                    "labelSelector=batch.kubernetes.io%2Fjob-name%3D{name}"
                ))
                .respond(pod_list(&[waiting_pod(
                    "ImagePullBackOff",
                    "Back-off pulling image \"ghcr.io/gatehouse-dev/authserver:1.2.3\"",
                )])),
        ])
        .await;
        assert!(
            matches!(&checked.state, MigrationState::Pending { message } if message.contains("waiting: ImagePullBackOff: Back-off pulling image")),
            "{checked:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_job_reports_its_failure_and_is_not_replaced() {
        let name = build_job(&config(), IMAGE).name_any();
        let job_path = format!("{JOBS}/{name}");
        let failed = job_with(vec![(
            "Failed",
            Some("BackoffLimitExceeded"),
            Some("Job has reached the specified backoff limit"),
        )]);
        let checked = check(vec![
            Step::get(CM).not_found(),
            Step::get(&job_path).respond_obj(&failed),
            Step::get(PODS).respond(pod_list(&[])),
        ])
        .await;
        assert!(
            matches!(checked.state, MigrationState::Failed { message } if message.contains("BackoffLimitExceeded"))
        );
    }

    #[tokio::test]
    async fn a_completed_job_records_image_and_digest_and_earlier_jobs_are_deleted() {
        let name = build_job(&config(), IMAGE).name_any();
        let job_path = format!("{JOBS}/{name}");
        let done = job_with(vec![("Complete", None, None)]);
        let mut old = build_job(&config(), IMAGE);
        old.metadata.name = Some("gatehouse-migrate-1-2-2-00000000".into());
        let list = fixtures::list(
            "batch/v1",
            "JobList",
            vec![
                serde_json::to_value(&done).unwrap(),
                serde_json::to_value(&old).unwrap(),
            ],
        );
        let mut migrate_pod = running_pod("m-1", IMAGE, &format!("ghcr.io/x@{DIGEST_A}"));
        migrate_pod.metadata.creation_timestamp = None;
        check(vec![
            Step::get(CM).not_found(),
            Step::get(&job_path).respond_obj(&done),
            Step::get(PODS).respond(pod_list(&[migrate_pod])),
            Step::apply(CM, FIELD_MANAGER).check(|body| {
                assert_eq!(body["data"]["migratedImage"], IMAGE);
                assert_eq!(body["data"]["migratedDigests"], DIGEST_A);
                assert_eq!(body["data"]["migratedAt"], "2026-01-01T00:00:00Z");
            }),
            Step::get(JOBS)
                .query("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dgatehouse-operator%2Capp.kubernetes.io%2Fcomponent%3Dmigration")
                .respond(list),
            Step::delete(&format!("{JOBS}/gatehouse-migrate-1-2-2-00000000")),
        ])
        .await;
    }
}
