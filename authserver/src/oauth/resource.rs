//! What every protected resource of ours does with a request's access token: read it
//! from the request (RFC 6750 §2: the `Authorization` header or the `access_token` form
//! field, not both), verify it (signature, issuer, expiry, revocation, its client and
//! grant still alive) and check its binding (RFC 9449: a DPoP-bound token only with a
//! proof of its key). UserInfo and the Management API build on it; a refusal carries the
//! scheme and error for the RFC 6750 §3 / RFC 9449 §7.1 challenge.

use serde_json::Value;

use super::OAuthService;
use super::dpop::Expectation;
use super::error::{ErrorCode, OAuthError};
use crate::domain::tenant::Tenant;

/// A resource request's access token, as presented.
#[derive(Debug)]
pub struct ResourceRequest<'a> {
    pub method: &'a str,
    /// The endpoint URL (DPoP `htu`).
    pub url: String,
    pub authorization: Option<&'a str>,
    pub dpop: Vec<&'a str>,
    /// The `access_token` form field (POST, RFC 6750 §2.2).
    pub form_token: Option<String>,
}

/// The authentication scheme of a resource request (RFC 6750 Bearer, RFC 9449 DPoP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScheme {
    Bearer,
    Dpop,
}

impl TokenScheme {
    /// The scheme's name, as in `Authorization` and `WWW-Authenticate`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScheme::Bearer => "Bearer",
            TokenScheme::Dpop => "DPoP",
        }
    }
}

/// Why a resource request was refused (RFC 6750 §3, RFC 9449 §7.1): the scheme the
/// client is to use and the error. The HTTP edge turns it into a status and a
/// `WWW-Authenticate` challenge.
#[derive(Debug)]
pub struct ResourceError {
    pub scheme: TokenScheme,
    /// `None` when no token was sent at all (RFC 6750 §3.1: no error code then).
    pub error: Option<OAuthError>,
    /// With `insufficient_scope`: the scope the request needs (the challenge's `scope`).
    pub scope: Option<String>,
}

impl ResourceError {
    pub(crate) fn new(scheme: TokenScheme, code: ErrorCode, d: &str) -> Self {
        Self {
            scheme,
            error: Some(OAuthError::new(code, d)),
            scope: None,
        }
    }

    pub(super) fn invalid_request(d: &str) -> Self {
        Self::new(TokenScheme::Bearer, ErrorCode::InvalidRequest, d)
    }

    pub(super) fn invalid_token(scheme: TokenScheme, d: &str) -> Self {
        Self::new(scheme, ErrorCode::InvalidToken, d)
    }
}

/// A failure on our side (500, or 503 during an outage), answered with a Bearer
/// challenge.
impl From<OAuthError> for ResourceError {
    fn from(e: OAuthError) -> Self {
        Self {
            scheme: TokenScheme::Bearer,
            error: Some(e),
            scope: None,
        }
    }
}

impl From<crate::store::Error> for ResourceError {
    fn from(e: crate::store::Error) -> Self {
        OAuthError::from(e).into()
    }
}

impl From<crate::clients::Error> for ResourceError {
    fn from(e: crate::clients::Error) -> Self {
        OAuthError::from(e).into()
    }
}

/// Splits `Authorization: <scheme> <token>` (scheme case-insensitive).
fn credentials(header: &str) -> Option<(TokenScheme, &str)> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((TokenScheme::Bearer, token))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some((TokenScheme::Dpop, token))
    } else {
        None
    }
}

/// A verified access token and the scheme it came with.
#[derive(Debug)]
pub struct VerifiedToken {
    pub scheme: TokenScheme,
    pub claims: std::sync::Arc<Value>,
}

impl VerifiedToken {
    /// The token's scopes (`scope`, space-separated).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
    }

    /// Whether the token's `aud` (a string or a list) names `audience`.
    pub fn is_for(&self, audience: &str) -> bool {
        match self.claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        }
    }

    /// A claim's text value.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// The user and the client an access token was issued to, through its live grant.
#[derive(Debug)]
pub struct TokenHolder {
    pub user: crate::store::users::StoredUser,
    pub client: std::sync::Arc<crate::store::clients::StoredClient>,
}

