//! Signing keys: algorithms, the rotation policy, and the key lifecycle.
//!
//! A key's state is never stored; it follows from its timestamps and `now`, so no
//! background job has to flip it (DESIGN: `serve` runs no background jobs):
//!
//! ```text
//! created ── activates_at ──► active ── superseded_at ──► retiring ── retires_at ──► retired
//!  (pending)
//! ```
//! Rotation creates a pending key per algorithm that activates after the promotion delay
//! and marks the current key superseded at that same instant. The superseded key stays
//! published until every token it signed has expired (the overlap window or the longest
//! token lifetime, whichever is longer). Exactly one key per algorithm is active at any
//! time.
//!
//! Publish first, sign later: relying parties cache the JWKS for its `max-age` and many
//! do not refetch on an unknown `kid`, so a key that signed before they could have
//! fetched it makes them reject every new token until their cache expires. The
//! promotion delay is therefore at least the JWKS max-age ([`KeyPolicy::check_promotion_delay`]); only
//! an emergency rotation ([`RotationMode::Now`], for a compromised key) skips it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// JWS algorithms Gatehouse signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Algorithm {
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa];

    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

/// Longest JWKS `Cache-Control: max-age`, in seconds.
pub const JWKS_MAX_AGE_CAP_SECONDS: u64 = 900;

/// What the default promotion delay adds to the JWKS max-age: a relying party that
/// fetched the set just before a rotation has refetched it before the new key signs,
/// despite a pod serving its key cache for up to 30 s after a missed change notification
/// (`cache::DEFAULT_TTL`), clock skew and slow fetches.
pub const PROMOTION_MARGIN_SECONDS: u64 = 60;

/// How keys are generated and rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    pub algorithms: Vec<Algorithm>,
    pub rsa_bits: u32,
    pub rotation_interval_seconds: u64,
    pub overlap_window_seconds: u64,
    /// How long a rotated-in key is published before it signs; at least
    /// [`KeyPolicy::jwks_max_age`] (see [`KeyPolicy::check_promotion_delay`]).
    pub promotion_delay_seconds: u64,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        let overlap_window_seconds = 7_200;
        Self {
            algorithms: Algorithm::ALL.to_vec(),
            rsa_bits: 2048,
            rotation_interval_seconds: 90 * 86_400,
            overlap_window_seconds,
            promotion_delay_seconds: Self::default_promotion_delay(overlap_window_seconds),
        }
    }
}

impl KeyPolicy {
    /// JWKS `Cache-Control: max-age`: a fraction of the overlap window, so a relying party
    /// that cached the set still refreshes well before a retiring key disappears.
    pub fn jwks_max_age(&self) -> u64 {
        Self::jwks_max_age_for(self.overlap_window_seconds)
    }

    fn jwks_max_age_for(overlap_window_seconds: u64) -> u64 {
        (overlap_window_seconds / 8).min(JWKS_MAX_AGE_CAP_SECONDS)
    }

    /// The promotion delay when none is configured: the JWKS max-age that goes with
    /// `overlap_window_seconds` plus [`PROMOTION_MARGIN_SECONDS`] (960 s by default).
    pub fn default_promotion_delay(overlap_window_seconds: u64) -> u64 {
        Self::jwks_max_age_for(overlap_window_seconds) + PROMOTION_MARGIN_SECONDS
    }

    /// Checks the promotion delay against the JWKS max-age the keys are served with
    /// (`served_max_age`: the server's, which may come from another policy than this
    /// one) and the rotation interval. The message names both values.
    pub fn check_promotion_delay(&self, served_max_age: u64) -> Result<(), String> {
        let delay = self.promotion_delay_seconds;
        if delay < served_max_age {
            return Err(format!(
                "{delay} s is shorter than the JWKS max-age of {served_max_age} s (the \
                 Cache-Control of the JWKS: the server's keys.overlap_window_seconds / 8, at \
                 most {JWKS_MAX_AGE_CAP_SECONDS} s), so a rotated-in key would sign before \
                 relying parties that cache the JWKS can have it. Use at least \
                 {served_max_age} (default {}). Only an emergency rotation (`now`, for a \
                 compromised key) signs at once",
                served_max_age + PROMOTION_MARGIN_SECONDS
            ));
        }
        if delay >= self.rotation_interval_seconds {
            return Err(format!(
                "{delay} s must be shorter than the rotation interval ({} s)",
                self.rotation_interval_seconds
            ));
        }
        Ok(())
    }

