//! Plumbing the three controllers share: the guarded entry point (malformed objects,
//! metrics, the per-reconcile span, backoff bookkeeping), `error_policy`, status writes
//! through server-side apply, the finalizer's error mapping and the mapping of admin API
//! failures to condition reasons.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crds::conditions::{self, Status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::Instrument as _;

use crate::admin_client::{AdminError, AdminErrorKind};
use crate::context::{Context, backoff_delay};

/// The finalizer on IdentityTenants and OidcClients: their database rows are released
/// (or deliberately retained) before the object goes away.
pub const FINALIZER: &str = "gatehouse.dev/cleanup";

/// Failed cleanups with the auth server unreachable after which `deletionPolicy: Delete`
/// falls back to `Retain` and the finalizer is released. With the backoff between
/// attempts (5 s doubling to the 5 min cap) the last one comes about 10 minutes after the
/// first: longer than a rollout or a node drain of the auth pods, so an outage does not
/// leave a deleted client's credentials working, yet short enough that an uninstall in the
/// wrong order (operator, auth server or database first) does not leave objects and their
/// namespaces `Terminating` for ever.
pub const CLEANUP_ATTEMPTS: u32 = 8;

/// Written by the operator on an object being deleted: how many cleanups in a row failed
/// with the auth server unreachable. On the object, not in memory, so that an operator
/// restart or a new leader continues the count instead of starting over (an operator in a
/// crash loop would otherwise never give up). An annotation, not a status field: metadata
/// of an object being deleted stays writable, and no CRD schema change is needed, so the
/// count works with CRDs older than the operator (a status field missing from the schema
/// would be pruned and the count would stay at zero). Remove it to start the count again.
pub const CLEANUP_FAILURES_ANNOTATION: &str = "gatehouse.dev/cleanup-failures";
/// Written with [`CLEANUP_FAILURES_ANNOTATION`]: when the last of those cleanups failed
/// (RFC 3339). The next attempt waits for the backoff from this time. Writing the two
/// annotations (and the attempt count in the status) triggers a watch event and so an
/// immediate reconcile; without a durable time that reconcile would retry at once and the
/// attempts would be used up within seconds.
pub const CLEANUP_FAILED_AT_ANNOTATION: &str = "gatehouse.dev/cleanup-failed-at";

/// What the shared plumbing needs to know about a controller's error.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// Stable, CamelCase name of the failure for metrics and Events.
    fn category(&self) -> &'static str;
    /// Whether retrying before the object changes is pointless (invalid spec): the
    /// controller then waits for a change instead of backing off.
    fn awaits_change(&self) -> bool;
    /// Whether the failure waits for a change of the object or, at the latest, the resync
    /// interval instead of backing off: the API server rejected a write (an admission
    /// webhook, a quota), which retrying soon only repeats, but which can go away without
    /// any change to our object.
    fn retries_at_resync(&self) -> bool {
        false
    }
    /// The `Ready=False` reason this failure shows; `None` leaves the status alone (a
    /// failed read or write of our own says nothing about the object).
    fn condition_reason(&self) -> Option<&'static str> {
        Some(self.category())
    }
}

/// A kind one of the controllers reconciles: what the plumbing they share needs to know
/// about it, so that status writes, failure reports, the guarded entry point, the
/// finalizer and `error_policy` are written once.
pub trait Managed:
    Resource<DynamicType = ()> + HasStatus + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Controller name in metrics and logs.
    const CONTROLLER: &'static str;
    /// Field manager of everything the controller writes.
    const FIELD_MANAGER: &'static str;
    type Error: ReconcileError;
    /// The API of objects of this kind in `namespace` (cluster-scoped kinds ignore it).
    fn api_in<T>(client: kube::Client, namespace: Option<&str>) -> Api<T>
    where
        T: Resource<DynamicType = (), Scope = Self::Scope>;
    /// The error of an object that does not match the schema.
    fn malformed(message: String) -> Self::Error;
}

/// Implements [`Managed`] for `$kind` with the calling module's `CONTROLLER`,
/// `FIELD_MANAGER` and `Error` (which has a `Malformed(String)` variant); `namespaced` or
/// `cluster` as the kind is scoped.
macro_rules! managed {
    ($kind:ty, namespaced) => {
        $crate::controller::managed!(@impl $kind, kube::core::NamespaceResourceScope, |client, namespace| {
            match namespace {
                Some(ns) => kube::Api::namespaced(client, ns),
                None => kube::Api::all(client),
            }
        });
    };
    ($kind:ty, cluster) => {
        $crate::controller::managed!(@impl $kind, kube::core::ClusterResourceScope, |client, _namespace| {
            kube::Api::all(client)
        });
    };
    (@impl $kind:ty, $scope:ty, |$client:ident, $namespace:ident| $api:expr) => {
        impl $crate::controller::Managed for $kind {
            const CONTROLLER: &'static str = CONTROLLER;
            const FIELD_MANAGER: &'static str = FIELD_MANAGER;
            type Error = Error;

            fn api_in<T>($client: kube::Client, $namespace: Option<&str>) -> kube::Api<T>
            where
                T: kube::Resource<DynamicType = (), Scope = $scope>,
            {
                $api
            }

            fn malformed(message: String) -> Error {
                Error::Malformed(message)
            }
        }
    };
}
pub(crate) use managed;

