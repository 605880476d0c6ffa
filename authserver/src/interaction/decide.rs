//! What an authorization request needs next, as a pure function of the request, the
//! browser's signed-in accounts and the stored consent — so every rule of OpenID
//! Connect Core §3.1.2.1 (`prompt`, `max_age`, `login_hint`, `acr_values`) is unit-tested
//! without HTTP. The re-authentication rules live in [`Demands`], which both the page
//! flow and the code issuance check: no page the browser posts to (chooser, consent)
//! can advance a request whose authentication is not fresh or strong enough.

use crate::clock::UnixTime;
use crate::oauth::ErrorCode;

/// `acr` of a password-only sign-in (documented in docs/security.md).
pub const ACR_PASSWORD: &str = "1";
/// `acr` of a sign-in with a second factor (TOTP or a recovery code).
pub const ACR_MFA: &str = "2";
/// `acr` of a phishing-resistant sign-in: a passkey, alone (with user verification) or
/// as the second factor (`phr`, OpenID Connect EAP ACR Values 1.0).
pub const ACR_PHISHING_RESISTANT: &str = "phr";
/// What `acr_values_supported` advertises, weakest first.
pub const ACR_VALUES_SUPPORTED: [&str; 3] = [ACR_PASSWORD, ACR_MFA, ACR_PHISHING_RESISTANT];

/// The strength of an `acr`: 0 for none or an unknown value.
pub fn acr_level(acr: Option<&str>) -> u8 {
    match acr {
        Some(ACR_PASSWORD) => 1,
        Some(ACR_MFA) => 2,
        Some(ACR_PHISHING_RESISTANT) => 3,
        _ => 0,
    }
}

/// What `acr_values` asks of the authentication (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcrDemand {
    /// No `acr_values`: any sign-in will do.
    Any,
    /// At least this level (the weakest value listed that we support: any listed value
    /// is acceptable to the client).
    AtLeast(u8),
    /// Only values we cannot satisfy: `unmet_authentication_requirements`, never a
    /// silent downgrade.
    Unmet,
}

impl AcrDemand {
    pub fn of(acr_values: &[String]) -> Self {
        if acr_values.is_empty() {
            return AcrDemand::Any;
        }
        acr_values
            .iter()
            .map(|v| acr_level(Some(v)))
            .filter(|l| *l > 0)
            .min()
            .map_or(AcrDemand::Unmet, AcrDemand::AtLeast)
    }

    /// Whether a sign-in needs a second factor to satisfy this demand.
    pub fn needs_second_factor(self) -> bool {
        matches!(self, AcrDemand::AtLeast(l) if l >= acr_level(Some(ACR_MFA)))
    }

    /// Whether only a passkey satisfies this demand (a code would not).
    pub fn needs_passkey(self) -> bool {
        matches!(self, AcrDemand::AtLeast(l) if l >= acr_level(Some(ACR_PHISHING_RESISTANT)))
    }
}

/// What a request demands of the sign-in behind its code: `prompt=login`, `max_age` and
/// `acr_values`. Decided here once, checked on every path that issues a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demands {
    pub login: bool,
    pub max_age: Option<u64>,
    pub acr: AcrDemand,
    /// When the authorization request was stored: a sign-in after it is fresh.
    pub request_created_at: UnixTime,
}

impl Demands {
    /// Whether a sign-in at `auth_time` with `acr` satisfies the request at `now`.
    pub fn satisfied_by(&self, auth_time: UnixTime, acr: Option<&str>, now: UnixTime) -> bool {
        let fresh = auth_time >= self.request_created_at;
        let recent_enough =
            fresh || (!self.login && !max_age_exceeded(auth_time, self.max_age, now));
        let strong_enough = match self.acr {
            AcrDemand::Any => true,
            AcrDemand::AtLeast(level) => acr_level(acr) >= level,
            AcrDemand::Unmet => false,
        };
        recent_enough && strong_enough
    }
}

/// The `prompt` values (OpenID Connect Core §3.1.2.1).
// Four independent flags: exactly the four `prompt` values of the spec.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompts {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

