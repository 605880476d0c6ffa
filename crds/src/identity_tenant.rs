//! `IdentityTenant`: one OpenID Connect issuer with its policies. The operator turns it
//! into a tenant row (through the auth server's admin API) and a purge CronJob.

// `TokenLifetimes` fields all end in `_seconds`: the unit suffix is part of the API field
// names (Kubernetes API conventions). Module-wide because KubeSchema derives a copy of
// the struct without its attributes.
#![allow(clippy::struct_field_names)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::federation::FederationPolicy;
use crate::{DeletionPolicy, SubjectType, schema};

/// An OpenID Connect issuer: its URL, who may register clients with it, and its session,
/// password, MFA, token and purge policies. The object's name is the tenant id (a DNS
/// label) used by `tenantRef` in OidcClients and SigningKeySets.
// clippy reads the repeated `type_ = …` of kube's printcolumn(…) as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "IdentityTenant",
    plural = "identitytenants",
    shortname = "idt",
    category = "gatehouse",
    status = "IdentityTenantStatus",
    derive = "PartialEq",
    doc = "An OpenID Connect issuer managed by Gatehouse. The name is the tenant id that OidcClients and SigningKeySets reference in tenantRef.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuer"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("an IdentityTenant name is its tenant id: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit")
)]
#[serde(rename_all = "camelCase")]
pub struct IdentityTenantSpec {
    /// Issuer identifier: the `iss` claim of every token and the base of the discovery
    /// document (`<issuer>/.well-known/openid-configuration`). An https URL without
    /// query, fragment or trailing slash; plain http is accepted only on localhost,
    /// 127.0.0.1 and [::1]. The auth pods must be reachable under it. Changing it
    /// invalidates every token and session issued so far.
    #[x_kube(validation = Rule::new(schema::ISSUER_RULE).message(schema::ISSUER_MESSAGE))]
    #[schemars(length(min = 1, max = 512))]
    pub issuer: String,

    /// Name shown to users on the login and consent pages. Default: the object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub display_name: Option<String>,

    /// Which namespaces may register OidcClients with this tenant, as a label selector
    /// over namespace labels (for example `matchLabels: {gatehouse.dev/tenant: acme}`).
    /// `{}` allows every namespace. Unset: no namespace may (clients get Ready=False,
    /// reason NamespaceNotAllowed, and nothing is registered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<LabelSelector>,

    /// Namespaces whose OidcClients may set `firstParty: true` (skip the consent page).
    /// Skipping consent means users are never asked what a client may see, so only the
    /// tenant owner's own namespaces should be listed. Default: none — an OidcClient
    /// elsewhere with `firstParty: true` gets Ready=False, reason InvalidSpec, and nothing
    /// is registered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub first_party_namespaces: Vec<String>,

    /// Browser session lifetimes at the login pages.
    #[serde(default)]
    pub session: SessionPolicy,

    /// Rules for user passwords, checked when a password is set.
    #[serde(default)]
    pub password: PasswordPolicy,

    /// Multi-factor authentication policy.
    #[serde(default)]
    pub mfa: MfaPolicy,

    /// Passkeys (WebAuthn): registration, passwordless sign-in and their use as a
    /// second factor.
    #[serde(default)]
    pub passkeys: PasskeyPolicy,

    /// Default token lifetimes; an OidcClient may shorten or lengthen the access and
    /// refresh token lifetimes for itself.
    #[serde(default)]
    pub tokens: TokenLifetimes,

    /// Subject identifier types this tenant offers (discovery `subject_types_supported`):
    /// `public` (one `sub` per user) and/or `pairwise` (a different `sub` per client
    /// sector). An OidcClient's `subjectType` must be one of them. Default: [public].
    #[serde(default = "default_subject_types")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(min = 1, max = 2))]
    pub subject_types: Vec<SubjectType>,

    /// Require PKCE (S256) on every authorization request, confidential clients included
    /// (OAuth 2.0 Security BCP, RFC 9700 §2.1.1). Public clients always need it, and the
    /// `plain` method is never accepted. Default: true.
    #[serde(default = "default_true")]
    pub require_pkce: bool,

