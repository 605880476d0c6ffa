//! The authorization request itself: stored bound to the browser under a random handle
//! (`start`), driven to its next step each time the browser comes back (`resume`),
//! consent (`consent_page`, `consent`), and the end: a code (`issue`) or an error for
//! the client (`fail`). Issuing the code uses the request up (single use).

use std::collections::HashMap;

use serde_json::json;

use super::decide::{self, Account, Next, Prompts, Situation};
use super::{
    CodeRedirect, ConsentRequest, Decision, Engine, Error, INTERACTION_SECONDS, Outcome, Page,
    Problem, Step, Visit, finish, halt,
};
use crate::authorize::{AuthRequest, Prompt};
use crate::crypto::{handle_hash, new_handle};
use crate::domain::policy::TenantPolicy;
use crate::oauth::ErrorCode;
use crate::session::Browser;
use crate::store::audit::AuditEvent;
use crate::store::authorization_requests::{self, NewAuthRequest, StoredAuthRequest};
use crate::store::codes::{self, NewCode, NewGrant};
use crate::store::consents;
use crate::store::sessions::AccountSession;

/// An open authorization request bound to the visiting browser.
pub(super) struct Bound {
    pub handle: String,
    pub stored: StoredAuthRequest,
    pub auth: AuthRequest,
}

impl Bound {
    /// The request's re-authentication rules (`prompt=login`, `max_age`, `acr_values`).
    fn demands(&self) -> decide::Demands {
        decide::Demands {
            login: self.auth.has_prompt(Prompt::Login),
            max_age: self.auth.max_age,
            acr: decide::AcrDemand::of(&self.auth.acr_values),
            request_created_at: self.stored.created_at,
        }
    }

    fn prompts(&self) -> Prompts {
        Prompts {
            none: self.auth.has_prompt(Prompt::None),
            login: self.auth.has_prompt(Prompt::Login),
            consent: self.auth.has_prompt(Prompt::Consent),
            select_account: self.auth.has_prompt(Prompt::SelectAccount),
        }
    }
}

fn stale<T>() -> Step<T> {
    halt(Outcome::ShowErrorPage(Problem::StaleRequest))
}

fn describe(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UnmetAuthenticationRequirements => {
            "none of the requested acr_values can be satisfied"
        }
        _ => "user interaction is required",
    }
}

