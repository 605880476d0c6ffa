//! The client registry service: validated registration, secret issuance and rotation,
//! audit events, and a per-pod cache that the token endpoint reads on every request.

use std::sync::Arc;

use secrecy::SecretString;

use crate::cache::{Cached, DEFAULT_TTL, Epoch};
use crate::clock::Clock;
use crate::crypto::kek::Kek;
use crate::crypto::secret::{self, SecretHasher};
use crate::domain::client::{ClientSpec, FieldError};
use crate::domain::policy::TenantPolicy;
use crate::domain::signing_key::Algorithm;
use crate::store::audit::AuditEvent;
use crate::store::clients::Guard;
use crate::store::clients::{
    PurgeRetired, RetiredClient, Retirement, SecretChange, StoredClient, UpsertOutcome,
};
use crate::store::{self, Store};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid client registration: {}", format_fields(.0))]
    Invalid(Vec<FieldError>),
    #[error("client {0:?} already exists")]
    AlreadyExists(String),
    #[error("client {0:?} does not exist")]
    NotFound(String),
    #[error("tenant {0:?} does not exist")]
    UnknownTenant(String),
    /// The id belonged to a deleted client; see `clients purge-retired`.
    #[error(
        "client id {client_id:?} is retired: a client with this id was deleted; \
         it can be registered again after `clients purge-retired --id {client_id}`, \
         allowed from {reusable_at} (Unix time), when its tokens have expired"
    )]
    Retired { client_id: String, reusable_at: i64 },
    #[error(
        "client id {client_id:?} cannot be purged before {reusable_at} (Unix time): \
         tokens issued before its deletion may still be alive"
    )]
    RetiredUntil { client_id: String, reusable_at: i64 },
    #[error("client id {0:?} is not retired")]
    NotRetired(String),
    /// Someone else manages the client (the operator's `OidcClient`).
    #[error("client {client_id:?} is managed by {owner}: change it there")]
    Managed { client_id: String, owner: String },
    /// The client changed since the version the caller named.
    #[error("client {0:?} changed since it was read")]
    Stale(String),
    #[error(transparent)]
    Store(store::Error),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

/// The longest any token issued to the client can live: until then a retired id must
/// not be reused, or a token of the old client could pass for one of the new.
fn longest_token_lifetime(policy: &TenantPolicy, spec: &ClientSpec) -> i64 {
    let t = &policy.tokens;
    let longest = [
        t.access_token_seconds,
        t.id_token_seconds,
        t.refresh_token_seconds,
        t.authorization_code_seconds,
        spec.access_token_lifetime_seconds,
        spec.refresh_token_lifetime_seconds,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    i64::try_from(longest).unwrap_or(i64::MAX)
}

fn format_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about the client secret when registering.
#[derive(Debug, Clone)]
pub enum SecretRequest {
    /// Generate a new one if the client has none (returned once); keep an existing one.
    GenerateIfMissing,
    /// Use this caller-supplied secret (at least 32 characters).
    Supplied(SecretString),
    /// Keep the current secret, known to the caller by this fingerprint
    /// ([`secret::fingerprint`]); [`Error::Stale`] when the client has no current secret
    /// with it.
    Expect(String),
}

/// Result of a registration.
#[derive(Debug)]
pub struct Registered {
    pub outcome: UpsertOutcome,
    /// A newly generated secret: shown to the caller once, never stored in clear.
    pub generated_secret: Option<SecretString>,
}

/// Who asked for a change (audit `actor`).
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Cli,
    AdminApi,
    /// A signed-in user acting on their own account (the account pages).
    User,
    /// A Management API caller: the calling client, and the user when it is a user's
    /// token.
    Api {
        client_id: &'a str,
        user: Option<&'a str>,
    },
}

impl<'a> Actor<'a> {
    pub fn as_str(self) -> &'a str {
        match self {
            Actor::Cli => "cli",
            Actor::AdminApi => "admin-api",
            Actor::User => "user",
            Actor::Api { client_id, .. } => client_id,
        }
    }

    /// `details` of an audit event by this actor: a Management API call also names the
    /// user and the API.
    pub fn annotate(self, mut details: serde_json::Value) -> serde_json::Value {
        if let (Actor::Api { user, .. }, Some(map)) = (self, details.as_object_mut()) {
            if let Some(user) = user {
                map.insert("user".into(), user.into());
            }
            map.insert("via".into(), "management-api".into());
        }
        details
    }
}

