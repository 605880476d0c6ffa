//! The signed-in user's own account pages: the consents of the browser's active account
//! and their revocation (which also revokes every live grant of the user for that
//! client, see [`crate::users::UserService::revoke_consent_of`]).

use super::{Engine, Error, Visit};
use crate::clients::Actor;
use crate::store::consents::Consent;
use crate::store::sessions::AccountSession;

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

impl Engine<'_> {
    async fn active_account(&self, visit: &Visit) -> Result<Option<AccountSession>, Error> {
        match &visit.browser {
            Some(b) => Ok(self.sessions.active_account(b).await?),
            None => Ok(None),
        }
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