/// Converts the shared failures into the calling module's `Error`: the migration gate
/// (`MigrationPending`, `MigrationFailed`) for every controller; with `references`, also
/// failed reads (`Read { what, source }`) and a missing tenant (`TenantNotFound`).
macro_rules! shared_errors {
    (gate) => {
        impl From<$crate::migration::Gate> for Error {
            fn from(gate: $crate::migration::Gate) -> Self {
                match gate {
                    $crate::migration::Gate::Pending(m) => Error::MigrationPending(m),
                    $crate::migration::Gate::Failed(m) => Error::MigrationFailed(m),
                }
            }
        }
    };
    (gate, references) => {
        $crate::controller::shared_errors!(gate);

        impl From<$crate::controller::Unreadable> for Error {
            fn from(
                $crate::controller::Unreadable { what, source }: $crate::controller::Unreadable,
            ) -> Self {
                Error::Read { what, source }
            }
        }

        impl From<$crate::controller::TenantRef> for Error {
            fn from(lookup: $crate::controller::TenantRef) -> Self {
                match lookup {
                    $crate::controller::TenantRef::Unreadable(e) => e.into(),
                    $crate::controller::TenantRef::Missing(m) => Error::TenantNotFound(m),
                }
            }
        }
    };
}
pub(crate) use shared_errors;

/// The API `obj` lives in.
pub fn api<K: Managed>(obj: &K, ctx: &Context) -> Api<K> {
    K::api_in(ctx.client.clone(), obj.meta().namespace.as_deref())
}

/// Writes `status` for `obj` unless it already has it.
pub async fn save_status<K: Managed>(obj: &K, ctx: &Context, status: &K::Status) -> kube::Result<()>
where
    K::Status: ReadyStatus,
{
    write_status(obj, &api(obj, ctx), K::FIELD_MANAGER, status).await
}

/// A Warning Event for `error` and, where it has a condition reason, `Ready=False`.
pub async fn report<K: Managed>(obj: &K, ctx: &Context, error: &K::Error)
where
    K::Status: ReadyStatus,
{
    report_failure(
        obj,
        &api(obj, ctx),
        K::FIELD_MANAGER,
        ctx,
        error.category(),
        error.condition_reason(),
        error.to_string(),
    )
    .await;
}

/// `result` of an apply, with a failure reported on the object first.
pub async fn reported<K: Managed>(
    obj: &K,
    ctx: &Context,
    result: Result<Action, K::Error>,
) -> Result<Action, K::Error>
where
    K::Status: ReadyStatus,
{
    if let Err(e) = &result {
        report(obj, ctx, e).await;
    }
    result
}

/// The entry point `Controller::run` calls: [`run_guarded`] for kind `K`.
pub async fn guarded<K, Fut>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    reconcile: impl FnOnce(Arc<K>, Arc<Context>) -> Fut,
) -> Result<Action, K::Error>
where
    K: Managed,
    Fut: Future<Output = Result<Action, K::Error>>,
{
    let status_api = K::api_in(ctx.client.clone(), guard.meta().namespace.as_deref());
    run_guarded(
        K::CONTROLLER,
        guard,
        ctx,
        status_api,
        K::FIELD_MANAGER,
        reconcile,
        K::malformed,
    )
    .await
}

/// `error_policy` with the signature `Controller::run` expects.
#[allow(clippy::needless_pass_by_value)]
pub fn policy<K: Managed>(
    guard: Arc<DeserializeGuard<K>>,
    error: &K::Error,
    ctx: Arc<Context>,
) -> Action {
    error_policy(&guard, error, &ctx)
}

/// Runs `apply` or `cleanup` for `obj` under the operator's finalizer. A cleanup that
/// failed with the auth server unreachable waits out its backoff here, not in `cleanup`:
/// returning Ok there would release the finalizer.
pub async fn with_finalizer<K, A, C>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    apply: impl FnOnce(Arc<K>, Arc<Context>) -> A,
    cleanup: impl FnOnce(Arc<K>, Arc<Context>) -> C,
    finalizer_failed: impl FnOnce(String) -> K::Error,
) -> Result<Action, K::Error>
where
    K: Managed + Serialize,
    A: Future<Output = Result<Action, K::Error>>,
    C: Future<Output = Result<Action, K::Error>>,
{
    if let Some(wait) = cleanup_wait(&*obj, ctx.now(), ctx.config.resync) {
        return Ok(Action::requeue(wait));
    }
    let api = api(&*obj, &ctx);
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            finalizer::Event::Apply(o) => apply(o, Arc::clone(&ctx)).await,
            finalizer::Event::Cleanup(o) => cleanup(o, Arc::clone(&ctx)).await,
        }
    })
    .await
    .map_err(|e| flatten_finalizer_error(e, finalizer_failed))
}