/// Cached lookups: `None` caches "no such client" too, so unknown ids cost no query.
type ClientCache = Cached<(String, String), Option<Arc<StoredClient>>>;

/// The client registry.
#[derive(Debug)]
pub struct ClientService {
    store: Store,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
    algorithms: Vec<Algorithm>,
    cache: ClientCache,
    /// Per tenant: every origin any client allows (CORS), dropped with the client cache.
    cors: Cached<String, Arc<std::collections::HashSet<String>>>,
    /// Bumped after this pod's own writes, so the pod that made a change never serves
    /// the old registration (other pods learn it from the change feed).
    epoch: Epoch,
}

impl ClientService {
    /// `max_stale_during_outage` (`cache.max_stale_seconds_during_outage`): while the
    /// database is unavailable, a client read from it at most this long ago is still
    /// served from memory (see `crate::cache`).
    pub fn new(
        store: Store,
        kek: &Kek,
        clock: Arc<dyn Clock>,
        algorithms: Vec<Algorithm>,
        epoch: &Epoch,
        max_stale_during_outage: std::time::Duration,
    ) -> Self {
        Self {
            store,
            hasher: SecretHasher::new(kek),
            clock,
            algorithms,
            cache: Cached::new(epoch.clone(), DEFAULT_TTL)
                .bounded_during_outage(max_stale_during_outage),
            cors: Cached::new(epoch.clone(), DEFAULT_TTL)
                .bounded_during_outage(max_stale_during_outage),
            epoch: epoch.clone(),
        }
    }

