//! Multi-factor authentication: TOTP (RFC 6238) with QR-code enrolment, one-time
//! recovery codes, and the per-user "MFA required" flag.
//!
//! [`MfaService`] is what the login pages, the CLI and the admin API call. TOTP secrets
//! are sealed under ENCRYPTION_KEY (bound to tenant and user); recovery codes are kept
//! only as keyed digests. Accepting a factor is a single conditional write, so a code
//! accepted on one pod cannot be replayed on another. Audit events name the user and
//! the outcome, never a code or a secret.

pub mod recovery;
pub mod totp;

use std::sync::Arc;

use serde_json::json;

use crate::clock::Clock;
use crate::crypto::kek::{self, Kek};
use crate::domain::policy::TenantPolicy;
use crate::domain::tenant::Tenant;
use crate::store::audit::AuditEvent;
use crate::store::sessions::EndAccess;
use crate::store::users::StoredUser;
use crate::store::{self, Store};
use recovery::RecoveryHasher;
use totp::Secret;

/// Why an MFA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// Wrong, reused or malformed code. Deliberately one error for all of them.
    #[error("the code is not valid")]
    InvalidCode,
    /// `confirm_totp` without a pending enrolment (none started, or already confirmed).
    #[error("no TOTP enrolment is pending")]
    NotEnrolling,
    /// `begin_totp` while a confirmed authenticator exists: remove it first.
    #[error("an authenticator is already set up; remove it first")]
    AlreadyEnrolled,
    /// Recovery codes need a confirmed authenticator.
    #[error("no authenticator is set up")]
    NotEnrolled,
    #[error("user does not exist")]
    UnknownUser,
    #[error("failed to decrypt the TOTP secret: {0}")]
    Decrypt(#[source] kek::Error),
    #[error(transparent)]
    Qr(#[from] totp::QrError),
    #[error(transparent)]
    Store(#[from] store::Error),
}

pub type Result<T, E = MfaError> = std::result::Result<T, E>;

/// A user's second factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaStatus {
    /// A confirmed TOTP authenticator.
    pub totp_enrolled: bool,
    /// An enrolment was started but not confirmed.
    pub totp_pending: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: usize,
    /// The user's own flag (`users set-mfa-required`), independent of tenant policy.
    pub required_for_user: bool,
    /// Registered passkeys (each one is a second factor too).
    pub passkeys: usize,
}

impl MfaStatus {
    /// A second factor is set up: a confirmed authenticator or a passkey.
    pub fn has_second_factor(&self) -> bool {
        self.totp_enrolled || self.passkeys > 0
    }
}

/// The factor that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaMethod {
    Totp,
    RecoveryCode,
}

impl MfaMethod {
    /// The RFC 8176 `amr` value: both are one-time passwords.
    pub fn amr(self) -> &'static str {
        "otp"
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MfaMethod::Totp => "totp",
            MfaMethod::RecoveryCode => "recovery_code",
        }
    }
}

/// What the enrolment page shows: the secret for manual entry, the `otpauth://` URI and
/// its QR code (inline SVG and `data:` URI). `Debug` hides all of them.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpEnrollment {
    /// Base32 without padding, for typing into an authenticator app.
    pub secret_base32: String,
    pub otpauth_uri: String,
    /// `<svg …>…</svg>`, safe to place inline.
    pub qr_svg: String,
    /// `data:image/svg+xml;base64,…` for `<img src>`.
    pub qr_data_uri: String,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment([REDACTED])")
    }
}

/// What the enrolment page shows for `secret`.
fn enrollment(tenant: &Tenant, user: &StoredUser, secret: &Secret) -> Result<TotpEnrollment> {
    let otpauth_uri = totp::otpauth_uri(&tenant.display_name, &user.username, secret);
    let qr_svg = totp::qr_svg(&otpauth_uri)?;
    let qr_data_uri = totp::svg_data_uri(&qr_svg);
    Ok(TotpEnrollment {
        secret_base32: secret.to_base32(),
        otpauth_uri,
        qr_svg,
        qr_data_uri,
    })
}

