//! Client authentication at the token, introspection and revocation endpoints
//! (RFC 6749 §2.3, RFC 7523 §2.2 / §3, OIDC Core §9). Exactly one method per request; the
//! method used must be the one registered.

use std::sync::Arc;

use base64::Engine as _;
use secrecy::SecretString;
use serde_json::Value;

use super::OAuthService;
use super::error::OAuthError;
use super::form::Form;
use crate::crypto::jws;
use crate::domain::client::{AuthMethod, ClientType};
use crate::domain::signing_key::Algorithm;
use crate::domain::tenant::Tenant;
use crate::store::audit::AuditEvent;
use crate::store::clients::StoredClient;
use crate::store::replay::ReplayCache;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client that proved who it is.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: Arc<StoredClient>,
    pub method: AuthMethod,
}

/// The credentials a request carries, before checking them.
enum Presented {
    Basic { id: String, secret: SecretString },
    Post { id: String, secret: SecretString },
    Assertion { assertion: String },
    None { id: String },
}

/// Failure reasons, for the audit log (never the credential itself).
#[derive(Debug, Clone, Copy)]
enum Failure {
    UnknownClient,
    WrongSecret,
    MethodMismatch,
    BadAssertion,
    ReplayedAssertion,
}

/// Why an assertion was not accepted: the client's fault (audited, `invalid_client`) or
/// ours (passed on as it is: an outage must not read as bad credentials).
enum AssertionError {
    Refused(Option<String>, Failure),
    Failed(OAuthError),
}

impl<E> From<E> for AssertionError
where
    E: Into<OAuthError> + std::error::Error,
{
    fn from(e: E) -> Self {
        AssertionError::Failed(e.into())
    }
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::UnknownClient => "unknown_client",
            Failure::WrongSecret => "wrong_secret",
            Failure::MethodMismatch => "method_mismatch",
            Failure::BadAssertion => "bad_assertion",
            Failure::ReplayedAssertion => "replayed_assertion",
        }
    }
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
fn decode_basic(header: &str) -> Result<(String, SecretString), OAuthError> {
    let bad =
        || OAuthError::invalid_client("malformed Basic credentials").with_basic_challenge(true);
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
        .ok_or_else(bad)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let id = decode(id).filter(|s| !s.is_empty()).ok_or_else(bad)?;
    let secret = decode(secret).ok_or_else(bad)?;
    Ok((id, SecretString::from(secret)))
}

fn presented(authorization: Option<&str>, form: &Form) -> Result<Presented, OAuthError> {
    let basic = authorization
        .filter(|h| h.len() > 6 && h[..6].eq_ignore_ascii_case("basic "))
        .map(decode_basic)
        .transpose()?;
    let form_secret = form.get("client_secret");
    let assertion_type = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    let methods = usize::from(basic.is_some())
        + usize::from(form_secret.is_some())
        + usize::from(assertion.is_some() || assertion_type.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method was used",
        ));
    }
    if let Some((id, secret)) = basic {
        if form.get("client_id").is_some_and(|f| f != id) {
            return Err(OAuthError::invalid_request(
                "client_id does not match the Basic credentials",
            ));
        }
        return Ok(Presented::Basic { id, secret });
    }
    if let Some(secret) = form_secret {
        let id = form.require("client_id")?;
        return Ok(Presented::Post {
            id: id.to_owned(),
            secret: SecretString::from(secret.to_owned()),
        });
    }
    if assertion.is_some() || assertion_type.is_some() {
        if assertion_type != Some(JWT_BEARER) {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {JWT_BEARER}"
            )));
        }
        let assertion = form.require("client_assertion")?;
        return Ok(Presented::Assertion {
            assertion: assertion.to_owned(),
        });
    }
    match form.get("client_id") {
        Some(id) => Ok(Presented::None { id: id.to_owned() }),
        None => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
    }
}

/// The client a request names, unchecked: the id [`OAuthService::authenticate`] goes on
/// to check, found by the same rules (an assertion names its client in `sub`). `None`
/// when the request names none, or names it in a way authentication refuses anyway.
pub(super) fn claimed_client(authorization: Option<&str>, form: &Form) -> Option<String> {
    Some(match presented(authorization, form).ok()? {
        Presented::Basic { id, .. } | Presented::Post { id, .. } | Presented::None { id } => id,
        Presented::Assertion { assertion } => {
            jws::parse(&assertion).ok()?.claim_str("sub")?.to_owned()
        }
    })
}

