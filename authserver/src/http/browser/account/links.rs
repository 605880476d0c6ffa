//! `{issuer}/account/links`: the upstream accounts (identity providers) linked to the
//! user. `POST` with `provider` and `subject` removes one, unless it is the user's
//! last way to sign in (the page says why). The page's words are in
//! `account_links.html`: a notice or a problem is passed as a key.

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::{LINKS_PATH, account_context, action, done, show_page, sign_in, when};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError};
use crate::interaction::{AccountPage, LinkChange, LinkedAccounts};

pub async fn show(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let links = match state.interaction().account_links(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(l) => l,
    };
    let mut ctx = account_context(&req, &visit, LINKS_PATH, "nav-links");
    if req.query.get("done").map(String::as_str) == Some("link-removed") {
        ctx.insert("link_notice".into(), json!("removed"));
    }
    fill(&mut ctx, &req.tenant, &links);
    Ok(show_page(&state, &visit, "account_links.html", &ctx))
}

pub async fn remove(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let provider = req.form.get("provider").map_or("", String::as_str);
    let subject = req.form.get("subject").map_or("", String::as_str);
    let links = match state
        .interaction()
        .remove_link(&visit, provider, subject)
        .await?
    {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(l) => l,
    };
    if links.notice == Some(LinkChange::Removed) {
        return Ok(done(&req.tenant, LINKS_PATH, "link-removed"));
    }
    let mut ctx = account_context(&req, &visit, LINKS_PATH, "nav-links");
    fill(&mut ctx, &req.tenant, &links);
    let mut resp = show_page(&state, &visit, "account_links.html", &ctx);
    *resp.status_mut() = match links.problem {
        Some(LinkChange::NotFound) => axum::http::StatusCode::NOT_FOUND,
        Some(_) => axum::http::StatusCode::CONFLICT,
        None => axum::http::StatusCode::OK,
    };
    Ok(resp)
}

fn fill(
    ctx: &mut serde_json::Map<String, serde_json::Value>,
    tenant: &crate::domain::tenant::Tenant,
    links: &LinkedAccounts,
) {
    ctx.insert("action".into(), action(tenant, LINKS_PATH));
    ctx.insert("username".into(), json!(links.username));
    if let Some(p) = links.problem {
        let key = match p {
            LinkChange::LastWay => "last_way",
            LinkChange::NotFound => "not_found",
            LinkChange::Removed => "removed",
        };
        ctx.insert("link_problem".into(), json!(key));
    }
    ctx.insert(
        "links".into(),
        json!(
            links
                .links
                .iter()
                .map(|l| json!({
                    "provider_id": l.provider_id,
                    "provider": l.provider,
                    "subject": l.subject,
                    "email": l.email,
                    "linked": when(l.linked_at),
                    "last_sign_in": when(l.last_sign_in_at),
                }))
                .collect::<Vec<_>>()
        ),
    );
}
