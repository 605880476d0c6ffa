//! Issue 6's end-to-end scenario, one function ([`scenario`]) for both modes:
//!
//! - **local** ([`Cluster::local`]): the fake API server of `e2e::fake_apiserver` in this
//!   process; [`local::Local`] adds a fresh PostgreSQL database, two `authserver serve`
//!   replicas and the real `gatehouse-operator`, as child processes;
//! - **cluster** ([`Cluster::from_env`]): a real cluster from `E2E_KUBECONFIG`; [`helm`]
//!   installs the chart into a fresh namespace and port-forwards to the two auth pods.
//!   These tests are `#[ignore]`d: run them with `--ignored` and `E2E_KUBECONFIG` set;
//!   without it they fail saying so.
//!
//! Every run renames the examples (`acme` → `acme-{suffix}`, `shop` → `e2e-{suffix}`) so
//! reruns and parallel runs on one cluster do not collide, and sets the tenant's issuer to
//! replica A's address (`http://127.0.0.1:{port of A}/t/acme-{suffix}`). Replica B is
//! reached with `Host: 127.0.0.1:{port of A}`: the auth server routes by host and path,
//! like two pods behind one Service.
//!
//! Steps (each asserts something concrete; see `e2e/README.md` for the list):
//! 1. the CRDs and the examples are applied and accepted by the schemas;
//! 2. the operator's migration Job succeeds and both replicas become ready;
//! 3. the tenant is `Ready=True` with `status.issuer`/`discoveryUrl`, both replicas serve
//!    its discovery document, its purge CronJob exists, its keys are active;
//! 4. the machine client's Secret appears with its credentials;
//! 5. they get a client_credentials token from replica A that introspects active on B;
//! 6. annotating the key set rotates: new kids in both replicas' JWKS, old ones kept;
//! 7. deleting the client makes the token endpoint reject its credentials on both, and
//!    applying it again is refused (`ClientIdRetired`);
//! 8. the purge CronJob, triggered once, logs per-target counts;
//! 9. deleting the tenant (`Retain`) removes the object but keeps its rows.
//!
//! The purge runs before the tenant is deleted because the CronJob is owned by the
//! IdentityTenant: it goes with the object whatever the deletion policy.

mod helm;
mod local;
mod postgres;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use crds::{INSTANCE_LABEL, IdentityTenant, OidcClient, SigningKeySet};
use e2e::FakeApiServer;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition as WaitCondition, await_condition, conditions};
use kube::{Client, Resource, ResourceExt, discovery};
use serde_json::{Value, json};

use self::local::Local;

/// Field manager of everything the scenario applies.
const MANAGER: &str = "gatehouse-e2e";
/// Environment variable naming the kubeconfig of a real cluster (cluster mode).
const KUBECONFIG_ENV: &str = "E2E_KUBECONFIG";
/// How long a step may wait for the system to converge (only reached on failure).
const STEP_TIMEOUT: Duration = Duration::from_mins(2);
/// Poll interval of conditions that cannot be watched (HTTP endpoints, the database).
const POLL: Duration = Duration::from_millis(100);
/// The machine client's name in `manifests/examples/machine-client.yaml`.
const MACHINE_CLIENT: &str = "billing-worker";
/// The audience the machine client's tokens are for.
const MACHINE_AUDIENCE: &str = "https://billing.example.com";
/// The purge targets `authserver purge` knows (`authserver/src/store/purge.rs`).
const PURGE_TARGETS: [&str; 13] = [
    "dpop-nonces",
    "dpop-jti",
    "assertion-jti",
    "jti",
    "authorization-codes",
    "refresh-tokens",
    "sessions",
    "par-requests",
    "rate-limits",
    "audit",
    "email-outbox",
    "email-tokens",
    "devices",
];

/// Where the scenario runs.
pub enum Cluster {
    /// The fake API server on this machine.
    Local(FakeApiServer),
    /// A real cluster.
    Real(Client),
}

/// A finished Job: did it succeed, and its pod's log.
pub struct JobOutput {
    pub succeeded: bool,
    pub log: String,
}

impl Cluster {
    /// Local mode: the fake API server, with the operator's namespace, and a kubelet that
    /// runs the `authserver` image as the debug binary next to this test binary.
    pub async fn local() -> anyhow::Result<Self> {
        let debug = local::target_dir()?;
        let fake = FakeApiServer::start_with(e2e::Options {
            namespaces: vec![
                "default".into(),
                "kube-system".into(),
                local::NAMESPACE.into(),
            ],
            images: vec![
                e2e::ImageMapping::new("authserver", debug.join("authserver")),
                e2e::ImageMapping::new("gatehouse-operator", debug.join("gatehouse-operator")),
            ],
            ..e2e::Options::default()
        })
        .await
        .context("failed to start the fake API server")?;
        Ok(Self::Local(fake))
    }

    /// Cluster mode, when `E2E_KUBECONFIG` is set.
    pub async fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(path) = std::env::var_os(KUBECONFIG_ENV) else {
            return Ok(None);
        };
        let kubeconfig = Kubeconfig::read_from(Path::new(&path))
            .with_context(|| format!("failed to read {KUBECONFIG_ENV}={}", path.display()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("failed to load {KUBECONFIG_ENV}"))?;
        Ok(Some(Self::Real(Client::try_from(config)?)))
    }

    /// A client for the cluster.
    pub fn client(&self) -> Client {
        match self {
            Self::Local(fake) => fake.client().expect("a client for the fake"),
            Self::Real(client) => client.clone(),
        }
    }

