//! Authorization request validation (RFC 6749 §4.1.1, OIDC Core §3.1.2, RFC 7636,
//! RFC 9126, RFC 9207).
//!
//! The order matters (RFC 6749 §4.1.2.1): until the client and its redirect URI are
//! known to be right, an error is shown to the user and never redirected — otherwise
//! the server would be an open redirector. Every later error goes back to the client.

use serde::{Deserialize, Serialize};

use crate::domain::client::{ClientSpec, ClientType, GrantType};
use crate::domain::policy::TenantPolicy;
use crate::oauth::ErrorCode;
use crate::oauth::form::Form;

/// `response_mode` (OAuth 2.0 Multiple Response Types, Form Post Response Mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    FormPost,
}

/// `prompt` values (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    None,
    Login,
    Consent,
    SelectAccount,
}

impl Prompt {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Prompt::None,
            "login" => Prompt::Login,
            "consent" => Prompt::Consent,
            "select_account" => Prompt::SelectAccount,
            _ => return None,
        })
    }
}

/// A validated authorization request: everything later steps (login, consent, code)
/// need, and nothing they must re-check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Vec<Prompt>,
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    pub acr_values: Vec<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// RFC 9449 §10: the DPoP key the code is bound to.
    pub dpop_jkt: Option<String>,
    /// OIDC Core §3.1.2.1: the languages the pages should be in, best first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_locales: Option<String>,
}

impl AuthRequest {
    pub fn has_prompt(&self, p: Prompt) -> bool {
        self.prompt.contains(&p)
    }

    /// An OpenID Connect request (as opposed to plain OAuth).
    pub fn is_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }

    /// The error response for this request (after it validated, e.g. `access_denied`).
    pub fn error(&self, error: ErrorCode, description: impl Into<String>) -> ErrorRedirect {
        ErrorRedirect {
            redirect_uri: self.redirect_uri.clone(),
            response_mode: self.response_mode,
            state: self.state.clone(),
            error,
            description: description.into(),
        }
    }
}

/// An error to send back to the client's (verified) redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub error: ErrorCode,
    pub description: String,
}

/// Why an authorization request cannot go on.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the user, never redirected: the client or its redirect URI is unknown
    /// or wrong (or the pushed request is gone), so there is nowhere safe to send it.
    Page(String),
    /// Sent to the client's redirect URI.
    Redirect(ErrorRedirect),
    /// Ours (the database, a stored request that does not parse): the edge answers 503
    /// when the database is unavailable, 500 otherwise, and logs it there.
    Server(Box<dyn std::error::Error + Send + Sync>),
}

impl AuthorizeError {
    pub(crate) fn page(message: impl Into<String>) -> Self {
        AuthorizeError::Page(message.into())
    }

    pub(crate) fn server(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        AuthorizeError::Server(Box::new(e))
    }
}

impl From<crate::store::Error> for AuthorizeError {
    fn from(e: crate::store::Error) -> Self {
        AuthorizeError::server(e)
    }
}

impl From<crate::clients::Error> for AuthorizeError {
    fn from(e: crate::clients::Error) -> Self {
        AuthorizeError::server(e)
    }
}

/// Scopes about the user that any authorization-code client may ask for; the user's
/// consent gates them. Other scopes must be registered for the client.
const IDENTITY_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// Longest `state` / `nonce` / `login_hint` accepted: they travel in URLs and are
/// stored with the request.
const MAX_STATE: usize = 2048;
const MAX_NONCE: usize = 512;
const MAX_HINT: usize = 256;

/// Whether `given` names the registered redirect URI `registered`: exact string match,
/// except that the port of a loopback IP literal may vary (RFC 8252 §7.3: native apps
/// listen on an ephemeral port).
pub fn redirect_uri_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    let (Ok(r), Ok(g)) = (url::Url::parse(registered), url::Url::parse(given)) else {
        return false;
    };
    let loopback_ip = |u: &url::Url| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    r.scheme() == "http"
        && g.scheme() == "http"
        && loopback_ip(&r)
        && r.host() == g.host()
        && r.path() == g.path()
        && r.query() == g.query()
        && g.fragment().is_none()
}

