//! `{issuer}/account/sessions`: the user's sessions in every browser (device, address,
//! sign-in time, last activity; this browser marked). `POST` with `session_id` signs
//! that one out (this browser's: signed out here, off to the sign-in page);
//! `POST …/others` signs out every other.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{
    OTHER_SESSIONS_PATH, SESSIONS_PATH, account_context, action, done, show_page, sign_in, when,
};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError, error_page};
use crate::http::browser::{LOGIN_PATH, see_other, with_cookie};
use crate::interaction::{AccountPage, Device, SessionRevocation};
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
    let mut ctx = account_context(&req, &visit, SESSIONS_PATH, "nav-sessions");
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
