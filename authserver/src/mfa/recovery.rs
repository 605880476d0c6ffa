//! One-time recovery codes: the way in when the authenticator is lost. Ten per user,
//! each 12 characters from a 31-symbol alphabet without look-alikes (no `0 o 1 i l`),
//! about 59 bits from the CSPRNG, shown grouped as `abcd-efgh-jkmn`. Only a keyed digest
//! is stored (HMAC-SHA-256 under a subkey of ENCRYPTION_KEY, bound to tenant and user),
//! so a database dump reveals no usable code and a digest copied to another user is
//! useless. Input is normalised (case, spaces, dashes) before digesting.

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq as _;

use crate::crypto::kek::Kek;
use crate::crypto::random_bytes;

/// Codes issued per user at once.
pub const CODES_PER_USER: usize = 10;
/// Characters in a code (without the dashes).
pub const CODE_LEN: usize = 12;
/// Lower-case letters and digits minus the ambiguous `0 o 1 i l`.
const ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// KEK derivation label of the digest key.
const KEY_LABEL: &str = "recovery-codes";

/// A new recovery code as shown to the user: `abcd-efgh-jkmn`.
pub fn generate() -> String {
    let mut chars = Vec::with_capacity(CODE_LEN);
    while chars.len() < CODE_LEN {
        for b in random_bytes::<16>() {
            // Rejection sampling: 248 = 8 × 31, so every symbol is equally likely.
            if b < 248 && chars.len() < CODE_LEN {
                chars.push(ALPHABET[usize::from(b % 31)]);
            }
        }
    }
    let mut out = String::with_capacity(CODE_LEN + 2);
    for (i, c) in chars.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(*c));
    }
    out
}

/// `count` fresh, distinct codes.
pub fn generate_set(count: usize) -> Vec<String> {
    let mut codes: Vec<String> = Vec::with_capacity(count);
    while codes.len() < count {
        let c = generate();
        if !codes.contains(&c) {
            codes.push(c);
        }
    }
    codes
}

/// The canonical form of typed input (lower case, without spaces or dashes), or `None`
/// when it cannot be a recovery code (wrong length or a character outside the alphabet).
pub fn normalize(input: &str) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (s.len() == CODE_LEN && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

/// Computes and checks recovery-code digests.
pub struct RecoveryHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for RecoveryHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryHasher")
    }
}

impl RecoveryHasher {
    pub fn new(kek: &Kek) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &kek.derive(KEY_LABEL)),
        }
    }

    /// The stored digest (hex) of a code for this tenant and user; `None` when the input
    /// cannot be a recovery code.
    pub fn digest(&self, tenant_id: &str, user_id: &str, code: &str) -> Option<String> {
        let code = normalize(code)?;
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [tenant_id, user_id, code.as_str()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        Some(hex::encode(ctx.sign().as_ref()))
    }

    /// Which of the `stored` digests `code` matches. Every digest is compared in full and
    /// in constant time, so timing reveals neither whether nor which one matched.
    pub fn find<'a>(
        &self,
        tenant_id: &str,
        user_id: &str,
        code: &str,
        stored: &'a [String],
    ) -> Option<&'a str> {
        let candidate = self.digest(tenant_id, user_id, code)?;
        let mut found = None;
        for s in stored {
            let eq: bool = candidate.as_bytes().ct_eq(s.as_bytes()).into();
            if eq && found.is_none() {
                found = Some(s.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn hasher() -> RecoveryHasher {
        let kek = Kek::from_hex(&SecretString::from(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_owned(),
        ))
        .unwrap();
        RecoveryHasher::new(&kek)
    }

    #[test]
    fn codes_are_grouped_from_the_unambiguous_alphabet_with_at_least_50_bits() {
        let space = ALPHABET.len().pow(u32::try_from(CODE_LEN).unwrap());
        assert!(space >= 1 << 50, "{space}");
        let codes = generate_set(CODES_PER_USER);
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 14, "{c}");
            assert_eq!(c.matches('-').count(), 2, "{c}");
            assert!(c.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)), "{c}");
            assert!(!c.contains(['0', 'o', '1', 'i', 'l']), "{c}");
        }
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
    }

    #[test]
    fn input_is_normalised_for_case_spaces_and_dashes() {
        assert_eq!(
            normalize(" ABCD-efgh -JKMN\n").as_deref(),
            Some("abcdefghjkmn")
        );
        assert_eq!(normalize("abcdefghjkmn").as_deref(), Some("abcdefghjkmn"));
        for bad in [
            "",
            "abcd-efgh-jkm",
            "abcd-efgh-jkmnp",
            "abcd-efgh-jkm0",
            "123456",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn digests_are_bound_to_tenant_and_user_and_match_normalised_input() {
        let h = hasher();
        let code = generate();
        let d = h.digest("t", "u", &code).unwrap();
        assert_eq!(d.len(), 64);
        let stored = vec![h.digest("t", "u", &generate()).unwrap(), d.clone()];
        assert_eq!(
            h.find("t", "u", &code.to_uppercase().replace('-', " "), &stored),
            Some(d.as_str())
        );
        assert_eq!(h.find("t", "other", &code, &stored), None);
        assert_eq!(h.find("other", "u", &code, &stored), None);
        assert_eq!(h.find("t", "u", &generate(), &stored), None);
        assert_eq!(h.find("t", "u", "not a code", &stored), None);
        assert!(!d.contains(&code.replace('-', "")));
    }
}
