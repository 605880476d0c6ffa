//! The fake's kubelet: Jobs and CronJobs run as local processes.

use std::path::Path;
use std::time::Duration;

use e2e::{FakeApiServer, ImageMapping, Options};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobStatus};
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStateWaiting, Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::support::{WAIT, api_error, start};

async fn create<K>(client: &Client, obj: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    Api::<K>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

fn job(name: &str, container: &Value, volumes: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "containers": [container], "volumes": volumes,
        }}},
    })
}

/// Watches the pods of Job `job` (from before they exist) until one satisfies `cond`.
async fn wait_for_job_pod(client: &Client, job: &str, cond: impl Fn(&Pod) -> bool) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let config = watcher::Config::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let mut stream = watcher(pods, config).applied_objects().boxed();
    tokio::time::timeout(WAIT, async {
        while let Some(pod) = stream.try_next().await.expect("watch pods") {
            if cond(&pod) {
                return pod;
            }
        }
        panic!("the pod watch ended")
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for a pod of {job}"))
}

fn waiting(pod: &Pod) -> Option<ContainerStateWaiting> {
    pod.status.as_ref()?.container_statuses.as_ref()?[0]
        .state
        .as_ref()?
        .waiting
        .clone()
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    waiting(pod)?.reason
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

async fn job_status(client: &Client, name: &str) -> JobStatus {
    Api::<Job>::namespaced(client.clone(), "default")
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

/// An active Job as the Job controller reports it while its pod has not finished.
fn assert_active(status: &JobStatus, ready: i32) {
    assert_eq!(
        (status.active, status.ready, status.failed, status.succeeded),
        (Some(1), Some(ready), None, None),
        "{status:?}"
    );
    assert!(status.start_time.is_some());
    assert!(
        status.conditions.as_deref().unwrap_or_default().is_empty(),
        "{status:?}"
    );
}

/// `(type, status, reason, message)` of each of the Job's conditions.
fn conditions(status: &JobStatus) -> Vec<(String, String, String, String)> {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The imageID the fake reports for an unpinned image: the SHA-256 of the reference.
fn expected_image_id(repository: &str, image: &str) -> String {
    let hex = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        image.as_bytes(),
    ));
    format!("docker-pullable://{repository}@sha256:{hex}")
}

/// Waits until `pid` has exited (gone, or a zombie nobody reaped).
async fn wait_until_dead(pid: &str) {
    let stat = Path::new("/proc").join(pid).join("stat");
    tokio::time::timeout(WAIT, async {
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => return,
                // `pid (comm) S …`: the state follows the parenthesised name.
                Ok(s)
                    if s.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('Z')) =>
                {
                    return;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("process {pid} still runs"));
}

/// Waits until the file at `path` has content (written by a Job's process).
async fn read_when_written(path: &Path) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match std::fs::read_to_string(path) {
                Ok(s) if s.ends_with('\n') => return s.trim().to_owned(),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} was not written", path.display()))
}

#[tokio::test]
async fn a_job_runs_its_command_with_env_from_secrets_fields_and_config_map_volumes() {
    let (fake, client) = start().await;
    create::<Secret>(
        &client,
        json!({"metadata": {"name": "creds"}, "stringData": {"FOO": "from-the-secret"}}),
    )
    .await;
    create::<ConfigMap>(
        &client,
        json!({"metadata": {"name": "conf"}, "data": {"greeting.txt": "hello from a volume"}}),
    )
    .await;
    let container = json!({
        "name": "main", "image": "docker.io/library/busybox:1.36",
        "command": ["/bin/sh", "-c"],
        "args": ["echo $FOO; echo ns=$NS; echo $(GREETING_FILE); echo \"$(cat $GREETING_FILE)\"; echo oops >&2"],
        "env": [
            {"name": "FOO", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "FOO"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "GREETING_FILE", "value": "/etc/conf/greeting.txt"},
        ],
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf", "readOnly": true}],
    });
    create::<Job>(
        &client,
        job(
            "echo",
            &container,
            &json!([{"name": "conf", "configMap": {"name": "conf"}}]),
        ),
    )
    .await;

    let run = fake.wait_for_job("default", "echo", WAIT).await.unwrap();
    assert!(run.succeeded, "{run:?}");
    assert_eq!(run.exit_code, Some(0));
    // stdout and stderr are read from two pipes: their relative order is not fixed, so
    // the stdout lines are checked in order with stderr's line taken out.
    let lines: Vec<&str> = run.log.lines().filter(|l| *l != "oops").collect();
    assert_eq!(lines[0], "from-the-secret");
    assert_eq!(lines[1], "ns=default");
    assert!(
        !lines[2].starts_with("/etc/conf"),
        "the mount path is rewritten to a local directory: {}",
        lines[2]
    );
    assert_eq!(lines[3], "hello from a volume");
    assert!(run.log.contains("oops"), "stderr is in the log");

    // The same through the API: Job status, Pod, and its log.
    let job = Api::<Job>::namespaced(client.clone(), "default")
        .get("echo")
        .await
        .unwrap();
    let status = job.status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod_name = run.pod.unwrap();
    let pod = pods.get(&pod_name).await.unwrap();
    assert_eq!(pod.labels()["batch.kubernetes.io/job-name"], "echo");
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Succeeded"));
    let log = pods.logs(&pod_name, &LogParams::default()).await.unwrap();
    assert_eq!(log, run.log);
}

#[tokio::test]
async fn a_failing_job_is_marked_failed_with_a_message_and_its_log() {
    let (fake, client) = start().await;
    let container = json!({
        "name": "main", "image": "busybox",
        "command": ["/bin/sh", "-c", "echo migrating; echo 'schema is newer' >&2; exit 3"],
    });
    create::<Job>(&client, job("fails", &container, &json!([]))).await;
    let run = fake.wait_for_job("default", "fails", WAIT).await.unwrap();
    assert!(!run.succeeded);
    assert_eq!(run.exit_code, Some(3));
    assert!(run.log.contains("migrating") && run.log.contains("schema is newer"));
    let message = run.message.unwrap();
    assert!(message.contains("exit status: 3"), "{message}");

    let status = Api::<Job>::namespaced(client.clone(), "default")
        .get("fails")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.failed, Some(1));
    let failed = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_deref()),
        ("True", Some("BackoffLimitExceeded"))
    );
}

