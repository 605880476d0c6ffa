//! The device cookie: a long-lived random value per browser and tenant, set at the first
//! sign-in a tenant with the new-device notice sees from the browser, so a later sign-in
//! can tell a known device from a new one. The database keeps its hash only
//! (`known_devices`). Unlike the session cookie it outlives sessions (a year).

use crate::session::cookie::tenant_suffix;

/// How long the device cookie lives.
pub const MAX_AGE_SECONDS: u64 = 365 * 86_400;

/// The cookie's name for `tenant_id` (`__Host-` over https, like the session cookie).
pub fn name(tenant_id: &str, https: bool) -> String {
    let prefix = if https {
        "__Host-gatehouse-device"
    } else {
        "gatehouse-device"
    };
    format!("{prefix}-{}", tenant_suffix(tenant_id))
}

/// `Set-Cookie` carrying `value`.
pub fn set(tenant_id: &str, https: bool, value: &str) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!(
        "{}={value}; Path=/; Max-Age={MAX_AGE_SECONDS}; HttpOnly; SameSite=Lax{secure}",
        name(tenant_id, https)
    )
}

/// The device cookie's value among `Cookie` header values, if well-formed.
pub fn find<'a>(
    headers: impl Iterator<Item = &'a str>,
    tenant_id: &str,
    https: bool,
) -> Option<String> {
    let wanted = name(tenant_id, https);
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| *n == wanted && valid(v))
        .map(|(_, v)| v.to_owned())
}

/// A value this server could have made (`crypto::new_handle`: 43 base64url characters).
pub fn valid(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_cookie_is_found_by_tenant_and_checked() {
        let v = crate::crypto::new_handle();
        assert!(valid(&v));
        let header = format!("a=b; {}={v}; c=d", name("main", true));
        assert_eq!(
            find([header.as_str()].into_iter(), "main", true),
            Some(v.clone())
        );
        assert_eq!(find([header.as_str()].into_iter(), "other", true), None);
        let forged = format!("{}=x%0d%0a", name("main", true));
        assert_eq!(find([forged.as_str()].into_iter(), "main", true), None);
        let set = set("main", true, &v);
        assert!(set.starts_with("__Host-gatehouse-device-"), "{set}");
        assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("Max-Age="));
    }
}
