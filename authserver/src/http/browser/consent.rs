//! `GET/POST {issuer}/consent?request=<handle>`: the client and the requested scopes in
//! plain words; `decision=allow` stores the consent (added to what the user granted
//! before) and issues the code, `decision=deny` sends `access_denied` to the client.

use axum::extract::State;
use axum::response::Response;

use super::page::{BrowserPage, PageError, render};
use crate::http::AppState;
use crate::interaction::Decision;

pub async fn show(State(state): State<AppState>, page: BrowserPage) -> Result<Response, PageError> {
    let outcome = state
        .interaction()
        .consent_page(&page.visit, page.req.request())
        .await?;
    Ok(render(&state, &page.visit, outcome))
}

/// The CSRF check comes first (in [`BrowserPage`]): a forged POST learns nothing about
/// the request.
pub async fn submit(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let decision = match page.req.form.get("decision").map(String::as_str) {
        Some("allow") => Some(Decision::Allow),
        Some("deny") => Some(Decision::Deny),
        _ => None,
    };
    let outcome = state
        .interaction()
        .consent(&page.visit, page.req.request(), decision)
        .await?;
    Ok(render(&state, &page.visit, outcome))
}
