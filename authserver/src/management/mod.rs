//! The Management API's service (`{issuer}/api/v1`): who may call it, and what each
//! operation does. The API is an OAuth protected resource of its own tenant: callers
//! present access tokens that the tenant issued with the audience `{issuer}/api/v1`
//! (RFC 8707 `resource`) and the operation's scope, so clients, secrets,
//! `private_key_jwt`, DPoP, rotation and the audit trail secure it, and there is no
//! second credential system to leak or rotate. No HTTP here: `http::management` parses
//! requests into calls and renders results and [`Error`]s (RFC 9457 problems).

pub mod audit;
pub mod users;

use serde::Serialize;

use crate::clients::Actor;
use crate::clock::UnixTime;
use crate::config::RateLimitSettings;
use crate::domain::signing_key::{KeyMeta, RotationMode};
use crate::domain::tenant::Tenant;
use crate::keys::KeyService;
use crate::oauth::resource::{ResourceError, ResourceRequest, TokenScheme, VerifiedToken};
use crate::oauth::{ErrorCode, OAuthError, OAuthService, RateHeaders};
use crate::store::Store;
use crate::store::audit::AuditEvent;
use crate::store::clients::Guard;

/// Where the API lives under an issuer; with the issuer, its resource identifier.
pub const API_PATH: &str = "/api/v1";

/// The resource identifier (and token audience) of `tenant`'s Management API.
pub fn resource_id(tenant: &Tenant) -> String {
    format!("{}{API_PATH}", tenant.issuer)
}

/// What a token must allow for an operation: one scope each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ClientsRead,
    ClientsWrite,
    UsersRead,
    UsersWrite,
    SessionsRead,
    SessionsWrite,
    KeysRead,
    KeysRotate,
    AuditRead,
    StatsRead,
}

impl Permission {
    pub const ALL: [Permission; 10] = [
        Permission::ClientsRead,
        Permission::ClientsWrite,
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::SessionsRead,
        Permission::SessionsWrite,
        Permission::KeysRead,
        Permission::KeysRotate,
        Permission::AuditRead,
        Permission::StatsRead,
    ];

    /// The scope that grants it.
    pub fn scope(self) -> &'static str {
        match self {
            Permission::ClientsRead => "gatehouse:clients:read",
            Permission::ClientsWrite => "gatehouse:clients:write",
            Permission::UsersRead => "gatehouse:users:read",
            Permission::UsersWrite => "gatehouse:users:write",
            Permission::SessionsRead => "gatehouse:sessions:read",
            Permission::SessionsWrite => "gatehouse:sessions:write",
            Permission::KeysRead => "gatehouse:keys:read",
            Permission::KeysRotate => "gatehouse:keys:rotate",
            Permission::AuditRead => "gatehouse:audit:read",
            Permission::StatsRead => "gatehouse:stats:read",
        }
    }
}

/// The rate-limit tier of an operation (`rate_limits.management_<tier>_per_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Read,
    Write,
    Delete,
    /// Secret rotation, password set, MFA reset, key rotation.
    Sensitive,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Read => "read",
            Tier::Write => "write",
            Tier::Delete => "delete",
            Tier::Sensitive => "sensitive",
        }
    }

    fn limit(self, limits: &RateLimitSettings) -> u64 {
        match self {
            Tier::Read => limits.management_read_per_client,
            Tier::Write => limits.management_write_per_client,
            Tier::Delete => limits.management_delete_per_client,
            Tier::Sensitive => limits.management_sensitive_per_client,
        }
    }
}

/// Who is calling: the client the token was issued to, and the user when it is a
/// user's token (code flow), by the token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub client_id: String,
    pub user: Option<String>,
    /// From the request, for the audit trail.
    pub ip: Option<String>,
}

impl Caller {
    /// An audit event of this caller's: the client as actor, the user in the details.
    pub fn event(&self, tenant: &Tenant, at: UnixTime, name: &str) -> AuditEvent {
        AuditEvent::new(&tenant.id, at, name)
            .actor(Some(&self.client_id))
            .ip(self.ip.as_deref())
    }

