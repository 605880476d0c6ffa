//! Verifying compact JWS objects signed by others (client assertions, DPoP proofs) and by
//! us (access tokens at introspection), against a public JWK. Only asymmetric algorithms
//! are accepted; `none` and HMAC never are.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use base64::Engine as _;
use serde_json::Value;

use crate::domain::signing_key::Algorithm;

/// Why a JWS was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed JWS")]
    Malformed,
    #[error("unsupported or disallowed alg")]
    Alg,
    #[error("key does not fit the alg")]
    Key,
    #[error("signature does not verify")]
    Signature,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub header: Value,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

fn unb64(s: &str) -> Result<Vec<u8>, Error> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Error::Malformed)
}

/// Splits and decodes; header and payload must be JSON objects.
pub fn parse(token: &str) -> Result<Parsed, Error> {
    if token.len() > 16 * 1024 {
        return Err(Error::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed);
    };
    let header: Value = serde_json::from_slice(&unb64(h)?).map_err(|_| Error::Malformed)?;
    let claims: Value = serde_json::from_slice(&unb64(p)?).map_err(|_| Error::Malformed)?;
    if !header.is_object() || !claims.is_object() {
        return Err(Error::Malformed);
    }
    Ok(Parsed {
        header,
        claims,
        signing_input: format!("{h}.{p}"),
        signature: unb64(s)?,
    })
}

impl Parsed {
    /// The header's `alg`, if it is one we support.
    pub fn alg(&self) -> Result<Algorithm, Error> {
        self.header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
            .ok_or(Error::Alg)
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(Value::as_i64)
    }

    /// Verifies the signature with `jwk` under the header's alg, which must be in
    /// `allowed` and match the key type (and the JWK's own `alg`, if it names one).
    pub fn verify(&self, jwk: &Value, allowed: &[Algorithm]) -> Result<(), Error> {
        let alg = self.alg()?;
        if !allowed.contains(&alg) {
            return Err(Error::Alg);
        }
        if jwk
            .get("alg")
            .and_then(Value::as_str)
            .is_some_and(|a| a != alg.as_str())
        {
            return Err(Error::Key);
        }
        verify_with_jwk(alg, jwk, self.signing_input.as_bytes(), &self.signature)
    }
}

fn member(jwk: &Value, name: &str) -> Result<Vec<u8>, Error> {
    unb64(jwk.get(name).and_then(Value::as_str).ok_or(Error::Key)?).map_err(|_| Error::Key)
}

/// Verifies `sig` over `msg` with a public JWK.
pub fn verify_with_jwk(alg: Algorithm, jwk: &Value, msg: &[u8], sig: &[u8]) -> Result<(), Error> {
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    let ok = match (alg, kty, crv) {
        (Algorithm::Rs256, Some("RSA"), _) => {
            let n = member(jwk, "n")?;
            if n.len() < 256 {
                // Under 2048 bits: refuse rather than trust a weak key.
                return Err(Error::Key);
            }
            RsaPublicKeyComponents {
                n,
                e: member(jwk, "e")?,
            }
            .verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .is_ok()
        }
        (Algorithm::Es256, Some("EC"), Some("P-256")) => {
            let (x, y) = (member(jwk, "x")?, member(jwk, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(Error::Key);
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        (Algorithm::EdDsa, Some("OKP"), Some("Ed25519")) => {
            UnparsedPublicKey::new(&ED25519, member(jwk, "x")?)
                .verify(msg, sig)
                .is_ok()
        }
        _ => return Err(Error::Key),
    };
    if ok { Ok(()) } else { Err(Error::Signature) }
}

/// Whether a JWK carries private material (RFC 7518 §6.2.2, §6.3.2; RFC 8037).
pub fn has_private_members(jwk: &Value) -> bool {
    ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|m| jwk.get(m).is_some())
}

/// RFC 7638 thumbprint of a public JWK, base64url (DPoP `jkt`).
pub fn thumbprint(jwk: &Value) -> Result<String, Error> {
    let required: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => return Err(Error::Key),
    };
    let mut m = serde_json::Map::new();
    for name in required {
        let v = jwk.get(*name).and_then(Value::as_str).ok_or(Error::Key)?;
        m.insert((*name).to_owned(), Value::String(v.to_owned()));
    }
    let canonical = Value::Object(m).to_string();
    Ok(super::b64url(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::generate;
    use serde_json::json;

    #[test]
    fn our_tokens_verify_with_their_jwk_for_every_algorithm() {
        for alg in Algorithm::ALL {
            let key = generate(alg, 2048).unwrap().key;
            let token = key.sign_jwt("at+jwt", &json!({"sub": "x"})).unwrap();
            let parsed = parse(&token).unwrap();
            assert_eq!(parsed.alg().unwrap(), alg);
            parsed.verify(&key.public_jwk(), &Algorithm::ALL).unwrap();
            assert_eq!(thumbprint(&key.public_jwk()).unwrap(), key.kid());
        }
    }

    #[test]
    fn wrong_key_disallowed_alg_and_tampering_fail() {
        let a = generate(Algorithm::Es256, 2048).unwrap().key;
        let b = generate(Algorithm::Es256, 2048).unwrap().key;
        let token = a.sign_jwt("x", &json!({"sub": "x"})).unwrap();
        let parsed = parse(&token).unwrap();
        assert_eq!(
            parsed.verify(&b.public_jwk(), &Algorithm::ALL),
            Err(Error::Signature)
        );
        assert_eq!(
            parsed.verify(&a.public_jwk(), &[Algorithm::EdDsa]),
            Err(Error::Alg)
        );
        let ed = generate(Algorithm::EdDsa, 2048).unwrap().key;
        assert_eq!(
            parsed.verify(&ed.public_jwk(), &Algorithm::ALL),
            Err(Error::Key)
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = crate::crypto::b64url(br#"{"sub":"admin"}"#);
        parts[1] = &forged;
        let tampered = parse(&parts.join(".")).unwrap();
        assert_eq!(
            tampered.verify(&a.public_jwk(), &Algorithm::ALL),
            Err(Error::Signature)
        );
    }

    #[test]
    fn alg_none_and_hmac_are_never_accepted() {
        let unsigned = format!(
            "{}.{}.",
            crate::crypto::b64url(br#"{"alg":"none"}"#),
            crate::crypto::b64url(br#"{"sub":"x"}"#)
        );
        let parsed = parse(&unsigned).unwrap();
        assert_eq!(parsed.alg(), Err(Error::Alg));
        let hs = format!(
            "{}.{}.AAAA",
            crate::crypto::b64url(br#"{"alg":"HS256"}"#),
            crate::crypto::b64url(br#"{"sub":"x"}"#)
        );
        assert_eq!(parse(&hs).unwrap().alg(), Err(Error::Alg));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 §3.1 example key.
        let mut m = serde_json::Map::new();
        m.insert("e".into(), "AQAB".into());
        m.insert("kty".into(), "RSA".into());
        m.insert("n".into(), "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into());
        assert_eq!(
            thumbprint(&Value::Object(m)).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for t in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.W10.AA"] {
            assert!(parse(t).is_err(), "{t}");
        }
    }

    #[test]
    fn private_members_are_detected() {
        assert!(has_private_members(&json!({"kty": "EC", "d": "x"})));
        assert!(!has_private_members(
            &json!({"kty": "EC", "x": "x", "y": "y"})
        ));
    }
}
