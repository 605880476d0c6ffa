//! The sessions page: the signed-in user's sessions in every browser (device, address,
//! sign-in time, last activity), this browser's marked; signing out one of them or
//! every other. Only the user's own sessions: a session id of someone else is treated
//! like an unknown one (see [`crate::store::Store::delete_user_session`]).

use super::{AccountPage, Me};
use crate::clock::UnixTime;
use crate::interaction::{Engine, Error, Visit};

/// One session on the sessions page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSession {
    /// The session id (`sid`), what the sign-out form posts as `session_id`.
    pub sid: String,
    /// The browser and system ([`device_summary`]).
    pub device: Device,
    pub ip: Option<String>,
    pub signed_in_at: UnixTime,
    pub last_seen_at: UnixTime,
    /// The session of the browser looking at the page.
    pub this_browser: bool,
}

/// What signing out a session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRevocation {
    /// Signed out (the given number of sessions).
    Done(usize),
    /// It was this browser's session: signed out here too.
    SignedOutHere,
    /// No such session of this user (gone meanwhile, or someone else's): nothing changed.
    NotFound,
}

/// A device as the sessions page names it: the page says it in the reader's language;
/// `Display` is the English.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// No `User-Agent`.
    Unknown,
    /// A browser on a system ("Firefox on Linux").
    BrowserOn {
        browser: &'static str,
        system: &'static str,
    },
    /// One name: a browser, a system, or the client's first product token.
    Named(String),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Unknown => f.write_str("Unknown device"),
            Device::BrowserOn { browser, system } => write!(f, "{browser} on {system}"),
            Device::Named(name) => f.write_str(name),
        }
    }
}

/// "Firefox on Linux" from a `User-Agent`: the first browser and system names found,
/// in the order that tells them apart (Edge and Opera also say Chrome; Chrome also says
/// Safari). Only for display: the header is whatever the client sent.
pub fn device_summary(user_agent: Option<&str>) -> Device {
    let Some(ua) = user_agent.filter(|u| !u.trim().is_empty()) else {
        return Device::Unknown;
    };
    let browsers = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ];
    let systems = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ];
    let find = |list: &[(&str, &'static str)]| {
        list.iter()
            .find(|(needle, _)| ua.contains(needle))
            .map(|(_, name)| *name)
    };
    match (find(&browsers), find(&systems)) {
        (Some(browser), Some(system)) => Device::BrowserOn { browser, system },
        (Some(name), None) | (None, Some(name)) => Device::Named(name.to_owned()),
        // Not a browser we know: its first product token, kept short.
        (None, None) => ua.split_whitespace().next().map_or(Device::Unknown, |t| {
            Device::Named(t.chars().take(40).collect())
        }),
    }
}

impl Engine<'_> {
    /// The user's valid sessions, newest first.
    pub async fn account_sessions(
        &self,
        visit: &Visit,
    ) -> Result<AccountPage<Vec<DeviceSession>>, Error> {
        let Some(Me { user, session }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let now = self.now();
        let listed = self
            .store
            .list_user_devices(&visit.tenant.id, &user.user_id)
            .await?
            .into_iter()
            .filter(|(s, _)| s.is_valid(now))
            .map(|(s, device)| DeviceSession {
                this_browser: s.sid == session.sid,
                device: device_summary(device.user_agent.as_deref()),
                ip: device.ip,
                signed_in_at: s.auth_time,
                last_seen_at: s.last_seen_at,
                sid: s.sid,
            })
            .collect();
        Ok(AccountPage::Show(listed))
    }

    /// Signs out the user's session `sid` (CSRF already checked). This browser's own
    /// session is a sign-out here, like `/logout`.
    pub async fn revoke_session(
        &self,
        visit: &mut Visit,
        sid: &str,
    ) -> Result<AccountPage<SessionRevocation>, Error> {
        let Some(Me { user, session }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        if sid == session.sid {
            if let Some(b) = visit.browser.as_mut() {
                self.sessions
                    .end_account(&visit.tenant, b, sid, &visit.origin)
                    .await?;
            }
            return Ok(AccountPage::Show(SessionRevocation::SignedOutHere));
        }
        let ended = !sid.is_empty()
            && self
                .sessions
                .revoke_user_session(&visit.tenant, &user.user_id, sid, &visit.origin)
                .await?;
        Ok(AccountPage::Show(if ended {
            SessionRevocation::Done(1)
        } else {
            SessionRevocation::NotFound
        }))
    }

    /// Signs out every session of the user but this browser's.
    pub async fn revoke_other_sessions(
        &self,
        visit: &Visit,
    ) -> Result<AccountPage<SessionRevocation>, Error> {
        let Some(Me { user, session }) = self.me(visit).await? else {
            return Ok(AccountPage::SignIn);
        };
        let n = self
            .sessions
            .revoke_other_user_sessions(&visit.tenant, &user.user_id, &session.sid, &visit.origin)
            .await?;
        Ok(AccountPage::Show(SessionRevocation::Done(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::device_summary;

    #[test]
    fn devices_are_named_by_browser_and_system() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(
            device_summary(Some(firefox)).to_string(),
            "Firefox on Linux"
        );
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                    Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0";
        assert_eq!(device_summary(Some(edge)).to_string(), "Edge on Windows");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(device_summary(Some(iphone)).to_string(), "Safari on iOS");
        assert_eq!(
            device_summary(Some("gatehouse-it-browser/1")).to_string(),
            "gatehouse-it-browser/1"
        );
        assert_eq!(device_summary(None).to_string(), "Unknown device");
        assert_eq!(device_summary(Some("  ")).to_string(), "Unknown device");
    }
}