    /// How long a superseded key stays published: until every token it can have signed
    /// has expired (`longest_token_seconds`), and at least the overlap window.
    pub fn retention(&self, longest_token_seconds: u64) -> u64 {
        self.overlap_window_seconds.max(longest_token_seconds)
    }
}

/// Lifecycle state of a key at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Pending,
    Active,
    Retiring,
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }

    /// Pending, active and retiring keys are published in the JWKS.
    pub fn published(self) -> bool {
        self != KeyState::Retired
    }
}

/// The public facts of a stored key (no private material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    pub kid: String,
    pub alg: Algorithm,
    pub created_at: UnixTime,
    pub activates_at: UnixTime,
    pub superseded_at: Option<UnixTime>,
    pub retires_at: Option<UnixTime>,
}

impl KeyMeta {
    pub fn state(&self, now: UnixTime) -> KeyState {
        // Retirement first: an emergency rotation withdraws a pending key before it ever
        // activates.
        if self.retires_at.is_some_and(|r| now >= r) {
            KeyState::Retired
        } else if now < self.activates_at {
            KeyState::Pending
        } else if self.superseded_at.is_none_or(|s| now < s) {
            KeyState::Active
        } else {
            KeyState::Retiring
        }
    }
}

/// A new key to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub alg: Algorithm,
    pub activates_at: UnixTime,
}

/// An existing key to mark as superseded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supersede {
    pub kid: String,
    pub superseded_at: UnixTime,
    pub retires_at: UnixTime,
}

/// What a rotation or bootstrap will do; computed purely, applied in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationPlan {
    pub new: Vec<NewKey>,
    pub supersede: Vec<Supersede>,
}

impl RotationPlan {
    pub fn is_empty(&self) -> bool {
        self.new.is_empty()
    }
}

/// Which rotation to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationMode {
    /// Only algorithms without any usable key (first start, or an algorithm added).
    Bootstrap,
    /// Algorithms whose current key is older than the rotation interval (or missing).
    IfDue,
    /// Every algorithm, now: new keys publish now and sign after the promotion delay.
    Force,
    /// Emergency (a compromised key): every algorithm's new key signs at once and every
    /// other published key of it is withdrawn from the JWKS at once. Relying parties with
    /// a cached JWKS reject the new tokens until they refetch it, and every token signed
    /// before stops verifying once they do.
    Now,
}

impl RotationMode {
    /// The name the admin API and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationMode::Bootstrap => "bootstrap",
            RotationMode::IfDue => "if_due",
            RotationMode::Force => "force",
            RotationMode::Now => "now",
        }
    }
}

/// Keys of `alg` not yet superseded and not retired: the current key and any pending one.
fn current(keys: &[KeyMeta], alg: Algorithm, now: UnixTime) -> Vec<&KeyMeta> {
    keys.iter()
        .filter(|k| k.alg == alg && k.superseded_at.is_none() && k.state(now).published())
        .collect()
}

/// Plans a rotation for every algorithm of `policy`. `longest_token_seconds` is the
/// longest lifetime of a token the tenant's keys sign (see [`KeyPolicy::retention`]).
pub fn plan_rotation(
    keys: &[KeyMeta],
    policy: &KeyPolicy,
    mode: RotationMode,
    now: UnixTime,
    longest_token_seconds: u64,
) -> RotationPlan {
    let mut plan = RotationPlan::default();
    for &alg in &policy.algorithms {
        if mode == RotationMode::Now {
            plan_now(keys, alg, now, &mut plan);
            continue;
        }
        let current = current(keys, alg, now);
        let due = match mode {
            RotationMode::Force | RotationMode::Now => true,
            RotationMode::Bootstrap => current.is_empty(),
            RotationMode::IfDue => next_rotation_of(&current, policy).is_none_or(|t| t <= now),
        };
        if !due {
            continue;
        }
        // A first key is usable at once; a replacement waits for the promotion delay so
        // relying parties see it in the JWKS before anything is signed with it.
        let activates_at = if current.is_empty() {
            now
        } else {
            now.saturating_add(i64::try_from(policy.promotion_delay_seconds).unwrap_or(i64::MAX))
        };
        let retention = i64::try_from(policy.retention(longest_token_seconds)).unwrap_or(i64::MAX);
        plan.new.push(NewKey { alg, activates_at });
        plan.supersede.extend(current.iter().map(|k| Supersede {
            kid: k.kid.clone(),
            superseded_at: activates_at.max(k.activates_at),
            retires_at: activates_at.max(k.activates_at).saturating_add(retention),
        }));
    }
    plan
}

