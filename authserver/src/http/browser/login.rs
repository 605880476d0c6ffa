//! `GET/POST {issuer}/login[?request=<handle>]`: username and password. Failures look
//! the same whatever went wrong ("Incorrect username or password."), and cost the same
//! Argon2 work (unknown users are checked against a dummy hash). Without `request` the
//! sign-in ends on a "You are signed in" page; with one it continues the authorization.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use secrecy::SecretString;
use serde_json::json;

use super::authorize::{CONTINUE_PATH, STALE_REQUEST, bound_request};
use super::{
    LOGIN_PATH, PageRequest, base_context, csrf_failure, internal_error, page, see_other,
    url_with_request,
};
use crate::authorize::AuthRequest;
use crate::crypto::handle_hash;
use crate::domain::policy::TenantPolicy;
use crate::http::AppState;
use crate::session::{Browser, csrf_matches};
use crate::session::{PENDING_LOGIN_SECONDS, PendingLogin, PendingStage};
use crate::store::audit::AuditEvent;
use crate::store::users::StoredUser;
use crate::throttle::{CheckError, Locked, Reservation};

/// The one message for every failed sign-in (no user enumeration).
pub const LOGIN_FAILED: &str = "Incorrect username or password.";

pub use super::decide::{ACR_MFA, ACR_PASSWORD};

pub async fn show(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Some(resp) = super::rate_limited(&state, &req, super::Limited::Login, None).await {
        return resp;
    }
    let browser = match state
        .sessions
        .load_or_create(&req.tenant, &req.headers, &req.origin)
        .await
    {
        Ok(b) => b,
        Err(e) => return internal_error(&state, &req.tenant, &e),
    };
    let request = req.param("request").map(str::to_owned);
    let auth = match &request {
        Some(handle) => match request_for(&state, &req, &browser, handle).await {
            Ok(a) => Some(a),
            Err(resp) => return resp,
        },
        None => None,
    };
    let hint = auth.as_ref().and_then(|a| a.login_hint.clone());
    render_form(
        &state,
        &req,
        &browser,
        request.as_deref(),
        hint.as_deref(),
        None,
        StatusCode::OK,
    )
}

/// The authorization request `handle` names, bound to this browser; otherwise the page
/// saying it is stale.
pub(super) async fn request_for(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    handle: &str,
) -> Result<AuthRequest, Response> {
    match bound_request(state, &req.tenant, browser, handle).await? {
        Some((_, auth)) => Ok(auth),
        None => Err(super::with_cookie(
            Some(browser),
            super::error_page(state, &req.tenant, StatusCode::BAD_REQUEST, STALE_REQUEST),
        )),
    }
}

/// Checks the request a sign-in is for (when there is one); `true` when its
/// `acr_values` ask for a second factor, which this sign-in then uses (step-up).
async fn step_up(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    request: Option<&str>,
) -> Result<bool, Response> {
    let Some(handle) = request else {
        return Ok(false);
    };
    let auth = request_for(state, req, browser, handle).await?;
    Ok(super::decide::AcrDemand::of(&auth.acr_values).needs_second_factor())
}

// The sign-in steps in order; the interaction engine (issue 12) takes them out of here.
#[allow(clippy::too_many_lines)]
pub async fn submit(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    if let Some(resp) = super::rate_limited(&state, &req, super::Limited::Login, None).await {
        return resp;
    }
    let mut browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(Some(b)) => b,
        Ok(None) => return csrf_failure(&state, tenant),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    if !csrf_matches(&browser, req.form.get("_csrf").map(String::as_str)) {
        return csrf_failure(&state, tenant);
    }
    let request = req.query.get("request").cloned();
    let step_up = match step_up(&state, &req, &browser, request.as_deref()).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let username = req.form.get("username").map_or("", |s| s.trim()).to_owned();
    let password = SecretString::from(req.form.get("password").cloned().unwrap_or_default());
    if username.is_empty() {
        return render_form(
            &state,
            &req,
            &browser,
            request.as_deref(),
            None,
            Some(LOGIN_FAILED),
            StatusCode::OK,
        );
    }

    // The attempt is counted before the password is checked (see `crate::throttle`).
    let reservation = match throttle_reserve(&state, &req, &username).await {
        Ok(Ok(r)) => r,
        Ok(Err(locked)) => {
            audit_reason(&state, &req, None, "locked").await;
            return locked_form(
                &state,
                &req,
                &browser,
                request.as_deref(),
                &username,
                locked,
            );
        }
        Err(resp) => return resp,
    };
    let verified = match state
        .users
        .verify_and_maybe_rehash(&tenant.id, &username, &password)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            throttle_release(&state, reservation).await;
            return internal_error(&state, tenant, &e);
        }
    };
    let Some(user) = verified else {
        audit_failure(&state, &req, &username).await;
        if let Some(locked) = state.login_throttle.failed(reservation).await {
            return locked_form(
                &state,
                &req,
                &browser,
                request.as_deref(),
                &username,
                locked,
            );
        }
        return render_form(
            &state,
            &req,
            &browser,
            request.as_deref(),
            Some(&username),
            Some(LOGIN_FAILED),
            StatusCode::OK,
        );
    };
    // The right password: the attempt is given back (a second factor reserves its own).
    throttle_release(&state, reservation).await;
    // A second factor, when one applies, before any session exists.
    if let Some(resp) = second_factor(
        &state,
        &req,
        &mut browser,
        &user,
        request.as_deref(),
        step_up,
    )
    .await
    {
        return resp;
    }
    throttle_success(&state, &req, &username).await;
    complete(
        &state,
        &req,
        &mut browser,
        &user,
        vec!["pwd".to_owned()],
        ACR_PASSWORD,
        request.as_deref(),
    )
    .await
}

