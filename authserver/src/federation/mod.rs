//! Signing in through an upstream OpenID Connect provider, an OAuth 2.0 provider
//! with a user API (GitHub-style, [`user_api`]), or an LDAP directory ([`ldap`]): the
//! protocol half (the interaction
//! engine's `upstream` step decides what a sign-in does with the result).
//!
//! [`FederationService::begin`] reads the upstream's discovery document and builds the
//! authorization request: code flow, PKCE (S256), a fresh `state` and `nonce`, all three
//! secrets kept by the caller in the browser's server-side session ([`UpstreamAttempt`]).
//! [`FederationService::complete`] checks the callback (an error, RFC 9207 `iss`),
//! redeems the code at the token endpoint with the client secret, validates the ID
//! token ([`id_token`]) and, when configured, reads userinfo (same `sub`). The
//! upstream's tokens are kept, sealed, only for a provider with `storeTokens`
//! ([`tokens`]).
//!
//! Everything goes through the bounded fetcher. Discovery documents are cached; the
//! upstream's key set too, refetched when a token names an unknown `kid` (upstream key
//! rotation) — at once for the first miss, then at most every 10 s, so forged kids
//! cannot turn us into a request amplifier.

mod check;
pub mod claims;
pub mod id_token;
pub mod ldap;
pub mod tokens;
mod user_api;

use std::sync::Arc;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::{Clock, UnixTime};
use crate::crypto::kek::Kek;
use crate::crypto::{b64url, random_bytes};
use crate::domain::federation::{SecretSource, UpstreamClientAuth, UpstreamKind, UpstreamProvider};
use crate::domain::policy::TenantPolicy;
use crate::domain::tenant::Tenant;
use crate::oauth::client_documents::{DocumentCache, UPSTREAM_DISCOVERY, UPSTREAM_JWKS};
use crate::outbound::Fetcher;
use crate::store::Store;
pub use claims::UpstreamIdentity;
pub use ldap::DirectoryAnswer;

/// How long a browser may take at the upstream before the callback.
pub const ATTEMPT_SECONDS: i64 = 600;
/// Token and userinfo responses are small JSON documents.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest callback parameter we read (`code`, `state`, `error`, `iss`).
pub const MAX_PARAM_LEN: usize = 2048;

/// A started upstream sign-in, kept in the browser session until its callback (and
/// taken out of it, once, when the callback arrives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamAttempt {
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    /// The authorization request the sign-in is for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub expires_at: UnixTime,
}

/// What the upstream sent back to our callback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    /// RFC 9207 `iss`.
    pub iss: Option<String>,
}

/// Why an upstream sign-in failed. The `Display` text is for logs: it names what
/// failed, never a secret, code or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    /// The upstream refused (an `error` on the callback, an error from its token
    /// endpoint) or could not be reached or read.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The upstream's answer does not hold up: `iss`, the ID token, userinfo's `sub`.
    #[error("invalid upstream response: {0}")]
    Invalid(String),
    /// Our side: the client secret cannot be read.
    #[error("upstream provider misconfigured: {0}")]
    Config(String),
    /// The account is not one the provider admits (`oauth2.allowedOrgs`).
    #[error("denied by policy: {0}")]
    Denied(String),
}

impl FederationError {
    /// The audit class: `upstream_error`, `invalid_token` or `denied_by_policy`.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Upstream(_) | Self::Config(_) => "upstream_error",
            Self::Invalid(_) => "invalid_token",
            Self::Denied(_) => "denied_by_policy",
        }
    }

    /// The message without the class's prefix.
    pub fn detail(&self) -> &str {
        match self {
            Self::Upstream(m) | Self::Invalid(m) | Self::Config(m) | Self::Denied(m) => m,
        }
    }

    /// The upstream's own error code, when it sent one on the callback.
    pub fn upstream_code(&self) -> Option<&str> {
        match self {
            Self::Upstream(m) => m.strip_prefix("callback error ").filter(|c| !c.is_empty()),
            _ => None,
        }
    }
}

type Result<T, E = FederationError> = std::result::Result<T, E>;

/// The endpoints of a discovery document.
#[derive(Debug, Clone)]
struct Endpoints {
    authorization: String,
    token: String,
    jwks_uri: String,
    userinfo: Option<String>,
    /// RFC 9207 §3: the upstream promises `iss` on every callback.
    iss_parameter: bool,
}

