//! The pages a person sees, under each issuer: sign-in (`/login`, `/login/mfa`,
//! `/login/mfa/enroll`), the account chooser (`/select-account`), consent (`/consent`),
//! the authorization endpoint's browser flow (`/authorize`, `/authorize/continue`) and
//! RP-initiated logout (`/logout`, advertised as `end_session_endpoint`), the signed-in
//! user's consents (`/account/consents`), plus the stylesheet (`/assets/gatehouse.css`).
//!
//! Every page is server-rendered HTML that works without JavaScript; every POST form
//! carries the browser session's CSRF token as `_csrf`, checked in constant time before
//! anything changes.

mod account;
mod accounts;
mod authorize;
mod consent;
pub(crate) mod decide;
mod login;
mod logout;
mod mfa;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::AppState;
use super::tenant_routing::{CurrentTenant, client_ip};
use crate::domain::tenant::Tenant;
use crate::session::{self, Browser, Origin};

pub const LOGIN_PATH: &str = "/login";
pub const MFA_PATH: &str = "/login/mfa";
pub const MFA_ENROLL_PATH: &str = "/login/mfa/enroll";
pub const SELECT_ACCOUNT_PATH: &str = "/select-account";
/// Advertised in discovery as `end_session_endpoint`.
pub const LOGOUT_PATH: &str = "/logout";
pub const STYLESHEET_PATH: &str = "/assets/gatehouse.css";

/// Form bodies larger than this are not ours.
const MAX_FORM: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(STYLESHEET_PATH, get(|| async { crate::ui::stylesheet() }))
        .route(LOGIN_PATH, get(login::show).post(login::submit))
        .route(MFA_PATH, get(mfa::show_verify).post(mfa::submit_verify))
        .route(
            MFA_ENROLL_PATH,
            get(mfa::show_enroll).post(mfa::submit_enroll),
        )
        .route(
            SELECT_ACCOUNT_PATH,
            get(accounts::show).post(accounts::submit),
        )
        .route(LOGOUT_PATH, get(logout::handle).post(logout::handle))
        .route(
            authorize::AUTHORIZE_PATH,
            get(authorize::start).post(authorize::start),
        )
        .route(authorize::CONTINUE_PATH, get(authorize::resume))
        .route(
            authorize::CONSENT_PATH,
            get(consent::show).post(consent::submit),
        )
        .route(
            account::ACCOUNT_CONSENTS_PATH,
            get(account::show).post(account::submit),
        )
}

/// What a page handler needs from the request.
pub(super) struct PageRequest {
    pub tenant: Arc<Tenant>,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: HashMap<String, String>,
    /// The urlencoded body of a POST (empty otherwise).
    pub form: HashMap<String, String>,
    /// The query and body as sent, for the protocol parser (which rejects repeats).
    pub raw_query: String,
    pub raw_body: Vec<u8>,
    pub origin: Origin,
}

impl PageRequest {
    /// Reads the request; `Err` is the page to answer with (body unreadable).
    pub async fn read(state: &AppState, req: Request) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let Some(CurrentTenant(tenant)) = parts.extensions.get::<CurrentTenant>().cloned() else {
            return Err(StatusCode::NOT_FOUND.into_response());
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let ip = client_ip(&parts.headers, peer, &state.trusted_proxies);
        let origin = Origin::from_request(&parts.headers, ip);
        let raw_query = parts.uri.query().unwrap_or("").to_owned();
        let query = parse_pairs(raw_query.as_bytes());
        let raw_body = if parts.method == Method::POST {
            match axum::body::to_bytes(body, MAX_FORM).await {
                Ok(b) => b.to_vec(),
                Err(_) => {
                    return Err(error_page(
                        state,
                        &tenant,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "The form was too large.",
                    ));
                }
            }
        } else {
            Vec::new()
        };
        Ok(Self {
            tenant,
            method: parts.method,
            headers: parts.headers,
            query,
            form: parse_pairs(&raw_body),
            raw_query,
            raw_body,
            origin,
        })
    }

    /// A parameter from the form (POST) or the query.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .get(name)
            .or_else(|| self.query.get(name))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn is_post(&self) -> bool {
        self.method == Method::POST
    }

    pub fn issuer(&self) -> &str {
        &self.tenant.issuer
    }
}

/// First value wins; the forms are ours, so repeated names are not expected.
fn parse_pairs(bytes: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

/// The variables every page gets.
/// Which browser endpoint a rate limit counts (`rate_limits.*_per_ip`, `*_per_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limited {
    Authorize,
    Login,
}

