//! The OidcClient controller: registers the client with its tenant (`UpsertClient`) when
//! the tenant allows the client's namespace, and keeps the credentials Secret
//! (`secretName`, default `<name>-oidc`: `CLIENT_ID`, `CLIENT_SECRET`, `ISSUER_URL`) in
//! the client's namespace, owned by the OidcClient.
//!
//! The auth server stores only a digest of a client secret and returns a generated one
//! exactly once, so the generated Secret is the authoritative copy of the plaintext:
//! every reconcile supplies its `CLIENT_SECRET` back (which also undoes changes made to
//! the client through the admin API), and a Secret that was deleted or lost its value is
//! restored by rotating (the previous secret stays valid for the overlap). With
//! `secretRef`, the referenced Secret's value is supplied instead and never replaced.
//! The resync of a client nothing changed about names its secret by fingerprint instead
//! of reading the Secret ([`KnownSecrets`]).

mod known_secret;

use std::collections::BTreeMap;
use std::sync::Arc;

use crds::conditions::{self, Status};
use crds::identity_tenant::IdentityTenant;
use crds::oidc_client::{ClientType, OidcClient, OidcClientStatus};
use crds::{DeletionPolicy, ROTATE_SECRET_ANNOTATION};
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt as _, watcher};
use kube::{Api, Resource as _, ResourceExt as _};

use crate::admin_client::{AdminError, AdminErrorKind, proto, resource_field_message};
use crate::authserver_pod;
use crate::context::Context;
use crate::controller::{self, ReconcileError, admin_reason, annotation, generation, with_ready};
use crate::scope::Scope;
use crate::settled::Fingerprint;
pub use known_secret::{Known, KnownSecrets};

/// Field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "gatehouse-operator/oidcclient";
/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "oidcclient";
/// Keys of the credentials Secret.
pub const CLIENT_ID_KEY: &str = "CLIENT_ID";
pub const CLIENT_SECRET_KEY: &str = "CLIENT_SECRET";
pub const ISSUER_URL_KEY: &str = "ISSUER_URL";
/// Label on a credentials Secret naming its OidcClient.
pub const CLIENT_LABEL: &str = "gatehouse.dev/oidcclient";
/// `app.kubernetes.io/component` of credentials Secrets.
const SECRET_COMPONENT: &str = "client-credentials";
/// The auth server's minimum length of a supplied secret.
const MIN_SECRET_LEN: usize = 32;

/// Why reconciling an OidcClient failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("waiting for the schema migration: {0}")]
    MigrationPending(String),
    #[error("the schema migration failed: {0}")]
    MigrationFailed(String),
    #[error("{0}")]
    TenantNotFound(String),
    #[error("{0}")]
    NamespaceNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    SecretNotFound(String),
    #[error("{0}")]
    SecretInvalid(String),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{0}")]
    ClientIdRetired(String),
    #[error("failed to read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to register the client with the auth server: {0}")]
    UpsertClient(#[source] AdminError),
    #[error("failed to rotate the client secret: {0}")]
    RotateSecret(#[source] AdminError),
    #[error("failed to apply Secret {name}: {source}")]
    ApplySecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The API server rejected the write for good (see [`controller::rejection`]).
    #[error("{object}: {message}")]
    ApplyRejected { object: String, message: String },
    #[error("failed to update the status: {0}")]
    UpdateStatus(#[source] kube::Error),
    #[error("failed to delete the client from the auth server: {0}")]
    DeleteClient(#[source] AdminError),
    #[error("failed to update the finalizer: {0}")]
    Finalizer(String),
    #[error("failed to record the failed cleanup on the object: {0}")]
    RecordCleanupFailure(#[source] kube::Error),
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
            Error::NamespaceNotAllowed(_) => conditions::NAMESPACE_NOT_ALLOWED,
            Error::Conflict(_) => conditions::CONFLICT,
            Error::SecretNotFound(_) => conditions::SECRET_NOT_FOUND,
            Error::SecretInvalid(_) => conditions::SECRET_INVALID,
            Error::InvalidSpec(_) | Error::Malformed(_) => conditions::INVALID_SPEC,
            Error::ClientIdRetired(_) => conditions::CLIENT_ID_RETIRED,
            Error::UpsertClient(e) | Error::RotateSecret(e) | Error::DeleteClient(e) => {
                admin_reason(e)
            }
            Error::Read { .. } => "ReadFailed",
            Error::ApplySecret { .. } => "ApplySecretFailed",
            Error::ApplyRejected { .. } => conditions::APPLY_FAILED,
            Error::UpdateStatus(_) => "UpdateStatusFailed",
            Error::Finalizer(_) | Error::RecordCleanupFailure(_) => "FinalizerFailed",
        }
    }

    fn awaits_change(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec(_) | Error::Malformed(_) | Error::ClientIdRetired(_)
        )
    }

    fn retries_at_resync(&self) -> bool {
        matches!(self, Error::ApplyRejected { .. })
    }

    fn condition_reason(&self) -> Option<&'static str> {
        match self {
            Error::DeleteClient(_) => Some(conditions::DELETING),
            Error::Read { .. }
            | Error::ApplySecret { .. }
            | Error::UpdateStatus(_)
            | Error::Finalizer(_)
            | Error::RecordCleanupFailure(_) => None,
            other => Some(other.category()),
        }
    }
}

controller::managed!(OidcClient, namespaced);

controller::shared_errors!(gate, references);

// ---------------------------------------------------------------------------------------
// Pure steps: validate and build

/// Whether `labels` satisfy `selector` (Kubernetes label-selector semantics). An unset
/// selector selects nothing; `{}` selects everything.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator this code does not know must not widen access.
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// Whether `client` is the registered owner of client id `id`: it reported `Ready=True`
/// for that id.
fn established(client: &OidcClient, id: &str) -> bool {
    client.status.as_ref().is_some_and(|s| {
        s.client_id.as_deref() == Some(id) && conditions::is_true(&s.conditions, conditions::READY)
    })
}

fn age_key(client: &OidcClient) -> (Option<jiff::Timestamp>, String, String) {
    (
        client.creation_timestamp().map(|t| t.0),
        client.namespace().unwrap_or_default(),
        client.name_any(),
    )
}

