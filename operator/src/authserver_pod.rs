//! The pod that runs an `authserver` command (`migrate` for the migration Job, `purge`
//! for the purge CronJobs): the configured image, the database and encryption Secrets as
//! environment (referenced by name; the operator never reads them), the optional config
//! ConfigMap, and a restricted security context (Pod Security Standard "restricted").

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, LocalObjectReference, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::context::Config;

/// `app.kubernetes.io/managed-by` on everything the operator creates; the `.owns()`
/// watches select on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "gatehouse-operator");
/// `app.kubernetes.io/name` on everything the operator creates.
pub const NAME: (&str, &str) = ("app.kubernetes.io/name", "gatehouse");
/// `app.kubernetes.io/component` key (`migration`, `purge`, `client-credentials`).
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Label selector for everything the operator created.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=gatehouse-operator";

/// Where the authserver config ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/gatehouse";
/// UID/GID the pods run as (the "nonroot" user of distroless images): the pods must not
/// depend on the image declaring a non-root USER.
const RUN_AS: i64 = 65_532;

/// Labels of an object the operator creates for `component`.
pub fn labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (NAME.0.to_owned(), NAME.1.to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
    ])
}

fn secret_env(name: &str, secret: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: name.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// What the platform team adds to every pod the operator creates (migration Jobs, purge
/// CronJobs): `--job-pod-overlay`, JSON, set by the chart from `jobPods`. Unknown fields
/// are an error, so a typo is refused at start rather than ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PodOverlay {
    /// Added to the pod's labels (never replacing the operator's own).
    pub labels: BTreeMap<String, String>,
    /// Pod annotations, e.g. `sidecar.istio.io/inject: "false"`.
    pub annotations: BTreeMap<String, String>,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub affinity: Option<Affinity>,
    pub priority_class_name: Option<String>,
    /// Replaces the container's default requests/limits.
    pub resources: Option<ResourceRequirements>,
    /// Replaces the default uid/gid 65532.
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// Leave uid and gid unset: the platform assigns them (OpenShift's restricted SCC
    /// refuses pods that pick a uid outside the namespace's range).
    pub platform_assigns_uid: bool,
}

impl PodOverlay {
    /// Parses `--job-pod-overlay`.
    pub fn parse(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(json).map_err(|e| format!("--job-pod-overlay: {e}"))
    }

    fn apply(&self, template: &mut PodTemplateSpec) {
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &self.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !self.annotations.is_empty() {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(self.annotations.clone());
        }
        let Some(spec) = template.spec.as_mut() else {
            return;
        };
        let some_if = |v: bool| v.then_some(());
        spec.image_pull_secrets =
            some_if(!self.image_pull_secrets.is_empty()).map(|()| self.image_pull_secrets.clone());
        spec.node_selector =
            some_if(!self.node_selector.is_empty()).map(|()| self.node_selector.clone());
        spec.tolerations = some_if(!self.tolerations.is_empty()).map(|()| self.tolerations.clone());
        spec.affinity.clone_from(&self.affinity);
        spec.priority_class_name
            .clone_from(&self.priority_class_name);
        if let Some(security) = spec.security_context.as_mut() {
            if self.platform_assigns_uid {
                security.run_as_user = None;
                security.run_as_group = None;
            } else {
                security.run_as_user = self.run_as_user.or(security.run_as_user);
                security.run_as_group = self.run_as_group.or(security.run_as_group);
            }
        }
        if let Some(resources) = &self.resources {
            for container in &mut spec.containers {
                container.resources = Some(resources.clone());
            }
        }
    }
}

/// A pod template running `authserver <args>` once (`restartPolicy: Never`; the Job's
/// `backoffLimit` decides retries), with the platform's [`PodOverlay`] applied.
pub fn pod_template(
    config: &Config,
    labels: BTreeMap<String, String>,
    args: Vec<String>,
) -> PodTemplateSpec {
    let mut template = base_template(config, labels, args);
    config.job_pods.apply(&mut template);
    template
}

