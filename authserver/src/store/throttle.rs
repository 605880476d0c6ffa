//! Login throttle rows (`login_throttles`): failed sign-ins counted per key
//! (`user:<normalized username>`, `ip:<address>`) in the database, so every pod sees the
//! same counts and a lockout holds whichever pod the next attempt reaches. Each write is
//! one `INSERT … ON CONFLICT DO UPDATE` statement: concurrent failures on many pods all
//! count, none is lost.

use super::{Result, Store, with_pool};
use crate::clock::UnixTime;

/// The limits one key is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// The failure that reaches this count locks the key.
    pub max_failures: u32,
    /// Failures older than this no longer count (a new window starts).
    pub window_seconds: u64,
    /// How long a lock lasts.
    pub lockout_seconds: u64,
}

/// A key's state after a failure was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct ThrottleState {
    /// Failures in the current window, this one included.
    pub failures: i32,
    pub window_started_at: i64,
    /// Set while (or once) the key is locked.
    pub locked_until: Option<i64>,
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Counts one failure for `key` at `now` and returns the key's new state. A lock that
    /// has ended, or (when unlocked) a window that has run out, starts a fresh count at 1; the
    /// failure that brings the count to `max_failures` locks the key until
    /// `now + lockout_seconds`. A key already locked keeps its lock. The row may be
    /// purged once both its window and its lock are over (`expires_at`).
    #[tracing::instrument(name = "db.record_login_failure", skip_all)]
    pub async fn record_login_failure(
        &self,
        tenant_id: &str,
        key: &str,
        limits: ThrottleLimits,
        now: UnixTime,
    ) -> Result<ThrottleState> {
        let window = secs(limits.window_seconds);
        let lockout = secs(limits.lockout_seconds);
        let expires_at = now.saturating_add(window.max(lockout));
        // A fresh count starts when the stored lock has ended, or (with no lock) the
        // stored window has run out; an active lock outlives its window. Written out in
        // each SET expression because every one of them sees the old row.
        let state = with_pool!(self, pool => {
            sqlx::query_as::<_, ThrottleState>(
                "INSERT INTO login_throttles (tenant_id, throttle_key, failures, \
                     window_started_at, locked_until, expires_at) \
                 VALUES ($1, $2, 1, $3, CASE WHEN $4 <= 1 THEN $3 + $6 ELSE NULL END, $7) \
                 ON CONFLICT (tenant_id, throttle_key) DO UPDATE SET \
                   failures = CASE \
                     WHEN (login_throttles.locked_until IS NULL \
                           AND login_throttles.window_started_at + $5 <= $3) \
                       OR login_throttles.locked_until <= $3 THEN 1 \
                     ELSE login_throttles.failures + 1 END, \
                   window_started_at = CASE \
                     WHEN (login_throttles.locked_until IS NULL \
                           AND login_throttles.window_started_at + $5 <= $3) \
                       OR login_throttles.locked_until <= $3 THEN $3 \
                     ELSE login_throttles.window_started_at END, \
                   locked_until = CASE \
                     WHEN (login_throttles.locked_until IS NULL \
                           AND login_throttles.window_started_at + $5 <= $3) \
                       OR login_throttles.locked_until <= $3 \
                       THEN CASE WHEN $4 <= 1 THEN $3 + $6 ELSE NULL END \
                     WHEN login_throttles.locked_until IS NOT NULL THEN login_throttles.locked_until \
                     WHEN login_throttles.failures + 1 >= $4 THEN $3 + $6 \
                     ELSE NULL END, \
                   expires_at = $7 \
                 RETURNING failures, window_started_at, locked_until",
            )
            .bind(tenant_id)
            .bind(key)
            .bind(now)
            .bind(i64::from(limits.max_failures))
            .bind(window)
            .bind(lockout)
            .bind(expires_at)
            .fetch_one(pool)
            .await?
        });
        Ok(state)
    }

    /// The latest `locked_until` among `keys` that is still in the future at `now`.
    #[tracing::instrument(name = "db.login_locked_until", skip_all)]
    pub async fn login_locked_until(
        &self,
        tenant_id: &str,
        keys: &[&str],
        now: UnixTime,
    ) -> Result<Option<UnixTime>> {
        let mut latest: Option<UnixTime> = None;
        for key in keys {
            let until = with_pool!(self, pool => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT locked_until FROM login_throttles \
                     WHERE tenant_id = $1 AND throttle_key = $2 AND locked_until > $3",
                )
                .bind(tenant_id)
                .bind(*key)
                .bind(now)
                .fetch_optional(pool)
                .await?
            });
            latest = latest.max(until);
        }
        Ok(latest)
    }

    /// Forgets a key's failures (after a successful sign-in).
    #[tracing::instrument(name = "db.clear_login_failures", skip_all)]
    pub async fn clear_login_failures(&self, tenant_id: &str, key: &str) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM login_throttles WHERE tenant_id = $1 AND throttle_key = $2")
                .bind(tenant_id)
                .bind(key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
