//! `{issuer}/account/security`: the second factors. `GET` shows them (and an
//! enrolment in progress); `POST …/totp` starts TOTP enrolment (QR code and key),
//! `POST …/totp/confirm` finishes it with a code (`totp`) and shows the recovery codes
//! once, `POST …/totp/remove` removes it given `current_password` or a code (`totp`),
//! `POST …/recovery-codes` replaces the recovery codes and shows the new ones once.
//! The template keeps a block for passkeys (`{% block passkeys %}`).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::{
    RECOVERY_CODES_PATH, SECURITY_PATH, TOTP_CONFIRM_PATH, TOTP_PATH, TOTP_REMOVE_PATH,
    account_context, action, done, show_page, sign_in,
};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError, PageRequest, WRONG_CODE, locked_message};
use crate::interaction::{
    AccountPage, Proof, Security, SecurityNotice, SecurityOutcome, SecurityProblem, Visit,
    second_factor_count,
};
use crate::ui::i18n::msg;

fn context(req: &PageRequest, visit: &Visit, s: &Security) -> Map<String, Value> {
    let tenant = &req.tenant;
    let mut ctx = account_context(req, visit, SECURITY_PATH, "nav-security");
    ctx.insert("username".into(), json!(s.username));
    ctx.insert("totp_enrolled".into(), json!(s.factors.totp));
    ctx.insert(
        "factor_count".into(),
        json!(second_factor_count(&s.factors)),
    );
    ctx.insert("recovery_codes_left".into(), json!(s.recovery_codes_left));
    ctx.insert("mfa_required".into(), json!(s.mfa_required));
    ctx.insert("totp_action".into(), action(tenant, TOTP_PATH));
    ctx.insert("confirm_action".into(), action(tenant, TOTP_CONFIRM_PATH));
    ctx.insert("remove_action".into(), action(tenant, TOTP_REMOVE_PATH));
    ctx.insert("codes_action".into(), action(tenant, RECOVERY_CODES_PATH));
    if let Some(e) = &s.enrolment {
        ctx.insert("qr_data_uri".into(), json!(e.qr_data_uri));
        ctx.insert("secret".into(), json!(e.secret_base32));
    }
    crate::http::browser::passkey::section(
        &mut ctx,
        &tenant.issuer,
        &s.passkeys,
        s.can_register_passkey,
        s.recent_sign_in,
    );
    ctx
}

pub async fn show(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let security = match state.interaction().account_security(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(s) => s,
    };
    let ctx = context(&req, &visit, &security);
    Ok(show_page(&state, &visit, "account_security.html", &ctx))
}

/// Renders what a change on the security page ended in.
fn render(
    state: &AppState,
    req: &PageRequest,
    visit: &Visit,
    outcome: SecurityOutcome,
) -> Response {
    match outcome {
        SecurityOutcome::Done(SecurityNotice::TotpRemoved) => {
            done(&req.tenant, SECURITY_PATH, "totp-removed")
        }
        SecurityOutcome::RecoveryCodes(codes) => {
            let mut ctx = account_context(req, visit, SECURITY_PATH, "recovery-title");
            ctx.insert("codes".into(), json!(codes));
            ctx.insert("back".into(), action(&req.tenant, SECURITY_PATH));
            show_page(state, visit, "account_recovery_codes.html", &ctx)
        }
        SecurityOutcome::Show(security, problem) => {
            let mut ctx = context(req, visit, &security);
            let Some(problem) = problem else {
                return show_page(state, visit, "account_security.html", &ctx);
            };
            let (status, message, retry) = match problem {
                SecurityProblem::WrongCode => (StatusCode::BAD_REQUEST, WRONG_CODE, None),
                SecurityProblem::WrongProof => {
                    (StatusCode::BAD_REQUEST, "security-wrong-proof", None)
                }
                SecurityProblem::Locked {
                    retry_after_seconds,
                } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "locked",
                    Some(retry_after_seconds),
                ),
                SecurityProblem::LastFactor => (StatusCode::CONFLICT, "security-last-factor", None),
                SecurityProblem::NotEnrolled => {
                    (StatusCode::CONFLICT, "security-not-enrolled", None)
                }
                SecurityProblem::AlreadyEnrolled => {
                    (StatusCode::CONFLICT, "security-already-enrolled", None)
                }
                SecurityProblem::NoEnrolment => {
                    (StatusCode::CONFLICT, "security-no-enrolment", None)
                }
            };
            let message = match retry {
                Some(seconds) => locked_message(seconds),
                None => msg(message),
            };
            ctx.insert("error".into(), message);
            let mut resp = show_page(state, visit, "account_security.html", &ctx);
            *resp.status_mut() = status;
            if let Some(s) = retry {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s.max(1)));
            }
            resp
        }
    }
}

/// Maps an engine answer to a response.
fn answer(
    state: &AppState,
    req: &PageRequest,
    visit: &Visit,
    page: AccountPage<SecurityOutcome>,
) -> Response {
    match page {
        AccountPage::SignIn => sign_in(&req.tenant),
        AccountPage::Show(o) => render(state, req, visit, o),
    }
}

pub async fn begin_totp(
    State(state): State<AppState>,
    p: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let page = state.interaction().begin_totp(&visit).await?;
    Ok(answer(&state, &req, &visit, page))
}

pub async fn confirm_totp(
    State(state): State<AppState>,
    p: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let code = req.form.get("totp").map_or("", String::as_str);
    let page = state.interaction().confirm_totp(&visit, code).await?;
    Ok(answer(&state, &req, &visit, page))
}

pub async fn remove_totp(
    State(state): State<AppState>,
    p: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    // From the body only: a secret in a URL ends up in logs.
    let field = |name: &str| {
        req.form
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let proof = match (field("current_password"), field("totp")) {
        (Some(pw), _) => Proof::Password(SecretString::from(pw.to_owned())),
        (None, Some(code)) => Proof::Code(code.to_owned()),
        (None, None) => Proof::None,
    };
    let page = state.interaction().remove_totp(&visit, proof).await?;
    Ok(answer(&state, &req, &visit, page))
}

pub async fn regenerate_codes(
    State(state): State<AppState>,
    p: BrowserPage,
) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let page = state
        .interaction()
        .regenerate_recovery_codes(&visit)
        .await?;
    Ok(answer(&state, &req, &visit, page))
}
