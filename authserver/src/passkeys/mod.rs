//! Passkeys (WebAuthn Level 3): registering a user's credentials and checking their
//! assertions, for passwordless sign-in, as a second factor, and for enrolment.
//!
//! The relying party is the tenant: its ID is the host of the issuer and its one allowed
//! origin the issuer's origin, so a credential made for one tenant's host is refused on
//! any other, and tenants on one host still never see each other's credentials (they
//! are looked up within the tenant). Browsers refuse WebAuthn on IP-address origins: a
//! development issuer must be `http://localhost:PORT`, not `http://127.0.0.1:PORT`.
//!
//! We use the core API of kanidm's `webauthn-rs` rather than its opinionated wrapper
//! because the tenant's policy sets what the wrapper fixes: user verification for a
//! second factor, attestation, and discoverable (resident) credentials for passwordless
//! sign-in. The invariants the wrapper keeps are kept here: the ceremony state stays on
//! the server (in the browser session) and is used once; a credential id already
//! registered is refused; the user handle of a discoverable assertion must name the
//! credential's owner; a counter that does not move forward refuses the sign-in.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use webauthn_rs_core::WebauthnCore;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AttestationMetadata, AuthenticationResult,
    AuthenticationState, Credential, PublicKeyCredential, RegisterPublicKeyCredential,
    RegistrationState, RequestRegistrationExtensions, UserVerificationPolicy,
};

use crate::clock::Clock;
use crate::crypto::b64url;
use crate::domain::policy::{Attestation, PasskeyPolicy, UserVerification};
use crate::domain::tenant::Tenant;
use crate::store::passkeys::{PasskeyUse, StoredPasskey};
use crate::store::users::StoredUser;
use crate::store::{self, Store};

/// How long the browser has to answer a challenge.
pub const CEREMONY_SECONDS: i64 = 300;

/// Longest passkey name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Largest authenticator response accepted (JSON text): real ones are a few KiB, with
/// attestation certificates at most ~16 KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a passkey operation failed. The sign-in pages show one message for every
/// refused assertion; the variants are for the audit trail and the tests.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("passkeys are turned off for this tenant")]
    Disabled,
    #[error("the issuer cannot be a WebAuthn relying party: {0}")]
    RelyingParty(String),
    #[error("the authenticator's response is malformed: {0}")]
    Malformed(String),
    #[error("the authenticator's response was refused: {0}")]
    Refused(#[source] WebauthnError),
    #[error("no such passkey in this tenant")]
    UnknownCredential,
    #[error("the passkey does not belong to this user")]
    WrongUser,
    #[error("the passkey's signature counter went backwards: it may have been cloned")]
    CounterRegression,
    #[error("user verification was required but not performed")]
    NotVerified,
    #[error("this passkey is already registered")]
    AlreadyRegistered,
    #[error("name the passkey (1 to {MAX_NAME_LEN} characters)")]
    InvalidName,
    #[error(transparent)]
    Store(#[from] store::Error),
}

pub type Result<T, E = PasskeyError> = std::result::Result<T, E>;

/// A started ceremony: the options for `navigator.credentials.create/get` (as JSON, the
/// `publicKey` member inside) and the state to keep on the server until the answer.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub options: Value,
    pub state: String,
}

/// A checked assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: String,
    pub credential_id: String,
    /// RFC 8176 `amr` of the key: `hwk` (device-bound) or `swk` (synced, backup-eligible).
    pub key_amr: &'static str,
    pub user_verified: bool,
}

/// Which assertion a ceremony expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// A discoverable credential of any user, with user verification (passwordless).
    AnyUser,
    /// One of this user's credentials (second factor).
    User(&'a str),
}

/// The WebAuthn handle the interaction engine and the account pages use.
pub struct PasskeyService {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl PasskeyService {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Whether the tenant's issuer can be a relying party at all (a domain name, not
    /// an IP address).
    pub fn available(&self, tenant: &Tenant) -> bool {
        Self::relying_party(tenant).is_ok()
    }

