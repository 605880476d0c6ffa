//! The profile page: display name (the profile claim `name`) and e-mail address. A new
//! address is stored unverified; [`ProfileOutcome::Saved`] carries the
//! [`crate::users::EmailChange`] so that a verification mail can be sent from here.

use super::{AccountPage, Me};
use crate::domain::client::FieldError;
use crate::interaction::{Engine, Error, Visit};
use crate::users::ProfileChange;

/// What the profile form shows (stored values, or what was typed after an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub username: String,
    pub name: String,
    pub email: String,
    pub email_verified: bool,
    /// The preferred language (the `locale` claim); empty: none (the browser's).
    pub locale: String,
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
    /// The profile form.
    pub async fn account_profile(&self, visit: &Visit) -> Result<AccountPage<Profile>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        Ok(AccountPage::Show(Profile {
            name: display_name(&user).unwrap_or_default().to_owned(),
            locale: crate::users::preferred_locale(&user)
                .unwrap_or_default()
                .to_owned(),
            username: user.username,
            email: user.email.unwrap_or_default(),
            email_verified: user.email_verified,
        }))
    }

    /// Saves the profile form (CSRF already checked). A changed address is stored with
    /// `email_verified = false`, audited (`user.email_changed`) and sent a confirmation
    /// link (`EmailFlows::send_verification`, when mail is configured). A changed
    /// language (`locale`: `None` when the form has no such field, empty for the
    /// browser's) must be one we have; the browser remembers it at once, so the next
    /// page is in it.
    pub async fn update_profile(
        &self,
        visit: &mut Visit,
        name: &str,
        email: &str,
        locale: Option<&str>,
    ) -> Result<AccountPage<ProfileOutcome>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let languages = self.catalogues.languages();
        let form = crate::users::OwnProfile {
            name,
            email,
            locale,
            languages: &languages,
        };
        match self
            .users
            .update_own_profile(&user, &form, visit.origin.ip.as_deref())
            .await
        {
            Ok(change) => {
                if change.locale_changed
                    && let Some(browser) = visit.browser.as_mut()
                {
                    browser.data.user_locale.clone_from(&change.locale);
                    self.sessions.save(browser).await?;
                }
                if matches!(change.email, crate::users::EmailChange::Changed(_))
                    && let Some(updated) =
                        self.store.get_user(&visit.tenant.id, &user.user_id).await?
                {
                    // A confirmation link for the new address (when mail is on); the
                    // change itself is saved whatever the mail does.
                    if let Err(e) = self.email.send_verification(visit, &updated).await {
                        tracing::warn!(tenant = %visit.tenant.id, error = %e,
                            "could not queue the verification mail for a changed address");
                    }
                }
                Ok(AccountPage::Show(ProfileOutcome::Saved(change)))
            }
            Err(crate::users::Error::Invalid(errors)) => {
                // What was typed, but only a language we have.
                let locale = locale
                    .filter(|l| l.is_empty() || languages.iter().any(|tag| tag == l))
                    .or(crate::users::preferred_locale(&user))
                    .unwrap_or_default()
                    .to_owned();
                Ok(AccountPage::Show(ProfileOutcome::Invalid {
                    profile: Profile {
                        username: user.username,
                        name: name.to_owned(),
                        email: email.to_owned(),
                        email_verified: user.email_verified,
                        locale,
                    },
                    errors,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }
}
