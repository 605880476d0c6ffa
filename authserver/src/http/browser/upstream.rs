//! Sign-in through an upstream identity provider: `POST {issuer}/login/upstream` (the
//! sign-in page's `button[name=provider]`, CSRF-checked) sends the browser to the
//! provider; the provider sends it back to `GET {issuer}/login/upstream/callback`
//! (the redirect URI to register there); `POST {issuer}/login/upstream/link` takes the
//! local account's password when an upstream account is to be linked to it, and `POST
//! {issuer}/login/upstream/link/passkey` one of its passkeys instead (button
//! `data-action=passkey-link`, options at `…/link/passkey/options`). The rules
//! are the interaction engine's (`interaction::upstream`); the words of the pages are
//! in `upstream_problem.html` and `upstream_link.html` (problems passed as keys).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use secrecy::SecretString;
use serde_json::json;

use super::page::{BrowserPage, PageError, render};
use super::{LOGIN_PATH, base_context, html, url_with_request};
use crate::domain::tenant::Tenant;
use crate::federation::{Callback, MAX_PARAM_LEN};
use crate::http::AppState;
use crate::interaction::{LoginProblem, UpstreamPage, UpstreamProblem};
use crate::session::CeremonyPurpose;

pub const UPSTREAM_PATH: &str = "/login/upstream";
pub const UPSTREAM_LINK_PATH: &str = "/login/upstream/link";
pub const UPSTREAM_LINK_PASSKEY_PATH: &str = "/login/upstream/link/passkey";
pub use crate::interaction::CALLBACK_PATH as UPSTREAM_CALLBACK_PATH;

/// `POST /login/upstream`: "Sign in with …".
pub async fn start(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    if let Some(resp) = super::rate_limited(&state, &req, super::Limited::Login, None).await {
        return Ok(resp);
    }
    let provider = req.param("provider").unwrap_or_default();
    let outcome = state
        .interaction()
        .upstream_start(&mut visit, req.request(), provider)
        .await?;
    Ok(render(&state, &visit, outcome))
}

/// `GET /login/upstream/callback`: the upstream's answer. Over-long parameters are
/// treated as missing.
pub async fn callback(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    if let Some(resp) = super::rate_limited(&state, &req, super::Limited::Login, None).await {
        return Ok(resp);
    }
    let param = |name: &str| {
        req.query
            .get(name)
            .filter(|v| !v.is_empty() && v.len() <= MAX_PARAM_LEN)
            .cloned()
    };
    let callback = Callback {
        state: param("state"),
        code: param("code"),
        error: param("error"),
        iss: param("iss"),
    };
    let outcome = state
        .interaction()
        .upstream_callback(&mut visit, callback)
        .await?;
    Ok(render(&state, &visit, outcome))
}

/// `POST /login/upstream/link`: the local account's password.
pub async fn link(State(state): State<AppState>, page: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    if let Some(resp) = super::rate_limited(&state, &req, super::Limited::Login, None).await {
        return Ok(resp);
    }
    let password = SecretString::from(req.form.get("password").cloned().unwrap_or_default());
    let outcome = state
        .interaction()
        .upstream_link(&mut visit, &password)
        .await?;
    Ok(render(&state, &visit, outcome))
}

/// `POST /login/upstream/link/passkey`: a passkey of the local account.
pub async fn link_passkey(
    State(state): State<AppState>,
    page: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, mut visit } = page;
    if let Some(resp) = super::rate_limited(&state, &req, super::Limited::Login, None).await {
        return Ok(resp);
    }
    let credential = req
        .form
        .get(super::passkey::CREDENTIAL_FIELD)
        .map_or("", String::as_str);
    let outcome = state
        .interaction()
        .upstream_link_passkey(&mut visit, credential)
        .await?;
    Ok(render(&state, &visit, outcome))
}

/// Renders a page of an upstream sign-in.
pub(super) fn page(
    state: &AppState,
    tenant: &Tenant,
    lang: &crate::ui::i18n::Lang,
    csrf: &str,
    p: UpstreamPage,
) -> Response {
    let issuer = tenant.issuer.as_str();
    let mut ctx = base_context(tenant, lang);
    match p {
        UpstreamPage::Refused(r) => {
            ctx.insert(
                "title".into(),
                crate::ui::i18n::msg("upstream-failed-title"),
            );
            ctx.insert("problem".into(), json!(r.problem.as_str()));
            if let Some(provider) = &r.provider {
                ctx.insert("provider".into(), json!(provider));
            }
            ctx.insert(
                "login_url".into(),
                json!(url_with_request(issuer, LOGIN_PATH, r.request.as_deref())),
            );
            let status = match r.problem {
                UpstreamProblem::UpstreamError => StatusCode::BAD_GATEWAY,
                UpstreamProblem::NotProvisioned
                | UpstreamProblem::UnverifiedEmail
                | UpstreamProblem::CannotLink
                | UpstreamProblem::EmailUnverified
                | UpstreamProblem::NotAllowed
                | UpstreamProblem::Cancelled => StatusCode::FORBIDDEN,
                UpstreamProblem::InvalidResponse
                | UpstreamProblem::Stale
                | UpstreamProblem::UnknownProvider => StatusCode::BAD_REQUEST,
            };
            html::page(&state.ui, status, "upstream_problem.html", &ctx)
        }
        UpstreamPage::Link(form) => {
            ctx.insert("title".into(), crate::ui::i18n::msg("upstream-link-title"));
            ctx.insert("csrf".into(), json!(csrf));
            ctx.insert(
                "action".into(),
                json!(format!("{issuer}{UPSTREAM_LINK_PATH}")),
            );
            ctx.insert("provider".into(), json!(form.provider));
            ctx.insert("username".into(), json!(form.username));
            ctx.insert("password".into(), json!(form.password));
            if form.passkey {
                ctx.insert(
                    "passkey".into(),
                    super::passkey::button(
                        issuer,
                        UPSTREAM_LINK_PASSKEY_PATH,
                        form.request.as_deref(),
                        CeremonyPurpose::Link,
                    ),
                );
            }
            ctx.insert(
                "login_url".into(),
                json!(url_with_request(
                    issuer,
                    LOGIN_PATH,
                    form.request.as_deref()
                )),
            );
            let mut status = StatusCode::OK;
            match form.problem {
                Some(LoginProblem::Locked {
                    retry_after_seconds,
                }) => {
                    ctx.insert("link_problem".into(), json!("locked"));
                    ctx.insert(
                        "retry_minutes".into(),
                        json!(retry_after_seconds.div_ceil(60).max(1)),
                    );
                    status = StatusCode::TOO_MANY_REQUESTS;
                }
                Some(LoginProblem::Passkey) => {
                    ctx.insert("link_problem".into(), json!("passkey"));
                }
                Some(_) => {
                    ctx.insert("link_problem".into(), json!("failed"));
                }
                None => {}
            }
            html::page(&state.ui, status, "upstream_link.html", &ctx)
        }
    }
}
