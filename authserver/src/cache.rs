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
    /// Advances on every revocation of a token or grant; only caches of token state
    /// ([`Cached::dropped_on_revocation`]) watch it, so the row caches survive the
    /// frequent revocations of a busy tenant.
    revocations: Arc<Revocations>,
    /// When the change feed last proved it delivers (`None`: no feed is watched, as in
    /// unit tests). Token state is served only while this is recent: a pod cut off from
    /// the feed cannot hear of other pods' revocations.
    feed: Option<Arc<FeedLiveness>>,
    /// `None`: no database health to consult (the database counts as available).
    database: Option<Arc<DatabaseHealth>>,
}

/// How recently the change feed must have proved alive for token state to be served:
/// the propagation target of a revocation to every pod.
pub const FEED_FRESHNESS: Duration = Duration::from_secs(1);

/// When the change feed last delivered (a notification, a heartbeat, a poll).
#[derive(Debug)]
pub struct FeedLiveness {
    start: Instant,
    /// One more than the milliseconds after `start`; 0: never.
    confirmed_ms: AtomicU64,
}

impl FeedLiveness {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            confirmed_ms: AtomicU64::new(0),
        }
    }

    fn confirm(&self, at: Instant) {
        let ms = u64::try_from(at.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX - 1);
        self.confirmed_ms.fetch_max(ms + 1, Ordering::SeqCst);
    }

    fn fresh(&self, now: Instant) -> bool {
        match self.confirmed_ms.load(Ordering::SeqCst) {
            0 => false,
            ms => {
                now.saturating_duration_since(self.start + Duration::from_millis(ms - 1))
                    < FEED_FRESHNESS
            }
        }
    }
}

/// Counts revocations of tokens and grants. The store counts its own once they are
/// committed (so this process sees them at once); the change feed counts other
/// processes'.
#[derive(Debug, Default)]
pub struct Revocations(AtomicU64);

