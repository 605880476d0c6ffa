//! `GET/POST {issuer}/account/profile`: display name, e-mail address and preferred
//! language (`locale`: empty for the browser's, or one of the languages we have). A new
//! address is saved unverified, and the page says so; a new language applies from the
//! next page on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{PROFILE_PATH, account_context, action, done, show_page, sign_in};
use crate::domain::client::{FieldError, Invalid};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError};
use crate::interaction::{AccountPage, Profile, ProfileOutcome};
use crate::ui::i18n::{Catalogues, msg, msg_with};
use crate::users::{EmailChange, MAX_NAME_CHARS};

fn fill(ctx: &mut Map<String, Value>, p: &Profile, catalogues: &Catalogues) {
    ctx.insert("username".into(), json!(p.username));
    ctx.insert("name".into(), json!(p.name));
    ctx.insert("email".into(), json!(p.email));
    ctx.insert("email_verified".into(), json!(p.email_verified));
    ctx.insert("locale".into(), json!(p.locale));
    ctx.insert("languages".into(), languages(catalogues));
}

/// Every language we have, each named in itself (`language-name`).
fn languages(catalogues: &Catalogues) -> Value {
    json!(
        catalogues
            .languages()
            .iter()
            .map(|tag| json!({
                "tag": tag,
                "dir": catalogues.by_tag(tag).dir(),
                "name": catalogues.text(tag, "language-name", None),
            }))
            .collect::<Vec<_>>()
    )
}

/// A refused field in the reader's language (the domain's text is the API's English).
fn problem(e: &FieldError) -> Value {
    match (e.field, e.kind) {
        (_, Invalid::Stale) => msg("profile-stale"),
        ("name", _) => msg_with("profile-name-invalid", json!({ "max": MAX_NAME_CHARS })),
        ("email", _) => msg("profile-email-invalid"),
        ("locale", _) => msg("profile-language-invalid"),
        _ => msg("problem-entries"),
    }
}

pub async fn show(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let profile = match state.interaction().account_profile(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(p) => p,
    };
    let mut ctx = account_context(&req, &visit, PROFILE_PATH, "nav-profile");
    ctx.insert("action".into(), action(&req.tenant, PROFILE_PATH));
    fill(&mut ctx, &profile, state.ui.catalogues());
    Ok(show_page(&state, &visit, "account_profile.html", &ctx))
}

pub async fn submit(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = p;
    let name = req.form.get("name").map_or("", String::as_str);
    let email = req.form.get("email").map_or("", String::as_str);
    let locale = req.form.get("locale").map(String::as_str);
    let outcome = match state
        .interaction()
        .update_profile(&mut visit, name, email, locale)
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
            fill(&mut ctx, &profile, state.ui.catalogues());
            // The first problem in the page's alert, the others below it.
            let mut problems = errors.iter().map(problem);
            ctx.insert(
                "error".into(),
                problems.next().unwrap_or_else(|| msg("problem-entries")),
            );
            ctx.insert("more_errors".into(), json!(problems.collect::<Vec<_>>()));
            let mut resp = show_page(&state, &visit, "account_profile.html", &ctx);
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            Ok(resp)
        }
    }
}
