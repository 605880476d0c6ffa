//! OAuth protocol errors (RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009, RFC 7662,
//! RFC 8707, RFC 9101, RFC 9126, RFC 9449). The `Display` of an [`ErrorCode`] is the
//! registered error code.
//!
//! An [`OAuthError`] is a verdict on a request, or a failure on our side
//! ([`OAuthError::server`], or `?` on a service error): the latter keeps what failed as
//! its source, for the one log line the HTTP edge writes when it becomes a response,
//! and is never shown to the client. Nothing here logs, and nothing here knows HTTP:
//! statuses and challenges are decided at the edge (`http::error`, `http::userinfo`).

use std::fmt;
use std::sync::Arc;

/// Registered OAuth error codes this server returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// RFC 6749 §5.2: malformed request.
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed (401).
    InvalidClient,
    /// RFC 6749 §5.2: grant invalid, expired, revoked or replayed.
    InvalidGrant,
    /// RFC 6749 §5.2: the client may not use this grant type.
    UnauthorizedClient,
    /// RFC 6749 §5.2: grant type not supported by the server.
    UnsupportedGrantType,
    /// RFC 6749 §5.2: scope not allowed for the client.
    InvalidScope,
    /// RFC 8707 §2: resource / audience not allowed.
    InvalidTarget,
    /// RFC 9449 §5: DPoP proof invalid.
    InvalidDpopProof,
    /// RFC 9449 §8: a server nonce is required (comes with a `DPoP-Nonce` header).
    UseDpopNonce,
    /// RFC 7009 §2.2.1: token type not supported for revocation.
    UnsupportedTokenType,
    /// RFC 6749 §4.1.2.1: the user or server denied the request.
    AccessDenied,
    /// RFC 6749 §4.1.2.1: only `response_type=code` is supported.
    UnsupportedResponseType,
    /// OIDC Core §3.1.2.6: `prompt=none` but the user must sign in…
    LoginRequired,
    /// …or must consent…
    ConsentRequired,
    /// …or must choose an account…
    AccountSelectionRequired,
    /// …or must otherwise interact.
    InteractionRequired,
    /// OpenID Connect Core §3.1.2.6 / RFC 9470: the requested `acr_values` cannot be met.
    UnmetAuthenticationRequirements,
    /// OIDC Core §6: request objects (`request`) are not supported.
    RequestNotSupported,
    /// RFC 9101 §6.2: the `request_uri` is unknown, expired or used.
    InvalidRequestUri,
    /// RFC 6750 §3.1: the access token is expired, revoked, malformed or invalid for
    /// another reason (at a resource endpoint: UserInfo).
    InvalidToken,
    /// RFC 6750 §3.1: the access token lacks a scope the resource needs.
    InsufficientScope,
    /// Rate limit exceeded (429).
    SlowDown,
    /// RFC 6749 §5.2 server_error: something failed on our side (500).
    ServerError,
    /// RFC 6749 §4.1.2.1 temporarily_unavailable: the database is unavailable (503 with
    /// `Retry-After`). Returned by every endpoint, not only the authorization endpoint
    /// the RFC names, so one condition has one code everywhere.
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The registered code, as sent in `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::AccountSelectionRequired => "account_selection_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::UnmetAuthenticationRequirements => "unmet_authentication_requirements",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error: the code and what the client is told, plus the protocol facts the
/// HTTP edge renders (the client tried Basic, a fresh DPoP nonce, rate limit state).
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Human-readable, safe to show (never a secret, never database text).
    pub description: Option<String>,
    /// The client tried HTTP Basic authentication (RFC 6749 §2.3.1): its `invalid_client`
    /// answer names the charset Basic credentials are read in.
    pub basic_challenge: bool,
    /// A fresh server nonce for `DPoP-Nonce`.
    pub dpop_nonce: Option<String>,
    /// Rate limit state for `X-RateLimit-*` / `Retry-After` headers.
    pub rate: Option<RateHeaders>,
    /// What failed on our side (server errors only): the error's source, logged once by
    /// the edge, never sent.
    failure: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// The figures behind `X-RateLimit-Limit`, `-Remaining`, `-Reset` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset_seconds: u64,
}

/// An invariant that did not hold (a tenant without an active key): a server error
/// whose detail is a sentence of ours rather than another error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invariant(String);

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: Some(description.into()),
            basic_challenge: false,
            dpop_nonce: None,
            rate: None,
            failure: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }

    /// A failure on our side: `temporarily_unavailable` when the database is unavailable
    /// (anywhere in the error's source chain), otherwise a generic `server_error`. The
    /// error is kept as the source, for the edge to log; its text never reaches the
    /// client.
    pub fn server(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let e: Arc<dyn std::error::Error + Send + Sync> = Arc::from(e.into());
        let mut out = if crate::store::is_unavailable(&*e) {
            Self::temporarily_unavailable()
        } else {
            Self::new(ErrorCode::ServerError, "internal error")
        };
        out.failure = Some(e);
        out
    }

    /// An internal failure that is not another error (an invariant that did not hold):
    /// a generic `server_error`, with `detail` kept for the edge to log.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::server(Invariant(detail.into()))
    }

    /// The database is unavailable: retry later.
    pub fn temporarily_unavailable() -> Self {
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the service is temporarily unavailable, retry later",
        )
    }

    /// Whether this is a failure on our side (500 or 503) rather than a verdict on the
    /// request: such an error must be passed on, never turned into "invalid" or
    /// "inactive".
    pub fn is_server_failure(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable
        )
    }

    /// What failed on our side, if this is a server failure made from an error.
    pub fn failure(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.failure.as_deref()
    }

    #[must_use]
    pub fn with_basic_challenge(mut self, basic: bool) -> Self {
        self.basic_challenge = basic;
        self
    }

    /// The same error under another code (a DPoP proof refused at a resource endpoint
    /// is `invalid_dpop_proof` there, whatever the proof check called it).
    #[must_use]
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{}: {d}", self.code),
            None => write!(f, "{}", self.code),
        }
    }
}

impl std::error::Error for OAuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failure
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Service errors that reach a protocol endpoint only as failures on our side: `?` turns
/// them into [`OAuthError::server`] (503 during an outage, 500 otherwise).
macro_rules! server_errors {
    ($($e:ty),* $(,)?) => {$(
        impl From<$e> for OAuthError {
            fn from(e: $e) -> Self {
                Self::server(e)
            }
        }
    )*};
}
server_errors!(
    crate::store::Error,
    crate::clients::Error,
    crate::keys::Error,
    crate::subject::Error,
    crate::crypto::signing::Error,
    tokio::task::JoinError,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn outage() -> crate::store::Error {
        crate::store::Error::Unavailable(crate::store::Unavailable::TimedOut(
            std::time::Duration::from_secs(1),
        ))
    }

    #[test]
    fn a_store_error_becomes_a_server_error_that_keeps_its_detail_for_the_log_only() {
        let e = OAuthError::from(crate::store::Error::Corrupt("relation x".into()));
        assert_eq!(e.code, ErrorCode::ServerError);
        assert_eq!(e.description.as_deref(), Some("internal error"));
        assert!(!e.to_string().contains("relation"), "{e}");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("stored data is invalid: relation x")
        );
    }

    #[test]
    fn an_outage_anywhere_in_the_chain_is_temporarily_unavailable() {
        for e in [
            OAuthError::from(outage()),
            OAuthError::from(crate::clients::Error::Store(outage())),
            OAuthError::from(crate::keys::Error::Store(outage())),
            OAuthError::from(crate::subject::Error::Store(outage())),
        ] {
            assert_eq!(e.code, ErrorCode::TemporarilyUnavailable, "{e}");
            assert!(e.is_server_failure());
            assert!(crate::store::is_unavailable(&e), "{e}");
        }
        let bug = OAuthError::internal("tenant main has no active ES256 key");
        assert_eq!(bug.code, ErrorCode::ServerError);
        assert!(!crate::store::is_unavailable(&bug));
        assert_eq!(
            bug.failure().map(ToString::to_string).as_deref(),
            Some("tenant main has no active ES256 key")
        );
    }

    #[test]
    fn verdicts_carry_no_failure() {
        let e = OAuthError::invalid_client("client authentication failed");
        assert!(!e.is_server_failure());
        assert!(e.failure().is_none());
        assert!(std::error::Error::source(&e).is_none());
    }
}
