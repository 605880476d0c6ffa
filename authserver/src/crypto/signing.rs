//! Signing keys: generation, PKCS#8 storage form, public JWKs, and JWS signing.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use serde_json::{Map, Value};

use super::b64url;
use crate::domain::signing_key::Algorithm;

/// Why a key could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to generate {alg} key")]
    Generate { alg: Algorithm },
    #[error("stored {alg} private key is not valid PKCS#8")]
    BadPkcs8 { alg: Algorithm },
    #[error("unsupported RSA key size {0}")]
    RsaSize(u32),
    #[error("failed to sign with {alg} key")]
    Sign { alg: Algorithm },
}

/// A JWS protected header; its members in the order `json!` wrote them (sorted).
#[derive(serde::Serialize)]
struct JwsHeader<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// The base64url length of the longest signature made here (RSA 4096: 512 bytes).
const MAX_SIGNATURE_B64: usize = 683;

enum Inner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key ready to sign, with its `kid`.
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    inner: Inner,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A freshly generated key: the PKCS#8 document to encrypt and store, and the loaded key.
pub struct Generated {
    pub pkcs8: Vec<u8>,
    pub key: SigningKey,
}

/// Generates a key for `alg` (`rsa_bits` only matters for RS256).
pub fn generate(alg: Algorithm, rsa_bits: u32) -> Result<Generated, Error> {
    let rng = SystemRandom::new();
    let pkcs8 = match alg {
        Algorithm::Rs256 => {
            let size = match rsa_bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                other => return Err(Error::RsaSize(other)),
            };
            let pair = RsaKeyPair::generate(size).map_err(|_| Error::Generate { alg })?;
            pair.as_der()
                .map_err(|_| Error::Generate { alg })?
                .as_ref()
                .to_vec()
        }
        Algorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| Error::Generate { alg })?
            .as_ref()
            .to_vec(),
        Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Generate { alg })?
            .as_ref()
            .to_vec(),
    };
    let key = SigningKey::from_pkcs8(alg, &pkcs8)?;
    Ok(Generated { pkcs8, key })
}

