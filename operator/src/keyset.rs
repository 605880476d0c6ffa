//! The SigningKeySet controller: keeps a tenant's signing keys per algorithm through the
//! admin API. `source.generated`: `RotateSigningKeys` with mode `bootstrap` on the first
//! reconcile, `if_due` afterwards (the server rotates what its policy says is due),
//! `force` when the `gatehouse.dev/rotate` annotation changes (new keys publish now and
//! sign after the promotion delay) and `now` when `gatehouse.dev/rotate-now` changes (an
//! emergency: new keys sign at once, the previous ones leave the JWKS). `source.secretRef`: each
//! algorithm's PEM private key (`rs256.pem`, `es256.pem`, `eddsa.pem`) is imported instead
//! (idempotent: a key already imported is not imported again). The status lists the keys
//! and the next rotation; the controller requeues at the next key deadline.
//!
//! There is no finalizer: the keys belong to the tenant (deleting the IdentityTenant with
//! `deletionPolicy: Delete` removes them). Deleting a SigningKeySet only stops rotation.

use std::sync::Arc;
use std::time::Duration;

use crds::conditions::{self, Status};
use crds::identity_tenant::IdentityTenant;
use crds::signing_key_set::{
    KeySource, KeyState, SigningAlgorithm, SigningKeySet, SigningKeySetSpec, SigningKeySetStatus,
    SigningKeyStatus,
};
use crds::{ROTATE_ANNOTATION, ROTATE_NOW_ANNOTATION};
use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource as _, ResourceExt as _};

use crate::admin_client::{AdminError, AdminErrorKind, proto, resource_field_message};
use crate::context::Context;
use crate::controller::{self, ReconcileError, admin_reason, annotation, generation, with_ready};
use crate::scope::Scope;

/// Field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "gatehouse-operator/signingkeyset";
/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "signingkeyset";
/// Retired keys stay listed in the status this long after retiring.
const RETIRED_SHOWN_FOR: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);
/// Shortest requeue after a successful reconcile (a deadline that just passed).
const MIN_REQUEUE: Duration = Duration::from_secs(5);

/// Why reconciling a SigningKeySet failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("waiting for the schema migration: {0}")]
    MigrationPending(String),
    #[error("the schema migration failed: {0}")]
    MigrationFailed(String),
    #[error("{0}")]
    TenantNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    SecretNotFound(String),
    #[error("{0}")]
    SecretInvalid(String),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("failed to read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to rotate the signing keys: {0}")]
    RotateKeys(#[source] AdminError),
    #[error("failed to import a signing key: {0}")]
    ImportKey(#[source] AdminError),
    #[error("failed to list the signing keys: {0}")]
    ListKeys(#[source] AdminError),
    #[error("failed to update the status: {0}")]
    UpdateStatus(#[source] kube::Error),
    #[error("the object does not match the schema: {0}")]
    Malformed(String),
}

/// Result of this controller's steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Error::MigrationPending(_) => conditions::MIGRATION_PENDING,
            Error::MigrationFailed(_) => conditions::MIGRATION_FAILED,
            Error::TenantNotFound(_) => conditions::TENANT_NOT_FOUND,
            Error::Conflict(_) => conditions::CONFLICT,
            Error::SecretNotFound(_) => conditions::SECRET_NOT_FOUND,
            Error::SecretInvalid(_) => conditions::SECRET_INVALID,
            Error::InvalidSpec(_) | Error::Malformed(_) => conditions::INVALID_SPEC,
            Error::RotateKeys(e) | Error::ImportKey(e) | Error::ListKeys(e) => admin_reason(e),
            Error::Read { .. } => "ReadFailed",
            Error::UpdateStatus(_) => "UpdateStatusFailed",
        }
    }

    fn awaits_change(&self) -> bool {
        matches!(self, Error::InvalidSpec(_) | Error::Malformed(_))
    }

    fn condition_reason(&self) -> Option<&'static str> {
        match self {
            Error::Read { .. } | Error::UpdateStatus(_) => None,
            other => Some(other.category()),
        }
    }
}

controller::managed!(SigningKeySet, cluster);

controller::shared_errors!(gate, references);

// ---------------------------------------------------------------------------------------
// Pure steps