/// The other OidcClient that keeps `me`'s client id in `me`'s tenant, if any: an
/// established claimant wins over one that is not; between equals the older one wins
/// (then namespace/name, so the answer is the same from both sides).
pub fn conflicting_owner<'a>(
    me: &OidcClient,
    peers: impl IntoIterator<Item = &'a OidcClient>,
) -> Option<&'a OidcClient> {
    let id = me.client_id();
    let me_established = established(me, &id);
    peers
        .into_iter()
        .filter(|p| {
            p.uid() != me.uid() && p.spec.tenant_ref == me.spec.tenant_ref && p.client_id() == id
        })
        .find(|p| {
            let p_established = established(p, &id);
            (p_established && !me_established)
                || (p_established == me_established && age_key(p) < age_key(me))
        })
}

/// The registration the spec asks for.
pub fn client_spec(client: &OidcClient) -> proto::ClientSpec {
    let s = &client.spec;
    let seconds = |v: Option<i32>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
    proto::ClientSpec {
        client_id: client.client_id(),
        client_type: match s.client_type {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
        .to_owned(),
        grant_types: s
            .grant_types
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        redirect_uris: s.redirect_uris.clone(),
        post_logout_redirect_uris: s.post_logout_redirect_uris.clone(),
        scopes: s.scopes.clone(),
        audiences: s.audiences.clone(),
        token_endpoint_auth_method: s.auth_method().as_str().to_owned(),
        jwks_uri: s.jwks_uri.clone(),
        jwks_json: None,
        access_token_lifetime_seconds: seconds(s.access_token_lifetime_seconds),
        refresh_token_lifetime_seconds: seconds(s.refresh_token_lifetime_seconds),
        subject_type: s.subject_type.as_str().to_owned(),
        dpop_bound_access_tokens: s.dpop_bound_access_tokens,
        allowed_cors_origins: s.allowed_cors_origins.clone(),
        first_party: s.first_party,
        introspect_any_token: s.introspect_any_token,
        // Not in the CRD: empty asks for the server default.
        access_token_alg: String::new(),
        id_token_alg: s
            .id_token_signing_alg
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        refresh_without_offline_access: s.refresh_without_offline_access,
        sector_identifier_uri: s.sector_identifier_uri.clone(),
        require_pushed_authorization_requests: s.require_pushed_authorization_requests,
    }
}

/// Checks against the tenant what the schema cannot: the subject type must be offered,
/// and only namespaces the tenant trusts may register first-party (consent-skipping)
/// clients.
pub fn validate(client: &OidcClient, tenant: &IdentityTenant) -> Result<()> {
    let namespace = client.namespace().unwrap_or_default();
    if client.spec.first_party && !tenant.spec.first_party_namespaces.contains(&namespace) {
        return Err(Error::InvalidSpec(format!(
            "spec.firstParty: namespace {namespace} is not trusted for first-party clients by \
             IdentityTenant {} (its spec.firstPartyNamespaces); first-party clients skip the \
             consent page",
            tenant.name_any()
        )));
    }
    if !tenant
        .spec
        .subject_types
        .contains(&client.spec.subject_type)
    {
        return Err(Error::InvalidSpec(format!(
            "spec.subjectType: {} is not offered by IdentityTenant {} (its spec.subjectTypes)",
            client.spec.subject_type.as_str(),
            tenant.name_any()
        )));
    }
    Ok(())
}

/// A usable secret value: UTF-8 of at least [`MIN_SECRET_LEN`] characters.
fn secret_value(bytes: &[u8]) -> Result<String, String> {
    let value = std::str::from_utf8(bytes)
        .map_err(|_| "is not UTF-8".to_owned())?
        .trim_end_matches(['\r', '\n'])
        .to_owned();
    if value.chars().count() < MIN_SECRET_LEN {
        return Err(format!("is shorter than {MIN_SECRET_LEN} characters"));
    }
    Ok(value)
}

/// The credentials Secret of `client`.
pub fn build_secret(
    client: &OidcClient,
    issuer: &str,
    client_secret: Option<&str>,
    scope: &Scope,
) -> Result<Secret> {
    let owner = client
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("the object has no uid yet".to_owned()))?;
    let mut data = BTreeMap::from([
        (
            CLIENT_ID_KEY.to_owned(),
            ByteString(client.client_id().into_bytes()),
        ),
        (
            ISSUER_URL_KEY.to_owned(),
            ByteString(issuer.as_bytes().to_vec()),
        ),
    ]);
    if let Some(s) = client_secret {
        data.insert(
            CLIENT_SECRET_KEY.to_owned(),
            ByteString(s.as_bytes().to_vec()),
        );
    }
    let mut labels = authserver_pod::labels(SECRET_COMPONENT);
    labels.insert(CLIENT_LABEL.to_owned(), client_label(&client.name_any()));
    // The instance's `.owns()` watch selects on it.
    labels.extend(scope.labels());
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(client.secret_name()),
            namespace: client.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    })
}

/// The value of the [`CLIENT_LABEL`] label: the OidcClient's name, or for a name over the
/// 63 characters a label value may have, its first 54 and a hash of the whole.
pub fn client_label(name: &str) -> String {
    authserver_pod::bounded_name("", name, 63)
}

/// Whether the stored Secret already is `desired` as far as this controller owns it.
fn secret_up_to_date(existing: &Secret, desired: &Secret) -> bool {
    let empty = BTreeMap::new();
    let have = existing.data.as_ref().unwrap_or(&empty);
    let want = desired.data.as_ref().unwrap_or(&empty);
    let data_ok = want.iter().all(|(k, v)| have.get(k) == Some(v))
        && (want.contains_key(CLIENT_SECRET_KEY) || !have.contains_key(CLIENT_SECRET_KEY));
    let labels_ok = desired
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| existing.labels().get(k) == Some(v));
    let owner_ok = existing.owner_references().iter().any(|o| {
        o.controller == Some(true) && desired.owner_references().iter().any(|d| d.uid == o.uid)
    });
    data_ok && labels_ok && owner_ok
}

