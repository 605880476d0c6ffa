//! `GET/POST {issuer}/logout`: OpenID Connect RP-Initiated Logout 1.0.
//!
//! - `id_token_hint`: an ID token we issued (signature checked with the tenant's keys,
//!   `iss` must be this issuer; an expired one is fine — it names a session, it does not
//!   authenticate anyone). With a valid hint the session it names (`sid`, else the
//!   browser's active account) ends at once.
//! - `client_id`: must be one of the hint's audiences when both are given.
//! - `post_logout_redirect_uri`: must equal one of that client's registered
//!   `post_logout_redirect_uris`; otherwise an error page, never a redirect. `state` is
//!   passed back.
//! - Without a hint the user confirms first (a POST with `_csrf`): a link alone must not
//!   sign anyone out.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{
    LOGOUT_PATH, PageRequest, base_context, csrf_failure, error_page, internal_error, page,
    see_other,
};
use crate::crypto::jws;
use crate::domain::signing_key::Algorithm;
use crate::domain::tenant::Tenant;
use crate::http::AppState;
use crate::session::{Browser, cookie, csrf_matches};
use crate::store::audit::AuditEvent;

/// What a valid `id_token_hint` says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hint {
    audiences: Vec<String>,
    sid: Option<String>,
}

/// Why a logout request is refused (shown on the error page).
const INVALID_HINT: &str =
    "The sign-out request is invalid: the ID token hint was not issued here.";
const CLIENT_MISMATCH: &str =
    "The sign-out request is invalid: client_id does not match the ID token hint.";
const BAD_REDIRECT: &str = "The sign-out request is invalid: the address to return to is not registered for this application.";

pub async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let req = match PageRequest::read(&state, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let tenant = &req.tenant;

    let hint = match req.param("id_token_hint") {
        Some(token) => match verify_hint(&state, tenant, token).await {
            Ok(Some(h)) => Some(h),
            Ok(None) => return error_page(&state, tenant, StatusCode::BAD_REQUEST, INVALID_HINT),
            Err(e) => return internal_error(&state, tenant, &e),
        },
        None => None,
    };
    let client_id = match (req.param("client_id"), &hint) {
        (Some(c), Some(h)) if !h.audiences.iter().any(|a| a == c) => {
            return error_page(&state, tenant, StatusCode::BAD_REQUEST, CLIENT_MISMATCH);
        }
        (Some(c), _) => Some(c.to_owned()),
        (None, Some(h)) if h.audiences.len() == 1 => h.audiences.first().cloned(),
        (None, _) => None,
    };
    let redirect = match req.param("post_logout_redirect_uri") {
        Some(uri) => {
            let registered = match &client_id {
                Some(c) => match state.oauth.clients.get(&tenant.id, c).await {
                    Ok(client) => client.is_some_and(|cl| {
                        cl.spec.post_logout_redirect_uris.iter().any(|u| u == uri)
                    }),
                    Err(e) => return internal_error(&state, tenant, &e),
                },
                None => false,
            };
            if !registered {
                return error_page(&state, tenant, StatusCode::BAD_REQUEST, BAD_REDIRECT);
            }
            Some(with_state(uri, req.param("state")))
        }
        None => None,
    };

    let browser = match state.sessions.load(tenant, &req.headers, &req.origin).await {
        Ok(b) => b,
        Err(e) => return internal_error(&state, tenant, &e),
    };

    if let Some(hint) = hint {
        return finish(
            &state,
            &req,
            browser,
            hint.sid.as_deref(),
            redirect.as_deref(),
        )
        .await;
    }
    let Some(browser) = browser else {
        // Nobody is signed in in this browser: nothing to confirm.
        return done(&state, tenant, None, true, redirect.as_deref());
    };
    if req.is_post() {
        if !csrf_matches(&browser, req.form.get("_csrf").map(String::as_str)) {
            return csrf_failure(&state, tenant);
        }
        return finish(&state, &req, Some(browser), None, redirect.as_deref()).await;
    }
    confirm(&state, &req, &browser, client_id.as_deref()).await
}

/// The confirmation page: a POST back to `/logout` with the same parameters.
async fn confirm(
    state: &AppState,
    req: &PageRequest,
    browser: &Browser,
    client_id: Option<&str>,
) -> Response {
    let active = match state.sessions.active_account(browser).await {
        Ok(a) => a,
        Err(e) => return internal_error(state, &req.tenant, &e),
    };
    let username = match &active {
        Some(a) => match state.store.get_user(&req.tenant.id, &a.user_id).await {
            Ok(u) => u.map(|u| u.username),
            Err(e) => return internal_error(state, &req.tenant, &e),
        },
        None => None,
    };
    let mut hidden: Vec<(String, String)> = Vec::new();
    if let Some(c) = client_id {
        hidden.push(("client_id".into(), c.to_owned()));
    }
    for name in ["post_logout_redirect_uri", "state"] {
        if let Some(v) = req.param(name) {
            hidden.push((name.to_owned(), v.to_owned()));
        }
    }
    let mut ctx = base_context(&req.tenant);
    ctx.insert("title".into(), json!("Sign out"));
    ctx.insert(
        "action".into(),
        json!(format!("{}{LOGOUT_PATH}", req.issuer())),
    );
    ctx.insert("csrf".into(), json!(browser.data.csrf));
    ctx.insert("username".into(), json!(username));
    ctx.insert("hidden".into(), json!(hidden));
    page(state, Some(browser), StatusCode::OK, "logout.html", &ctx)
}

