//! `GET/POST {issuer}/select-account[?request=<handle>]`: the browser's signed-in
//! accounts, plus "Use another account" (→ sign-in). Choosing one makes it the active
//! account and, with a request, continues the authorization with it.

use axum::extract::State;
use axum::response::Response;

use super::page::{BrowserPage, PageError, render};
use crate::http::AppState;

pub async fn show(State(state): State<AppState>, page: BrowserPage) -> Result<Response, PageError> {
    let outcome = state
        .interaction()
        .chooser(&page.visit, page.req.param("request"))
        .await?;
    Ok(render(&state, &page.visit, outcome))
}

pub async fn submit(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    let choice = req
        .form
        .get("account")
        .and_then(|c| c.parse::<usize>().ok());
    let outcome = state
        .interaction()
        .choose(&mut visit, req.request(), choice)
        .await?;
    Ok(render(&state, &visit, outcome))
}
