//! Deleting expired rows in bounded batches: each batch is its own short statement, so
//! purging never holds long locks on tables live traffic writes to.

use super::{Result, Store, with_pool};
use crate::clock::UnixTime;

/// How long a target's rows are kept: the cutoff `$1` its statements get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Until their own expiry (`$1` is now).
    UntilExpiry,
    /// `audit.retention_days` (`$1` is that long ago).
    AuditRetention,
    /// `purge.device_retention_days` since last seen, and their trust over.
    DeviceRetention,
}

/// A purge target as users type it, and the table it cleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub name: &'static str,
    pub kept: Kept,
    /// `DELETE`s of at most `$3` rows expired before `$1`, of tenant `$2` (or all when
    /// `$2` is NULL), keyed by the primary key so it works on both backends. A target
    /// that cleans related tables runs one statement per table, in order.
    sql: &'static [&'static str],
}

/// Every target, in the order a full purge runs them. Tables added by later features
/// add their target here.
pub const TARGETS: &[Target] = &[
    Target {
        kept: Kept::UntilExpiry,
        name: "dpop-nonces",
        sql: &[
            "DELETE FROM dpop_nonces WHERE (tenant_id, nonce) IN (SELECT tenant_id, nonce FROM dpop_nonces \
              WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::UntilExpiry,
        name: "dpop-jti",
        sql: &[
            "DELETE FROM dpop_jti WHERE (tenant_id, jti) IN (SELECT tenant_id, jti FROM dpop_jti \
              WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::UntilExpiry,
        name: "assertion-jti",
        sql: &[
            "DELETE FROM assertion_jti WHERE (tenant_id, client_id, jti) IN (SELECT tenant_id, client_id, jti \
              FROM assertion_jti WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::UntilExpiry,
        name: "jti",
        sql: &[
            "DELETE FROM revoked_tokens WHERE (tenant_id, jti) IN (SELECT tenant_id, jti FROM revoked_tokens \
              WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::UntilExpiry,
        name: "authorization-codes",
        sql: &[
            "DELETE FROM authorization_codes WHERE (tenant_id, code_hash) IN (SELECT tenant_id, code_hash \
              FROM authorization_codes WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    // Refresh tokens past their sliding expiry; then whole grants past their absolute
    // end (their codes, refresh tokens and access-token records go with them, ON DELETE
    // CASCADE); then access-token records whose token has expired.
    Target {
        kept: Kept::UntilExpiry,
        name: "refresh-tokens",
        sql: &[
            "DELETE FROM refresh_tokens WHERE (tenant_id, token_hash) IN (SELECT tenant_id, token_hash \
              FROM refresh_tokens WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
            "DELETE FROM grants WHERE (tenant_id, grant_id) IN (SELECT tenant_id, grant_id \
              FROM grants WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
            "DELETE FROM grant_access_tokens WHERE (tenant_id, jti) IN (SELECT tenant_id, jti \
              FROM grant_access_tokens WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::UntilExpiry,
        name: "sessions",
        // Accounts go with their browser session (ON DELETE CASCADE); an account that
        // ended on its own is removed when its browser is next seen.
        sql: &[
            "DELETE FROM browser_sessions WHERE (tenant_id, id_hash) IN (SELECT tenant_id, id_hash \
              FROM browser_sessions WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::UntilExpiry,
        name: "par-requests",
        sql: &[
            "DELETE FROM authorization_requests WHERE (tenant_id, id_hash) IN (SELECT tenant_id, id_hash \
              FROM authorization_requests WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::UntilExpiry,
        name: "rate-limits",
        sql: &[
            "DELETE FROM login_throttles WHERE (tenant_id, throttle_key) IN (SELECT tenant_id, throttle_key \
              FROM login_throttles WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::AuditRetention,
        name: "audit",
        sql: &[
            "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events \
              WHERE at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    // Mail sent or given up (its content was erased then); `expires_at` is NULL while
    // a message is still queued, so queued mail is never purged.
    Target {
        kept: Kept::UntilExpiry,
        name: "email-outbox",
        sql: &[
            "DELETE FROM email_outbox WHERE id IN (SELECT id FROM email_outbox \
              WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    Target {
        kept: Kept::UntilExpiry,
        name: "email-tokens",
        sql: &[
            "DELETE FROM email_tokens WHERE (tenant_id, token_hash) IN (SELECT tenant_id, token_hash \
              FROM email_tokens WHERE expires_at < $1 AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
    // Remembered devices nobody signed in on for the retention period. A device still
    // trusted is kept (forgetting it would ask its user for a second factor early).
    Target {
        kept: Kept::DeviceRetention,
        name: "devices",
        sql: &[
            "DELETE FROM known_devices WHERE (tenant_id, user_id, device_hash) IN (SELECT tenant_id, user_id, device_hash \
              FROM known_devices WHERE last_seen_at < $1 AND (trusted_until IS NULL OR trusted_until < $1) \
              AND ($2 IS NULL OR tenant_id = $2) LIMIT $3)",
        ],
    },
];

/// Looks a target up by the name users type.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

impl Store {
    /// Deletes one batch of `target`'s rows older than `before`; returns how many.
    #[tracing::instrument(name = "db.purge_batch", skip_all)]
    pub async fn purge_batch(
        &self,
        target: Target,
        before: UnixTime,
        tenant_id: Option<&str>,
        batch: i64,
    ) -> Result<u64> {
        let mut rows = 0;
        for sql in target.sql {
            rows += with_pool!(self, pool => {
                sqlx::query(*sql)
                    .bind(before)
                    .bind(tenant_id)
                    .bind(batch)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(rows)
    }
}