/// The key policy of the spec, as the admin API takes it.
pub fn key_policy(spec: &SigningKeySetSpec) -> proto::KeyPolicy {
    let secs = |v: i64| u64::try_from(v).unwrap_or(0);
    proto::KeyPolicy {
        algorithms: spec
            .algorithms
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        rsa_bits: spec.rsa_bits.bits(),
        rotation_interval_seconds: secs(i64::from(spec.rotation_interval_days) * 86_400),
        // Always sent: 0 is a valid overlap (retire at once), not "use the default".
        overlap_window_seconds: Some(secs(i64::from(spec.overlap_window_seconds))),
        // Unset or 0 (the schema default of earlier versions, stored in every object made
        // then): the server's default, which outlasts the JWKS max-age it sends.
        promotion_delay_seconds: spec
            .promotion_delay_seconds
            .filter(|&v| v > 0)
            .map(|v| secs(i64::from(v))),
    }
}

/// The rotation mode for this reconcile: `bootstrap` while there is no status, `now`
/// when the rotate-now annotation differs from the acknowledged one, `force` when the
/// rotate annotation does, `if_due` otherwise. Both changed at once: `now` (it covers the
/// other, and both are recorded).
///
/// No status means the first reconcile — or a status that was lost (a Velero restore, a
/// GitOps re-create, an old field manager): then the annotations on the object are taken
/// as acknowledged (they are recorded in the status written next), so losing the status
/// never rotates keys, let alone withdraws them.
pub fn rotation_mode(key_set: &SigningKeySet) -> proto::RotationMode {
    let status = key_set.status.clone().unwrap_or_default();
    let changed = |name, acknowledged: &Option<String>| {
        let requested = annotation(key_set, name);
        requested.is_some() && requested != *acknowledged
    };
    if status.observed_generation.is_none() {
        proto::RotationMode::Bootstrap
    } else if changed(ROTATE_NOW_ANNOTATION, &status.last_rotate_now_annotation) {
        proto::RotationMode::Now
    } else if changed(ROTATE_ANNOTATION, &status.last_rotation_annotation) {
        proto::RotationMode::Force
    } else {
        proto::RotationMode::IfDue
    }
}

/// The name of a rotation mode: in Events and logs, and in the request's `mode` for an
/// auth server older than its typed `rotation`.
pub fn mode_name(mode: proto::RotationMode) -> &'static str {
    match mode {
        proto::RotationMode::Bootstrap => "bootstrap",
        proto::RotationMode::IfDue => "if_due",
        proto::RotationMode::Force | proto::RotationMode::Unspecified => "force",
        proto::RotationMode::Now => "now",
    }
}

fn time(seconds: i64) -> Option<Time> {
    Timestamp::from_second(seconds).ok().map(Time)
}

fn parse_alg(alg: &str) -> Option<SigningAlgorithm> {
    SigningAlgorithm::ALL
        .into_iter()
        .find(|a| a.as_str() == alg)
}

fn parse_state(key: &proto::SigningKey) -> Option<KeyState> {
    match crate::admin_client::key_state(key) {
        proto::KeyState::Pending => Some(KeyState::Pending),
        proto::KeyState::Active => Some(KeyState::Active),
        proto::KeyState::Retiring => Some(KeyState::Retiring),
        proto::KeyState::Retired => Some(KeyState::Retired),
        proto::KeyState::Unspecified => None,
    }
}

