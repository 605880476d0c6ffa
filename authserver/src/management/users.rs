//! The Management API's user operations: search, create, delete, set a password, reset
//! the second factor, list and revoke consents. Users are addressed by their stable
//! `user_id` (the `sub` of public subjects), never by a username that can be reused.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{Caller, Error, Management, Page, rfc3339};
use crate::domain::tenant::Tenant;
use crate::domain::user::NewUser;
use crate::store::users::StoredUser;

/// A user as the API shows it: never the password hash.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UserView {
    /// The version, for `ETag` / `If-Match` (a header, not in the body).
    #[serde(skip)]
    pub etag: String,
    pub user_id: String,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Profile claims (`name`, `given_name`, …).
    pub profile: serde_json::Map<String, serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<StoredUser> for UserView {
    fn from(u: StoredUser) -> Self {
        Self {
            etag: crate::store::users::user_etag(&u),
            user_id: u.user_id,
            username: u.username,
            email: u.email,
            email_verified: u.email_verified,
            profile: u.profile,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// The body of `POST /users`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub profile: serde_json::Map<String, serde_json::Value>,
    /// Checked against the tenant's password policy (length, breach list); stored only as
    /// an Argon2id hash.
    pub password: String,
}

/// The body of `POST /users/{user_id}/password`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub password: String,
}

/// A user's consent to a client.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ConsentView {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub granted_at: String,
    pub updated_at: String,
}

/// A user's signed-in session in one browser: never the browser's cookie or its hash.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SessionView {
    /// The `sid` of ID tokens issued in it.
    pub session_id: String,
    pub auth_time: String,
    /// RFC 8176 method references (`pwd`, `otp`, `mfa`).
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
    /// It ends at the earlier of the two.
    pub idle_expires_at: String,
    pub expires_at: String,
}

/// A user-registry refusal as the API's error.
fn user_error(e: crate::users::Error) -> Error {
    use crate::users::Error as E;
    match e {
        E::Invalid(fields) => Error::unprocessable(&fields),
        E::AlreadyExists(name) => Error::Conflict {
            kind: "already-exists",
            detail: format!("user {name:?} already exists"),
        },
        E::NotFound(name) => Error::NotFound(format!("user {name:?} does not exist")),
        E::UnknownTenant(id) => Error::NotFound(format!("tenant {id:?} does not exist")),
        E::Store(e) => Error::from(e),
        e @ (E::Hash(_) | E::Join(_) | E::Busy) => {
            Error::Server(crate::oauth::OAuthError::server(Box::new(e)))
        }
    }
}

