//! Login throttling: failed sign-ins are counted per username and per client IP in the
//! database (shared by every pod); the failure that reaches the limit within the window
//! locks that key for the lockout period. While a key is locked, [`LoginThrottle::check`]
//! refuses the attempt before any password is checked and says how long to wait.
//!
//! Unknown usernames are counted like real ones, so a lockout reveals nothing about
//! which accounts exist. A successful sign-in clears the username's count (not the IP's:
//! one good password must not reset a password-spraying source).
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

/// What the store computes for one more failure, as a pure function (the SQL of
/// `Store::record_login_failure` implements exactly this; a test holds them together).
pub fn next_state(
    prev: Option<ThrottleState>,
    limits: ThrottleLimits,
    now: UnixTime,
) -> ThrottleState {
    let window = i64::try_from(limits.window_seconds).unwrap_or(i64::MAX);
    let lockout = i64::try_from(limits.lockout_seconds).unwrap_or(i64::MAX);
    let lock_now = |failures: i32| {
        (i64::from(failures) >= i64::from(limits.max_failures)).then(|| now.saturating_add(lockout))
    };
    match prev {
        // Still counting: a lock in force, or no lock and the window still open.
        Some(p)
            if p.locked_until.map_or_else(
                || p.window_started_at.saturating_add(window) > now,
                |until| until > now,
            ) =>
        {
            let failures = p.failures.saturating_add(1);
            ThrottleState {
                failures,
                window_started_at: p.window_started_at,
                locked_until: p.locked_until.or_else(|| lock_now(failures)),
            }
        }
        _ => ThrottleState {
            failures: 1,
            window_started_at: now,
            locked_until: lock_now(1),
        },
    }
}