    /// Require every client of this tenant to push its authorization requests first
    /// (RFC 9126 PAR) instead of passing them in the browser URL. An OidcClient can
    /// also require it for itself. Default: false.
    #[serde(default)]
    pub require_par: bool,

    /// Mail to this tenant's users (needs the auth server's SMTP relay, `email.smtp_host`).
    #[serde(default)]
    pub email: EmailPolicy,

    /// Self-service registration at `{issuer}/register`.
    #[serde(default)]
    pub registration: RegistrationPolicy,

    /// Language of the sign-in and account pages and of mail when neither the
    /// application's request (`ui_locales`), the user's own preference (the `locale`
    /// profile claim) nor the browser's `Accept-Language` names a language the server
    /// has. A BCP 47 tag such as `de` or `pt-BR`; the server ships `en` and `de`, and
    /// more through `ui.locales_dir`. A tag it has no catalogue for is ignored (English).
    /// Default: unset (English).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 35),
        regex(pattern = r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
    )]
    pub default_locale: Option<String>,
    /// Upstream identity providers (OpenID Connect) users may sign in with, account
    /// linking and just-in-time provisioning.
    #[serde(default)]
    pub federation: FederationPolicy,

    /// Remembered devices: a second factor on new devices, and impossible-travel checks
    /// on the auth server's GeoIP database (`geoip.database`).
    #[serde(default)]
    pub devices: DevicePolicy,

    /// The CronJob that deletes expired rows (`authserver purge`) for this tenant.
    #[serde(default)]
    pub purge: PurgePolicy,

    /// What deleting this IdentityTenant does to its database rows (users, clients,
    /// keys, sessions, audit log): `Retain` (default) keeps them, and re-creating a
    /// tenant with the same name adopts them; `Delete` removes them for good. While the
    /// auth server is unreachable, `Delete` is retried with backoff and, after 8 failed
    /// attempts (about 10 minutes), falls back to `Retain` with a Warning Event
    /// `CleanupAbandoned`. The annotation `gatehouse.dev/skip-cleanup: "true"` skips the
    /// deletion at once.
    #[serde(default = "default_deletion_policy")]
    pub deletion_policy: DeletionPolicy,
}

fn default_subject_types() -> Vec<SubjectType> {
    vec![SubjectType::Public]
}

fn default_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Retain
}

/// Browser session lifetimes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.absoluteTimeoutSeconds >= self.idleTimeoutSeconds").message("absoluteTimeoutSeconds must not be shorter than idleTimeoutSeconds"))]
#[serde(rename_all = "camelCase")]
pub struct SessionPolicy {
    /// Seconds without activity after which a login session ends and the user must sign in
    /// again. Default: 1800 (30 minutes). Range: 60 to 2592000 (30 days).
    #[serde(default = "default_idle_timeout")]
    #[schemars(range(min = 60, max = 2_592_000))]
    pub idle_timeout_seconds: i32,

    /// Seconds after sign-in after which a session ends regardless of activity.
    /// Default: 86400 (24 hours). Range: 300 to 31536000 (365 days).
    #[serde(default = "default_absolute_timeout")]
    #[schemars(range(min = 300, max = 31_536_000))]
    pub absolute_timeout_seconds: i32,

    /// Most concurrent sessions per user; signing in beyond it ends the oldest session.
    /// Unset: no limit. Range: 1 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_sessions_per_user: Option<i32>,

    /// End a session when the browser's IP address changes (as seen after trusted
    /// proxies). Off by default: mobile networks and dual-stack clients change
    /// addresses often. Default: false.
    #[serde(default)]
    pub bind_ip: bool,

    /// End a session when the browser's User-Agent header changes. Default: false.
    #[serde(default)]
    pub bind_user_agent: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout_seconds: default_idle_timeout(),
            absolute_timeout_seconds: default_absolute_timeout(),
            max_sessions_per_user: None,
            bind_ip: false,
            bind_user_agent: false,
        }
    }
}

fn default_idle_timeout() -> i32 {
    1800
}