/// Whether `secret` belongs to `client`: controlled by it, or carrying its labels and no
/// other controller (someone removed the owner reference; the next apply restores it).
fn owned_by(secret: &Secret, client: &OidcClient) -> bool {
    let uid = client.uid();
    let controller = secret
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true));
    if let Some(o) = controller {
        Some(&o.uid) == uid.as_ref()
    } else {
        let labels = secret.labels();
        labels.get(authserver_pod::MANAGED_BY.0).map(String::as_str)
            == Some(authserver_pod::MANAGED_BY.1)
            && labels.get(CLIENT_LABEL) == Some(&client_label(&client.name_any()))
    }
}

// ---------------------------------------------------------------------------------------
// Reconcile

/// Reconciles one OidcClient: finalizer first, then apply or cleanup.
pub async fn reconcile(client: Arc<OidcClient>, ctx: Arc<Context>) -> Result<Action> {
    controller::with_finalizer(client, ctx, apply, cleanup, Error::Finalizer).await
}

/// Runs the steps, unless nothing they read has changed since the last successful run and
/// the resync is not due yet ([`crate::settled`]): a trigger from the controller's own
/// writes then costs no request.
async fn apply(client: Arc<OidcClient>, ctx: Arc<Context>) -> Result<Action> {
    let uid = client.uid().unwrap_or_default();
    // With the migration gate closed the steps report it: never skipped.
    let inputs = ctx
        .gate_open()
        .then(|| Inputs::cached(&client, &ctx))
        .flatten();
    // A due resync with nothing changed and the Secret as the last reconcile left it.
    let known = inputs
        .as_ref()
        .filter(|i| ctx.settled.same(&uid, Fingerprint::of(i)))
        .and_then(|i| ctx.known_secrets.get(&uid, i.credentials.as_deref()));
    let steps = Box::pin(apply_steps(&client, &ctx, known));
    // The Secret as this reconcile left it: its own write must not count as a change.
    let own = |inputs: &mut Inputs, applied: &Applied| {
        inputs.credentials.clone_from(&applied.credentials);
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
            match &result {
                Ok(applied) => ctx.known_secrets.record(
                    &uid,
                    applied.credentials.clone(),
                    applied.fingerprint.clone(),
                ),
                Err(_) => ctx.known_secrets.forget(&uid),
            }
            let result = result.map(|_| Action::requeue(ctx.config.resync));
            controller::reported(&*client, &ctx, result).await
        }
    }
}

/// What a successful reconcile left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The credentials Secret's `resourceVersion`.
    pub credentials: Option<String>,
    /// The fingerprint of the generated secret the Secret holds (see [`KnownSecrets`]):
    /// `None` when there is none, it comes from `secretRef`, or the auth server gave none.
    pub fingerprint: Option<String>,
}

/// What a reconcile of a client reads from the controllers' caches, fingerprinted to tell
/// a trigger that changes nothing (the controller's own status or Secret write coming
/// back) from a change ([`crate::settled`]). Versions stand for whole objects: the
/// tenant's, the credentials Secret's, `spec.secretRef`'s Secret's.
#[derive(Debug, Clone, Hash)]
pub struct Inputs {
    pub generation: Option<i64>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
    pub tenant: Option<String>,
    pub namespace_labels: Option<BTreeMap<String, String>>,
    pub credentials: Option<String>,
    pub referenced: Option<String>,
}

impl Inputs {
    /// From the caches; `None` when the controllers' caches are not running (tests that
    /// call the reconciler directly), so every reconcile runs in full.
    pub fn cached(client: &OidcClient, ctx: &Context) -> Option<Self> {
        let secrets = ctx.secret_meta_store.get()?;
        let namespaces = ctx.namespace_store.get()?;
        let tenants = ctx.tenant_store.get()?;
        let namespace = client.namespace()?;
        let secret_version = |name: &str| {
            let key = ObjectRef::new(name).within(&namespace);
            secrets
                .iter()
                .find_map(|store| store.get(&key))
                .and_then(|s| s.metadata.resource_version.clone())
        };
        Some(Self {
            generation: client.meta().generation,
            annotations: client.annotations().clone(),
            labels: client.labels().clone(),
            finalizers: client.finalizers().to_vec(),
            deleting: controller::is_deleting(client),
            tenant: tenants
                .get(&ObjectRef::new(&client.spec.tenant_ref))
                .and_then(|t| t.meta().resource_version.clone()),
            namespace_labels: namespaces
                .iter()
                .find_map(|store| store.get(&ObjectRef::new(&namespace)))
                .map(|ns| ns.labels().clone()),
            credentials: secret_version(&client.secret_name()),
            referenced: client
                .spec
                .secret_ref
                .as_ref()
                .and_then(|r| secret_version(&r.name)),
        })
    }
}

/// Where the client secret sent to the auth server comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlan {
    /// The client authenticates without a shared secret (public, private_key_jwt).
    NoSecret,
    /// `spec.secretRef`'s value.
    Referenced(String),
    /// The plaintext kept in the generated Secret.
    Stored(String),
    /// The generated Secret is missing or lost its value.
    Generate,
}

/// Everything one reconcile reads, from the controllers' caches where they run and
/// otherwise from the API server.
#[derive(Debug, Clone)]
pub struct Observed {
    pub tenant: IdentityTenant,
    /// Labels of the client's namespace (`allowedNamespaces` selects on them).
    pub namespace_labels: BTreeMap<String, String>,
    /// The OidcClients of this instance in the watched namespaces that claim the same
    /// client id in the same tenant (see `peers`).
    pub peers: Vec<OidcClient>,
    /// The credentials Secret as it is now.
    pub credentials: Option<Secret>,
    /// `spec.secretRef`'s Secret: `None` without a reference (or when the client uses no
    /// shared secret), `Some(None)` when it does not exist.
    pub referenced: Option<Option<Secret>>,
}