/// PKCE S256 challenge: base64url SHA-256 = 43 characters (RFC 7636 §4.2).
fn is_s256_challenge(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A problem found after the redirect URI was verified: goes back to the client.
type Bad = (ErrorCode, String);

fn bad<T>(code: ErrorCode, description: impl Into<String>) -> Result<T, Bad> {
    Err((code, description.into()))
}

/// Checks an authorization request's parameters against its client and the tenant's
/// policy. The caller has looked up the client by `client_id`.
pub fn validate(
    params: &Form,
    client: &ClientSpec,
    policy: &TenantPolicy,
) -> Result<AuthRequest, AuthorizeError> {
    let scopes = params.list("scope");
    // 1. The redirect URI. Until it is verified, errors are pages.
    let redirect_uri = redirect_target(params, client, &scopes)?;
    // 2. Where errors go from here on. A state too long to send back is dropped.
    let state = params.get("state").map(str::to_owned);
    let mode = params.get("response_mode");
    let response_mode = if mode == Some("form_post") {
        ResponseMode::FormPost
    } else {
        ResponseMode::Query
    };
    let to_client = |(error, description): Bad| {
        AuthorizeError::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.clone(),
            response_mode,
            state: state.clone().filter(|s| s.len() <= MAX_STATE),
            error,
            description,
        })
    };
    // 3. Everything else.
    let checked = (|| {
        if let Some(other) = mode.filter(|m| !matches!(*m, "query" | "form_post")) {
            return bad(
                ErrorCode::InvalidRequest,
                format!("response_mode {other:?} is not supported (use query or form_post)"),
            );
        }
        check_lengths(params)?;
        check_response_type(params, client)?;
        check_scopes(&scopes, client)?;
        let prompt = parse_prompt(params)?;
        let max_age = match params.get("max_age").map(str::parse::<u64>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                return bad(
                    ErrorCode::InvalidRequest,
                    "max_age must be a non-negative integer (seconds)",
                );
            }
        };
        let (code_challenge, code_challenge_method) = check_pkce(params, client, policy)?;
        let dpop_jkt = params.get("dpop_jkt").map(str::to_owned);
        if dpop_jkt.as_deref().is_some_and(|j| !is_s256_challenge(j)) {
            return bad(
                ErrorCode::InvalidRequest,
                "dpop_jkt must be a base64url SHA-256 JWK thumbprint",
            );
        }
        Ok(AuthRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            response_mode,
            scopes: scopes.clone(),
            state: state.clone(),
            nonce: params.get("nonce").map(str::to_owned),
            prompt,
            max_age,
            login_hint: params.get("login_hint").map(str::to_owned),
            acr_values: params.list("acr_values"),
            code_challenge,
            code_challenge_method,
            dpop_jkt,
            ui_locales: params.get("ui_locales").map(str::to_owned),
        })
    })();
    checked.map_err(to_client)
}

/// The verified redirect URI, or a page-only error.
fn redirect_target(
    params: &Form,
    client: &ClientSpec,
    scopes: &[String],
) -> Result<String, AuthorizeError> {
    match params.get("redirect_uri") {
        Some(uri)
            if client
                .redirect_uris
                .iter()
                .any(|r| redirect_uri_matches(r, uri)) =>
        {
            Ok(uri.to_owned())
        }
        Some(_) => Err(AuthorizeError::page(
            "The redirect_uri is not registered for this client.",
        )),
        // OAuth allows leaving it out when exactly one is registered; OpenID Connect
        // requires it (Core §3.1.2.1).
        None if client.redirect_uris.len() == 1 && !scopes.iter().any(|s| s == "openid") => {
            Ok(client.redirect_uris[0].clone())
        }
        None => Err(AuthorizeError::page(
            "The request has no redirect_uri parameter.",
        )),
    }
}

fn check_lengths(params: &Form) -> Result<(), Bad> {
    for (name, max) in [
        ("state", MAX_STATE),
        ("nonce", MAX_NONCE),
        ("login_hint", MAX_HINT),
        ("ui_locales", MAX_HINT),
    ] {
        if params.get(name).is_some_and(|v| v.len() > max) {
            return bad(
                ErrorCode::InvalidRequest,
                format!("{name} is longer than {max} characters"),
            );
        }
    }
    Ok(())
}

fn check_response_type(params: &Form, client: &ClientSpec) -> Result<(), Bad> {
    if params.get("request").is_some() {
        return bad(
            ErrorCode::RequestNotSupported,
            "request objects are not supported; use pushed authorization requests",
        );
    }
    if params.get("request_uri").is_some() {
        return bad(
            ErrorCode::InvalidRequest,
            "request_uri is only accepted for pushed authorization requests",
        );
    }
    match params.get("response_type") {
        None => bad(
            ErrorCode::InvalidRequest,
            "missing parameter \"response_type\"",
        ),
        Some("code") if client.allows_grant(GrantType::AuthorizationCode) => Ok(()),
        Some("code") => bad(
            ErrorCode::UnauthorizedClient,
            "the client is not allowed to use the authorization code flow",
        ),
        Some(other) => bad(
            ErrorCode::UnsupportedResponseType,
            format!("response_type {other:?} is not supported (only code)"),
        ),
    }
}

