//! The signed-in user's own account pages (`{issuer}/account/…`): an overview, the
//! profile, the password, the second factors, the sessions, the consents and the
//! user's own security events. Each page is for the browser's active account; nobody
//! signed in → [`AccountPage::SignIn`]. The rules live here and in the services
//! (`users`, `mfa`, `sessions`); the pages only parse and render.
//!
//! Consents: revoking one also revokes every live grant of the user for that client
//! (see [`crate::users::UserService::revoke_consent_of`]).

mod activity;
mod devices;
mod links;
mod password;
mod profile;
mod security;
mod sessions;

pub use activity::{ACTIVITY_EVENTS, ACTIVITY_LIMIT, ActivityEntry};
pub use devices::DeviceForgetting;
pub use links::{LinkChange, LinkedAccount, LinkedAccounts};
pub use password::{PasswordChange, PasswordOutcome, PasswordProblem};
pub use profile::{Profile, ProfileOutcome};
pub use security::{
    Factors, Proof, Security, SecurityNotice, SecurityOutcome, SecurityProblem, may_remove,
    second_factor_count,
};
pub use sessions::{Device, DeviceSession, SessionRevocation, device_summary};

use super::{Engine, Error, Step, Visit};
use crate::clients::Actor;
use crate::store::consents::Consent;
use crate::store::sessions::AccountSession;
use crate::store::users::StoredUser;
use crate::throttle::Locked;

/// The consents page, or the sign-in form when nobody is signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountConsents {
    SignIn,
    Show {
        username: String,
        consents: Vec<Consent>,
    },
}

/// What revoking a consent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    SignIn,
    /// Revoked, or already gone (a second tab, a double click): the same for the user.
    Done,
    /// No (valid) client was named.
    NoClient,
}

/// An account page, or the sign-in page when nobody is signed in (or the account's
/// user was deleted meanwhile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountPage<T> {
    SignIn,
    Show(T),
}

/// The overview page: who is signed in and the state of their account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOverview {
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub totp_enrolled: bool,
    pub recovery_codes_left: usize,
    /// The user's valid sessions, in every browser.
    pub sessions: usize,
}

/// The active account of a visit: its session and its user.
#[derive(Debug, Clone)]
pub(super) struct Me {
    pub session: AccountSession,
    pub user: StoredUser,
}

/// What an attempt at a secret (the current password, a code) ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    Good,
    Wrong,
    Locked(Locked),
}

impl Engine<'_> {
    async fn active_account(&self, visit: &Visit) -> Result<Option<AccountSession>, Error> {
        match &visit.browser {
            Some(b) => Ok(self.sessions.active_account(b).await?),
            None => Ok(None),
        }
    }

    /// The active account and its user; `None` when nobody is signed in.
    pub(super) async fn me(&self, visit: &Visit) -> Result<Option<Me>, Error> {
        let Some(session) = self.active_account(visit).await? else {
            return Ok(None);
        };
        let user = self
            .store
            .get_user(&visit.tenant.id, &session.user_id)
            .await?;
        Ok(user.map(|user| Me { session, user }))
    }

    /// The overview page.
    pub async fn account_overview(
        &self,
        visit: &Visit,
    ) -> Result<AccountPage<AccountOverview>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let status = self.mfa.status(&visit.tenant.id, &user.user_id).await?;
        let now = self.now();
        let sessions = self
            .store
            .list_user_sessions(&visit.tenant.id, &user.user_id)
            .await?
            .iter()
            .filter(|s| s.is_valid(now))
            .count();
        Ok(AccountPage::Show(AccountOverview {
            name: profile::display_name(&user).map(str::to_owned),
            username: user.username,
            email: user.email,
            email_verified: user.email_verified,
            totp_enrolled: status.totp_enrolled,
            recovery_codes_left: status.recovery_codes_left,
            sessions,
        }))
    }

    /// Checks the signed-in user's current password, counted like a sign-in attempt
    /// (per username and address, see `crate::throttle`): a page that asks for it
    /// cannot be used to guess it faster than the sign-in page. A wrong one is audited
    /// as `user.reauthentication_failed` with `purpose`.
    pub(super) async fn check_current_password(
        &self,
        visit: &Visit,
        me: &Me,
        password: &secrecy::SecretString,
        purpose: &str,
    ) -> Step<Checked> {
        let reservation = match self.reserve(visit, &me.user.username).await? {
            Ok(r) => r,
            Err(locked) => return Ok(Checked::Locked(locked)),
        };
        let verified = match self
            .users
            .verify_and_maybe_rehash(&visit.tenant.id, &me.user.username, password)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.release(reservation).await;
                return Err(e.into());
            }
        };
        if verified.is_some_and(|u| u.user_id == me.user.user_id) {
            self.release(reservation).await;
            return Ok(Checked::Good);
        }
        let event = self
            .event(visit, "user.reauthentication_failed", &me.user.user_id)
            .details(serde_json::json!({ "purpose": purpose, "method": "password" }));
        self.store.audit(event).await;
        Ok(match self.throttle.failed(reservation).await {
            Some(locked) => Checked::Locked(locked),
            None => Checked::Wrong,
        })
    }

    /// The active account's consents.
    pub async fn account_consents(&self, visit: &Visit) -> Result<AccountConsents, Error> {
        let Some(account) = self.active_account(visit).await? else {
            return Ok(AccountConsents::SignIn);
        };
        let tenant_id = &visit.tenant.id;
        let username = self
            .store
            .get_user(tenant_id, &account.user_id)
            .await?
            .map(|u| u.username)
            .unwrap_or_default();
        let consents = self.users.consents_of(tenant_id, &account.user_id).await?;
        Ok(AccountConsents::Show { username, consents })
    }

    /// Revokes the active account's consent to `client_id` (CSRF already checked).
    pub async fn revoke_own_consent(
        &self,
        visit: &Visit,
        client_id: Option<&str>,
    ) -> Result<Revocation, Error> {
        let Some(account) = self.active_account(visit).await? else {
            return Ok(Revocation::SignIn);
        };
        let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
            return Ok(Revocation::NoClient);
        };
        match self
            .users
            .revoke_consent_of(&visit.tenant.id, &account.user_id, client_id, Actor::User)
            .await
        {
            Ok(_) => Ok(Revocation::Done),
            Err(crate::users::Error::Invalid(_)) => Ok(Revocation::NoClient),
            Err(e) => Err(e.into()),
        }
    }
}

/// A step's result for an account page: the account steps never stop on a sign-in page
/// of their own, so only failures travel in `Halt`.
fn settle<T>(step: Step<T>) -> Result<T, Error> {
    match step {
        Ok(v) => Ok(v),
        Err(super::Halt::Fail(e)) => Err(e),
        Err(super::Halt::Show(_)) => Err(Error::Invariant(
            "an account step stopped with an interaction page",
        )),
    }
}
