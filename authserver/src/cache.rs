//! Per-pod caches of database rows. Entries are dropped when any process changes the
//! underlying tables (see `store::changes`) and expire after a TTL as a backstop for a
//! missed notification.
//!
//! While the database is unavailable (`store::health`), one rule decides what is still
//! served from memory, the same on every pod whatever its listener noticed or its cache
//! timing: the last value this pod read, unless a change to it was notified since, and —
//! for caches built [`Cached::bounded_during_outage`] — only if it was read from the
//! database at most that long ago. Tenants and public keys are served for the whole
//! outage (discovery and JWKS keep working); clients only within
//! `cache.max_stale_seconds_during_outage`. docs/security.md explains the trade-off.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::DatabaseHealth;

/// TTL backstop: the longest a pod serves stale data if a notification is lost.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A shared invalidation epoch: bumping it invalidates every cache built on it. It also
/// knows whether the database is reachable, which decides what a cache may serve while
/// it is not (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Epoch {
    /// Advances on every invalidation: a notified change or a possibly missed one.
    generation: Arc<AtomicU64>,
    /// Advances only on a notified change: an entry loaded before one is known to be
    /// outdated and is never served, not even during an outage.
    changes: Arc<AtomicU64>,
    /// `None`: no database health to consult (the database counts as available).
    database: Option<Arc<DatabaseHealth>>,
}

/// The epoch a load started in; see [`Cached::begin_load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadEpoch {
    generation: u64,
    changes: u64,
}

impl Epoch {
    /// An epoch whose caches consult `database`'s availability.
    pub fn new(database: Arc<DatabaseHealth>) -> Self {
        Self {
            database: Some(database),
            ..Self::default()
        }
    }