/// When MFA applies to `user`: records the pending sign-in and answers with the way to
/// the second step (verification, or enrolment when required but not set up).
async fn second_factor(
    state: &AppState,
    req: &PageRequest,
    browser: &mut Browser,
    user: &StoredUser,
    request: Option<&str>,
    step_up: bool,
) -> Option<Response> {
    let tenant = &req.tenant;
    let status = match state.mfa.status(&tenant.id, &user.user_id).await {
        Ok(s) => s,
        Err(e) => return Some(internal_error(state, tenant, &e)),
    };
    if step_up || state.mfa.required(&TenantPolicy::of(tenant), &status) {
        let next_stage = if status.totp_enrolled {
            PendingStage::Verify
        } else {
            PendingStage::Enroll
        };
        browser.data.pending = Some(PendingLogin {
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            amr: vec!["pwd".to_owned()],
            stage: next_stage,
            expires_at: state.sessions.now() + PENDING_LOGIN_SECONDS,
            request: request.map(str::to_owned),
        });
        if let Err(e) = state.sessions.save(browser).await {
            return Some(internal_error(state, tenant, &e));
        }
        let path = if next_stage == PendingStage::Verify {
            super::MFA_PATH
        } else {
            super::MFA_ENROLL_PATH
        };
        return Some(super::with_cookie(
            Some(browser),
            see_other(&url_with_request(req.issuer(), path, request)),
        ));
    }
    None
}

/// Finishes a sign-in: the account session, `login.succeeded`, then the signed-in page
/// or the authorization request.
pub(super) async fn complete(
    state: &AppState,
    req: &PageRequest,
    browser: &mut Browser,
    user: &StoredUser,
    amr: Vec<String>,
    acr: &str,
    request: Option<&str>,
) -> Response {
    let tenant = &req.tenant;
    let session = match state
        .sessions
        .sign_in(
            tenant,
            browser,
            &user.user_id,
            amr,
            Some(acr.to_owned()),
            &req.origin,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return internal_error(state, tenant, &e),
    };
    state
        .store
        .audit(
            AuditEvent::new(&tenant.id, state.sessions.now(), "login.succeeded")
                .actor(Some("user"))
                .subject(Some(&user.user_id))
                .ip(req.origin.ip.as_deref())
                .details(
                    json!({ "username": user.username, "amr": session.amr, "sid": session.sid }),
                ),
        )
        .await;
    tracing::info!(tenant = %tenant.id, user_id = %user.user_id, "user signed in");
    if let Some(request) = request {
        // The request moved with the browser's new id (see `rotate_browser_session`).
        match state
            .store
            .set_auth_request_login(
                &tenant.id,
                &handle_hash(request),
                &session.sid,
                state.sessions.now(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return super::with_cookie(
                    Some(browser),
                    super::error_page(state, tenant, StatusCode::BAD_REQUEST, STALE_REQUEST),
                );
            }
            Err(e) => return internal_error(state, tenant, &e),
        }
        return super::with_cookie(
            Some(browser),
            see_other(&url_with_request(
                &tenant.issuer,
                CONTINUE_PATH,
                Some(request),
            )),
        );
    }
    let mut ctx = base_context(tenant);
    ctx.insert("title".into(), json!("Signed in"));
    ctx.insert("username".into(), json!(user.username));
    page(state, Some(browser), StatusCode::OK, "signed_in.html", &ctx)
}