#[cfg(test)]
impl Prompts {
    /// Parses the space-separated `prompt` (unknown values are the validator's concern).
    pub fn parse(prompt: Option<&str>) -> Self {
        let mut p = Self::default();
        for v in prompt.unwrap_or("").split_whitespace() {
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                "select_account" => p.select_account = true,
                _ => {}
            }
        }
        p
    }
}

/// A signed-in account as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub sid: String,
    pub user_id: String,
    pub username: String,
    pub auth_time: UnixTime,
    pub acr: Option<String>,
}

/// The inputs of one decision.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    pub prompts: Prompts,
    pub max_age: Option<u64>,
    pub acr: AcrDemand,
    pub login_hint: Option<&'a str>,
    /// When the authorization request was stored: a sign-in after it satisfies
    /// `prompt=login` and `max_age`.
    pub request_created_at: UnixTime,
    /// The browser's valid accounts, newest first.
    pub accounts: &'a [Account],
    /// The account signed in or chosen for this very request (`login_sid`).
    pub chosen_sid: Option<&'a str>,
    pub now: UnixTime,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Show the sign-in form (pre-filled with the hint).
    Login { username: Option<String> },
    /// Show the account chooser.
    SelectAccount,
    /// Use this account (consent is decided by [`needs_consent`]).
    Proceed(Account),
    /// The request cannot go on (`prompt=none` and UI would be needed, or `acr_values`
    /// we cannot satisfy): this error goes back to the client.
    Error(ErrorCode),
}

impl Situation<'_> {
    /// The request's re-authentication rules.
    pub fn demands(&self) -> Demands {
        Demands {
            login: self.prompts.login,
            max_age: self.max_age,
            acr: self.acr,
            request_created_at: self.request_created_at,
        }
    }

    /// Whether `a` satisfies the request. Only an account signed in (or chosen) for this
    /// very request can count as a sign-in after it: with one-second timestamps, an
    /// account that merely exists may have signed in the same second before the request.
    fn satisfied_by(&self, a: &Account, for_this_request: bool) -> bool {
        let demands = if for_this_request {
            self.demands()
        } else {
            Demands {
                request_created_at: UnixTime::MAX,
                ..self.demands()
            }
        };
        demands.satisfied_by(a.auth_time, a.acr.as_deref(), self.now)
    }
}

/// Picks the account for the request, or says what must happen first.
pub fn account(s: &Situation<'_>) -> Next {
    if s.acr == AcrDemand::Unmet {
        return Next::Error(ErrorCode::UnmetAuthenticationRequirements);
    }
    // Signed in or chosen for this request: `select_account` is satisfied; `login`
    // (and an exceeded `max_age`, a too weak `acr`) only by a sign-in after the request
    // was made — the account chooser must not stand in for one.
    if let Some(chosen) = s.chosen_sid
        && let Some(a) = s.accounts.iter().find(|a| a.sid == chosen)
    {
        if s.satisfied_by(a, true) {
            return Next::Proceed(a.clone());
        }
        return login_or(s, Some(a.username.clone()), ErrorCode::LoginRequired);
    }
    let hint = s.login_hint.map(str::trim).filter(|h| !h.is_empty());
    if s.accounts.is_empty() {
        return login_or(s, hint.map(str::to_owned), ErrorCode::LoginRequired);
    }
    if s.prompts.login {
        // `prompt=none` with `login` is rejected by validation; keep the error anyway.
        return login_or(s, hint.map(str::to_owned), ErrorCode::LoginRequired);
    }
    if s.prompts.select_account {
        return if s.prompts.none {
            Next::Error(ErrorCode::AccountSelectionRequired)
        } else {
            Next::SelectAccount
        };
    }
    let candidate = match hint {
        Some(h) => match s
            .accounts
            .iter()
            .find(|a| a.username.eq_ignore_ascii_case(h))
        {
            Some(a) => a,
            None => return login_or(s, Some(h.to_owned()), ErrorCode::LoginRequired),
        },
        None if s.accounts.len() == 1 => &s.accounts[0],
        None => {
            return if s.prompts.none {
                Next::Error(ErrorCode::AccountSelectionRequired)
            } else {
                Next::SelectAccount
            };
        }
    };
    if !s.satisfied_by(candidate, false) {
        return login_or(
            s,
            Some(candidate.username.clone()),
            ErrorCode::LoginRequired,
        );
    }
    Next::Proceed(candidate.clone())
}

