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
use crate::http::AppState;
use crate::session::{Browser, csrf_matches};
use crate::store::audit::AuditEvent;
use crate::store::users::StoredUser;

/// The one message for every failed sign-in (no user enumeration).
pub const LOGIN_FAILED: &str = "Incorrect username or password.";

/// `acr` of a password-only sign-in (documented in docs/security.md).
pub const ACR_PASSWORD: &str = "1";

pub async fn show(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
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

pub async fn submit(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    let mut browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(Some(b)) => b,
        Ok(None) => return csrf_failure(&state, tenant),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    if !csrf_matches(&browser, req.form.get("_csrf").map(String::as_str)) {
        return csrf_failure(&state, tenant);
    }
    let request = req.query.get("request").cloned();
    if let Some(handle) = &request
        && let Err(resp) = request_for(&state, &req, &browser, handle).await
    {
        return resp;
    }
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

    let verified = match state
        .users
        .verify_and_maybe_rehash(&tenant.id, &username, &password)
        .await
    {
        Ok(v) => v,
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let Some(user) = verified else {
        audit_failure(&state, &req, &username).await;
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
    state
        .store
        .audit(
            AuditEvent::new(&tenant.id, state.sessions.now(), "login.failed")
                .actor(Some("user"))
                .subject(subject)
                .ip(req.origin.ip.as_deref())
                .details(json!({ "reason": reason })),
        )
        .await;
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
