//! What every browser page shares: the request preamble ([`PageRequest`], and
//! [`BrowserPage`] with the browser session and the CSRF check), the page error type
//! ([`PageError`], so handlers use `?`), and the one rendering of an interaction
//! [`Outcome`].
//!
//! A `PageError` becomes a response that only carries what went wrong ([`ErrorPage`]);
//! [`render_error_pages`], a layer on the browser routes, turns it into the tenant's
//! error page and logs server failures there, once, inside the request's span (so with
//! its trace id).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::passkey;
use super::{
    LOGIN_PATH, MFA_ENROLL_PATH, MFA_PATH, SELECT_ACCOUNT_PATH, base_context, client_response,
    html, see_other, url_with_request, with_cookie,
};
use crate::authorize::ClientResponse;
use crate::domain::tenant::Tenant;
use crate::http::AppState;
use crate::http::error::ServerFailure;
use crate::http::tenant_routing::{CurrentTenant, client_ip};
use crate::interaction::{CodeProblem, LoginProblem, Outcome, Page, Problem, Visit};
use crate::session::{self, Browser, CeremonyPurpose, Origin, csrf_matches};
use crate::ui::i18n::{Lang, Wishes, msg, msg_with};
use serde_json::Value;

/// Form bodies larger than this are not ours.
const MAX_FORM: usize = 16 * 1024;

// The messages of the sign-in pages, by their id in the catalogues (`messages.ftl`).

/// A handle that is unknown, used, expired or from another browser.
pub const STALE_REQUEST: &str = "stale-request";
/// The one message for every failed sign-in (no user enumeration).
pub const LOGIN_FAILED: &str = "login-failed";
/// A sign-in refused until the account's address is confirmed.
pub const EMAIL_UNVERIFIED: &str = "email-unverified";
/// A new device's code could not be mailed: the address had its share this hour.
pub const DEVICE_CODE_LIMIT: &str = "device-code-limit";
/// A wrong or reused code.
pub const WRONG_CODE: &str = "wrong-code";
pub const PASSKEY_REFUSED: &str = "passkey-refused";
pub const PASSKEY_REQUIRED: &str = "passkey-required";

/// A page request: tenant, where it came from, query and form.
pub(in crate::http) struct PageRequest {
    pub tenant: Arc<Tenant>,
    pub method: Method,
    pub headers: axum::http::HeaderMap,
    pub query: HashMap<String, String>,
    /// The urlencoded body of a POST (empty otherwise).
    pub form: HashMap<String, String>,
    /// The query and body as sent, for the protocol parser (which rejects repeats).
    pub raw_query: String,
    pub raw_body: Vec<u8>,
    pub origin: Origin,
}

impl FromRequest<AppState> for PageRequest {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let (parts, body) = req.into_parts();
        let Some(CurrentTenant(tenant)) = parts.extensions.get::<CurrentTenant>().cloned() else {
            return Err(PageError::NoTenant);
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let ip = client_ip(&parts.headers, peer, &state.trusted_proxies);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let mut origin = Origin::new(ip, user_agent);
        origin.device = crate::email::device::find(
            parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            &tenant.id,
            tenant.issuer.starts_with("https://"),
        );
        let raw_query = parts.uri.query().unwrap_or("").to_owned();
        let query = parse_pairs(raw_query.as_bytes());
        let raw_body = if parts.method == Method::POST {
            axum::body::to_bytes(body, MAX_FORM)
                .await
                .map_err(|_| PageError::TooLarge)?
                .to_vec()
        } else {
            Vec::new()
        };
        Ok(Self {
            tenant,
            method: parts.method,
            headers: parts.headers,
            query,
            form: parse_pairs(&raw_body),
            raw_query,
            raw_body,
            origin,
        })
    }
}