/// `Kind namespace/name` (or `Kind name`) of an object: the backoff key and the span field.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    key_of::<K>(obj.meta().namespace.as_deref(), obj.meta().name.as_deref())
}

fn key_of<K: Resource<DynamicType = ()>>(namespace: Option<&str>, name: Option<&str>) -> String {
    let kind = K::kind(&());
    match namespace {
        Some(ns) => format!("{kind} {ns}/{}", name.unwrap_or_default()),
        None => format!("{kind} {}", name.unwrap_or_default()),
    }
}

fn guard_key<K: Resource<DynamicType = ()>>(guard: &DeserializeGuard<K>) -> String {
    match &guard.0 {
        Ok(obj) => object_key(obj),
        Err(invalid) => key_of::<K>(
            invalid.metadata.namespace.as_deref(),
            invalid.metadata.name.as_deref(),
        ),
    }
}

/// Runs `reconcile` for a watched object inside a span, with metrics and backoff
/// bookkeeping. An object that does not deserialize into `K` (someone bypassed the schema,
/// or an old operator reads a newer object) gets `Ready=False`, reason `InvalidSpec`, and
/// a Warning Event, and the controller waits for it to change: one malformed object never
/// stalls the others.
pub async fn run_guarded<K, E, Fut>(
    controller: &'static str,
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    status_api: Api<DeserializeGuard<K>>,
    field_manager: &'static str,
    reconcile: impl FnOnce(Arc<K>, Arc<Context>) -> Fut,
    malformed: impl FnOnce(String) -> E,
) -> Result<Action, E>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    E: ReconcileError,
    Fut: Future<Output = Result<Action, E>>,
{
    let key = guard_key(&guard);
    let span = tracing::info_span!("reconcile", controller, object = %key);
    async move {
        let empty = std::collections::BTreeMap::new();
        let labels = guard.meta().labels.as_ref().unwrap_or(&empty);
        if !ctx.config.scope.selects(labels) {
            // The watches select this instance's objects, so this is only an object whose
            // instance label changed after its event was queued: another instance's
            // object is never touched.
            tracing::debug!("not this instance's object: skipped");
            return Ok(Action::await_change());
        }
        let started = Instant::now();
        let result = match &guard.0 {
            Ok(obj) => reconcile(Arc::new(obj.clone()), Arc::clone(&ctx)).await,
            Err(invalid) => {
                report_malformed(&status_api, invalid, &ctx, field_manager).await;
                Err(malformed(invalid.error.clone()))
            }
        };
        ctx.metrics.observe(
            controller,
            started.elapsed(),
            result.as_ref().err().map(ReconcileError::category),
        );
        match &result {
            Ok(action) => {
                ctx.reset_backoff(&key);
                tracing::debug!(?action, "reconciled");
            }
            Err(e) => tracing::warn!(error = %e, category = e.category(), "reconcile failed"),
        }
        result
    }
    .instrument(span)
    .await
}

async fn report_malformed<K>(
    api: &Api<DeserializeGuard<K>>,
    invalid: &InvalidObject,
    ctx: &Context,
    field_manager: &str,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let message = format!("the object does not match the schema: {}", invalid.error);
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    ctx.events
        .publish(
            &reference,
            EventType::Warning,
            conditions::INVALID_SPEC,
            &message,
        )
        .await;
    let condition = conditions::ready(
        Status::False,
        conditions::INVALID_SPEC,
        message,
        invalid.metadata.generation,
        Time(ctx.now()),
    );
    let status = json!({
        "observedGeneration": invalid.metadata.generation,
        "conditions": [condition],
    });
    // A field manager of its own: applied by the controller's manager, this status
    // (only observedGeneration and conditions) would make the API server drop every
    // status field that manager owned and no longer sent — issuer, clientId, keys, the
    // acknowledged rotation annotations — and the next good reconcile would see them as
    // new and rotate keys and secrets.
    let manager = invalid_object_manager(field_manager);
    if let Some(name) = &invalid.metadata.name
        && let Err(e) = apply_status(api, name, &manager, &status).await
    {
        tracing::warn!(error = %e, "failed to report a malformed object in its status");
    }
}

/// The field manager of the status written for an object that does not parse.
pub fn invalid_object_manager(field_manager: &str) -> String {
    format!("{field_manager}-invalid-object")
}

/// `error_policy` of every controller: wait for a change after an invalid spec, wait for
/// a change or the resync interval after a write the API server rejected, otherwise retry
/// with exponential backoff (5 s doubling up to the resync interval).
pub fn error_policy<K, E>(guard: &DeserializeGuard<K>, error: &E, ctx: &Context) -> Action
where
    K: Resource<DynamicType = ()>,
    E: ReconcileError,
{
    if error.awaits_change() {
        Action::await_change()
    } else if error.retries_at_resync() {
        Action::requeue(ctx.config.resync)
    } else {
        Action::requeue(ctx.backoff(&guard_key(guard)))
    }
}

/// Writes `status` through server-side apply on the status subresource, owning exactly
/// the fields given (so a field the controller stops setting is removed).
pub async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    field_manager: &str,
    status: &impl Serialize,
) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// `conditions` with `Ready` set as given, observed at `generation`.
pub fn with_ready(
    conditions: &[Condition],
    status: Status,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    conditions::merge(
        conditions,
        conditions::ready(status, reason, message, generation, now),
    )
}

