//! The second step of a sign-in: a TOTP code or one of the recovery codes and, when a
//! second factor is required but not set up, enrolment (a new secret, a code to confirm
//! it, then the recovery codes, shown once). Between the password and this step the
//! browser session holds the pending sign-in (user, first `amr`, five minutes).
//!
//! New-device verification (`devices`) of a user without a factor of their own uses the
//! same page with a code mailed to their verified address ([`PendingStage::EmailCode`]):
//! only its hash is kept in the pending sign-in, it is compared in constant time,
//! counted by the login throttle, and dies after [`MAX_EMAIL_CODE_FAILURES`] wrong ones.

use super::authorization::browser_mut;
use subtle::ConstantTimeEq as _;

use super::decide::{ACR_MFA, ACR_PASSWORD};
use super::sign_in::restart;
use super::{
    CodeProblem, Engine, EnrollmentForm, Error, Outcome, Page, RecoveryCodes, SecondFactorForm,
    Step, Visit, finish,
};
use crate::crypto::handle_hash;
use crate::domain::policy::TenantPolicy;
use crate::mfa::MfaError;
use crate::session::{PendingLogin, PendingStage};
use crate::throttle::{Locked, Reservation};

/// `amr` after a second factor (RFC 8176): the first factor's (`pwd`, or `fed` and
/// the upstream's after an upstream sign-in), then `otp` and `mfa`.
fn mfa_amr(first: &[String]) -> Vec<String> {
    let mut amr = first.to_vec();
    for m in ["otp", "mfa"] {
        if !amr.iter().any(|a| a == m) {
            amr.push(m.to_owned());
        }
    }
    amr
}

/// Wrong entries a mailed new-device code survives; then the sign-in starts over (and
/// a new code is mailed, within `email.per_address_per_hour`).
pub(super) const MAX_EMAIL_CODE_FAILURES: u8 = 5;

fn locked(l: Locked) -> CodeProblem {
    CodeProblem::Locked {
        retry_after_seconds: l.retry_after_seconds,
    }
}

