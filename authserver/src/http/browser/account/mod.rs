//! The signed-in user's account pages under `{issuer}/account`: the overview, profile,
//! password, security (second factors), sessions, apps with access (consents) and
//! activity, all sharing one navigation (`account_nav.html`). Every POST is checked for
//! CSRF by [`BrowserPage`] before anything is read or changed; a handler parses the
//! form, calls one engine step ([`crate::interaction`]) and renders what it returns. A
//! change answers `303` to its page with `?done=<what>` (post/redirect/get), which the
//! page shows as a notice from a fixed list. Nobody signed in → the sign-in page with
//! `return_to=account`, which comes back to the overview.

mod activity;
mod consents;
mod links;
mod password;
mod profile;
mod security;
mod sessions;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::page::{BrowserPage, PageError, PageRequest};
use super::{LOGIN_PATH, base_context, page, see_other};
use crate::domain::tenant::Tenant;
use crate::http::AppState;
use crate::interaction::{AccountOverview, AccountPage, Visit};
use crate::ui::i18n::msg;

pub const ACCOUNT_PATH: &str = "/account";
pub const ACCOUNT_CONSENTS_PATH: &str = "/account/consents";
pub const PROFILE_PATH: &str = "/account/profile";
pub const PASSWORD_PATH: &str = "/account/password";
pub const SECURITY_PATH: &str = "/account/security";
pub const TOTP_PATH: &str = "/account/security/totp";
pub const TOTP_CONFIRM_PATH: &str = "/account/security/totp/confirm";
pub const TOTP_REMOVE_PATH: &str = "/account/security/totp/remove";
pub const RECOVERY_CODES_PATH: &str = "/account/security/recovery-codes";
pub const SESSIONS_PATH: &str = "/account/sessions";
pub const OTHER_SESSIONS_PATH: &str = "/account/sessions/others";
/// `POST`: forget one of the user's remembered devices (listed on the sessions page).
pub const FORGET_DEVICE_PATH: &str = "/account/sessions/devices/forget";
pub const ACTIVITY_PATH: &str = "/account/activity";
/// Linked upstream accounts (identity providers).
pub const LINKS_PATH: &str = "/account/links";

/// The navigation every account page shows, in order: path and the message id of its
/// label (which is also the page's title).
const NAV: &[(&str, &str)] = &[
    (ACCOUNT_PATH, "nav-overview"),
    (PROFILE_PATH, "nav-profile"),
    (PASSWORD_PATH, "nav-password"),
    (SECURITY_PATH, "nav-security"),
    (super::passkey::ACCOUNT_PASSKEYS_PATH, "nav-passkeys"),
    (SESSIONS_PATH, "nav-sessions"),
    (LINKS_PATH, "nav-links"),
    (ACCOUNT_CONSENTS_PATH, "nav-consents"),
    (ACTIVITY_PATH, "nav-activity"),
];

/// The notices a page shows after a change (`?done=<what>`), each the message
/// `done-<what>`: a closed list, so the query cannot put words on the page.
const NOTICES: &[&str] = &[
    "profile",
    "email",
    "password",
    "totp-removed",
    "signed-out",
    "signed-out-others",
    "consent",
    "passkey-added",
    "passkey-removed",
    "device-forgotten",
];

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(ACCOUNT_PATH, get(overview))
        .route(
            ACCOUNT_CONSENTS_PATH,
            get(consents::show).post(consents::submit),
        )
        .route(PROFILE_PATH, get(profile::show).post(profile::submit))
        .route(PASSWORD_PATH, get(password::show).post(password::submit))
        .route(SECURITY_PATH, get(security::show))
        .route(TOTP_PATH, post(security::begin_totp))
        .route(TOTP_CONFIRM_PATH, post(security::confirm_totp))
        .route(TOTP_REMOVE_PATH, post(security::remove_totp))
        .route(RECOVERY_CODES_PATH, post(security::regenerate_codes))
        .route(SESSIONS_PATH, get(sessions::show).post(sessions::revoke))
        .route(OTHER_SESSIONS_PATH, post(sessions::revoke_others))
        .route(FORGET_DEVICE_PATH, post(sessions::forget_device))
        .route(ACTIVITY_PATH, get(activity::show))
        .route(LINKS_PATH, get(links::show).post(links::remove))
}