impl Engine<'_> {
    /// A validated request arrives (`/authorize`): without a browser session,
    /// `prompt=none` fails at once (no row, no cookie); otherwise the request is stored
    /// bound to the browser and driven to its first step.
    pub async fn start(&self, visit: &mut Visit, auth: AuthRequest) -> Result<Outcome, Error> {
        finish(self.start_step(visit, auth).await)
    }

    async fn start_step(&self, visit: &mut Visit, auth: AuthRequest) -> Step<Outcome> {
        if visit.browser.is_none() {
            if auth.has_prompt(Prompt::None) {
                return Ok(Outcome::RedirectWithError(
                    auth.error(ErrorCode::LoginRequired, "the user is not signed in"),
                ));
            }
            visit.browser = Some(self.sessions.create(&visit.tenant, &visit.origin).await?);
        }
        // The request's languages hold for the pages of its sign-in (OIDC Core
        // §3.1.2.1), and a request without them lets the browser's own apply again.
        let b = browser_mut(visit)?;
        if b.data.ui_locales != auth.ui_locales {
            b.data.ui_locales.clone_from(&auth.ui_locales);
            self.sessions.save(b).await?;
        }
        let browser_id_hash = browser(visit)?.row.id_hash.clone();
        let handle = new_handle();
        let now = self.now();
        let params = serde_json::to_string(&auth).map_err(Error::StoredRequest)?;
        let new = NewAuthRequest {
            handle_hash: handle_hash(&handle),
            client_id: auth.client_id.clone(),
            params,
            pushed: false,
            browser_id_hash: Some(browser_id_hash),
            created_at: now,
            expires_at: now + INTERACTION_SECONDS,
        };
        self.store
            .insert_auth_request(&visit.tenant.id, &new)
            .await?;
        let stored = StoredAuthRequest {
            handle_hash: new.handle_hash,
            client_id: new.client_id,
            params: new.params,
            pushed: false,
            browser_id_hash: new.browser_id_hash,
            login_sid: None,
            created_at: now,
            expires_at: new.expires_at,
            consumed_at: None,
        };
        let bound = Bound {
            handle,
            stored,
            auth,
        };
        self.drive(visit, &bound).await
    }

    /// The browser comes back to the request (`/authorize/continue`) after a step.
    pub async fn resume(&self, visit: &mut Visit, handle: Option<&str>) -> Result<Outcome, Error> {
        finish(
            async {
                let Some(handle) = handle else {
                    return stale();
                };
                let bound = self.bound(visit, handle).await?;
                self.drive(visit, &bound).await
            }
            .await,
        )
    }

    /// The open request `handle` names, if it is bound to the visiting browser;
    /// otherwise the interaction ends on the "stale request" page.
    pub(super) async fn bound(&self, visit: &Visit, handle: &str) -> Step<Bound> {
        let Some(browser) = visit.browser.as_ref() else {
            return stale();
        };
        let Some(stored) = self
            .store
            .get_auth_request(&visit.tenant.id, &handle_hash(handle))
            .await?
        else {
            return stale();
        };
        if !stored.is_open(self.now())
            || stored.browser_id_hash.as_deref() != Some(browser.row.id_hash.as_str())
        {
            return stale();
        }
        let auth =
            serde_json::from_str::<AuthRequest>(&stored.params).map_err(Error::StoredRequest)?;
        Ok(Bound {
            handle: handle.to_owned(),
            stored,
            auth,
        })
    }

    /// Records `sid` as the account signed in (or chosen) for the request, and sends
    /// the browser back to it.
    pub(super) async fn back_to_request(
        &self,
        visit: &Visit,
        handle: &str,
        sid: &str,
    ) -> Step<Outcome> {
        if !self
            .store
            .set_auth_request_login(&visit.tenant.id, &handle_hash(handle), sid, self.now())
            .await?
        {
            return stale();
        }
        Ok(Outcome::Go(Page::Continue, Some(handle.to_owned())))
    }

    /// The browser's valid accounts for the decision, with usernames, and their
    /// sessions by sid (for `amr`/`acr`).
    pub(super) async fn accounts(
        &self,
        visit: &Visit,
    ) -> Step<(Vec<Account>, HashMap<String, AccountSession>)> {
        let sessions = self.sessions.accounts(browser(visit)?).await?;
        let mut accounts = Vec::with_capacity(sessions.len());
        let mut by_sid = HashMap::new();
        for s in sessions {
            let Some(user) = self.store.get_user(&visit.tenant.id, &s.user_id).await? else {
                continue;
            };
            accounts.push(Account {
                sid: s.sid.clone(),
                user_id: s.user_id.clone(),
                username: user.username,
                auth_time: s.auth_time,
                acr: s.acr.clone(),
            });
            by_sid.insert(s.sid.clone(), s);
        }
        Ok((accounts, by_sid))
    }

    /// Sends the request on to its next step.
    async fn drive(&self, visit: &mut Visit, bound: &Bound) -> Step<Outcome> {
        let (accounts, mut sessions) = self.accounts(visit).await?;
        let prompts = bound.prompts();
        let situation = Situation {
            prompts,
            max_age: bound.auth.max_age,
            acr: decide::AcrDemand::of(&bound.auth.acr_values),
            login_hint: bound.auth.login_hint.as_deref(),
            request_created_at: bound.stored.created_at,
            accounts: &accounts,
            chosen_sid: bound.stored.login_sid.as_deref(),
            now: self.now(),
        };
        let account = match decide::account(&situation) {
            Next::Error(code) => return self.fail(visit, bound, code, describe(code), None).await,
            Next::Login { .. } => {
                return Ok(Outcome::Go(Page::Login, Some(bound.handle.clone())));
            }
            Next::SelectAccount => {
                return Ok(Outcome::Go(Page::Chooser, Some(bound.handle.clone())));
            }
            Next::Proceed(a) => a,
        };
        let session = sessions
            .remove(&account.sid)
            .ok_or(Error::Invariant("the decided account has no session"))?;
        // The chosen account becomes the request's and the browser's active one.
        if bound.stored.login_sid.as_deref() != Some(account.sid.as_str())
            && !self
                .store
                .set_auth_request_login(
                    &visit.tenant.id,
                    &bound.stored.handle_hash,
                    &account.sid,
                    self.now(),
                )
                .await?
        {
            return stale();
        }
        let browser = browser_mut(visit)?;
        if browser.data.active_sid.as_deref() != Some(account.sid.as_str()) {
            browser.data.active_sid = Some(account.sid.clone());
            self.sessions.save(browser).await?;
        }
        self.consent_or_issue(visit, bound, prompts, &session).await
    }

    /// With the account settled: consent first when it is needed, otherwise the code.
    async fn consent_or_issue(
        &self,
        visit: &Visit,
        bound: &Bound,
        prompts: Prompts,
        session: &AccountSession,
    ) -> Step<Outcome> {
        let tenant = &visit.tenant;
        let Some(client) = self
            .oauth
            .clients
            .get(&tenant.id, &bound.auth.client_id)
            .await?
        else {
            return halt(Outcome::ShowErrorPage(Problem::UnknownClient));
        };
        let consented = self
            .store
            .consent_scopes(&tenant.id, &session.user_id, &bound.auth.client_id)
            .await?;
        if decide::needs_consent(
            prompts,
            client.spec.first_party,
            &bound.auth.scopes,
            consented.as_deref(),
        ) {
            if prompts.none {
                return self
                    .fail(
                        visit,
                        bound,
                        ErrorCode::ConsentRequired,
                        "the user has not consented to the requested scopes",
                        None,
                    )
                    .await;
            }
            return Ok(Outcome::Go(Page::Consent, Some(bound.handle.clone())));
        }
        self.issue(visit, bound, session, false).await
    }

    /// The request and the account it is for, on the consent page; the sign-in form (or
    /// the client's error) when the request demands a sign-in the account has not made:
    /// the consent page cannot stand in for it (an account picked in the chooser sets
    /// `login_sid` without signing in again).
    async fn consent_context(
        &self,
        visit: &Visit,
        handle: Option<&str>,
    ) -> Step<(Bound, AccountSession)> {
        let Some(handle) = handle else {
            return stale();
        };
        let bound = self.bound(visit, handle).await?;
        let accounts = self.sessions.accounts(browser(visit)?).await?;
        let Some(session) = bound
            .stored
            .login_sid
            .as_deref()
            .and_then(|sid| accounts.into_iter().find(|a| a.sid == sid))
        else {
            return stale();
        };
        if !bound
            .demands()
            .satisfied_by(session.auth_time, session.acr.as_deref(), self.now())
        {
            let outcome = self.reauthenticate(visit, &bound).await?;
            return halt(outcome);
        }
        Ok((bound, session))
    }

    /// The consent page: the client and the scopes it asks for.
    pub async fn consent_page(
        &self,
        visit: &Visit,
        handle: Option<&str>,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let (bound, session) = self.consent_context(visit, handle).await?;
                let username = self
                    .store
                    .get_user(&visit.tenant.id, &session.user_id)
                    .await?
                    .map(|u| u.username)
                    .unwrap_or_default();
                Ok(Outcome::ShowConsent(ConsentRequest {
                    request: bound.handle,
                    client_id: bound.auth.client_id,
                    scopes: bound.auth.scopes,
                    username,
                }))
            }
            .await,
        )
    }

    /// The user's answer: `Allow` stores the consent (added to what was granted before)
    /// and issues the code in the same unit of work; `Deny` sends `access_denied`.
    pub async fn consent(
        &self,
        visit: &Visit,
        handle: Option<&str>,
        decision: Option<Decision>,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let (bound, session) = self.consent_context(visit, handle).await?;
                match decision {
                    Some(Decision::Allow) => self.issue(visit, &bound, &session, true).await,
                    Some(Decision::Deny) => {
                        let event = self
                            .event(visit, "consent.denied", &session.user_id)
                            .details(json!({ "client_id": bound.auth.client_id }));
                        self.fail(
                            visit,
                            &bound,
                            ErrorCode::AccessDenied,
                            "the user denied the request",
                            Some(event),
                        )
                        .await
                    }
                    None => Ok(Outcome::ShowErrorPage(Problem::NoDecision)),
                }
            }
            .await,
        )
    }

    /// The request's sign-in is not good enough (`prompt=login`, `max_age`,
    /// `acr_values`): the sign-in form for it, or the client's error when it cannot ask.
    async fn reauthenticate(&self, visit: &Visit, bound: &Bound) -> Step<Outcome> {
        let code = match bound.demands().acr {
            decide::AcrDemand::Unmet => ErrorCode::UnmetAuthenticationRequirements,
            _ if bound.auth.has_prompt(Prompt::None) => ErrorCode::LoginRequired,
            _ => return Ok(Outcome::Go(Page::Login, Some(bound.handle.clone()))),
        };
        self.fail(visit, bound, code, describe(code), None).await
    }

    /// Ends the request with `unmet_authentication_requirements`: what it asks of the
    /// sign-in cannot be done.
    pub(super) async fn unmet(&self, visit: &Visit, bound: &Bound) -> Step<Outcome> {
        let code = ErrorCode::UnmetAuthenticationRequirements;
        self.fail(visit, bound, code, describe(code), None).await
    }

    /// Ends the request with an error for the client (and `event`, in the same unit of
    /// work).
    async fn fail(
        &self,
        visit: &Visit,
        bound: &Bound,
        code: ErrorCode,
        description: &str,
        event: Option<AuditEvent>,
    ) -> Step<Outcome> {
        let mut unit = self.store.begin().await?;
        if let Some(e) = event {
            unit.audit(e);
        }
        authorization_requests::consume(
            unit.conn(),
            &visit.tenant.id,
            &bound.stored.handle_hash,
            self.now(),
        )
        .await?;
        unit.commit().await?;
        Ok(Outcome::RedirectWithError(
            bound.auth.error(code, description),
        ))
    }

    /// Issues the code for `session`; the request is used up. Whatever page led here,
    /// the request's re-authentication rules are checked first: a sign-in that is not
    /// fresh or strong enough gets the sign-in form, never a code. One unit of work:
    /// the consent (when `consented` here), the request used up, the grant and its
    /// code, and their audit events.
    async fn issue(
        &self,
        visit: &Visit,
        bound: &Bound,
        session: &AccountSession,
        consented: bool,
    ) -> Step<Outcome> {
        let tenant = &visit.tenant;
        let now = self.now();
        if !bound
            .demands()
            .satisfied_by(session.auth_time, session.acr.as_deref(), now)
        {
            return self.reauthenticate(visit, bound).await;
        }
        let auth = &bound.auth;
        let policy = TenantPolicy::of(tenant);
        let lifetime = |s: u64| i64::try_from(s).unwrap_or(i64::MAX / 2);
        let code = new_handle();
        let grant = NewGrant {
            tenant_id: tenant.id.clone(),
            grant_id: new_handle(),
            client_id: auth.client_id.clone(),
            user_id: session.user_id.clone(),
            sid: Some(session.sid.clone()),
            scope: auth.scopes.join(" "),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            acr: session.acr.clone(),
            created_at: now,
            expires_at: now + lifetime(policy.tokens.refresh_token_seconds),
        };
        let new_code = NewCode {
            code_hash: handle_hash(&code),
            redirect_uri: auth.redirect_uri.clone(),
            nonce: auth.nonce.clone(),
            code_challenge: auth.code_challenge.clone(),
            code_challenge_method: auth.code_challenge_method.clone(),
            dpop_jkt: auth.dpop_jkt.clone(),
            expires_at: now + lifetime(policy.tokens.authorization_code_seconds),
        };

        let mut unit = self.store.begin().await?;
        if consented {
            consents::record(
                unit.conn(),
                &tenant.id,
                &session.user_id,
                &auth.client_id,
                &auth.scopes,
                now,
            )
            .await?;
            let event = self
                .event(visit, "consent.granted", &session.user_id)
                .details(json!({ "client_id": auth.client_id, "scopes": auth.scopes }));
            unit.audit(event);
        }
        if !authorization_requests::consume(unit.conn(), &tenant.id, &bound.stored.handle_hash, now)
            .await?
        {
            // Used or expired meanwhile (another tab): nothing of this step is kept.
            return stale();
        }
        codes::insert(unit.conn(), &grant, &new_code).await?;
        let event = self
            .event(visit, "authorization.granted", &session.user_id)
            .details(json!({
                "client_id": auth.client_id,
                "scope": grant.scope,
                "grant_id": grant.grant_id,
                "sid": session.sid,
            }));
        unit.audit(event);
        unit.commit().await?;
        Ok(Outcome::RedirectWithCode(CodeRedirect {
            redirect_uri: auth.redirect_uri.clone(),
            response_mode: auth.response_mode,
            code,
            state: auth.state.clone(),
        }))
    }

    /// An event the user caused, from the visit's address.
    pub(super) fn event(&self, visit: &Visit, name: &str, user_id: &str) -> AuditEvent {
        AuditEvent::new(&visit.tenant.id, self.now(), name)
            .actor(Some("user"))
            .subject(Some(user_id))
            .ip(visit.origin.ip.as_deref())
    }
}

/// The visit's browser session; the steps that need one are reached only with one.
pub(super) fn browser(visit: &Visit) -> Result<&Browser, Error> {
    visit.browser.as_ref().ok_or(Error::Invariant(
        "interaction step without a browser session",
    ))
}

pub(super) fn browser_mut(visit: &mut Visit) -> Result<&mut Browser, Error> {
    visit.browser.as_mut().ok_or(Error::Invariant(
        "interaction step without a browser session",
    ))
}
