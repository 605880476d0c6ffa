//! The session cookie. On an https issuer it is `__Host-gatehouse-session-<t>` (the
//! prefix makes browsers insist on `Secure`, `Path=/` and no `Domain`, so a sibling
//! subdomain cannot plant or overwrite it); on a plain-http issuer (development,
//! loopback) it is `gatehouse-session-<t>`, with no prefix and no `Secure`, which a
//! browser would otherwise drop.
//!
//! `<t>` is the first 8 hex characters of SHA-256(tenant id): tenants may share a host
//! under different issuer paths (`/t/acme`, `/t/beta`), and with `Path=/` one cookie
//! name would let a visit to one tenant's pages overwrite the other tenant's session.

/// Cookie name prefix on https issuers.
pub const SECURE_PREFIX: &str = "__Host-gatehouse-session";
/// Cookie name prefix on http issuers.
pub const PLAIN_PREFIX: &str = "gatehouse-session";

/// The tenant's part of the cookie name: short, stable, and no tenant id in the clear.
pub fn tenant_suffix(tenant_id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, tenant_id.as_bytes());
    hex::encode(&digest.as_ref()[..4])
}

/// The cookie name for a tenant's issuer.
pub fn name(tenant_id: &str, https: bool) -> String {
    let prefix = if https { SECURE_PREFIX } else { PLAIN_PREFIX };
    format!("{prefix}-{}", tenant_suffix(tenant_id))
}

/// `Set-Cookie` carrying `value`. A session cookie (no `Max-Age`): the server-side
/// timeouts decide how long it is worth anything.
pub fn set(tenant_id: &str, https: bool, value: &str) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax{secure}",
        name(tenant_id, https)
    )
}

/// `Set-Cookie` that removes the cookie.
pub fn clear(tenant_id: &str, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        name(tenant_id, https)
    )
}

/// The session cookie's value among a request's `Cookie` header values, if any. Only
/// the name for this tenant and this issuer's scheme counts.
pub fn find<'a>(
    cookie_headers: impl IntoIterator<Item = &'a str>,
    tenant_id: &str,
    https: bool,
) -> Option<String> {
    let wanted = name(tenant_id, https);
    cookie_headers
        .into_iter()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_carries_a_stable_per_tenant_suffix() {
        // SHA-256("main") = 0d6e4079...; the suffix is its first 8 hex characters.
        assert_eq!(tenant_suffix("main"), "0d6e4079");
        assert_eq!(name("main", false), "gatehouse-session-0d6e4079");
        assert_ne!(name("acme", false), name("beta", false));
        assert_eq!(
            name("acme", true),
            format!("__Host-{}", name("acme", false))
        );
    }

    #[test]
    fn https_cookies_are_host_prefixed_and_secure() {
        let n = name("main", true);
        assert_eq!(
            set("main", true, "abc"),
            format!("{n}=abc; Path=/; HttpOnly; SameSite=Lax; Secure")
        );
        assert_eq!(
            clear("main", true),
            format!("{n}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure")
        );
        assert!(n.starts_with("__Host-gatehouse-session-"));
    }

    #[test]
    fn http_cookies_have_no_prefix_and_no_secure() {
        let c = set("main", false, "abc");
        assert_eq!(
            c,
            "gatehouse-session-0d6e4079=abc; Path=/; HttpOnly; SameSite=Lax"
        );
        assert!(!c.contains("Secure"));
    }

    #[test]
    fn reads_only_the_name_for_the_tenant_and_scheme_and_well_formed_values() {
        let mine = name("main", false);
        let other = name("other", false);
        let header = format!("a=1; {other}=T3RoZXI; {mine}=Zm9v_-x; gatehouse-session=old");
        let h = [header.as_str()];
        assert_eq!(find(h, "main", false).as_deref(), Some("Zm9v_-x"));
        assert_eq!(find(h, "other", false).as_deref(), Some("T3RoZXI"));
        assert_eq!(find(h, "main", true), None);
        assert_eq!(find(h, "third", false), None);
        let split = format!("{mine}=a;b");
        assert_eq!(find([split.as_str()], "main", false).as_deref(), Some("a"));
        let escaped = format!("{mine}=%3Cx%3E");
        assert_eq!(find([escaped.as_str()], "main", false), None);
        let second = format!("{mine}=Zm9v");
        assert_eq!(
            find(["a=1", second.as_str()], "main", false).as_deref(),
            Some("Zm9v"),
            "any of the request's Cookie headers"
        );
    }
}
