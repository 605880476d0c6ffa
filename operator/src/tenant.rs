//! The IdentityTenant controller: registers the tenant with the auth server
//! (`UpsertTenant`: issuer, display name, policies as settings JSON), keeps a purge
//! CronJob `gatehouse-purge-<tenant>` in the operator's namespace, and reports `issuer`,
//! `discoveryUrl` and `Ready` in the status. On delete, `deletionPolicy: Delete` removes
//! the tenant and everything in it from the database; `Retain` (default) keeps the rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crds::DeletionPolicy;
use crds::conditions::{self, Status};
use crds::identity_tenant::{IdentityTenant, IdentityTenantSpec, IdentityTenantStatus};
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt as _, watcher};
use kube::{Api, Resource as _, ResourceExt as _};
use serde_json::json;

use crate::admin_client::{AdminError, AdminErrorKind, proto, resource_field_message};
use crate::authserver_pod::{self, bounded_name};
use crate::context::{Config, Context};
use crate::controller::{self, ReconcileError, admin_reason, generation, with_ready};

/// Field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "gatehouse-operator/identitytenant";
/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "identitytenant";
/// Label on a purge CronJob naming its tenant.
pub const TENANT_LABEL: &str = "gatehouse.dev/tenant";
/// `app.kubernetes.io/component` of purge CronJobs.
const PURGE_COMPONENT: &str = "purge";
/// Extra time a purge Job gets beyond its own `--timeout` before Kubernetes kills it.
const PURGE_GRACE_SECONDS: i64 = 300;

