//! `GET/POST {issuer}/logout`: OpenID Connect RP-Initiated Logout 1.0.
//!
//! - `id_token_hint`: an ID token we issued (signature checked with the tenant's keys,
//!   `iss` must be this issuer; an expired one is fine — it names a session, it does not
//!   authenticate anyone). A hint only ever ends sessions of the browser that sends it:
//!   with a valid hint the session it names (`sid`, else the browser's active account)
//!   ends at once when this browser holds it. When this browser does not hold that `sid`
//!   (it is gone — signing in again makes a new one — or it is another browser's), this
//!   browser's accounts of the hint's user end instead: the hint's `sub` is compared with
//!   each account's subject as the hint's client sees it (public or pairwise); when none
//!   matches, the user confirms as without a hint. Anyone can obtain someone else's ID
//!   token (it travels through RPs and logs), so it must never sign another browser out.
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
    sub: Option<String>,
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
        if let Some(sid) = hint.sid.as_deref() {
            match state.store.get_session(&tenant.id, sid).await {
                Ok(Some(s))
                    if browser
                        .as_ref()
                        .is_some_and(|b| b.row.id_hash == s.browser_id_hash) => {}
                Ok(_) => {
                    return by_subject(
                        &state,
                        &req,
                        browser,
                        &hint,
                        client_id.as_deref(),
                        redirect.as_deref(),
                    )
                    .await;
                }
                Err(e) => return internal_error(&state, tenant, &e),
            }
        }
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

/// The hint's `sid` is gone: ends this browser's accounts whose user the hint's `sub`
/// names, each compared the way that client's ID tokens compute `sub` (public or
/// pairwise, for any of the hint's audiences); when none matches, the confirmation page.
async fn by_subject(
    state: &AppState,
    req: &PageRequest,
    browser: Option<Browser>,
    hint: &Hint,
    client_id: Option<&str>,
    redirect: Option<&str>,
) -> Response {
    let tenant = &req.tenant;
    let Some(mut browser) = browser else {
        // Nobody is signed in in this browser: nothing to end or confirm.
        return done(state, tenant, None, true, redirect);
    };
    let accounts = match state.sessions.accounts(&browser).await {
        Ok(a) => a,
        Err(e) => return internal_error(state, tenant, &e),
    };
    let mut specs = Vec::new();
    for aud in &hint.audiences {
        match state.oauth.clients.get(&tenant.id, aud).await {
            Ok(Some(c)) => specs.push(c),
            Ok(None) => {}
            Err(e) => return internal_error(state, tenant, &e),
        }
    }
    let mut matching = Vec::new();
    if let Some(sub) = hint.sub.as_deref() {
        for account in &accounts {
            for client in &specs {
                // A client whose subjects cannot be computed names nobody.
                let expected = state
                    .oauth
                    .user_subject(tenant, &client.spec, &account.user_id)
                    .await;
                if expected.is_ok_and(|s| s == sub) {
                    matching.push(account);
                    break;
                }
            }
        }
    }
    if matching.is_empty() {
        return confirm(state, req, &browser, client_id).await;
    }
    let mut remaining = true;
    for account in matching {
        match state
            .sessions
            .end_account(tenant, &mut browser, &account.sid, &req.origin)
            .await
        {
            Ok(r) => remaining = r,
            Err(e) => return internal_error(state, tenant, &e),
        }
        state
            .store
            .audit(
                AuditEvent::new(&tenant.id, state.sessions.now(), "logout")
                    .actor(Some("user"))
                    .subject(Some(&account.user_id))
                    .ip(req.origin.ip.as_deref())
                    .details(json!({ "sid": account.sid, "hint_sid": hint.sid })),
            )
            .await;
    }
    done(state, tenant, None, !remaining, redirect)
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
            // `handle` sends a hint naming another browser's session to `by_subject`;
            // should one get here all the same, it is not this browser's to end.
            _ => return done(state, tenant, None, !remaining, redirect),
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
            &cookie::clear(&tenant.id, tenant.issuer.starts_with("https://")),
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

/// Checks an `id_token_hint`: our signature (any of the tenant's published keys), our
/// issuer, and the shape of an ID token — a header `typ`, when present, of `JWT` (so an
/// access token, `at+jwt`, or any other JWT we sign is no hint), and `sub` and `aud`.
/// Expiry is deliberately not checked. `Ok(None)` when it is not one of our ID tokens.
async fn verify_hint(
    state: &AppState,
    tenant: &Tenant,
    token: &str,
) -> Result<Option<Hint>, crate::keys::Error> {
    let Ok(parsed) = jws::parse(token) else {
        return Ok(None);
    };
    if !typ_is_id_token(parsed.header_str("typ")) {
        return Ok(None);
    }
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
    let Some(sub) = parsed.claim_str("sub").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
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
        sub: Some(sub.to_owned()),
        sid: parsed.claim_str("sid").map(str::to_owned),
    }))
}

/// Our ID tokens say `typ: JWT`; a missing `typ` is tolerated (RFC 7515 makes it
/// optional), any other value (`at+jwt`, `logout+jwt`, …) is another kind of token.
fn typ_is_id_token(typ: Option<&str>) -> bool {
    typ.is_none_or(|t| t.eq_ignore_ascii_case("JWT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_id_token_typ_is_a_hint() {
        assert!(typ_is_id_token(None));
        assert!(typ_is_id_token(Some("JWT")));
        assert!(typ_is_id_token(Some("jwt")));
        assert!(!typ_is_id_token(Some("at+jwt")));
        assert!(!typ_is_id_token(Some("application/at+jwt")));
        assert!(!typ_is_id_token(Some("logout+jwt")));
    }

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