impl PageRequest {
    /// A parameter from the form (POST) or the query.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .get(name)
            .or_else(|| self.query.get(name))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The request handle a page is for (`?request=`, on the URL of every step).
    pub fn request(&self) -> Option<&str> {
        self.query
            .get("request")
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn is_post(&self) -> bool {
        self.method == Method::POST
    }

    pub fn issuer(&self) -> &str {
        &self.tenant.issuer
    }

    /// The language of this request's pages, with what `browser` remembers (see
    /// [`choose_lang`]).
    pub fn lang(&self, state: &AppState, browser: Option<&Browser>) -> Lang {
        choose_lang(
            state,
            &self.tenant,
            &self.headers,
            self.param("ui_locales"),
            browser,
        )
    }

    /// The visit this request makes with `browser`, in its language.
    pub fn visit(&self, state: &AppState, browser: Option<Browser>) -> Visit {
        Visit {
            tenant: self.tenant.clone(),
            origin: self.origin.clone(),
            lang: self.lang(state, browser.as_ref()),
            browser,
        }
    }

    /// The browser session the request's cookie names, if it is still valid.
    pub async fn browser(&self, state: &AppState) -> Result<Option<Browser>, PageError> {
        let https = self.tenant.issuer.starts_with("https://");
        let cookies = self.headers.get_all(header::COOKIE);
        let cookies = cookies.iter().filter_map(|v| v.to_str().ok());
        let handle = session::cookie::find(cookies, &self.tenant.id, https);
        Ok(state
            .sessions
            .load(&self.tenant, handle.as_deref(), &self.origin)
            .await?)
    }
}

/// The language of a page: the request's `ui_locales`, else the one of the
/// authorization request the browser is signing in for, else the preference of the user
/// signing in or signed in last, else `Accept-Language`, else the tenant's default.
pub(in crate::http) fn choose_lang(
    state: &AppState,
    tenant: &Tenant,
    headers: &axum::http::HeaderMap,
    ui_locales: Option<&str>,
    browser: Option<&Browser>,
) -> Lang {
    let data = browser.map(|b| &b.data);
    let policy = crate::domain::policy::TenantPolicy::of(tenant);
    state.ui.catalogues().choose(&Wishes {
        ui_locales: ui_locales.or_else(|| data.and_then(|d| d.ui_locales.as_deref())),
        user: data.and_then(|d| d.user_locale.as_deref()),
        accept_language: headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
        tenant_default: policy.default_locale.as_deref(),
    })
}

/// First value wins; the forms are ours, so repeated names are not expected.
pub(super) fn parse_pairs(bytes: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

/// A page request with its browser session. A POST must come with the session's CSRF
/// token as `_csrf` (compared in constant time): without a session, or with a wrong
/// token, the page is refused before anything is read or changed.
pub(in crate::http) struct BrowserPage {
    pub req: PageRequest,
    pub visit: Visit,
}

impl FromRequest<AppState> for BrowserPage {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let req = PageRequest::from_request(req, state).await?;
        let browser = req.browser(state).await?;
        if req.is_post()
            && !browser
                .as_ref()
                .is_some_and(|b| csrf_matches(b, req.form.get("_csrf").map(String::as_str)))
        {
            return Err(PageError::Csrf);
        }
        let visit = req.visit(state, browser);
        Ok(Self { req, visit })
    }
}

/// Why a page could not be served.
#[derive(Debug, thiserror::Error)]
pub(in crate::http) enum PageError {
    /// No tenant at this address.
    #[error("no tenant")]
    NoTenant,
    #[error("form too large")]
    TooLarge,
    /// `_csrf` missing or wrong, or no session to check it against: nothing changed.
    #[error("CSRF check failed")]
    Csrf,
    /// The request is wrong; the message is for the user.
    #[error("{0}")]
    BadRequest(String),
    /// Our failure: 503 when the database is unavailable, otherwise 500.
    #[error(transparent)]
    Server(Box<dyn std::error::Error + Send + Sync>),
}

macro_rules! server_errors {
    ($($e:ty),* $(,)?) => {$(
        impl From<$e> for PageError {
            fn from(e: $e) -> Self {
                PageError::Server(Box::new(e))
            }
        }
    )*};
}
server_errors!(
    crate::interaction::Error,
    crate::email::Error,
    crate::session::Error,
    crate::store::Error,
);

/// What an error response carries to [`render_error_pages`]. A server failure also
/// carries its [`ServerFailure`], which the logging middleware writes once.
#[derive(Debug, Clone)]
pub(in crate::http) struct ErrorPage {
    /// A message id.
    message: &'static str,
    /// Text for the user instead of the message (a protocol error's description).
    detail: Option<String>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message, detail, failure) = match self {
            PageError::NoTenant => return StatusCode::NOT_FOUND.into_response(),
            PageError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "form-too-large", None, None),
            PageError::Csrf => (StatusCode::FORBIDDEN, "form-expired", None, None),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad-request", Some(m), None),
            PageError::Server(e) if crate::store::is_unavailable(&*e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                None,
                Some(e),
            ),
            PageError::Server(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server-error",
                None,
                Some(e),
            ),
        };
        let mut resp = status.into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            crate::http::error::retry_after_outage(resp.headers_mut());
        }
        if let Some(e) = failure {
            ServerFailure::attach_error(&mut resp, &*e);
        }
        resp.extensions_mut().insert(ErrorPage { message, detail });
        resp
    }
}