impl SigningKey {
    /// Loads a stored PKCS#8 key; the kid is recomputed from the public key.
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Self, Error> {
        let bad = || Error::BadPkcs8 { alg };
        let inner = match alg {
            Algorithm::Rs256 => Inner::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|_| bad())?),
            Algorithm::Es256 => Inner::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| bad())?,
            ),
            Algorithm::EdDsa => Inner::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(|_| bad())?),
        };
        let mut key = Self {
            alg,
            kid: String::new(),
            inner,
        };
        key.kid = super::jws::thumbprint(&Value::Object(key.public_members()))
            .map_err(|_| Error::BadPkcs8 { alg })?;
        Ok(key)
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// RFC 7638 JWK thumbprint of the public key, base64url.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key-type members of the public JWK (RFC 7518 §6), in thumbprint order.
    fn public_members(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match &self.inner {
            Inner::Rsa(pair) => {
                let public = pair.public_key();
                m.insert(
                    "e".into(),
                    b64url(public.exponent().big_endian_without_leading_zero()).into(),
                );
                m.insert("kty".into(), "RSA".into());
                m.insert(
                    "n".into(),
                    b64url(public.modulus().big_endian_without_leading_zero()).into(),
                );
            }
            Inner::Ec(pair) => {
                // Uncompressed SEC1 point: 0x04 ‖ x (32) ‖ y (32).
                let point = pair.public_key().as_ref();
                m.insert("crv".into(), "P-256".into());
                m.insert("kty".into(), "EC".into());
                m.insert(
                    "x".into(),
                    b64url(point.get(1..33).unwrap_or_default()).into(),
                );
                m.insert(
                    "y".into(),
                    b64url(point.get(33..65).unwrap_or_default()).into(),
                );
            }
            Inner::Ed(pair) => {
                m.insert("crv".into(), "Ed25519".into());
                m.insert("kty".into(), "OKP".into());
                m.insert("x".into(), b64url(pair.public_key().as_ref()).into());
            }
        }
        m
    }

    /// The public JWK as published in the JWKS: never a private member.
    pub fn public_jwk(&self) -> Value {
        let mut m = self.public_members();
        m.insert("kid".into(), self.kid.clone().into());
        m.insert("alg".into(), self.alg.as_str().into());
        m.insert("use".into(), "sig".into());
        Value::Object(m)
    }

    /// Signs `message` with this key's JWS algorithm.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let alg = self.alg;
        match &self.inner {
            Inner::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .map_err(|_| Error::Sign { alg })?;
                Ok(sig)
            }
            Inner::Ec(pair) => Ok(pair
                .sign(&SystemRandom::new(), message)
                .map_err(|_| Error::Sign { alg })?
                .as_ref()
                .to_vec()),
            Inner::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// A compact JWS over `claims` with header `{alg, kid, typ}`.
    pub fn sign_jwt(&self, typ: &str, claims: &Value) -> Result<String, Error> {
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let alg = self.alg;
        // Every token of every grant comes through here: the header and the claims are
        // written into one buffer and encoded into one more, sized for the signature,
        // instead of a string per part grown by doubling (a fifth of the allocations
        // of a client_credentials request).
        let header = JwsHeader {
            alg: alg.as_str(),
            kid: &self.kid,
            typ,
        };
        let mut json = Vec::with_capacity(1024);
        serde_json::to_writer(&mut json, &header).map_err(|_| Error::Sign { alg })?;
        let header_len = json.len();
        serde_json::to_writer(&mut json, claims).map_err(|_| Error::Sign { alg })?;
        let mut token = String::with_capacity(json.len() * 4 / 3 + MAX_SIGNATURE_B64 + 4);
        b64.encode_string(&json[..header_len], &mut token);
        token.push('.');
        b64.encode_string(&json[header_len..], &mut token);
        let sig = self.sign(token.as_bytes())?;
        token.push('.');
        b64.encode_string(&sig, &mut token);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
        UnparsedPublicKey,
    };
    use base64::Engine as _;

    fn unb64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    }

    fn verify(jwk: &Value, msg: &[u8], sig: &[u8]) {
        match jwk["kty"].as_str().unwrap() {
            "RSA" => RsaPublicKeyComponents {
                n: unb64(jwk["n"].as_str().unwrap()),
                e: unb64(jwk["e"].as_str().unwrap()),
            }
            .verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .unwrap(),
            "EC" => {
                let mut point = vec![4u8];
                point.extend(unb64(jwk["x"].as_str().unwrap()));
                point.extend(unb64(jwk["y"].as_str().unwrap()));
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .unwrap();
            }
            "OKP" => UnparsedPublicKey::new(&ED25519, unb64(jwk["x"].as_str().unwrap()))
                .verify(msg, sig)
                .unwrap(),
            other => panic!("unexpected kty {other}"),
        }
    }

    #[test]
    fn every_algorithm_generates_reloads_signs_and_verifies_from_its_jwk() {
        for alg in Algorithm::ALL {
            let g = generate(alg, 2048).unwrap();
            let reloaded = SigningKey::from_pkcs8(alg, &g.pkcs8).unwrap();
            assert_eq!(reloaded.kid(), g.key.kid(), "{alg}: kid is stable");
            let jwk = reloaded.public_jwk();
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["use"], "sig");
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(
                    jwk.get(private).is_none(),
                    "{alg}: private member {private}"
                );
            }
            let sig = reloaded.sign(b"hello").unwrap();
            verify(&jwk, b"hello", &sig);
        }
    }

    #[test]
    fn a_jwt_is_header_claims_and_a_signature_over_both() {
        let claims = serde_json::json!({"sub": "alice", "aud": ["a", "b"], "exp": 1_800_000_600});
        for (alg, bits) in [
            (Algorithm::Es256, 0),
            (Algorithm::EdDsa, 0),
            (Algorithm::Rs256, 2048),
            (Algorithm::Rs256, 4096),
        ] {
            let key = generate(alg, bits.max(2048)).unwrap().key;
            let token = key.sign_jwt("at+jwt", &claims).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3, "{alg}: {token}");
            let header = String::from_utf8(unb64(parts[0])).unwrap();
            let expected = format!(
                r#"{{"alg":"{}","kid":"{}","typ":"at+jwt"}}"#,
                alg.as_str(),
                key.kid()
            );
            assert_eq!(header, expected, "{alg}");
            let decoded: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
            assert_eq!(decoded, claims, "{alg}");
            let signed = &token[..parts[0].len() + 1 + parts[1].len()];
            verify(&key.public_jwk(), signed.as_bytes(), &unb64(parts[2]));
        }
        // A typ is a JSON string, escaped like any other.
        let key = generate(Algorithm::EdDsa, 0).unwrap().key;
        let token = key.sign_jwt("a\"b", &claims).unwrap();
        let header: Value =
            serde_json::from_slice(&unb64(token.split('.').next().unwrap())).unwrap();
        assert_eq!(header["typ"], "a\"b");
    }

    #[test]
    fn rsa_keys_have_the_requested_size() {
        let g = generate(Algorithm::Rs256, 3072).unwrap();
        let n = unb64(g.key.public_jwk()["n"].as_str().unwrap());
        assert_eq!(n.len() * 8, 3072);
        assert!(matches!(
            generate(Algorithm::Rs256, 1024),
            Err(Error::RsaSize(1024))
        ));
    }

    #[test]
    fn garbage_pkcs8_is_rejected() {
        for alg in Algorithm::ALL {
            assert!(SigningKey::from_pkcs8(alg, b"not a key").is_err());
        }
    }
}