/// What must change, decided from [`Observed`] alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The registration to upsert.
    pub spec: proto::ClientSpec,
    /// Recorded on the registration as its owner (`OidcClient <namespace>/<name>`), so
    /// the Management API refuses to change it and names this object instead.
    pub managed_by: String,
    /// `ISSUER_URL` of the credentials Secret.
    pub issuer: String,
    pub secret: SecretPlan,
    /// The supplied secret (`secretRef`) differs from the current one by request or
    /// because the referenced Secret changed: rotate to it before the upsert, so the
    /// previous one stays valid for the overlap.
    pub rotate_to_supplied: bool,
    /// The rotation annotation changed since it was last acted on.
    pub rotation_requested: bool,
    /// Seconds the previous secret stays valid after a rotation.
    pub overlap_seconds: u64,
    /// The annotation value this reconcile acknowledges in the status.
    pub rotation_annotation: Option<String>,
    /// `resourceVersion` of the referenced Secret whose value is applied.
    pub referenced_version: Option<String>,
}

/// What to do about the client secret once the auth server answered the upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretStep {
    /// Write this value (or none) as it is.
    Keep(Option<String>),
    /// The upsert generated this secret for a new client (or one that had none).
    Issued(String),
    /// The server has a secret whose plaintext is gone (the Secret was deleted or edited):
    /// issue a new one; the lost one keeps working for the overlap.
    RestoreLost,
    /// The rotation annotation asks for a new generated secret.
    Rotate,
}

/// Decides what the reconcile of `client` must do, or why it cannot: the namespace the
/// tenant does not allow, a client id or Secret name someone else holds, a spec the
/// tenant refuses, a missing or unusable referenced Secret. Pure: unit-tested without an
/// API server.
pub fn plan(client: &OidcClient, observed: &Observed) -> Result<Plan> {
    let namespace = client.namespace().unwrap_or_default();
    let tenant_name = &client.spec.tenant_ref;
    if !selector_matches(
        observed.tenant.spec.allowed_namespaces.as_ref(),
        &observed.namespace_labels,
    ) {
        return Err(Error::NamespaceNotAllowed(format!(
            "IdentityTenant {tenant_name} does not allow clients from namespace {namespace}: \
             its spec.allowedNamespaces does not select the namespace's labels; nothing was registered"
        )));
    }
    if let Some(owner) = conflicting_owner(client, &observed.peers) {
        return Err(Error::Conflict(format!(
            "client id {} in tenant {tenant_name} belongs to OidcClient {}/{}; \
             set spec.clientId to another id",
            client.client_id(),
            owner.namespace().unwrap_or_default(),
            owner.name_any()
        )));
    }
    validate(client, &observed.tenant)?;
    let secret_name = client.secret_name();
    if let Some(s) = &observed.credentials
        && !owned_by(s, client)
    {
        return Err(Error::Conflict(format!(
            "Secret {namespace}/{secret_name} exists and is not owned by this OidcClient; \
             delete it or set spec.secretName to another name"
        )));
    }
    let (secret, referenced_version) = secret_plan(client, observed)?;

    let rotation = annotation(client, ROTATE_SECRET_ANNOTATION);
    let status = client.status.clone().unwrap_or_default();
    // Without a status (first reconcile, or one lost to a Velero restore or a GitOps
    // re-create) the annotation on the object counts as acknowledged — it is recorded in
    // the status written at the end — so losing the status never rotates the secret.
    let rotation_requested = status.observed_generation.is_some()
        && rotation.is_some()
        && rotation != status.last_secret_rotation_annotation;
    // The referenced Secret changed since its value was applied (the watch on it brings
    // this reconcile within seconds): same as a rotation with that value. Unknown before
    // (first reconcile, lost status): the value is applied as it is, nothing rotated.
    let reference_changed = status.observed_generation.is_some()
        && status.secret_ref_version.is_some()
        && referenced_version.is_some()
        && status.secret_ref_version != referenced_version;
    Ok(Plan {
        spec: client_spec(client),
        managed_by: format!("OidcClient {namespace}/{}", client.name_any()),
        issuer: observed.tenant.spec.issuer.trim_end_matches('/').to_owned(),
        rotate_to_supplied: matches!(secret, SecretPlan::Referenced(_))
            && (rotation_requested || reference_changed),
        rotation_requested,
        secret,
        overlap_seconds: u64::try_from(client.spec.secret_rotation_overlap_seconds).unwrap_or(0),
        rotation_annotation: rotation,
        referenced_version,
    })
}

/// The secret source and, with `secretRef`, the referenced Secret's `resourceVersion`.
fn secret_plan(client: &OidcClient, observed: &Observed) -> Result<(SecretPlan, Option<String>)> {
    let namespace = client.namespace().unwrap_or_default();
    if !client.spec.auth_method().uses_secret() {
        return Ok((SecretPlan::NoSecret, None));
    }
    let Some(r) = &client.spec.secret_ref else {
        let stored = observed
            .credentials
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(CLIENT_SECRET_KEY))
            .and_then(|b| secret_value(&b.0).ok());
        return Ok((
            stored.map_or(SecretPlan::Generate, SecretPlan::Stored),
            None,
        ));
    };
    let referenced = observed.referenced.clone().flatten().ok_or_else(|| {
        Error::SecretNotFound(format!(
            "spec.secretRef: Secret {namespace}/{} does not exist (yet); waiting for it",
            r.name
        ))
    })?;
    let bytes = referenced
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(|| {
            Error::SecretInvalid(format!(
                "spec.secretRef: Secret {namespace}/{} has no key {}",
                r.name, r.key
            ))
        })?;
    let value = secret_value(&bytes.0).map_err(|e| {
        Error::SecretInvalid(format!(
            "spec.secretRef: key {} of Secret {namespace}/{} {e}",
            r.key, r.name
        ))
    })?;
    Ok((
        SecretPlan::Referenced(value),
        referenced.metadata.resource_version,
    ))
}

/// The `secret` oneof of the upsert.
fn secret_request(plan: &SecretPlan) -> Option<proto::upsert_client_request::Secret> {
    use proto::upsert_client_request::Secret as S;
    match plan {
        SecretPlan::NoSecret => None,
        SecretPlan::Referenced(v) | SecretPlan::Stored(v) => Some(S::SuppliedSecret(v.clone())),
        SecretPlan::Generate => Some(S::GenerateIfMissing(true)),
    }
}

