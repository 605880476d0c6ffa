//! OAuth clients: what a client may do and how it authenticates, and the rules a
//! registration must satisfy. Every registration path (CLI, admin gRPC, operator) goes
//! through [`ClientSpec::validate`], so the same input gets the same error everywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::signing_key::Algorithm;

/// Confidential clients hold a credential; public ones (SPAs, native apps) cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Confidential,
    Public,
}

/// How a client authenticates at the token endpoint (RFC 7591 §2 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    /// Whether the method uses a shared secret.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AuthMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown auth method {s:?} (expected client_secret_basic, client_secret_post, private_key_jwt or none)"
                )
            })
    }
}

/// Grant types (RFC 6749 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 3] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

impl FromStr for GrantType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown grant type {s:?} (expected authorization_code, refresh_token or client_credentials)"
                )
            })
    }
}

/// `sub` for end users: the same everywhere, or per sector (OIDC Core §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    Public,
    Pairwise,
}

/// Everything a registration says about a client (without credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
// Registration metadata is a set of independent switches (RFC 7591 names them so).
#[allow(clippy::struct_excessive_bools)]
pub struct ClientSpec {
    pub client_id: String,
    pub client_type: ClientType,
    pub grant_types: Vec<GrantType>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Scopes the client may request.
    pub scopes: Vec<String>,
    /// Audiences (resource indicators, RFC 8707) the client may request tokens for.
    pub audiences: Vec<String>,
    pub auth_method: AuthMethod,
    /// For `private_key_jwt`: where the client publishes its keys…
    pub jwks_uri: Option<String>,
    /// …or the keys themselves (a JWK Set).
    pub jwks: Option<serde_json::Value>,
    pub access_token_lifetime_seconds: u64,
    pub refresh_token_lifetime_seconds: u64,
    pub subject_type: SubjectType,
    /// Access tokens must be DPoP-bound (RFC 9449 `dpop_bound_access_tokens`).
    pub dpop_bound_access_tokens: bool,
    pub allowed_cors_origins: Vec<String>,
    /// First-party clients skip the consent screen.
    pub first_party: bool,
    /// Access token signing algorithm; `None` = the server default.
    pub access_token_alg: Option<Algorithm>,
    /// ID token signing algorithm; `None` = the server default (`tokens.id_token_alg`).
    pub id_token_alg: Option<Algorithm>,
    /// Issue refresh tokens even when `offline_access` was not granted (the client must
    /// still be allowed the refresh_token grant).
    pub refresh_without_offline_access: bool,
    /// OIDC Core §8.1: for pairwise subjects, the host of this https URL is the sector.
    /// Without it, the redirect URIs' single host is.
    pub sector_identifier_uri: Option<String>,
    /// Authorization requests must be pushed first (RFC 9126 §6).
    pub require_pushed_authorization_requests: bool,
    /// Introspection answers this client for every token of the tenant; without it, only
    /// for tokens issued to it or naming it as an audience (RFC 7662 §4: the server
    /// decides what a caller may learn).
    pub introspect_any_token: bool,
}

/// Defaults for newly registered clients.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: u64 = 600;
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: u64 = 30 * 86_400;

impl Default for ClientSpec {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_type: ClientType::Confidential,
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            scopes: Vec::new(),
            audiences: Vec::new(),
            auth_method: AuthMethod::ClientSecretBasic,
            jwks_uri: None,
            jwks: None,
            access_token_lifetime_seconds: DEFAULT_ACCESS_TOKEN_LIFETIME,
            refresh_token_lifetime_seconds: DEFAULT_REFRESH_TOKEN_LIFETIME,
            subject_type: SubjectType::Public,
            dpop_bound_access_tokens: false,
            allowed_cors_origins: Vec::new(),
            first_party: false,
            access_token_alg: None,
            id_token_alg: None,
            refresh_without_offline_access: false,
            sector_identifier_uri: None,
            require_pushed_authorization_requests: false,
            introspect_any_token: false,
        }
    }
}

/// A registration problem: which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    /// The problem in English, for the Management API, the admin API and the CLI.
    pub message: String,
    /// The problem as data, for the pages that say it in the reader's language.
    pub kind: Invalid,
}

/// What is wrong with a field ([`FieldError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not of the right form (the message says how).
    Malformed,
    /// Fewer characters than allowed.
    TooShort { min: usize },
    /// More characters than allowed.
    TooLong { max: usize },
    /// A password that appears in a known data breach.
    Breached,
    /// The record changed since it was read.
    Stale,
}

impl FieldError {
    /// A malformed field; [`FieldError::kind`] says otherwise.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
            kind: Invalid::Malformed,
        }
    }

    /// This error with a more precise kind.
    #[must_use]
    pub fn with_kind(self, kind: Invalid) -> Self {
        Self { kind, ..self }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Client ids are used in URLs, Basic auth and Kubernetes-derived names: RFC 3986
/// unreserved characters only, so no encoding question ever arises.
pub fn validate_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("client_id must be 1 to 128 characters".to_owned());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(format!(
            "client_id {id:?} may contain only letters, digits and - . _ ~"
        ));
    }
    Ok(())
}

/// RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Redirect URIs: absolute, no fragment (RFC 6749 §3.1.2); https, or http on a loopback
/// host (RFC 8252 §7.3), or a private-use scheme for native apps (RFC 8252 §7.1).
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} must not contain a fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(format!(
            "{uri:?} must use https (http is allowed for localhost, 127.0.0.1 and [::1] only)"
        )),
        // Native apps: reverse-DNS private-use schemes (contain a dot).
        s if s.contains('.') => Ok(()),
        s => Err(format!("{uri:?} has unsupported scheme {s:?}")),
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The lower-case host of a URI, or its scheme when it has none.
fn uri_host(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) => u
            .host_str()
            .map_or_else(|| u.scheme().to_owned(), str::to_ascii_lowercase),
        Err(_) => uri.to_owned(),
    }
}

fn validate_https_url(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        _ => Err(format!("{uri:?} must use https")),
    }
}

impl ClientSpec {
    /// Every problem with this registration; empty when valid. `algorithms` are the
    /// tenant's signing algorithms.
    #[allow(clippy::too_many_lines)] // one check per field, in field order
    pub fn validate(&self, algorithms: &[Algorithm]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |field: &'static str, message: String| {
            errors.push(FieldError::new(field, message));
        };
        if let Err(e) = validate_client_id(&self.client_id) {
            err("client_id", e);
        }
        match (self.client_type, self.auth_method) {
            (ClientType::Public, AuthMethod::None)
            | (
                ClientType::Confidential,
                AuthMethod::ClientSecretBasic
                | AuthMethod::ClientSecretPost
                | AuthMethod::PrivateKeyJwt,
            ) => {}
            (ClientType::Public, m) => err(
                "auth_method",
                format!("public clients cannot authenticate; use none, not {}", m.as_str()),
            ),
            (ClientType::Confidential, _) => err(
                "auth_method",
                "confidential clients must authenticate (client_secret_basic, client_secret_post or private_key_jwt)".to_owned(),
            ),
        }
        if self.grant_types.is_empty() {
            err(
                "grant_types",
                "at least one grant type is required".to_owned(),
            );
        }
        if self.client_type == ClientType::Public
            && self.grant_types.contains(&GrantType::ClientCredentials)
        {
            err(
                "grant_types",
                "public clients cannot use client_credentials".to_owned(),
            );
        }
        if self.grant_types.contains(&GrantType::AuthorizationCode) && self.redirect_uris.is_empty()
        {
            err(
                "redirect_uris",
                "authorization_code clients need at least one redirect URI".to_owned(),
            );
        }
        for uri in &self.redirect_uris {
            if let Err(e) = validate_redirect_uri(uri) {
                err("redirect_uris", e);
            }
        }
        for uri in &self.post_logout_redirect_uris {
            if let Err(e) = validate_redirect_uri(uri) {
                err("post_logout_redirect_uris", e);
            }
        }
        for s in &self.scopes {
            if !is_scope_token(s) {
                err("scopes", format!("{s:?} is not a valid scope token"));
            }
        }
        for a in &self.audiences {
            if a.is_empty() || a.contains(char::is_whitespace) {
                err("audiences", format!("{a:?} is not a valid audience"));
            }
        }
        if let Some(uri) = &self.jwks_uri
            && let Err(e) = validate_https_url(uri)
        {
            err("jwks_uri", e);
        }
        if let Some(jwks) = &self.jwks
            && !jwks.get("keys").is_some_and(serde_json::Value::is_array)
        {
            err(
                "jwks",
                "must be a JWK Set object with a \"keys\" array".to_owned(),
            );
        }
        if self.auth_method == AuthMethod::PrivateKeyJwt
            && self.jwks_uri.is_none()
            && self.jwks.is_none()
        {
            err(
                "jwks_uri",
                "private_key_jwt needs the client's keys: set jwks_uri or jwks".to_owned(),
            );
        }
        if !(60..=86_400).contains(&self.access_token_lifetime_seconds) {
            err(
                "access_token_lifetime_seconds",
                "must be between 60 and 86400".to_owned(),
            );
        }
        if !(60..=31_536_000).contains(&self.refresh_token_lifetime_seconds) {
            err(
                "refresh_token_lifetime_seconds",
                "must be between 60 and 31536000".to_owned(),
            );
        }
        for o in &self.allowed_cors_origins {
            let ok = url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "https" | "http")
                    && u.path() == "/"
                    && !o.ends_with('/')
                    && u.query().is_none()
            });
            if !ok {
                err(
                    "allowed_cors_origins",
                    format!("{o:?} is not an origin (scheme://host[:port])"),
                );
            }
        }
        if let Some(alg) = self.access_token_alg
            && !algorithms.contains(&alg)
        {
            err(
                "access_token_alg",
                format!("{alg} is not one of the tenant's signing algorithms"),
            );
        }
        if let Some(alg) = self.id_token_alg
            && !algorithms.contains(&alg)
        {
            err(
                "id_token_alg",
                format!("{alg} is not one of the tenant's signing algorithms"),
            );
        }
        if let Some(uri) = &self.sector_identifier_uri {
            if let Err(e) = validate_https_url(uri) {
                err("sector_identifier_uri", e);
            }
        } else if self.subject_type == SubjectType::Pairwise {
            let mut hosts: Vec<String> = self.redirect_uris.iter().map(|u| uri_host(u)).collect();
            hosts.sort();
            hosts.dedup();
            if hosts.len() > 1 {
                err(
                    "sector_identifier_uri",
                    format!(
                        "a pairwise client whose redirect URIs use several hosts ({}) needs a sector_identifier_uri",
                        hosts.join(", ")
                    ),
                );
            }
        }
        errors
    }

    /// The sector identifier of a pairwise client (OIDC Core §8.1): the host of
    /// `sector_identifier_uri`, else of the (single-host) redirect URIs. A redirect URI
    /// without a host (a native app's private-use scheme) counts by its scheme.
    pub fn sector(&self) -> String {
        match &self.sector_identifier_uri {
            Some(u) => uri_host(u),
            None => self
                .redirect_uris
                .first()
                .map_or_else(|| self.client_id.clone(), |u| uri_host(u)),
        }
    }

    pub fn allows_grant(&self, g: GrantType) -> bool {
        self.grant_types.contains(&g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> ClientSpec {
        ClientSpec {
            client_id: "billing".into(),
            scopes: vec!["read".into()],
            audiences: vec!["urn:api".into()],
            ..ClientSpec::default()
        }
    }

    fn fields(spec: &ClientSpec) -> Vec<&'static str> {
        spec.validate(&Algorithm::ALL)
            .iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_machine_client_is_valid() {
        assert!(fields(&machine()).is_empty());
    }

    #[test]
    fn public_clients_use_none_and_no_client_credentials() {
        let spec = ClientSpec {
            client_type: ClientType::Public,
            auth_method: AuthMethod::ClientSecretBasic,
            ..machine()
        };
        assert_eq!(fields(&spec), vec!["auth_method", "grant_types"]);
    }

    #[test]
    fn redirect_uris_must_be_https_or_loopback_without_fragment() {
        assert!(validate_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:3000/cb").is_ok());
        assert!(validate_redirect_uri("http://localhost/cb").is_ok());
        assert!(validate_redirect_uri("com.example.app:/cb").is_ok());
        assert!(validate_redirect_uri("http://app.example.com/cb").is_err());
        assert!(validate_redirect_uri("https://app.example.com/cb#x").is_err());
        assert!(validate_redirect_uri("/relative").is_err());
    }

    #[test]
    fn private_key_jwt_needs_keys() {
        let spec = ClientSpec {
            auth_method: AuthMethod::PrivateKeyJwt,
            ..machine()
        };
        assert_eq!(fields(&spec), vec!["jwks_uri"]);
    }

    #[test]
    fn bad_ids_scopes_and_lifetimes_are_named() {
        let spec = ClientSpec {
            client_id: "has space".into(),
            scopes: vec!["a\"b".into()],
            access_token_lifetime_seconds: 5,
            ..machine()
        };
        assert_eq!(
            fields(&spec),
            vec!["client_id", "scopes", "access_token_lifetime_seconds"]
        );
    }

    #[test]
    fn access_token_alg_must_be_a_tenant_algorithm() {
        let spec = ClientSpec {
            access_token_alg: Some(Algorithm::Rs256),
            ..machine()
        };
        assert!(
            spec.validate(&[Algorithm::Es256])
                .iter()
                .any(|e| e.field == "access_token_alg")
        );
    }

    #[test]
    fn pairwise_clients_need_one_sector() {
        let spec = ClientSpec {
            grant_types: vec![GrantType::AuthorizationCode],
            redirect_uris: vec![
                "https://a.example.com/cb".into(),
                "https://b.example.com/cb".into(),
            ],
            subject_type: SubjectType::Pairwise,
            ..machine()
        };
        assert_eq!(fields(&spec), vec!["sector_identifier_uri"]);
        let with_sector = ClientSpec {
            sector_identifier_uri: Some("https://sector.example.com/uris.json".into()),
            ..spec.clone()
        };
        assert!(fields(&with_sector).is_empty());
        assert_eq!(with_sector.sector(), "sector.example.com");
        let one_host = ClientSpec {
            redirect_uris: vec![
                "https://A.example.com/cb".into(),
                "https://a.example.com/other".into(),
            ],
            ..spec.clone()
        };
        assert!(fields(&one_host).is_empty());
        assert_eq!(one_host.sector(), "a.example.com");
        let bad = ClientSpec {
            sector_identifier_uri: Some("ftp://x.example.com/".into()),
            ..spec
        };
        assert_eq!(fields(&bad), vec!["sector_identifier_uri"]);
    }

    #[test]
    fn id_token_alg_must_be_a_tenant_algorithm() {
        let spec = ClientSpec {
            id_token_alg: Some(Algorithm::EdDsa),
            ..machine()
        };
        let errors = spec.validate(&[Algorithm::Rs256]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "id_token_alg");
        assert!(spec.validate(&[Algorithm::EdDsa]).is_empty());
    }
}