/// Whether the failure that produced `state` is the one that started its lock.
pub fn lock_started(state: &ThrottleState, limits: ThrottleLimits) -> bool {
    state.locked_until.is_some() && i64::from(state.failures) == i64::from(limits.max_failures)
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

    /// Call before checking a password: `Err(CheckError::Locked)` while the username or
    /// the address is locked (refuse the attempt without checking the password, and
    /// show the wait).
    pub async fn check(
        &self,
        tenant_id: &str,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), CheckError> {
        let now = self.clock.now();
        let user = user_key(username);
        let ip = ip.map(ip_key);
        let mut keys = vec![user.as_str()];
        keys.extend(ip.as_deref());
        let until = self.store.login_locked_until(tenant_id, &keys, now).await?;
        match lock_at(until, now) {
            Some(locked) => Err(CheckError::Locked(locked)),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in (wrong password, unknown user, wrong second factor)
    /// against the username and the address. Returns the lock this failure started or
    /// ran into, if any; a lock that starts is audited once (`login.locked`).
    pub async fn record_failure(
        &self,
        tenant_id: &str,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<Locked>, store::Error> {
        let now = self.clock.now();
        let mut counted = vec![(user_key(username), self.user_limits())];
        if let Some(ip) = ip {
            counted.push((ip_key(ip), self.ip_limits()));
        }
        let mut latest: Option<UnixTime> = None;
        for (key, limits) in &counted {
            let state = self
                .store
                .record_login_failure(tenant_id, key, *limits, now)
                .await?;
            if lock_started(&state, *limits) {
                let scope = if key.starts_with("ip:") {
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
                            .subject(Some(key))
                            .ip(ip.map(|i| i.to_string()).as_deref())
                            .details(serde_json::json!({
                                "scope": scope,
                                "failures": state.failures,
                                "locked_until": state.locked_until,
                            })),
                    )
                    .await;
            }
            latest = latest.max(state.locked_until);
        }
        Ok(lock_at(latest, now))
    }

    /// A successful sign-in: forgets the username's failures.
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
    fn the_nth_failure_in_a_window_locks_for_the_lockout() {
        let clock = FixedClock::new(10_000);
        let mut s = None;
        for expected in 1..=2 {
            let next = next_state(s, LIMITS, clock.now());
            assert_eq!(next.failures, expected);
            assert_eq!(next.locked_until, None);
            assert!(!lock_started(&next, LIMITS));
            s = Some(next);
            clock.advance(60);
        }
        let third = next_state(s, LIMITS, clock.now());
        assert_eq!(third.locked_until, Some(clock.now() + 600));
        assert!(lock_started(&third, LIMITS));
        assert_eq!(
            lock_at(third.locked_until, clock.now()),
            Some(Locked {
                retry_after_seconds: 600
            })
        );
        // More failures while locked keep the lock and never start another one.
        clock.advance(100);
        let fourth = next_state(Some(third), LIMITS, clock.now());
        assert_eq!(fourth.locked_until, third.locked_until);
        assert!(!lock_started(&fourth, LIMITS));
        assert_eq!(
            lock_at(fourth.locked_until, clock.now())
                .unwrap()
                .retry_after_seconds,
            500
        );
        // The lock ends; the next failure starts a fresh count.
        clock.advance(500);
        assert_eq!(lock_at(fourth.locked_until, clock.now()), None);
        let fresh = next_state(Some(fourth), LIMITS, clock.now());
        assert_eq!((fresh.failures, fresh.window_started_at), (1, clock.now()));
        assert_eq!(fresh.locked_until, None);
    }

    #[test]
    fn failures_outside_the_window_no_longer_count() {
        let clock = FixedClock::new(0);
        let a = next_state(None, LIMITS, clock.now());
        clock.advance(899);
        let b = next_state(Some(a), LIMITS, clock.now());
        assert_eq!(b.failures, 2);
        clock.advance(1);
        let c = next_state(Some(b), LIMITS, clock.now());
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
            s = Some(next_state(s, long, t));
        }
        let locked = s.unwrap();
        assert_eq!(locked.locked_until, Some(2002));
        let later = next_state(s, long, 1500);
        assert_eq!(later.locked_until, Some(2002));
        assert_eq!(later.failures, 4);
        let after = next_state(Some(later), long, 2002);
        assert_eq!((after.failures, after.locked_until), (1, None));
    }

    #[test]
    fn a_limit_of_one_locks_on_the_first_failure() {
        let one = ThrottleLimits {
            max_failures: 1,
            ..LIMITS
        };
        let s = next_state(None, one, 5);
        assert_eq!(s.locked_until, Some(605));
        assert!(lock_started(&s, one));
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
        // A script of failure times that crosses every branch: counting, locking,
        // failing while locked, the lock ending, the window running out.
        // The second limits lock for longer than the window: the lock must outlive it.
        let times = [
            0, 10, 20, 30, 400, 700, 701, 702, 703, 1000, 2000, 2001, 2800, 5000,
        ];
        let long_lock = ThrottleLimits {
            lockout_seconds: 2000,
            ..LIMITS
        };
        for db in testing::both().await {
            db.user("t", "u").await;
            for (key, limits) in [("user:a", LIMITS), ("user:b", long_lock)] {
                let mut model = None;
                for &t in &times {
                    let got = db
                        .store
                        .record_login_failure("t", key, limits, t)
                        .await
                        .unwrap();
                    let want = next_state(model, limits, t);
                    assert_eq!(got, want, "{} {key} at {t}", db.name());
                    model = Some(want);
                }
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
            assert!(pod_a.check("t", "Alice", Some(ip)).await.is_ok());
            assert_eq!(
                pod_a.record_failure("t", "alice", Some(ip)).await.unwrap(),
                None
            );
            assert_eq!(
                pod_b.record_failure("t", "ALICE", Some(ip)).await.unwrap(),
                None
            );
            let locked = pod_a.record_failure("t", "alice", Some(ip)).await.unwrap();
            assert_eq!(locked.unwrap().retry_after_seconds, 600, "{}", db.name());
            // Another address is refused for this username too; another username is not.
            let other: IpAddr = "203.0.113.9".parse().unwrap();
            match pod_b.check("t", "alice", Some(other)).await {
                Err(CheckError::Locked(l)) => assert_eq!(l.retry_after_seconds, 600),
                r => panic!("expected a lock, got {r:?}"),
            }
            assert!(pod_b.check("t", "bob", Some(other)).await.is_ok());
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
            assert!(pod_a.check("t", "alice", None).await.is_err());
            clock.advance(1);
            assert!(pod_a.check("t", "alice", None).await.is_ok());
        }
    }

    #[tokio::test]
    async fn the_ip_limit_catches_spraying_and_success_clears_only_the_username() {
        for db in testing::both().await {
            db.user("t", "u").await;
            let clock = FixedClock::new(1_000);
            let th = LoginThrottle::new(db.store.clone(), clock.clone(), settings());
            let ip: IpAddr = "2001:db8::1".parse().unwrap();
            for i in 0..4 {
                let r = th
                    .record_failure("t", &format!("user{i}"), Some(ip))
                    .await
                    .unwrap();
                assert_eq!(r, None, "{}", db.name());
            }
            th.record_failure("t", "carol", Some(ip)).await.unwrap();
            th.record_failure("t", "carol", None).await.unwrap();
            th.record_success("t", "carol").await.unwrap();
            // The fifth failure from the /64 locked the address, whoever signs in next.
            let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
            assert!(matches!(
                th.check("t", "dave", Some(neighbour)).await,
                Err(CheckError::Locked(_))
            ));
            assert!(th.check("t", "carol", None).await.is_ok());
            // carol's count was cleared: two more failures do not lock her.
            th.record_failure("t", "carol", None).await.unwrap();
            th.record_failure("t", "carol", None).await.unwrap();
            assert!(th.check("t", "carol", None).await.is_ok(), "{}", db.name());
        }
    }
}
