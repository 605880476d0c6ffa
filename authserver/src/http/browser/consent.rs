//! `GET/POST {issuer}/consent?request=<handle>`: the client and the requested scopes in
//! plain words; `decision=allow` stores the consent (added to what the user granted
//! before) and issues the code, `decision=deny` sends `access_denied` to the client.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::authorize::{CONSENT_PATH, STALE_REQUEST, bound_request, fail, issue};
use super::{
    PageRequest, base_context, csrf_failure, error_page, internal_error, page, url_with_request,
};
use crate::authorize::AuthRequest;
use crate::http::AppState;
use crate::oauth::ErrorCode;
use crate::session::{Browser, csrf_matches};
use crate::store::audit::AuditEvent;
use crate::store::authorization_requests::StoredAuthRequest;
use crate::store::sessions::AccountSession;

/// A scope in words a person understands.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Sign you in with your account".to_owned(),
        "profile" => "See your name and basic profile information".to_owned(),
        "email" => "See your email address".to_owned(),
        "offline_access" => "Keep access while you are not using it".to_owned(),
        other => format!("Access \u{201c}{other}\u{201d}"),
    }
}

/// The request, its account and the browser, or the page to answer with.
async fn context(
    state: &AppState,
    req: &PageRequest,
) -> Result<
    (
        Browser,
        String,
        StoredAuthRequest,
        AuthRequest,
        AccountSession,
    ),
    Response,
> {
    let tenant = &req.tenant;
    let gone = || error_page(state, tenant, StatusCode::BAD_REQUEST, STALE_REQUEST);
    let Some(handle) = req.query.get("request").cloned() else {
        return Err(gone());
    };
    let browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(gone()),
        Err(e) => return Err(internal_error(state, tenant, &e)),
    };
    let Some((stored, auth)) = bound_request(state, tenant, &browser, &handle).await? else {
        return Err(gone());
    };
    let accounts = state
        .sessions
        .accounts(&browser)
        .await
        .map_err(|e| internal_error(state, tenant, &e))?;
    let Some(session) = stored
        .login_sid
        .as_deref()
        .and_then(|sid| accounts.into_iter().find(|a| a.sid == sid))
    else {
        return Err(gone());
    };
    // The consent page cannot stand in for a sign-in the request demands (an account
    // chosen in the chooser sets `login_sid` without signing in again).
    if !super::authorize::demands(&stored, &auth).satisfied_by(
        session.auth_time,
        session.acr.as_deref(),
        state.sessions.now(),
    ) {
        return Err(super::authorize::reauthenticate(
            state, tenant, &browser, &handle, &stored, &auth,
        )
        .await);
    }
    Ok((browser, handle, stored, auth, session))
}

pub async fn show(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (browser, handle, _, auth, session) = match context(&state, &req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    let username = match state.store.get_user(&tenant.id, &session.user_id).await {
        Ok(u) => u.map(|u| u.username).unwrap_or_default(),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    let mut ctx = base_context(tenant);
    ctx.insert("title".into(), json!("Allow access?"));
    ctx.insert(
        "action".into(),
        json!(url_with_request(
            &tenant.issuer,
            CONSENT_PATH,
            Some(&handle)
        )),
    );
    ctx.insert("csrf".into(), json!(browser.data.csrf));
    ctx.insert("client_name".into(), json!(auth.client_id));
    ctx.insert(
        "scopes".into(),
        json!(
            auth.scopes
                .iter()
                .map(|s| describe_scope(s))
                .collect::<Vec<_>>()
        ),
    );
    ctx.insert("username".into(), json!(username));
    page(&state, Some(&browser), StatusCode::OK, "consent.html", &ctx)
}

pub async fn submit(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;
    // The CSRF check comes first: a forged POST learns nothing about the request.
    let browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(Some(b)) => b,
        Ok(None) => return csrf_failure(&state, tenant),
        Err(e) => return internal_error(&state, tenant, &e),
    };
    if !csrf_matches(&browser, req.form.get("_csrf").map(String::as_str)) {
        return csrf_failure(&state, tenant);
    }
    let (browser, handle, stored, auth, session) = match context(&state, &req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match req.form.get("decision").map(String::as_str) {
        Some("allow") => {
            let now = state.sessions.now();
            if let Err(e) = state
                .store
                .record_consent(
                    &tenant.id,
                    &session.user_id,
                    &auth.client_id,
                    &auth.scopes,
                    now,
                )
                .await
            {
                return internal_error(&state, tenant, &e);
            }
            state
                .store
                .audit(
                    AuditEvent::new(&tenant.id, now, "consent.granted")
                        .actor(Some("user"))
                        .subject(Some(&session.user_id))
                        .ip(req.origin.ip.as_deref())
                        .details(json!({ "client_id": auth.client_id, "scopes": auth.scopes })),
                )
                .await;
            issue(&state, &req, &browser, &handle, &stored, &auth, &session).await
        }
        Some("deny") => {
            state
                .store
                .audit(
                    AuditEvent::new(&tenant.id, state.sessions.now(), "consent.denied")
                        .actor(Some("user"))
                        .subject(Some(&session.user_id))
                        .ip(req.origin.ip.as_deref())
                        .details(json!({ "client_id": auth.client_id })),
                )
                .await;
            fail(
                &state,
                tenant,
                &browser,
                &handle,
                &auth,
                ErrorCode::AccessDenied,
                "the user denied the request",
            )
            .await
        }
        _ => error_page(
            &state,
            tenant,
            StatusCode::BAD_REQUEST,
            "Choose Allow or Deny.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_described_in_plain_words() {
        assert_eq!(describe_scope("email"), "See your email address");
        assert!(describe_scope("api:read").contains("api:read"));
    }
}