/// Why reconciling an IdentityTenant failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("waiting for the schema migration: {0}")]
    MigrationPending(String),
    #[error("the schema migration failed: {0}")]
    MigrationFailed(String),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("failed to register the tenant with the auth server: {0}")]
    UpsertTenant(#[source] AdminError),
    #[error("failed to apply purge CronJob {name}: {source}")]
    ApplyCronJob {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The API server rejected the write for good (see [`controller::rejection`]).
    #[error("{object}: {message}")]
    ApplyRejected { object: String, message: String },
    #[error("failed to update the status: {0}")]
    UpdateStatus(#[source] kube::Error),
    #[error("failed to delete the tenant from the auth server: {0}")]
    DeleteTenant(#[source] AdminError),
    #[error("failed to update the finalizer: {0}")]
    Finalizer(String),
    #[error("failed to record the failed cleanup on the object: {0}")]
    RecordCleanupFailure(#[source] kube::Error),
    #[error("the object does not match the schema: {0}")]
    Malformed(String),
    /// A Secret an upstream provider names (`clientSecretRef`, `ldap.bindPasswordRef`, `ldap.caRef`) does not exist (yet).
    #[error("{0}")]
    UpstreamSecretMissing(String),
    #[error("failed to look up Secret {name}: {source}")]
    ReadSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The auth server cannot start a sign-in through some upstream provider (the
    /// message names each and why); the tenant is registered all the same.
    #[error("{0}")]
    UpstreamUnreachable(String),
    #[error("failed to check the upstream providers: {0}")]
    CheckUpstreams(#[source] AdminError),
}

/// Result of this controller's steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Error::MigrationPending(_) => conditions::MIGRATION_PENDING,
            Error::MigrationFailed(_) => conditions::MIGRATION_FAILED,
            Error::InvalidSpec(_) | Error::Malformed(_) => conditions::INVALID_SPEC,
            Error::Conflict(_) => conditions::CONFLICT,
            Error::UpsertTenant(e) | Error::DeleteTenant(e) | Error::CheckUpstreams(e) => {
                admin_reason(e)
            }
            Error::ApplyCronJob { .. } => "ApplyCronJobFailed",
            Error::ApplyRejected { .. } => conditions::APPLY_FAILED,
            Error::UpdateStatus(_) => "UpdateStatusFailed",
            Error::Finalizer(_) | Error::RecordCleanupFailure(_) => "FinalizerFailed",
            Error::UpstreamSecretMissing(_) => conditions::UPSTREAM_SECRET_MISSING,
            Error::ReadSecret { .. } => "ReadSecretFailed",
            Error::UpstreamUnreachable(_) => conditions::UPSTREAM_UNREACHABLE,
        }
    }

    fn awaits_change(&self) -> bool {
        matches!(self, Error::InvalidSpec(_) | Error::Malformed(_))
    }

    fn retries_at_resync(&self) -> bool {
        matches!(self, Error::ApplyRejected { .. })
    }

    /// `None` leaves the status alone (a failing Kubernetes API would most likely fail
    /// the status write too).
    fn condition_reason(&self) -> Option<&'static str> {
        match self {
            Error::DeleteTenant(_) => Some(conditions::DELETING),
            Error::ApplyCronJob { .. }
            | Error::UpdateStatus(_)
            | Error::Finalizer(_)
            | Error::RecordCleanupFailure(_) => None,
            other => Some(other.category()),
        }
    }
}

controller::managed!(IdentityTenant, cluster);

controller::shared_errors!(gate);

// ---------------------------------------------------------------------------------------
// Pure steps: build

/// The tenant's policies as the auth server's `settings_json`: the spec's `session`,
/// `password`, `mfa`, `passkeys`, `tokens`, `subjectTypes`, `email`, `registration` and
/// `defaultLocale`, `federation` (secret references as the files the auth pods mount)
/// and `devices`, in the CRD's camelCase.
pub fn settings_json(spec: &IdentityTenantSpec) -> String {
    json!({
        "session": spec.session,
        "password": spec.password,
        "mfa": spec.mfa,
        "passkeys": spec.passkeys,
        "tokens": spec.tokens,
        "subjectTypes": spec.subject_types,
        "requirePkce": spec.require_pkce,
        "requirePar": spec.require_par,
        "email": spec.email,
        "registration": spec.registration,
        "defaultLocale": spec.default_locale,
        "federation": spec.federation.settings(),
        "devices": spec.devices,
    })
    .to_string()
}

/// The `UpsertTenant` request for `tenant`.
pub fn upsert_request(tenant: &IdentityTenant) -> proto::UpsertTenantRequest {
    proto::UpsertTenantRequest {
        id: tenant.name_any(),
        issuer: tenant.spec.issuer.trim_end_matches('/').to_owned(),
        display_name: tenant
            .spec
            .display_name
            .clone()
            .unwrap_or_else(|| tenant.name_any()),
        settings_json: settings_json(&tenant.spec),
    }
}

/// `gatehouse-purge-<tenant>`, shortened with a hash beyond the 52 characters a CronJob
/// name may have (its Jobs append 11).
pub fn purge_cronjob_name(tenant: &str) -> String {
    bounded_name("gatehouse-purge-", tenant, 52)
}

/// Seconds of a purge `timeout` (`90s`, `10m`, `1h`); the schema enforces the format.
pub fn timeout_seconds(timeout: &str) -> Option<i64> {
    let split = timeout.len().checked_sub(1)?;
    let (number, unit) = timeout.split_at(split);
    let n: i64 = number.parse().ok()?;
    match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
}

/// The purge CronJob of `tenant`: `authserver purge --tenant <t> [--only …] --timeout
/// <timeout>` on the spec's schedule, never two runs at once, owned by the tenant.
pub fn build_cronjob(tenant: &IdentityTenant, config: &Config) -> Result<CronJob> {
    let name = tenant.name_any();
    let purge = &tenant.spec.purge;
    let timeout = timeout_seconds(&purge.timeout).ok_or_else(|| {
        Error::InvalidSpec(format!(
            "spec.purge.timeout: {:?} is not a number with unit s, m or h",
            purge.timeout
        ))
    })?;
    let owner = tenant
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("the object has no uid yet".to_owned()))?;
    let mut args = vec!["purge".to_owned(), "--tenant".to_owned(), name.clone()];
    if !purge.targets.is_empty() {
        let only: Vec<&str> = purge.targets.iter().map(|t| t.as_str()).collect();
        args.extend(["--only".to_owned(), only.join(",")]);
    }
    args.extend(["--timeout".to_owned(), purge.timeout.clone()]);
    let mut labels = authserver_pod::labels(PURGE_COMPONENT);
    labels.insert(TENANT_LABEL.to_owned(), name.clone());
    // The instance's `.owns()` watch selects on it.
    labels.extend(config.scope.labels());
    Ok(CronJob {
        metadata: ObjectMeta {
            name: Some(purge_cronjob_name(&name)),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(CronJobSpec {
            schedule: purge.schedule_for(&name),
            // A purge still running when the next is due: skip the next, never overlap.
            concurrency_policy: Some("Forbid".to_owned()),
            // After operator or controller-manager downtime, run at most once late.
            starting_deadline_seconds: Some(600),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(1),
                    active_deadline_seconds: Some(timeout.saturating_add(PURGE_GRACE_SECONDS)),
                    template: authserver_pod::pod_template(config, labels, args),
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        status: None,
    })
}

/// Label selector of the purge CronJobs (the `.owns()` watch): this instance's.
pub fn purge_selector(scope: &crate::scope::Scope) -> String {
    scope.narrow(&format!(
        "{},{}={PURGE_COMPONENT}",
        authserver_pod::MANAGED_SELECTOR,
        authserver_pod::COMPONENT
    ))
}

// ---------------------------------------------------------------------------------------
// Reconcile

/// Reconciles one IdentityTenant: finalizer first, then apply or cleanup.
pub async fn reconcile(tenant: Arc<IdentityTenant>, ctx: Arc<Context>) -> Result<Action> {
    controller::with_finalizer(tenant, ctx, apply, cleanup, Error::Finalizer).await
}

/// Runs the steps, unless nothing they read has changed since the last successful run and
/// the resync is not due yet ([`crate::settled`]): the controller's own status write or
/// CronJob apply coming back costs no request (before, each did a whole round: upsert,
/// CronJob apply, upstream check, status).
async fn apply(tenant: Arc<IdentityTenant>, ctx: Arc<Context>) -> Result<Action> {
    let uid = tenant.uid().unwrap_or_default();
    // With the migration gate closed the steps report it: never skipped.
    let inputs = ctx
        .gate_open()
        .then(|| Inputs::cached(&tenant, &ctx))
        .flatten();
    let steps = Box::pin(apply_steps(&tenant, &ctx));
    // The CronJob as this reconcile left it: its own apply must not count as a change.
    let own = |inputs: &mut Inputs, cronjob: &Option<String>| {
        inputs.cronjob.clone_from(cronjob);
    };
    match ctx
        .settled
        .run(&uid, inputs, ctx.now(), ctx.config.resync, steps, own)
        .await
    {
        Err(wait) => {
            tracing::debug!("nothing changed since the last reconcile: skipped");
            Ok(Action::requeue(wait))
        }
        Ok(result) => {
            let result = result.map(|_| Action::requeue(ctx.config.resync));
            controller::reported(&*tenant, &ctx, result).await
        }
    }
}

/// What a reconcile of a tenant reads from the controller's caches, fingerprinted to tell
/// a trigger that changes nothing from a change ([`crate::settled`]): the tenant's own
/// metadata (not its status) and the purge CronJob's version, so a CronJob deleted or
/// edited by someone is a change. Not in it, so only seen at the resync: the upstream
/// Secrets (their absence is a failure, and failures are never settled) and the
/// upstreams' reachability.
#[derive(Debug, Clone, Hash)]
pub struct Inputs {
    pub generation: Option<i64>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
    pub cronjob: Option<String>,
}

impl Inputs {
    /// From the caches; `None` when the controller's caches are not running (tests that
    /// call the reconciler directly), so every reconcile runs in full.
    pub fn cached(tenant: &IdentityTenant, ctx: &Context) -> Option<Self> {
        let cronjobs = ctx.cronjob_store.get()?;
        let key =
            ObjectRef::new(&purge_cronjob_name(&tenant.name_any())).within(&ctx.config.namespace);
        Some(Self {
            generation: tenant.meta().generation,
            annotations: tenant.annotations().clone(),
            labels: tenant.labels().clone(),
            finalizers: tenant.finalizers().to_vec(),
            deleting: controller::is_deleting(tenant),
            cronjob: cronjobs
                .get(&key)
                .and_then(|c| c.metadata.resource_version.clone()),
        })
    }
}

/// What must change: the registration to upsert and the purge CronJob to apply. Pure.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub request: proto::UpsertTenantRequest,
    pub cronjob: CronJob,
}

/// Decides what the reconcile of `tenant` must do, or why it cannot (a purge timeout
/// the CronJob cannot express). Pure: unit-tested without an API server.
pub fn plan(tenant: &IdentityTenant, config: &Config) -> Result<Plan> {
    Ok(Plan {
        request: upsert_request(tenant),
        cronjob: build_cronjob(tenant, config)?,
    })
}

/// The Event for an upsert that `changed` the registration: registered when the status
/// has never shown an issuer, updated otherwise.
pub fn registration_event(
    tenant: &IdentityTenant,
    changed: bool,
    issuer: &str,
) -> Option<(&'static str, String)> {
    if !changed {
        return None;
    }
    Some(
        if tenant.status.as_ref().is_some_and(|s| s.issuer.is_some()) {
            (
                "TenantUpdated",
                format!("tenant updated in the auth server (issuer {issuer})"),
            )
        } else {
            (
                "TenantRegistered",
                format!("tenant registered with the auth server (issuer {issuer})"),
            )
        },
    )
}

/// What the auth server said about the tenant's upstream providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstreams {
    /// The tenant has none.
    None,
    /// This many, every one reachable.
    Reachable(usize),
    /// Not checked: the auth server predates `CheckUpstreams`.
    Unchecked,
}

/// The status after a successful reconcile: registered with `issuer`, purged by the
/// CronJob `namespace/cronjob`, upstreams as checked.
pub fn ready_status(
    tenant: &IdentityTenant,
    issuer: String,
    namespace: &str,
    cronjob: &str,
    upstreams: Upstreams,
    now: jiff::Timestamp,
) -> IdentityTenantStatus {
    let current = tenant.status.clone().unwrap_or_default();
    let upstreams = match upstreams {
        Upstreams::None => String::new(),
        Upstreams::Reachable(1) => "; its upstream provider is reachable".to_owned(),
        Upstreams::Reachable(n) => format!("; its {n} upstream providers are reachable"),
        Upstreams::Unchecked => {
            "; upstream providers not checked (the auth server does not offer CheckUpstreams yet)"
                .to_owned()
        }
    };
    let message =
        format!("registered with the auth server; purge CronJob {namespace}/{cronjob}{upstreams}");
    IdentityTenantStatus {
        observed_generation: generation(tenant),
        conditions: with_ready(
            &current.conditions,
            Status::True,
            conditions::RECONCILED,
            message,
            generation(tenant),
            Time(now),
        ),
        discovery_url: Some(format!("{issuer}/.well-known/openid-configuration")),
        issuer: Some(issuer),
    }
}

fn upsert_error(e: AdminError) -> Error {
    match e.kind {
        AdminErrorKind::InvalidArgument => Error::InvalidSpec(format!(
            "the auth server rejected the tenant: {}",
            resource_field_message(
                &e.message,
                &[
                    ("id", "metadata.name"),
                    ("issuer", "spec.issuer"),
                    ("display_name", "spec.displayName"),
                    ("settings_json", "spec"),
                ],
            )
        )),
        AdminErrorKind::AlreadyExists => Error::Conflict(e.message),
        _ => Error::UpsertTenant(e),
    }
}

/// migration gate → upstream Secrets → plan → UpsertTenant → CronJob → upstream checks
/// → status. The one dereference: the Secrets the upstream providers' `clientSecretRef`s
/// name. Returns the applied CronJob's version.
async fn apply_steps(tenant: &IdentityTenant, ctx: &Context) -> Result<Option<String>> {
    ctx.migration.borrow().gate()?;
    upstream_secrets_exist(tenant, ctx).await?;
    let Plan {
        request,
        mut cronjob,
    } = plan(tenant, &ctx.config)?;
    controller::stamp(&mut cronjob);

    let response = ctx
        .admin
        .upsert_tenant(request)
        .await
        .map_err(upsert_error)?;
    let issuer = response.tenant.map_or_else(
        || tenant.spec.issuer.trim_end_matches('/').to_owned(),
        |t| t.issuer,
    );
    if let Some((reason, note)) = registration_event(tenant, response.changed, &issuer) {
        tracing::info!(tenant = %tenant.name_any(), %issuer, reason, "tenant upserted");
        ctx.events
            .publish(&tenant.object_ref(&()), EventType::Normal, reason, note)
            .await;
    }

    let namespace = &ctx.config.namespace;
    let cronjob_name = cronjob.metadata.name.clone().unwrap_or_default();
    // The resync of an unchanged tenant writes nothing: the watch cache shows whether the
    // CronJob already is what we would apply.
    let cached = ctx
        .cronjob_store
        .get()
        .and_then(|s| s.get(&ObjectRef::new(&cronjob_name).within(namespace)))
        .filter(|cached| controller::holds(&**cached, &cronjob));
    let applied = match cached {
        Some(cached) => cached.metadata.resource_version.clone(),
        None => {
            controller::apply_child(
                &Api::<CronJob>::namespaced(ctx.client.clone(), namespace),
                &cronjob_name,
                FIELD_MANAGER,
                &cronjob,
            )
            .await
            .map_err(|failure| match failure {
                controller::ApplyFailure::Rejected(message) => Error::ApplyRejected {
                    object: format!("CronJob {namespace}/{cronjob_name}"),
                    message,
                },
                controller::ApplyFailure::Failed(source) => Error::ApplyCronJob {
                    name: cronjob_name.clone(),
                    source,
                },
            })?
            .metadata
            .resource_version
        }
    };

    let upstreams = upstreams_reachable(tenant, ctx).await?;
    let status = ready_status(
        tenant,
        issuer,
        namespace,
        &cronjob_name,
        upstreams,
        ctx.now(),
    );
    controller::save_status(tenant, ctx, &status)
        .await
        .map_err(Error::UpdateStatus)?;
    Ok(applied)
}

/// Every Secret an upstream provider references exists in the auth pods' namespace:
/// otherwise nothing is registered and the tenant is `Ready=False`, reason
/// `UpstreamSecretMissing` (retried with backoff: the Secret may come later). Only the
/// metadata is read: the operator never holds the client secret.
async fn upstream_secrets_exist(tenant: &IdentityTenant, ctx: &Context) -> Result<()> {
    let names = tenant.spec.federation.secret_names();
    if names.is_empty() {
        return Ok(());
    }
    let namespace = &ctx.config.namespace;
    let api = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    for name in names {
        let found = api
            .get_metadata_opt(name)
            .await
            .map_err(|source| Error::ReadSecret {
                name: format!("{namespace}/{name}"),
                source,
            })?;
        if found.is_none() {
            return Err(Error::UpstreamSecretMissing(format!(
                "Secret {namespace}/{name}, named by spec.federation.providers[] (clientSecretRef, ldap.bindPasswordRef or ldap.caRef), \
                 does not exist"
            )));
        }
    }
    Ok(())
}

/// Set once an auth server answered UNIMPLEMENTED to `CheckUpstreams`: said once at
/// warning level, not at every reconcile of every tenant.
static UNCHECKED_SAID: AtomicBool = AtomicBool::new(false);

/// Asks the auth server (after the registration: the check reads the tenant's stored
/// settings) whether a sign-in through each upstream provider can start. Any that
/// cannot → `Ready=False`, reason `UpstreamUnreachable`, retried with backoff; the tenant
/// stays registered, so local sign-ins and the other providers keep working. An auth
/// server without the call (older than this operator) leaves the upstreams unchecked
/// instead of failing every tenant that has one.
async fn upstreams_reachable(tenant: &IdentityTenant, ctx: &Context) -> Result<Upstreams> {
    if tenant.spec.federation.providers.is_empty() {
        return Ok(Upstreams::None);
    }
    let name = tenant.name_any();
    let checks = match ctx.admin.check_upstreams(&name).await {
        Ok(checks) => checks,
        Err(e) if e.is(AdminErrorKind::Unimplemented) => {
            if UNCHECKED_SAID.swap(true, Ordering::Relaxed) {
                tracing::debug!(tenant = %name, "upstream providers not checked: the auth server has no CheckUpstreams");
            } else {
                tracing::warn!(tenant = %name, "the auth server does not offer CheckUpstreams (older than this operator): upstream providers stay unchecked until it is upgraded");
            }
            return Ok(Upstreams::Unchecked);
        }
        Err(e) => return Err(Error::CheckUpstreams(e)),
    };
    match unreachable_message(&checks) {
        Some(message) => Err(Error::UpstreamUnreachable(message)),
        None => Ok(Upstreams::Reachable(checks.len())),
    }
}

/// Longest reason quoted per provider: a condition message stays readable (and far
/// below the API server's 32 KiB) with every provider failing.
const MAX_CHECK_MESSAGE: usize = 300;

/// `Ready=False`'s message for the failed checks, naming each provider and why; `None`
/// when every one passed. Pure.
pub fn unreachable_message(checks: &[proto::UpstreamCheck]) -> Option<String> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            let mut why: String = c.message.chars().take(MAX_CHECK_MESSAGE).collect();
            if why.len() < c.message.len() {
                why.push('…');
            }
            format!("{} ({}): {why}", c.provider_id, c.kind)
        })
        .collect();
    if failed.is_empty() {
        return None;
    }
    Some(format!(
        "the auth server cannot start a sign-in through {} of {} upstream providers \
         (spec.federation.providers[]); the tenant is registered and local sign-ins work: {}",
        failed.len(),
        checks.len(),
        failed.join("; ")
    ))
}