/// What happens to the client secret after the upsert answered `outcome`, with
/// `generated` the secret it generated, if any.
pub fn secret_step(
    plan: &Plan,
    outcome: proto::UpsertOutcome,
    generated: Option<String>,
) -> SecretStep {
    match (&plan.secret, generated) {
        (SecretPlan::NoSecret, _) => SecretStep::Keep(None),
        (SecretPlan::Referenced(v), _) => SecretStep::Keep(Some(v.clone())),
        (SecretPlan::Generate, None) => SecretStep::RestoreLost,
        _ if plan.rotation_requested && outcome != proto::UpsertOutcome::Created => {
            SecretStep::Rotate
        }
        (SecretPlan::Stored(v), _) => SecretStep::Keep(Some(v.clone())),
        (SecretPlan::Generate, Some(new)) => SecretStep::Issued(new),
    }
}

/// The status after a successful reconcile.
fn ready_status(
    client: &OidcClient,
    plan: &Plan,
    rotated: bool,
    now: jiff::Timestamp,
) -> OidcClientStatus {
    let status = client.status.clone().unwrap_or_default();
    let secret_name = client.secret_name();
    OidcClientStatus {
        observed_generation: generation(client),
        conditions: with_ready(
            &status.conditions,
            Status::True,
            conditions::RECONCILED,
            format!(
                "registered with tenant {}; credentials in Secret {secret_name}",
                client.spec.tenant_ref
            ),
            generation(client),
            Time(now),
        ),
        client_id: Some(client.client_id()),
        secret_name: Some(secret_name),
        secret_rotated_at: if rotated {
            Some(Time(now))
        } else {
            status.secret_rotated_at
        },
        last_secret_rotation_annotation: plan.rotation_annotation.clone(),
        secret_ref_version: plan.referenced_version.clone(),
    }
}

/// The OidcClients of this instance in the watched namespaces (from the controllers'
/// caches when running) that claim `me`'s client id in `me`'s tenant: a client id is
/// unique in its tenant across all of them. Only those are copied out of the cache
/// ([`conflicting_owner`] needs no others): copying every client on every reconcile was
/// most of the operator's CPU at 1 000 clients (14 CPU-seconds per resync).
async fn peers(ctx: &Context, me: &OidcClient) -> Result<Vec<OidcClient>> {
    let scope = &ctx.config.scope;
    let (tenant, id) = (&me.spec.tenant_ref, me.client_id());
    controller::all_objects(
        ctx.client_store.get().map(Vec::as_slice),
        &scope.apis(&ctx.client),
        &scope.selector(),
        |peer: &OidcClient| peer.spec.tenant_ref == *tenant && peer.client_id() == id,
    )
    .await
    .map_err(|source| Error::Read {
        what: "OidcClients".to_owned(),
        source,
    })
}

/// Reads what [`plan`] decides on; the credentials Secret only with `read_credentials`
/// (its value is never cached). A missing tenant ends the reconcile here: nothing else
/// can be judged without it.
async fn observe(client: &OidcClient, ctx: &Context, read_credentials: bool) -> Result<Observed> {
    let namespace = client.namespace().unwrap_or_default();
    let tenant = controller::referenced_tenant(ctx, &client.spec.tenant_ref).await?;
    let namespace_labels = controller::cached(
        ctx.namespace_store.get().map(Vec::as_slice),
        &Api::<Namespace>::all(ctx.client.clone()),
        &namespace,
    )
    .await
    .map_err(|source| Error::Read {
        what: format!("Namespace {namespace}"),
        source,
    })?
    .and_then(|ns| ns.metadata.labels.clone())
    .unwrap_or_default();
    let peers = peers(ctx, client).await?;
    let credentials = if read_credentials {
        controller::secret(ctx, &namespace, &client.secret_name()).await?
    } else {
        None
    };
    let referenced = match &client.spec.secret_ref {
        Some(r) if client.spec.auth_method().uses_secret() => {
            Some(controller::secret(ctx, &namespace, &r.name).await?)
        }
        _ => None,
    };
    Ok(Observed {
        tenant,
        namespace_labels,
        peers,
        credentials,
        referenced,
    })
}

/// migration gate → observe → plan → register (rotate, upsert, rotate) → Secret → status,
/// or, for a resync with the secret `known` by its fingerprint, [`resync_known`] first.
async fn apply_steps(client: &OidcClient, ctx: &Context, known: Option<Known>) -> Result<Applied> {
    ctx.migration.borrow().gate()?;
    if let Some(known) = known
        && let Some(applied) = resync_known(client, ctx, known).await?
    {
        return Ok(applied);
    }
    let observed = observe(client, ctx, true).await?;
    let plan = plan(client, &observed)?;
    let Registered {
        secret_value,
        rotated,
        fingerprint,
    } = register(client, ctx, &plan).await?;

    let namespace = client.namespace().unwrap_or_default();
    let secret_name = client.secret_name();
    let desired = build_secret(
        client,
        &plan.issuer,
        secret_value.as_deref(),
        &ctx.config.scope,
    )?;
    let mut credentials_version = observed
        .credentials
        .as_ref()
        .and_then(|s| s.metadata.resource_version.clone());
    if observed
        .credentials
        .as_ref()
        .is_none_or(|e| !secret_up_to_date(e, &desired))
    {
        let written = controller::apply_child(
            &Api::<Secret>::namespaced(ctx.client.clone(), &namespace),
            &secret_name,
            FIELD_MANAGER,
            &desired,
        )
        .await
        .map_err(|failure| match failure {
            controller::ApplyFailure::Rejected(message) => Error::ApplyRejected {
                object: format!("Secret {secret_name}"),
                message,
            },
            controller::ApplyFailure::Failed(source) => Error::ApplySecret {
                name: secret_name.clone(),
                source,
            },
        })?;
        tracing::info!(secret = %secret_name, "credentials Secret written");
        credentials_version = written.metadata.resource_version;
    }
    controller::save_status(
        client,
        ctx,
        &ready_status(client, &plan, rotated, ctx.now()),
    )
    .await
    .map_err(Error::UpdateStatus)?;
    Ok(Applied {
        credentials: credentials_version,
        fingerprint,
    })
}

