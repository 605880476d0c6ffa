//! RFC 6238 time-based one-time passwords: HMAC-SHA1, 6 digits, 30-second steps, a
//! 160-bit random secret shown to the user in RFC 4648 base32 and as an `otpauth://`
//! URI (with its QR code) that authenticator apps import.
//!
//! Verification accepts the current step and one on either side (RFC 6238 §5.2 clock
//! drift) and returns the step that matched, so the caller can store it and refuse the
//! same code (or an older one) a second time.

use aws_lc_rs::hmac;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::clock::UnixTime;
use crate::crypto::random_bytes;

/// Digits in a code.
pub const DIGITS: u32 = 6;
/// Length of a time step in seconds.
pub const PERIOD_SECONDS: i64 = 30;
/// Secret length in bytes (160 bits, RFC 4226 §4 recommends it).
pub const SECRET_LEN: usize = 20;
/// Steps accepted on either side of the current one.
const DRIFT_STEPS: i64 = 1;

/// A TOTP shared secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl Secret {
    /// A fresh random 160-bit secret.
    pub fn generate() -> Self {
        Self(random_bytes::<SECRET_LEN>().to_vec())
    }

    /// Wraps raw secret bytes (as unsealed from storage).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The raw bytes (to seal for storage).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as authenticator apps take it: base32 without padding.
    pub fn to_base32(&self) -> String {
        base32_encode(&self.0)
    }

    /// The code for time step `step`.
    pub fn code_at_step(&self, step: i64) -> String {
        // Steps before 1970 do not occur; clamp rather than wrap.
        let counter = u64::try_from(step).unwrap_or(0);
        format!(
            "{:0width$}",
            hotp(&self.0, counter, DIGITS),
            width = DIGITS as usize
        )
    }

    /// Checks a code typed at `now`. Accepts the current step ±1, but only steps later
    /// than `last_used_step` (a code is good once). Every candidate is compared, in
    /// constant time, so timing does not tell which step matched. Returns the matched
    /// step; the caller must record it atomically (`Store::advance_totp_step`).
    pub fn verify(&self, code: &str, now: UnixTime, last_used_step: Option<i64>) -> Option<i64> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = step(now);
        let mut matched = None;
        for s in (current - DRIFT_STEPS)..=(current + DRIFT_STEPS) {
            let ok: bool = self
                .code_at_step(s)
                .as_bytes()
                .ct_eq(code.as_bytes())
                .into();
            let fresh = last_used_step.is_none_or(|last| s > last);
            if ok && fresh && matched.is_none() {
                matched = Some(s);
            }
        }
        matched
    }
}

/// The time step a Unix time falls in (RFC 6238 §4.2, T0 = 0).
pub fn step(now: UnixTime) -> i64 {
    now.div_euclid(PERIOD_SECONDS)
}

/// RFC 4226 HOTP with HMAC-SHA1: dynamic truncation, then `digits` decimal digits.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = (u32::from(mac[offset]) & 0x7f) << 24
        | u32::from(mac[offset + 1]) << 16
        | u32::from(mac[offset + 2]) << 8
        | u32::from(mac[offset + 3]);
    binary % 10u32.pow(digits)
}

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 §6 base32, upper case, without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32_ALPHABET[((buffer >> bits) & 0x1f) as usize],
            ));
        }
    }
    if bits > 0 {
        out.push(char::from(
            BASE32_ALPHABET[((buffer << (5 - bits)) & 0x1f) as usize],
        ));
    }
    out
}

/// Decodes RFC 4648 base32: any case, spaces and trailing `=` ignored. `None` on a
/// character outside the alphabet or non-zero trailing bits.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for c in text.trim_end_matches('=').bytes().filter(|c| *c != b' ') {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    // Leftover bits must be padding zeros (a canonical encoding).
    if buffer & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The Key URI authenticator apps import:
/// `otpauth://totp/{issuer}:{account}?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
/// Issuer and account are percent-encoded (a colon inside either becomes `%3A`, so the
/// label's separator stays unambiguous).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &Secret) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECONDS}",
        account = percent_encode(account),
        secret = secret.to_base32(),
    )
}