/// [`RotationMode::Now`] for `alg`: a key that signs at once, and every other published
/// key of `alg` (pending, active or retiring) retired now.
fn plan_now(keys: &[KeyMeta], alg: Algorithm, now: UnixTime, plan: &mut RotationPlan) {
    plan.new.push(NewKey {
        alg,
        activates_at: now,
    });
    plan.supersede.extend(
        keys.iter()
            .filter(|k| k.alg == alg && k.state(now).published())
            .map(|k| Supersede {
                kid: k.kid.clone(),
                superseded_at: k.superseded_at.map_or(now, |s| s.min(now)),
                retires_at: now,
            }),
    );
}

fn next_rotation_of(current: &[&KeyMeta], policy: &KeyPolicy) -> Option<UnixTime> {
    let interval = i64::try_from(policy.rotation_interval_seconds).unwrap_or(i64::MAX);
    current
        .iter()
        .map(|k| k.activates_at)
        .max()
        .map(|t| t.saturating_add(interval))
}

/// When the next scheduled rotation is due (the earliest over the policy's algorithms);
/// `None` when some algorithm has no key at all (bootstrap is due now).
pub fn next_rotation(keys: &[KeyMeta], policy: &KeyPolicy, now: UnixTime) -> Option<UnixTime> {
    policy
        .algorithms
        .iter()
        .map(|&alg| next_rotation_of(&current(keys, alg, now), policy))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

/// The key that signs with `alg` at `now`: the active one.
pub fn signing_key<'a>(
    keys: impl IntoIterator<Item = &'a KeyMeta>,
    alg: Algorithm,
    now: UnixTime,
) -> Option<&'a KeyMeta> {
    keys.into_iter()
        .filter(|k| k.alg == alg && k.state(now) == KeyState::Active)
        .max_by_key(|k| k.activates_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixTime = 1_700_000_000;

    fn apply(keys: &mut Vec<KeyMeta>, plan: &RotationPlan, now: UnixTime) {
        for s in &plan.supersede {
            let k = keys.iter_mut().find(|k| k.kid == s.kid).unwrap();
            k.superseded_at = Some(s.superseded_at);
            k.retires_at = Some(s.retires_at);
        }
        for (i, n) in plan.new.iter().enumerate() {
            keys.push(KeyMeta {
                kid: format!("{}-{}-{i}", n.alg, keys.len()),
                alg: n.alg,
                created_at: now,
                activates_at: n.activates_at,
                superseded_at: None,
                retires_at: None,
            });
        }
    }

    fn policy(delay: u64) -> KeyPolicy {
        KeyPolicy {
            promotion_delay_seconds: delay,
            ..KeyPolicy::default()
        }
    }

    #[test]
    fn bootstrap_creates_one_active_key_per_algorithm_and_then_nothing() {
        let mut keys = Vec::new();
        let plan = plan_rotation(&keys, &policy(60), RotationMode::Bootstrap, T0, 0);
        assert_eq!(plan.new.len(), 3);
        assert!(plan.new.iter().all(|n| n.activates_at == T0));
        apply(&mut keys, &plan, T0);
        assert!(keys.iter().all(|k| k.state(T0) == KeyState::Active));
        assert!(plan_rotation(&keys, &policy(60), RotationMode::Bootstrap, T0 + 1, 0).is_empty());
    }

    #[test]
    fn rotation_walks_pending_active_retiring_retired() {
        let p = policy(600);
        let mut keys = Vec::new();
        let plan = plan_rotation(&keys, &p, RotationMode::Bootstrap, T0, 0);
        apply(&mut keys, &plan, T0);
        let t1 = T0 + 1000;
        let plan = plan_rotation(&keys, &p, RotationMode::Force, t1, 0);
        apply(&mut keys, &plan, t1);
        let old = keys[0].clone();
        let new = keys
            .iter()
            .find(|k| k.alg == old.alg && k.kid != old.kid)
            .unwrap()
            .clone();

        assert_eq!(new.state(t1), KeyState::Pending);
        assert_eq!(old.state(t1), KeyState::Active);
        assert_eq!(signing_key(&keys, old.alg, t1).unwrap().kid, old.kid);

        let promoted = t1 + 600;
        assert_eq!(new.state(promoted), KeyState::Active);
        assert_eq!(old.state(promoted), KeyState::Retiring);
        assert_eq!(signing_key(&keys, old.alg, promoted).unwrap().kid, new.kid);

        assert_eq!(old.state(promoted + 7_199), KeyState::Retiring);
        assert_eq!(old.state(promoted + 7_200), KeyState::Retired);
    }

    #[test]
    fn if_due_rotates_only_after_the_interval() {
        let p = policy(0);
        let mut keys = Vec::new();
        let plan = plan_rotation(&keys, &p, RotationMode::Bootstrap, T0, 0);
        apply(&mut keys, &plan, T0);
        let interval = i64::try_from(p.rotation_interval_seconds).unwrap();
        assert!(plan_rotation(&keys, &p, RotationMode::IfDue, T0 + interval - 1, 0).is_empty());
        assert_eq!(next_rotation(&keys, &p, T0), Some(T0 + interval));
        let plan = plan_rotation(&keys, &p, RotationMode::IfDue, T0 + interval, 0);
        assert_eq!(plan.new.len(), 3);
        assert_eq!(plan.supersede.len(), 3);
    }

    #[test]
    fn an_added_algorithm_is_bootstrapped_alone() {
        let mut keys = Vec::new();
        let es_only = KeyPolicy {
            algorithms: vec![Algorithm::Es256],
            ..KeyPolicy::default()
        };
        let plan = plan_rotation(&keys, &es_only, RotationMode::Bootstrap, T0, 0);
        apply(&mut keys, &plan, T0);
        let plan = plan_rotation(&keys, &KeyPolicy::default(), RotationMode::Bootstrap, T0, 0);
        let algs: Vec<_> = plan.new.iter().map(|n| n.alg).collect();
        assert_eq!(algs, vec![Algorithm::Rs256, Algorithm::EdDsa]);
        assert!(plan.supersede.is_empty());
    }

    #[test]
    fn jwks_max_age_is_a_fraction_of_the_overlap() {
        assert_eq!(KeyPolicy::default().jwks_max_age(), 900);
        let short = KeyPolicy {
            overlap_window_seconds: 80,
            ..KeyPolicy::default()
        };
        assert_eq!(short.jwks_max_age(), 10);
    }

    /// Bootstraps at T0, then rotates with `mode` at `at`; ES256's old and new key.
    fn rotated(p: &KeyPolicy, mode: RotationMode, at: UnixTime, longest_token: u64) -> Rotated {
        let mut keys = Vec::new();
        let plan = plan_rotation(&keys, p, RotationMode::Bootstrap, T0, 0);
        apply(&mut keys, &plan, T0);
        let plan = plan_rotation(&keys, p, mode, at, longest_token);
        apply(&mut keys, &plan, at);
        let of = |alg| -> Vec<KeyMeta> { keys.iter().filter(|k| k.alg == alg).cloned().collect() };
        let es = of(Algorithm::Es256);
        Rotated {
            old: es[0].clone(),
            new: es[1].clone(),
            keys,
        }
    }

    struct Rotated {
        old: KeyMeta,
        new: KeyMeta,
        keys: Vec<KeyMeta>,
    }

    #[test]
    fn the_default_promotion_delay_outlasts_the_jwks_max_age() {
        let p = KeyPolicy::default();
        assert_eq!(p.jwks_max_age(), 900);
        assert_eq!(p.promotion_delay_seconds, 960);
        assert!(p.check_promotion_delay(p.jwks_max_age()).is_ok());
        assert_eq!(KeyPolicy::default_promotion_delay(80), 70);
        assert_eq!(KeyPolicy::default_promotion_delay(0), 60);
    }

    #[test]
    fn a_promotion_delay_shorter_than_the_jwks_max_age_is_refused_naming_both() {
        let err = policy(0).check_promotion_delay(900).unwrap_err();
        assert!(
            err.starts_with("0 s is shorter than the JWKS max-age of 900 s"),
            "{err}"
        );
        assert!(err.contains("keys.overlap_window_seconds"), "{err}");
        assert!(err.contains("at least 900 (default 960)"), "{err}");
        assert!(!err.contains("; "), "split by the operator on '; ': {err}");
        assert!(policy(899).check_promotion_delay(900).is_err());
        assert!(policy(900).check_promotion_delay(900).is_ok());
        // A short max-age (short overlap window) allows a short delay.
        assert!(policy(10).check_promotion_delay(10).is_ok());
        let long = KeyPolicy {
            rotation_interval_seconds: 86_400,
            ..policy(86_400)
        };
        assert_eq!(
            long.check_promotion_delay(900).unwrap_err(),
            "86400 s must be shorter than the rotation interval (86400 s)"
        );
    }

    #[test]
    fn a_scheduled_rotation_publishes_first_and_signs_after_the_delay() {
        let p = KeyPolicy::default();
        let at = T0 + 1000;
        let r = rotated(&p, RotationMode::Force, at, 0);
        let delay = i64::try_from(p.promotion_delay_seconds).unwrap();
        // Published at once, signing only after the delay.
        assert_eq!(r.new.state(at), KeyState::Pending);
        assert!(r.new.state(at).published());
        for t in [at, at + delay - 1] {
            assert_eq!(
                signing_key(&r.keys, Algorithm::Es256, t).unwrap().kid,
                r.old.kid
            );
        }
        assert_eq!(
            signing_key(&r.keys, Algorithm::Es256, at + delay)
                .unwrap()
                .kid,
            r.new.kid
        );
        // A relying party that fetched the JWKS a second before the rotation refetches
        // after max-age; the new key must not sign before that.
        let refetch = at - 1 + i64::try_from(p.jwks_max_age()).unwrap();
        assert!(r.new.activates_at > refetch);
    }

    #[test]
    fn a_superseded_key_stays_published_until_its_longest_token_expired() {
        let p = policy(600);
        let at = T0 + 1000;
        let promoted = at + 600;
        // Tokens live longer than the overlap window (7200 s): retention follows them.
        let r = rotated(&p, RotationMode::Force, at, 86_400);
        assert_eq!(r.old.superseded_at, Some(promoted));
        assert_eq!(r.old.retires_at, Some(promoted + 86_400));
        assert_eq!(r.old.state(promoted + 86_399), KeyState::Retiring);
        assert_eq!(r.old.state(promoted + 86_400), KeyState::Retired);
        // Shorter tokens: the overlap window.
        let r = rotated(&p, RotationMode::Force, at, 3_600);
        assert_eq!(r.old.retires_at, Some(promoted + 7_200));
    }

    #[test]
    fn now_signs_with_the_new_key_at_once_and_withdraws_every_other_key() {
        let p = KeyPolicy::default();
        let at = T0 + 1000;
        let r = rotated(&p, RotationMode::Now, at, 86_400);
        assert_eq!(r.new.state(at), KeyState::Active);
        assert_eq!(
            signing_key(&r.keys, Algorithm::Es256, at).unwrap().kid,
            r.new.kid
        );
        assert_eq!(r.old.state(at), KeyState::Retired);
        assert_eq!(r.old.retires_at, Some(at));
        assert_eq!(r.keys.iter().filter(|k| k.state(at).published()).count(), 3);

        // During a scheduled rotation: the pending key (never signed) and the active one
        // both leave the JWKS; the emergency key signs.
        let mut keys = r.keys;
        let later = at + 10;
        let plan = plan_rotation(&keys, &p, RotationMode::Force, later, 0);
        apply(&mut keys, &plan, later);
        let now = later + 5;
        let plan = plan_rotation(&keys, &p, RotationMode::Now, now, 0);
        apply(&mut keys, &plan, now);
        let es: Vec<_> = keys.iter().filter(|k| k.alg == Algorithm::Es256).collect();
        let states: Vec<_> = es.iter().map(|k| k.state(now)).collect();
        assert_eq!(
            states,
            [
                KeyState::Retired,
                KeyState::Retired,
                KeyState::Retired,
                KeyState::Active
            ]
        );
        let last = es.last().unwrap();
        assert_eq!(
            signing_key(&keys, Algorithm::Es256, now).unwrap().kid,
            last.kid
        );
        // The withdrawn pending key never becomes active later either.
        let delay = i64::try_from(p.promotion_delay_seconds).unwrap();
        assert_eq!(es[2].state(later + delay), KeyState::Retired);
        assert_eq!(
            signing_key(&keys, Algorithm::Es256, later + delay)
                .unwrap()
                .kid,
            last.kid
        );
    }
}
