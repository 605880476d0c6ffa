//! Access tokens this pod verified and found active, so introspection and userinfo of a
//! token seen before skip its signature check (an ES256 verify is most of a first
//! introspection's CPU) and the database's denylist and grant lookups.
//!
//! Keys are a SHA-256 of the tenant and the token: the cache holds no bearer token, and
//! a token presented at another tenant misses. Entries are dropped at any revocation of
//! a token or grant (this process's at once, other processes' through the change feed),
//! at any change to tenants, clients or keys (a deleted client, a retired key), after
//! [`crate::cache::DEFAULT_TTL`] as a backstop, and never served while the database is
//! unavailable (introspection then fails as before: a revocation may be unknown). The
//! token's own `exp` is checked at every use.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;
use serde_json::Value;

use crate::cache::{Cached, DEFAULT_TTL, Epoch, LoadEpoch};

/// A token's cache key: SHA-256 over the tenant id, a separator and the token.
pub type TokenKey = [u8; 32];

/// The cache of verified tokens (see the module docs); `capacity` zero disables it.
#[derive(Debug)]
pub struct VerifiedTokens {
    cache: Option<Cached<TokenKey, Arc<Value>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Lookups so far (`gatehouse_verified_token_cache_lookups_total`) and entries held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

impl VerifiedTokens {
    pub fn new(epoch: &Epoch, capacity: usize) -> Self {
        let cache = (capacity > 0).then(|| {
            Cached::new(epoch.clone(), DEFAULT_TTL)
                .dropped_on_revocation()
                .bounded_during_outage(std::time::Duration::ZERO)
                .bounded(capacity)
        });
        Self {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.as_ref().map_or(0, Cached::len),
        }
    }

    pub fn key(tenant_id: &str, token: &str) -> TokenKey {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(tenant_id.as_bytes());
        // Tenant ids cannot contain NUL: no (tenant, token) pair hashes like another.
        ctx.update(&[0]);
        ctx.update(token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// The claims of a token verified before and still valid at `now` (its `exp`).
    pub fn get(&self, key: &TokenKey, now: i64) -> Option<Arc<Value>> {
        let cache = self.cache.as_ref()?;
        let found = cache.get(key).filter(|claims| {
            claims
                .get("exp")
                .and_then(Value::as_i64)
                .is_some_and(|exp| exp > now)
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The epoch to pass to [`VerifiedTokens::insert`]: read before the checks, so a
    /// revocation committed meanwhile leaves the entry already outdated.
    pub fn begin(&self) -> Option<LoadEpoch> {
        self.cache.as_ref().map(Cached::begin_load)
    }

    /// Remembers a token that passed every check, as of `epoch`.
    pub fn insert(&self, key: TokenKey, epoch: Option<LoadEpoch>, claims: Arc<Value>) {
        if let (Some(cache), Some(epoch)) = (&self.cache, epoch) {
            cache.insert(key, epoch, claims);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_differ_per_tenant_and_token() {
        let a = VerifiedTokens::key("t1", "token");
        assert_eq!(a, VerifiedTokens::key("t1", "token"));
        assert_ne!(a, VerifiedTokens::key("t2", "token"));
        assert_ne!(a, VerifiedTokens::key("t1", "token2"));
        // The separator: ("t1", "xtoken") is not ("t1x", "token").
        assert_ne!(
            VerifiedTokens::key("t1", "xtoken"),
            VerifiedTokens::key("t1x", "token")
        );
    }

    #[test]
    fn an_expired_token_is_never_served() {
        let epoch = Epoch::default();
        let cache = VerifiedTokens::new(&epoch, 16);
        let key = VerifiedTokens::key("t", "a");
        cache.insert(key, cache.begin(), Arc::new(json!({ "exp": 100 })));
        assert!(cache.get(&key, 99).is_some());
        assert!(cache.get(&key, 100).is_none());
        assert_eq!(
            cache.counts(),
            CacheCounts {
                hits: 1,
                misses: 1,
                entries: 1
            }
        );
        let no_exp = VerifiedTokens::key("t", "b");
        cache.insert(no_exp, cache.begin(), Arc::new(json!({})));
        assert!(cache.get(&no_exp, 0).is_none());
    }

    #[test]
    fn a_revocation_or_a_change_drops_every_token() {
        let epoch = Epoch::default();
        let cache = VerifiedTokens::new(&epoch, 16);
        let key = VerifiedTokens::key("t", "a");
        let claims = Arc::new(json!({ "exp": 100 }));
        cache.insert(key, cache.begin(), Arc::clone(&claims));
        epoch.revoked();
        assert!(cache.get(&key, 0).is_none());
        cache.insert(key, cache.begin(), Arc::clone(&claims));
        epoch.bump();
        assert!(cache.get(&key, 0).is_none());
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let cache = VerifiedTokens::new(&Epoch::default(), 0);
        let key = VerifiedTokens::key("t", "a");
        cache.insert(key, cache.begin(), Arc::new(json!({ "exp": 100 })));
        assert!(cache.get(&key, 0).is_none());
    }
}