fn default_absolute_timeout() -> i32 {
    86_400
}

/// Password rules (NIST SP 800-63B §5.1.1: length and breach checks, no composition rules).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.maxLength >= self.minLength").message("maxLength must not be below minLength"))]
#[serde(rename_all = "camelCase")]
pub struct PasswordPolicy {
    /// Fewest characters (Unicode code points) a password may have. Default: 8.
    /// Range: 8 to 128.
    #[serde(default = "default_min_length")]
    #[schemars(range(min = 8, max = 128))]
    pub min_length: i32,

    /// Most characters a password may have; longer input is rejected, not truncated.
    /// Default: 128. Range: 64 to 1024.
    #[serde(default = "default_max_length")]
    #[schemars(range(min = 64, max = 1024))]
    pub max_length: i32,

    /// Reject passwords that appear in the auth server's list of breached passwords.
    /// Default: true.
    #[serde(default = "default_true")]
    pub reject_breached: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: default_min_length(),
            max_length: default_max_length(),
            reject_breached: true,
        }
    }
}

fn default_min_length() -> i32 {
    8
}

fn default_max_length() -> i32 {
    128
}

fn default_true() -> bool {
    true
}

/// Multi-factor authentication policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MfaPolicy {
    /// Require a second factor (TOTP) at every sign-in; users without one enrol at their
    /// next sign-in. Default: false (a second factor is used when the user has one).
    #[serde(default)]
    pub required: bool,
}

/// Passkey (WebAuthn) policy. The relying party ID is the host of the tenant's issuer,
/// so tenants on different hosts never share a credential.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasskeyPolicy {
    /// Users may register passkeys on their account security page (and during enrolment
    /// when a second factor is required) and use one as their second factor.
    /// Default: true.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// A passkey alone (with user verification) signs in from the sign-in page, without
    /// a password. Needs `enabled`. Default: true.
    #[serde(default = "default_true")]
    pub passwordless: bool,

    /// What a passkey used as a second factor must prove: `required` (a PIN or
    /// biometric on the authenticator) or `preferred`. Passwordless sign-in always
    /// requires user verification. Default: required.
    #[serde(default)]
    pub user_verification: PasskeyUserVerification,

    /// Attestation asked for at registration: `none` (the authenticator's make and model
    /// stay private) or `direct` (its attestation statement is verified and its AAGUID
    /// recorded). Default: none.
    #[serde(default)]
    pub attestation: PasskeyAttestation,
}

impl Default for PasskeyPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            passwordless: true,
            user_verification: PasskeyUserVerification::default(),
            attestation: PasskeyAttestation::default(),
        }
    }
}

/// WebAuthn user verification for a passkey used as a second factor.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PasskeyUserVerification {
    #[default]
    Required,
    Preferred,
}

/// WebAuthn attestation conveyance at registration.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PasskeyAttestation {
    #[default]
    None,
    Direct,
}

/// Mail to a tenant's users.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmailPolicy {
    /// The sender of this tenant's mail, `Name <user@example.com>` or an address.
    /// Default: the auth server's `email.from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 320))]
    pub from: Option<String>,
    /// Accounts whose e-mail address is not verified cannot sign in; they are told so
    /// and can ask for a new confirmation link. Accounts without an address are not
    /// affected. Default: false.
    #[serde(default)]
    pub require_verified: bool,
    /// Mail users when they sign in from a browser they have not signed in from before
    /// (to a verified address). Default: false.
    #[serde(default)]
    pub new_device_notice: bool,
}