    /// Runs a CronJob once, as `kubectl create job --from=cronjob/{name}` does, and waits
    /// for it. Through the API only, so the same code serves both modes (the fake's
    /// kubelet runs the Job locally).
    pub async fn run_cronjob(&self, namespace: &str, name: &str) -> anyhow::Result<JobOutput> {
        if let Self::Local(fake) = self {
            let run = fake.trigger_cronjob(namespace, name).await?;
            return Ok(JobOutput {
                succeeded: run.succeeded,
                log: run.log,
            });
        }
        let client = self.client();
        let cronjob = Api::<CronJob>::namespaced(client.clone(), namespace)
            .get(name)
            .await?;
        let template = cronjob
            .spec
            .as_ref()
            .context("CronJob without spec")?
            .job_template
            .clone();
        let job_name = format!("{name}-e2e-{}", suffix());
        let mut job = Job {
            metadata: template.metadata.unwrap_or_default(),
            spec: template.spec,
            status: None,
        };
        job.metadata.name = Some(job_name.clone());
        job.metadata.namespace = Some(namespace.to_owned());
        job.metadata.owner_references = cronjob.controller_owner_ref(&()).map(|r| vec![r]);
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        jobs.create(&PostParams::default(), &job).await?;
        let job = wait(&jobs, &job_name, job_finished).await?;
        let succeeded = job.status.and_then(|s| s.succeeded).unwrap_or(0) > 0;
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let mut log = String::new();
        let selector = format!("batch.kubernetes.io/job-name={job_name}");
        for pod in pods.list(&ListParams::default().labels(&selector)).await? {
            log.push_str(&pods.logs(&pod.name_any(), &LogParams::default()).await?);
        }
        Ok(JobOutput { succeeded, log })
    }
}

/// A Job's `Complete` or `Failed` condition is true.
fn job_finished(j: Option<&Job>) -> bool {
    j.and_then(|j| j.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

/// Waits (watching) until `cond` holds for object `name`, and returns it.
async fn wait<K>(api: &Api<K>, name: &str, cond: impl WaitCondition<K>) -> anyhow::Result<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    tokio::time::timeout(STEP_TIMEOUT, await_condition(api.clone(), name, cond))
        .await
        .with_context(|| format!("timed out waiting for {name}"))??
        .with_context(|| format!("{name} is gone"))
}

/// Waits (watching) until object `name` is gone.
async fn wait_deleted<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(());
    };
    let uid = obj.uid().unwrap_or_default();
    tokio::time::timeout(
        STEP_TIMEOUT,
        await_condition(api.clone(), name, conditions::is_deleted(&uid)),
    )
    .await
    .with_context(|| format!("timed out waiting for {name} to be deleted: {obj:?}"))??;
    Ok(())
}

/// A deadline for polling what cannot be watched: `tick` sleeps [`POLL`], or fails
/// naming what was awaited and the last thing seen once the deadline has passed.
pub struct Deadline {
    what: String,
    until: Instant,
    timeout: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration, what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            until: Instant::now() + timeout,
            timeout,
        }
    }

    pub async fn tick(&self, last: impl std::fmt::Display) -> anyhow::Result<()> {
        if Instant::now() >= self.until {
            bail!(
                "timed out after {:?} waiting for {}; last seen: {last}",
                self.timeout,
                self.what
            );
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }
}

/// One auth server replica, reached at `base` with `Host: host` (replica A's authority,
/// the issuer's), whichever replica it is.
pub struct Replica {
    pub name: &'static str,
    base: String,
    host: String,
    http: reqwest::Client,
}

/// An HTTP response: status and JSON body (`Null` when not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Replica {
    fn new(name: &'static str, base: &str, host: &str) -> anyhow::Result<Self> {
        Ok(Self {
            name,
            base: base.trim_end_matches('/').to_owned(),
            host: host.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// `{base}{path of issuer}{endpoint}`: an issuer endpoint on this replica.
    fn url(&self, issuer: &str, endpoint: &str) -> anyhow::Result<String> {
        let path = url::Url::parse(issuer)
            .with_context(|| format!("issuer {issuer:?} is not a URL"))?
            .path()
            .trim_end_matches('/')
            .to_owned();
        Ok(format!("{}{path}{endpoint}", self.base))
    }

    async fn reply(response: reqwest::Response) -> anyhow::Result<Reply> {
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    /// The status of `GET {base}{path}` (health endpoints).
    pub async fn get_status(&self, path: &str) -> anyhow::Result<u16> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::HOST, &self.host)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// The JSON body of `GET {base}{path}` (health endpoints), whatever the status.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::HOST, &self.host)
            .send()
            .await?;
        Ok(Self::reply(response).await?.body)
    }

    /// `GET` of an issuer endpoint (`/jwks`, `/.well-known/openid-configuration`).
    pub async fn get(&self, issuer: &str, endpoint: &str) -> anyhow::Result<Reply> {
        let response = self
            .http
            .get(self.url(issuer, endpoint)?)
            .header(reqwest::header::HOST, &self.host)
            .send()
            .await
            .with_context(|| format!("GET {endpoint} on replica {}", self.name))?;
        Self::reply(response).await
    }

    /// Polls `GET` of an issuer endpoint until `ok` holds for the reply.
    pub async fn get_until(
        &self,
        issuer: &str,
        endpoint: &str,
        ok: impl Fn(&Reply) -> bool,
    ) -> anyhow::Result<Reply> {
        let deadline = Deadline::after(
            STEP_TIMEOUT,
            format!(
                "GET {endpoint} on replica {} to answer as expected",
                self.name
            ),
        );
        loop {
            let reply = self.get(issuer, endpoint).await?;
            if ok(&reply) {
                return Ok(reply);
            }
            deadline.tick(&reply).await?;
        }
    }

    /// A form `POST` to an issuer endpoint (`/token`, `/introspect`).
    pub async fn post(
        &self,
        issuer: &str,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let response = self
            .http
            .post(self.url(issuer, endpoint)?)
            .header(reqwest::header::HOST, &self.host)
            .form(form)
            .send()
            .await
            .with_context(|| format!("POST {endpoint} on replica {}", self.name))?;
        Self::reply(response).await
    }

    /// The kids in the issuer's JWKS.
    pub async fn kids(&self, issuer: &str) -> anyhow::Result<BTreeSet<String>> {
        let reply = self.get(issuer, "/jwks").await?;
        ensure!(
            reply.status == 200,
            "JWKS on replica {}: {reply}",
            self.name
        );
        Ok(reply.body["keys"]
            .as_array()
            .context("JWKS without keys")?
            .iter()
            .filter_map(|k| k["kid"].as_str().map(str::to_owned))
            .collect())
    }
}

/// What is installed, whichever the mode: where the operator's Jobs run and the two auth
/// server replicas.
pub struct Gatehouse {
    /// Namespace of the operator, its migration Job and the purge CronJobs.
    pub namespace: String,
    /// The image the operator runs its Jobs with (what it records as migrated).
    pub authserver_image: String,
    /// Replica A (its address is the issuer's) and replica B.
    pub replicas: [Replica; 2],
    /// The database Secret, when the install left it out: step 2 first checks that the
    /// migration waits for it with the pod's reason, then creates it (local mode).
    pub withheld_database_secret: Option<Secret>,
}

impl Gatehouse {
    /// `a` and `b` are the replicas' base URLs (`http://127.0.0.1:PORT`); both get A's
    /// authority as `Host`.
    pub fn new(namespace: &str, image: &str, a: &str, b: &str) -> anyhow::Result<Self> {
        let host = url::Url::parse(a)?.authority().to_owned();
        Ok(Self {
            namespace: namespace.to_owned(),
            authserver_image: image.to_owned(),
            replicas: [Replica::new("A", a, &host)?, Replica::new("B", b, &host)?],
            withheld_database_secret: None,
        })
    }

    /// The tenant's issuer: replica A's address and `/t/{tenant}`.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}", self.replicas[0].base)
    }
}

