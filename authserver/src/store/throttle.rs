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

/// A row [`Store::reserve_login_attempts`] returns.
#[derive(sqlx::FromRow)]
struct ReservedRow {
    throttle_key: String,
    failures: i32,
    window_started_at: i64,
    locked_until: Option<i64>,
}

/// The reservation statement for `n` keys. Parameters: `$1` tenant, `$2` now, then six
/// per key: key, `max_failures`, window, lockout, the lock a first failure starts (when
/// `max_failures` is 1), and `expires_at`. The `WHERE` of `DO UPDATE` leaves a locked
/// row alone, and then nothing is returned for it. Otherwise a fresh count starts when
/// the stored lock has ended, or (with no lock) the stored window has run out; each SET
/// expression says so again because every one of them sees the old row. A key's limits
/// are chosen by the row's key (`CASE`), as `DO UPDATE` sees only the row and the
/// proposed one.
fn reserve_sql(n: usize) -> String {
    let param = |key: usize, field: usize| format!("${}", 3 + key * 6 + field);
    let per_key = |field: usize| {
        let arms: Vec<String> = (0..n)
            .map(|k| format!("WHEN {} THEN {}", param(k, 0), param(k, field)))
            .collect();
        format!("(CASE login_throttles.throttle_key {} END)", arms.join(" "))
    };
    let (max, window, lockout) = (per_key(1), per_key(2), per_key(3));
    let values: Vec<String> = (0..n)
        .map(|k| {
            format!(
                "($1, {}, 1, $2, {}, {})",
                param(k, 0),
                param(k, 4),
                param(k, 5)
            )
        })
        .collect();
    let fresh = format!(
        "login_throttles.locked_until IS NOT NULL \
         OR login_throttles.window_started_at + {window} <= $2"
    );
    format!(
        "INSERT INTO login_throttles (tenant_id, throttle_key, failures, \
             window_started_at, locked_until, expires_at) \
         VALUES {} \
         ON CONFLICT (tenant_id, throttle_key) DO UPDATE SET \
           failures = CASE WHEN {fresh} THEN 1 ELSE login_throttles.failures + 1 END, \
           window_started_at = CASE WHEN {fresh} THEN $2 \
             ELSE login_throttles.window_started_at END, \
           locked_until = CASE WHEN {fresh} THEN excluded.locked_until \
             WHEN login_throttles.failures + 1 >= {max} THEN $2 + {lockout} \
             ELSE NULL END, \
           expires_at = excluded.expires_at \
         WHERE login_throttles.locked_until IS NULL OR login_throttles.locked_until <= $2 \
         RETURNING throttle_key, failures, window_started_at, locked_until",
        values.join(", ")
    )
}

impl Store {
    /// Reserves one attempt on each of `keys` at `now`, before the password or code is
    /// checked: counts it as a failure in advance on every key that is not locked and
    /// returns those keys with their new state; a key locked at `now` is left out (and
    /// nothing is written for it). A lock that has ended, or (when unlocked) a window
    /// that has run out, starts a fresh count at 1; the reservation that brings the count
    /// to `max_failures` locks the key until `now + lockout_seconds` (and is itself still
    /// evaluated: see `crate::throttle`).
    ///
    /// One statement for all the keys (a sign-in counts its username and its address in
    /// one round trip), so concurrent attempts on many pods each see the count the
    /// others left: no more than `max_failures` are ever let through. Rows are written in
    /// key order, whoever calls: two attempts that both hold one key's row and wait for
    /// the other's cannot happen. The row may be purged once both its window and its
    /// lock are over (`expires_at`).
    #[tracing::instrument(name = "db.reserve_login_attempts", skip_all)]
    pub async fn reserve_login_attempts(
        &self,
        tenant_id: &str,
        keys: &[(&str, ThrottleLimits)],
        now: UnixTime,
    ) -> Result<Vec<(String, ThrottleState)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = keys.to_vec();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        keys.dedup_by(|a, b| a.0 == b.0);
        let sql = reserve_sql(keys.len());
        let rows = with_pool!(self, pool => {
            let mut query = sqlx::query_as::<_, ReservedRow>(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(tenant_id)
                .bind(now);
            for (key, limits) in &keys {
                let lockout = secs(limits.lockout_seconds);
                let first_lock = (limits.max_failures <= 1).then(|| now.saturating_add(lockout));
                query = query
                    .bind(*key)
                    .bind(i64::from(limits.max_failures))
                    .bind(secs(limits.window_seconds))
                    .bind(lockout)
                    .bind(first_lock)
                    .bind(now.saturating_add(secs(limits.window_seconds).max(lockout)));
            }
            query.fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|r| {
                let state = ThrottleState {
                    failures: r.failures,
                    window_started_at: r.window_started_at,
                    locked_until: r.locked_until,
                };
                (r.throttle_key, state)
            })
            .collect())
    }

    /// Gives back an attempt reserved with [`Store::reserve_login_attempts`] that did not
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