#[tokio::test]
async fn mapped_images_run_the_local_binary() {
    let fake = FakeApiServer::start_with(Options {
        images: vec![ImageMapping::new("gatehouse/echo", "/bin/echo")],
        ..Options::default()
    })
    .await
    .unwrap();
    let client = fake.client().unwrap();
    // No command: the mapped binary is the entrypoint and gets the args.
    let entrypoint =
        json!({"name": "main", "image": "ghcr.io/gatehouse/echo:1.0", "args": ["from", "args"]});
    create::<Job>(&client, job("entrypoint", &entrypoint, &json!([]))).await;
    // A command naming the binary's file name runs the mapped binary.
    let command = json!({"name": "main", "image": "ghcr.io/gatehouse/echo@sha256:00",
                         "command": ["/usr/local/bin/echo", "from"], "args": ["command"]});
    create::<Job>(&client, job("command", &command, &json!([]))).await;

    let run = fake
        .wait_for_job("default", "entrypoint", WAIT)
        .await
        .unwrap();
    assert_eq!((run.succeeded, run.log.as_str()), (true, "from args\n"));
    let run = fake.wait_for_job("default", "command", WAIT).await.unwrap();
    assert_eq!((run.succeeded, run.log.as_str()), (true, "from command\n"));
}

#[tokio::test]
async fn triggering_a_cronjob_runs_its_job_template_once() {
    let (fake, client) = start().await;
    let cronjob = create::<CronJob>(
        &client,
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "purge"},
            "spec": {"schedule": "17 * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": {
                "metadata": {"labels": {"app": "purge"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
                    "name": "purge", "image": "busybox",
                    "command": ["/bin/sh", "-c", "echo purged sessions=0 codes=0"],
                }]}}},
            }},
        }),
    )
    .await;
    let run = fake.trigger_cronjob("default", "purge").await.unwrap();
    assert!(run.succeeded, "{run:?}");
    assert_eq!(run.log, "purged sessions=0 codes=0\n");
    assert!(run.name.starts_with("purge-manual-"));

    let job = Api::<Job>::namespaced(client, "default")
        .get(&run.name)
        .await
        .unwrap();
    assert_eq!(job.labels()["app"], "purge");
    assert_eq!(
        job.annotations()["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(job.owner_references()[0].uid, cronjob.uid().unwrap());

    let missing = fake.trigger_cronjob("default", "absent").await;
    assert!(matches!(missing, Err(e2e::KubeletError::NotFound { .. })));
}

#[tokio::test]
async fn a_job_with_a_missing_secret_stays_pending_until_the_secret_exists() {
    let (fake, client) = start().await;
    let image = "docker.io/library/busybox:1.36";
    let container = json!({
        "name": "migrate", "image": image, "command": ["/bin/sh", "-c", "echo token=$TOKEN"],
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "TOKEN"}}}],
    });
    create::<Job>(&client, job("late", &container, &json!([]))).await;

    let pod = wait_for_job_pod(&client, "late", |p| {
        waiting_reason(p).as_deref() == Some("CreateContainerConfigError")
    })
    .await;
    assert_eq!(phase(&pod), Some("Pending"));
    assert_eq!(
        waiting(&pod).unwrap().message.as_deref(),
        Some("secret \"late\" not found")
    );
    assert_active(&job_status(&client, "late").await, 0);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod_name = pod.name_any();
    assert_eq!(
        api_error(pods.logs(&pod_name, &LogParams::default()).await),
        (400, "BadRequest".to_owned()),
        "no log before the container starts"
    );

    // The Secret without the key: still pending, with the kubelet's other message.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    create::<Secret>(
        &client,
        json!({"metadata": {"name": "late"}, "stringData": {"OTHER": "x"}}),
    )
    .await;
    let pod = wait_for_job_pod(&client, "late", |p| {
        waiting(p).and_then(|w| w.message).as_deref()
            == Some("couldn't find key TOKEN in Secret default/late")
    })
    .await;
    assert_eq!(phase(&pod), Some("Pending"));
    assert_active(&job_status(&client, "late").await, 0);

    // The key appears: the container starts and the Job completes with it.
    secrets
        .patch(
            "late",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"TOKEN": "s3cret"}})),
        )
        .await
        .unwrap();
    let run = fake.wait_for_job("default", "late", WAIT).await.unwrap();
    assert!(run.succeeded, "{run:?}");
    assert_eq!(run.log, "token=s3cret\n");
    assert_eq!(run.pod.as_deref(), Some(pod_name.as_str()));

    // The terminated container keeps its imageID.
    let pod = pods.get(&pod_name).await.unwrap();
    assert_eq!(phase(&pod), Some("Succeeded"));
    let container = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(
        container.image_id,
        expected_image_id("docker.io/library/busybox", image)
    );
    let terminated = container
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert!(terminated.started_at.is_some());
}

