//! Single-use identifiers and the revocation denylist: rows that live until a deadline
//! and are then purged (`authserver purge`).

use super::{Result, Store, with_pool};
use crate::clock::UnixTime;

/// Replay caches keyed by a token's `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCache {
    /// private_key_jwt client assertions, scoped to the client.
    Assertion,
    /// DPoP proofs.
    Dpop,
    /// Passkey ceremony challenges, answered at most once. They share the client
    /// assertions' table (and its purge target) under the client id `#passkey`, which
    /// no client can have (`#` is not allowed in a client id).
    PasskeyChallenge,
    /// The `state` of a sign-in at an upstream identity provider, answered at most
    /// once (under the client id `#upstream`, like passkey challenges).
    UpstreamState,
}

/// The `assertion_jti.client_id` of passkey challenges.
const PASSKEY_SCOPE: &str = "#passkey";
/// The `assertion_jti.client_id` of upstream sign-in states.
const UPSTREAM_SCOPE: &str = "#upstream";

impl Store {
    /// Records `jti` as used until `expires_at`. Returns `false` when it was already
    /// recorded: a replay. Atomic across pods (primary key).
    #[tracing::instrument(name = "db.use_jti", skip_all)]
    pub async fn use_jti(
        &self,
        cache: ReplayCache,
        tenant_id: &str,
        scope: &str,
        jti: &str,
        expires_at: UnixTime,
    ) -> Result<bool> {
        let scope = match cache {
            ReplayCache::PasskeyChallenge => PASSKEY_SCOPE,
            ReplayCache::UpstreamState => UPSTREAM_SCOPE,
            _ => scope,
        };
        let sql = match cache {
            ReplayCache::Assertion | ReplayCache::PasskeyChallenge | ReplayCache::UpstreamState => {
                "INSERT INTO assertion_jti (tenant_id, client_id, jti, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
            }
            // DPoP proofs are unique per key, not per client: `scope` is unused there.
            ReplayCache::Dpop => {
                "INSERT INTO dpop_jti (tenant_id, jti, expires_at) \
                 SELECT $1, $3, $4 WHERE $2 IS NOT NULL ON CONFLICT DO NOTHING"
            }
        };
        let n = with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(tenant_id)
                .bind(scope)
                .bind(jti)
                .bind(expires_at)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Puts an access token's `jti` on the denylist until it expires.
    #[tracing::instrument(name = "db.revoke_jti", skip_all)]
    pub async fn revoke_jti(
        &self,
        tenant_id: &str,
        jti: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO revoked_tokens (tenant_id, jti, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(tenant_id)
            .bind(jti)
            .bind(expires_at)
            .bind(now)
            .execute(pool)
            .await?;
        });
        self.revoked();
        Ok(())
    }

    #[tracing::instrument(name = "db.is_revoked", skip_all)]
    pub async fn is_revoked(&self, tenant_id: &str, jti: &str) -> Result<bool> {
        let found: Option<i64> = with_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT expires_at FROM revoked_tokens WHERE tenant_id = $1 AND jti = $2",
            )
            .bind(tenant_id)
            .bind(jti)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// Stores a server-issued DPoP nonce.
    #[tracing::instrument(name = "db.insert_dpop_nonce", skip_all)]
    pub async fn insert_dpop_nonce(
        &self,
        tenant_id: &str,
        nonce: &str,
        expires_at: UnixTime,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO dpop_nonces (tenant_id, nonce, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant_id)
            .bind(nonce)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// When a nonce expires, if it was issued for this tenant and is still valid.
    #[tracing::instrument(name = "db.dpop_nonce_expiry", skip_all)]
    pub async fn dpop_nonce_expiry(
        &self,
        tenant_id: &str,
        nonce: &str,
        now: UnixTime,
    ) -> Result<Option<UnixTime>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT expires_at FROM dpop_nonces \
                 WHERE tenant_id = $1 AND nonce = $2 AND expires_at > $3",
            )
            .bind(tenant_id)
            .bind(nonce)
            .bind(now)
            .fetch_optional(pool)
            .await?
        }))
    }
}