/// Renders the [`ErrorPage`] of a failed page as the tenant's error page, keeping the
/// response's status, headers (`Retry-After`, `Set-Cookie`) and extensions (its
/// [`ServerFailure`], for the one log line).
pub(in crate::http) async fn render_error_pages(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let tenant = req.extensions().get::<CurrentTenant>().cloned();
    // The language without the browser session: the handler that failed may not have
    // read it, and an error page is no reason for a database read.
    let headers = req.headers().clone();
    let ui_locales = parse_pairs(req.uri().query().unwrap_or("").as_bytes()).remove("ui_locales");
    let resp = next.run(req).await;
    let (Some(page), Some(CurrentTenant(tenant))) =
        (resp.extensions().get::<ErrorPage>().cloned(), tenant)
    else {
        return resp;
    };
    let (parts, _) = resp.into_parts();
    let lang = choose_lang(&state, &tenant, &headers, ui_locales.as_deref(), None);
    let message = page.detail.map_or_else(|| msg(page.message), Value::String);
    let mut rendered = error_page(&state, &tenant, &lang, parts.status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().append(name, value.clone());
        }
    }
    rendered.extensions_mut().extend(parts.extensions);
    rendered
}

/// An error page (never a redirect).
/// An error page (never a redirect); `message` is text or a message ([`msg`]).
pub(super) fn error_page(
    state: &AppState,
    tenant: &Tenant,
    lang: &Lang,
    status: StatusCode,
    message: Value,
) -> Response {
    let mut ctx = base_context(tenant, lang);
    ctx.insert("message".into(), message);
    html::page(&state.ui, status, "error.html", &ctx)
}

/// "Too many failed attempts. Try again in N minutes." (whole minutes, rounded up).
pub fn locked_message(retry_after_seconds: u64) -> Value {
    let minutes = retry_after_seconds.div_ceil(60).max(1);
    msg_with("locked", json!({ "minutes": minutes }))
}

/// Marks a form answer as a lockout: 429 with `Retry-After`.
fn locked(mut resp: Response, retry_after_seconds: u64) -> Response {
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_seconds.max(1)),
    );
    resp
}

fn path_of(page: Page) -> &'static str {
    match page {
        Page::Login => LOGIN_PATH,
        Page::SecondFactor => MFA_PATH,
        Page::Enrollment => MFA_ENROLL_PATH,
        Page::Chooser => SELECT_ACCOUNT_PATH,
        Page::Consent => super::authorize::CONSENT_PATH,
        Page::Continue => super::authorize::CONTINUE_PATH,
        Page::Account => super::account::ACCOUNT_PATH,
    }
}

/// A scope in words a person understands.
pub fn describe_scope(scope: &str) -> Value {
    match scope {
        "openid" => msg("scope-openid"),
        "profile" => msg("scope-profile"),
        "email" => msg("scope-email"),
        "offline_access" => msg("scope-offline-access"),
        other => msg_with("scope-other", json!({ "scope": other })),
    }
}