/// The condition reason for a failed admin call that was not mapped more precisely by
/// the caller: an unreachable or misconfigured auth server.
pub fn admin_reason(error: &AdminError) -> &'static str {
    match error.kind {
        AdminErrorKind::InvalidArgument => conditions::INVALID_SPEC,
        AdminErrorKind::NotFound => conditions::TENANT_NOT_FOUND,
        AdminErrorKind::AlreadyExists => conditions::CONFLICT,
        AdminErrorKind::ClientIdRetired => conditions::CLIENT_ID_RETIRED,
        AdminErrorKind::Unavailable
        | AdminErrorKind::Unauthenticated
        | AdminErrorKind::Unimplemented
        | AdminErrorKind::Other => conditions::AUTH_SERVER_UNAVAILABLE,
    }
}

/// The API server's message when it rejected a write of ours for reasons the same write
/// will meet again: a 4xx such as 422 Invalid, 403 from RBAC, a quota or an admission
/// webhook, 400. `None` for what a retry may get past: 409 Conflict (a concurrent
/// writer), 429 Too Many Requests (priority and fairness), 401 (our credentials, not the
/// object; the client refreshes them), 408 (a timeout), every 5xx and every error without
/// a response (connection, timeout).
pub fn rejection(error: &kube::Error) -> Option<String> {
    let kube::Error::Api(status) = error else {
        return None;
    };
    if !(400..500).contains(&status.code) || [401, 408, 409, 429].contains(&status.code) {
        return None;
    }
    Some(if status.message.is_empty() {
        format!("{} {}", status.code, status.reason)
    } else {
        status.message.clone()
    })
}

/// Why a server-side apply of a child object failed.
#[derive(Debug)]
pub enum ApplyFailure {
    /// Refused for good (see [`rejection`]): the API server's message.
    Rejected(String),
    /// Worth retrying.
    Failed(kube::Error),
}

/// Server-side applies `child` (forced, as `field_manager`), telling a write the API
/// server refuses for good from one worth retrying; returns the object as stored.
pub async fn apply_child<K>(
    api: &Api<K>,
    name: &str,
    field_manager: &str,
    child: &K,
) -> Result<K, ApplyFailure>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    api.patch(
        name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(child),
    )
    .await
    .map_err(|source| match rejection(&source) {
        Some(message) => ApplyFailure::Rejected(message),
        None => ApplyFailure::Failed(source),
    })
}

/// Annotation on a child object the operator applies: a hash of the object as the
/// operator last built it. With it [`holds`] notices a field the operator stopped setting
/// (a server-side apply would remove it; a comparison of the fields alone would not).
pub const DESIRED_HASH_ANNOTATION: &str = "gatehouse.dev/desired-hash";

/// Stamps `child` with [`DESIRED_HASH_ANNOTATION`], the hash of `child` without it.
pub fn stamp<K: Resource + Serialize>(child: &mut K) {
    child.annotations_mut().remove(DESIRED_HASH_ANNOTATION);
    let hash = serde_json::to_string(child)
        .map(|s| crate::authserver_pod::short_hash(&s))
        .unwrap_or_default();
    child
        .annotations_mut()
        .insert(DESIRED_HASH_ANNOTATION.to_owned(), hash);
}

/// Whether `existing` (from a watch cache) already holds everything the stamped
/// `desired` sets, so that a server-side apply of `desired` would change nothing: every
/// field of `desired` is in `existing` with the same value, where the API server may have
/// added defaults beside them (inside list items too, so lists must have the same length).
/// A value the API server normalises differently reads as a change: one apply too many,
/// never one too few.
pub fn holds<K: Serialize>(existing: &K, desired: &K) -> bool {
    match (
        serde_json::to_value(existing),
        serde_json::to_value(desired),
    ) {
        (Ok(have), Ok(want)) => contains(&have, &want),
        _ => false,
    }
}

fn contains(have: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (have, want) {
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .all(|(k, w)| have.get(k).is_some_and(|h| contains(h, w))),
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| contains(h, w))
        }
        _ => have == want,
    }
}

/// Flattens the finalizer helper's error into the controller's: reconcile errors come
/// back as they were, finalizer bookkeeping errors through `wrap`.
pub fn flatten_finalizer_error<E>(error: finalizer::Error<E>, wrap: impl FnOnce(String) -> E) -> E
where
    E: std::error::Error + 'static,
{
    match error {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => wrap(other.to_string()),
    }
}

/// The generation of an object, for `observedGeneration`.
pub fn generation<K: Resource>(obj: &K) -> Option<i64> {
    obj.meta().generation
}

/// Whether the object is being deleted.
pub fn is_deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// The value of annotation `key`, if set.
pub fn annotation<K: Resource>(obj: &K, key: &str) -> Option<String> {
    obj.annotations().get(key).cloned()
}

