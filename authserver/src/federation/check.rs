//! [`FederationService::check`]: can a sign-in through an upstream provider start at
//! all? Asked by the operator through the admin API (`CheckUpstreams`), so that an
//! IdentityTenant says `Ready=False` while its upstream is unreachable or misconfigured
//! instead of users finding out at the sign-in page.
//!
//! The check does what a sign-in does first, from this pod's network and through the
//! same bounded fetcher (its destination policy, timeouts and size caps): nothing an
//! operator's probe can reach that a sign-in could not. It shares the document caches
//! with sign-ins, but only one way: a fresh document is reused and a fetched one is
//! kept, while a failure is not remembered — a check must not make the sign-ins of the
//! next seconds fail on its backoff.

use std::time::Duration;

use serde_json::Value;

use super::{FederationService, discovered, ldap, read_secret};
use crate::domain::federation::{UpstreamKind, UpstreamProvider};

/// Longest a provider's check may take. A directory's `timeoutSeconds` (up to 60) bounds
/// its connect and its bind separately; the caller (the operator gives up after 30 s)
/// must get an answer naming the slow provider, not a deadline error.
pub const CHECK_BUDGET: Duration = Duration::from_secs(20);

impl FederationService {
    /// Checks what a sign-in through `p` needs first: what was checked, or what failed
    /// and why (never a secret).
    ///
    /// - `oidc`: the discovery document (its `issuer` the configured one, the endpoints
    ///   a sign-in uses present), the key set it names (at least one key), and the
    ///   client secret readable.
    /// - `oauth2`: nothing to fetch without a user (the endpoints are configured); the
    ///   client secret readable.
    /// - `ldap`: a connection (TLS as configured) and a bind as the service account,
    ///   within the directory's `timeoutSeconds`.
    pub async fn check(&self, p: &UpstreamProvider) -> Result<String, String> {
        match (p.kind, &p.ldap) {
            (UpstreamKind::Ldap, Some(d)) => ldap::check(d).await,
            (UpstreamKind::Ldap, None) => Err("no ldap directory configured".to_owned()),
            (UpstreamKind::Oauth2, _) => {
                client_secret(p)?;
                Ok("configured endpoints; nothing is fetched before a sign-in".to_owned())
            }
            (UpstreamKind::Oidc, _) => self.check_oidc(p).await,
        }
    }

    /// [`Self::check`] of every provider, at the same time (a call waits for the
    /// slowest, not for the sum of their timeouts), each cut off after
    /// [`CHECK_BUDGET`], in their order.
    pub async fn check_all(&self, providers: &[UpstreamProvider]) -> Vec<Result<String, String>> {
        futures::future::join_all(providers.iter().map(|p| async move {
            tokio::time::timeout(CHECK_BUDGET, self.check(p))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", CHECK_BUDGET.as_secs())))
        }))
        .await
    }

    async fn check_oidc(&self, p: &UpstreamProvider) -> Result<String, String> {
        let url = p.discovery_url();
        let doc = self
            .discovery
            .probe(&url)
            .await
            .map_err(|e| format!("discovery {}: {e}", shown(&url)))?;
        let endpoints = discovered(p, &doc)
            .map_err(|e| format!("discovery {}: {}", shown(&url), e.detail()))?;
        let jwks = shown(&endpoints.jwks_uri);
        let keys = self
            .jwks
            .probe(&endpoints.jwks_uri)
            .await
            .map_err(|e| format!("JWKS {jwks}: {e}"))?;
        let count = keys
            .get("keys")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if count == 0 {
            // No ID token of the upstream could be validated.
            return Err(format!("JWKS {jwks}: no keys"));
        }
        client_secret(p)?;
        let keys = if count == 1 { "key" } else { "keys" };
        Ok(format!(
            "discovery {} and JWKS {jwks} ({count} {keys}) fetched",
            shown(&url)
        ))
    }
}

/// The client secret can be read where `clientSecret` says (a Secret's key missing from
/// the mounted files fails every sign-in at the token endpoint).
fn client_secret(p: &UpstreamProvider) -> Result<(), String> {
    read_secret(&p.client_secret)
        .map(drop)
        .map_err(|e| format!("clientSecret: {}", e.detail()))
}

/// A URL as messages show it: without query or fragment (which could carry a token).
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_query_or_fragment() {
        assert_eq!(
            shown("https://login.corp.example/.well-known/openid-configuration?t=secret#x"),
            "https://login.corp.example/.well-known/openid-configuration"
        );
        assert_eq!(shown("not a url"), "(not a URL)");
    }
}
