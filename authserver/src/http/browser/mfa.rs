//! The second step of a sign-in: `GET/POST {issuer}/login/mfa` (a TOTP code, or one of
//! the recovery codes, in the field `totp`) and, when MFA is required but not set up,
//! `GET/POST {issuer}/login/mfa/enroll` (QR code and key, a code to confirm, then the
//! recovery codes shown once with a button to continue).
//!
//! Between the password and this step the browser session holds a pending sign-in (user,
//! `amr: ["pwd"]`, five minutes); no account session exists until the second factor is
//! done.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::login::{ACR_MFA, complete};
use super::{
    LOGIN_PATH, MFA_ENROLL_PATH, MFA_PATH, PageRequest, base_context, csrf_failure, internal_error,
    page, see_other, url_with_request, with_cookie,
};
use crate::http::AppState;
use crate::mfa::MfaError;
use crate::session::{Browser, PendingLogin, PendingStage, csrf_matches};

/// The message for a wrong or reused code.
pub const WRONG_CODE: &str = "That code is not valid. Try again.";

/// `amr` after a second factor (RFC 8176).
fn mfa_amr() -> Vec<String> {
    vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()]
}

/// The browser and its pending sign-in at one of `stages`, or where to go instead (the
/// sign-in form when there is none or it expired).
async fn pending(
    state: &AppState,
    req: &PageRequest,
    stages: &[PendingStage],
) -> Result<(Browser, PendingLogin), Response> {
    let request = req.param("request");
    let restart = || see_other(&url_with_request(req.issuer(), LOGIN_PATH, request));
    let browser = match state
        .sessions
        .load(&req.tenant, &req.headers, &req.origin)
        .await
    {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(if req.is_post() {
                csrf_failure(state, &req.tenant)
            } else {
                restart()
            });
        }
        Err(e) => return Err(internal_error(state, &req.tenant, &e)),
    };
    if req.is_post() && !csrf_matches(&browser, req.form.get("_csrf").map(String::as_str)) {
        return Err(csrf_failure(state, &req.tenant));
    }
    let Some(p) = browser.data.pending.clone() else {
        return Err(restart());
    };
    if p.expires_at <= state.sessions.now() || !stages.contains(&p.stage) {
        return Err(restart());
    }
    Ok((browser, p))
}

fn mfa_form(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    p: &PendingLogin,
    error: Option<&str>,
) -> Response {
    let mut ctx = base_context(&req.tenant);
    ctx.insert("title".into(), json!("Two-step verification"));
    ctx.insert(
        "action".into(),
        json!(url_with_request(
            req.issuer(),
            MFA_PATH,
            p.request.as_deref()
        )),
    );
    ctx.insert("csrf".into(), json!(browser.data.csrf));
    if let Some(e) = error {
        ctx.insert("error".into(), json!(e));
    }
    page(state, Some(browser), StatusCode::OK, "mfa.html", &ctx)
}

/// The code form with the lockout message: 429 with `Retry-After`.
fn locked_mfa_form(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    p: &PendingLogin,
    locked: crate::throttle::Locked,
) -> Response {
    let mut resp = mfa_form(
        state,
        req,
        browser,
        p,
        Some(&super::login::locked_message(locked)),
    );
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    resp.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(locked.retry_after_seconds.max(1)),
    );
    resp
}

pub async fn show_verify(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match pending(&state, &req, &[PendingStage::Verify]).await {
        Ok((browser, p)) => mfa_form(&state, &req, &browser, &p, None),
        Err(resp) => resp,
    }
}

pub async fn submit_verify(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (mut browser, p) = match pending(&state, &req, &[PendingStage::Verify]).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    match super::login::throttle_check(&state, &req, &p.username).await {
        Ok(None) => {}
        Ok(Some(locked)) => return locked_mfa_form(&state, &req, &browser, &p, locked),
        Err(resp) => return resp,
    }
    let code = req.form.get("totp").map_or("", |s| s.trim());
    match state
        .mfa
        .verify(&tenant.id, &p.user_id, code, req.origin.ip.as_deref())
        .await
    {
        Ok(_) => {}
        Err(MfaError::InvalidCode | MfaError::NotEnrolled) => {
            if let Some(locked) = super::login::throttle_failure(&state, &req, &p.username).await {
                return locked_mfa_form(&state, &req, &browser, &p, locked);
            }
            return mfa_form(&state, &req, &browser, &p, Some(WRONG_CODE));
        }
        Err(e) => return internal_error(&state, tenant, &e),
    }
    finish(&state, &req, &mut browser, &p).await
}