    /// The caller as the services' actor.
    pub fn actor(&self) -> Actor<'_> {
        Actor::Api {
            client_id: &self.client_id,
            user: self.user.as_deref(),
        }
    }

    /// The details every event of this caller carries (the user, the API).
    pub fn details(&self, details: serde_json::Value) -> serde_json::Value {
        self.actor().annotate(details)
    }
}

/// A request that was let in, with the rate figures for its response headers.
#[derive(Debug)]
pub struct Authorized {
    pub caller: Caller,
    /// `None` when rate limits are off.
    pub rate: Option<RateHeaders>,
}

/// Why an operation failed; `http::management` renders each as an RFC 9457 problem with
/// a stable `type`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No, a bad, or a too weak token (RFC 6750 §3): a challenge, no problem `type` of ours.
    #[error("{}", .0.error.as_ref().map_or_else(|| "no access token".to_owned(), ToString::to_string))]
    Token(Box<ResourceError>),
    /// Over the caller's limit for the tier.
    #[error("rate limit exceeded")]
    RateLimited(RateHeaders),
    #[error("{0}")]
    NotFound(String),
    /// A parameter or body field is malformed or unknown: `field` names it.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    /// The body is well-formed but breaks a rule (a registration the server refuses):
    /// `field` names the first offending field, `detail` all of them.
    #[error("{field}: {detail}")]
    Unprocessable { field: String, detail: String },
    /// The request conflicts with the object's state; `kind` names how (`already-exists`,
    /// `client-id-retired`, `managed-elsewhere`).
    #[error("{detail}")]
    Conflict { kind: &'static str, detail: String },
    /// `If-Match` names another version than the stored one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A failure on our side (500, or 503 during an outage), logged once by the edge.
    #[error(transparent)]
    Server(OAuthError),
}

impl Error {
    /// A refused registration: the first offending field, and every problem in `detail`.
    pub fn unprocessable(fields: &[crate::domain::client::FieldError]) -> Self {
        Error::Unprocessable {
            field: fields
                .first()
                .map_or_else(|| "body".to_owned(), |f| f.field.to_owned()),
            detail: fields
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

impl<E> From<E> for Error
where
    OAuthError: From<E>,
{
    fn from(e: E) -> Self {
        Error::Server(OAuthError::from(e))
    }
}

/// The Management API's operations, over the services the HTTP state holds.
pub struct Management<'a> {
    pub oauth: &'a OAuthService,
    pub store: &'a Store,
    pub keys: &'a KeyService,
    pub clients: &'a crate::clients::ClientService,
    pub users: &'a crate::users::UserService,
    pub mfa: &'a crate::mfa::MfaService,
}

/// A key as the API shows it: public facts only.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: &'static str,
    pub state: &'static str,
    /// `generated` or `imported`.
    pub source: String,
    pub created_at: String,
    pub activates_at: String,
    pub superseded_at: Option<String>,
    pub retires_at: Option<String>,
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(t: UnixTime) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |ts| ts.to_string())
}

fn key_view(meta: &KeyMeta, source: &str, now: UnixTime) -> KeyView {
    KeyView {
        kid: meta.kid.clone(),
        alg: meta.alg.as_str(),
        state: meta.state(now).as_str(),
        source: source.to_owned(),
        created_at: rfc3339(meta.created_at),
        activates_at: rfc3339(meta.activates_at),
        superseded_at: meta.superseded_at.map(rfc3339),
        retires_at: meta.retires_at.map(rfc3339),
    }
}

/// A registered client as the API shows it: the registration, never a secret digest.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ClientView {
    #[serde(flatten)]
    pub spec: crate::domain::client::ClientSpec,
    /// How many secrets are valid now (more than one during a rotation overlap); only
    /// on a single client's answer (lists do not read the secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_secrets: Option<usize>,
    pub created_at: String,
    pub updated_at: String,
    /// The operator's object that owns it (`OidcClient <namespace>/<name>`): read-only
    /// here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// The version, for `ETag` / `If-Match` (a header, not in the body).
    #[serde(skip)]
    pub etag: String,
}

