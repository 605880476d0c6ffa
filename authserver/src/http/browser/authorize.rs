//! `GET/POST {issuer}/authorize` and `GET {issuer}/authorize/continue?request=<handle>`:
//! the browser side of the authorization code flow.
//!
//! `/authorize` validates the request with `authorize::OAuthService::authorization_request`
//! (a bad client or redirect URI is a page, never a redirect), stores it bound to this
//! browser for ten minutes under a random handle, and decides what comes next
//! ([`super::decide`]): sign-in, account chooser, consent, or the code. Each of those
//! steps comes back through `/authorize/continue`, which honours the handle only in the
//! browser it is bound to. Issuing the code consumes the request (single use).
//!
//! `POST /authorize` touches no session: a cross-site form POST carries no `SameSite=Lax`
//! cookie, so it would look like a browser without a session (starting a new one would
//! replace the user's cookie and sign them out, and `prompt=none` would always fail).
//! It is answered with `303` to `GET /authorize` with the same parameters in the query:
//! that top-level GET carries the cookie.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::decide::{self, Account, Next, Prompts, Situation};
use super::{
    LOGIN_PATH, PageRequest, SELECT_ACCOUNT_PATH, error_page, internal_error, see_other,
    url_with_request, with_cookie,
};
use crate::authorize::{AuthRequest, AuthorizeError, Prompt, response};
use crate::crypto::{handle_hash, new_handle};
use crate::domain::policy::TenantPolicy;
use crate::domain::tenant::Tenant;
use crate::http::AppState;
use crate::oauth::ErrorCode;
use crate::oauth::form::Form;
use crate::session::Browser;
use crate::store::audit::AuditEvent;
use crate::store::authorization_requests::{NewAuthRequest, StoredAuthRequest};
use crate::store::codes::{NewCode, NewGrant};
use crate::store::sessions::AccountSession;

/// How long an interactive authorization request waits for sign-in and consent.
pub const INTERACTION_SECONDS: i64 = 600;

pub const AUTHORIZE_PATH: &str = "/authorize";
pub const CONTINUE_PATH: &str = "/authorize/continue";
pub const CONSENT_PATH: &str = "/consent";

/// The message for a handle that is unknown, used, expired or from another browser.
pub const STALE_REQUEST: &str = "This sign-in request has expired, was already completed, or \
                                 was started in another browser. Go back to the application \
                                 and start again.";

/// `GET/POST {issuer}/authorize`.
/// The largest query `/authorize` accepts.
const MAX_QUERY: usize = 8 * 1024;

pub async fn start(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    if req.is_post() {
        return as_get(&req);
    }
    // Every parameter is stored with the request until it completes: a browser URL has
    // no business being larger (a large request is pushed first, RFC 9126).
    if req.raw_query.len() > MAX_QUERY {
        return error_page(
            &state,
            tenant,
            StatusCode::BAD_REQUEST,
            "The request is too large. Large authorization requests must be pushed (PAR).",
        );
    }
    if let Some(resp) = super::rate_limited(
        &state,
        &req,
        super::Limited::Authorize,
        req.query.get("client_id").map(String::as_str),
    )
    .await
    {
        return resp;
    }
    let form = match Form::parse(
        Some("application/x-www-form-urlencoded"),
        req.raw_query.as_bytes(),
    ) {
        Ok(f) => f,
        Err(e) => {
            let message = e
                .description
                .unwrap_or_else(|| "The request is malformed.".to_owned());
            return error_page(&state, tenant, StatusCode::BAD_REQUEST, &message);
        }
    };
    let auth = match state.oauth.authorization_request(tenant, &form).await {
        Ok(a) => a,
        Err(AuthorizeError::Page { status, message }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return error_page(&state, tenant, status, &message);
        }
        Err(AuthorizeError::Redirect(r)) => return response::error(&tenant.issuer, &r),
    };

    let browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(b) => b,
        Err(e) => return internal_error(&state, tenant, &e),
    };
    // Without a session, `prompt=none` fails at once: no row, no cookie.
    let browser = match browser {
        Some(b) => b,
        None if auth.has_prompt(Prompt::None) => {
            return response::error(
                &tenant.issuer,
                &auth.error(ErrorCode::LoginRequired, "the user is not signed in"),
            );
        }
        None => match state.sessions.create(tenant, &req.origin).await {
            Ok(b) => b,
            Err(e) => return internal_error(&state, tenant, &e),
        },
    };

    let handle = new_handle();
    let now = state.sessions.now();
    let params = match serde_json::to_string(&auth) {
        Ok(p) => p,
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let stored = NewAuthRequest {
        handle_hash: handle_hash(&handle),
        client_id: auth.client_id.clone(),
        params,
        pushed: false,
        browser_id_hash: Some(browser.row.id_hash.clone()),
        created_at: now,
        expires_at: now + INTERACTION_SECONDS,
    };
    if let Err(e) = state.store.insert_auth_request(&tenant.id, &stored).await {
        return internal_error(&state, tenant, &e);
    }
    let stored = StoredAuthRequest {
        handle_hash: stored.handle_hash,
        client_id: stored.client_id,
        params: stored.params,
        pushed: false,
        browser_id_hash: stored.browser_id_hash,
        login_sid: None,
        created_at: now,
        expires_at: stored.expires_at,
        consumed_at: None,
    };
    let mut browser = browser;
    drive(&state, &req, &mut browser, &handle, &stored, &auth).await
}

