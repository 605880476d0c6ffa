//! The `status.conditions` vocabulary shared by the three resources, and a pure helper
//! that merges a new condition into a list the way `meta.SetStatusCondition` does:
//! `lastTransitionTime` moves only when the status flips, so `kubectl get -o wide` and
//! alerting see real transitions, not every resync.
//!
//! Every resource carries a `Ready` condition; `Ready=False` always has one of the
//! reasons below, and its message says what to change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type: the resource is fully reconciled and usable.
pub const READY: &str = "Ready";

/// Ready=True: everything the spec asks for exists and matches it.
pub const RECONCILED: &str = "Reconciled";
/// Ready=False (OidcClient): the tenant's `allowedNamespaces` does not select the
/// client's namespace; nothing was registered.
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
/// Ready=False: a referenced Secret (`secretRef`) does not exist (yet); the operator
/// waits for it and never invents a replacement.
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// Ready=False: a referenced Secret exists but lacks the key or holds an unusable value.
pub const SECRET_INVALID: &str = "SecretInvalid";
/// Ready=False: another object already owns the identity this one claims (a client id
/// in a tenant, an issuer, a tenant's key set); the established owner keeps it.
pub const CONFLICT: &str = "Conflict";
/// Ready=False: `tenantRef` names no IdentityTenant.
pub const TENANT_NOT_FOUND: &str = "TenantNotFound";
/// Ready=False: the spec passed schema validation but is still unusable (the message
/// names the field); the operator waits for a change.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Ready=False: the database schema migration Job for the configured authserver version
/// has not finished; reconciliation resumes when it has.
pub const MIGRATION_PENDING: &str = "MigrationPending";
/// Ready=False: the migration Job failed; the message carries the Job's failure.
pub const MIGRATION_FAILED: &str = "MigrationFailed";
/// Ready=False: the auth server's admin API could not be reached; retried with backoff.
pub const AUTH_SERVER_UNAVAILABLE: &str = "AuthServerUnavailable";
/// Ready=False: the resource is being deleted and its cleanup has not finished.
pub const DELETING: &str = "Deleting";
/// Ready=False (OidcClient): the `clientId` belonged to a client that was deleted; it is
/// retired so that a new client cannot inherit the old one's consents and tokens. Choose
/// another id, or free it with `authserver clients purge-retired` once the old client's
/// tokens have expired.
pub const CLIENT_ID_RETIRED: &str = "ClientIdRetired";
/// Ready=False: the API server rejected a write of an object the operator keeps for this
/// resource (the credentials Secret, the purge CronJob) with a 4xx such as 422 Invalid or
/// 403 from a quota or an admission webhook; the message names the object and carries the
/// API server's message. The operator does not retry at once: it tries again when the
/// resource changes, and at the resync interval (a quota or webhook may change meanwhile).
pub const APPLY_FAILED: &str = "ApplyFailed";
/// Ready=False (IdentityTenant): a Secret an upstream identity provider names
/// (`clientSecretRef`, an LDAP directory's `bindPasswordRef` or `caRef`) does not exist in the auth server's namespace (yet); nothing
/// is registered until it does (retried with backoff).
pub const UPSTREAM_SECRET_MISSING: &str = "UpstreamSecretMissing";
/// Ready=False (IdentityTenant): the auth server cannot start a sign-in through an
/// upstream identity provider: its discovery document or key set cannot be fetched or
/// is not the configured issuer's, or an LDAP directory refuses the connection or the
/// service account's bind. The message names each failing provider and why. The tenant
/// stays registered (local sign-ins work); retried with backoff, `Ready=True` once the
/// upstream answers.
pub const UPSTREAM_UNREACHABLE: &str = "UpstreamUnreachable";

/// Every reason above, for tests and docs.
pub const REASONS: [&str; 15] = [
    RECONCILED,
    NAMESPACE_NOT_ALLOWED,
    SECRET_NOT_FOUND,
    SECRET_INVALID,
    CONFLICT,
    TENANT_NOT_FOUND,
    INVALID_SPEC,
    MIGRATION_PENDING,
    MIGRATION_FAILED,
    AUTH_SERVER_UNAVAILABLE,
    DELETING,
    CLIENT_ID_RETIRED,
    APPLY_FAILED,
    UPSTREAM_SECRET_MISSING,
    UPSTREAM_UNREACHABLE,
];

/// The `status` of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    /// The API value: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(value: bool) -> Self {
        if value { Status::True } else { Status::False }
    }
}