impl OAuthService {
    /// Authenticates the client of a request to `endpoint_url` (the assertion audience).
    pub async fn authenticate(
        &self,
        tenant: &Tenant,
        endpoint_url: &str,
        authorization: Option<&str>,
        form: &Form,
        ip: Option<&str>,
    ) -> Result<Authenticated, OAuthError> {
        let p = presented(authorization, form)?;
        let basic = matches!(p, Presented::Basic { .. });
        let fail = |id: Option<String>, why: Failure| async move {
            Box::pin(self.audit_auth_failure(tenant, id, why, ip)).await;
            OAuthError::invalid_client("client authentication failed").with_basic_challenge(basic)
        };
        match p {
            Presented::Basic { id, secret } | Presented::Post { id, secret } => {
                let method = if basic {
                    AuthMethod::ClientSecretBasic
                } else {
                    AuthMethod::ClientSecretPost
                };
                let Some(client) = self.lookup(tenant, &id).await? else {
                    self.clients.verify_dummy(&secret);
                    return Err(fail(Some(id), Failure::UnknownClient).await);
                };
                let secret_ok = self.clients.verify_secret(&client, &secret);
                if client.spec.auth_method != method {
                    return Err(fail(Some(id), Failure::MethodMismatch).await);
                }
                if !secret_ok {
                    return Err(fail(Some(id), Failure::WrongSecret).await);
                }
                Ok(Authenticated { client, method })
            }
            Presented::None { id } => {
                let Some(client) = self.lookup(tenant, &id).await? else {
                    return Err(fail(Some(id), Failure::UnknownClient).await);
                };
                if client.spec.client_type != ClientType::Public
                    || client.spec.auth_method != AuthMethod::None
                {
                    return Err(fail(Some(id), Failure::MethodMismatch).await);
                }
                Ok(Authenticated {
                    client,
                    method: AuthMethod::None,
                })
            }
            Presented::Assertion { assertion } => {
                // Boxed, like the audit below: an assertion may fetch the client's JWKS,
                // and that future would otherwise be part of every token request's, copied
                // whole each time the request's future is boxed.
                match Box::pin(self.check_assertion(tenant, endpoint_url, &assertion, form)).await {
                    Ok(client) => Ok(Authenticated {
                        client,
                        method: AuthMethod::PrivateKeyJwt,
                    }),
                    Err(AssertionError::Refused(id, why)) => Err(fail(id, why).await),
                    Err(AssertionError::Failed(e)) => Err(e),
                }
            }
        }
    }

    /// The registered client `id`. A failure to read it is ours (500, or 503 during an
    /// outage), never the client's: it must not read as `invalid_client`.
    async fn lookup(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<Arc<StoredClient>>, crate::clients::Error> {
        self.clients.get(&tenant.id, id).await
    }

    /// RFC 7523 §3 checks for a private_key_jwt assertion.
    async fn check_assertion(
        &self,
        tenant: &Tenant,
        endpoint_url: &str,
        assertion: &str,
        form: &Form,
    ) -> Result<Arc<StoredClient>, AssertionError> {
        let malformed = || AssertionError::Refused(None, Failure::BadAssertion);
        let parsed = jws::parse(assertion).map_err(|_| malformed())?;
        let id = parsed.claim_str("sub").ok_or_else(malformed)?.to_owned();
        let bad = |why| AssertionError::Refused(Some(id.clone()), why);
        if parsed.claim_str("iss") != Some(id.as_str())
            || form.get("client_id").is_some_and(|c| c != id)
        {
            return Err(bad(Failure::BadAssertion));
        }
        let client = self
            .lookup(tenant, &id)
            .await?
            .ok_or_else(|| bad(Failure::UnknownClient))?;
        if client.spec.auth_method != AuthMethod::PrivateKeyJwt {
            return Err(bad(Failure::MethodMismatch));
        }
        // The key: inline JWKS, or the client's jwks_uri (refetched once on a kid miss).
        let kid = parsed.header_str("kid").map(str::to_owned);
        let find = |set: &Value| -> Option<Value> {
            let keys = set.get("keys")?.as_array()?;
            keys.iter()
                .find(|k| match &kid {
                    Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid.as_str()),
                    None => keys.len() == 1,
                })
                .cloned()
        };
        let jwk = match (&client.spec.jwks, &client.spec.jwks_uri) {
            (Some(set), _) => find(set),
            (None, Some(uri)) => {
                let mut jwk = self.jwks.get(uri, false).await.ok().as_ref().and_then(find);
                if jwk.is_none() {
                    jwk = self.jwks.get(uri, true).await.ok().as_ref().and_then(find);
                }
                jwk
            }
            (None, None) => None,
        }
        .ok_or_else(|| bad(Failure::BadAssertion))?;
        parsed
            .verify(&jwk, &Algorithm::ALL)
            .map_err(|_| bad(Failure::BadAssertion))?;

        // aud: the issuer. RFC 7523 §3 also allows the token endpoint URL, but an
        // assertion aimed at an endpoint URL can be replayed at another server that shares
        // it or is tricked into naming it (the 2025 audience-injection findings against
        // private_key_jwt): the endpoint is accepted only with the compatibility setting.
        let mut audiences = vec![tenant.issuer.as_str()];
        if self.tokens.client_assertion_accept_endpoint_audience {
            audiences.push(endpoint_url);
        }
        let max = i64::try_from(self.tokens.client_assertion_max_lifetime_seconds).unwrap_or(300);
        let now = self.clock.now();
        let Some((jti, exp)) = assertion_claims(&parsed, &audiences, now, max) else {
            return Err(bad(Failure::BadAssertion));
        };
        let first_use = self
            .store
            .use_jti(
                ReplayCache::Assertion,
                &tenant.id,
                &id,
                jti,
                exp.max(now) + ASSERTION_SKEW,
            )
            .await?;
        if !first_use {
            return Err(bad(Failure::ReplayedAssertion));
        }
        Ok(client)
    }

