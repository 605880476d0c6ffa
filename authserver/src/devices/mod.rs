//! Remembered devices, GeoIP and impossible travel (docs/security.md "Remembered
//! devices"). A browser is known by its device cookie (`email::device`: 256 random bits,
//! kept in the database as a hash only); once a user signs in on it, it is one of the
//! user's devices (`store::devices`), trusted for the tenant's `devices.trustDays` after
//! a second factor on it (or after any sign-in, where the tenant asks none).
//!
//! The rules, decided here once for every sign-in method:
//! - [`DeviceService::assess`], before the second factor is decided: whether the device
//!   is trusted *for this user* (a cookie is only ever looked up with the user, so
//!   another user's device cookie is a new device, and so is a forged or tampered one:
//!   its hash matches nothing), and whether the journey from the user's previous
//!   sign-in was impossible. [`Assessment::challenge`] turns that and the tenant policy
//!   into the reason for a second factor, if any.
//! - [`DeviceService::on_sign_in`], inside the sign-in's unit of work: records the
//!   sighting (and the trust a second factor earned), and reports what the audit event
//!   and the new-device notice need.

pub mod geoip;
pub mod travel;

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::{Clock, UnixTime};
use crate::crypto::{handle_hash, new_handle};
use crate::domain::policy::{DevicePolicy, TenantPolicy};
use crate::domain::tenant::Tenant;
use crate::email::device;
use crate::session::Origin;
use crate::store::devices::{self as rows, KnownDevice, Sighting};
use crate::store::{Conn, Store};
pub use geoip::{GeoIp, Place};
pub use travel::Journey;

type Result<T, E = crate::store::Error> = std::result::Result<T, E>;

/// At most this much of a `User-Agent` is kept with a device (the account page shows
/// a summary of it: `interaction::device_summary`).
const USER_AGENT_CHARS: usize = 256;

/// Why a sign-in must pass a second factor because of its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// The device is new to the user, or its trust ran out.
    NewDevice,
    /// The journey from the previous sign-in was faster than the tenant allows.
    ImpossibleTravel,
}

impl Challenge {
    /// The name audit events use.
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::NewDevice => "new_device",
            Challenge::ImpossibleTravel => "impossible_travel",
        }
    }
}

/// What a sign-in's device and place are to the user, before the second factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// A device of this user, trusted now.
    pub trusted: bool,
    /// From the user's previous located sign-in to this one, when both are known.
    pub journey: Option<Journey>,
    /// The journey was faster than the tenant's `impossibleTravelKmh`.
    pub impossible_travel: bool,
}

impl Assessment {
    /// Why a second factor is needed for the device, under `policy`: impossible travel
    /// (when the tenant answers it with a challenge) before a new device.
    pub fn challenge(&self, policy: &DevicePolicy) -> Option<Challenge> {
        if self.impossible_travel && policy.second_factor_on_impossible_travel {
            Some(Challenge::ImpossibleTravel)
        } else if policy.require_second_factor_on_new_device && !self.trusted {
            Some(Challenge::NewDevice)
        } else {
            None
        }
    }
}

/// Whether the user had been seen on this device, or on any, before this sign-in
/// (what the new-device notice needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub this_device: bool,
    pub any_device: bool,
}

/// What recording a sign-in found, for its audit event and the new-device notice.
#[derive(Debug, Clone, PartialEq)]
pub struct SignInDevice {
    /// A device cookie value the response must set (the browser had none).
    pub new_cookie: Option<String>,
    /// `None` when the tenant remembers no devices.
    pub seen: Option<Seen>,
    pub place: Place,
    pub journey: Option<Journey>,
    pub impossible_travel: bool,
}

/// A remembered device as the account page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RememberedDevice {
    /// What the "forget" form posts: derived from the stored hash, one-way, so the page
    /// carries neither the cookie nor its hash.
    pub id: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub country: Option<String>,
    pub first_seen_at: UnixTime,
    pub last_seen_at: UnixTime,
    /// `None`: not trusted (never, or no longer).
    pub trusted_until: Option<UnixTime>,
    /// The device of the browser looking at the page.
    pub this_browser: bool,
}

/// The account page's id of a device.
fn public_id(device_hash: &str) -> String {
    handle_hash(&format!("gatehouse-device-id:{device_hash}"))[..32].to_owned()
}

