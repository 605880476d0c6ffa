//! The profile page: display name (the profile claim `name`) and e-mail address. A new
//! address is stored unverified and gets a verification mail
//! ([`crate::email::EmailFlows::send_verification`], when mail is configured).

use super::{AccountPage, Me};
use crate::domain::client::FieldError;
use crate::interaction::{Engine, Error, Visit};
use crate::users::{EmailChange, ProfileChange};

/// What the profile form shows (stored values, or what was typed after an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub username: String,
    pub name: String,
    pub email: String,
    pub email_verified: bool,
}

/// What saving the profile did.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileOutcome {
    /// Saved (or nothing to change).
    Saved(ProfileChange),
    /// Refused, nothing changed: the form again with what was typed and each problem.
    Invalid {
        profile: Profile,
        errors: Vec<FieldError>,
    },
}

/// The user's display name (the `name` claim), if set.
pub(super) fn display_name(user: &crate::store::users::StoredUser) -> Option<&str> {
    user.profile
        .get("name")
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
}

impl Engine<'_> {
    /// Queues the mail that confirms a changed address. Best effort: the change is
    /// saved already; a mail that cannot be queued is logged, and the user can ask for
    /// another from the verification page.
    async fn send_verification(&self, visit: &Visit, user_id: &str) {
        let sent = match self.store.get_user(&visit.tenant.id, user_id).await {
            Ok(Some(user)) => self
                .email
                .send_verification(&visit.tenant, &user)
                .await
                .map_err(|e| e.to_string()),
            Ok(None) => Ok(false),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = sent {
            tracing::warn!(%error, user_id, "failed to queue the verification mail of a changed address");
        }
    }

    /// The profile form.
    pub async fn account_profile(&self, visit: &Visit) -> Result<AccountPage<Profile>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        Ok(AccountPage::Show(Profile {
            name: display_name(&user).unwrap_or_default().to_owned(),
            username: user.username,
            email: user.email.unwrap_or_default(),
            email_verified: user.email_verified,
        }))
    }

    /// Saves the profile form (CSRF already checked). A changed address is stored with
    /// `email_verified = false` and audited (`user.email_changed`).
    pub async fn update_profile(
        &self,
        visit: &Visit,
        name: &str,
        email: &str,
    ) -> Result<AccountPage<ProfileOutcome>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        match self
            .users
            .update_own_profile(&user, name, email, visit.origin.ip.as_deref())
            .await
        {
            Ok(change) => {
                if let EmailChange::Changed(_) = &change.email {
                    self.send_verification(visit, &user.user_id).await;
                }
                Ok(AccountPage::Show(ProfileOutcome::Saved(change)))
            }
            Err(crate::users::Error::Invalid(errors)) => {
                Ok(AccountPage::Show(ProfileOutcome::Invalid {
                    profile: Profile {
                        username: user.username,
                        name: name.to_owned(),
                        email: email.to_owned(),
                        email_verified: user.email_verified,
                    },
                    errors,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }
}
