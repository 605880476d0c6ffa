//! Validation of an upstream's ID token (OpenID Connect Core §3.1.3.7), as a pure
//! function of the token, the upstream's key set and what we expect: signature (an
//! asymmetric algorithm only, the key found by `kid`), `iss`, `aud`, `azp`, `exp`,
//! `iat`, `nbf`, `nonce` and `sub`. Time comes in as `now`; clocks may differ by
//! [`LEEWAY_SECONDS`].

use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use crate::clock::UnixTime;
use crate::crypto::jws;
use crate::domain::signing_key::Algorithm;

/// How far our clock and the upstream's may disagree.
pub const LEEWAY_SECONDS: i64 = 60;
/// How old an ID token may be when it arrives: it is minted at the token endpoint a
/// moment before we read it, so anything older was kept somewhere.
pub const MAX_AGE_SECONDS: i64 = 600;

/// What the token must say.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now: UnixTime,
}

/// Why an ID token was refused. `UnknownKey` is the one the caller retries after
/// refetching the key set (the upstream may have rotated its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("malformed ID token")]
    Malformed,
    #[error("no key of the upstream's key set has the token's kid")]
    UnknownKey,
    #[error("unsupported or disallowed alg")]
    Alg,
    #[error("signature does not verify")]
    Signature,
    #[error("iss is not the upstream's issuer")]
    Issuer,
    #[error("aud does not name our client")]
    Audience,
    #[error("azp is not our client")]
    AuthorizedParty,
    #[error("expired")]
    Expired,
    #[error("iat or nbf is in the future, or the token is too old")]
    IssuedAt,
    #[error("nonce does not match the one we sent")]
    Nonce,
    #[error("sub is missing or invalid")]
    Subject,
}

/// The token's claims, when every check passes.
pub fn validate(token: &str, jwks: &Value, e: &Expect<'_>) -> Result<Map<String, Value>, Refused> {
    let parsed = jws::parse(token).map_err(|_| Refused::Malformed)?;
    let alg = parsed.alg().map_err(|_| Refused::Alg)?;
    let key = find_key(jwks, parsed.header_str("kid"), alg).ok_or(Refused::UnknownKey)?;
    parsed
        .verify(key, &Algorithm::ALL)
        .map_err(|err| match err {
            jws::Error::Alg => Refused::Alg,
            jws::Error::Malformed => Refused::Malformed,
            jws::Error::Key | jws::Error::Signature => Refused::Signature,
        })?;
    let Value::Object(claims) = parsed.claims else {
        return Err(Refused::Malformed);
    };
    check_claims(&claims, e)?;
    Ok(claims)
}

/// The signing key of `jwks` for a token: by `kid`; without one, the only key of the
/// algorithm's type. Encryption keys never verify.
fn find_key<'a>(jwks: &'a Value, kid: Option<&str>, alg: Algorithm) -> Option<&'a Value> {
    let kty = match alg {
        Algorithm::Rs256 => "RSA",
        Algorithm::Es256 => "EC",
        Algorithm::EdDsa => "OKP",
    };
    let mut keys = jwks
        .get("keys")?
        .as_array()?
        .iter()
        .filter(|k| k.get("use").and_then(Value::as_str) != Some("enc"))
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some(kty));
    if let Some(kid) = kid {
        return keys.find(|k| k.get("kid").and_then(Value::as_str) == Some(kid));
    }
    let first = keys.next()?;
    keys.next().is_none().then_some(first)
}