impl Management<'_> {
    async fn stored_user(&self, tenant: &Tenant, user_id: &str) -> Result<StoredUser, Error> {
        self.store
            .get_user(&tenant.id, user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user_id:?} does not exist")))
    }

    /// `GET /users`: users whose username or e-mail starts with `prefix` (any case), by
    /// username, `limit` per page after the username `after`.
    pub async fn users(
        &self,
        tenant: &Tenant,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<UserView>, Error> {
        let prefix = prefix.map(str::to_lowercase);
        let mut all = self.users.list(&tenant.id).await.map_err(user_error)?;
        all.sort_by(|a, b| a.username.cmp(&b.username));
        let mut items: Vec<UserView> = all
            .into_iter()
            .filter(|u| after.is_none_or(|a| u.username.as_str() > a))
            .filter(|u| {
                prefix.as_deref().is_none_or(|p| {
                    u.username.to_lowercase().starts_with(p)
                        || u.email
                            .as_deref()
                            .is_some_and(|e| e.to_lowercase().starts_with(p))
                })
            })
            .take(limit + 1)
            .map(UserView::from)
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|u| super::audit::encode_cursor_text(&u.username))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// `GET /users/{user_id}`.
    pub async fn user(&self, tenant: &Tenant, user_id: &str) -> Result<UserView, Error> {
        Ok(self.stored_user(tenant, user_id).await?.into())
    }

    /// `POST /users`: creates a user with a password under the tenant's policy.
    pub async fn create_user(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        body: NewUserBody,
    ) -> Result<UserView, Error> {
        let user = NewUser {
            username: body.username,
            email: body.email,
            email_verified: body.email_verified,
            profile: body.profile,
        };
        let password = SecretString::from(body.password);
        let stored = self
            .users
            .create(&tenant.id, &user, &password, caller.actor())
            .await
            .map_err(user_error)?;
        Ok(stored.into())
    }

    /// `PATCH /users/{user_id}`: an RFC 7396 merge patch of `email`, `email_verified`
    /// and `profile` (the username and password have their own rules and operations),
    /// unless the user changed since `if_match`.
    pub async fn patch_user(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        user_id: &str,
        patch: &serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<UserView, Error> {
        #[derive(Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Editable {
            email: Option<String>,
            email_verified: bool,
            profile: serde_json::Map<String, serde_json::Value>,
        }
        let mut user = self.stored_user(tenant, user_id).await?;
        let version = crate::store::users::user_etag(&user);
        let mut editable = serde_json::to_value(Editable {
            email: user.email.clone(),
            email_verified: user.email_verified,
            profile: user.profile.clone(),
        })
        .map_err(|e| Error::Server(crate::oauth::OAuthError::server(Box::new(e))))?;
        super::merge_patch(&mut editable, patch);
        let edited: Editable = serde_path_to_error::deserialize(editable)
            .map_err(|e| Error::invalid(e.path().to_string(), e.into_inner().to_string()))?;
        let candidate = NewUser {
            username: user.username.clone(),
            email: edited.email.clone(),
            email_verified: edited.email_verified,
            profile: edited.profile.clone(),
        };
        let problems = candidate.validate();
        if !problems.is_empty() {
            return Err(user_error(crate::users::Error::Invalid(problems)));
        }
        user.email = edited.email;
        user.email_verified = edited.email_verified;
        user.profile = edited.profile;
        self.store
            .update_user_profile(&user, self.now(), if_match.unwrap_or(&version))
            .await
            .map_err(|e| match e {
                crate::store::Error::Stale => Error::PreconditionFailed(format!(
                    "user {user_id:?} changed since it was read: read it again (GET) and send \
                     its ETag in If-Match"
                )),
                crate::store::Error::NotFound => {
                    Error::NotFound(format!("user {user_id:?} does not exist"))
                }
                e => Error::from(e),
            })?;
        self.store
            .audit(
                caller
                    .event(tenant, self.now(), "user.updated")
                    .subject(Some(user_id))
                    .details(caller.details(serde_json::json!({
                        "fields": patch.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
                    }))),
            )
            .await;
        self.user(tenant, user_id).await
    }

    /// `DELETE /users/{user_id}`: the user and everything of theirs (sessions, grants,
    /// consents, second factor).
    pub async fn delete_user(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        user_id: &str,
    ) -> Result<(), Error> {
        let user = self.stored_user(tenant, user_id).await?;
        self.users
            .delete(&tenant.id, &user.username, caller.actor())
            .await
            .map_err(user_error)?;
        Ok(())
    }

    /// `POST /users/{user_id}/password`: a new password under the policy; the user's
    /// sessions end and their grants are revoked (`sessions.revoke_on_credential_reset`).
    pub async fn set_user_password(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        user_id: &str,
        password: String,
    ) -> Result<UserView, Error> {
        let user = self.stored_user(tenant, user_id).await?;
        let password = SecretString::from(password);
        let stored = self
            .users
            .set_password(&tenant.id, &user.username, &password, caller.actor())
            .await
            .map_err(user_error)?;
        Ok(stored.into())
    }

    /// `DELETE /users/{user_id}/mfa`: removes the second factor (TOTP and recovery
    /// codes); `false` when there was none.
    pub async fn reset_user_mfa(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        user_id: &str,
    ) -> Result<bool, Error> {
        let user = self.stored_user(tenant, user_id).await?;
        self.mfa
            .remove(&tenant.id, &user.user_id, &caller.client_id)
            .await
            .map_err(|e| Error::Server(crate::oauth::OAuthError::server(Box::new(e))))
    }

    /// `GET /users/{user_id}/sessions`: the sessions still valid, newest first.
    pub async fn user_sessions(
        &self,
        tenant: &Tenant,
        user_id: &str,
    ) -> Result<Vec<SessionView>, Error> {
        let user = self.stored_user(tenant, user_id).await?;
        let now = self.now();
        Ok(self
            .store
            .list_user_sessions(&tenant.id, &user.user_id)
            .await?
            .into_iter()
            .filter(|s| s.is_valid(now))
            .map(|s| SessionView {
                session_id: s.sid,
                auth_time: rfc3339(s.auth_time),
                amr: s.amr,
                acr: s.acr,
                created_at: rfc3339(s.created_at),
                last_seen_at: rfc3339(s.last_seen_at),
                idle_expires_at: rfc3339(s.idle_expires_at),
                expires_at: rfc3339(s.expires_at),
            })
            .collect())
    }

    /// `DELETE /users/{user_id}/sessions[/{session_id}]`: signs the user out of one
    /// session or of every browser. Tokens already issued stay valid until they expire
    /// (revoke the consent, or set a password, to revoke them too). How many ended.
    pub async fn end_user_sessions(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        user_id: &str,
        session_id: Option<&str>,
    ) -> Result<u64, Error> {
        let user = self.stored_user(tenant, user_id).await?;
        let ended = match session_id {
            Some(sid) => {
                let theirs = self
                    .store
                    .get_session(&tenant.id, sid)
                    .await?
                    .is_some_and(|s| s.user_id == user.user_id);
                if !theirs {
                    return Err(Error::NotFound(format!(
                        "user {user_id:?} has no session {sid:?}"
                    )));
                }
                u64::from(self.store.delete_session(&tenant.id, sid).await?)
            }
            None => {
                self.store
                    .delete_user_sessions(&tenant.id, &user.user_id)
                    .await?
            }
        };
        if ended > 0 {
            self.store
                .audit(
                    caller
                        .event(tenant, self.now(), "session.revoked")
                        .subject(Some(&user.user_id))
                        .details(caller.details(serde_json::json!({
                            "sessions": ended,
                            "sid": session_id,
                            "reason": "management-api",
                        }))),
                )
                .await;
        }
        Ok(ended)
    }

    /// `GET /users/{user_id}/consents`.
    pub async fn user_consents(
        &self,
        tenant: &Tenant,
        user_id: &str,
    ) -> Result<Vec<ConsentView>, Error> {
        let user = self.stored_user(tenant, user_id).await?;
        let consents = self
            .users
            .consents_of(&tenant.id, &user.user_id)
            .await
            .map_err(user_error)?;
        Ok(consents
            .into_iter()
            .map(|c| ConsentView {
                client_id: c.client_id,
                scopes: c.scopes,
                granted_at: rfc3339(c.created_at),
                updated_at: rfc3339(c.updated_at),
            })
            .collect())
    }

    /// `DELETE /users/{user_id}/consents/{client_id}`: revokes the consent and the
    /// user's live grants for that client.
    pub async fn revoke_user_consent(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        user_id: &str,
        client_id: &str,
    ) -> Result<(), Error> {
        let user = self.stored_user(tenant, user_id).await?;
        let existed = self
            .users
            .revoke_consent_of(&tenant.id, &user.user_id, client_id, caller.actor())
            .await
            .map_err(user_error)?;
        if existed {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "user {user_id:?} has no consent for client {client_id:?}"
            )))
        }
    }
}
