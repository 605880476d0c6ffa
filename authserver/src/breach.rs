//! The breached-password check: Have I Been Pwned's k-anonymity range API.
//!
//! The password's SHA-1 is computed here; only the first five hex characters leave the
//! process (`GET {base}/range/{PREFIX}` with `Add-Padding: true`, so the response size
//! says nothing either), and the remaining 35 are matched locally against the returned
//! suffixes. The check is advisory: when the API is down, slow or answers garbage, the
//! password is accepted (fail-open) and a warning is logged — never the password, its
//! hash or the prefix.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use crate::outbound::Fetcher;

/// A padded range answer is about 40 KB; anything near this is not one.
const MAX_BYTES: usize = 1024 * 1024;

/// What the range API said about a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Seen this many times in known breaches.
    Breached(u64),
    NotFound,
    /// The check could not be made (see the logged warning); treat as not found.
    Unavailable,
}

/// A client for the range API.
#[derive(Debug, Clone)]
pub struct BreachChecker {
    fetcher: Arc<Fetcher>,
    base_url: String,
    timeout: Duration,
}

impl BreachChecker {
    /// `base_url` without a trailing slash; every request is bounded by `timeout` (and
    /// by the fetcher's own limits and destination policy).
    pub fn new(fetcher: Arc<Fetcher>, base_url: &str, timeout: Duration) -> Self {
        Self {
            fetcher,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// Looks the password up; never fails (see [`Verdict::Unavailable`]).
    pub async fn check(&self, password: &SecretString) -> Verdict {
        let (prefix, suffix) = split_sha1(password);
        match self.fetch(&prefix).await {
            Ok(body) => match count_for_suffix(&body, &suffix) {
                Ok(Some(n)) => Verdict::Breached(n),
                Ok(None) => Verdict::NotFound,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "breached-password check got an unreadable answer; accepting the password (fail-open)"
                    );
                    Verdict::Unavailable
                }
            },
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "breached-password check unavailable; accepting the password (fail-open)"
                );
                Verdict::Unavailable
            }
        }
    }

    async fn fetch(&self, prefix: &str) -> Result<String, String> {
        let url = format!("{}/range/{prefix}", self.base_url);
        // Fetch errors never carry the URL (and so the prefix).
        let fetched = self
            .fetcher
            .get(
                &url,
                &[("Add-Padding", "true")],
                MAX_BYTES,
                Some(self.timeout),
            )
            .await
            .map_err(|e| format!("range API: {e}"))?;
        String::from_utf8(fetched.body).map_err(|_| "range API answered non-UTF-8".to_owned())
    }
}

/// SHA-1 of the password as uppercase hex, split into the 5-character prefix that is
/// sent and the 35-character suffix that is not.
pub fn split_sha1(password: &SecretString) -> (String, String) {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        password.expose_secret().as_bytes(),
    );
    let hex = hex::encode_upper(digest.as_ref());
    let (prefix, suffix) = hex.split_at(5);
    (prefix.to_owned(), suffix.to_owned())
}

/// Finds `suffix` in a range response (`SUFFIX:COUNT` lines, any case, CRLF or LF).
/// Padding entries (count 0) never match. A malformed line makes the whole answer
/// untrustworthy: `Err`.
pub fn count_for_suffix(body: &str, suffix: &str) -> Result<Option<u64>, String> {
    let mut found = None;
    let mut lines = 0usize;
    for (i, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let (s, count) = line
            .split_once(':')
            .ok_or_else(|| format!("line {} has no ':'", i + 1))?;
        if s.len() != 35 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("line {} is not a 35-digit hex suffix", i + 1));
        }
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| format!("line {} has no count", i + 1))?;
        if count > 0 && s.eq_ignore_ascii_case(suffix) {
            found = Some(count);
        }
    }
    if lines == 0 {
        // The real API always answers hundreds of lines (more with padding).
        return Err("empty answer".to_owned());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn the_sha1_is_split_into_a_five_character_prefix_and_the_rest() {
        // SHA-1("password") = 5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8
        let (prefix, suffix) = split_sha1(&pw("password"));
        assert_eq!(prefix, "5BAA6");
        assert_eq!(suffix, "1E4C9B93F3F0682250B6CF8331B7EE68FD8");
    }

    #[test]
    fn a_listed_suffix_is_found_in_any_case() {
        let body = "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n\
                    1e4c9b93f3f0682250b6cf8331b7ee68fd8:9545824\r\n\
                    011053FD0102E94D6AE2F8B83D76FAF94F6:13";
        assert_eq!(
            count_for_suffix(body, "1E4C9B93F3F0682250B6CF8331B7EE68FD8"),
            Ok(Some(9_545_824))
        );
        assert_eq!(
            count_for_suffix(body, "FFFFFB93F3F0682250B6CF8331B7EE68FD8"),
            Ok(None)
        );
    }

    #[test]
    fn padding_entries_with_count_zero_never_match() {
        let body = "1E4C9B93F3F0682250B6CF8331B7EE68FD8:0\n\
                    0018A45C4D1DEF81644B54AB7F969B88D65:3\n";
        assert_eq!(
            count_for_suffix(body, "1E4C9B93F3F0682250B6CF8331B7EE68FD8"),
            Ok(None)
        );
    }

    #[test]
    fn garbage_is_an_error_so_the_caller_fails_open() {
        let s = "1E4C9B93F3F0682250B6CF8331B7EE68FD8";
        assert!(count_for_suffix("<html>Service Unavailable</html>", s).is_err());
        assert!(count_for_suffix("", s).is_err());
        assert!(count_for_suffix("1E4C9B93F3F0682250B6CF8331B7EE68FD8:lots", s).is_err());
        assert!(count_for_suffix("XYZ:1", s).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_api_fails_open() {
        // Port 9 (discard) on loopback: nothing listens in a test environment.
        let settings = crate::config::OutboundSettings {
            allowed_networks: crate::config::IpNet::parse("127.0.0.0/8")
                .into_iter()
                .collect(),
            allow_http: true,
            ..crate::config::OutboundSettings::default()
        };
        let fetcher = Arc::new(Fetcher::new(&settings).unwrap());
        let checker = BreachChecker::new(fetcher, "http://127.0.0.1:9", Duration::from_secs(1));
        assert_eq!(checker.check(&pw("password")).await, Verdict::Unavailable);
    }
}
