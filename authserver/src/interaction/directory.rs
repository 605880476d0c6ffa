//! The password form against the tenant's LDAP directories (`kind: ldap` providers):
//! when no local password decides a sign-in, the username and password are checked by
//! the directories in order, and an account one of them accepts signs in exactly as an
//! upstream account does (link, linking by verified address with the local password,
//! just-in-time provisioning — see `upstream`), with `amr` `pwd`.
//!
//! The attempt was counted by the sign-in throttle before the local check; a refused
//! password is a failure like a local one (lockout included), an accepted one gives the
//! attempt back, and a directory that cannot be reached gives it back too (it says
//! nothing about the password) and shows the "could not sign you in" page.

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use super::sign_in::locked_problem;
use super::upstream::refused;
use super::{Engine, LoginProblem, Outcome, Step, UpstreamProblem, Visit};
use crate::domain::policy::TenantPolicy;
use crate::federation::DirectoryAnswer;
use crate::throttle::Reservation;

impl Engine<'_> {
    /// Whether `username` is a local user with a password of its own: then the local
    /// check decided, and no directory is asked.
    pub(super) async fn has_local_password(&self, visit: &Visit, username: &str) -> Step<bool> {
        Ok(self
            .users
            .get_by_username(&visit.tenant.id, username)
            .await?
            .is_some_and(|u| u.password_hash.is_some()))
    }

    /// Tries the tenant's directories with the form's username and password.
    pub(super) async fn directory_step(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        username: &str,
        password: &SecretString,
        reservation: Reservation,
    ) -> Step<Outcome> {
        let federation = TenantPolicy::of(&visit.tenant).federation;
        let mut reason = "unknown_user";
        let mut provider_id = None;
        // An empty password is an unauthenticated bind to LDAP: refused before any.
        if password.expose_secret().is_empty() {
            reason = "empty_password";
        } else {
            for (provider, _) in federation.directories() {
                match self
                    .federation
                    .directory_sign_in(provider, username, password)
                    .await
                {
                    Ok(DirectoryAnswer::Accepted(identity)) => {
                        self.succeeded(visit, reservation, username).await;
                        return self
                            .upstream_account(visit, provider, *identity, request)
                            .await;
                    }
                    Ok(DirectoryAnswer::NoSuchUser) => {}
                    Ok(DirectoryAnswer::WrongPassword) => {
                        reason = "bad_password";
                        provider_id = Some(provider.id.clone());
                        break;
                    }
                    Err(e) => {
                        self.release(reservation).await;
                        self.upstream_failed(visit, provider, &e).await;
                        return Ok(refused(
                            request,
                            Some(provider),
                            UpstreamProblem::UpstreamError,
                        ));
                    }
                }
            }
        }
        let event = self
            .event(visit, "login.failed", "")
            .subject(None)
            .details(json!({ "reason": reason, "provider": provider_id }));
        self.store.audit(event).await;
        let problem = match self.throttle.failed(reservation).await {
            Some(locked) => locked_problem(locked),
            None => LoginProblem::Failed,
        };
        Ok(self.show_login(visit, request, Some(username.to_owned()), Some(problem)))
    }
}
