//! Per-tenant policy: what the `IdentityTenant` resource (or the admin API) puts in a
//! tenant's `settings` JSON, in the CRD's camelCase, with the documented defaults for
//! everything left out. One parser serves the admin API (which rejects bad input) and
//! the request path (which reads what was accepted).

use serde::{Deserialize, Serialize};

use super::client::SubjectType;
use super::federation::FederationPolicy;

/// A tenant's policies. Unknown top-level sections are ignored so an older server keeps
/// working with a newer operator; known sections are checked strictly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TenantPolicy {
    pub session: SessionPolicy,
    pub password: PasswordPolicy,
    pub mfa: MfaPolicy,
    pub passkeys: PasskeyPolicy,
    pub tokens: TokenLifetimes,
    /// Subject types clients of this tenant may use (OIDC Core §8).
    pub subject_types: Vec<SubjectType>,
    /// PKCE (S256) on every authorization request, confidential clients included
    /// (RFC 9700 §2.1.1). Public clients always need it.
    pub require_pkce: bool,
    /// Authorization requests must be pushed first (RFC 9126 §5), for every client.
    pub require_par: bool,
    /// Mail to this tenant's users: sender, verification, new-device notice.
    pub email: EmailPolicy,
    /// Self-service registration (`{issuer}/register`).
    pub registration: RegistrationPolicy,
    /// The language of this tenant's pages and mails when neither the request
    /// (`ui_locales`), the user nor the browser names one we have (a BCP 47 tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_locale: Option<String>,
    /// Upstream identity providers (sign in with another OpenID provider).
    pub federation: FederationPolicy,
    /// Remembered devices: a second factor on new devices, impossible travel.
    pub devices: DevicePolicy,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        Self {
            session: SessionPolicy::default(),
            password: PasswordPolicy::default(),
            mfa: MfaPolicy::default(),
            passkeys: PasskeyPolicy::default(),
            tokens: TokenLifetimes::default(),
            subject_types: vec![SubjectType::Public],
            require_pkce: true,
            require_par: false,
            email: EmailPolicy::default(),
            registration: RegistrationPolicy::default(),
            default_locale: None,
            federation: FederationPolicy::default(),
            devices: DevicePolicy::default(),
        }
    }
}

/// Remembered devices (docs/security.md "Remembered devices"): a browser's device cookie
/// becomes a device of the user once they sign in on it; a second factor passed on it
/// (or a sign-in this policy did not ask one of) trusts it for `trust_days`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DevicePolicy {
    /// After the password (or an upstream sign-in) on a device that is new to the user
    /// or no longer trusted, ask for a second factor: the user's authenticator or
    /// passkey; an e-mail code to a verified address for users without one (when mail
    /// is configured); otherwise enrolment.
    pub require_second_factor_on_new_device: bool,
    /// How long a device stays trusted after a second factor on it (1 to 365 days).
    pub trust_days: u32,
    /// Flag a sign-in whose distance from the user's previous one (GeoIP city
    /// database) means travelling faster than this many km/h; 0 turns the check off.
    pub impossible_travel_kmh: u32,
    /// Answer impossible travel with a second-factor challenge, even on a trusted
    /// device (otherwise it is only flagged in the audit log).
    pub second_factor_on_impossible_travel: bool,
}

impl Default for DevicePolicy {
    fn default() -> Self {
        Self {
            require_second_factor_on_new_device: false,
            trust_days: 30,
            impossible_travel_kmh: 0,
            second_factor_on_impossible_travel: false,
        }
    }
}

impl DevicePolicy {
    /// Whether anything of this policy needs the user's devices remembered.
    pub fn remembers(&self) -> bool {
        self.require_second_factor_on_new_device || self.impossible_travel_kmh > 0
    }

