//! OAuth protocol errors (RFC 6749 §5.2, RFC 7009, RFC 7662, RFC 8707, RFC 9449). The
//! `Display` of an [`ErrorCode`] is the registered error code.

use std::fmt;

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

/// An OAuth error with what the HTTP layer needs to render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Human-readable, safe to show (never a secret, never database text).
    pub description: Option<String>,
    /// The client tried HTTP Basic: answer 401 with a `WWW-Authenticate: Basic` challenge.
    pub basic_challenge: bool,
    /// A fresh server nonce for `DPoP-Nonce`.
    pub dpop_nonce: Option<String>,
    /// Rate limit state for `X-RateLimit-*` / `Retry-After` headers.
    pub rate: Option<RateHeaders>,
}

/// The figures behind `X-RateLimit-Limit`, `-Remaining`, `-Reset` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset_seconds: u64,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: Some(description.into()),
            basic_challenge: false,
            dpop_nonce: None,
            rate: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }

    /// A failure on our side: an outage (the database is unavailable, anywhere in the
    /// error's source chain) becomes `temporarily_unavailable`; anything else is logged
    /// and becomes a generic `server_error`. Database text never reaches the client.
    pub fn server_error(detail: &(dyn std::error::Error + 'static)) -> Self {
        if crate::store::is_unavailable(detail) {
            // Logged once per outage by the store, not once per refused request.
            tracing::debug!(error = %detail, "request refused: database unavailable");
            return Self::temporarily_unavailable();
        }
        Self::internal(detail)
    }

    /// An internal failure that is not an outage (an invariant that did not hold):
    /// logged, and a generic `server_error`.
    pub fn internal(detail: &dyn fmt::Display) -> Self {
        tracing::error!(error = %detail, "request failed");
        Self::new(ErrorCode::ServerError, "internal error")
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

    #[must_use]
    pub fn with_basic_challenge(mut self, basic: bool) -> Self {
        self.basic_challenge = basic;
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

impl std::error::Error for OAuthError {}