fn base_template(
    config: &Config,
    labels: BTreeMap<String, String>,
    args: Vec<String>,
) -> PodTemplateSpec {
    let mut env = vec![
        secret_env("DATABASE_URL", &config.database_secret),
        secret_env("ENCRYPTION_KEY", &config.encryption_secret),
    ];
    let mut mounts = vec![VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    if let Some(cm) = &config.authserver_config_map {
        env.push(EnvVar {
            name: "GATEHOUSE_CONFIG".to_owned(),
            value: Some(format!("{CONFIG_DIR}/config.yaml")),
            ..EnvVar::default()
        });
        mounts.push(VolumeMount {
            name: "config".to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let quantity = |s: &str| Quantity(s.to_owned());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_owned()),
            // authserver commands never talk to the Kubernetes API.
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "authserver".to_owned(),
                image: Some(config.authserver_image.clone()),
                command: Some(vec!["authserver".to_owned()]),
                args: Some(args),
                env: Some(env),
                volume_mounts: Some(mounts),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_owned(), quantity("50m")),
                        ("memory".to_owned(), quantity("64Mi")),
                    ])),
                    limits: Some(BTreeMap::from([("memory".to_owned(), quantity("256Mi"))])),
                    ..ResourceRequirements::default()
                }),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    run_as_non_root: Some(true),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".to_owned()]),
                        ..Capabilities::default()
                    }),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".to_owned(),
                        ..SeccompProfile::default()
                    }),
                    ..SecurityContext::default()
                }),
                ..Container::default()
            }],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// A 32-bit FNV-1a hash as 8 hex digits: a short, stable suffix that keeps generated
/// names unique when they have to be shortened (not a security measure).
pub fn short_hash(s: &str) -> String {
    format!("{:08x}", crds::fnv1a(s))
}

