//! The second step of a sign-in: `GET/POST {issuer}/login/mfa` (a TOTP code, or one of
//! the recovery codes, in the field `totp`) and, when MFA is required but not set up,
//! `GET/POST {issuer}/login/mfa/enroll` (QR code and key, a code to confirm, then the
//! recovery codes shown once with a button to continue).

use axum::extract::State;
use axum::response::Response;

use super::page::{BrowserPage, PageError, render};
use crate::http::AppState;

fn code(page: &BrowserPage) -> &str {
    page.req.form.get("totp").map_or("", String::as_str)
}

pub async fn show_verify(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let outcome = state
        .interaction()
        .second_factor_form(&page.visit, page.req.param("request"))?;
    Ok(render(&state, &page.visit, outcome))
}

pub async fn submit_verify(
    State(state): State<AppState>,
    mut page: BrowserPage,
) -> Result<Response, PageError> {
    let code = code(&page).to_owned();
    let request = page.req.param("request").map(str::to_owned);
    let outcome = state
        .interaction()
        .second_factor(&mut page.visit, request.as_deref(), &code)
        .await?;
    Ok(render(&state, &page.visit, outcome))
}

pub async fn show_enroll(
    State(state): State<AppState>,
    mut page: BrowserPage,
) -> Result<Response, PageError> {
    let request = page.req.param("request").map(str::to_owned);
    let outcome = state
        .interaction()
        .enrollment_form(&mut page.visit, request.as_deref())
        .await?;
    Ok(render(&state, &page.visit, outcome))
}

pub async fn submit_enroll(
    State(state): State<AppState>,
    mut page: BrowserPage,
) -> Result<Response, PageError> {
    let code = code(&page).to_owned();
    let request = page.req.param("request").map(str::to_owned);
    let outcome = state
        .interaction()
        .enroll(&mut page.visit, request.as_deref(), &code)
        .await?;
    Ok(render(&state, &page.visit, outcome))
}
