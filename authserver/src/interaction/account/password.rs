//! The password page: the current password (checked and throttled like a sign-in), the
//! new one twice, the deployment's password policy and breached-password check. A
//! change ends the user's other sessions and revokes their live grants; this browser
//! stays signed in.

use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;

use super::{AccountPage, Checked, Me, settle};
use crate::domain::client::Invalid;
use crate::interaction::{Engine, Error, Visit};

/// The password form as posted.
#[derive(Debug)]
pub struct PasswordChange {
    pub current: SecretString,
    pub new: SecretString,
    pub confirm: SecretString,
}

/// What changing the password did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordOutcome {
    /// Changed; the other sessions ended.
    Changed { sessions_ended: u64 },
    /// Refused, nothing changed.
    Refused(PasswordProblem),
}

/// Why a password change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordProblem {
    /// A field was left empty.
    Missing,
    /// The current password is wrong.
    WrongCurrent,
    /// Too many wrong passwords for this user or address.
    Locked { retry_after_seconds: u64 },
    /// The new password and its confirmation differ.
    Mismatch,
    /// The new password breaks the policy (too short or long, breached): how.
    Policy(Invalid),
}

impl Engine<'_> {
    /// The password form: who is signed in.
    pub async fn account_password(&self, visit: &Visit) -> Result<AccountPage<String>, Error> {
        Ok(match self.me(visit).await? {
            Some(me) => AccountPage::Show(me.user.username),
            None => AccountPage::SignIn,
        })
    }

    /// Changes the signed-in user's password (CSRF already checked). Cheap checks
    /// first (empty fields, confirmation), then the current password (throttled), then
    /// the policy; only then anything is written.
    pub async fn change_password(
        &self,
        visit: &Visit,
        form: &PasswordChange,
    ) -> Result<AccountPage<PasswordOutcome>, Error> {
        let Some(me) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let refused = |p| Ok(AccountPage::Show(PasswordOutcome::Refused(p)));
        let (current, new, confirm) = (
            form.current.expose_secret(),
            form.new.expose_secret(),
            form.confirm.expose_secret(),
        );
        if current.is_empty() || new.is_empty() || confirm.is_empty() {
            return refused(PasswordProblem::Missing);
        }
        if !bool::from(new.as_bytes().ct_eq(confirm.as_bytes())) {
            return refused(PasswordProblem::Mismatch);
        }
        match settle(
            self.check_current_password(visit, &me, &form.current, "password_change")
                .await,
        )? {
            Checked::Good => {}
            Checked::Wrong => return refused(PasswordProblem::WrongCurrent),
            Checked::Locked(l) => {
                return refused(PasswordProblem::Locked {
                    retry_after_seconds: l.retry_after_seconds,
                });
            }
        }
        let Me { user, session } = me;
        match self
            .users
            .change_own_password(&user, &form.new, &session.sid, visit.origin.ip.as_deref())
            .await
        {
            Ok(ended) => Ok(AccountPage::Show(PasswordOutcome::Changed {
                sessions_ended: ended.sessions,
            })),
            Err(crate::users::Error::Invalid(errors)) => refused(PasswordProblem::Policy(
                errors.first().map_or(Invalid::Malformed, |e| e.kind),
            )),
            Err(e) => Err(e.into()),
        }
    }
}