/// The keys to show: all but those retired more than a day ago, by algorithm then
/// activation.
pub fn status_keys(keys: &[proto::SigningKey], now: Timestamp) -> Vec<SigningKeyStatus> {
    let mut out: Vec<SigningKeyStatus> = keys
        .iter()
        .filter_map(|k| {
            let state = parse_state(k)?;
            let retires_at = k.retires_at.and_then(time);
            if state == KeyState::Retired
                && retires_at
                    .as_ref()
                    .is_some_and(|t| t.0 + RETIRED_SHOWN_FOR < now)
            {
                return None;
            }
            Some(SigningKeyStatus {
                kid: k.kid.clone(),
                alg: parse_alg(&k.alg)?,
                state,
                activated_at: time(k.activates_at),
                retires_at,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (
            a.alg.as_str(),
            &a.activated_at.as_ref().map(|t| t.0),
            &a.kid,
        )
            .cmp(&(
                b.alg.as_str(),
                &b.activated_at.as_ref().map(|t| t.0),
                &b.kid,
            ))
    });
    out
}

/// When the earliest pending key starts signing.
pub fn next_activation(keys: &[SigningKeyStatus]) -> Option<Time> {
    keys.iter()
        .filter(|k| k.state == KeyState::Pending)
        .filter_map(|k| k.activated_at.clone())
        .min_by_key(|t| t.0)
}

/// The Ready message: the active keys, and the pending ones with when they sign.
pub fn ready_message(keys: &[SigningKeyStatus]) -> String {
    let of = |state| {
        keys.iter()
            .filter(move |k| k.state == state)
            .map(|k| (k.alg.as_str(), k.kid.as_str(), k.activated_at.as_ref()))
    };
    let active: Vec<String> = of(KeyState::Active)
        .map(|(alg, kid, _)| format!("{alg} {kid}"))
        .collect();
    let mut message = format!("active keys: {}", active.join(", "));
    let pending: Vec<String> = of(KeyState::Pending)
        .map(|(alg, kid, at)| match at {
            Some(t) => format!("{alg} {kid} from {}", t.0),
            None => format!("{alg} {kid}"),
        })
        .collect();
    if !pending.is_empty() {
        message.push_str("; published, signing later: ");
        message.push_str(&pending.join(", "));
    }
    message
}

/// When to look again: the earliest future deadline among the next rotation, a pending
/// key's activation and a retiring key's retirement, capped by `resync`.
pub fn requeue_after(key_set: &proto::SigningKeySet, now: Timestamp, resync: Duration) -> Duration {
    let deadlines = key_set
        .next_rotation
        .into_iter()
        .chain(
            key_set
                .keys
                .iter()
                .filter(|k| crate::admin_client::key_state(k) == proto::KeyState::Pending)
                .map(|k| k.activates_at),
        )
        .chain(
            key_set
                .keys
                .iter()
                .filter(|k| crate::admin_client::key_state(k) == proto::KeyState::Retiring)
                .filter_map(|k| k.retires_at),
        );
    let now_s = now.as_second();
    deadlines
        .map(|t| Duration::from_secs(u64::try_from(t.saturating_sub(now_s)).unwrap_or(0)))
        .min()
        .map_or(resync, |d| d.min(resync))
        .max(MIN_REQUEUE)
}

/// The other SigningKeySet that keeps `me`'s tenant, if any: an established one (Ready
/// once) wins over one that is not, then the older one.
pub fn conflicting_key_set<'a>(
    me: &SigningKeySet,
    peers: impl IntoIterator<Item = &'a SigningKeySet>,
) -> Option<&'a SigningKeySet> {
    let established = |k: &SigningKeySet| {
        k.status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
    };
    let age = |k: &SigningKeySet| (k.creation_timestamp().map(|t| t.0), k.name_any());
    let me_established = established(me);
    peers
        .into_iter()
        .filter(|p| p.uid() != me.uid() && p.spec.tenant_ref == me.spec.tenant_ref)
        .find(|p| {
            let p_established = established(p);
            (p_established && !me_established)
                || (p_established == me_established && age(p) < age(me))
        })
}

fn admin_error(e: AdminError, wrap: fn(AdminError) -> Error) -> Error {
    match e.kind {
        AdminErrorKind::InvalidArgument => Error::InvalidSpec(format!(
            "the auth server rejected the key policy: {}",
            resource_field_message(
                &e.message,
                &[
                    ("policy.algorithms", "spec.algorithms"),
                    ("policy.rsa_bits", "spec.rsaBits"),
                    (
                        "policy.rotation_interval_seconds",
                        "spec.rotationIntervalDays"
                    ),
                    ("policy.overlap_window_seconds", "spec.overlapWindowSeconds"),
                    (
                        "policy.promotion_delay_seconds",
                        "spec.promotionDelaySeconds"
                    ),
                ],
            )
        )),
        AdminErrorKind::NotFound => Error::TenantNotFound(format!(
            "spec.tenantRef: the tenant is not registered with the auth server yet ({})",
            e.message
        )),
        _ => wrap(e),
    }
}

// ---------------------------------------------------------------------------------------
// Reconcile

/// Reconciles one SigningKeySet.
pub async fn reconcile(key_set: Arc<SigningKeySet>, ctx: Arc<Context>) -> Result<Action> {
    let result = apply_steps(&key_set, &ctx).await;
    controller::reported(&*key_set, &ctx, result).await
}

