//! The operator-at-scale benchmark (issue 13): the real `gatehouse-operator` against the
//! fake API server, with one real `authserver serve` on a fresh PostgreSQL database.
//! Run it through `benches/operator-scale.sh`, which builds the release binaries.
//!
//! 1. Starts the fake (its kubelet runs the operator's migration Job with the given
//!    `authserver`), the auth server and the operator (as a `system:masters` user, so
//!    its requests are counted apart from this harness's), lets the operator bootstrap
//!    its Secrets and migrate the schema.
//! 2. Applies `--namespaces` namespaces and `--tenants` IdentityTenants, and waits for the
//!    tenants to be Ready.
//! 3. Applies `--clients` OidcClients spread over the namespaces (server-side apply,
//!    `--apply-parallelism` at a time, as `kubectl apply --server-side` of one big
//!    manifest sends them), and waits until every one is `Ready` for its generation with
//!    its credentials Secret holding a `CLIENT_SECRET`.
//! 4. Waits for the operator's requests to settle, then counts a window of
//!    `--resync-windows` resync intervals with nothing changed.
//!
//! It prints one `operator-scale: <figure> …` line per figure: the time to all Ready,
//! the operator's API requests per client by verb and resource, its peak RSS, its CPU
//! during the ramp-up and per resync, and the auth server's CPU. A client that never
//! becomes Ready within `--timeout-seconds` is a correctness failure: exit status 1. The
//! figures are never compared with a goal here: this is a measurement, not a test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use crds::{IdentityTenant, OidcClient};
use e2e::fake_apiserver::RequestCounts;
use e2e::{FakeApiServer, ImageMapping, Options, UserInfo};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Resource as _, ResourceExt as _};
use serde_json::json;
use testkit::process::{Command, Process};

/// The operator's namespace: its Secrets, the migration Job, the status ConfigMap.
const NAMESPACE: &str = "gatehouse";
/// The image the operator runs its Jobs with; the kubelet maps it to `--authserver`.
const AUTHSERVER_IMAGE: &str = "ghcr.io/gatehouse-dev/authserver:bench";
/// Field manager of what the benchmark applies.
const MANAGER: &str = "operator-scale";
/// The operator's user in the fake (its requests are counted under this name).
const OPERATOR_USER: &str = "gatehouse-operator";
/// Label of a namespace naming the tenant that allows it.
const TENANT_LABEL: &str = "gatehouse.dev/tenant";
/// How often the waits look at the caches (in memory: no requests).
const POLL: Duration = Duration::from_millis(100);
/// How long the operator's requests must pause to count as settled after the ramp-up.
const QUIET: Duration = Duration::from_secs(3);

/// Flags (defaults: issue 13's scenario).
#[derive(Debug, Parser)]
#[command(about = "Operator-at-scale benchmark: OidcClients until Ready, requests, RSS, CPU")]
struct Args {
    /// OidcClients to apply.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Namespaces the clients are spread over (round robin).
    #[arg(long, default_value_t = 20)]
    namespaces: usize,
    /// IdentityTenants; namespace i is allowed by tenant i mod tenants.
    #[arg(long, default_value_t = 5)]
    tenants: usize,
    /// The operator's GATEHOUSE_RESYNC_SECONDS.
    #[arg(long, default_value_t = 20)]
    resync_seconds: u64,
    /// Resync intervals in the idle window that is measured after the ramp-up.
    #[arg(long, default_value_t = 2)]
    resync_windows: u32,
    /// The operator's GATEHOUSE_MAX_CONCURRENT_RECONCILES (unset: the operator's default).
    #[arg(long)]
    max_concurrent_reconciles: Option<u16>,
    /// Server-side applies in flight while the clients are applied.
    #[arg(long, default_value_t = 16)]
    apply_parallelism: usize,
    /// Milliseconds every API request waits in the fake before it is handled (a real API
    /// server's round trip; 0: the in-process fake answers at once).
    #[arg(long, default_value_t = 0)]
    api_latency_ms: u64,
    /// How long every client may take to become Ready before the run fails.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// The `authserver` binary (release build).
    #[arg(long, env = "GATEHOUSE_AUTHSERVER_BIN")]
    authserver: PathBuf,
    /// The `gatehouse-operator` binary (release build).
    #[arg(long, env = "GATEHOUSE_OPERATOR_BIN")]
    operator: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("operator-scale: FAILED: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The processes and what the phases need from them.
struct Bench {
    fake: FakeApiServer,
    client: Client,
    operator: Process,
    authserver: Process,
    /// `http://127.0.0.1:<port>` of the auth server (the tenants' issuers live under it).
    base_url: String,
    clock_ticks: f64,
    /// Kept for the run: the auth server's key and token files, the database.
    _files: tempfile::TempDir,
    _database: testkit::postgres::Database,
}

/// CPU seconds (user + system) and peak RSS of a process, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu_seconds: f64,
    peak_rss_kib: u64,
}

fn usage(pid: u32, clock_ticks: f64) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime
    // and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        let v: u64 = fields.get(i).context("short /proc/<pid>/stat")?.parse()?;
        #[allow(clippy::cast_precision_loss)] // ticks of a benchmark run
        Ok(v as f64)
    };
    let cpu_seconds = (ticks(11)? + ticks(12)?) / clock_ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok(Usage {
        cpu_seconds,
        peak_rss_kib,
    })
}