/// A stream that yields whenever the migration state changes, so every object is
/// reconciled again when the gate opens (or closes) instead of waiting for its backoff.
pub fn migration_changes(
    rx: tokio::sync::watch::Receiver<crate::migration::MigrationState>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}

/// Time the gate spreads each object's release over (see [`gate_release`]).
const RELEASE_PER_OBJECT: Duration = Duration::from_millis(20);
/// The longest a gate release takes, however many objects wait.
const RELEASE_MAX: Duration = Duration::from_secs(30);

/// When each of `objects` is released after the gate changed: at an offset from a hash
/// of its key within a window of [`RELEASE_PER_OBJECT`] per object (at most
/// [`RELEASE_MAX`]), in the order of those offsets. A thousand OidcClients waiting for a
/// migration then reach the auth server over 20 s instead of in one burst; the hash keeps
/// the order stable across operator restarts and replicas.
pub fn release_schedule<K>(
    objects: impl IntoIterator<Item = ObjectRef<K>>,
) -> Vec<(Duration, ObjectRef<K>)>
where
    K: kube::runtime::reflector::Lookup,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let objects: Vec<ObjectRef<K>> = objects.into_iter().collect();
    let count = u32::try_from(objects.len()).unwrap_or(u32::MAX);
    let window = RELEASE_PER_OBJECT.saturating_mul(count).min(RELEASE_MAX);
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut schedule: Vec<(Duration, ObjectRef<K>)> = objects
        .into_iter()
        .map(|r| {
            let offset = u64::from(crds::fnv1a(&r.to_string())) % window_ms;
            (Duration::from_millis(offset), r)
        })
        .collect();
    // Ties broken by the key: the same objects give the same order however the cache
    // lists them.
    schedule.sort_by_cached_key(|(offset, r)| (*offset, r.to_string()));
    schedule
}

