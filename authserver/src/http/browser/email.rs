//! The e-mail pages under each issuer: `GET {issuer}/email/verify?token=…` (the link in a
//! verification mail), `POST /email/verify/resend`, `GET/POST /password/forgot`,
//! `GET/POST /password/reset?token=…` and `GET/POST /register`. Each handler parses the
//! request, calls one [`crate::email::EmailFlows`] method and renders its
//! [`EmailPage`]; the rules (tokens, limits, policy) are the service's. POSTs are
//! CSRF-checked by [`BrowserPage`] before anything changes, and counted per source IP
//! (`rate_limits.email_per_ip`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::page::{BrowserPage, PageError};
use super::{LOGIN_PATH, Limited, base_context, page, rate_limited};
use crate::email::{
    EmailPage, FORGOT_PATH, FormProblem, Notice, REGISTER_PATH, RESEND_PATH, RESET_PATH,
    Registration, VERIFY_PATH,
};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::interaction::Visit;
use crate::ui::i18n::{msg, msg_with};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(VERIFY_PATH, get(verify))
        .route(RESEND_PATH, axum::routing::post(resend))
        .route(FORGOT_PATH, get(forgot_form).post(forgot))
        .route(RESET_PATH, get(reset_form).post(reset))
        .route(REGISTER_PATH, get(register_form).post(register))
}

fn secret(page: &BrowserPage, name: &str) -> SecretString {
    SecretString::from(page.req.form.get(name).cloned().unwrap_or_default())
}

fn field<'a>(page: &'a BrowserPage, name: &str) -> &'a str {
    page.req.form.get(name).map_or("", String::as_str)
}

fn token(page: &BrowserPage) -> String {
    page.req.query.get("token").cloned().unwrap_or_default()
}

async fn verify(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let outcome = state.email.verify(&p.visit, &token(&p)).await?;
    Ok(render(&state, &p.visit, outcome))
}

async fn resend(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    if let Some(resp) = rate_limited(&state, &p.req, Limited::Email, None).await {
        return Ok(resp);
    }
    let outcome = state.email.resend(&p.visit, field(&p, "username")).await?;
    Ok(render(&state, &p.visit, outcome))
}

async fn forgot_form(
    State(state): State<AppState>,
    mut p: BrowserPage,
) -> Result<Response, PageError> {
    let outcome = state.email.forgot_form(&mut p.visit).await?;
    Ok(render(&state, &p.visit, outcome))
}

async fn forgot(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    if let Some(resp) = rate_limited(&state, &p.req, Limited::Email, None).await {
        return Ok(resp);
    }
    let outcome = state.email.forgot(&p.visit, field(&p, "email")).await?;
    Ok(render(&state, &p.visit, outcome))
}

async fn reset_form(
    State(state): State<AppState>,
    mut p: BrowserPage,
) -> Result<Response, PageError> {
    let token = token(&p);
    let outcome = state.email.reset_form(&mut p.visit, &token).await?;
    Ok(render(&state, &p.visit, outcome))
}

async fn reset(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let outcome = state
        .email
        .reset(
            &p.visit,
            &token(&p),
            &secret(&p, "new_password"),
            &secret(&p, "confirm_password"),
        )
        .await?;
    Ok(render(&state, &p.visit, outcome))
}

async fn register_form(
    State(state): State<AppState>,
    mut p: BrowserPage,
) -> Result<Response, PageError> {
    let outcome = state.email.register_form(&mut p.visit).await?;
    Ok(render(&state, &p.visit, outcome))
}

async fn register(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    if let Some(resp) = rate_limited(&state, &p.req, Limited::Email, None).await {
        return Ok(resp);
    }
    let form = Registration {
        username: field(&p, "username").to_owned(),
        email: field(&p, "email").to_owned(),
        password: secret(&p, "password"),
        confirm_password: secret(&p, "confirm_password"),
    };
    let outcome = state.email.register(&p.visit, &form).await?;
    Ok(render(&state, &p.visit, outcome))
}

/// Status, title and text (message ids) of each notice.
fn notice(n: Notice) -> (StatusCode, &'static str, Value) {
    match n {
        Notice::CheckInbox => (
            StatusCode::OK,
            "notice-check-inbox-title",
            msg_with(
                "notice-reset-sent",
                json!({ "minutes": crate::email::RESET_SECONDS / 60 }),
            ),
        ),
        Notice::LinkResent => (
            StatusCode::OK,
            "notice-check-inbox-title",
            msg("notice-link-resent"),
        ),
        Notice::Verified => (
            StatusCode::OK,
            "notice-verified-title",
            msg("notice-verified"),
        ),
        Notice::BadLink => (
            StatusCode::BAD_REQUEST,
            "notice-bad-link-title",
            msg("notice-bad-link"),
        ),
        Notice::PasswordChanged => (
            StatusCode::OK,
            "notice-password-changed-title",
            msg("notice-password-changed"),
        ),
        Notice::Registered { verify: true } => (
            StatusCode::OK,
            "notice-registered-verify-title",
            msg("notice-registered-verify"),
        ),
        Notice::Registered { verify: false } => (
            StatusCode::OK,
            "notice-registered-title",
            msg("notice-registered"),
        ),
    }
}

/// A form problem of the flows in the page's language.
fn problem_message(p: FormProblem) -> Value {
    match p.message() {
        (id, Value::Null) => msg(id),
        (id, args) => msg_with(id, args),
    }
}

fn render(state: &AppState, visit: &Visit, outcome: EmailPage) -> Response {
    use axum::response::IntoResponse as _;
    let tenant = &visit.tenant;
    let issuer = tenant.issuer.as_str();
    let browser = visit.browser.as_ref();
    let csrf = browser.map(|b| b.data.csrf.clone()).unwrap_or_default();
    let mut ctx = base_context(tenant, &visit.lang);
    ctx.insert("csrf".into(), json!(csrf));
    ctx.insert("login_url".into(), json!(format!("{issuer}{LOGIN_PATH}")));
    let with_problem = |ctx: &mut serde_json::Map<_, _>, problem: Option<FormProblem>| match problem
    {
        Some(p) => {
            ctx.insert("error".into(), problem_message(p));
            StatusCode::BAD_REQUEST
        }
        None => StatusCode::OK,
    };
    match outcome {
        EmailPage::NotFound => ApiError::NotFound.into_response(),
        EmailPage::Forgot => {
            ctx.insert("title".into(), msg("forgot-title"));
            ctx.insert("action".into(), json!(format!("{issuer}{FORGOT_PATH}")));
            page(state, browser, StatusCode::OK, "password_forgot.html", &ctx)
        }
        EmailPage::Reset { token, problem } => {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", &token)
                .finish();
            ctx.insert("title".into(), msg("reset-title"));
            ctx.insert("action".into(), json!(format!("{issuer}{RESET_PATH}?{q}")));
            let status = with_problem(&mut ctx, problem);
            page(state, browser, status, "password_reset.html", &ctx)
        }
        EmailPage::Register {
            username,
            email,
            problem,
        } => {
            ctx.insert("title".into(), msg("register-title"));
            ctx.insert("action".into(), json!(format!("{issuer}{REGISTER_PATH}")));
            ctx.insert("username".into(), json!(username));
            ctx.insert("email".into(), json!(email));
            let status = with_problem(&mut ctx, problem);
            page(state, browser, status, "register.html", &ctx)
        }
        EmailPage::Notice(n) => {
            let (status, title, message) = notice(n);
            ctx.insert("title".into(), msg(title));
            ctx.insert("message".into(), message);
            page(state, browser, status, "email_notice.html", &ctx)
        }
    }
}