    pub fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }

    /// The client, from the pod cache when possible.
    pub async fn get(&self, tenant_id: &str, client_id: &str) -> Result<Option<Arc<StoredClient>>> {
        let key = (tenant_id.to_owned(), client_id.to_owned());
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        // Boxed: the query's future would otherwise be part of every token request's
        // future, copied whole each time that future is boxed, hit or miss.
        Box::pin(self.load(key)).await
    }

    async fn load(&self, key: (String, String)) -> Result<Option<Arc<StoredClient>>> {
        let (tenant_id, client_id) = (key.0.as_str(), key.1.as_str());
        let epoch = self.cache.begin_load();
        let found = match self.store.get_client(tenant_id, client_id).await {
            Ok(found) => found.map(Arc::new),
            // This load found the outage (and marked it): what memory may still serve is
            // served now, as it will be to the requests after this one.
            Err(e) if e.is_unavailable() => return self.cache.get(&key).ok_or(Error::Store(e)),
            Err(e) => return Err(e.into()),
        };
        self.cache.insert(key, epoch, found.clone());
        Ok(found)
    }

    /// The browser origins the tenant's clients allow (`allowed_cors_origins`), from the
    /// pod cache when possible.
    pub async fn cors_origins(
        &self,
        tenant_id: &str,
    ) -> Result<Arc<std::collections::HashSet<String>>> {
        let key = tenant_id.to_owned();
        if let Some(hit) = self.cors.get(&key) {
            return Ok(hit);
        }
        // Boxed: the query's future would otherwise be part of the future of every
        // request through the tenant router, copied whole each time it is boxed.
        Box::pin(self.load_cors_origins(key)).await
    }

    async fn load_cors_origins(
        &self,
        key: String,
    ) -> Result<Arc<std::collections::HashSet<String>>> {
        let tenant_id = key.as_str();
        let epoch = self.cors.begin_load();
        let origins: std::collections::HashSet<String> = self
            .store
            .list_clients(tenant_id)
            .await?
            .into_iter()
            .flat_map(|c| c.spec.allowed_cors_origins)
            .collect();
        let origins = Arc::new(origins);
        self.cors.insert(key, epoch, Arc::clone(&origins));
        Ok(origins)
    }

    /// Whether `candidate` is one of the client's currently valid secrets (constant time
    /// per digest).
    pub fn verify_secret(&self, client: &StoredClient, candidate: &SecretString) -> bool {
        let now = self.clock.now();
        let valid: Vec<&[u8]> = client
            .secrets
            .iter()
            .filter(|s| s.valid_at(now))
            .map(|s| s.digest.as_slice())
            .collect();
        self.hasher
            .matches(&client.tenant_id, &client.spec.client_id, candidate, &valid)
    }

    /// Spends the same work as a real check, for unknown clients (no timing oracle).
    pub fn verify_dummy(&self, candidate: &SecretString) {
        let _ = self.hasher.matches("", "", candidate, &[&[0u8; 32]]);
    }

    async fn require_tenant(&self, tenant_id: &str) -> Result<()> {
        if self.store.get_tenant(tenant_id).await?.is_none() {
            return Err(Error::UnknownTenant(tenant_id.to_owned()));
        }
        Ok(())
    }

    fn validate(&self, spec: &ClientSpec, secret: &SecretRequest) -> Result<()> {
        let mut errors = spec.validate(&self.algorithms);
        if let SecretRequest::Supplied(s) = secret {
            if !spec.auth_method.uses_secret() {
                errors.push(FieldError::new(
                    "client_secret",
                    format!("a client using {} has no secret", spec.auth_method.as_str()),
                ));
            } else if let Err(e) = secret::check_supplied(s) {
                errors.push(FieldError::new("client_secret", e));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(errors))
        }
    }

    /// Creates a client; fails if the id is taken. Returns the generated secret, if any.
    pub async fn create(
        &self,
        tenant_id: &str,
        spec: &ClientSpec,
        secret: SecretRequest,
        actor: Actor<'_>,
    ) -> Result<Registered> {
        self.register(tenant_id, spec, secret, actor, false, &Guard::default())
            .await
    }

    /// Creates or updates a client to match `spec` (idempotent: nothing is written when
    /// nothing differs). Used by the admin API for reconciliation.
    pub async fn upsert(
        &self,
        tenant_id: &str,
        spec: &ClientSpec,
        secret: SecretRequest,
        actor: Actor<'_>,
    ) -> Result<Registered> {
        self.register(tenant_id, spec, secret, actor, true, &Guard::default())
            .await
    }

    /// [`Self::create`] (`may_exist` false) or [`Self::upsert`] under `guard`'s
    /// conditions, checked in the write's transaction.
    pub async fn write_guarded(
        &self,
        tenant_id: &str,
        spec: &ClientSpec,
        secret: SecretRequest,
        actor: Actor<'_>,
        may_exist: bool,
        guard: &Guard<'_>,
    ) -> Result<Registered> {
        self.register(tenant_id, spec, secret, actor, may_exist, guard)
            .await
    }

    async fn register(
        &self,
        tenant_id: &str,
        spec: &ClientSpec,
        secret: SecretRequest,
        actor: Actor<'_>,
        may_exist: bool,
        guard: &Guard<'_>,
    ) -> Result<Registered> {
        self.require_tenant(tenant_id).await?;
        self.validate(spec, &secret)?;
        if !may_exist
            && self
                .store
                .get_client(tenant_id, &spec.client_id)
                .await?
                .is_some()
        {
            return Err(Error::AlreadyExists(spec.client_id.clone()));
        }
        self.upsert_validated(tenant_id, spec, secret, actor, guard)
            .await
    }

    async fn upsert_validated(
        &self,
        tenant_id: &str,
        spec: &ClientSpec,
        secret: SecretRequest,
        actor: Actor<'_>,
        guard: &Guard<'_>,
    ) -> Result<Registered> {
        let now = self.clock.now();
        let existing = self.store.get_client(tenant_id, &spec.client_id).await?;
        let has_valid_secret = existing
            .as_ref()
            .is_some_and(|c| c.secrets.iter().any(|s| s.valid_at(now)));
        let has_secrets = existing.as_ref().is_some_and(|c| !c.secrets.is_empty());
        let (change, generated) = match (&secret, spec.auth_method.uses_secret()) {
            // Switching to a method without a shared secret: stale secrets must not keep
            // working.
            (_, false) if has_secrets => (SecretChange::Clear, None),
            (_, false) => (SecretChange::Keep, None),
            (SecretRequest::Supplied(s), true) => (
                SecretChange::Set(self.hasher.digest(tenant_id, &spec.client_id, s)),
                None,
            ),
            // Set to the digest it names rather than kept: a concurrent change of the
            // secret between the read above and the write is undone, not kept.
            (SecretRequest::Expect(fingerprint), true) => {
                let current = existing
                    .as_ref()
                    .and_then(StoredClient::current_secret)
                    .filter(|s| secret::fingerprint(&s.digest) == *fingerprint)
                    .ok_or_else(|| Error::Stale(spec.client_id.clone()))?;
                (SecretChange::Set(current.digest.clone()), None)
            }
            (SecretRequest::GenerateIfMissing, true) if has_valid_secret => {
                (SecretChange::Keep, None)
            }
            (SecretRequest::GenerateIfMissing, true) => {
                let s = secret::generate();
                (
                    SecretChange::Set(self.hasher.digest(tenant_id, &spec.client_id, &s)),
                    Some(s),
                )
            }
        };
        let outcome = self
            .store
            .upsert_client_guarded(tenant_id, spec, &change, now, guard)
            .await
            .map_err(|e| match e {
                store::Error::Retired { reusable_at } => Error::Retired {
                    client_id: spec.client_id.clone(),
                    reusable_at,
                },
                e => refused(e, &spec.client_id),
            })?;
        let event = match outcome {
            UpsertOutcome::Created => Some("client.created"),
            UpsertOutcome::Updated => Some("client.updated"),
            UpsertOutcome::Unchanged => None,
        };
        if let Some(event) = event {
            self.epoch.bump();
            self.audit(
                tenant_id,
                event,
                actor,
                &spec.client_id,
                serde_json::json!({
                    "auth_method": spec.auth_method.as_str(),
                    "secret_set": matches!(change, SecretChange::Set(_)),
                }),
            )
            .await;
            tracing::info!(tenant = tenant_id, client_id = %spec.client_id, event, "client registry changed");
        }
        Ok(Registered {
            outcome,
            generated_secret: generated,
        })
    }

    /// Deletes a client, revokes everything issued to it and retires its id (see
    /// [`Store::retire_client`]), in one transaction with its audit event. `None` when it
    /// did not exist (deleting twice is fine).
    pub async fn delete(
        &self,
        tenant_id: &str,
        client_id: &str,
        actor: Actor<'_>,
    ) -> Result<Option<Retirement>> {
        self.delete_guarded(tenant_id, client_id, actor, &Guard::default())
            .await
    }

    /// [`Self::delete`] under `guard`'s conditions, checked in its transaction.
    pub async fn delete_guarded(
        &self,
        tenant_id: &str,
        client_id: &str,
        actor: Actor<'_>,
        guard: &Guard<'_>,
    ) -> Result<Option<Retirement>> {
        let Some(client) = self.store.get_client(tenant_id, client_id).await? else {
            return Ok(None);
        };
        let policy = match self.store.get_tenant(tenant_id).await? {
            Some(t) => TenantPolicy::of(&t),
            None => return Ok(None),
        };
        let now = self.clock.now();
        let reusable_at = now.saturating_add(longest_token_lifetime(&policy, &client.spec));
        let event = AuditEvent::new(tenant_id, now, "client.deleted")
            .actor(Some(actor.as_str()))
            .subject(Some(client_id))
            .details(actor.annotate(serde_json::json!({})));
        let retired = self
            .store
            .retire_client_guarded(tenant_id, client_id, now, reusable_at, &event, guard)
            .await
            .map_err(|e| refused(e, client_id))?;
        if let Some(r) = &retired {
            self.epoch.bump();
            tracing::info!(
                tenant = tenant_id,
                client_id,
                grants_revoked = r.grants_revoked,
                consents_deleted = r.consents_deleted,
                "client deleted and its id retired"
            );
        }
        Ok(retired)
    }

    /// A tenant's retired client ids.
    pub async fn list_retired(&self, tenant_id: &str) -> Result<Vec<RetiredClient>> {
        self.require_tenant(tenant_id).await?;
        Ok(self.store.list_retired_clients(tenant_id).await?)
    }

    /// Frees a retired client id for registration again, once every token issued under
    /// it has expired.
    pub async fn purge_retired(
        &self,
        tenant_id: &str,
        client_id: &str,
        actor: Actor<'_>,
    ) -> Result<()> {
        self.require_tenant(tenant_id).await?;
        let now = self.clock.now();
        let event = AuditEvent::new(tenant_id, now, "client.retired_id_purged")
            .actor(Some(actor.as_str()))
            .subject(Some(client_id));
        match self
            .store
            .purge_retired_client(tenant_id, client_id, now, &event)
            .await?
        {
            PurgeRetired::Purged => {
                tracing::info!(tenant = tenant_id, client_id, "retired client id purged");
                Ok(())
            }
            PurgeRetired::NotRetired => Err(Error::NotRetired(client_id.to_owned())),
            PurgeRetired::TooEarly { reusable_at } => Err(Error::RetiredUntil {
                client_id: client_id.to_owned(),
                reusable_at,
            }),
        }
    }

    /// Issues a new current secret (generated, or supplied); the previous one stays valid
    /// for `overlap_seconds`. Returns the generated secret, if one was generated.
    pub async fn rotate_secret(
        &self,
        tenant_id: &str,
        client_id: &str,
        supplied: Option<SecretString>,
        overlap_seconds: u64,
        actor: Actor<'_>,
    ) -> Result<Option<SecretString>> {
        let Some(client) = self.store.get_client(tenant_id, client_id).await? else {
            return Err(Error::NotFound(client_id.to_owned()));
        };
        if !client.spec.auth_method.uses_secret() {
            return Err(Error::Invalid(vec![FieldError::new(
                "client_secret",
                format!(
                    "client {client_id:?} uses {} and has no secret to rotate",
                    client.spec.auth_method.as_str()
                ),
            )]));
        }
        if let Some(s) = &supplied
            && let Err(e) = secret::check_supplied(s)
        {
            return Err(Error::Invalid(vec![FieldError::new("client_secret", e)]));
        }
        let (new, generated) = if let Some(s) = supplied {
            (s, None)
        } else {
            let s = secret::generate();
            (s.clone(), Some(s))
        };
        let now = self.clock.now();
        let digest = self.hasher.digest(tenant_id, client_id, &new);
        let overlap = i64::try_from(overlap_seconds).unwrap_or(i64::MAX);
        self.store
            .rotate_client_secret(
                tenant_id,
                client_id,
                &digest,
                now.saturating_add(overlap),
                now,
            )
            .await
            .map_err(|e| match e {
                store::Error::NotFound => Error::NotFound(client_id.to_owned()),
                other => Error::Store(other),
            })?;
        self.epoch.bump();
        self.audit(
            tenant_id,
            "client.secret_rotated",
            actor,
            client_id,
            serde_json::json!({
                "previous_valid_for_seconds": overlap_seconds,
            }),
        )
        .await;
        tracing::info!(
            tenant = tenant_id,
            client_id,
            overlap_seconds,
            "client secret rotated"
        );
        Ok(generated)
    }

    async fn audit(
        &self,
        tenant_id: &str,
        event: &str,
        actor: Actor<'_>,
        subject: &str,
        details: serde_json::Value,
    ) {
        let e = AuditEvent::new(tenant_id, self.clock.now(), event)
            .actor(Some(actor.as_str()))
            .subject(Some(subject))
            .details(actor.annotate(details));
        self.store.audit(e).await;
    }
}

/// A store refusal as the registry's error naming the client.
fn refused(e: store::Error, client_id: &str) -> Error {
    match e {
        store::Error::Managed(owner) => Error::Managed {
            client_id: client_id.to_owned(),
            owner,
        },
        store::Error::Stale => Error::Stale(client_id.to_owned()),
        e => Error::Store(e),
    }
}