/// `prefix` + `name`, at most `max` characters: when too long, `name` is cut and a hash
/// of the full name appended, so two long names never collide.
pub fn bounded_name(prefix: &str, name: &str, max: usize) -> String {
    let full = format!("{prefix}{name}");
    if full.len() <= max {
        return full;
    }
    let keep = max.saturating_sub(prefix.len() + 9);
    let cut = name[..keep.min(name.len())].trim_end_matches('-');
    format!("{prefix}{cut}-{}", short_hash(name))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    pub(crate) fn config() -> Config {
        Config {
            namespace: "gatehouse".into(),
            authserver_image: "ghcr.io/gatehouse-dev/authserver:1.2.3".into(),
            database_secret: "gatehouse-database".into(),
            encryption_secret: "gatehouse-encryption".into(),
            authserver_config_map: None,
            resync: Duration::from_mins(5),
            migration_deadline: Duration::from_mins(10),
            concurrency: 4,
            job_pods: PodOverlay::default(),
            scope: crate::scope::Scope::default(),
        }
    }

    #[test]
    fn the_pod_references_the_secrets_and_is_locked_down() {
        let pod = pod_template(&config(), labels("purge"), vec!["migrate".into()]);
        let v = serde_json::to_value(&pod).unwrap();
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["image"], "ghcr.io/gatehouse-dev/authserver:1.2.3");
        assert_eq!(c["command"], json!(["authserver"]));
        assert_eq!(c["args"], json!(["migrate"]));
        assert_eq!(
            c["env"],
            json!([
                {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "gatehouse-database", "key": "DATABASE_URL", "optional": false}}},
                {"name": "ENCRYPTION_KEY", "valueFrom": {"secretKeyRef": {"name": "gatehouse-encryption", "key": "ENCRYPTION_KEY", "optional": false}}},
            ])
        );
        assert_eq!(
            c["securityContext"],
            json!({
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            })
        );
        assert_eq!(v["spec"]["securityContext"]["runAsNonRoot"], true);
        assert_eq!(v["spec"]["restartPolicy"], "Never");
        assert_eq!(v["spec"]["automountServiceAccountToken"], false);
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "gatehouse-operator"
        );
    }

    #[test]
    fn the_config_map_is_mounted_read_only_when_configured() {
        let mut cfg = config();
        cfg.authserver_config_map = Some("gatehouse-config".into());
        let v = serde_json::to_value(pod_template(&cfg, labels("x"), vec![])).unwrap();
        let c = &v["spec"]["containers"][0];
        assert_eq!(
            c["env"][2],
            json!({"name": "GATEHOUSE_CONFIG", "value": "/etc/gatehouse/config.yaml"})
        );
        assert_eq!(
            c["volumeMounts"][1],
            json!({"name": "config", "mountPath": "/etc/gatehouse", "readOnly": true})
        );
        assert_eq!(
            v["spec"]["volumes"][1],
            json!({"name": "config", "configMap": {"name": "gatehouse-config"}})
        );
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_unique() {
        assert_eq!(
            bounded_name("gatehouse-purge-", "acme", 52),
            "gatehouse-purge-acme"
        );
        let a = bounded_name("gatehouse-purge-", &"a".repeat(63), 52);
        let b = bounded_name("gatehouse-purge-", &format!("{}b", "a".repeat(62)), 52);
        assert_eq!(a.len(), 52);
        assert_ne!(a, b);
        assert!(a.starts_with("gatehouse-purge-aaa"));
        assert_eq!(short_hash("x"), short_hash("x"));
        assert_eq!(short_hash(""), "811c9dc5");
    }

    #[test]
    fn the_overlay_adds_scheduling_pull_secrets_and_annotations_but_not_over_our_labels() {
        let mut c = config();
        c.job_pods = PodOverlay::parse(
            r#"{
              "labels": {"team": "identity", "app.kubernetes.io/component": "hijack"},
              "annotations": {"sidecar.istio.io/inject": "false"},
              "imagePullSecrets": [{"name": "regcred"}],
              "nodeSelector": {"pool": "system"},
              "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
              "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "arch", "operator": "In", "values": ["amd64"]}]}]}}},
              "priorityClassName": "system-cluster-critical",
              "resources": {"requests": {"cpu": "10m"}, "limits": {"memory": "128Mi"}}
            }"#,
        )
        .unwrap();
        let v = serde_json::to_value(pod_template(&c, labels("migration"), vec![])).unwrap();
        assert_eq!(v["metadata"]["labels"]["team"], "identity");
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/component"],
            "migration"
        );
        assert_eq!(
            v["metadata"]["annotations"]["sidecar.istio.io/inject"],
            "false"
        );
        let spec = &v["spec"];
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
        assert_eq!(spec["nodeSelector"], json!({"pool": "system"}));
        assert_eq!(spec["tolerations"][0]["key"], "dedicated");
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchExpressions"][0]["key"],
            "arch"
        );
        assert_eq!(spec["priorityClassName"], "system-cluster-critical");
        assert_eq!(
            spec["containers"][0]["resources"],
            json!({"requests": {"cpu": "10m"}, "limits": {"memory": "128Mi"}})
        );
        assert_eq!(spec["securityContext"]["runAsUser"], 65_532);
    }

    #[test]
    fn the_uid_is_left_to_the_platform_or_replaced_when_asked() {
        let mut c = config();
        c.job_pods = PodOverlay::parse(r#"{"platformAssignsUid": true}"#).unwrap();
        let v = serde_json::to_value(pod_template(&c, labels("purge"), vec![])).unwrap();
        let security = &v["spec"]["securityContext"];
        assert!(security.get("runAsUser").is_none(), "{security}");
        assert!(security.get("runAsGroup").is_none(), "{security}");
        assert_eq!(security["runAsNonRoot"], true, "still enforced");
        c.job_pods = PodOverlay::parse(r#"{"runAsUser": 1000, "runAsGroup": 2000}"#).unwrap();
        let v = serde_json::to_value(pod_template(&c, labels("purge"), vec![])).unwrap();
        assert_eq!(v["spec"]["securityContext"]["runAsUser"], 1000);
        assert_eq!(v["spec"]["securityContext"]["runAsGroup"], 2000);
    }

    #[test]
    fn an_empty_overlay_changes_nothing_and_a_typo_is_refused() {
        let mut c = config();
        let plain = serde_json::to_value(pod_template(&c, labels("purge"), vec![])).unwrap();
        c.job_pods = PodOverlay::parse("  ").unwrap();
        assert_eq!(
            serde_json::to_value(pod_template(&c, labels("purge"), vec![])).unwrap(),
            plain
        );
        c.job_pods = PodOverlay::parse("{}").unwrap();
        assert_eq!(
            serde_json::to_value(pod_template(&c, labels("purge"), vec![])).unwrap(),
            plain
        );
        let err = PodOverlay::parse(r#"{"nodeSelektor": {"a": "b"}}"#).unwrap_err();
        assert!(
            err.starts_with("--job-pod-overlay: unknown field `nodeSelektor`"),
            "{err}"
        );
        assert!(PodOverlay::parse("{not json").is_err());
    }
}
