//! The UserInfo endpoint (OpenID Connect Core §5.3): the claims of the user an access
//! token was issued for, per its scopes, with the same `sub` as the ID token. Errors are
//! RFC 6750 §3 (Bearer) or RFC 9449 §7.1 (DPoP) challenges.

use serde_json::{Map, Value};

use super::OAuthService;
use super::code_grant::user_claims;
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

/// An RFC 6750 §3 / RFC 9449 §7.1 error: status, challenge scheme and error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    pub status: u16,
    /// `Bearer` or `DPoP`.
    pub scheme: &'static str,
    /// `None` when no token was sent at all (§3.1: no error code then).
    pub error: Option<&'static str>,
    pub description: Option<String>,
    pub dpop_nonce: Option<String>,
}

impl ResourceError {
    fn new(status: u16, scheme: &'static str, error: &'static str, d: &str) -> Self {
        Self {
            status,
            scheme,
            error: Some(error),
            description: Some(d.to_owned()),
            dpop_nonce: None,
        }
    }

    fn invalid_token(scheme: &'static str, d: &str) -> Self {
        Self::new(401, scheme, "invalid_token", d)
    }

    /// A failure on our side: 503 `temporarily_unavailable` during an outage, otherwise
    /// 500 `server_error` (see [`OAuthError::server_error`]).
    fn failed(e: &(dyn std::error::Error + 'static)) -> Self {
        Self::from_oauth(&OAuthError::server_error(e))
    }

    /// An `OAuthError` that is a failure on our side (already logged).
    fn from_oauth(e: &OAuthError) -> Self {
        if e.code == ErrorCode::TemporarilyUnavailable {
            Self::new(
                503,
                "Bearer",
                "temporarily_unavailable",
                e.description.as_deref().unwrap_or_default(),
            )
        } else {
            Self::new(500, "Bearer", "server_error", "internal error")
        }
    }
}

/// Splits `Authorization: <scheme> <token>` (scheme case-insensitive).
fn credentials(header: &str) -> Option<(&'static str, &str)> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(("Bearer", token))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some(("DPoP", token))
    } else {
        None
    }
}

impl OAuthService {
    /// `GET|POST {issuer}/userinfo`.
    #[allow(clippy::too_many_lines)] // token, binding, scope, then the user: in order
    pub async fn userinfo(
        &self,
        tenant: &Tenant,
        req: ResourceRequest<'_>,
    ) -> Result<Value, ResourceError> {
        let (scheme, token) = match (req.authorization, req.form_token.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(ResourceError::new(
                    400,
                    "Bearer",
                    "invalid_request",
                    "send the access token in one place only",
                ));
            }
            (Some(h), None) => credentials(h).ok_or_else(|| {
                ResourceError::new(
                    400,
                    "Bearer",
                    "invalid_request",
                    "the Authorization header must be Bearer or DPoP with a token",
                )
            })?,
            (None, Some(t)) if !t.is_empty() => ("Bearer", t),
            _ => {
                return Err(ResourceError {
                    status: 401,
                    scheme: "Bearer",
                    error: None,
                    description: None,
                    dpop_nonce: None,
                });
            }
        };
        let active = self
            .active_token(tenant, token)
            .await
            .map_err(|e| ResourceError::from_oauth(&e))?
            .ok_or_else(|| {
                ResourceError::invalid_token(scheme, "the access token is invalid or expired")
            })?;
        let claims = &active.claims;
        let jkt = claims
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str);
        match (scheme, jkt) {
            ("Bearer", Some(_)) => {
                return Err(ResourceError::invalid_token(
                    "DPoP",
                    "this access token is DPoP-bound: use the DPoP scheme with a proof",
                ));
            }
            ("DPoP", None) => {
                return Err(ResourceError::invalid_token(
                    "Bearer",
                    "this access token is not DPoP-bound: use the Bearer scheme",
                ));
            }
            ("DPoP", Some(jkt)) => {
                if req.dpop.is_empty() {
                    return Err(ResourceError::new(
                        401,
                        "DPoP",
                        "invalid_dpop_proof",
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
                        let error = match e.code {
                            ErrorCode::UseDpopNonce => "use_dpop_nonce",
                            _ if e.is_server_failure() => return ResourceError::from_oauth(&e),
                            _ => "invalid_dpop_proof",
                        };
                        ResourceError {
                            status: 401,
                            scheme: "DPoP",
                            error: Some(error),
                            description: e.description.clone(),
                            dpop_nonce: e.dpop_nonce,
                        }
                    })?;
                if proof.is_none_or(|p| p.jkt != jkt) {
                    return Err(ResourceError::invalid_token(
                        "DPoP",
                        "the DPoP proof key does not match the token's key",
                    ));
                }
            }
            _ => {}
        }
        let scopes: Vec<String> = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !scopes.iter().any(|s| s == "openid") {
            return Err(ResourceError::new(
                403,
                scheme,
                "insufficient_scope",
                "the access token lacks the openid scope",
            ));
        }
        let not_user =
            || ResourceError::invalid_token(scheme, "the access token is invalid or expired");
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let grant_id = self
            .store
            .grant_of_jti(&tenant.id, jti)
            .await
            .map_err(|e| ResourceError::failed(&e))?
            .ok_or_else(not_user)?;
        let grant = self
            .store
            .get_grant(&tenant.id, &grant_id)
            .await
            .map_err(|e| ResourceError::failed(&e))?
            .filter(|g| g.revoked_at.is_none())
            .ok_or_else(not_user)?;
        let user = self
            .store
            .get_user(&tenant.id, &grant.user_id)
            .await
            .map_err(|e| ResourceError::failed(&e))?
            .ok_or_else(not_user)?;
        let client = self
            .clients
            .get(&tenant.id, &grant.client_id)
            .await
            .map_err(|e| ResourceError::failed(&e))?
            .ok_or_else(not_user)?;
        let sub = self
            .user_subject(tenant, &client.spec, &user.user_id)
            .await
            .map_err(|e| {
                if e.is_server_failure() {
                    ResourceError::from_oauth(&e)
                } else {
                    not_user()
                }
            })?;
        let mut out = Map::new();
        out.insert("sub".into(), sub.into());
        for (k, v) in user_claims(&user, &scopes) {
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::credentials;

    #[test]
    fn authorization_schemes_are_case_insensitive() {
        assert_eq!(credentials("Bearer abc"), Some(("Bearer", "abc")));
        assert_eq!(credentials("bearer abc"), Some(("Bearer", "abc")));
        assert_eq!(credentials("DPoP abc"), Some(("DPoP", "abc")));
        assert_eq!(credentials("Basic abc"), None);
        assert_eq!(credentials("Bearer "), None);
    }
}
