//! The activity page: the signed-in user's own security events from the audit table
//! (sign-ins and failures, password, second-factor and e-mail changes, sessions ended),
//! newest first, at most [`ACTIVITY_LIMIT`]. Only events whose subject is the user, and
//! only when, what and from which address: never the details (which name sessions,
//! clients and counts, and could one day carry more).

use super::{AccountPage, Me};
use crate::clock::UnixTime;
use crate::interaction::{Engine, Error, Visit};
use crate::store::audit::AuditSelection;

/// How many events the page shows.
pub const ACTIVITY_LIMIT: i64 = 50;

/// The events the page shows: those about the account's security.
pub const ACTIVITY_EVENTS: &[&str] = &[
    "login.succeeded",
    "login.failed",
    "mfa.verified",
    "mfa.failed",
    "mfa.enrolled",
    "mfa.removed",
    "mfa.recovery_code_used",
    "mfa.recovery_codes_regenerated",
    "mfa.required_changed",
    "user.password_changed",
    "user.password_set",
    "user.reauthentication_failed",
    "user.email_changed",
    "user.profile_updated",
    "session.revoked",
    "session.evicted",
    "consent.revoked",
    "login.impossible_travel",
    "device.forgotten",
];

/// One event on the activity page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEntry {
    pub at: UnixTime,
    /// The event name (`login.succeeded`, …); the page says it in words.
    pub event: String,
    pub ip: Option<String>,
}

impl Engine<'_> {
    /// The user's own recent security events.
    pub async fn account_activity(
        &self,
        visit: &Visit,
    ) -> Result<AccountPage<Vec<ActivityEntry>>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let selection = AuditSelection {
            events: ACTIVITY_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            subject: Some(user.user_id),
            ..AuditSelection::default()
        };
        let events = self
            .store
            .search_audit(&visit.tenant.id, &selection, ACTIVITY_LIMIT)
            .await?;
        Ok(AccountPage::Show(
            events
                .into_iter()
                .map(|(_, e)| ActivityEntry {
                    at: e.at,
                    event: e.event,
                    ip: e.ip,
                })
                .collect(),
        ))
    }
}
