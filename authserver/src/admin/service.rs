//! The `Admin` service: validate the request into domain types, call one service
//! function, map the outcome (bad input → INVALID_ARGUMENT, absent → NOT_FOUND, the rest
//! → INTERNAL with the detail logged, not returned).

use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};
use tonic::{Request, Response, Status};

use super::convert::{
    algorithm, client_spec, client_to_proto, field_errors, invalid, key_policy, key_to_proto,
    new_user, required, user_field_errors, user_to_proto,
};
use super::proto::{self, admin_server::Admin};
use crate::clients::{self, Actor, ClientService, SecretRequest};
use crate::clock::Clock;
use crate::domain::policy::TenantPolicy;
use crate::domain::signing_key::{RotationMode, next_rotation};
use crate::domain::tenant::{self, TenantSpec};
use crate::federation::FederationService;
use crate::keys::{self, KeyService};
use crate::mfa::{self, MfaService};
use crate::store::audit::AuditEvent;
use crate::store::clients::{Guard, UpsertOutcome};
use crate::store::users::StoredUser;
use crate::store::{self, Store};
use crate::users::{self, UserService};

/// State of the admin API.
#[derive(Debug, Clone)]
pub struct AdminService {
    pub store: Store,
    pub keys: Arc<KeyService>,
    pub clients: Arc<ClientService>,
    pub users: Arc<UserService>,
    pub mfa: Arc<MfaService>,
    /// The sign-ins' own: checks reuse (and fill) their document caches.
    pub federation: Arc<FederationService>,
    pub clock: Arc<dyn Clock>,
}