/// A short suffix unique enough for one machine's test runs.
fn suffix() -> String {
    let nanos = jiff::Timestamp::now().as_nanosecond().unsigned_abs();
    let mut n = nanos ^ (u128::from(std::process::id()) << 64);
    (0..6)
        .map(|_| {
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[usize::try_from(n % 36).unwrap()];
            n /= 36;
            char::from(c)
        })
        .collect()
}

/// The names one run uses.
pub struct Names {
    /// The run's suffix.
    pub suffix: String,
    /// The clients' namespace (the examples' `shop`).
    pub namespace: String,
    /// The tenant and key set (the examples' `acme`).
    pub tenant: String,
    /// The tenant's issuer (the example's, or replica A's address once installed).
    pub issuer: String,
    /// A namespace-scoped install of a named instance: the operator watches only
    /// [`Self::namespace`] (the chart's `operator.watchNamespaces`) and reconciles only
    /// objects labelled `gatehouse.dev/instance=<this>` (`operator.instance`), which the
    /// examples then carry.
    pub instance: Option<String>,
}

impl Names {
    pub fn random() -> Self {
        let s = suffix();
        let tenant = format!("acme-{s}");
        Self {
            namespace: format!("e2e-{s}"),
            issuer: format!("https://id.example.com/t/{tenant}"),
            tenant,
            suffix: s,
            instance: None,
        }
    }

    /// Names for a namespace-scoped install of instance `e2e-<suffix>`.
    pub fn namespaced() -> Self {
        let mut names = Self::random();
        names.instance = Some(format!("e2e-{}", names.suffix));
        names
    }

    /// The machine client's id (`<namespace>-<name>`, the operator's default).
    fn machine_client_id(&self) -> String {
        format!("{}-{MACHINE_CLIENT}", self.namespace)
    }
}

/// The examples in apply order, renamed for this run, the tenant's issuer set.
fn examples(names: &Names) -> anyhow::Result<Vec<DynamicObject>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    [
        "namespace.yaml",
        "tenant.yaml",
        "signing-keys.yaml",
        "web-client.yaml",
        "machine-client.yaml",
    ]
    .iter()
    .map(|file| {
        let text = std::fs::read_to_string(dir.join(file))
            .with_context(|| format!("failed to read example {file}"))?
            .replace("acme", &names.tenant)
            .replace("shop", &names.namespace);
        let mut obj: DynamicObject = serde_yaml::from_str(&text)
            .with_context(|| format!("failed to parse example {file}"))?;
        if obj
            .types
            .as_ref()
            .is_some_and(|t| t.kind == "IdentityTenant")
        {
            obj.data["spec"]["issuer"] = json!(names.issuer);
        }
        let kind = obj
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        if let (Some(instance), false) = (&names.instance, kind == "Namespace") {
            obj.labels_mut()
                .insert(INSTANCE_LABEL.to_owned(), instance.clone());
        }
        Ok(obj)
    })
    .collect()
}

async fn api_for(client: &Client, obj: &DynamicObject) -> anyhow::Result<Api<DynamicObject>> {
    let types = obj
        .types
        .as_ref()
        .context("example without apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(types)?;
    let (resource, caps): (ApiResource, _) = discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("failed to discover {}", types.kind))?;
    Ok(match (caps.scope, obj.namespace()) {
        (discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), &ns, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    })
}

/// Step 1: the CRDs (when not installed yet) and the examples are applied and accepted
/// by the schemas, defaults filled in.
pub async fn apply_examples(cluster: &Cluster, names: &Names) -> anyhow::Result<()> {
    let client = cluster.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds::crds() {
        if crds.get_opt(&crd.name_any()).await?.is_none() {
            crds.create(&PostParams::default(), &crd).await?;
        }
    }
    for obj in examples(names)? {
        let api = api_for(&client, &obj).await?;
        let applied = api
            .patch(
                &obj.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("failed to apply {}", obj.name_any()))?;
        ensure!(applied.uid().is_some(), "{} has no uid", obj.name_any());
    }
    // The machine client omits these; the CRD schema's defaults fill them in.
    let clients = api_for(&client, &examples(names)?[4]).await?;
    let machine = clients.get(MACHINE_CLIENT).await?;
    ensure!(
        machine.data["spec"]["deletionPolicy"] == "Delete"
            && machine.data["spec"]["secretRotationOverlapSeconds"] == 86400,
        "schema defaults missing: {}",
        machine.data["spec"]
    );
    Ok(())
}

/// The `Ready` condition of a status's conditions.
fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

fn is_ready(conditions: &[Condition]) -> bool {
    ready(conditions).is_some_and(|c| c.status == "True")
}

/// What the steps share.
struct Run<'a> {
    cluster: &'a Cluster,
    client: Client,
    gatehouse: &'a Gatehouse,
    names: &'a Names,
    /// Local mode: the database, for checks in SQL.
    database: Option<&'a postgres::Database>,
}

/// A client_credentials token and the credentials it was obtained with.
struct Credentials {
    client_id: String,
    client_secret: String,
}

impl Credentials {
    fn form<'f>(&'f self, extra: &[(&'f str, &'f str)]) -> Vec<(&'f str, &'f str)> {
        let mut form = vec![
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
        ];
        form.extend_from_slice(extra);
        form
    }
}

/// The `kid` in a compact JWS's header.
fn jwt_kid(token: &str) -> anyhow::Result<String> {
    let header = token.split('.').next().context("not a JWT")?;
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header)?)?;
    header["kid"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("JWT header without kid: {header}"))
}