/// Additional authenticated data of a sealed TOTP secret: binds it to its row.
fn aad(tenant_id: &str, user_id: &str) -> Vec<u8> {
    format!("user_totp/{tenant_id}/{user_id}").into_bytes()
}

/// The MFA service.
#[derive(Debug)]
pub struct MfaService {
    store: Store,
    kek: Arc<Kek>,
    recovery: RecoveryHasher,
    clock: Arc<dyn Clock>,
    revoke_on_reset: bool,
}

impl MfaService {
    /// `revoke_on_reset`: `sessions.revoke_on_credential_reset`.
    pub fn new(store: Store, kek: Arc<Kek>, clock: Arc<dyn Clock>, revoke_on_reset: bool) -> Self {
        let recovery = RecoveryHasher::new(&kek);
        Self {
            store,
            kek,
            recovery,
            clock,
            revoke_on_reset,
        }
    }

    /// A user's factors; `UnknownUser` when there is no such user.
    pub async fn status(&self, tenant_id: &str, user_id: &str) -> Result<MfaStatus> {
        let Some(f) = self.store.mfa_factors(tenant_id, user_id).await? else {
            return Err(MfaError::UnknownUser);
        };
        Ok(MfaStatus {
            totp_enrolled: f.totp_confirmed == Some(true),
            totp_pending: f.totp_confirmed == Some(false),
            recovery_codes_left: f.recovery_codes,
            required_for_user: f.required,
            passkeys: f.passkeys,
        })
    }

    /// Whether a sign-in needs a second factor: the tenant requires it, the user is
    /// flagged, or the user has set one up (an enrolled factor — an authenticator, or a
    /// passkey while the tenant allows them — is always asked for). When it is required
    /// but none is set up, the user must enrol first.
    pub fn required(&self, policy: &TenantPolicy, status: &MfaStatus) -> bool {
        policy.mfa.required
            || status.required_for_user
            || status.totp_enrolled
            || (policy.passkeys.enabled && status.passkeys > 0)
    }

    /// Starts TOTP enrolment with a new secret (replacing an unconfirmed one). The user
    /// scans the QR code and proves it with [`MfaService::confirm_totp`].
    pub async fn begin_totp(&self, tenant: &Tenant, user: &StoredUser) -> Result<TotpEnrollment> {
        let secret = Secret::generate();
        let sealed = self
            .kek
            .seal(secret.as_bytes(), &aad(&tenant.id, &user.user_id));
        let now = self.clock.now();
        let started = self
            .store
            .begin_totp(&tenant.id, &user.user_id, &sealed, self.kek.id(), now)
            .await
            .map_err(|e| match e {
                // The user row is gone (foreign key).
                store::Error::Database(sqlx::Error::Database(db))
                    if db.is_foreign_key_violation() =>
                {
                    MfaError::UnknownUser
                }
                other => MfaError::Store(other),
            })?;
        if !started {
            return Err(MfaError::AlreadyEnrolled);
        }
        enrollment(tenant, user, &secret)
    }

    /// The enrolment started and not yet confirmed, shown again with the same secret
    /// (after a wrong code the user keeps the entry they already scanned); `None` when
    /// none is pending.
    pub async fn pending_totp(
        &self,
        tenant: &Tenant,
        user: &StoredUser,
    ) -> Result<Option<TotpEnrollment>> {
        let Some(pending) = self
            .store
            .get_totp(&tenant.id, &user.user_id)
            .await?
            .filter(|t| t.confirmed_at.is_none())
        else {
            return Ok(None);
        };
        let secret = self.open_secret(&pending)?;
        enrollment(tenant, user, &secret).map(Some)
    }

    fn open_secret(&self, t: &store::mfa::StoredTotp) -> Result<Secret> {
        self.kek
            .open(&t.kek_id, &t.secret_sealed, &aad(&t.tenant_id, &t.user_id))
            .map(Secret::from_bytes)
            .map_err(MfaError::Decrypt)
    }

