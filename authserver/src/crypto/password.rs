//! End-user password hashing: Argon2id in PHC string format
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! The parameters travel inside every stored string, so a hash made with older settings
//! still verifies; [`needs_rehash`] tells a successful login to replace it. These
//! functions are CPU- and memory-bound (tens of milliseconds): async callers run them in
//! `spawn_blocking`.

use std::sync::Mutex;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;

use crate::config::Argon2Params;

/// Salt length in bytes (the PHC recommendation).
const SALT_LEN: usize = 16;

/// Why a hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Argon2 parameters: {0}")]
    Params(String),
    #[error("failed to hash the password: {0}")]
    Hash(String),
}

fn argon2(p: Argon2Params) -> Result<Argon2<'static>, Error> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| Error::Params(e.to_string()))?;
    Ok(Argon2::new(
        Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

/// Argon2's working memory (`memory_kib` per hash), kept for the next hash instead of
/// freed. Allocating and freeing 19 MiB per sign-in on whichever blocking-pool thread
/// ran it made the allocator keep a copy per thread arena: a burst of sign-ins grew the
/// server to over a gigabyte. Kept, the memory is one buffer per hash that ever ran at
/// once — what `UserService` allows (one per core) — and no more.
static SCRATCH: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `f` on `blocks` blocks of reused working memory.
fn with_scratch<R>(blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let mut buf = SCRATCH
        .lock()
        .ok()
        .and_then(|mut free| free.pop())
        .unwrap_or_default();
    if buf.len() < blocks {
        // Exactly sized: a bigger cost (a hash made with other parameters) reallocates.
        buf = vec![Block::new(); blocks];
    }
    let out = f(&mut buf[..blocks]);
    if let Ok(mut free) = SCRATCH.lock() {
        free.push(buf);
    }
    out
}

/// Argon2 of `password` and `salt` into `out`, on reused working memory.
fn derive(
    a: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    with_scratch(params.block_count(), |blocks| {
        a.hash_password_into_with_memory(password, salt, out, blocks)
    })
    .map_err(|e| Error::Hash(e.to_string()))
}

/// Hashes `password` with a fresh random salt; returns the PHC string.
pub fn hash(password: &SecretString, params: Argon2Params) -> Result<String, Error> {
    let salt = super::random_bytes::<SALT_LEN>();
    let a = argon2(params)?;
    let p = a.params().clone();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    derive(&a, &p, password.expose_secret().as_bytes(), &salt, &mut out)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&p).map_err(|e| Error::Hash(e.to_string()))?,
        salt: Some(Salt::new(&salt).map_err(|e| Error::Hash(e.to_string()))?),
        hash: Some(Output::new(&out).map_err(|e| Error::Hash(e.to_string()))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored`. The parameters come from the
/// string; the final comparison is constant time. An unparseable string never matches.
pub fn verify(password: &SecretString, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .unwrap_or(Version::V0x13);
    let a = Argon2::new(Algorithm::Argon2id, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    if derive(
        &a,
        &params,
        password.expose_secret().as_bytes(),
        salt,
        &mut out,
    )
    .is_err()
    {
        return false;
    }
    bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Whether `stored` was made with anything other than Argon2id v19 and exactly
/// `configured`: the next successful login should store a fresh hash.
pub fn needs_rehash(stored: &str, configured: Argon2Params) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT || parsed.version != Some(0x13) {
        return true;
    }
    match Params::try_from(&parsed) {
        Ok(p) => {
            p.m_cost() != configured.memory_kib
                || p.t_cost() != configured.iterations
                || p.p_cost() != configured.parallelism
                || p.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
                    != Params::DEFAULT_OUTPUT_LEN
        }
        Err(_) => true,
    }
}

/// A valid hash of a random password, for spending the same work on unknown users.
pub fn dummy_hash(params: Argon2Params) -> Result<String, Error> {
    let random = super::b64url(&super::random_bytes::<16>());
    hash(&SecretString::from(random), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the tests stay fast where the cost does not matter.
    const LIGHT: Argon2Params = Argon2Params {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_with_the_owasp_parameters() {
        let h = hash(&pw("correct horse battery staple"), Argon2Params::OWASP).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts.len(), 6, "{h}");
        // 16-byte salt and 32-byte output, unpadded base64.
        assert_eq!(parts[4].len(), 22, "{h}");
        assert_eq!(parts[5].len(), 43, "{h}");
        assert!(!h.contains("correct horse"));
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        assert_ne!(
            hash(&pw("same"), LIGHT).unwrap(),
            hash(&pw("same"), LIGHT).unwrap()
        );
    }

    #[test]
    fn verify_accepts_the_password_and_nothing_else() {
        let h = hash(&pw("s3cret-password"), LIGHT).unwrap();
        assert!(verify(&pw("s3cret-password"), &h));
        assert!(!verify(&pw("s3cret-passwore"), &h));
        assert!(!verify(&pw(""), &h));
        assert!(!verify(&pw("s3cret-password"), "not a phc string"));
        assert!(!verify(&pw("s3cret-password"), ""));
    }

    #[test]
    fn hashes_interoperate_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let ours = hash(&pw("interop"), LIGHT).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            argon2(LIGHT)
                .unwrap()
                .verify_password(b"interop", &parsed)
                .is_ok()
        );
        let theirs = argon2(LIGHT)
            .unwrap()
            .hash_password_with_salt(b"interop", b"sixteen byte slt")
            .unwrap()
            .to_string();
        assert!(verify(&pw("interop"), &theirs));
        assert!(!verify(&pw("interoq"), &theirs));
        // A truncated or altered output never matches (and never panics).
        assert!(!verify(&pw("interop"), &theirs[..theirs.len() - 4]));
        assert!(!verify(&pw("interop"), &format!("{theirs}AAAA")));
    }

    #[test]
    fn working_memory_is_reused_not_reallocated() {
        let before = SCRATCH.lock().unwrap().len();
        for _ in 0..8 {
            assert!(verify(&pw("x"), &hash(&pw("x"), LIGHT).unwrap()));
        }
        // One buffer per hash that ran at once (tests run in parallel: a few).
        assert!(SCRATCH.lock().unwrap().len() <= before + 8);
    }

    #[test]
    fn verify_uses_the_parameters_stored_in_the_hash() {
        let h = hash(&pw("old parameters"), LIGHT).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert!(verify(&pw("old parameters"), &h));
    }

    #[test]
    fn a_hash_with_other_parameters_needs_a_rehash() {
        let light = hash(&pw("p"), LIGHT).unwrap();
        assert!(needs_rehash(&light, Argon2Params::OWASP));
        assert!(!needs_rehash(&light, LIGHT));
        let more_iterations = Argon2Params {
            iterations: 2,
            ..LIGHT
        };
        assert!(needs_rehash(&light, more_iterations));
        let owasp = hash(&pw("p"), Argon2Params::OWASP).unwrap();
        assert!(!needs_rehash(&owasp, Argon2Params::OWASP));
    }

    #[test]
    fn foreign_or_broken_hashes_need_a_rehash() {
        // Argon2i and Argon2d are weaker against side channels / GPU attacks respectively.
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                       wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA";
        assert!(needs_rehash(argon2i, Argon2Params::OWASP));
        assert!(!verify(&pw("password"), argon2i));
        assert!(needs_rehash(
            "$2b$12$abcdefghijklmnopqrstuv",
            Argon2Params::OWASP
        ));
        assert!(needs_rehash("", Argon2Params::OWASP));
    }

    #[test]
    fn invalid_parameters_are_an_error_not_a_panic() {
        let bad = Argon2Params {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1,
        };
        assert!(matches!(hash(&pw("x"), bad), Err(Error::Params(_))));
    }
}