/// Upstream sign-ins over the bounded fetcher.
#[derive(Debug)]
pub struct FederationService {
    fetcher: Arc<Fetcher>,
    discovery: DocumentCache,
    jwks: DocumentCache,
    clock: Arc<dyn Clock>,
    /// LDAP directories' service-account connections.
    directories: ldap::Directories,
    /// Seals and opens kept upstream tokens.
    kek: Arc<Kek>,
    store: Store,
}

/// Why a token reader gets no upstream token.
#[derive(Debug, thiserror::Error)]
pub enum TokenReadError {
    #[error("no such provider, or it keeps no tokens")]
    UnknownProvider,
    #[error("the client is not one of the provider's tokenReaders")]
    NotAReader,
    #[error("no upstream token is kept for the user, or it has expired")]
    NoneKept,
    #[error("the kept upstream token does not open: {0}")]
    Sealed(#[from] crate::crypto::kek::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl FederationService {
    pub fn new(fetcher: Arc<Fetcher>, clock: Arc<dyn Clock>, store: Store, kek: Arc<Kek>) -> Self {
        Self {
            discovery: DocumentCache::new(Arc::clone(&fetcher), UPSTREAM_DISCOVERY),
            jwks: DocumentCache::new(Arc::clone(&fetcher), UPSTREAM_JWKS),
            fetcher,
            clock,
            directories: ldap::Directories::default(),
            kek,
            store,
        }
    }

    /// The upstream access token kept for `user_id` at `provider_id`, for `client_id`:
    /// the provider must keep tokens and list the client in `tokenReaders`. Audited
    /// (`upstream.token_read`).
    pub async fn upstream_token(
        &self,
        tenant: &Tenant,
        provider_id: &str,
        user_id: &str,
        client_id: &str,
    ) -> Result<Value, TokenReadError> {
        let federation = TenantPolicy::of(tenant).federation;
        let provider = federation
            .provider(provider_id)
            .filter(|p| p.store_tokens)
            .ok_or(TokenReadError::UnknownProvider)?;
        if !provider.token_readers.iter().any(|c| c == client_id) {
            return Err(TokenReadError::NotAReader);
        }
        let now = self.clock.now();
        let Some(link) = self
            .store
            .link_with_tokens(&tenant.id, user_id, provider_id)
            .await?
        else {
            return Err(TokenReadError::NoneKept);
        };
        let kept = tokens::open(&self.kek, &link)?
            .filter(|k| !k.expired(now))
            .ok_or(TokenReadError::NoneKept)?;
        let event = crate::store::audit::AuditEvent::new(&tenant.id, now, "upstream.token_read")
            .actor(Some(client_id))
            .subject(Some(user_id))
            .details(serde_json::json!({ "provider": provider_id, "upstream_sub": link.subject }));
        self.store.audit(event).await;
        Ok(kept.for_reader(provider_id, now))
    }

    /// Checks a username and password against the directory of `p` (`kind: ldap`).
    pub async fn directory_sign_in(
        &self,
        p: &UpstreamProvider,
        username: &str,
        password: &SecretString,
    ) -> Result<DirectoryAnswer> {
        let Some(d) = &p.ldap else {
            return Err(FederationError::Config("not a directory".into()));
        };
        self.directories
            .authenticate(p, d, username, password)
            .await
    }

    /// The authorization URL to send the browser to, and the attempt to keep.
    /// `login_hint` and `prompt=login` are passed through when the request had them.
    pub async fn begin(
        &self,
        p: &UpstreamProvider,
        redirect_uri: &str,
        request: Option<&str>,
        login_hint: Option<&str>,
        prompt_login: bool,
    ) -> Result<(String, UpstreamAttempt)> {
        if p.kind == UpstreamKind::Ldap {
            return Err(FederationError::Config(
                "a directory is signed in to with the password form".into(),
            ));
        }
        let endpoints = self.endpoints(p).await?;
        let attempt = UpstreamAttempt {
            provider: p.id.clone(),
            state: b64url(&random_bytes::<32>()),
            nonce: b64url(&random_bytes::<32>()),
            code_verifier: b64url(&random_bytes::<32>()),
            request: request.map(str::to_owned),
            expires_at: self.clock.now() + ATTEMPT_SECONDS,
        };
        let mut url = url::Url::parse(&endpoints.authorization)
            .map_err(|_| FederationError::Upstream("authorization_endpoint is not a URL".into()))?;
        // `openid` makes an OpenID Connect request; an OAuth 2.0 provider gets exactly
        // the configured scopes.
        let mut scopes: Vec<&str> = match p.kind {
            UpstreamKind::Oidc => vec!["openid"],
            UpstreamKind::Oauth2 | UpstreamKind::Ldap => Vec::new(),
        };
        scopes.extend(
            p.scopes
                .iter()
                .map(String::as_str)
                .filter(|s| *s != "openid"),
        );

        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &p.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &scopes.join(" "))
                .append_pair("state", &attempt.state)
                .append_pair("code_challenge", &s256(&attempt.code_verifier))
                .append_pair("code_challenge_method", "S256");
            if p.kind == UpstreamKind::Oidc {
                q.append_pair("nonce", &attempt.nonce);
            }
            if let Some(hint) = login_hint {
                q.append_pair("login_hint", hint);
            }
            if prompt_login {
                q.append_pair("prompt", "login");
            }
        }
        Ok((url.into(), attempt))
    }

    /// Finishes the sign-in `attempt` (already matched to the callback's `state` by
    /// the caller): the upstream account, or why not.
    pub async fn complete(
        &self,
        tenant_id: &str,
        p: &UpstreamProvider,
        attempt: &UpstreamAttempt,
        redirect_uri: &str,
        callback: &Callback,
    ) -> Result<UpstreamIdentity> {
        if let Some(error) = &callback.error {
            return Err(FederationError::Upstream(format!(
                "callback error {}",
                error_code(error)
            )));
        }
        let endpoints = self.endpoints(p).await?;
        // RFC 9207 §2.4: a callback from another issuer is a mix-up attack; an upstream
        // that promised `iss` must send it.
        match &callback.iss {
            Some(iss) if iss != &p.issuer => {
                return Err(FederationError::Invalid(
                    "callback iss is another issuer".into(),
                ));
            }
            None if endpoints.iss_parameter => {
                return Err(FederationError::Invalid("callback without iss".into()));
            }
            _ => {}
        }
        let Some(code) = callback.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err(FederationError::Upstream("callback without a code".into()));
        };
        let tokens = self
            .redeem(p, &endpoints, code, attempt, redirect_uri)
            .await?;
        let (subject, claims) = match p.kind {
            UpstreamKind::Oidc => self.oidc_claims(p, &endpoints, &tokens, attempt).await?,
            UpstreamKind::Oauth2 => {
                let access_token = tokens
                    .get("access_token")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        FederationError::Upstream("no access_token in the token response".into())
                    })?;
                user_api::claims(&self.fetcher, p, access_token).await?
            }
            UpstreamKind::Ldap => {
                return Err(FederationError::Config(
                    "a directory has no callback".into(),
                ));
            }
        };
        let mut identity = claims::identity(p, &subject, &claims);
        if p.store_tokens {
            identity.tokens = tokens::seal(
                &self.kek,
                tenant_id,
                &p.id,
                &identity.subject,
                &tokens,
                self.clock.now(),
            );
        }
        Ok(identity)
    }

    /// The validated ID token's `sub` and claims, with userinfo's when configured.
    async fn oidc_claims(
        &self,
        p: &UpstreamProvider,
        endpoints: &Endpoints,
        tokens: &Map<String, Value>,
        attempt: &UpstreamAttempt,
    ) -> Result<(String, Map<String, Value>)> {
        let id_token = tokens
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| FederationError::Invalid("no id_token in the token response".into()))?;
        let mut claims = self
            .validate(p, endpoints, id_token, &attempt.nonce)
            .await?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if p.userinfo
            && let Some(access_token) = tokens.get("access_token").and_then(Value::as_str)
        {
            let info = self.userinfo(endpoints, access_token).await?;
            if info.get("sub").and_then(Value::as_str) != Some(subject.as_str()) {
                return Err(FederationError::Invalid(
                    "userinfo sub is not the ID token's".into(),
                ));
            }
            // Signed claims win; userinfo fills in what the ID token left out.
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
        Ok((subject, claims))
    }

    async fn endpoints(&self, p: &UpstreamProvider) -> Result<Endpoints> {
        if let Some(o) = &p.oauth2 {
            // No discovery, no keys: the configured endpoints.
            return Ok(Endpoints {
                authorization: o.authorization_endpoint.clone(),
                token: o.token_endpoint.clone(),
                jwks_uri: String::new(),
                userinfo: None,
                iss_parameter: false,
            });
        }
        let doc = self
            .discovery
            .get(&p.discovery_url(), false)
            .await
            .map_err(FederationError::Upstream)?;
        discovered(p, &doc)
    }

    /// The token response for `code` (RFC 6749 §4.1.3, with the PKCE verifier).
    async fn redeem(
        &self,
        p: &UpstreamProvider,
        endpoints: &Endpoints,
        code: &str,
        attempt: &UpstreamAttempt,
        redirect_uri: &str,
    ) -> Result<Map<String, Value>> {
        let secret = read_secret(&p.client_secret)?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", attempt.code_verifier.as_str()),
        ];
        let basic;
        let mut headers = vec![("accept", "application/json")];
        match p.token_endpoint_auth_method {
            UpstreamClientAuth::ClientSecretBasic => {
                basic = basic_auth(&p.client_id, &secret);
                headers.push(("authorization", basic.expose_secret()));
            }
            UpstreamClientAuth::ClientSecretPost => {
                form.push(("client_id", p.client_id.as_str()));
                form.push(("client_secret", secret.expose_secret()));
            }
        }
        let (status, fetched) = self
            .fetcher
            .post_form(&endpoints.token, &headers, &form, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| FederationError::Upstream(format!("token endpoint: {e}")))?;
        let body: Value = serde_json::from_slice(&fetched.body).unwrap_or(Value::Null);
        // GitHub answers a bad code with 200 and an `error` member: an error either way.
        if !(200..300).contains(&status) || body.get("error").is_some() {
            let code = body
                .get("error")
                .and_then(Value::as_str)
                .map_or("none", error_code);
            return Err(FederationError::Upstream(format!(
                "token endpoint answered HTTP {status} (error {code})"
            )));
        }
        match body {
            Value::Object(m) => Ok(m),
            _ => Err(FederationError::Upstream(
                "token endpoint answered no JSON object".into(),
            )),
        }
    }

    /// The ID token's claims; an unknown `kid` refetches the key set once.
    async fn validate(
        &self,
        p: &UpstreamProvider,
        endpoints: &Endpoints,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>> {
        let expect = id_token::Expect {
            issuer: &p.issuer,
            client_id: &p.client_id,
            nonce,
            now: self.clock.now(),
        };
        let keys = self
            .jwks
            .get(&endpoints.jwks_uri, false)
            .await
            .map_err(FederationError::Upstream)?;
        let result = match id_token::validate(token, &keys, &expect) {
            Err(id_token::Refused::UnknownKey) => {
                let keys = self
                    .jwks
                    .get(&endpoints.jwks_uri, true)
                    .await
                    .map_err(FederationError::Upstream)?;
                id_token::validate(token, &keys, &expect)
            }
            other => other,
        };
        result.map_err(|e| FederationError::Invalid(format!("ID token: {e}")))
    }

    async fn userinfo(
        &self,
        endpoints: &Endpoints,
        access_token: &str,
    ) -> Result<Map<String, Value>> {
        let Some(url) = &endpoints.userinfo else {
            return Err(FederationError::Upstream(
                "userinfo asked for, but the upstream has no userinfo_endpoint".into(),
            ));
        };
        let bearer = SecretString::from(format!("Bearer {access_token}"));
        let fetched = self
            .fetcher
            .get(
                url,
                &[
                    ("authorization", bearer.expose_secret()),
                    ("accept", "application/json"),
                ],
                MAX_RESPONSE_BYTES,
                None,
            )
            .await
            .map_err(|e| FederationError::Upstream(format!("userinfo: {e}")))?;
        match serde_json::from_slice(&fetched.body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(FederationError::Upstream(
                "userinfo is not a JSON object (signed userinfo is not supported)".into(),
            )),
        }
    }
}