/// Why a QR code could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("failed to encode the QR code: {0}")]
pub struct QrError(#[source] qrcode::types::QrError);

/// The QR code of `data` as a standalone SVG element (no XML declaration, so it can be
/// placed inline in HTML as well as served as an image).
pub fn qr_svg(data: &str) -> Result<String, QrError> {
    let code = qrcode::QrCode::new(data.as_bytes()).map_err(QrError)?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// An SVG as a `data:` URI for `<img src=…>` (allowed by the login pages' `img-src data:`).
pub fn svg_data_uri(svg: &str) -> String {
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn hotp_matches_rfc4226_appendix_d() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(
                hotp(RFC_SECRET, counter as u64, 6),
                *want,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn totp_matches_rfc6238_appendix_b_sha1() {
        let vectors: [(i64, u32); 6] = [
            (59, 94_287_082),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ];
        for (t, want) in vectors {
            let counter = u64::try_from(step(t)).unwrap();
            assert_eq!(hotp(RFC_SECRET, counter, 8), want, "time {t}");
        }
        let s = Secret::from_bytes(RFC_SECRET.to_vec());
        assert_eq!(s.code_at_step(step(59)), "287082");
        assert_eq!(s.code_at_step(step(1_111_111_109)), "081804");
    }

    #[test]
    fn base32_round_trips_and_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZXW 6YTB OI").unwrap(), b"foobar");
        assert!(base32_decode("MZXW1").is_none(), "1 is not base32");
        assert!(base32_decode("MZ").is_none(), "non-zero trailing bits");
        assert!(base32_decode("MZ7").is_none(), "non-zero trailing bits");
        let s = Secret::generate();
        assert_eq!(s.to_base32().len(), 32);
        assert_eq!(base32_decode(&s.to_base32()).unwrap(), s.as_bytes());
    }

    #[test]
    fn verify_accepts_one_step_of_drift_and_returns_the_step() {
        let s = Secret::from_bytes(RFC_SECRET.to_vec());
        let now = 1_111_111_111;
        let cur = step(now);
        assert_eq!(s.verify(&s.code_at_step(cur), now, None), Some(cur));
        assert_eq!(s.verify(&s.code_at_step(cur - 1), now, None), Some(cur - 1));
        assert_eq!(s.verify(&s.code_at_step(cur + 1), now, None), Some(cur + 1));
        assert_eq!(s.verify(&s.code_at_step(cur - 2), now, None), None);
        assert_eq!(s.verify(&s.code_at_step(cur + 2), now, None), None);
        assert_eq!(
            s.verify(&format!(" {} ", s.code_at_step(cur)), now, None),
            Some(cur)
        );
    }

    #[test]
    fn verify_refuses_a_step_already_used_or_older() {
        let s = Secret::from_bytes(RFC_SECRET.to_vec());
        let now = 1_111_111_111;
        let cur = step(now);
        let code = s.code_at_step(cur);
        assert_eq!(s.verify(&code, now, Some(cur)), None);
        assert_eq!(s.verify(&s.code_at_step(cur - 1), now, Some(cur - 1)), None);
        assert_eq!(s.verify(&code, now, Some(cur - 1)), Some(cur));
    }

    #[test]
    fn verify_rejects_malformed_codes() {
        let s = Secret::from_bytes(RFC_SECRET.to_vec());
        let now = 1_111_111_111;
        let good = s.code_at_step(step(now));
        for bad in [
            "",
            "12345",
            "1234567",
            "abcdef",
            &format!("{good}0"),
            "12 456",
        ] {
            assert_eq!(s.verify(bad, now, None), None, "{bad:?}");
        }
        assert!(!format!("{s:?}").contains("1234"));
    }

    #[test]
    fn otpauth_uri_is_percent_encoded() {
        let s = Secret::from_bytes(b"foobar".to_vec());
        assert_eq!(
            otpauth_uri("Acme Corp: Staff", "alice@example.com", &s),
            "otpauth://totp/Acme%20Corp%3A%20Staff:alice%40example.com?secret=MZXW6YTBOI\
             &issuer=Acme%20Corp%3A%20Staff&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(percent_encode("é&="), "%C3%A9%26%3D");
    }

    #[test]
    fn qr_code_is_an_svg_and_a_data_uri() {
        let svg = qr_svg("otpauth://totp/A:b?secret=MZXW6YTBOI").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.ends_with("</svg>"));
        let uri = svg_data_uri(&svg);
        let b64 = uri.strip_prefix("data:image/svg+xml;base64,").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(decoded, svg.as_bytes());
        assert!(qr_svg(&"x".repeat(8000)).is_err());
    }
}
