//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): which sessions of the
//! visiting browser a sign-out request ends, and where the browser goes then.
//!
//! - `id_token_hint`: an ID token we issued (signature checked with the tenant's keys,
//!   `iss` must be this issuer; an expired one is fine — it names a session, it does not
//!   authenticate anyone). A hint only ever ends sessions of the browser that sends it:
//!   with a valid hint the session it names (`sid`, else the browser's active account)
//!   ends at once when this browser holds it. When this browser does not hold that `sid`
//!   (it is gone — signing in again makes a new one — or it is another browser's), this
//!   browser's accounts of the hint's user end instead: the hint's `sub` is compared with
//!   each account's subject as the hint's client sees it (public or pairwise); when none
//!   matches, the user confirms as without a hint. Anyone can obtain someone else's ID
//!   token (it travels through RPs and logs), so it must never sign another browser out.
//! - `client_id`: must be one of the hint's audiences when both are given.
//! - `post_logout_redirect_uri`: must equal one of that client's registered
//!   `post_logout_redirect_uris`; otherwise refused, never a redirect. `state` is
//!   passed back.
//! - Without a hint the user confirms first (a form posted with the CSRF token): a link
//!   alone must not sign anyone out.

use serde_json::{Value, json};

use super::authorization::browser;
use super::{Engine, Error, Visit};
use crate::crypto::jws;
use crate::domain::signing_key::Algorithm;

/// A sign-out request as the browser sent it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogoutRequest<'a> {
    pub id_token_hint: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
    pub posted: Posted,
}

/// Whether the request is the confirmation form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Posted {
    /// A link (`GET`).
    #[default]
    No,
    /// The confirmation form, with the session's CSRF token.
    Confirmed,
    /// A `POST` without the session's CSRF token.
    Forged,
}

/// How a sign-out request ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// Refused: shown to the user, never redirected.
    Refused(LogoutRefusal),
    /// A confirmation POST without the right CSRF token: nothing changed.
    Forged,
    /// Ask the user first (the page posts back with the same parameters).
    Confirm {
        username: Option<String>,
        client_id: Option<String>,
    },
    /// Done: back to the client (`redirect`, with its `state`) or the signed-out page;
    /// `clear_cookie` when the browser has no account left.
    SignedOut {
        redirect: Option<String>,
        clear_cookie: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutRefusal {
    /// The `id_token_hint` is not one of our ID tokens.
    InvalidHint,
    /// `client_id` is not an audience of the hint.
    ClientMismatch,
    /// `post_logout_redirect_uri` is not registered for the client.
    UnregisteredRedirect,
}

/// What a valid `id_token_hint` says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hint {
    audiences: Vec<String>,
    sub: Option<String>,
    sid: Option<String>,
}

