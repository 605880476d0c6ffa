//! Passkeys (WebAuthn) through the pages, as a browser with a platform authenticator
//! drives them: the options from `…/options`, `navigator.credentials` played by an
//! independent software authenticator ([`SoftAuthenticator`]), the answer posted as the
//! form field `credential`. The issuer is `http://localhost:PORT` (browsers refuse
//! WebAuthn on IP addresses). Every refused passkey is shown to change nothing: no
//! session, the stored counter where it was.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, RedirectUrl, TokenResponse as _,
};
use serde_json::Value;

use crate::harness::browser::{Browser, Page, decode_entities, fast};
use crate::harness::oauth::create_client;
use crate::harness::webauthn::SoftAuthenticator;
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    a_passkey_added_on_the_account_page_signs_in_without_a_password,
    a_passkey_replaces_totp_at_enrolment_and_is_the_second_factor_after,
    a_relying_party_asking_for_phr_gets_a_passkey_or_unmet,
    refused_passkeys_sign_no_one_in_and_change_nothing,
    removed_and_foreign_passkeys_sign_no_one_in,
    one_answer_signs_in_once_even_from_a_stale_session,
    an_unverified_address_keeps_a_passkey_out_where_the_tenant_requires_it,
    the_last_required_factor_stays_and_others_passkeys_cannot_be_removed,
    an_operator_resets_a_users_passkeys,
);

const PASSWORD: &str = "correct horse battery staple";
pub(crate) const REFUSED: &str = "That passkey could not be used.";

/// What an attacker changes in the authenticator's answer.
type Tamper = Box<dyn Fn(&mut SoftAuthenticator)>;

struct Fixture {
    db: TestDb,
    _server: Server,
    issuer: String,
}

/// Tenant `main` at `http://localhost:PORT` with `settings`, tenant `other` at
/// `http://other.localhost:PORT`, tenant `ip` at `http://127.0.0.1:PORT/ip`; users
/// alice and bob in `main`.
async fn setup(backend: Backend, settings: &str) -> Fixture {
    let db = TestDb::migrated(backend).await;
    let port = db.port;
    let issuer = format!("http://localhost:{port}");
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {issuer}\n    display_name: Main\n    \
             settings: {settings}\n  - id: other\n    issuer: http://other.localhost:{port}\n    \
             display_name: Other\n  - id: ip\n    issuer: http://127.0.0.1:{port}/ip\n    \
             display_name: IP\n"
        ),
    );
    let server = fast(db.cli()).serve_in_process(port).await;
    for name in ["alice", "bob"] {
        fast(db.cli())
            .commands()
            .await
            .create_user(
                &["--tenant", "main", "--username", name, "--password-stdin"],
                PASSWORD,
            )
            .await
            .unwrap_or_else(|e| panic!("users create {name}: {e:#}"));
    }
    Fixture {
        db,
        _server: server,
        issuer,
    }
}

