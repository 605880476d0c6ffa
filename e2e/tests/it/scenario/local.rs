//! Local mode's Gatehouse: a fresh PostgreSQL database, two `authserver serve` replicas
//! (A and B) sharing it, each with the admin API on its own port, and the real
//! `gatehouse-operator` talking to replica A's admin API and to the fake API server
//! through its kubeconfig. All of them are child processes killed when [`Local`] is
//! dropped — also when a step panics or fails.
//!
//! The operator runs as the chart's ServiceAccount under the chart's RBAC, rendered with
//! `helm template` and enforced by the fake (see [`install_chart_rbac`]): a permission the
//! chart misses is a 403 the run fails on ([`Local::check_rbac`]).
//!
//! The schema is not migrated by hand: the replicas start on an empty database (alive,
//! not ready) and the operator's migration Job, run by the fake's kubelet with the
//! `authserver` binary, migrates it.
//!
//! The binaries are the workspace's debug builds next to this test binary
//! (`$CARGO_TARGET_DIR/debug/{authserver,gatehouse-operator}`). `cargo test --workspace`
//! builds both before any test runs (they are the authserver's and the operator's
//! integration-test binaries); `cargo test -p e2e` alone does not, so run
//! `cargo build -p operator -p authserver` first. A missing binary, one older than its
//! sources or one built from another checkout with other sources (the target directory
//! may be shared) fails the scenario with that command in the message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use e2e::FakeApiServer;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{Value, json};
use tokio::process::Command;

use super::postgres::Database;
use super::{Deadline, Gatehouse, MANAGER, Names};

/// The operator's namespace in the fake: migration Job, purge CronJobs, Secrets.
pub const NAMESPACE: &str = "gatehouse";
/// The image the operator is told to use for its Jobs; the kubelet maps it to the
/// `authserver` debug binary.
pub const AUTHSERVER_IMAGE: &str = "ghcr.io/gatehouse-dev/authserver:e2e";
/// The chart's release name here: the chart is `gatehouse`, so its objects are named
/// `gatehouse-…` (the operator's ServiceAccount `gatehouse-operator`).
const RELEASE: &str = "gatehouse";
/// How long a process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub use testkit::free_port;

/// `$CARGO_TARGET_DIR/debug`: where the workspace's binaries are.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    testkit::process::target_dir().map_err(anyhow::Error::msg)
}

/// The debug build of workspace binary `name` (package directory `package`), refused when
/// older than that package's sources ([`testkit::process::workspace_binary`]).
fn binary(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    testkit::process::workspace_binary(name, package).map_err(anyhow::Error::msg)
}

pub fn authserver_binary() -> anyhow::Result<PathBuf> {
    binary("authserver", "authserver")
}

pub fn operator_binary() -> anyhow::Result<PathBuf> {
    binary("gatehouse-operator", "operator")
}

/// A child process (the test kit's), failing the run with its log when it died.
pub struct Process(testkit::process::Process);

impl Process {
    fn spawn(name: &str, command: &testkit::process::Command) -> Self {
        Self(command.spawn(name))
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        self.0.logs()
    }

    /// Fails (with the log) if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.0.exited() {
            bail!("{} exited ({status}):\n{}", self.0.name(), self.log());
        }
        Ok(())
    }
}

/// The running local installation.
pub struct Local {
    // Field order is drop order: processes first, then the database they use.
    operator: Process,
    replicas: [Process; 2],
    /// The operator's kubeconfig: the chart's ServiceAccount.
    kubeconfig: PathBuf,
    /// The database, for checks in SQL.
    pub database: Database,
    logs: tempfile::TempDir,
}

