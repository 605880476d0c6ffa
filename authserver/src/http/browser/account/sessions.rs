//! `{issuer}/account/sessions`: the user's sessions in every browser (device, address,
//! sign-in time, last activity; this browser marked). `POST` with `session_id` signs
//! that one out (this browser's: signed out here, off to the sign-in page);
//! `POST …/others` signs out every other. Below them the user's remembered devices (last
//! seen, country, trusted until; this browser's marked); `POST …/devices/forget` with
//! `device_id` forgets one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{
    FORGET_DEVICE_PATH, OTHER_SESSIONS_PATH, SESSIONS_PATH, account_context, action, done,
    show_page, sign_in, when,
};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError, error_page};
use crate::http::browser::{LOGIN_PATH, see_other, with_cookie};
use crate::interaction::{
    AccountPage, Device, DeviceForgetting, SessionRevocation, device_summary,
};
use crate::ui::i18n::{msg, msg_with};

/// A device in the reader's language.
fn device(d: &Device) -> Value {
    match d {
        Device::Unknown => msg("device-unknown"),
        Device::BrowserOn { browser, system } => {
            msg_with("device-on", json!({ "browser": browser, "system": system }))
        }
        Device::Named(name) => json!(name),
    }
}

pub async fn show(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let sessions = match state.interaction().account_sessions(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(s) => s,
    };
    let devices = match state.interaction().account_devices(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(d) => d,
    };
    let mut ctx = account_context(&req, &visit, SESSIONS_PATH, "nav-sessions");
    ctx.insert(
        "forget_action".into(),
        action(&req.tenant, FORGET_DEVICE_PATH),
    );
    ctx.insert(
        "devices".into(),
        json!(
            devices
                .iter()
                .map(|d| json!({
                    "id": d.id,
                    "device": device(&device_summary(d.user_agent.as_deref())),
                    "ip": d.ip,
                    "country": d.country,
                    "first_seen": when(d.first_seen_at),
                    "last_seen": when(d.last_seen_at),
                    "trusted_until": d.trusted_until.map(when),
                    "this_browser": d.this_browser,
                }))
                .collect::<Vec<_>>()
        ),
    );
    ctx.insert("action".into(), action(&req.tenant, SESSIONS_PATH));
    ctx.insert(
        "others_action".into(),
        action(&req.tenant, OTHER_SESSIONS_PATH),
    );
    ctx.insert(
        "has_others".into(),
        json!(sessions.iter().any(|s| !s.this_browser)),
    );
    ctx.insert(
        "sessions".into(),
        json!(
            sessions
                .iter()
                .map(|s| json!({
                    "sid": s.sid,
                    "device": device(&s.device),
                    "ip": s.ip,
                    "signed_in": when(s.signed_in_at),
                    "last_seen": when(s.last_seen_at),
                    "this_browser": s.this_browser,
                }))
                .collect::<Vec<_>>()
        ),
    );
    Ok(show_page(&state, &visit, "account_sessions.html", &ctx))
}

pub async fn revoke(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = p;
    let sid = req.form.get("session_id").map_or("", String::as_str);
    let tenant = req.tenant.clone();
    Ok(
        match state.interaction().revoke_session(&mut visit, sid).await? {
            AccountPage::SignIn => sign_in(&tenant),
            AccountPage::Show(SessionRevocation::SignedOutHere) => with_cookie(
                visit.browser.as_ref(),
                see_other(&format!("{}{LOGIN_PATH}", tenant.issuer)),
            ),
            AccountPage::Show(SessionRevocation::Done(_)) => {
                done(&tenant, SESSIONS_PATH, "signed-out")
            }
            AccountPage::Show(SessionRevocation::NotFound) => error_page(
                &state,
                &tenant,
                &visit.lang,
                StatusCode::NOT_FOUND,
                msg("sessions-not-found"),
            ),
        },
    )
}

pub async fn revoke_others(
    State(state): State<AppState>,
    p: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    Ok(
        match state.interaction().revoke_other_sessions(&visit).await? {
            AccountPage::SignIn => sign_in(&req.tenant),
            AccountPage::Show(_) => done(&req.tenant, SESSIONS_PATH, "signed-out-others"),
        },
    )
}

pub async fn forget_device(
    State(state): State<AppState>,
    p: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let id = req.form.get("device_id").map_or("", String::as_str);
    Ok(match state.interaction().forget_device(&visit, id).await? {
        AccountPage::SignIn => sign_in(&req.tenant),
        AccountPage::Show(DeviceForgetting::Done) => {
            done(&req.tenant, SESSIONS_PATH, "device-forgotten")
        }
        AccountPage::Show(DeviceForgetting::NotFound) => error_page(
            &state,
            &req.tenant,
            &visit.lang,
            StatusCode::NOT_FOUND,
            msg("devices-not-found"),
        ),
    })
}