#[tokio::test]
async fn a_missing_config_map_volume_keeps_the_pod_container_creating_with_an_event() {
    let (fake, client) = start().await;
    let container = json!({
        "name": "main", "image": "busybox", "command": ["/bin/cat", "/etc/conf/greeting"],
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}],
    });
    create::<Job>(
        &client,
        job(
            "mount",
            &container,
            &json!([{"name": "conf", "configMap": {"name": "conf"}}]),
        ),
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = tokio::time::timeout(WAIT, async {
        loop {
            let list = events.list(&ListParams::default()).await.unwrap();
            if let Some(e) = list
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("FailedMount"))
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a FailedMount event");
    assert_eq!(
        event.message.as_deref(),
        Some("MountVolume.SetUp failed for volume \"conf\" : configmap \"conf\" not found")
    );
    let pod = wait_for_job_pod(&client, "mount", |_| true).await;
    assert_eq!(event.involved_object.name, Some(pod.name_any()));
    assert_eq!(phase(&pod), Some("Pending"));
    assert_eq!(waiting_reason(&pod).as_deref(), Some("ContainerCreating"));
    assert_active(&job_status(&client, "mount").await, 0);

    create::<ConfigMap>(
        &client,
        json!({"metadata": {"name": "conf"}, "data": {"greeting": "hello"}}),
    )
    .await;
    let run = fake.wait_for_job("default", "mount", WAIT).await.unwrap();
    assert_eq!((run.succeeded, run.log.as_str()), (true, "hello"));
}

#[tokio::test]
async fn an_unmapped_image_without_a_command_backs_off_pulling_and_the_job_stays_active() {
    let (fake, client) = start().await;
    let unmapped = json!({"name": "main", "image": "example/unknown:1"});
    create::<Job>(&client, job("unmapped", &unmapped, &json!([]))).await;
    // ErrImagePull shows for a second before the back-off.
    let pod = wait_for_job_pod(&client, "unmapped", |p| {
        waiting_reason(p).as_deref() == Some("ErrImagePull")
    })
    .await;
    assert!(
        waiting(&pod)
            .unwrap()
            .message
            .unwrap()
            .contains("example/unknown:1"),
        "{pod:?}"
    );
    let pod = wait_for_job_pod(&client, "unmapped", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&pod), Some("Pending"));
    assert_eq!(
        waiting(&pod).unwrap().message.as_deref(),
        Some("Back-off pulling image \"example/unknown:1\"")
    );
    assert_active(&job_status(&client, "unmapped").await, 0);
    assert!(matches!(
        fake.wait_for_job("default", "unmapped", Duration::from_millis(300))
            .await,
        Err(e2e::KubeletError::Timeout { .. })
    ));
}

#[tokio::test]
async fn pending_jobs_fail_at_their_active_deadline() {
    let (fake, client) = start().await;
    let no_secret = json!({
        "name": "main", "image": "busybox", "command": ["/bin/true"],
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "X"}}}],
    });
    let no_image = json!({"name": "main", "image": "example/unknown:1"});
    for (name, container) in [("no-secret", &no_secret), ("no-image", &no_image)] {
        let mut j = job(name, container, &json!([]));
        j["spec"]["activeDeadlineSeconds"] = 1.into();
        create::<Job>(&client, j).await;
    }
    for name in ["no-secret", "no-image"] {
        let run = fake.wait_for_job("default", name, WAIT).await.unwrap();
        assert!(!run.succeeded, "{run:?}");
        assert_eq!(run.exit_code, None, "the container never started");
        let deadline = "Job was active longer than specified deadline".to_owned();
        let status = job_status(&client, name).await;
        assert_eq!(
            conditions(&status),
            [
                (
                    "FailureTarget".into(),
                    "True".into(),
                    "DeadlineExceeded".into(),
                    deadline.clone()
                ),
                (
                    "Failed".into(),
                    "True".into(),
                    "DeadlineExceeded".into(),
                    deadline
                ),
            ]
        );
        assert_eq!((status.failed, status.active), (Some(1), None));

        let pod = Api::<Pod>::namespaced(client.clone(), "default")
            .get(&run.pod.unwrap())
            .await
            .unwrap();
        assert_eq!(phase(&pod), Some("Failed"));
        let state = pod.status.unwrap().container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap();
        let terminated = state.terminated.expect("terminated");
        assert_eq!(
            (
                terminated.exit_code,
                terminated.reason.as_deref(),
                terminated.started_at
            ),
            (137, Some("ContainerStatusUnknown"), None)
        );
    }
}