/// A condition observed at `now` for the object's `generation`.
pub fn new(
    type_: &str,
    status: Status,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

/// A `Ready` condition: `Ready=True` with [`RECONCILED`], or `Ready=False` with a reason.
pub fn ready(
    status: Status,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    new(READY, status, reason, message, observed_generation, now)
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == Status::True.as_str())
}

/// `existing` with `update` merged in: a condition of the same type is replaced, but keeps
/// its `lastTransitionTime` when the status is unchanged (reason, message and generation
/// still update). `Ready` comes first; other types keep their order, new ones go last.
pub fn merge(existing: &[Condition], update: Condition) -> Vec<Condition> {
    let mut update = update;
    if let Some(old) = find(existing, &update.type_)
        && old.status == update.status
    {
        update.last_transition_time = old.last_transition_time.clone();
    }
    let mut merged = existing.to_vec();
    match merged.iter_mut().find(|c| c.type_ == update.type_) {
        Some(slot) => *slot = update,
        None => merged.push(update),
    }
    if let Some(i) = merged.iter().position(|c| c.type_ == READY) {
        let ready = merged.remove(i);
        merged.insert(0, ready);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn a_new_condition_is_stamped_with_now() {
        let merged = merge(&[], ready(Status::True, RECONCILED, "ok", Some(3), at(100)));
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].type_, READY);
        assert_eq!(merged[0].status, "True");
        assert_eq!(merged[0].reason, RECONCILED);
        assert_eq!(merged[0].observed_generation, Some(3));
        assert_eq!(merged[0].last_transition_time, at(100));
    }

    #[test]
    fn unchanged_status_keeps_the_transition_time_but_updates_the_rest() {
        let before = merge(
            &[],
            ready(Status::False, SECRET_NOT_FOUND, "waiting", Some(1), at(100)),
        );
        let after = merge(
            &before,
            ready(
                Status::False,
                TENANT_NOT_FOUND,
                "no tenant acme",
                Some(2),
                at(200),
            ),
        );
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].last_transition_time, at(100));
        assert_eq!(after[0].reason, TENANT_NOT_FOUND);
        assert_eq!(after[0].message, "no tenant acme");
        assert_eq!(after[0].observed_generation, Some(2));
    }

    #[test]
    fn a_status_flip_moves_the_transition_time() {
        let before = merge(
            &[],
            ready(Status::False, SECRET_NOT_FOUND, "waiting", Some(1), at(100)),
        );
        let after = merge(
            &before,
            ready(Status::True, RECONCILED, "", Some(1), at(200)),
        );
        assert_eq!(after[0].status, "True");
        assert_eq!(after[0].last_transition_time, at(200));
        let unknown = merge(
            &after,
            ready(Status::Unknown, DELETING, "", Some(1), at(300)),
        );
        assert_eq!(unknown[0].last_transition_time, at(300));
    }

    #[test]
    fn ready_stays_first_and_other_types_keep_their_order() {
        let other = |t: &str, s| new(t, s, RECONCILED, "", None, at(1));
        let list = merge(&[], other("KeysPublished", Status::True));
        let list = merge(&list, other("SecretSynced", Status::True));
        let list = merge(&list, ready(Status::True, RECONCILED, "", None, at(1)));
        let types: Vec<_> = list.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, "KeysPublished", "SecretSynced"]);

        let list = merge(&list, other("KeysPublished", Status::False));
        let types: Vec<_> = list.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, "KeysPublished", "SecretSynced"]);
        assert_eq!(list[1].status, "False");
    }

    #[test]
    fn merging_the_same_condition_twice_changes_nothing() {
        let once = merge(&[], ready(Status::True, RECONCILED, "ok", Some(4), at(100)));
        let twice = merge(
            &once,
            ready(Status::True, RECONCILED, "ok", Some(4), at(500)),
        );
        assert_eq!(once, twice);
    }

    #[test]
    fn is_true_reads_the_status() {
        let list = merge(&[], ready(Status::True, RECONCILED, "", None, at(1)));
        assert!(is_true(&list, READY));
        assert!(!is_true(&list, "Other"));
        let list = merge(&list, ready(false.into(), CONFLICT, "", None, at(2)));
        assert!(!is_true(&list, READY));
    }

    #[test]
    fn reasons_are_camel_case() {
        for reason in REASONS {
            assert!(
                reason.chars().next().unwrap().is_ascii_uppercase(),
                "{reason}"
            );
            assert!(
                reason.chars().all(|c| c.is_ascii_alphanumeric()),
                "{reason}"
            );
        }
    }
}
