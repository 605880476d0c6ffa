//! A fake Kubernetes API server, in memory, good enough for kube-runtime controllers
//! (reflectors, watchers, finalizers, server-side apply, status patches) and for
//! end-to-end tests without a cluster.
//!
//! [`FakeApiServer::start`] listens on `127.0.0.1:0` (plain HTTP) and writes a kubeconfig
//! pointing at itself, so a controller in another process finds it through `KUBECONFIG`
//! like any kube client; in-process tests use [`FakeApiServer::client`]. Those carry no
//! credentials: the harness is an admin that is never authorized.
//! [`FakeApiServer::kubeconfig_for_service_account`] (and `kubeconfig_for`, `config_for`,
//! `client_for` a [`UserInfo`]) give an identity whose requests the stored RBAC objects
//! authorize, as on a real cluster.
//!
//! # What it models
//! - Core (`/api/v1/...`) and group (`/apis/{group}/{version}/...`) resources by plural,
//!   namespaced, cluster-scoped and cross-namespace LIST/WATCH, the `/status`
//!   subresource and `pods/{name}/log`; a built-in table of kinds (see `resources`) plus
//!   any kind whose `CustomResourceDefinition` is written to it; minimal discovery
//!   (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`).
//! - GET, LIST (`labelSelector` equality and set-based, `fieldSelector` by dotted path),
//!   WATCH (from a `resourceVersion`, from "now" with initial ADDED events, streaming lists
//!   with `sendInitialEvents`, BOOKMARKs, `timeoutSeconds`, 410 `Expired` once history is
//!   trimmed), POST (409 `AlreadyExists`, `generateName`), PUT (409 `Conflict` on a stale
//!   `resourceVersion`), PATCH (JSON patch with `test`, merge, strategic merge as merge,
//!   server-side apply with create-on-apply), DELETE and DELETE of a collection,
//!   `dryRun=All`.
//! - Server-side apply field ownership (`metadata.managedFields`, see `managed`): every
//!   write records its field manager (`Apply` or `Update`, per subresource); an apply
//!   removes the fields its manager applied before and no longer sends unless another
//!   manager owns them too, and changing another manager's field is a 409 `Conflict`
//!   unless `force=true`, which takes the field over; updates take the fields they change
//!   from every other manager.
//! - `uid`, `creationTimestamp`, one global `resourceVersion` counter, `generation`
//!   bumped on spec changes only, no event and no new version for a no-op write,
//!   status-subresource isolation, finalizers with `deletionTimestamp`, owner-reference
//!   garbage collection (background; `Orphan` honoured), namespace termination (contents
//!   deleted, namespace removed once empty), Secret `stringData` folded into `data`,
//!   CRD `Established` status.
//! - Custom resources whose CRD was applied: defaults, pruning and validation against the
//!   `openAPIV3Schema` (see `schema` for the keywords covered), CEL rules included.
//! - Bearer-token authentication of the identities it issued tokens for (see `authn`;
//!   401 for unknown tokens and for a deleted ServiceAccount's) and kube-apiserver's RBAC
//!   authorizer over the stored roles and bindings (see `rbac`; 403 `Forbidden` with the
//!   real message; discovery granted to every authenticated user as the bootstrap
//!   `system:discovery` role does); every refusal is recorded
//!   ([`FakeApiServer::denied_requests`]).
//! - Request counts by user, verb and resource ([`FakeApiServer::request_counts`]), like
//!   the real server's `apiserver_request_total`.
//! - A kubelet for Jobs (see [`crate::kubelet`]).
//!
//! # What it does not model
//! Lists merged by key or as sets (`listType: map`/`set`, strategic-merge list merging):
//! every list is one field, owned and replaced whole, so `fieldsV1` has no `k:`/`v:`
//! keys; client-written `managedFields` (ignored), schema `pattern`/`format`, admission (webhooks, quotas, defaults of built-in
//! kinds such as a Pod's `restartPolicy`), version conversion, other authentication
//! (certificates, TokenRequest/TokenReview) and authorizers, impersonation, RBAC's
//! escalation checks and ClusterRole aggregation, paging (`limit` and
//! `continue` are ignored: every LIST is one page), field selectors restricted per kind,
//! graceful pod termination, foreground deletion (treated as background), the `orphan`
//! finalizer on objects that still have other finalizers, controllers other than the
//! garbage collector and the Job kubelet (no Deployments, ReplicaSets, Services, scheduled
//! CronJob runs), and protobuf or table responses (JSON only).

