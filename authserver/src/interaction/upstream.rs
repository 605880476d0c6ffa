//! Sign-in through an upstream identity provider, as a step of the engine next to the
//! password and the passkey: off to the upstream ([`Engine::upstream_start`], or
//! straight from the sign-in form for home-realm discovery and a tenant's only
//! provider), back at the callback ([`Engine::upstream_callback`]), and — when the
//! upstream account matches a local user by e-mail — the proof of that account
//! ([`Engine::upstream_link`]). Every way ends in `signed_in`, so sessions, audit,
//! `amr`/`acr` and the second-factor policy are the password's.
//!
//! Which local user an upstream account signs in as:
//!
//! 1. the user it is linked to (its claims refreshed);
//! 2. otherwise, when a local user has its e-mail address: that user, but only if the
//!    upstream says the address is verified, the provider links by address, and the
//!    person proves the local account with its password or one of its passkeys —
//!    never silently;
//! 3. otherwise a new user (just-in-time provisioning), if the provider creates users.
//!
//! The callback's `state` must be the one this browser's session holds; the attempt
//! is taken out of the session and its `state` spent atomically before the code is
//! redeemed, so a replayed callback (or one from another browser) signs nobody in.

use secrecy::SecretString;
use serde_json::json;
use subtle::ConstantTimeEq as _;

use super::authorization::browser_mut;
use super::decide::{ACR_MFA, ACR_PASSWORD, ACR_PHISHING_RESISTANT, AcrDemand};
use super::passkey::amr as passkey_amr;
use super::sign_in::{FirstFactor, locked_problem};
use super::{
    Engine, Error, Halt, LinkForm, LoginProblem, Outcome, Step, UpstreamPage, UpstreamProblem,
    UpstreamRefusal, Visit, finish,
};
use crate::authorize::Prompt;
use crate::crypto::handle_hash;
use crate::domain::federation::UpstreamProvider;
use crate::domain::policy::TenantPolicy;
use crate::domain::tenant::Tenant;
use crate::federation::{Callback, FederationError, UpstreamAttempt, UpstreamIdentity, claims};
use crate::passkeys::{Expect, PasskeyError, Verified};
use crate::session::{CeremonyPurpose, PENDING_LOGIN_SECONDS, PendingLink};
use crate::store::federation::{self as links, FederatedIdentity, Refresh};
use crate::store::replay::ReplayCache;
use crate::store::users::StoredUser;

/// Our callback under the tenant's issuer: the `redirect_uri` registered at every
/// upstream.
pub const CALLBACK_PATH: &str = "/login/upstream/callback";

/// The link of `user_id` to the upstream account `identity`, made at `now`.
fn new_link(
    tenant_id: &str,
    provider: &UpstreamProvider,
    identity: &UpstreamIdentity,
    user_id: &str,
    now: crate::clock::UnixTime,
) -> FederatedIdentity {
    FederatedIdentity {
        tenant_id: tenant_id.to_owned(),
        provider_id: provider.id.clone(),
        subject: identity.subject.clone(),
        user_id: user_id.to_owned(),
        email: identity.email.clone(),
        claims: identity.forwarded.clone(),
        created_at: now,
        last_sign_in_at: now,
        tokens: identity.tokens.clone(),
    }
}

/// The redirect URI of a tenant's upstream sign-ins.
pub fn callback_uri(tenant: &Tenant) -> String {
    format!("{}{CALLBACK_PATH}", tenant.issuer)
}

/// How the person proved the local account an upstream account is linked to.
#[derive(Debug, Clone, Copy)]
enum LinkProof<'a> {
    Password,
    Passkey(&'a Verified),
}

impl LinkProof<'_> {
    /// Its name in the `upstream.linked` audit event.
    fn name(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Passkey(_) => "passkey",
        }
    }
}

/// The ways the owner of an address can prove the local account.
#[derive(Debug, Clone, Copy)]
struct LinkProofs {
    password: bool,
    passkey: bool,
}

impl LinkProofs {
    fn any(self) -> bool {
        self.password || self.passkey
    }
}

