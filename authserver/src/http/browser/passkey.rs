//! Passkey pages and their ceremonies:
//!
//! - `POST {issuer}/login/passkey` — passwordless sign-in (button
//!   `data-action=passkey-signin` on the sign-in page);
//! - `POST {issuer}/login/mfa/passkey` — a passkey as the second factor
//!   (`data-action=passkey-verify`);
//! - `POST {issuer}/login/mfa/enroll/passkey` — a passkey instead of TOTP during
//!   enrolment (`data-action=passkey-enroll`);
//! - `GET/POST {issuer}/account/passkeys` — the account's passkeys, and adding one
//!   (`data-action=passkey-register`); `POST {issuer}/account/passkeys/remove`.
//!
//! Each ceremony's options come from the same path plus `/options` (a POST with the
//! form's `_csrf`, answered with JSON); the page's script (`/assets/passkey.js`) runs
//! `navigator.credentials` and posts the answer as the form field `credential`. The
//! rules are the interaction engine's ([`crate::interaction`]).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde_json::json;

use super::account::{self, when};
use super::page::{BrowserPage, PageError, PageRequest, render};
use super::{LOGIN_PATH, Limited, page, rate_limited, url_with_request};
use crate::http::AppState;
use crate::interaction::{
    AccountPasskeys, CeremonyStart, PasskeyChange, PasskeyList, StoredPasskey, Visit,
};
use crate::session::CeremonyPurpose;
use crate::ui::i18n::msg;

pub const LOGIN_PASSKEY_PATH: &str = "/login/passkey";
pub const MFA_PASSKEY_PATH: &str = "/login/mfa/passkey";
pub const ENROLL_PASSKEY_PATH: &str = "/login/mfa/enroll/passkey";
pub const ACCOUNT_PASSKEYS_PATH: &str = "/account/passkeys";
pub const ACCOUNT_PASSKEYS_REMOVE_PATH: &str = "/account/passkeys/remove";
/// Appended to a ceremony's path for its options.
pub const OPTIONS_SUFFIX: &str = "/options";
pub const SCRIPT_PATH: &str = "/assets/passkey.js";

/// The answer field every ceremony form posts.
pub(super) const CREDENTIAL_FIELD: &str = "credential";

/// The page's `passkey` button: which ceremony, where its options and answer go, and
/// the stable `data-action` hook for browser automation.
pub(super) fn button(
    issuer: &str,
    path: &str,
    request: Option<&str>,
    purpose: CeremonyPurpose,
) -> serde_json::Value {
    // The hook doubles as the id of the button's label in the catalogues.
    let (hook, ceremony, class) = match purpose {
        CeremonyPurpose::SignIn => ("passkey-signin", "get", "secondary"),
        CeremonyPurpose::SecondFactor => ("passkey-verify", "get", "primary"),
        CeremonyPurpose::Enroll => ("passkey-enroll", "create", "secondary"),
        CeremonyPurpose::Register => ("passkey-register", "create", "primary"),
        CeremonyPurpose::Link => ("passkey-link", "get", "secondary"),
    };
    let options_path = format!("{path}{OPTIONS_SUFFIX}");
    json!({
        "action": url_with_request(issuer, path, request),
        "options": url_with_request(issuer, &options_path, request),
        "hook": hook,
        "ceremony": ceremony,
        "label": msg(hook),
        "class": class,
        "name_field": matches!(purpose, CeremonyPurpose::Enroll | CeremonyPurpose::Register),
    })
}

/// `GET {issuer}/assets/passkey.js`.
pub fn script() -> Response {
    let mut resp = crate::ui::PASSKEY_SCRIPT.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    resp
}

async fn options(
    state: &AppState,
    page_req: BrowserPage,
    purpose: CeremonyPurpose,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page_req;
    if purpose == CeremonyPurpose::SignIn
        && let Some(resp) = rate_limited(state, &req, Limited::Login, None).await
    {
        return Ok(resp);
    }
    let started = state
        .interaction()
        .passkey_options(&mut visit, req.request(), purpose)
        .await?;
    let (status, body) = match started {
        CeremonyStart::Options(o) => (StatusCode::OK, o),
        CeremonyStart::Unavailable(why) => (
            StatusCode::CONFLICT,
            json!({ "error": state.ui.catalogues().text(visit.lang.tag(), why, None) }),
        ),
    };
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(super::with_cookie(visit.browser.as_ref(), resp))
}

/// `POST {path}/options` of the ceremony for `purpose`.
pub(super) fn options_route(purpose: CeremonyPurpose) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>, page: BrowserPage| async move {
            options(&state, page, purpose).await
        },
    )
}

/// `POST {issuer}/login/passkey`.
pub async fn sign_in(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    if let Some(resp) = rate_limited(&state, &req, Limited::Login, None).await {
        return Ok(resp);
    }
    let credential = req.form.get(CREDENTIAL_FIELD).map_or("", String::as_str);
    let outcome = state
        .interaction()
        .passkey_sign_in(&mut visit, req.request(), credential)
        .await?;
    Ok(render(&state, &visit, outcome))
}