/// The resync of a client nothing changed about, whose credentials Secret is as the last
/// reconcile left it (`known`: its version, the fingerprint of its secret): the registration is upserted
/// naming that secret by its fingerprint, so the Secret is neither read nor written and
/// the secret not sent ([`KnownSecrets`]). `None` when that did not settle it — the auth
/// server's secret is another one, the client is gone, a rotation is asked for, or the
/// server is older and knows no fingerprints: the full reconcile follows and repairs it.
async fn resync_known(client: &OidcClient, ctx: &Context, known: Known) -> Result<Option<Applied>> {
    let Known {
        version,
        fingerprint,
    } = known;
    let observed = observe(client, ctx, false).await?;
    let plan = plan(client, &observed)?;
    if plan.rotation_requested || client.spec.secret_ref.is_some() {
        return Ok(None);
    }
    let request = proto::UpsertClientRequest {
        managed_by: plan.managed_by.clone(),
        tenant_id: client.spec.tenant_ref.clone(),
        spec: Some(plan.spec.clone()),
        secret: Some(
            proto::upsert_client_request::Secret::ExpectSecretFingerprint(fingerprint.clone()),
        ),
    };
    let response = match ctx.admin.upsert_client(request).await {
        Ok(response) => response,
        // The full reconcile would fail the same way, after reading the Secret.
        Err(e) if e.is(AdminErrorKind::Unavailable) => return Err(Error::UpsertClient(e)),
        Err(e) => {
            tracing::info!(client_id = %client.client_id(), reason = %e, "the secret is not the known one: full reconcile");
            return Ok(None);
        }
    };
    let outcome = crate::admin_client::upsert_outcome(&response);
    // An older server ignores the fingerprint: it may have created the client or made a
    // secret up. The full reconcile supplies the Secret's value, which replaces it.
    let confirmed = response
        .client
        .as_ref()
        .is_some_and(|c| c.secret_fingerprint == fingerprint);
    if !confirmed || outcome == proto::UpsertOutcome::Created || response.generated_secret.is_some()
    {
        return Ok(None);
    }
    registration_changed(client, ctx, outcome).await;
    controller::save_status(client, ctx, &ready_status(client, &plan, false, ctx.now()))
        .await
        .map_err(Error::UpdateStatus)?;
    Ok(Some(Applied {
        credentials: Some(version),
        fingerprint: Some(fingerprint),
    }))
}

/// Logs and publishes (an Event) what an upsert with `outcome` changed, if anything.
async fn registration_changed(client: &OidcClient, ctx: &Context, outcome: proto::UpsertOutcome) {
    let (client_id, tenant_name) = (client.client_id(), &client.spec.tenant_ref);
    let (reason, message) = match outcome {
        proto::UpsertOutcome::Created => (
            "ClientRegistered",
            format!("client {client_id} registered with tenant {tenant_name}"),
        ),
        proto::UpsertOutcome::Updated => (
            "ClientUpdated",
            format!("client {client_id} in tenant {tenant_name} set to match the spec"),
        ),
        proto::UpsertOutcome::Unchanged | proto::UpsertOutcome::Unspecified => return,
    };
    tracing::info!(%client_id, tenant = %tenant_name, reason, "client registration changed");
    ctx.events
        .publish(&client.object_ref(&()), EventType::Normal, reason, message)
        .await;
}

/// What [`register`] did.
struct Registered {
    /// The client secret the credentials Secret must hold.
    secret_value: Option<String>,
    rotated: bool,
    /// The auth server's fingerprint of that secret, when it is a generated one and the
    /// upsert's answer names it (not after a rotation).
    fingerprint: Option<String>,
}

/// Carries out the plan against the auth server.
async fn register(client: &OidcClient, ctx: &Context, plan: &Plan) -> Result<Registered> {
    let tenant_name = &client.spec.tenant_ref;
    let client_id = client.client_id();
    let secret_name = client.secret_name();
    let object_ref = client.object_ref(&());
    let overlap = plan.overlap_seconds;
    let rotate = |supplied: Option<String>| {
        ctx.admin
            .rotate_client_secret(proto::RotateClientSecretRequest {
                tenant_id: tenant_name.clone(),
                client_id: client_id.clone(),
                supplied_secret: supplied,
                overlap_seconds: overlap,
            })
    };
    let mut rotated = false;
    if let (SecretPlan::Referenced(value), true) = (&plan.secret, plan.rotate_to_supplied) {
        match rotate(Some(value.clone())).await {
            Ok(_) => {
                rotated = true;
                ctx.events
                    .publish(&object_ref, EventType::Normal, "SecretRotated",
                        format!("the value of spec.secretRef is now the current secret; the previous one stays valid for {overlap} s"))
                    .await;
            }
            // Not registered yet: there is no previous secret to keep.
            Err(e) if e.is(AdminErrorKind::NotFound) => {}
            Err(e) => return Err(Error::RotateSecret(e)),
        }
    }

    let response = ctx
        .admin
        .upsert_client(proto::UpsertClientRequest {
            managed_by: plan.managed_by.clone(),
            tenant_id: tenant_name.clone(),
            spec: Some(plan.spec.clone()),
            secret: secret_request(&plan.secret),
        })
        .await
        .map_err(|e| upsert_error(e, &plan.secret, &client.namespace().unwrap_or_default()))?;
    let outcome = crate::admin_client::upsert_outcome(&response);
    registration_changed(client, ctx, outcome).await;

    let answered = response
        .client
        .as_ref()
        .map(|c| c.secret_fingerprint.clone());
    let mut fingerprint = None;
    let value = match secret_step(plan, outcome, response.generated_secret) {
        SecretStep::Keep(value) => {
            if matches!(plan.secret, SecretPlan::Stored(_)) {
                fingerprint = answered;
            }
            value
        }
        SecretStep::Issued(value) => {
            ctx.events
                .publish(
                    &object_ref,
                    EventType::Normal,
                    "SecretCreated",
                    format!("client secret written to Secret {secret_name}"),
                )
                .await;
            fingerprint = answered;
            Some(value)
        }
        SecretStep::RestoreLost => {
            let new = rotate(None)
                .await
                .map_err(Error::RotateSecret)?
                .generated_secret;
            tracing::warn!(%client_id, secret = %secret_name, "credentials Secret lost its secret; issued a new one");
            ctx.events
                .publish(&object_ref, EventType::Warning, "SecretRestored",
                    format!("Secret {secret_name} was missing or had no usable CLIENT_SECRET: a new secret was issued; \
                             the previous one stays valid for {overlap} s"))
                .await;
            rotated = true;
            new
        }
        SecretStep::Rotate => {
            let new = rotate(None)
                .await
                .map_err(Error::RotateSecret)?
                .generated_secret;
            tracing::info!(%client_id, "client secret rotated");
            ctx.events
                .publish(&object_ref, EventType::Normal, "SecretRotated",
                    format!("new client secret in Secret {secret_name}; the previous one stays valid for {overlap} s"))
                .await;
            rotated = true;
            new
        }
    };
    Ok(Registered {
        secret_value: value,
        rotated,
        fingerprint,
    })
}