    /// Finishes enrolment with the first code from the authenticator. Returns the new
    /// recovery codes in plain text: show them once, they are not stored readable.
    pub async fn confirm_totp(
        &self,
        tenant_id: &str,
        user_id: &str,
        code: &str,
        ip: Option<&str>,
    ) -> Result<Vec<String>> {
        let pending = self
            .store
            .get_totp(tenant_id, user_id)
            .await?
            .filter(|t| t.confirmed_at.is_none())
            .ok_or(MfaError::NotEnrolling)?;
        let secret = self.open_secret(&pending)?;
        let now = self.clock.now();
        let Some(step) = secret.verify(code, now, pending.last_step) else {
            self.audit_failure(tenant_id, user_id, ip, "enrolment")
                .await;
            return Err(MfaError::InvalidCode);
        };
        let codes = recovery::generate_set(recovery::CODES_PER_USER);
        let digests = self.digests(tenant_id, user_id, &codes);
        if !self
            .store
            .confirm_totp(tenant_id, user_id, step, &digests, now)
            .await?
        {
            // Confirmed or restarted concurrently: this code no longer applies.
            return Err(MfaError::InvalidCode);
        }
        self.audit(
            AuditEvent::new(tenant_id, now, "mfa.enrolled")
                .actor(Some("user"))
                .subject(Some(user_id))
                .ip(ip)
                .details(json!({ "method": "totp", "recovery_codes": codes.len() })),
        )
        .await;
        tracing::info!(tenant = tenant_id, user_id, "TOTP enrolled");
        Ok(codes)
    }

    fn digests(&self, tenant_id: &str, user_id: &str, codes: &[String]) -> Vec<String> {
        codes
            .iter()
            .filter_map(|c| self.recovery.digest(tenant_id, user_id, c))
            .collect()
    }

    /// Checks a second factor typed at sign-in: a 6-digit TOTP code or a recovery code
    /// in the same field. A TOTP code is good once (its time step is recorded
    /// atomically); a recovery code is used up.
    pub async fn verify(
        &self,
        tenant_id: &str,
        user_id: &str,
        code: &str,
        ip: Option<&str>,
    ) -> Result<MfaMethod> {
        let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let method = if compact.len() == totp::DIGITS as usize
            && compact.bytes().all(|b| b.is_ascii_digit())
        {
            self.verify_totp(tenant_id, user_id, &compact).await?
        } else {
            self.use_recovery_code(tenant_id, user_id, code).await?
        };
        let now = self.clock.now();
        match method {
            Some(m @ MfaMethod::Totp) => {
                self.audit(
                    AuditEvent::new(tenant_id, now, "mfa.verified")
                        .actor(Some("user"))
                        .subject(Some(user_id))
                        .ip(ip)
                        .details(json!({ "method": m.as_str() })),
                )
                .await;
                Ok(m)
            }
            Some(m @ MfaMethod::RecoveryCode) => {
                let left = self.store.count_recovery_codes(tenant_id, user_id).await?;
                self.audit(
                    AuditEvent::new(tenant_id, now, "mfa.recovery_code_used")
                        .actor(Some("user"))
                        .subject(Some(user_id))
                        .ip(ip)
                        .details(json!({ "method": m.as_str(), "recovery_codes_left": left })),
                )
                .await;
                Ok(m)
            }
            None => {
                self.audit_failure(tenant_id, user_id, ip, "sign_in").await;
                Err(MfaError::InvalidCode)
            }
        }
    }

    async fn verify_totp(
        &self,
        tenant_id: &str,
        user_id: &str,
        code: &str,
    ) -> Result<Option<MfaMethod>> {
        let Some(t) = self
            .store
            .get_totp(tenant_id, user_id)
            .await?
            .filter(|t| t.confirmed_at.is_some())
        else {
            return Ok(None);
        };
        let secret = self.open_secret(&t)?;
        let Some(step) = secret.verify(code, self.clock.now(), t.last_step) else {
            return Ok(None);
        };
        // Another pod may have taken this step meanwhile: only one wins.
        let won = self
            .store
            .advance_totp_step(tenant_id, user_id, step)
            .await?;
        Ok(won.then_some(MfaMethod::Totp))
    }

