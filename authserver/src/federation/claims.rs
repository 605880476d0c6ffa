//! From an upstream's claims (ID token, then userinfo) to the identity we act on: its
//! subject, the mapped username, e-mail and name, the forwarded claims, and the
//! upstream's `amr`. Pure; the provider's `claims` mapping decides the names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::federation::UpstreamProvider;
use crate::domain::user::{MAX_USERNAME_LEN, validate_username};

/// A forwarded claim's JSON larger than this is dropped (a token is not a database).
const MAX_FORWARDED_BYTES: usize = 8 * 1024;
/// How many upstream `amr` values we keep, and how long each may be.
const MAX_AMR: usize = 8;
const MAX_AMR_LEN: usize = 32;

/// An upstream account as one sign-in saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    pub provider_id: String,
    pub subject: String,
    /// A valid username for a provisioned user, if the mapped claim gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The upstream says it verified the address (`email_verified: true`, nothing
    /// else counts).
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The provider's `claims.forward`, as the upstream sent them.
    #[serde(default)]
    pub forwarded: Map<String, Value>,
    /// The upstream's `amr` values (RFC 8176), if it sent any.
    #[serde(default)]
    pub amr: Vec<String>,
    /// The password was checked here against a directory (LDAP): our `amr` is `pwd`,
    /// not `fed` — the user typed it into our own form.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub directory: bool,
    /// The upstream's tokens, sealed, when the provider keeps them (`storeTokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<crate::store::federation::SealedTokens>,
}

/// Maps `claims` (the ID token's, with userinfo's merged in) by the provider's rules.
/// `subject` is the validated ID token's `sub`.
pub fn identity(
    p: &UpstreamProvider,
    subject: &str,
    claims: &Map<String, Value>,
) -> UpstreamIdentity {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 320)
            .map(str::to_owned)
    };
    let email = text(&p.claims.email).filter(|e| plausible_email(e));
    let email_verified =
        email.is_some() && claims.get("email_verified") == Some(&Value::Bool(true));
    let username = text(&p.claims.username)
        .filter(|u| u.chars().count() <= MAX_USERNAME_LEN && validate_username(u).is_ok());
    let forwarded = p
        .claims
        .forward
        .iter()
        .filter_map(|name| {
            let v = claims.get(name)?;
            (v.to_string().len() <= MAX_FORWARDED_BYTES).then(|| (name.clone(), v.clone()))
        })
        .collect();
    let amr = claims
        .get("amr")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| {
                    !s.is_empty()
                        && s.len() <= MAX_AMR_LEN
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                })
                .take(MAX_AMR)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    UpstreamIdentity {
        provider_id: p.id.clone(),
        subject: subject.to_owned(),
        username,
        email,
        email_verified,
        name: text(&p.claims.name).filter(|n| n.chars().count() <= 200),
        forwarded,
        amr,
        directory: false,
        tokens: None,
    }
}

/// One `@` with text on both sides and no whitespace: enough to compare addresses, not
/// to mail them.
fn plausible_email(e: &str) -> bool {
    matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Our `amr` for an upstream sign-in: `fed` (RFC 8176: federated), then what the
/// upstream reported, without duplicates. A directory's sign-in is `pwd`.
pub fn amr(identity: &UpstreamIdentity) -> Vec<String> {
    if identity.directory {
        return vec!["pwd".to_owned()];
    }
    let mut amr = vec!["fed".to_owned()];
    for a in &identity.amr {
        if !amr.contains(a) {
            amr.push(a.clone());
        }
    }
    amr
}

/// Whether the upstream reports a multi-factor sign-in (RFC 8176 `mfa`).
pub fn upstream_mfa(identity: &UpstreamIdentity) -> bool {
    identity.amr.iter().any(|a| a == "mfa")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn provider(forward: &[&str]) -> UpstreamProvider {
        serde_json::from_value(json!({
            "id": "corp", "displayName": "Corp", "issuer": "https://up.example",
            "clientId": "gh", "clientSecret": {"env": "X"},
            "claims": {"forward": forward}
        }))
        .unwrap()
    }

    #[test]
    fn claims_are_mapped_and_only_forwarded_ones_kept() {
        let claims = json!({"preferred_username": "ann", "email": "Ann@Corp.Example",
            "email_verified": true, "name": "Ann A", "groups": ["dev", "ops"],
            "secret_thing": "x", "amr": ["pwd", "mfa", "pwd", "bad value!"]});
        let id = identity(&provider(&["groups"]), "s-1", claims.as_object().unwrap());
        assert_eq!(id.username.as_deref(), Some("ann"));
        assert_eq!(id.email.as_deref(), Some("Ann@Corp.Example"));
        assert!(id.email_verified);
        assert_eq!(id.name.as_deref(), Some("Ann A"));
        assert_eq!(
            id.forwarded,
            *json!({"groups": ["dev", "ops"]}).as_object().unwrap()
        );
        assert_eq!(amr(&id), ["fed", "pwd", "mfa"]);
        assert!(upstream_mfa(&id));
    }

    #[test]
    fn only_a_literal_true_verifies_an_address() {
        for v in [json!("true"), json!(1), json!(null), json!(false)] {
            let claims = json!({"email": "a@b.example", "email_verified": v});
            let id = identity(&provider(&[]), "s", claims.as_object().unwrap());
            assert!(!id.email_verified, "{v}");
        }
        let claims = json!({"email": "not an address", "email_verified": true});
        let id = identity(&provider(&[]), "s", claims.as_object().unwrap());
        assert_eq!((id.email, id.email_verified), (None, false));
    }

    #[test]
    fn unusable_usernames_and_huge_claims_are_dropped() {
        let claims = json!({"preferred_username": "ann smith", "groups": "x".repeat(10_000)});
        let id = identity(&provider(&["groups"]), "s", claims.as_object().unwrap());
        assert_eq!(id.username, None);
        assert!(id.forwarded.is_empty());
        assert_eq!(amr(&id), ["fed"]);
    }
}