/// Releases the tenant's database rows per `deletionPolicy`. Idempotent, and fine when
/// the tenant was never registered (DeleteTenant of an unknown tenant succeeds). The
/// purge CronJob goes with the tenant through its owner reference. With
/// `gatehouse.dev/skip-cleanup: "true"`, or after [`controller::CLEANUP_ATTEMPTS`]
/// failures with the auth server unreachable, the rows are left in place.
async fn cleanup(tenant: Arc<IdentityTenant>, ctx: Arc<Context>) -> Result<Action> {
    let (tenant, ctx) = (&*tenant, &*ctx);
    ctx.settled.forget(&tenant.uid().unwrap_or_default());
    let name = tenant.name_any();
    if controller::skips_cleanup(tenant) {
        tracing::warn!(tenant = %name, "cleanup skipped by annotation; tenant left in the database");
        ctx.events
            .publish(
                &tenant.object_ref(&()),
                EventType::Normal,
                "CleanupSkipped",
                format!(
                    "{}: the auth server was not called; {}",
                    crds::SKIP_CLEANUP_ANNOTATION,
                    left_behind(&name)
                ),
            )
            .await;
        return Ok(Action::await_change());
    }
    match tenant.spec.deletion_policy {
        DeletionPolicy::Retain => {
            tracing::info!(tenant = %name, "tenant deleted; database rows retained");
            ctx.events
                .publish(
                    &tenant.object_ref(&()),
                    EventType::Normal,
                    "TenantRetained",
                    "deletionPolicy Retain: the tenant's users, clients and keys stay in the database",
                )
                .await;
        }
        DeletionPolicy::Delete => match ctx.admin.delete_tenant(&name).await {
            Ok(_) => {
                tracing::info!(tenant = %name, "tenant deleted from the auth server");
                ctx.events
                    .publish(
                        &tenant.object_ref(&()),
                        EventType::Normal,
                        "TenantDeleted",
                        "deletionPolicy Delete: the tenant and everything in it were deleted from the database",
                    )
                    .await;
            }
            Err(e) if e.is(AdminErrorKind::NotFound) => {}
            Err(e) => return failed_cleanup(tenant, ctx, e).await,
        },
    }
    Ok(Action::await_change())
}

/// A failed DeleteTenant: counted while the auth server is unreachable, abandoned (the
/// finalizer released, the rows kept) at the limit, otherwise retried with backoff.
async fn failed_cleanup(tenant: &IdentityTenant, ctx: &Context, e: AdminError) -> Result<Action> {
    let name = tenant.name_any();
    let outcome = controller::failed_cleanup(tenant, &e);
    let error = Error::DeleteTenant(e);
    let settled = controller::settle_failed_cleanup(
        tenant,
        &controller::api(tenant, ctx),
        FIELD_MANAGER,
        ctx,
        outcome,
        &error,
        left_behind(&name),
    )
    .await
    .map_err(Error::RecordCleanupFailure)?;
    settled.ok_or(error)
}

/// What a cleanup that did not run leaves in the database, and how to remove it. The
/// authserver CLI has no command that deletes a tenant, so the ways out go through the
/// admin API.
fn left_behind(name: &str) -> String {
    format!(
        "tenant {name} and everything in it (users, clients, keys, sessions, audit log) stay in \
         the database. Remove them by re-creating IdentityTenant {name} (it adopts the rows) with \
         deletionPolicy: Delete and deleting it while the auth server runs, or with the admin \
         API's DeleteTenant (gatehouse.admin.v1.Admin/DeleteTenant, id {name:?})"
    )
}

// ---------------------------------------------------------------------------------------
// Controller

async fn reconcile_guarded(
    guard: Arc<DeserializeGuard<IdentityTenant>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    controller::guarded(guard, ctx, reconcile).await
}