/// What `helm install` of the chart (release [`RELEASE`] in [`NAMESPACE`]) would create
/// for the operator's identity: renders the ServiceAccounts, the operator's RBAC and its
/// Deployment with `helm template`, applies the first two (namespaced ones into the
/// release namespace, as helm does) and returns the ServiceAccount the Deployment runs
/// the operator as — so the operator below runs with exactly the chart's permissions.
///
/// For a namespace-scoped install ([`Names::instance`]) the chart is rendered with
/// `operator.watchNamespaces` = the clients' namespace and `operator.instance`, and its
/// Roles go into the namespaces they name (the clients' namespace is created for them).
async fn install_chart_rbac(client: &kube::Client, names: &Names) -> anyhow::Result<String> {
    let helm = super::helm::tool("helm");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/gatehouse");
    let mut command = Command::new(&helm);
    command
        .arg("template")
        .arg(RELEASE)
        .arg(&chart)
        .args(["--namespace", NAMESPACE])
        .args(["--set", "database.existingSecret=gatehouse-database"]);
    if let Some(instance) = &names.instance {
        command
            .args([
                "--set",
                &format!("operator.watchNamespaces={{{}}}", names.namespace),
            ])
            .args(["--set", &format!("operator.instance={instance}")]);
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": names.namespace}}))?;
        Api::<Namespace>::all(client.clone())
            .patch(
                &names.namespace,
                &PatchParams::apply(MANAGER),
                &Patch::Apply(&namespace),
            )
            .await?;
    }
    let out = command
        .args(["--show-only", "templates/serviceaccounts.yaml"])
        .args(["--show-only", "templates/operator-rbac.yaml"])
        .args(["--show-only", "templates/operator-deployment.yaml"])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| {
            format!(
                "cannot run {}: run scripts/install-k8s-tools.sh (the local scenario \
                 renders the chart's RBAC)",
                helm.display()
            )
        })?;
    ensure!(
        out.status.success(),
        "helm template failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut service_account = None;
    for doc in serde_yaml::Deserializer::from_str(std::str::from_utf8(&out.stdout)?) {
        let mut obj: Value = serde::Deserialize::deserialize(doc)?;
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "Deployment" => {
                service_account = obj["spec"]["template"]["spec"]["serviceAccountName"]
                    .as_str()
                    .map(str::to_owned);
                continue;
            }
            "ServiceAccount" | "Role" | "RoleBinding" => {
                // helm puts objects without a namespace into the release namespace.
                if obj["metadata"]["namespace"].is_null() {
                    obj["metadata"]["namespace"] = NAMESPACE.into();
                }
            }
            "ClusterRole" | "ClusterRoleBinding" => {}
            _ => bail!("unexpected {kind} in the chart's operator RBAC"),
        }
        let (group, version) = obj["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .rsplit_once('/')
            .unwrap_or(("", "v1"));
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, &kind),
            &format!("{}s", kind.to_lowercase()),
        );
        let obj: DynamicObject = serde_json::from_value(obj)?;
        let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let name = obj.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&obj))
            .await
            .with_context(|| format!("failed to apply the chart's {kind} {name}"))?;
    }
    service_account.context("the chart's operator Deployment names no serviceAccountName")
}

/// The operator's kubeconfig: the chart's ServiceAccount, with the chart's RBAC enforced
/// by the fake, so a permission the chart misses fails the scenario with a 403.
async fn operator_kubeconfig(fake: &FakeApiServer, names: &Names) -> anyhow::Result<PathBuf> {
    let service_account = install_chart_rbac(&fake.client()?, names).await?;
    Ok(fake.kubeconfig_for_service_account(NAMESPACE, &service_account)?)
}

/// "The kubelet": each bootstrapped Secret, once the operator has created it (labelled,
/// without an owner), becomes the file its volume mounts.
async fn mount_bootstrap_secrets(
    secrets: &Api<Secret>,
    operator: &mut Process,
    mounts: &[(&str, &str, &PathBuf)],
) -> anyhow::Result<()> {
    for (name, key, file) in mounts {
        let deadline = Deadline::after(
            START_TIMEOUT,
            format!("the operator to create the bootstrap Secret {name}"),
        );
        let value = loop {
            operator.check_running()?;
            if let Some(s) = secrets.get_opt(name).await? {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                ensure!(
                    labels.get("gatehouse.dev/bootstrap").map(String::as_str) == Some("true")
                        && s.metadata.owner_references.is_none(),
                    "bootstrap Secret {name} is unlabelled or owned: {:?}",
                    s.metadata
                );
                let data = s.data.unwrap_or_default();
                break data
                    .get(*key)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    .with_context(|| format!("Secret {name} has no {key}"))?;
            }
            deadline.tick(name).await?;
        };
        std::fs::write(file, format!("{value}\n"))?;
    }
    Ok(())
}

