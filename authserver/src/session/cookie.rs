//! The session cookie. On an https issuer it is `__Host-gatehouse-session` (the prefix
//! makes browsers insist on `Secure`, `Path=/` and no `Domain`, so a sibling subdomain
//! cannot plant or overwrite it); on a plain-http issuer (development, loopback) the
//! name has no prefix and no `Secure`, which a browser would otherwise drop.

use axum::http::{HeaderMap, HeaderValue, header};

/// Cookie name on https issuers.
pub const SECURE_NAME: &str = "__Host-gatehouse-session";
/// Cookie name on http issuers.
pub const PLAIN_NAME: &str = "gatehouse-session";

/// The cookie name for an issuer.
pub fn name(https: bool) -> &'static str {
    if https { SECURE_NAME } else { PLAIN_NAME }
}

/// `Set-Cookie` carrying `value`. A session cookie (no `Max-Age`): the server-side
/// timeouts decide how long it is worth anything.
pub fn set(https: bool, value: &str) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax{secure}",
        name(https)
    )
}

/// `Set-Cookie` that removes the cookie.
pub fn clear(https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        name(https)
    )
}

/// The session cookie's value in a request, if any. Only the name for this issuer's
/// scheme counts.
pub fn read(headers: &HeaderMap, https: bool) -> Option<String> {
    let wanted = name(https);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == wanted)
        .map(|(_, v)| v.trim().to_owned())
        // Our values are base64url handles; anything else is not ours.
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Adds a `Set-Cookie` header.
pub fn append(headers: &mut HeaderMap, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_are_host_prefixed_and_secure() {
        assert_eq!(
            set(true, "abc"),
            "__Host-gatehouse-session=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            clear(true),
            "__Host-gatehouse-session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
        );
    }

    #[test]
    fn http_cookies_have_no_prefix_and_no_secure() {
        let c = set(false, "abc");
        assert_eq!(c, "gatehouse-session=abc; Path=/; HttpOnly; SameSite=Lax");
        assert!(!c.contains("Secure"));
    }

    #[test]
    fn reads_only_the_name_for_the_scheme_and_well_formed_values() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; gatehouse-session=Zm9v_-x; other=2".parse().unwrap(),
        );
        assert_eq!(read(&h, false).as_deref(), Some("Zm9v_-x"));
        assert_eq!(read(&h, true), None);
        h.insert(header::COOKIE, "gatehouse-session=a;b".parse().unwrap());
        assert_eq!(read(&h, false).as_deref(), Some("a"));
        h.insert(header::COOKIE, "gatehouse-session=%3Cx%3E".parse().unwrap());
        assert_eq!(read(&h, false), None);
    }
}
