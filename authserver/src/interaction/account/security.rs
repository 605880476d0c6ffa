//! The security page: the second factors of the signed-in user. TOTP enrolment (the
//! same [`crate::mfa::MfaService`] steps as the sign-in's enrolment, QR code included)
//! and removal, and regenerating the recovery codes (shown once).
//!
//! Removing needs proof (the current password or a code, throttled like a sign-in)
//! and obeys one rule, [`may_remove`] over [`second_factor_count`]: the last second
//! factor of a user who must have one (tenant policy `mfa.required`, or the user's own
//! flag) cannot be removed. Passkeys count as factors ([`Factors::passkeys`]): their
//! registration and removal are steps of their own (`interaction::passkey`, page
//! `/account/passkeys`), and their removal goes through the same rule.

use secrecy::SecretString;

use super::{AccountPage, Checked, Me, settle};
use crate::domain::policy::TenantPolicy;
use crate::interaction::{Engine, Error, Step, Visit};
use crate::mfa::{MfaError, MfaStatus, TotpEnrollment};

/// The second factors a user has set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Factors {
    /// A confirmed TOTP authenticator (its recovery codes go with it: they are not a
    /// factor of their own).
    pub totp: bool,
    /// Registered passkeys.
    pub passkeys: usize,
}

/// How many second factors `factors` are.
pub fn second_factor_count(factors: &Factors) -> usize {
    usize::from(factors.totp) + factors.passkeys
}

/// Whether `removing` of the user's factors may go: always when no second factor is
/// required, otherwise only if at least one stays.
pub fn may_remove(factors: &Factors, removing: usize, required: bool) -> bool {
    !required || second_factor_count(factors) > removing
}

/// What the security page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub username: String,
    pub factors: Factors,
    pub recovery_codes_left: usize,
    /// A second factor is required (tenant policy or the user's flag).
    pub mfa_required: bool,
    /// An enrolment started and not yet confirmed: its QR code and key.
    pub enrolment: Option<TotpEnrollment>,
}

/// Proof that the person removing a factor is the user.
#[derive(Debug)]
pub enum Proof {
    Password(SecretString),
    /// A TOTP code or a recovery code.
    Code(String),
    /// Neither was given.
    None,
}

/// What a change on the security page did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOutcome {
    /// Done: the page again with a notice.
    Done(SecurityNotice),
    /// The page (with the enrolment just started, or with a problem).
    Show(Security, Option<SecurityProblem>),
    /// New recovery codes (after enrolment or regeneration), shown once.
    RecoveryCodes(Vec<String>),
}

/// A change that was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityNotice {
    TotpRemoved,
}

/// Why a change on the security page was refused (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProblem {
    /// The enrolment code is wrong.
    WrongCode,
    /// Neither the password nor a code proved it is the user.
    WrongProof,
    Locked {
        retry_after_seconds: u64,
    },
    /// It is the last second factor and one is required.
    LastFactor,
    /// No authenticator is set up.
    NotEnrolled,
    /// An authenticator is already set up.
    AlreadyEnrolled,
    /// No enrolment was started (or it was confirmed meanwhile).
    NoEnrolment,
}