/// `POST {issuer}/login/mfa/passkey`.
pub async fn second_factor(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    let credential = req.form.get(CREDENTIAL_FIELD).map_or("", String::as_str);
    let outcome = state
        .interaction()
        .passkey_second_factor(&mut visit, req.request(), credential)
        .await?;
    Ok(render(&state, &visit, outcome))
}

/// `POST {issuer}/login/mfa/enroll/passkey`.
pub async fn enroll(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    let credential = req.form.get(CREDENTIAL_FIELD).map_or("", String::as_str);
    let name = req.form.get("passkey_name").map_or("", String::as_str);
    let outcome = state
        .interaction()
        .passkey_enroll(&mut visit, req.request(), credential, name)
        .await?;
    Ok(render(&state, &visit, outcome))
}

/// `GET {issuer}/account/passkeys`.
pub async fn account(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = page;
    let shown = state.interaction().account_passkeys(&visit).await?;
    Ok(account_page(&state, &req, &visit, shown))
}

/// `POST {issuer}/account/passkeys`: the answer of the registration ceremony.
pub async fn register(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    let credential = req.form.get(CREDENTIAL_FIELD).map_or("", String::as_str);
    let name = req.form.get("passkey_name").map_or("", String::as_str);
    let shown = state
        .interaction()
        .register_passkey(&mut visit, credential, name)
        .await?;
    Ok(account_page(&state, &req, &visit, shown))
}

/// `POST {issuer}/account/passkeys/remove` (field `credential_id`).
pub async fn remove(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = page;
    let id = req.form.get("credential_id").map_or("", String::as_str);
    let shown = state.interaction().remove_passkey(&visit, id).await?;
    Ok(account_page(&state, &req, &visit, shown))
}

/// The message id of a passkey change's outcome.
fn change_message(c: PasskeyChange) -> &'static str {
    match c {
        PasskeyChange::Added => "passkey-added",
        PasskeyChange::Removed => "passkey-removed",
        PasskeyChange::Refused => "passkey-not-added",
        PasskeyChange::AlreadyRegistered => "passkey-already-registered",
        PasskeyChange::InvalidName => "passkey-invalid-name",
        PasskeyChange::SignInAgain => "passkey-reauth-to-add",
        PasskeyChange::LastFactor => "passkey-last-factor",
        PasskeyChange::NotFound => "passkey-not-found",
    }
}

/// The passkey section's variables (the list, the remove action, the add button), for
/// this page and the account security page.
pub(super) fn section(
    ctx: &mut serde_json::Map<String, serde_json::Value>,
    issuer: &str,
    passkeys: &[StoredPasskey],
    can_register: bool,
    recent_sign_in: bool,
) {
    ctx.insert(
        "passkey_remove_action".into(),
        json!(format!("{issuer}{ACCOUNT_PASSKEYS_REMOVE_PATH}")),
    );
    ctx.insert(
        "reauth_url".into(),
        json!(format!("{issuer}{LOGIN_PATH}?return_to=account")),
    );
    ctx.insert(
        "passkeys".into(),
        json!(
            passkeys
                .iter()
                .map(|p| json!({
                    "credential_id": p.credential_id,
                    "name": p.name,
                    "created_at": when(p.created_at),
                    "last_used_at": p.last_used_at.map(when),
                    "synced": p.backup_eligible,
                }))
                .collect::<Vec<_>>()
        ),
    );
    ctx.insert("can_register".into(), json!(can_register));
    ctx.insert("recent_sign_in".into(), json!(recent_sign_in));
    if can_register && recent_sign_in {
        ctx.insert(
            "passkey".into(),
            button(
                issuer,
                ACCOUNT_PASSKEYS_PATH,
                None,
                CeremonyPurpose::Register,
            ),
        );
    }
}

/// A change ends on the security page with its notice; a refusal (or a plain GET)
/// shows this page with the section and the reason.
fn account_page(
    state: &AppState,
    req: &PageRequest,
    visit: &Visit,
    shown: AccountPasskeys,
) -> Response {
    let tenant = &visit.tenant;
    let issuer = tenant.issuer.as_str();
    let list: PasskeyList = match shown {
        AccountPasskeys::SignIn => return account::sign_in(tenant),
        AccountPasskeys::Show(list) => list,
    };
    match list.notice {
        Some(PasskeyChange::Added) => {
            return account::done(tenant, account::SECURITY_PATH, "passkey-added");
        }
        Some(PasskeyChange::Removed) => {
            return account::done(tenant, account::SECURITY_PATH, "passkey-removed");
        }
        _ => {}
    }
    let mut ctx = account::account_context(req, visit, ACCOUNT_PASSKEYS_PATH, "nav-passkeys");
    ctx.insert("username".into(), json!(list.username));
    section(
        &mut ctx,
        issuer,
        &list.passkeys,
        list.can_register,
        list.recent_sign_in,
    );
    let status = match list.problem {
        Some(p) => {
            ctx.insert("error".into(), msg(change_message(p)));
            match p {
                PasskeyChange::NotFound => StatusCode::NOT_FOUND,
                PasskeyChange::LastFactor | PasskeyChange::AlreadyRegistered => {
                    StatusCode::CONFLICT
                }
                PasskeyChange::SignInAgain => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            }
        }
        None => StatusCode::OK,
    };
    page(
        state,
        visit.browser.as_ref(),
        status,
        "account_passkeys.html",
        &ctx,
    )
}
