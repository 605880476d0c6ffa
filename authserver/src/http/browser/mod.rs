//! The pages a person sees, under each issuer: sign-in (`/login`, `/login/mfa`,
//! `/login/mfa/enroll`), the account chooser (`/select-account`), consent (`/consent`),
//! the authorization endpoint's browser flow (`/authorize`, `/authorize/continue`) and
//! RP-initiated logout (`/logout`, advertised as `end_session_endpoint`), sign-in
//! through upstream identity providers (`/login/upstream…`, see [`upstream`]), the signed-in
//! user's account pages (`/account/…`, see [`account`]; passkeys at `/account/passkeys`,
//! with the passkey ceremonies of the sign-in pages: [`passkey`]), plus the stylesheet
//! (`/assets/gatehouse.css`) and the passkey script (`/assets/passkey.js`).
//!
//! Every page is server-rendered HTML that works without JavaScript; every POST form
//! carries the browser session's CSRF token as `_csrf`, checked in constant time before
//! anything changes ([`page::BrowserPage`]). The handlers only parse the request, call
//! the interaction engine ([`crate::interaction`]) and render its outcome
//! ([`page::render`]); a failure is a [`page::PageError`], rendered in one place.

mod account;
mod accounts;
mod authorize;
mod client_response;
mod consent;
mod email;
mod html;
mod login;
mod logout;
mod mfa;
mod page;
mod passkey;
mod upstream;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::AppState;
use crate::domain::tenant::Tenant;
use crate::session::Browser;
use page::{PageRequest, error_page};

pub const LOGIN_PATH: &str = "/login";
pub const MFA_PATH: &str = "/login/mfa";
pub const MFA_ENROLL_PATH: &str = "/login/mfa/enroll";
pub const SELECT_ACCOUNT_PATH: &str = "/select-account";
/// Advertised in discovery as `end_session_endpoint`.
pub const LOGOUT_PATH: &str = "/logout";
pub const STYLESHEET_PATH: &str = "/assets/gatehouse.css";

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(STYLESHEET_PATH, get(|| async { html::stylesheet() }))
        .route(passkey::SCRIPT_PATH, get(|| async { passkey::script() }))
        .merge(passkey_routes())
        .route(LOGIN_PATH, get(login::show).post(login::submit))
        .route(
            upstream::UPSTREAM_PATH,
            axum::routing::post(upstream::start),
        )
        .route(upstream::UPSTREAM_CALLBACK_PATH, get(upstream::callback))
        .route(
            upstream::UPSTREAM_LINK_PATH,
            axum::routing::post(upstream::link),
        )
        .route(MFA_PATH, get(mfa::verify).post(mfa::verify))
        .route(MFA_ENROLL_PATH, get(mfa::enroll).post(mfa::enroll))
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
        .merge(account::router())
        .merge(email::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            page::render_error_pages,
        ))
}

/// The passkey ceremonies: each answer's path, and its options at `{path}/options`.
fn passkey_routes() -> Router<AppState> {
    use crate::session::CeremonyPurpose;
    use axum::routing::post;
    use passkey::{
        ACCOUNT_PASSKEYS_PATH, ACCOUNT_PASSKEYS_REMOVE_PATH, ENROLL_PASSKEY_PATH,
        LOGIN_PASSKEY_PATH, MFA_PASSKEY_PATH, OPTIONS_SUFFIX, options_route,
    };
    let options = |path: &str| format!("{path}{OPTIONS_SUFFIX}");
    Router::new()
        .route(LOGIN_PASSKEY_PATH, post(passkey::sign_in))
        .route(
            &options(LOGIN_PASSKEY_PATH),
            options_route(CeremonyPurpose::SignIn),
        )
        .route(MFA_PASSKEY_PATH, post(passkey::second_factor))
        .route(
            &options(MFA_PASSKEY_PATH),
            options_route(CeremonyPurpose::SecondFactor),
        )
        .route(ENROLL_PASSKEY_PATH, post(passkey::enroll))
        .route(
            &options(ENROLL_PASSKEY_PATH),
            options_route(CeremonyPurpose::Enroll),
        )
        .route(
            ACCOUNT_PASSKEYS_PATH,
            get(passkey::account).post(passkey::register),
        )
        .route(
            &options(ACCOUNT_PASSKEYS_PATH),
            options_route(CeremonyPurpose::Register),
        )
        .route(ACCOUNT_PASSKEYS_REMOVE_PATH, post(passkey::remove))
        .route(
            upstream::UPSTREAM_LINK_PASSKEY_PATH,
            post(upstream::link_passkey),
        )
        .route(
            &options(upstream::UPSTREAM_LINK_PASSKEY_PATH),
            options_route(CeremonyPurpose::Link),
        )
}