    /// The trust duration in seconds.
    pub fn trust_seconds(&self) -> i64 {
        i64::from(self.trust_days) * 86_400
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=365).contains(&self.trust_days) {
            return Err("devices.trustDays: must be 1 to 365".into());
        }
        if self.impossible_travel_kmh > 20_000 {
            return Err("devices.impossibleTravelKmh: must be 0 (off) to 20000".into());
        }
        if self.second_factor_on_impossible_travel && self.impossible_travel_kmh == 0 {
            return Err(
                "devices.secondFactorOnImpossibleTravel: needs impossibleTravelKmh above 0".into(),
            );
        }
        Ok(())
    }
}

/// Mail to a tenant's users.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailPolicy {
    /// The sender of this tenant's mail (`Name <user@example.com>` or an address);
    /// the deployment's `email.from` when unset.
    pub from: Option<String>,
    /// Accounts whose e-mail address is not verified cannot sign in (they are told so
    /// and can ask for a new link). Accounts without an address are not affected.
    pub require_verified: bool,
    /// Mail the user when they sign in from a device (browser) they have not signed in
    /// from before.
    pub new_device_notice: bool,
}

/// Self-service registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrationPolicy {
    /// Anyone may create an account at `{issuer}/register` (username, e-mail,
    /// password); the address is mailed a verification link.
    pub enabled: bool,
}

/// Browser sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPolicy {
    pub idle_timeout_seconds: u64,
    pub absolute_timeout_seconds: u64,
    /// Signing in beyond this many sessions ends the user's oldest one.
    pub max_sessions_per_user: Option<u32>,
    /// End a session when the client's IP address changes.
    pub bind_ip: bool,
    /// End a session when the browser's User-Agent changes.
    pub bind_user_agent: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout_seconds: 1800,
            absolute_timeout_seconds: 86_400,
            max_sessions_per_user: None,
            bind_ip: false,
            bind_user_agent: false,
        }
    }
}

/// Password rules for this tenant's users (NIST SP 800-63B: length and breaches only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    pub reject_breached: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            max_length: 128,
            reject_breached: true,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct MfaPolicy {
    /// Every sign-in needs a second factor; users without one enrol first.
    pub required: bool,
}

/// Passkeys (WebAuthn): whether users may register them, sign in with one alone, and
/// what the ceremony asks of the authenticator.
// Two independent switches, exactly the two the CRD documents.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PasskeyPolicy {
    /// Users may register passkeys and use them as a second factor.
    pub enabled: bool,
    /// A passkey alone (with user verification) signs in, from the sign-in page.
    pub passwordless: bool,
    /// What a passkey used as a second factor must prove; passwordless sign-in always
    /// requires user verification.
    pub user_verification: UserVerification,
    /// Attestation asked for at registration.
    pub attestation: Attestation,
}

impl Default for PasskeyPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            passwordless: true,
            user_verification: UserVerification::Required,
            attestation: Attestation::None,
        }
    }
}

impl PasskeyPolicy {
    /// Passwordless sign-in is on (it needs passkeys on).
    pub fn passwordless(&self) -> bool {
        self.enabled && self.passwordless
    }
}

/// WebAuthn user verification (a PIN or biometric on the authenticator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UserVerification {
    Required,
    Preferred,
}

/// WebAuthn attestation conveyance: `none` keeps the authenticator's make and model
/// private; `direct` asks for the authenticator's attestation statement, which is
/// verified and its AAGUID recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Attestation {
    None,
    Direct,
}

/// Token lifetimes in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenLifetimes {
    pub access_token_seconds: u64,
    pub id_token_seconds: u64,
    /// Absolute lifetime of a refresh-token family.
    pub refresh_token_seconds: u64,
    pub authorization_code_seconds: u64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            access_token_seconds: 600,
            id_token_seconds: 3600,
            refresh_token_seconds: 30 * 86_400,
            authorization_code_seconds: 60,
        }
    }
}

