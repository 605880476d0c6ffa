//! The account chooser: the browser's signed-in accounts, plus "use another account"
//! (→ the sign-in form). Choosing one makes it the active account and, with a request,
//! continues the request with it — as a choice, not a sign-in: the request's
//! re-authentication rules still apply when the code is issued.

use super::authorization::browser_mut;
use super::sign_in::restart;
use super::{Chooser, Engine, Error, Outcome, Step, Visit, finish};

impl Engine<'_> {
    /// The chooser page; the sign-in form when nobody is signed in here.
    pub async fn chooser(&self, visit: &Visit, request: Option<&str>) -> Result<Outcome, Error> {
        finish(
            async {
                let Some(browser) = visit.browser.as_ref() else {
                    return restart(request);
                };
                let sessions = self.sessions.accounts(browser).await?;
                if sessions.is_empty() {
                    return restart(request);
                }
                if let Some(handle) = request {
                    self.bound(visit, handle).await?;
                }
                let mut accounts = Vec::with_capacity(sessions.len());
                for (i, s) in sessions.iter().enumerate() {
                    if let Some(user) = self.store.get_user(&visit.tenant.id, &s.user_id).await? {
                        accounts.push((i, user.username));
                    }
                }
                Ok(Outcome::ShowChooser(Chooser {
                    request: request.map(str::to_owned),
                    accounts,
                }))
            }
            .await,
        )
    }

    /// The account at position `choice` of the chooser (`None`: "use another account",
    /// or a choice that no longer exists → the sign-in form).
    pub async fn choose(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        choice: Option<usize>,
    ) -> Result<Outcome, Error> {
        finish(self.choose_step(visit, request, choice).await)
    }

    async fn choose_step(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        choice: Option<usize>,
    ) -> Step<Outcome> {
        if let Some(handle) = request {
            self.bound(visit, handle).await?;
        }
        let browser = browser_mut(visit)?;
        let accounts = self.sessions.accounts(browser).await?;
        let Some(chosen) = choice.and_then(|i| accounts.into_iter().nth(i)) else {
            return restart(request);
        };
        browser.data.active_sid = Some(chosen.sid.clone());
        self.sessions.save(browser).await?;
        if let Some(handle) = request {
            return self.back_to_request(visit, handle, &chosen.sid).await;
        }
        let username = self
            .store
            .get_user(&visit.tenant.id, &chosen.user_id)
            .await?
            .map(|u| u.username)
            .unwrap_or_default();
        Ok(Outcome::SignedIn { username })
    }
}