/// One page of a list, newest or first first, and where the next one starts.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The most items one page may have (`limit`).
pub const MAX_PAGE: usize = 1000;
/// Items per page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;

/// A tenant's figures.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Stats {
    pub clients: i64,
    pub users: i64,
    /// Account sessions neither idle-expired nor past their absolute end.
    pub active_sessions: i64,
    /// Per grant type (`client_credentials`, `authorization_code`, `refresh_token`), in
    /// 5-minute buckets: "the last hour" starts with the bucket an hour ago falls in.
    pub tokens_issued_last_hour: std::collections::BTreeMap<String, i64>,
    pub tokens_issued_last_day: std::collections::BTreeMap<String, i64>,
}

/// The health of what the API's tenant depends on.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub database: &'static str,
    pub schema_version: Option<i64>,
    pub schema_current: bool,
    /// This tenant's keys by state.
    pub keys: std::collections::BTreeMap<&'static str, usize>,
    /// `ok`, `unavailable` or `not_configured` (the shared rate-limit counters).
    pub redis: &'static str,
}

impl Management<'_> {
    /// Lets the request in if its token is this tenant's, meant for this API
    /// (`aud` = `{issuer}/api/v1`), carries `permission`'s scope, and the calling client
    /// is within its `tier` limit.
    pub async fn authorize(
        &self,
        tenant: &Tenant,
        req: &ResourceRequest<'_>,
        permission: Permission,
        tier: Tier,
        ip: Option<String>,
    ) -> Result<Authorized, Error> {
        let token = self
            .oauth
            .verify_resource_token(tenant, req)
            .await
            .map_err(|e| Error::Token(Box::new(e)))?;
        let refuse = |scheme: TokenScheme, code: ErrorCode, d: &str, scope: Option<&str>| {
            Error::Token(Box::new(ResourceError {
                scheme,
                error: Some(OAuthError::new(code, d)),
                scope: scope.map(str::to_owned),
            }))
        };
        if !token.is_for(&resource_id(tenant)) {
            return Err(refuse(
                token.scheme,
                ErrorCode::InvalidToken,
                "the access token is not meant for this API: request it with resource={issuer}/api/v1",
                None,
            ));
        }
        let scope = permission.scope();
        if !token.scopes().any(|s| s == scope) {
            return Err(refuse(
                token.scheme,
                ErrorCode::InsufficientScope,
                &format!("this operation needs the scope {scope}"),
                Some(scope),
            ));
        }
        let caller = caller(&token, ip).ok_or_else(|| {
            refuse(
                token.scheme,
                ErrorCode::InvalidToken,
                "the access token names no client",
                None,
            )
        })?;
        let rate = self.count(tenant, &caller, tier).await?;
        Ok(Authorized { caller, rate })
    }

    async fn count(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        tier: Tier,
    ) -> Result<Option<RateHeaders>, Error> {
        let limits = &self.oauth.rate_limits;
        if !limits.enabled {
            return Ok(None);
        }
        let key = format!(
            "management-{}:client:{}:{}",
            tier.as_str(),
            tenant.id,
            caller.client_id
        );
        let d = self
            .oauth
            .limiter
            .hit(&key, tier.limit(limits), self.oauth.clock.now())
            .await;
        if d.allowed {
            Ok(Some(d.headers))
        } else {
            Err(Error::RateLimited(d.headers))
        }
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.oauth.clock.now()
    }

    /// Records a write the API refused after the token check (who tried what, and the
    /// status it got): the trail shows failed attempts, not only changes.
    pub async fn write_failed(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        url: &str,
        operation: &str,
        method: &str,
        status: u16,
    ) {
        let event = caller
            .event(tenant, self.now(), "management.write_failed")
            .subject(Some(url))
            .details(caller.details(serde_json::json!({
                "operation": operation,
                "method": method,
                "status": status,
            })));
        self.store.audit(event).await;
    }

    /// `GET /jwks`: every key of the tenant, with its state and times.
    pub async fn keys(&self, tenant: &Tenant) -> Result<Vec<KeyView>, Error> {
        let now = self.now();
        let mut keys: Vec<KeyView> = self
            .store
            .list_keys(&tenant.id)
            .await?
            .iter()
            .map(|k| key_view(&k.meta, &k.source, now))
            .collect();
        keys.sort_by(|a, b| {
            (a.alg, &a.activates_at, &a.kid).cmp(&(b.alg, &b.activates_at, &b.kid))
        });
        Ok(keys)
    }

    /// `POST /jwks/rotate`: new keys for every algorithm (`force`: published now, signing
    /// after the promotion delay; `now`: an emergency, signing at once and withdrawing
    /// the previous keys). Audited per key; returns the new keys.
    pub async fn rotate_keys(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        mode: RotationMode,
    ) -> Result<Vec<KeyView>, Error> {
        let created = self
            .keys
            .rotate(&tenant.id, mode)
            .await
            .map_err(OAuthError::from)?;
        let now = self.now();
        let name = if mode == RotationMode::Now {
            "signing_key.rotated_now"
        } else {
            "signing_key.rotated"
        };
        for k in &created {
            self.store
                .audit(
                    caller
                        .event(tenant, now, name)
                        .subject(Some(&k.kid))
                        .details(caller.details(serde_json::json!({ "alg": k.alg.as_str() }))),
                )
                .await;
        }
        Ok(created
            .iter()
            .map(|k| key_view(k, "generated", now))
            .collect())
    }

    /// `GET /clients`: the registrations, by client id, `limit` per page after `after`.
    pub async fn clients(
        &self,
        tenant: &Tenant,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ClientView>, Error> {
        let mut all = self.store.list_clients(&tenant.id).await?;
        all.sort_by(|a, b| a.spec.client_id.cmp(&b.spec.client_id));
        let now = self.now();
        let mut items: Vec<ClientView> = all
            .into_iter()
            .filter(|c| after.is_none_or(|a| c.spec.client_id.as_str() > a))
            .take(limit + 1)
            .map(|c| client_view(c, now, false))
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|c| audit::encode_cursor_text(&c.spec.client_id))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// `GET /clients/{client_id}`.
    pub async fn client(&self, tenant: &Tenant, client_id: &str) -> Result<ClientView, Error> {
        let client = self
            .store
            .get_client(&tenant.id, client_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("client {client_id:?} does not exist")))?;
        Ok(client_view(client, self.now(), true))
    }

    /// `POST /clients`: registers `spec`; a confidential client gets a generated secret,
    /// returned once.
    pub async fn create_client(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        spec: crate::domain::client::ClientSpec,
    ) -> Result<Created, Error> {
        let registered = self
            .clients
            .write_guarded(
                &tenant.id,
                &spec,
                crate::clients::SecretRequest::GenerateIfMissing,
                caller.actor(),
                false,
                &Guard::default(),
            )
            .await
            .map_err(client_error)?;
        Ok(Created {
            client: self.client(tenant, &spec.client_id).await?,
            secret: registered.generated_secret,
        })
    }

    /// `PATCH /clients/{client_id}`: applies an RFC 7396 merge patch to the registration,
    /// unless the client is managed elsewhere or changed since `if_match`.
    pub async fn patch_client(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        client_id: &str,
        patch: &serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<ClientView, Error> {
        let current = self.client(tenant, client_id).await?;
        if let Some(owner) = &current.managed_by {
            return Err(Error::Conflict {
                kind: "managed-elsewhere",
                detail: format!("client {client_id:?} is managed by {owner}: change it there"),
            });
        }
        let mut spec =
            serde_json::to_value(&current.spec).map_err(|e| OAuthError::server(Box::new(e)))?;
        merge_patch(&mut spec, patch);
        let spec: crate::domain::client::ClientSpec = serde_path_to_error::deserialize(spec)
            .map_err(|e| Error::invalid(e.path().to_string(), e.into_inner().to_string()))?;
        if spec.client_id != client_id {
            return Err(Error::Unprocessable {
                field: "client_id".into(),
                detail: "client_id: cannot be changed (create another client instead)".into(),
            });
        }
        self.clients
            .write_guarded(
                &tenant.id,
                &spec,
                crate::clients::SecretRequest::GenerateIfMissing,
                caller.actor(),
                true,
                &Guard {
                    unmanaged_only: true,
                    // Without If-Match, at least the version this patch was applied to.
                    if_match: Some(if_match.unwrap_or(&current.etag)),
                    ..Guard::default()
                },
            )
            .await
            .map_err(client_error)?;
        self.client(tenant, client_id).await
    }

    /// `DELETE /clients/{client_id}`: deletes the client, revokes everything issued to
    /// it and retires its id (as `clients delete` does).
    pub async fn delete_client(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        client_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        let deleted = self
            .clients
            .delete_guarded(
                &tenant.id,
                client_id,
                caller.actor(),
                &Guard {
                    unmanaged_only: true,
                    if_match,
                    ..Guard::default()
                },
            )
            .await
            .map_err(client_error)?;
        deleted
            .map(drop)
            .ok_or_else(|| Error::NotFound(format!("client {client_id:?} does not exist")))
    }

    /// `POST /clients/{client_id}/secret`: a new generated secret, returned once; the
    /// previous one stays valid for `overlap_seconds`.
    pub async fn rotate_client_secret(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        client_id: &str,
        overlap_seconds: u64,
    ) -> Result<secrecy::SecretString, Error> {
        let current = self.client(tenant, client_id).await?;
        if let Some(owner) = &current.managed_by {
            return Err(Error::Conflict {
                kind: "managed-elsewhere",
                detail: format!(
                    "client {client_id:?} is managed by {owner}: rotate it there (annotation gatehouse.dev/rotate-secret)"
                ),
            });
        }
        self.clients
            .rotate_secret(&tenant.id, client_id, None, overlap_seconds, caller.actor())
            .await
            .map_err(client_error)?
            .ok_or_else(|| Error::from(OAuthError::internal("a rotation generated no secret")))
    }

    /// `GET /stats`: the tenant's counts and the tokens issued in the last hour and day
    /// per grant type (this pod's pending counts are added first).
    pub async fn stats(&self, tenant: &Tenant) -> Result<Stats, Error> {
        let now = self.now();
        self.oauth.issued.flush(self.store, now).await?;
        let (clients, users, active_sessions) = self.store.tenant_counts(&tenant.id, now).await?;
        let window = |seconds: i64| {
            now - seconds + 1 - (now - seconds + 1).rem_euclid(crate::oauth::issuance::BUCKET)
        };
        let per_grant = |rows: Vec<(String, i64)>| rows.into_iter().collect();
        Ok(Stats {
            clients,
            users,
            active_sessions,
            tokens_issued_last_hour: per_grant(
                self.store
                    .token_counts_since(&tenant.id, window(3_600))
                    .await?,
            ),
            tokens_issued_last_day: per_grant(
                self.store
                    .token_counts_since(&tenant.id, window(86_400))
                    .await?,
            ),
        })
    }

    /// `GET /stats/health`.
    pub async fn health(&self, tenant: &Tenant) -> Health {
        let reachable = self.store.ping().await.is_ok();
        let schema = if reachable {
            self.store.schema_status().await.ok()
        } else {
            None
        };
        let mut keys = std::collections::BTreeMap::new();
        if reachable && let Ok(stored) = self.store.list_keys(&tenant.id).await {
            let now = self.now();
            for k in stored {
                *keys.entry(k.meta.state(now).as_str()).or_insert(0) += 1;
            }
        }
        Health {
            database: if reachable { "ok" } else { "unavailable" },
            schema_version: schema.as_ref().and_then(|s| s.current_version),
            schema_current: schema
                .as_ref()
                .is_some_and(crate::store::migrate::SchemaStatus::is_current),
            keys,
            redis: match self.oauth.limiter.redis_reachable().await {
                None => "not_configured",
                Some(true) => "ok",
                Some(false) => "unavailable",
            },
        }
    }
}