/// `getconf CLK_TCK` (the unit of /proc's CPU times), 100 if it cannot be run.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

async fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tenants > 0 && args.namespaces > 0,
        "--tenants and --namespaces must be at least 1"
    );
    let mut bench = Bench::start(args).await?;
    println!(
        "operator-scale: setup clients={} namespaces={} tenants={} resync_seconds={} \
         max_concurrent_reconciles={} apply_parallelism={} api_latency_ms={}",
        args.clients,
        args.namespaces,
        args.tenants,
        args.resync_seconds,
        args.max_concurrent_reconciles
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
        args.apply_parallelism,
        args.api_latency_ms
    );
    let started = Instant::now();
    bench.apply_tenants(args).await?;
    println!(
        "operator-scale: tenants_ready seconds={:.1}",
        started.elapsed().as_secs_f64()
    );
    bench.ramp_up(args).await?;
    bench.resync(args).await?;
    bench.operator.check_running()?;
    Ok(())
}

impl Bench {
    /// The fake, the database, the auth server and the operator, up to a migrated schema.
    async fn start(args: &Args) -> anyhow::Result<Self> {
        let fake = FakeApiServer::start_with(Options {
            namespaces: vec!["default".into(), "kube-system".into(), NAMESPACE.into()],
            images: vec![ImageMapping::new("authserver", &args.authserver)],
            request_latency: Duration::from_millis(args.api_latency_ms),
            ..Options::default()
        })
        .await
        .context("failed to start the fake API server")?;
        let client = fake.client()?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in crds::crds() {
            crds.create(&PostParams::default(), &crd).await?;
        }
        let database = testkit::postgres::Database::create("gh_scale").await;
        let files = tempfile::Builder::new()
            .prefix("operator-scale-")
            .tempdir()?;
        let key_file = files.path().join("ENCRYPTION_KEY");
        let token_file = files.path().join("admin-token");
        let (http, admin) = (testkit::free_port(), testkit::free_port());
        let mut authserver = Command::new(&args.authserver)
            .args(["--listen", &format!("127.0.0.1:{http}"), "serve"])
            .env("DATABASE_URL", database.url())
            .env("GATEHOUSE_ENCRYPTION_KEY_FILE", path(&key_file))
            .env("GATEHOUSE_ADMIN_TOKEN_FILE", path(&token_file))
            .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("RUST_LOG", "info")
            .spawn("authserver");
        let base_url = format!("http://127.0.0.1:{http}");
        authserver
            .wait_http_ok(&format!("{base_url}/healthz"), None)
            .await;
        let database_secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "gatehouse-database", "namespace": NAMESPACE},
            "stringData": {"DATABASE_URL": database.url()},
        }))?;
        Api::<Secret>::namespaced(client.clone(), NAMESPACE)
            .create(&PostParams::default(), &database_secret)
            .await?;
        let kubeconfig = fake.kubeconfig_for(&UserInfo::new(OPERATOR_USER, ["system:masters"]))?;
        let mut operator = Command::new(&args.operator)
            .env("KUBECONFIG", path(&kubeconfig))
            .env("GATEHOUSE_ADMIN_ADDR", format!("http://127.0.0.1:{admin}"))
            .env("GATEHOUSE_ADMIN_TOKEN_FILE", path(&token_file))
            .env("GATEHOUSE_AUTHSERVER_IMAGE", AUTHSERVER_IMAGE)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_NAME", "gatehouse-operator-bench")
            .env(
                "GATEHOUSE_PROBE_ADDR",
                format!("127.0.0.1:{}", testkit::free_port()),
            )
            .env("GATEHOUSE_LOG_FORMAT", "json")
            .env("GATEHOUSE_BOOTSTRAP_ENCRYPTION_SECRET", "true")
            .env("GATEHOUSE_BOOTSTRAP_ADMIN_SECRET", "gatehouse-admin-token")
            .env("GATEHOUSE_RESYNC_SECONDS", args.resync_seconds.to_string())
            .env("RUST_LOG", "info");
        if let Some(n) = args.max_concurrent_reconciles {
            operator = operator.env("GATEHOUSE_MAX_CONCURRENT_RECONCILES", n.to_string());
        }
        let operator = operator.spawn("gatehouse-operator");
        let mut bench = Self {
            fake,
            client,
            operator,
            authserver,
            base_url,
            clock_ticks: clock_ticks(),
            _files: files,
            _database: database,
        };
        bench
            .mount_bootstrap_secrets(&[
                ("gatehouse-encryption", "ENCRYPTION_KEY", &key_file),
                ("gatehouse-admin-token", "token", &token_file),
            ])
            .await?;
        // Ready once the operator's migration Job has migrated the schema.
        let ready = format!("{}/readyz", bench.base_url);
        bench.authserver.wait_http_ok(&ready, None).await;
        Ok(bench)
    }

    /// What the kubelet does for the auth pods: each bootstrapped Secret, once the
    /// operator created it, becomes the file its volume mounts.
    async fn mount_bootstrap_secrets(
        &mut self,
        mounts: &[(&str, &str, &PathBuf)],
    ) -> anyhow::Result<()> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        for (name, key, file) in mounts {
            let deadline = Instant::now() + Duration::from_mins(1);
            let value = loop {
                self.operator.check_running()?;
                if let Some(data) = secrets.get_opt(name).await?.and_then(|s| s.data)
                    && let Some(v) = data.get(*key)
                {
                    break String::from_utf8_lossy(&v.0).into_owned();
                }
                if Instant::now() > deadline {
                    bail!(
                        "the operator did not create Secret {name}:\n{}",
                        self.operator.logs()
                    );
                }
                tokio::time::sleep(POLL).await;
            };
            std::fs::write(file, format!("{value}\n"))?;
        }
        Ok(())
    }

    /// The namespaces and tenants; waits for every tenant to be Ready.
    async fn apply_tenants(&mut self, args: &Args) -> anyhow::Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for i in 0..args.namespaces {
            let ns: Namespace = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace_name(i),
                             "labels": {TENANT_LABEL: tenant_name(i % args.tenants)}},
            }))?;
            namespaces
                .patch(&namespace_name(i), &apply_params(), &Patch::Apply(&ns))
                .await?;
        }
        let tenants: Api<IdentityTenant> = Api::all(self.client.clone());
        for t in 0..args.tenants {
            let name = tenant_name(t);
            let tenant: IdentityTenant = serde_json::from_value(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "IdentityTenant",
                "metadata": {"name": name},
                "spec": {
                    "issuer": format!("{}/t/{name}", self.base_url),
                    "allowedNamespaces": {"matchLabels": {TENANT_LABEL: name}},
                    "subjectTypes": ["public"],
                },
            }))?;
            tenants
                .patch(&name, &apply_params(), &Patch::Apply(&tenant))
                .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
        loop {
            self.operator.check_running()?;
            let list = tenants.list(&kube::api::ListParams::default()).await?;
            let ready = list
                .items
                .iter()
                .filter(|t| {
                    t.status.as_ref().is_some_and(|s| {
                        s.observed_generation == t.meta().generation
                            && crds::conditions::is_true(&s.conditions, crds::conditions::READY)
                    })
                })
                .count();
            if ready == args.tenants {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{ready} of {} tenants Ready", args.tenants);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn usage(&self) -> anyhow::Result<(Usage, Usage)> {
        Ok((
            usage(self.operator.pid(), self.clock_ticks)?,
            usage(self.authserver.pid(), self.clock_ticks)?,
        ))
    }

    fn operator_requests(&self) -> RequestCounts {
        self.fake.request_counts().of(OPERATOR_USER)
    }

    /// Applies the clients, waits for all to be Ready with their Secrets, prints the
    /// ramp-up figures.
    async fn ramp_up(&mut self, args: &Args) -> anyhow::Result<()> {
        let watched = Watched::start(&self.client);
        let (operator_before, auth_before) = self.usage()?;
        let requests_before = self.operator_requests();
        let started = Instant::now();
        let client = self.client.clone();
        let applied: Vec<anyhow::Result<()>> = futures::stream::iter(0..args.clients)
            .map(|i| apply_client(client.clone(), i, args))
            .buffer_unordered(args.apply_parallelism.max(1))
            .collect()
            .await;
        applied.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        let applied_in = started.elapsed();
        println!(
            "operator-scale: clients_applied seconds={:.1} parallelism={}",
            applied_in.as_secs_f64(),
            args.apply_parallelism
        );
        let deadline = started + Duration::from_secs(args.timeout_seconds);
        loop {
            self.operator.check_running()?;
            let ready = watched.ready();
            if ready.len() >= args.clients {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} OidcClients Ready with their Secret after {} s; not ready, e.g.:\n{}",
                    ready.len(),
                    args.clients,
                    args.timeout_seconds,
                    watched.not_ready_sample(5)
                );
            }
            tokio::time::sleep(POLL).await;
        }
        let ready_in = started.elapsed();
        let (operator_after, auth_after) = self.usage()?;
        let requests = self.operator_requests().since(&requests_before);
        println!(
            "operator-scale: all_ready seconds={:.1} clients={}",
            ready_in.as_secs_f64(),
            args.clients
        );
        print_requests("ramp", &requests, args.clients, 1.0);
        println!(
            "operator-scale: operator_cpu phase=ramp seconds={:.2}",
            operator_after.cpu_seconds - operator_before.cpu_seconds
        );
        println!(
            "operator-scale: authserver_cpu phase=ramp seconds={:.2}",
            auth_after.cpu_seconds - auth_before.cpu_seconds
        );
        Ok(())
    }

    /// Waits for the operator's requests to pause, then measures `--resync-windows`
    /// resync intervals in which nothing changes.
    async fn resync(&mut self, args: &Args) -> anyhow::Result<()> {
        let settle_start = Instant::now();
        let mut last = self.operator_requests();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < QUIET {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.operator_requests();
            // Watches ending and starting again are not work caused by a change.
            let changed = now.since(&last).0.keys().any(|k| k.verb != "watch");
            if changed {
                quiet_since = Instant::now();
            }
            last = now;
            if settle_start.elapsed() > Duration::from_secs(args.resync_seconds) {
                // Resyncs start: whatever still runs is part of the steady state.
                break;
            }
        }
        println!(
            "operator-scale: settled seconds={:.1}",
            settle_start.elapsed().as_secs_f64()
        );
        let (operator_before, auth_before) = self.usage()?;
        let requests_before = self.operator_requests();
        let window = Duration::from_secs(args.resync_seconds) * args.resync_windows;
        tokio::time::sleep(window).await;
        self.operator.check_running()?;
        let (operator_after, auth_after) = self.usage()?;
        let requests = self.operator_requests().since(&requests_before);
        let resyncs = f64::from(args.resync_windows.max(1));
        print_requests("resync", &requests, args.clients, resyncs);
        println!(
            "operator-scale: operator_cpu phase=per_resync seconds={:.2}",
            (operator_after.cpu_seconds - operator_before.cpu_seconds) / resyncs
        );
        println!(
            "operator-scale: authserver_cpu phase=per_resync seconds={:.2}",
            (auth_after.cpu_seconds - auth_before.cpu_seconds) / resyncs
        );
        println!(
            "operator-scale: operator_peak_rss mib={:.1}",
            kib_to_mib(operator_after.peak_rss_kib)
        );
        println!(
            "operator-scale: authserver_peak_rss mib={:.1}",
            kib_to_mib(auth_after.peak_rss_kib)
        );
        Ok(())
    }
}