/// The endpoints of `p`'s discovery document `doc`, if it is `p`'s.
fn discovered(p: &UpstreamProvider, doc: &Value) -> Result<Endpoints> {
    let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
    // OpenID Connect Discovery §4.3: the document must be the configured issuer's.
    match text("issuer") {
        Some(issuer) if issuer == p.issuer => {}
        other => {
            // The upstream's text, cut short and escaped: it goes into logs and conditions.
            let named: String = other.unwrap_or_default().chars().take(100).collect();
            return Err(FederationError::Upstream(format!(
                "the discovery document names another issuer ({named:?})"
            )));
        }
    }
    let missing = || FederationError::Upstream("discovery document incomplete".into());
    Ok(Endpoints {
        authorization: text("authorization_endpoint").ok_or_else(missing)?,
        token: text("token_endpoint").ok_or_else(missing)?,
        jwks_uri: text("jwks_uri").ok_or_else(missing)?,
        userinfo: text("userinfo_endpoint"),
        iss_parameter: doc.get("authorization_response_iss_parameter_supported")
            == Some(&Value::Bool(true)),
    })
}

/// Reads a client secret where its source says; checked again at every use, so a
/// rotated file is picked up.
pub fn read_secret(source: &SecretSource) -> Result<SecretString> {
    let value = match (&source.env, &source.file) {
        (Some(var), _) => std::env::var(var).map_err(|_| {
            FederationError::Config(format!("environment variable {var} is not set"))
        })?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| FederationError::Config(format!("cannot read {path}: {}", e.kind())))?,
        (None, None) => return Err(FederationError::Config("no client secret source".into())),
    };
    let value = value.trim_end();
    if value.is_empty() {
        return Err(FederationError::Config("the client secret is empty".into()));
    }
    Ok(SecretString::from(value.to_owned()))
}

