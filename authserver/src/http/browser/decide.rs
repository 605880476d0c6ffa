//! What an authorization request needs next, as a pure function of the request, the
//! browser's signed-in accounts and the stored consent — so every rule of OpenID
//! Connect Core §3.1.2.1 (`prompt`, `max_age`, `login_hint`) is unit-tested without HTTP.

use crate::clock::UnixTime;

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
}

/// The inputs of one decision.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    pub prompts: Prompts,
    pub max_age: Option<u64>,
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
    /// `prompt=none` and UI would be needed: this error goes back to the client.
    Error(&'static str),
}

/// Picks the account for the request, or says what must happen first.
pub fn account(s: &Situation<'_>) -> Next {
    // Signed in or chosen for this request: the prompts are satisfied.
    if let Some(chosen) = s.chosen_sid
        && let Some(a) = s.accounts.iter().find(|a| a.sid == chosen)
    {
        let fresh = a.auth_time >= s.request_created_at;
        if fresh || !max_age_exceeded(a, s.max_age, s.now) {
            return Next::Proceed(a.clone());
        }
        return login_or(s, Some(a.username.clone()), "login_required");
    }
    let hint = s.login_hint.map(str::trim).filter(|h| !h.is_empty());
    if s.accounts.is_empty() {
        return login_or(s, hint.map(str::to_owned), "login_required");
    }
    if s.prompts.login {
        // `prompt=none` with `login` is rejected by validation; keep the error anyway.
        return login_or(s, hint.map(str::to_owned), "login_required");
    }
    if s.prompts.select_account {
        return if s.prompts.none {
            Next::Error("account_selection_required")
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
            None => return login_or(s, Some(h.to_owned()), "login_required"),
        },
        None if s.accounts.len() == 1 => &s.accounts[0],
        None => {
            return if s.prompts.none {
                Next::Error("account_selection_required")
            } else {
                Next::SelectAccount
            };
        }
    };
    if max_age_exceeded(candidate, s.max_age, s.now) {
        return login_or(s, Some(candidate.username.clone()), "login_required");
    }
    Next::Proceed(candidate.clone())
}

fn login_or(s: &Situation<'_>, username: Option<String>, error: &'static str) -> Next {
    if s.prompts.none {
        Next::Error(error)
    } else {
        Next::Login { username }
    }
}

/// `auth_time + max_age < now` (OpenID Connect Core §3.1.2.1); `max_age=0` means a
/// fresh sign-in every time.
pub fn max_age_exceeded(a: &Account, max_age: Option<u64>, now: UnixTime) -> bool {
    match max_age {
        None => false,
        Some(0) => true,
        Some(m) => {
            a.auth_time
                .saturating_add(i64::try_from(m).unwrap_or(i64::MAX))
                < now
        }
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
        }
    }

    fn situation<'a>(accounts: &'a [Account], prompt: &str) -> Situation<'a> {
        Situation {
            prompts: Prompts::parse(Some(prompt)),
            max_age: None,
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
            Next::Error("login_required")
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
            Next::Error("account_selection_required")
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
            Next::Error("account_selection_required")
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
                assert_eq!(account(&none), Next::Error("login_required"));
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
}
