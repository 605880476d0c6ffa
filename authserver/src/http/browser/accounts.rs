//! `GET/POST {issuer}/select-account[?request=<handle>]`: the browser's signed-in
//! accounts, plus "Use another account" (→ sign-in). Choosing one makes it the active
//! account and, with a request, continues the authorization with it.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::authorize::CONTINUE_PATH;
use super::login::request_for;
use super::{
    LOGIN_PATH, PageRequest, SELECT_ACCOUNT_PATH, base_context, csrf_failure, internal_error, page,
    see_other, url_with_request, with_cookie,
};
use crate::crypto::handle_hash;
use crate::http::AppState;
use crate::session::{Browser, csrf_matches};
use crate::store::sessions::AccountSession;

pub async fn show(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let request = req.param("request").map(str::to_owned);
    let browser = match state
        .sessions
        .load(&req.tenant, &req.headers, &req.origin)
        .await
    {
        Ok(Some(b)) => b,
        // Nobody is signed in here: there is nothing to choose from.
        Ok(None) => {
            return see_other(&url_with_request(
                req.issuer(),
                LOGIN_PATH,
                request.as_deref(),
            ));
        }
        Err(e) => return internal_error(&state, &req.tenant, &e),
    };
    let accounts = match state.sessions.accounts(&browser).await {
        Ok(a) => a,
        Err(e) => return internal_error(&state, &req.tenant, &e),
    };
    if accounts.is_empty() {
        return see_other(&url_with_request(
            req.issuer(),
            LOGIN_PATH,
            request.as_deref(),
        ));
    }
    if let Some(handle) = &request
        && let Err(resp) = request_for(&state, &req, &browser, handle).await
    {
        return resp;
    }
    render(&state, &req, &browser, &accounts, request.as_deref()).await
}

/// The chooser page.
pub(super) async fn render(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    accounts: &[AccountSession],
    request: Option<&str>,
) -> Response {
    let mut listed = Vec::with_capacity(accounts.len());
    for (i, a) in accounts.iter().enumerate() {
        let username = match state.store.get_user(&req.tenant.id, &a.user_id).await {
            Ok(Some(u)) => u.username,
            Ok(None) => continue,
            Err(e) => return internal_error(state, &req.tenant, &e),
        };
        listed.push(json!({ "index": i, "username": username }));
    }
    let mut ctx = base_context(&req.tenant);
    ctx.insert("title".into(), json!("Choose an account"));
    ctx.insert(
        "action".into(),
        json!(url_with_request(req.issuer(), SELECT_ACCOUNT_PATH, request)),
    );
    ctx.insert("csrf".into(), json!(browser.data.csrf));
    ctx.insert("accounts".into(), json!(listed));
    page(
        state,
        Some(browser),
        StatusCode::OK,
        "select_account.html",
        &ctx,
    )
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
    let choice = req.form.get("account").map(String::as_str);
    let accounts = match state.sessions.accounts(&browser).await {
        Ok(a) => a,
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let chosen = choice
        .and_then(|c| c.parse::<usize>().ok())
        .and_then(|i| accounts.get(i));
    let Some(chosen) = chosen else {
        // "Use another account", or a choice that no longer exists.
        return see_other(&url_with_request(
            req.issuer(),
            LOGIN_PATH,
            request.as_deref(),
        ));
    };
    browser.data.active_sid = Some(chosen.sid.clone());
    if let Err(e) = state.sessions.save(&browser).await {
        return internal_error(&state, tenant, &e);
    }
    if let Some(r) = request {
        match state
            .store
            .set_auth_request_login(
                &tenant.id,
                &handle_hash(&r),
                &chosen.sid,
                state.sessions.now(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return super::error_page(
                    &state,
                    tenant,
                    StatusCode::BAD_REQUEST,
                    super::authorize::STALE_REQUEST,
                );
            }
            Err(e) => return internal_error(&state, tenant, &e),
        }
        return with_cookie(
            Some(&browser),
            see_other(&url_with_request(req.issuer(), CONTINUE_PATH, Some(&r))),
        );
    }
    let username = match state.store.get_user(&tenant.id, &chosen.user_id).await {
        Ok(u) => u.map(|u| u.username).unwrap_or_default(),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let mut ctx = base_context(tenant);
    ctx.insert("title".into(), json!("Signed in"));
    ctx.insert("username".into(), json!(username));
    page(
        &state,
        Some(&browser),
        StatusCode::OK,
        "signed_in.html",
        &ctx,
    )
}