fn check_claims(c: &Map<String, Value>, e: &Expect<'_>) -> Result<(), Refused> {
    if c.get("iss").and_then(Value::as_str) != Some(e.issuer) {
        return Err(Refused::Issuer);
    }
    let audiences: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(Refused::Audience),
    };
    if !audiences.contains(&e.client_id) {
        return Err(Refused::Audience);
    }
    // Core §3.1.3.7 items 4 and 5: with several audiences the token must say who it
    // was issued to, and an `azp` that is present must be us.
    match c.get("azp").map(Value::as_str) {
        Some(Some(azp)) if azp == e.client_id => {}
        Some(_) => return Err(Refused::AuthorizedParty),
        None if audiences.len() > 1 => return Err(Refused::AuthorizedParty),
        None => {}
    }
    let exp = c
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(Refused::Expired)?;
    if exp + LEEWAY_SECONDS <= e.now {
        return Err(Refused::Expired);
    }
    let iat = c
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(Refused::IssuedAt)?;
    if iat > e.now + LEEWAY_SECONDS || iat + MAX_AGE_SECONDS + LEEWAY_SECONDS < e.now {
        return Err(Refused::IssuedAt);
    }
    if let Some(nbf) = c.get("nbf") {
        match nbf.as_i64() {
            Some(nbf) if nbf <= e.now + LEEWAY_SECONDS => {}
            _ => return Err(Refused::IssuedAt),
        }
    }
    let nonce = c.get("nonce").and_then(Value::as_str).unwrap_or_default();
    if nonce.is_empty() || !bool::from(nonce.as_bytes().ct_eq(e.nonce.as_bytes())) {
        return Err(Refused::Nonce);
    }
    match c.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() && sub.len() <= 255 => Ok(()),
        _ => Err(Refused::Subject),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crypto::signing::{SigningKey, generate};

    const NOW: i64 = 1_800_000_000;

    fn key() -> SigningKey {
        generate(Algorithm::Es256, 2048).unwrap().key
    }

    fn claims() -> Value {
        json!({"iss": "https://up.example", "aud": "gh", "sub": "u1", "nonce": "n-1",
               "iat": NOW - 5, "exp": NOW + 300})
    }

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://up.example",
            client_id: "gh",
            nonce: "n-1",
            now: NOW,
        }
    }

    fn with(patch: &Value) -> Value {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn check(k: &SigningKey, c: &Value) -> Result<Map<String, Value>, Refused> {
        let jwks = json!({"keys": [k.public_jwk()]});
        validate(&k.sign_jwt("JWT", c).unwrap(), &jwks, &expect())
    }

    #[test]
    fn a_good_token_gives_its_claims() {
        let k = key();
        assert_eq!(check(&k, &claims()).unwrap()["sub"], "u1");
        // Several audiences with azp naming us.
        assert!(check(&k, &with(&json!({"aud": ["gh", "other"], "azp": "gh"}))).is_ok());
        // Within the leeway.
        assert!(check(&k, &with(&json!({"exp": NOW - 30}))).is_ok());
    }

    #[test]
    fn every_claim_rule_refuses_its_violation() {
        let k = key();
        for (patch, want) in [
            (json!({"iss": "https://evil.example"}), Refused::Issuer),
            (json!({"aud": "other"}), Refused::Audience),
            (json!({"aud": null}), Refused::Audience),
            (json!({"aud": ["gh", "other"]}), Refused::AuthorizedParty),
            (json!({"azp": "other"}), Refused::AuthorizedParty),
            (json!({"exp": NOW - 61}), Refused::Expired),
            (json!({"exp": null}), Refused::Expired),
            (json!({"iat": NOW + 120}), Refused::IssuedAt),
            (json!({"iat": NOW - 3600}), Refused::IssuedAt),
            (json!({"nbf": NOW + 120}), Refused::IssuedAt),
            (json!({"nonce": "n-2"}), Refused::Nonce),
            (json!({"nonce": null}), Refused::Nonce),
            (json!({"sub": ""}), Refused::Subject),
            (json!({"sub": null}), Refused::Subject),
        ] {
            assert_eq!(check(&k, &with(&patch)), Err(want), "{patch}");
        }
    }

    #[test]
    fn signatures_are_checked_with_the_key_the_kid_names() {
        let k = key();
        let other = key();
        let token = k.sign_jwt("JWT", &claims()).unwrap();
        // Unknown kid: the caller refetches the key set.
        let jwks = json!({"keys": [other.public_jwk()]});
        assert_eq!(validate(&token, &jwks, &expect()), Err(Refused::UnknownKey));
        // The right kid on the wrong key material: refused.
        let mut forged = other.public_jwk();
        forged["kid"] = json!(k.kid());
        let jwks = json!({"keys": [forged]});
        assert_eq!(validate(&token, &jwks, &expect()), Err(Refused::Signature));
        // A tampered payload.
        let mut parts: Vec<&str> = token.split('.').collect();
        let evil = crate::crypto::b64url(with(&json!({"sub": "admin"})).to_string().as_bytes());
        parts[1] = &evil;
        let jwks = json!({"keys": [k.public_jwk()]});
        assert_eq!(
            validate(&parts.join("."), &jwks, &expect()),
            Err(Refused::Signature)
        );
    }

    #[test]
    fn unsigned_and_symmetric_tokens_are_refused() {
        let body = crate::crypto::b64url(claims().to_string().as_bytes());
        let jwks = json!({"keys": [key().public_jwk()]});
        for alg in ["none", "HS256"] {
            let header = crate::crypto::b64url(json!({"alg": alg}).to_string().as_bytes());
            let token = format!("{header}.{body}.c2ln");
            assert_eq!(
                validate(&token, &jwks, &expect()),
                Err(Refused::Alg),
                "{alg}"
            );
        }
        assert_eq!(
            validate("not-a-jwt", &jwks, &expect()),
            Err(Refused::Malformed)
        );
        // A huge token is refused before anything is decoded.
        let huge = format!("{}.{}.{}", "a".repeat(40_000), body, "c2ln");
        assert_eq!(validate(&huge, &jwks, &expect()), Err(Refused::Malformed));
    }
}