mod authn;
mod error;
mod http;
mod managed;
mod patch;
mod rbac;
mod requests;
mod resources;
mod schema;
mod selector;
mod store;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use authn::UserInfo;
pub use error::ApiError;
pub use patch::PatchKind;
pub use requests::{HARNESS, RequestCounts, RequestKey};
pub use resources::ResourceType;
pub use selector::{FieldSelector, LabelSelector};
pub use store::{DeleteOptions, Subresource};
pub(crate) use store::{ObjKey, Store, now_rfc3339};

use crate::kubelet::{self, ImageMapping};

/// Start-up options of a [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespaces that exist from the start (default: `default`, `kube-system`).
    pub namespaces: Vec<String>,
    /// Image → local binary mappings for the kubelet (default: none; commands of unmapped
    /// images run as given on this machine).
    pub images: Vec<ImageMapping>,
    /// How often an idle watch with `allowWatchBookmarks` gets a BOOKMARK (default 1 s).
    pub bookmark_interval: Duration,
    /// How many events the watch history keeps (default 100 000); a watch from an older
    /// `resourceVersion` gets 410 `Expired`.
    pub history_limit: usize,
    /// How long every request waits before it is handled (default none): a real API
    /// server is a network round trip and an etcd write away, which the in-process fake
    /// is not, and a controller's concurrency only shows against that latency.
    pub request_latency: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespaces: vec!["default".into(), "kube-system".into()],
            images: Vec::new(),
            bookmark_interval: Duration::from_secs(1),
            history_limit: 100_000,
            request_latency: Duration::ZERO,
        }
    }
}

/// State shared by the HTTP handlers, watch tasks and the kubelet.
pub(crate) struct Shared {
    store: Mutex<Store>,
    tokens: Mutex<authn::Tokens>,
    /// The messages of refused requests (401 and 403), oldest first.
    denials: Mutex<Vec<String>>,
    /// The requests answered so far, by user, verb and resource.
    requests: Mutex<RequestCounts>,
    pub(crate) changed: watch::Receiver<u64>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) options: Options,
    pub(crate) addr: String,
}

impl Shared {
    /// The store lock. A panic while holding it (a bug in the fake) must not wedge every
    /// later request, so a poisoned lock is taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a refused request (taken after the store lock, never before it).
    pub(crate) fn record_denial(&self, message: &str) {
        tracing::info!(message, "fake apiserver refused a request");
        self.denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message.to_owned());
    }

    /// Counts a request that passed authentication and authorization.
    pub(crate) fn record_request(&self, key: RequestKey) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(key);
    }

    /// The issued tokens; taken before the store lock when both are needed.
    pub(crate) fn tokens(&self) -> MutexGuard<'_, authn::Tokens> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake API server. Dropping it stops the server, its watches and the kubelet's
