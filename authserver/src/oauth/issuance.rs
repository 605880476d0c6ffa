//! Tokens issued per tenant and grant type, for the Management API's `GET /stats`. Each
//! pod counts in memory and adds its counts to the database in 5-minute buckets at most
//! every [`FLUSH_EVERY`] seconds (and whenever `/stats` is read), so issuing a token
//! costs a map update, not a write. A pod that dies loses at most its last seconds of
//! counts: statistics, not an audit trail.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::clock::UnixTime;
use crate::store::{self, Store};

/// The width of a bucket: "the last hour" is the last twelve.
pub const BUCKET: i64 = 300;
/// The longest this pod keeps counts before adding them to the database.
pub const FLUSH_EVERY: i64 = 10;

type Key = (String, i64, &'static str);

/// This pod's counts not yet in the database.
#[derive(Debug, Default)]
pub struct IssuanceCounter {
    pending: Mutex<HashMap<Key, u64>>,
    last_flush: AtomicI64,
}

impl IssuanceCounter {
    /// Counts one token of `grant` for `tenant`; `true` when a flush is due.
    pub fn record(&self, tenant: &str, grant: &'static str, now: UnixTime) -> bool {
        if let Ok(mut pending) = self.pending.lock() {
            *pending
                .entry((tenant.to_owned(), now - now.rem_euclid(BUCKET), grant))
                .or_insert(0) += 1;
        }
        let last = self.last_flush.load(Ordering::Relaxed);
        now - last >= FLUSH_EVERY
            && self
                .last_flush
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Adds the pending counts to the database; on failure they are kept for the next
    /// flush.
    pub async fn flush(&self, store: &Store, now: UnixTime) -> store::Result<()> {
        let taken: Vec<(Key, u64)> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return Ok(()),
        };
        if taken.is_empty() {
            return Ok(());
        }
        let rows: Vec<(&str, i64, &str, u64)> = taken
            .iter()
            .map(|((tenant, bucket, grant), n)| (tenant.as_str(), *bucket, *grant, *n))
            .collect();
        if let Err(e) = store.add_token_counts(&rows, now).await {
            if let Ok(mut pending) = self.pending.lock() {
                for (key, n) in taken {
                    *pending.entry(key).or_insert(0) += n;
                }
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_to_their_bucket_and_a_flush_is_due_every_ten_seconds() {
        let c = IssuanceCounter::default();
        assert!(
            c.record("t", "client_credentials", 1_000),
            "the first is due"
        );
        assert!(!c.record("t", "client_credentials", 1_005));
        assert!(!c.record("t", "refresh_token", 1_009));
        assert!(c.record("t", "client_credentials", 1_010));
        assert!(c.record("t", "client_credentials", 1_250));
        let pending = c.pending.lock().unwrap();
        assert_eq!(pending[&("t".to_owned(), 900, "client_credentials")], 3);
        assert_eq!(pending[&("t".to_owned(), 900, "refresh_token")], 1);
        assert_eq!(pending[&("t".to_owned(), 1_200, "client_credentials")], 1);
    }
}
