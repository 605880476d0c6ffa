//! Cryptography: the key-encryption key and signing keys. Everything goes through
//! aws-lc-rs so there is one implementation to audit.

pub mod jws;
pub mod kek;
pub mod password;
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

/// `n` random decimal digits (a one-time code to type), each equally likely.
pub fn random_digits(n: usize) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes::<16>() {
            // Rejection sampling: 250 = 25 × 10.
            if b < 250 && out.len() < n {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    out
}

/// Decodes a PKCS#8 PEM private key ("-----BEGIN PRIVATE KEY-----") to DER.
pub fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = pem.find(BEGIN).ok_or_else(|| {
        if pem.contains("-----BEGIN RSA PRIVATE KEY-----")
            || pem.contains("-----BEGIN EC PRIVATE KEY-----")
        {
            "key is not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt -in key.pem`"
                .to_owned()
        } else if pem.contains("ENCRYPTED PRIVATE KEY") {
            "encrypted private keys are not supported; decrypt it first".to_owned()
        } else {
            format!("no {BEGIN} block found")
        }
    })? + BEGIN.len();
    let end = pem[start..]
        .find(END)
        .ok_or_else(|| format!("no {END} line found"))?
        + start;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "the PEM body is not valid base64".to_owned())
}

/// Encodes DER as a PKCS#8 PEM block (tests and tooling).
pub fn pkcs8_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// A fresh opaque handle for a browser or client to hold (session cookie, request
/// handle, code, refresh token): 256 random bits, base64url.
pub fn new_handle() -> String {
    b64url(&random_bytes::<32>())
}

/// What the database keeps of a handle: its SHA-256, hex. Handles are 256-bit random,
/// so an unkeyed hash is enough — and it lets a lookup be one indexed equality.
pub fn handle_hash(handle: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        handle.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_explains_other_formats() {
        let der = vec![1u8, 2, 3, 4, 5];
        assert_eq!(pkcs8_from_pem(&pkcs8_to_pem(&der)).unwrap(), der);
        let err =
            pkcs8_from_pem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----")
                .unwrap_err();
        assert!(err.contains("openssl pkcs8"), "{err}");
        assert!(pkcs8_from_pem("garbage").is_err());
    }
}