    async fn use_recovery_code(
        &self,
        tenant_id: &str,
        user_id: &str,
        code: &str,
    ) -> Result<Option<MfaMethod>> {
        if recovery::normalize(code).is_none() {
            return Ok(None);
        }
        let stored = self.store.unused_recovery_codes(tenant_id, user_id).await?;
        let Some(digest) = self.recovery.find(tenant_id, user_id, code, &stored) else {
            return Ok(None);
        };
        let used = self
            .store
            .use_recovery_code(tenant_id, user_id, digest, self.clock.now())
            .await?;
        Ok(used.then_some(MfaMethod::RecoveryCode))
    }

    /// Issues a fresh set of recovery codes (the old ones stop working at once). Needs a
    /// confirmed authenticator. Returns the codes in plain text, to show once.
    pub async fn regenerate_recovery_codes(
        &self,
        tenant_id: &str,
        user_id: &str,
        actor: &str,
    ) -> Result<Vec<String>> {
        let enrolled = self
            .store
            .get_totp(tenant_id, user_id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some());
        if !enrolled {
            return Err(MfaError::NotEnrolled);
        }
        let codes = recovery::generate_set(recovery::CODES_PER_USER);
        let now = self.clock.now();
        self.store
            .replace_recovery_codes(
                tenant_id,
                user_id,
                &self.digests(tenant_id, user_id, &codes),
                now,
            )
            .await?;
        self.audit(
            AuditEvent::new(tenant_id, now, "mfa.recovery_codes_regenerated")
                .actor(Some(actor))
                .subject(Some(user_id))
                .details(json!({ "recovery_codes": codes.len() })),
        )
        .await;
        Ok(codes)
    }

    /// Removes the user's authenticator and recovery codes (a lost phone, an admin
    /// reset). Returns whether there was anything to remove. `actor`: `cli`,
    /// `admin-api`, or `user` for self-service.
    /// A reset also ends the user's sessions and revokes their refresh tokens (see
    /// `sessions.revoke_on_credential_reset`): a lost or stolen phone may sit next to a
    /// signed-in browser.
    pub async fn remove(&self, tenant_id: &str, user_id: &str, actor: &str) -> Result<bool> {
        let end = if self.revoke_on_reset {
            EndAccess::All
        } else {
            EndAccess::Nothing
        };
        self.remove_ending(tenant_id, user_id, actor, end, None)
            .await
    }

    /// The user's own removal of their authenticator (the account security page, after
    /// the caller checked the user's password or a code and the last-factor rule): the
    /// same as [`MfaService::remove`], but the session `keep_sid` making the change
    /// stays signed in.
    pub async fn remove_own(
        &self,
        tenant_id: &str,
        user_id: &str,
        keep_sid: &str,
        ip: Option<&str>,
    ) -> Result<bool> {
        let end = if self.revoke_on_reset {
            EndAccess::AllBut(keep_sid)
        } else {
            EndAccess::Nothing
        };
        self.remove_ending(tenant_id, user_id, "user", end, ip)
            .await
    }

    async fn remove_ending(
        &self,
        tenant_id: &str,
        user_id: &str,
        actor: &str,
        end: EndAccess<'_>,
        ip: Option<&str>,
    ) -> Result<bool> {
        let now = self.clock.now();
        let removed = self.store.delete_mfa(tenant_id, user_id, now, end).await?;
        if let Some(ended) = removed {
            self.audit(
                AuditEvent::new(tenant_id, now, "mfa.removed")
                    .actor(Some(actor))
                    .subject(Some(user_id))
                    .ip(ip)
                    .details(json!({
                        "sessions_ended": ended.sessions,
                        "grants_revoked": ended.grants,
                    })),
            )
            .await;
            tracing::info!(
                tenant = tenant_id,
                user_id,
                actor,
                sessions_ended = ended.sessions,
                grants_revoked = ended.grants,
                "MFA removed"
            );
        }
        Ok(removed.is_some())
    }