/// Remembered devices (docs/security.md "Remembered devices"). A browser becomes one of
/// a user's devices when they sign in on it (a long-lived cookie, stored as a hash); it
/// is trusted for `trustDays` after a second factor on it. Users see and forget their
/// devices on the account page (Sessions).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.secondFactorOnImpossibleTravel || self.impossibleTravelKmh > 0").message("secondFactorOnImpossibleTravel needs impossibleTravelKmh above 0"))]
#[serde(rename_all = "camelCase")]
pub struct DevicePolicy {
    /// After the password (or an upstream sign-in) on a device that is new to the user
    /// or no longer trusted, ask for a second factor: the user's authenticator app or
    /// passkey; users without one get a one-time code mailed to their verified address
    /// (needs the SMTP relay), and users without either enrol an authenticator first.
    /// A factor the user has is asked for at every sign-in anyway; trust never waives
    /// it. Default: false.
    #[serde(default)]
    pub require_second_factor_on_new_device: bool,
    /// How long a device stays trusted after a second factor on it (or after any
    /// sign-in while `requireSecondFactorOnNewDevice` is off). Default: 30. Range: 1
    /// to 365.
    #[serde(default = "default_trust_days")]
    #[schemars(range(min = 1, max = 365))]
    pub trust_days: u32,
    /// Flag a sign-in (audit event `login.impossible_travel`) when reaching it from
    /// the user's previous sign-in would have meant travelling faster than this many
    /// km/h, places from the auth server's GeoIP city database; places less than 100
    /// km apart are never flagged. 0 turns the check off. Default: 0. Range: 0 to
    /// 20000 (900 is about an airliner).
    #[serde(default)]
    #[schemars(range(max = 20_000))]
    pub impossible_travel_kmh: u32,
    /// Answer impossible travel with a second-factor challenge, even on a trusted
    /// device, instead of only flagging it. Needs `impossibleTravelKmh` above 0.
    /// Default: false.
    #[serde(default)]
    pub second_factor_on_impossible_travel: bool,
}

impl Default for DevicePolicy {
    fn default() -> Self {
        Self {
            require_second_factor_on_new_device: false,
            trust_days: default_trust_days(),
            impossible_travel_kmh: 0,
            second_factor_on_impossible_travel: false,
        }
    }
}

fn default_trust_days() -> u32 {
    30
}

/// Self-service registration.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationPolicy {
    /// Anyone may create an account (username, e-mail address, password) at
    /// `{issuer}/register`; the password policy and breach check apply, and the address
    /// is sent a confirmation link. Default: false.
    #[serde(default)]
    pub enabled: bool,
}

/// Default token lifetimes, in seconds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.refreshTokenSeconds >= self.accessTokenSeconds").message("refreshTokenSeconds must not be shorter than accessTokenSeconds"))]
#[serde(rename_all = "camelCase")]
pub struct TokenLifetimes {
    /// Lifetime of access tokens (JWT, RFC 9068). Short, because a JWT access token
    /// cannot be revoked before it expires at resource servers that do not introspect.
    /// Default: 600 (10 minutes). Range: 60 to 86400.
    #[serde(default = "default_access_token_seconds")]
    #[schemars(range(min = 60, max = 86_400))]
    pub access_token_seconds: i32,

    /// Lifetime of ID tokens. Default: 3600 (1 hour). Range: 60 to 86400.
    #[serde(default = "default_id_token_seconds")]
    #[schemars(range(min = 60, max = 86_400))]
    pub id_token_seconds: i32,

    /// Absolute lifetime of a refresh token family: rotation issues a new refresh token on
    /// every use, but never beyond this many seconds after the original grant.
    /// Default: 2592000 (30 days). Range: 300 to 31536000 (365 days).
    #[serde(default = "default_refresh_token_seconds")]
    #[schemars(range(min = 300, max = 31_536_000))]
    pub refresh_token_seconds: i32,

    /// Lifetime of authorization codes (single use). Default: 60. Range: 10 to 600
    /// (RFC 6749 §4.1.2 recommends at most 10 minutes).
    #[serde(default = "default_authorization_code_seconds")]
    #[schemars(range(min = 10, max = 600))]
    pub authorization_code_seconds: i32,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            access_token_seconds: default_access_token_seconds(),
            id_token_seconds: default_id_token_seconds(),
            refresh_token_seconds: default_refresh_token_seconds(),
            authorization_code_seconds: default_authorization_code_seconds(),
        }
    }
}

fn default_access_token_seconds() -> i32 {
    600
}

fn default_id_token_seconds() -> i32 {
    3600
}