/// Runs the IdentityTenant controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let tenants: Api<DeserializeGuard<IdentityTenant>> = Api::all(ctx.client.clone());
    let cronjobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let controller = Controller::new(tenants, ctx.config.scope.watcher_config())
        .with_config(controller::runtime_config(&ctx.config));
    let store = controller.store();
    let _ = ctx.tenant_store.set(store.clone());
    // The purge CronJobs through a reflector of our own: its cache holds their versions
    // ([`Inputs`]), its events reconcile their owners as `.owns()` would.
    let (cronjob_cache, cronjob_writer) = kube::runtime::reflector::store();
    let _ = ctx.cronjob_store.set(cronjob_cache);
    let cronjob_events = kube::runtime::reflector(
        cronjob_writer,
        watcher(
            cronjobs,
            watcher::Config::default().labels(&purge_selector(&ctx.config.scope)),
        )
        .default_backoff(),
    )
    .touched_objects();
    controller
        // kube-runtime finds the cluster-scoped owner of a namespaced CronJob (its
        // store retries an owner lookup without the namespace).
        .owns_stream(cronjob_events)
        .reconcile_on(controller::gate_release(ctx.migration.clone(), store))
        .graceful_shutdown_on(shutdown)
        .run(reconcile_guarded, controller::policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, controller = CONTROLLER, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::fixtures::{
        self, ApiServerVerifier, FakeAdmin, Step, TestObject as _, assert_ready, tenant,
    };
    use crate::migration::MigrationState;
    use crate::settled::Fingerprint;

    const TENANT: &str = "/apis/gatehouse.dev/v1alpha1/identitytenants/acme";
    const CRONJOB: &str = "/apis/batch/v1/namespaces/gatehouse/cronjobs/gatehouse-purge-acme";

    fn status_path() -> String {
        format!("{TENANT}/status")
    }

    #[test]
    fn policies_become_camel_case_settings() {
        let t = tenant(json!({"mfa": {"required": true}, "subjectTypes": ["public", "pairwise"]}));
        let settings: serde_json::Value = serde_json::from_str(&settings_json(&t.spec)).unwrap();
        assert_eq!(
            settings,
            json!({
                "session": {"idleTimeoutSeconds": 1800, "absoluteTimeoutSeconds": 86400,
                            "bindIp": false, "bindUserAgent": false},
                "password": {"minLength": 8, "maxLength": 128, "rejectBreached": true},
                "mfa": {"required": true},
                "passkeys": {"enabled": true, "passwordless": true,
                             "userVerification": "required", "attestation": "none"},
                "tokens": {"accessTokenSeconds": 600, "idTokenSeconds": 3600,
                           "refreshTokenSeconds": 2_592_000, "authorizationCodeSeconds": 60},
                "subjectTypes": ["public", "pairwise"],
                "requirePkce": true,
                "requirePar": false,
                "email": {"requireVerified": false, "newDeviceNotice": false},
                "registration": {"enabled": false},
                "defaultLocale": null,
                "federation": {"providers": [], "loginHintDomains": {},
                               "skipPasswordForm": false, "requireSecondFactor": false},
                "devices": {"requireSecondFactorOnNewDevice": false, "trustDays": 30,
                            "impossibleTravelKmh": 0, "secondFactorOnImpossibleTravel": false},
            })
        );
        let t = tenant(json!({
            "email": {"from": "Acme <id@acme.example>", "requireVerified": true, "newDeviceNotice": true},
            "registration": {"enabled": true},
            "defaultLocale": "de",
        }));
        let settings: serde_json::Value = serde_json::from_str(&settings_json(&t.spec)).unwrap();
        assert_eq!(settings["defaultLocale"], "de");
        assert_eq!(
            settings["email"],
            json!({"from": "Acme <id@acme.example>", "requireVerified": true, "newDeviceNotice": true})
        );
        assert_eq!(settings["registration"], json!({"enabled": true}));
        let t = tenant(json!({"devices": {"requireSecondFactorOnNewDevice": true,
                                          "impossibleTravelKmh": 900}}));
        let settings: serde_json::Value = serde_json::from_str(&settings_json(&t.spec)).unwrap();
        assert_eq!(
            settings["devices"],
            json!({"requireSecondFactorOnNewDevice": true, "trustDays": 30,
                   "impossibleTravelKmh": 900, "secondFactorOnImpossibleTravel": false})
        );
        let req = upsert_request(&t);
        assert_eq!(req.id, "acme");
        assert_eq!(req.issuer, "https://id.example.com/t/acme");
        assert_eq!(req.display_name, "ACME");
        let unnamed = tenant(json!({"displayName": null}));
        assert_eq!(upsert_request(&unnamed).display_name, "acme");
    }

    #[test]
    fn without_a_schedule_the_purge_minute_comes_from_the_tenant_name() {
        let cj = |name: &str| {
            let mut t = tenant(json!({}));
            t.metadata.name = Some(name.to_owned());
            serde_json::to_value(build_cronjob(&t, &fixtures::config()).unwrap()).unwrap()
                ["spec"]["schedule"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(cj("acme"), format!("{} * * * *", crds::fnv1a("acme") % 60));
        assert_ne!(cj("acme"), cj("shop"), "two tenants, two minutes");
    }

    #[test]
    fn the_purge_cronjob_runs_purge_for_the_tenant_without_overlap() {
        let t = tenant(
            json!({"purge": {"schedule": "*/5 * * * *", "targets": ["sessions", "jti"], "timeout": "2m"}}),
        );
        let cj = serde_json::to_value(build_cronjob(&t, &fixtures::config()).unwrap()).unwrap();
        assert_eq!(cj["metadata"]["name"], "gatehouse-purge-acme");
        assert_eq!(cj["metadata"]["namespace"], "gatehouse");
        assert_eq!(cj["metadata"]["labels"]["gatehouse.dev/tenant"], "acme");
        assert_eq!(
            cj["metadata"]["ownerReferences"],
            json!([{"apiVersion": "gatehouse.dev/v1alpha1", "kind": "IdentityTenant", "name": "acme",
                    "uid": "uid-tenant-acme", "controller": true}])
        );
        assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 1);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 3);
        let job = &cj["spec"]["jobTemplate"]["spec"];
        assert_eq!(job["activeDeadlineSeconds"], 120 + 300);
        let c = &job["template"]["spec"]["containers"][0];
        assert_eq!(
            c["args"],
            json!([
                "purge",
                "--tenant",
                "acme",
                "--only",
                "sessions,jti",
                "--timeout",
                "2m"
            ])
        );
        assert_eq!(c["image"], "ghcr.io/gatehouse-dev/authserver:1.2.3");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);

        let all = build_cronjob(&tenant(json!({})), &fixtures::config()).unwrap();
        let v = serde_json::to_value(all).unwrap();
        assert_eq!(
            v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["purge", "--tenant", "acme", "--timeout", "10m"]),
            "no targets: purge everything"
        );
    }

    #[test]
    fn a_named_instance_labels_and_selects_its_purge_cronjobs() {
        let blue = Config {
            scope: crate::scope::Scope::parse("", "blue").unwrap(),
            ..fixtures::config()
        };
        let cj = serde_json::to_value(build_cronjob(&tenant(json!({})), &blue).unwrap()).unwrap();
        assert_eq!(cj["metadata"]["labels"]["gatehouse.dev/instance"], "blue");
        assert!(purge_selector(&blue.scope).ends_with(",gatehouse.dev/instance=blue"));
        let cj =
            serde_json::to_value(build_cronjob(&tenant(json!({})), &fixtures::config()).unwrap())
                .unwrap();
        assert!(cj["metadata"]["labels"]["gatehouse.dev/instance"].is_null());
    }

    #[test]
    fn purge_timeouts_parse_with_their_unit() {
        assert_eq!(timeout_seconds("90s"), Some(90));
        assert_eq!(timeout_seconds("10m"), Some(600));
        assert_eq!(timeout_seconds("2h"), Some(7200));
        assert_eq!(timeout_seconds("10"), None);
        assert_eq!(timeout_seconds(""), None);
        assert_eq!(timeout_seconds("xm"), None);
    }

    #[test]
    fn the_plan_is_the_registration_and_the_purge_cronjob() {
        let t = tenant(json!({}));
        let plan = plan(&t, &fixtures::config()).unwrap();
        assert_eq!(plan.request, upsert_request(&t));
        assert_eq!(
            plan.cronjob.metadata.name.as_deref(),
            Some("gatehouse-purge-acme")
        );
        let bad = tenant(json!({"purge": {"timeout": "ten minutes"}}));
        assert_eq!(
            super::plan(&bad, &fixtures::config())
                .unwrap_err()
                .category(),
            "InvalidSpec"
        );
    }

    #[test]
    fn the_registration_event_tells_a_new_tenant_from_an_update() {
        let new = tenant(json!({}));
        assert_eq!(registration_event(&new, false, "https://x"), None);
        assert_eq!(
            registration_event(&new, true, "https://x").map(|e| e.0),
            Some("TenantRegistered")
        );
        let mut known = tenant(json!({}));
        known.status = Some(ready_status(
            &known,
            "https://x".into(),
            "gatehouse",
            "gatehouse-purge-acme",
            Upstreams::None,
            fixtures::now(),
        ));
        assert_eq!(
            registration_event(&known, true, "https://x").map(|e| e.0),
            Some("TenantUpdated")
        );
        let status = known.status.unwrap();
        assert_eq!(
            status.discovery_url.as_deref(),
            Some("https://x/.well-known/openid-configuration")
        );
        assert!(conditions::is_true(&status.conditions, conditions::READY));
    }

    #[tokio::test]
    async fn tenant_without_finalizer_gets_one_first() {
        let t = tenant(json!({}));
        let finalized = t.clone().finalized();
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::json_patch(TENANT)
                .check(|body| {
                    assert_eq!(
                        body,
                        &json!([
                            {"op": "test", "path": "/metadata/finalizers", "value": null},
                            {"op": "add", "path": "/metadata/finalizers", "value": ["gatehouse.dev/cleanup"]},
                        ])
                    );
                })
                .respond_obj(&finalized),
        ]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let action = reconcile(Arc::new(t), ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        assert!(
            admin.calls().is_empty(),
            "nothing registered before the finalizer"
        );
        verifier.done().await;
    }

    #[tokio::test]
    async fn tenant_is_upserted_with_its_cronjob_and_status() {
        let t = tenant(json!({})).finalized();
        let obj = t.clone();
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::apply(CRONJOB, FIELD_MANAGER).check(|body| {
                assert_eq!(body["kind"], "CronJob");
                assert_eq!(body["spec"]["concurrencyPolicy"], "Forbid");
            }),
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(|body| {
                    assert_ready(body, "True", "Reconciled");
                    assert_eq!(body["status"]["issuer"], "https://id.example.com/t/acme");
                    assert_eq!(
                        body["status"]["discoveryUrl"],
                        "https://id.example.com/t/acme/.well-known/openid-configuration"
                    );
                    assert_eq!(body["status"]["observedGeneration"], 1);
                    assert_eq!(
                        body["status"]["conditions"][0]["lastTransitionTime"],
                        "2026-01-01T00:00:00Z"
                    );
                })
                .respond_obj(&obj),
        ]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let action = reconcile(Arc::new(t), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(std::time::Duration::from_mins(5)));
        assert_eq!(admin.calls(), ["UpsertTenant(acme)"]);
        let stored = admin.state().tenants["acme"].clone();
        assert!(
            stored
                .settings_json
                .contains("\"subjectTypes\":[\"public\"]")
        );
        let events = ctx.events.recorded();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "TenantRegistered");
        assert!(!events[0].warning);
        verifier.done().await;
    }

    /// The purge CronJobs' cache as `run` sets it, holding `versions` of the tenant's.
    fn with_cronjob_cache(ctx: &Context, version: Option<&str>) {
        let (reader, mut writer) = kube::runtime::reflector::store();
        if let Some(v) = version {
            let cj: CronJob = serde_json::from_value(json!({
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "gatehouse-purge-acme", "namespace": "gatehouse",
                             "resourceVersion": v}
            }))
            .unwrap();
            writer.apply_watcher_event(&watcher::Event::InitApply(cj));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let _ = ctx.cronjob_store.set(reader);
    }

    fn applied_cronjob(version: &str) -> serde_json::Value {
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
               "metadata": {"name": "gatehouse-purge-acme", "namespace": "gatehouse",
                            "resourceVersion": version}})
    }

    /// A watch event that changes nothing the reconcile reads (its status write, its
    /// CronJob apply, coming back) costs no request and no upsert until the resync is
    /// due; the CronJob gone from the cache (deleted by someone) runs it in full again.
    #[tokio::test]
    async fn a_trigger_that_changes_nothing_skips_the_reconcile_until_the_resync() {
        let t = tenant(json!({})).finalized();
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::apply(CRONJOB, FIELD_MANAGER).respond(applied_cronjob("7")),
            Step::apply(&status_path(), FIELD_MANAGER).respond_obj(&t),
        ]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        // The watch brought the applied CronJob back.
        with_cronjob_cache(&ctx, Some("7"));
        let first = reconcile(Arc::new(t.clone()), ctx.clone()).await;
        assert_eq!(first.unwrap(), Action::requeue(Duration::from_mins(5)));
        // The mock API server answers nothing more: any request now fails the reconcile.
        verifier.done().await;
        let again = reconcile(Arc::new(t.clone()), ctx.clone()).await;
        assert_eq!(
            again.unwrap(),
            Action::requeue(Duration::from_mins(5)),
            "skipped: the fixed clock says the resync is 5 min away"
        );
        assert_eq!(admin.calls(), ["UpsertTenant(acme)"], "one upsert for both");

        // The CronJob deleted: a change, so the whole reconcile runs (and re-creates it).
        let seen = Inputs::cached(&t, &ctx).unwrap();
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::apply(CRONJOB, FIELD_MANAGER).respond(applied_cronjob("9")),
            Step::apply(&status_path(), FIELD_MANAGER).respond_obj(&t),
        ]);
        let fresh = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        with_cronjob_cache(&fresh, None);
        fresh.settled.record(
            &t.uid().unwrap_or_default(),
            Fingerprint::of(&seen),
            fixtures::now(),
        );
        reconcile(Arc::new(t), fresh).await.unwrap();
        assert_eq!(admin.calls(), ["UpsertTenant(acme)", "UpsertTenant(acme)"]);
        verifier.done().await;
    }

    /// The resync of a tenant whose purge CronJob the watch cache shows as the operator
    /// would apply it (with the API server's defaults added) sends no CronJob write; one
    /// edited by someone is applied again.
    #[tokio::test]
    async fn a_resync_writes_the_cronjob_only_when_the_cache_shows_it_differs() {
        let t = tenant(json!({})).finalized();
        let mut desired = plan(&t, &fixtures::config()).unwrap().cronjob;
        controller::stamp(&mut desired);
        let mut stored = serde_json::to_value(&desired).unwrap();
        stored["metadata"]["resourceVersion"] = json!("7");
        stored["spec"]["suspend"] = json!(false);
        stored["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] =
            json!("ClusterFirst");
        let cache = |cronjob: serde_json::Value, ctx: &Context| {
            let (reader, mut writer) = kube::runtime::reflector::store();
            writer.apply_watcher_event(&watcher::Event::InitApply(
                serde_json::from_value::<CronJob>(cronjob).unwrap(),
            ));
            writer.apply_watcher_event(&watcher::Event::InitDone);
            let _ = ctx.cronjob_store.set(reader);
        };

        // Only the status: any CronJob request would find the mock API server answering
        // nothing more and fail the reconcile.
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::apply(&status_path(), FIELD_MANAGER).respond_obj(&t),
        ]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        cache(stored.clone(), &ctx);
        reconcile(Arc::new(t.clone()), ctx).await.unwrap();
        assert_eq!(admin.calls(), ["UpsertTenant(acme)"]);
        verifier.done().await;

        // Someone changed the schedule: applied again.
        let mut edited = stored;
        edited["spec"]["schedule"] = json!("* * * * *");
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::apply(CRONJOB, FIELD_MANAGER).respond(applied_cronjob("8")),
            Step::apply(&status_path(), FIELD_MANAGER).respond_obj(&t),
        ]);
        let ctx = fixtures::context(client, admin, MigrationState::Succeeded);
        cache(edited, &ctx);
        reconcile(Arc::new(t), ctx).await.unwrap();
        verifier.done().await;
    }

    #[tokio::test]
    async fn an_unchanged_tenant_writes_no_status() {
        let mut t = tenant(json!({})).finalized();
        t.status = Some(IdentityTenantStatus {
            observed_generation: Some(1),
            conditions: with_ready(
                &[],
                Status::True,
                conditions::RECONCILED,
                "registered with the auth server; purge CronJob gatehouse/gatehouse-purge-acme",
                Some(1),
                Time(fixtures::now()),
            ),
            issuer: Some("https://id.example.com/t/acme".into()),
            discovery_url: Some(
                "https://id.example.com/t/acme/.well-known/openid-configuration".into(),
            ),
        });
        // Only the CronJob apply (a no-op for the API server when nothing changed).
        let (client, verifier) = ApiServerVerifier::run(vec![Step::apply(CRONJOB, FIELD_MANAGER)]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        reconcile(Arc::new(t.clone()), ctx.clone()).await.unwrap();
        // The second upsert reports no change: no Event.
        assert_eq!(ctx.events.recorded().len(), 1);
        verifier.done().await;
        let (client, verifier) = ApiServerVerifier::run(vec![Step::apply(CRONJOB, FIELD_MANAGER)]);
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        reconcile(Arc::new(t), ctx.clone()).await.unwrap();
        assert!(ctx.events.recorded().is_empty(), "no change, no Event");
        verifier.done().await;
    }

    async fn failing_reconcile(
        t: IdentityTenant,
        admin: Arc<FakeAdmin>,
        state: MigrationState,
        check: impl FnOnce(&serde_json::Value) + Send + 'static,
    ) -> (Error, Arc<Context>) {
        let obj = t.clone();
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(check)
                .respond_obj(&obj),
        ]);
        let ctx = fixtures::context(client, admin, state);
        let err = reconcile(Arc::new(t), ctx.clone()).await.unwrap_err();
        verifier.done().await;
        (err, ctx)
    }

    #[tokio::test]
    async fn migration_pending_holds_the_tenant() {
        let admin = FakeAdmin::new();
        let (err, ctx) = failing_reconcile(
            tenant(json!({})).finalized(),
            admin.clone(),
            MigrationState::Pending {
                message: "waiting for migration Job gatehouse-migrate-1-2-3-x".into(),
            },
            |body| {
                let m = assert_ready(body, "False", "MigrationPending");
                assert!(m.contains("gatehouse-migrate-1-2-3-x"), "{m}");
            },
        )
        .await;
        assert!(admin.calls().is_empty());
        assert_eq!(err.category(), "MigrationPending");
        let guard = DeserializeGuard(Ok(tenant(json!({}))));
        assert_eq!(
            controller::error_policy(&guard, &err, &ctx),
            Action::requeue(std::time::Duration::from_secs(5))
        );
        let events = ctx.events.recorded();
        assert!(events[0].warning);
        assert_eq!(events[0].reason, "MigrationPending");
    }

    #[tokio::test]
    async fn a_failed_migration_is_shown_with_the_job_failure() {
        let admin = FakeAdmin::new();
        let (err, _) = failing_reconcile(
            tenant(json!({})).finalized(),
            admin.clone(),
            MigrationState::Failed { message: "migration Job x failed (BackoffLimitExceeded: Job has reached the specified backoff limit)".into() },
            |body| {
                let m = assert_ready(body, "False", "MigrationFailed");
                assert!(m.contains("BackoffLimitExceeded"), "{m}");
            },
        )
        .await;
        assert!(admin.calls().is_empty());
        assert!(!err.awaits_change());
    }

    #[tokio::test]
    async fn a_missing_upstream_secret_is_ready_false_and_registers_nothing() {
        let t = tenant(json!({"federation": {"providers": [{
            "id": "corp", "displayName": "Corp", "issuer": "https://login.corp.example",
            "clientId": "gh", "clientSecretRef": {"name": "corp-oidc"}}]}}))
        .finalized();
        let obj = t.clone();
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get("/api/v1/namespaces/gatehouse/secrets/corp-oidc").not_found(),
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(|body| {
                    let m = assert_ready(body, "False", "UpstreamSecretMissing");
                    assert!(m.contains("gatehouse/corp-oidc"), "{m}");
                })
                .respond_obj(&obj),
        ]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let err = reconcile(Arc::new(t.clone()), ctx.clone())
            .await
            .unwrap_err();
        verifier.done().await;
        assert!(admin.calls().is_empty(), "nothing registered");
        assert!(
            !err.awaits_change(),
            "retried: the Secret may be created later"
        );

        // Once the Secret exists, the tenant is registered with the file the auth pods
        // mount in place of the reference.
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get("/api/v1/namespaces/gatehouse/secrets/corp-oidc").respond(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "corp-oidc", "namespace": "gatehouse"}})),
            Step::apply(CRONJOB, FIELD_MANAGER),
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(|body| {
                    assert_ready(body, "True", "Reconciled");
                })
                .respond_obj(&obj),
        ]);
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        reconcile(Arc::new(t), ctx).await.unwrap();
        verifier.done().await;
        let settings: serde_json::Value =
            serde_json::from_str(&admin.state().tenants["acme"].settings_json).unwrap();
        assert_eq!(
            settings["federation"]["providers"][0]["clientSecret"],
            json!({"file": "/var/run/gatehouse/upstream/corp-oidc/client-secret"})
        );
    }

    #[tokio::test]
    async fn a_missing_ldap_bind_password_secret_is_ready_false_and_registers_nothing() {
        let t = tenant(json!({"federation": {"providers": [{
            "id": "corp-ad", "displayName": "Corp AD", "kind": "ldap",
            "ldap": {"url": "ldaps://dc1.corp.example:636", "bindDn": "CN=svc,DC=corp",
                     "bindPasswordRef": {"name": "corp-ad-bind"}, "userBaseDn": "DC=corp"}}]}}))
        .finalized();
        let obj = t.clone();
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get("/api/v1/namespaces/gatehouse/secrets/corp-ad-bind").not_found(),
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(|body| {
                    let m = assert_ready(body, "False", "UpstreamSecretMissing");
                    assert!(m.contains("gatehouse/corp-ad-bind"), "{m}");
                    assert!(m.contains("bindPasswordRef"), "{m}");
                })
                .respond_obj(&obj),
        ]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let err = reconcile(Arc::new(t.clone()), ctx).await.unwrap_err();
        verifier.done().await;
        assert!(admin.calls().is_empty(), "nothing registered");
        assert!(!err.awaits_change());

        // With the Secret, the directory's password is the mounted file.
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::get("/api/v1/namespaces/gatehouse/secrets/corp-ad-bind").respond(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "corp-ad-bind", "namespace": "gatehouse"}})),
            Step::apply(CRONJOB, FIELD_MANAGER),
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(|body| {
                    assert_ready(body, "True", "Reconciled");
                })
                .respond_obj(&obj),
        ]);
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        reconcile(Arc::new(t), ctx).await.unwrap();
        verifier.done().await;
        let settings: serde_json::Value =
            serde_json::from_str(&admin.state().tenants["acme"].settings_json).unwrap();
        let ldap = &settings["federation"]["providers"][0]["ldap"];
        assert_eq!(
            ldap["bindPassword"],
            json!({"file": "/var/run/gatehouse/upstream/corp-ad-bind/bind-password"})
        );
        assert!(ldap.get("bindPasswordRef").is_none());
    }

    /// Tenant `acme` federating to `corp` (OpenID Connect) and `corp-ad` (a directory).
    fn federated_tenant() -> IdentityTenant {
        tenant(json!({"federation": {"providers": [
            {"id": "corp", "displayName": "Corp", "issuer": "https://login.corp.example",
             "clientId": "gh", "clientSecretRef": {"name": "corp-oidc"}},
            {"id": "corp-ad", "displayName": "Corp AD", "kind": "ldap",
             "ldap": {"url": "ldaps://dc1.corp.example:636", "bindDn": "CN=svc,DC=corp",
                      "bindPasswordRef": {"name": "corp-ad-bind"}, "userBaseDn": "DC=corp"}}]}}))
        .finalized()
    }

    /// The API server's side of a reconcile of [`federated_tenant`] that gets as far as
    /// the status: the two Secrets exist, the CronJob applies, the status is `check`ed.
    fn federated_steps(
        obj: &IdentityTenant,
        check: impl FnOnce(&serde_json::Value) + Send + 'static,
    ) -> Vec<Step> {
        let secret = |name: &str| {
            Step::get(&format!("/api/v1/namespaces/gatehouse/secrets/{name}")).respond(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": name, "namespace": "gatehouse"}}))
        };
        vec![
            secret("corp-ad-bind"),
            secret("corp-oidc"),
            Step::apply(CRONJOB, FIELD_MANAGER),
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(check)
                .respond_obj(obj),
        ]
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_ready_false_while_the_tenant_stays_registered() {
        let t = federated_tenant();
        let admin = FakeAdmin::new();
        admin.upstream_down(
            "corp",
            "discovery https://login.corp.example/.well-known/openid-configuration: cannot connect: connection refused",
        );
        let (client, verifier) = ApiServerVerifier::run(federated_steps(&t, |body| {
            let m = assert_ready(body, "False", "UpstreamUnreachable");
            assert!(
                m.contains(
                    "corp (oidc): discovery https://login.corp.example/.well-known/openid-configuration: \
                     cannot connect: connection refused"
                ),
                "{m}"
            );
            assert!(m.contains("1 of 2 upstream providers"), "{m}");
            assert!(!m.contains("corp-ad"), "only the failing provider: {m}");
        }));
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let err = reconcile(Arc::new(t.clone()), ctx.clone())
            .await
            .unwrap_err();
        verifier.done().await;
        assert_eq!(err.category(), "UpstreamUnreachable");
        assert_eq!(
            admin.calls(),
            ["UpsertTenant(acme)", "CheckUpstreams(acme)"],
            "registered, then checked"
        );
        assert!(
            admin.state().tenants.contains_key("acme"),
            "still registered"
        );
        let events = ctx.events.recorded();
        assert_eq!(events[0].reason, "TenantRegistered");
        let warning = events.last().unwrap();
        assert!(warning.warning);
        assert_eq!(warning.reason, "UpstreamUnreachable");
        assert!(warning.note.contains("corp (oidc)"), "{}", warning.note);
        // Retried with backoff: the upstream may come back by itself.
        assert!(!err.awaits_change());
        let guard = DeserializeGuard(Ok(t.clone()));
        for secs in [5, 10, 20] {
            assert_eq!(
                controller::error_policy(&guard, &err, &ctx),
                Action::requeue(std::time::Duration::from_secs(secs))
            );
        }

        // The upstream is back: the next reconcile is Ready=True.
        admin.upstream_up("corp");
        let (client, verifier) = ApiServerVerifier::run(federated_steps(&t, |body| {
            let m = assert_ready(body, "True", "Reconciled");
            assert!(
                m.ends_with("; its 2 upstream providers are reachable"),
                "{m}"
            );
        }));
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        reconcile(Arc::new(t), ctx).await.unwrap();
        verifier.done().await;
    }

    #[tokio::test]
    async fn an_auth_server_without_check_upstreams_leaves_the_upstreams_unchecked() {
        let t = federated_tenant();
        let admin = FakeAdmin::new();
        admin.upstream_down("corp", "would fail if asked");
        admin.fail_method(
            "CheckUpstreams",
            AdminErrorKind::Unimplemented,
            "Operation is not implemented or not supported",
        );
        let (client, verifier) = ApiServerVerifier::run(federated_steps(&t, |body| {
            let m = assert_ready(body, "True", "Reconciled");
            assert!(m.contains("upstream providers not checked"), "{m}");
        }));
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        reconcile(Arc::new(t.clone()), ctx).await.unwrap();
        verifier.done().await;
        assert_eq!(
            admin.calls(),
            ["UpsertTenant(acme)", "CheckUpstreams(acme)"]
        );

        // Any other failure of the call is the auth server's: retried as unavailable.
        admin.fail_method(
            "CheckUpstreams",
            AdminErrorKind::Unavailable,
            "connection reset",
        );
        let (client, verifier) = ApiServerVerifier::run(federated_steps(&t, |body| {
            let m = assert_ready(body, "False", "AuthServerUnavailable");
            assert!(
                m.contains("failed to check the upstream providers: connection reset"),
                "{m}"
            );
        }));
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let err = reconcile(Arc::new(t), ctx).await.unwrap_err();
        verifier.done().await;
        assert_eq!(err.category(), "AuthServerUnavailable");
    }

    #[test]
    fn the_unreachable_message_names_each_failing_provider_and_stays_short() {
        let check = |id: &str, ok: bool, message: &str| proto::UpstreamCheck {
            provider_id: id.into(),
            kind: "ldap".into(),
            ok,
            message: message.into(),
        };
        assert_eq!(unreachable_message(&[check("a", true, "fine")]), None);
        assert_eq!(unreachable_message(&[]), None);
        let long = "x".repeat(10_000);
        let m = unreachable_message(&[
            check(
                "a",
                false,
                "LDAP ldaps://dc1:636: service-account bind failed: invalidCredentials",
            ),
            check("b", true, "fine"),
            check("c", false, &long),
        ])
        .unwrap();
        assert!(m.contains("2 of 3 upstream providers"), "{m}");
        assert!(
            m.contains("a (ldap): LDAP ldaps://dc1:636: service-account bind failed: invalidCredentials; c (ldap): xxx"),
            "{m}"
        );
        assert!(m.ends_with("x…"), "cut short");
        assert!(m.len() < 1000, "{}", m.len());
    }

    #[tokio::test]
    async fn an_unreachable_auth_server_backs_off_exponentially() {
        let admin = FakeAdmin::new();
        admin.fail_with(
            AdminErrorKind::Unavailable,
            "tcp connect error: Connection refused",
        );
        let (err, ctx) = failing_reconcile(
            tenant(json!({})).finalized(),
            admin.clone(),
            MigrationState::Succeeded,
            |body| {
                let m = assert_ready(body, "False", "AuthServerUnavailable");
                assert!(m.contains("Connection refused"), "{m}");
            },
        )
        .await;
        let guard = DeserializeGuard(Ok(tenant(json!({}))));
        for secs in [5, 10, 20, 40] {
            assert_eq!(
                controller::error_policy(&guard, &err, &ctx),
                Action::requeue(std::time::Duration::from_secs(secs))
            );
        }
    }

    #[tokio::test]
    async fn an_invalid_argument_becomes_invalid_spec_naming_the_field() {
        let admin = FakeAdmin::new();
        admin.fail_with(
            AdminErrorKind::InvalidArgument,
            "issuer: must be an https URL",
        );
        let (err, ctx) = failing_reconcile(
            tenant(json!({})).finalized(),
            admin,
            MigrationState::Succeeded,
            |body| {
                let m = assert_ready(body, "False", "InvalidSpec");
                assert!(m.contains("spec.issuer: must be an https URL"), "{m}");
            },
        )
        .await;
        assert!(err.awaits_change());
        let guard = DeserializeGuard(Ok(tenant(json!({}))));
        assert_eq!(
            controller::error_policy(&guard, &err, &ctx),
            Action::await_change()
        );
    }

    #[tokio::test]
    async fn an_issuer_used_by_another_tenant_is_a_conflict() {
        let admin = FakeAdmin::new();
        admin.fail_with(
            AdminErrorKind::AlreadyExists,
            "issuer \"https://id.example.com/t/acme\" is already used by another tenant",
        );
        failing_reconcile(
            tenant(json!({})).finalized(),
            admin,
            MigrationState::Succeeded,
            |body| {
                let m = assert_ready(body, "False", "Conflict");
                assert!(m.contains("already used"), "{m}");
            },
        )
        .await;
    }

    fn finalizer_removal() -> Step {
        Step::json_patch(TENANT).check(|body| {
            assert_eq!(
                body,
                &json!([
                    {"op": "test", "path": "/metadata/finalizers/0", "value": "gatehouse.dev/cleanup"},
                    {"op": "remove", "path": "/metadata/finalizers/0"},
                ])
            );
        })
    }

    #[tokio::test]
    async fn deleting_with_retain_keeps_the_rows() {
        let t = tenant(json!({"deletionPolicy": "Retain"}))
            .finalized()
            .deleting();
        let obj = t.clone();
        let (client, verifier) =
            ApiServerVerifier::run(vec![finalizer_removal().respond_obj(&obj)]);
        let admin = FakeAdmin::with_tenant();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        reconcile(Arc::new(t), ctx.clone()).await.unwrap();
        assert!(admin.calls().is_empty());
        assert!(admin.state().tenants.contains_key("acme"));
        assert_eq!(ctx.events.recorded()[0].reason, "TenantRetained");
        verifier.done().await;
    }

    #[tokio::test]
    async fn deleting_with_delete_removes_the_tenant_even_if_never_registered() {
        for admin in [FakeAdmin::with_tenant(), FakeAdmin::new()] {
            let t = tenant(json!({"deletionPolicy": "Delete"}))
                .finalized()
                .deleting();
            let obj = t.clone();
            let (client, verifier) =
                ApiServerVerifier::run(vec![finalizer_removal().respond_obj(&obj)]);
            // Cleanup does not wait for the migration.
            let ctx = fixtures::context(client, admin.clone(), MigrationState::unchecked("x"));
            reconcile(Arc::new(t), ctx).await.unwrap();
            assert_eq!(admin.calls(), ["DeleteTenant(acme)"]);
            assert!(admin.state().tenants.is_empty());
            verifier.done().await;
        }
    }

    /// Tenant `acme` with `deletionPolicy: Delete` being deleted, with `count` failed
    /// cleanups recorded, the last at `failed_at`.
    fn deleting_tenant(count: Option<u32>, failed_at: &str) -> IdentityTenant {
        let t = tenant(json!({"deletionPolicy": "Delete"}))
            .finalized()
            .deleting();
        match count {
            Some(n) => t
                .annotated(controller::CLEANUP_FAILURES_ANNOTATION, &n.to_string())
                .annotated(controller::CLEANUP_FAILED_AT_ANNOTATION, failed_at),
            None => t,
        }
    }

    #[tokio::test]
    async fn skip_cleanup_releases_the_finalizer_without_calling_the_auth_server() {
        let t = deleting_tenant(None, "").annotated(crds::SKIP_CLEANUP_ANNOTATION, "true");
        let obj = t.clone();
        let (client, verifier) =
            ApiServerVerifier::run(vec![finalizer_removal().respond_obj(&obj)]);
        let admin = FakeAdmin::with_tenant();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let action = reconcile(Arc::new(t), ctx.clone()).await.unwrap();
        verifier.done().await;
        assert_eq!(action, Action::await_change());
        assert!(admin.calls().is_empty());
        assert!(admin.state().tenants.contains_key("acme"), "the rows stay");
        let events = ctx.events.recorded();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "CleanupSkipped");
        assert!(!events[0].warning);
        assert!(events[0].note.contains("tenant acme"), "{}", events[0].note);
    }

    #[tokio::test]
    async fn an_unreachable_auth_server_counts_the_attempt_and_keeps_the_finalizer() {
        for (before, attempt) in [(None, 1), (Some(6), 7)] {
            let t = deleting_tenant(before, "2025-12-31T23:00:00Z");
            let obj = t.clone();
            let (client, verifier) = ApiServerVerifier::run(vec![
                Step::apply(TENANT, FIELD_MANAGER)
                    .check(move |body| {
                        assert_eq!(body["kind"], "IdentityTenant");
                        assert_eq!(body["metadata"]["name"], "acme");
                        assert_eq!(
                            body["metadata"]["annotations"]["gatehouse.dev/cleanup-failures"],
                            attempt.to_string()
                        );
                        assert_eq!(
                            body["metadata"]["annotations"]["gatehouse.dev/cleanup-failed-at"],
                            "2026-01-01T00:00:00Z"
                        );
                    })
                    .respond_obj(&obj),
                Step::apply(&status_path(), FIELD_MANAGER)
                    .check(move |body| {
                        let m = assert_ready(body, "False", "Deleting");
                        assert!(m.contains("unreachable"), "{m}");
                        assert!(m.contains(&format!("attempt {attempt} of 8")), "{m}");
                    })
                    .respond_obj(&obj),
            ]);
            let admin = FakeAdmin::with_tenant();
            admin.fail_with(AdminErrorKind::Unavailable, "unreachable");
            let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
            let err = reconcile(Arc::new(t), ctx).await.unwrap_err();
            verifier.done().await;
            assert_eq!(err.category(), "AuthServerUnavailable");
            assert_eq!(admin.calls(), ["DeleteTenant(acme)"]);
        }
    }

    #[tokio::test]
    async fn at_the_limit_the_finalizer_is_released_with_a_warning_naming_the_leftover() {
        let t = deleting_tenant(
            Some(controller::CLEANUP_ATTEMPTS - 1),
            "2025-12-31T23:00:00Z",
        );
        let obj = t.clone();
        let (client, verifier) =
            ApiServerVerifier::run(vec![finalizer_removal().respond_obj(&obj)]);
        let admin = FakeAdmin::with_tenant();
        admin.fail_with(AdminErrorKind::Unavailable, "unreachable");
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let action = reconcile(Arc::new(t), ctx.clone()).await.unwrap();
        verifier.done().await;
        assert_eq!(action, Action::await_change());
        assert_eq!(admin.calls(), ["DeleteTenant(acme)"]);
        let events = ctx.events.recorded();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "CleanupAbandoned");
        assert!(events[0].warning);
        for fragment in [
            "unreachable on 8 cleanup attempts",
            "tenant acme and everything in it",
            "gatehouse.admin.v1.Admin/DeleteTenant",
        ] {
            assert!(events[0].note.contains(fragment), "{}", events[0].note);
        }
    }

    #[tokio::test]
    async fn a_recorded_failure_waits_out_its_backoff() {
        // Seventh failure 100 s ago: the backoff after seven failures is 300 s.
        let t = deleting_tenant(Some(7), "2025-12-31T23:58:20Z");
        let (client, verifier) = ApiServerVerifier::run(vec![]);
        let admin = FakeAdmin::with_tenant();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let action = reconcile(Arc::new(t), ctx).await.unwrap();
        verifier.done().await;
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(200)));
        assert!(admin.calls().is_empty());
    }

    #[tokio::test]
    async fn an_error_other_than_unreachable_never_abandons() {
        let t = deleting_tenant(
            Some(controller::CLEANUP_ATTEMPTS - 1),
            "2025-12-31T23:00:00Z",
        );
        let obj = t.clone();
        let (client, verifier) = ApiServerVerifier::run(vec![
            // The count restarts: the auth server answered.
            Step::apply(TENANT, FIELD_MANAGER)
                .check(|body| assert!(body["metadata"].get("annotations").is_none(), "{body}"))
                .respond_obj(&obj),
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(|body| {
                    let m = assert_ready(body, "False", "Deleting");
                    assert!(m.contains("internal error"), "{m}");
                })
                .respond_obj(&obj),
        ]);
        let admin = FakeAdmin::with_tenant();
        admin.fail_with(AdminErrorKind::Other, "internal error");
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let err = reconcile(Arc::new(t), ctx.clone()).await.unwrap_err();
        verifier.done().await;
        assert_eq!(err.category(), "AuthServerUnavailable");
        assert!(
            ctx.events
                .recorded()
                .iter()
                .all(|e| e.reason != "CleanupAbandoned")
        );
    }

    #[tokio::test]
    async fn a_cronjob_write_the_api_server_rejects_is_ready_false_apply_failed() {
        let quota = "cronjobs.batch \"gatehouse-purge-acme\" is forbidden: exceeded quota: \
                     jobs, requested: count/cronjobs.batch=1, used: count/cronjobs.batch=10, \
                     limited: count/cronjobs.batch=10";
        let mut t = tenant(json!({})).finalized();
        t.metadata.generation = Some(3);
        let obj = t.clone();
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::apply(CRONJOB, FIELD_MANAGER).fails_with(403, "Forbidden", quota),
            Step::apply(&status_path(), FIELD_MANAGER)
                .check(move |body| {
                    let m = assert_ready(body, "False", "ApplyFailed");
                    assert_eq!(
                        m,
                        format!("CronJob gatehouse/gatehouse-purge-acme: {quota}")
                    );
                    assert_eq!(body["status"]["observedGeneration"], 3);
                })
                .respond_obj(&obj),
        ]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin.clone(), MigrationState::Succeeded);
        let err = reconcile(Arc::new(t.clone()), ctx.clone())
            .await
            .unwrap_err();
        verifier.done().await;
        assert_eq!(err.category(), "ApplyFailed");
        assert_eq!(ctx.events.recorded().last().unwrap().reason, "ApplyFailed");
        let guard = DeserializeGuard(Ok(t));
        for _ in 0..3 {
            assert_eq!(
                controller::error_policy(&guard, &err, &ctx),
                Action::requeue(std::time::Duration::from_mins(5))
            );
        }
    }

    #[tokio::test]
    async fn a_cronjob_write_failing_with_a_server_error_backs_off() {
        let t = tenant(json!({})).finalized();
        // No status write after a 5xx.
        let (client, verifier) = ApiServerVerifier::run(vec![
            Step::apply(CRONJOB, FIELD_MANAGER).fails(500, "InternalError"),
        ]);
        let admin = FakeAdmin::new();
        let ctx = fixtures::context(client, admin, MigrationState::Succeeded);
        let err = reconcile(Arc::new(t.clone()), ctx.clone())
            .await
            .unwrap_err();
        verifier.done().await;
        assert_eq!(err.category(), "ApplyCronJobFailed");
        let guard = DeserializeGuard(Ok(t));
        for secs in [5, 10, 20] {
            assert_eq!(
                controller::error_policy(&guard, &err, &ctx),
                Action::requeue(std::time::Duration::from_secs(secs))
            );
        }
    }
}
