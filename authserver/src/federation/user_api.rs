//! An OAuth 2.0 provider without OpenID Connect (GitHub-style): the access token reads
//! the user API, and optionally the user's addresses and organisations, into claims for
//! the provider's claim mapping. There is no signed statement here: the user API's
//! answer over TLS, with the access token we just got from the token endpoint, is the
//! provider's word.
//!
//! - user: a JSON object; the subject is the mapped claim (`claims.subject`, GitHub:
//!   `id`, an integer) as a string.
//! - emails: `[{email, primary, verified}]`; the primary verified address (else any
//!   verified one) becomes `email` with `email_verified: true`. Without one, the user
//!   object's address is kept, unverified.
//! - orgs: `[{login}]`, as the claim `orgs` (a list of logins), and the
//!   `allowedOrgs` check (case-insensitive).

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value};

use super::{FederationError, MAX_RESPONSE_BYTES, Result};
use crate::domain::federation::UpstreamProvider;
use crate::outbound::Fetcher;

/// Most organisations read (one page of GitHub's API).
const MAX_ORGS: usize = 100;

/// The account's subject and claims.
pub(super) async fn claims(
    fetcher: &Fetcher,
    p: &UpstreamProvider,
    access_token: &str,
) -> Result<(String, Map<String, Value>)> {
    let Some(o) = &p.oauth2 else {
        return Err(FederationError::Config(
            "kind oauth2 without endpoints".into(),
        ));
    };
    let bearer = SecretString::from(format!("Bearer {access_token}"));
    let Value::Object(mut claims) = get(fetcher, &o.user_url, &bearer, "user API").await? else {
        return Err(FederationError::Upstream(
            "the user API answered no JSON object".into(),
        ));
    };
    let subject = match claims.get(&p.claims.subject) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => {
            return Err(FederationError::Upstream(format!(
                "the user API has no usable {:?}",
                p.claims.subject
            )));
        }
    };
    // Only the emails API vouches for an address; the user object's is unverified.
    claims.insert("email_verified".into(), Value::Bool(false));
    if let Some(url) = &o.emails_url {
        let listed = get(fetcher, url, &bearer, "emails API").await?;
        if let Some(email) = verified_email(&listed) {
            claims.insert(p.claims.email.clone(), Value::String(email));
            claims.insert("email_verified".into(), Value::Bool(true));
        }
    }
    if let Some(url) = &o.orgs_url {
        let orgs = org_logins(&get(fetcher, url, &bearer, "orgs API").await?);
        let allowed = o.allowed_orgs.is_empty()
            || orgs
                .iter()
                .any(|org| o.allowed_orgs.iter().any(|a| a.eq_ignore_ascii_case(org)));
        if !allowed {
            return Err(FederationError::Denied(
                "not a member of an allowed organisation".into(),
            ));
        }
        claims.insert(
            "orgs".into(),
            Value::Array(orgs.into_iter().map(Value::String).collect()),
        );
    }
    Ok((subject, claims))
}

async fn get(fetcher: &Fetcher, url: &str, bearer: &SecretString, what: &str) -> Result<Value> {
    let answer = fetcher
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
        .map_err(|e| FederationError::Upstream(format!("{what}: {e}")))?;
    serde_json::from_slice(&answer.body)
        .map_err(|_| FederationError::Upstream(format!("{what}: not JSON")))
}

/// The primary verified address, else the first verified one.
fn verified_email(listed: &Value) -> Option<String> {
    let verified: Vec<&Map<String, Value>> = listed
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .filter(|e| e.get("verified") == Some(&Value::Bool(true)))
        .collect();
    let pick = verified
        .iter()
        .find(|e| e.get("primary") == Some(&Value::Bool(true)))
        .or_else(|| verified.first())?;
    pick.get("email").and_then(Value::as_str).map(str::to_owned)
}

fn org_logins(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("login").and_then(Value::as_str))
                .filter(|l| !l.is_empty() && l.len() <= 100)
                .take(MAX_ORGS)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_primary_verified_address_wins_and_unverified_ones_never_count() {
        let listed = json!([
            {"email": "old@example.com", "primary": false, "verified": true},
            {"email": "main@example.com", "primary": true, "verified": true},
        ]);
        assert_eq!(verified_email(&listed).as_deref(), Some("main@example.com"));
        let unverified_primary = json!([
            {"email": "main@example.com", "primary": true, "verified": false},
            {"email": "alt@example.com", "primary": false, "verified": true},
        ]);
        assert_eq!(
            verified_email(&unverified_primary).as_deref(),
            Some("alt@example.com")
        );
        let none = json!([{"email": "main@example.com", "primary": true, "verified": "true"}]);
        assert_eq!(verified_email(&none), None);
        assert_eq!(verified_email(&json!({"message": "Bad credentials"})), None);
    }

    #[test]
    fn org_logins_are_read_from_the_list() {
        assert_eq!(
            org_logins(&json!([{"login": "acme"}, {"id": 1}, {"login": ""}, {"login": "tools"}])),
            ["acme", "tools"]
        );
        assert!(org_logins(&json!({"message": "x"})).is_empty());
    }
}