fn upsert_error(e: AdminError, plan: &SecretPlan, namespace: &str) -> Error {
    match e.kind {
        AdminErrorKind::InvalidArgument
            if e.message.starts_with("client_secret")
                && matches!(plan, SecretPlan::Referenced(_)) =>
        {
            Error::SecretInvalid(format!(
                "spec.secretRef: the auth server rejected the secret: {}",
                e.message
            ))
        }
        AdminErrorKind::InvalidArgument => Error::InvalidSpec(format!(
            "the auth server rejected the client: {}",
            resource_field_message(
                &e.message,
                &[
                    ("tenant_id", "spec.tenantRef"),
                    ("spec.id_token_alg", "spec.idTokenSigningAlg"),
                ]
            )
        )),
        AdminErrorKind::ClientIdRetired => Error::ClientIdRetired(format!(
            "spec.clientId: {}; choose another clientId",
            e.message
        )),
        AdminErrorKind::NotFound => Error::TenantNotFound(format!(
            "spec.tenantRef: the tenant is not registered with the auth server yet ({}); \
             check the IdentityTenant's status (namespace {namespace})",
            e.message
        )),
        _ => Error::UpsertClient(e),
    }
}

/// Releases the registration per `deletionPolicy`. Idempotent and fine when nothing was
/// ever registered (DeleteClient of an unknown client succeeds), but never deletes a
/// client id that another OidcClient owns (this one lost a conflict). The credentials
/// Secret goes with the OidcClient through its owner reference. With
/// `gatehouse.dev/skip-cleanup: "true"`, or after [`controller::CLEANUP_ATTEMPTS`]
/// failures with the auth server unreachable, the registration is left in place.
async fn cleanup(client: Arc<OidcClient>, ctx: Arc<Context>) -> Result<Action> {
    let (client, ctx) = (&*client, &*ctx);
    ctx.settled.forget(&client.uid().unwrap_or_default());
    ctx.known_secrets.forget(&client.uid().unwrap_or_default());
    let object_ref = client.object_ref(&());
    let tenant = &client.spec.tenant_ref;
    let client_id = client
        .status
        .as_ref()
        .and_then(|s| s.client_id.clone())
        .unwrap_or_else(|| client.client_id());
    if controller::skips_cleanup(client) {
        tracing::warn!(%client_id, %tenant, "cleanup skipped by annotation; client left in the database");
        ctx.events
            .publish(
                &object_ref,
                EventType::Normal,
                "CleanupSkipped",
                format!(
                    "{}: the auth server was not called; {}",
                    crds::SKIP_CLEANUP_ANNOTATION,
                    left_behind(client, &client_id)
                ),
            )
            .await;
        return Ok(Action::await_change());
    }
    if client.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.events
            .publish(&object_ref, EventType::Normal, "ClientRetained",
                format!("deletionPolicy Retain: client {client_id} stays registered with tenant {tenant}"))
            .await;
        return Ok(Action::await_change());
    }
    let peers = peers(ctx, client).await?;
    if let Some(owner) = conflicting_owner(client, &peers) {
        ctx.events
            .publish(
                &object_ref,
                EventType::Normal,
                "ClientRetained",
                format!(
                    "client {client_id} belongs to OidcClient {}/{}; not deleted",
                    owner.namespace().unwrap_or_default(),
                    owner.name_any()
                ),
            )
            .await;
        return Ok(Action::await_change());
    }
    match ctx.admin.delete_client(tenant, &client_id).await {
        Ok(_) => {
            tracing::info!(%client_id, %tenant, "client deleted from the auth server");
            ctx.events
                .publish(
                    &object_ref,
                    EventType::Normal,
                    "ClientDeleted",
                    format!("client {client_id} deleted from tenant {tenant}"),
                )
                .await;
            Ok(Action::await_change())
        }
        Err(e) if e.is(AdminErrorKind::NotFound) => Ok(Action::await_change()),
        Err(e) => failed_cleanup(client, ctx, &client_id, e).await,
    }
}

/// A failed DeleteClient: counted while the auth server is unreachable, abandoned (the
/// finalizer released, the registration kept) at the limit, otherwise retried with
/// backoff.
async fn failed_cleanup(
    client: &OidcClient,
    ctx: &Context,
    client_id: &str,
    e: AdminError,
) -> Result<Action> {
    let outcome = controller::failed_cleanup(client, &e);
    let error = Error::DeleteClient(e);
    let settled = controller::settle_failed_cleanup(
        client,
        &controller::api(client, ctx),
        FIELD_MANAGER,
        ctx,
        outcome,
        &error,
        left_behind(client, client_id),
    )
    .await
    .map_err(Error::RecordCleanupFailure)?;
    settled.ok_or(error)
}

/// What a cleanup that did not run leaves in the database, and how to remove it.
fn left_behind(client: &OidcClient, client_id: &str) -> String {
    let tenant = &client.spec.tenant_ref;
    format!(
        "client {client_id} stays registered with tenant {tenant} and its secret and tokens keep \
         working. Remove it with `authserver clients delete --id {client_id} --tenant {tenant}` \
         (run with the auth server's configuration, against its database), or re-create this \
         OidcClient and delete it while the auth server runs"
    )
}

// ---------------------------------------------------------------------------------------
// Controller

async fn reconcile_guarded(
    guard: Arc<DeserializeGuard<OidcClient>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    controller::guarded(guard, ctx, reconcile).await
}

