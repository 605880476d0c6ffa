//! Cryptography: the key-encryption key and signing keys. Everything goes through
//! aws-lc-rs so there is one implementation to audit.

pub mod jws;
pub mod kek;
pub mod secret;
pub mod signing;

use base64::Engine as _;

/// base64url without padding (JOSE).
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Fills a buffer from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // aws-lc's RNG only fails when the OS entropy source is gone; nothing sane can go on.
    aws_lc_rs::rand::fill(&mut buf).expect("system random number generator failed");
    buf
}