    /// The tenant as relying party: ID = the issuer's host, origin = the issuer's.
    fn relying_party(tenant: &Tenant) -> Result<WebauthnCore> {
        let issuer = url::Url::parse(&tenant.issuer)
            .map_err(|e| PasskeyError::RelyingParty(e.to_string()))?;
        let host = match issuer.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            _ => {
                return Err(PasskeyError::RelyingParty(format!(
                    "{} has no domain name (browsers refuse WebAuthn on IP addresses; use \
                     localhost in development)",
                    tenant.issuer
                )));
            }
        };
        let origin = url::Url::parse(&issuer.origin().ascii_serialization())
            .map_err(|e| PasskeyError::RelyingParty(e.to_string()))?;
        Ok(WebauthnCore::new_unsafe_experts_only(
            &tenant.display_name,
            &host,
            vec![origin],
            Duration::from_secs(CEREMONY_SECONDS.unsigned_abs()),
            Some(false),
            Some(false),
        ))
    }

    /// Options to register a new passkey for `user` (excluding the ones they have).
    /// Discoverable when the tenant allows passwordless sign-in, so the same passkey
    /// can later sign in without a username.
    pub async fn start_registration(
        &self,
        tenant: &Tenant,
        policy: &PasskeyPolicy,
        user: &StoredUser,
    ) -> Result<Challenge> {
        if !policy.enabled {
            return Err(PasskeyError::Disabled);
        }
        let rp = Self::relying_party(tenant)?;
        let exclude = self
            .store
            .list_passkeys(&tenant.id, &user.user_id)
            .await?
            .iter()
            .filter_map(|p| decode_id(&p.credential_id))
            .collect::<Vec<_>>();
        let display = user
            .profile
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(&user.username);
        let builder = rp
            .new_challenge_register_builder(&user_handle(&user.user_id), &user.username, display)
            .map_err(PasskeyError::Refused)?
            .attestation(match policy.attestation {
                Attestation::None => AttestationConveyancePreference::None,
                Attestation::Direct => AttestationConveyancePreference::Direct,
            })
            .user_verification_policy(registration_uv(policy))
            .require_resident_key(policy.passwordless())
            .exclude_credentials(Some(exclude))
            .extensions(Some(RequestRegistrationExtensions {
                cred_props: Some(true),
                ..Default::default()
            }));
        let (ccr, state) = rp
            .generate_challenge_register(builder)
            .map_err(PasskeyError::Refused)?;
        challenge(&ccr.public_key, &state)
    }

