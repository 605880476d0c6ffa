//! Login throttle rows (`login_throttles`): sign-in attempts counted per key
//! (`user:<normalized username>`, `ip:<address>`) in the database, so every pod sees the
//! same counts and a lockout holds whichever pod the next attempt reaches. An attempt is
//! reserved (counted) before it is checked, in one `INSERT … ON CONFLICT DO UPDATE …
//! WHERE` statement that refuses it while the key is locked: concurrent attempts on many
//! pods all count, none is lost, and none slips past a lock. An attempt that does not
//! fail is given back afterwards.

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

/// A key's state after an attempt was reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct ThrottleState {
    /// Attempts counted in the current window (failures, and attempts reserved but not
    /// yet settled), this one included.
    pub failures: i32,
    pub window_started_at: i64,
    /// Set while (or once) the key is locked.
    pub locked_until: Option<i64>,
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Reserves one attempt for `key` at `now`, before the password or code is checked:
    /// counts it as a failure in advance and returns the key's new state, or `None` (and
    /// writes nothing) while a lock is in force. A lock that has ended, or (when
    /// unlocked) a window that has run out, starts a fresh count at 1; the reservation
    /// that brings the count to `max_failures` locks the key until `now +
    /// lockout_seconds` (and is itself still evaluated: see `crate::throttle`). One
    /// statement, so concurrent attempts on many pods each see the count the others
    /// left: no more than `max_failures` are ever let through. The row may be purged
    /// once both its window and its lock are over (`expires_at`).
    #[tracing::instrument(name = "db.reserve_login_attempt", skip_all)]
    pub async fn reserve_login_attempt(
        &self,
        tenant_id: &str,
        key: &str,
        limits: ThrottleLimits,
        now: UnixTime,
    ) -> Result<Option<ThrottleState>> {
        let window = secs(limits.window_seconds);
        let lockout = secs(limits.lockout_seconds);
        let expires_at = now.saturating_add(window.max(lockout));
        // The `WHERE` of `DO UPDATE` leaves a locked row alone, and then nothing is
        // returned. Otherwise a fresh count starts when the stored lock has ended, or
        // (with no lock) the stored window has run out. Written out in each SET
        // expression because every one of them sees the old row.
        let state = with_pool!(self, pool => {
            sqlx::query_as::<_, ThrottleState>(
                "INSERT INTO login_throttles (tenant_id, throttle_key, failures, \
                     window_started_at, locked_until, expires_at) \
                 VALUES ($1, $2, 1, $3, CASE WHEN $4 <= 1 THEN $3 + $6 ELSE NULL END, $7) \
                 ON CONFLICT (tenant_id, throttle_key) DO UPDATE SET \
                   failures = CASE \
                     WHEN login_throttles.locked_until IS NOT NULL \
                       OR login_throttles.window_started_at + $5 <= $3 THEN 1 \
                     ELSE login_throttles.failures + 1 END, \
                   window_started_at = CASE \
                     WHEN login_throttles.locked_until IS NOT NULL \
                       OR login_throttles.window_started_at + $5 <= $3 THEN $3 \
                     ELSE login_throttles.window_started_at END, \
                   locked_until = CASE \
                     WHEN login_throttles.locked_until IS NOT NULL \
                       OR login_throttles.window_started_at + $5 <= $3 \
                       THEN CASE WHEN $4 <= 1 THEN $3 + $6 ELSE NULL END \
                     WHEN login_throttles.failures + 1 >= $4 THEN $3 + $6 \
                     ELSE NULL END, \
                   expires_at = $7 \
                 WHERE login_throttles.locked_until IS NULL \
                    OR login_throttles.locked_until <= $3 \
                 RETURNING failures, window_started_at, locked_until",
            )
            .bind(tenant_id)
            .bind(key)
            .bind(now)
            .bind(i64::from(limits.max_failures))
            .bind(window)
            .bind(lockout)
            .bind(expires_at)
            .fetch_optional(pool)
            .await?
        });
        Ok(state)
    }

    /// Gives back an attempt reserved with [`Store::reserve_login_attempt`] that did not
    /// fail (a right password, a code accepted, an attempt refused on another key): the
    /// count goes down by one, and a lock that this very reservation started (`reserved`
    /// is the state it returned) is lifted. Nothing changes once the key's window has
    /// started afresh (the reservation no longer counts).
    #[tracing::instrument(name = "db.release_login_attempt", skip_all)]
    pub async fn release_login_attempt(
        &self,
        tenant_id: &str,
        key: &str,
        reserved: &ThrottleState,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "UPDATE login_throttles SET \
                   failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END, \
                   locked_until = CASE WHEN locked_until = $4 THEN NULL ELSE locked_until END \
                 WHERE tenant_id = $1 AND throttle_key = $2 AND window_started_at = $3",
            )
            .bind(tenant_id)
            .bind(key)
            .bind(reserved.window_started_at)
            .bind(reserved.locked_until)
            .execute(pool)
            .await?;
        });
        Ok(())
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
