//! Remembered devices on the sessions page: the browsers the user signed in from (last
//! seen, country, until when trusted), this one marked, and "forget" — the device is then
//! new again (a second factor where the tenant asks one on new devices). Only the user's
//! own devices: another user's device id is treated like an unknown one.

use super::{AccountPage, Me};
use crate::devices::RememberedDevice;
use crate::interaction::{Engine, Error, Visit};

/// What forgetting a device did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceForgetting {
    Done,
    /// No such device of this user (gone meanwhile, or someone else's): nothing changed.
    NotFound,
}

impl Engine<'_> {
    /// The active account's remembered devices, most recently seen first.
    pub async fn account_devices(
        &self,
        visit: &Visit,
    ) -> Result<AccountPage<Vec<RememberedDevice>>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        Ok(AccountPage::Show(
            self.devices
                .list(&visit.tenant.id, &user.user_id, &visit.origin)
                .await?,
        ))
    }

    /// Forgets the active account's device `id` (CSRF already checked), audited as
    /// `device.forgotten`.
    pub async fn forget_device(
        &self,
        visit: &Visit,
        id: &str,
    ) -> Result<AccountPage<DeviceForgetting>, Error> {
        let Some(Me { user, .. }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        if !self
            .devices
            .forget(&visit.tenant.id, &user.user_id, id)
            .await?
        {
            return Ok(AccountPage::Show(DeviceForgetting::NotFound));
        }
        let event = self
            .event(visit, "device.forgotten", &user.user_id)
            .details(serde_json::json!({ "username": user.username }));
        self.store.audit(event).await;
        Ok(AccountPage::Show(DeviceForgetting::Done))
    }
}