fn problem_message(p: &Problem) -> &'static str {
    match p {
        Problem::StaleRequest => STALE_REQUEST,
        Problem::UnknownClient => "unknown-client",
        Problem::NoDecision => "choose-allow-or-deny",
    }
}

/// The response for an outcome of the interaction, with the browser's cookie when it
/// is new.
// One arm per outcome: the whole mapping in one place.
#[allow(clippy::too_many_lines)]
pub(in crate::http) fn render(state: &AppState, visit: &Visit, outcome: Outcome) -> Response {
    let tenant = &visit.tenant;
    let lang = &visit.lang;
    let issuer = tenant.issuer.as_str();
    let browser = visit.browser.as_ref();
    let csrf = browser.map(|b| b.data.csrf.clone()).unwrap_or_default();
    let page = |name: &str, ctx: &serde_json::Map<String, serde_json::Value>| {
        html::page(&state.ui, StatusCode::OK, name, ctx)
    };
    let resp = match outcome {
        Outcome::Go(p, request) => {
            see_other(&url_with_request(issuer, path_of(p), request.as_deref()))
        }
        Outcome::ShowLogin(form) => {
            let mut ctx = base_context(tenant, lang);
            ctx.insert("title".into(), msg("login-title"));
            ctx.insert(
                "action".into(),
                json!(url_with_request(
                    issuer,
                    LOGIN_PATH,
                    form.request.as_deref()
                )),
            );
            ctx.insert("csrf".into(), json!(csrf));
            if let Some(u) = &form.username {
                ctx.insert("username".into(), json!(u));
            }
            if form.passkey {
                ctx.insert(
                    "passkey".into(),
                    passkey::button(
                        issuer,
                        passkey::LOGIN_PASSKEY_PATH,
                        form.request.as_deref(),
                        CeremonyPurpose::SignIn,
                    ),
                );
            }
            if !form.providers.is_empty() {
                ctx.insert(
                    "providers".into(),
                    json!(
                        form.providers
                            .iter()
                            .map(|p| json!({ "id": p.id, "name": p.display_name }))
                            .collect::<Vec<_>>()
                    ),
                );
                ctx.insert(
                    "upstream_action".into(),
                    json!(url_with_request(
                        issuer,
                        super::upstream::UPSTREAM_PATH,
                        form.request.as_deref()
                    )),
                );
            }
            if state.email.enabled() {
                ctx.insert(
                    "forgot_url".into(),
                    json!(format!("{issuer}{}", crate::email::FORGOT_PATH)),
                );
            }
            if state.email.registration_open(tenant) {
                ctx.insert(
                    "register_url".into(),
                    json!(format!("{issuer}{}", crate::email::REGISTER_PATH)),
                );
            }
            match form.problem {
                None => page("login.html", &ctx),
                Some(LoginProblem::Failed) => {
                    ctx.insert("error".into(), msg(LOGIN_FAILED));
                    page("login.html", &ctx)
                }
                Some(LoginProblem::Passkey) => {
                    ctx.insert("error".into(), msg(PASSKEY_REFUSED));
                    page("login.html", &ctx)
                }
                Some(LoginProblem::Locked {
                    retry_after_seconds,
                }) => {
                    ctx.insert("error".into(), locked_message(retry_after_seconds));
                    locked(page("login.html", &ctx), retry_after_seconds)
                }
                Some(LoginProblem::DeviceCodeLimit) => {
                    ctx.insert("error".into(), msg(DEVICE_CODE_LIMIT));
                    let mut resp = page("login.html", &ctx);
                    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    resp
                }
                Some(LoginProblem::Unverified) => {
                    ctx.insert("error".into(), msg(EMAIL_UNVERIFIED));
                    ctx.insert("unverified".into(), json!(true));
                    ctx.insert(
                        "resend_action".into(),
                        json!(format!("{issuer}{}", crate::email::RESEND_PATH)),
                    );
                    let mut resp = page("login.html", &ctx);
                    *resp.status_mut() = StatusCode::FORBIDDEN;
                    resp
                }
            }
        }
        Outcome::ShowSecondFactor(form) => {
            let mut ctx = base_context(tenant, lang);
            ctx.insert("title".into(), msg("mfa-title"));
            ctx.insert(
                "action".into(),
                json!(url_with_request(issuer, MFA_PATH, form.request.as_deref())),
            );
            ctx.insert("csrf".into(), json!(csrf));
            ctx.insert("totp".into(), json!(form.totp));
            ctx.insert("email_code".into(), json!(form.email_code));
            if form.passkey {
                ctx.insert(
                    "passkey".into(),
                    passkey::button(
                        issuer,
                        passkey::MFA_PASSKEY_PATH,
                        form.request.as_deref(),
                        CeremonyPurpose::SecondFactor,
                    ),
                );
            }
            code_problem(&mut ctx, form.problem, |ctx| page("mfa.html", ctx))
        }
        Outcome::ShowEnrollment(form) => {
            let mut ctx = base_context(tenant, lang);
            ctx.insert("title".into(), msg("enroll-title"));
            ctx.insert(
                "action".into(),
                json!(url_with_request(
                    issuer,
                    MFA_ENROLL_PATH,
                    form.request.as_deref()
                )),
            );
            ctx.insert("csrf".into(), json!(csrf));
            ctx.insert("qr_data_uri".into(), json!(form.qr_data_uri));
            ctx.insert("secret".into(), json!(form.secret_base32));
            if form.passkey {
                ctx.insert(
                    "passkey".into(),
                    passkey::button(
                        issuer,
                        passkey::ENROLL_PASSKEY_PATH,
                        form.request.as_deref(),
                        CeremonyPurpose::Enroll,
                    ),
                );
            }
            code_problem(&mut ctx, form.problem, |ctx| page("mfa_enroll.html", ctx))
        }
        Outcome::ShowRecoveryCodes(codes) => {
            let mut ctx = base_context(tenant, lang);
            ctx.insert("title".into(), msg("recovery-title"));
            ctx.insert(
                "action".into(),
                json!(url_with_request(
                    issuer,
                    MFA_ENROLL_PATH,
                    codes.request.as_deref()
                )),
            );
            ctx.insert("csrf".into(), json!(csrf));
            ctx.insert("codes".into(), json!(codes.codes));
            page("recovery_codes.html", &ctx)
        }
        Outcome::ShowChooser(chooser) => {
            let listed: Vec<_> = chooser
                .accounts
                .iter()
                .map(|(index, username)| json!({ "index": index, "username": username }))
                .collect();
            let mut ctx = base_context(tenant, lang);
            ctx.insert("title".into(), msg("chooser-title"));
            ctx.insert(
                "action".into(),
                json!(url_with_request(
                    issuer,
                    SELECT_ACCOUNT_PATH,
                    chooser.request.as_deref()
                )),
            );
            ctx.insert("csrf".into(), json!(csrf));
            ctx.insert("accounts".into(), json!(listed));
            page("select_account.html", &ctx)
        }
        Outcome::ShowConsent(consent) => {
            let mut ctx = base_context(tenant, lang);
            ctx.insert("title".into(), msg("consent-title"));
            ctx.insert(
                "action".into(),
                json!(url_with_request(
                    issuer,
                    super::authorize::CONSENT_PATH,
                    Some(&consent.request)
                )),
            );
            ctx.insert("csrf".into(), json!(csrf));
            ctx.insert("client_name".into(), json!(consent.client_id));
            ctx.insert(
                "scopes".into(),
                json!(
                    consent
                        .scopes
                        .iter()
                        .map(|s| describe_scope(s))
                        .collect::<Vec<_>>()
                ),
            );
            ctx.insert("username".into(), json!(consent.username));
            page("consent.html", &ctx)
        }
        Outcome::SignedIn { username } => {
            let mut ctx = base_context(tenant, lang);
            ctx.insert("title".into(), msg("signed-in-title"));
            ctx.insert("username".into(), json!(username));
            page("signed_in.html", &ctx)
        }
        Outcome::RedirectWithCode(c) => client_response::send(&ClientResponse::code(
            issuer,
            &c.redirect_uri,
            c.response_mode,
            c.code,
            c.state.as_deref(),
        )),
        Outcome::RedirectWithError(e) => client_response::send(&ClientResponse::error(issuer, &e)),
        Outcome::ShowErrorPage(p) => error_page(
            state,
            tenant,
            lang,
            StatusCode::BAD_REQUEST,
            msg(problem_message(&p)),
        ),
        // The upstream's authorization endpoint: a URL built from its discovery
        // document, never from the request.
        Outcome::GoUpstream(url) => see_other(&url),
        Outcome::ShowUpstream(p) => super::upstream::page(state, tenant, lang, &csrf, p),
    };
    with_cookie(browser, resp)
}

