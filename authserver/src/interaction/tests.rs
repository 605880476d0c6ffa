//! The engine's transitions, driven without HTTP on a real (SQLite) store with a fixed
//! clock (the crate's one in-process fixture, [`crate::testing::TestApp`]): each test is one path through the state machine, and the attacks on it
//! (a skipped step, a replayed handle, another browser's handle, the chooser or the
//! consent page standing in for a sign-in the request demands).

use std::sync::Arc;

use secrecy::SecretString;

use super::*;
use crate::authorize::{AuthRequest, ErrorRedirect, Prompt, ResponseMode};
use crate::clock::{Clock as _, FixedClock};
use crate::crypto::handle_hash;
use crate::domain::client::{ClientSpec, ClientType, GrantType};
use crate::http::AppState;
use crate::oauth::ErrorCode;
use crate::session::Origin;
use crate::store::Backend;
use crate::store::users::StoredUser;
use crate::testing::{NOW, PASSWORD, TestApp};

/// The one in-process fixture ([`TestApp`]) on SQLite, and the tenant the visits are to.
struct World {
    app: TestApp,
    state: AppState,
    clock: Arc<FixedClock>,
    tenant: Arc<crate::domain::tenant::Tenant>,
}

impl World {
    async fn new() -> Self {
        let app = TestApp::new(Backend::Sqlite).await;
        let (state, clock) = (app.state.clone(), Arc::clone(app.clock()));
        let tenant = app.tenant("main").await;
        Self {
            app,
            state,
            clock,
            tenant,
        }
    }

    fn engine(&self) -> Engine<'_> {
        self.state.interaction()
    }

    /// A browser with no session yet.
    fn visit(&self) -> Visit {
        Visit {
            tenant: self.tenant.clone(),
            origin: Origin {
                ip: Some("192.0.2.7".into()),
                user_agent: Some("test".into()),
                device: None,
            },
            browser: None,
            lang: crate::ui::i18n::Lang::default(),
        }
    }

    async fn client(&self, id: &str, first_party: bool) {
        self.app
            .client(ClientSpec {
                client_id: id.into(),
                client_type: ClientType::Confidential,
                grant_types: vec![GrantType::AuthorizationCode],
                redirect_uris: vec!["https://rp.example/cb".into()],
                first_party,
                ..ClientSpec::default()
            })
            .await;
    }

    async fn user(&self, username: &str) -> StoredUser {
        self.app.user(username).await
    }

    /// Signs `user` in in `visit`'s browser (creating the session), as a password
    /// sign-in would, without the Argon2 cost.
    async fn sign_in(&self, visit: &mut Visit, user: &StoredUser, acr: &str) {
        if visit.browser.is_none() {
            visit.browser = Some(
                self.state
                    .sessions
                    .create(&self.tenant, &visit.origin)
                    .await
                    .expect("browser"),
            );
        }
        let outcome = self
            .engine()
            .signed_in(visit, user, vec!["pwd".into()], acr, None)
            .await;
        assert!(matches!(outcome, Ok(Outcome::SignedIn { .. })));
    }

    async fn consumed(&self, handle: &str) -> bool {
        self.state
            .store
            .get_auth_request("main", &handle_hash(handle))
            .await
            .expect("read")
            .expect("stored")
            .consumed_at
            .is_some()
    }

    async fn events(&self) -> Vec<String> {
        self.state
            .store
            .list_audit("main", 100)
            .await
            .expect("audit")
            .into_iter()
            .map(|e| e.event)
            .collect()
    }
}

fn request(client_id: &str) -> AuthRequest {
    AuthRequest {
        client_id: client_id.into(),
        redirect_uri: "https://rp.example/cb".into(),
        response_mode: ResponseMode::Query,
        scopes: vec!["openid".into(), "email".into()],
        state: Some("st".into()),
        nonce: Some("n".into()),
        prompt: Vec::new(),
        max_age: None,
        login_hint: None,
        acr_values: Vec::new(),
        code_challenge: Some("c".repeat(43)),
        code_challenge_method: Some("S256".into()),
        dpop_jkt: None,
        ui_locales: None,
    }
}