impl OAuthService {
    /// Who holds the verified access token with `claims`: its grant must be live, its
    /// user and client still there; a token without a user (client credentials) is
    /// `invalid_token` here.
    pub async fn token_holder(
        &self,
        tenant: &Tenant,
        scheme: TokenScheme,
        claims: &Value,
    ) -> Result<TokenHolder, ResourceError> {
        let not_user =
            || ResourceError::invalid_token(scheme, "the access token is invalid or expired");
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let grant_id = self
            .store
            .grant_of_jti(&tenant.id, jti)
            .await?
            .ok_or_else(not_user)?;
        let grant = self
            .store
            .get_grant(&tenant.id, &grant_id)
            .await?
            .filter(|g| g.revoked_at.is_none())
            .ok_or_else(not_user)?;
        let user = self
            .store
            .get_user(&tenant.id, &grant.user_id)
            .await?
            .ok_or_else(not_user)?;
        let client = self
            .clients
            .get(&tenant.id, &grant.client_id)
            .await?
            .ok_or_else(not_user)?;
        Ok(TokenHolder { user, client })
    }

    /// The access token of `req`, verified and its binding checked; what it may be used
    /// for (scopes, audience) is the resource's to decide.
    pub async fn verify_resource_token(
        &self,
        tenant: &Tenant,
        req: &ResourceRequest<'_>,
    ) -> Result<VerifiedToken, ResourceError> {
        let (scheme, token) = match (req.authorization, req.form_token.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(ResourceError::invalid_request(
                    "send the access token in one place only",
                ));
            }
            (Some(h), None) => credentials(h).ok_or_else(|| {
                ResourceError::invalid_request(
                    "the Authorization header must be Bearer or DPoP with a token",
                )
            })?,
            (None, Some(t)) if !t.is_empty() => (TokenScheme::Bearer, t),
            _ => {
                return Err(ResourceError {
                    scheme: TokenScheme::Bearer,
                    error: None,
                    scope: None,
                });
            }
        };
        let active = self.active_token(tenant, token).await?.ok_or_else(|| {
            ResourceError::invalid_token(scheme, "the access token is invalid or expired")
        })?;
        let claims = active.claims;
        let jkt = claims
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str);
        match (scheme, jkt) {
            (TokenScheme::Bearer, Some(_)) => {
                return Err(ResourceError::invalid_token(
                    TokenScheme::Dpop,
                    "this access token is DPoP-bound: use the DPoP scheme with a proof",
                ));
            }
            (TokenScheme::Dpop, None) => {
                return Err(ResourceError::invalid_token(
                    TokenScheme::Bearer,
                    "this access token is not DPoP-bound: use the Bearer scheme",
                ));
            }
            (TokenScheme::Dpop, Some(jkt)) => {
                if req.dpop.is_empty() {
                    return Err(ResourceError::new(
                        TokenScheme::Dpop,
                        ErrorCode::InvalidDpopProof,
                        "a DPoP proof is required",
                    ));
                }
                let proof = self
                    .dpop
                    .validate(
                        &tenant.id,
                        &req.dpop,
                        &Expectation {
                            method: req.method,
                            url: &req.url,
                            access_token: Some(token),
                        },
                    )
                    .await
                    .map_err(|e| {
                        if e.is_server_failure() {
                            return ResourceError::from(e);
                        }
                        // RFC 9449 §7.1: at a resource, every refused proof is
                        // `invalid_dpop_proof`, except a nonce to retry with.
                        let code = match e.code {
                            ErrorCode::UseDpopNonce => ErrorCode::UseDpopNonce,
                            _ => ErrorCode::InvalidDpopProof,
                        };
                        ResourceError {
                            scheme: TokenScheme::Dpop,
                            error: Some(e.with_code(code)),
                            scope: None,
                        }
                    })?;
                if proof.is_none_or(|p| p.jkt != jkt) {
                    return Err(ResourceError::invalid_token(
                        TokenScheme::Dpop,
                        "the DPoP proof key does not match the token's key",
                    ));
                }
            }
            _ => {}
        }
        Ok(VerifiedToken { scheme, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::{TokenScheme, credentials};

    #[test]
    fn authorization_schemes_are_case_insensitive() {
        assert_eq!(
            credentials("Bearer abc"),
            Some((TokenScheme::Bearer, "abc"))
        );
        assert_eq!(
            credentials("bearer abc"),
            Some((TokenScheme::Bearer, "abc"))
        );
        assert_eq!(credentials("DPoP abc"), Some((TokenScheme::Dpop, "abc")));
        assert_eq!(credentials("Basic abc"), None);
        assert_eq!(credentials("Bearer "), None);
    }
}
