//! Schema migration gating. Once per authserver image the operator runs a Job
//! `gatehouse-migrate-<tag>-<hash>` (`authserver migrate`, same image and database
//! Secret as the auth pods), waits for it, and records the image as `migratedImage` in
//! the ConfigMap `gatehouse-operator-status`. Until then every reconcile of a tenant,
//! client or key set stops with `Ready=False`, reason `MigrationPending` (or
//! `MigrationFailed` with the Job's failure), because the admin API of a newer auth
//! server may need the new schema.
//!
//! The image only changes with a new operator Deployment revision (a new
//! `--authserver-image`), so checking on start is checking "when the image changes".
//! A failed Job is left in place (no `ttlSecondsAfterFinished`) so its pods' logs can be
//! read; deleting it makes the operator start a new one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;
use tokio::sync::watch;

use crate::authserver_pod::{self, bounded_name, short_hash};
use crate::context::{Clock, Config};
use crate::metrics::Metrics;

/// The ConfigMap (in `--namespace`) where the operator records what it migrated.
pub const STATUS_CONFIG_MAP: &str = "gatehouse-operator-status";
/// Key of the migrated image in [`STATUS_CONFIG_MAP`].
pub const MIGRATED_IMAGE_KEY: &str = "migratedImage";
/// Field manager of the migration Job and the status ConfigMap.
pub const FIELD_MANAGER: &str = "gatehouse-operator/migration";
/// `app.kubernetes.io/component` of migration Jobs.
const COMPONENT: &str = "migration";
/// How often the Job is checked while it runs.
const POLL: Duration = Duration::from_secs(5);
/// Retries of the migration pod before the Job counts as failed.
const BACKOFF_LIMIT: i32 = 3;

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

/// `gatehouse-migrate-<tag>-<hash of the image>`: one Job per image, a readable tag, at
/// most 63 characters (the Job name becomes a pod label value).
pub fn job_name(image: &str) -> String {
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
        &format!("{sanitized}-{}", short_hash(image)),
        63,
    )
}

/// The migration Job for the configured image.
pub fn build_job(config: &Config) -> Job {
    let name = job_name(&config.authserver_image);
    let labels = authserver_pod::labels(COMPONENT);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                "gatehouse.dev/authserver-image".to_owned(),
                config.authserver_image.clone(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            // No ttlSecondsAfterFinished: the result (and a failure's pod logs) stays
            // visible until the next image's migration succeeds.
            template: authserver_pod::pod_template(config, labels, vec!["migrate".to_owned()]),
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// What a Job's status says about the migration.
pub fn job_state(job: &Job) -> MigrationState {
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
                "migration Job {name} failed ({detail}); see `kubectl logs job/{name}`, fix the cause and delete the Job to retry"
            ),
        };
    }
    MigrationState::Pending {
        message: format!(
            "waiting for migration Job {name} (active {}, failed {})",
            status.active.unwrap_or(0),
            status.failed.unwrap_or(0)
        ),
    }
}

/// One check: already recorded → done; no Job → create it; Job finished → record it.
pub async fn step(
    client: &Client,
    config: &Config,
    clock: &dyn Clock,
) -> Result<MigrationState, Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &config.namespace);
    let recorded = config_maps
        .get_opt(STATUS_CONFIG_MAP)
        .await
        .map_err(Error::ReadStatus)?
        .and_then(|cm| cm.data)
        .and_then(|data| data.get(MIGRATED_IMAGE_KEY).cloned());
    if recorded.as_deref() == Some(config.authserver_image.as_str()) {
        return Ok(MigrationState::Succeeded);
    }

    let jobs: Api<Job> = Api::namespaced(client.clone(), &config.namespace);
    let name = job_name(&config.authserver_image);
    let Some(job) = jobs.get_opt(&name).await.map_err(|source| Error::ReadJob {
        name: name.clone(),
        source,
    })?
    else {
        jobs.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&build_job(config)),
        )
        .await
        .map_err(|source| Error::CreateJob {
            name: name.clone(),
            source,
        })?;
        tracing::info!(job = %name, image = %config.authserver_image, "started schema migration Job");
        return Ok(MigrationState::Pending {
            message: format!("started migration Job {name}"),
        });
    };

    let state = job_state(&job);
    if state == MigrationState::Succeeded {
        let record = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": STATUS_CONFIG_MAP,
                "namespace": config.namespace,
                "labels": authserver_pod::labels("operator-status"),
            },
            "data": {
                MIGRATED_IMAGE_KEY: config.authserver_image,
                "migrationJob": name,
                "migratedAt": clock.now().to_string(),
            },
        });
        config_maps
            .patch(
                STATUS_CONFIG_MAP,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&record),
            )
            .await
            .map_err(Error::RecordStatus)?;
        tracing::info!(job = %name, image = %config.authserver_image, "schema migration succeeded");
        delete_previous_jobs(&jobs, &name).await;
    }
    Ok(state)
}

