//! The sign-in interaction engine: one state machine for an authorization request, from
//! its arrival at `/authorize` to a code or an error for the client, and for the sign-in
//! pages that serve it. No HTTP in here: the browser pages (`http::browser`) parse a
//! request into a [`Visit`] and an input, call one step, and render the [`Outcome`].
//!
//! ```text
//!  /authorize ──► start ──► drive ─┬─► ShowLogin ──► password ─┬─► ShowSecondFactor ─► second_factor ─┐
//!                            ▲     │      (or Go(Login))        │   (or enrolment)                     │
//!  /authorize/continue ──► resume  ├─► ShowChooser ─► choose ──┐└──────────► sign-in done ◄────────────┘
//!                            ▲     │                           │                 │
//!                            └─────┴──────────◄────────────────┴─────────────────┘ (Go(Continue))
//!                                  ├─► ShowConsent ─► consent(allow) ─► issue ─► RedirectWithCode
//!                                  │                  consent(deny)  ─► RedirectWithError
//!                                  ├─► issue ─► RedirectWithCode
//!                                  └─► RedirectWithError (prompt=none, unmet acr_values)
//! ```
//!
//! Every decision is made here, once: which account ([`decide::account`]), whether to
//! ask for consent ([`decide::needs_consent`]), and whether the sign-in behind a code is
//! fresh and strong enough ([`decide::Demands`]) — checked in [`Engine::issue`], the one
//! path that issues a code, whichever page the browser posted to. Issuing is one unit of
//! work: the request is used up, the grant and its code stored and the event audited in
//! one transaction (with the consent, when the consent page issues). So is the end of a
//! sign-in (`signed_in`): the browser's new id, the account session, its audit events
//! and the link to the request commit together or not at all.
//!
//! Logout ([`Engine::logout`]) and the account pages (`account`: overview, profile,
//! password, second factors, sessions, consents, activity) follow the same split: the
//! rules here and in the services, the HTTP in `http::browser`. An account page that
//! finds nobody signed in sends the browser to the sign-in form with
//! `return_to=account`, and the sign-in ([`Engine::signed_in`]) ends there.
//!
//! Remembered devices (`crate::devices`) take part at two points: after the first factor
//! (`begin_second_factor` asks the device service whether the device is trusted and the
//! journey possible: a new device or impossible travel can demand the second-factor
//! step) and in `signed_in` (the device's sighting, its trust, the country and the
//! impossible-travel flag of `login.succeeded`, in the sign-in's unit of work).
//!
//! A new sign-in method (a passkey, an upstream identity provider: `upstream`) is a step
//! of its own next to [`Engine::password`] and [`Engine::second_factor`]: it ends by
//! calling `signed_in` with its `amr` and `acr`, which records the account session and
//! sends the browser back to the request.

mod account;
mod authorization;
mod chooser;
pub mod decide;
mod directory;
mod error;
mod logout;
mod outcome;
mod passkey;
mod second_factor;
mod sign_in;
#[cfg(test)]
mod tests;
mod upstream;

use std::sync::Arc;

use crate::domain::tenant::Tenant;
use crate::mfa::MfaService;
use crate::oauth::OAuthService;
use crate::passkeys::PasskeyService;
use crate::session::{Browser, Origin, SessionService};
use crate::store::Store;
use crate::throttle::LoginThrottle;
use crate::users::UserService;

pub use account::{
    ACTIVITY_EVENTS, ACTIVITY_LIMIT, AccountConsents, AccountOverview, AccountPage, ActivityEntry,
    Device, DeviceForgetting, DeviceSession, Factors, LinkChange, LinkedAccount, LinkedAccounts,
    PasswordChange, PasswordOutcome, PasswordProblem, Profile, ProfileOutcome, Proof, Revocation,
    Security, SecurityNotice, SecurityOutcome, SecurityProblem, SessionRevocation, device_summary,
    may_remove, second_factor_count,
};
pub use error::Error;
pub use logout::{LogoutOutcome, LogoutRefusal, LogoutRequest, Posted};
pub use outcome::{
    Chooser, CodeProblem, CodeRedirect, ConsentRequest, Decision, EnrollmentForm, LinkForm,
    LoginForm, LoginProblem, Outcome, Page, Problem, ProviderButton, RecoveryCodes,
    SecondFactorForm, UpstreamPage, UpstreamProblem, UpstreamRefusal,
};
pub use passkey::{AccountPasskeys, CeremonyStart, PasskeyChange, PasskeyList, StoredPasskey};
pub use upstream::{CALLBACK_PATH, callback_uri};

/// How long an interactive authorization request waits for sign-in and consent.
pub const INTERACTION_SECONDS: i64 = 600;

/// Who is asking: the tenant, where the request came from, and the browser's session
/// (none before the first page that needs one). Steps that sign in or create a session
/// replace `browser`; the caller sends its cookie when it is new.
#[derive(Debug)]
pub struct Visit {
    pub tenant: Arc<Tenant>,
    pub origin: Origin,
    pub browser: Option<Browser>,
    /// The language of the visitor's pages (and of mail they cause, unless the user
    /// prefers another).
    pub lang: crate::ui::i18n::Lang,
}

/// The services an interaction uses, borrowed for one request.
#[derive(Clone, Copy)]
pub struct Engine<'a> {
    pub store: &'a Store,
    pub sessions: &'a SessionService,
    pub oauth: &'a OAuthService,
    pub users: &'a UserService,
    pub mfa: &'a MfaService,
    pub passkeys: &'a PasskeyService,
    pub throttle: &'a LoginThrottle,
    /// E-mail: verified-address rule and new-device notice at sign-in.
    pub email: &'a crate::email::EmailFlows,
    /// Upstream identity providers (the protocol half of an upstream sign-in).
    pub federation: &'a crate::federation::FederationService,
    /// Remembered devices: trust, GeoIP, impossible travel.
    pub devices: &'a crate::devices::DeviceService,
    /// The languages we have (a user's preference must name one).
    pub catalogues: &'a crate::ui::i18n::Catalogues,
}

impl Engine<'_> {
    fn now(&self) -> crate::clock::UnixTime {
        self.sessions.now()
    }
}

/// Internal control flow of a step: stop with an outcome (a page, a redirect) or fail.
/// Lets the steps use `?` for both; the public steps turn it back into
/// `Result<Outcome, Error>`.
enum Halt {
    Show(Outcome),
    Fail(Error),
}

/// `?` on any error a step meets fails the step.
macro_rules! halt_on {
    ($($e:ty),* $(,)?) => {$(
        impl From<$e> for Halt {
            fn from(e: $e) -> Self {
                Halt::Fail(e.into())
            }
        }
    )*};
}
halt_on!(
    Error,
    crate::store::Error,
    crate::session::Error,
    crate::mfa::MfaError,
    crate::users::Error,
    crate::clients::Error,
    crate::email::Error,
);

type Step<T> = std::result::Result<T, Halt>;

/// `Step<Outcome>` → the public result.
fn finish(step: Step<Outcome>) -> Result<Outcome, Error> {
    match step {
        Ok(o) | Err(Halt::Show(o)) => Ok(o),
        Err(Halt::Fail(e)) => Err(e),
    }
}

/// Stops the step with `outcome`.
fn halt<T>(outcome: Outcome) -> Step<T> {
    Err(Halt::Show(outcome))
}