/// The operator as the chart's Deployment runs it (its environment), as the chart's
/// ServiceAccount (`kubeconfig`), talking to the admin API at `admin_addr`.
fn spawn_operator(
    binary: &Path,
    kubeconfig: &Path,
    admin_addr: &str,
    token_file: &Path,
    names: &Names,
) -> Process {
    let mut c = testkit::process::Command::new(binary)
        .env("KUBECONFIG", kubeconfig.display().to_string())
        .env("GATEHOUSE_ADMIN_ADDR", admin_addr)
        .env(
            "GATEHOUSE_ADMIN_TOKEN_FILE",
            token_file.display().to_string(),
        )
        .env("GATEHOUSE_AUTHSERVER_IMAGE", AUTHSERVER_IMAGE)
        .env("POD_NAMESPACE", NAMESPACE)
        .env("POD_NAME", "gatehouse-operator-e2e")
        .env("GATEHOUSE_PROBE_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("GATEHOUSE_LOG_FORMAT", "json")
        .env("GATEHOUSE_BOOTSTRAP_ENCRYPTION_SECRET", "true")
        .env("GATEHOUSE_BOOTSTRAP_ADMIN_SECRET", "gatehouse-admin-token")
        .env("RUST_LOG", "info");
    if let Some(instance) = &names.instance {
        // As the chart's Deployment passes operator.watchNamespaces and .instance.
        c = c
            .env("GATEHOUSE_WATCH_NAMESPACES", names.namespace.clone())
            .env("GATEHOUSE_INSTANCE", instance.clone());
    }
    Process::spawn("gatehouse-operator", &c)
}

impl Local {
    /// Starts everything; returns the installation and what the scenario needs to know.
    pub async fn start(fake: &FakeApiServer, names: &Names) -> anyhow::Result<(Self, Gatehouse)> {
        let authserver = authserver_binary()?;
        let operator = operator_binary()?;
        let database = Database::create().await;
        let logs = tempfile::Builder::new()
            .prefix("gatehouse-e2e-")
            .tempdir()?;
        // As the chart installs it: the ENCRYPTION_KEY and admin token Secrets do not
        // exist yet; the operator bootstraps them, and "the kubelet" (this harness)
        // writes them into the files the replicas and the operator read.
        let key_file = logs.path().join("ENCRYPTION_KEY");
        let token_file = logs.path().join("admin-token");

        let mut ports = Vec::new();
        let mut replicas = Vec::new();
        for name in ["authserver-a", "authserver-b"] {
            let (http, admin) = (free_port(), free_port());
            let c = testkit::process::Command::new(&authserver)
                .args(["--listen", &format!("127.0.0.1:{http}"), "serve"])
                .env("DATABASE_URL", database.url())
                .env(
                    "GATEHOUSE_ENCRYPTION_KEY_FILE",
                    key_file.display().to_string(),
                )
                .env(
                    "GATEHOUSE_ADMIN_TOKEN_FILE",
                    token_file.display().to_string(),
                )
                .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
                .env("RUST_LOG", "info");
            replicas.push(Process::spawn(name, &c));
            ports.push((http, admin));
        }
        let [a, b]: [Process; 2] = replicas.try_into().ok().expect("two replicas");
        let mut replicas = [a, b];
        let gatehouse = Gatehouse::new(
            NAMESPACE,
            AUTHSERVER_IMAGE,
            &format!("http://127.0.0.1:{}", ports[0].0),
            &format!("http://127.0.0.1:{}", ports[1].0),
        )?;
        // Alive (the schema is not there yet, so not ready): /healthz answers.
        for (replica, process) in gatehouse.replicas.iter().zip(&mut replicas) {
            let deadline = Deadline::after(
                START_TIMEOUT,
                format!("replica {} to answer /healthz", replica.name),
            );
            loop {
                process.check_running()?;
                let status = replica.get_status("/healthz").await;
                if matches!(status, Ok(200)) {
                    break;
                }
                deadline.tick(format!("{status:?}")).await?;
            }
        }

        // What the user brings: the database Secret (the others are bootstrapped). It is
        // withheld until step 2 has seen the migration wait for it.
        let database_secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "gatehouse-database", "namespace": NAMESPACE},
            "stringData": {"DATABASE_URL": database.url()},
        }))?;
        let mut gatehouse = gatehouse;
        gatehouse.withheld_database_secret = Some(database_secret);
        let secrets: Api<Secret> = Api::namespaced(fake.client()?, NAMESPACE);

        let kubeconfig = operator_kubeconfig(fake, names).await?;
        let mut operator = spawn_operator(
            &operator,
            &kubeconfig,
            &format!("http://127.0.0.1:{}", ports[0].1),
            &token_file,
            names,
        );
        // The replicas stay unready, saying why, until the key Secret exists.
        let reason = gatehouse.replicas[0].get_json("/readyz").await?;
        ensure!(
            reason["reason"]
                .as_str()
                .is_some_and(|r| r.contains("waiting for the ENCRYPTION_KEY")),
            "replica A before the key exists: {reason}"
        );
        mount_bootstrap_secrets(
            &secrets,
            &mut operator,
            &[
                ("gatehouse-encryption", "ENCRYPTION_KEY", &key_file),
                ("gatehouse-admin-token", "token", &token_file),
            ],
        )
        .await?;
        Ok((
            Self {
                operator,
                replicas,
                kubeconfig,
                database,
                logs,
            },
            gatehouse,
        ))
    }

    /// The chart's RBAC is what the operator needs, no less and not much more. After the
    /// steps and the cleanup, the fake refused nothing the operator asked (a refused
    /// Event or a retried reconcile would not fail a step). Then, as the operator's
    /// kubeconfig, deleting a Secret, reading pods outside its namespace or one by name,
    /// Jobs across namespaces and granting itself more are 403s, while listing its own
    /// pods works.
    ///
    /// Namespace-scoped ([`Names::instance`]): deleting the clients' namespace deletes the
    /// Role that lets the operator write Events there before the OidcClients' finalizers
    /// are released, so the `ClientDeleted` Events of that cleanup are refused — expected,
    /// and the only refusal allowed (the finalizers themselves are released through the
    /// ClusterRole, or cleanup would have timed out).
    pub async fn check_rbac(&self, fake: &FakeApiServer, names: &Names) -> anyhow::Result<()> {
        let clients_namespace = names.namespace.as_str();
        let lost_with_the_namespace = format!(
            "cannot create resource \"events\" in API group \"events.k8s.io\" in the namespace \"{clients_namespace}\""
        );
        let denied: Vec<String> = fake
            .denied_requests()
            .into_iter()
            .filter(|d| names.instance.is_none() || !d.contains(&lost_with_the_namespace))
            .collect();
        ensure!(
            denied.is_empty(),
            "the chart's RBAC refused the operator {} request(s):\n{}",
            denied.len(),
            denied.join("\n")
        );
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&self.kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        let forbidden = |what: &str, result: kube::Result<()>| match result {
            Err(kube::Error::Api(s)) if s.code == 403 => {
                eprintln!("scenario: the operator may not {what}: {}", s.message);
                Ok(())
            }
            other => bail!("the operator may {what}: {other:?}"),
        };
        let own_pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        own_pods
            .list(&ListParams::default())
            .await
            .context("the operator lists the pods of its namespace")?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
        forbidden(
            "delete a Secret",
            secrets
                .delete("gatehouse-database", &DeleteParams::default())
                .await
                .map(drop),
        )?;
        forbidden(
            "get a pod (only list)",
            own_pods.get("anything").await.map(drop),
        )?;
        for ns in [clients_namespace, "default"] {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            forbidden(
                &format!("list pods in namespace {ns}"),
                pods.list(&ListParams::default()).await.map(drop),
            )?;
        }
        forbidden(
            "list Jobs across namespaces",
            Api::<Job>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(drop),
        )?;
        let escalate: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "gatehouse-operator-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "gatehouse-operator", "namespace": NAMESPACE}],
        }))?;
        forbidden(
            "bind itself to another role",
            Api::<ClusterRoleBinding>::all(client)
                .create(&PostParams::default(), &escalate)
                .await
                .map(drop),
        )
    }

    /// Fails with its log when a process died.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.operator.check_running()?;
        for r in &mut self.replicas {
            r.check_running()?;
        }
        Ok(())
    }

    /// The processes' logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = format!("secrets in {}\n", self.logs.path().display());
        for p in std::iter::once(&self.operator).chain(&self.replicas) {
            let log = p.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let _ = writeln!(
                out,
                "--- {} (last {} lines, in {}) ---",
                p.0.name(),
                tail.len(),
                p.0.log_dir().display()
            );
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}