/// RFC 7636 S256: base64url(SHA-256(verifier)).
fn s256(verifier: &str) -> String {
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

/// `Basic` credentials (RFC 6749 §2.3.1: id and secret form-encoded first).
fn basic_auth(client_id: &str, secret: &SecretString) -> SecretString {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(client_id), enc(secret.expose_secret()));
    SecretString::from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

/// An upstream's error code as we log it: RFC 6749 codes are ASCII words; anything
/// else is cut down to that.
fn error_code(code: &str) -> &str {
    let end = code
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(code.len(), |(i, _)| i);
    &code[..end.min(64)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let b = basic_auth("a b", &SecretString::from("p:w".to_owned()));
        assert_eq!(
            b.expose_secret(),
            &format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("a+b:p%3Aw")
            )
        );
    }

    #[test]
    fn upstream_error_codes_are_cut_to_a_word() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("bad\r\ninjected"), "bad");
        let e =
            FederationError::Upstream(format!("callback error {}", error_code("access_denied")));
        assert_eq!(e.upstream_code(), Some("access_denied"));
        assert_eq!(e.class(), "upstream_error");
        assert_eq!(
            FederationError::Invalid("x".into()).class(),
            "invalid_token"
        );
    }

    #[test]
    fn a_discovery_document_must_name_the_configured_issuer() {
        let p: UpstreamProvider = serde_json::from_value(serde_json::json!({
            "id": "corp", "displayName": "Corp", "issuer": "https://login.corp.example",
            "clientId": "c", "clientSecret": {"env": "X"}}))
        .unwrap();
        let doc = |issuer: Value| {
            serde_json::json!({"issuer": issuer, "authorization_endpoint": "https://a",
                               "token_endpoint": "https://t", "jwks_uri": "https://j"})
        };
        let ok = discovered(&p, &doc("https://login.corp.example".into())).unwrap();
        assert_eq!(ok.jwks_uri, "https://j");
        for (named, quoted) in [
            (
                Value::from("https://evil.example"),
                "\"https://evil.example\"",
            ),
            (Value::Null, "\"\""),
            (
                Value::from("x".repeat(500)),
                &*format!("{:?}", "x".repeat(100)),
            ),
        ] {
            let err = discovered(&p, &doc(named)).unwrap_err();
            assert_eq!(
                err.detail(),
                format!("the discovery document names another issuer ({quoted})")
            );
        }
        let mut incomplete = doc("https://login.corp.example".into());
        incomplete.as_object_mut().unwrap().remove("jwks_uri");
        assert_eq!(
            discovered(&p, &incomplete).unwrap_err().detail(),
            "discovery document incomplete"
        );
    }

    #[test]
    fn secrets_are_read_from_their_source_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let file = SecretSource {
            env: None,
            file: Some(path.display().to_string()),
        };
        assert_eq!(read_secret(&file).unwrap().expose_secret(), "s3cret");
        let missing = SecretSource {
            env: None,
            file: Some(dir.path().join("nope").display().to_string()),
        };
        assert!(matches!(
            read_secret(&missing),
            Err(FederationError::Config(_))
        ));
        let unset = SecretSource {
            env: Some("GATEHOUSE_TEST_SURELY_UNSET_VARIABLE".into()),
            file: None,
        };
        assert!(matches!(
            read_secret(&unset),
            Err(FederationError::Config(_))
        ));
    }
}
