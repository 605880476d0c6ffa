//! Passkey steps of the engine: passwordless sign-in with a discoverable passkey, a
//! passkey as the pending sign-in's second factor, a passkey registered instead of TOTP
//! during enrolment, the proof of a local account an upstream one is linked to, and the
//! account pages' passkeys (list, add, remove).
//!
//! Each ceremony has two requests: the options (a challenge, kept in the browser
//! session as a [`Ceremony`] for five minutes) and the authenticator's answer, which
//! takes the ceremony out of the session before it is checked, so an answer — or a
//! replay of it — is checked against a challenge at most once. A ceremony answers only
//! the purpose and the user it was started for.

use serde_json::{Value, json};

use super::account::may_remove;
use super::authorization::browser_mut;
use super::decide::{ACR_MFA, ACR_PHISHING_RESISTANT};
use super::sign_in::restart;
use super::{CodeProblem, Engine, Error, LoginProblem, Outcome, Step, Visit, finish};
use crate::clients::Actor;
use crate::crypto::handle_hash;
use crate::domain::policy::TenantPolicy;
use crate::passkeys::{CEREMONY_SECONDS, Expect, PasskeyError, Verified};
use crate::session::{Ceremony, CeremonyPurpose, PendingLogin, PendingStage};
pub use crate::store::passkeys::StoredPasskey;
use crate::store::replay::ReplayCache;
use crate::store::users::StoredUser;

/// How recent the sign-in behind the account pages must be to add a passkey: a stolen
/// session cookie alone must not be able to plant a lasting credential.
pub const REGISTER_REAUTH_SECONDS: i64 = 600;

/// Whether a sign-in at `auth_time` may add a passkey at `now`.
pub(super) fn recent(auth_time: crate::clock::UnixTime, now: crate::clock::UnixTime) -> bool {
    auth_time + REGISTER_REAUTH_SECONDS >= now
}

/// The answer to a ceremony's options request.
#[derive(Debug, Clone, PartialEq)]
pub enum CeremonyStart {
    /// `{"publicKey": …}` for `navigator.credentials.create/get`.
    Options(Value),
    /// Nothing to start, and why (the id of a message for the page's script to show).
    Unavailable(&'static str),
}

/// The account's passkeys page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountPasskeys {
    SignIn,
    Show(PasskeyList),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyList {
    pub username: String,
    pub passkeys: Vec<StoredPasskey>,
    /// Registration is possible (passkeys on, the issuer is a domain).
    pub can_register: bool,
    /// The sign-in is recent enough to add one; otherwise the page asks to sign in again.
    pub recent_sign_in: bool,
    pub problem: Option<PasskeyChange>,
    pub notice: Option<PasskeyChange>,
}

/// What a change on the passkeys page did, or why it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyChange {
    Added,
    Removed,
    /// The authenticator's answer was refused (or the challenge expired).
    Refused,
    AlreadyRegistered,
    InvalidName,
    /// The sign-in is too old to add a passkey.
    SignInAgain,
    /// The last second factor of a user who must have one.
    LastFactor,
    /// No passkey of this user has that id.
    NotFound,
}

// Why a ceremony cannot start, as message ids of the catalogues (`messages.ftl`).
const NO_PASSKEYS: &str = "passkey-unavailable";
const NO_SIGN_IN: &str = "passkey-start-again";

pub(super) fn amr(first: &[String], v: &Verified) -> Vec<String> {
    let mut amr: Vec<String> = first.to_vec();
    amr.push(v.key_amr.to_owned());
    // RFC 8176 `user`: a user-presence test, which every accepted assertion includes
    // (WebAuthn's UP flag). Verification (PIN, biometric) has no value of its own.
    amr.push("user".to_owned());
    amr.push("mfa".to_owned());
    amr
}