/// processes.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts a server with [`Options::default`].
    pub async fn start() -> io::Result<Self> {
        Self::start_with(Options::default()).await
    }

    /// Starts a server on `127.0.0.1:0` and writes its kubeconfig.
    pub async fn start_with(options: Options) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (changed_tx, changed_rx) = watch::channel(0);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let mut store = Store::new(options.history_limit, changed_tx, Some(jobs_tx));
        for ns in &options.namespaces {
            store.ensure_namespace(ns).map_err(io::Error::other)?;
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            tokens: Mutex::default(),
            denials: Mutex::default(),
            requests: Mutex::default(),
            changed: changed_rx,
            shutdown: shutdown_rx.clone(),
            options,
            addr: addr.to_string(),
        });

        let dir = tempfile::Builder::new()
            .prefix("fake-apiserver-")
            .tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(addr, None))?;

        let app = http::router(Arc::clone(&shared));
        let mut stop = shutdown_rx;
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // An error means the sender is gone: shut down as well.
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "fake apiserver stopped");
            }
        });
        let kubelet = tokio::spawn(kubelet::run(Arc::clone(&shared), jobs_rx));
        Ok(Self {
            addr,
            shared,
            kubeconfig,
            dir,
            shutdown: shutdown_tx,
            tasks: vec![server, kubelet],
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file for this server (context `fake`, namespace `default`, no
    /// credentials: the harness's, a cluster admin that is not authorized); set
    /// `KUBECONFIG` to it for a controller in another process. It is removed when the
    /// server is dropped.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig file like [`Self::kubeconfig_path`]'s with a bearer token of `user`:
    /// its requests are authorized by the stored RBAC objects. Removed when the server is
    /// dropped.
    pub fn kubeconfig_for(&self, user: &UserInfo) -> io::Result<PathBuf> {
        let token = self.shared.tokens().token_for(user);
        let file: String = user
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = self.dir.path().join(format!("kubeconfig-{file}"));
        std::fs::write(&path, kubeconfig_yaml(self.addr, Some(&token)))?;
        Ok(path)
    }

    /// [`Self::kubeconfig_for`] ServiceAccount `namespace/name`
    /// (`system:serviceaccount:<namespace>:<name>`). Its token works while the
    /// ServiceAccount object exists, as a real one does.
    pub fn kubeconfig_for_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> io::Result<PathBuf> {
        self.kubeconfig_for(&UserInfo::service_account(namespace, name))
    }

    /// A client configuration for this server.
    pub fn config(&self) -> kube::Config {
        let uri = self
            .url()
            .parse()
            .expect("an http URL made of a socket address is a valid URI");
        kube::Config::new(uri)
    }

    /// A client for this server.
    pub fn client(&self) -> kube::Result<kube::Client> {
        kube::Client::try_from(self.config())
    }

    /// A client configuration authenticated as `user` (see [`Self::kubeconfig_for`]).
    pub fn config_for(&self, user: &UserInfo) -> kube::Config {
        let token = self.shared.tokens().token_for(user);
        let mut config = self.config();
        config.auth_info = serde_json::from_value(serde_json::json!({"token": token}))
            .expect("an AuthInfo with a token deserializes");
        config
    }

    /// A client authenticated as `user`.
    pub fn client_for(&self, user: &UserInfo) -> kube::Result<kube::Client> {
        kube::Client::try_from(self.config_for(user))
    }

    /// The messages of the requests refused so far, oldest first: 401s (`GET /api: Unauthorized`)
    /// and the authorizer's 403s (`secrets "x" is forbidden: User … cannot delete …`). A
    /// client that retries or only logs a refusal (an event recorder, a controller's
    /// error policy) still leaves it here.
    pub fn denied_requests(&self) -> Vec<String> {
        self.shared
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests were answered so far, by user (the harness as [`HARNESS`]), verb
    /// and resource, like the real server's `apiserver_request_total`. A WATCH counts once,
    /// when it starts; the events it streams are not requests. Take two snapshots and
    /// subtract ([`RequestCounts::since`]) to count a window.
    pub fn request_counts(&self) -> RequestCounts {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The latest `resourceVersion` (one counter for all objects).
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops the server and waits for it: open watches end, running Job processes are
    /// killed.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        for t in std::mem::take(&mut self.tasks) {
            // A task that panicked has nothing left to stop.
            let _ = t.await;
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn kubeconfig_yaml(addr: SocketAddr, token: Option<&str>) -> String {
    let user = token.map_or_else(|| "{}".to_owned(), |t| format!("{{token: {t}}}"));
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://{addr}
users:
- name: fake
  user: {user}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
"
    )
}