impl Revocations {
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The epoch a load started in; see [`Cached::begin_load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadEpoch {
    generation: u64,
    changes: u64,
    revocations: u64,
}

impl Epoch {
    /// An epoch whose caches consult `database`'s availability and see the
    /// `revocations` the store counts.
    pub fn new(database: Arc<DatabaseHealth>, revocations: Arc<Revocations>) -> Self {
        Self {
            database: Some(database),
            revocations,
            feed: Some(Arc::new(FeedLiveness::new())),
            ..Self::default()
        }
    }

    /// The change feed delivered (or proved it would): token state may be served for
    /// [`FEED_FRESHNESS`] from now.
    pub fn feed_alive(&self) {
        if let Some(feed) = &self.feed {
            feed.confirm(Instant::now());
        }
    }

    fn feed_fresh(&self, now: Instant) -> bool {
        self.feed.as_ref().is_none_or(|f| f.fresh(now))
    }

    /// Another process revoked a token or grant (the change feed said so).
    pub fn revoked(&self) {
        self.revocations.record();
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
            revocations: self.revocations.current(),
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
    /// Entries are outdated by any revocation too.
    revocation_sensitive: bool,
    /// Most entries kept; `None`: as many as there are keys (rows of a table).
    capacity: Option<usize>,
    entries: RwLock<HashMap<K, (LoadEpoch, Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cached<K, V> {
    pub fn new(epoch: Epoch, ttl: Duration) -> Self {
        Self {
            epoch,
            ttl,
            outage_max_age: None,
            revocation_sensitive: false,
            capacity: None,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Drops every entry at any revocation of a token or grant, by this process or
    /// (through the change feed) another: for caches of token state.
    #[must_use]
    pub fn dropped_on_revocation(mut self) -> Self {
        self.revocation_sensitive = true;
        self
    }

    /// Keeps at most `capacity` entries: for keys an attacker chooses (tokens), where
    /// one entry per key would grow without bound.
    #[must_use]
    pub fn bounded(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
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
        if self.revocation_sensitive && !self.epoch.feed_fresh(now) {
            return None;
        }
        self.servable(loaded, current, age, outage)
            .then(|| value.clone())
    }

    fn servable(
        &self,
        loaded: &LoadEpoch,
        current: LoadEpoch,
        age: Duration,
        outage: bool,
    ) -> bool {
        if self.revocation_sensitive && loaded.revocations != current.revocations {
            return false;
        }
        if outage {
            loaded.changes == current.changes && self.outage_max_age.is_none_or(|max| age <= max)
        } else {
            loaded.generation == current.generation && age < self.ttl
        }
    }

    /// Stores `value` as of `epoch`, the epoch read *before* the value was loaded, so a
    /// change that raced the load leaves the entry already stale.
    pub fn insert(&self, key: K, epoch: LoadEpoch, value: V) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if let Some(capacity) = self.capacity
            && entries.len() >= capacity
            && !entries.contains_key(&key)
        {
            // Outdated entries go first; if that is not enough, an eighth of the
            // rest (the map's order is arbitrary): a full cache keeps most of its hits.
            let now = Instant::now();
            let current = self.epoch.current();
            entries.retain(|_, (loaded, at, _)| {
                self.servable(loaded, current, now.saturating_duration_since(*at), false)
            });
            if entries.len() >= capacity {
                let drop: Vec<K> = entries.keys().take(capacity / 8 + 1).cloned().collect();
                for k in &drop {
                    entries.remove(k);
                }
            }
        }
        entries.insert(key, (epoch, Instant::now(), value));
    }

    /// How many entries are held (servable or not).
    pub fn len(&self) -> usize {
        self.entries.read().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    fn a_revocation_drops_only_the_caches_of_token_state() {
        let revocations = Arc::new(Revocations::default());
        let epoch = Epoch::new(
            Arc::new(DatabaseHealth::new(SECOND)),
            Arc::clone(&revocations),
        );
        epoch.feed_alive();
        let rows: Cached<&str, i32> = Cached::new(epoch.clone(), DEFAULT_TTL);
        let tokens: Cached<&str, i32> =
            Cached::new(epoch.clone(), DEFAULT_TTL).dropped_on_revocation();
        rows.insert("a", rows.begin_load(), 1);
        tokens.insert("t", tokens.begin_load(), 2);
        // This process's own revocation (the store counts it)...
        revocations.record();
        assert_eq!(rows.get(&"a"), Some(1));
        assert_eq!(tokens.get(&"t"), None);
        // ...and another process's, from the change feed.
        tokens.insert("t", tokens.begin_load(), 2);
        epoch.revoked();
        assert_eq!(tokens.get(&"t"), None);
        // A row change outdates token state too (a deleted client, a retired key).
        tokens.insert("t", tokens.begin_load(), 2);
        epoch.bump();
        assert_eq!(tokens.get(&"t"), None);
        assert_eq!(rows.get(&"a"), None);
    }

    #[test]
    fn token_state_is_served_only_while_the_change_feed_is_known_to_deliver() {
        let epoch = Epoch::new(Arc::new(DatabaseHealth::new(SECOND)), Arc::default());
        let rows: Cached<&str, i32> = Cached::new(epoch.clone(), DEFAULT_TTL);
        let tokens: Cached<&str, i32> =
            Cached::new(epoch.clone(), DEFAULT_TTL).dropped_on_revocation();
        rows.insert("a", rows.begin_load(), 1);
        tokens.insert("t", tokens.begin_load(), 2);
        // No word from the feed yet: another pod's revocation could be missed.
        assert_eq!(tokens.get(&"t"), None);
        assert_eq!(rows.get(&"a"), Some(1));
        epoch.feed_alive();
        let now = Instant::now();
        assert_eq!(tokens.get_at(&"t", now, false), Some(2));
        assert_eq!(
            tokens.get_at(&"t", now + Duration::from_millis(950), false),
            Some(2)
        );
        // Silence for longer than the propagation target: not any more.
        assert_eq!(tokens.get_at(&"t", now + FEED_FRESHNESS, false), None);
        assert_eq!(rows.get_at(&"a", now + FEED_FRESHNESS, false), Some(1));
    }

    #[test]
    fn a_load_that_raced_a_revocation_is_not_served() {
        let epoch = Epoch::default();
        let tokens: Cached<&str, i32> =
            Cached::new(epoch.clone(), DEFAULT_TTL).dropped_on_revocation();
        let started = tokens.begin_load();
        epoch.revoked();
        tokens.insert("t", started, 1);
        assert_eq!(tokens.get(&"t"), None);
    }

    #[test]
    fn a_bounded_cache_never_holds_more_than_its_capacity() {
        let c: Cached<u32, u32> = Cached::new(Epoch::default(), DEFAULT_TTL).bounded(64);
        for i in 0..10_000 {
            c.insert(i, c.begin_load(), i);
            assert!(c.len() <= 64, "{} entries after {i}", c.len());
        }
        // The newest entry is always kept; replacing a key needs no room.
        assert_eq!(c.get(&9_999), Some(9_999));
        c.insert(9_999, c.begin_load(), 1);
        assert_eq!(c.get(&9_999), Some(1));
        // Outdated entries make room first.
        let epoch = Epoch::default();
        let c: Cached<u32, u32> = Cached::new(epoch.clone(), DEFAULT_TTL).bounded(4);
        for i in 0..4 {
            c.insert(i, c.begin_load(), i);
        }
        epoch.bump();
        c.insert(10, c.begin_load(), 10);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_outage_rule_applies_while_the_database_is_marked_unavailable() {
        let health = Arc::new(DatabaseHealth::new(SECOND));
        let epoch = Epoch::new(Arc::clone(&health), Arc::default());
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
