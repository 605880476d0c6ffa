//! Login throttling: sign-in attempts are counted per username and per client IP in the
//! database (shared by every pod); the attempt that reaches the limit within the window
//! locks that key for the lockout period.
//!
//! Check and count are one step: [`LoginThrottle::reserve`] counts the attempt *before*
//! the password or code is checked, in one statement for both keys that leaves a locked
//! key alone (and then the attempt is refused). Only then is the secret verified; a
//! parallel burst of guesses therefore gets at most `max_failures` of them checked,
//! whatever their timing, and the rest are refused with the time to wait. Afterwards the
//! [`Reservation`] is settled: [`LoginThrottle::failed`] keeps the count (the attempt was
//! a failure all along) and audits a lock it started; [`LoginThrottle::release`] gives
//! the attempt back (the count goes down by one, and a lock that this very attempt
//! started is lifted), so successful sign-ins never accumulate on a shared address. While attempts are in flight they
//! count, so a user at `max_failures - 1` who sends two attempts at once may see the
//! second refused until the first is settled.
//!
//! Unknown usernames are counted like real ones, so a lockout reveals nothing about
//! which accounts exist. A complete sign-in also clears the username's count
//! ([`LoginThrottle::record_success`]; not the IP's: one good password must not reset a
//! password-spraying source).
//!
//! Keys: `user:<normalized username>` (over-long input by its SHA-256, so a row stays
//! small) and `ip:<address>`, an IPv6 address by its /64 (one subscriber usually holds a
//! whole /64 and could otherwise rotate addresses past the limit).

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::{Clock, UnixTime};
use crate::config::LoginSettings;
use crate::domain::user::normalize_username;
use crate::store::audit::AuditEvent;
use crate::store::throttle::{ThrottleLimits, ThrottleState};
use crate::store::{self, Store};

/// The sign-in is refused until the lock ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed sign-ins; try again in {retry_after_seconds} s")]
pub struct Locked {
    /// Seconds until the lock ends (at least 1); show it and send it as `Retry-After`.
    pub retry_after_seconds: u64,
}

/// Why a sign-in may not proceed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Locked(#[from] Locked),
    #[error("failed to check the login throttle: {0}")]
    Store(#[from] store::Error),
}

/// The throttle key of a username.
pub fn user_key(username: &str) -> String {
    let n = normalize_username(username);
    if n.len() > crate::domain::user::MAX_USERNAME_LEN {
        format!(
            "user:sha256:{}",
            hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                n.as_bytes()
            ))
        )
    } else {
        format!("user:{n}")
    }
}

/// The throttle key of a client address (IPv6 by its /64).
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                format!("ip:{v4}")
            } else {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                format!("ip:{}/64", std::net::Ipv6Addr::from(prefix))
            }
        }
    }
}

/// The lock in force at `now`, if `locked_until` is still ahead.
pub fn lock_at(locked_until: Option<UnixTime>, now: UnixTime) -> Option<Locked> {
    let until = locked_until?;
    (until > now).then(|| Locked {
        retry_after_seconds: u64::try_from(until - now).unwrap_or(u64::MAX).max(1),
    })
}

/// What the store computes when an attempt is reserved, as a pure function (the SQL of
/// `Store::reserve_login_attempts` implements exactly this; a test holds them together):
/// `None` while a lock is in force (the attempt is refused and nothing changes).
pub fn reserve_state(
    prev: Option<ThrottleState>,
    limits: ThrottleLimits,
    now: UnixTime,
) -> Option<ThrottleState> {
    let window = i64::try_from(limits.window_seconds).unwrap_or(i64::MAX);
    let lockout = i64::try_from(limits.lockout_seconds).unwrap_or(i64::MAX);
    let lock_now = |failures: i32| {
        (i64::from(failures) >= i64::from(limits.max_failures)).then(|| now.saturating_add(lockout))
    };
    match prev {
        Some(p) if lock_at(p.locked_until, now).is_some() => None,
        // Still counting: no lock, and the window still open.
        Some(p) if p.locked_until.is_none() && p.window_started_at.saturating_add(window) > now => {
            let failures = p.failures.saturating_add(1);
            Some(ThrottleState {
                failures,
                window_started_at: p.window_started_at,
                locked_until: lock_now(failures),
            })
        }
        // No row, a lock that has ended, or a window that has run out.
        _ => Some(ThrottleState {
            failures: 1,
            window_started_at: now,
            locked_until: lock_now(1),
        }),
    }
}