/// The objects of `store` to reconcile whenever the migration state changes, released
/// per [`release_schedule`] so that opening the gate does not send every object to the
/// auth server at once (the concurrency limit alone would keep it saturated until all
/// are done). A change while a release is under way is released after it.
pub fn gate_release<K>(
    rx: tokio::sync::watch::Receiver<crate::migration::MigrationState>,
    store: kube::runtime::reflector::Store<K>,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: kube::runtime::reflector::Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default + Send + Sync,
{
    use futures::StreamExt as _;
    migration_changes(rx).flat_map(move |()| {
        let start = tokio::time::Instant::now();
        let schedule = release_schedule(store.state().iter().map(|o| ObjectRef::from_obj(&**o)));
        futures::stream::iter(schedule).then(move |(offset, r)| async move {
            tokio::time::sleep_until(start + offset).await;
            r
        })
    })
}

/// Status types with an `observedGeneration` and `conditions`, so failure reporting is
/// written once for every controller.
pub trait ReadyStatus: Default + Clone + PartialEq + Serialize {
    fn observed_generation_and_conditions(&mut self) -> (&mut Option<i64>, &mut Vec<Condition>);
}

macro_rules! ready_status {
    ($($t:ty),*) => {$(
        impl ReadyStatus for $t {
            fn observed_generation_and_conditions(&mut self) -> (&mut Option<i64>, &mut Vec<Condition>) {
                (&mut self.observed_generation, &mut self.conditions)
            }
        }
    )*};
}
ready_status!(
    crds::IdentityTenantStatus,
    crds::OidcClientStatus,
    crds::SigningKeySetStatus
);

/// Writes `status` (server-side apply on `/status`) unless the object already has it.
pub async fn write_status<K>(
    obj: &K,
    api: &Api<K>,
    field_manager: &str,
    status: &K::Status,
) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + HasStatus + Clone + DeserializeOwned + Debug,
    K::Status: ReadyStatus,
{
    if obj.status() == Some(status) {
        return Ok(());
    }
    apply_status(api, &obj.name_any(), field_manager, status).await
}

/// A Warning Event for a failed reconcile and, when the failure has a condition reason,
/// `Ready=False` with that reason and the error as message.
pub async fn report_failure<K>(
    obj: &K,
    api: &Api<K>,
    field_manager: &str,
    ctx: &Context,
    category: &str,
    reason: Option<&str>,
    message: String,
) where
    K: Resource<DynamicType = ()> + HasStatus + Clone + DeserializeOwned + Debug,
    K::Status: ReadyStatus,
{
    ctx.events
        .publish(
            &obj.object_ref(&()),
            EventType::Warning,
            category,
            message.clone(),
        )
        .await;
    let Some(reason) = reason else {
        return;
    };
    let mut status = obj.status().cloned().unwrap_or_default();
    let observed = generation(obj);
    let (observed_generation, conditions) = status.observed_generation_and_conditions();
    *observed_generation = observed;
    *conditions = with_ready(
        conditions,
        Status::False,
        reason,
        message,
        observed,
        Time(ctx.now()),
    );
    if let Err(e) = write_status(obj, api, field_manager, &status).await {
        tracing::warn!(error = %e, "failed to write the failure into the status");
    }
}

/// Whether the object carries `gatehouse.dev/skip-cleanup: "true"`: release the finalizer
/// without calling the auth server.
pub fn skips_cleanup<K: Resource>(obj: &K) -> bool {
    obj.annotations()
        .get(crds::SKIP_CLEANUP_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The failed cleanups recorded on an object: their count and when the last one failed.
/// A value that does not parse (edited by hand) counts as none, which only delays giving
/// up.
pub fn cleanup_failures<K: Resource>(obj: &K) -> (u32, Option<jiff::Timestamp>) {
    let annotations = obj.annotations();
    let count = annotations
        .get(CLEANUP_FAILURES_ANNOTATION)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let at = annotations
        .get(CLEANUP_FAILED_AT_ANNOTATION)
        .and_then(|v| v.trim().parse().ok());
    (count, at)
}

/// How long a deleting object still waits before its next cleanup attempt: the backoff
/// after the recorded failures has not passed yet. `None` when an attempt is due (or the
/// object is not ours to clean up, or cleanup is to be skipped, which needs no wait).
pub fn cleanup_wait<K: Resource>(
    obj: &K,
    now: jiff::Timestamp,
    resync: Duration,
) -> Option<Duration> {
    if !is_deleting(obj) || !obj.finalizers().iter().any(|f| f == FINALIZER) || skips_cleanup(obj) {
        return None;
    }
    let (count, Some(failed_at)) = cleanup_failures(obj) else {
        return None;
    };
    if count == 0 {
        return None;
    }
    let delay = jiff::SignedDuration::try_from(backoff_delay(count, resync)).ok()?;
    let due = failed_at.checked_add(delay).ok()?;
    Duration::try_from(now.duration_until(due))
        .ok()
        .filter(|wait| !wait.is_zero())
}

/// What a failed cleanup leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedCleanup {
    /// The auth server was unreachable: record attempt `attempt` and retry with backoff.
    Unreachable { attempt: u32 },
    /// The auth server was unreachable for the `attempts`th time: give up, keep the rows
    /// and release the finalizer.
    Abandon { attempts: u32 },
    /// Any other failure (a refused token, a server error, a rejected request): the auth
    /// server is there, so retry for as long as it takes; never give up.
    Retry,
}

/// Decides what a failed cleanup of `obj` leads to. Only an unreachable admin API
/// (connection refused, DNS, timeout: [`AdminErrorKind::Unavailable`]) counts towards
/// [`CLEANUP_ATTEMPTS`]: it is what an uninstall in the wrong order looks like, while an
/// auth server that answers can still do the cleanup once its problem is fixed.
pub fn failed_cleanup<K: Resource>(obj: &K, error: &AdminError) -> FailedCleanup {
    if !error.is(AdminErrorKind::Unavailable) {
        return FailedCleanup::Retry;
    }
    let attempt = cleanup_failures(obj).0.saturating_add(1);
    if attempt >= CLEANUP_ATTEMPTS {
        FailedCleanup::Abandon { attempts: attempt }
    } else {
        FailedCleanup::Unreachable { attempt }
    }
}

/// The `Ready=False`, reason `Deleting`, message of failed cleanup attempt `attempt`.
pub fn deleting_message(error: &impl std::fmt::Display, attempt: u32) -> String {
    format!(
        "{error}; attempt {attempt} of {CLEANUP_ATTEMPTS} with the auth server unreachable: \
         after the last, deletionPolicy Delete falls back to Retain (the finalizer is released, \
         the rows stay in the database); annotate gatehouse.dev/skip-cleanup=true to release it now"
    )
}

/// Records failed cleanup `attempt` at `now` on the object (server-side apply of the two
/// annotations by the controller's field manager), or with `None` removes the record (an
/// apply without them drops the fields this manager owned).
pub async fn record_cleanup_failures<K>(
    api: &Api<K>,
    obj: &K,
    field_manager: &str,
    attempt: Option<(u32, jiff::Timestamp)>,
) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut metadata = json!({"name": obj.name_any()});
    if let Some(namespace) = obj.namespace() {
        metadata["namespace"] = json!(namespace);
    }
    if let Some((count, at)) = attempt {
        metadata["annotations"] = json!({
            CLEANUP_FAILURES_ANNOTATION: count.to_string(),
            CLEANUP_FAILED_AT_ANNOTATION: at.to_string(),
        });
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": metadata,
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Every well-formed object of kind `K` this operator reconciles (its instance, in the
/// namespaces it watches) that `keep` selects: from the controllers' caches when they run — one per watched
/// namespace, each after its first full LIST, so an established owner is never missed —
/// else listed through `apis` (one per watched namespace, in the caches' order: never a
/// cluster-wide LIST the namespaced RBAC would refuse) with the instance's label
/// `selector`. A cache that is not ready within [`CACHE_WAIT`] is replaced by a LIST.
pub async fn all_objects<K>(
    caches: Option<&[kube::runtime::reflector::Store<DeserializeGuard<K>>]>,
    apis: &[Api<DeserializeGuard<K>>],
    selector: &str,
    keep: impl Fn(&K) -> bool,
) -> kube::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let params = kube::api::ListParams::default().labels(selector);
    let mut guards = Vec::new();
    for (i, api) in apis.iter().enumerate() {
        match caches.and_then(|stores| stores.get(i)) {
            Some(store) if ready(store).await => guards.extend(store.state()),
            _ => guards.extend(api.list(&params).await?.items.into_iter().map(Arc::new)),
        }
    }
    // Only the objects `keep` selects are copied out of the cache: a reconcile that
    // copied the whole cache cost O(objects) allocations each, O(objects²) per resync.
    Ok(guards
        .iter()
        .filter_map(|g| g.0.as_ref().ok().filter(|o| keep(o)).cloned())
        .collect())
}

/// One object by name: from the controllers' caches when they run (after their first
/// full LIST; one cache per watched namespace, the object is in at most one), else a GET.
/// The cache is what the controllers watch anyway, so a reconcile costs no request for
/// it; a change not yet in the cache triggers the reconcile again when it arrives (the
/// same watch maps it to the dependent objects).
pub async fn cached<K>(
    caches: Option<&[kube::runtime::reflector::Store<K>]>,
    api: &Api<K>,
    name: &str,
) -> kube::Result<Option<Arc<K>>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    if let Some(stores) = caches {
        let mut key = kube::runtime::reflector::ObjectRef::<K>::new(name);
        if let Some(ns) = api.namespace() {
            key = key.within(ns);
        }
        let mut all_ready = true;
        for store in stores {
            if !ready(store).await {
                all_ready = false;
            } else if let Some(found) = store.get(&key) {
                return Ok(Some(found));
            }
        }
        if all_ready {
            return Ok(None);
        }
    }
    Ok(api.get_opt(name).await?.map(Arc::new))
}

/// How long a reconcile waits for a cache's first full LIST before it asks the API
/// server instead. A watch that cannot start (a namespace whose Role is missing, an API
/// server that refuses the LIST) must not stall every reconcile that reads the cache: the
/// direct request then either answers or fails with the API server's reason.
pub const CACHE_WAIT: Duration = Duration::from_secs(5);

/// Whether `store` has completed its first LIST, waiting at most [`CACHE_WAIT`].
async fn ready<K>(store: &kube::runtime::reflector::Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    tokio::time::timeout(CACHE_WAIT, store.wait_until_ready())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// The IdentityTenant `name` (from the tenant controller's cache when it runs). One that
/// does not parse counts as absent: its own status says why.
/// A read from the caches and the API server that failed.
#[derive(Debug)]
pub struct Unreadable {
    /// What was read, e.g. `Secret shop/web-oidc`.
    pub what: String,
    pub source: kube::Error,
}

/// Why the IdentityTenant an object refers to (`spec.tenantRef`) is not at hand.
#[derive(Debug)]
pub enum TenantRef {
    Unreadable(Unreadable),
    /// It does not exist: the message for the condition.
    Missing(String),
}

/// The IdentityTenant `name` that an object's `spec.tenantRef` names.
pub async fn referenced_tenant(
    ctx: &Context,
    name: &str,
) -> Result<crds::IdentityTenant, TenantRef> {
    tenant(ctx, name)
        .await
        .map_err(|source| {
            TenantRef::Unreadable(Unreadable {
                what: format!("IdentityTenant {name}"),
                source,
            })
        })?
        .ok_or_else(|| {
            TenantRef::Missing(format!(
                "spec.tenantRef: IdentityTenant {name} does not exist"
            ))
        })
}

/// The Secret `namespace/name`, if it exists (always from the API server: Secrets are
/// not cached, so their values are not held in memory).
pub async fn secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<k8s_openapi::api::core::v1::Secret>, Unreadable> {
    Api::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Unreadable {
            what: format!("Secret {namespace}/{name}"),
            source,
        })
}

pub async fn tenant(ctx: &Context, name: &str) -> kube::Result<Option<crds::IdentityTenant>> {
    let api: Api<DeserializeGuard<crds::IdentityTenant>> = Api::all(ctx.client.clone());
    Ok(
        cached(ctx.tenant_store.get().map(std::slice::from_ref), &api, name)
            .await?
            .and_then(|guard| guard.0.as_ref().ok().cloned()),
    )
}

/// kube-runtime's settings for the three controllers: at most `--max-concurrent-reconciles`
/// reconciles at once (kube-runtime never runs two for the same object).
pub fn runtime_config(config: &crate::context::Config) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(config.concurrency)
}

/// Carries out what [`failed_cleanup`] decided after the cleanup of `obj` failed with
/// `error` (a Deleting failure): at the limit a Warning Event `CleanupAbandoned` naming
/// `left_behind`, and `Some(await_change)` so the caller releases the finalizer; below it
/// the attempt recorded and `Deleting` with the count; otherwise the count cleared and
/// the failure reported. `None`: the caller returns `error` (backoff).
pub async fn settle_failed_cleanup<K, E>(
    obj: &K,
    api: &Api<K>,
    field_manager: &str,
    ctx: &Context,
    outcome: FailedCleanup,
    error: &E,
    left_behind: String,
) -> kube::Result<Option<Action>>
where
    K: Resource<DynamicType = ()> + HasStatus + Clone + DeserializeOwned + Debug,
    K::Status: ReadyStatus,
    E: ReconcileError,
{
    let message = match outcome {
        FailedCleanup::Abandon { attempts } => {
            tracing::warn!(object = %object_key(obj), attempts, "auth server unreachable; cleanup abandoned, rows left in the database");
            ctx.events
                .publish(
                    &obj.object_ref(&()),
                    EventType::Warning,
                    "CleanupAbandoned",
                    format!(
                        "the auth server was unreachable on {attempts} cleanup attempts ({error}): \
                         deletionPolicy Delete fell back to Retain and the finalizer was released; {left_behind}"
                    ),
                )
                .await;
            return Ok(Some(Action::await_change()));
        }
        FailedCleanup::Unreachable { attempt } => {
            record_cleanup_failures(api, obj, field_manager, Some((attempt, ctx.now()))).await?;
            deleting_message(error, attempt)
        }
        FailedCleanup::Retry => {
            // The auth server answered: the unreachable attempts before no longer count
            // as one outage.
            if cleanup_failures(obj).0 > 0 {
                record_cleanup_failures(api, obj, field_manager, None).await?;
            }
            error.to_string()
        }
    };
    report_failure(
        obj,
        api,
        field_manager,
        ctx,
        error.category(),
        Some(conditions::DELETING),
        message,
    )
    .await;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::OidcClient;

    fn refs(n: usize) -> Vec<ObjectRef<OidcClient>> {
        (0..n)
            .map(|i| ObjectRef::new(&format!("client-{i}")).within("shop"))
            .collect()
    }

    fn config_map(value: serde_json::Value) -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_cached_child_holds_the_desired_one_only_with_every_field_and_the_same_stamp() {
        let mut desired = config_map(json!({
            "metadata": {"name": "c", "namespace": "ns", "labels": {"a": "1"}},
            "data": {"k": "v"}
        }));
        stamp(&mut desired);
        let stamped = serde_json::to_value(&desired).unwrap();
        let hash = stamped["metadata"]["annotations"][DESIRED_HASH_ANNOTATION].clone();
        assert_eq!(hash.as_str().map(str::len), Some(8), "{stamped}");
        let mut again = desired.clone();
        stamp(&mut again);
        assert_eq!(again, desired, "stamping twice gives the same hash");

        // As the API server stores it: what it adds around our fields changes nothing.
        let mut stored = stamped.clone();
        stored["metadata"]["resourceVersion"] = json!("7");
        stored["metadata"]["labels"]["added-by-someone"] = json!("x");
        stored["metadata"]["annotations"]["kubectl.kubernetes.io/note"] = json!("y");
        assert!(holds(&config_map(stored.clone()), &desired));

        // A value of ours changed or removed by someone: apply again.
        let mut edited = stored.clone();
        edited["data"]["k"] = json!("other");
        assert!(!holds(&config_map(edited), &desired));
        let mut removed = stored.clone();
        removed["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("a");
        assert!(!holds(&config_map(removed), &desired));

        // The operator stopped setting a field: the stamp differs, so apply (which
        // removes it) even though every field still set is in place.
        let mut fewer = config_map(json!({"metadata": {"name": "c", "namespace": "ns",
            "labels": {"a": "1"}}}));
        stamp(&mut fewer);
        assert!(!holds(&config_map(stored), &fewer));
    }

    #[test]
    fn lists_hold_only_item_by_item_with_the_same_length() {
        let have = json!({"args": [{"name": "a", "default": 1}, {"name": "b"}]});
        assert!(contains(
            &have,
            &json!({"args": [{"name": "a"}, {"name": "b"}]})
        ));
        assert!(
            !contains(&have, &json!({"args": [{"name": "a"}]})),
            "one removed"
        );
        assert!(
            !contains(&have, &json!({"args": [{"name": "b"}, {"name": "a"}]})),
            "order"
        );
        assert!(
            !contains(&json!({"n": 1}), &json!({"n": "1"})),
            "types count"
        );
    }

    #[test]
    fn a_gate_release_spreads_objects_over_a_bounded_window_in_a_stable_order() {
        let schedule = release_schedule(refs(100));
        assert_eq!(schedule.len(), 100, "every object is released");
        let last = schedule.last().unwrap().0;
        assert!(last < Duration::from_secs(2), "100 × 20 ms: {last:?}");
        assert!(
            last > Duration::from_secs(1),
            "spread across the window, not bunched at the start: {last:?}"
        );
        assert!(
            schedule.windows(2).all(|w| w[0].0 <= w[1].0),
            "in release order"
        );
        let again: Vec<_> = release_schedule(refs(100).into_iter().rev())
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let first: Vec<_> = schedule.into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            first, again,
            "the order depends on the objects, not on the cache's"
        );

        let many = release_schedule(refs(10_000));
        assert!(many.last().unwrap().0 < RELEASE_MAX, "capped");
        assert!(release_schedule(refs(1))[0].0 < RELEASE_PER_OBJECT);
        assert!(release_schedule::<OidcClient>(vec![]).is_empty());
    }
}