fn check_scopes(scopes: &[String], client: &ClientSpec) -> Result<(), Bad> {
    if scopes.is_empty() {
        return bad(ErrorCode::InvalidScope, "scope is required");
    }
    for s in scopes {
        let allowed = IDENTITY_SCOPES.contains(&s.as_str())
            || (s == "offline_access" && client.allows_grant(GrantType::RefreshToken))
            || client.scopes.contains(s);
        if !allowed {
            return bad(
                ErrorCode::InvalidScope,
                format!("scope {s:?} is not allowed for this client"),
            );
        }
    }
    Ok(())
}

fn parse_prompt(params: &Form) -> Result<Vec<Prompt>, Bad> {
    let mut prompt = Vec::new();
    for p in params.list("prompt") {
        match Prompt::parse(&p) {
            Some(p) => prompt.push(p),
            None => {
                return bad(
                    ErrorCode::InvalidRequest,
                    format!("prompt value {p:?} is not supported"),
                );
            }
        }
    }
    if prompt.contains(&Prompt::None) && prompt.len() > 1 {
        return bad(
            ErrorCode::InvalidRequest,
            "prompt=none cannot be combined with other prompt values",
        );
    }
    Ok(prompt)
}

/// PKCE (RFC 7636; RFC 9700 §2.1.1: S256 only, `plain` never).
fn check_pkce(
    params: &Form,
    client: &ClientSpec,
    policy: &TenantPolicy,
) -> Result<(Option<String>, Option<String>), Bad> {
    let challenge = params.get("code_challenge");
    let method = match (params.get("code_challenge_method"), challenge) {
        (Some("S256"), Some(_)) => Some("S256".to_owned()),
        (Some("S256"), None) => {
            return bad(
                ErrorCode::InvalidRequest,
                "code_challenge_method without code_challenge",
            );
        }
        (Some(other), _) => {
            return bad(
                ErrorCode::InvalidRequest,
                format!("code_challenge_method {other:?} is not supported (use S256)"),
            );
        }
        // RFC 7636 §4.3: an absent method means `plain`.
        (None, Some(_)) => {
            return bad(
                ErrorCode::InvalidRequest,
                "code_challenge_method must be S256 (plain is not accepted)",
            );
        }
        (None, None) => None,
    };
    if challenge.is_some_and(|c| !is_s256_challenge(c)) {
        return bad(
            ErrorCode::InvalidRequest,
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        );
    }
    if challenge.is_none() && (client.client_type == ClientType::Public || policy.require_pkce) {
        return bad(
            ErrorCode::InvalidRequest,
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        );
    }
    Ok((challenge.map(str::to_owned), method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::client::{AuthMethod, ClientType};

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client() -> ClientSpec {
        ClientSpec {
            client_id: "web".into(),
            client_type: ClientType::Confidential,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            redirect_uris: vec![
                "https://app.example.com/cb".into(),
                "http://127.0.0.1/native".into(),
            ],
            scopes: vec!["orders:read".into()],
            auth_method: AuthMethod::ClientSecretBasic,
            ..ClientSpec::default()
        }
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("client_id", "web"),
            ("redirect_uri", "https://app.example.com/cb"),
            ("response_type", "code"),
            ("scope", "openid profile orders:read offline_access"),
            ("state", "xyz"),
            ("nonce", "n-0S6"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
    }

    fn with(changes: &[(&'static str, Option<&'static str>)]) -> Form {
        let mut p = base();
        for (k, v) in changes {
            p.retain(|(name, _)| name != k);
            if let Some(v) = v {
                p.push((k, v));
            }
        }
        Form::from_pairs(&p)
    }

    fn redirect_error(r: Result<AuthRequest, AuthorizeError>) -> ErrorRedirect {
        match r {
            Err(AuthorizeError::Redirect(e)) => e,
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_validates() {
        let r = validate(&with(&[]), &client(), &TenantPolicy::default()).unwrap();
        assert_eq!(r.redirect_uri, "https://app.example.com/cb");
        assert_eq!(r.response_mode, ResponseMode::Query);
        assert_eq!(
            r.scopes,
            ["openid", "profile", "orders:read", "offline_access"]
        );
        assert_eq!(r.code_challenge_method.as_deref(), Some("S256"));
        assert!(r.is_openid());
    }

    #[test]
    fn bad_redirect_uris_are_pages_not_redirects() {
        for bad in [
            "https://evil.example.com/cb",
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
        ] {
            let mut p = base();
            p.retain(|(k, _)| *k != "redirect_uri");
            p.push(("redirect_uri", bad));
            let r = validate(&Form::from_pairs(&p), &client(), &TenantPolicy::default());
            assert!(matches!(r, Err(AuthorizeError::Page(_))), "{bad}: {r:?}");
        }
        // Missing with openid: a page too (OIDC requires it).
        let r = validate(
            &with(&[("redirect_uri", None)]),
            &client(),
            &TenantPolicy::default(),
        );
        assert!(matches!(r, Err(AuthorizeError::Page(_))));
    }

    #[test]
    fn loopback_ports_may_vary_for_native_apps() {
        assert!(redirect_uri_matches(
            "http://127.0.0.1/native",
            "http://127.0.0.1:53211/native"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/native",
            "http://127.0.0.1:53211/other"
        ));
        assert!(!redirect_uri_matches(
            "https://app.example.com/cb",
            "https://app.example.com:444/cb"
        ));
        assert!(!redirect_uri_matches(
            "http://localhost/cb",
            "http://localhost:8080/cb"
        ));
    }

    #[test]
    fn other_errors_redirect_with_state_and_the_right_code() {
        type Case = (Vec<(&'static str, Option<&'static str>)>, ErrorCode);
        let cases: Vec<Case> = vec![
            (
                vec![("response_type", Some("token"))],
                ErrorCode::UnsupportedResponseType,
            ),
            (vec![("response_type", None)], ErrorCode::InvalidRequest),
            (
                vec![("scope", Some("openid admin"))],
                ErrorCode::InvalidScope,
            ),
            (vec![("scope", None)], ErrorCode::InvalidScope),
            (
                vec![("prompt", Some("none login"))],
                ErrorCode::InvalidRequest,
            ),
            (
                vec![("prompt", Some("sometimes"))],
                ErrorCode::InvalidRequest,
            ),
            (vec![("max_age", Some("-1"))], ErrorCode::InvalidRequest),
            (
                vec![("code_challenge_method", Some("plain"))],
                ErrorCode::InvalidRequest,
            ),
            (
                vec![("code_challenge_method", None)],
                ErrorCode::InvalidRequest,
            ),
            (
                vec![("code_challenge", Some("short"))],
                ErrorCode::InvalidRequest,
            ),
            (
                vec![("code_challenge", None), ("code_challenge_method", None)],
                ErrorCode::InvalidRequest,
            ),
            (
                vec![("request", Some("eyJ..."))],
                ErrorCode::RequestNotSupported,
            ),
            (
                vec![("response_mode", Some("fragment"))],
                ErrorCode::InvalidRequest,
            ),
        ];
        for (changes, code) in cases {
            let e = redirect_error(validate(
                &with(&changes),
                &client(),
                &TenantPolicy::default(),
            ));
            assert_eq!(e.error, code, "{changes:?}");
            assert_eq!(e.state.as_deref(), Some("xyz"));
            assert_eq!(e.redirect_uri, "https://app.example.com/cb");
        }
    }

    #[test]
    fn pkce_is_optional_only_for_confidential_clients_when_the_tenant_allows() {
        let no_pkce = with(&[("code_challenge", None), ("code_challenge_method", None)]);
        let relaxed = TenantPolicy {
            require_pkce: false,
            ..TenantPolicy::default()
        };
        assert!(validate(&no_pkce, &client(), &relaxed).is_ok());
        let public = ClientSpec {
            client_type: ClientType::Public,
            auth_method: AuthMethod::None,
            ..client()
        };
        let e = redirect_error(validate(&no_pkce, &public, &relaxed));
        assert_eq!(e.error, ErrorCode::InvalidRequest);
    }

    #[test]
    fn offline_access_needs_the_refresh_grant() {
        let c = ClientSpec {
            grant_types: vec![GrantType::AuthorizationCode],
            ..client()
        };
        let e = redirect_error(validate(&with(&[]), &c, &TenantPolicy::default()));
        assert_eq!(e.error, ErrorCode::InvalidScope);
    }

    #[test]
    fn clients_without_the_code_grant_are_unauthorized() {
        let c = ClientSpec {
            grant_types: vec![GrantType::ClientCredentials],
            ..client()
        };
        let e = redirect_error(validate(&with(&[]), &c, &TenantPolicy::default()));
        assert_eq!(e.error, ErrorCode::UnauthorizedClient);
    }

    #[test]
    fn form_post_errors_use_form_post() {
        let e = redirect_error(validate(
            &with(&[
                ("response_mode", Some("form_post")),
                ("response_type", Some("token")),
            ]),
            &client(),
            &TenantPolicy::default(),
        ));
        assert_eq!(e.response_mode, ResponseMode::FormPost);
    }

    #[test]
    fn requests_round_trip_through_json() {
        let r = validate(
            &with(&[("prompt", Some("login consent"))]),
            &client(),
            &TenantPolicy::default(),
        )
        .unwrap();
        let back: AuthRequest = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(back.has_prompt(Prompt::Consent));
    }
}