/// `POST /authorize`: `303` to `GET /authorize` with the body's parameters as the query
/// (re-encoded, order and repeats kept: the GET validates them).
fn as_get(req: &PageRequest) -> Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(url::form_urlencoded::parse(&req.raw_body))
        .finish();
    see_other(&format!("{}{AUTHORIZE_PATH}?{query}", req.issuer()))
}

/// `GET {issuer}/authorize/continue?request=<handle>`.
pub async fn resume(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    let Some(handle) = req.param("request").map(str::to_owned) else {
        return error_page(&state, tenant, StatusCode::BAD_REQUEST, STALE_REQUEST);
    };
    let mut browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(Some(b)) => b,
        Ok(None) => return error_page(&state, tenant, StatusCode::BAD_REQUEST, STALE_REQUEST),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let (stored, auth) = match bound_request(&state, tenant, &browser, &handle).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_page(&state, tenant, StatusCode::BAD_REQUEST, STALE_REQUEST),
        Err(resp) => return resp,
    };
    drive(&state, &req, &mut browser, &handle, &stored, &auth).await
}

/// The open request `handle` names, if it is bound to `browser`. `Err` is a 500 page.
pub(super) async fn bound_request(
    state: &AppState,
    tenant: &Tenant,
    browser: &Browser,
    handle: &str,
) -> Result<Option<(StoredAuthRequest, AuthRequest)>, Response> {
    let stored = match state
        .store
        .get_auth_request(&tenant.id, &handle_hash(handle))
        .await
    {
        Ok(s) => s,
        Err(e) => return Err(internal_error(state, tenant, &e)),
    };
    let Some(stored) = stored else {
        return Ok(None);
    };
    if !stored.is_open(state.sessions.now())
        || stored.browser_id_hash.as_deref() != Some(browser.row.id_hash.as_str())
    {
        return Ok(None);
    }
    match serde_json::from_str::<AuthRequest>(&stored.params) {
        Ok(auth) => Ok(Some((stored, auth))),
        Err(e) => Err(internal_error(state, tenant, &e)),
    }
}

