//! `GET/POST {issuer}/login[?request=<handle>]`: username and password. Without
//! `request` the sign-in ends on a "You are signed in" page; with one it continues the
//! authorization. The rules are the interaction engine's ([`crate::interaction`]).

use axum::extract::State;
use axum::response::Response;
use secrecy::SecretString;

use super::page::{BrowserPage, PageError, render};
use crate::http::AppState;
use crate::session::ReturnTo;

pub async fn show(State(state): State<AppState>, page: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    if let Some(resp) = super::rate_limited(&state, &req, super::Limited::Login, None).await {
        return Ok(resp);
    }
    let outcome = state
        .interaction()
        .login_form(
            &mut visit,
            req.param("request"),
            req.param("return_to").and_then(ReturnTo::parse),
        )
        .await?;
    Ok(render(&state, &visit, outcome))
}

pub async fn submit(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    if let Some(resp) = super::rate_limited(&state, &req, super::Limited::Login, None).await {
        return Ok(resp);
    }
    let username = req.form.get("username").map_or("", String::as_str);
    let password = SecretString::from(req.form.get("password").cloned().unwrap_or_default());
    let outcome = state
        .interaction()
        .password(&mut visit, req.request(), username, &password)
        .await?;
    Ok(render(&state, &visit, outcome))
}