    async fn audit_auth_failure(
        &self,
        tenant: &Tenant,
        client_id: Option<String>,
        why: Failure,
        ip: Option<&str>,
    ) {
        tracing::info!(tenant = %tenant.id, client_id = client_id.as_deref().unwrap_or(""),
            reason = why.as_str(), "client authentication failed");
        let e = AuditEvent::new(&tenant.id, self.clock.now(), "client.auth_failed")
            .actor(client_id.as_deref())
            .subject(client_id.as_deref())
            .ip(ip)
            .details(serde_json::json!({ "reason": why.as_str() }));
        self.store.audit(e).await;
    }
}

/// Clock skew allowed on an assertion's `exp`, `iat` and `nbf`.
const ASSERTION_SKEW: i64 = 30;

/// The RFC 7523 §3 claim checks of an assertion whose signature was verified: `aud` names
/// one of `audiences`, `exp` is not past and at most `max_lifetime` ahead, `iat` and
/// `nbf` are not in the future (all with 30 s of skew), and a `jti` of at most 256
/// characters. Returns the `jti` and `exp`. Pure, so it is unit-tested and fuzzed.
pub fn assertion_claims<'a>(
    parsed: &'a jws::Parsed,
    audiences: &[&str],
    now: i64,
    max_lifetime: i64,
) -> Option<(&'a str, i64)> {
    let aud_ok = |a: &str| audiences.contains(&a);
    let aud_matches = match parsed.claims.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    let exp = parsed.claim_i64("exp")?;
    let skew = ASSERTION_SKEW;
    let fresh = exp > now.saturating_sub(skew)
        && exp <= now.saturating_add(max_lifetime).saturating_add(skew)
        && parsed
            .claim_i64("iat")
            .is_none_or(|iat| iat <= now.saturating_add(skew))
        && parsed
            .claim_i64("nbf")
            .is_none_or(|nbf| nbf <= now.saturating_add(skew));
    let jti = parsed
        .claim_str("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)?;
    (aud_matches && fresh).then_some((jti, exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_urlencoded_then_base64() {
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("my%3Aclient:p%40ss+word")
        );
        let (id, secret) = decode_basic(&h).unwrap();
        assert_eq!(id, "my:client");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "p@ss word");
        assert!(decode_basic("Basic !!!").is_err());
        assert!(decode_basic("Basic Zm9v").is_err()); // no colon
    }

    #[test]
    fn two_methods_at_once_are_rejected() {
        let form = Form::from_pairs(&[("client_id", "a"), ("client_secret", "s")]);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("a:s")
        );
        assert!(matches!(
            presented(Some(&basic), &form),
            Err(e) if e.code == super::super::error::ErrorCode::InvalidRequest
        ));
    }

    #[test]
    fn no_credentials_at_all_is_invalid_client() {
        let err = presented(None, &Form::default()).err().unwrap();
        assert_eq!(err.code, super::super::error::ErrorCode::InvalidClient);
    }
}
