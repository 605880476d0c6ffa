//! The fake's kubelet: Jobs and CronJobs run as local processes.

use e2e::{FakeApiServer, ImageMapping, Options};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, LogParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::support::{WAIT, start};

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

    // A missing Secret fails the Job before anything runs.
    let container = json!({
        "name": "main", "image": "busybox", "command": ["/bin/true"],
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "X"}}}],
    });
    create::<Job>(&client, job("no-secret", &container, &json!([]))).await;
    let run = fake
        .wait_for_job("default", "no-secret", WAIT)
        .await
        .unwrap();
    assert!(!run.succeeded);
    assert!(
        run.message
            .as_deref()
            .unwrap()
            .contains("secret \"absent\" not found"),
        "{run:?}"
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

    // An unmapped image without a command cannot run.
    let unmapped = json!({"name": "main", "image": "example/unknown:1"});
    create::<Job>(&client, job("unmapped", &unmapped, &json!([]))).await;
    let run = fake
        .wait_for_job("default", "unmapped", WAIT)
        .await
        .unwrap();
    assert!(!run.succeeded);
    assert!(run.message.unwrap().contains("no local mapping"));
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