impl Run<'_> {
    /// Namespace-scoped install only: an OidcClient of the default instance (no instance
    /// label) in the watched namespace and one of this instance outside it are never
    /// touched — no finalizer, no status, no Secret — while this instance's clients are
    /// Ready (step 4 ran before).
    async fn strays_untouched(&self) -> anyhow::Result<()> {
        let Some(instance) = &self.names.instance else {
            return Ok(());
        };
        let stray = |namespace: &str, labels: Value| -> anyhow::Result<OidcClient> {
            Ok(serde_json::from_value(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
                "metadata": {"name": "stray", "namespace": namespace, "labels": labels},
                "spec": {"tenantRef": self.names.tenant, "grantTypes": ["client_credentials"]},
            }))?)
        };
        let placed = [
            (self.names.namespace.as_str(), json!({})),
            ("default", json!({INSTANCE_LABEL: instance})),
        ];
        let mut apis = Vec::new();
        for (namespace, labels) in placed {
            let api: Api<OidcClient> = Api::namespaced(self.client.clone(), namespace);
            api.create(&PostParams::default(), &stray(namespace, labels)?)
                .await
                .with_context(|| format!("create OidcClient {namespace}/stray"))?;
            apis.push((namespace, api));
        }
        // A reconcile of a watched object starts within a second of its event.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (namespace, api) in &apis {
            let c = api.get("stray").await?;
            ensure!(
                c.finalizers().is_empty() && c.status.is_none(),
                "OidcClient {namespace}/stray was reconciled by instance {instance}: {:?} {:?}",
                c.metadata.finalizers,
                c.status
            );
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            ensure!(
                secrets.get_opt("stray-oidc").await?.is_none(),
                "a Secret was written for OidcClient {namespace}/stray"
            );
            api.delete("stray", &DeleteParams::default()).await?;
        }
        Ok(())
    }

    fn issuer(&self) -> &str {
        &self.names.issuer
    }

    /// Step 2: the operator's migration Job (`authserver migrate`, run by the kubelet)
    /// succeeds, the operator records the image as migrated, and both replicas, started
    /// on an empty database, become ready.
    async fn migration(&self) -> anyhow::Result<()> {
        let ns = &self.gatehouse.namespace;
        if let Some(secret) = &self.gatehouse.withheld_database_secret {
            self.migration_waits_for(secret).await?;
        }
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let selector = "app.kubernetes.io/component=migration";
        let deadline = Deadline::after(STEP_TIMEOUT, "the migration Job to finish");
        let job = loop {
            let list = jobs.list(&ListParams::default().labels(selector)).await?;
            if let Some(job) = list.items.iter().find(|j| job_finished(Some(j))) {
                break job.clone();
            }
            deadline
                .tick(format!(
                    "{:?}",
                    list.items.iter().map(|j| &j.status).collect::<Vec<_>>()
                ))
                .await?;
        };
        let status = job.status.clone().unwrap_or_default();
        ensure!(
            status.succeeded == Some(1),
            "migration Job {} failed: {status:?}",
            job.name_any()
        );
        let command = &job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref().map(|p| p.containers[0].clone()));
        let command = command.as_ref().context("Job without container")?;
        ensure!(
            command.image.as_deref() == Some(self.gatehouse.authserver_image.as_str())
                && command.args.as_deref() == Some(&["migrate".to_owned()][..]),
            "unexpected migration container: {command:?}"
        );
        let status_map: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let image = self.gatehouse.authserver_image.clone();
        // A named instance keeps its own record (`--instance` suffixes the name).
        let status_name = match &self.names.instance {
            Some(instance) => format!("gatehouse-operator-status-{instance}"),
            None => "gatehouse-operator-status".to_owned(),
        };
        wait(&status_map, &status_name, move |cm: Option<&ConfigMap>| {
            cm.and_then(|cm| cm.data.as_ref())
                .and_then(|d| d.get("migratedImage"))
                .is_some_and(|i| *i == image)
        })
        .await?;
        for replica in &self.gatehouse.replicas {
            let deadline = Deadline::after(
                STEP_TIMEOUT,
                format!("replica {} to be ready after the migration", replica.name),
            );
            loop {
                let status = replica.get_status("/readyz").await;
                if matches!(status, Ok(200)) {
                    break;
                }
                deadline.tick(format!("{status:?}")).await?;
            }
        }
        Ok(())
    }

    /// Step 2, first half (local mode): without the database Secret the migration pod
    /// waits (`CreateContainerConfigError`, as a kubelet reports it), the Job stays
    /// active, and the tenant says why in its `MigrationPending` condition; creating the
    /// Secret lets the same Job run.
    async fn migration_waits_for(&self, secret: &Secret) -> anyhow::Result<()> {
        let ns = &self.gatehouse.namespace;
        let tenants: Api<IdentityTenant> = Api::all(self.client.clone());
        let reason = "CreateContainerConfigError: secret \"gatehouse-database\" not found";
        let tenant = wait(
            &tenants,
            &self.names.tenant,
            move |t: Option<&IdentityTenant>| {
                t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Ready"
                            && c.status == "False"
                            && c.reason == "MigrationPending"
                            && c.message.contains(reason)
                    })
                })
            },
        )
        .await
        .context("the tenant to say why the migration waits")?;
        let message = tenant
            .status
            .iter()
            .flat_map(|s| s.conditions.iter())
            .map(|c| c.message.clone())
            .next()
            .unwrap_or_default();
        ensure!(
            message.contains("the Job fails after 600 s"),
            "no deadline in {message:?}"
        );
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let list = jobs
            .list(&ListParams::default().labels("app.kubernetes.io/component=migration"))
            .await?;
        ensure!(
            list.items.len() == 1 && !job_finished(list.items.first()),
            "the migration Job should wait, active: {:?}",
            list.items.iter().map(|j| &j.status).collect::<Vec<_>>()
        );
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        secrets.create(&PostParams::default(), secret).await?;
        Ok(())
    }

    /// Step 3: the tenant is `Ready=True` with its issuer and discovery URL in the status;
    /// both replicas serve the discovery document for it; its purge CronJob exists; its
    /// key set is `Ready` with an active key per algorithm.
    async fn tenant_ready(&self) -> anyhow::Result<()> {
        let tenants: Api<IdentityTenant> = Api::all(self.client.clone());
        let tenant = wait(
            &tenants,
            &self.names.tenant,
            |t: Option<&IdentityTenant>| {
                t.and_then(|t| t.status.as_ref())
                    .is_some_and(|s| is_ready(&s.conditions))
            },
        )
        .await?;
        let status = tenant.status.as_ref().context("no status")?;
        let issuer = self.issuer();
        ensure!(
            status.issuer.as_deref() == Some(issuer)
                && status.discovery_url.as_deref()
                    == Some(format!("{issuer}/.well-known/openid-configuration").as_str())
                && status.observed_generation == tenant.metadata.generation,
            "unexpected tenant status: {status:?}"
        );
        // A replica sees the new tenant once its cache is dropped (LISTEN/NOTIFY).
        for replica in &self.gatehouse.replicas {
            replica
                .get_until(issuer, "/.well-known/openid-configuration", |reply| {
                    reply.status == 200
                        && reply.body["issuer"] == issuer
                        && reply.body["token_endpoint"] == format!("{issuer}/token")
                        && reply.body["introspection_endpoint"] == format!("{issuer}/introspect")
                })
                .await?;
        }
        let cronjobs: Api<CronJob> =
            Api::namespaced(self.client.clone(), &self.gatehouse.namespace);
        let name = format!("gatehouse-purge-{}", self.names.tenant);
        let tenant_name = self.names.tenant.clone();
        wait(&cronjobs, &name, move |c: Option<&CronJob>| {
            c.and_then(|c| c.spec.as_ref())
                .and_then(|s| s.job_template.spec.as_ref())
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.containers[0].args.as_ref())
                .is_some_and(|args| {
                    args.windows(2)
                        .any(|w| w[0] == "--tenant" && w[1] == tenant_name)
                })
        })
        .await?;
        let key_sets: Api<SigningKeySet> = Api::all(self.client.clone());
        let key_set = wait(
            &key_sets,
            &self.names.tenant,
            |k: Option<&SigningKeySet>| {
                k.and_then(|k| k.status.as_ref())
                    .is_some_and(|s| is_ready(&s.conditions))
            },
        )
        .await?;
        let keys = &key_set.status.as_ref().context("no status")?.keys;
        let algs: BTreeSet<String> = keys
            .iter()
            .filter(|k| k.state.as_str() == "active")
            .map(|k| format!("{:?}", k.alg))
            .collect();
        ensure!(
            algs.len() == 3,
            "not one active key per algorithm: {keys:?}"
        );
        Ok(())
    }

    /// Step 4: the machine client is `Ready` and its Secret has `CLIENT_ID`
    /// (`<namespace>-billing-worker`), a `CLIENT_SECRET` and `ISSUER_URL`, owned by it.
    async fn client_secret(&self) -> anyhow::Result<Credentials> {
        let clients: Api<OidcClient> = Api::namespaced(self.client.clone(), &self.names.namespace);
        let client = wait(&clients, MACHINE_CLIENT, |c: Option<&OidcClient>| {
            c.and_then(|c| c.status.as_ref())
                .is_some_and(|s| is_ready(&s.conditions))
        })
        .await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.names.namespace);
        let name = format!("{MACHINE_CLIENT}-oidc");
        let secret = wait(&secrets, &name, |s: Option<&Secret>| {
            s.and_then(|s| s.data.as_ref())
                .is_some_and(|d| d.contains_key("CLIENT_SECRET"))
        })
        .await?;
        let data = secret.data.as_ref().context("Secret without data")?;
        let text = |key: &str| -> anyhow::Result<String> {
            let bytes = data
                .get(key)
                .with_context(|| format!("Secret {name} lacks {key}"))?;
            Ok(String::from_utf8(bytes.0.clone())?)
        };
        let credentials = Credentials {
            client_id: text("CLIENT_ID")?,
            client_secret: text("CLIENT_SECRET")?,
        };
        ensure!(
            credentials.client_id == self.names.machine_client_id(),
            "CLIENT_ID is {}",
            credentials.client_id
        );
        ensure!(
            credentials.client_secret.len() >= 32,
            "CLIENT_SECRET is too short"
        );
        ensure!(
            text("ISSUER_URL")? == self.issuer(),
            "ISSUER_URL is {}",
            text("ISSUER_URL")?
        );
        ensure!(
            secret
                .owner_references()
                .iter()
                .any(|o| o.kind == "OidcClient" && Some(&o.uid) == client.uid().as_ref()),
            "Secret {name} is not owned by the OidcClient: {:?}",
            secret.owner_references()
        );
        Ok(credentials)
    }

    /// Requests a client_credentials token from `replica`.
    async fn token(&self, replica: &Replica, credentials: &Credentials) -> anyhow::Result<Reply> {
        replica
            .post(
                self.issuer(),
                "/token",
                &credentials.form(&[("grant_type", "client_credentials")]),
            )
            .await
    }

    /// Introspects `token` on `replica`, authenticated as `credentials`.
    async fn introspect(
        &self,
        replica: &Replica,
        credentials: &Credentials,
        token: &str,
    ) -> anyhow::Result<Reply> {
        replica
            .post(
                self.issuer(),
                "/introspect",
                &credentials.form(&[("token", token)]),
            )
            .await
    }

    /// Step 5: a client_credentials token from replica A (a JWT signed with a key in
    /// the JWKS) introspects `active: true` on replica B, with the client, issuer,
    /// audience and scopes of the registration.
    async fn token_across_replicas(&self, credentials: &Credentials) -> anyhow::Result<String> {
        let [a, b] = &self.gatehouse.replicas;
        let reply = self.token(a, credentials).await?;
        ensure!(
            reply.status == 200 && reply.body["token_type"] == "Bearer",
            "token from replica A: {reply}"
        );
        let token = reply.body["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned();
        let kid = jwt_kid(&token)?;
        let kids = a.kids(self.issuer()).await?;
        ensure!(kids.contains(&kid), "kid {kid} is not in the JWKS {kids:?}");
        let reply = self.introspect(b, credentials, &token).await?;
        let body = &reply.body;
        ensure!(
            reply.status == 200
                && body["active"] == true
                && body["client_id"] == credentials.client_id
                && body["iss"] == self.issuer()
                && (body["aud"] == MACHINE_AUDIENCE || body["aud"] == json!([MACHINE_AUDIENCE]))
                && body["scope"] == "billing.read billing.write",
            "introspection on replica B: {reply}"
        );
        Ok(token)
    }

    /// Annotates the key set with `name=value` and waits until the operator recorded it
    /// (`recorded` reads the status field) with Ready=True; returns the key set then.
    async fn annotate_key_set(
        &self,
        name: &'static str,
        value: &str,
        recorded: fn(&crds::SigningKeySetStatus) -> Option<&str>,
    ) -> anyhow::Result<SigningKeySet> {
        let key_sets: Api<SigningKeySet> = Api::all(self.client.clone());
        key_sets
            .patch(
                &self.names.tenant,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {name: value}}})),
            )
            .await?;
        let value = value.to_owned();
        wait(
            &key_sets,
            &self.names.tenant,
            move |k: Option<&SigningKeySet>| {
                k.and_then(|k| k.status.as_ref())
                    .is_some_and(|s| recorded(s) == Some(value.as_str()) && is_ready(&s.conditions))
            },
        )
        .await
    }

    /// Waits until both replicas' JWKS satisfy `done`, described by `what`.
    async fn wait_for_jwks(
        &self,
        what: &str,
        done: impl Fn(&BTreeSet<String>) -> bool,
    ) -> anyhow::Result<()> {
        for replica in &self.gatehouse.replicas {
            let deadline = Deadline::after(
                STEP_TIMEOUT,
                format!("{what} in replica {}'s JWKS", replica.name),
            );
            loop {
                let kids = replica.kids(self.issuer()).await?;
                if done(&kids) {
                    break;
                }
                deadline.tick(format!("{kids:?}")).await?;
            }
        }
        Ok(())
    }

    /// The `kid` of a new client_credentials token from replica A.
    async fn new_token_kid(&self, credentials: &Credentials) -> anyhow::Result<String> {
        let reply = self.token(&self.gatehouse.replicas[0], credentials).await?;
        let token = reply.body["access_token"]
            .as_str()
            .with_context(|| format!("token after rotating: {reply}"))?;
        jwt_kid(token)
    }

    /// Step 6: annotating the key set with `gatehouse.dev/rotate` publishes a new key per
    /// algorithm first: the status lists three new pending kids and `nextActivation`,
    /// both replicas' JWKS serve them beside the old ones, and new tokens are still
    /// signed with an old key. Then `gatehouse.dev/rotate-now` (the emergency): three new
    /// active kids, both JWKS serve only those, new tokens are signed with one of them,
    /// and the token from step 5 (old key) no longer introspects active on replica B.
    async fn rotate_keys(&self, credentials: &Credentials, old_token: &str) -> anyhow::Result<()> {
        let [a, b] = &self.gatehouse.replicas;
        let before = a.kids(self.issuer()).await?;
        let of = |k: &SigningKeySet, state: &str| -> BTreeSet<String> {
            k.status
                .iter()
                .flat_map(|s| &s.keys)
                .filter(|k| k.state.as_str() == state)
                .map(|k| k.kid.clone())
                .collect()
        };

        let value = format!("e2e-{}", self.names.suffix);
        let key_set = self
            .annotate_key_set(crds::ROTATE_ANNOTATION, &value, |s| {
                s.last_rotation_annotation.as_deref()
            })
            .await?;
        let status = key_set.status.as_ref().context("no status")?;
        let pending = of(&key_set, "pending");
        ensure!(
            pending.len() == 3 && pending.is_disjoint(&before) && of(&key_set, "active") == before,
            "no new pending kid per algorithm beside the active ones after rotating: {:?} \
             (before: {before:?})",
            status.keys
        );
        let activation = status
            .next_activation
            .as_ref()
            .context("status.nextActivation is unset while keys are pending")?;
        ensure!(
            status
                .keys
                .iter()
                .filter(|k| pending.contains(&k.kid))
                .all(|k| k.activated_at.as_ref() == Some(activation)),
            "pending keys activate at another time than status.nextActivation {activation:?}: {:?}",
            status.keys
        );
        self.wait_for_jwks("the new pending kids and the old ones", |kids| {
            kids.is_superset(&pending) && kids.is_superset(&before)
        })
        .await?;
        let kid = self.new_token_kid(credentials).await?;
        ensure!(
            before.contains(&kid),
            "a token right after the rotation is signed with {kid}, not an old key {before:?}: \
             relying parties that cached the JWKS would reject it"
        );
        let reply = self.introspect(b, credentials, old_token).await?;
        ensure!(
            reply.body["active"] == true,
            "the token signed before the rotation introspects {reply} on replica B"
        );

        let key_set = self
            .annotate_key_set(crds::ROTATE_NOW_ANNOTATION, &value, |s| {
                s.last_rotate_now_annotation.as_deref()
            })
            .await?;
        let active = of(&key_set, "active");
        ensure!(
            active.len() == 3 && active.is_disjoint(&before) && active.is_disjoint(&pending),
            "no new active kid per algorithm after the emergency rotation: {:?}",
            key_set.status.as_ref().map(|s| &s.keys)
        );
        self.wait_for_jwks("only the emergency kids", |kids| *kids == active)
            .await?;
        let kid = self.new_token_kid(credentials).await?;
        ensure!(
            active.contains(&kid),
            "a token after the emergency rotation is signed with {kid}, not a new key {active:?}"
        );
        let reply = self.introspect(b, credentials, old_token).await?;
        ensure!(
            reply.body["active"] == false,
            "the token signed with a withdrawn key introspects {reply} on replica B"
        );
        Ok(())
    }

    /// Step 7: deleting the machine client removes the object (the operator's finalizer
    /// deletes the registration, revoking its tokens and retiring its id) and its Secret
    /// (garbage collection); its credentials get `401 invalid_client` from the token
    /// endpoint of both replicas; the same object applied again reports
    /// `Ready=False, reason=ClientIdRetired`.
    async fn delete_client(&self, credentials: &Credentials) -> anyhow::Result<()> {
        let clients: Api<OidcClient> = Api::namespaced(self.client.clone(), &self.names.namespace);
        clients
            .delete(MACHINE_CLIENT, &DeleteParams::default())
            .await?;
        wait_deleted(&clients, MACHINE_CLIENT).await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.names.namespace);
        wait_deleted(&secrets, &format!("{MACHINE_CLIENT}-oidc")).await?;
        for replica in &self.gatehouse.replicas {
            let deadline = Deadline::after(
                STEP_TIMEOUT,
                format!("replica {} to reject the deleted client", replica.name),
            );
            loop {
                let reply = self.token(replica, credentials).await?;
                if reply.status == 401 && reply.body["error"] == "invalid_client" {
                    break;
                }
                deadline.tick(&reply).await?;
            }
        }
        if let Some(db) = self.database {
            let rows = db.query(&format!(
                "SELECT count(*) FROM clients WHERE tenant_id = '{}' AND client_id = '{}'",
                self.names.tenant, credentials.client_id
            ))?;
            ensure!(rows == "0", "the deleted client still has {rows} row(s)");
            let retired = db.query(&format!(
                "SELECT count(*) FROM retired_clients WHERE tenant_id = '{}' AND client_id = '{}'",
                self.names.tenant, credentials.client_id
            ))?;
            ensure!(retired == "1", "the deleted client id is not retired");
        }
        // The id is retired: the same OidcClient applied again is refused with a reason,
        // so no object (here or in another namespace) can inherit the old client's tokens.
        let again = examples(self.names)?
            .into_iter()
            .find(|o| o.name_any() == MACHINE_CLIENT)
            .context("the machine client example")?;
        let api = api_for(&self.client, &again).await?;
        api.patch(
            MACHINE_CLIENT,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&again),
        )
        .await?;
        wait(&clients, MACHINE_CLIENT, |c: Option<&OidcClient>| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| ready(&s.conditions))
                .is_some_and(|r| r.status == "False" && r.reason == "ClientIdRetired")
        })
        .await
        .context("the re-applied client to report Ready=False, reason ClientIdRetired")?;
        clients
            .delete(MACHINE_CLIENT, &DeleteParams::default())
            .await?;
        wait_deleted(&clients, MACHINE_CLIENT).await?;
        Ok(())
    }

    /// Step 8: the purge CronJob, triggered once, succeeds and logs `target=… rows=…`
    /// for every target. Locally, two expired revoked-token rows of the tenant and one of
    /// another tenant are planted first: the log says `target=jti rows=2` and the other
    /// tenant's row is left alone (`--tenant`).
    async fn purge(&self) -> anyhow::Result<()> {
        let tenant = &self.names.tenant;
        if let Some(db) = self.database {
            db.query(&format!(
                "INSERT INTO revoked_tokens (tenant_id, jti, expires_at, revoked_at) VALUES \
                 ('{tenant}', 'e2e-1', 1, 0), ('{tenant}', 'e2e-2', 1, 0), ('e2e-other', 'e2e-3', 1, 0)"
            ))?;
        }
        let name = format!("gatehouse-purge-{tenant}");
        let out = Box::pin(self.cluster.run_cronjob(&self.gatehouse.namespace, &name)).await?;
        ensure!(out.succeeded, "purge Job failed:\n{}", out.log);
        let mut counts = std::collections::BTreeMap::new();
        for line in out.log.lines() {
            let mut target = None;
            let mut rows = None;
            for word in line.split_whitespace() {
                if let Some(t) = word.strip_prefix("target=") {
                    target = Some(t.to_owned());
                } else if let Some(r) = word.strip_prefix("rows=") {
                    rows = r.parse::<u64>().ok();
                }
            }
            if let (Some(t), Some(r)) = (target, rows) {
                counts.insert(t, r);
            }
        }
        let targets: BTreeSet<&str> = counts.keys().map(String::as_str).collect();
        ensure!(
            targets == PURGE_TARGETS.into_iter().collect(),
            "purge log lacks per-target counts:\n{}",
            out.log
        );
        if let Some(db) = self.database {
            ensure!(counts["jti"] == 2, "purge log:\n{}", out.log);
            let left = db.query("SELECT string_agg(tenant_id || '/' || jti, ',') FROM revoked_tokens WHERE jti LIKE 'e2e-%'")?;
            ensure!(
                left == "e2e-other/e2e-3",
                "revoked tokens after the purge: {left}"
            );
        }
        Ok(())
    }

    /// Step 9: deleting the tenant (`deletionPolicy: Retain`) removes the object and its
    /// purge CronJob but keeps its rows: both replicas still serve its discovery document
    /// and JWKS; locally its tenant, signing key and (web) client rows are still there.
    async fn delete_tenant(&self) -> anyhow::Result<()> {
        let tenants: Api<IdentityTenant> = Api::all(self.client.clone());
        tenants
            .delete(&self.names.tenant, &DeleteParams::default())
            .await?;
        wait_deleted(&tenants, &self.names.tenant).await?;
        let cronjobs: Api<CronJob> =
            Api::namespaced(self.client.clone(), &self.gatehouse.namespace);
        wait_deleted(&cronjobs, &format!("gatehouse-purge-{}", self.names.tenant)).await?;
        for replica in &self.gatehouse.replicas {
            let reply = replica
                .get(self.issuer(), "/.well-known/openid-configuration")
                .await?;
            ensure!(
                reply.status == 200 && reply.body["issuer"] == self.issuer(),
                "discovery of the retained tenant on replica {}: {reply}",
                replica.name
            );
            ensure!(
                !replica.kids(self.issuer()).await?.is_empty(),
                "the retained tenant's JWKS is empty on replica {}",
                replica.name
            );
        }
        if let Some(db) = self.database {
            let tenant = &self.names.tenant;
            let rows = db.query(&format!(
                "SELECT (SELECT count(*) FROM tenants WHERE id = '{tenant}') || ' ' || \
                 (SELECT count(*) FROM signing_keys WHERE tenant_id = '{tenant}') || ' ' || \
                 (SELECT count(*) FROM clients WHERE tenant_id = '{tenant}' AND client_id = '{}-web')",
                self.names.namespace
            ))?;
            let counts: Vec<u64> = rows.split(' ').filter_map(|n| n.parse().ok()).collect();
            ensure!(
                counts.len() == 3 && counts[0] == 1 && counts[1] >= 6 && counts[2] == 1,
                "rows of the retained tenant (tenant, signing keys, web client): {rows}"
            );
        }
        Ok(())
    }
}