#[allow(clippy::cast_precision_loss)] // memory of one process
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One line per verb and resource, then the total: requests, and requests per client
/// (and per resync interval, `intervals` > 1 in the idle window).
fn print_requests(phase: &str, requests: &RequestCounts, clients: usize, intervals: f64) {
    let mut by_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (k, n) in &requests.0 {
        *by_kind
            .entry((k.resource.clone(), k.verb.clone()))
            .or_default() += n;
    }
    #[allow(clippy::cast_precision_loss)] // counts of a benchmark run
    let per = |n: u64| n as f64 / intervals / clients.max(1) as f64;
    for ((resource, verb), n) in &by_kind {
        println!(
            "operator-scale: requests phase={phase} resource={resource} verb={verb} total={n} per_client={:.3}",
            per(*n)
        );
    }
    let total = requests.total();
    println!(
        "operator-scale: requests phase={phase} resource=all verb=all total={total} per_client={:.3}",
        per(total)
    );
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

fn namespace_name(i: usize) -> String {
    format!("team-{i:02}")
}

fn tenant_name(i: usize) -> String {
    format!("tenant-{i}")
}

/// Client `i`: a confidential web application (authorization code + refresh token) with
/// a generated secret, in namespace `i mod namespaces`.
/// Its tenant is the one that allows that namespace (see [`Bench::apply_tenants`]).
async fn apply_client(client: Client, i: usize, args: &Args) -> anyhow::Result<()> {
    let n = i % args.namespaces;
    let namespace = namespace_name(n);
    let name = format!("app-{i:05}");
    let tenant = tenant_name(n % args.tenants);
    let obj: OidcClient = serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tenantRef": tenant,
            "clientType": "confidential",
            "grantTypes": ["authorization_code", "refresh_token"],
            "redirectUris": [format!("https://{name}.{namespace}.example.com/callback")],
            "scopes": ["openid", "profile", "email", "offline_access"],
            "tokenEndpointAuthMethod": "client_secret_basic",
        },
    }))?;
    Api::<OidcClient>::namespaced(client, &namespace)
        .patch(&name, &apply_params(), &Patch::Apply(&obj))
        .await
        .with_context(|| format!("failed to apply OidcClient {namespace}/{name}"))?;
    Ok(())
}