    /// Re-seals every TOTP secret not yet under the current KEK, opening it with `old`
    /// (`authserver keys reencrypt`). All or nothing: one undecryptable secret fails the
    /// whole run before anything is written. Returns how many were re-sealed.
    pub async fn reencrypt(&self, old: &Kek) -> Result<u64> {
        let mut updates = Vec::new();
        for t in self.store.list_all_totp().await? {
            if t.kek_id == self.kek.id() {
                continue;
            }
            let aad = aad(&t.tenant_id, &t.user_id);
            let plain = old
                .open(&t.kek_id, &t.secret_sealed, &aad)
                .map_err(MfaError::Decrypt)?;
            let sealed = self.kek.seal(&plain, &aad);
            updates.push((
                t.tenant_id,
                t.user_id,
                t.kek_id,
                sealed,
                self.kek.id().to_owned(),
            ));
        }
        Ok(self.store.reseal_totp(&updates).await?)
    }

    /// Sets the user's own "MFA required" flag; `UnknownUser` when there is no such user.
    pub async fn set_required(
        &self,
        tenant_id: &str,
        user_id: &str,
        required: bool,
        actor: &str,
    ) -> Result<()> {
        let now = self.clock.now();
        self.store
            .set_user_mfa_required(tenant_id, user_id, required, now)
            .await
            .map_err(|e| match e {
                store::Error::NotFound => MfaError::UnknownUser,
                other => MfaError::Store(other),
            })?;
        self.audit(
            AuditEvent::new(tenant_id, now, "mfa.required_changed")
                .actor(Some(actor))
                .subject(Some(user_id))
                .details(json!({ "required": required })),
        )
        .await;
        Ok(())
    }

    async fn audit_failure(&self, tenant_id: &str, user_id: &str, ip: Option<&str>, stage: &str) {
        self.audit(
            AuditEvent::new(tenant_id, self.clock.now(), "mfa.failed")
                .actor(Some("user"))
                .subject(Some(user_id))
                .ip(ip)
                .details(json!({ "stage": stage })),
        )
        .await;
    }

