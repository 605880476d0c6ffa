//! The key-encryption key (`ENCRYPTION_KEY`): seals private keys and other secrets at rest
//! with AES-256-GCM. Each ciphertext is stored beside the KEK's id (a fingerprint of the
//! key), so a wrong key is reported as such and a KEK rotation can find what to re-encrypt.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use secrecy::{ExposeSecret, SecretString};

use super::random_bytes;

/// Why a KEK could not be built or a ciphertext opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ENCRYPTION_KEY must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error(
        "data was encrypted with key-encryption key {stored}, but the configured ENCRYPTION_KEY is {configured}: \
         this is the wrong ENCRYPTION_KEY for this database (restore the key that belongs to the database, \
         or re-encrypt with `authserver keys reencrypt --old-key-env VAR`)"
    )]
    WrongKey { stored: String, configured: String },
    #[error(
        "failed to decrypt data under key-encryption key {kek_id}: ciphertext is corrupt or was tampered with"
    )]
    Corrupt { kek_id: String },
}

/// An AES-256-GCM key-encryption key with its id.
pub struct Kek {
    key: LessSafeKey,
    /// HMAC key over the raw KEK, for deriving purpose-specific subkeys.
    prk: aws_lc_rs::hmac::Key,
    id: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// Parses the 64-hex-character `ENCRYPTION_KEY`.
    pub fn from_hex(hex_key: &SecretString) -> Result<Self, Error> {
        let bytes = hex::decode(hex_key.expose_secret().trim()).map_err(|_| Error::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::BadKey)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        // The id is a fingerprint, not the key: a domain-separated hash, truncated.
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"gatehouse kek id v1\0");
        ctx.update(bytes);
        let id = format!("kek-{}", hex::encode(&ctx.finish().as_ref()[..8]));
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| Error::BadKey)?;
        Ok(Self {
            key: LessSafeKey::new(key),
            prk: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
            id,
        })
    }

    /// A new random key as 64 hex characters (for the dev key file).
    pub fn generate_hex() -> SecretString {
        SecretString::from(hex::encode(random_bytes::<32>()))
    }

    /// This key's id, stored beside every ciphertext.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`; `aad` binds the ciphertext to its row (tenant, kid) so it cannot
    /// be moved to another row. Output: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad),
                &mut body,
            )
            // Only fails for inputs beyond AES-GCM's size limit (64 GiB).
            .expect("AES-GCM seal of a small buffer");
        out.extend_from_slice(&body);
        out
    }

    /// Opens what [`Kek::seal`] produced under the KEK named `kek_id`.
    pub fn open(&self, kek_id: &str, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        if kek_id != self.id {
            return Err(Error::WrongKey {
                stored: kek_id.to_owned(),
                configured: self.id.clone(),
            });
        }
        let corrupt = || Error::Corrupt {
            kek_id: kek_id.to_owned(),
        };
        if sealed.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut body)
            .map_err(|_| corrupt())?;
        Ok(plain.to_vec())
    }

    /// Derives a purpose-specific 32-byte subkey (HMAC-SHA-256 of the label under the
    /// KEK), so other features (client secret digests) never use the KEK directly.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(&self.prk, label.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(hex: &str) -> Kek {
        Kek::from_hex(&SecretString::from(hex.to_owned())).unwrap()
    }

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seal_then_open_round_trips_and_binds_the_aad() {
        let k = kek(A);
        let sealed = k.seal(b"private key", b"tenant/kid");
        assert_eq!(
            k.open(k.id(), &sealed, b"tenant/kid").unwrap(),
            b"private key"
        );
        assert!(matches!(
            k.open(k.id(), &sealed, b"tenant/other"),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn a_different_key_is_reported_as_the_wrong_key() {
        let (a, b) = (kek(A), kek(B));
        assert_ne!(a.id(), b.id());
        let sealed = a.seal(b"x", b"");
        let err = b.open(a.id(), &sealed, b"").unwrap_err();
        assert!(err.to_string().contains("wrong ENCRYPTION_KEY"), "{err}");
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in ["", "abc", &A[..62], &format!("{}zz", &A[..62])] {
            assert!(Kek::from_hex(&SecretString::from(bad.to_owned())).is_err());
        }
    }

    #[test]
    fn tampered_ciphertext_fails_closed() {
        let k = kek(A);
        let mut sealed = k.seal(b"secret", b"");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(k.open(k.id(), &sealed, b"").is_err());
        assert!(k.open(k.id(), &sealed[..4], b"").is_err());
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let s = format!("{:?}", kek(A));
        assert!(!s.contains("0001020304"));
    }
}