impl TenantPolicy {
    /// Parses and checks a tenant's settings; the error names the field.
    pub fn parse(settings: &serde_json::Value) -> Result<Self, String> {
        if settings.is_null() {
            return Ok(Self::default());
        }
        let policy: Self = serde_path_to_error::deserialize(settings)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        policy.check()?;
        Ok(policy)
    }

    /// The policy of a stored tenant, parsed once per loaded tenant. Settings are
    /// checked when written, so a failure here means the row was edited by hand: fall
    /// back to the defaults (safe ones) and say so, rather than fail every request of
    /// the tenant.
    pub fn of(tenant: &super::tenant::Tenant) -> Self {
        tenant
            .parsed
            .0
            .get_or_init(|| {
                Self::parse(&tenant.settings).unwrap_or_else(|e| {
                    tracing::warn!(tenant = %tenant.id, error = %e, "invalid tenant settings; using defaults");
                    Self::default()
                })
            })
            .clone()
    }

    fn check(&self) -> Result<(), String> {
        let s = &self.session;
        if !(60..=2_592_000).contains(&s.idle_timeout_seconds) {
            return Err("session.idleTimeoutSeconds: must be 60 to 2592000".into());
        }
        if !(300..=31_536_000).contains(&s.absolute_timeout_seconds) {
            return Err("session.absoluteTimeoutSeconds: must be 300 to 31536000".into());
        }
        if s.absolute_timeout_seconds < s.idle_timeout_seconds {
            return Err(
                "session.absoluteTimeoutSeconds: must not be shorter than idleTimeoutSeconds"
                    .into(),
            );
        }
        if s.max_sessions_per_user == Some(0) {
            return Err("session.maxSessionsPerUser: must be at least 1".into());
        }
        let p = &self.password;
        if p.min_length < 1 || p.max_length < p.min_length || p.max_length > 4096 {
            return Err(
                "password: minLength must be at least 1 and maxLength between minLength and 4096"
                    .into(),
            );
        }
        let t = &self.tokens;
        for (name, v, min, max) in [
            (
                "tokens.accessTokenSeconds",
                t.access_token_seconds,
                60,
                86_400,
            ),
            ("tokens.idTokenSeconds", t.id_token_seconds, 60, 86_400),
            (
                "tokens.refreshTokenSeconds",
                t.refresh_token_seconds,
                300,
                31_536_000,
            ),
            (
                "tokens.authorizationCodeSeconds",
                t.authorization_code_seconds,
                10,
                600,
            ),
        ] {
            if !(min..=max).contains(&v) {
                return Err(format!("{name}: must be {min} to {max}"));
            }
        }
        if let Some(from) = &self.email.from
            && !valid_sender(from)
        {
            return Err(format!(
                "email.from: not an e-mail address (\"Name <user@example.com>\" or user@example.com): {from:?}"
            ));
        }
        if let Some(tag) = &self.default_locale
            && (tag.len() > 35 || tag.parse::<unic_langid::LanguageIdentifier>().is_err())
        {
            return Err(format!(
                "defaultLocale: not a language tag (for example \"de\" or \"pt-BR\"): {tag:?}"
            ));
        }
        if self.subject_types.is_empty() {
            return Err("subjectTypes: name at least one of public, pairwise".into());
        }
        self.devices.check()?;
        self.federation.check()
    }

    pub fn allows_subject_type(&self, t: SubjectType) -> bool {
        self.subject_types.contains(&t)
    }
}