/// Label selector of this instance's credentials Secrets.
pub fn secret_selector(scope: &Scope) -> String {
    scope.narrow(&format!(
        "{},{}={SECRET_COMPONENT}",
        authserver_pod::MANAGED_SELECTOR,
        authserver_pod::COMPONENT
    ))
}

/// The watch of Namespaces (their labels decide `allowedNamespaces`): all of them
/// cluster-wide, else just the one a namespace's controller serves.
fn namespace_watch(namespace: Option<&str>) -> watcher::Config {
    let config = watcher::Config::default().any_semantic();
    match namespace {
        Some(name) => config.fields(&format!("metadata.name={name}")),
        None => config,
    }
}

/// Runs the OidcClient controllers until `shutdown` resolves: one for the whole cluster,
/// or with `--watch-namespaces` one per watched namespace (each with its own watches of
/// OidcClients, Secrets and its Namespace, so nothing is read outside those namespaces;
/// a reflector shared by several namespaced watches would lose the other namespaces at
/// each watch's relist). A change to an IdentityTenant (created, allowedNamespaces or
/// issuer changed) reconciles its clients; a change to a Namespace (its labels decide
/// `allowedNamespaces`) reconciles the clients in it, so allowing or forbidding a
/// namespace takes effect at once.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::FutureExt as _;
    let shutdown = shutdown.shared();
    let scope = ctx.config.scope.clone();
    let mut client_stores = Vec::new();
    let mut namespace_stores = Vec::new();
    let mut secret_meta_stores = Vec::new();
    let mut controllers = Vec::new();
    for clients in scope.apis::<DeserializeGuard<OidcClient>>(&ctx.client) {
        let namespace = clients.namespace().map(str::to_owned);
        let controller = Controller::new(clients, scope.watcher_config())
            .with_config(controller::runtime_config(&ctx.config));
        let store = controller.store();
        client_stores.push(store.clone());
        let tenants: Api<DeserializeGuard<IdentityTenant>> = Api::all(ctx.client.clone());
        // Namespaces through a reflector of our own: its cache serves the reconciles'
        // label lookups (no GET per reconcile) and its events trigger the clients in a
        // namespace.
        let (namespace_cache, namespace_writer) = kube::runtime::reflector::store();
        namespace_stores.push(namespace_cache);
        let namespace_events = kube::runtime::reflector(
            namespace_writer,
            watcher(
                Api::<Namespace>::all(ctx.client.clone()),
                namespace_watch(namespace.as_deref()),
            )
            .default_backoff(),
        )
        .touched_objects();
        let in_namespace = store.clone();
        let released = controller::gate_release(ctx.migration.clone(), store.clone());
        // The Secrets of the namespace(s), metadata only (no Secret data in memory): a
        // change to a credentials Secret reconciles its owner (as `.owns()` would, without
        // a second watch of the same Secrets), one to a Secret named by spec.secretRef the
        // clients that reference it; the cache holds their versions ([`Inputs`]).
        let referencing = store.clone();
        let (secret_cache, secret_writer) = kube::runtime::reflector::store();
        secret_meta_stores.push(secret_cache);
        let secret_events = kube::runtime::reflector(
            secret_writer,
            watcher(
                match &namespace {
                    Some(ns) => {
                        Api::<PartialObjectMeta<Secret>>::namespaced(ctx.client.clone(), ns)
                    }
                    None => Api::<PartialObjectMeta<Secret>>::all(ctx.client.clone()),
                },
                watcher::Config::default().any_semantic(),
            )
            .default_backoff(),
        )
        .touched_objects();
        let controller = controller
            .watches(tenants, scope.watcher_config(), move |tenant| {
                let name = tenant.name_any();
                store
                    .state()
                    .iter()
                    .filter(|c| c.0.as_ref().is_ok_and(|c| c.spec.tenant_ref == name))
                    .map(|c| ObjectRef::from_obj(&**c))
                    .collect::<Vec<_>>()
            })
            .watches_stream(secret_events, move |secret| {
                let mut clients = clients_referencing(&referencing.state(), &secret);
                clients.extend(owning_client(&secret));
                clients
            })
            .watches_stream(namespace_events, move |ns: Namespace| {
                let name = ns.name_any();
                in_namespace
                    .state()
                    .iter()
                    .filter(|c| c.namespace().as_deref() == Some(name.as_str()))
                    .map(|c| ObjectRef::from_obj(&**c))
                    .collect::<Vec<_>>()
            })
            .reconcile_on(released)
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_guarded, controller::policy, Arc::clone(&ctx))
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, controller = CONTROLLER, "controller event");
                }
            });
        controllers.push(controller);
    }
    // Set before any controller runs: a reconcile must see every namespace's peers.
    let _ = ctx.client_store.set(client_stores);
    let _ = ctx.namespace_store.set(namespace_stores);
    let _ = ctx.secret_meta_store.set(secret_meta_stores);
    futures::future::join_all(controllers).await;
}

/// The OidcClient that controls `secret` (its credentials Secret), if any — by owner
/// reference, as kube-runtime's `.owns()` finds owners. Another instance's client is not
/// in this controller's cache, so the controller drops the trigger.
fn owning_client(
    secret: &PartialObjectMeta<Secret>,
) -> Option<ObjectRef<DeserializeGuard<OidcClient>>> {
    let namespace = secret.namespace()?;
    secret
        .owner_references()
        .iter()
        .find(|o| {
            o.controller == Some(true)
                && o.kind == OidcClient::kind(&())
                && o.api_version == OidcClient::api_version(&())
        })
        .map(|o| ObjectRef::new(&o.name).within(&namespace))
}

/// The OidcClients among `clients` whose `spec.secretRef` names `secret`.
fn clients_referencing(
    clients: &[Arc<DeserializeGuard<OidcClient>>],
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<DeserializeGuard<OidcClient>>> {
    let (name, namespace) = (secret.name_any(), secret.namespace());
    clients
        .iter()
        .filter(|c| {
            c.0.as_ref().is_ok_and(|c| {
                c.namespace() == namespace
                    && c.spec.secret_ref.as_ref().is_some_and(|r| r.name == name)
            })
        })
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

#[cfg(test)]
mod tests;