#[tokio::test]
async fn a_running_job_is_killed_at_its_active_deadline() {
    let (fake, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    // The shell's child: killing the shell alone would leave it running.
    let container = json!({
        "name": "main", "image": "busybox",
        "command": ["/bin/sh", "-c", "echo started; sleep 30 & echo $! > \"$PID_FILE\"; wait"],
        "env": [{"name": "PID_FILE", "value": pid_file.to_str().unwrap()}],
    });
    let mut j = job("hangs", &container, &json!([]));
    j["spec"]["activeDeadlineSeconds"] = 2.into();
    create::<Job>(&client, j).await;

    let run = fake.wait_for_job("default", "hangs", WAIT).await.unwrap();
    assert!(!run.succeeded, "{run:?}");
    assert_eq!(
        run.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    assert_eq!(run.exit_code, Some(137), "killed");
    assert_eq!(run.log, "started\n", "the log up to the kill is kept");
    wait_until_dead(&read_when_written(&pid_file).await).await;

    let status = job_status(&client, "hangs").await;
    assert_eq!((status.failed, status.active), (Some(1), None));
    assert!(
        conditions(&status)
            .iter()
            .any(|(t, s, r, _)| (t.as_str(), s.as_str(), r.as_str())
                == ("Failed", "True", "DeadlineExceeded"))
    );
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .get(&run.pod.unwrap())
        .await
        .unwrap();
    assert_eq!(phase(&pod), Some("Failed"));
}

#[tokio::test]
async fn a_running_pod_reports_its_image_and_deleting_its_job_kills_it() {
    let (fake, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let image = "ghcr.io/example/tool:2";
    let container = json!({
        "name": "main", "image": image,
        "command": ["/bin/sh", "-c", "sleep 30 & echo $! > \"$PID_FILE\"; wait"],
        "env": [{"name": "PID_FILE", "value": pid_file.to_str().unwrap()}],
    });
    create::<Job>(&client, job("runs", &container, &json!([]))).await;

    let pod = wait_for_job_pod(&client, "runs", |p| phase(p) == Some("Running")).await;
    let status = pod.status.unwrap();
    let container = &status.container_statuses.unwrap()[0];
    assert_eq!(
        container.image_id,
        expected_image_id("ghcr.io/example/tool", image)
    );
    assert!(container.ready && container.started == Some(true));
    assert!(
        container
            .state
            .as_ref()
            .unwrap()
            .running
            .as_ref()
            .unwrap()
            .started_at
            .is_some()
    );
    assert_active(&job_status(&client, "runs").await, 1);
    let pid = read_when_written(&pid_file).await;

    // Deleting the Job garbage-collects the pod, and the kubelet kills the process.
    Api::<Job>::namespaced(client.clone(), "default")
        .delete("runs", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_dead(&pid).await;
    assert!(matches!(
        fake.wait_for_job("default", "runs", WAIT).await,
        Err(e2e::KubeletError::NotFound { .. })
    ));
    let pods = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=runs"))
        .await
        .unwrap();
    assert!(pods.items.is_empty());
}

#[tokio::test]
async fn deleting_a_pending_pod_fails_its_job() {
    let (fake, client) = start().await;
    let container = json!({
        "name": "main", "image": "busybox", "command": ["/bin/sh", "-c", "echo ran"],
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "X"}}}],
    });
    create::<Job>(&client, job("orphaned", &container, &json!([]))).await;
    let pod = wait_for_job_pod(&client, "orphaned", |p| {
        waiting(p).and_then(|w| w.message).as_deref() == Some("configmap \"later\" not found")
    })
    .await;
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete(&pod.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let run = fake
        .wait_for_job("default", "orphaned", WAIT)
        .await
        .unwrap();
    assert!(!run.succeeded);
    assert_eq!(run.pod, None);
    assert!(
        run.message.as_deref().unwrap().contains("was deleted"),
        "{run:?}"
    );
}