fn login_or(s: &Situation<'_>, username: Option<String>, error: ErrorCode) -> Next {
    if s.prompts.none {
        Next::Error(error)
    } else {
        Next::Login { username }
    }
}

/// `auth_time + max_age < now` (OpenID Connect Core §3.1.2.1); `max_age=0` means a
/// fresh sign-in every time.
pub fn max_age_exceeded(auth_time: UnixTime, max_age: Option<u64>, now: UnixTime) -> bool {
    match max_age {
        None => false,
        Some(0) => true,
        Some(m) => auth_time.saturating_add(i64::try_from(m).unwrap_or(i64::MAX)) < now,
    }
}

/// Whether the user must be asked: always with `prompt=consent`; never for a
/// first-party client; otherwise unless the stored consent covers every requested scope.
pub fn needs_consent(
    prompts: Prompts,
    first_party: bool,
    requested: &[String],
    consented: Option<&[String]>,
) -> bool {
    if prompts.consent {
        return true;
    }
    if first_party {
        return false;
    }
    match consented {
        Some(granted) => !requested.iter().all(|s| granted.contains(s)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 10_000;

    fn acct(sid: &str, name: &str, auth_time: i64) -> Account {
        Account {
            sid: sid.into(),
            user_id: format!("u-{name}"),
            username: name.into(),
            auth_time,
            acr: Some(ACR_PASSWORD.into()),
        }
    }

    fn situation<'a>(accounts: &'a [Account], prompt: &str) -> Situation<'a> {
        Situation {
            prompts: Prompts::parse(Some(prompt)),
            max_age: None,
            acr: AcrDemand::Any,
            login_hint: None,
            request_created_at: NOW - 5,
            accounts,
            chosen_sid: None,
            now: NOW,
        }
    }

    #[test]
    fn without_a_session_the_user_signs_in_or_prompt_none_fails() {
        let s = situation(&[], "");
        assert_eq!(account(&s), Next::Login { username: None });
        let s = Situation {
            login_hint: Some("alice"),
            ..situation(&[], "")
        };
        assert_eq!(
            account(&s),
            Next::Login {
                username: Some("alice".into())
            }
        );
        assert_eq!(
            account(&situation(&[], "none")),
            Next::Error(ErrorCode::LoginRequired)
        );
    }

    #[test]
    fn one_account_is_used_several_need_a_choice() {
        let one = [acct("s1", "alice", NOW - 100)];
        assert_eq!(account(&situation(&one, "")), Next::Proceed(one[0].clone()));
        assert_eq!(
            account(&situation(&one, "none")),
            Next::Proceed(one[0].clone())
        );
        let two = [acct("s2", "bob", NOW - 50), acct("s1", "alice", NOW - 100)];
        assert_eq!(account(&situation(&two, "")), Next::SelectAccount);
        assert_eq!(
            account(&situation(&two, "none")),
            Next::Error(ErrorCode::AccountSelectionRequired)
        );
        // A login_hint picks the matching account, or asks to sign it in.
        let s = Situation {
            login_hint: Some("Alice"),
            ..situation(&two, "none")
        };
        assert_eq!(account(&s), Next::Proceed(two[1].clone()));
        let s = Situation {
            login_hint: Some("carol"),
            ..situation(&two, "")
        };
        assert_eq!(
            account(&s),
            Next::Login {
                username: Some("carol".into())
            }
        );
    }

    #[test]
    fn prompt_login_and_select_account_ask_even_with_a_session() {
        let one = [acct("s1", "alice", NOW - 100)];
        assert_eq!(
            account(&situation(&one, "login")),
            Next::Login { username: None }
        );
        assert_eq!(
            account(&situation(&one, "select_account")),
            Next::SelectAccount
        );
        assert_eq!(
            account(&situation(&one, "none select_account")),
            Next::Error(ErrorCode::AccountSelectionRequired)
        );
        // Once signed in (or chosen) for this request, the prompt is satisfied.
        let fresh = [acct("s9", "alice", NOW)];
        let s = Situation {
            chosen_sid: Some("s9"),
            ..situation(&fresh, "login")
        };
        assert_eq!(account(&s), Next::Proceed(fresh[0].clone()));
        let s = Situation {
            chosen_sid: Some("s1"),
            ..situation(&one, "select_account")
        };
        assert_eq!(account(&s), Next::Proceed(one[0].clone()));
    }

    #[test]
    fn choosing_an_old_account_does_not_satisfy_prompt_login() {
        let old = [acct("s1", "alice", NOW - 100), acct("s2", "bob", NOW - 50)];
        for prompt in ["login", "login select_account", "login consent"] {
            let s = Situation {
                chosen_sid: Some("s1"),
                ..situation(&old, prompt)
            };
            assert_eq!(
                account(&s),
                Next::Login {
                    username: Some("alice".into())
                },
                "{prompt}"
            );
        }
        // Signed in again after the request: that satisfies it.
        let fresh = [acct("s3", "alice", NOW - 5), acct("s2", "bob", NOW - 50)];
        let s = Situation {
            chosen_sid: Some("s3"),
            ..situation(&fresh, "login")
        };
        assert_eq!(account(&s), Next::Proceed(fresh[0].clone()));
    }

    #[test]
    fn max_age_forces_a_fresh_sign_in() {
        let a = [acct("s1", "alice", NOW - 100)];
        for (max_age, exceeded) in [
            (None, false),
            (Some(100), false),
            (Some(99), true),
            (Some(0), true),
        ] {
            let s = Situation {
                max_age,
                ..situation(&a, "")
            };
            let expected = if exceeded {
                Next::Login {
                    username: Some("alice".into()),
                }
            } else {
                Next::Proceed(a[0].clone())
            };
            assert_eq!(account(&s), expected, "max_age {max_age:?}");
            let none = Situation {
                max_age,
                ..situation(&a, "none")
            };
            if exceeded {
                assert_eq!(account(&none), Next::Error(ErrorCode::LoginRequired));
            }
        }
        // max_age=0 after signing in for this request does not loop back to the form.
        let fresh = [acct("s2", "alice", NOW - 3)];
        let s = Situation {
            max_age: Some(0),
            chosen_sid: Some("s2"),
            ..situation(&fresh, "")
        };
        assert_eq!(account(&s), Next::Proceed(fresh[0].clone()));
        // A chosen account older than the request still obeys max_age.
        let s = Situation {
            max_age: Some(10),
            chosen_sid: Some("s1"),
            ..situation(&a, "")
        };
        assert!(matches!(account(&s), Next::Login { .. }));
    }

    #[test]
    fn consent_is_skipped_for_first_party_and_covered_scopes_only() {
        let req: Vec<String> = vec!["openid".into(), "email".into()];
        let none = Prompts::default();
        assert!(needs_consent(none, false, &req, None));
        assert!(!needs_consent(none, true, &req, None));
        let granted: Vec<String> = vec!["email".into(), "openid".into(), "profile".into()];
        assert!(!needs_consent(none, false, &req, Some(&granted)));
        let partial: Vec<String> = vec!["openid".into()];
        assert!(needs_consent(none, false, &req, Some(&partial)));
        let consent = Prompts::parse(Some("consent"));
        assert!(needs_consent(consent, true, &req, Some(&granted)));
    }

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn acr_values_demand_the_weakest_supported_level_or_are_unmet() {
        assert_eq!(AcrDemand::of(&[]), AcrDemand::Any);
        assert_eq!(AcrDemand::of(&values(&["2"])), AcrDemand::AtLeast(2));
        assert_eq!(AcrDemand::of(&values(&["2", "1"])), AcrDemand::AtLeast(1));
        assert_eq!(
            AcrDemand::of(&values(&["urn:x:loa:4", "2"])),
            AcrDemand::AtLeast(2)
        );
        assert_eq!(AcrDemand::of(&values(&["urn:x:loa:4"])), AcrDemand::Unmet);
        assert!(AcrDemand::AtLeast(2).needs_second_factor());
        assert!(!AcrDemand::AtLeast(1).needs_second_factor());
        assert!(!AcrDemand::Any.needs_second_factor());
        // Phishing-resistant: only a passkey, and it also satisfies "2".
        assert_eq!(AcrDemand::of(&values(&["phr"])), AcrDemand::AtLeast(3));
        assert!(AcrDemand::AtLeast(3).needs_passkey());
        assert!(AcrDemand::AtLeast(3).needs_second_factor());
        assert!(!AcrDemand::AtLeast(2).needs_passkey());
        assert!(acr_level(Some(ACR_PHISHING_RESISTANT)) > acr_level(Some(ACR_MFA)));
    }

    #[test]
    fn unmet_acr_values_fail_instead_of_downgrading() {
        let one = [acct("s1", "alice", NOW - 100)];
        for prompt in ["", "none"] {
            let s = Situation {
                acr: AcrDemand::Unmet,
                ..situation(&one, prompt)
            };
            assert_eq!(
                account(&s),
                Next::Error(ErrorCode::UnmetAuthenticationRequirements)
            );
        }
    }

    #[test]
    fn a_password_session_steps_up_for_a_second_factor_and_the_chooser_cannot_skip_it() {
        let one = [acct("s1", "alice", NOW - 100)];
        let s = Situation {
            acr: AcrDemand::AtLeast(2),
            ..situation(&one, "")
        };
        assert_eq!(
            account(&s),
            Next::Login {
                username: Some("alice".into())
            }
        );
        // Chosen in the account chooser for this request: still not strong enough.
        let chosen = Situation {
            chosen_sid: Some("s1"),
            ..s.clone()
        };
        assert_eq!(
            account(&chosen),
            Next::Login {
                username: Some("alice".into())
            }
        );
        let none = Situation {
            prompts: Prompts::parse(Some("none")),
            ..s.clone()
        };
        assert_eq!(account(&none), Next::Error(ErrorCode::LoginRequired));
        // A sign-in with a second factor satisfies it, old or new.
        let strong = [Account {
            acr: Some(ACR_MFA.into()),
            ..acct("s1", "alice", NOW - 100)
        }];
        let s = Situation {
            accounts: &strong,
            ..s
        };
        assert_eq!(account(&s), Next::Proceed(strong[0].clone()));
    }

    #[test]
    fn demands_are_met_only_by_a_fresh_enough_and_strong_enough_sign_in() {
        let d = Demands {
            login: true,
            max_age: None,
            acr: AcrDemand::Any,
            request_created_at: NOW - 5,
        };
        assert!(
            !d.satisfied_by(NOW - 6, Some(ACR_PASSWORD), NOW),
            "before the request"
        );
        assert!(
            d.satisfied_by(NOW - 5, Some(ACR_PASSWORD), NOW),
            "after the request"
        );
        let d = Demands {
            login: false,
            max_age: Some(0),
            ..d
        };
        assert!(!d.satisfied_by(NOW - 6, Some(ACR_PASSWORD), NOW));
        assert!(d.satisfied_by(NOW - 1, Some(ACR_PASSWORD), NOW));
        let d = Demands {
            max_age: Some(60),
            ..d
        };
        assert!(d.satisfied_by(NOW - 60, None, NOW));
        assert!(!d.satisfied_by(NOW - 61, None, NOW));
        let d = Demands {
            max_age: None,
            acr: AcrDemand::AtLeast(2),
            ..d
        };
        assert!(
            !d.satisfied_by(NOW, Some(ACR_PASSWORD), NOW),
            "fresh but too weak"
        );
        assert!(d.satisfied_by(NOW - 1000, Some(ACR_MFA), NOW));
        let d = Demands {
            acr: AcrDemand::Unmet,
            ..d
        };
        assert!(!d.satisfied_by(NOW, Some(ACR_MFA), NOW));
    }
}