/// Whether the impossible-travel check applies: it is on and this place has coordinates.
fn checks_travel(place: &Place, policy: &DevicePolicy) -> bool {
    place.coordinates.is_some() && policy.impossible_travel_kmh > 0
}

/// The journey from the previous located sighting to `place` at `now`, and whether it
/// was impossible under `policy`.
fn journey(
    previous: Option<&KnownDevice>,
    place: &Place,
    policy: &DevicePolicy,
    now: UnixTime,
) -> (Option<Journey>, bool) {
    let journey = previous.zip(place.coordinates).and_then(|(p, here)| {
        let there = (p.latitude?, p.longitude?);
        Some(Journey::between(there, p.last_seen_at, here, now))
    });
    let impossible = journey.is_some_and(|j| j.impossible(policy.impossible_travel_kmh));
    (journey, impossible)
}

/// Remembered devices and GeoIP.
pub struct DeviceService {
    store: Store,
    clock: Arc<dyn Clock>,
    geoip: Option<Arc<GeoIp>>,
}

impl std::fmt::Debug for DeviceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceService")
            .field("geoip", &self.geoip)
            .finish_non_exhaustive()
    }
}

impl DeviceService {
    pub fn new(store: Store, clock: Arc<dyn Clock>, geoip: Option<Arc<GeoIp>>) -> Self {
        Self {
            store,
            clock,
            geoip,
        }
    }

    /// Where the visitor's address is (nothing without a GeoIP database).
    pub fn locate(&self, ip: Option<&str>) -> Place {
        match (&self.geoip, ip.and_then(|i| i.parse::<IpAddr>().ok())) {
            (Some(geo), Some(ip)) => geo.locate(ip),
            _ => Place::default(),
        }
    }

    /// The hash of the browser's device cookie, if it sent a well-formed one.
    fn cookie_hash(origin: &Origin) -> Option<String> {
        origin
            .device
            .as_deref()
            .filter(|d| device::valid(d))
            .map(handle_hash)
    }

    /// What the visit's device and place are to `user_id`, before the second factor is
    /// decided. Reads nothing when the tenant's policy needs no devices.
    pub async fn assess(
        &self,
        tenant: &Tenant,
        user_id: &str,
        origin: &Origin,
    ) -> Result<Assessment> {
        let policy = TenantPolicy::of(tenant).devices;
        if !policy.remembers() {
            return Ok(Assessment {
                trusted: false,
                journey: None,
                impossible_travel: false,
            });
        }
        let now = self.clock.now();
        let trusted = match Self::cookie_hash(origin) {
            Some(hash) => self
                .store
                .get_known_device(&tenant.id, user_id, &hash)
                .await?
                .is_some_and(|d| d.trusted(now)),
            None => false,
        };
        let place = self.locate(origin.ip.as_deref());
        let previous = if checks_travel(&place, &policy) {
            self.store.last_located_device(&tenant.id, user_id).await?
        } else {
            None
        };
        let (journey, impossible_travel) = journey(previous.as_ref(), &place, &policy, now);
        Ok(Assessment {
            trusted,
            journey,
            impossible_travel,
        })
    }

    /// Part of the sign-in's unit of work: where the sign-in came from and, when the
    /// tenant remembers devices (`remember`: its device policy needs them, or the
    /// new-device notice is on), the sighting of the device — trusted for the policy's
    /// `trustDays` from now when `second_factor` was passed, or when the policy asks
    /// for none on new devices; otherwise its trust stays what it was.
    pub async fn on_sign_in(
        &self,
        mut conn: Conn<'_>,
        tenant: &Tenant,
        user_id: &str,
        origin: &Origin,
        remember: bool,
        second_factor: bool,
    ) -> Result<SignInDevice> {
        let policy = TenantPolicy::of(tenant).devices;
        let place = self.locate(origin.ip.as_deref());
        let mut out = SignInDevice {
            new_cookie: None,
            seen: None,
            place,
            journey: None,
            impossible_travel: false,
        };
        if !remember {
            return Ok(out);
        }
        let now = self.clock.now();
        let previous = if checks_travel(&out.place, &policy) {
            rows::last_located(conn.reborrow(), &tenant.id, user_id).await?
        } else {
            None
        };
        let (journey, impossible) = journey(previous.as_ref(), &out.place, &policy, now);
        out.journey = journey;
        out.impossible_travel = impossible;
        let hash = if let Some(h) = Self::cookie_hash(origin) {
            h
        } else {
            let value = new_handle();
            let h = handle_hash(&value);
            out.new_cookie = Some(value);
            h
        };
        let this_device = rows::get(conn.reborrow(), &tenant.id, user_id, &hash)
            .await?
            .is_some();
        let any_device =
            this_device || rows::count(conn.reborrow(), &tenant.id, user_id).await? > 0;
        out.seen = Some(Seen {
            this_device,
            any_device,
        });
        let trust = second_factor || !policy.require_second_factor_on_new_device;
        let user_agent: Option<String> = origin
            .user_agent
            .as_deref()
            .map(|ua| ua.chars().take(USER_AGENT_CHARS).collect());
        rows::record(
            conn,
            &Sighting {
                tenant_id: &tenant.id,
                user_id,
                device_hash: &hash,
                now,
                trusted_until: trust.then(|| now + policy.trust_seconds()),
                user_agent: user_agent.as_deref(),
                ip: origin.ip.as_deref(),
                country: out.place.country.as_deref(),
                coordinates: out.place.coordinates,
            },
        )
        .await?;
        Ok(out)
    }