/// Counts a page request against its limits: per source IP, and for `/authorize` per
/// `client_id`. Over a limit: a 429 page with `Retry-After` and the rate headers.
pub(super) async fn rate_limited(
    state: &AppState,
    req: &PageRequest,
    endpoint: Limited,
    client_id: Option<&str>,
) -> Option<Response> {
    use crate::oauth::Counted;
    let limits = &state.oauth.rate_limits;
    let (name, per_ip, per_client) = match endpoint {
        Limited::Authorize => (
            "authorize",
            limits.authorize_per_ip,
            Some(limits.authorize_per_client),
        ),
        Limited::Login => ("login", limits.login_per_ip, None),
    };
    let mut result = state
        .oauth
        .limit(
            name,
            &req.tenant,
            Counted::Ip(req.origin.ip.as_deref()),
            per_ip,
        )
        .await;
    if let (Ok(_), Some(limit), Some(id)) = (&result, per_client, client_id) {
        result = state
            .oauth
            .limit(name, &req.tenant, Counted::Client(id), limit)
            .await;
    }
    let e = result.err()?;
    let mut resp = error_page(
        state,
        &req.tenant,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests from your network. Wait a moment, then try again.",
    );
    if let Some(rate) = e.rate {
        crate::http::error::rate_headers(resp.headers_mut(), rate);
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(rate.reset_seconds.max(1)),
        );
    }
    Some(resp)
}

pub(super) fn base_context(tenant: &Tenant) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("tenant_name".into(), json!(tenant.display_name));
    m.insert("issuer".into(), json!(tenant.issuer));
    m
}

/// An error page (never a redirect).
pub(super) fn error_page(
    state: &AppState,
    tenant: &Tenant,
    status: StatusCode,
    message: &str,
) -> Response {
    let mut ctx = base_context(tenant);
    ctx.insert("message".into(), json!(message));
    state.ui.page(status, "error.html", &ctx)
}

/// The answer to a POST whose `_csrf` is missing or wrong: nothing was changed.
pub(super) fn csrf_failure(state: &AppState, tenant: &Tenant) -> Response {
    error_page(
        state,
        tenant,
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
}

/// An invariant that did not hold, as an error for [`internal_error`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Invariant(pub &'static str);

/// A server-side failure, as a page: 503 with `Retry-After` when the database is
/// unavailable (anywhere in the error's source chain), otherwise logged and a generic
/// 500. The HTML counterpart of `http::error`'s JSON.
pub(super) fn internal_error(
    state: &AppState,
    tenant: &Tenant,
    e: &(dyn std::error::Error + 'static),
) -> Response {
    if crate::http::error::is_outage(e) {
        tracing::debug!(error = %e, "page refused: database unavailable");
        let mut resp = error_page(
            state,
            tenant,
            StatusCode::SERVICE_UNAVAILABLE,
            "This service is temporarily unavailable. Please try again in a moment.",
        );
        crate::http::error::retry_after_outage(resp.headers_mut());
        return resp;
    }
    tracing::error!(error = %e, "page request failed");
    error_page(
        state,
        tenant,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side. Please try again later.",
    )
}

/// Renders a page for a browser, adding its cookie when it is new.
pub(super) fn page(
    state: &AppState,
    browser: Option<&Browser>,
    status: StatusCode,
    name: &str,
    ctx: &Map<String, Value>,
) -> Response {
    with_cookie(browser, state.ui.page(status, name, ctx))
}

/// Adds the browser's `Set-Cookie`, if it needs one.
pub(super) fn with_cookie(browser: Option<&Browser>, mut resp: Response) -> Response {
    if let Some(c) = browser.and_then(Browser::set_cookie) {
        session::cookie::append(resp.headers_mut(), &c);
    }
    resp
}

/// `303 See Other` to `location` (after a POST the browser follows with a GET).
pub(super) fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `{issuer}{path}` with an optional `request` handle.
pub(super) fn url_with_request(issuer: &str, path: &str, request: Option<&str>) -> String {
    match request {
        Some(r) => {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("request", r)
                .finish();
            format!("{issuer}{path}?{q}")
        }
        None => format!("{issuer}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_handles_are_url_encoded() {
        assert_eq!(
            url_with_request("http://i/t", LOGIN_PATH, Some("a+b&c")),
            "http://i/t/login?request=a%2Bb%26c"
        );
        assert_eq!(
            url_with_request("http://i", LOGIN_PATH, None),
            "http://i/login"
        );
    }

    #[test]
    fn first_value_wins_in_forms() {
        let m = parse_pairs(b"a=1&a=2&b=x%20y");
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x y");
    }
}
