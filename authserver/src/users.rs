//! The user service: validated creation, password setting under the password policy
//! (length limits, breached-password check), deletion, and password verification with a
//! transparent rehash when the stored Argon2 parameters differ from the configured ones.
//! Consents: a user's list, and revocation, which also revokes every live grant of the
//! user for that client (the admin API, the CLI and the account page all come here).
//! Audit events name the user, never the password or a token.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use crate::breach::{BreachChecker, Verdict};
use crate::clients::Actor;
use crate::clock::Clock;
use crate::config::{BreachPolicy, PasswordSettings};
use crate::crypto::password;
use crate::domain::client::{FieldError, Invalid, validate_client_id};
use crate::domain::user::{NewUser, check_password_length, validate_email};
use crate::store::audit::AuditEvent;
use crate::store::consents::Consent;
use crate::store::sessions::{AccessEnded, EndAccess};
use crate::store::users::StoredUser;
use crate::store::{self, Store};

/// The message for a password found in a known breach (policy `reject`).
pub const BREACHED_MESSAGE: &str = "this password appears in a known data breach; choose another";

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid user: {}", format_fields(.0))]
    Invalid(Vec<FieldError>),
    #[error("user {0:?} already exists")]
    AlreadyExists(String),
    #[error("user {0:?} does not exist")]
    NotFound(String),
    #[error("tenant {0:?} does not exist")]
    UnknownTenant(String),
    #[error(transparent)]
    Hash(#[from] password::Error),
    #[error("password hashing task failed: {0}")]
    Join(#[source] tokio::task::JoinError),
    /// The hashing slots were closed (only at shutdown).
    #[error("password hashing is unavailable")]
    Busy,
    #[error(transparent)]
    Store(#[from] store::Error),
}

fn format_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The user's preferred language: the `locale` profile claim (OIDC Core §5.1), if set.
pub fn preferred_locale(user: &StoredUser) -> Option<&str> {
    user.profile
        .get("locale")
        .and_then(serde_json::Value::as_str)
        .filter(|l| !l.is_empty())
}

fn check_client_id(client_id: &str) -> Result<()> {
    validate_client_id(client_id).map_err(|message| {
        // The field is named once, by FieldError's Display.
        let message = message
            .strip_prefix("client_id ")
            .map_or_else(|| message.clone(), str::to_owned);
        Error::Invalid(vec![FieldError::new("client_id", message)])
    })
}

/// Longest display name a user may set on the account page, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// What a profile change did to the e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailChange {
    Unchanged,
    /// A new address, stored unverified: the hook for a verification mail.
    Changed(String),
    Removed,
}

/// What [`UserService::update_own_profile`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChange {
    pub name_changed: bool,
    pub email: EmailChange,
    /// The preferred language changed (to [`ProfileChange::locale`]).
    pub locale_changed: bool,
    /// The preferred language after the change (`None`: none, the browser's).
    pub locale: Option<String>,
}

/// A user's own profile form (the account page).
#[derive(Debug, Clone, Copy)]
pub struct OwnProfile<'a> {
    /// The display name (the `name` claim); empty removes it.
    pub name: &'a str,
    /// The e-mail address; empty removes it.
    pub email: &'a str,
    /// The preferred language (the `locale` claim): `None` leaves it as it is (a form
    /// without the field), empty removes it, otherwise one of `languages`.
    pub locale: Option<&'a str>,
    /// The languages a preference may name: those the pages and mails exist in.
    pub languages: &'a [String],
}

