//! What each object's last successful reconcile was decided on, so that a reconcile
//! triggered again before anything it reads has changed is skipped until the resync
//! interval is due.
//!
//! kube-runtime reconciles an object on every watch event that concerns it, and most of
//! those after a successful reconcile are the controller's own writes coming back: the
//! status it just wrote, the credentials Secret it just applied. Each such reconcile used
//! to repeat the whole work — a GET of the Secret (its value is never cached) and an
//! upsert to the auth server — only to find nothing to do (measured with
//! `benches/operator-scale.sh`, 100 new clients: 2.6 Secret GETs, as many upserts and 1.4
//! status writes per client, the extra write from a reconcile that read the status before
//! its own write reached the cache; now 1, 1 and 1). A [`Fingerprint`] of everything a
//! reconcile reads from the caches (the object's generation and metadata, its tenant,
//! its namespace's labels, the versions of its Secrets) tells such a trigger apart from a
//! change.
//!
//! Not in the fingerprint, so only seen at the next resync (a full reconcile, as before):
//! drift in the auth server (a registration changed behind the operator's back), a status
//! edited by hand, and the other clients' claims on the same client id (the newcomer's own
//! reconcile reports the conflict on the newcomer). Kept in memory only: a restarted
//! operator or a new leader reconciles everything once in full.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher as _};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// A digest of the inputs of a reconcile (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl Fingerprint {
    /// The fingerprint of `inputs`. SipHash with fixed keys: equal inputs give equal
    /// fingerprints for the life of the process, which is all this needs.
    pub fn of(inputs: &impl Hash) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        inputs.hash(&mut hasher);
        Self(hasher.finish())
    }
}

/// The last successful reconcile of each object (by uid): its inputs and when it ran in
/// full.
#[derive(Debug, Default)]
pub struct Settled {
    seen: Mutex<HashMap<String, (Fingerprint, Timestamp)>>,
}

impl Settled {
    /// How long until `uid` is due for its resync, when its last full reconcile (at most
    /// `resync` ago) saw `fingerprint`: the reconcile may then be skipped. `None`: run it.
    pub fn unchanged(
        &self,
        uid: &str,
        fingerprint: Fingerprint,
        now: Timestamp,
        resync: Duration,
    ) -> Option<Duration> {
        let seen = self.seen.lock().expect("settled lock");
        let (was, at) = seen.get(uid)?;
        if *was != fingerprint {
            return None;
        }
        let elapsed = Duration::try_from(at.duration_until(now)).ok()?;
        resync.checked_sub(elapsed).filter(|left| !left.is_zero())
    }

    /// Whether the last successful reconcile of `uid` saw `fingerprint`, however long ago:
    /// a due resync of an object nothing changed about (the client controller then
    /// verifies the auth server's side without reading the credentials Secret).
    pub fn same(&self, uid: &str, fingerprint: Fingerprint) -> bool {
        self.seen
            .lock()
            .expect("settled lock")
            .get(uid)
            .is_some_and(|(was, _)| *was == fingerprint)
    }

    /// Records a successful full reconcile of `uid` at `now` that left `fingerprint`.
    pub fn record(&self, uid: &str, fingerprint: Fingerprint, now: Timestamp) {
        self.seen
            .lock()
            .expect("settled lock")
            .insert(uid.to_owned(), (fingerprint, now));
    }

    /// Runs `steps` unless `inputs` (what they read from the caches; `None`: unknown,
    /// always run) are those of the last success and the resync is not due: `Err(wait)`
    /// when skipped. After a success the inputs are recorded, first updated by
    /// `own_writes` with what the steps wrote themselves (their own writes coming back
    /// must not count as a change); after a failure the object is forgotten.
    pub async fn run<I: Hash, T, E>(
        &self,
        uid: &str,
        inputs: Option<I>,
        now: Timestamp,
        resync: Duration,
        steps: impl Future<Output = Result<T, E>>,
        own_writes: impl FnOnce(&mut I, &T),
    ) -> Result<Result<T, E>, Duration> {
        if let Some(wait) = inputs
            .as_ref()
            .and_then(|i| self.unchanged(uid, Fingerprint::of(i), now, resync))
        {
            return Err(wait);
        }
        let result = steps.await;
        match (&result, inputs) {
            (Ok(done), Some(mut inputs)) => {
                own_writes(&mut inputs, done);
                self.record(uid, Fingerprint::of(&inputs), now);
            }
            _ => self.forget(uid),
        }
        Ok(result)
    }

    /// Forgets `uid`: its next reconcile runs in full (after a failure, on deletion).
    pub fn forget(&self, uid: &str) {
        self.seen.lock().expect("settled lock").remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_mins(5);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn an_unchanged_object_is_skipped_until_its_resync_is_due() {
        let settled = Settled::default();
        let fp = Fingerprint::of(&("gen", 1, "secret-rv", "7"));
        assert_eq!(
            settled.unchanged("u", fp, at(0), RESYNC),
            None,
            "never seen"
        );
        settled.record("u", fp, at(0));
        assert_eq!(
            settled.unchanged("u", fp, at(60), RESYNC),
            Some(Duration::from_mins(4))
        );
        assert_eq!(
            settled.unchanged("u", fp, at(300), RESYNC),
            None,
            "the resync runs in full"
        );
        assert_eq!(settled.unchanged("other", fp, at(60), RESYNC), None);
        assert!(settled.same("u", fp), "due, but nothing changed");
        assert!(!settled.same("u", Fingerprint::of(&"other")));
        assert!(!settled.same("other", fp));
    }

    #[test]
    fn any_change_of_the_inputs_or_a_forgotten_object_runs_in_full() {
        let settled = Settled::default();
        let fp = Fingerprint::of(&("gen", 1, "secret-rv", "7"));
        settled.record("u", fp, at(0));
        let secret_changed = Fingerprint::of(&("gen", 1, "secret-rv", "8"));
        assert_ne!(fp, secret_changed);
        assert_eq!(settled.unchanged("u", secret_changed, at(1), RESYNC), None);
        settled.forget("u");
        assert_eq!(settled.unchanged("u", fp, at(1), RESYNC), None);
        // A clock that went backwards is no reason to skip.
        settled.record("u", fp, at(10));
        assert_eq!(settled.unchanged("u", fp, at(5), RESYNC), None);
    }
}
