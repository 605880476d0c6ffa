//! `GET/POST {issuer}/account/password`: the current password, the new one and its
//! confirmation (`current_password`, `new_password`, `confirm_password`). A wrong
//! current password is counted like a failed sign-in (429 with `Retry-After` once
//! locked); success ends the user's other sessions.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{PASSWORD_PATH, account_context, action, done, show_page, sign_in};
use crate::domain::client::Invalid;
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError, locked_message};
use crate::interaction::{AccountPage, PasswordChange, PasswordOutcome, PasswordProblem};
use crate::ui::i18n::{msg, msg_with};

/// The new password's problem in the reader's language.
fn policy_message(kind: Invalid) -> Value {
    match kind {
        Invalid::TooShort { min } => msg_with("password-too-short", json!({ "min": min })),
        Invalid::TooLong { max } => msg_with("password-too-long", json!({ "max": max })),
        Invalid::Breached => msg("password-breached"),
        Invalid::Malformed | Invalid::Stale => msg("password-refused"),
    }
}

pub async fn show(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let username = match state.interaction().account_password(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(u) => u,
    };
    let mut ctx = account_context(&req, &visit, PASSWORD_PATH, "nav-password");
    ctx.insert("action".into(), action(&req.tenant, PASSWORD_PATH));
    ctx.insert("username".into(), json!(username));
    Ok(show_page(&state, &visit, "account_password.html", &ctx))
}

pub async fn submit(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let field = |name: &str| SecretString::from(req.form.get(name).cloned().unwrap_or_default());
    let form = PasswordChange {
        current: field("current_password"),
        new: field("new_password"),
        confirm: field("confirm_password"),
    };
    let problem = match state.interaction().change_password(&visit, &form).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(PasswordOutcome::Changed { .. }) => {
            return Ok(done(&req.tenant, PASSWORD_PATH, "password"));
        }
        AccountPage::Show(PasswordOutcome::Refused(p)) => p,
    };
    let (status, message, retry) = match problem {
        PasswordProblem::Missing => (StatusCode::BAD_REQUEST, msg("password-missing"), None),
        PasswordProblem::WrongCurrent => {
            (StatusCode::BAD_REQUEST, msg("password-wrong-current"), None)
        }
        PasswordProblem::Locked {
            retry_after_seconds,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            locked_message(retry_after_seconds),
            Some(retry_after_seconds),
        ),
        PasswordProblem::Mismatch => (StatusCode::BAD_REQUEST, msg("password-mismatch"), None),
        PasswordProblem::Policy(kind) => (StatusCode::BAD_REQUEST, policy_message(kind), None),
    };
    let mut ctx = account_context(&req, &visit, PASSWORD_PATH, "nav-password");
    ctx.insert("action".into(), action(&req.tenant, PASSWORD_PATH));
    ctx.insert("error".into(), message);
    let mut resp = show_page(&state, &visit, "account_password.html", &ctx);
    *resp.status_mut() = status;
    if let Some(s) = retry {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s.max(1)));
    }
    Ok(resp)
}