/// What a user's own profile form changes (see [`UserService::update_own_profile`]):
/// every field checked, nothing written; the row to store, unless nothing changes.
fn plan_own_profile(
    user: &StoredUser,
    form: &OwnProfile<'_>,
) -> Result<(ProfileChange, Option<StoredUser>)> {
    let (name, email) = (form.name.trim(), form.email.trim());
    let old_locale = preferred_locale(user).map(str::to_owned);
    let locale = match form.locale.map(str::trim) {
        None => old_locale.clone(),
        Some("") => None,
        Some(tag) => Some(tag.to_owned()),
    };
    let mut errors = Vec::new();
    if let Some(tag) = &locale
        && form.locale.is_some()
        && !form.languages.contains(tag)
    {
        // The value itself is not echoed: it is whatever was posted.
        errors.push(FieldError::new(
            "locale",
            format!("must be one of: {}", form.languages.join(", ")),
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    if !email.is_empty()
        && let Err(message) = validate_email(email)
    {
        errors.push(FieldError::new("email", message));
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let change = ProfileChange {
        name_changed: user
            .profile
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            != name,
        email: match (user.email.as_deref(), email) {
            (old, new) if old.unwrap_or("") == new => EmailChange::Unchanged,
            (_, "") => EmailChange::Removed,
            (_, new) => EmailChange::Changed(new.to_owned()),
        },
        locale_changed: locale != old_locale,
        locale,
    };
    if !change.name_changed && change.email == EmailChange::Unchanged && !change.locale_changed {
        return Ok((change, None));
    }
    let mut updated = user.clone();
    match &change.locale {
        Some(tag) => {
            updated
                .profile
                .insert("locale".to_owned(), serde_json::Value::String(tag.clone()));
        }
        None => {
            updated.profile.remove("locale");
        }
    }
    if name.is_empty() {
        updated.profile.remove("name");
    } else {
        updated.profile.insert(
            "name".to_owned(),
            serde_json::Value::String(name.to_owned()),
        );
    }
    if change.email != EmailChange::Unchanged {
        updated.email = (!email.is_empty()).then(|| email.to_owned());
        updated.email_verified = false;
    }
    Ok((change, Some(updated)))
}

/// The user service.
#[derive(Debug)]
pub struct UserService {
    store: Store,
    clock: Arc<dyn Clock>,
    policy: PasswordSettings,
    breach: BreachChecker,
    /// Argon2id takes `memory_kib` per hash: bounding how many run at once bounds the
    /// memory a burst of sign-ins can take (the rest wait their turn). One per core:
    /// more would not hash faster, and each keeps its working memory
    /// (`crypto::password`).
    hashing: Arc<tokio::sync::Semaphore>,
    /// `sessions.revoke_on_credential_reset`.
    revoke_on_reset: bool,
}

impl UserService {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        policy: PasswordSettings,
        fetcher: Arc<crate::outbound::Fetcher>,
        revoke_on_reset: bool,
    ) -> Self {
        let breach = BreachChecker::new(
            fetcher,
            &policy.hibp_base_url,
            Duration::from_secs(policy.hibp_timeout_seconds),
        );
        let slots = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            store,
            clock,
            policy,
            breach,
            hashing: Arc::new(tokio::sync::Semaphore::new(slots)),
            revoke_on_reset,
        }
    }

    pub fn policy(&self) -> &PasswordSettings {
        &self.policy
    }

    /// Applies the password policy: length limits first (no network call for a password
    /// that is rejected anyway), then the breached-password check.
    pub async fn check_password(&self, username: &str, password: &SecretString) -> Result<()> {
        check_password_length(
            password.expose_secret(),
            self.policy.min_length,
            self.policy.max_length,
        )
        .map_err(|e| Error::Invalid(vec![e]))?;
        if let Verdict::Breached(count) = self.breach.check(password).await {
            match self.policy.breached {
                BreachPolicy::Reject => {
                    return Err(Error::Invalid(vec![
                        FieldError::new("password", BREACHED_MESSAGE).with_kind(Invalid::Breached),
                    ]));
                }
                BreachPolicy::Warn => tracing::warn!(
                    username,
                    breach_count = count,
                    "password appears in a known data breach; accepted because passwords.breached is warn"
                ),
            }
        }
        Ok(())
    }

    /// Hashes a password that passed [`UserService::check_password`] (a reset by e-mail
    /// link stores it with the rest of the reset, in one unit of work).
    pub async fn hash_password(&self, password: &SecretString) -> Result<String> {
        self.hash(password).await
    }

    /// Hashes off the async runtime: Argon2id takes tens of milliseconds and 19 MiB.
    async fn hash(&self, password: &SecretString) -> Result<String> {
        let params = self.policy.argon2;
        let password = password.clone();
        self.in_hashing_slot(move || password::hash(&password, params))
            .await?
            .map_err(Error::Hash)
    }

    /// Runs Argon2 work on the blocking pool in one of the hashing slots, which it holds
    /// until the work is done. The slot goes with the work, not with the request: a
    /// request given up mid-hash (a client that disconnects) cannot stop the hash, and
    /// had it freed its slot, every sign-in abandoned that way would have started one
    /// more hash of 19 MiB beside the bounded ones — memory without bound for anyone who
    /// can post a sign-in form and hang up.
    async fn in_hashing_slot<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R> {
        let slot = Arc::clone(&self.hashing)
            .acquire_owned()
            .await
            .map_err(|_| Error::Busy)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(slot);
            out
        })
        .await
        .map_err(Error::Join)
    }

    async fn require_tenant(&self, tenant_id: &str) -> Result<()> {
        if self.store.get_tenant(tenant_id).await?.is_none() {
            return Err(Error::UnknownTenant(tenant_id.to_owned()));
        }
        Ok(())
    }

    /// Creates a user with a password. Validates everything (and checks the password
    /// policy) before writing; a taken username is [`Error::AlreadyExists`].
    pub async fn create(
        &self,
        tenant_id: &str,
        user: &NewUser,
        password: &SecretString,
        actor: Actor<'_>,
    ) -> Result<StoredUser> {
        self.require_tenant(tenant_id).await?;
        let mut errors = user.validate();
        if let Err(e) = check_password_length(
            password.expose_secret(),
            self.policy.min_length,
            self.policy.max_length,
        ) {
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        if self
            .store
            .get_user_by_username(tenant_id, &user.username)
            .await?
            .is_some()
        {
            return Err(Error::AlreadyExists(user.username.clone()));
        }
        self.check_password(&user.username, password).await?;
        let hash = self.hash(password).await?;
        let now = self.clock.now();
        let stored = StoredUser {
            tenant_id: tenant_id.to_owned(),
            user_id: crate::crypto::b64url(&crate::crypto::random_bytes::<16>()),
            username: user.username.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            profile: user.profile.clone(),
            password_hash: Some(hash),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_user(&stored).await.map_err(|e| match e {
            // Lost a race with a concurrent create of the same name.
            store::Error::Conflict { .. } => Error::AlreadyExists(user.username.clone()),
            other => Error::Store(other),
        })?;
        self.audit(
            tenant_id,
            "user.created",
            actor,
            &stored.user_id,
            serde_json::json!({ "username": stored.username }),
        )
        .await;
        tracing::info!(tenant = tenant_id, user_id = %stored.user_id, "user created");
        Ok(stored)
    }

    /// The user with this username (any case).
    pub async fn get_by_username(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<Option<StoredUser>> {
        Ok(self.store.get_user_by_username(tenant_id, username).await?)
    }

    /// A tenant's users.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<StoredUser>> {
        Ok(self.store.list_users(tenant_id).await?)
    }

    /// Deletes a user by username; `false` when there was none.
    pub async fn delete(&self, tenant_id: &str, username: &str, actor: Actor<'_>) -> Result<bool> {
        let Some(user) = self.store.get_user_by_username(tenant_id, username).await? else {
            return Ok(false);
        };
        let existed = self.store.delete_user(tenant_id, &user.user_id).await?;
        if existed {
            self.audit(
                tenant_id,
                "user.deleted",
                actor,
                &user.user_id,
                serde_json::json!({ "username": user.username }),
            )
            .await;
            tracing::info!(tenant = tenant_id, user_id = %user.user_id, "user deleted");
        }
        Ok(existed)
    }

    /// Sets a new password under the policy.
    pub async fn set_password(
        &self,
        tenant_id: &str,
        username: &str,
        password: &SecretString,
        actor: Actor<'_>,
    ) -> Result<StoredUser> {
        let Some(user) = self.store.get_user_by_username(tenant_id, username).await? else {
            return Err(Error::NotFound(username.to_owned()));
        };
        self.check_password(&user.username, password).await?;
        let hash = self.hash(password).await?;
        let now = self.clock.now();
        // A password set by someone else is a reset (a compromised account, a forgotten
        // password): whoever held the old one must not keep a session or refresh token.
        let end = if self.revoke_on_reset {
            EndAccess::All
        } else {
            EndAccess::Nothing
        };
        let ended = self
            .store
            .set_user_password_hash(tenant_id, &user.user_id, &hash, now, end)
            .await
            .map_err(|e| match e {
                store::Error::NotFound => Error::NotFound(username.to_owned()),
                other => Error::Store(other),
            })?;
        self.audit(
            tenant_id,
            "user.password_set",
            actor,
            &user.user_id,
            serde_json::json!({
                "username": user.username,
                "sessions_ended": ended.sessions,
                "grants_revoked": ended.grants,
            }),
        )
        .await;
        tracing::info!(
            tenant = tenant_id,
            user_id = %user.user_id,
            sessions_ended = ended.sessions,
            grants_revoked = ended.grants,
            "user password set"
        );
        Ok(StoredUser {
            password_hash: Some(hash),
            updated_at: now,
            ..user
        })
    }

    /// A signed-in user's own password change (the account page; the current password
    /// was checked by the caller). The same policy as [`UserService::set_password`]
    /// (length, breached-password check), but the user's *other* sessions end and every
    /// live grant is revoked, while `keep_sid` (the browser making the change) stays:
    /// whoever may also know the old password loses what it gave them. Audits
    /// `user.password_changed`.
    pub async fn change_own_password(
        &self,
        user: &StoredUser,
        new: &SecretString,
        keep_sid: &str,
        ip: Option<&str>,
    ) -> Result<AccessEnded> {
        self.check_password(&user.username, new).await?;
        let hash = self.hash(new).await?;
        let now = self.clock.now();
        let ended = self
            .store
            .set_user_password_hash(
                &user.tenant_id,
                &user.user_id,
                &hash,
                now,
                EndAccess::AllBut(keep_sid),
            )
            .await
            .map_err(|e| match e {
                store::Error::NotFound => Error::NotFound(user.username.clone()),
                other => Error::Store(other),
            })?;
        let event = AuditEvent::new(&user.tenant_id, now, "user.password_changed")
            .actor(Some(Actor::User.as_str()))
            .subject(Some(&user.user_id))
            .ip(ip)
            .details(serde_json::json!({
                "sessions_ended": ended.sessions,
                "grants_revoked": ended.grants,
            }));
        self.store.audit(event).await;
        tracing::info!(
            tenant = %user.tenant_id,
            user_id = %user.user_id,
            sessions_ended = ended.sessions,
            grants_revoked = ended.grants,
            "user changed their password"
        );
        Ok(ended)
    }

    /// A signed-in user's own profile change (the account page): display name (the
    /// profile claim `name`), e-mail address and preferred language (`locale`). A new
    /// address is stored unverified (`email_verified = false`) and audited as
    /// `user.email_changed`; the returned [`ProfileChange::email`] says so, for the
    /// caller to send a verification mail. Checked against the row it was read from
    /// (`user`): a concurrent change is [`Error::Invalid`] on `profile`, nothing
    /// written; so is any invalid field.
    pub async fn update_own_profile(
        &self,
        user: &StoredUser,
        form: &OwnProfile<'_>,
        ip: Option<&str>,
    ) -> Result<ProfileChange> {
        let (change, updated) = plan_own_profile(user, form)?;
        let Some(updated) = updated else {
            return Ok(change);
        };
        let now = self.clock.now();
        self.store
            .update_user_profile(&updated, now, &store::users::user_etag(user))
            .await
            .map_err(|e| match e {
                store::Error::Stale => Error::Invalid(vec![
                    FieldError::new(
                        "profile",
                        "changed meanwhile; reload the page and try again",
                    )
                    .with_kind(Invalid::Stale),
                ]),
                store::Error::NotFound => Error::NotFound(user.username.clone()),
                other => Error::Store(other),
            })?;
        let event = |name: &str, details| {
            AuditEvent::new(&user.tenant_id, now, name)
                .actor(Some(Actor::User.as_str()))
                .subject(Some(&user.user_id))
                .ip(ip)
                .details(details)
        };
        let fields: Vec<&str> = [
            (change.name_changed, "name"),
            (change.locale_changed, "locale"),
        ]
        .into_iter()
        .filter_map(|(changed, field)| changed.then_some(field))
        .collect();
        if !fields.is_empty() {
            self.store
                .audit(event(
                    "user.profile_updated",
                    serde_json::json!({ "fields": fields }),
                ))
                .await;
        }
        if change.email != EmailChange::Unchanged {
            // The address itself stays out of the audit trail: it is personal data, and
            // the user row has it.
            let removed = change.email == EmailChange::Removed;
            self.store
                .audit(event(
                    "user.email_changed",
                    serde_json::json!({ "email_verified": false, "removed": removed }),
                ))
                .await;
        }
        tracing::info!(tenant = %user.tenant_id, user_id = %user.user_id, "user updated their profile");
        Ok(change)
    }

    /// The user with this username in an existing tenant: [`Error::UnknownTenant`] or
    /// [`Error::NotFound`] otherwise.
    async fn require_user(&self, tenant_id: &str, username: &str) -> Result<StoredUser> {
        self.require_tenant(tenant_id).await?;
        self.store
            .get_user_by_username(tenant_id, username)
            .await?
            .ok_or_else(|| Error::NotFound(username.to_owned()))
    }

    /// The consents a user gave, by client id.
    pub async fn consents(&self, tenant_id: &str, username: &str) -> Result<Vec<Consent>> {
        let user = self.require_user(tenant_id, username).await?;
        self.consents_of(tenant_id, &user.user_id).await
    }

    /// The consents of a user known by id (a signed-in account).
    pub async fn consents_of(&self, tenant_id: &str, user_id: &str) -> Result<Vec<Consent>> {
        Ok(self.store.list_consents(tenant_id, user_id).await?)
    }

    /// Revokes a user's consent to `client_id` and every live grant of the user for that
    /// client; `false` (and nothing changed) when there was no such consent.
    pub async fn revoke_consent(
        &self,
        tenant_id: &str,
        username: &str,
        client_id: &str,
        actor: Actor<'_>,
    ) -> Result<bool> {
        check_client_id(client_id)?;
        let user = self.require_user(tenant_id, username).await?;
        self.revoke_consent_of(tenant_id, &user.user_id, client_id, actor)
            .await
    }

    /// [`UserService::revoke_consent`] for a user known by id (a signed-in account).
    pub async fn revoke_consent_of(
        &self,
        tenant_id: &str,
        user_id: &str,
        client_id: &str,
        actor: Actor<'_>,
    ) -> Result<bool> {
        check_client_id(client_id)?;
        let now = self.clock.now();
        let done = self
            .store
            .revoke_consent_and_grants(tenant_id, user_id, client_id, now)
            .await?;
        if done.existed {
            self.audit(
                tenant_id,
                "consent.revoked",
                actor,
                user_id,
                serde_json::json!({
                    "client_id": client_id,
                    "grants_revoked": done.grants_revoked,
                }),
            )
            .await;
            tracing::info!(
                tenant = tenant_id,
                user_id,
                client_id,
                grants_revoked = done.grants_revoked,
                "consent revoked"
            );
        }
        Ok(done.existed)
    }

    /// Checks a password for a login. Returns the user when it matches, `None` when the
    /// user is unknown, has no password, or the password is wrong — with the same Argon2
    /// work in every case, so response time does not reveal which usernames exist. On a
    /// match whose stored hash was made with other parameters than the configured ones,
    /// stores a fresh hash (best effort: a failed rehash does not fail the login).
    pub async fn verify_and_maybe_rehash(
        &self,
        tenant_id: &str,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<StoredUser>> {
        if check_password_length(password.expose_secret(), 1, self.policy.max_length).is_err() {
            // Never hash unbounded input; an over-long password cannot have been set.
            return Ok(None);
        }
        let user = self.store.get_user_by_username(tenant_id, username).await?;
        let stored_hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let params = self.policy.argon2;
        let candidate = password.clone();
        let matched = self
            .in_hashing_slot(move || {
                if let Some(h) = stored_hash {
                    password::verify(&candidate, &h)
                } else {
                    // Same cost as a real check for unknown users (no enumeration by
                    // timing).
                    let _ = password::dummy_hash(params);
                    false
                }
            })
            .await?;
        let Some(user) = user.filter(|_| matched) else {
            return Ok(None);
        };
        let Some(old) = user.password_hash.clone() else {
            return Ok(None);
        };
        if !password::needs_rehash(&old, params) {
            return Ok(Some(user));
        }
        let new = match self.hash(password).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, user_id = %user.user_id, "failed to rehash a password");
                return Ok(Some(user));
            }
        };
        match self
            .store
            .replace_user_password_hash(tenant_id, &user.user_id, &old, &new)
            .await
        {
            Ok(true) => {
                tracing::info!(
                    tenant = tenant_id,
                    user_id = %user.user_id,
                    "rehashed a password with the configured Argon2 parameters"
                );
                Ok(Some(StoredUser {
                    password_hash: Some(new),
                    ..user
                }))
            }
            Ok(false) => Ok(Some(user)),
            Err(e) => {
                tracing::warn!(error = %e, user_id = %user.user_id, "failed to store a rehashed password");
                Ok(Some(user))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The attack: post a sign-in form and hang up while its password is being hashed,
    /// over and over. The hash cannot be stopped, so it must keep its slot until it
    /// ends: otherwise each abandoned sign-in lets one more 19 MiB hash start beside
    /// the bounded ones.
    #[tokio::test]
    async fn a_sign_in_given_up_mid_hash_keeps_its_slot_until_the_hash_ends() {
        use crate::testing::{PASSWORD, TestApp};
        use std::time::{Duration, Instant};

        let app = TestApp::new(crate::store::Backend::Sqlite).await;
        app.user("alice").await;
        let users = Arc::clone(&app.state.users);
        let slots = users.hashing.available_permits();
        let deadline = Instant::now() + Duration::from_secs(10);
        let u = Arc::clone(&users);
        let sign_in = tokio::spawn(async move {
            u.verify_and_maybe_rehash("main", "alice", &SecretString::from(PASSWORD))
                .await
        });
        while users.hashing.available_permits() == slots {
            assert!(Instant::now() < deadline, "the sign-in starts hashing");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sign_in.abort();
        assert!(sign_in.await.unwrap_err().is_cancelled());
        // Argon2id takes milliseconds: the hash is still running, and holds its slot.
        assert_eq!(
            users.hashing.available_permits(),
            slots - 1,
            "an abandoned hash gave its slot away while it ran"
        );
        while users.hashing.available_permits() < slots {
            assert!(
                Instant::now() < deadline,
                "the slot comes back once the hash ends"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let user = users
            .verify_and_maybe_rehash("main", "alice", &SecretString::from(PASSWORD))
            .await
            .expect("verify");
        assert!(user.is_some(), "sign-ins go on");
    }

    fn alice(profile: serde_json::Value) -> StoredUser {
        StoredUser {
            tenant_id: "t".into(),
            user_id: "u1".into(),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: true,
            profile: match profile {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            },
            password_hash: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_preferred_language_must_be_one_we_have() {
        let languages = ["en".to_owned(), "de".to_owned()];
        let form = |locale| OwnProfile {
            name: "",
            email: "alice@example.com",
            locale,
            languages: &languages,
        };
        let user = alice(serde_json::json!({"locale": "de"}));
        for bogus in ["fr", "de-CH", "DE", "de\nX: y", "en de"] {
            let Err(Error::Invalid(errors)) = plan_own_profile(&user, &form(Some(bogus))) else {
                panic!("{bogus:?} is refused");
            };
            assert_eq!(errors[0].field, "locale");
            assert!(!errors[0].message.contains(bogus), "not echoed");
        }
        // No field: left as it is; the same: nothing to write.
        let (change, row) = plan_own_profile(&user, &form(None)).unwrap();
        assert!(!change.locale_changed && row.is_none());
        assert_eq!(change.locale.as_deref(), Some("de"));
        let (_, row) = plan_own_profile(&user, &form(Some("de"))).unwrap();
        assert!(row.is_none());
        // Another language we have, or none.
        let (change, row) = plan_own_profile(&user, &form(Some("en"))).unwrap();
        assert!(change.locale_changed);
        assert_eq!(row.unwrap().profile["locale"], "en");
        let (change, row) = plan_own_profile(&user, &form(Some(" "))).unwrap();
        assert!(change.locale_changed && change.locale.is_none());
        assert!(!row.unwrap().profile.contains_key("locale"));
    }

    #[test]
    fn consent_client_ids_are_checked_naming_the_field_once() {
        let Err(Error::Invalid(errors)) = check_client_id("a b") else {
            panic!("a space is not allowed in a client id");
        };
        assert_eq!(
            errors[0].to_string(),
            "client_id: \"a b\" may contain only letters, digits and - . _ ~"
        );
        let Err(Error::Invalid(errors)) = check_client_id("") else {
            panic!("an empty client id is refused");
        };
        assert_eq!(
            errors[0].to_string(),
            "client_id: must be 1 to 128 characters"
        );
        assert!(check_client_id("app-1.x_y~z").is_ok());
    }
}