impl Engine<'_> {
    /// Ends the sessions a sign-out request names, or says why not.
    pub async fn logout(
        &self,
        visit: &mut Visit,
        r: LogoutRequest<'_>,
    ) -> Result<LogoutOutcome, Error> {
        let tenant = visit.tenant.clone();
        let hint = match r.id_token_hint {
            Some(token) => match self.verify_hint(&tenant, token).await? {
                Some(h) => Some(h),
                None => return Ok(LogoutOutcome::Refused(LogoutRefusal::InvalidHint)),
            },
            None => None,
        };
        let client_id = match (r.client_id, &hint) {
            (Some(c), Some(h)) if !h.audiences.iter().any(|a| a == c) => {
                return Ok(LogoutOutcome::Refused(LogoutRefusal::ClientMismatch));
            }
            (Some(c), _) => Some(c.to_owned()),
            (None, Some(h)) if h.audiences.len() == 1 => h.audiences.first().cloned(),
            (None, _) => None,
        };
        let redirect = match r.post_logout_redirect_uri {
            Some(uri) => {
                let registered = match &client_id {
                    Some(c) => self
                        .oauth
                        .clients
                        .get(&tenant.id, c)
                        .await?
                        .is_some_and(|cl| {
                            cl.spec.post_logout_redirect_uris.iter().any(|u| u == uri)
                        }),
                    None => false,
                };
                if !registered {
                    return Ok(LogoutOutcome::Refused(LogoutRefusal::UnregisteredRedirect));
                }
                Some(with_state(uri, r.state))
            }
            None => None,
        };

        if let Some(hint) = hint {
            if let Some(sid) = hint.sid.as_deref() {
                let held = self
                    .store
                    .get_session(&tenant.id, sid)
                    .await?
                    .is_some_and(|s| {
                        visit
                            .browser
                            .as_ref()
                            .is_some_and(|b| b.row.id_hash == s.browser_id_hash)
                    });
                if !held {
                    return self.by_subject(visit, &hint, client_id, redirect).await;
                }
            }
            return self.end(visit, hint.sid.as_deref(), redirect).await;
        }
        if visit.browser.is_none() {
            // Nobody is signed in in this browser: nothing to confirm.
            return Ok(signed_out(redirect, true));
        }
        match r.posted {
            Posted::Forged => Ok(LogoutOutcome::Forged),
            Posted::Confirmed => self.end(visit, None, redirect).await,
            Posted::No => self.confirmation(visit, client_id).await,
        }
    }

    async fn confirmation(
        &self,
        visit: &Visit,
        client_id: Option<String>,
    ) -> Result<LogoutOutcome, Error> {
        let username = match self.sessions.active_account(browser(visit)?).await? {
            Some(a) => self
                .store
                .get_user(&visit.tenant.id, &a.user_id)
                .await?
                .map(|u| u.username),
            None => None,
        };
        Ok(LogoutOutcome::Confirm {
            username,
            client_id,
        })
    }

    /// The hint's `sid` is gone: ends this browser's accounts whose user the hint's
    /// `sub` names, each compared the way that client's ID tokens compute `sub` (public
    /// or pairwise, for any of the hint's audiences); when none matches, the
    /// confirmation page.
    async fn by_subject(
        &self,
        visit: &mut Visit,
        hint: &Hint,
        client_id: Option<String>,
        redirect: Option<String>,
    ) -> Result<LogoutOutcome, Error> {
        let tenant = visit.tenant.clone();
        let Some(b) = visit.browser.as_ref() else {
            // Nobody is signed in in this browser: nothing to end or confirm.
            return Ok(signed_out(redirect, true));
        };
        let accounts = self.sessions.accounts(b).await?;
        let mut specs = Vec::new();
        for aud in &hint.audiences {
            if let Some(c) = self.oauth.clients.get(&tenant.id, aud).await? {
                specs.push(c);
            }
        }
        let mut matching = Vec::new();
        if let Some(sub) = hint.sub.as_deref() {
            for account in &accounts {
                for client in &specs {
                    // A client whose subjects cannot be computed names nobody.
                    let expected = self
                        .oauth
                        .user_subject(&tenant, &client.spec, &account.user_id)
                        .await;
                    if expected.is_ok_and(|s| s == sub) {
                        matching.push(account);
                        break;
                    }
                }
            }
        }
        if matching.is_empty() {
            return self.confirmation(visit, client_id).await;
        }
        let mut remaining = true;
        for account in matching {
            remaining = self.end_account(visit, &account.sid).await?;
            let event = self
                .event(visit, "logout", &account.user_id)
                .details(json!({ "sid": account.sid, "hint_sid": hint.sid }));
            self.store.audit(event).await;
        }
        Ok(signed_out(redirect, !remaining))
    }

    /// Ends `sid` (or the browser's active account) when this browser holds it, and
    /// audits `logout`.
    async fn end(
        &self,
        visit: &mut Visit,
        sid: Option<&str>,
        redirect: Option<String>,
    ) -> Result<LogoutOutcome, Error> {
        let tenant = visit.tenant.clone();
        let target = match (sid, visit.browser.as_ref()) {
            (Some(sid), _) => self.store.get_session(&tenant.id, sid).await?,
            (None, Some(b)) => self.sessions.active_account(b).await?,
            (None, None) => None,
        };
        let has_browser = visit.browser.is_some();
        let Some(target) = target else {
            return Ok(signed_out(redirect, !has_browser));
        };
        if visit
            .browser
            .as_ref()
            .is_none_or(|b| b.row.id_hash != target.browser_id_hash)
        {
            // `logout` sends a hint naming another browser's session to `by_subject`;
            // should one get here all the same, it is not this browser's to end.
            return Ok(signed_out(redirect, !has_browser));
        }
        let remaining = self.end_account(visit, &target.sid).await?;
        let event = self
            .event(visit, "logout", &target.user_id)
            .details(json!({ "sid": target.sid }));
        self.store.audit(event).await;
        Ok(signed_out(redirect, !remaining))
    }

    /// Ends one account of the visiting browser; whether any remain.
    async fn end_account(&self, visit: &mut Visit, sid: &str) -> Result<bool, Error> {
        let tenant = visit.tenant.clone();
        let Some(b) = visit.browser.as_mut() else {
            return Ok(false);
        };
        Ok(self
            .sessions
            .end_account(&tenant, b, sid, &visit.origin)
            .await?)
    }

    /// Checks an `id_token_hint`: our signature (any of the tenant's published keys),
    /// our issuer, and the shape of an ID token — a header `typ`, when present, of `JWT`
    /// (so an access token, `at+jwt`, or any other JWT we sign is no hint), and `sub`
    /// and `aud`. Expiry is deliberately not checked. `None` when it is not one of our
    /// ID tokens.
    async fn verify_hint(
        &self,
        tenant: &crate::domain::tenant::Tenant,
        token: &str,
    ) -> Result<Option<Hint>, Error> {
        let Ok(parsed) = jws::parse(token) else {
            return Ok(None);
        };
        if !typ_is_id_token(parsed.header_str("typ")) {
            return Ok(None);
        }
        let Some(kid) = parsed.header_str("kid") else {
            return Ok(None);
        };
        let Some(jwk) = self.oauth.keys.public_jwk(&tenant.id, kid).await? else {
            return Ok(None);
        };
        if parsed.verify(&jwk, &Algorithm::ALL).is_err() {
            return Ok(None);
        }
        if parsed.claim_str("iss") != Some(tenant.issuer.as_str()) {
            return Ok(None);
        }
        let Some(sub) = parsed.claim_str("sub").filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let audiences = match parsed.claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => return Ok(None),
        };
        Ok(Some(Hint {
            audiences,
            sub: Some(sub.to_owned()),
            sid: parsed.claim_str("sid").map(str::to_owned),
        }))
    }
}

