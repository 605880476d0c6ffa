//! What a step of the interaction ends in. The HTTP layer renders each variant one way:
//! a page, a `303` to the next page, or the answer to the client's redirect URI.

use crate::authorize::{ErrorRedirect, ResponseMode};

/// A page of the flow the browser is sent to (with `303 See Other`), for the request
/// handle it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Login,
    SecondFactor,
    Enrollment,
    Chooser,
    Consent,
    /// Back to the request (`/authorize/continue`), which decides what comes next.
    Continue,
    /// The account pages (a sign-in an account page asked for).
    Account,
}

/// The end of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Go on to `page` for the request (`None`: a sign-in of its own).
    Go(Page, Option<String>),
    ShowLogin(LoginForm),
    ShowSecondFactor(SecondFactorForm),
    ShowEnrollment(EnrollmentForm),
    /// Shown once, right after enrolment; "continue" finishes the sign-in.
    ShowRecoveryCodes(RecoveryCodes),
    ShowChooser(Chooser),
    ShowConsent(ConsentRequest),
    /// A sign-in (or account choice) that was not for an authorization request.
    SignedIn {
        username: String,
    },
    RedirectWithCode(CodeRedirect),
    RedirectWithError(ErrorRedirect),
    /// A page that ends here: nothing safe to send to the client.
    ShowErrorPage(Problem),
    /// Off to an upstream identity provider's authorization endpoint (this URL).
    GoUpstream(String),
    /// An upstream sign-in that needs the user: refused, or waiting for the proof of
    /// the local account it is to be linked to.
    ShowUpstream(UpstreamPage),
}

/// A page of an upstream sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamPage {
    Refused(UpstreamRefusal),
    Link(LinkForm),
}

/// An upstream sign-in that ended without signing anyone in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRefusal {
    /// The authorization request to go back to (the sign-in page offers to try again).
    pub request: Option<String>,
    /// The provider's display name, when known.
    pub provider: Option<String>,
    pub problem: UpstreamProblem,
}

/// Why an upstream sign-in was refused; each has its text in the page's template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProblem {
    /// The user cancelled or the upstream refused (`error=access_denied`).
    Cancelled,
    /// The upstream failed or could not be reached.
    UpstreamError,
    /// The upstream's answer did not hold up (ID token, `iss`, `nonce`).
    InvalidResponse,
    /// No sign-in of this browser waits for this answer: replayed, expired, or
    /// started in another browser.
    Stale,
    /// The tenant has no such provider (any more).
    UnknownProvider,
    /// The upstream account is not linked and the provider does not create users.
    NotProvisioned,
    /// A local account has the address, but the upstream does not vouch for it (or
    /// the provider does not link by address): never linked silently.
    UnverifiedEmail,
    /// Several local accounts have the address, or the one that has it cannot prove
    /// itself with a password.
    CannotLink,
    /// The account's address must be verified first (tenant policy).
    EmailUnverified,
    /// The provider admits the account, the tenant does not (not a member of an
    /// allowed organisation).
    NotAllowed,
}

impl UpstreamProblem {
    /// The template's key for the problem, and the audit class of the refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::UpstreamError => "upstream_error",
            Self::InvalidResponse => "invalid_response",
            Self::Stale => "stale",
            Self::UnknownProvider => "unknown_provider",
            Self::NotProvisioned => "not_provisioned",
            Self::UnverifiedEmail => "unverified_email",
            Self::CannotLink => "cannot_link",
            Self::EmailUnverified => "email_unverified",
            Self::NotAllowed => "not_allowed",
        }
    }
}

/// "Prove it is your account": the local account's password, or one of its passkeys,
/// links the upstream one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkForm {
    pub request: Option<String>,
    pub provider: String,
    pub username: String,
    /// The local account has a password to prove it with.
    pub password: bool,
    /// The local account has a passkey to prove it with (and passkeys are on).
    pub passkey: bool,
    pub problem: Option<LoginProblem>,
}

/// An upstream provider's button on the sign-in page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderButton {
    pub id: String,
    pub display_name: String,
}

/// The sign-in form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginForm {
    pub request: Option<String>,
    /// Pre-filled: the `login_hint`, or what was typed before.
    pub username: Option<String>,
    /// Offer passwordless sign-in with a passkey.
    pub passkey: bool,
    /// The tenant's upstream identity providers.
    pub providers: Vec<ProviderButton>,
    pub problem: Option<LoginProblem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginProblem {
    /// "Incorrect username or password.", whatever went wrong (no user enumeration).
    Failed,
    Locked {
        retry_after_seconds: u64,
    },
    /// A passkey was refused (unknown, someone else's, cloned, cancelled, expired
    /// challenge): one message for all of them.
    Passkey,
    /// The right password, but the tenant requires a verified address first (the page
    /// offers a new link). Only shown after the password matched, so it reveals nothing
    /// to someone without it.
    Unverified,
    /// A new device needs the code mailed to the user, and their address had its share
    /// of codes this hour (`email.per_address_per_hour`). Only after the password.
    DeviceCodeLimit,
}

/// A code form's problem (second factor or enrolment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeProblem {
    /// Wrong, reused or malformed.
    Wrong,
    Locked {
        retry_after_seconds: u64,
    },
    /// The passkey was refused, or could not be registered.
    Passkey,
    /// A passkey is required here (the request asked for phishing-resistant
    /// authentication): a code will not do.
    PasskeyRequired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondFactorForm {
    pub request: Option<String>,
    /// Which factors the user can use: a TOTP (or recovery) code, a passkey.
    pub totp: bool,
    pub passkey: bool,
    /// New-device verification by a code mailed to the user (no factor of their own).
    pub email_code: bool,
    pub problem: Option<CodeProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentForm {
    pub request: Option<String>,
    pub qr_data_uri: String,
    pub secret_base32: String,
    /// A passkey may be registered instead of an authenticator app.
    pub passkey: bool,
    pub problem: Option<CodeProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCodes {
    pub request: Option<String>,
    pub codes: Vec<String>,
}

/// The browser's accounts to choose from, by position (the form posts the index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chooser {
    pub request: Option<String>,
    pub accounts: Vec<(usize, String)>,
}

/// What the user is asked to allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    pub request: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub username: String,
}

/// The user's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// The code, for the client's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRedirect {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub code: String,
    pub state: Option<String>,
}

/// Why a page ends the interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The request handle is unknown, used, expired or bound to another browser.
    StaleRequest,
    /// The request's client was deleted while the user was signing in.
    UnknownClient,
    /// The consent form was posted without `decision=allow|deny`.
    NoDecision,
}