/// The browser's valid accounts for the decision, with usernames, and the sessions by
/// sid (for `amr`/`acr`).
async fn accounts(
    state: &AppState,
    tenant: &Tenant,
    browser: &Browser,
) -> Result<(Vec<Account>, HashMap<String, AccountSession>), Response> {
    let sessions = state
        .sessions
        .accounts(browser)
        .await
        .map_err(|e| internal_error(state, tenant, &e))?;
    let mut accounts = Vec::with_capacity(sessions.len());
    let mut by_sid = HashMap::new();
    for s in sessions {
        let user = state
            .store
            .get_user(&tenant.id, &s.user_id)
            .await
            .map_err(|e| internal_error(state, tenant, &e))?;
        let Some(user) = user else { continue };
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

/// The request's re-authentication rules (`prompt=login`, `max_age`, `acr_values`).
pub(super) fn demands(stored: &StoredAuthRequest, auth: &AuthRequest) -> decide::Demands {
    decide::Demands {
        login: auth.has_prompt(Prompt::Login),
        max_age: auth.max_age,
        acr: decide::AcrDemand::of(&auth.acr_values),
        request_created_at: stored.created_at,
    }
}

fn describe(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UnmetAuthenticationRequirements => {
            "none of the requested acr_values can be satisfied"
        }
        _ => "user interaction is required",
    }
}

/// Sends the request on to its next step.
async fn drive(
    state: &AppState,
    req: &PageRequest,
    browser: &mut Browser,
    handle: &str,
    stored: &StoredAuthRequest,
    auth: &AuthRequest,
) -> Response {
    let tenant = &req.tenant;
    let (accounts, sessions) = match accounts(state, tenant, browser).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let prompts = Prompts {
        none: auth.has_prompt(Prompt::None),
        login: auth.has_prompt(Prompt::Login),
        consent: auth.has_prompt(Prompt::Consent),
        select_account: auth.has_prompt(Prompt::SelectAccount),
    };
    let situation = Situation {
        prompts,
        max_age: auth.max_age,
        acr: decide::AcrDemand::of(&auth.acr_values),
        login_hint: auth.login_hint.as_deref(),
        request_created_at: stored.created_at,
        accounts: &accounts,
        chosen_sid: stored.login_sid.as_deref(),
        now: state.sessions.now(),
    };
    let account = match decide::account(&situation) {
        Next::Error(code) => {
            return fail(state, tenant, browser, handle, auth, code, describe(code)).await;
        }
        Next::Login { .. } => {
            return with_cookie(
                Some(browser),
                see_other(&url_with_request(&tenant.issuer, LOGIN_PATH, Some(handle))),
            );
        }
        Next::SelectAccount => {
            return with_cookie(
                Some(browser),
                see_other(&url_with_request(
                    &tenant.issuer,
                    SELECT_ACCOUNT_PATH,
                    Some(handle),
                )),
            );
        }
        Next::Proceed(a) => a,
    };
    let Some(session) = sessions.get(&account.sid) else {
        return internal_error(
            state,
            tenant,
            &super::Invariant("decided account has no session"),
        );
    };
    // The chosen account becomes the browser's active one and the request's.
    if stored.login_sid.as_deref() != Some(account.sid.as_str()) {
        match state
            .store
            .set_auth_request_login(
                &tenant.id,
                &stored.handle_hash,
                &account.sid,
                state.sessions.now(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return error_page(state, tenant, StatusCode::BAD_REQUEST, STALE_REQUEST);
            }
            Err(e) => return internal_error(state, tenant, &e),
        }
    }
    if browser.data.active_sid.as_deref() != Some(account.sid.as_str()) {
        browser.data.active_sid = Some(account.sid.clone());
        if let Err(e) = state.sessions.save(browser).await {
            return internal_error(state, tenant, &e);
        }
    }

    consent_or_issue(
        state, req, browser, handle, stored, auth, prompts, &account, session,
    )
    .await
}

/// With the account settled: the consent page, or the code.
#[allow(clippy::too_many_arguments)] // the flow's state, passed along as it is
async fn consent_or_issue(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    handle: &str,
    stored: &StoredAuthRequest,
    auth: &AuthRequest,
    prompts: Prompts,
    account: &Account,
    session: &AccountSession,
) -> Response {
    let tenant = &req.tenant;
    let client = match state.oauth.clients.get(&tenant.id, &auth.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                state,
                tenant,
                StatusCode::BAD_REQUEST,
                "The client_id is not registered.",
            );
        }
        Err(e) => return internal_error(state, tenant, &e),
    };
    let consented = match state
        .store
        .consent_scopes(&tenant.id, &account.user_id, &auth.client_id)
        .await
    {
        Ok(c) => c,
        Err(e) => return internal_error(state, tenant, &e),
    };
    if decide::needs_consent(
        prompts,
        client.spec.first_party,
        &auth.scopes,
        consented.as_deref(),
    ) {
        if prompts.none {
            return fail(
                state,
                tenant,
                browser,
                handle,
                auth,
                ErrorCode::ConsentRequired,
                "the user has not consented to the requested scopes",
            )
            .await;
        }
        return with_cookie(
            Some(browser),
            see_other(&url_with_request(
                &tenant.issuer,
                CONSENT_PATH,
                Some(handle),
            )),
        );
    }
    issue(state, req, browser, handle, stored, auth, session).await
}

