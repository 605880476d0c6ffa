//! The password step of a sign-in, and the end every sign-in method shares
//! ([`Engine::signed_in`]). Failures look the same whatever went wrong, and cost the
//! same Argon2 work (unknown users are checked against a dummy hash, in `users`).

use secrecy::SecretString;
use serde_json::json;

use super::authorization::browser_mut;
use super::decide::{ACR_PASSWORD, AcrDemand};
use super::{Engine, Error, LoginForm, LoginProblem, Outcome, Page, Step, Visit, finish, halt};
use crate::domain::policy::TenantPolicy;
use crate::session::{PENDING_LOGIN_SECONDS, PendingLogin, PendingStage};
use crate::store::users::StoredUser;
use crate::throttle::{CheckError, Locked, Reservation};

impl Engine<'_> {
    /// The sign-in form (`GET /login`), pre-filled with the request's `login_hint`. A
    /// browser without a session gets one: the form's CSRF token lives in it.
    pub async fn login_form(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                if visit.browser.is_none() {
                    visit.browser = Some(self.sessions.create(&visit.tenant, &visit.origin).await?);
                }
                let hint = match request {
                    Some(handle) => self.bound(visit, handle).await?.auth.login_hint,
                    None => None,
                };
                Ok(Outcome::ShowLogin(LoginForm {
                    request: request.map(str::to_owned),
                    username: hint,
                    problem: None,
                }))
            }
            .await,
        )
    }

    /// Username and password (`POST /login`, CSRF already checked). The attempt is
    /// counted before the password is checked (see `crate::throttle`); the right
    /// password gives it back. A second factor follows when the tenant or the user
    /// requires one, or when the request's `acr_values` ask for it (step-up).
    pub async fn password(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        username: &str,
        password: &SecretString,
    ) -> Result<Outcome, Error> {
        finish(
            self.password_step(visit, request, username.trim(), password)
                .await,
        )
    }

    async fn password_step(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        username: &str,
        password: &SecretString,
    ) -> Step<Outcome> {
        let step_up = match request {
            Some(handle) => AcrDemand::of(&self.bound(visit, handle).await?.auth.acr_values)
                .needs_second_factor(),
            None => false,
        };
        let form = |username: Option<&str>, problem| {
            Outcome::ShowLogin(LoginForm {
                request: request.map(str::to_owned),
                username: username.map(str::to_owned),
                problem: Some(problem),
            })
        };
        if username.is_empty() {
            return Ok(form(None, LoginProblem::Failed));
        }
        let reservation = match self.reserve(visit, username).await? {
            Ok(r) => r,
            Err(locked) => {
                self.audit_failure(visit, None, "locked").await;
                return Ok(form(Some(username), locked_problem(locked)));
            }
        };
        let verified = match self
            .users
            .verify_and_maybe_rehash(&visit.tenant.id, username, password)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.release(reservation).await;
                return Err(e.into());
            }
        };
        let Some(user) = verified else {
            self.audit_wrong_password(visit, username).await;
            let problem = match self.throttle.failed(reservation).await {
                Some(locked) => locked_problem(locked),
                None => LoginProblem::Failed,
            };
            return Ok(form(Some(username), problem));
        };
        self.release(reservation).await;
        if let Some(next) = self
            .begin_second_factor(visit, &user, request, step_up)
            .await?
        {
            return Ok(next);
        }
        self.forget_failures(visit, username).await;
        self.signed_in(visit, &user, vec!["pwd".to_owned()], ACR_PASSWORD, request)
            .await
    }

    /// When a second factor applies to `user`: records the pending sign-in (no account
    /// session exists until the second factor is done) and sends the browser to it
    /// (verification, or enrolment when required but not set up).
    async fn begin_second_factor(
        &self,
        visit: &mut Visit,
        user: &StoredUser,
        request: Option<&str>,
        step_up: bool,
    ) -> Step<Option<Outcome>> {
        let status = self.mfa.status(&visit.tenant.id, &user.user_id).await?;
        if !step_up && !self.mfa.required(&TenantPolicy::of(&visit.tenant), &status) {
            return Ok(None);
        }
        let stage = if status.totp_enrolled {
            PendingStage::Verify
        } else {
            PendingStage::Enroll
        };
        let expires_at = self.now() + PENDING_LOGIN_SECONDS;
        let browser = browser_mut(visit)?;
        browser.data.pending = Some(PendingLogin {
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            amr: vec!["pwd".to_owned()],
            stage,
            expires_at,
            request: request.map(str::to_owned),
        });
        self.sessions.save(browser).await?;
        let page = if stage == PendingStage::Verify {
            Page::SecondFactor
        } else {
            Page::Enrollment
        };
        Ok(Some(Outcome::Go(page, request.map(str::to_owned))))
    }

    /// Finishes a sign-in, whatever its method: the account session (`amr`, `acr`),
    /// `login.succeeded`, then back to the authorization request, or the signed-in page
    /// when the sign-in was not for one.
    pub(super) async fn signed_in(
        &self,
        visit: &mut Visit,
        user: &StoredUser,
        amr: Vec<String>,
        acr: &str,
        request: Option<&str>,
    ) -> Step<Outcome> {
        let tenant = visit.tenant.clone();
        let origin = visit.origin.clone();
        let browser = browser_mut(visit)?;
        let session = self
            .sessions
            .sign_in(
                &tenant,
                browser,
                &user.user_id,
                amr,
                Some(acr.to_owned()),
                &origin,
            )
            .await?;
        let event = self
            .event(visit, "login.succeeded", &user.user_id)
            .details(json!({ "username": user.username, "amr": session.amr, "sid": session.sid }));
        self.store.audit(event).await;
        tracing::info!(tenant = %tenant.id, user_id = %user.user_id, "user signed in");
        match request {
            // The request moved with the browser's new id (see `rotate_browser_session`).
            Some(handle) => self.back_to_request(visit, handle, &session.sid).await,
            None => Ok(Outcome::SignedIn {
                username: user.username.clone(),
            }),
        }
    }

    /// Counts an attempt for the username and the visit's address before its secret is
    /// checked: `Ok(Err(lock))` when either is locked (refuse without checking).
    pub(super) async fn reserve(
        &self,
        visit: &Visit,
        username: &str,
    ) -> Step<Result<Reservation, Locked>> {
        let ip = visit.origin.ip.as_deref().and_then(|i| i.parse().ok());
        match self.throttle.reserve(&visit.tenant.id, username, ip).await {
            Ok(r) => Ok(Ok(r)),
            Err(CheckError::Locked(l)) => Ok(Err(l)),
            Err(CheckError::Store(e)) => Err(Error::Throttle(e).into()),
        }
    }

    /// Gives back an attempt that did not fail. A throttle that cannot be written is
    /// logged, not shown: the attempt itself went through.
    pub(super) async fn release(&self, reservation: Reservation) {
        if let Err(e) = self.throttle.release(reservation).await {
            tracing::warn!(error = %e, "failed to give back a sign-in attempt");
        }
    }

    /// Forgets the username's failures after a complete sign-in.
    pub(super) async fn forget_failures(&self, visit: &Visit, username: &str) {
        if let Err(e) = self
            .throttle
            .record_success(&visit.tenant.id, username)
            .await
        {
            tracing::warn!(error = %e, "failed to clear sign-in failures");
        }
    }

    /// `login.failed` with a reason class and, when known, the user id.
    async fn audit_failure(&self, visit: &Visit, user_id: Option<&str>, reason: &str) {
        let event = self
            .event(visit, "login.failed", "")
            .subject(user_id)
            .details(json!({ "reason": reason }));
        self.store.audit(event).await;
    }

    /// Records why a password was refused, as a class: never the password.
    async fn audit_wrong_password(&self, visit: &Visit, username: &str) {
        let known = self
            .users
            .get_by_username(&visit.tenant.id, username)
            .await
            .ok()
            .flatten();
        let (reason, subject) = match &known {
            None => ("unknown_user", None),
            Some(u) if u.password_hash.is_none() => ("no_password", Some(u.user_id.as_str())),
            Some(u) => ("bad_password", Some(u.user_id.as_str())),
        };
        self.audit_failure(visit, subject, reason).await;
    }
}

fn locked_problem(l: Locked) -> LoginProblem {
    LoginProblem::Locked {
        retry_after_seconds: l.retry_after_seconds,
    }
}

/// Stops a step on the login form of `request` (used by steps that lost their pending
/// sign-in).
pub(super) fn restart<T>(request: Option<&str>) -> Step<T> {
    halt(Outcome::Go(Page::Login, request.map(str::to_owned)))
}
