//! `GET/POST {issuer}/authorize` and `GET {issuer}/authorize/continue?request=<handle>`:
//! the browser side of the authorization code flow.
//!
//! `/authorize` validates the request with `authorize::OAuthService::authorization_request`
//! (a bad client or redirect URI is a page, never a redirect) and hands it to the
//! interaction engine, which stores it bound to this browser for ten minutes under a
//! random handle and decides what comes next: sign-in, account chooser, consent, or the
//! code. Each of those steps comes back through `/authorize/continue`, which honours the
//! handle only in the browser it is bound to.
//!
//! `POST /authorize` touches no session: a cross-site form POST carries no `SameSite=Lax`
//! cookie, so it would look like a browser without a session (starting a new one would
//! replace the user's cookie and sign them out, and `prompt=none` would always fail).
//! It is answered with `303` to `GET /authorize` with the same parameters in the query:
//! that top-level GET carries the cookie.

use axum::extract::State;
use axum::response::Response;

use super::client_response;
use super::page::{BrowserPage, PageError, PageRequest, render};
use super::see_other;
use crate::authorize::{AuthorizeError, ClientResponse};
use crate::http::AppState;
use crate::oauth::form::Form;

pub const AUTHORIZE_PATH: &str = "/authorize";
pub const CONTINUE_PATH: &str = "/authorize/continue";
pub const CONSENT_PATH: &str = "/consent";

/// The largest query `/authorize` accepts.
const MAX_QUERY: usize = 8 * 1024;

/// `GET/POST {issuer}/authorize`.
pub async fn start(State(state): State<AppState>, req: PageRequest) -> Result<Response, PageError> {
    if req.is_post() {
        return Ok(as_get(&req));
    }
    let tenant = &req.tenant;
    // Every parameter is stored with the request until it completes: a browser URL has
    // no business being larger (a large request is pushed first, RFC 9126).
    if req.raw_query.len() > MAX_QUERY {
        return Err(PageError::BadRequest(
            "The request is too large. Large authorization requests must be pushed (PAR)."
                .to_owned(),
        ));
    }
    if let Some(resp) = super::rate_limited(
        &state,
        &req,
        super::Limited::Authorize,
        req.query.get("client_id").map(String::as_str),
    )
    .await
    {
        return Ok(resp);
    }
    let form = Form::parse(
        Some("application/x-www-form-urlencoded"),
        req.raw_query.as_bytes(),
    )
    .map_err(|e| {
        PageError::BadRequest(
            e.description
                .unwrap_or_else(|| "The request is malformed.".to_owned()),
        )
    })?;
    let auth = match state.oauth.authorization_request(tenant, &form).await {
        Ok(a) => a,
        Err(AuthorizeError::Page(message)) => return Err(PageError::BadRequest(message)),
        Err(AuthorizeError::Redirect(r)) => {
            return Ok(client_response::send(&ClientResponse::error(
                &tenant.issuer,
                &r,
            )));
        }
        Err(AuthorizeError::Server(e)) => return Err(PageError::Server(e)),
    };
    let browser = req.browser(&state).await?;
    let mut visit = req.visit(&state, browser);
    let outcome = state.interaction().start(&mut visit, auth).await?;
    Ok(render(&state, &visit, outcome))
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
pub async fn resume(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    let outcome = state
        .interaction()
        .resume(&mut visit, req.param("request"))
        .await?;
    Ok(render(&state, &visit, outcome))
}