    /// Checks the authenticator's answer to [`Self::start_registration`] and stores the
    /// passkey under `name`; with whether the authenticator verified the user.
    pub async fn finish_registration(
        &self,
        tenant: &Tenant,
        user: &StoredUser,
        state: &str,
        response: &str,
        name: &str,
    ) -> Result<(StoredPasskey, bool)> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_LEN
            || name.chars().any(char::is_control)
        {
            return Err(PasskeyError::InvalidName);
        }
        let rp = Self::relying_party(tenant)?;
        let state: RegistrationState = parse_state(state)?;
        let reg: RegisterPublicKeyCredential = parse_response(response)?;
        let cred = rp
            .register_credential(&reg, &state, None)
            .map_err(PasskeyError::Refused)?;
        let aaguid = match &cred.attestation.metadata {
            AttestationMetadata::Packed { aaguid } | AttestationMetadata::Tpm { aaguid, .. } => {
                Some(aaguid.to_string())
            }
            _ => None,
        };
        let passkey = StoredPasskey {
            tenant_id: tenant.id.clone(),
            credential_id: b64url(&cred.cred_id),
            user_id: user.user_id.clone(),
            name: name.to_owned(),
            credential: serialise(&cred)?,
            sign_count: i64::from(cred.counter),
            backup_eligible: cred.backup_eligible,
            backup_state: cred.backup_state,
            aaguid,
            created_at: self.clock.now(),
            last_used_at: None,
        };
        if !self.store.insert_passkey(&passkey).await? {
            return Err(PasskeyError::AlreadyRegistered);
        }
        Ok((passkey, cred.user_verified))
    }

    /// Options to sign in with a discoverable passkey (no username; user verification
    /// required).
    pub fn start_sign_in(&self, tenant: &Tenant, policy: &PasskeyPolicy) -> Result<Challenge> {
        if !policy.passwordless() {
            return Err(PasskeyError::Disabled);
        }
        let rp = Self::relying_party(tenant)?;
        let builder = rp
            .new_challenge_authenticate_builder(Vec::new(), Some(UserVerificationPolicy::Required))
            .map_err(PasskeyError::Refused)?;
        let (rcr, state) = rp
            .generate_challenge_authenticate(builder)
            .map_err(PasskeyError::Refused)?;
        challenge(&rcr.public_key, &state)
    }

    /// Options to prove one of `user_id`'s passkeys (a second factor).
    pub async fn start_second_factor(
        &self,
        tenant: &Tenant,
        policy: &PasskeyPolicy,
        user_id: &str,
    ) -> Result<Challenge> {
        if !policy.enabled {
            return Err(PasskeyError::Disabled);
        }
        let rp = Self::relying_party(tenant)?;
        let creds = self
            .store
            .list_passkeys(&tenant.id, user_id)
            .await?
            .iter()
            .map(deserialise)
            .collect::<Result<Vec<_>>>()?;
        if creds.is_empty() {
            return Err(PasskeyError::UnknownCredential);
        }
        let uv = match policy.user_verification {
            UserVerification::Required => UserVerificationPolicy::Required,
            UserVerification::Preferred => UserVerificationPolicy::Preferred,
        };
        let builder = rp
            .new_challenge_authenticate_builder(creds, Some(uv))
            .map_err(PasskeyError::Refused)?
            .allow_backup_eligible_upgrade(true);
        let (rcr, state) = rp
            .generate_challenge_authenticate(builder)
            .map_err(PasskeyError::Refused)?;
        challenge(&rcr.public_key, &state)
    }

    /// Checks an assertion against the ceremony `state`, then records the use (counter,
    /// backup state, last use) with a write conditional on the counter it was checked
    /// against.
    pub async fn finish_assertion(
        &self,
        tenant: &Tenant,
        state: &str,
        response: &str,
        expect: Expect<'_>,
    ) -> Result<Verified> {
        let rp = Self::relying_party(tenant)?;
        let state: AuthenticationState = parse_state(state)?;
        let assertion: PublicKeyCredential = parse_response(response)?;
        let credential_id = b64url(assertion.get_credential_id());
        let stored = self
            .store
            .get_passkey(&tenant.id, &credential_id)
            .await?
            .ok_or(PasskeyError::UnknownCredential)?;
        let handle = assertion.get_user_unique_id();
        match expect {
            // The identified user's credential, and a user handle, when the
            // authenticator sends one, that names them (WebAuthn §7.2 step 6).
            Expect::User(user_id)
                if stored.user_id != user_id
                    || handle.is_some_and(|h| h != user_handle(&stored.user_id)) =>
            {
                return Err(PasskeyError::WrongUser);
            }
            // WebAuthn §7.2 step 6: the user handle must name the credential's owner.
            Expect::AnyUser if handle != Some(&user_handle(&stored.user_id)[..]) => {
                return Err(PasskeyError::WrongUser);
            }
            _ => {}
        }
        let mut cred = deserialise(&stored)?;
        let result = rp
            .authenticate_single_credential(&assertion, &state, &cred)
            .map_err(|e| match e {
                WebauthnError::CredentialPossibleCompromise => PasskeyError::CounterRegression,
                other => PasskeyError::Refused(other),
            })?;
        if expect == Expect::AnyUser && !result.user_verified() {
            return Err(PasskeyError::NotVerified);
        }
        let changed = update(&mut cred, &result);
        let use_ = PasskeyUse {
            previous_count: stored.sign_count,
            sign_count: i64::from(cred.counter),
            backup_eligible: cred.backup_eligible,
            backup_state: cred.backup_state,
            at: self.clock.now(),
        };
        let updated = if changed {
            Some(serialise(&cred)?)
        } else {
            None
        };
        if !self
            .store
            .use_passkey(&tenant.id, &credential_id, updated.as_deref(), use_)
            .await?
        {
            // Another assertion moved the counter (or the passkey was removed) since it
            // was read: treat it like a counter that did not move forward.
            return Err(PasskeyError::CounterRegression);
        }
        Ok(Verified {
            user_id: stored.user_id,
            credential_id,
            key_amr: if cred.backup_eligible { "swk" } else { "hwk" },
            user_verified: result.user_verified(),
        })
    }

    /// Removes every passkey of the user (an operator's reset for a lost device), and
    /// audits `passkey.reset`; how many were removed.
    pub async fn remove_all(&self, tenant_id: &str, user_id: &str, actor: &str) -> Result<u64> {
        let n = self.store.delete_passkeys_of(tenant_id, user_id).await?;
        let event =
            crate::store::audit::AuditEvent::new(tenant_id, self.clock.now(), "passkey.reset")
                .actor(Some(actor))
                .subject(Some(user_id))
                .details(serde_json::json!({ "removed": n }));
        self.store.audit(event).await;
        tracing::info!(
            tenant = tenant_id,
            user_id,
            actor,
            removed = n,
            "passkeys reset"
        );
        Ok(n)
    }

    /// A user's passkeys, oldest first.
    pub async fn list(&self, tenant_id: &str, user_id: &str) -> Result<Vec<StoredPasskey>> {
        Ok(self.store.list_passkeys(tenant_id, user_id).await?)
    }
}