/// The harness's own watches of the OidcClients and their Secrets (in-memory caches, so
/// waiting costs the fake one WATCH each, not a LIST per poll).
struct Watched {
    clients: Store<OidcClient>,
    secrets: Store<Secret>,
}

impl Watched {
    fn start(client: &Client) -> Self {
        let clients = Self::reflect(
            Api::<OidcClient>::all(client.clone()),
            watcher::Config::default(),
        );
        let secrets = Self::reflect(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels("app.kubernetes.io/component=client-credentials"),
        );
        Self { clients, secrets }
    }

    fn reflect<K>(api: Api<K>, config: watcher::Config) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (reader, writer) = reflector::store();
        let stream = kube::runtime::reflector(writer, watcher(api, config).default_backoff())
            .applied_objects();
        tokio::spawn(stream.for_each(|_| async {}));
        reader
    }

    /// Whether `c` is Ready for its generation and its Secret holds a client secret.
    fn is_ready(&self, c: &OidcClient) -> bool {
        let status_ok = c.status.as_ref().is_some_and(|s| {
            s.observed_generation == c.meta().generation
                && crds::conditions::is_true(&s.conditions, crds::conditions::READY)
        });
        let key =
            reflector::ObjectRef::new(&c.secret_name()).within(&c.namespace().unwrap_or_default());
        let secret_ok = self.secrets.get(&key).is_some_and(|s| {
            s.data
                .as_ref()
                .and_then(|d| d.get("CLIENT_SECRET"))
                .is_some_and(|v| !v.0.is_empty())
        });
        status_ok && secret_ok
    }

    fn ready(&self) -> Vec<Arc<OidcClient>> {
        self.clients
            .state()
            .into_iter()
            .filter(|c| self.is_ready(c))
            .collect()
    }

    fn not_ready_sample(&self, n: usize) -> String {
        self.clients
            .state()
            .iter()
            .filter(|c| !self.is_ready(c))
            .take(n)
            .map(|c| {
                format!(
                    "{}/{}: {:?}",
                    c.namespace().unwrap_or_default(),
                    c.name_any(),
                    c.status
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

trait CheckRunning {
    fn check_running(&mut self) -> anyhow::Result<()>;
}

impl CheckRunning for Process {
    /// Fails, with its log, when the process has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.exited() {
            bail!("{} exited ({status}):\n{}", self.name(), self.logs());
        }
        Ok(())
    }
}