/// What the store computes when the attempt that returned `reserved` is given back
/// (`Store::release_login_attempt`).
pub fn release_state(current: ThrottleState, reserved: &ThrottleState) -> ThrottleState {
    if current.window_started_at != reserved.window_started_at {
        return current;
    }
    ThrottleState {
        failures: (current.failures - 1).max(0),
        window_started_at: current.window_started_at,
        locked_until: current
            .locked_until
            .filter(|until| Some(*until) != reserved.locked_until),
    }
}

/// One attempt counted in advance against each of its keys; settle it with
/// [`LoginThrottle::failed`] or [`LoginThrottle::release`]. Dropped unsettled, the
/// attempt stays counted as a failure.
#[derive(Debug)]
#[must_use = "settle the reservation with `failed` or `release`"]
pub struct Reservation {
    tenant_id: String,
    ip: Option<IpAddr>,
    taken: Vec<Taken>,
}

/// The reservation on one key: the state it left (a lock in it is the one it started).
#[derive(Debug)]
struct Taken {
    key: String,
    state: ThrottleState,
}

/// Per-username and per-IP login throttling.
#[derive(Debug)]
pub struct LoginThrottle {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: LoginSettings,
}

impl LoginThrottle {
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: LoginSettings) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    fn user_limits(&self) -> ThrottleLimits {
        ThrottleLimits {
            max_failures: self.settings.max_failures,
            window_seconds: self.settings.failure_window_seconds,
            lockout_seconds: self.settings.lockout_seconds,
        }
    }

    fn ip_limits(&self) -> ThrottleLimits {
        ThrottleLimits {
            max_failures: self.settings.max_failures_per_ip,
            ..self.user_limits()
        }
    }

    /// Call before checking a password or a code: counts the attempt against the
    /// username and the address, or `Err(CheckError::Locked)` while either is locked
    /// (refuse the attempt without checking anything, and show the wait). On `Ok`, check
    /// the secret and settle the reservation with [`Self::failed`] or [`Self::release`].
    pub async fn reserve(
        &self,
        tenant_id: &str,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<Reservation, CheckError> {
        let now = self.clock.now();
        let user = user_key(username);
        let address = ip.map(ip_key);
        let mut keys = vec![(user.as_str(), self.user_limits())];
        if let Some(key) = &address {
            keys.push((key.as_str(), self.ip_limits()));
        }
        let reserved = self
            .store
            .reserve_login_attempts(tenant_id, &keys, now)
            .await?;
        let reservation = Reservation {
            tenant_id: tenant_id.to_owned(),
            ip,
            taken: reserved
                .into_iter()
                .map(|(key, state)| Taken { key, state })
                .collect(),
        };
        let refused: Vec<&str> = keys
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| !reservation.taken.iter().any(|t| t.key == *key))
            .collect();
        if refused.is_empty() {
            return Ok(reservation);
        }
        let refusal = self
            .store
            .login_locked_until(tenant_id, &refused, now)
            .await
            .map_or_else(CheckError::Store, |until| {
                // The lock ended between the two statements: refuse this once anyway.
                CheckError::Locked(lock_at(until, now).unwrap_or(Locked {
                    retry_after_seconds: 1,
                }))
            });
        // Keys reserved with it give their attempt back: this one is never checked.
        if let Err(e) = self.release(reservation).await {
            tracing::warn!(error = %e, "failed to give back a refused sign-in attempt");
        }
        Err(refusal)
    }

    /// The reserved attempt failed (wrong password, unknown user, wrong second factor):
    /// it stays counted. Returns the lock it started, if any; a lock that starts is
    /// audited once (`login.locked`).
    pub async fn failed(&self, reservation: Reservation) -> Option<Locked> {
        let now = self.clock.now();
        let tenant_id = reservation.tenant_id.as_str();
        let mut latest: Option<UnixTime> = None;
        for taken in &reservation.taken {
            let Some(until) = taken.state.locked_until else {
                continue;
            };
            let scope = if taken.key.starts_with("ip:") {
                "ip"
            } else {
                "username"
            };
            tracing::info!(
                tenant = tenant_id,
                scope,
                "sign-in locked after repeated failures"
            );
            self.store
                .audit(
                    AuditEvent::new(tenant_id, now, "login.locked")
                        .subject(Some(&taken.key))
                        .ip(reservation.ip.map(|i| i.to_string()).as_deref())
                        .details(serde_json::json!({
                            "scope": scope,
                            "failures": taken.state.failures,
                            "locked_until": until,
                        })),
                )
                .await;
            latest = latest.max(Some(until));
        }
        lock_at(latest, now)
    }

    /// The reserved attempt did not fail (the password or code was right, or it could
    /// not be checked): gives it back on every key, lifting a lock it started.
    pub async fn release(&self, reservation: Reservation) -> Result<(), store::Error> {
        self.give_back(&reservation, None).await
    }

    /// The reserved attempt completed a sign-in: [`Self::release`] and
    /// [`Self::record_success`] in one, the username's row deleted instead of first
    /// given its attempt back (one statement fewer).
    pub async fn succeeded(
        &self,
        reservation: Reservation,
        username: &str,
    ) -> Result<(), store::Error> {
        let user = user_key(username);
        self.give_back(&reservation, Some(&user)).await?;
        self.store
            .clear_login_failures(&reservation.tenant_id, &user)
            .await
    }

    /// Gives the attempt back on every key of `reservation` but `except`.
    async fn give_back(
        &self,
        reservation: &Reservation,
        except: Option<&str>,
    ) -> Result<(), store::Error> {
        for taken in &reservation.taken {
            if except == Some(taken.key.as_str()) {
                continue;
            }
            self.store
                .release_login_attempt(&reservation.tenant_id, &taken.key, &taken.state)
                .await?;
        }
        Ok(())
    }

    /// A complete sign-in: forgets the username's failures.
    pub async fn record_success(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<(), store::Error> {
        self.store
            .clear_login_failures(tenant_id, &user_key(username))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::store::testing;

    const LIMITS: ThrottleLimits = ThrottleLimits {
        max_failures: 3,
        window_seconds: 900,
        lockout_seconds: 600,
    };

    #[test]
    fn the_nth_attempt_in_a_window_locks_and_later_ones_are_refused() {
        let clock = FixedClock::new(10_000);
        let mut s = None;
        for expected in 1..=2 {
            let next = reserve_state(s, LIMITS, clock.now()).unwrap();
            assert_eq!(next.failures, expected);
            assert_eq!(next.locked_until, None);
            s = Some(next);
            clock.advance(60);
        }
        // The third is still let through (and checked), but starts the lock.
        let third = reserve_state(s, LIMITS, clock.now()).unwrap();
        assert_eq!(third.locked_until, Some(clock.now() + 600));
        assert_eq!(
            lock_at(third.locked_until, clock.now()),
            Some(Locked {
                retry_after_seconds: 600
            })
        );
        // While locked, attempts are refused and change nothing.
        clock.advance(100);
        assert_eq!(reserve_state(Some(third), LIMITS, clock.now()), None);
        assert_eq!(
            lock_at(third.locked_until, clock.now())
                .unwrap()
                .retry_after_seconds,
            500
        );
        // The lock ends; the next attempt starts a fresh count.
        clock.advance(500);
        assert_eq!(lock_at(third.locked_until, clock.now()), None);
        let fresh = reserve_state(Some(third), LIMITS, clock.now()).unwrap();
        assert_eq!((fresh.failures, fresh.window_started_at), (1, clock.now()));
        assert_eq!(fresh.locked_until, None);
    }

    #[test]
    fn failures_outside_the_window_no_longer_count() {
        let a = reserve_state(None, LIMITS, 0).unwrap();
        let b = reserve_state(Some(a), LIMITS, 899).unwrap();
        assert_eq!(b.failures, 2);
        let c = reserve_state(Some(b), LIMITS, 900).unwrap();
        assert_eq!(
            (c.failures, c.window_started_at, c.locked_until),
            (1, 900, None)
        );
    }

    #[test]
    fn a_lock_longer_than_the_window_holds_until_it_ends() {
        let long = ThrottleLimits {
            lockout_seconds: 2000,
            ..LIMITS
        };
        let mut s = None;
        for t in [0, 1, 2] {
            s = reserve_state(s, long, t);
        }
        let locked = s.unwrap();
        assert_eq!(locked.locked_until, Some(2002));
        assert_eq!(reserve_state(s, long, 1500), None);
        let after = reserve_state(s, long, 2002).unwrap();
        assert_eq!((after.failures, after.locked_until), (1, None));
    }

    #[test]
    fn a_limit_of_one_locks_on_the_first_attempt() {
        let one = ThrottleLimits {
            max_failures: 1,
            ..LIMITS
        };
        let s = reserve_state(None, one, 5).unwrap();
        assert_eq!(s.locked_until, Some(605));
        assert_eq!(reserve_state(Some(s), one, 6), None);
    }

    #[test]
    fn releasing_gives_the_attempt_back_and_lifts_only_its_own_lock() {
        let a = reserve_state(None, LIMITS, 0).unwrap();
        let b = reserve_state(Some(a), LIMITS, 1).unwrap();
        let c = reserve_state(Some(b), LIMITS, 2).unwrap();
        assert_eq!(c.locked_until, Some(602));
        // The attempt that locked was right after all: two failures, no lock.
        let released = release_state(c, &c);
        assert_eq!((released.failures, released.locked_until), (2, None));
        // Releasing an earlier attempt keeps a lock someone else started.
        let other = release_state(c, &a);
        assert_eq!((other.failures, other.locked_until), (2, Some(602)));
        // A window that started afresh is left alone.
        let fresh = reserve_state(Some(c), LIMITS, 700).unwrap();
        assert_eq!(release_state(fresh, &a), fresh);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        assert_eq!(lock_at(Some(10), 10), None);
        assert_eq!(lock_at(None, 10), None);
        assert_eq!(lock_at(Some(11), 10).unwrap().retry_after_seconds, 1);
    }

    #[test]
    fn keys_normalise_usernames_and_group_ipv6_by_64() {
        assert_eq!(user_key("Alice@Example.com"), "user:alice@example.com");
        assert!(user_key(&"x".repeat(500)).starts_with("user:sha256:"));
        assert_eq!(user_key(&"x".repeat(500)).len(), "user:sha256:".len() + 64);
        assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "ip:192.0.2.7");
        assert_eq!(
            ip_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(ip_key("::ffff:192.0.2.7".parse().unwrap()), "ip:192.0.2.7");
    }

    #[tokio::test]
    async fn the_store_computes_what_the_pure_model_does() {
        // A script of attempts that crosses every branch: counting, locking, refusing
        // while locked, the lock ending, the window running out, releases (of an
        // attempt that locked, and of one that did not). The second limits lock for
        // longer than the window: the lock must outlive it.
        let script = [
            (0, false),
            (10, true),
            (20, false),
            (30, true),
            (31, false),
            (400, false),
            (700, false),
            (701, false),
            (702, false),
            (703, false),
            (1000, false),
            (2000, false),
            (2001, true),
            (2002, false),
            (2800, false),
            (5000, false),
        ];
        let long_lock = ThrottleLimits {
            lockout_seconds: 2000,
            ..LIMITS
        };
        for db in testing::both().await {
            db.user("t", "u").await;
            for (key, limits) in [("user:a", LIMITS), ("user:b", long_lock)] {
                let mut model: Option<ThrottleState> = None;
                for &(t, release) in &script {
                    let got = db
                        .store
                        .reserve_login_attempts("t", &[(key, limits)], t)
                        .await
                        .unwrap()
                        .pop()
                        .map(|(_, state)| state);
                    let want = reserve_state(model, limits, t);
                    assert_eq!(got, want, "{} {key} at {t}", db.name());
                    model = want.or(model);
                    if let (true, Some(reserved)) = (release, want) {
                        db.store
                            .release_login_attempt("t", key, &reserved)
                            .await
                            .unwrap();
                        model = model.map(|m| release_state(m, &reserved));
                    }
                }
                let stored = db
                    .store
                    .login_locked_until("t", &[key], 5000)
                    .await
                    .unwrap();
                assert_eq!(
                    stored,
                    model.and_then(|m| m.locked_until).filter(|u| *u > 5000)
                );
            }
        }
    }

    fn settings() -> LoginSettings {
        LoginSettings {
            max_failures: 3,
            max_failures_per_ip: 5,
            failure_window_seconds: 900,
            lockout_seconds: 600,
        }
    }

    #[tokio::test]
    async fn a_locked_username_is_refused_on_every_pod_until_the_lock_ends() {
        for db in testing::both().await {
            db.user("t", "u").await;
            let clock = FixedClock::new(50_000);
            let pod_a = LoginThrottle::new(db.store.clone(), clock.clone(), settings());
            let pod_b = LoginThrottle::new(db.store.clone(), clock.clone(), settings());
            let ip: IpAddr = "198.51.100.1".parse().unwrap();
            let r = pod_a.reserve("t", "Alice", Some(ip)).await.unwrap();
            assert_eq!(pod_a.failed(r).await, None);
            let r = pod_b.reserve("t", "ALICE", Some(ip)).await.unwrap();
            assert_eq!(pod_b.failed(r).await, None);
            let r = pod_a.reserve("t", "alice", Some(ip)).await.unwrap();
            let locked = pod_a.failed(r).await;
            assert_eq!(locked.unwrap().retry_after_seconds, 600, "{}", db.name());
            // Another address is refused for this username too; another username is not.
            let other: IpAddr = "203.0.113.9".parse().unwrap();
            match pod_b.reserve("t", "alice", Some(other)).await {
                Err(CheckError::Locked(l)) => assert_eq!(l.retry_after_seconds, 600),
                r => panic!("expected a lock, got {r:?}"),
            }
            let r = pod_b.reserve("t", "bob", Some(other)).await.unwrap();
            pod_b.release(r).await.unwrap();
            // Exactly one audit event for the lock start.
            let events = db.store.list_audit("t", 50).await.unwrap();
            let locks: Vec<_> = events
                .iter()
                .filter(|e| e.event == "login.locked")
                .collect();
            assert_eq!(locks.len(), 1, "{}", db.name());
            assert_eq!(locks[0].subject.as_deref(), Some("user:alice"));
            assert_eq!(locks[0].ip.as_deref(), Some("198.51.100.1"));
            clock.advance(599);
            assert!(pod_a.reserve("t", "alice", None).await.is_err());
            clock.advance(1);
            let r = pod_a.reserve("t", "alice", None).await.unwrap();
            pod_a.release(r).await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_attempt_is_counted_on_the_username_and_the_address_in_one_statement() {
        for db in testing::both().await {
            db.user("t", "u").await;
            let th = LoginThrottle::new(db.store.clone(), FixedClock::new(3_000), settings());
            let ip: IpAddr = "192.0.2.60".parse().unwrap();
            let logs = crate::testing::CapturedLogs::start();
            let r = th.reserve("t", "alice", Some(ip)).await.unwrap();
            logs.assert_postgres_statements(db.name(), &["INSERT INTO login_throttles"]);
            let keys: Vec<&str> = r.taken.iter().map(|t| t.key.as_str()).collect();
            assert_eq!(keys, ["ip:192.0.2.60", "user:alice"], "{}", db.name());
            assert!(r.taken.iter().all(|t| t.state.failures == 1));
            th.failed(r).await;
            // Both rows hold the attempt.
            let r = th.reserve("t", "alice", Some(ip)).await.unwrap();
            assert!(
                r.taken.iter().all(|t| t.state.failures == 2),
                "{}",
                db.name()
            );
            th.release(r).await.unwrap();
            // A locked username: the address counted with it in the same statement is
            // given back, so the refusal costs the address nothing.
            for _ in 0..3 {
                let r = th.reserve("t", "bob", None).await.unwrap();
                th.failed(r).await;
            }
            let fresh: IpAddr = "192.0.2.61".parse().unwrap();
            assert!(matches!(
                th.reserve("t", "bob", Some(fresh)).await,
                Err(CheckError::Locked(l)) if l.retry_after_seconds == 600
            ));
            let r = th.reserve("t", "carol", Some(fresh)).await.unwrap();
            let counted: Vec<i32> = r.taken.iter().map(|t| t.state.failures).collect();
            assert_eq!(counted, [1, 1], "{}", db.name());
            th.release(r).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_complete_sign_in_gives_the_address_back_and_forgets_the_username() {
        for db in testing::both().await {
            db.user("t", "u").await;
            let th = LoginThrottle::new(db.store.clone(), FixedClock::new(4_000), settings());
            let ip: IpAddr = "192.0.2.70".parse().unwrap();
            for _ in 0..2 {
                let r = th.reserve("t", "erin", Some(ip)).await.unwrap();
                th.failed(r).await;
            }
            let r = th.reserve("t", "Erin", Some(ip)).await.unwrap();
            let logs = crate::testing::CapturedLogs::start();
            th.succeeded(r, "ERIN").await.unwrap();
            logs.assert_postgres_statements(
                db.name(),
                &["UPDATE login_throttles", "DELETE FROM login_throttles"],
            );
            // The username starts afresh; the address keeps its two failures and got
            // the successful attempt back.
            let r = th.reserve("t", "erin", Some(ip)).await.unwrap();
            let counted: Vec<(&str, i32)> = r
                .taken
                .iter()
                .map(|t| (t.key.as_str(), t.state.failures))
                .collect();
            assert_eq!(
                counted,
                [("ip:192.0.2.70", 3), ("user:erin", 1)],
                "{}",
                db.name()
            );
            th.release(r).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_attempts_never_get_past_the_limit() {
        for db in testing::both().await {
            db.user("t", "u").await;
            let clock = FixedClock::new(7_000);
            let th = Arc::new(LoginThrottle::new(
                db.store.clone(),
                clock.clone(),
                settings(),
            ));
            let ip: IpAddr = "192.0.2.50".parse().unwrap();
            let mut attempts = tokio::task::JoinSet::new();
            for _ in 0..40 {
                let th = Arc::clone(&th);
                attempts.spawn(async move { th.reserve("t", "alice", Some(ip)).await });
            }
            let mut granted = Vec::new();
            while let Some(r) = attempts.join_next().await {
                match r.unwrap() {
                    Ok(r) => granted.push(r),
                    Err(CheckError::Locked(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(granted.len(), 3, "{}", db.name());
            for r in granted {
                th.failed(r).await;
            }
            assert!(matches!(
                th.reserve("t", "alice", None).await,
                Err(CheckError::Locked(_))
            ));
        }
    }

    #[tokio::test]
    async fn released_attempts_do_not_accumulate_and_a_refusal_gives_the_other_key_back() {
        for db in testing::both().await {
            db.user("t", "u").await;
            let clock = FixedClock::new(1_000);
            let th = LoginThrottle::new(db.store.clone(), clock.clone(), settings());
            let ip: IpAddr = "2001:db8::1".parse().unwrap();
            // Many good sign-ins from one address never lock it.
            for i in 0..20 {
                let r = th
                    .reserve("t", &format!("user{i}"), Some(ip))
                    .await
                    .unwrap();
                th.release(r).await.unwrap();
            }
            // Five failures from the /64 lock the address, whoever signs in next.
            for i in 0..5 {
                let r = th
                    .reserve("t", &format!("user{i}"), Some(ip))
                    .await
                    .unwrap();
                th.failed(r).await;
            }
            let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
            assert!(matches!(
                th.reserve("t", "dave", Some(neighbour)).await,
                Err(CheckError::Locked(_))
            ));
            // dave's username slot was given back when the address refused him.
            for _ in 0..2 {
                let r = th.reserve("t", "dave", None).await.unwrap();
                th.failed(r).await;
            }
            let r = th.reserve("t", "dave", None).await.unwrap();
            th.release(r).await.unwrap();
            // A complete sign-in clears the username's count, not the address's.
            th.record_success("t", "dave").await.unwrap();
            for _ in 0..2 {
                let r = th.reserve("t", "dave", None).await.unwrap();
                th.failed(r).await;
            }
            let r = th.reserve("t", "dave", None).await.unwrap();
            th.release(r).await.unwrap();
            assert!(
                th.reserve("t", "x", Some(ip)).await.is_err(),
                "{}",
                db.name()
            );
        }
    }
}
