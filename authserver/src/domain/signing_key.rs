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
//! and marks the current key superseded at that same instant, retiring `overlap_window`
//! later. Exactly one key per algorithm is active at any time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// JWS algorithms Gatehouse signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// How keys are generated and rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    pub algorithms: Vec<Algorithm>,
    pub rsa_bits: u32,
    pub rotation_interval_seconds: u64,
    pub overlap_window_seconds: u64,
    pub promotion_delay_seconds: u64,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            algorithms: Algorithm::ALL.to_vec(),
            rsa_bits: 2048,
            rotation_interval_seconds: 90 * 86_400,
            overlap_window_seconds: 7_200,
            promotion_delay_seconds: 0,
        }
    }
}

impl KeyPolicy {
    /// JWKS `Cache-Control: max-age`: a fraction of the overlap window, so a relying party
    /// that cached the set still refreshes well before a retiring key disappears.
    pub fn jwks_max_age(&self) -> u64 {
        (self.overlap_window_seconds / 8).min(900)
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
        if now < self.activates_at {
            KeyState::Pending
        } else if self.superseded_at.is_none_or(|s| now < s) {
            KeyState::Active
        } else if self.retires_at.is_none_or(|r| now < r) {
            KeyState::Retiring
        } else {
            KeyState::Retired
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
    /// Every algorithm, now.
    Force,
}

/// Keys of `alg` not yet superseded and not retired: the current key and any pending one.
fn current(keys: &[KeyMeta], alg: Algorithm, now: UnixTime) -> Vec<&KeyMeta> {
    keys.iter()
        .filter(|k| k.alg == alg && k.superseded_at.is_none() && k.state(now).published())
        .collect()
}

/// Plans a rotation for every algorithm of `policy`.
pub fn plan_rotation(
    keys: &[KeyMeta],
    policy: &KeyPolicy,
    mode: RotationMode,
    now: UnixTime,
) -> RotationPlan {
    let mut plan = RotationPlan::default();
    for &alg in &policy.algorithms {
        let current = current(keys, alg, now);
        let due = match mode {
            RotationMode::Force => true,
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
        let overlap = i64::try_from(policy.overlap_window_seconds).unwrap_or(i64::MAX);
        plan.new.push(NewKey { alg, activates_at });
        plan.supersede.extend(current.iter().map(|k| Supersede {
            kid: k.kid.clone(),
            superseded_at: activates_at.max(k.activates_at),
            retires_at: activates_at.max(k.activates_at).saturating_add(overlap),
        }));
    }
    plan
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
        let plan = plan_rotation(&keys, &policy(60), RotationMode::Bootstrap, T0);
        assert_eq!(plan.new.len(), 3);
        assert!(plan.new.iter().all(|n| n.activates_at == T0));
        apply(&mut keys, &plan, T0);
        assert!(keys.iter().all(|k| k.state(T0) == KeyState::Active));
        assert!(plan_rotation(&keys, &policy(60), RotationMode::Bootstrap, T0 + 1).is_empty());
    }

    #[test]
    fn rotation_walks_pending_active_retiring_retired() {
        let p = policy(600);
        let mut keys = Vec::new();
        let plan = plan_rotation(&keys, &p, RotationMode::Bootstrap, T0);
        apply(&mut keys, &plan, T0);
        let t1 = T0 + 1000;
        let plan = plan_rotation(&keys, &p, RotationMode::Force, t1);
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
        let plan = plan_rotation(&keys, &p, RotationMode::Bootstrap, T0);
        apply(&mut keys, &plan, T0);
        let interval = i64::try_from(p.rotation_interval_seconds).unwrap();
        assert!(plan_rotation(&keys, &p, RotationMode::IfDue, T0 + interval - 1).is_empty());
        assert_eq!(next_rotation(&keys, &p, T0), Some(T0 + interval));
        let plan = plan_rotation(&keys, &p, RotationMode::IfDue, T0 + interval);
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
        let plan = plan_rotation(&keys, &es_only, RotationMode::Bootstrap, T0);
        apply(&mut keys, &plan, T0);
        let plan = plan_rotation(&keys, &KeyPolicy::default(), RotationMode::Bootstrap, T0);
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
}