impl Engine<'_> {
    /// The user's factors: the authenticator and the registered passkeys.
    pub(in crate::interaction) fn factors(status: &MfaStatus) -> Factors {
        Factors {
            totp: status.totp_enrolled,
            passkeys: status.passkeys,
        }
    }

    /// Whether the user must keep a second factor: the tenant policy (`mfa.required`)
    /// or the user's own flag.
    pub(in crate::interaction) fn factor_required(visit: &Visit, status: &MfaStatus) -> bool {
        TenantPolicy::of(&visit.tenant).mfa.required || status.required_for_user
    }

    async fn security(&self, visit: &Visit, me: &Me) -> Result<Security, Error> {
        let tenant = &visit.tenant;
        let status = self.mfa.status(&tenant.id, &me.user.user_id).await?;
        let enrolment = if status.totp_enrolled {
            None
        } else {
            self.mfa.pending_totp(tenant, &me.user).await?
        };
        Ok(Security {
            username: me.user.username.clone(),
            factors: Self::factors(&status),
            recovery_codes_left: status.recovery_codes_left,
            mfa_required: Self::factor_required(visit, &status),
            enrolment,
        })
    }

    async fn security_page(
        &self,
        visit: &Visit,
        me: &Me,
        problem: SecurityProblem,
    ) -> Result<AccountPage<SecurityOutcome>, Error> {
        Ok(AccountPage::Show(SecurityOutcome::Show(
            self.security(visit, me).await?,
            Some(problem),
        )))
    }

    /// The security page.
    pub async fn account_security(&self, visit: &Visit) -> Result<AccountPage<Security>, Error> {
        let Some(me) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        Ok(AccountPage::Show(self.security(visit, &me).await?))
    }

    /// Starts TOTP enrolment (a new secret, replacing an unconfirmed one): the page with
    /// the QR code and key.
    pub async fn begin_totp(&self, visit: &Visit) -> Result<AccountPage<SecurityOutcome>, Error> {
        let Some(me) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        match self.mfa.begin_totp(&visit.tenant, &me.user).await {
            Ok(_) => {}
            Err(MfaError::AlreadyEnrolled) => {
                return self
                    .security_page(visit, &me, SecurityProblem::AlreadyEnrolled)
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(AccountPage::Show(SecurityOutcome::Show(
            self.security(visit, &me).await?,
            None,
        )))
    }

    /// Confirms the enrolment with a code from the authenticator: the recovery codes.
    pub async fn confirm_totp(
        &self,
        visit: &Visit,
        code: &str,
    ) -> Result<AccountPage<SecurityOutcome>, Error> {
        let Some(me) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let confirmed = self
            .mfa
            .confirm_totp(
                &visit.tenant.id,
                &me.user.user_id,
                code.trim(),
                visit.origin.ip.as_deref(),
            )
            .await;
        match confirmed {
            Ok(codes) => Ok(AccountPage::Show(SecurityOutcome::RecoveryCodes(codes))),
            Err(MfaError::InvalidCode) => {
                self.security_page(visit, &me, SecurityProblem::WrongCode)
                    .await
            }
            Err(MfaError::NotEnrolling) => {
                self.security_page(visit, &me, SecurityProblem::NoEnrolment)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the TOTP authenticator and its recovery codes, given proof, unless it is
    /// the last required second factor. The user's other sessions end (as with any
    /// removal, see `sessions.revoke_on_credential_reset`); this one stays.
    pub async fn remove_totp(
        &self,
        visit: &Visit,
        proof: Proof,
    ) -> Result<AccountPage<SecurityOutcome>, Error> {
        let Some(me) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let security = self.security(visit, &me).await?;
        let refuse = |p| self.security_page(visit, &me, p);
        if !security.factors.totp {
            return refuse(SecurityProblem::NotEnrolled).await;
        }
        if !may_remove(&security.factors, 1, security.mfa_required) {
            return refuse(SecurityProblem::LastFactor).await;
        }
        match settle(self.check_proof(visit, &me, &proof).await)? {
            Checked::Good => {}
            Checked::Wrong => return refuse(SecurityProblem::WrongProof).await,
            Checked::Locked(l) => {
                return refuse(SecurityProblem::Locked {
                    retry_after_seconds: l.retry_after_seconds,
                })
                .await;
            }
        }
        self.mfa
            .remove_own(
                &visit.tenant.id,
                &me.user.user_id,
                &me.session.sid,
                visit.origin.ip.as_deref(),
            )
            .await?;
        Ok(AccountPage::Show(SecurityOutcome::Done(
            SecurityNotice::TotpRemoved,
        )))
    }

    /// A password or a code, each counted like a sign-in attempt.
    async fn check_proof(&self, visit: &Visit, me: &Me, proof: &Proof) -> Step<Checked> {
        let code = match proof {
            Proof::None => return Ok(Checked::Wrong),
            Proof::Password(p) => {
                return self
                    .check_current_password(visit, me, p, "second_factor_removal")
                    .await;
            }
            Proof::Code(c) => c,
        };
        let reservation = match self.reserve(visit, &me.user.username).await? {
            Ok(r) => r,
            Err(l) => return Ok(Checked::Locked(l)),
        };
        let verified = self
            .mfa
            .verify(
                &visit.tenant.id,
                &me.user.user_id,
                code.trim(),
                visit.origin.ip.as_deref(),
            )
            .await;
        match verified {
            Ok(_) => {
                self.release(reservation).await;
                Ok(Checked::Good)
            }
            Err(MfaError::InvalidCode | MfaError::NotEnrolled) => {
                Ok(match self.throttle.failed(reservation).await {
                    Some(l) => Checked::Locked(l),
                    None => Checked::Wrong,
                })
            }
            Err(e) => {
                self.release(reservation).await;
                Err(e.into())
            }
        }
    }

    /// A fresh set of recovery codes (the old ones stop working), shown once.
    pub async fn regenerate_recovery_codes(
        &self,
        visit: &Visit,
    ) -> Result<AccountPage<SecurityOutcome>, Error> {
        let Some(me) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        match self
            .mfa
            .regenerate_recovery_codes(&visit.tenant.id, &me.user.user_id, "user")
            .await
        {
            Ok(codes) => Ok(AccountPage::Show(SecurityOutcome::RecoveryCodes(codes))),
            Err(MfaError::NotEnrolled) => {
                self.security_page(visit, &me, SecurityProblem::NotEnrolled)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_required_factor_stays() {
        let totp_only = Factors {
            totp: true,
            passkeys: 0,
        };
        assert_eq!(second_factor_count(&totp_only), 1);
        assert!(!may_remove(&totp_only, 1, true));
        assert!(may_remove(&totp_only, 1, false));
    }

    #[test]
    fn a_passkey_counts_as_a_second_factor() {
        let both = Factors {
            totp: true,
            passkeys: 1,
        };
        assert_eq!(second_factor_count(&both), 2);
        assert!(may_remove(&both, 1, true));
        assert!(!may_remove(&both, 2, true));
        assert_eq!(second_factor_count(&Factors::default()), 0);
    }
}
