//! The client side of JOSE, done independently of the server: keys generated with
//! aws-lc-rs, JWS objects (DPoP proofs, private_key_jwt assertions) signed with the
//! `jsonwebtoken` crate, RFC 7638 thumbprints computed here from the RFC's rules.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

use super::random_hex;

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Seconds since the epoch, read through jsonwebtoken (the crate's clock, not ours).
pub fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
}

/// PKCS#8 DER as a PEM block.
pub fn pkcs8_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order, no
/// whitespace, base64url.
pub fn thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str().unwrap() {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        other => panic!("unexpected kty {other}"),
    };
    let canonical = format!(
        "{{{}}}",
        members
            .iter()
            .map(|m| format!("\"{m}\":\"{}\"", jwk[*m].as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(",")
    );
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

/// Merges `patch` into the object `base`: `null` members remove, others replace.
pub fn merged(mut base: Value, patch: &Value) -> Value {
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

/// A client's key pair.
pub struct ClientKey {
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public JWK (no kid, no alg).
    public: Value,
    pkcs8: Vec<u8>,
    pub kid: String,
}

impl ClientKey {
    /// A fresh P-256 key (ES256).
    pub fn es256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap();
        let point = pair.public_key().as_ref(); // 0x04 || x || y
        assert_eq!(point.len(), 65);
        let public = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(&point[1..33]),
            "y": b64url(&point[33..]),
        });
        Self::new(
            Algorithm::ES256,
            EncodingKey::from_ec_der(&pkcs8),
            public,
            pkcs8,
        )
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
        let public = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(pair.public_key().as_ref()),
        });
        Self::new(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(&pkcs8),
            public,
            pkcs8,
        )
    }

    fn new(alg: Algorithm, encoding: EncodingKey, public: Value, pkcs8: Vec<u8>) -> Self {
        let kid = thumbprint(&public);
        Self {
            alg,
            encoding,
            public,
            pkcs8,
            kid,
        }
    }

    pub fn alg_name(&self) -> &'static str {
        match self.alg {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            other => panic!("unexpected alg {other:?}"),
        }
    }

    /// The public JWK without kid (what a DPoP proof embeds).
    pub fn public_jwk(&self) -> Value {
        self.public.clone()
    }

    /// A JWK Set with this key under its kid (what a private_key_jwt client publishes).
    pub fn jwks(&self) -> Value {
        let mut k = self.public.clone();
        k["kid"] = self.kid.clone().into();
        k["alg"] = self.alg_name().into();
        k["use"] = "sig".into();
        json!({ "keys": [k] })
    }

    /// The private key as PKCS#8 PEM.
    pub fn pem(&self) -> String {
        pkcs8_pem(&self.pkcs8)
    }

    /// RFC 7638 thumbprint of the public key.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.public)
    }

    /// A compact JWS of `header` (its `alg` set to this key's) and `claims`, signed by
    /// jsonwebtoken. Headers are free-form JSON, so tests can send what a library would
    /// refuse to build (a private `d` in an embedded jwk).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let mut header = header.clone();
        if header.get("alg").is_none() {
            header["alg"] = self.alg_name().into();
        }
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{sig}")
    }

    /// A DPoP proof (RFC 9449 §4.2) for `htm` `htu`; `header` and `claims` patches are
    /// merged over the valid defaults (`null` removes a member).
    pub fn dpop_proof(&self, htm: &str, htu: &str, header: &Value, claims: &Value) -> String {
        let h = merged(json!({ "typ": "dpop+jwt", "jwk": self.public }), header);
        let c = merged(
            json!({ "jti": random_hex(16), "htm": htm, "htu": htu, "iat": now() }),
            claims,
        );
        self.sign(&h, &c)
    }

    /// A private_key_jwt client assertion (RFC 7523 §3) for `client_id` with audience
    /// `aud`, valid for a minute; `claims` are merged over the defaults.
    pub fn assertion(&self, client_id: &str, aud: &str, claims: &Value) -> String {
        let now = now();
        let c = merged(
            json!({
                "iss": client_id,
                "sub": client_id,
                "aud": aud,
                "jti": random_hex(16),
                "iat": now,
                "exp": now + 60,
            }),
            claims,
        );
        self.sign(&json!({ "typ": "JWT", "kid": self.kid }), &c)
    }
}

/// The private members of a JWK set to random bytes (for "never accept a private key"
/// checks; the value does not matter, its presence does).
pub fn with_private_member(jwk: &Value) -> Value {
    let mut m: Map<String, Value> = jwk.as_object().unwrap().clone();
    m.insert("d".into(), b64url(random_hex(32).as_bytes()).into());
    Value::Object(m)
}