async fn peers(ctx: &Context) -> Result<Vec<SigningKeySet>> {
    // Cluster-scoped: one cache (and one cluster-wide LIST without it) in every mode.
    controller::all_objects(
        ctx.keyset_store.get().map(std::slice::from_ref),
        &[Api::all(ctx.client.clone())],
        &ctx.config.scope.selector(),
        |_| true,
    )
    .await
    .map_err(|source| Error::Read {
        what: "SigningKeySets".to_owned(),
        source,
    })
}

/// Everything one reconcile reads, from the controllers' caches where they run and
/// otherwise from the API server.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Every SigningKeySet of this instance (a tenant has one).
    pub peers: Vec<SigningKeySet>,
    /// `spec.source.secretRef`'s Secret, as far as the operator may read it.
    pub key_secret: KeySecret,
}

/// What became of `spec.source.secretRef`'s Secret.
#[derive(Debug, Clone)]
pub enum KeySecret {
    /// The keys are generated: nothing to read.
    NotReferenced,
    /// In a namespace the operator does not watch: not read, because the namespaced RBAC
    /// would refuse the GET until the install changes.
    Unwatched,
    Missing,
    Found(Box<Secret>),
}

/// What must change, decided from [`Observed`] alone.
#[derive(Clone, PartialEq)]
pub struct Plan {
    pub policy: proto::KeyPolicy,
    pub keys: KeyPlan,
}

/// How the tenant's keys come about.
#[derive(Clone, PartialEq)]
pub enum KeyPlan {
    /// `RotateSigningKeys` in this mode.
    Rotate(proto::RotationMode),
    /// Import each algorithm's PEM from the Secret (every one present and text: a
    /// half-filled Secret imports nothing), then list the keys.
    Import(Vec<(SigningAlgorithm, String)>),
}

// By hand: the derived Debug would print the private keys.
impl std::fmt::Debug for KeyPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyPlan::Rotate(mode) => f.debug_tuple("Rotate").field(mode).finish(),
            KeyPlan::Import(pems) => f
                .debug_tuple("Import")
                .field(&pems.iter().map(|(alg, _)| alg.as_str()).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("policy", &self.policy)
            .field("keys", &self.keys)
            .finish()
    }
}

/// Decides what the reconcile of `key_set` must do, or why it cannot: another key set
/// keeps the tenant, the key Secret is out of reach, missing or incomplete. Pure:
/// unit-tested without an API server.
pub fn plan(key_set: &SigningKeySet, observed: &Observed, scope: &Scope) -> Result<Plan> {
    let tenant = &key_set.spec.tenant_ref;
    if let Some(owner) = conflicting_key_set(key_set, &observed.peers) {
        return Err(Error::Conflict(format!(
            "the keys of tenant {tenant} are managed by SigningKeySet {}; a tenant has one key set",
            owner.name_any()
        )));
    }
    let keys = match &key_set.spec.source {
        KeySource::Generated {} => KeyPlan::Rotate(rotation_mode(key_set)),
        KeySource::SecretRef { name, namespace } => {
            KeyPlan::Import(pems(key_set, &observed.key_secret, namespace, name, scope)?)
        }
    };
    Ok(Plan {
        policy: key_policy(&key_set.spec),
        keys,
    })
}

/// Each algorithm's PEM from the key Secret, checked all before any is imported.
fn pems(
    key_set: &SigningKeySet,
    secret: &KeySecret,
    namespace: &str,
    name: &str,
    scope: &Scope,
) -> Result<Vec<(SigningAlgorithm, String)>> {
    let secret = match secret {
        KeySecret::Found(secret) => secret,
        KeySecret::Unwatched | KeySecret::NotReferenced => {
            return Err(Error::InvalidSpec(format!(
                "spec.source.secretRef.namespace: the operator reads Secrets only in the \
                 namespaces it watches ({}; --watch-namespaces), not in {namespace}",
                scope.namespaces().join(", ")
            )));
        }
        KeySecret::Missing => {
            return Err(Error::SecretNotFound(format!(
                "spec.source.secretRef: Secret {namespace}/{name} does not exist (yet); waiting for it"
            )));
        }
    };
    let data = secret.data.clone().unwrap_or_default();
    key_set
        .spec
        .algorithms
        .iter()
        .map(|alg| {
            let key = alg.secret_key();
            let bytes = data.get(key).ok_or_else(|| {
                Error::SecretInvalid(format!(
                    "spec.source.secretRef: Secret {namespace}/{name} has no key {key} for {}",
                    alg.as_str()
                ))
            })?;
            let pem = String::from_utf8(bytes.0.clone()).map_err(|_| {
                Error::SecretInvalid(format!(
                    "spec.source.secretRef: key {key} of Secret {namespace}/{name} is not a PEM text"
                ))
            })?;
            Ok((*alg, pem))
        })
        .collect()
}