fn default_refresh_token_seconds() -> i32 {
    2_592_000
}

fn default_authorization_code_seconds() -> i32 {
    60
}

/// The purge CronJob of a tenant.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PurgePolicy {
    /// When the purge runs, in CronJob syntax (five fields, or `@hourly`, `@daily`, …),
    /// in the controller manager's time zone. Each field is checked against its range
    /// (minute 0-59, hour 0-23, day 1-31, month 1-12 or JAN-DEC, weekday 0-7 or
    /// SUN-SAT), so a schedule the CronJob API would refuse is refused here. Default:
    /// hourly at a minute derived from a hash of the tenant's name (`M * * * *`, the same
    /// minute on every reconcile), so that many tenants' purges do not all start at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 100),
        regex(pattern = crate::schema::CRON_SCHEDULE_PATTERN)
    )]
    pub schedule: Option<String>,

    /// What to purge (`authserver purge --only`): dpop-nonces, dpop-jti, assertion-jti,
    /// jti, authorization-codes, refresh-tokens, sessions, par-requests, rate-limits,
    /// audit, email-outbox, email-tokens, devices. Empty (default): all of them.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 13))]
    pub targets: Vec<PurgeTarget>,

    /// Longest a purge run may take (`authserver purge --timeout`), as a number with unit
    /// `s`, `m` or `h`; the run stops cleanly after the batch in progress and the next
    /// run continues. Default: "10m".
    #[serde(default = "default_purge_timeout")]
    #[schemars(regex(pattern = "^[1-9][0-9]{0,5}(s|m|h)$"))]
    pub timeout: String,
}

impl Default for PurgePolicy {
    fn default() -> Self {
        Self {
            schedule: None,
            targets: Vec::new(),
            timeout: default_purge_timeout(),
        }
    }
}

impl PurgePolicy {
    /// The schedule in effect for tenant `name`: the spec's, else hourly at a minute
    /// derived from the name (FNV-1a, stable across releases and replicas).
    pub fn schedule_for(&self, name: &str) -> String {
        if let Some(schedule) = &self.schedule {
            return schedule.clone();
        }
        format!("{} * * * *", crate::fnv1a(name) % 60)
    }
}

fn default_purge_timeout() -> String {
    "10m".to_owned()
}

/// A kind of expired row `authserver purge` deletes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum PurgeTarget {
    DpopNonces,
    DpopJti,
    AssertionJti,
    Jti,
    AuthorizationCodes,
    RefreshTokens,
    Sessions,
    ParRequests,
    RateLimits,
    Audit,
    EmailOutbox,
    EmailTokens,
    Devices,
}

impl PurgeTarget {
    /// Every target.
    pub const ALL: [PurgeTarget; 13] = [
        PurgeTarget::DpopNonces,
        PurgeTarget::DpopJti,
        PurgeTarget::AssertionJti,
        PurgeTarget::Jti,
        PurgeTarget::AuthorizationCodes,
        PurgeTarget::RefreshTokens,
        PurgeTarget::Sessions,
        PurgeTarget::ParRequests,
        PurgeTarget::RateLimits,
        PurgeTarget::Audit,
        PurgeTarget::EmailOutbox,
        PurgeTarget::EmailTokens,
        PurgeTarget::Devices,
    ];

    /// The name used in the CRD and by `authserver purge --only`.
    pub fn as_str(self) -> &'static str {
        match self {
            PurgeTarget::DpopNonces => "dpop-nonces",
            PurgeTarget::DpopJti => "dpop-jti",
            PurgeTarget::AssertionJti => "assertion-jti",
            PurgeTarget::Jti => "jti",
            PurgeTarget::AuthorizationCodes => "authorization-codes",
            PurgeTarget::RefreshTokens => "refresh-tokens",
            PurgeTarget::Sessions => "sessions",
            PurgeTarget::ParRequests => "par-requests",
            PurgeTarget::RateLimits => "rate-limits",
            PurgeTarget::Audit => "audit",
            PurgeTarget::EmailOutbox => "email-outbox",
            PurgeTarget::EmailTokens => "email-tokens",
            PurgeTarget::Devices => "devices",
        }
    }
}

