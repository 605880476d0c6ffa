//! Tenants: one issuer each. Requests are routed to a tenant by their issuer URL.

use serde::{Deserialize, Serialize};

/// The tenant `--dev` creates.
pub const DEFAULT_TENANT: &str = "default";

/// What declares a tenant (config file, `--dev`, or the admin API later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSpec {
    pub id: String,
    /// Issuer URL without a trailing slash.
    pub issuer: String,
    pub display_name: String,
}

/// A stored tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub issuer: String,
    pub display_name: String,
    /// Tenant-specific settings (JSON object): the tenant's policy.
    pub settings: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
    /// `settings` parsed, on first use (see [`super::policy::TenantPolicy::of`]).
    pub parsed: ParsedPolicy,
}

/// A tenant's policy parsed from its settings once: the request path asks for it
/// several times per request, and parsing is most of what that costs. Derived data, so
/// it takes no part in comparing tenants.
#[derive(Debug, Clone, Default)]
pub struct ParsedPolicy(pub(crate) std::sync::OnceLock<super::policy::TenantPolicy>);

impl PartialEq for ParsedPolicy {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ParsedPolicy {}

/// Tenant ids are used in URLs, CLI flags and Kubernetes names: DNS-label-like.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tenant id {id:?}: use 1-63 lowercase letters, digits and '-'"
        ))
    }
}

/// An issuer is an absolute https URL without query or fragment (OpenID Connect Discovery
/// §3); plain http is accepted for loopback hosts, and anywhere in `--dev`.
pub fn validate_issuer(issuer: &str, dev: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(issuer).map_err(|e| format!("invalid issuer URL {issuer:?}: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "issuer must not have a query or fragment: {issuer:?}"
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("issuer has no host: {issuer:?}"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if dev || is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "issuer must use https (http is allowed for localhost only): {issuer:?}"
        )),
        other => Err(format!(
            "issuer scheme {other:?} is not http(s): {issuer:?}"
        )),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The parts of an issuer that route a request: `host[:port]` (default port elided) and
/// the path prefix without trailing slash ("" for a host-level issuer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRoute {
    pub https: bool,
    pub authority: String,
    pub path: String,
}

impl IssuerRoute {
    pub fn parse(issuer: &str) -> Option<Self> {
        let url = url::Url::parse(issuer).ok()?;
        let host = url.host_str()?.to_ascii_lowercase();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Some(Self {
            https: url.scheme() == "https",
            authority,
            path: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// If a request for `authority` + `path` belongs to this issuer, the rest of the path
    /// (always starting with `/`).
    pub fn strip<'p>(
        &self,
        https: Option<bool>,
        authority: &str,
        path: &'p str,
    ) -> Option<&'p str> {
        if https.is_some_and(|h| h != self.https) || !self.authority.eq_ignore_ascii_case(authority)
        {
            return None;
        }
        let rest = path.strip_prefix(self.path.as_str())?;
        if rest.is_empty() || rest.starts_with('/') {
            Some(rest)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_routes_match_host_and_path_prefix() {
        let r = IssuerRoute::parse("https://id.example.com/t/acme").unwrap();
        assert_eq!(
            r.strip(
                None,
                "id.example.com",
                "/t/acme/.well-known/openid-configuration"
            ),
            Some("/.well-known/openid-configuration")
        );
        assert_eq!(r.strip(None, "id.example.com", "/t/acmeco/jwks"), None);
        assert_eq!(r.strip(None, "other.example.com", "/t/acme/jwks"), None);
        assert_eq!(r.strip(Some(false), "id.example.com", "/t/acme/jwks"), None);
        assert_eq!(r.strip(Some(true), "ID.example.com", "/t/acme"), Some(""));
    }

    #[test]
    fn default_ports_are_elided() {
        assert_eq!(
            IssuerRoute::parse("https://id.example.com:443")
                .unwrap()
                .authority,
            "id.example.com"
        );
        assert_eq!(
            IssuerRoute::parse("http://127.0.0.1:8080/")
                .unwrap()
                .authority,
            "127.0.0.1:8080"
        );
    }

    #[test]
    fn issuers_must_be_https_outside_loopback() {
        assert!(validate_issuer("https://id.example.com", false).is_ok());
        assert!(validate_issuer("http://localhost:8080", false).is_ok());
        assert!(validate_issuer("http://127.0.0.1:8080", false).is_ok());
        assert!(validate_issuer("http://id.example.com", false).is_err());
        assert!(validate_issuer("http://id.example.com", true).is_ok());
        assert!(validate_issuer("https://id.example.com/?x=1", false).is_err());
        assert!(validate_issuer("ftp://id.example.com", true).is_err());
    }

    #[test]
    fn tenant_ids_are_dns_labels() {
        assert!(validate_id("acme-1").is_ok());
        assert!(validate_id("Acme").is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id("-a").is_err());
    }
}