/// Deletes migration Jobs of earlier images (best effort: they are only history).
async fn delete_previous_jobs(jobs: &Api<Job>, current: &str) {
    let selector = format!(
        "{},{}={COMPONENT}",
        authserver_pod::MANAGED_SELECTOR,
        authserver_pod::COMPONENT
    );
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

/// Checks every [`POLL`] until the migration succeeded (or `shutdown` turns true),
/// publishing each new state on `state`.
pub async fn run(
    client: Client,
    config: Config,
    clock: Arc<dyn Clock>,
    state: watch::Sender<MigrationState>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match step(&client, &config, clock.as_ref()).await {
            Ok(next) => {
                let done = next == MigrationState::Succeeded;
                if let MigrationState::Failed { message } = &next
                    && *state.borrow() != next
                {
                    tracing::error!(%message, "schema migration failed");
                }
                state.send_if_modified(|current| {
                    let changed = *current != next;
                    *current = next;
                    changed
                });
                if done {
                    metrics.migration_succeeded.set(1);
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "failed to check the schema migration; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use serde_json::json;

    use super::*;
    use crate::fixtures::{self, ApiServerVerifier, Step, config};

    #[test]
    fn job_names_carry_the_tag_and_a_hash_of_the_image() {
        let name = job_name("ghcr.io/gatehouse-dev/authserver:1.2.3");
        assert!(name.starts_with("gatehouse-migrate-1-2-3-"), "{name}");
        assert_eq!(name.len(), "gatehouse-migrate-1-2-3-".len() + 8);
        assert_ne!(name, job_name("docker.io/other/authserver:1.2.3"));
        assert!(job_name("registry:5000/authserver").starts_with("gatehouse-migrate-latest-"));
        assert!(
            job_name("ghcr.io/x/authserver@sha256:abcdef").starts_with("gatehouse-migrate-digest-")
        );
        assert!(
            job_name("ghcr.io/x/authserver:v1.0@sha256:abcdef")
                .starts_with("gatehouse-migrate-v1-0-")
        );
        let long = job_name(&format!("x/authserver:{}", "v".repeat(200)));
        assert!(long.len() <= 63, "{long}");
        let odd = job_name("x/authserver:___");
        assert!(odd.starts_with("gatehouse-migrate-image-"), "{odd}");
    }

    #[test]
    fn the_job_runs_migrate_without_ttl_and_with_a_backoff_limit() {
        let job = serde_json::to_value(build_job(&config())).unwrap();
        assert_eq!(job["metadata"]["namespace"], "gatehouse");
        assert_eq!(job["spec"]["backoffLimit"], 3);
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

    fn job_with(conditions: Vec<(&str, Option<&str>, Option<&str>)>) -> Job {
        let mut job = build_job(&config());
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

    #[test]
    fn job_status_maps_to_pending_failed_or_succeeded() {
        assert!(
            matches!(job_state(&job_with(vec![])), MigrationState::Pending { message } if message.contains("active 1"))
        );
        assert_eq!(
            job_state(&job_with(vec![("Complete", None, None)])),
            MigrationState::Succeeded
        );
        let MigrationState::Failed { message } = job_state(&job_with(vec![(
            "Failed",
            Some("BackoffLimitExceeded"),
            Some("Job has reached the specified backoff limit"),
        )])) else {
            panic!("expected Failed");
        };
        assert!(
            message.contains("BackoffLimitExceeded: Job has reached the specified backoff limit"),
            "{message}"
        );
        assert!(
            message.contains("kubectl logs job/gatehouse-migrate-1-2-3-"),
            "{message}"
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

    fn jobs_path() -> String {
        "/apis/batch/v1/namespaces/gatehouse/jobs".to_owned()
    }

    #[tokio::test]
    async fn a_recorded_image_needs_no_job() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "gatehouse-operator-status", "namespace": "gatehouse"},
            "data": {"migratedImage": "ghcr.io/gatehouse-dev/authserver:1.2.3"}});
        let (client, verifier) = ApiServerVerifier::run(vec![Step::get(CM).respond(cm)]);
        let state = step(&client, &config(), &fixtures::clock()).await.unwrap();
        assert_eq!(state, MigrationState::Succeeded);
        verifier.done().await;
    }

    #[tokio::test]
    async fn a_missing_job_is_created_with_server_side_apply() {
        let name = job_name(&config().authserver_image);
        let job_path = format!("{}/{name}", jobs_path());
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(CM).not_found(),
            Step::get(&job_path).not_found(),
            Step::apply(&job_path, FIELD_MANAGER).check(|body| {
                assert_eq!(body["kind"], "Job");
                assert_eq!(
                    body["spec"]["template"]["spec"]["containers"][0]["args"],
                    json!(["migrate"])
                );
            }),
        ]);
        let state = step(&client, &config(), &fixtures::clock()).await.unwrap();
        assert!(
            matches!(state, MigrationState::Pending { message } if message.contains("started migration Job"))
        );
        verifier.done().await;
    }

    #[tokio::test]
    async fn a_failed_job_reports_its_failure_and_is_not_replaced() {
        let name = job_name(&config().authserver_image);
        let job_path = format!("{}/{name}", jobs_path());
        let failed = job_with(vec![(
            "Failed",
            Some("BackoffLimitExceeded"),
            Some("Job has reached the specified backoff limit"),
        )]);
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(CM).not_found(),
            Step::get(&job_path).respond(serde_json::to_value(&failed).unwrap()),
        ]);
        let state = step(&client, &config(), &fixtures::clock()).await.unwrap();
        assert!(
            matches!(state, MigrationState::Failed { message } if message.contains("BackoffLimitExceeded"))
        );
        verifier.done().await;
    }

    #[tokio::test]
    async fn a_completed_job_is_recorded_and_earlier_jobs_are_deleted() {
        let name = job_name(&config().authserver_image);
        let job_path = format!("{}/{name}", jobs_path());
        let done = job_with(vec![("Complete", None, None)]);
        let mut old = build_job(&config());
        old.metadata.name = Some("gatehouse-migrate-1-2-2-00000000".into());
        let list = json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "1"},
            "items": [serde_json::to_value(&done).unwrap(), serde_json::to_value(&old).unwrap()]});
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get(CM).not_found(),
            Step::get(&job_path).respond(serde_json::to_value(&done).unwrap()),
            Step::apply(CM, FIELD_MANAGER).check(|body| {
                assert_eq!(body["data"]["migratedImage"], "ghcr.io/gatehouse-dev/authserver:1.2.3");
                assert_eq!(body["data"]["migratedAt"], "2026-01-01T00:00:00Z");
            }),
            Step::get(&jobs_path())
                .query("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dgatehouse-operator%2Capp.kubernetes.io%2Fcomponent%3Dmigration")
                .respond(list),
            Step::delete(&format!("{}/gatehouse-migrate-1-2-2-00000000", jobs_path())),
        ]);
        let state = step(&client, &config(), &fixtures::clock()).await.unwrap();
        assert_eq!(state, MigrationState::Succeeded);
        verifier.done().await;
    }
}