async fn finish(
    state: &AppState,
    req: &PageRequest,
    browser: &mut Browser,
    p: &PendingLogin,
) -> Response {
    let user = match state.store.get_user(&req.tenant.id, &p.user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return see_other(&url_with_request(
                req.issuer(),
                LOGIN_PATH,
                p.request.as_deref(),
            ));
        }
        Err(e) => return internal_error(state, &req.tenant, &e),
    };
    super::login::throttle_success(state, req, &p.username).await;
    complete(
        state,
        req,
        browser,
        &user,
        mfa_amr(),
        ACR_MFA,
        p.request.as_deref(),
    )
    .await
}

async fn enroll_form(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    p: &PendingLogin,
    error: Option<&str>,
) -> Response {
    let tenant = &req.tenant;
    let user = match state.store.get_user(&tenant.id, &p.user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return see_other(&url_with_request(
                req.issuer(),
                LOGIN_PATH,
                p.request.as_deref(),
            ));
        }
        Err(e) => return internal_error(state, tenant, &e),
    };
    let enrollment = match state.mfa.begin_totp(tenant, &user).await {
        Ok(e) => e,
        Err(MfaError::AlreadyEnrolled) => {
            // Enrolled meanwhile (another tab): verify instead.
            let mut b = browser.clone();
            if let Some(pp) = b.data.pending.as_mut() {
                pp.stage = PendingStage::Verify;
            }
            if let Err(e) = state.sessions.save(&b).await {
                return internal_error(state, tenant, &e);
            }
            return see_other(&url_with_request(
                req.issuer(),
                MFA_PATH,
                p.request.as_deref(),
            ));
        }
        Err(e) => return internal_error(state, tenant, &e),
    };
    let mut ctx = base_context(tenant);
    ctx.insert("title".into(), json!("Set up two-step verification"));
    ctx.insert(
        "action".into(),
        json!(url_with_request(
            req.issuer(),
            MFA_ENROLL_PATH,
            p.request.as_deref()
        )),
    );
    ctx.insert("csrf".into(), json!(browser.data.csrf));
    ctx.insert("qr_data_uri".into(), json!(enrollment.qr_data_uri));
    ctx.insert("secret".into(), json!(enrollment.secret_base32));
    if let Some(e) = error {
        ctx.insert("error".into(), json!(e));
    }
    page(
        state,
        Some(browser),
        StatusCode::OK,
        "mfa_enroll.html",
        &ctx,
    )
}

pub async fn show_enroll(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match pending(&state, &req, &[PendingStage::Enroll]).await {
        Ok((browser, p)) => enroll_form(&state, &req, &browser, &p, None).await,
        Err(resp) => resp,
    }
}

pub async fn submit_enroll(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (mut browser, p) = match pending(
        &state,
        &req,
        &[PendingStage::Enroll, PendingStage::Enrolled],
    )
    .await
    {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    if p.stage == PendingStage::Enrolled {
        // The "continue" button under the recovery codes.
        return finish(&state, &req, &mut browser, &p).await;
    }
    let code = req.form.get("totp").map_or("", |s| s.trim());
    let codes = match state
        .mfa
        .confirm_totp(&tenant.id, &p.user_id, code, req.origin.ip.as_deref())
        .await
    {
        Ok(c) => c,
        Err(MfaError::InvalidCode | MfaError::NotEnrolling) => {
            return enroll_form(&state, &req, &browser, &p, Some(WRONG_CODE)).await;
        }
        Err(e) => return internal_error(&state, tenant, &e),
    };
    if let Some(pp) = browser.data.pending.as_mut() {
        pp.stage = PendingStage::Enrolled;
        pp.amr = mfa_amr();
    }
    if let Err(e) = state.sessions.save(&browser).await {
        return internal_error(&state, tenant, &e);
    }
    let mut ctx = base_context(tenant);
    ctx.insert("title".into(), json!("Your recovery codes"));
    ctx.insert(
        "action".into(),
        json!(url_with_request(
            req.issuer(),
            MFA_ENROLL_PATH,
            p.request.as_deref()
        )),
    );
    ctx.insert("csrf".into(), json!(browser.data.csrf));
    ctx.insert("codes".into(), json!(codes));
    with_cookie(
        Some(&browser),
        page(&state, None, StatusCode::OK, "recovery_codes.html", &ctx),
    )
}