/// Takes the counter and backup flags of an accepted assertion into the credential;
/// whether anything changed. (A backup-eligible key never becomes ineligible.)
fn update(cred: &mut Credential, result: &AuthenticationResult) -> bool {
    let mut changed = false;
    if result.counter() > cred.counter {
        cred.counter = result.counter();
        changed = true;
    }
    if result.backup_state() != cred.backup_state {
        cred.backup_state = result.backup_state();
        changed = true;
    }
    if result.backup_eligible() && !cred.backup_eligible {
        cred.backup_eligible = true;
        changed = true;
    }
    changed
}

/// The WebAuthn user handle of a user: the opaque user id itself (at most 64 bytes,
/// WebAuthn §5.4.3), or its SHA-256 when a longer id was imported.
pub fn user_handle(user_id: &str) -> Vec<u8> {
    if user_id.len() <= 64 {
        user_id.as_bytes().to_vec()
    } else {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, user_id.as_bytes())
            .as_ref()
            .to_vec()
    }
}

/// Registration asks for user verification when the passkey may sign in alone.
fn registration_uv(policy: &PasskeyPolicy) -> UserVerificationPolicy {
    if policy.passwordless() || policy.user_verification == UserVerification::Required {
        UserVerificationPolicy::Required
    } else {
        UserVerificationPolicy::Preferred
    }
}

fn challenge(options: &impl serde::Serialize, state: &impl serde::Serialize) -> Result<Challenge> {
    Ok(Challenge {
        options: serde_json::to_value(options)
            .map_err(|e| PasskeyError::Malformed(e.to_string()))?,
        state: serde_json::to_string(state).map_err(|e| PasskeyError::Malformed(e.to_string()))?,
    })
}

fn parse_state<T: serde::de::DeserializeOwned>(state: &str) -> Result<T> {
    serde_json::from_str(state).map_err(|e| PasskeyError::Malformed(format!("ceremony state: {e}")))
}

fn parse_response<T: serde::de::DeserializeOwned>(response: &str) -> Result<T> {
    if response.len() > MAX_RESPONSE_BYTES {
        return Err(PasskeyError::Malformed(format!(
            "larger than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    serde_json::from_str(response).map_err(|e| PasskeyError::Malformed(e.to_string()))
}

fn serialise(cred: &Credential) -> Result<String> {
    serde_json::to_string(cred).map_err(|e| PasskeyError::Malformed(e.to_string()))
}

fn deserialise(p: &StoredPasskey) -> Result<Credential> {
    serde_json::from_str(&p.credential).map_err(|e| {
        PasskeyError::Store(store::Error::Corrupt(format!(
            "passkey {} of user {}: {e}",
            p.credential_id, p.user_id
        )))
    })
}

fn decode_id(id: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()
}