impl AppState {
    /// The interaction engine over this state's services.
    pub(crate) fn interaction(&self) -> crate::interaction::Engine<'_> {
        crate::interaction::Engine {
            store: &self.store,
            sessions: &self.sessions,
            oauth: &self.oauth,
            users: &self.users,
            mfa: &self.mfa,
            passkeys: &self.passkeys,
            throttle: &self.login_throttle,
            email: &self.email,
            federation: &self.federation,
            devices: &self.devices,
            catalogues: self.ui.catalogues(),
        }
    }
}

/// Which browser endpoint a rate limit counts (`rate_limits.*_per_ip`, `*_per_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limited {
    Authorize,
    Login,
    /// The e-mail pages' POSTs (reset request, registration, new link).
    Email,
}

/// Counts a page request against its limits: per source IP, and for `/authorize` per
/// `client_id`. Over a limit: a 429 page with `Retry-After` and the rate headers.
pub(super) async fn rate_limited(
    state: &AppState,
    req: &PageRequest,
    endpoint: Limited,
    client_id: Option<&str>,
) -> Option<Response> {
    let limits = &state.oauth.rate_limits;
    let (name, per_ip, per_client) = match endpoint {
        Limited::Authorize => (
            "authorize",
            limits.authorize_per_ip,
            Some(limits.authorize_per_client),
        ),
        Limited::Login => ("login", limits.login_per_ip, None),
        Limited::Email => ("email", limits.email_per_ip, None),
    };
    // The named client is not authenticated here: `/authorize` is where anyone starts
    // a sign-in for a client, so its budget is the client's whatever the caller.
    let counted = state
        .oauth
        .count_ip_and_client(
            name,
            &req.tenant,
            req.origin.ip.as_deref(),
            per_ip,
            client_id.zip(per_client),
        )
        .await;
    let refused = match counted {
        Err(e) => e.rate,
        Ok(Some(counted)) => match counted.client {
            Some(client) if !client.allowed => Some(client.headers),
            _ => return None,
        },
        Ok(None) => return None,
    };
    let mut resp = error_page(
        state,
        &req.tenant,
        &req.lang(state, None),
        StatusCode::TOO_MANY_REQUESTS,
        crate::ui::i18n::msg("too-many-requests"),
    );
    if let Some(rate) = refused {
        crate::http::error::rate_headers(resp.headers_mut(), rate);
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(rate.reset_seconds.max(1)),
        );
    }
    Some(resp)
}

/// The variables every page gets: the tenant's name and issuer, and the page's
/// language (`lang`, which picks the catalogue the page is rendered with).
pub(super) fn base_context(tenant: &Tenant, lang: &crate::ui::i18n::Lang) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("tenant_name".into(), json!(tenant.display_name));
    m.insert("issuer".into(), json!(tenant.issuer));
    m.insert("lang".into(), json!(lang.tag()));
    m
}

/// Renders a page for a browser, adding its cookie when it is new.
pub(super) fn page(
    state: &AppState,
    browser: Option<&Browser>,
    status: StatusCode,
    name: &str,
    ctx: &Map<String, Value>,
) -> Response {
    with_cookie(browser, html::page(&state.ui, status, name, ctx))
}

/// Adds the browser's `Set-Cookie`, if it needs one.
pub(super) fn with_cookie(browser: Option<&Browser>, mut resp: Response) -> Response {
    if let Some(c) = browser.and_then(Browser::set_cookie) {
        set_cookie(&mut resp, &c);
    }
    if let Some(c) = browser.and_then(Browser::set_device_cookie) {
        set_cookie(&mut resp, &c);
    }
    resp
}

/// Adds a `Set-Cookie` header (`value` from `session::cookie`).
pub(super) fn set_cookie(resp: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
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
}
