//! Sign-in through an upstream OpenID provider, browser-level: a second Gatehouse (tenant
//! `corp`, on its own database and port) is the upstream of tenant `main` — Gatehouse
//! federating to Gatehouse, the real protocol on both sides. One cookie jar drives both
//! (the two tenants' cookies have different names). Covered: first sign-in with
//! just-in-time provisioning (and the relying party's ID token with `amr` `fed` and a
//! forwarded claim), linking to an existing user with its password, refused silent
//! linking on an unverified address, an upstream error (the user denies consent
//! upstream), a replayed `state`, a wrong `nonce`, and the upstream's key rotation.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::authorize_flow::{CB, VERIFIER};
use crate::harness::browser::{Browser, Page, fast, user_cli};
use crate::harness::github::{Account, GitHubStub};
use crate::harness::oauth::{Creds, create_client, post_form, send};
use crate::harness::webauthn::SoftAuthenticator;
use crate::harness::{Backend, Server, TestDb};
use crate::passkeys::{REFUSED, answer, attr, user_with_a_passkey};

on_both_backends!(
    a_first_upstream_sign_in_provisions_a_user_and_the_rp_gets_its_claims,
    an_upstream_account_links_to_a_local_user_only_with_its_password,
    an_upstream_account_links_with_a_passkey_of_the_local_user_and_no_other,
    an_unverified_upstream_address_never_links_silently,
    an_upstream_error_signs_nobody_in,
    a_replayed_state_signs_nobody_in,
    a_wrong_nonce_signs_nobody_in,
    the_upstreams_key_rotation_is_followed,
    the_last_way_to_sign_in_cannot_be_unlinked,
    home_realm_discovery_goes_straight_to_the_upstream,
    our_second_factor_can_be_required_after_an_upstream_sign_in,
    a_github_style_provider_admits_members_of_allowed_orgs_or_teams_only,
    kept_upstream_tokens_are_sealed_and_read_only_by_token_readers,
);

const PASSWORD: &str = "correct horse battery staple";
const UP_PASSWORD: &str = "upstream horse battery staple";

/// Tenant `main` federating to tenant `corp` of another server.
struct Fed {
    /// The downstream tenant's issuer.
    issuer: String,
    up_db: TestDb,
    up: Server,
    db: TestDb,
    down: Server,
    /// The downstream relying party `rp` (first party, redirect URI [`CB`]).
    rp: Creds,
}

impl Fed {
    fn issuer(&self) -> String {
        self.issuer.clone()
    }

    fn up_issuer(&self) -> String {
        self.up_db.issuer("")
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db.scalar(&format!("SELECT count(*) FROM {sql}")).await
    }

    async fn events(&self) -> Vec<String> {
        self.db.audit().await
    }
}

/// Options of a federation set-up.
#[derive(Default)]
struct Options {
    /// The upstream asks for consent (not a first-party client there).
    consent_upstream: bool,
    /// Extra members of the provider (JSON object text without braces).
    provider: &'static str,
    /// Extra members of `federation` (JSON object text without braces).
    federation: &'static str,
    /// The downstream issuer is `http://localhost:PORT` (passkeys need a host name).
    localhost: bool,
}

async fn setup(backend: Backend, o: Options) -> Fed {
    let up_db = TestDb::migrated(backend).await;
    up_db.write_config("config.yaml", &up_db.tenant_config(&[("corp", "")]));
    let db = TestDb::migrated(backend).await;
    let issuer = if o.localhost {
        format!("http://localhost:{}", db.port)
    } else {
        db.issuer("")
    };
    let callback = format!("{issuer}/login/upstream/callback");
    let mut args = vec!["--redirect-uri", callback.as_str()];
    if !o.consent_upstream {
        args.push("--first-party");
    }
    let upstream_client = create_client(&up_db, "gatehouse-main", &args).await;
    let secret_file = db.write_config(
        "corp-client-secret",
        &format!("{}\n", upstream_client.secret()),
    );
    let provider = format!(
        r#"{{"id": "corp", "displayName": "Corp", "issuer": "{}", "clientId": "gatehouse-main",
            "clientSecret": {{"file": "{}"}}, "claims": {{"forward": ["family_name"]}}{}{}}}"#,
        up_db.issuer(""),
        secret_file.display(),
        if o.provider.is_empty() { "" } else { ", " },
        o.provider,
    );
    let settings = format!(
        r#"{{"federation": {{"providers": [{provider}]{}{}}}}}"#,
        if o.federation.is_empty() { "" } else { ", " },
        o.federation,
    );
    let settings: Value = serde_json::from_str(&settings).expect("settings are JSON");
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {issuer}\n    display_name: Tenant main\n    settings: {settings}\n",
        ),
    );
    let rp = create_client(&db, "rp", &["--redirect-uri", CB, "--first-party"]).await;
    let up = fast(up_db.cli()).serve_in_process(up_db.port).await;
    let down = fast(db.cli()).serve_in_process(db.port).await;
    Fed {
        issuer,
        up_db,
        up,
        db,
        down,
        rp,
    }
}

/// A user at the upstream (or here), with an address and names.
async fn user(db: &TestDb, username: &str, password: &str, email: Option<(&str, bool)>) {
    let mut args = vec![
        "--username",
        username,
        "--name",
        "Ann Smith",
        "--family-name",
        "Smith",
    ];
    if let Some((address, verified)) = email {
        args.extend(["--email", address]);
        if verified {
            args.push("--email-verified");
        }
    }
    args.push("--password-stdin");
    user_cli(db)
        .commands()
        .await
        .create_user(&args, password)
        .await
        .unwrap_or_else(|e| panic!("users create {username}: {e:#}"));
}

