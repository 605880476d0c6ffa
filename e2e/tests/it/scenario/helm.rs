//! Cluster mode's Gatehouse: the Helm chart installed into a fresh namespace, and the two
//! auth pods reached through `kubectl port-forward`.
//!
//! - Images: `E2E_AUTHSERVER_IMAGE` and `E2E_OPERATOR_IMAGE`, e.g.
//!   `localhost/gatehouse/authserver:dev` and `localhost/gatehouse/gatehouse-operator:dev`
//!   (loaded into the cluster with `kind load docker-image` / `k3d image import`). The
//!   chart takes one `image.repository` and one `image.tag` for both, so the two must
//!   be `<repository>/authserver:<tag>` and `<repository>/gatehouse-operator:<tag>`.
//! - Database: `E2E_DATABASE_URL`, a PostgreSQL DSN reachable **from the pods** (e.g. a
//!   PostgreSQL in the cluster, or the host's through `host.docker.internal` /
//!   `host.k3d.internal`). It goes into the Secret `gatehouse-database` before the
//!   install; the run's tenant has a unique name, so a shared database is fine.
//! - Tools: `helm` and `kubectl` from `.tools/bin` (`scripts/install-k8s-tools.sh`), else
//!   from the PATH.
//!
//! Why port-forwarding: the scenario runs outside the cluster and must reach each auth
//! pod on its own (A issues, B introspects), which a Service cannot promise. The tenant's
//! issuer is `http://127.0.0.1:<local port of pod A>/t/<tenant>` (loopback http is a
//! valid issuer) and both forwards are sent `Host: 127.0.0.1:<that port>`, so the pods
//! route by host and path exactly as in local mode. Port-forwarding bypasses the chart's
//! NetworkPolicy, which only the admin port relies on (the scenario never calls it).
//!
//! At the end `helm uninstall` removes the release's cluster-scoped RBAC and the
//! namespace is deleted. The chart's CRDs stay (Helm never deletes CRDs).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::process::{Child, Command};

use super::local::free_port;
use super::{Deadline, Gatehouse, KUBECONFIG_ENV, wait_deleted};

/// How long the install may take to get two running auth pods (image pulls).
const INSTALL_TIMEOUT: Duration = Duration::from_mins(5);

/// An environment variable cluster mode requires.
fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("cluster mode needs {name} (see e2e/README.md)"))
}

/// `(repository, tag)` of `image`, which must be `<repository>/<name>:<tag>`.
fn split_image(var: &str, image: &str, name: &str) -> anyhow::Result<(String, String)> {
    let (rest, tag) = image
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .with_context(|| format!("{var}={image:?} has no tag"))?;
    let repository = rest
        .strip_suffix(&format!("/{name}"))
        .with_context(|| format!("{var}={image:?} is not <repository>/{name}:<tag>"))?;
    Ok((repository.to_owned(), tag.to_owned()))
}

/// `helm` or `kubectl`: `.tools/bin` of the workspace, else the PATH.
pub fn tool(name: &str) -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/bin")
        .join(name);
    if local.is_file() {
        local
    } else {
        PathBuf::from(name)
    }
}

async fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The installed release and the port-forwards to its auth pods.
pub struct Release {
    namespace: String,
    name: String,
    kubeconfig: PathBuf,
    /// `kubectl port-forward` processes, killed on drop.
    forwards: Vec<Child>,
}

impl Release {
    /// Installs the chart into namespace `gatehouse-e2e-{suffix}` and port-forwards to
    /// its two auth pods.
    pub async fn install(client: &Client, suffix: &str) -> anyhow::Result<(Self, Gatehouse)> {
        let kubeconfig = PathBuf::from(required(KUBECONFIG_ENV)?);
        let authserver_image = required("E2E_AUTHSERVER_IMAGE")?;
        let operator_image = required("E2E_OPERATOR_IMAGE")?;
        let database_url = required("E2E_DATABASE_URL")?;
        let (repository, tag) =
            split_image("E2E_AUTHSERVER_IMAGE", &authserver_image, "authserver")?;
        ensure!(
            split_image("E2E_OPERATOR_IMAGE", &operator_image, "gatehouse-operator")?
                == (repository.clone(), tag.clone()),
            "E2E_OPERATOR_IMAGE must have E2E_AUTHSERVER_IMAGE's repository and tag \
             (the chart takes one image.repository and image.tag)"
        );

        let namespace = format!("gatehouse-e2e-{suffix}");
        let name = format!("gh-{suffix}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
            )
            .await?;
        let mut release = Self {
            namespace: namespace.clone(),
            name: name.clone(),
            kubeconfig,
            forwards: Vec::new(),
        };
        match release
            .install_and_forward(client, &repository, &tag, &database_url)
            .await
        {
            Ok(bases) => {
                let [a, b] = bases;
                let gatehouse = Gatehouse::new(&namespace, &authserver_image, &a, &b)?;
                Ok((release, gatehouse))
            }
            Err(e) => {
                let _ = release.uninstall(client).await;
                Err(e)
            }
        }
    }