/// Steps 2–9 (step 1 is [`apply_examples`]), each logged with its duration.
async fn steps(run: &Run<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    let step = |n: u32, what: &str| {
        eprintln!(
            "scenario: step {n} ({what}) passed at {:.1} s",
            started.elapsed().as_secs_f64()
        );
    };
    apply_examples(run.cluster, run.names)
        .await
        .context("step 1: apply the examples")?;
    step(1, "examples applied");
    run.migration().await.context("step 2: migration Job")?;
    step(2, "migration Job succeeded, replicas ready");
    run.tenant_ready().await.context("step 3: tenant Ready")?;
    step(3, "tenant Ready");
    let credentials = run.client_secret().await.context("step 4: client Secret")?;
    step(4, "client Secret");
    run.strays_untouched()
        .await
        .context("step 4b: other instances' and unwatched namespaces' objects untouched")?;
    let token = run
        .token_across_replicas(&credentials)
        .await
        .context("step 5: token from A introspected on B")?;
    step(5, "token from A active on B");
    run.rotate_keys(&credentials, &token)
        .await
        .context("step 6: key rotation")?;
    step(6, "keys rotated");
    run.delete_client(&credentials)
        .await
        .context("step 7: client deletion")?;
    step(7, "deleted client rejected");
    run.purge().await.context("step 8: purge CronJob")?;
    step(8, "purge counts");
    run.delete_tenant()
        .await
        .context("step 9: tenant deletion with Retain")?;
    step(9, "retained tenant rows kept");
    Ok(())
}