impl Engine<'_> {
    /// A wrong code: the attempt stays counted; the form says so, or that the username
    /// is now locked.
    async fn wrong_code(&self, reservation: Reservation) -> CodeProblem {
        match self.throttle.failed(reservation).await {
            Some(l) => locked(l),
            None => CodeProblem::Wrong,
        }
    }

    /// The browser's pending sign-in at one of `stages`; the sign-in form of `request`
    /// when there is none, it expired, or it is at another stage.
    pub(super) fn pending(
        &self,
        visit: &Visit,
        request: Option<&str>,
        stages: &[PendingStage],
    ) -> Step<PendingLogin> {
        let Some(browser) = visit.browser.as_ref() else {
            return restart(request);
        };
        match &browser.data.pending {
            // A mailed code that was guessed at too often is dead: the sign-in starts over.
            Some(p)
                if p.expires_at > self.now()
                    && stages.contains(&p.stage)
                    && (p.stage != PendingStage::EmailCode
                        || (p.email_code_hash.is_some()
                            && p.email_code_failures < MAX_EMAIL_CODE_FAILURES)) =>
            {
                Ok(p.clone())
            }
            _ => restart(request),
        }
    }

    /// The second-factor page: a code form when the user has an authenticator (and the
    /// request takes a code), a passkey button when they have a passkey.
    pub async fn second_factor_form(
        &self,
        visit: &Visit,
        request: Option<&str>,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let p = self.pending(
                    visit,
                    request,
                    &[PendingStage::Verify, PendingStage::EmailCode],
                )?;
                self.factor_form(visit, &p, None).await
            }
            .await,
        )
    }

    /// The second-factor page for the pending sign-in `p`, with `problem`.
    pub(super) async fn factor_form(
        &self,
        visit: &Visit,
        p: &PendingLogin,
        problem: Option<CodeProblem>,
    ) -> Step<Outcome> {
        if p.stage == PendingStage::EmailCode {
            return Ok(Outcome::ShowSecondFactor(SecondFactorForm {
                request: p.request.clone(),
                totp: false,
                passkey: false,
                email_code: true,
                problem,
            }));
        }
        let status = self.mfa.status(&visit.tenant.id, &p.user_id).await?;
        let passkeys_on = TenantPolicy::of(&visit.tenant).passkeys.enabled
            && self.passkeys.available(&visit.tenant);
        Ok(Outcome::ShowSecondFactor(SecondFactorForm {
            request: p.request.clone(),
            totp: status.totp_enrolled && !p.passkey_only,
            passkey: passkeys_on && status.passkeys > 0,
            email_code: false,
            problem,
        }))
    }

    /// A code (`totp`: TOTP or a recovery code), counted like a password attempt.
    pub async fn second_factor(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        code: &str,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let p = self.pending(
                    visit,
                    request,
                    &[PendingStage::Verify, PendingStage::EmailCode],
                )?;
                if p.stage == PendingStage::EmailCode {
                    return self.email_code(visit, &p, code).await;
                }
                if p.passkey_only {
                    return self
                        .factor_form(visit, &p, Some(CodeProblem::PasskeyRequired))
                        .await;
                }
                let reservation = match self.reserve(visit, &p.username).await? {
                    Ok(r) => r,
                    Err(l) => return self.factor_form(visit, &p, Some(locked(l))).await,
                };
                let verified = self
                    .mfa
                    .verify(
                        &visit.tenant.id,
                        &p.user_id,
                        code.trim(),
                        visit.origin.ip.as_deref(),
                    )
                    .await;
                match verified {
                    Ok(_) => self.release(reservation).await,
                    Err(MfaError::InvalidCode | MfaError::NotEnrolled) => {
                        let problem = self.wrong_code(reservation).await;
                        return self.factor_form(visit, &p, Some(problem)).await;
                    }
                    Err(e) => {
                        self.release(reservation).await;
                        return Err(e.into());
                    }
                }
                self.second_factor_done(visit, &p).await
            }
            .await,
        )
    }

    /// The enrolment page with a new secret.
    pub async fn enrollment_form(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let p = self.pending(visit, request, &[PendingStage::Enroll])?;
                self.enrollment(visit, &p, false, None).await
            }
            .await,
        )
    }

    /// The first code of a new secret; then the recovery codes. After them, the same
    /// form's "continue" finishes the sign-in.
    pub async fn enroll(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        code: &str,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let p = self.pending(
                    visit,
                    request,
                    &[PendingStage::Enroll, PendingStage::Enrolled],
                )?;
                if p.stage == PendingStage::Enrolled {
                    return self.second_factor_done(visit, &p).await;
                }
                // Guessing the first code is throttled like guessing a sign-in code.
                let reservation = match self.reserve(visit, &p.username).await? {
                    Ok(r) => r,
                    Err(l) => return self.enrollment(visit, &p, true, Some(locked(l))).await,
                };
                let confirmed = self
                    .mfa
                    .confirm_totp(
                        &visit.tenant.id,
                        &p.user_id,
                        code.trim(),
                        visit.origin.ip.as_deref(),
                    )
                    .await;
                let codes = match confirmed {
                    Ok(c) => {
                        self.release(reservation).await;
                        c
                    }
                    Err(MfaError::InvalidCode | MfaError::NotEnrolling) => {
                        let problem = self.wrong_code(reservation).await;
                        return self.enrollment(visit, &p, true, Some(problem)).await;
                    }
                    Err(e) => {
                        self.release(reservation).await;
                        return Err(e.into());
                    }
                };
                let browser = browser_mut(visit)?;
                if let Some(pending) = browser.data.pending.as_mut() {
                    pending.stage = PendingStage::Enrolled;
                    pending.amr = mfa_amr(&pending.amr);
                }
                self.sessions.save(browser).await?;
                Ok(Outcome::ShowRecoveryCodes(RecoveryCodes {
                    request: p.request,
                    codes,
                }))
            }
            .await,
        )
    }

    /// The enrolment page. `keep_pending`: the secret of the enrolment already started
    /// (after a wrong code: the user has scanned it), rather than a new one.
    pub(super) async fn enrollment(
        &self,
        visit: &mut Visit,
        p: &PendingLogin,
        keep_pending: bool,
        problem: Option<CodeProblem>,
    ) -> Step<Outcome> {
        let tenant = visit.tenant.clone();
        let Some(user) = self.store.get_user(&tenant.id, &p.user_id).await? else {
            return restart(p.request.as_deref());
        };
        let shown = if keep_pending {
            self.mfa.pending_totp(&tenant, &user).await?
        } else {
            None
        };
        let enrollment = match shown {
            Some(e) => Ok(e),
            None => self.mfa.begin_totp(&tenant, &user).await,
        };
        let enrollment = match enrollment {
            Ok(e) => e,
            Err(MfaError::AlreadyEnrolled) => {
                // Enrolled meanwhile (another tab): verify instead.
                let browser = browser_mut(visit)?;
                if let Some(pending) = browser.data.pending.as_mut() {
                    pending.stage = PendingStage::Verify;
                }
                self.sessions.save(browser).await?;
                return Ok(Outcome::Go(Page::SecondFactor, p.request.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Outcome::ShowEnrollment(EnrollmentForm {
            request: p.request.clone(),
            qr_data_uri: enrollment.qr_data_uri,
            secret_base32: enrollment.secret_base32,
            passkey: TenantPolicy::of(&tenant).passkeys.enabled && self.passkeys.available(&tenant),
            problem,
        }))
    }

    /// The code mailed for a new device: counted like a password attempt (per username
    /// and address), and at most [`MAX_EMAIL_CODE_FAILURES`] wrong ones per code. The
    /// code is compared by its hash, in constant time.
    async fn email_code(&self, visit: &mut Visit, p: &PendingLogin, code: &str) -> Step<Outcome> {
        let reservation = match self.reserve(visit, &p.username).await? {
            Ok(r) => r,
            Err(l) => return self.factor_form(visit, p, Some(locked(l))).await,
        };
        let given = handle_hash(code.trim());
        let right = p
            .email_code_hash
            .as_deref()
            .is_some_and(|h| bool::from(h.as_bytes().ct_eq(given.as_bytes())));
        if !right {
            let problem = self.wrong_code(reservation).await;
            let browser = browser_mut(visit)?;
            if let Some(pending) = browser.data.pending.as_mut() {
                pending.email_code_failures = pending.email_code_failures.saturating_add(1);
            }
            self.sessions.save(browser).await?;
            self.audit_failure(visit, Some(&p.user_id), "bad_device_code")
                .await;
            if p.email_code_failures.saturating_add(1) >= MAX_EMAIL_CODE_FAILURES {
                return restart(p.request.as_deref());
            }
            return self.factor_form(visit, p, Some(problem)).await;
        }
        self.release(reservation).await;
        let Some(user) = self.store.get_user(&visit.tenant.id, &p.user_id).await? else {
            return restart(p.request.as_deref());
        };
        self.forget_failures(visit, &p.username).await;
        // `otp` (RFC 8176), not `mfa`, and the password's acr: the code proves the
        // mailbox for this device, but is not the authenticator a client asking for
        // acr 2 means.
        let mut amr = p.amr.clone();
        if !amr.iter().any(|a| a == "otp") {
            amr.push("otp".to_owned());
        }
        self.signed_in(visit, &user, amr, ACR_PASSWORD, p.request.as_deref())
            .await
    }

    pub(super) async fn second_factor_done(
        &self,
        visit: &mut Visit,
        p: &PendingLogin,
    ) -> Step<Outcome> {
        let Some(user) = self.store.get_user(&visit.tenant.id, &p.user_id).await? else {
            return restart(p.request.as_deref());
        };
        self.forget_failures(visit, &p.username).await;
        self.signed_in(visit, &user, mfa_amr(&p.amr), ACR_MFA, p.request.as_deref())
            .await
    }
}