    /// A change was notified: every entry is outdated.
    pub fn bump(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Notifications may have been missed (the listener reconnected): every entry must
    /// be reloaded before it is trusted again, but none is known to be outdated.
    pub fn resync(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self) -> LoadEpoch {
        LoadEpoch {
            changes: self.changes.load(Ordering::SeqCst),
            generation: self.generation.load(Ordering::SeqCst),
        }
    }

    fn database_unavailable(&self) -> bool {
        self.database.as_ref().is_some_and(|d| d.is_unavailable())
    }
}

/// A map whose entries are valid for one epoch and at most `ttl`.
#[derive(Debug)]
pub struct Cached<K, V> {
    epoch: Epoch,
    ttl: Duration,
    /// While the database is unavailable, the oldest entry still served; `None`: any.
    outage_max_age: Option<Duration>,
    entries: RwLock<HashMap<K, (LoadEpoch, Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cached<K, V> {
    pub fn new(epoch: Epoch, ttl: Duration) -> Self {
        Self {
            epoch,
            ttl,
            outage_max_age: None,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// While the database is unavailable, serves only entries read from it at most
    /// `max_age` ago (zero: none), instead of any age.
    #[must_use]
    pub fn bounded_during_outage(mut self, max_age: Duration) -> Self {
        self.outage_max_age = Some(max_age);
        self
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now(), self.epoch.database_unavailable())
    }

    /// The entry for `key` at `now`, by the normal rule or, with `outage`, by the
    /// outage rule (see the module docs).
    fn get_at(&self, key: &K, now: Instant, outage: bool) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let (loaded, at, value) = entries.get(key)?;
        let current = self.epoch.current();
        let age = now.saturating_duration_since(*at);
        let servable = if outage {
            loaded.changes == current.changes && self.outage_max_age.is_none_or(|max| age <= max)
        } else {
            loaded.generation == current.generation && age < self.ttl
        };
        servable.then(|| value.clone())
    }

    /// Stores `value` as of `epoch`, the epoch read *before* the value was loaded, so a
    /// change that raced the load leaves the entry already stale.
    pub fn insert(&self, key: K, epoch: LoadEpoch, value: V) {
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(key, (epoch, Instant::now(), value));
        }
    }

    /// The epoch to pass to [`Cached::insert`] for a load starting now.
    pub fn begin_load(&self) -> LoadEpoch {
        self.epoch.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn bumping_the_epoch_drops_entries() {
        let epoch = Epoch::default();
        let c: Cached<&str, i32> = Cached::new(epoch.clone(), DEFAULT_TTL);
        c.insert("a", c.begin_load(), 1);
        assert_eq!(c.get(&"a"), Some(1));
        epoch.bump();
        assert_eq!(c.get(&"a"), None);
    }

    #[test]
    fn a_resync_drops_entries_too() {
        let epoch = Epoch::default();
        let c: Cached<&str, i32> = Cached::new(epoch.clone(), DEFAULT_TTL);
        c.insert("a", c.begin_load(), 1);
        epoch.resync();
        assert_eq!(c.get(&"a"), None);
    }

    #[test]
    fn a_load_that_raced_a_change_is_not_served() {
        let epoch = Epoch::default();
        let c: Cached<&str, i32> = Cached::new(epoch.clone(), DEFAULT_TTL);
        let started = c.begin_load();
        epoch.bump();
        c.insert("a", started, 1);
        assert_eq!(c.get(&"a"), None);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let c: Cached<&str, i32> = Cached::new(Epoch::default(), Duration::ZERO);
        c.insert("a", c.begin_load(), 1);
        assert_eq!(c.get(&"a"), None);
    }

    #[test]
    fn during_an_outage_the_last_value_is_served_whatever_its_age_or_a_resync() {
        let epoch = Epoch::default();
        let c: Cached<&str, i32> = Cached::new(epoch.clone(), DEFAULT_TTL);
        c.insert("a", c.begin_load(), 1);
        // The listener lost its connection (the pod noticed the outage) or did not.
        epoch.resync();
        let later = Instant::now() + Duration::from_hours(2);
        assert_eq!(c.get_at(&"a", later, true), Some(1));
        assert_eq!(c.get_at(&"a", later, false), None);
        assert_eq!(c.get_at(&"missing", later, true), None);
    }

    #[test]
    fn during_an_outage_a_notified_change_is_never_served() {
        let epoch = Epoch::default();
        let c: Cached<&str, i32> = Cached::new(epoch.clone(), DEFAULT_TTL);
        c.insert("a", c.begin_load(), 1);
        epoch.bump();
        assert_eq!(c.get_at(&"a", Instant::now(), true), None);
    }

    #[test]
    fn a_bounded_cache_serves_during_an_outage_only_what_it_read_recently_enough() {
        let epoch = Epoch::default();
        let c: Cached<&str, i32> =
            Cached::new(epoch.clone(), DEFAULT_TTL).bounded_during_outage(60 * SECOND);
        c.insert("a", c.begin_load(), 1);
        let loaded = Instant::now();
        epoch.resync();
        assert_eq!(c.get_at(&"a", loaded + 59 * SECOND, true), Some(1));
        assert_eq!(c.get_at(&"a", loaded + 61 * SECOND, true), None);
        // The same rule with or without a resync: pods agree whatever their listener saw.
        let other: Cached<&str, i32> =
            Cached::new(Epoch::default(), DEFAULT_TTL).bounded_during_outage(60 * SECOND);
        other.insert("a", other.begin_load(), 1);
        let loaded = Instant::now();
        assert_eq!(other.get_at(&"a", loaded + 59 * SECOND, true), Some(1));
        assert_eq!(other.get_at(&"a", loaded + 61 * SECOND, true), None);
    }

    #[test]
    fn a_zero_bound_serves_nothing_during_an_outage_not_even_fresh_entries() {
        let c: Cached<&str, i32> =
            Cached::new(Epoch::default(), DEFAULT_TTL).bounded_during_outage(Duration::ZERO);
        c.insert("a", c.begin_load(), 1);
        let later = Instant::now() + Duration::from_millis(1);
        assert_eq!(c.get_at(&"a", later, false), Some(1));
        assert_eq!(c.get_at(&"a", later, true), None);
    }

    #[test]
    fn the_outage_rule_applies_while_the_database_is_marked_unavailable() {
        let health = Arc::new(DatabaseHealth::new(SECOND));
        let epoch = Epoch::new(Arc::clone(&health));
        let c: Cached<&str, i32> = Cached::new(epoch.clone(), DEFAULT_TTL);
        c.insert("a", c.begin_load(), 1);
        epoch.resync();
        assert_eq!(c.get(&"a"), None);
        health.failed("down", Instant::now());
        assert_eq!(c.get(&"a"), Some(1));
        health.succeeded(Instant::now());
        assert_eq!(c.get(&"a"), None);
    }
}