/// Adds a code form's problem to its context and renders it (429 when locked).
fn code_problem(
    ctx: &mut serde_json::Map<String, serde_json::Value>,
    problem: Option<CodeProblem>,
    render: impl Fn(&serde_json::Map<String, serde_json::Value>) -> Response,
) -> Response {
    match problem {
        None => render(ctx),
        Some(CodeProblem::Wrong) => {
            ctx.insert("error".into(), msg(WRONG_CODE));
            render(ctx)
        }
        Some(CodeProblem::Passkey) => {
            ctx.insert("error".into(), msg(PASSKEY_REFUSED));
            render(ctx)
        }
        Some(CodeProblem::PasskeyRequired) => {
            ctx.insert("error".into(), msg(PASSKEY_REQUIRED));
            render(ctx)
        }
        Some(CodeProblem::Locked {
            retry_after_seconds,
        }) => {
            ctx.insert("error".into(), locked_message(retry_after_seconds));
            locked(render(ctx), retry_after_seconds)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_in_forms() {
        let m = parse_pairs(b"a=1&a=2&b=x%20y");
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x y");
    }

    fn text(tag: &str, mut message: Value) -> String {
        let catalogues = crate::ui::i18n::Catalogues::load(None).unwrap();
        catalogues.localize(tag, &mut message);
        message.as_str().unwrap().to_owned()
    }

    #[test]
    fn the_lockout_message_rounds_the_wait_up_to_minutes() {
        let en = |s| text("en", locked_message(s));
        assert_eq!(en(1), "Too many failed attempts. Try again in 1 minute.");
        assert_eq!(en(60), "Too many failed attempts. Try again in 1 minute.");
        assert_eq!(en(61), "Too many failed attempts. Try again in 2 minutes.");
        assert_eq!(
            en(900),
            "Too many failed attempts. Try again in 15 minutes."
        );
        assert_eq!(
            text("de", locked_message(30)),
            "Zu viele Fehlversuche. Versuchen Sie es in 1 Minute erneut."
        );
        assert_eq!(
            text("de", locked_message(900)),
            "Zu viele Fehlversuche. Versuchen Sie es in 15 Minuten erneut."
        );
    }

    #[test]
    fn scopes_are_described_in_plain_words() {
        assert_eq!(
            text("en", describe_scope("email")),
            "See your email address"
        );
        assert_eq!(
            text("de", describe_scope("email")),
            "Ihre E-Mail-Adresse sehen"
        );
        assert!(text("de", describe_scope("api:read")).contains("api:read"));
    }

    #[test]
    fn server_errors_carry_their_chain_for_the_one_log_line() {
        let e = crate::interaction::Error::Invariant("the decided account has no session");
        let resp = PageError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.extensions().get::<ErrorPage>().is_some());
        let failure = resp
            .extensions()
            .get::<ServerFailure>()
            .expect("failure for the log");
        assert_eq!(failure.detail(), "the decided account has no session");
        assert!(!failure.is_outage());
    }

    #[test]
    fn an_unavailable_database_is_a_503_with_retry_after_logged_as_an_outage() {
        let e = crate::store::Error::Unavailable(crate::store::Unavailable::TimedOut(
            std::time::Duration::from_secs(1),
        ));
        let resp = PageError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
        assert!(resp.extensions().get::<ErrorPage>().is_some());
        let failure = resp
            .extensions()
            .get::<ServerFailure>()
            .expect("failure for the log");
        assert!(failure.is_outage(), "an outage is not logged as an error");
    }
}