fn signed_out(redirect: Option<String>, clear_cookie: bool) -> LogoutOutcome {
    LogoutOutcome::SignedOut {
        redirect,
        clear_cookie,
    }
}

/// `uri` with `state` appended as a query parameter.
fn with_state(uri: &str, state: Option<&str>) -> String {
    let Some(state) = state else {
        return uri.to_owned();
    };
    match url::Url::parse(uri) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair("state", state);
            u.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

/// Our ID tokens say `typ: JWT`; a missing `typ` is tolerated (RFC 7515 makes it
/// optional), any other value (`at+jwt`, `logout+jwt`, …) is another kind of token.
fn typ_is_id_token(typ: Option<&str>) -> bool {
    typ.is_none_or(|t| t.eq_ignore_ascii_case("JWT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_id_token_typ_is_a_hint() {
        assert!(typ_is_id_token(None));
        assert!(typ_is_id_token(Some("JWT")));
        assert!(typ_is_id_token(Some("jwt")));
        assert!(!typ_is_id_token(Some("at+jwt")));
        assert!(!typ_is_id_token(Some("application/at+jwt")));
        assert!(!typ_is_id_token(Some("logout+jwt")));
    }

    #[test]
    fn state_is_appended_to_the_redirect() {
        assert_eq!(
            with_state("https://rp.example/bye?x=1", Some("a b")),
            "https://rp.example/bye?x=1&state=a+b"
        );
        assert_eq!(
            with_state("https://rp.example/bye", None),
            "https://rp.example/bye"
        );
    }
}