/// The sign-in page, coming back to the account pages afterwards.
pub(super) fn sign_in(tenant: &Tenant) -> Response {
    see_other(&format!("{}{LOGIN_PATH}?return_to=account", tenant.issuer))
}

/// `303` to an account page with a notice.
pub(in crate::http::browser) fn done(tenant: &Tenant, path: &str, what: &str) -> Response {
    see_other(&format!("{}{path}?done={what}", tenant.issuer))
}

/// The context of an account page: the base, its title (a message id), the CSRF token
/// for its forms, the navigation with `current` marked, and the notice `?done=` names.
pub(in crate::http::browser) fn account_context(
    req: &PageRequest,
    visit: &Visit,
    current: &str,
    title: &str,
) -> Map<String, Value> {
    let tenant = &req.tenant;
    let mut ctx = base_context(tenant, &visit.lang);
    ctx.insert("title".into(), msg(title));
    ctx.insert(
        "csrf".into(),
        json!(visit.browser.as_ref().map(|b| b.data.csrf.clone())),
    );
    ctx.insert("nav".into(), nav(tenant, current));
    if let Some(notice) = req
        .query
        .get("done")
        .and_then(|d| NOTICES.iter().find(|k| *k == d))
    {
        ctx.insert("notice".into(), msg(&format!("done-{notice}")));
    }
    ctx
}

/// The navigation of the account pages (`account_nav.html`), `current` marked: for
/// account pages rendered elsewhere (passkeys).
pub(super) fn nav(tenant: &Tenant, current: &str) -> Value {
    json!(
        NAV.iter()
            .map(|(path, label)| json!({
                "href": format!("{}{path}", tenant.issuer),
                "label": msg(label),
                "current": *path == current,
            }))
            .collect::<Vec<_>>()
    )
}

/// `{issuer}{path}`: a form's action.
fn action(tenant: &Tenant, path: &str) -> Value {
    json!(format!("{}{path}", tenant.issuer))
}

/// A time for people: `2026-12-06 10:30 UTC`.
pub(in crate::http::browser) fn when(t: crate::clock::UnixTime) -> String {
    jiff::Timestamp::from_second(t).map_or_else(
        |_| t.to_string(),
        |ts| ts.strftime("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// Renders an account page with status 200.
fn show_page(state: &AppState, visit: &Visit, name: &str, ctx: &Map<String, Value>) -> Response {
    page(state, visit.browser.as_ref(), StatusCode::OK, name, ctx)
}

/// `GET {issuer}/account`: who is signed in, and the state of the account.
async fn overview(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let o: AccountOverview = match state.interaction().account_overview(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(o) => o,
    };
    let mut ctx = account_context(&req, &visit, ACCOUNT_PATH, "account-title");
    ctx.insert("username".into(), json!(o.username));
    ctx.insert("name".into(), json!(o.name));
    ctx.insert("email".into(), json!(o.email));
    ctx.insert("email_verified".into(), json!(o.email_verified));
    ctx.insert("totp_enrolled".into(), json!(o.totp_enrolled));
    ctx.insert("recovery_codes_left".into(), json!(o.recovery_codes_left));
    ctx.insert("sessions".into(), json!(o.sessions));
    Ok(show_page(&state, &visit, "account.html", &ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc_to_the_minute() {
        assert_eq!(when(1_796_553_000), "2026-12-06 10:30 UTC");
    }

    #[test]
    fn every_page_is_in_the_navigation_once() {
        for path in [
            ACCOUNT_PATH,
            PROFILE_PATH,
            PASSWORD_PATH,
            SECURITY_PATH,
            super::super::passkey::ACCOUNT_PASSKEYS_PATH,
            SESSIONS_PATH,
            LINKS_PATH,
            ACCOUNT_CONSENTS_PATH,
            ACTIVITY_PATH,
        ] {
            assert_eq!(NAV.iter().filter(|(p, _)| *p == path).count(), 1, "{path}");
        }
    }
}