/// The request's sign-in is not good enough (`prompt=login`, `max_age`, `acr_values`):
/// the sign-in form for it, or the error for the client when it cannot be asked.
pub(super) async fn reauthenticate(
    state: &AppState,
    tenant: &Tenant,
    browser: &Browser,
    handle: &str,
    stored: &StoredAuthRequest,
    auth: &AuthRequest,
) -> Response {
    let code = match demands(stored, auth).acr {
        decide::AcrDemand::Unmet => ErrorCode::UnmetAuthenticationRequirements,
        _ if auth.has_prompt(Prompt::None) => ErrorCode::LoginRequired,
        _ => {
            return with_cookie(
                Some(browser),
                see_other(&url_with_request(&tenant.issuer, LOGIN_PATH, Some(handle))),
            );
        }
    };
    fail(state, tenant, browser, handle, auth, code, describe(code)).await
}

/// Ends the request with an error sent to the client.
pub(super) async fn fail(
    state: &AppState,
    tenant: &Tenant,
    browser: &Browser,
    handle: &str,
    auth: &AuthRequest,
    code: ErrorCode,
    description: &str,
) -> Response {
    if let Err(e) = state
        .store
        .consume_auth_request(&tenant.id, &handle_hash(handle), state.sessions.now())
        .await
    {
        return internal_error(state, tenant, &e);
    }
    with_cookie(
        Some(browser),
        response::error(&tenant.issuer, &auth.error(code, description)),
    )
}

/// Issues the code for `session` and sends it to the client; the request is used up.
/// Whatever page led here, the request's re-authentication rules are checked first: a
/// sign-in that is not fresh or strong enough gets the sign-in form, never a code.
pub(super) async fn issue(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    handle: &str,
    stored: &StoredAuthRequest,
    auth: &AuthRequest,
    session: &AccountSession,
) -> Response {
    let tenant = &req.tenant;
    let now = state.sessions.now();
    if !demands(stored, auth).satisfied_by(session.auth_time, session.acr.as_deref(), now) {
        return reauthenticate(state, tenant, browser, handle, stored, auth).await;
    }
    match state
        .store
        .consume_auth_request(&tenant.id, &handle_hash(handle), now)
        .await
    {
        Ok(true) => {}
        Ok(false) => return error_page(state, tenant, StatusCode::BAD_REQUEST, STALE_REQUEST),
        Err(e) => return internal_error(state, tenant, &e),
    }
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
    if let Err(e) = state.store.insert_code(&grant, &new_code).await {
        return internal_error(state, tenant, &e);
    }
    state
        .store
        .audit(
            AuditEvent::new(&tenant.id, now, "authorization.granted")
                .actor(Some("user"))
                .subject(Some(&session.user_id))
                .ip(req.origin.ip.as_deref())
                .details(json!({
                    "client_id": auth.client_id,
                    "scope": grant.scope,
                    "grant_id": grant.grant_id,
                    "sid": session.sid,
                })),
        )
        .await;
    with_cookie(
        Some(browser),
        response::code(
            &tenant.issuer,
            &auth.redirect_uri,
            auth.response_mode,
            code,
            auth.state.as_deref(),
        ),
    )
}