/// Ends `sid` (or the browser's active account), audits `logout`, and answers.
async fn finish(
    state: &AppState,
    req: &PageRequest,
    browser: Option<Browser>,
    sid: Option<&str>,
    redirect: Option<&str>,
) -> Response {
    let tenant = &req.tenant;
    let target = match (sid, &browser) {
        (Some(sid), _) => match state.store.get_session(&tenant.id, sid).await {
            Ok(s) => s,
            Err(e) => return internal_error(state, tenant, &e),
        },
        (None, Some(b)) => match state.sessions.active_account(b).await {
            Ok(s) => s,
            Err(e) => return internal_error(state, tenant, &e),
        },
        (None, None) => None,
    };
    let mut remaining = browser.is_some();
    if let Some(target) = &target {
        match browser {
            Some(mut b) if b.row.id_hash == target.browser_id_hash => {
                match state
                    .sessions
                    .end_account(tenant, &mut b, &target.sid, &req.origin)
                    .await
                {
                    Ok(r) => remaining = r,
                    Err(e) => return internal_error(state, tenant, &e),
                }
            }
            _ => {
                // The hint names a session of another browser (or this request came
                // without a cookie): end it in the database all the same.
                if let Err(e) = state.store.delete_session(&tenant.id, &target.sid).await {
                    return internal_error(state, tenant, &e);
                }
                state
                    .store
                    .audit(
                        AuditEvent::new(&tenant.id, state.sessions.now(), "session.revoked")
                            .actor(Some("user"))
                            .subject(Some(&target.user_id))
                            .ip(req.origin.ip.as_deref())
                            .details(json!({ "sid": target.sid, "reason": "logout" })),
                    )
                    .await;
            }
        }
        state
            .store
            .audit(
                AuditEvent::new(&tenant.id, state.sessions.now(), "logout")
                    .actor(Some("user"))
                    .subject(Some(&target.user_id))
                    .ip(req.origin.ip.as_deref())
                    .details(json!({ "sid": target.sid })),
            )
            .await;
    }
    done(state, tenant, None, !remaining, redirect)
}

/// The signed-out page or the redirect back to the client; clears the cookie when the
/// browser has no account left.
fn done(
    state: &AppState,
    tenant: &Tenant,
    browser: Option<&Browser>,
    clear_cookie: bool,
    redirect: Option<&str>,
) -> Response {
    let mut resp = if let Some(uri) = redirect {
        see_other(uri)
    } else {
        let mut ctx = base_context(tenant);
        ctx.insert("title".into(), json!("Signed out"));
        page(state, browser, StatusCode::OK, "signed_out.html", &ctx)
    };
    if clear_cookie {
        cookie::append(
            resp.headers_mut(),
            &cookie::clear(tenant.issuer.starts_with("https://")),
        );
    }
    resp
}

/// `uri` with `state` appended as a query parameter.
fn with_state(uri: &str, state: Option<&str>) -> String {
    let Some(state) = state else {
        return uri.to_owned();
    };
    match url::Url::parse(uri) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair("state", state);
            u.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

/// Checks an `id_token_hint`: our signature (any of the tenant's published keys) and
/// our issuer. Expiry is deliberately not checked. `Ok(None)` when it is not ours.
async fn verify_hint(
    state: &AppState,
    tenant: &Tenant,
    token: &str,
) -> Result<Option<Hint>, crate::keys::Error> {
    let Ok(parsed) = jws::parse(token) else {
        return Ok(None);
    };
    let Some(kid) = parsed.header_str("kid") else {
        return Ok(None);
    };
    let Some(jwk) = state.keys.public_jwk(&tenant.id, kid).await? else {
        return Ok(None);
    };
    if parsed.verify(&jwk, &Algorithm::ALL).is_err() {
        return Ok(None);
    }
    if parsed.claim_str("iss") != Some(tenant.issuer.as_str()) {
        return Ok(None);
    }
    let audiences = match parsed.claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return Ok(None),
    };
    Ok(Some(Hint {
        audiences,
        sid: parsed.claim_str("sid").map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_appended_to_the_redirect() {
        assert_eq!(
            with_state("https://rp.example/bye?x=1", Some("a b")),
            "https://rp.example/bye?x=1&state=a+b"
        );
        assert_eq!(
            with_state("https://rp.example/bye", None),
            "https://rp.example/bye"
        );
    }
}
