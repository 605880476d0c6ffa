//! `GET/POST {issuer}/account/profile`: display name and e-mail address. A new address
//! is saved unverified, and the page says so.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{PROFILE_PATH, account_context, action, done, show_page, sign_in};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError};
use crate::interaction::{AccountPage, Profile, ProfileOutcome};
use crate::users::EmailChange;

fn fill(ctx: &mut Map<String, Value>, p: &Profile) {
    ctx.insert("username".into(), json!(p.username));
    ctx.insert("name".into(), json!(p.name));
    ctx.insert("email".into(), json!(p.email));
    ctx.insert("email_verified".into(), json!(p.email_verified));
}

pub async fn show(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let profile = match state.interaction().account_profile(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(p) => p,
    };
    let mut ctx = account_context(&req, &visit, PROFILE_PATH, "nav-profile");
    ctx.insert("action".into(), action(&req.tenant, PROFILE_PATH));
    fill(&mut ctx, &profile);
    Ok(show_page(&state, &visit, "account_profile.html", &ctx))
}

pub async fn submit(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let name = req.form.get("name").map_or("", String::as_str);
    let email = req.form.get("email").map_or("", String::as_str);
    let outcome = match state
        .interaction()
        .update_profile(&visit, name, email)
        .await?
    {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(o) => o,
    };
    match outcome {
        ProfileOutcome::Saved(change) => {
            let what = match change.email {
                EmailChange::Changed(_) => "email",
                EmailChange::Unchanged | EmailChange::Removed => "profile",
            };
            Ok(done(&req.tenant, PROFILE_PATH, what))
        }
        ProfileOutcome::Invalid { profile, errors } => {
            let mut ctx = account_context(&req, &visit, PROFILE_PATH, "nav-profile");
            ctx.insert("action".into(), action(&req.tenant, PROFILE_PATH));
            fill(&mut ctx, &profile);
            let label = |field: &str| match field {
                "name" => "Name",
                "email" => "E-mail address",
                _ => "Profile",
            };
            let text: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", label(e.field), e.message))
                .collect();
            ctx.insert("error".into(), json!(text.join(". ")));
            let mut resp = show_page(&state, &visit, "account_profile.html", &ctx);
            *resp.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(resp)
        }
    }
}