    async fn audit(&self, e: AuditEvent) {
        self.store.audit(e).await;
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::clock::FixedClock;
    use crate::store::testing::{self, TestStore};

    const NOW: i64 = 1_700_000_000;

    fn service(db: &TestStore, clock: Arc<FixedClock>) -> MfaService {
        let kek = Kek::from_hex(&SecretString::from(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_owned(),
        ))
        .unwrap();
        MfaService::new(db.store.clone(), Arc::new(kek), clock, true)
    }

    async fn enrol(db: &TestStore, mfa: &MfaService, username: &str) -> (StoredUser, Secret) {
        let user = db.user("t", username).await;
        let tenant = db.store.get_tenant("t").await.unwrap().unwrap();
        let e = mfa.begin_totp(&tenant, &user).await.unwrap();
        let secret = Secret::from_bytes(totp::base32_decode(&e.secret_base32).unwrap());
        (user, secret)
    }

    fn code(secret: &Secret, at: i64) -> String {
        secret.code_at_step(totp::step(at))
    }

    async fn events(db: &TestStore) -> Vec<AuditEvent> {
        db.store.list_audit("t", 100).await.unwrap()
    }

    #[tokio::test]
    async fn enrolment_shows_a_scannable_secret_and_confirms_with_a_first_code() {
        for db in testing::both().await {
            let clock = FixedClock::new(NOW);
            let mfa = service(&db, clock.clone());
            let user = db.user("t", "alice").await;
            let tenant = db.store.get_tenant("t").await.unwrap().unwrap();
            let e = mfa.begin_totp(&tenant, &user).await.unwrap();
            assert_eq!(e.secret_base32.len(), 32);
            assert!(
                e.otpauth_uri
                    .starts_with("otpauth://totp/Tenant%20t:alice?secret=")
            );
            assert!(e.otpauth_uri.contains(&e.secret_base32));
            assert!(e.qr_svg.starts_with("<svg"));
            assert!(e.qr_data_uri.starts_with("data:image/svg+xml;base64,"));
            assert!(!format!("{e:?}").contains(&e.secret_base32));
            // The secret is stored sealed, not as given.
            let row = db
                .store
                .get_totp("t", &user.user_id)
                .await
                .unwrap()
                .unwrap();
            let raw = totp::base32_decode(&e.secret_base32).unwrap();
            assert!(!row.secret_sealed.windows(raw.len()).any(|w| w == raw));

            let status = mfa.status("t", &user.user_id).await.unwrap();
            assert!(
                status.totp_pending && !status.totp_enrolled,
                "{}",
                db.name()
            );

            let secret = Secret::from_bytes(raw);
            let codes = mfa
                .confirm_totp("t", &user.user_id, &code(&secret, NOW), Some("192.0.2.1"))
                .await
                .unwrap();
            assert_eq!(codes.len(), recovery::CODES_PER_USER);
            let status = mfa.status("t", &user.user_id).await.unwrap();
            assert_eq!(
                status,
                MfaStatus {
                    totp_enrolled: true,
                    totp_pending: false,
                    recovery_codes_left: 10,
                    required_for_user: false,
                    passkeys: 0,
                }
            );
            assert!(mfa.required(&TenantPolicy::default(), &status));
            // A second enrolment does not replace the confirmed authenticator.
            assert!(matches!(
                mfa.begin_totp(&tenant, &user).await,
                Err(MfaError::AlreadyEnrolled)
            ));
            let enrolled: Vec<_> = events(&db)
                .await
                .into_iter()
                .filter(|e| e.event == "mfa.enrolled")
                .collect();
            assert_eq!(enrolled.len(), 1);
            assert_eq!(enrolled[0].ip.as_deref(), Some("192.0.2.1"));
        }
    }

    #[tokio::test]
    async fn a_wrong_enrolment_code_changes_nothing() {
        for db in testing::both().await {
            let clock = FixedClock::new(NOW);
            let mfa = service(&db, clock.clone());
            let (user, secret) = enrol(&db, &mfa, "bob").await;
            let wrong = code(&secret, NOW + 300);
            assert!(matches!(
                mfa.confirm_totp("t", &user.user_id, &wrong, None).await,
                Err(MfaError::InvalidCode)
            ));
            assert!(matches!(
                mfa.confirm_totp("t", &user.user_id, "abc", None).await,
                Err(MfaError::InvalidCode)
            ));
            let status = mfa.status("t", &user.user_id).await.unwrap();
            assert!(
                status.totp_pending && !status.totp_enrolled,
                "{}",
                db.name()
            );
            assert_eq!(status.recovery_codes_left, 0);
            assert!(matches!(
                mfa.confirm_totp("t", "nobody", &code(&secret, NOW), None)
                    .await,
                Err(MfaError::NotEnrolling)
            ));
            let failed = events(&db)
                .await
                .into_iter()
                .filter(|e| e.event == "mfa.failed")
                .count();
            assert_eq!(failed, 2);
        }
    }

    #[tokio::test]
    async fn a_totp_code_is_accepted_once_even_across_pods() {
        for db in testing::both().await {
            let clock = FixedClock::new(NOW);
            let pod_a = service(&db, clock.clone());
            let pod_b = service(&db, clock.clone());
            let (user, secret) = enrol(&db, &pod_a, "carol").await;
            pod_a
                .confirm_totp("t", &user.user_id, &code(&secret, NOW), None)
                .await
                .unwrap();
            // The enrolment code cannot be reused to sign in.
            assert!(matches!(
                pod_b
                    .verify("t", &user.user_id, &code(&secret, NOW), None)
                    .await,
                Err(MfaError::InvalidCode)
            ));
            clock.advance(30);
            let next = code(&secret, clock.now());
            assert_eq!(
                pod_b.verify("t", &user.user_id, &next, None).await.unwrap(),
                MfaMethod::Totp
            );
            assert!(matches!(
                pod_a.verify("t", &user.user_id, &next, None).await,
                Err(MfaError::InvalidCode)
            ));
            // One step of drift either way is fine; two is not.
            clock.advance(60);
            let late = code(&secret, clock.now() - 30);
            assert!(pod_a.verify("t", &user.user_id, &late, None).await.is_ok());
            let early = code(&secret, clock.now() + 60);
            assert!(
                pod_a
                    .verify("t", &user.user_id, &early, None)
                    .await
                    .is_err()
            );
            let kinds: Vec<String> = events(&db).await.into_iter().map(|e| e.event).collect();
            assert_eq!(kinds.iter().filter(|k| *k == "mfa.verified").count(), 2);
            assert_eq!(kinds.iter().filter(|k| *k == "mfa.failed").count(), 3);
        }
    }

    #[tokio::test]
    async fn recovery_codes_work_once_in_the_code_field() {
        for db in testing::both().await {
            let clock = FixedClock::new(NOW);
            let mfa = service(&db, clock.clone());
            let (user, secret) = enrol(&db, &mfa, "dave").await;
            let codes = mfa
                .confirm_totp("t", &user.user_id, &code(&secret, NOW), None)
                .await
                .unwrap();
            let typed = codes[3].to_uppercase().replace('-', " ");
            assert_eq!(
                mfa.verify("t", &user.user_id, &typed, None).await.unwrap(),
                MfaMethod::RecoveryCode
            );
            assert!(matches!(
                mfa.verify("t", &user.user_id, &codes[3], None).await,
                Err(MfaError::InvalidCode)
            ));
            assert!(matches!(
                mfa.verify("t", &user.user_id, "aaaa-bbbb-cccc", None).await,
                Err(MfaError::InvalidCode)
            ));
            assert_eq!(
                mfa.status("t", &user.user_id)
                    .await
                    .unwrap()
                    .recovery_codes_left,
                9
            );
            // Another user's code is no good here.
            let (other, other_secret) = enrol(&db, &mfa, "erin").await;
            let other_codes = mfa
                .confirm_totp("t", &other.user_id, &code(&other_secret, NOW), None)
                .await
                .unwrap();
            assert!(
                mfa.verify("t", &user.user_id, &other_codes[0], None)
                    .await
                    .is_err()
            );
            // New codes replace the old ones.
            let fresh = mfa
                .regenerate_recovery_codes("t", &user.user_id, "user")
                .await
                .unwrap();
            assert!(
                mfa.verify("t", &user.user_id, &codes[0], None)
                    .await
                    .is_err()
            );
            assert!(
                mfa.verify("t", &user.user_id, &fresh[0], None)
                    .await
                    .is_ok()
            );
            // Audit events never carry a code.
            for e in events(&db).await {
                let text = format!("{:?} {}", e.subject, e.details);
                for c in codes.iter().chain(&fresh) {
                    assert!(!text.contains(c.as_str()), "{}: {text}", e.event);
                }
            }
            let used_event = events(&db)
                .await
                .into_iter()
                .find(|e| e.event == "mfa.recovery_code_used")
                .unwrap();
            assert_eq!(used_event.details["recovery_codes_left"], 9);
        }
    }

    #[tokio::test]
    async fn remove_and_the_required_flag_are_audited() {
        for db in testing::both().await {
            let clock = FixedClock::new(NOW);
            let mfa = service(&db, clock.clone());
            let (user, secret) = enrol(&db, &mfa, "frank").await;
            mfa.confirm_totp("t", &user.user_id, &code(&secret, NOW), None)
                .await
                .unwrap();
            assert!(mfa.remove("t", &user.user_id, "cli").await.unwrap());
            assert!(!mfa.remove("t", &user.user_id, "cli").await.unwrap());
            let status = mfa.status("t", &user.user_id).await.unwrap();
            assert_eq!(
                (status.totp_enrolled, status.recovery_codes_left),
                (false, 0)
            );
            assert!(!mfa.required(&TenantPolicy::default(), &status));
            clock.advance(30);
            assert!(
                mfa.verify("t", &user.user_id, &code(&secret, clock.now()), None)
                    .await
                    .is_err()
            );

            mfa.set_required("t", &user.user_id, true, "admin-api")
                .await
                .unwrap();
            let status = mfa.status("t", &user.user_id).await.unwrap();
            assert!(status.required_for_user);
            assert!(mfa.required(&TenantPolicy::default(), &status));
            let mut policy = TenantPolicy::default();
            policy.mfa.required = true;
            assert!(mfa.required(
                &policy,
                &MfaStatus {
                    required_for_user: false,
                    ..status
                }
            ));
            assert!(matches!(
                mfa.set_required("t", "nobody", true, "cli").await,
                Err(MfaError::UnknownUser)
            ));
            assert!(matches!(
                mfa.status("t", "nobody").await,
                Err(MfaError::UnknownUser)
            ));
            assert!(matches!(
                mfa.regenerate_recovery_codes("t", &user.user_id, "user")
                    .await,
                Err(MfaError::NotEnrolled)
            ));
            let kinds: Vec<String> = events(&db).await.into_iter().map(|e| e.event).collect();
            assert_eq!(
                kinds.iter().filter(|k| *k == "mfa.removed").count(),
                1,
                "{}",
                db.name()
            );
            assert_eq!(
                kinds
                    .iter()
                    .filter(|k| *k == "mfa.required_changed")
                    .count(),
                1
            );
        }
    }

    #[tokio::test]
    async fn reencryption_moves_secrets_to_the_new_kek_and_they_keep_working() {
        for db in testing::both().await {
            let clock = FixedClock::new(NOW);
            let old = service(&db, clock.clone());
            let (user, secret) = enrol(&db, &old, "gina").await;
            old.confirm_totp("t", &user.user_id, &code(&secret, NOW), None)
                .await
                .unwrap();
            let new_kek = Kek::from_hex(&Kek::generate_hex()).unwrap();
            let new_id = new_kek.id().to_owned();
            let new = MfaService::new(db.store.clone(), Arc::new(new_kek), clock.clone(), true);
            let old_kek = Kek::from_hex(&SecretString::from(
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_owned(),
            ))
            .unwrap();
            // The wrong old key fails and changes nothing.
            let wrong = Kek::from_hex(&Kek::generate_hex()).unwrap();
            assert!(new.reencrypt(&wrong).await.is_err());
            assert_ne!(
                db.store
                    .get_totp("t", &user.user_id)
                    .await
                    .unwrap()
                    .unwrap()
                    .kek_id,
                new_id
            );
            assert_eq!(new.reencrypt(&old_kek).await.unwrap(), 1, "{}", db.name());
            assert_eq!(new.reencrypt(&old_kek).await.unwrap(), 0);
            let row = db
                .store
                .get_totp("t", &user.user_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.kek_id, new_id);
            clock.advance(30);
            assert_eq!(
                new.verify("t", &user.user_id, &code(&secret, clock.now()), None)
                    .await
                    .unwrap(),
                MfaMethod::Totp
            );
        }
    }

    #[tokio::test]
    async fn enrolling_an_unknown_user_fails_and_writes_nothing() {
        for db in testing::both().await {
            let mfa = service(&db, FixedClock::new(NOW));
            let real = db.user("t", "henry").await;
            let tenant = db.store.get_tenant("t").await.unwrap().unwrap();
            let ghost = StoredUser {
                user_id: "no-such-id".to_owned(),
                ..real
            };
            assert!(
                matches!(
                    mfa.begin_totp(&tenant, &ghost).await,
                    Err(MfaError::UnknownUser)
                ),
                "{}",
                db.name()
            );
            assert!(db.store.list_all_totp().await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_sealed_secret_moved_to_another_user_does_not_open() {
        for db in testing::both().await {
            let clock = FixedClock::new(NOW);
            let mfa = service(&db, clock.clone());
            let (alice, _) = enrol(&db, &mfa, "alice").await;
            let bob = db.user("t", "bob").await;
            let row = db
                .store
                .get_totp("t", &alice.user_id)
                .await
                .unwrap()
                .unwrap();
            db.store
                .begin_totp("t", &bob.user_id, &row.secret_sealed, &row.kek_id, NOW)
                .await
                .unwrap();
            assert!(matches!(
                mfa.confirm_totp("t", &bob.user_id, "123456", None).await,
                Err(MfaError::Decrypt(_))
            ));
        }
    }
}