/// The status after a successful reconcile that left the tenant with `keys`.
pub fn ready_status(
    key_set: &SigningKeySet,
    keys: &proto::SigningKeySet,
    now: Timestamp,
) -> SigningKeySetStatus {
    let current = key_set.status.clone().unwrap_or_default();
    let shown = status_keys(&keys.keys, now);
    SigningKeySetStatus {
        observed_generation: generation(key_set),
        conditions: with_ready(
            &current.conditions,
            Status::True,
            conditions::RECONCILED,
            ready_message(&shown),
            generation(key_set),
            Time(now),
        ),
        next_activation: next_activation(&shown),
        keys: shown,
        next_rotation: keys.next_rotation.and_then(time),
        last_rotation_annotation: annotation(key_set, ROTATE_ANNOTATION),
        last_rotate_now_annotation: annotation(key_set, ROTATE_NOW_ANNOTATION),
    }
}

/// Reads what [`plan`] decides on. A missing tenant ends the reconcile here: nothing
/// else can be judged without it.
async fn observe(key_set: &SigningKeySet, ctx: &Context) -> Result<Observed> {
    controller::referenced_tenant(ctx, &key_set.spec.tenant_ref).await?;
    let peers = peers(ctx).await?;
    let key_secret = match &key_set.spec.source {
        KeySource::Generated {} => KeySecret::NotReferenced,
        KeySource::SecretRef { namespace, .. } if !ctx.config.scope.watches(namespace) => {
            KeySecret::Unwatched
        }
        KeySource::SecretRef { name, namespace } => controller::secret(ctx, namespace, name)
            .await?
            .map_or(KeySecret::Missing, |s| KeySecret::Found(Box::new(s))),
    };
    Ok(Observed { peers, key_secret })
}

/// migration gate → observe → plan → rotate or import → status.
async fn apply_steps(key_set: &SigningKeySet, ctx: &Context) -> Result<Action> {
    ctx.migration.borrow().gate()?;
    let observed = observe(key_set, ctx).await?;
    let plan = plan(key_set, &observed, &ctx.config.scope)?;
    let keys = match plan.keys {
        KeyPlan::Rotate(mode) => rotate(key_set, ctx, mode, plan.policy).await?,
        KeyPlan::Import(pems) => {
            import_keys(key_set, ctx, pems, &plan.policy).await?;
            ctx.admin
                .list_signing_keys(proto::ListSigningKeysRequest {
                    tenant_id: key_set.spec.tenant_ref.clone(),
                    policy: Some(plan.policy),
                })
                .await
                .map_err(|e| admin_error(e, Error::ListKeys))?
        }
    };
    let now = ctx.now();
    controller::save_status(key_set, ctx, &ready_status(key_set, &keys, now))
        .await
        .map_err(Error::UpdateStatus)?;
    Ok(Action::requeue(requeue_after(
        &keys,
        now,
        ctx.config.resync,
    )))
}

/// `RotateSigningKeys` in `mode`; the resulting key set.
async fn rotate(
    key_set: &SigningKeySet,
    ctx: &Context,
    mode: proto::RotationMode,
    policy: proto::KeyPolicy,
) -> Result<proto::SigningKeySet> {
    let tenant = &key_set.spec.tenant_ref;
    let object_ref = key_set.object_ref(&());
    let response = ctx
        .admin
        .rotate_signing_keys(proto::RotateSigningKeysRequest {
            tenant_id: tenant.clone(),
            rotation: mode.into(),
            mode: mode_name(mode).to_owned(),
            policy: Some(policy),
        })
        .await
        .map_err(|e| admin_error(e, Error::RotateKeys))?;
    if let Some((kind, reason, note)) = rotation_event(mode, &response.created) {
        tracing::info!(%tenant, mode = mode_name(mode), reason, "signing keys created");
        ctx.events.publish(&object_ref, kind, reason, note).await;
    }
    Ok(response.key_set.unwrap_or_default())
}

