//! Command line of `gatehouse-operator`. Every flag also reads an environment variable
//! (named in `--help`); defaults suit the Helm chart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::authserver_pod::PodOverlay;
use crate::context::Config;
use crate::scope::Scope;
use crate::telemetry::LogFormat;

/// Gatehouse operator: reconciles IdentityTenant, OidcClient and SigningKeySet resources
/// through the auth server's admin API.
#[derive(Debug, Clone, Parser)]
#[command(name = "gatehouse-operator", version)]
pub struct Args {
    /// Address of the auth server's admin gRPC API (a cluster-internal Service).
    #[arg(
        long,
        env = "GATEHOUSE_ADMIN_ADDR",
        default_value = "http://gatehouse-admin:8081"
    )]
    pub admin_addr: String,

    /// PEM CA bundle that verifies the admin API's TLS certificate; required with an
    /// `https://` --admin-addr (e.g. `ca.crt` of a cert-manager Secret). Read at start:
    /// restart the operator when the CA itself changes.
    #[arg(long, env = "GATEHOUSE_ADMIN_CA_FILE")]
    pub admin_ca_file: Option<PathBuf>,

    /// File holding the admin API bearer token (a mounted Secret); read at start.
    #[arg(
        long,
        env = "GATEHOUSE_ADMIN_TOKEN_FILE",
        default_value = "/var/run/secrets/gatehouse/admin-token"
    )]
    pub admin_token_file: PathBuf,

    /// authserver image the migration Job and purge CronJobs run (the auth pods' image).
    #[arg(long, env = "GATEHOUSE_AUTHSERVER_IMAGE")]
    pub authserver_image: String,

    /// Namespace of the migration Jobs, purge CronJobs, the status ConfigMap and the
    /// leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "gatehouse")]
    pub namespace: String,

    /// Secret (in --namespace) whose key DATABASE_URL the Jobs and CronJobs get; the
    /// operator never reads it.
    #[arg(
        long,
        env = "GATEHOUSE_DATABASE_SECRET",
        default_value = "gatehouse-database"
    )]
    pub database_secret: String,

    /// Secret (in --namespace) whose key ENCRYPTION_KEY the Jobs and CronJobs get; the
    /// operator never reads it.
    #[arg(
        long,
        env = "GATEHOUSE_ENCRYPTION_SECRET",
        default_value = "gatehouse-encryption"
    )]
    pub encryption_secret: String,

    /// Create the Secret named by --encryption-secret (key ENCRYPTION_KEY, 32 random bytes
    /// in hex) when it does not exist: once, without an owner, never updated or deleted.
    /// For installs that do not bring their own key.
    #[arg(
        long,
        env = "GATEHOUSE_BOOTSTRAP_ENCRYPTION_SECRET",
        default_value_t = false,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub bootstrap_encryption_secret: bool,

    /// Create this Secret (in --namespace) with a random admin API token under
    /// --admin-secret-key when it does not exist: once, never updated or deleted.
    #[arg(long, env = "GATEHOUSE_BOOTSTRAP_ADMIN_SECRET")]
    pub bootstrap_admin_secret: Option<String>,

    /// Key of the admin token in its Secret.
    #[arg(long, env = "GATEHOUSE_ADMIN_SECRET_KEY", default_value = "token")]
    pub admin_secret_key: String,

    /// ConfigMap with the authserver `config.yaml`, mounted into the Jobs and CronJobs at
    /// /etc/gatehouse (GATEHOUSE_CONFIG=/etc/gatehouse/config.yaml). Default: none.
    #[arg(long, env = "GATEHOUSE_AUTHSERVER_CONFIG_MAP")]
    pub authserver_config_map: Option<String>,

    /// Longest interval between two reconciles of an object (drift correction), seconds.
    #[arg(
        long,
        env = "GATEHOUSE_RESYNC_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(10..=86_400)
    )]
    pub resync_seconds: u64,

    /// Reconciles each controller runs at once. Bounds the load on the auth server's admin
    /// API and the API server, also when the migration gate opens and every object is
    /// reconciled: they are worked off this many at a time.
    #[arg(
        long,
        env = "GATEHOUSE_MAX_CONCURRENT_RECONCILES",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub max_concurrent_reconciles: u16,

    /// `activeDeadlineSeconds` of the migration Job: how long its pod may take (including
    /// waiting for its image or Secrets) before the Job fails with `DeadlineExceeded`.
    #[arg(
        long,
        env = "GATEHOUSE_MIGRATION_DEADLINE_SECONDS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(30..=86_400)
    )]
    pub migration_deadline_seconds: u64,

    /// JSON added to every pod the operator creates (migration Jobs, purge CronJobs):
    /// `labels`, `annotations`, `imagePullSecrets`, `nodeSelector`, `tolerations`,
    /// `affinity`, `priorityClassName`, `resources`, `runAsUser`, `runAsGroup`,
    /// `platformAssignsUid`. Default: nothing added.
    #[arg(long, env = "GATEHOUSE_JOB_POD_OVERLAY", default_value = "")]
    pub job_pod_overlay: String,

    /// Namespaces whose OidcClients (and the Secrets next to them) the operator watches,
    /// comma-separated; empty: all namespaces (cluster-wide RBAC). With a list it needs
    /// Roles in those namespaces only; objects elsewhere are not reconciled.
    #[arg(long, env = "GATEHOUSE_WATCH_NAMESPACES", default_value = "")]
    pub watch_namespaces: String,

    /// Reconcile only objects labelled `gatehouse.dev/instance=<name>`, so several
    /// releases can share a cluster. Empty (default): only objects without that label.
    #[arg(long, env = "GATEHOUSE_INSTANCE", default_value = "")]
    pub instance: String,

    /// Listen address of /healthz, /readyz and /metrics.
    #[arg(long, env = "GATEHOUSE_PROBE_ADDR", default_value = "0.0.0.0:8080")]
    pub probe_addr: SocketAddr,

    /// Elect a leader through the Lease `gatehouse-operator` in --namespace, so several
    /// replicas are safe (`--leader-election=false` for a single replica or local runs).
    #[arg(
        long,
        env = "GATEHOUSE_LEADER_ELECTION",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub leader_election: bool,

    /// Identity in the Lease and in Events. Default: the pod name (POD_NAME), else the
    /// host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

