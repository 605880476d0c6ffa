//! Which secret each client's credentials Secret held when its last full reconcile left
//! it, known by the fingerprint the auth server gave for that secret
//! (`Client.secret_fingerprint` of the admin API) — never by the secret: the operator
//! keeps no client secret in memory.
//!
//! A due resync of a client nothing changed about (same [`crate::settled`] fingerprint)
//! whose credentials Secret is still at the version the reconcile left needs neither the
//! Secret's value nor a write: it upserts the registration naming the secret by this
//! fingerprint (`expect_secret_fingerprint`), which the auth server refuses if its secret
//! is another one, and only then is the Secret read and the full reconcile run. Without
//! this, every resync read every client's Secret (1 000 GETs per interval at 1 000
//! clients) and sent every secret to the auth server again.
//!
//! Only generated secrets (no `spec.secretRef`) are known: a referenced Secret's value is
//! the user's, and its reconcile reads it.

use std::collections::HashMap;
use std::sync::Mutex;

/// The credentials Secret's version and the fingerprint of the secret it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub version: String,
    pub fingerprint: String,
}

/// Per client uid, see the module docs.
#[derive(Debug, Default)]
pub struct KnownSecrets {
    by_uid: Mutex<HashMap<String, Known>>,
}

impl KnownSecrets {
    /// The secret `uid`'s credentials Secret holds, if the Secret is still at the
    /// `version` its last full reconcile left.
    pub fn get(&self, uid: &str, version: Option<&str>) -> Option<Known> {
        let by_uid = self.by_uid.lock().expect("known secrets lock");
        by_uid
            .get(uid)
            .filter(|known| Some(known.version.as_str()) == version)
            .cloned()
    }

    /// After a successful reconcile: the Secret at `version` holds the secret with
    /// `fingerprint`; either unknown forgets `uid`.
    pub fn record(&self, uid: &str, version: Option<String>, fingerprint: Option<String>) {
        let mut by_uid = self.by_uid.lock().expect("known secrets lock");
        match (version, fingerprint.filter(|f| !f.is_empty())) {
            (Some(version), Some(fingerprint)) => {
                by_uid.insert(
                    uid.to_owned(),
                    Known {
                        version,
                        fingerprint,
                    },
                );
            }
            _ => {
                by_uid.remove(uid);
            }
        }
    }

    /// Forgets `uid` (a failed reconcile, a deletion).
    pub fn forget(&self, uid: &str) {
        self.by_uid.lock().expect("known secrets lock").remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_known_only_at_the_version_it_was_recorded_with() {
        let known = KnownSecrets::default();
        assert_eq!(known.get("u", Some("5")), None);
        known.record("u", Some("5".into()), Some("fp".into()));
        assert_eq!(
            known.get("u", Some("5")).map(|k| k.fingerprint),
            Some("fp".into())
        );
        assert_eq!(known.get("u", Some("6")), None, "the Secret changed");
        assert_eq!(known.get("u", None), None, "the Secret is gone");
        assert_eq!(known.get("other", Some("5")), None);
        // An older auth server gives no fingerprint: nothing is known.
        known.record("u", Some("7".into()), Some(String::new()));
        assert_eq!(known.get("u", Some("7")), None);
        known.record("u", Some("7".into()), Some("fp2".into()));
        known.forget("u");
        assert_eq!(known.get("u", Some("7")), None);
    }
}