/// A plausible sender: one `@` with text on both sides, optionally as `Name <addr>`, no
/// line breaks (a header injection). The mailer parses it fully when it sends.
fn valid_sender(from: &str) -> bool {
    let addr = match (from.find('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b && b == from.len() - 1 => &from[a + 1..b],
        (None, None) => from,
        _ => return false,
    };
    let ok_chars = |s: &str| !s.chars().any(|c| c.is_control() || c.is_whitespace());
    matches!(addr.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && ok_chars(addr)
        && !from.chars().any(char::is_control)
        && from.len() <= 320
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_settings_are_the_defaults() {
        assert_eq!(
            TenantPolicy::parse(&json!({})).unwrap(),
            TenantPolicy::default()
        );
        assert_eq!(
            TenantPolicy::parse(&json!(null)).unwrap(),
            TenantPolicy::default()
        );
        let d = TenantPolicy::default();
        assert_eq!(d.session.idle_timeout_seconds, 1800);
        assert_eq!(d.session.absolute_timeout_seconds, 86_400);
        assert_eq!(d.tokens.authorization_code_seconds, 60);
        assert!(d.require_pkce);
        assert!(!d.require_par);
        assert!(d.passkeys.enabled && d.passkeys.passwordless());
        assert_eq!(d.passkeys.user_verification, UserVerification::Required);
        assert_eq!(d.passkeys.attestation, Attestation::None);
    }

    #[test]
    fn passkey_policy_reads_the_crd_fields() {
        let p = TenantPolicy::parse(&json!({"passkeys": {"enabled": true, "passwordless": false,
            "userVerification": "preferred", "attestation": "direct"}}))
        .unwrap();
        assert!(!p.passkeys.passwordless());
        assert_eq!(p.passkeys.user_verification, UserVerification::Preferred);
        assert_eq!(p.passkeys.attestation, Attestation::Direct);
        let off = TenantPolicy::parse(&json!({"passkeys": {"enabled": false}})).unwrap();
        assert!(
            !off.passkeys.passwordless(),
            "passwordless needs passkeys on"
        );
        let e = TenantPolicy::parse(&json!({"passkeys": {"userVerification": "discouraged"}}))
            .unwrap_err();
        assert!(e.contains("passkeys.userVerification"), "{e}");
    }

    #[test]
    fn reads_what_the_operator_writes() {
        let p = TenantPolicy::parse(&json!({
            "session": {"idleTimeoutSeconds": 600, "absoluteTimeoutSeconds": 3600, "maxSessionsPerUser": 3,
                        "bindIp": true, "bindUserAgent": false},
            "password": {"minLength": 12, "maxLength": 256, "rejectBreached": false},
            "mfa": {"required": true},
            "tokens": {"accessTokenSeconds": 300, "idTokenSeconds": 900, "refreshTokenSeconds": 86400, "authorizationCodeSeconds": 30},
            "subjectTypes": ["public", "pairwise"],
            "requirePkce": true,
            "requirePar": true,
            "purge": {"schedule": "@hourly"}
        }))
        .unwrap();
        assert_eq!(p.session.max_sessions_per_user, Some(3));
        assert!(p.session.bind_ip && p.require_par);
        assert_eq!(p.password.min_length, 12);
        assert!(p.mfa.required);
        assert_eq!(p.tokens.id_token_seconds, 900);
        assert!(p.allows_subject_type(SubjectType::Pairwise));
    }

    #[test]
    fn email_and_registration_are_off_by_default_and_read_in_camel_case() {
        let d = TenantPolicy::default();
        assert!(!d.registration.enabled);
        assert!(!d.email.new_device_notice && !d.email.require_verified);
        assert_eq!(d.email.from, None);
        let p = TenantPolicy::parse(&json!({
            "email": {"from": "Acme <id@acme.example>", "requireVerified": true, "newDeviceNotice": true},
            "registration": {"enabled": true}
        }))
        .unwrap();
        assert!(p.registration.enabled && p.email.require_verified && p.email.new_device_notice);
        for bad in ["nobody", "a@b\r\nBcc: x@y", "A <a@b", "@b", "a@"] {
            let e = TenantPolicy::parse(&json!({"email": {"from": bad}})).unwrap_err();
            assert!(e.starts_with("email.from"), "{bad:?}: {e}");
        }
        let e = TenantPolicy::parse(&json!({"registration": {"open": true}})).unwrap_err();
        assert!(e.contains("registration"), "{e}");
    }

    #[test]
    fn device_checks_are_off_by_default_and_bad_values_name_the_field() {
        let d = TenantPolicy::default().devices;
        assert!(!d.remembers() && !d.require_second_factor_on_new_device);
        assert_eq!(d.trust_seconds(), 30 * 86_400);
        let p = TenantPolicy::parse(&json!({"devices": {
            "requireSecondFactorOnNewDevice": true, "trustDays": 7,
            "impossibleTravelKmh": 900, "secondFactorOnImpossibleTravel": true
        }}))
        .unwrap();
        assert!(p.devices.remembers() && p.devices.second_factor_on_impossible_travel);
        assert_eq!(p.devices.trust_days, 7);
        for (bad, field) in [
            (json!({"trustDays": 0}), "devices.trustDays"),
            (json!({"trustDays": 366}), "devices.trustDays"),
            (
                json!({"impossibleTravelKmh": 99_999}),
                "devices.impossibleTravelKmh",
            ),
            (
                json!({"secondFactorOnImpossibleTravel": true}),
                "devices.secondFactorOnImpossibleTravel",
            ),
            (json!({"trustdays": 3}), "devices"),
            (json!({"trustDays": -1}), "devices.trustDays"),
        ] {
            let e = TenantPolicy::parse(&json!({ "devices": bad })).unwrap_err();
            assert!(e.starts_with(field), "{bad}: {e}");
        }
    }

    #[test]
    fn a_loaded_tenant_parses_its_policy_once_and_compares_without_it() {
        let tenant = crate::domain::tenant::Tenant {
            id: "t".into(),
            issuer: "https://id.example.com".into(),
            display_name: "T".into(),
            settings: json!({"mfa": {"required": true}, "defaultLocale": "de"}),
            created_at: 0,
            updated_at: 0,
            parsed: crate::domain::tenant::ParsedPolicy::default(),
        };
        let fresh = tenant.clone();
        assert!(tenant.parsed.0.get().is_none());
        let policy = TenantPolicy::of(&tenant);
        assert!(policy.mfa.required);
        assert_eq!(
            tenant.parsed.0.get(),
            Some(&policy),
            "kept for the next caller"
        );
        assert_eq!(TenantPolicy::of(&tenant), policy);
        assert_eq!(
            tenant, fresh,
            "the parsed copy is not part of a tenant's identity"
        );
        let mut changed = fresh.clone();
        changed.settings = json!({});
        assert_ne!(tenant, changed);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let e = TenantPolicy::parse(&json!({"session": {"idleTimeoutSeconds": 5}})).unwrap_err();
        assert!(e.contains("session.idleTimeoutSeconds"), "{e}");
        let e = TenantPolicy::parse(&json!({"session": {"idleTimeoutSecs": 600}})).unwrap_err();
        assert!(e.contains("session"), "{e}");
        let e = TenantPolicy::parse(&json!({"tokens": {"authorizationCodeSeconds": 3600}}))
            .unwrap_err();
        assert!(e.contains("authorizationCodeSeconds"), "{e}");
        let e = TenantPolicy::parse(&json!({"subjectTypes": ["secret"]})).unwrap_err();
        assert!(e.contains("subjectTypes"), "{e}");
        let e = TenantPolicy::parse(&json!({"requirePkce": "yes"})).unwrap_err();
        assert!(e.contains("requirePkce"), "{e}");
        for bad in ["e", "de_DE!", &"x".repeat(40)] {
            let e = TenantPolicy::parse(&json!({ "defaultLocale": bad })).unwrap_err();
            assert!(e.contains("defaultLocale"), "{e}");
        }
        let ok = TenantPolicy::parse(&json!({"defaultLocale": "pt-BR"})).unwrap();
        assert_eq!(ok.default_locale.as_deref(), Some("pt-BR"));
    }
}
