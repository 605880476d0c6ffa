//! `GET/POST {issuer}/logout`: OpenID Connect RP-Initiated Logout 1.0. The rules (which
//! sessions a request may end, which redirects are allowed) are the interaction
//! engine's ([`crate::interaction::Engine::logout`]); here the request is read and the
//! outcome rendered.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::page::{PageError, PageRequest, error_page};
use super::{LOGOUT_PATH, base_context, page, see_other, set_cookie};
use crate::http::AppState;
use crate::interaction::{LogoutOutcome, LogoutRefusal, LogoutRequest, Posted};
use crate::session::{cookie, csrf_matches};
use crate::ui::i18n::msg;

/// Why a logout request is refused (shown on the error page), by message id.
const INVALID_HINT: &str = "logout-invalid-hint";
const CLIENT_MISMATCH: &str = "logout-client-mismatch";
const BAD_REDIRECT: &str = "logout-bad-redirect";

/// Not a [`super::page::BrowserPage`]: a POST with an `id_token_hint` comes from the
/// relying party, without our CSRF token, and is valid; only the confirmation form
/// needs the token (the engine decides which this is).
pub async fn handle(
    State(state): State<AppState>,
    req: PageRequest,
) -> Result<Response, PageError> {
    let browser = req.browser(&state).await?;
    let posted = match (req.is_post(), &browser) {
        (false, _) => Posted::No,
        (true, Some(b)) if csrf_matches(b, req.form.get("_csrf").map(String::as_str)) => {
            Posted::Confirmed
        }
        (true, _) => Posted::Forged,
    };
    let mut visit = req.visit(&state, browser);
    let request = LogoutRequest {
        id_token_hint: req.param("id_token_hint"),
        client_id: req.param("client_id"),
        post_logout_redirect_uri: req.param("post_logout_redirect_uri"),
        state: req.param("state"),
        posted,
    };
    let tenant = &req.tenant;
    let lang = visit.lang.clone();
    let refused =
        |message| error_page(&state, tenant, &lang, StatusCode::BAD_REQUEST, msg(message));
    Ok(
        match state.interaction().logout(&mut visit, request).await? {
            LogoutOutcome::Refused(LogoutRefusal::InvalidHint) => refused(INVALID_HINT),
            LogoutOutcome::Refused(LogoutRefusal::ClientMismatch) => refused(CLIENT_MISMATCH),
            LogoutOutcome::Refused(LogoutRefusal::UnregisteredRedirect) => refused(BAD_REDIRECT),
            LogoutOutcome::Forged => return Err(PageError::Csrf),
            LogoutOutcome::Confirm {
                username,
                client_id,
            } => {
                // The confirmation page: a POST back to `/logout` with the same parameters.
                let mut hidden: Vec<(String, String)> = Vec::new();
                if let Some(c) = client_id {
                    hidden.push(("client_id".into(), c));
                }
                for name in ["post_logout_redirect_uri", "state"] {
                    if let Some(v) = req.param(name) {
                        hidden.push((name.to_owned(), v.to_owned()));
                    }
                }
                let mut ctx = base_context(tenant, &visit.lang);
                ctx.insert("title".into(), msg("logout-title"));
                ctx.insert(
                    "action".into(),
                    json!(format!("{}{LOGOUT_PATH}", req.issuer())),
                );
                let csrf = visit.browser.as_ref().map(|b| b.data.csrf.clone());
                ctx.insert("csrf".into(), json!(csrf));
                ctx.insert("username".into(), json!(username));
                ctx.insert("hidden".into(), json!(hidden));
                page(
                    &state,
                    visit.browser.as_ref(),
                    StatusCode::OK,
                    "logout.html",
                    &ctx,
                )
            }
            LogoutOutcome::SignedOut {
                redirect,
                clear_cookie,
            } => {
                let mut resp = if let Some(uri) = redirect {
                    see_other(&uri)
                } else {
                    let mut ctx = base_context(tenant, &visit.lang);
                    ctx.insert("title".into(), msg("signed-out-title"));
                    page(&state, None, StatusCode::OK, "signed_out.html", &ctx)
                };
                if clear_cookie {
                    set_cookie(
                        &mut resp,
                        &cookie::clear(&tenant.id, tenant.issuer.starts_with("https://")),
                    );
                }
                resp
            }
        },
    )
}