/// `{issuer}/authorize?…` for the downstream `rp` with PKCE, nonce `n` and `extra`.
fn rp_authorize(fed: &Fed, extra: &[(&str, &str)]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, VERIFIER.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref());
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "rp"),
        ("redirect_uri", CB),
        ("scope", "openid email profile"),
        ("state", "st"),
        ("nonce", "n"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    format!("{}/authorize?{q}", fed.issuer())
}

/// The `action` of the form whose action contains `needle`.
fn action_containing(p: &Page, needle: &str) -> String {
    let body = crate::harness::browser::decode_entities(&p.body);
    let at = body
        .find(needle)
        .unwrap_or_else(|| panic!("no {needle} on the page: {}", p.body));
    let start = body[..at].rfind("action=\"").expect("an action") + "action=\"".len();
    let end = start + body[start..].find('"').expect("closing quote");
    body[start..end].to_owned()
}

/// Our sign-in page → "Sign in with Corp": the upstream's authorization URL.
async fn to_upstream(b: &Browser, login: &Page) -> String {
    to_provider(b, login, "corp").await
}

/// Our sign-in page → the button of `provider`: its authorization URL.
async fn to_provider(b: &Browser, login: &Page, provider: &str) -> String {
    login.assert_status(200);
    assert!(
        login
            .body
            .contains(&format!(r#"name="provider" value="{provider}""#)),
        "the provider's button: {}",
        login.body
    );
    let csrf = login.input("_csrf").expect("csrf");
    let go = b
        .post(
            &action_containing(login, "/login/upstream"),
            &[("_csrf", &csrf), ("provider", provider)],
        )
        .await;
    go.assert_status(303);
    go.location().expect("to the upstream")
}

/// At the upstream: its authorization URL, its sign-in form, and (consent skipped) the
/// redirect back to our callback, whose URL is returned.
async fn sign_in_upstream(b: &Browser, fed: &Fed, authorize: &str, username: &str) -> String {
    assert!(authorize.starts_with(&fed.up_issuer()), "{authorize}");
    let to_login = b.get(authorize).await;
    to_login.assert_status(303);
    let form = b.follow(&to_login).await;
    form.assert_status(200);
    let signed_in = b
        .submit(&form, &[("username", username), ("password", UP_PASSWORD)])
        .await;
    signed_in.assert_status(303);
    let back = b.follow(&signed_in).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let callback = back.location().expect("back to us");
    assert!(
        callback.starts_with(&format!("{}/login/upstream/callback?", fed.issuer())),
        "{callback}"
    );
    callback
}

/// Our sign-in page, without an authorization request.
async fn login_page(b: &Browser, fed: &Fed) -> Page {
    b.get(&format!("{}/login", fed.issuer())).await
}

/// A whole upstream sign-in in a fresh browser without a request: the callback's page.
async fn upstream_sign_in(fed: &Fed, username: &str) -> (Browser, Page) {
    let b = Browser::new();
    let login = login_page(&b, fed).await;
    let authorize = to_upstream(&b, &login).await;
    let callback = sign_in_upstream(&b, fed, &authorize, username).await;
    let page = b.get(&callback).await;
    (b, page)
}

fn problem(p: &Page) -> String {
    let at = p
        .body
        .find("data-problem=\"")
        .unwrap_or_else(|| panic!("not a problem page: {} {}", p.status, p.body));
    let rest = &p.body[at + "data-problem=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Redeems the downstream code of a redirect to [`CB`] as `client`: the token response.
async fn token_response(fed: &Fed, redirect: &Page, client: &Creds) -> Value {
    assert_eq!(redirect.status, 303, "{}", redirect.body);
    let loc = redirect.location().unwrap();
    assert!(loc.starts_with(CB), "{loc}");
    let code = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let tokens = send(
        post_form(
            &fed.down,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
            ],
        )
        .header(reqwest::header::AUTHORIZATION, client.basic()),
    )
    .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    tokens.body
}

/// Redeems the downstream code of a redirect to [`CB`]: the ID token's claims.
async fn redeem(fed: &Fed, redirect: &Page) -> Value {
    let tokens = token_response(fed, redirect, &fed.rp).await;
    let claims = jwt_claims(tokens["id_token"].as_str().expect("an ID token"));
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let info = fed
        .down
        .http()
        .get(fed.down.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["family_name"], claims["family_name"], "{info}");
    claims
}

// One journey, asserted step by step.
#[allow(clippy::too_many_lines)]
async fn a_first_upstream_sign_in_provisions_a_user_and_the_rp_gets_its_claims(backend: Backend) {
    let fed = setup(backend, Options::default()).await;
    user(
        &fed.up_db,
        "ann",
        UP_PASSWORD,
        Some(("ann@corp.example", true)),
    )
    .await;
    let b = Browser::new();
    let to_login = b.get(&rp_authorize(&fed, &[])).await;
    to_login.assert_status(303);
    let login = b.follow(&to_login).await;
    let authorize = to_upstream(&b, &login).await;
    let q: std::collections::HashMap<String, String> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid email profile");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43, "{q:?}");
    let callback = sign_in_upstream(&b, &fed, &authorize, "ann").await;
    assert!(
        callback.contains("iss="),
        "RFC 9207 iss from Gatehouse: {callback}"
    );
    let back = b.get(&callback).await;
    back.assert_status(303);
    assert!(
        back.location()
            .unwrap()
            .contains("/authorize/continue?request="),
        "back to the request: {:?}",
        back.location()
    );
    let redirect = b.follow(&back).await;
    let claims = redeem(&fed, &redirect).await;
    assert_eq!(claims["amr"], json!(["fed", "pwd"]), "{claims}");
    assert_eq!(claims["acr"], "1");
    assert_eq!(claims["preferred_username"], "ann");
    assert_eq!(claims["email"], "ann@corp.example");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Ann Smith");
    assert_eq!(claims["family_name"], "Smith", "forwarded: {claims}");

    // The provisioned user: no password, linked to the upstream subject.
    assert_eq!(
        fed.count("users WHERE username = 'ann' AND password_hash IS NULL")
            .await,
        1
    );
    let up_sub = fed
        .up_db
        .rows("SELECT user_id FROM users WHERE username = 'ann'")
        .await
        .remove(0);
    assert_eq!(
        fed.db
            .rows("SELECT provider_id || '|' || subject FROM federated_identities")
            .await,
        [format!("corp|{up_sub}")]
    );
    let events = fed.events().await;
    for e in [
        "upstream.provisioned|",
        "upstream.sign_in|",
        "login.succeeded|",
    ] {
        assert!(events.iter().any(|x| x.starts_with(e)), "{e} in {events:?}");
    }
    assert!(
        events
            .iter()
            .any(|x| x.starts_with("login.succeeded|") && x.contains(r#""amr":["fed","pwd"]"#)),
        "{events:?}"
    );

    // The next sign-in uses the link (no second user) and refreshes the forwarded claims.
    fed.db
        .execute("UPDATE federated_identities SET claims = '{\"family_name\":\"Stale\"}'")
        .await;
    let (_, page) = upstream_sign_in(&fed, "ann").await;
    page.assert_status(200);
    assert!(page.body.contains("ann"), "{}", page.body);
    assert_eq!(fed.count("users").await, 1);
    assert_eq!(
        fed.db.rows("SELECT claims FROM federated_identities").await,
        [r#"{"family_name":"Smith"}"#]
    );
}

#[allow(clippy::too_many_lines)]
async fn an_upstream_account_links_to_a_local_user_only_with_its_password(backend: Backend) {
    let fed = setup(backend, Options::default()).await;
    user(
        &fed.up_db,
        "ann",
        UP_PASSWORD,
        Some(("Ann@Corp.Example", true)),
    )
    .await;
    user(&fed.db, "alice", PASSWORD, Some(("ann@corp.example", true))).await;
    let (b, page) = upstream_sign_in(&fed, "ann").await;
    page.assert_status(200);
    assert!(
        page.body
            .contains("An account here, alice, has the same e-mail address"),
        "{}",
        page.body
    );
    let action = action_containing(&page, "/login/upstream/link");
    let csrf = page.input("_csrf").unwrap();

    // A wrong password links nothing and signs nobody in.
    let wrong = b
        .post(
            &action,
            &[("_csrf", &csrf), ("password", "not her password")],
        )
        .await;
    wrong.assert_status(200);
    assert!(wrong.body.contains("Incorrect password."), "{}", wrong.body);
    assert_eq!(fed.count("federated_identities").await, 0);
    assert_eq!(fed.count("sessions").await, 0);
    // Without the session's CSRF token: refused before anything is read.
    b.post(&action, &[("_csrf", "forged"), ("password", PASSWORD)])
        .await
        .assert_status(403);
    assert_eq!(fed.count("federated_identities").await, 0);

    let ok = b
        .post(&action, &[("_csrf", &csrf), ("password", PASSWORD)])
        .await;
    ok.assert_status(200);
    assert!(ok.body.contains("alice"), "signed in as alice: {}", ok.body);
    assert_eq!(fed.count("users").await, 1, "nobody provisioned");
    let alice = fed
        .db
        .rows("SELECT user_id FROM users WHERE username = 'alice'")
        .await
        .remove(0);
    assert_eq!(
        fed.db
            .rows("SELECT user_id FROM federated_identities")
            .await,
        std::slice::from_ref(&alice)
    );
    let amr = fed.db.rows("SELECT amr FROM sessions").await;
    assert_eq!(amr.len(), 1);
    assert!(amr[0].contains("fed") && amr[0].contains("pwd"), "{amr:?}");
    let events = fed.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("upstream.linked|user|{alice}|"))),
        "{events:?}"
    );
    // The pending link was used up: posting the password again (with the CSRF token
    // the sign-in renewed) links nothing more.
    let csrf = login_page(&b, &fed).await.input("_csrf").unwrap();
    let again = b
        .post(&action, &[("_csrf", &csrf), ("password", PASSWORD)])
        .await;
    assert_eq!(problem(&again), "stale");

    // The next upstream sign-in needs no password: the link is there.
    let (_, next) = upstream_sign_in(&fed, "ann").await;
    next.assert_status(200);
    assert!(next.body.contains("alice"), "{}", next.body);

    // The account page lists the link; alice has a password, so she may remove it.
    let links = b.get(&format!("{}/account/links", fed.issuer())).await;
    links.assert_status(200);
    assert!(links.body.contains("Corp"), "{}", links.body);
    let csrf = links.input("_csrf").unwrap();
    let subject = links.input("subject").unwrap();
    // Someone else's (or a made-up) link removes nothing.
    let other = b
        .post(
            &format!("{}/account/links", fed.issuer()),
            &[
                ("_csrf", &csrf),
                ("provider", "corp"),
                ("subject", "someone-else"),
            ],
        )
        .await;
    other.assert_status(404);
    assert_eq!(fed.count("federated_identities").await, 1);
    let removed = b
        .post(
            &format!("{}/account/links", fed.issuer()),
            &[
                ("_csrf", &csrf),
                ("provider", "corp"),
                ("subject", &subject),
            ],
        )
        .await;
    removed.assert_status(303);
    assert_eq!(fed.count("federated_identities").await, 0);
    let shown = b.follow(&removed).await;
    assert!(
        shown.body.contains("The link was removed."),
        "{}",
        shown.body
    );
    assert!(
        fed.events()
            .await
            .iter()
            .any(|e| e.starts_with(&format!("upstream.unlinked|user|{alice}|"))),
    );
}

/// `username` (password [`PASSWORD`]) adds a passkey on the account page: the
/// authenticator that holds it.
async fn with_a_passkey(fed: &Fed, username: &str) -> SoftAuthenticator {
    user_with_a_passkey(&fed.issuer(), username, PASSWORD).await
}

/// On alice's passkey-only link page: a password, bob's passkey, and an answer to
/// another ceremony each prove nothing — no link, nobody signed in.
async fn refused_link_proofs(
    fed: &Fed,
    b: &Browser,
    page: &Page,
    alice_key: &mut SoftAuthenticator,
    bob_key: &mut SoftAuthenticator,
) {
    let sessions = fed.count("sessions").await;
    let csrf = page.input("_csrf").unwrap();
    let link_url = format!("{}/login/upstream/link", fed.issuer());

    // A password posted anyway proves nothing.
    let r = b
        .post(&link_url, &[("_csrf", &csrf), ("password", PASSWORD)])
        .await;
    r.assert_status(200);
    assert!(r.body.contains("Incorrect password."), "{}", r.body);

    // Bob's passkey answering the challenge of alice's ceremony is refused.
    let options_url =
        attr(page, r#"data-action="passkey-link""#, "data-options").expect("the passkey button");
    let options = b.post(&options_url, &[("_csrf", &csrf)]).await;
    options.assert_status(200);
    let options: Value = serde_json::from_str(&options.body).unwrap();
    let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
    assert_eq!(allowed.len(), 1, "only alice's key: {options}");
    let challenge = options["publicKey"]["challenge"].as_str().unwrap();
    let forged = bob_key.assert_with(0, challenge).to_string();
    let answer_url = options_url.replacen("/options", "", 1);
    let r = b
        .post(&answer_url, &[("_csrf", &csrf), ("credential", &forged)])
        .await;
    r.assert_status(200);
    assert!(r.body.contains(REFUSED), "{}", r.body);

    // An answer to another ceremony (the sign-in page's discoverable one) is refused.
    let signin_options = b
        .post(
            &format!("{}/login/passkey/options", fed.issuer()),
            &[("_csrf", &csrf)],
        )
        .await;
    signin_options.assert_status(200);
    let signin_options: Value = serde_json::from_str(&signin_options.body).unwrap();
    let other = alice_key.assert(&signin_options).to_string();
    let r = b
        .post(&answer_url, &[("_csrf", &csrf), ("credential", &other)])
        .await;
    r.assert_status(200);
    assert!(r.body.contains(REFUSED), "{}", r.body);
    assert_eq!(fed.count("federated_identities").await, 0);
    assert_eq!(fed.count("sessions").await, sessions);
}

async fn an_upstream_account_links_with_a_passkey_of_the_local_user_and_no_other(backend: Backend) {
    let fed = setup(
        backend,
        Options {
            localhost: true,
            ..Options::default()
        },
    )
    .await;
    user(
        &fed.up_db,
        "ann",
        UP_PASSWORD,
        Some(("ann@corp.example", true)),
    )
    .await;
    user(&fed.db, "alice", PASSWORD, Some(("ann@corp.example", true))).await;
    user(&fed.db, "bob", PASSWORD, None).await;
    let mut alice_key = with_a_passkey(&fed, "alice").await;
    let mut bob_key = with_a_passkey(&fed, "bob").await;

    // With a password and a passkey, the page offers both.
    let (_, both) = upstream_sign_in(&fed, "ann").await;
    both.assert_status(200);
    assert!(both.body.contains(r#"name="password""#), "{}", both.body);
    assert!(
        both.body.contains(r#"data-action="passkey-link""#),
        "{}",
        both.body
    );

    // Without a password, the passkey is the only proof.
    fed.db
        .execute("UPDATE users SET password_hash = NULL WHERE username = 'alice'")
        .await;
    let (b, page) = upstream_sign_in(&fed, "ann").await;
    page.assert_status(200);
    assert!(
        page.body.contains("Use one of its passkeys"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(r#"name="password""#), "{}", page.body);
    refused_link_proofs(&fed, &b, &page, &mut alice_key, &mut bob_key).await;

    // Alice's passkey links the accounts and signs her in.
    let (credential, action, csrf) = answer(&b, &page, "passkey-link", &mut alice_key).await;
    let ok = b
        .post(&action, &[("_csrf", &csrf), ("credential", &credential)])
        .await;
    ok.assert_status(200);
    assert!(ok.body.contains("alice"), "signed in as alice: {}", ok.body);
    let alice = fed
        .db
        .rows("SELECT user_id FROM users WHERE username = 'alice'")
        .await
        .remove(0);
    assert_eq!(
        fed.db
            .rows("SELECT user_id FROM federated_identities")
            .await,
        std::slice::from_ref(&alice)
    );
    let amr = fed
        .db
        .rows(&format!(
            "SELECT amr FROM sessions WHERE user_id = '{alice}' AND amr LIKE '%fed%'"
        ))
        .await;
    // The upstream's sign-in (`fed`, its `pwd`), then the passkey's: two factors.
    assert_eq!(amr, [r#"["fed","pwd","hwk","user","mfa"]"#], "{amr:?}");
    let events = fed.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("upstream.linked|user|{alice}|"))
                && e.contains(r#""proof":"passkey""#)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("login.failed|") && e.contains("passkey_")),
        "the refused passkeys are audited: {events:?}"
    );

    // The same answer again links nothing more: the pending link is used up.
    let csrf = login_page(&b, &fed).await.input("_csrf").unwrap();
    let again = b
        .post(&action, &[("_csrf", &csrf), ("credential", &credential)])
        .await;
    assert_eq!(problem(&again), "stale");
    assert_eq!(fed.count("federated_identities").await, 1);
}

async fn an_unverified_upstream_address_never_links_silently(backend: Backend) {
    let fed = setup(backend, Options::default()).await;
    // The upstream does not vouch for the address someone typed into their profile.
    user(
        &fed.up_db,
        "mallory",
        UP_PASSWORD,
        Some(("alice@corp.example", false)),
    )
    .await;
    user(
        &fed.db,
        "alice",
        PASSWORD,
        Some(("alice@corp.example", true)),
    )
    .await;
    let (_, page) = upstream_sign_in(&fed, "mallory").await;
    page.assert_status(403);
    assert_eq!(problem(&page), "unverified_email");
    assert!(
        !page.body.contains("alice"),
        "no local username shown: {}",
        page.body
    );
    assert_eq!(fed.count("federated_identities").await, 0);
    assert_eq!(fed.count("sessions").await, 0);
    assert_eq!(fed.count("users").await, 1, "nobody provisioned either");
    let events = fed.events().await;
    assert!(
        events.iter().any(|e| e.starts_with("login.failed|")
            && e.contains(r#""reason":"denied_by_policy""#)
            && e.contains("unverified_email")),
        "{events:?}"
    );
}

async fn an_upstream_error_signs_nobody_in(backend: Backend) {
    let fed = setup(
        backend,
        Options {
            consent_upstream: true,
            ..Options::default()
        },
    )
    .await;
    user(&fed.up_db, "ann", UP_PASSWORD, None).await;
    let b = Browser::new();
    let authorize = to_upstream(&b, &login_page(&b, &fed).await).await;
    let to_login = b.get(&authorize).await;
    let form = b.follow(&to_login).await;
    let signed_in = b
        .submit(&form, &[("username", "ann"), ("password", UP_PASSWORD)])
        .await;
    let consent = b.follow(&signed_in).await;
    let consent = if consent.status == 303 {
        b.follow(&consent).await
    } else {
        consent
    };
    consent.assert_status(200);
    // The user denies at the upstream: `error=access_denied` comes back with the state.
    let denied = b.submit(&consent, &[("decision", "deny")]).await;
    assert_eq!(denied.status, 303, "{}", denied.body);
    let callback = denied.location().unwrap();
    assert!(callback.contains("error=access_denied"), "{callback}");
    let page = b.get(&callback).await;
    page.assert_status(403);
    assert_eq!(problem(&page), "cancelled");
    assert_eq!(fed.count("sessions").await, 0);
    assert_eq!(fed.count("users").await, 0);
    let events = fed.events().await;
    assert!(
        events.iter().any(|e| e.starts_with("login.failed|")
            && e.contains(r#""reason":"upstream_error""#)
            && e.contains(r#""upstream_error":"access_denied""#)),
        "{events:?}"
    );
}

async fn a_replayed_state_signs_nobody_in(backend: Backend) {
    let fed = setup(backend, Options::default()).await;
    user(&fed.up_db, "ann", UP_PASSWORD, None).await;
    let b = Browser::new();
    let authorize = to_upstream(&b, &login_page(&b, &fed).await).await;
    let callback = sign_in_upstream(&b, &fed, &authorize, "ann").await;
    // Someone else's browser with the callback URL (a leaked or planted link).
    let attacker = Browser::new();
    let stolen = attacker.get(&callback).await;
    stolen.assert_status(400);
    assert_eq!(problem(&stolen), "stale");
    assert_eq!(fed.count("sessions").await, 0);
    // The rightful browser still finishes its own sign-in…
    b.get(&callback).await.assert_status(200);
    assert_eq!(fed.count("sessions").await, 1);
    // …once: the same answer again signs nobody in.
    let replayed = b.get(&callback).await;
    replayed.assert_status(400);
    assert_eq!(problem(&replayed), "stale");
    assert_eq!(fed.count("sessions").await, 1);
    // Huge parameters are not read: no attempt matches them.
    let huge = "x".repeat(4096);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("state", huge.as_str()),
            ("code", huge.as_str()),
            ("iss", huge.as_str()),
        ])
        .finish();
    let flooded = b
        .get(&format!("{}/login/upstream/callback?{q}", fed.issuer()))
        .await;
    flooded.assert_status(400);
    assert_eq!(problem(&flooded), "stale");
    assert_eq!(fed.count("sessions").await, 1);
    let events = fed.events().await;
    assert!(
        events.iter().any(|e| e.starts_with("login.failed|")
            && e.contains(r#""reason":"invalid_token""#)
            && e.contains(r#""detail":"state""#)),
        "{events:?}"
    );
}

async fn a_wrong_nonce_signs_nobody_in(backend: Backend) {
    let fed = setup(backend, Options::default()).await;
    user(&fed.up_db, "ann", UP_PASSWORD, None).await;
    let b = Browser::new();
    let authorize = to_upstream(&b, &login_page(&b, &fed).await).await;
    // The upstream is made to sign another nonce than the one our session holds (an
    // ID token minted for another sign-in).
    let mut url = url::Url::parse(&authorize).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "not-the-nonce-we-sent".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(&pairs);
    let callback = sign_in_upstream(&b, &fed, url.as_str(), "ann").await;
    let page = b.get(&callback).await;
    page.assert_status(400);
    assert_eq!(problem(&page), "invalid_response");
    assert_eq!(fed.count("sessions").await, 0);
    assert_eq!(fed.count("users").await, 0);
    assert_eq!(fed.count("federated_identities").await, 0);
    let events = fed.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("login.failed|") && e.contains(r#""reason":"invalid_token""#)),
        "{events:?}"
    );
}

async fn the_upstreams_key_rotation_is_followed(backend: Backend) {
    let fed = setup(backend, Options::default()).await;
    user(&fed.up_db, "ann", UP_PASSWORD, None).await;
    let (_, first) = upstream_sign_in(&fed, "ann").await;
    first.assert_status(200);
    let old = fed.up.kids("/jwks").await;
    // An emergency rotation upstream: new keys sign at once, the old ones are withdrawn;
    // our cached key set knows none of the new kids.
    fed.up_db
        .cli()
        .args(["keys", "rotate", "--now"])
        .run()
        .await
        .assert_success();
    fed.up
        .wait_for_kids("/jwks", std::time::Duration::from_secs(10), |kids| {
            !kids.is_empty() && kids.iter().all(|k| !old.contains(k))
        })
        .await;
    let (_, second) = upstream_sign_in(&fed, "ann").await;
    second.assert_status(200);
    assert!(second.body.contains("ann"), "{}", second.body);
    assert_eq!(fed.count("sessions").await, 2);
}

async fn the_last_way_to_sign_in_cannot_be_unlinked(backend: Backend) {
    // With userinfo read too (its `sub` must be the ID token's).
    let fed = setup(
        backend,
        Options {
            provider: r#""userinfo": true"#,
            ..Options::default()
        },
    )
    .await;
    user(&fed.up_db, "ann", UP_PASSWORD, None).await;
    let (b, page) = upstream_sign_in(&fed, "ann").await;
    page.assert_status(200);
    let links = b.get(&format!("{}/account/links", fed.issuer())).await;
    links.assert_status(200);
    let csrf = links.input("_csrf").unwrap();
    let subject = links.input("subject").unwrap();
    let refused = b
        .post(
            &format!("{}/account/links", fed.issuer()),
            &[
                ("_csrf", &csrf),
                ("provider", "corp"),
                ("subject", &subject),
            ],
        )
        .await;
    refused.assert_status(409);
    assert!(
        refused.body.contains("only way to sign in"),
        "{}",
        refused.body
    );
    assert_eq!(fed.count("federated_identities").await, 1);
}

async fn home_realm_discovery_goes_straight_to_the_upstream(backend: Backend) {
    let fed = setup(
        backend,
        Options {
            provider: r#""jitProvisioning": false"#,
            federation: r#""loginHintDomains": {"corp.example": "corp"}"#,
            ..Options::default()
        },
    )
    .await;
    user(&fed.up_db, "ann", UP_PASSWORD, None).await;
    let b = Browser::new();
    let to_login = b
        .get(&rp_authorize(&fed, &[("login_hint", "ann@corp.example")]))
        .await;
    to_login.assert_status(303);
    // The sign-in page sends the browser on at once, the hint passed through.
    let straight = b.follow(&to_login).await;
    straight.assert_status(303);
    let authorize = straight.location().unwrap();
    assert!(authorize.starts_with(&fed.up_issuer()), "{authorize}");
    assert!(
        authorize.contains("login_hint=ann%40corp.example"),
        "{authorize}"
    );
    // Without provisioning, an unlinked upstream account gets no account here.
    let callback = sign_in_upstream(&b, &fed, &authorize, "ann").await;
    let page = b.get(&callback).await;
    page.assert_status(403);
    assert_eq!(problem(&page), "not_provisioned");
    assert_eq!(fed.count("users").await, 0);
    assert_eq!(fed.count("sessions").await, 0);
    // Another domain still sees the form.
    let other = Browser::new();
    let to_login = other
        .get(&rp_authorize(
            &fed,
            &[("login_hint", "bob@elsewhere.example")],
        ))
        .await;
    other.follow(&to_login).await.assert_status(200);
}

async fn our_second_factor_can_be_required_after_an_upstream_sign_in(backend: Backend) {
    let fed = setup(
        backend,
        Options {
            federation: r#""requireSecondFactor": true"#,
            ..Options::default()
        },
    )
    .await;
    user(&fed.up_db, "ann", UP_PASSWORD, None).await;
    let (b, page) = upstream_sign_in(&fed, "ann").await;
    // No account session yet: the provisioned user enrols a second factor first.
    page.assert_status(303);
    let enrol = page.location().unwrap();
    assert!(enrol.contains("/login/mfa/enroll"), "{enrol}");
    assert_eq!(fed.count("sessions").await, 0);
    let form = b.follow(&page).await;
    form.assert_status(200);
    assert!(form.body.contains("name=\"totp\""), "{}", form.body);
}

/// Tenant `main` with a GitHub-style provider `github` (the stub), admitting members of
/// the organisation `acme`.
/// GET `{issuer}/upstream/corp/token` with `bearer` (none: no Authorization).
async fn read_upstream_token(fed: &Fed, provider: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = fed
        .down
        .http()
        .get(fed.down.url(&format!("/upstream/{provider}/token")));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Follows the browser's redirects from `url` until one goes to [`CB`].
async fn code_redirect(b: &Browser, url: &str) -> Page {
    let mut page = b.get(url).await;
    while page.status == 303 && !page.location().is_some_and(|l| l.starts_with(CB)) {
        page = b.follow(&page).await;
    }
    page
}

#[allow(clippy::too_many_lines)]
async fn kept_upstream_tokens_are_sealed_and_read_only_by_token_readers(backend: Backend) {
    let fed = setup(
        backend,
        Options {
            provider: r#""storeTokens": true, "tokenReaders": ["rp"]"#,
            ..Options::default()
        },
    )
    .await;
    user(
        &fed.up_db,
        "ann",
        UP_PASSWORD,
        Some(("ann@corp.example", true)),
    )
    .await;
    let other = create_client(&fed.db, "other", &["--redirect-uri", CB, "--first-party"]).await;
    let b = Browser::new();
    let login = b.follow(&b.get(&rp_authorize(&fed, &[])).await).await;
    let authorize = to_upstream(&b, &login).await;
    let callback = sign_in_upstream(&b, &fed, &authorize, "ann").await;
    let redirect = b.follow(&b.get(&callback).await).await;
    let tokens = token_response(&fed, &redirect, &fed.rp).await;
    let access = tokens["access_token"].as_str().unwrap();

    // A reader gets the upstream's access token, never its refresh or ID token.
    let r = read_upstream_token(&fed, "corp", Some(access)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let kept: Value = r.json().await.unwrap();
    assert_eq!(kept["provider"], "corp");
    assert_eq!(kept["token_type"], "Bearer");
    assert!(kept["expires_in"].as_i64().unwrap() > 0, "{kept}");
    assert!(kept.get("refresh_token").is_none() && kept.get("id_token").is_none());
    let upstream_access = kept["access_token"].as_str().unwrap().to_owned();
    // It is the upstream's own: its userinfo answers as ann there.
    let info = fed
        .up
        .http()
        .get(fed.up.url("/userinfo"))
        .bearer_auth(&upstream_access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.unwrap();
    let up_sub = fed
        .up_db
        .rows("SELECT user_id FROM users WHERE username = 'ann'")
        .await
        .remove(0);
    assert_eq!(info["sub"], up_sub.as_str());
    // Sealed at rest: the database never holds it in clear.
    let stored = fed
        .db
        .rows("SELECT tokens_kek_id || ' ' || tokens_sealed FROM federated_identities")
        .await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&upstream_access), "{stored:?}");
    let old_kek = stored[0].split(' ').next().unwrap().to_owned();

    // No token, a forged one, another provider, another client: nothing.
    let r = read_upstream_token(&fed, "corp", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = read_upstream_token(&fed, "corp", Some("not-a-token")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        read_upstream_token(&fed, "nope", Some(access))
            .await
            .status(),
        404
    );
    let redirect = code_redirect(
        &b,
        &rp_authorize(&fed, &[]).replace("client_id=rp", "client_id=other"),
    )
    .await;
    let theirs = token_response(&fed, &redirect, &other).await;
    let r = read_upstream_token(&fed, "corp", theirs["access_token"].as_str()).await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    let events = fed.events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("upstream.token_read|rp|"))
            .count(),
        1,
        "{events:?}"
    );

    // `keys reencrypt` re-seals them under the new ENCRYPTION_KEY, where they open.
    let new_key = crate::harness::new_encryption_key();
    let out = fed
        .db
        .cli()
        .env("ENCRYPTION_KEY", new_key.as_str())
        .env("OLD_ENCRYPTION_KEY", fed.db.key())
        .args(["keys", "reencrypt", "--old-key-env", "OLD_ENCRYPTION_KEY"])
        .run()
        .await;
    out.assert_success();
    assert!(
        out.stdout.contains("re-encrypted 1 upstream token set(s)"),
        "{out}"
    );
    let kek = fed
        .db
        .rows("SELECT tokens_kek_id FROM federated_identities")
        .await;
    assert_ne!(kek, [old_kek]);
    let Fed { db, down, .. } = fed;
    drop(down);
    let down = fast(db.cli())
        .env("ENCRYPTION_KEY", new_key.as_str())
        .serve_in_process(db.port)
        .await;
    let r = down
        .http()
        .get(down.url("/upstream/corp/token"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let kept: Value = r.json().await.unwrap();
    assert_eq!(kept["access_token"], upstream_access.as_str());
}

async fn setup_github(backend: Backend) -> (TestDb, Server, GitHubStub) {
    let db = TestDb::migrated(backend).await;
    let callback = format!("{}/login/upstream/callback", db.issuer(""));
    let stub = GitHubStub::start("Iv1.gatehouse", "github-app-secret", &callback).await;
    let secret_file = db.write_config("github-client-secret", "github-app-secret\n");
    let settings = json!({"federation": {"providers": [{
        "id": "github", "displayName": "GitHub", "kind": "oauth2",
        "issuer": "https://github.com", "clientId": "Iv1.gatehouse",
        "clientSecret": {"file": secret_file.display().to_string()},
        "tokenEndpointAuthMethod": "client_secret_post",
        "scopes": ["read:user", "user:email", "read:org"],
        "oauth2": {
            "authorizationEndpoint": format!("{}/login/oauth/authorize", stub.url),
            "tokenEndpoint": format!("{}/login/oauth/access_token", stub.url),
            "userUrl": format!("{}/user", stub.url),
            "emailsUrl": format!("{}/user/emails", stub.url),
            "orgsUrl": format!("{}/user/orgs", stub.url),
            "allowedOrgs": ["ACME"],
            "teamsUrl": format!("{}/user/teams", stub.url),
            "allowedTeams": ["Partners/Auditors"]
        },
        "claims": {"subject": "id", "username": "login", "forward": ["orgs", "teams"]}
    }]}});
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    settings: {settings}\n",
            db.issuer("")
        ),
    );
    let server = fast(db.cli()).serve_in_process(db.port).await;
    stub.add(Account {
        id: 4242,
        login: "octo".into(),
        name: "Octo Cat".into(),
        emails: vec![
            ("octo@users.noreply.example".into(), false, true),
            ("octo@acme.example".into(), true, true),
        ],
        orgs: vec!["acme".into(), "tools".into()],
        teams: vec![("acme".into(), "developers".into())],
    });
    stub.add(Account {
        id: 666,
        login: "mallory".into(),
        name: "Mallory".into(),
        emails: vec![("mallory@evil.example".into(), true, true)],
        orgs: vec!["evil".into()],
        // A team named like an allowed one, in another organisation.
        teams: vec![("evil".into(), "auditors".into())],
    });
    // Many organisations, none allowed; admitted through a team.
    stub.add(Account {
        id: 7,
        login: "carol".into(),
        name: "Carol".into(),
        emails: vec![("carol@partners.example".into(), true, true)],
        orgs: (0..150).map(|i| format!("org{i}")).collect(),
        teams: vec![("partners".into(), "auditors".into())],
    });
    // The allowed organisation on the second page of 100.
    stub.add(Account {
        id: 8,
        login: "dave".into(),
        name: "Dave".into(),
        emails: vec![("dave@acme.example".into(), true, true)],
        orgs: (0..130)
            .map(|i| {
                if i == 120 {
                    "acme".into()
                } else {
                    format!("org{i}")
                }
            })
            .collect(),
        teams: vec![],
    });
    (db, server, stub)
}

/// Our sign-in page → GitHub (which approves at once) → the callback URL.
async fn through_github(b: &Browser, db: &TestDb, stub: &GitHubStub) -> String {
    let login = b.get(&format!("{}/login", db.issuer(""))).await;
    let authorize = to_provider(b, &login, "github").await;
    assert!(authorize.starts_with(&stub.url), "{authorize}");
    assert!(
        !authorize.contains("nonce="),
        "no OpenID Connect: {authorize}"
    );
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let approved = b.get(&authorize).await;
    assert_eq!(approved.status, 302, "{}", approved.body);
    approved.location().unwrap()
}

async fn a_github_style_provider_admits_members_of_allowed_orgs_or_teams_only(backend: Backend) {
    let (db, _server, stub) = setup_github(backend).await;
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.scalar(&format!("SELECT count(*) FROM {sql}")).await }
    };

    // A member of acme: provisioned from the user API, the verified primary address.
    stub.sign_in_as("octo");
    let b = Browser::new();
    let callback = through_github(&b, &db, &stub).await;
    let page = b.get(&callback).await;
    page.assert_status(200);
    assert!(
        page.body.contains("<strong><bdi>octo</bdi></strong>"),
        "{}",
        page.body
    );
    assert_eq!(
        count("users WHERE username = 'octo' AND email = 'octo@acme.example' AND email_verified")
            .await,
        1
    );
    assert_eq!(
        db.rows("SELECT subject || '|' || claims FROM federated_identities")
            .await,
        [r#"4242|{"orgs":["acme","tools"],"teams":["acme/developers"]}"#]
    );
    let amr = db.rows("SELECT amr FROM sessions").await;
    assert_eq!(amr, [r#"["fed"]"#]);

    // A member of an allowed team only, and a member of an allowed organisation listed
    // on the second page: both admitted.
    for (login, id) in [("carol", "7"), ("dave", "8")] {
        stub.sign_in_as(login);
        let b = Browser::new();
        let callback = through_github(&b, &db, &stub).await;
        b.get(&callback).await.assert_status(200);
        let claims = db
            .rows(&format!(
                "SELECT claims FROM federated_identities WHERE subject = '{id}'"
            ))
            .await;
        let claims: Value = serde_json::from_str(&claims[0]).unwrap();
        let orgs = claims["orgs"].as_array().unwrap().len();
        assert_eq!((login, orgs), (login, if id == "7" { 150 } else { 130 }));
        if login == "carol" {
            assert_eq!(claims["teams"], json!(["partners/auditors"]));
        }
    }
    assert_eq!(count("users").await, 3);

    // Not a member of an allowed organisation or team: refused, nobody created.
    stub.sign_in_as("mallory");
    let other = Browser::new();
    let callback = through_github(&other, &db, &stub).await;
    let refused = other.get(&callback).await;
    refused.assert_status(403);
    assert_eq!(problem(&refused), "not_allowed");
    assert_eq!(count("users").await, 3);
    assert_eq!(count("sessions").await, 3);
    assert!(
        db.audit().await.iter().any(|e| e.starts_with("login.failed|")
            && e.contains(r#""reason":"denied_by_policy""#)),
    );

    // A code GitHub does not know: its 200-with-error answer is an upstream error.
    stub.sign_in_as("octo");
    let third = Browser::new();
    let callback = through_github(&third, &db, &stub).await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" {
                "forged-code".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(&pairs);
    let failed = third.get(url.as_str()).await;
    failed.assert_status(502);
    assert_eq!(problem(&failed), "upstream_error");
    assert_eq!(count("sessions").await, 3);
}

/// The stub answers like GitHub where the code depends on it (one session with it,
/// asserted step by step).
#[tokio::test]
#[allow(clippy::too_many_lines)]
async fn the_github_stub_answers_like_github() {
    let stub = GitHubStub::start("app", "secret", "http://127.0.0.1:1/cb").await;
    stub.add(Account {
        id: 1,
        login: "octo".into(),
        name: "Octo".into(),
        emails: vec![],
        orgs: vec!["a".into(), "b".into(), "c".into()],
        teams: vec![],
    });
    stub.sign_in_as("octo");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = |redirect: &str| {
        format!(
            "{}/login/oauth/authorize?client_id=app&redirect_uri={}&state=s",
            stub.url,
            url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
        )
    };
    // Another redirect URI: no redirect at all.
    let r = http
        .get(authorize("http://127.0.0.1:1/evil"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(authorize("http://127.0.0.1:1/cb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let code = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let form = [
        ("client_id", "app"),
        ("client_secret", "secret"),
        ("code", code.as_str()),
    ];
    // Form-encoded unless JSON is asked for.
    let r = http
        .post(format!("{}/login/oauth/access_token", stub.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.starts_with("access_token=gho_"), "{body}");
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "access_token")
        .unwrap()
        .1
        .into_owned();
    // Codes are single use; a bad one is HTTP 200 with an error.
    let r = http
        .post(format!("{}/login/oauth/access_token", stub.url))
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "bad_verification_code");
    // The user API wants the token and a User-Agent.
    let user = format!("{}/user", stub.url);
    let r = http
        .get(&user)
        .header("user-agent", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(&user).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(&user)
        .bearer_auth(&token)
        .header("user-agent", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["id"].as_u64(), v["login"].as_str()),
        (Some(1), Some("octo"))
    );
    // Lists are paged with a Link header while there are more.
    let page = |n: u32| {
        http.get(format!("{}/user/orgs?per_page=2&page={n}", stub.url))
            .bearer_auth(&token)
            .header("user-agent", "t")
            .send()
    };
    let r = page(1).await.unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(
        link,
        format!(
            "<{0}/user/orgs?per_page=2&page=2>; rel=\"next\", <{0}/user/orgs?per_page=2&page=2>; rel=\"last\"",
            stub.url
        )
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!([{"login": "a", "id": 1}, {"login": "b", "id": 1}]));
    let r = page(2).await.unwrap();
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!([{"login": "c", "id": 1}]));
}