impl PurgePolicy {
    /// The targets a run purges: the listed ones, or every target when the list is empty.
    pub fn effective_targets(&self) -> Vec<PurgeTarget> {
        if self.targets.is_empty() {
            PurgeTarget::ALL.to_vec()
        } else {
            self.targets.clone()
        }
    }
}

/// Observed state of an IdentityTenant, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityTenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current state. `Ready` is True once the tenant is registered and its purge
    /// CronJob exists; when False its reason says why (MigrationPending,
    /// AuthServerUnavailable, Conflict, InvalidSpec, Deleting, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The issuer the auth server serves for this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,

    /// URL of the tenant's OpenID Connect discovery document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;
    use crate::test_support::{assert_fails_with, at, cel_errors, schema};

    fn tenant(name: &str, issuer: &str) -> IdentityTenant {
        let spec: IdentityTenantSpec = serde_json::from_value(json!({ "issuer": issuer })).unwrap();
        IdentityTenant::new(name, spec)
    }

    #[test]
    fn crd_is_cluster_scoped_with_short_name_category_and_printer_columns() {
        let crd = IdentityTenant::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("identitytenants.gatehouse.dev")
        );
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["idt".to_owned()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["gatehouse".to_owned()])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("Ready", r#".status.conditions[?(@.type=="Ready")].status"#),
                ("Reason", r#".status.conditions[?(@.type=="Ready")].reason"#),
                ("Issuer", ".spec.issuer"),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );
    }

    #[test]
    fn schema_carries_every_default() {
        let schema = schema::<IdentityTenant>();
        let spec = at(&schema, "properties.spec.properties");
        assert_eq!(
            spec["session"]["default"],
            json!({"idleTimeoutSeconds": 1800, "absoluteTimeoutSeconds": 86400,
                   "bindIp": false, "bindUserAgent": false})
        );
        assert_eq!(spec["requirePkce"]["default"], json!(true));
        assert_eq!(spec["requirePar"]["default"], json!(false));
        assert_eq!(
            spec["password"]["default"],
            json!({"minLength": 8, "maxLength": 128, "rejectBreached": true})
        );
        assert_eq!(spec["mfa"]["default"], json!({"required": false}));
        assert_eq!(
            spec["tokens"]["default"],
            json!({"accessTokenSeconds": 600, "idTokenSeconds": 3600,
                   "refreshTokenSeconds": 2_592_000, "authorizationCodeSeconds": 60})
        );
        assert_eq!(spec["subjectTypes"]["default"], json!(["public"]));
        assert_eq!(
            spec["purge"]["default"],
            json!({"targets": [], "timeout": "10m"})
        );
        assert_eq!(spec["deletionPolicy"]["default"], "Retain");
        // Nested defaults too, for partially written objects (`session: {maxSessionsPerUser: 3}`).
        assert_eq!(
            at(spec, "session.properties.idleTimeoutSeconds.default"),
            1800
        );
        assert_eq!(at(spec, "purge.properties.timeout.default"), "10m");
    }

    #[test]
    fn purge_targets_are_exactly_the_authserver_purge_names() {
        let schema = schema::<IdentityTenant>();
        let values = at(
            &schema,
            "properties.spec.properties.purge.properties.targets.items.enum",
        );
        assert_eq!(
            values,
            &json!([
                "dpop-nonces",
                "dpop-jti",
                "assertion-jti",
                "jti",
                "authorization-codes",
                "refresh-tokens",
                "sessions",
                "par-requests",
                "rate-limits",
                "audit",
                "email-outbox",
                "email-tokens",
                "devices"
            ])
        );
        let names: Vec<_> = PurgeTarget::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(json!(names), *values);
    }

    #[test]
    fn a_tenant_with_only_an_issuer_gets_the_defaults() {
        let t = tenant("acme", "https://id.example.com/t/acme");
        assert_eq!(t.spec.session, SessionPolicy::default());
        assert_eq!(t.spec.session.idle_timeout_seconds, 1800);
        assert_eq!(t.spec.tokens.authorization_code_seconds, 60);
        assert_eq!(t.spec.subject_types, [SubjectType::Public]);
        assert_eq!(t.spec.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(t.spec.purge.effective_targets(), PurgeTarget::ALL);
        assert!(t.spec.allowed_namespaces.is_none());
        assert!(cel_errors(&t, None).is_empty());
    }

    #[test]
    fn issuer_is_https_or_loopback_http_without_query_fragment_or_trailing_slash() {
        for good in [
            "https://id.example.com",
            "https://id.example.com/t/acme",
            "https://id.example.com:8443/t/acme",
            "http://localhost:8080",
            "http://127.0.0.1:8080/t/acme",
            "http://[::1]:9000",
        ] {
            assert!(cel_errors(&tenant("acme", good), None).is_empty(), "{good}");
        }
        for bad in [
            "http://id.example.com",
            "https://id.example.com/",
            "https://id.example.com/t/acme?x=1",
            "https://id.example.com#top",
            "ftp://id.example.com",
            "http://localhost.example.com",
            "https://user@id.example.com",
            "id.example.com",
        ] {
            assert_fails_with(
                &cel_errors(&tenant("acme", bad), None),
                &["issuer must be an https URL"],
            );
        }
    }

    #[test]
    fn tenant_name_is_a_dns_label() {
        for bad in ["Acme", "acme.corp", "-acme", &"a".repeat(64)] {
            assert_fails_with(
                &cel_errors(&tenant(bad, "https://id.example.com"), None),
                &["IdentityTenant name is its tenant id"],
            );
        }
    }

    #[test]
    fn lifetimes_must_be_consistent() {
        let mut t = tenant("acme", "https://id.example.com");
        t.spec.session.idle_timeout_seconds = 7200;
        t.spec.session.absolute_timeout_seconds = 3600;
        t.spec.password.min_length = 100;
        t.spec.password.max_length = 64;
        t.spec.tokens.access_token_seconds = 3600;
        t.spec.tokens.refresh_token_seconds = 600;
        assert_fails_with(
            &cel_errors(&t, None),
            &[
                "absoluteTimeoutSeconds must not be shorter than idleTimeoutSeconds",
                "maxLength must not be below minLength",
                "refreshTokenSeconds must not be shorter than accessTokenSeconds",
            ],
        );
    }

    #[test]
    fn a_travel_challenge_needs_the_travel_check() {
        let mut t = tenant("acme", "https://id.example.com");
        t.spec.devices.second_factor_on_impossible_travel = true;
        assert_fails_with(
            &cel_errors(&t, None),
            &["secondFactorOnImpossibleTravel needs impossibleTravelKmh above 0"],
        );
        t.spec.devices.impossible_travel_kmh = 900;
        assert!(cel_errors(&t, None).is_empty());
    }

    #[test]
    fn status_conditions_merge_by_type_under_server_side_apply() {
        let schema = schema::<IdentityTenant>();
        let conditions = at(&schema, "properties.status.properties.conditions");
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }

    #[test]
    fn the_default_purge_minute_is_spread_by_tenant_name() {
        let policy = PurgePolicy::default();
        let minutes: std::collections::BTreeSet<String> =
            ["acme", "shop", "billing", "eu", "us", "dev"]
                .iter()
                .map(|t| policy.schedule_for(t))
                .collect();
        assert!(minutes.len() >= 4, "{minutes:?}");
        for m in &minutes {
            let minute: u32 = m.strip_suffix(" * * * *").unwrap().parse().unwrap();
            assert!(minute < 60);
        }
        assert_eq!(
            policy.schedule_for("acme"),
            policy.schedule_for("acme"),
            "stable"
        );
        assert_eq!(
            policy.schedule_for("acme"),
            format!("{} * * * *", crate::fnv1a("acme") % 60)
        );
        let chosen = PurgePolicy {
            schedule: Some("0 3 * * *".into()),
            ..PurgePolicy::default()
        };
        assert_eq!(chosen.schedule_for("acme"), "0 3 * * *");
    }
}
