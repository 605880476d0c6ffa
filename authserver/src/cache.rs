//! Per-pod caches of database rows. Entries are dropped when any process changes the
//! underlying tables (see `store::changes`) and expire after a TTL as a backstop for a
//! missed notification.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// TTL backstop: the longest a pod serves stale data if a notification is lost.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A shared invalidation epoch: bumping it invalidates every cache built on it.
#[derive(Debug, Default, Clone)]
pub struct Epoch(Arc<AtomicU64>);

impl Epoch {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A map whose entries are valid for one epoch and at most `ttl`.
#[derive(Debug)]
pub struct Cached<K, V> {
    epoch: Epoch,
    ttl: Duration,
    entries: RwLock<HashMap<K, (u64, Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cached<K, V> {
    pub fn new(epoch: Epoch, ttl: Duration) -> Self {
        Self {
            epoch,
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let (epoch, at, value) = entries.get(key)?;
        (*epoch == self.epoch.current() && at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Stores `value` as of `epoch`, the epoch read *before* the value was loaded, so a
    /// change that raced the load leaves the entry already stale.
    pub fn insert(&self, key: K, epoch: u64, value: V) {
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(key, (epoch, Instant::now(), value));
        }
    }

    /// The epoch to pass to [`Cached::insert`] for a load starting now.
    pub fn begin_load(&self) -> u64 {
        self.epoch.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