/// The Event announcing the keys a rotation in `mode` `created`, if it created any.
pub fn rotation_event(
    mode: proto::RotationMode,
    created: &[proto::SigningKey],
) -> Option<(EventType, &'static str, String)> {
    if created.is_empty() {
        return None;
    }
    let kids: Vec<String> = created
        .iter()
        .map(|k| format!("{} ({})", k.kid, k.alg))
        .collect();
    let (kind, reason, note) = match mode {
        proto::RotationMode::Bootstrap => (EventType::Normal, "KeysCreated", String::new()),
        // Everyone holding a token signed before has to get a new one: a Warning.
        proto::RotationMode::Now => (
            EventType::Warning,
            "KeysRotatedNow",
            "; they sign now and the previous keys left the JWKS".to_owned(),
        ),
        _ => (
            EventType::Normal,
            "KeysRotated",
            created
                .iter()
                .map(|k| k.activates_at)
                .min()
                .and_then(time)
                .map(|t| format!("; published now, signing from {}", t.0))
                .unwrap_or_default(),
        ),
    };
    Some((
        kind,
        reason,
        format!(
            "new signing keys ({}): {}{note}",
            mode_name(mode),
            kids.join(", ")
        ),
    ))
}

/// Imports each algorithm's PEM (a key already present is not imported again, so this is
/// idempotent; a new PEM becomes the algorithm's next key).
async fn import_keys(
    key_set: &SigningKeySet,
    ctx: &Context,
    pems: Vec<(SigningAlgorithm, String)>,
    policy: &proto::KeyPolicy,
) -> Result<()> {
    let source = match &key_set.spec.source {
        KeySource::SecretRef { name, namespace } => format!("{namespace}/{name}"),
        KeySource::Generated {} => String::new(),
    };
    for (alg, pem) in pems {
        let response = ctx
            .admin
            .import_signing_key(proto::ImportSigningKeyRequest {
                tenant_id: key_set.spec.tenant_ref.clone(),
                alg: alg.as_str().to_owned(),
                private_key_pem: pem,
                policy: Some(policy.clone()),
            })
            .await
            .map_err(|e| match e.kind {
                AdminErrorKind::InvalidArgument => Error::SecretInvalid(format!(
                    "spec.source.secretRef: key {} of Secret {source}: {}",
                    alg.secret_key(),
                    e.message.trim_start_matches("private_key_pem: ")
                )),
                _ => admin_error(e, Error::ImportKey),
            })?;
        if response.imported {
            tracing::info!(tenant = %key_set.spec.tenant_ref, kid = %response.kid, alg = alg.as_str(), "signing key imported");
            ctx.events
                .publish(
                    &key_set.object_ref(&()),
                    EventType::Normal,
                    "KeyImported",
                    format!(
                        "{} key {} imported from Secret {source}",
                        alg.as_str(),
                        response.kid
                    ),
                )
                .await;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Controller

async fn reconcile_guarded(
    guard: Arc<DeserializeGuard<SigningKeySet>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    controller::guarded(guard, ctx, reconcile).await
}

/// Runs the SigningKeySet controller until `shutdown` resolves. A change to an
/// IdentityTenant reconciles its key set (a key set waiting for its tenant proceeds).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // SigningKeySets are cluster-scoped: one controller also with --watch-namespaces.
    let key_sets: Api<DeserializeGuard<SigningKeySet>> = Api::all(ctx.client.clone());
    let controller = Controller::new(key_sets, ctx.config.scope.watcher_config())
        .with_config(controller::runtime_config(&ctx.config));
    let store = controller.store();
    let _ = ctx.keyset_store.set(store.clone());
    let released = controller::gate_release(ctx.migration.clone(), store.clone());
    let tenants: Api<DeserializeGuard<IdentityTenant>> = Api::all(ctx.client.clone());
    controller
        .watches(tenants, ctx.config.scope.watcher_config(), move |tenant| {
            let name = tenant.name_any();
            store
                .state()
                .iter()
                .filter(|k| k.0.as_ref().is_ok_and(|k| k.spec.tenant_ref == name))
                .map(|k| ObjectRef::from_obj(&**k))
                .collect::<Vec<_>>()
        })
        .reconcile_on(released)
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
mod tests;