/// A failure on our side: UNAVAILABLE when the database is (the operator retries that
/// as "not reachable now"), otherwise logged and a generic INTERNAL.
fn internal(e: &(dyn std::error::Error + 'static)) -> Status {
    if store::is_unavailable(e) {
        tracing::debug!(error = %e, "admin API call refused: database unavailable");
        return Status::unavailable("the database is unavailable, retry later");
    }
    tracing::error!(error = %e, "admin API call failed");
    Status::internal("internal error")
}

fn store_err(e: &store::Error) -> Status {
    internal(e)
}

fn clients_err(e: clients::Error) -> Status {
    match e {
        clients::Error::Invalid(errors) => field_errors(&errors),
        clients::Error::AlreadyExists(id) => {
            Status::already_exists(format!("client {id:?} already exists"))
        }
        clients::Error::NotFound(id) => Status::not_found(format!("client {id:?} does not exist")),
        clients::Error::UnknownTenant(id) => {
            Status::not_found(format!("tenant {id:?} does not exist"))
        }
        clients::Error::NotRetired(id) => {
            Status::not_found(format!("client id {id:?} is not retired"))
        }
        // The one FAILED_PRECONDITION of the client calls (admin.proto): the id is retired.
        e @ (clients::Error::Retired { .. } | clients::Error::RetiredUntil { .. }) => {
            Status::failed_precondition(e.to_string())
        }
        e @ (clients::Error::Managed { .. } | clients::Error::Stale(_)) => {
            Status::aborted(e.to_string())
        }
        clients::Error::Store(e) => store_err(&e),
    }
}

fn users_err(e: users::Error) -> Status {
    match e {
        users::Error::Invalid(errors) => user_field_errors(&errors),
        users::Error::AlreadyExists(name) => {
            Status::already_exists(format!("user {name:?} already exists"))
        }
        users::Error::NotFound(name) => Status::not_found(format!("user {name:?} does not exist")),
        users::Error::UnknownTenant(id) => {
            Status::not_found(format!("tenant {id:?} does not exist"))
        }
        other => internal(&other),
    }
}

/// Like [`users_err`], naming the tenant of a user that does not exist.
fn user_lookup_err(e: users::Error, tenant_id: &str) -> Status {
    match e {
        users::Error::NotFound(name) => Status::not_found(format!(
            "user {name:?} does not exist in tenant {tenant_id:?}"
        )),
        other => users_err(other),
    }
}

fn mfa_err(e: mfa::MfaError) -> Status {
    match e {
        mfa::MfaError::UnknownUser => Status::not_found("user does not exist"),
        other => internal(&other),
    }
}

fn keys_err(e: keys::Error) -> Status {
    match e {
        keys::Error::UnknownTenant(id) => {
            Status::not_found(format!("tenant {id:?} does not exist"))
        }
        keys::Error::Crypto(e) => invalid("private_key_pem", e),
        other => internal(&other),
    }
}

fn tenant_to_proto(t: &tenant::Tenant) -> proto::Tenant {
    proto::Tenant {
        id: t.id.clone(),
        issuer: t.issuer.clone(),
        display_name: t.display_name.clone(),
        settings_json: t.settings.to_string(),
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

impl AdminService {
    /// The user with this username, or NOT_FOUND naming it.
    async fn find_user(&self, tenant_id: &str, username: &str) -> Result<StoredUser, Status> {
        self.users
            .get_by_username(tenant_id, username)
            .await
            .map_err(users_err)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "user {username:?} does not exist in tenant {tenant_id:?}"
                ))
            })
    }

    async fn user_mfa(&self, user: &StoredUser) -> Result<proto::UserMfa, Status> {
        let s = self
            .mfa
            .status(&user.tenant_id, &user.user_id)
            .await
            .map_err(mfa_err)?;
        Ok(proto::UserMfa {
            tenant_id: user.tenant_id.clone(),
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            totp_enrolled: s.totp_enrolled,
            recovery_codes_left: u32::try_from(s.recovery_codes_left).unwrap_or(u32::MAX),
            mfa_required: s.required_for_user,
        })
    }

    async fn audit(&self, tenant_id: &str, event: &str, subject: &str) {
        let e = AuditEvent::new(tenant_id, self.clock.now(), event)
            .actor(Some("admin-api"))
            .subject(Some(subject));
        self.store.audit(e).await;
    }

    async fn key_set(
        &self,
        tenant_id: &str,
        policy: &crate::domain::signing_key::KeyPolicy,
    ) -> Result<proto::SigningKeySet, Status> {
        let now = self.clock.now();
        let stored = self
            .store
            .list_keys(tenant_id)
            .await
            .map_err(|e| store_err(&e))?;
        let metas: Vec<_> = stored.iter().map(|k| k.meta.clone()).collect();
        Ok(proto::SigningKeySet {
            keys: stored
                .iter()
                .map(|k| key_to_proto(&k.meta, &k.source, now))
                .collect(),
            next_rotation: next_rotation(&metas, policy, now),
        })
    }

    async fn require_tenant(&self, id: &str) -> Result<(), Status> {
        match self.store.get_tenant(id).await.map_err(|e| store_err(&e))? {
            Some(_) => Ok(()),
            None => Err(Status::not_found(format!("tenant {id:?} does not exist"))),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn health(
        &self,
        _req: Request<proto::HealthRequest>,
    ) -> Result<Response<proto::HealthResponse>, Status> {
        let reachable = self.store.ping().await.is_ok();
        let status = if reachable {
            self.store.schema_status().await.ok()
        } else {
            None
        };
        Ok(Response::new(proto::HealthResponse {
            database_reachable: reachable,
            schema_current: status
                .as_ref()
                .is_some_and(store::migrate::SchemaStatus::is_current),
            schema_version: status.as_ref().and_then(|s| s.current_version).unwrap_or(0),
            pending_migrations: status
                .map(|s| s.pending.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
        }))
    }

    async fn upsert_tenant(
        &self,
        req: Request<proto::UpsertTenantRequest>,
    ) -> Result<Response<proto::UpsertTenantResponse>, Status> {
        let r = req.into_inner();
        tenant::validate_id(&r.id).map_err(|e| invalid("id", e))?;
        let issuer = r.issuer.trim_end_matches('/').to_owned();
        tenant::validate_issuer(&issuer, false).map_err(|e| invalid("issuer", e))?;
        let settings: serde_json::Value = if r.settings_json.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(&r.settings_json)
                .map_err(|e| invalid("settings_json", format!("not JSON: {e}")))?
        };
        if !settings.is_object() {
            return Err(invalid("settings_json", "must be a JSON object"));
        }
        crate::domain::policy::TenantPolicy::parse(&settings)
            .map_err(|e| invalid("settings_json", e))?;
        let spec = TenantSpec {
            display_name: if r.display_name.is_empty() {
                r.id.clone()
            } else {
                r.display_name
            },
            id: r.id,
            issuer,
        };
        let now = self.clock.now();
        let changed = self
            .store
            .upsert_tenant(&spec, now)
            .await
            .map_err(|e| match e {
                store::Error::Conflict { .. } => Status::already_exists(format!(
                    "issuer {:?} is already used by another tenant",
                    spec.issuer
                )),
                other => store_err(&other),
            })?;
        let settings_changed = self
            .store
            .set_tenant_settings(&spec.id, &settings, now)
            .await
            .map_err(|e| store_err(&e))?;
        if changed || settings_changed {
            self.audit(&spec.id, "tenant.upserted", &spec.id).await;
            tracing::info!(tenant = %spec.id, issuer = %spec.issuer, "tenant upserted via admin API");
        }
        let t = self
            .store
            .get_tenant(&spec.id)
            .await
            .map_err(|e| store_err(&e))?
            .ok_or_else(|| Status::internal("tenant vanished"))?;
        Ok(Response::new(proto::UpsertTenantResponse {
            tenant: Some(tenant_to_proto(&t)),
            changed: changed || settings_changed,
        }))
    }

    async fn get_tenant(
        &self,
        req: Request<proto::GetTenantRequest>,
    ) -> Result<Response<proto::Tenant>, Status> {
        let id = req.into_inner().id;
        required("id", &id)?;
        match self
            .store
            .get_tenant(&id)
            .await
            .map_err(|e| store_err(&e))?
        {
            Some(t) => Ok(Response::new(tenant_to_proto(&t))),
            None => Err(Status::not_found(format!("tenant {id:?} does not exist"))),
        }
    }

    async fn delete_tenant(
        &self,
        req: Request<proto::DeleteTenantRequest>,
    ) -> Result<Response<proto::DeleteTenantResponse>, Status> {
        let id = req.into_inner().id;
        required("id", &id)?;
        let deleted = self
            .store
            .delete_tenant(&id)
            .await
            .map_err(|e| store_err(&e))?;
        if deleted {
            self.audit(&id, "tenant.deleted", &id).await;
            tracing::info!(tenant = %id, "tenant deleted via admin API");
        }
        Ok(Response::new(proto::DeleteTenantResponse { deleted }))
    }

    async fn check_upstreams(
        &self,
        req: Request<proto::CheckUpstreamsRequest>,
    ) -> Result<Response<proto::CheckUpstreamsResponse>, Status> {
        let tenant_id = req.into_inner().tenant_id;
        required("tenant_id", &tenant_id)?;
        let tenant = self
            .store
            .get_tenant(&tenant_id)
            .await
            .map_err(|e| store_err(&e))?
            .ok_or_else(|| Status::not_found(format!("tenant {tenant_id:?} does not exist")))?;
        let providers = &TenantPolicy::of(&tenant).federation.providers;
        let outcomes = self.federation.check_all(providers).await;
        let checks = providers
            .iter()
            .zip(outcomes)
            .map(|(p, outcome)| {
                if let Err(why) = &outcome {
                    tracing::warn!(tenant = %tenant_id, provider = %p.id, error = %why, "upstream check failed");
                }
                let (ok, message) = match outcome {
                    Ok(m) => (true, m),
                    Err(m) => (false, m),
                };
                proto::UpstreamCheck {
                    provider_id: p.id.clone(),
                    kind: p.kind.as_str().to_owned(),
                    ok,
                    message,
                }
            })
            .collect();
        Ok(Response::new(proto::CheckUpstreamsResponse { checks }))
    }

    async fn upsert_client(
        &self,
        req: Request<proto::UpsertClientRequest>,
    ) -> Result<Response<proto::UpsertClientResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        let spec = client_spec(r.spec.ok_or_else(|| invalid("spec", "is required"))?)?;
        let secret = match r.secret {
            Some(proto::upsert_client_request::Secret::SuppliedSecret(s)) => {
                SecretRequest::Supplied(SecretString::from(s))
            }
            Some(proto::upsert_client_request::Secret::ExpectSecretFingerprint(f)) => {
                SecretRequest::Expect(f)
            }
            Some(proto::upsert_client_request::Secret::GenerateIfMissing(_)) | None => {
                SecretRequest::GenerateIfMissing
            }
        };
        let owner = if r.managed_by.is_empty() {
            "the admin API"
        } else {
            r.managed_by.as_str()
        };
        let registered = self
            .clients
            .write_guarded(
                &r.tenant_id,
                &spec,
                secret,
                Actor::AdminApi,
                true,
                &Guard {
                    managed_by: Some(owner),
                    ..Guard::default()
                },
            )
            .await
            .map_err(clients_err)?;
        let stored = self
            .store
            .get_client(&r.tenant_id, &spec.client_id)
            .await
            .map_err(|e| store_err(&e))?
            .ok_or_else(|| Status::internal("client vanished"))?;
        Ok(Response::new(proto::UpsertClientResponse {
            outcome_name: match registered.outcome {
                UpsertOutcome::Created => "created",
                UpsertOutcome::Updated => "updated",
                UpsertOutcome::Unchanged => "unchanged",
            }
            .to_owned(),
            outcome: match registered.outcome {
                UpsertOutcome::Created => proto::UpsertOutcome::Created,
                UpsertOutcome::Updated => proto::UpsertOutcome::Updated,
                UpsertOutcome::Unchanged => proto::UpsertOutcome::Unchanged,
            }
            .into(),
            generated_secret: registered
                .generated_secret
                .map(|s| s.expose_secret().to_owned()),
            client: Some(client_to_proto(&stored, self.clock.now())),
        }))
    }

    async fn get_client(
        &self,
        req: Request<proto::GetClientRequest>,
    ) -> Result<Response<proto::Client>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("client_id", &r.client_id)?;
        match self
            .store
            .get_client(&r.tenant_id, &r.client_id)
            .await
            .map_err(|e| store_err(&e))?
        {
            Some(c) => Ok(Response::new(client_to_proto(&c, self.clock.now()))),
            None => Err(Status::not_found(format!(
                "client {:?} does not exist in tenant {:?}",
                r.client_id, r.tenant_id
            ))),
        }
    }

    async fn delete_client(
        &self,
        req: Request<proto::DeleteClientRequest>,
    ) -> Result<Response<proto::DeleteClientResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("client_id", &r.client_id)?;
        let retired = self
            .clients
            .delete(&r.tenant_id, &r.client_id, Actor::AdminApi)
            .await
            .map_err(clients_err)?;
        Ok(Response::new(proto::DeleteClientResponse {
            deleted: retired.is_some(),
            retired_until: retired.map_or(0, |r| r.reusable_at),
        }))
    }

    async fn purge_retired_client(
        &self,
        req: Request<proto::PurgeRetiredClientRequest>,
    ) -> Result<Response<proto::PurgeRetiredClientResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("client_id", &r.client_id)?;
        self.clients
            .purge_retired(&r.tenant_id, &r.client_id, Actor::AdminApi)
            .await
            .map_err(clients_err)?;
        Ok(Response::new(proto::PurgeRetiredClientResponse {}))
    }

    async fn rotate_client_secret(
        &self,
        req: Request<proto::RotateClientSecretRequest>,
    ) -> Result<Response<proto::RotateClientSecretResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("client_id", &r.client_id)?;
        let generated = self
            .clients
            .rotate_secret(
                &r.tenant_id,
                &r.client_id,
                r.supplied_secret.map(SecretString::from),
                r.overlap_seconds,
                Actor::AdminApi,
            )
            .await
            .map_err(clients_err)?;
        Ok(Response::new(proto::RotateClientSecretResponse {
            generated_secret: generated.map(|s| s.expose_secret().to_owned()),
            previous_secret_expires_at: self
                .clock
                .now()
                .saturating_add(i64::try_from(r.overlap_seconds).unwrap_or(i64::MAX)),
        }))
    }

    async fn list_signing_keys(
        &self,
        req: Request<proto::ListSigningKeysRequest>,
    ) -> Result<Response<proto::SigningKeySet>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        self.require_tenant(&r.tenant_id).await?;
        let policy = key_policy(r.policy, self.keys.policy())?;
        Ok(Response::new(self.key_set(&r.tenant_id, &policy).await?))
    }

    async fn rotate_signing_keys(
        &self,
        req: Request<proto::RotateSigningKeysRequest>,
    ) -> Result<Response<proto::RotateSigningKeysResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        let mode = match (r.rotation(), r.mode.as_str()) {
            (proto::RotationMode::Bootstrap, _)
            | (proto::RotationMode::Unspecified, "bootstrap") => RotationMode::Bootstrap,
            (proto::RotationMode::IfDue, _) | (proto::RotationMode::Unspecified, "if_due") => {
                RotationMode::IfDue
            }
            (proto::RotationMode::Force, _) | (proto::RotationMode::Unspecified, "force" | "") => {
                RotationMode::Force
            }
            (proto::RotationMode::Now, _) | (proto::RotationMode::Unspecified, "now") => {
                RotationMode::Now
            }
            (proto::RotationMode::Unspecified, other) => {
                return Err(invalid(
                    "mode",
                    format!("unknown mode {other:?} (expected bootstrap, if_due, force or now)"),
                ));
            }
        };
        let policy = key_policy(r.policy, self.keys.policy())?;
        let created = self
            .keys
            .rotate_with(&r.tenant_id, mode, &policy)
            .await
            .map_err(keys_err)?;
        let now = self.clock.now();
        // An emergency rotation also withdrew the previous keys: say so in the trail.
        let event = if mode == RotationMode::Now {
            "signing_key.rotated_now"
        } else {
            "signing_key.rotated"
        };
        for k in &created {
            self.audit(&r.tenant_id, event, &k.kid).await;
        }
        Ok(Response::new(proto::RotateSigningKeysResponse {
            created: created
                .iter()
                .map(|k| key_to_proto(k, "generated", now))
                .collect(),
            key_set: Some(self.key_set(&r.tenant_id, &policy).await?),
        }))
    }

    async fn import_signing_key(
        &self,
        req: Request<proto::ImportSigningKeyRequest>,
    ) -> Result<Response<proto::ImportSigningKeyResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        let alg = algorithm("alg", &r.alg)?;
        let der = crate::crypto::pkcs8_from_pem(&r.private_key_pem)
            .map_err(|e| invalid("private_key_pem", e))?;
        let policy = key_policy(r.policy, self.keys.policy())?;
        let (kid, imported) = self
            .keys
            .import(&r.tenant_id, alg, &der, &policy)
            .await
            .map_err(keys_err)?;
        if imported {
            self.audit(&r.tenant_id, "signing_key.imported", &kid).await;
        }
        Ok(Response::new(proto::ImportSigningKeyResponse {
            kid,
            imported,
        }))
    }

    async fn create_user(
        &self,
        req: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        let password = SecretString::from(r.password.clone());
        let (tenant_id, user) = new_user(r)?;
        let created = self
            .users
            .create(&tenant_id, &user, &password, Actor::AdminApi)
            .await
            .map_err(users_err)?;
        Ok(Response::new(user_to_proto(&created)))
    }

    async fn get_user(
        &self,
        req: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        let found = if r.user_id.is_empty() {
            required("username", &r.username)
                .map_err(|_| invalid("user_id", "user_id or username is required"))?;
            self.users.get_by_username(&r.tenant_id, &r.username).await
        } else {
            self.store
                .get_user(&r.tenant_id, &r.user_id)
                .await
                .map_err(users::Error::from)
        }
        .map_err(users_err)?;
        match found {
            Some(u) => Ok(Response::new(user_to_proto(&u))),
            None => Err(Status::not_found(format!(
                "user {:?} does not exist in tenant {:?}",
                if r.user_id.is_empty() {
                    &r.username
                } else {
                    &r.user_id
                },
                r.tenant_id
            ))),
        }
    }

    async fn delete_user(
        &self,
        req: Request<proto::DeleteUserRequest>,
    ) -> Result<Response<proto::DeleteUserResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("username", &r.username)?;
        let deleted = self
            .users
            .delete(&r.tenant_id, &r.username, Actor::AdminApi)
            .await
            .map_err(users_err)?;
        Ok(Response::new(proto::DeleteUserResponse { deleted }))
    }

    async fn set_user_password(
        &self,
        req: Request<proto::SetUserPasswordRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("username", &r.username)?;
        required("password", &r.password)?;
        let password = SecretString::from(r.password);
        let user = self
            .users
            .set_password(&r.tenant_id, &r.username, &password, Actor::AdminApi)
            .await
            .map_err(users_err)?;
        Ok(Response::new(user_to_proto(&user)))
    }

    async fn reset_user_mfa(
        &self,
        req: Request<proto::ResetUserMfaRequest>,
    ) -> Result<Response<proto::ResetUserMfaResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("username", &r.username)?;
        let user = self.find_user(&r.tenant_id, &r.username).await?;
        let removed = self
            .mfa
            .remove(&r.tenant_id, &user.user_id, Actor::AdminApi.as_str())
            .await
            .map_err(mfa_err)?;
        Ok(Response::new(proto::ResetUserMfaResponse {
            removed,
            mfa: Some(self.user_mfa(&user).await?),
        }))
    }

    async fn set_user_mfa_required(
        &self,
        req: Request<proto::SetUserMfaRequiredRequest>,
    ) -> Result<Response<proto::UserMfa>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("username", &r.username)?;
        let flag = r
            .required
            .ok_or_else(|| invalid("required", "is required (true or false)"))?;
        let user = self.find_user(&r.tenant_id, &r.username).await?;
        self.mfa
            .set_required(&r.tenant_id, &user.user_id, flag, Actor::AdminApi.as_str())
            .await
            .map_err(mfa_err)?;
        Ok(Response::new(self.user_mfa(&user).await?))
    }

    async fn list_user_consents(
        &self,
        req: Request<proto::ListUserConsentsRequest>,
    ) -> Result<Response<proto::ListUserConsentsResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("username", &r.username)?;
        let consents = self
            .users
            .consents(&r.tenant_id, &r.username)
            .await
            .map_err(|e| user_lookup_err(e, &r.tenant_id))?;
        Ok(Response::new(proto::ListUserConsentsResponse {
            consents: consents
                .into_iter()
                .map(|c| proto::Consent {
                    client_id: c.client_id,
                    scopes: c.scopes,
                    granted_at: c.created_at,
                    updated_at: c.updated_at,
                })
                .collect(),
        }))
    }

    async fn revoke_user_consent(
        &self,
        req: Request<proto::RevokeUserConsentRequest>,
    ) -> Result<Response<proto::RevokeUserConsentResponse>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("username", &r.username)?;
        required("client_id", &r.client_id)?;
        let revoked = self
            .users
            .revoke_consent(&r.tenant_id, &r.username, &r.client_id, Actor::AdminApi)
            .await
            .map_err(|e| user_lookup_err(e, &r.tenant_id))?;
        Ok(Response::new(proto::RevokeUserConsentResponse { revoked }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> store::Error {
        store::Error::Unavailable(store::Unavailable::TimedOut(
            std::time::Duration::from_secs(1),
        ))
    }

    #[test]
    fn a_database_outage_is_unavailable_so_the_operator_retries_it() {
        assert_eq!(store_err(&down()).code(), tonic::Code::Unavailable);
        assert_eq!(
            clients_err(clients::Error::Store(down())).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            store_err(&store::Error::Corrupt("x".into())).code(),
            tonic::Code::Internal
        );
    }
}