    async fn install_and_forward(
        &mut self,
        client: &Client,
        repository: &str,
        tag: &str,
        database_url: &str,
    ) -> anyhow::Result<[String; 2]> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "gatehouse-database"},
                    "stringData": {"DATABASE_URL": database_url},
                }))?,
            )
            .await?;
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/gatehouse");
        run(
            Command::new(tool("helm"))
                .arg("install")
                .arg(&self.name)
                .arg(&chart)
                .args(["--namespace", &self.namespace])
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["--set", &format!("image.repository={repository}")])
                .args(["--set", &format!("image.tag={tag}")])
                .args(["--set", "database.existingSecret=gatehouse-database"])
                .args(["--set", "authserver.replicas=2"]),
            "helm install",
        )
        .await?;

        // Two running auth pods (not ready yet: the operator's migration Job makes them).
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let selector = format!(
            "app.kubernetes.io/component=authserver,app.kubernetes.io/instance={}",
            self.name
        );
        let deadline = Deadline::after(INSTALL_TIMEOUT, "two running auth pods");
        let running = loop {
            let list = pods.list(&ListParams::default().labels(&selector)).await?;
            let running: Vec<String> = list
                .items
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
                .map(ResourceExt::name_any)
                .collect();
            if running.len() >= 2 {
                break running;
            }
            deadline
                .tick(format!(
                    "{:?}",
                    list.items
                        .iter()
                        .map(|p| (
                            p.name_any(),
                            p.status.as_ref().and_then(|s| s.phase.clone())
                        ))
                        .collect::<Vec<_>>()
                ))
                .await?;
        };

        let mut bases = Vec::new();
        for pod in &running[..2] {
            let port = free_port();
            let child = Command::new(tool("kubectl"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["--namespace", &self.namespace, "port-forward"])
                .arg(format!("pod/{pod}"))
                .arg(format!("{port}:http"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot run kubectl port-forward")?;
            self.forwards.push(child);
            let base = format!("http://127.0.0.1:{port}");
            let http = reqwest::Client::new();
            let deadline = Deadline::after(INSTALL_TIMEOUT, format!("port-forward to {pod}"));
            loop {
                let status = http.get(format!("{base}/healthz")).send().await;
                if status.as_ref().is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                deadline
                    .tick(format!("{:?}", status.map(|r| r.status())))
                    .await?;
            }
            bases.push(base);
        }
        let [a, b]: [String; 2] = bases.try_into().ok().context("two forwards")?;
        Ok([a, b])
    }

    /// Stops the forwards, uninstalls the release and deletes the namespace.
    pub async fn uninstall(self, client: &Client) -> anyhow::Result<()> {
        drop(self.forwards);
        let uninstalled = run(
            Command::new(tool("helm"))
                .args(["uninstall", &self.name, "--namespace", &self.namespace])
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--wait"),
            "helm uninstall",
        )
        .await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        match namespaces
            .delete(&self.namespace, &DeleteParams::default())
            .await
        {
            Ok(_) => wait_deleted(&namespaces, &self.namespace).await?,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => bail!("failed to delete namespace {}: {e}", self.namespace),
        }
        uninstalled
    }
}

#[test]
fn images_split_into_the_charts_repository_and_tag() {
    assert_eq!(
        split_image("V", "localhost/gatehouse/authserver:dev", "authserver").unwrap(),
        ("localhost/gatehouse".to_owned(), "dev".to_owned())
    );
    assert_eq!(
        split_image(
            "V",
            "registry:5000/x/gatehouse-operator:0.1.0",
            "gatehouse-operator"
        )
        .unwrap(),
        ("registry:5000/x".to_owned(), "0.1.0".to_owned())
    );
    let no_tag = split_image("V", "registry:5000/x/authserver", "authserver").unwrap_err();
    assert!(no_tag.to_string().contains("has no tag"), "{no_tag}");
    let other = split_image("V", "ghcr.io/x/auth:1", "authserver").unwrap_err();
    assert!(
        other.to_string().contains("<repository>/authserver:<tag>"),
        "{other}"
    );
}