impl Engine<'_> {
    /// Starts a ceremony for `purpose` in the visit's browser: the options for the
    /// page's script. Sign-in needs the tenant's passwordless policy; the second factor
    /// and enrolment a pending sign-in at that stage; registration a recent sign-in.
    pub async fn passkey_options(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        purpose: CeremonyPurpose,
    ) -> Result<CeremonyStart, Error> {
        let tenant = visit.tenant.clone();
        let policy = TenantPolicy::of(&tenant).passkeys;
        if visit.browser.is_none() {
            return Ok(CeremonyStart::Unavailable(NO_SIGN_IN));
        }
        let started = match purpose {
            CeremonyPurpose::SignIn => (self.passkeys.start_sign_in(&tenant, &policy), None),
            CeremonyPurpose::SecondFactor => {
                let Some(p) = self.pending_at(visit, request, PendingStage::Verify) else {
                    return Ok(CeremonyStart::Unavailable(NO_SIGN_IN));
                };
                let c = self
                    .passkeys
                    .start_second_factor(&tenant, &policy, &p.user_id)
                    .await;
                (c, Some(p.user_id))
            }
            CeremonyPurpose::Enroll => {
                let Some(p) = self.pending_at(visit, request, PendingStage::Enroll) else {
                    return Ok(CeremonyStart::Unavailable(NO_SIGN_IN));
                };
                let Some(user) = self.store.get_user(&tenant.id, &p.user_id).await? else {
                    return Ok(CeremonyStart::Unavailable(NO_SIGN_IN));
                };
                let c = self
                    .passkeys
                    .start_registration(&tenant, &policy, &user)
                    .await;
                (c, Some(user.user_id))
            }
            CeremonyPurpose::Link => {
                // Only the account the pending link was offered for, by one of its keys.
                let Ok((link, _)) = self.pending_link(visit) else {
                    return Ok(CeremonyStart::Unavailable(NO_SIGN_IN));
                };
                let c = self
                    .passkeys
                    .start_second_factor(&tenant, &policy, &link.user_id)
                    .await;
                (c, Some(link.user_id))
            }
            CeremonyPurpose::Register => {
                let Some((user, recent)) = self.account_user(visit).await? else {
                    return Ok(CeremonyStart::Unavailable(NO_SIGN_IN));
                };
                if !recent {
                    return Ok(CeremonyStart::Unavailable("passkey-sign-in-again"));
                }
                let c = self
                    .passkeys
                    .start_registration(&tenant, &policy, &user)
                    .await;
                (c, Some(user.user_id))
            }
        };
        let challenge = match started {
            (Ok(c), user_id) => (c, user_id),
            (Err(PasskeyError::Disabled | PasskeyError::RelyingParty(_)), _) => {
                return Ok(CeremonyStart::Unavailable(NO_PASSKEYS));
            }
            (Err(PasskeyError::UnknownCredential), _) => {
                return Ok(CeremonyStart::Unavailable("passkey-none"));
            }
            (Err(PasskeyError::Store(e)), _) => return Err(e.into()),
            (Err(e), _) => {
                tracing::warn!(tenant = %tenant.id, error = %e, "could not start a passkey ceremony");
                return Ok(CeremonyStart::Unavailable(NO_PASSKEYS));
            }
        };
        let (challenge, user_id) = challenge;
        let expires_at = self.now() + CEREMONY_SECONDS;
        let browser = browser_mut(visit)?;
        browser.data.ceremony = Some(Ceremony {
            purpose,
            user_id,
            state: challenge.state,
            expires_at,
        });
        self.sessions.save(browser).await?;
        Ok(CeremonyStart::Options(
            json!({ "publicKey": challenge.options }),
        ))
    }

    /// Passwordless sign-in: the answer to a [`CeremonyPurpose::SignIn`] ceremony. A
    /// refused passkey shows the sign-in form with one message, whatever the reason
    /// (which is audited).
    pub async fn passkey_sign_in(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        response: &str,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let refused = |visit: &Visit| {
                    self.show_login(visit, request, None, Some(LoginProblem::Passkey))
                };
                if let Some(handle) = request {
                    // The request must still be open and this browser's.
                    self.bound(visit, handle).await?;
                }
                let Some(ceremony) = self.take_ceremony(visit, CeremonyPurpose::SignIn).await?
                else {
                    return Ok(refused(visit));
                };
                let tenant = visit.tenant.clone();
                let verified = match self
                    .passkeys
                    .finish_assertion(&tenant, &ceremony.state, response, Expect::AnyUser)
                    .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        self.passkey_refused(visit, None, e).await?;
                        return Ok(refused(visit));
                    }
                };
                let Some(user) = self.store.get_user(&tenant.id, &verified.user_id).await? else {
                    return Ok(refused(visit));
                };
                // The same gate as the password's: an unverified address the tenant
                // requires verified keeps the account out, whatever signs it in.
                if self.email.blocks_sign_in(&tenant, &user) {
                    self.audit_failure(visit, Some(&user.user_id), "email_unverified")
                        .await;
                    return Ok(self.show_login(
                        visit,
                        request,
                        Some(user.username),
                        Some(LoginProblem::Unverified),
                    ));
                }
                self.forget_failures(visit, &user.username).await;
                self.signed_in(
                    visit,
                    &user,
                    amr(&[], &verified),
                    ACR_PHISHING_RESISTANT,
                    request,
                )
                .await
            }
            .await,
        )
    }

    /// A passkey as the pending sign-in's second factor.
    pub async fn passkey_second_factor(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        response: &str,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let p = self.pending(visit, request, &[PendingStage::Verify])?;
                let verified = match self
                    .answer_for(visit, &p, CeremonyPurpose::SecondFactor)
                    .await?
                {
                    Some(ceremony) => {
                        self.passkeys
                            .finish_assertion(
                                &visit.tenant,
                                &ceremony.state,
                                response,
                                Expect::User(&p.user_id),
                            )
                            .await
                    }
                    None => Err(PasskeyError::Malformed("no ceremony".into())),
                };
                match verified {
                    Ok(v) => {
                        let user = self.pending_user(visit, &p).await?;
                        self.forget_failures(visit, &p.username).await;
                        self.signed_in(
                            visit,
                            &user,
                            amr(&p.amr, &v),
                            ACR_PHISHING_RESISTANT,
                            p.request.as_deref(),
                        )
                        .await
                    }
                    Err(e) => {
                        self.passkey_refused(visit, Some(&p.user_id), e).await?;
                        self.factor_form(visit, &p, Some(CodeProblem::Passkey))
                            .await
                    }
                }
            }
            .await,
        )
    }

    /// A passkey registered instead of an authenticator app, when a second factor is
    /// required and the user has none: registering it proves the key, and the sign-in
    /// finishes with it.
    pub async fn passkey_enroll(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        response: &str,
        name: &str,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let p = self.pending(visit, request, &[PendingStage::Enroll])?;
                let user = self.pending_user(visit, &p).await?;
                let registered = match self.answer_for(visit, &p, CeremonyPurpose::Enroll).await? {
                    Some(c) => {
                        self.passkeys
                            .finish_registration(&visit.tenant, &user, &c.state, response, name)
                            .await
                    }
                    None => Err(PasskeyError::Malformed("no ceremony".into())),
                };
                match registered {
                    Ok((passkey, user_verified)) => {
                        self.audit_passkey_added(visit, &user, &passkey).await;
                        let v = Verified {
                            user_id: user.user_id.clone(),
                            credential_id: passkey.credential_id,
                            key_amr: if passkey.backup_eligible {
                                "swk"
                            } else {
                                "hwk"
                            },
                            user_verified,
                        };
                        self.forget_failures(visit, &p.username).await;
                        // Registering proves a new key, not that the user held it before:
                        // the password was the only earlier proof. Two factors, not a
                        // phishing-resistant sign-in (a phished password could enrol the
                        // attacker's key); the next passkey sign-in is `phr`.
                        self.signed_in(visit, &user, amr(&p.amr, &v), ACR_MFA, p.request.as_deref())
                            .await
                    }
                    Err(e) => {
                        self.passkey_refused(visit, Some(&user.user_id), e).await?;
                        self.enrollment_problem(visit, &p, CodeProblem::Passkey)
                            .await
                    }
                }
            }
            .await,
        )
    }

    /// The account's passkeys.
    pub async fn account_passkeys(&self, visit: &Visit) -> Result<AccountPasskeys, Error> {
        let Some((user, recent)) = self.account_user(visit).await? else {
            return Ok(AccountPasskeys::SignIn);
        };
        self.passkey_list(visit, &user, recent, None, None).await
    }

    /// Adds the passkey the account page's ceremony created (CSRF already checked).
    pub async fn register_passkey(
        &self,
        visit: &mut Visit,
        response: &str,
        name: &str,
    ) -> Result<AccountPasskeys, Error> {
        let Some((user, recent)) = self.account_user(visit).await? else {
            return Ok(AccountPasskeys::SignIn);
        };
        let ceremony = self
            .take_ceremony(visit, CeremonyPurpose::Register)
            .await?
            .filter(|c| c.user_id.as_deref() == Some(user.user_id.as_str()));
        let result = match (ceremony, recent) {
            (_, false) => Err(PasskeyChange::SignInAgain),
            (None, true) => Err(PasskeyChange::Refused),
            (Some(c), true) => match self
                .passkeys
                .finish_registration(&visit.tenant, &user, &c.state, response, name)
                .await
            {
                Ok((passkey, _)) => {
                    self.audit_passkey_added(visit, &user, &passkey).await;
                    Ok(PasskeyChange::Added)
                }
                Err(PasskeyError::Store(e)) => return Err(e.into()),
                Err(PasskeyError::AlreadyRegistered) => Err(PasskeyChange::AlreadyRegistered),
                Err(PasskeyError::InvalidName) => Err(PasskeyChange::InvalidName),
                Err(e) => {
                    self.passkey_refused(visit, Some(&user.user_id), e).await?;
                    Err(PasskeyChange::Refused)
                }
            },
        };
        let (notice, problem) = match result {
            Ok(n) => (Some(n), None),
            Err(p) => (None, Some(p)),
        };
        self.passkey_list(visit, &user, recent, problem, notice)
            .await
    }

    /// Removes one of the account's passkeys — unless it is the last second factor of a
    /// user who must have one.
    pub async fn remove_passkey(
        &self,
        visit: &Visit,
        credential_id: &str,
    ) -> Result<AccountPasskeys, Error> {
        let Some(me) = self.me(visit).await? else {
            return Ok(AccountPasskeys::SignIn);
        };
        let tenant = &visit.tenant;
        let recent = recent(me.session.auth_time, self.now());
        let security = self.security(visit, &me).await?;
        let user = me.user;
        let mine = security
            .passkeys
            .iter()
            .any(|p| p.credential_id == credential_id);
        let result = if !mine {
            Err(PasskeyChange::NotFound)
        } else if !recent {
            // Like adding one: a stolen session cookie alone must not strip the
            // account's passkeys.
            Err(PasskeyChange::SignInAgain)
        } else if !may_remove(&security.factors, 1, security.mfa_required) {
            Err(PasskeyChange::LastFactor)
        } else if self
            .store
            .delete_passkey(&tenant.id, &user.user_id, credential_id)
            .await?
        {
            let event = self
                .event(visit, "passkey.removed", &user.user_id)
                .details(json!({ "credential_id": credential_id, "actor": Actor::User.as_str() }));
            self.store.audit(event).await;
            Ok(PasskeyChange::Removed)
        } else {
            Err(PasskeyChange::NotFound)
        };
        let (notice, problem) = match result {
            Ok(n) => (Some(n), None),
            Err(p) => (None, Some(p)),
        };
        self.passkey_list(visit, &user, recent, problem, notice)
            .await
    }

    async fn passkey_list(
        &self,
        visit: &Visit,
        user: &StoredUser,
        recent: bool,
        problem: Option<PasskeyChange>,
        notice: Option<PasskeyChange>,
    ) -> Result<AccountPasskeys, Error> {
        let tenant = &visit.tenant;
        let passkeys = self
            .passkeys
            .list(&tenant.id, &user.user_id)
            .await
            .map_err(passkey_store_error)?;
        Ok(AccountPasskeys::Show(PasskeyList {
            username: user.username.clone(),
            passkeys,
            can_register: TenantPolicy::of(tenant).passkeys.enabled
                && self.passkeys.available(tenant),
            recent_sign_in: recent,
            problem,
            notice,
        }))
    }

    /// The browser's active account's user, and whether its sign-in is recent enough
    /// to add a passkey.
    async fn account_user(&self, visit: &Visit) -> Result<Option<(StoredUser, bool)>, Error> {
        let now = self.now();
        Ok(self
            .me(visit)
            .await?
            .map(|me| (me.user, recent(me.session.auth_time, now))))
    }

    /// The browser's pending sign-in at `stage`, if any (for starting a ceremony).
    fn pending_at(
        &self,
        visit: &Visit,
        request: Option<&str>,
        stage: PendingStage,
    ) -> Option<PendingLogin> {
        self.pending(visit, request, &[stage]).ok()
    }

    async fn pending_user(&self, visit: &Visit, p: &PendingLogin) -> Step<StoredUser> {
        match self.store.get_user(&visit.tenant.id, &p.user_id).await? {
            Some(u) => Ok(u),
            None => restart(p.request.as_deref()),
        }
    }

    /// The ceremony of `purpose` started for the pending sign-in's user, taken out of
    /// the session.
    async fn answer_for(
        &self,
        visit: &mut Visit,
        p: &PendingLogin,
        purpose: CeremonyPurpose,
    ) -> Step<Option<Ceremony>> {
        Ok(self
            .take_ceremony(visit, purpose)
            .await?
            .filter(|c| c.user_id.as_deref() == Some(p.user_id.as_str())))
    }

    /// Takes the browser's ceremony out of its session (saved at once) and returns it
    /// when it is for `purpose`, not expired, and its challenge was not spent before.
    pub(super) async fn take_ceremony(
        &self,
        visit: &mut Visit,
        purpose: CeremonyPurpose,
    ) -> Result<Option<Ceremony>, Error> {
        let now = self.now();
        let Some(browser) = visit.browser.as_mut() else {
            return Ok(None);
        };
        let Some(ceremony) = browser.data.ceremony.take() else {
            return Ok(None);
        };
        self.sessions.save(browser).await?;
        if ceremony.purpose != purpose || ceremony.expires_at <= now {
            return Ok(None);
        }
        // Two requests with the same cookie at once both read the ceremony before either
        // saves the session without it: the challenge is spent atomically here, so only
        // one of them goes on.
        let first = self
            .store
            .use_jti(
                ReplayCache::PasskeyChallenge,
                &visit.tenant.id,
                "",
                &handle_hash(&ceremony.state),
                ceremony.expires_at,
            )
            .await?;
        Ok(Some(ceremony).filter(|_| first))
    }

    /// The enrolment page again, with `problem` (the TOTP secret already shown stays).
    async fn enrollment_problem(
        &self,
        visit: &mut Visit,
        p: &PendingLogin,
        problem: CodeProblem,
    ) -> Step<Outcome> {
        self.enrollment(visit, p, true, Some(problem)).await
    }

    /// Audits a refused passkey by its reason class; a store failure is the server's
    /// and fails the step instead.
    pub(super) async fn passkey_refused(
        &self,
        visit: &Visit,
        user_id: Option<&str>,
        e: PasskeyError,
    ) -> Result<(), Error> {
        let reason = match &e {
            PasskeyError::Store(_) => {
                return Err(match e {
                    PasskeyError::Store(e) => e.into(),
                    _ => Error::Invariant("unreachable"),
                });
            }
            PasskeyError::CounterRegression => "passkey_counter_regression",
            PasskeyError::UnknownCredential => "passkey_unknown",
            PasskeyError::WrongUser => "passkey_wrong_user",
            PasskeyError::NotVerified => "passkey_not_verified",
            PasskeyError::AlreadyRegistered => "passkey_already_registered",
            PasskeyError::InvalidName => "passkey_invalid_name",
            PasskeyError::Disabled | PasskeyError::RelyingParty(_) => "passkey_unavailable",
            PasskeyError::Malformed(_) | PasskeyError::Refused(_) => "passkey_refused",
        };
        tracing::info!(tenant = %visit.tenant.id, reason, error = %e, "passkey refused");
        let event = self
            .event(visit, "login.failed", "")
            .subject(user_id)
            .details(json!({ "reason": reason }));
        self.store.audit(event).await;
        Ok(())
    }

    async fn audit_passkey_added(&self, visit: &Visit, user: &StoredUser, p: &StoredPasskey) {
        let event = self
            .event(visit, "passkey.added", &user.user_id)
            .details(json!({
                "credential_id": p.credential_id,
                "name": p.name,
                "backup_eligible": p.backup_eligible,
                "aaguid": p.aaguid,
            }));
        self.store.audit(event).await;
    }
}

/// A store failure while listing passkeys is the server's.
fn passkey_store_error(e: PasskeyError) -> Error {
    match e {
        PasskeyError::Store(e) => e.into(),
        _ => Error::Invariant("listing passkeys failed without a store error"),
    }
}