fn client_view(
    c: crate::store::clients::StoredClient,
    now: UnixTime,
    with_secrets: bool,
) -> ClientView {
    ClientView {
        active_secrets: with_secrets.then(|| c.secrets.iter().filter(|s| s.valid_at(now)).count()),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        managed_by: c.managed_by,
        etag: c.etag,
        spec: c.spec,
    }
}

/// A registry refusal as the API's error.
fn client_error(e: crate::clients::Error) -> Error {
    use crate::clients::Error as E;
    match e {
        E::Invalid(fields) => Error::unprocessable(&fields),
        E::AlreadyExists(id) => Error::Conflict {
            kind: "already-exists",
            detail: format!("client {id:?} already exists"),
        },
        e @ (E::Retired { .. } | E::RetiredUntil { .. }) => Error::Conflict {
            kind: "client-id-retired",
            detail: e.to_string(),
        },
        e @ E::Managed { .. } => Error::Conflict {
            kind: "managed-elsewhere",
            detail: e.to_string(),
        },
        e @ E::Stale(_) => Error::PreconditionFailed(format!(
            "{e}: read it again (GET) and send its ETag in If-Match"
        )),
        E::NotFound(id) | E::NotRetired(id) => {
            Error::NotFound(format!("client {id:?} does not exist"))
        }
        E::UnknownTenant(id) => Error::NotFound(format!("tenant {id:?} does not exist")),
        E::Store(e) => Error::from(e),
    }
}