fn handle_of(o: &Outcome) -> String {
    match o {
        Outcome::Go(_, Some(h)) => h.clone(),
        other => panic!("expected a step of a request, got {other:?}"),
    }
}

fn error_of(o: &Outcome) -> ErrorCode {
    match o {
        Outcome::RedirectWithError(ErrorRedirect { error, .. }) => *error,
        other => panic!("expected an error for the client, got {other:?}"),
    }
}

#[tokio::test]
async fn prompt_none_without_a_session_fails_at_once_and_stores_nothing() {
    let w = World::new().await;
    w.client("rp", true).await;
    let mut visit = w.visit();
    let auth = AuthRequest {
        prompt: vec![Prompt::None],
        ..request("rp")
    };
    let o = w.engine().start(&mut visit, auth).await.expect("start");
    assert_eq!(error_of(&o), ErrorCode::LoginRequired);
    assert!(visit.browser.is_none(), "no browser session is created");
}

#[tokio::test]
async fn a_full_sign_in_with_consent_issues_one_code_in_one_unit_of_work() {
    let w = World::new().await;
    w.client("rp", false).await;
    w.user("alice").await;
    let mut visit = w.visit();
    let o = w
        .engine()
        .start(&mut visit, request("rp"))
        .await
        .expect("start");
    assert!(matches!(o, Outcome::Go(Page::Login, Some(_))), "{o:?}");
    let handle = handle_of(&o);
    assert!(
        visit
            .browser
            .as_ref()
            .is_some_and(|b| b.set_cookie().is_some())
    );

    // A wrong password: the form again, the request still open.
    let o = w
        .engine()
        .password(
            &mut visit,
            Some(&handle),
            "alice",
            &SecretString::from("nope"),
        )
        .await
        .expect("password");
    assert!(matches!(
        o,
        Outcome::ShowLogin(LoginForm {
            problem: Some(LoginProblem::Failed),
            ..
        })
    ));
    let o = w
        .engine()
        .password(
            &mut visit,
            Some(&handle),
            " alice ",
            &SecretString::from(PASSWORD),
        )
        .await
        .expect("password");
    assert_eq!(o, Outcome::Go(Page::Continue, Some(handle.clone())));

    let o = w
        .engine()
        .resume(&mut visit, Some(&handle))
        .await
        .expect("resume");
    assert_eq!(o, Outcome::Go(Page::Consent, Some(handle.clone())));
    let o = w
        .engine()
        .consent_page(&visit, Some(&handle))
        .await
        .expect("page");
    let Outcome::ShowConsent(c) = o else {
        panic!("consent page expected, got {o:?}");
    };
    assert_eq!((c.client_id.as_str(), c.username.as_str()), ("rp", "alice"));

    let o = w
        .engine()
        .consent(&visit, Some(&handle), Some(Decision::Allow))
        .await
        .expect("consent");
    let Outcome::RedirectWithCode(code) = o else {
        panic!("a code expected, got {o:?}");
    };
    assert_eq!(code.state.as_deref(), Some("st"));
    assert!(w.consumed(&handle).await);
    let events = w.events().await;
    for e in [
        "login.failed",
        "login.succeeded",
        "consent.granted",
        "authorization.granted",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
    // Replayed: the request is used up.
    let o = w
        .engine()
        .consent(&visit, Some(&handle), Some(Decision::Allow))
        .await
        .expect("replay");
    assert_eq!(o, Outcome::ShowErrorPage(Problem::StaleRequest));
    // The consent is remembered: the next request goes straight to a code.
    let o = w
        .engine()
        .start(&mut visit, request("rp"))
        .await
        .expect("again");
    assert!(matches!(o, Outcome::RedirectWithCode(_)), "{o:?}");
}

#[tokio::test]
async fn a_request_used_up_meanwhile_leaves_nothing_of_the_consent_step() {
    let w = World::new().await;
    w.client("rp", false).await;
    let alice = w.user("alice").await;
    let mut visit = w.visit();
    w.sign_in(&mut visit, &alice, decide::ACR_PASSWORD).await;
    let o = w
        .engine()
        .start(&mut visit, request("rp"))
        .await
        .expect("start");
    let handle = handle_of(&o);
    // Another tab finished it first.
    assert!(
        w.state
            .store
            .consume_auth_request("main", &handle_hash(&handle), NOW)
            .await
            .expect("consume")
    );
    let o = w
        .engine()
        .consent(&visit, Some(&handle), Some(Decision::Allow))
        .await
        .expect("consent");
    assert_eq!(o, Outcome::ShowErrorPage(Problem::StaleRequest));
    let consent = w
        .state
        .store
        .consent_scopes("main", &alice.user_id, "rp")
        .await
        .expect("read");
    assert_eq!(consent, None, "the consent was rolled back with the step");
}

#[tokio::test]
async fn consent_deny_sends_access_denied_and_uses_the_request_up() {
    let w = World::new().await;
    w.client("rp", false).await;
    let alice = w.user("alice").await;
    let mut visit = w.visit();
    w.sign_in(&mut visit, &alice, decide::ACR_PASSWORD).await;
    let handle = handle_of(
        &w.engine()
            .start(&mut visit, request("rp"))
            .await
            .expect("start"),
    );
    let o = w
        .engine()
        .consent(&visit, Some(&handle), Some(Decision::Deny))
        .await
        .expect("deny");
    assert_eq!(error_of(&o), ErrorCode::AccessDenied);
    assert!(w.consumed(&handle).await);
    assert!(w.events().await.iter().any(|e| e == "consent.denied"));
    // No decision at all: the page says so, nothing happens.
    let handle = handle_of(
        &w.engine()
            .start(&mut visit, request("rp"))
            .await
            .expect("start"),
    );
    let o = w
        .engine()
        .consent(&visit, Some(&handle), None)
        .await
        .expect("none");
    assert_eq!(o, Outcome::ShowErrorPage(Problem::NoDecision));
    assert!(!w.consumed(&handle).await);
}

#[tokio::test]
async fn prompt_none_needing_consent_or_unmet_acr_values_fail_for_the_client() {
    let w = World::new().await;
    w.client("rp", false).await;
    let alice = w.user("alice").await;
    let mut visit = w.visit();
    w.sign_in(&mut visit, &alice, decide::ACR_PASSWORD).await;
    let auth = AuthRequest {
        prompt: vec![Prompt::None],
        ..request("rp")
    };
    let o = w.engine().start(&mut visit, auth).await.expect("start");
    assert_eq!(error_of(&o), ErrorCode::ConsentRequired);
    let auth = AuthRequest {
        acr_values: vec!["urn:x:loa:4".into()],
        ..request("rp")
    };
    let o = w.engine().start(&mut visit, auth).await.expect("start");
    assert_eq!(error_of(&o), ErrorCode::UnmetAuthenticationRequirements);
}

#[tokio::test]
async fn the_chooser_cannot_stand_in_for_the_sign_in_prompt_login_demands() {
    let w = World::new().await;
    w.client("rp", true).await;
    let alice = w.user("alice").await;
    let bob = w.user("bob").await;
    let mut visit = w.visit();
    w.sign_in(&mut visit, &alice, decide::ACR_PASSWORD).await;
    w.sign_in(&mut visit, &bob, decide::ACR_PASSWORD).await;

    // Two accounts, no hint: the chooser.
    let handle = handle_of(
        &w.engine()
            .start(&mut visit, request("rp"))
            .await
            .expect("start"),
    );
    let o = w
        .engine()
        .chooser(&visit, Some(&handle))
        .await
        .expect("chooser");
    let Outcome::ShowChooser(chooser) = o else {
        panic!("chooser expected, got {o:?}");
    };
    let alice_index = chooser
        .accounts
        .iter()
        .find(|(_, name)| name == "alice")
        .map(|(i, _)| *i);
    let o = w
        .engine()
        .choose(&mut visit, Some(&handle), alice_index)
        .await
        .expect("choose");
    assert_eq!(o, Outcome::Go(Page::Continue, Some(handle.clone())));
    let o = w
        .engine()
        .resume(&mut visit, Some(&handle))
        .await
        .expect("resume");
    assert!(matches!(o, Outcome::RedirectWithCode(_)), "{o:?}");

    // prompt=login: a request made after both sign-ins; choosing an old account and
    // posting to continue or consent gets the sign-in form, never a code.
    w.clock.advance(30);
    let auth = AuthRequest {
        prompt: vec![Prompt::Login],
        ..request("rp")
    };
    let o = w.engine().start(&mut visit, auth).await.expect("start");
    let handle = handle_of(&o);
    assert_eq!(o, Outcome::Go(Page::Login, Some(handle.clone())));
    let o = w
        .engine()
        .choose(&mut visit, Some(&handle), alice_index)
        .await
        .expect("choose");
    assert_eq!(o, Outcome::Go(Page::Continue, Some(handle.clone())));
    let o = w
        .engine()
        .resume(&mut visit, Some(&handle))
        .await
        .expect("resume");
    assert_eq!(o, Outcome::Go(Page::Login, Some(handle.clone())));
    let o = w
        .engine()
        .consent(&visit, Some(&handle), Some(Decision::Allow))
        .await
        .expect("consent");
    assert_eq!(o, Outcome::Go(Page::Login, Some(handle.clone())));
    assert!(!w.consumed(&handle).await, "no code was issued");

    // Signing in again for the request satisfies it.
    let o = w
        .engine()
        .signed_in(
            &mut visit,
            &alice,
            vec!["pwd".into()],
            decide::ACR_PASSWORD,
            Some(&handle),
        )
        .await;
    assert!(matches!(o, Ok(Outcome::Go(Page::Continue, _))));
    let o = w
        .engine()
        .resume(&mut visit, Some(&handle))
        .await
        .expect("resume");
    assert!(matches!(o, Outcome::RedirectWithCode(_)), "{o:?}");
}

#[tokio::test]
async fn max_age_and_a_second_factor_demand_are_checked_when_the_code_is_issued() {
    let w = World::new().await;
    w.client("rp", true).await;
    let alice = w.user("alice").await;
    let mut visit = w.visit();
    w.sign_in(&mut visit, &alice, decide::ACR_PASSWORD).await;
    w.clock.advance(120);
    let auth = AuthRequest {
        max_age: Some(60),
        ..request("rp")
    };
    let o = w.engine().start(&mut visit, auth).await.expect("start");
    assert!(matches!(o, Outcome::Go(Page::Login, Some(_))), "{o:?}");
    let auth = AuthRequest {
        max_age: Some(600),
        ..request("rp")
    };
    let o = w.engine().start(&mut visit, auth).await.expect("start");
    assert!(matches!(o, Outcome::RedirectWithCode(_)), "{o:?}");

    // acr_values=2 with a password session: sign in again, with a second factor.
    let auth = AuthRequest {
        acr_values: vec![decide::ACR_MFA.into()],
        ..request("rp")
    };
    let o = w.engine().start(&mut visit, auth).await.expect("start");
    let handle = handle_of(&o);
    assert_eq!(o, Outcome::Go(Page::Login, Some(handle.clone())));
    let o = w
        .engine()
        .password(
            &mut visit,
            Some(&handle),
            "alice",
            &SecretString::from(PASSWORD),
        )
        .await
        .expect("password");
    assert_eq!(
        o,
        Outcome::Go(Page::Enrollment, Some(handle.clone())),
        "step-up without an authenticator: enrolment"
    );
    // Skipping the second step: the request still wants it.
    let o = w
        .engine()
        .resume(&mut visit, Some(&handle))
        .await
        .expect("resume");
    assert_eq!(o, Outcome::Go(Page::Login, Some(handle.clone())));
    // A wrong first code: the enrolment form again, with the same secret.
    let o = w
        .engine()
        .enrollment_form(&mut visit, Some(&handle))
        .await
        .expect("enrol");
    let Outcome::ShowEnrollment(first) = o else {
        panic!("enrolment expected, got {o:?}");
    };
    let o = w
        .engine()
        .enroll(&mut visit, Some(&handle), "000000")
        .await
        .expect("enrol");
    let Outcome::ShowEnrollment(again) = o else {
        panic!("enrolment expected, got {o:?}");
    };
    assert_eq!(again.problem, Some(CodeProblem::Wrong));
    assert_eq!(again.secret_base32, first.secret_base32);
}

#[tokio::test]
async fn handles_are_honoured_only_in_their_own_browser_and_only_while_open() {
    let w = World::new().await;
    w.client("rp", true).await;
    let alice = w.user("alice").await;
    let mut mine = w.visit();
    let handle = handle_of(
        &w.engine()
            .start(&mut mine, request("rp"))
            .await
            .expect("start"),
    );

    let mut theirs = w.visit();
    w.sign_in(&mut theirs, &alice, decide::ACR_PASSWORD).await;
    let stale = Outcome::ShowErrorPage(Problem::StaleRequest);
    assert_eq!(
        w.engine()
            .resume(&mut theirs, Some(&handle))
            .await
            .expect("resume"),
        stale
    );
    assert_eq!(
        w.engine()
            .password(
                &mut theirs,
                Some(&handle),
                "alice",
                &SecretString::from(PASSWORD)
            )
            .await
            .expect("password"),
        stale
    );
    assert_eq!(
        w.engine()
            .resume(&mut mine, Some("unknown"))
            .await
            .expect("resume"),
        stale
    );
    assert_eq!(
        w.engine().resume(&mut mine, None).await.expect("resume"),
        stale
    );
    // Expired after ten minutes.
    w.clock.advance(INTERACTION_SECONDS + 1);
    assert_eq!(
        w.engine()
            .resume(&mut mine, Some(&handle))
            .await
            .expect("resume"),
        stale
    );
}

#[tokio::test]
async fn a_second_factor_is_required_before_any_session_exists() {
    let w = World::new().await;
    let alice = w.user("alice").await;
    w.state
        .store
        .set_user_mfa_required("main", &alice.user_id, true, NOW)
        .await
        .expect("require");
    let mut visit = w.visit();
    w.engine()
        .login_form(&mut visit, None, None)
        .await
        .expect("form");
    let o = w
        .engine()
        .password(&mut visit, None, "alice", &SecretString::from(PASSWORD))
        .await
        .expect("password");
    assert_eq!(o, Outcome::Go(Page::Enrollment, None));
    let accounts = w
        .state
        .sessions
        .accounts(visit.browser.as_ref().expect("browser"))
        .await
        .expect("accounts");
    assert!(
        accounts.is_empty(),
        "no account session before the second factor"
    );
    // The code page without a pending verification: back to the sign-in form.
    let o = w
        .engine()
        .second_factor_form(&visit, None)
        .await
        .expect("form");
    assert_eq!(o, Outcome::Go(Page::Login, None));
    // A pending sign-in expires.
    w.clock.advance(crate::session::PENDING_LOGIN_SECONDS + 1);
    let o = w
        .engine()
        .enrollment_form(&mut visit, None)
        .await
        .expect("form");
    assert_eq!(o, Outcome::Go(Page::Login, None));
}

#[tokio::test]
async fn logout_by_link_asks_first_and_a_forged_post_changes_nothing() {
    let w = World::new().await;
    let alice = w.user("alice").await;
    let mut visit = w.visit();
    w.sign_in(&mut visit, &alice, decide::ACR_PASSWORD).await;
    let o = w
        .engine()
        .logout(&mut visit, LogoutRequest::default())
        .await
        .expect("logout");
    assert_eq!(
        o,
        LogoutOutcome::Confirm {
            username: Some("alice".into()),
            client_id: None
        }
    );
    let forged = LogoutRequest {
        posted: Posted::Forged,
        ..LogoutRequest::default()
    };
    let o = w.engine().logout(&mut visit, forged).await.expect("logout");
    assert_eq!(o, LogoutOutcome::Forged);
    let browser = visit.browser.as_ref().expect("browser");
    assert_eq!(
        w.state
            .sessions
            .accounts(browser)
            .await
            .expect("accounts")
            .len(),
        1
    );
    let confirmed = LogoutRequest {
        posted: Posted::Confirmed,
        ..LogoutRequest::default()
    };
    let o = w
        .engine()
        .logout(&mut visit, confirmed)
        .await
        .expect("logout");
    assert_eq!(
        o,
        LogoutOutcome::SignedOut {
            redirect: None,
            clear_cookie: true
        }
    );
    // A hint that is not one of our ID tokens is refused.
    let bad = LogoutRequest {
        id_token_hint: Some("e30.e30.sig"),
        ..LogoutRequest::default()
    };
    let o = w.engine().logout(&mut visit, bad).await.expect("logout");
    assert_eq!(o, LogoutOutcome::Refused(LogoutRefusal::InvalidHint));
    let _ = w.clock.now();
}

/// Adding a passkey needs a recent sign-in (a stolen cookie alone cannot plant one), and
/// a started ceremony answers only its own purpose, once.
#[tokio::test]
async fn adding_a_passkey_needs_a_recent_sign_in_and_a_ceremony_answers_once() {
    use crate::session::CeremonyPurpose;
    let w = World::new().await;
    let alice = w.user("alice").await;
    let mut visit = w.visit();
    w.sign_in(&mut visit, &alice, "1").await;
    let o = w
        .engine()
        .passkey_options(&mut visit, None, CeremonyPurpose::Register)
        .await
        .expect("options");
    let CeremonyStart::Options(options) = o else {
        panic!("expected options, got {o:?}");
    };
    let pk = &options["publicKey"];
    assert_eq!(pk["rp"]["id"], "id.example.com", "{pk}");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(pk["attestation"], "none");
    assert!(
        visit
            .browser
            .as_ref()
            .expect("browser")
            .data
            .ceremony
            .is_some()
    );
    // The registration's challenge does not answer a sign-in, and is used up trying.
    let o = w
        .engine()
        .passkey_sign_in(&mut visit, None, "{}")
        .await
        .expect("step");
    assert!(
        matches!(&o, Outcome::ShowLogin(f) if f.problem == Some(LoginProblem::Passkey)),
        "{o:?}"
    );
    assert!(
        visit
            .browser
            .as_ref()
            .expect("browser")
            .data
            .ceremony
            .is_none()
    );

    // Ten minutes later the same session may no longer add one.
    w.clock.advance(passkey::REGISTER_REAUTH_SECONDS + 1);
    let o = w
        .engine()
        .passkey_options(&mut visit, None, CeremonyPurpose::Register)
        .await
        .expect("options");
    assert!(matches!(o, CeremonyStart::Unavailable(_)), "{o:?}");
    let AccountPasskeys::Show(list) = w
        .engine()
        .register_passkey(&mut visit, "{}", "Laptop")
        .await
        .expect("page")
    else {
        panic!("still signed in");
    };
    assert!(!list.recent_sign_in);
    assert_eq!(list.problem, Some(PasskeyChange::SignInAgain));
    assert!(list.passkeys.is_empty());

    // Nor remove one: a stale session cannot strip the account's passkeys.
    let passkey = crate::store::passkeys::StoredPasskey {
        tenant_id: "main".into(),
        credential_id: "cred-1".into(),
        user_id: alice.user_id.clone(),
        name: "Laptop".into(),
        credential: "{}".into(),
        sign_count: 0,
        backup_eligible: false,
        backup_state: false,
        aaguid: None,
        created_at: NOW,
        last_used_at: None,
    };
    assert!(
        w.state
            .store
            .insert_passkey(&passkey)
            .await
            .expect("insert")
    );
    let AccountPasskeys::Show(list) = w
        .engine()
        .remove_passkey(&visit, "cred-1")
        .await
        .expect("page")
    else {
        panic!("still signed in");
    };
    assert_eq!(list.problem, Some(PasskeyChange::SignInAgain));
    assert_eq!(list.passkeys.len(), 1, "still there");
}