    /// The user's remembered devices for the account page, most recently seen first;
    /// `origin`'s device is marked.
    pub async fn list(
        &self,
        tenant_id: &str,
        user_id: &str,
        origin: &Origin,
    ) -> Result<Vec<RememberedDevice>> {
        let now = self.clock.now();
        let mine = Self::cookie_hash(origin);
        Ok(self
            .store
            .list_known_devices(tenant_id, user_id)
            .await?
            .into_iter()
            .map(|d| RememberedDevice {
                id: public_id(&d.device_hash),
                this_browser: mine.as_deref() == Some(d.device_hash.as_str()),
                trusted_until: d.trusted_until.filter(|t| *t > now),
                user_agent: d.user_agent,
                ip: d.ip,
                country: d.country,
                first_seen_at: d.first_seen_at,
                last_seen_at: d.last_seen_at,
            })
            .collect())
    }

    /// Forgets the user's device `id` (as [`RememberedDevice::id`]); whether there was
    /// one. Only the user's own devices are searched: another user's id finds nothing.
    pub async fn forget(&self, tenant_id: &str, user_id: &str, id: &str) -> Result<bool> {
        if id.len() != 32 {
            return Ok(false);
        }
        let devices = self.store.list_known_devices(tenant_id, user_id).await?;
        let Some(d) = devices.iter().find(|d| public_id(&d.device_hash) == id) else {
            return Ok(false);
        };
        self.store
            .delete_known_device(tenant_id, user_id, &d.device_hash)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assessment(trusted: bool, impossible_travel: bool) -> Assessment {
        Assessment {
            trusted,
            journey: None,
            impossible_travel,
        }
    }

    #[test]
    fn a_second_factor_is_asked_for_untrusted_devices_and_answered_travel_only() {
        let off = DevicePolicy::default();
        let new_device = DevicePolicy {
            require_second_factor_on_new_device: true,
            ..DevicePolicy::default()
        };
        let travel = DevicePolicy {
            impossible_travel_kmh: 900,
            second_factor_on_impossible_travel: true,
            ..DevicePolicy::default()
        };
        let flag_only = DevicePolicy {
            impossible_travel_kmh: 900,
            ..DevicePolicy::default()
        };
        for (trusted, impossible) in [(false, false), (true, true), (false, true)] {
            assert_eq!(assessment(trusted, impossible).challenge(&off), None);
            assert_eq!(assessment(trusted, impossible).challenge(&flag_only), None);
        }
        assert_eq!(
            assessment(false, false).challenge(&new_device),
            Some(Challenge::NewDevice)
        );
        assert_eq!(assessment(true, false).challenge(&new_device), None);
        assert_eq!(
            assessment(true, true).challenge(&travel),
            Some(Challenge::ImpossibleTravel),
            "a trusted device does not excuse impossible travel"
        );
        assert_eq!(assessment(false, false).challenge(&travel), None);
    }

    #[test]
    fn the_page_id_of_a_device_is_one_way_and_stable() {
        let hash = handle_hash("cookie");
        let id = public_id(&hash);
        assert_eq!(id.len(), 32);
        assert_eq!(id, public_id(&hash));
        assert!(!hash.contains(&id) && id != hash[..32]);
    }
}