/// RFC 7396 JSON Merge Patch: `patch`'s members replace `target`'s, `null` removes one,
/// objects merge member by member, anything else replaces the whole.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(into) = target {
        for (name, value) in members {
            if value.is_null() {
                into.remove(name);
            } else {
                merge_patch(
                    into.entry(name.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
    }
}

/// A client just created, and its secret when one was generated (shown once).
#[derive(Debug)]
pub struct Created {
    pub client: ClientView,
    pub secret: Option<secrecy::SecretString>,
}

/// The caller a verified token names: its `client_id`, and for a user's token (one with
/// `auth_time`, from the code flow) the user's `sub`.
fn caller(token: &VerifiedToken, ip: Option<String>) -> Option<Caller> {
    let client_id = token.claim("client_id")?.to_owned();
    let user = token
        .claims
        .get("auth_time")
        .and_then(|_| token.claim("sub"))
        .map(str::to_owned);
    Some(Caller {
        client_id,
        user,
        ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_has_its_own_gatehouse_scope() {
        let scopes: std::collections::BTreeSet<&str> =
            Permission::ALL.iter().map(|p| p.scope()).collect();
        assert_eq!(scopes.len(), Permission::ALL.len());
        assert!(scopes.iter().all(|s| s.starts_with("gatehouse:")));
    }

    #[test]
    fn a_users_token_names_the_user_a_client_token_only_the_client() {
        let token = |claims: serde_json::Value| VerifiedToken {
            scheme: TokenScheme::Bearer,
            claims: claims.into(),
        };
        let service = token(serde_json::json!({"client_id": "ci", "sub": "ci"}));
        assert_eq!(
            caller(&service, None),
            Some(Caller {
                client_id: "ci".into(),
                user: None,
                ip: None
            })
        );
        let user = token(serde_json::json!({"client_id": "desk", "sub": "u-1", "auth_time": 1}));
        assert_eq!(caller(&user, None).unwrap().user.as_deref(), Some("u-1"));
        assert_eq!(caller(&token(serde_json::json!({"sub": "x"})), None), None);
    }

    #[test]
    fn a_callers_events_carry_the_user_and_the_api() {
        let c = Caller {
            client_id: "desk".into(),
            user: Some("u-1".into()),
            ip: Some("192.0.2.1".into()),
        };
        assert_eq!(
            c.details(serde_json::json!({"alg": "ES256"})),
            serde_json::json!({"alg": "ES256", "user": "u-1", "via": "management-api"})
        );
    }
}
