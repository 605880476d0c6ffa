//! Client secrets: generated with 256 bits of entropy, stored only as a keyed digest
//! (HMAC-SHA-256 under a subkey of ENCRYPTION_KEY), compared in constant time. A password
//! hash would cost ~20 ms per token request for no gain: a random 256-bit secret cannot
//! be guessed, so a fast keyed digest is as strong and a database leak alone reveals
//! nothing usable.

use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq as _;

use super::{b64url, kek::Kek, random_bytes};

/// Shortest secret a caller may supply (bring-your-own secrets).
pub const MIN_SUPPLIED_SECRET_LEN: usize = 32;

/// A new random secret: 32 bytes, base64url (43 characters).
pub fn generate() -> SecretString {
    SecretString::from(b64url(&random_bytes::<32>()))
}

/// Checks a caller-supplied secret before it is digested.
pub fn check_supplied(secret: &SecretString) -> Result<(), String> {
    let s = secret.expose_secret();
    if s.chars().count() < MIN_SUPPLIED_SECRET_LEN {
        return Err(format!(
            "client secret is too short: at least {MIN_SUPPLIED_SECRET_LEN} characters are required"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err("client secret must not contain control characters".to_owned());
    }
    Ok(())
}

/// Computes and checks secret digests.
pub struct SecretHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher")
    }
}

impl SecretHasher {
    pub fn new(kek: &Kek) -> Self {
        Self {
            key: hmac::Key::new(
                hmac::HMAC_SHA256,
                &kek.derive("gatehouse client secret digest v1"),
            ),
        }
    }

    /// Digest bound to tenant and client, so a digest copied to another row is useless.
    pub fn digest(&self, tenant_id: &str, client_id: &str, secret: &SecretString) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [tenant_id, client_id, secret.expose_secret()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        ctx.sign().as_ref().to_vec()
    }

    /// Whether `candidate` matches any stored digest; every digest is compared in full.
    pub fn matches(
        &self,
        tenant_id: &str,
        client_id: &str,
        candidate: &SecretString,
        stored: &[&[u8]],
    ) -> bool {
        let d = self.digest(tenant_id, client_id, candidate);
        stored
            .iter()
            .fold(false, |found, s| found | bool::from(d.as_slice().ct_eq(s)))
    }
}

/// A fingerprint of a stored digest (`Client.secret_fingerprint` of the admin API): names
/// a secret without revealing it. The digest is keyed, and this is a hash of the digest,
/// so it is of no use for guessing the secret.
pub fn fingerprint(digest: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"gatehouse client secret fingerprint v1\0");
    ctx.update(digest);
    b64url(&ctx.finish().as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> SecretHasher {
        let kek = Kek::from_hex(&SecretString::from(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_owned(),
        ))
        .unwrap();
        SecretHasher::new(&kek)
    }

    #[test]
    fn generated_secrets_have_256_bits() {
        let s = generate();
        assert_eq!(s.expose_secret().len(), 43);
        assert_ne!(s.expose_secret(), generate().expose_secret());
    }

    #[test]
    fn digests_match_only_the_same_secret_client_and_tenant() {
        let h = hasher();
        let s = generate();
        let d = h.digest("t", "c", &s);
        assert!(h.matches("t", "c", &s, &[&d]));
        assert!(!h.matches("t", "other", &s, &[&d]));
        assert!(!h.matches("u", "c", &s, &[&d]));
        assert!(!h.matches("t", "c", &generate(), &[&d]));
        let previous = h.digest("t", "c", &generate());
        assert!(h.matches("t", "c", &s, &[&previous, &d]));
    }

    #[test]
    fn a_fingerprint_names_one_digest_and_is_not_the_digest() {
        let h = hasher();
        let s = generate();
        let d = h.digest("t", "c", &s);
        let f = fingerprint(&d);
        assert_eq!(f.len(), 22);
        assert_eq!(f, fingerprint(&d), "stable");
        assert_ne!(f, fingerprint(&h.digest("t", "c", &generate())));
        assert!(!b64url(&d).starts_with(&f[..8]));
    }

    #[test]
    fn supplied_secrets_shorter_than_32_characters_are_rejected() {
        assert!(check_supplied(&SecretString::from("x".repeat(31))).is_err());
        assert!(check_supplied(&SecretString::from("x".repeat(32))).is_ok());
    }
}
