//! `GET/POST {issuer}/account/consents`: the signed-in user's own consents. The page
//! lists the clients the browser's active account has consented to, with the scopes in
//! the words the consent page uses, each with a form to revoke it; a revocation also
//! revokes every live grant of the user for that client.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{ACCOUNT_CONSENTS_PATH, account_context, action, done, show_page, sign_in};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError, describe_scope, error_page};
use crate::interaction::{AccountConsents, Revocation};
use crate::ui::i18n::msg;

pub async fn show(
    State(state): State<AppState>,
    page_req: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = page_req;
    let (username, consents) = match state.interaction().account_consents(&visit).await? {
        AccountConsents::SignIn => return Ok(sign_in(&req.tenant)),
        AccountConsents::Show { username, consents } => (username, consents),
    };
    let mut ctx = account_context(&req, &visit, ACCOUNT_CONSENTS_PATH, "nav-consents");
    ctx.insert("action".into(), action(&req.tenant, ACCOUNT_CONSENTS_PATH));
    ctx.insert("username".into(), json!(username));
    ctx.insert(
        "consents".into(),
        json!(
            consents
                .iter()
                .map(|c| json!({
                    "client_id": c.client_id,
                    "scopes": c.scopes.iter().map(|s| describe_scope(s)).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        ),
    );
    Ok(show_page(&state, &visit, "account_consents.html", &ctx))
}

/// The CSRF check comes first (in [`BrowserPage`]): a forged POST changes nothing and
/// learns nothing.
pub async fn submit(
    State(state): State<AppState>,
    page_req: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = page_req;
    let tenant = &req.tenant;
    let client_id = req.form.get("client_id").map(String::as_str);
    Ok(
        match state
            .interaction()
            .revoke_own_consent(&visit, client_id)
            .await?
        {
            Revocation::SignIn => sign_in(tenant),
            Revocation::Done => done(tenant, ACCOUNT_CONSENTS_PATH, "consent"),
            Revocation::NoClient => error_page(
                &state,
                tenant,
                &visit.lang,
                StatusCode::BAD_REQUEST,
                msg("consents-no-client"),
            ),
        },
    )
}
