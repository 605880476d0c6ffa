//! The linked sign-ins page: the upstream accounts (identity providers) linked to the
//! signed-in user, and removing one — unless it is the user's last way to sign in (no
//! password, no passkey that signs in alone, no other link). Only the user's own links:
//! someone else's provider and subject remove nothing.

use serde_json::json;

use super::{AccountPage, Me};
use crate::clients::Actor;
use crate::clock::UnixTime;
use crate::domain::policy::TenantPolicy;
use crate::interaction::{Engine, Error, Visit};
use crate::store::federation::{self as links, FederatedIdentity};

/// One linked upstream account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedAccount {
    pub provider_id: String,
    /// The provider's display name (its id when the tenant no longer has it).
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub linked_at: UnixTime,
    pub last_sign_in_at: UnixTime,
}

/// The page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedAccounts {
    pub username: String,
    pub links: Vec<LinkedAccount>,
    pub notice: Option<LinkChange>,
    pub problem: Option<LinkChange>,
}

/// What removing a link did, or why it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChange {
    Removed,
    /// The user's last way to sign in.
    LastWay,
    /// No link of this user is that one.
    NotFound,
}

impl Engine<'_> {
    /// The linked sign-ins page.
    pub async fn account_links(&self, visit: &Visit) -> Result<AccountPage<LinkedAccounts>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let stored = self
            .store
            .list_federated_identities(&visit.tenant.id, &user.user_id)
            .await?;
        Ok(AccountPage::Show(page(visit, user.username, stored, None)))
    }

    /// Removes one of the user's links (CSRF already checked).
    pub async fn remove_link(
        &self,
        visit: &Visit,
        provider_id: &str,
        subject: &str,
    ) -> Result<AccountPage<LinkedAccounts>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let tenant = &visit.tenant;
        let stored = self
            .store
            .list_federated_identities(&tenant.id, &user.user_id)
            .await?;
        let mine = stored
            .iter()
            .any(|l| l.provider_id == provider_id && l.subject == subject);
        let passkeys_sign_in = TenantPolicy::of(tenant).passkeys.passwordless()
            && self.store.count_passkeys(&tenant.id, &user.user_id).await? > 0;
        let other_ways = user.password_hash.is_some() || passkeys_sign_in || stored.len() > 1;
        let result = if !mine {
            Err(LinkChange::NotFound)
        } else if !other_ways {
            Err(LinkChange::LastWay)
        } else {
            let mut unit = self.store.begin().await?;
            let removed =
                links::delete(unit.conn(), &tenant.id, &user.user_id, provider_id, subject).await?;
            if removed {
                let event = self
                    .event(visit, "upstream.unlinked", &user.user_id)
                    .details(json!({
                        "provider": provider_id,
                        "upstream_sub": subject,
                        "actor": Actor::User.as_str(),
                    }));
                unit.audit(event);
            }
            unit.commit().await?;
            if removed {
                Ok(LinkChange::Removed)
            } else {
                Err(LinkChange::NotFound)
            }
        };
        let stored = self
            .store
            .list_federated_identities(&tenant.id, &user.user_id)
            .await?;
        let mut shown = page(visit, user.username, stored, None);
        match result {
            Ok(n) => shown.notice = Some(n),
            Err(p) => shown.problem = Some(p),
        }
        Ok(AccountPage::Show(shown))
    }
}

fn page(
    visit: &Visit,
    username: String,
    stored: Vec<FederatedIdentity>,
    notice: Option<LinkChange>,
) -> LinkedAccounts {
    let federation = TenantPolicy::of(&visit.tenant).federation;
    let links = stored
        .into_iter()
        .map(|l| LinkedAccount {
            provider: federation
                .provider(&l.provider_id)
                .map_or_else(|| l.provider_id.clone(), |p| p.display_name.clone()),
            provider_id: l.provider_id,
            subject: l.subject,
            email: l.email,
            linked_at: l.created_at,
            last_sign_in_at: l.last_sign_in_at,
        })
        .collect();
    LinkedAccounts {
        username,
        links,
        notice,
        problem: None,
    }
}