/// `login.failed` with a reason class and, when known, the user id.
async fn audit_reason(state: &AppState, req: &PageRequest, user_id: Option<&str>, reason: &str) {
    state
        .store
        .audit(
            AuditEvent::new(&req.tenant.id, state.sessions.now(), "login.failed")
                .actor(Some("user"))
                .subject(user_id)
                .ip(req.origin.ip.as_deref())
                .details(json!({ "reason": reason })),
        )
        .await;
}

fn client_ip(req: &PageRequest) -> Option<std::net::IpAddr> {
    req.origin.ip.as_deref().and_then(|i| i.parse().ok())
}

/// Counts an attempt for the username and the client's address before its secret is
/// checked: `Ok(Err(lock))` when either is locked (refuse without checking anything);
/// `Err` is a 500 page.
pub(super) async fn throttle_reserve(
    state: &AppState,
    req: &PageRequest,
    username: &str,
) -> Result<Result<Reservation, Locked>, Response> {
    match state
        .login_throttle
        .reserve(&req.tenant.id, username, client_ip(req))
        .await
    {
        Ok(r) => Ok(Ok(r)),
        Err(CheckError::Locked(l)) => Ok(Err(l)),
        Err(CheckError::Store(e)) => Err(internal_error(state, &req.tenant, &e)),
    }
}

/// Gives back an attempt that did not fail. A throttle that cannot be written is
/// logged, not shown: the attempt itself went through.
pub(super) async fn throttle_release(state: &AppState, reservation: Reservation) {
    if let Err(e) = state.login_throttle.release(reservation).await {
        tracing::warn!(error = %e, "failed to give back a sign-in attempt");
    }
}

/// Forgets the username's failures after a complete sign-in.
pub(super) async fn throttle_success(state: &AppState, req: &PageRequest, username: &str) {
    if let Err(e) = state
        .login_throttle
        .record_success(&req.tenant.id, username)
        .await
    {
        tracing::warn!(error = %e, "failed to clear sign-in failures");
    }
}

/// "Too many failed attempts. Try again in N minutes."
pub fn locked_message(l: Locked) -> String {
    let minutes = l.retry_after_seconds.div_ceil(60).max(1);
    if minutes == 1 {
        "Too many failed attempts. Try again in 1 minute.".to_owned()
    } else {
        format!("Too many failed attempts. Try again in {minutes} minutes.")
    }
}

/// The sign-in form with the lockout message: 429 with `Retry-After`.
pub(super) fn locked_form(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    request: Option<&str>,
    username: &str,
    l: Locked,
) -> Response {
    let mut resp = render_form(
        state,
        req,
        browser,
        request,
        Some(username),
        Some(&locked_message(l)),
        StatusCode::TOO_MANY_REQUESTS,
    );
    resp.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(l.retry_after_seconds.max(1)),
    );
    resp
}

/// Records why a sign-in failed, as a class: never the password.
async fn audit_failure(state: &AppState, req: &PageRequest, username: &str) {
    let tenant = &req.tenant;
    let known = state
        .users
        .get_by_username(&tenant.id, username)
        .await
        .ok()
        .flatten();
    let (reason, subject) = match &known {
        None => ("unknown_user", None),
        Some(u) if u.password_hash.is_none() => ("no_password", Some(u.user_id.as_str())),
        Some(u) => ("bad_password", Some(u.user_id.as_str())),
    };
    audit_reason(state, req, subject, reason).await;
}

/// The sign-in form.
pub(super) fn render_form(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    request: Option<&str>,
    username: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let mut ctx = base_context(&req.tenant);
    ctx.insert("title".into(), json!("Sign in"));
    ctx.insert(
        "action".into(),
        json!(url_with_request(req.issuer(), LOGIN_PATH, request)),
    );
    ctx.insert("csrf".into(), json!(browser.data.csrf));
    if let Some(u) = username {
        ctx.insert("username".into(), json!(u));
    }
    if let Some(e) = error {
        ctx.insert("error".into(), json!(e));
    }
    page(state, Some(browser), status, "login.html", &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lockout_message_rounds_the_wait_up_to_minutes() {
        let m = |s| {
            locked_message(Locked {
                retry_after_seconds: s,
            })
        };
        assert_eq!(m(1), "Too many failed attempts. Try again in 1 minute.");
        assert_eq!(m(60), "Too many failed attempts. Try again in 1 minute.");
        assert_eq!(m(61), "Too many failed attempts. Try again in 2 minutes.");
        assert_eq!(m(900), "Too many failed attempts. Try again in 15 minutes.");
    }
}