/// How long cleanup waits for the operator's finalizers.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Deletes what the run created and waits until it is gone (the operator removes the
/// finalizers, so this runs before it is stopped: a cluster-scoped tenant left with a
/// finalizer and no operator would never go).
pub async fn cleanup(cluster: &Cluster, names: &Names) -> anyhow::Result<()> {
    let client = cluster.client();
    let mut deleted = Vec::new();
    for obj in examples(names)?.iter().rev() {
        let api = api_for(&client, obj).await?;
        match api.delete(&obj.name_any(), &DeleteParams::default()).await {
            Ok(_) => deleted.push((api, obj.name_any())),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => bail!("failed to delete {}: {e}", obj.name_any()),
        }
    }
    tokio::time::timeout(CLEANUP_TIMEOUT, async {
        for (api, name) in &deleted {
            wait_deleted(api, name).await?;
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| {
        format!(
            "cleanup: {:?} not gone after {CLEANUP_TIMEOUT:?} (finalizers?)",
            deleted.iter().map(|(_, n)| n).collect::<Vec<_>>()
        )
    })?
}

/// The whole scenario: install Gatehouse (local processes, or the chart), run the steps,
/// clean up, stop or uninstall — the last two also when a step failed.
pub async fn scenario(cluster: &Cluster, mut names: Names) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut local, release, gatehouse) = match cluster {
        Cluster::Local(fake) => {
            let (local, gatehouse) = Local::start(fake, &names).await?;
            (Some(local), None, gatehouse)
        }
        Cluster::Real(client) => {
            let (release, gatehouse) =
                Box::pin(helm::Release::install(client, &names.suffix)).await?;
            (None, Some(release), gatehouse)
        }
    };
    names.issuer = gatehouse.issuer(&names.tenant);
    let run = Run {
        cluster,
        client: cluster.client(),
        gatehouse: &gatehouse,
        names: &names,
        database: local.as_ref().map(|l| &l.database),
    };
    let mut result = Box::pin(steps(&run)).await;
    let cleaned = cleanup(cluster, &names).await;
    if let (Ok(()), Some(local), Cluster::Local(fake)) = (&result, &local, cluster) {
        result = local.check_rbac(fake, &names).await;
    }
    if let Some(local) = &mut local {
        if let Err(e) = local.check_running() {
            result = result.and(Err(e));
        }
        if result.is_err() {
            result = result.with_context(|| local.logs());
        }
    }
    drop(local);
    if let Some(release) = release {
        release.uninstall(&cluster.client()).await?;
    }
    eprintln!(
        "scenario: finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result.and(cleaned)
}

#[tokio::test]
async fn local_examples_are_accepted_by_the_crd_schemas() {
    let cluster = Cluster::local().await.unwrap();
    let names = Names::random();
    apply_examples(&cluster, &names).await.unwrap();
    cleanup(&cluster, &names).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_scenario() {
    let cluster = Cluster::local().await.unwrap();
    if let Err(e) = scenario(&cluster, Names::random()).await {
        panic!("{e:?}");
    }
}

/// The same steps with the chart's namespace-scoped RBAC (`operator.watchNamespaces`) and
/// a named instance (`operator.instance`): the Roles it renders are all the operator
/// needs, and objects of another instance or outside the watched namespace stay
/// untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_scenario_namespaced() {
    let cluster = Cluster::local().await.unwrap();
    if let Err(e) = scenario(&cluster, Names::namespaced()).await {
        panic!("{e:?}");
    }
}

#[tokio::test]
#[ignore = "needs a real cluster: set E2E_KUBECONFIG (see e2e/README.md) and run with --ignored"]
async fn cluster_examples_are_accepted_by_the_crd_schemas() {
    let cluster = Cluster::from_env().await.unwrap().unwrap_or_else(|| {
        panic!("{KUBECONFIG_ENV} is not set: cluster mode needs a real cluster")
    });
    let names = Names::random();
    let applied = apply_examples(&cluster, &names).await;
    cleanup(&cluster, &names).await.unwrap();
    applied.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: set E2E_KUBECONFIG (see e2e/README.md) and run with --ignored"]
async fn cluster_scenario() {
    let cluster = Cluster::from_env().await.unwrap().unwrap_or_else(|| {
        panic!("{KUBECONFIG_ENV} is not set: cluster mode needs a real cluster")
    });
    if let Err(e) = scenario(&cluster, Names::random()).await {
        panic!("{e:?}");
    }
}

#[tokio::test]
async fn a_cronjob_runs_through_the_api_like_on_a_real_cluster() {
    // The cluster-mode path of `run_cronjob` (create a Job from the template, wait, read
    // the pod log), checked against the fake.
    let cluster = Cluster::local().await.unwrap();
    let client = cluster.client();
    let cronjob: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "purge"},
        "spec": {"schedule": "17 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "purge", "image": "busybox", "command": ["/bin/sh", "-c", "echo sessions=0"]}],
        }}}}},
    }))
    .unwrap();
    Api::<CronJob>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cronjob)
        .await
        .unwrap();
    let real_path = Cluster::Real(client);
    let out = Box::pin(real_path.run_cronjob("default", "purge"))
        .await
        .unwrap();
    assert!(out.succeeded);
    assert_eq!(out.log, "sessions=0\n");
    let local = Box::pin(cluster.run_cronjob("default", "purge"))
        .await
        .unwrap();
    assert_eq!(local.log, "sessions=0\n");
}