fn dns_name(flag: &str, value: &str, max: usize) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !value.starts_with(['-', '.'])
        && !value.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{flag}: {value:?} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.')"
        ))
    }
}

impl Args {
    /// The reconcilers' configuration, validated; errors name the flag.
    pub fn config(&self) -> Result<Config, String> {
        if !(self.admin_addr.starts_with("http://") || self.admin_addr.starts_with("https://")) {
            return Err(format!(
                "--admin-addr: {:?} must be an http:// or https:// URL",
                self.admin_addr
            ));
        }
        if self.authserver_image.trim().is_empty()
            || self.authserver_image.contains(char::is_whitespace)
        {
            return Err(format!(
                "--authserver-image: {:?} is not an image reference",
                self.authserver_image
            ));
        }
        dns_name("--namespace", &self.namespace, 63)?;
        dns_name("--database-secret", &self.database_secret, 253)?;
        dns_name("--encryption-secret", &self.encryption_secret, 253)?;
        if let Some(cm) = &self.authserver_config_map {
            dns_name("--authserver-config-map", cm, 253)?;
        }
        Ok(Config {
            namespace: self.namespace.clone(),
            authserver_image: self.authserver_image.clone(),
            database_secret: self.database_secret.clone(),
            encryption_secret: self.encryption_secret.clone(),
            authserver_config_map: self.authserver_config_map.clone(),
            resync: Duration::from_secs(self.resync_seconds),
            migration_deadline: Duration::from_secs(self.migration_deadline_seconds),
            concurrency: self.max_concurrent_reconciles,
            job_pods: PodOverlay::parse(&self.job_pod_overlay)?,
            scope: Scope::parse(&self.watch_namespaces, &self.instance)?,
        })
    }

    /// `--identity`, else the host name, else `gatehouse-operator-<pid>`.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| format!("gatehouse-operator-{}", std::process::id()))
    }
}