/// "Prove it is your account", for `pending`.
fn link_form(
    provider: &UpstreamProvider,
    pending: &PendingLink,
    proofs: LinkProofs,
    problem: Option<LoginProblem>,
) -> Outcome {
    Outcome::ShowUpstream(UpstreamPage::Link(LinkForm {
        request: pending.request.clone(),
        provider: provider.display_name.clone(),
        username: pending.username.clone(),
        password: proofs.password,
        passkey: proofs.passkey,
        problem,
    }))
}

pub(super) fn refused(
    request: Option<&str>,
    provider: Option<&UpstreamProvider>,
    problem: UpstreamProblem,
) -> Outcome {
    Outcome::ShowUpstream(UpstreamPage::Refused(UpstreamRefusal {
        request: request.map(str::to_owned),
        provider: provider.map(|p| p.display_name.clone()),
        problem,
    }))
}

impl Engine<'_> {
    /// "Sign in with …" (`POST /login/upstream`, CSRF already checked): off to the
    /// provider, for the request if there is one.
    pub async fn upstream_start(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        provider_id: &str,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let (hint, prompt_login) = match request {
                    Some(handle) => {
                        let auth = self.bound(visit, handle).await?.auth;
                        let login = auth.prompt.contains(&Prompt::Login);
                        (auth.login_hint, login)
                    }
                    None => (None, false),
                };
                let federation = TenantPolicy::of(&visit.tenant).federation;
                // A directory has no button: its sign-in is the password form.
                let Some(provider) = federation.redirecting_provider(provider_id) else {
                    return Ok(refused(request, None, UpstreamProblem::UnknownProvider));
                };
                self.go_upstream(visit, request, provider, hint.as_deref(), prompt_login)
                    .await
            }
            .await,
        )
    }

    /// Starts a sign-in at `provider`: the attempt (state, nonce, PKCE verifier) into
    /// the browser's session, the browser to the upstream.
    pub(super) async fn go_upstream(
        &self,
        visit: &mut Visit,
        request: Option<&str>,
        provider: &UpstreamProvider,
        login_hint: Option<&str>,
        prompt_login: bool,
    ) -> Step<Outcome> {
        let redirect_uri = callback_uri(&visit.tenant);
        let begun = self
            .federation
            .begin(provider, &redirect_uri, request, login_hint, prompt_login)
            .await;
        let (url, attempt) = match begun {
            Ok(b) => b,
            Err(e) => {
                self.upstream_failed(visit, provider, &e).await;
                return Ok(refused(
                    request,
                    Some(provider),
                    UpstreamProblem::UpstreamError,
                ));
            }
        };
        if visit.browser.is_none() {
            visit.browser = Some(self.sessions.create(&visit.tenant, &visit.origin).await?);
        }
        let browser = browser_mut(visit)?;
        browser.data.upstream = Some(attempt);
        self.sessions.save(browser).await?;
        Ok(Outcome::GoUpstream(url))
    }

    /// The upstream's answer (`GET /login/upstream/callback`).
    pub async fn upstream_callback(
        &self,
        visit: &mut Visit,
        callback: Callback,
    ) -> Result<Outcome, Error> {
        finish(self.callback_step(visit, callback).await)
    }

    async fn callback_step(&self, visit: &mut Visit, callback: Callback) -> Step<Outcome> {
        let Some(attempt) = self.take_attempt(visit, callback.state.as_deref()).await? else {
            self.audit_refusal(visit, None, "invalid_token", "state", None)
                .await;
            return Ok(refused(None, None, UpstreamProblem::Stale));
        };
        let request = attempt.request.as_deref();
        let federation = TenantPolicy::of(&visit.tenant).federation;
        let Some(provider) = federation.provider(&attempt.provider) else {
            return Ok(refused(request, None, UpstreamProblem::UnknownProvider));
        };
        let redirect_uri = callback_uri(&visit.tenant);
        let identity = match self
            .federation
            .complete(
                &visit.tenant.id,
                provider,
                &attempt,
                &redirect_uri,
                &callback,
            )
            .await
        {
            Ok(i) => i,
            Err(e) => {
                self.upstream_failed(visit, provider, &e).await;
                let problem = match &e {
                    FederationError::Invalid(_) => UpstreamProblem::InvalidResponse,
                    FederationError::Denied(_) => UpstreamProblem::NotAllowed,
                    _ if e.upstream_code() == Some("access_denied") => UpstreamProblem::Cancelled,
                    _ => UpstreamProblem::UpstreamError,
                };
                return Ok(refused(request, Some(provider), problem));
            }
        };
        self.upstream_account(visit, provider, identity, request)
            .await
    }

    /// The browser's attempt whose `state` is `state`, taken out of its session (saved
    /// at once) and spent: `None` for no attempt, another state, an expired attempt,
    /// or a state answered before (two callbacks racing with the same cookie).
    async fn take_attempt(
        &self,
        visit: &mut Visit,
        state: Option<&str>,
    ) -> Step<Option<UpstreamAttempt>> {
        let now = self.now();
        let state = state.unwrap_or_default();
        let Some(browser) = visit.browser.as_mut() else {
            return Ok(None);
        };
        let matches = browser.data.upstream.as_ref().is_some_and(|a| {
            !state.is_empty() && bool::from(a.state.as_bytes().ct_eq(state.as_bytes()))
        });
        let expired = browser
            .data
            .upstream
            .as_ref()
            .is_some_and(|a| a.expires_at <= now);
        if !matches && !expired {
            // Another browser's (or a forged) state: this browser's own sign-in stays.
            return Ok(None);
        }
        let Some(attempt) = browser.data.upstream.take() else {
            return Ok(None);
        };
        self.sessions.save(browser).await?;
        if expired {
            return Ok(None);
        }
        let first = self
            .store
            .use_jti(
                ReplayCache::UpstreamState,
                &visit.tenant.id,
                "",
                &handle_hash(&attempt.state),
                attempt.expires_at,
            )
            .await?;
        Ok(Some(attempt).filter(|_| first))
    }

    /// Which local user the upstream account signs in as (see the module docs).
    pub(super) async fn upstream_account(
        &self,
        visit: &mut Visit,
        provider: &UpstreamProvider,
        identity: UpstreamIdentity,
        request: Option<&str>,
    ) -> Step<Outcome> {
        let tenant = visit.tenant.clone();
        if let Some(link) = self
            .store
            .get_federated_identity(&tenant.id, &provider.id, &identity.subject)
            .await?
        {
            let Some(user) = self.store.get_user(&tenant.id, &link.user_id).await? else {
                return Err(Error::Invariant("a federated identity without its user").into());
            };
            let user = self.refresh_link(link, user, &identity).await?;
            return self
                .finish_upstream(visit, &user, &identity, request, None)
                .await;
        }
        if let Some(email) = identity.email.as_deref() {
            let owners = self.store.get_users_by_email(&tenant.id, email, 2).await?;
            if !owners.is_empty() {
                return self
                    .offer_link(visit, provider, identity, &owners, request)
                    .await;
            }
        }
        if !provider.jit_provisioning {
            self.audit_refusal(
                visit,
                None,
                "denied_by_policy",
                "not_provisioned",
                Some(provider),
            )
            .await;
            return Ok(refused(
                request,
                Some(provider),
                UpstreamProblem::NotProvisioned,
            ));
        }
        let Some(user) = self.provision(visit, provider, &identity).await? else {
            return Ok(refused(request, Some(provider), UpstreamProblem::Stale));
        };
        self.finish_upstream(visit, &user, &identity, request, None)
            .await
    }

    /// A local user has the upstream account's address: ask for the proof of that
    /// account (its password or a passkey) — if the upstream vouches for the address,
    /// the provider links by address and the account has a way to prove it; otherwise
    /// refuse (never a silent link).
    async fn offer_link(
        &self,
        visit: &mut Visit,
        provider: &UpstreamProvider,
        identity: UpstreamIdentity,
        owners: &[StoredUser],
        request: Option<&str>,
    ) -> Step<Outcome> {
        if !(identity.email_verified && provider.link_by_email) {
            let owner = owners.first().map(|u| u.user_id.as_str());
            self.audit_refusal(
                visit,
                owner,
                "denied_by_policy",
                "unverified_email",
                Some(provider),
            )
            .await;
            return Ok(refused(
                request,
                Some(provider),
                UpstreamProblem::UnverifiedEmail,
            ));
        }
        let [owner] = owners else {
            self.audit_refusal(
                visit,
                None,
                "denied_by_policy",
                "ambiguous_email",
                Some(provider),
            )
            .await;
            return Ok(refused(
                request,
                Some(provider),
                UpstreamProblem::CannotLink,
            ));
        };
        let proofs = self.link_proofs(visit, owner).await?;
        if !proofs.any() {
            self.audit_refusal(
                visit,
                Some(&owner.user_id),
                "denied_by_policy",
                "no_local_proof",
                Some(provider),
            )
            .await;
            return Ok(refused(
                request,
                Some(provider),
                UpstreamProblem::CannotLink,
            ));
        }
        let expires_at = self.now() + PENDING_LOGIN_SECONDS;
        let pending = PendingLink {
            identity,
            user_id: owner.user_id.clone(),
            username: owner.username.clone(),
            request: request.map(str::to_owned),
            expires_at,
        };
        let browser = browser_mut(visit)?;
        browser.data.link = Some(pending.clone());
        self.sessions.save(browser).await?;
        Ok(link_form(provider, &pending, proofs, None))
    }

    /// The local account's password for a pending link (`POST /login/upstream/link`,
    /// CSRF already checked). Counted by the sign-in throttle like the sign-in form.
    pub async fn upstream_link(
        &self,
        visit: &mut Visit,
        password: &SecretString,
    ) -> Result<Outcome, Error> {
        finish(self.link_step(visit, password).await)
    }

    async fn link_step(&self, visit: &mut Visit, password: &SecretString) -> Step<Outcome> {
        let (pending, provider) = self.pending_link(visit)?;
        let reservation = match self.reserve(visit, &pending.username).await? {
            Ok(r) => r,
            Err(locked) => {
                self.audit_failure(visit, Some(&pending.user_id), "locked")
                    .await;
                return self
                    .link_problem(visit, &provider, &pending, locked_problem(locked))
                    .await;
            }
        };
        let verified = match self
            .users
            .verify_and_maybe_rehash(&visit.tenant.id, &pending.username, password)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.release(reservation).await;
                return Err(e.into());
            }
        };
        // The account the link was offered for, still under that name.
        let Some(user) = verified.filter(|u| u.user_id == pending.user_id) else {
            self.audit_failure(visit, Some(&pending.user_id), "bad_password")
                .await;
            let problem = match self.throttle.failed(reservation).await {
                Some(locked) => locked_problem(locked),
                None => LoginProblem::Failed,
            };
            return self.link_problem(visit, &provider, &pending, problem).await;
        };
        self.release(reservation).await;
        self.forget_failures(visit, &user.username).await;
        self.complete_link(visit, &provider, &pending, LinkProof::Password)
            .await
    }

    /// A passkey of the local account for a pending link (`POST
    /// /login/upstream/link/passkey`, CSRF already checked): the answer to the
    /// [`CeremonyPurpose::Link`] ceremony started for that account.
    pub async fn upstream_link_passkey(
        &self,
        visit: &mut Visit,
        response: &str,
    ) -> Result<Outcome, Error> {
        finish(
            async {
                let (pending, provider) = self.pending_link(visit)?;
                let ceremony = self
                    .take_ceremony(visit, CeremonyPurpose::Link)
                    .await?
                    .filter(|c| c.user_id.as_deref() == Some(pending.user_id.as_str()));
                let verified = match ceremony {
                    Some(c) => {
                        self.passkeys
                            .finish_assertion(
                                &visit.tenant,
                                &c.state,
                                response,
                                Expect::User(&pending.user_id),
                            )
                            .await
                    }
                    None => Err(PasskeyError::Malformed("no ceremony".into())),
                };
                match verified {
                    Ok(v) => {
                        self.forget_failures(visit, &pending.username).await;
                        self.complete_link(visit, &provider, &pending, LinkProof::Passkey(&v))
                            .await
                    }
                    Err(e) => {
                        self.passkey_refused(visit, Some(&pending.user_id), e)
                            .await?;
                        self.link_problem(visit, &provider, &pending, LoginProblem::Passkey)
                            .await
                    }
                }
            }
            .await,
        )
    }

    /// The browser's pending link (unexpired) and its provider, or the page that says
    /// there is none.
    pub(super) fn pending_link(&self, visit: &Visit) -> Step<(PendingLink, UpstreamProvider)> {
        let now = self.now();
        let Some(pending) = visit
            .browser
            .as_ref()
            .and_then(|b| b.data.link.clone())
            .filter(|l| l.expires_at > now)
        else {
            return Err(Halt::Show(refused(None, None, UpstreamProblem::Stale)));
        };
        let federation = TenantPolicy::of(&visit.tenant).federation;
        let Some(provider) = federation.provider(&pending.identity.provider_id).cloned() else {
            let problem = UpstreamProblem::UnknownProvider;
            return Err(Halt::Show(refused(
                pending.request.as_deref(),
                None,
                problem,
            )));
        };
        Ok((pending, provider))
    }

    /// How the owner of an address can prove the account here: its password, and its
    /// passkeys when the tenant's passkeys are on.
    async fn link_proofs(&self, visit: &Visit, owner: &StoredUser) -> Step<LinkProofs> {
        let passkeys_on = TenantPolicy::of(&visit.tenant).passkeys.enabled
            && self.passkeys.available(&visit.tenant);
        let passkey = passkeys_on
            && self
                .mfa
                .status(&visit.tenant.id, &owner.user_id)
                .await?
                .passkeys
                > 0;
        Ok(LinkProofs {
            password: owner.password_hash.is_some(),
            passkey,
        })
    }

    /// The link page again, with `problem`.
    async fn link_problem(
        &self,
        visit: &Visit,
        provider: &UpstreamProvider,
        pending: &PendingLink,
        problem: LoginProblem,
    ) -> Step<Outcome> {
        let Some(owner) = self
            .store
            .get_user(&visit.tenant.id, &pending.user_id)
            .await?
        else {
            return Ok(refused(
                pending.request.as_deref(),
                Some(provider),
                UpstreamProblem::Stale,
            ));
        };
        let proofs = self.link_proofs(visit, &owner).await?;
        Ok(link_form(provider, pending, proofs, Some(problem)))
    }

    /// The local account is proved: the pending link is used up, the link made (unless
    /// another tab made it meanwhile), and the sign-in ends as the linked user.
    async fn complete_link(
        &self,
        visit: &mut Visit,
        provider: &UpstreamProvider,
        pending: &PendingLink,
        proof: LinkProof<'_>,
    ) -> Step<Outcome> {
        let request = pending.request.as_deref();
        let browser = browser_mut(visit)?;
        browser.data.link = None;
        self.sessions.save(browser).await?;
        let Some(user) = self
            .store
            .get_user(&visit.tenant.id, &pending.user_id)
            .await?
        else {
            return Ok(refused(request, Some(provider), UpstreamProblem::Stale));
        };
        if !self
            .link(visit, provider, &user, &pending.identity, proof)
            .await?
        {
            // Another tab linked this upstream account meanwhile.
            return Ok(refused(request, Some(provider), UpstreamProblem::Stale));
        }
        self.finish_upstream(visit, &user, &pending.identity, request, Some(proof))
            .await
    }

    /// Ends an upstream sign-in of `user` like every other: the e-mail gate, our second
    /// factor when it applies, then `signed_in` with `amr` `fed` + the upstream's (+
    /// `pwd` when the local password was just proved). A passkey that proved the local
    /// account ends it as a passkey sign-in does: it is a second factor already.
    async fn finish_upstream(
        &self,
        visit: &mut Visit,
        user: &StoredUser,
        identity: &UpstreamIdentity,
        request: Option<&str>,
        proof: Option<LinkProof<'_>>,
    ) -> Step<Outcome> {
        let event = self
            .event(visit, "upstream.sign_in", &user.user_id)
            .details(json!({
                "provider": identity.provider_id,
                "upstream_sub": identity.subject,
                "upstream_amr": identity.amr,
            }));
        self.store.audit(event).await;
        if self.email.blocks_sign_in(&visit.tenant, user) {
            self.audit_failure(visit, Some(&user.user_id), "email_unverified")
                .await;
            return Ok(refused(request, None, UpstreamProblem::EmailUnverified));
        }
        let mut amr = claims::amr(identity);
        match proof {
            Some(LinkProof::Password) if !amr.iter().any(|a| a == "pwd") => {
                amr.push("pwd".to_owned());
            }
            Some(LinkProof::Passkey(v)) => {
                let amr = passkey_amr(&amr, v);
                return self
                    .signed_in(visit, user, amr, ACR_PHISHING_RESISTANT, request)
                    .await;
            }
            _ => {}
        }
        let demand = match request {
            Some(handle) => AcrDemand::of(&self.bound(visit, handle).await?.auth.acr_values),
            None => AcrDemand::Any,
        };
        if let Some(next) = self
            .begin_second_factor(
                visit,
                user,
                request,
                demand,
                FirstFactor::Upstream(amr.clone()),
            )
            .await?
        {
            return Ok(next);
        }
        // The upstream's own multi-factor sign-in counts as one (RFC 8176 `mfa`).
        let acr = if claims::upstream_mfa(identity) {
            ACR_MFA
        } else {
            ACR_PASSWORD
        };
        self.signed_in(visit, user, amr, acr, request).await
    }

    /// The upstream sign-in refreshes what its claims map to: the link's forwarded
    /// claims and address, the user's name and (when the upstream verified it) address.
    async fn refresh_link(
        &self,
        link: FederatedIdentity,
        mut user: StoredUser,
        identity: &UpstreamIdentity,
    ) -> Step<StoredUser> {
        let now = self.now();
        let mut profile = user.profile.clone();
        if let Some(name) = &identity.name {
            profile.insert("name".into(), name.clone().into());
        }
        let email = identity
            .email
            .as_deref()
            .filter(|_| identity.email_verified)
            .map(|e| (e, true));
        let link = FederatedIdentity {
            claims: identity.forwarded.clone(),
            email: identity.email.clone(),
            tokens: identity.tokens.clone(),
            ..link
        };
        let mut unit = self.store.begin().await?;
        links::refresh(
            unit.conn(),
            &link,
            &user,
            &Refresh {
                profile: &profile,
                email,
                at: now,
            },
        )
        .await?;
        unit.commit().await?;
        if let Some((e, v)) = email {
            user.email = Some(e.to_owned());
            user.email_verified = v;
        }
        user.profile = profile;
        user.updated_at = now;
        Ok(user)
    }

    /// Links the upstream account to `user` (proved): the link and `upstream.linked` in
    /// one unit of work. `false` when the upstream account is linked already.
    async fn link(
        &self,
        visit: &Visit,
        provider: &UpstreamProvider,
        user: &StoredUser,
        identity: &UpstreamIdentity,
        proof: LinkProof<'_>,
    ) -> Step<bool> {
        let now = self.now();
        let link = new_link(&visit.tenant.id, provider, identity, &user.user_id, now);
        let mut unit = self.store.begin().await?;
        match links::insert(unit.conn(), &link).await {
            Err(crate::store::Error::Conflict { .. }) => return Ok(false),
            other => other?,
        }
        let event = self
            .event(visit, "upstream.linked", &user.user_id)
            .details(json!({ "provider": provider.id, "upstream_sub": identity.subject, "proof": proof.name() }));
        unit.audit(event);
        unit.commit().await?;
        tracing::info!(tenant = %visit.tenant.id, provider = %provider.id, user_id = %user.user_id, "upstream account linked");
        Ok(true)
    }

    /// Creates a user for the upstream account, with its link, in one unit of work.
    /// The username is the mapped claim when it is free, otherwise one made from the
    /// provider and the upstream subject: an upstream account never takes over a
    /// local user by name. `None` when the upstream account was linked meanwhile.
    async fn provision(
        &self,
        visit: &Visit,
        provider: &UpstreamProvider,
        identity: &UpstreamIdentity,
    ) -> Step<Option<StoredUser>> {
        let tenant = &visit.tenant;
        let now = self.now();
        let prefix: String = provider.id.chars().take(40).collect();
        let fallback = format!("{prefix}-{}", &handle_hash(&identity.subject)[..12]);
        for username in identity.username.iter().cloned().chain([fallback]) {
            if self
                .store
                .get_user_by_username(&tenant.id, &username)
                .await?
                .is_some()
            {
                continue;
            }
            let mut profile = serde_json::Map::new();
            if let Some(name) = &identity.name {
                profile.insert("name".into(), name.clone().into());
            }
            let user = StoredUser {
                tenant_id: tenant.id.clone(),
                user_id: crate::crypto::b64url(&crate::crypto::random_bytes::<16>()),
                username,
                email: identity.email.clone(),
                email_verified: identity.email_verified,
                profile,
                password_hash: None,
                created_at: now,
                updated_at: now,
            };
            let link = new_link(&tenant.id, provider, identity, &user.user_id, now);
            let mut unit = self.store.begin().await?;
            match links::insert_user(unit.conn(), &user).await {
                // Taken meanwhile: the next name.
                Err(crate::store::Error::Conflict { .. }) => continue,
                other => other?,
            }
            match links::insert(unit.conn(), &link).await {
                Err(crate::store::Error::Conflict { .. }) => return Ok(None),
                other => other?,
            }
            let event = self
                .event(visit, "upstream.provisioned", &user.user_id)
                .details(json!({
                    "provider": provider.id,
                    "upstream_sub": identity.subject,
                    "username": user.username,
                }));
            unit.audit(event);
            unit.commit().await?;
            tracing::info!(tenant = %tenant.id, provider = %provider.id, user_id = %user.user_id, "user provisioned from an upstream account");
            return Ok(Some(user));
        }
        Err(Error::Invariant("no free username for a provisioned user").into())
    }

    /// Logs and audits a failed exchange with the upstream by its class.
    pub(super) async fn upstream_failed(
        &self,
        visit: &Visit,
        provider: &UpstreamProvider,
        e: &FederationError,
    ) {
        if matches!(e, FederationError::Config(_)) {
            tracing::error!(tenant = %visit.tenant.id, provider = %provider.id, error = %e, "upstream sign-in impossible");
        } else {
            tracing::info!(tenant = %visit.tenant.id, provider = %provider.id, error = %e, "upstream sign-in failed");
        }
        let mut details = json!({ "reason": e.class(), "provider": provider.id });
        if let Some(code) = e.upstream_code() {
            details["upstream_error"] = code.into();
        }
        let event = self
            .event(visit, "login.failed", "")
            .subject(None)
            .details(details);
        self.store.audit(event).await;
    }

    /// Audits a refused upstream sign-in: `reason` is the class (`invalid_token`,
    /// `denied_by_policy`), `detail` says which rule.
    async fn audit_refusal(
        &self,
        visit: &Visit,
        user_id: Option<&str>,
        reason: &str,
        detail: &str,
        provider: Option<&UpstreamProvider>,
    ) {
        let event = self
            .event(visit, "login.failed", "")
            .subject(user_id)
            .details(json!({
                "reason": reason,
                "detail": detail,
                "provider": provider.map(|p| p.id.as_str()),
            }));
        self.store.audit(event).await;
    }
}
