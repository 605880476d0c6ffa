//! `GET/POST {issuer}/account/consents`: the signed-in user's own consents. The page
//! lists the clients the browser's active account has consented to, with the scopes in
//! the words the consent page uses, each with a form to revoke it; a revocation also
//! revokes every live grant of the user for that client (see
//! [`crate::users::UserService::revoke_consent_of`]). Not signed in → the sign-in page.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::consent::describe_scope;
use super::{
    LOGIN_PATH, PageRequest, base_context, csrf_failure, error_page, internal_error, page,
    see_other,
};
use crate::clients::Actor;
use crate::http::AppState;
use crate::session::csrf_matches;
use crate::users;

pub const ACCOUNT_CONSENTS_PATH: &str = "/account/consents";

const NO_CLIENT: &str = "Choose an application whose access to remove.";

pub async fn show(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    let browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(Some(b)) => b,
        Ok(None) => return see_other(&format!("{}{LOGIN_PATH}", tenant.issuer)),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let account = match state.sessions.active_account(&browser).await {
        Ok(Some(a)) => a,
        Ok(None) => return see_other(&format!("{}{LOGIN_PATH}", tenant.issuer)),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let username = match state.store.get_user(&tenant.id, &account.user_id).await {
        Ok(u) => u.map(|u| u.username).unwrap_or_default(),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let consents = match state.users.consents_of(&tenant.id, &account.user_id).await {
        Ok(c) => c,
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let mut ctx = base_context(tenant);
    ctx.insert("title".into(), json!("Apps with access"));
    ctx.insert(
        "action".into(),
        json!(format!("{}{ACCOUNT_CONSENTS_PATH}", tenant.issuer)),
    );
    ctx.insert("csrf".into(), json!(browser.data.csrf));
    ctx.insert("username".into(), json!(username));
    ctx.insert(
        "consents".into(),
        json!(
            consents
                .iter()
                .map(|c| json!({
                    "client_id": c.client_id,
                    "scopes": c.scopes.iter().map(|s| describe_scope(s)).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        ),
    );
    page(
        &state,
        Some(&browser),
        StatusCode::OK,
        "account_consents.html",
        &ctx,
    )
}

pub async fn submit(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    // The CSRF check comes first: a forged POST changes nothing and learns nothing.
    let browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(Some(b)) => b,
        Ok(None) => return csrf_failure(&state, tenant),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    if !csrf_matches(&browser, req.form.get("_csrf").map(String::as_str)) {
        return csrf_failure(&state, tenant);
    }
    let account = match state.sessions.active_account(&browser).await {
        Ok(Some(a)) => a,
        Ok(None) => return see_other(&format!("{}{LOGIN_PATH}", tenant.issuer)),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let Some(client_id) = req.form.get("client_id").filter(|c| !c.is_empty()) else {
        return error_page(&state, tenant, StatusCode::BAD_REQUEST, NO_CLIENT);
    };
    match state
        .users
        .revoke_consent_of(&tenant.id, &account.user_id, client_id, Actor::User)
        .await
    {
        // Already gone (a second tab, a double click) is the same outcome: back to the list.
        Ok(_) => see_other(&format!("{}{ACCOUNT_CONSENTS_PATH}", tenant.issuer)),
        Err(users::Error::Invalid(_)) => {
            error_page(&state, tenant, StatusCode::BAD_REQUEST, NO_CLIENT)
        }
        Err(e) => internal_error(&state, tenant, &e),
    }
}