impl Args {
    /// The bootstrap Secrets to create when missing (see `crate::bootstrap`).
    pub fn bootstrap(&self) -> Vec<crate::bootstrap::Wanted> {
        use crate::bootstrap::{Kind, Wanted};
        let mut wanted = Vec::new();
        if self.bootstrap_encryption_secret {
            wanted.push(Wanted {
                name: self.encryption_secret.clone(),
                key: "ENCRYPTION_KEY".to_owned(),
                kind: Kind::EncryptionKey,
            });
        }
        if let Some(name) = self
            .bootstrap_admin_secret
            .as_deref()
            .filter(|n| !n.is_empty())
        {
            wanted.push(Wanted {
                name: name.to_owned(),
                key: self.admin_secret_key.clone(),
                kind: Kind::AdminToken,
            });
        }
        wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("gatehouse-operator").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_need_only_the_image() {
        let a = parse(&["--authserver-image", "ghcr.io/x/authserver:1.0"]).unwrap();
        assert_eq!(a.admin_addr, "http://gatehouse-admin:8081");
        assert_eq!(
            a.admin_token_file,
            PathBuf::from("/var/run/secrets/gatehouse/admin-token")
        );
        assert_eq!(a.resync_seconds, 300);
        assert_eq!(a.probe_addr.to_string(), "0.0.0.0:8080");
        assert!(a.leader_election);
        assert_eq!(a.log_format, LogFormat::Json);
        let c = a.config().unwrap();
        assert_eq!(c.resync, Duration::from_mins(5));
        assert_eq!(c.database_secret, "gatehouse-database");
        assert_eq!(c.authserver_config_map, None);
        assert!(a.bootstrap().is_empty(), "nothing is created unless asked");
        assert_eq!(c.scope, Scope::default(), "cluster-wide, default instance");
    }

    #[test]
    fn watched_namespaces_and_the_instance_reach_the_config() {
        let c = parse(&[
            "--authserver-image",
            "x:1",
            "--watch-namespaces",
            "shop,billing",
            "--instance",
            "blue",
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(c.scope, Scope::parse("billing,shop", "blue").unwrap());
        let a = parse(&["--authserver-image", "x:1", "--watch-namespaces", "Shop"]).unwrap();
        assert!(a.config().unwrap_err().starts_with("--watch-namespaces:"));
        let a = parse(&["--authserver-image", "x:1", "--instance", "Blue"]).unwrap();
        assert!(a.config().unwrap_err().starts_with("--instance:"));
    }

    #[test]
    fn migration_deadline_and_pod_overlay_are_checked() {
        let c = parse(&["--authserver-image", "x/authserver:1"])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(c.migration_deadline, Duration::from_mins(10));
        assert_eq!(c.concurrency, 4);
        assert!(
            parse(&[
                "--authserver-image",
                "x/authserver:1",
                "--max-concurrent-reconciles",
                "0"
            ])
            .is_err()
        );
        assert_eq!(c.job_pods, PodOverlay::default());
        assert!(
            parse(&[
                "--authserver-image",
                "x/authserver:1",
                "--migration-deadline-seconds",
                "5"
            ])
            .is_err()
        );
        let c = parse(&[
            "--authserver-image",
            "x/authserver:1",
            "--job-pod-overlay",
            r#"{"priorityClassName": "high"}"#,
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(c.job_pods.priority_class_name.as_deref(), Some("high"));
        let err = parse(&[
            "--authserver-image",
            "x/authserver:1",
            "--job-pod-overlay",
            r#"{"tolerations": 3}"#,
        ])
        .unwrap()
        .config()
        .unwrap_err();
        assert!(err.starts_with("--job-pod-overlay: invalid type"), "{err}");
    }

    #[test]
    fn bootstrap_secrets_are_named_by_their_flags() {
        let a = parse(&[
            "--authserver-image",
            "x:1",
            "--encryption-secret",
            "gh-encryption",
            "--bootstrap-encryption-secret",
            "--bootstrap-admin-secret",
            "gh-admin-token",
        ])
        .unwrap();
        let names: Vec<(String, String)> =
            a.bootstrap().into_iter().map(|w| (w.name, w.key)).collect();
        assert_eq!(
            names,
            [
                ("gh-encryption".to_owned(), "ENCRYPTION_KEY".to_owned()),
                ("gh-admin-token".to_owned(), "token".to_owned())
            ]
        );
    }

    #[test]
    fn leader_election_can_be_switched_off() {
        let a = parse(&["--authserver-image", "x:1", "--leader-election=false"]).unwrap();
        assert!(!a.leader_election);
        let a = parse(&["--authserver-image", "x:1", "--leader-election"]).unwrap();
        assert!(a.leader_election);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let a = parse(&[
            "--authserver-image",
            "x:1",
            "--admin-addr",
            "gatehouse-admin:8081",
        ])
        .unwrap();
        assert!(a.config().unwrap_err().starts_with("--admin-addr:"));
        let a = parse(&["--authserver-image", "x:1", "--namespace", "Gatehouse"]).unwrap();
        assert!(a.config().unwrap_err().starts_with("--namespace:"));
        let a = parse(&["--authserver-image", " "]).unwrap();
        assert!(a.config().unwrap_err().starts_with("--authserver-image:"));
        assert!(parse(&["--authserver-image", "x:1", "--resync-seconds", "1"]).is_err());
        assert!(parse(&[]).is_err(), "the image is required");
    }
}