/// The value of `attr` on the element that carries `marker`.
pub(crate) fn attr(page: &Page, marker: &str, attr: &str) -> Option<String> {
    let at = page.body.find(marker)?;
    let start = page.body[..at].rfind('<')?;
    let end = at + page.body[at..].find('>')?;
    let tag = &page.body[start..end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    let len = tag[v..].find('"')?;
    Some(decode_entities(&tag[v..v + len]))
}

/// The ceremony behind the button `data-action=hook` on `page`: its options (asserted
/// 200), the authenticator's answer, and the page the answer's POST returns.
pub(crate) async fn ceremony(
    b: &Browser,
    page: &Page,
    hook: &str,
    auth: &mut SoftAuthenticator,
    extra: &[(&str, &str)],
) -> Page {
    let (credential, action, csrf) = answer(b, page, hook, auth).await;
    let mut fields = vec![
        ("_csrf", csrf.as_str()),
        ("credential", credential.as_str()),
    ];
    fields.extend_from_slice(extra);
    b.post(&action, &fields).await
}

/// Options and the authenticator's answer for the button `hook`, without posting it:
/// (credential JSON, answer URL, CSRF token).
pub(crate) async fn answer(
    b: &Browser,
    page: &Page,
    hook: &str,
    auth: &mut SoftAuthenticator,
) -> (String, String, String) {
    let marker = format!("data-action=\"{hook}\"");
    let options_url = attr(page, &marker, "data-options")
        .unwrap_or_else(|| panic!("no {hook} button: {}", page.body));
    let csrf = page.input("_csrf").expect("the page carries _csrf");
    let r = b.post(&options_url, &[("_csrf", &csrf)]).await;
    r.assert_status(200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let options: Value = serde_json::from_str(&r.body).unwrap();
    let credential = if options["publicKey"]["user"].is_object() {
        auth.register(&options)
    } else {
        auth.assert(&options)
    };
    let action = options_url.replacen("/options", "", 1);
    (credential.to_string(), action, csrf)
}

async fn sessions(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM sessions").await
}

/// Signs alice in with her password and adds a passkey on the account page.
async fn alice_with_a_passkey(f: &Fixture) -> SoftAuthenticator {
    user_with_a_passkey(&f.issuer, "alice", PASSWORD).await
}

/// Signs `username` in at `issuer` with `password` and adds a passkey ("Laptop") on the
/// account page: the authenticator that holds it.
pub(crate) async fn user_with_a_passkey(
    issuer: &str,
    username: &str,
    password: &str,
) -> SoftAuthenticator {
    let b = Browser::new();
    b.sign_in(issuer, username, password)
        .await
        .assert_status(200);
    // The hook is on the account security page (and on /account/passkeys).
    let page = b.get(&format!("{issuer}/account/security")).await;
    page.assert_status(200);
    let mut auth = SoftAuthenticator::new(issuer);
    let done = ceremony(
        &b,
        &page,
        "passkey-register",
        &mut auth,
        &[("passkey_name", "Laptop")],
    )
    .await;
    done.assert_status(303);
    let shown = b.follow(&done).await;
    assert!(shown.body.contains("Passkey added."), "{}", shown.body);
    assert!(shown.body.contains("Laptop"), "{}", shown.body);
    auth
}

async fn a_passkey_added_on_the_account_page_signs_in_without_a_password(backend: Backend) {
    let f = setup(backend, "{}").await;
    let mut auth = alice_with_a_passkey(&f).await;
    assert_eq!(
        f.db.rows("SELECT name || '|' || CAST(sign_count AS TEXT) FROM passkeys")
            .await,
        ["Laptop|0"]
    );
    // The page lists it, by name, with a remove button.
    let b = Browser::new();
    let login = b.get(&format!("{}/login", f.issuer)).await;
    login.assert_status(200);
    assert!(
        login.body.contains("data-action=\"passkey-signin\""),
        "{}",
        login.body
    );
    assert!(login.body.contains("/assets/passkey.js"));
    let before = sessions(&f.db).await;
    let done = ceremony(&b, &login, "passkey-signin", &mut auth, &[]).await;
    done.assert_status(200);
    assert!(done.body.contains("You are signed in"), "{}", done.body);
    assert_eq!(sessions(&f.db).await, before + 1);
    assert_eq!(
        f.db.rows("SELECT CAST(sign_count AS TEXT) FROM passkeys")
            .await,
        ["1"]
    );
    let amr =
        f.db.rows("SELECT amr || '|' || acr FROM sessions WHERE acr = 'phr'")
            .await;
    assert_eq!(amr.len(), 1);
    for m in ["hwk", "user", "mfa", "|phr"] {
        assert!(amr[0].contains(m), "{amr:?}");
    }
    // The account page shows when it was last used.
    let list = b.get(&format!("{}/account/passkeys", f.issuer)).await;
    assert!(list.body.contains("Laptop"), "{}", list.body);
    assert!(list.body.contains("last used"), "{}", list.body);
    // The script is served from the issuer, and the CSP allows only that.
    let js = b.get(&format!("{}/assets/passkey.js", f.issuer)).await;
    js.assert_status(200);
    assert!(js.body.contains("navigator.credentials"));
    let csp = login.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
}

async fn a_passkey_replaces_totp_at_enrolment_and_is_the_second_factor_after(backend: Backend) {
    let f = setup(
        backend,
        "{mfa: {required: true}, passkeys: {passwordless: false}}",
    )
    .await;
    let b = Browser::new();
    // Passwordless is off: no button on the sign-in page.
    let login = b.get(&format!("{}/login", f.issuer)).await;
    assert!(!login.body.contains("passkey-signin"), "{}", login.body);
    let enrol = b
        .follow(
            &b.submit(&login, &[("username", "bob"), ("password", PASSWORD)])
                .await,
        )
        .await;
    enrol.assert_status(200);
    assert!(
        enrol.body.contains("data-action=\"passkey-enroll\""),
        "{}",
        enrol.body
    );
    let mut auth = SoftAuthenticator::new(&f.issuer);
    let done = ceremony(
        &b,
        &enrol,
        "passkey-enroll",
        &mut auth,
        &[("passkey_name", "Key")],
    )
    .await;
    done.assert_status(200);
    assert!(done.body.contains("You are signed in"), "{}", done.body);
    assert_eq!(f.db.scalar("SELECT count(*) FROM passkeys").await, 1);
    assert_eq!(
        f.db.scalar("SELECT count(*) FROM user_totp WHERE confirmed_at IS NOT NULL")
            .await,
        0,
        "no authenticator app was confirmed"
    );

    // Next time: password, then the passkey (bob has no authenticator app: no code
    // form, only the passkey).
    let b2 = Browser::new();
    let mfa = b2
        .follow(&b2.sign_in(&f.issuer, "bob", PASSWORD).await)
        .await;
    mfa.assert_status(200);
    assert!(
        mfa.body.contains("data-action=\"passkey-verify\""),
        "{}",
        mfa.body
    );
    assert!(!mfa.body.contains("name=\"totp\""), "{}", mfa.body);
    let done = ceremony(&b2, &mfa, "passkey-verify", &mut auth, &[]).await;
    assert!(done.body.contains("You are signed in"), "{}", done.body);
    let amr =
        f.db.rows("SELECT amr FROM sessions WHERE acr = 'phr'")
            .await;
    // The enrolment's own sign-in is two factors ("2"): the password was its only
    // earlier proof. This one, with the passkey as second factor, is phishing-resistant.
    assert_eq!(amr.len(), 1, "{amr:?}");
    assert_eq!(
        f.db.scalar("SELECT count(*) FROM sessions WHERE acr = '2' AND amr LIKE '%hwk%'")
            .await,
        1,
        "the enrolment's sign-in"
    );
    assert!(amr[0].contains("pwd") && amr[0].contains("hwk"), "{amr:?}");

    // Alice has no passkey: the second-factor options for her pending sign-in are not
    // bob's, and bob's passkey does not stand in for her.
    let b3 = Browser::new();
    let alice_mfa = b3
        .follow(&b3.sign_in(&f.issuer, "alice", PASSWORD).await)
        .await;
    assert!(
        alice_mfa.body.contains("passkey-enroll"),
        "{}",
        alice_mfa.body
    );
    let csrf = alice_mfa.input("_csrf").unwrap();
    let opts = b3
        .post(
            &format!("{}/login/mfa/passkey/options", f.issuer),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(opts.status, 409, "no pending verification: {}", opts.body);
    let forged = auth.assert_with(0, "AAAA");
    let r = b3
        .post(
            &format!("{}/login/mfa/passkey", f.issuer),
            &[("_csrf", &csrf), ("credential", &forged.to_string())],
        )
        .await;
    assert!(!r.body.contains("You are signed in"), "{}", r.body);
}

#[allow(clippy::too_many_lines)] // one journey per user, asserted step by step
async fn a_relying_party_asking_for_phr_gets_a_passkey_or_unmet(backend: Backend) {
    let f = setup(backend, "{}").await;
    let mut auth = alice_with_a_passkey(&f).await;
    let redirect = format!("http://127.0.0.1:{}/callback", f.db.port + 1);
    let creds = create_client(
        &f.db,
        "web",
        &[
            "--tenant",
            "main",
            "--redirect-uri",
            &redirect,
            "--first-party",
        ],
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(f.issuer.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let advertised: Vec<String> = meta
        .acr_values_supported()
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(advertised, ["1", "2", "phr"]);
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new("web".into()),
        Some(ClientSecret::new(creds.secret().into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.clone()).unwrap());
    // A request for phishing-resistant authentication: (URL, PKCE verifier, nonce).
    macro_rules! authorize {
        () => {{
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            let (url, _csrf, nonce) = client
                .authorize_url(
                    CoreAuthenticationFlow::AuthorizationCode,
                    CsrfToken::new_random,
                    Nonce::new_random,
                )
                .add_auth_context_value(AuthenticationContextClass::new("phr".into()))
                .set_pkce_challenge(challenge)
                .url();
            (url.to_string(), verifier, nonce)
        }};
    }

    // Alice signs in with her passkey from the sign-in page of the request.
    let (url, verifier, nonce) = authorize!();
    let b = Browser::new();
    let login = b.follow(&b.get(&url).await).await;
    login.assert_status(200);
    let done = ceremony(&b, &login, "passkey-signin", &mut auth, &[]).await;
    let mut page = done;
    let mut code = None;
    for _ in 0..6 {
        let loc = page.location().expect("a redirect");
        if loc.starts_with(&redirect) {
            let q: Vec<(String, String)> = url::Url::parse(&loc)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            code = q.iter().find(|(k, _)| k == "code").map(|(_, v)| v.clone());
            break;
        }
        page = b.get(&loc).await;
    }
    let code = code.expect("a code for the passkey sign-in");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code redeems");
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&client.id_token_verifier(), &nonce)
        .expect("the ID token verifies");
    assert_eq!(
        claims.auth_context_ref().map(|a| a.to_string()),
        Some("phr".into())
    );
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert!(
        amr.contains(&"hwk".into()) && amr.contains(&"mfa".into()),
        "{amr:?}"
    );

    // Bob has no passkey: after his password the client hears
    // unmet_authentication_requirements, and no code exists for him.
    let (url, _, _) = authorize!();
    let b = Browser::new();
    let login = b.follow(&b.get(&url).await).await;
    let after = b
        .submit(&login, &[("username", "bob"), ("password", PASSWORD)])
        .await;
    let loc = after.location().expect("a redirect to the client");
    assert!(loc.starts_with(&redirect), "{loc}");
    assert!(
        loc.contains("error=unmet_authentication_requirements"),
        "{loc}"
    );

    // Alice with her password: only the passkey is offered, and a code is refused.
    let (url, _, _) = authorize!();
    let b = Browser::new();
    let login = b.follow(&b.get(&url).await).await;
    let mfa = b
        .follow(
            &b.submit(&login, &[("username", "alice"), ("password", PASSWORD)])
                .await,
        )
        .await;
    assert!(mfa.body.contains("passkey-verify"), "{}", mfa.body);
    assert!(!mfa.body.contains("name=\"totp\""), "{}", mfa.body);
}

async fn refused_passkeys_sign_no_one_in_and_change_nothing(backend: Backend) {
    let f = setup(backend, "{}").await;
    let mut auth = alice_with_a_passkey(&f).await;
    let login_url = format!("{}/login", f.issuer);
    let counter = || f.db.rows("SELECT CAST(sign_count AS TEXT) FROM passkeys");

    // One good sign-in, then its answer replayed: the challenge was used up.
    let b = Browser::new();
    let login = b.get(&login_url).await;
    let (good, action, csrf) = answer(&b, &login, "passkey-signin", &mut auth).await;
    let ok = b
        .post(
            &action,
            &[("_csrf", csrf.as_str()), ("credential", good.as_str())],
        )
        .await;
    assert!(ok.body.contains("You are signed in"), "{}", ok.body);
    let signed_in = sessions(&f.db).await;
    assert_eq!(counter().await, ["1"]);
    let b = Browser::new();
    let login = b.get(&login_url).await;
    let csrf = login.input("_csrf").unwrap();
    let replay = b
        .post(
            &action,
            &[("_csrf", csrf.as_str()), ("credential", good.as_str())],
        )
        .await;
    assert!(replay.body.contains(REFUSED), "replay: {}", replay.body);

    // Each attack, on a fresh challenge: refused with the one message, no session, the
    // counter where it was.
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "counter regression (a cloned key)",
            Box::new(|a| a.credentials[0].counter = 0),
        ),
        (
            "another RP ID (a phishing site)",
            Box::new(|a| a.rp_id_override = Some("evil.example".into())),
        ),
        (
            "another origin",
            Box::new(|a| a.origin = "http://evil.localhost:1".into()),
        ),
        (
            "no user verification",
            Box::new(|a| a.user_verified = false),
        ),
        (
            "someone else's user handle",
            Box::new(|a| a.credentials[0].user_handle = b"someone-else".to_vec()),
        ),
    ];
    for (what, tamper) in cases {
        let mut evil = SoftAuthenticator::new(&f.issuer);
        evil.credentials = std::mem::take(&mut auth.credentials);
        tamper(&mut evil);
        let b = Browser::new();
        let login = b.get(&login_url).await;
        let r = ceremony(&b, &login, "passkey-signin", &mut evil, &[]).await;
        r.assert_status(200);
        assert!(r.body.contains(REFUSED), "{what}: {}", r.body);
        assert_eq!(sessions(&f.db).await, signed_in, "{what}: no session");
        assert_eq!(counter().await, ["1"], "{what}: counter unchanged");
        auth.credentials = std::mem::take(&mut evil.credentials);
        // Undo what the tamper did to the credential itself.
        auth.credentials[0].user_handle =
            f.db.rows("SELECT user_id FROM passkeys")
                .await
                .remove(0)
                .into_bytes();
        auth.credentials[0].counter = auth.credentials[0].counter.max(1);
    }
    let reasons =
        f.db.rows("SELECT details FROM audit_events WHERE event = 'login.failed'")
            .await
            .join(" ");
    for r in [
        "passkey_counter_regression",
        "passkey_refused",
        "passkey_wrong_user",
    ] {
        assert!(reasons.contains(r), "{r} in {reasons}");
    }

    bad_answers_are_refused(&f, &action, &good, signed_in).await;
}

/// Malformed, oversized and CSRF-less answers to the sign-in: refused, no session.
async fn bad_answers_are_refused(f: &Fixture, action: &str, good: &str, signed_in: i64) {
    let login_url = format!("{}/login", f.issuer);
    // Malformed, oversized and CSRF-less answers.
    let b = Browser::new();
    let login = b.get(&login_url).await;
    let csrf = login.input("_csrf").unwrap();
    let big = format!("{{\"id\":\"{}\"}}", "A".repeat(70 * 1024));
    for bad in ["", "not json", "{}", big.as_str()] {
        let r = b
            .post(action, &[("_csrf", csrf.as_str()), ("credential", bad)])
            .await;
        assert!(
            r.body.contains(REFUSED) || r.status == 413,
            "{}: {}",
            r.status,
            r.body
        );
    }
    let r = b.post(action, &[("credential", good)]).await;
    assert_eq!(r.status, 403, "no CSRF token: {}", r.body);
    let r = b
        .post(&format!("{}/login/passkey/options", f.issuer), &[])
        .await;
    assert_eq!(r.status, 403, "options need the CSRF token too");
    assert_eq!(sessions(&f.db).await, signed_in);
}

/// A removed passkey, one presented to another tenant, and an IP-address issuer: no
/// sign-in.
async fn removed_and_foreign_passkeys_sign_no_one_in(backend: Backend) {
    let f = setup(backend, "{}").await;
    let mut auth = alice_with_a_passkey(&f).await;
    let login_url = format!("{}/login", f.issuer);
    let signed_in = sessions(&f.db).await;

    // The passkey removed: it signs in no more.
    // A password sign-in now asks for the passkey too (an enrolled factor always is).
    let account = Browser::new();
    let second = account
        .follow(&account.sign_in(&f.issuer, "alice", PASSWORD).await)
        .await;
    assert!(second.body.contains("passkey-verify"), "{}", second.body);
    let done = ceremony(&account, &second, "passkey-verify", &mut auth, &[]).await;
    assert!(done.body.contains("You are signed in"), "{}", done.body);
    let list = account.get(&format!("{}/account/passkeys", f.issuer)).await;
    let id = list.input("credential_id").expect("a remove form");
    let removed = account.submit(&list, &[("credential_id", &id)]).await;
    removed.assert_status(303);
    let shown = account.follow(&removed).await;
    assert!(shown.body.contains("Passkey removed."), "{}", shown.body);
    let b = Browser::new();
    let login = b.get(&login_url).await;
    let r = ceremony(&b, &login, "passkey-signin", &mut auth, &[]).await;
    assert!(r.body.contains(REFUSED), "removed: {}", r.body);

    // Tenants never share a credential: `other` (another host) does not know it, and an
    // IP-address issuer offers no passkeys at all.
    let other = format!("http://other.localhost:{}", f.db.port);
    let via = format!("http://127.0.0.1:{}", f.db.port);
    let b = Browser::new().via(&other, &via);
    let login = b.get(&format!("{other}/login")).await;
    login.assert_status(200);
    let mut elsewhere = SoftAuthenticator::new(&other);
    elsewhere.credentials = std::mem::take(&mut auth.credentials);
    elsewhere.credentials[0].rp_id = "other.localhost".into();
    let r = ceremony(&b, &login, "passkey-signin", &mut elsewhere, &[]).await;
    assert!(r.body.contains(REFUSED), "other tenant: {}", r.body);
    let b = Browser::new();
    let ip_login = b.get(&format!("{via}/ip/login")).await;
    ip_login.assert_status(200);
    assert!(
        !ip_login.body.contains("passkey-signin"),
        "{}",
        ip_login.body
    );
    let csrf = ip_login.input("_csrf").unwrap();
    let r = b
        .post(
            &format!("{via}/ip/login/passkey/options"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        sessions(&f.db).await,
        signed_in + 1,
        "only the account page's sign-in"
    );
}

async fn the_last_required_factor_stays_and_others_passkeys_cannot_be_removed(backend: Backend) {
    let f = setup(backend, "{}").await;
    let auth = alice_with_a_passkey(&f).await;
    let alice_id =
        f.db.rows("SELECT credential_id FROM passkeys")
            .await
            .remove(0);
    // Bob cannot remove alice's passkey by its id.
    let b = Browser::new();
    b.sign_in(&f.issuer, "bob", PASSWORD)
        .await
        .assert_status(200);
    let list = b.get(&format!("{}/account/passkeys", f.issuer)).await;
    assert!(list.body.contains("no passkeys yet"), "{}", list.body);
    let csrf = list.input("_csrf").unwrap();
    let r = b
        .post(
            &format!("{}/account/passkeys/remove", f.issuer),
            &[("_csrf", &csrf), ("credential_id", &alice_id)],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(f.db.scalar("SELECT count(*) FROM passkeys").await, 1);
    // Registration needs the CSRF token: a forged POST adds nothing.
    let r = b
        .post(
            &format!("{}/account/passkeys", f.issuer),
            &[("credential", "{}"), ("passkey_name", "x")],
        )
        .await;
    assert_eq!(r.status, 403);

    // Alice must have a second factor (her flag): the passkey is her only one.
    f.db.execute("UPDATE users SET mfa_required = TRUE WHERE username = 'alice'")
        .await;
    let a = Browser::new();
    let mut auth = auth;
    let mfa = a
        .follow(&a.sign_in(&f.issuer, "alice", PASSWORD).await)
        .await;
    let done = ceremony(&a, &mfa, "passkey-verify", &mut auth, &[]).await;
    assert!(done.body.contains("You are signed in"), "{}", done.body);
    let list = a.get(&format!("{}/account/passkeys", f.issuer)).await;
    let removed = a.submit(&list, &[("credential_id", &alice_id)]).await;
    assert_eq!(removed.status, 409, "{}", removed.body);
    assert!(
        removed.body.contains("last second factor"),
        "{}",
        removed.body
    );
    assert_eq!(f.db.scalar("SELECT count(*) FROM passkeys").await, 1);
    // Not signed in: the page sends to the sign-in form, which comes back.
    let r = Browser::new()
        .get(&format!("{}/account/passkeys", f.issuer))
        .await;
    assert_eq!(r.status, 303);
    assert!(r.location().unwrap().ends_with("/login?return_to=account"));
}

/// `authserver users reset-passkeys` (a lost device): every passkey of the user goes,
/// audited; an unknown user is a clear error that changes nothing.
async fn an_operator_resets_a_users_passkeys(backend: Backend) {
    let f = setup(backend, "{}").await;
    let mut auth = alice_with_a_passkey(&f).await;
    let bad =
        f.db.cli()
            .args([
                "users",
                "reset-passkeys",
                "--tenant",
                "main",
                "--username",
                "nobody",
            ])
            .run()
            .await;
    assert!(!bad.status.success(), "{bad}");
    bad.assert_stderr_contains("does not exist");
    assert_eq!(f.db.scalar("SELECT count(*) FROM passkeys").await, 1);
    let out =
        f.db.cli()
            .args([
                "users",
                "reset-passkeys",
                "--tenant",
                "main",
                "--username",
                "alice",
            ])
            .run()
            .await;
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["passkeys"].as_u64(), v["removed"].as_bool()),
        (Some(0), Some(true)),
        "{v}"
    );
    assert_eq!(f.db.scalar("SELECT count(*) FROM passkeys").await, 0);
    assert_eq!(
        f.db.scalar(
            "SELECT count(*) FROM audit_events WHERE event = 'passkey.reset' AND actor = 'cli'"
        )
        .await,
        1
    );
    let b = Browser::new();
    let login = b.get(&format!("{}/login", f.issuer)).await;
    let r = ceremony(&b, &login, "passkey-signin", &mut auth, &[]).await;
    assert!(r.body.contains(REFUSED), "{}", r.body);
}

/// The same answer posted twice with the same cookie, the second request having read
/// the session before the first saved it without the ceremony (two pods, one cookie):
/// one sign-in, not two. Replayed here deterministically: the browser row as it was
/// is put back after the first sign-in.
async fn one_answer_signs_in_once_even_from_a_stale_session(backend: Backend) {
    let f = setup(backend, "{}").await;
    let mut auth = alice_with_a_passkey(&f).await;
    // A synced passkey keeps no counter: nothing but the challenge stops a replay.
    auth.counter_step = 0;
    auth.credentials[0].counter = 0;
    let b = Browser::new();
    let login = b.get(&format!("{}/login", f.issuer)).await;
    let (answer, action, csrf) = answer(&b, &login, "passkey-signin", &mut auth).await;
    let cookie = b.cookies(&f.issuer).expect("the session cookie");
    f.db.execute("CREATE TABLE stale_browsers AS SELECT * FROM browser_sessions")
        .await;
    let fields = [("_csrf", csrf.as_str()), ("credential", answer.as_str())];
    let first = b.post(&action, &fields).await;
    assert!(first.body.contains("You are signed in"), "{}", first.body);
    let before = sessions(&f.db).await;
    f.db.execute(
        "INSERT INTO browser_sessions SELECT * FROM stale_browsers \
         WHERE id_hash NOT IN (SELECT id_hash FROM browser_sessions)",
    )
    .await;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let second = reqwest::Client::new()
        .post(&action)
        .header(reqwest::header::COOKIE, cookie)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(second.contains(REFUSED), "{second}");
    assert_eq!(sessions(&f.db).await, before, "no second sign-in");
}

/// A tenant that requires verified addresses keeps an unverified account out whether
/// it signs in with a password or a passkey.
async fn an_unverified_address_keeps_a_passkey_out_where_the_tenant_requires_it(backend: Backend) {
    let f = setup(backend, "{email: {requireVerified: true}}").await;
    let mut auth = alice_with_a_passkey(&f).await;
    f.db.execute(
        "UPDATE users SET email = 'alice@example.com', email_verified = FALSE \
         WHERE username = 'alice'",
    )
    .await;
    let before = sessions(&f.db).await;
    let b = Browser::new();
    let login = b.get(&format!("{}/login", f.issuer)).await;
    let r = ceremony(&b, &login, "passkey-signin", &mut auth, &[]).await;
    assert!(!r.body.contains("You are signed in"), "{}", r.body);
    assert!(r.body.contains("resend-verification"), "{}", r.body);
    assert_eq!(sessions(&f.db).await, before, "no session");
    assert_eq!(
        f.db.scalar(
            "SELECT count(*) FROM audit_events WHERE event = 'login.failed' \
             AND details LIKE '%email_unverified%'"
        )
        .await,
        1
    );
}
