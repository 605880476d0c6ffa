//! The second step of a sign-in: `GET/POST {issuer}/login/mfa` (a TOTP code, or one of
//! the recovery codes, in the field `totp`) and, when MFA is required but not set up,
//! `GET/POST {issuer}/login/mfa/enroll` (QR code and key, a code to confirm, then the
//! recovery codes shown once with a button to continue).
//!
//! Both pages are one handler: a GET shows the stage's form, a POST (CSRF checked by
//! [`BrowserPage`]) submits its code; the engine decides what follows.

use axum::extract::State;
use axum::response::Response;

use super::page::{BrowserPage, PageError, render};
use crate::http::AppState;

/// Which page of the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `/login/mfa`: enter a code.
    Verify,
    /// `/login/mfa/enroll`: set up TOTP, then enter a code.
    Enroll,
}

/// `GET/POST {issuer}/login/mfa`.
pub async fn verify(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    step(&state, page, Stage::Verify).await
}

/// `GET/POST {issuer}/login/mfa/enroll`.
pub async fn enroll(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    step(&state, page, Stage::Enroll).await
}

async fn step(state: &AppState, page: BrowserPage, which: Stage) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    let request = req.param("request");
    let engine = state.interaction();
    let outcome = if req.is_post() {
        let code = req.form.get("totp").map_or("", String::as_str);
        match which {
            Stage::Verify => engine.second_factor(&mut visit, request, code).await?,
            Stage::Enroll => engine.enroll(&mut visit, request, code).await?,
        }
    } else {
        match which {
            Stage::Verify => engine.second_factor_form(&visit, request).await?,
            Stage::Enroll => engine.enrollment_form(&mut visit, request).await?,
        }
    };
    Ok(render(state, &visit, outcome))
}
