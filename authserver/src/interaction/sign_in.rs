//! The password step of a sign-in, and the end every sign-in method shares
//! ([`Engine::signed_in`]). Failures look the same whatever went wrong, and cost the
//! same Argon2 work (unknown users are checked against a dummy hash, in `users`).

use secrecy::SecretString;
use serde_json::json;

use super::authorization::{browser, browser_mut};
use super::decide::{ACR_MFA, ACR_PASSWORD, AcrDemand, acr_level};
use super::{
    Engine, Error, LoginForm, LoginProblem, Outcome, Page, Problem, ProviderButton, Step, Visit,
    finish, halt,
};
use crate::authorize::Prompt;
use crate::crypto::handle_hash;
use crate::domain::policy::TenantPolicy;
use crate::session::{
    Authentication, Browser, PENDING_LOGIN_SECONDS, PendingLogin, PendingStage, ReturnTo, SignedIn,
};
use crate::store::authorization_requests;
use crate::store::users::StoredUser;
use crate::throttle::{CheckError, Locked, Reservation};

impl Engine<'_> {
    /// The sign-in form (`GET /login`), pre-filled with the request's `login_hint`. A
    /// browser without a session gets one: the form's CSRF token lives in it.
    ///
    /// `return_to`: where a sign-in without a request ends (an account page sent the
    /// browser here); kept in the browser session so that it survives the second
    /// factor. A request wins over it.
    pub async fn login_form(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        return_to: Option<ReturnTo>,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                if visit.browser.is_none() {
                    visit.browser = Some(self.sessions.create(&visit.tenant, &visit.origin).await?);
                }
                let return_to = return_to.filter(|_| request.is_none());
                let b = browser_mut(visit)?;
                if b.data.return_to != return_to {
                    b.data.return_to = return_to;
                    self.sessions.save(b).await?;
                }
                let (hint, prompt_login) = match request {
                    Some(handle) => {
                        let auth = self.bound(visit, handle).await?.auth;
                        let login = auth.prompt.contains(&Prompt::Login);
                        (auth.login_hint, login)
                    }
                    None => (None, false),
                };
                // Home-realm discovery, or the tenant's only upstream: straight there.
                let federation = TenantPolicy::of(&visit.tenant).federation;
                let direct = hint
                    .as_deref()
                    .and_then(|h| federation.provider_for_hint(h))
                    .or_else(|| federation.only_provider());
                if let Some(provider) = direct {
                    return self
                        .go_upstream(visit, request, provider, hint.as_deref(), prompt_login)
                        .await;
                }
                Ok(self.show_login(visit, request, hint, None))
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
        let demand = match request {
            Some(handle) => AcrDemand::of(&self.bound(visit, handle).await?.auth.acr_values),
            None => AcrDemand::Any,
        };
        let form = |username: Option<&str>, problem| {
            self.show_login(visit, request, username.map(str::to_owned), Some(problem))
        };
        if username.is_empty() {
            return Ok(form(None, LoginProblem::Failed));
        }
        if username.chars().any(char::is_control) {
            // No username has one (PostgreSQL could not even look a NUL up): refused
            // before any lookup, local or in a directory.
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
            // No local password decided it: the tenant's directories may.
            if TenantPolicy::of(&visit.tenant)
                .federation
                .directories()
                .next()
                .is_some()
                && !self.has_local_password(visit, username).await?
            {
                return self
                    .directory_step(visit, request, username, password, reservation)
                    .await;
            }
            self.audit_wrong_password(visit, username).await;
            let problem = match self.throttle.failed(reservation).await {
                Some(locked) => locked_problem(locked),
                None => LoginProblem::Failed,
            };
            return Ok(form(Some(username), problem));
        };
        // The password was right: the attempt is given back whatever comes next.
        if self.email.blocks_sign_in(&visit.tenant, &user) {
            self.release(reservation).await;
            self.audit_failure(visit, Some(&user.user_id), "email_unverified")
                .await;
            return Ok(form(Some(username), LoginProblem::Unverified));
        }
        match self
            .begin_second_factor(visit, &user, request, demand, FirstFactor::Password)
            .await
        {
            Ok(None) => {}
            Ok(Some(next)) => {
                self.release(reservation).await;
                return Ok(next);
            }
            Err(stop) => {
                self.release(reservation).await;
                return Err(stop);
            }
        }
        self.succeeded(visit, reservation, username).await;
        self.signed_in(visit, &user, vec!["pwd".to_owned()], ACR_PASSWORD, request)
            .await
    }

    /// The sign-in form, offering a passkey when the tenant allows passwordless
    /// sign-in and its issuer can be a WebAuthn relying party.
    pub(super) fn show_login(
        &self,
        visit: &Visit,
        request: Option<&str>,
        username: Option<String>,
        problem: Option<LoginProblem>,
    ) -> Outcome {
        let tenant = &visit.tenant;
        let policy = TenantPolicy::of(tenant);
        Outcome::ShowLogin(LoginForm {
            request: request.map(str::to_owned),
            username,
            passkey: policy.passkeys.passwordless() && self.passkeys.available(tenant),
            providers: policy
                .federation
                .buttons()
                .map(|p| ProviderButton {
                    id: p.id.clone(),
                    display_name: p.display_name.clone(),
                })
                .collect(),
            problem,
        })
    }

    /// When a second factor applies to `user`: records the pending sign-in (no account
    /// session exists until the second factor is done) and sends the browser to it
    /// (verification, or enrolment when required but not set up). A request that asks
    /// for phishing-resistant authentication takes only a passkey: a user without one
    /// sends the client `unmet_authentication_requirements`.
    ///
    /// The same rule after a password and after an upstream sign-in (an enrolled
    /// factor is always asked for: an upstream account linked with the password alone
    /// must not get past the user's authenticator); after an upstream sign-in the
    /// tenant may also require one of everybody (`federation.requireSecondFactor`).
    pub(super) async fn begin_second_factor(
        &self,
        visit: &mut Visit,
        user: &StoredUser,
        request: Option<&str>,
        demand: AcrDemand,
        first: FirstFactor,
    ) -> Step<Option<Outcome>> {
        let status = self.mfa.status(&visit.tenant.id, &user.user_id).await?;
        let policy = TenantPolicy::of(&visit.tenant);
        let required = self.mfa.required(&policy, &status)
            || (matches!(first, FirstFactor::Upstream(_))
                && policy.federation.require_second_factor);
        let device = self.device_challenge(visit, user).await?;
        if !demand.needs_second_factor() && !required && device.is_none() {
            return Ok(None);
        }
        let usable_passkey = policy.passkeys.enabled && status.passkeys > 0;
        let passkey_only = demand.needs_passkey();
        // Only the device asks (not the tenant's MFA rule, not the request): a user
        // without a factor may prove the sign-in with a code mailed to their verified
        // address instead of enrolling one.
        let device_only = device.is_some() && !required && !demand.needs_second_factor();
        let stage = if passkey_only && !usable_passkey {
            return match request {
                Some(handle) => {
                    let bound = self.bound(visit, handle).await?;
                    self.unmet(visit, &bound).await.map(Some)
                }
                None => Err(Error::Invariant("a demand without a request").into()),
            };
        } else if status.totp_enrolled || usable_passkey {
            PendingStage::Verify
        } else if device_only && self.email.can_send_device_code(user) {
            PendingStage::EmailCode
        } else {
            PendingStage::Enroll
        };
        let email_code_hash = if stage == PendingStage::EmailCode {
            let code = crate::crypto::random_digits(EMAIL_CODE_DIGITS);
            let sent = self
                .email
                .send_device_code(&visit.tenant, user, &code, &visit.lang)
                .await?;
            if !sent {
                self.audit_failure(visit, Some(&user.user_id), "device_code_limit")
                    .await;
                return Ok(Some(self.show_login(
                    visit,
                    request,
                    Some(user.username.clone()),
                    Some(LoginProblem::DeviceCodeLimit),
                )));
            }
            Some(handle_hash(&code))
        } else {
            None
        };
        let expires_at = self.now() + PENDING_LOGIN_SECONDS;
        let browser = browser_mut(visit)?;
        browser.data.pending = Some(PendingLogin {
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            amr: match first {
                FirstFactor::Password => vec!["pwd".to_owned()],
                FirstFactor::Upstream(amr) => amr,
            },
            stage,
            expires_at,
            request: request.map(str::to_owned),
            passkey_only,
            email_code_hash,
            email_code_failures: 0,
        });
        browser.data.user_locale = crate::users::preferred_locale(user).map(str::to_owned);
        self.sessions.save(browser).await?;
        let page = if stage == PendingStage::Enroll {
            Page::Enrollment
        } else {
            Page::SecondFactor
        };
        Ok(Some(Outcome::Go(page, request.map(str::to_owned))))
    }

    /// Whether the visit's device asks for a second factor (the tenant's `devices`
    /// policy): a new or no longer trusted device, or impossible travel. Impossible
    /// travel is audited here (`login.impossible_travel`), whether or not the tenant
    /// answers it with a challenge, and before the second factor: a sign-in with a
    /// stolen password from far away is recorded even when it goes no further.
    async fn device_challenge(
        &self,
        visit: &Visit,
        user: &StoredUser,
    ) -> Step<Option<crate::devices::Challenge>> {
        let policy = TenantPolicy::of(&visit.tenant).devices;
        let assessment = self
            .devices
            .assess(&visit.tenant, &user.user_id, &visit.origin)
            .await?;
        let challenge = assessment.challenge(&policy);
        if assessment.impossible_travel {
            let mut details = travel_details(assessment.journey.as_ref());
            details["username"] = json!(user.username);
            details["challenged"] = json!(challenge.is_some());
            details["country"] = json!(self.devices.locate(visit.origin.ip.as_deref()).country);
            let event = self
                .event(visit, "login.impossible_travel", &user.user_id)
                .details(details);
            self.store.audit(event).await;
            tracing::warn!(tenant = %visit.tenant.id, user_id = %user.user_id, "impossible travel");
        }
        Ok(challenge)
    }

    /// Finishes a sign-in, whatever its method: the account session (`amr`, `acr`),
    /// `login.succeeded`, then back to the authorization request, or the signed-in page
    /// when the sign-in was not for one. One unit of work with linking the request: a
    /// request used up or expired meanwhile keeps nothing of the sign-in (the browser
    /// keeps its id and its accounts, nothing is audited).
    pub(super) async fn signed_in(
        &self,
        visit: &mut Visit,
        user: &StoredUser,
        amr: Vec<String>,
        acr: &str,
        request: Option<&str>,
    ) -> Step<Outcome> {
        let tenant = visit.tenant.clone();
        let return_to = browser(visit)?.data.return_to;
        // A second factor of ours (or the upstream's, acr 2 and up), or a mailed code
        // (`otp` without `mfa`: see `second_factor`): what earns a device its trust.
        let second_factor =
            acr_level(Some(acr)) >= acr_level(Some(ACR_MFA)) || amr.iter().any(|a| a == "otp");
        let remember = TenantPolicy::of(&tenant).devices.remembers()
            || self.email.notices_new_devices(&tenant);
        let who = Authentication {
            user_id: user.user_id.clone(),
            locale: crate::users::preferred_locale(user).map(str::to_owned),
            amr,
            acr: Some(acr.to_owned()),
        };
        let mut unit = self.store.begin().await?;
        let SignedIn {
            browser: signed_in,
            session,
        } = self
            .sessions
            .sign_in(&mut unit, &tenant, browser(visit)?, who, &visit.origin)
            .await?;
        let device = self
            .devices
            .on_sign_in(
                unit.conn(),
                &tenant,
                &user.user_id,
                &visit.origin,
                remember,
                second_factor,
            )
            .await?;
        let mut details =
            json!({ "username": user.username, "amr": session.amr, "sid": session.sid });
        if let Some(country) = &device.place.country {
            details["country"] = json!(country);
        }
        if device.impossible_travel {
            details["impossible_travel"] = travel_details(device.journey.as_ref());
        }
        let event = self
            .event(visit, "login.succeeded", &user.user_id)
            .details(details);
        unit.audit(event);
        self.email
            .on_sign_in(
                unit.conn(),
                &tenant,
                user,
                &visit.origin,
                &visit.lang,
                device.seen,
            )
            .await?;
        // The request moved with the browser's new id (see `sessions::rotate`).
        if let Some(handle) = request
            && !authorization_requests::set_login(
                unit.conn(),
                &tenant.id,
                &handle_hash(handle),
                &session.sid,
                self.now(),
            )
            .await?
        {
            return halt(Outcome::ShowErrorPage(Problem::StaleRequest));
        }
        unit.commit().await?;
        visit.browser = Some(Browser {
            device_cookie: device.new_cookie,
            ..signed_in
        });
        tracing::info!(tenant = %tenant.id, user_id = %user.user_id, "user signed in");
        Ok(match (request, return_to) {
            (Some(handle), _) => Outcome::Go(Page::Continue, Some(handle.to_owned())),
            (None, Some(ReturnTo::Account)) => Outcome::Go(Page::Account, None),
            (None, None) => Outcome::SignedIn {
                username: user.username.clone(),
            },
        })
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

    /// Settles the attempt of a complete sign-in: given back on the address, the
    /// username's failures forgotten.
    pub(super) async fn succeeded(&self, visit: &Visit, reservation: Reservation, username: &str) {
        if let Err(e) = self.throttle.succeeded(reservation, username).await {
            tracing::warn!(tenant = %visit.tenant.id, error = %e, "failed to settle a complete sign-in's attempt");
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
    pub(super) async fn audit_failure(&self, visit: &Visit, user_id: Option<&str>, reason: &str) {
        let mut details = json!({ "reason": reason });
        if let Some(country) = self.devices.locate(visit.origin.ip.as_deref()).country {
            details["country"] = json!(country);
        }
        let event = self
            .event(visit, "login.failed", "")
            .subject(user_id)
            .details(details);
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

/// Digits of a mailed new-device code.
pub(super) const EMAIL_CODE_DIGITS: usize = 6;

/// An audit event's account of a journey (rounded: the GeoIP places are approximate).
fn travel_details(journey: Option<&crate::devices::Journey>) -> serde_json::Value {
    match journey {
        Some(j) => json!({
            "distance_km": j.distance_km.round(),
            "elapsed_seconds": j.elapsed_seconds,
            "speed_kmh": if j.speed_kmh.is_finite() { json!(j.speed_kmh.round()) } else { json!(null) },
        }),
        None => json!({}),
    }
}

/// How the first step of a sign-in authenticated the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FirstFactor {
    Password,
    /// An upstream identity provider; our `amr` for it (`fed`, then the upstream's).
    Upstream(Vec<String>),
}

pub(super) fn locked_problem(l: Locked) -> LoginProblem {
    LoginProblem::Locked {
        retry_after_seconds: l.retry_after_seconds,
    }
}

/// Stops a step on the login form of `request` (used by steps that lost their pending
/// sign-in).
pub(super) fn restart<T>(request: Option<&str>) -> Step<T> {
    halt(Outcome::Go(Page::Login, request.map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    //! A sign-in is one unit of work with the step that follows it (linking the
    //! authorization request it was for): all of it is kept, or none.

    use std::sync::Arc;

    use crate::authorize::{AuthRequest, ResponseMode};
    use crate::crypto::handle_hash;
    use crate::http::testing::{NOW, TestApp};
    use crate::interaction::decide::ACR_PASSWORD;
    use crate::interaction::{Outcome, Page, Problem, Visit};
    use crate::session::Origin;
    use crate::store::Backend;
    use crate::store::users::StoredUser;

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "rp".into(),
            redirect_uri: "https://rp.example/cb".into(),
            response_mode: ResponseMode::Query,
            scopes: vec!["openid".into()],
            state: None,
            nonce: None,
            prompt: Vec::new(),
            max_age: None,
            login_hint: None,
            acr_values: Vec::new(),
            code_challenge: Some("c".repeat(43)),
            code_challenge_method: Some("S256".into()),
            dpop_jkt: None,
            ui_locales: None,
        }
    }

    /// Tenant `main`, user alice, and a browser with an open request for her: the
    /// request's handle.
    async fn setup(app: &TestApp) -> (Visit, StoredUser, String) {
        let alice = StoredUser {
            tenant_id: "main".into(),
            user_id: "id-alice".into(),
            username: "alice".into(),
            email: None,
            email_verified: false,
            profile: serde_json::Map::new(),
            password_hash: None,
            created_at: NOW,
            updated_at: NOW,
        };
        app.state.store.insert_user(&alice).await.expect("user");
        let tenant = app
            .state
            .store
            .get_tenant("main")
            .await
            .expect("read")
            .expect("tenant");
        let mut visit = Visit {
            tenant: Arc::new(tenant),
            origin: Origin {
                ip: Some("192.0.2.7".into()),
                user_agent: Some("test".into()),
                device: None,
            },
            browser: None,
            lang: crate::ui::i18n::Lang::default(),
        };
        let o = app
            .state
            .interaction()
            .start(&mut visit, request())
            .await
            .expect("start");
        let Outcome::Go(Page::Login, Some(handle)) = o else {
            panic!("expected the sign-in page, got {o:?}");
        };
        (visit, alice, handle)
    }

    /// Alice's password sign-in in `visit`, for the request `handle`.
    async fn sign_in_for(
        app: &TestApp,
        visit: &mut Visit,
        alice: &StoredUser,
        handle: &str,
    ) -> crate::interaction::Step<Outcome> {
        app.state
            .interaction()
            .signed_in(visit, alice, vec!["pwd".into()], ACR_PASSWORD, Some(handle))
            .await
    }

    async fn events(app: &TestApp) -> Vec<String> {
        let events = app
            .state
            .store
            .list_audit("main", 100)
            .await
            .expect("audit");
        events.into_iter().map(|e| e.event).collect()
    }

    #[tokio::test]
    async fn a_sign_in_for_a_request_used_up_meanwhile_keeps_nothing() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let app = TestApp::new(backend).await;
            let (mut visit, alice, handle) = setup(&app).await;
            let store = &app.state.store;
            let before = visit.browser.clone().expect("browser");
            let events_before = events(&app).await;
            // Another tab finished the request first.
            assert!(
                store
                    .consume_auth_request("main", &handle_hash(&handle), NOW)
                    .await
                    .expect("consume")
            );
            let o = sign_in_for(&app, &mut visit, &alice, &handle).await;
            assert!(
                matches!(
                    o,
                    Err(crate::interaction::Halt::Show(Outcome::ShowErrorPage(
                        Problem::StaleRequest
                    )))
                ),
                "{backend:?}"
            );
            // The browser is the one it was: same id, no new cookie, same data.
            let after = visit.browser.as_ref().expect("browser");
            assert_eq!(after.row, before.row, "{backend:?}");
            assert_eq!(after.data, before.data, "{backend:?}");
            assert_eq!(after.new_cookie, before.new_cookie, "{backend:?}");
            let row = store
                .get_browser_session("main", &before.row.id_hash)
                .await
                .expect("read");
            assert_eq!(row.as_ref(), Some(&before.row), "{backend:?}: not rotated");
            let accounts = store
                .list_browser_accounts("main", &before.row.id_hash)
                .await
                .expect("read");
            assert!(accounts.is_empty(), "{backend:?}: no account session");
            assert_eq!(events(&app).await, events_before, "{backend:?}: no audit");
        }
    }

    #[tokio::test]
    async fn a_sign_in_for_an_open_request_writes_all_of_it() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let app = TestApp::new(backend).await;
            let (mut visit, alice, handle) = setup(&app).await;
            let store = &app.state.store;
            let before = visit.browser.clone().expect("browser");
            let o = sign_in_for(&app, &mut visit, &alice, &handle).await;
            assert!(
                matches!(&o, Ok(Outcome::Go(Page::Continue, Some(h))) if *h == handle),
                "{backend:?}"
            );
            // Rotated: a new id and cookie; the old row is gone.
            let after = visit.browser.as_ref().expect("browser");
            assert_ne!(after.row.id_hash, before.row.id_hash, "{backend:?}");
            assert!(after.new_cookie.is_some(), "{backend:?}");
            assert_eq!(
                store
                    .get_browser_session("main", &before.row.id_hash)
                    .await
                    .expect("read"),
                None,
                "{backend:?}"
            );
            // The account session, active in the browser and linked to the request.
            let accounts = store
                .list_browser_accounts("main", &after.row.id_hash)
                .await
                .expect("read");
            assert_eq!(accounts.len(), 1, "{backend:?}");
            let sid = &accounts[0].sid;
            assert_eq!(after.data.active_sid.as_ref(), Some(sid), "{backend:?}");
            let loaded = app
                .state
                .sessions
                .load(&visit.tenant, after.new_cookie.as_deref(), &visit.origin)
                .await
                .expect("load")
                .expect("the new cookie names the rotated row");
            assert_eq!(loaded.data, after.data, "{backend:?}: data saved");
            let request = store
                .get_auth_request("main", &handle_hash(&handle))
                .await
                .expect("read")
                .expect("request");
            assert_eq!(request.login_sid.as_ref(), Some(sid), "{backend:?}");
            assert_eq!(
                request.browser_id_hash.as_ref(),
                Some(&after.row.id_hash),
                "{backend:?}: the request moved with the browser"
            );
            let events = events(&app).await;
            for e in ["session.created", "login.succeeded"] {
                assert!(
                    events.iter().any(|x| x == e),
                    "{backend:?}: {e} in {events:?}"
                );
            }
        }
    }
}
