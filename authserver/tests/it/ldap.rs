//! Sign-in against an LDAP directory (`kind: ldap`), browser-level, with a real OpenLDAP
//! server the test starts and seeds ([`crate::harness::slapd`]). The ordinary password
//! form: first sign-in with just-in-time provisioning (the relying party's ID token
//! carries `amr` `pwd`, the mapped claims and `groups`), a second sign-in that reuses
//! the user and refreshes the groups, wrong passwords and unknown users refused alike
//! (and throttled), LDAP injection, an empty password (no bind at all), an oversized
//! username, LDAPS and StartTLS with the test's CA and a wrong CA refused, a directory
//! that never answers (timeout) or is down (clear page), linking to a local account
//! with its password, and no silent linking on an unverified address.

use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::authorize_flow::{CB, VERIFIER};
use crate::harness::browser::{Browser, Page, fast, user_cli};
use crate::harness::oauth::{Creds, create_client, post_form, send};
use crate::harness::slapd::{SERVICE_DN, Silent, Slapd};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    a_first_directory_sign_in_provisions_the_user_and_the_rp_gets_its_groups,
    wrong_passwords_and_unknown_users_are_refused_alike_and_throttled,
    ldap_injection_and_impossible_input_find_nobody,
    ldaps_and_starttls_trust_the_configured_ca_only,
    an_unresponsive_directory_times_out_with_a_clear_page,
    a_directory_that_is_down_shows_a_clear_page,
    a_directory_account_links_to_a_local_user_only_with_its_password,
    an_unverified_directory_address_never_links_silently,
    a_second_factor_can_be_required_after_a_directory_sign_in,
);

const LOCAL_PASSWORD: &str = "correct horse battery staple";

/// Tenant `main` with the directory `corp-dir` and the relying party `rp`.
struct Dir {
    db: TestDb,
    server: Server,
    slapd: Slapd,
    rp: Creds,
}

impl Dir {
    fn issuer(&self) -> String {
        self.db.issuer("")
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db.scalar(&format!("SELECT count(*) FROM {sql}")).await
    }

    async fn sign_in(&self, username: &str, password: &str) -> Page {
        Browser::new()
            .sign_in(&self.issuer(), username, password)
            .await
    }
}

/// The tenant's directory: the harness's slapd over plain LDAP, groups by search,
/// `departmentNumber` forwarded, addresses trusted; the members `ldap` returns (it
/// sees the server) replace these. `env`: extra server settings.
async fn setup(backend: Backend, ldap: impl FnOnce(&Slapd) -> Value, env: &[(&str, &str)]) -> Dir {
    setup_with(backend, ldap, env, &json!({})).await
}

/// [`setup`] with extra members of `federation` (e.g. `requireSecondFactor`).
async fn setup_with(
    backend: Backend,
    ldap: impl FnOnce(&Slapd) -> Value,
    env: &[(&str, &str)],
    federation: &Value,
) -> Dir {
    let slapd = Slapd::start().await;
    let ldap = ldap(&slapd);
    let db = TestDb::migrated(backend).await;
    let mut directory = json!({
        "url": slapd.url(),
        "bindDn": SERVICE_DN,
        "bindPassword": {"file": slapd.bind_password_file().display().to_string()},
        "userBaseDn": "ou=people,dc=corp,dc=example",
        "userFilter": "(&(objectClass=inetOrgPerson)(uid={username}))",
        "groupBaseDn": "ou=groups,dc=corp,dc=example",
        "groupFilter": "(&(objectClass=groupOfNames)(member={dn}))",
        "emailVerified": true,
        "timeoutSeconds": 2
    });
    if let (Some(d), Some(extra)) = (directory.as_object_mut(), ldap.as_object()) {
        d.extend(extra.clone());
    }
    let mut settings = json!({"federation": {"providers": [{
        "id": "corp-dir", "displayName": "Corp directory", "kind": "ldap",
        "ldap": directory,
        "claims": {"forward": ["departmentNumber"]}
    }]}});
    if let (Some(f), Some(extra)) = (
        settings["federation"].as_object_mut(),
        federation.as_object(),
    ) {
        f.extend(extra.clone());
    }
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    settings: {settings}\n",
            db.issuer("")
        ),
    );
    let rp = create_client(&db, "rp", &["--redirect-uri", CB, "--first-party"]).await;
    let mut cli = fast(db.cli());
    for (k, v) in env {
        cli = cli.env(k, *v);
    }
    let server = cli.serve_in_process(db.port).await;
    Dir {
        db,
        server,
        slapd,
        rp,
    }
}

/// `{issuer}/authorize?…` for `rp` with PKCE and nonce `n`.
fn rp_authorize(dir: &Dir) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, VERIFIER.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref());
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "rp"),
            ("redirect_uri", CB),
            ("scope", "openid email profile"),
            ("state", "st"),
            ("nonce", "n"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    format!("{}/authorize?{q}", dir.issuer())
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

/// Redeems the code of a redirect to [`CB`]: the ID token's claims (userinfo checked
/// to carry the same groups).
async fn redeem(dir: &Dir, redirect: &Page) -> Value {
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
            &dir.server,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
            ],
        )
        .header(reqwest::header::AUTHORIZATION, dir.rp.basic()),
    )
    .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    let claims = jwt_claims(tokens.body["id_token"].as_str().expect("an ID token"));
    let access = tokens.body["access_token"].as_str().unwrap().to_owned();
    let info: Value = dir
        .server
        .http()
        .get(dir.server.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["groups"], claims["groups"], "{info}");
    claims
}

fn problem(p: &Page) -> String {
    let at = p
        .body
        .find("data-problem=\"")
        .unwrap_or_else(|| panic!("not a problem page: {} {}", p.status, p.body));
    let rest = &p.body[at + "data-problem=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn refused(p: &Page) {
    p.assert_status(200);
    assert!(
        p.body.contains("Incorrect username or password."),
        "{}",
        p.body
    );
}

/// A local user with a password and an address.
async fn local_user(db: &TestDb, username: &str, email: &str) {
    user_cli(db)
        .commands()
        .await
        .create_user(
            &[
                "--username",
                username,
                "--email",
                email,
                "--email-verified",
                "--password-stdin",
            ],
            LOCAL_PASSWORD,
        )
        .await
        .unwrap_or_else(|e| panic!("users create {username}: {e:#}"));
}

// One journey, asserted step by step.
#[allow(clippy::too_many_lines)]
async fn a_first_directory_sign_in_provisions_the_user_and_the_rp_gets_its_groups(
    backend: Backend,
) {
    let dir = setup(backend, |_| json!({}), &[]).await;
    let b = Browser::new();
    let to_login = b.get(&rp_authorize(&dir)).await;
    to_login.assert_status(303);
    let login = b.follow(&to_login).await;
    login.assert_status(200);
    assert!(
        !login.body.contains("name=\"provider\""),
        "a directory is no button: {}",
        login.body
    );
    // Nor can it be posted as one.
    let csrf = login.input("_csrf").expect("csrf");
    let forged = b
        .post(
            &format!("{}/login/upstream", dir.issuer()),
            &[("_csrf", &csrf), ("provider", "corp-dir")],
        )
        .await;
    forged.assert_status(400);
    assert_eq!(problem(&forged), "unknown_provider");
    let back = b
        .submit(&login, &[("username", "ann"), ("password", "ann-password")])
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(
        back.location()
            .unwrap()
            .contains("/authorize/continue?request="),
        "{:?}",
        back.location()
    );
    let redirect = b.follow(&back).await;
    let claims = redeem(&dir, &redirect).await;
    assert_eq!(claims["amr"], json!(["pwd"]), "{claims}");
    assert_eq!(claims["acr"], "1");
    assert_eq!(claims["preferred_username"], "ann");
    assert_eq!(claims["email"], "ann@corp.example");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Ann Smith");
    assert_eq!(claims["groups"], json!(["devs", "ops"]), "{claims}");
    assert_eq!(claims["departmentNumber"], "42", "{claims}");

    // Provisioned without a password (never stored), linked by the entryUUID.
    assert_eq!(
        dir.count("users WHERE username = 'ann' AND password_hash IS NULL")
            .await,
        1
    );
    let links = dir
        .db
        .rows("SELECT provider_id || '|' || subject FROM federated_identities")
        .await;
    assert_eq!(links.len(), 1);
    let subject = links[0].strip_prefix("corp-dir|").expect("the directory's");
    assert_eq!(subject.len(), 36, "an entryUUID: {subject}");
    let events = dir.db.audit().await;
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
            .any(|x| x.starts_with("login.succeeded|") && x.contains(r#""amr":["pwd"]"#)),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.contains("ann-password")),
        "the password is nowhere: {events:?}"
    );

    // The directory moves ann out of devs and into admins: the next sign-in reuses the
    // user and refreshes the groups.
    dir.slapd.modify(
        "dn: cn=devs,ou=groups,dc=corp,dc=example\nchangetype: modify\ndelete: member\n\
         member: uid=ann,ou=people,dc=corp,dc=example\n\n\
         dn: cn=admins,ou=groups,dc=corp,dc=example\nchangetype: add\nobjectClass: groupOfNames\n\
         cn: admins\nmember: uid=ann,ou=people,dc=corp,dc=example\n",
    );
    let binds = dir.slapd.binds();
    let again = dir.sign_in("ann", "ann-password").await;
    again.assert_status(200);
    assert_eq!(
        dir.slapd.binds(),
        binds + 1,
        "only ann's bind: the service account's connection came from the pool"
    );
    assert!(
        again.body.contains("<strong><bdi>ann</bdi></strong>"),
        "{}",
        again.body
    );
    assert_eq!(dir.count("users").await, 1);
    assert_eq!(
        dir.db.rows("SELECT claims FROM federated_identities").await,
        [r#"{"departmentNumber":"42","groups":["admins","ops"]}"#]
    );
    assert_eq!(dir.count("sessions").await, 2);
}

#[allow(clippy::too_many_lines)]
async fn wrong_passwords_and_unknown_users_are_refused_alike_and_throttled(backend: Backend) {
    let dir = setup(
        backend,
        |_| json!({}),
        &[
            ("GATEHOUSE_LOGIN_MAX_FAILURES", "3"),
            ("GATEHOUSE_LOGIN_LOCKOUT_SECONDS", "120"),
        ],
    )
    .await;
    // A wrong password, an unknown user, and a username two entries have (never
    // guessed between, even with the right password): the same answer.
    refused(&dir.sign_in("ann", "not-anns-password").await);
    refused(&dir.sign_in("nobody", "whatever-password").await);
    refused(&dir.sign_in("twin", "twin-password").await);
    assert_eq!(dir.count("users").await, 0);
    assert_eq!(dir.count("sessions").await, 0);
    assert_eq!(dir.count("federated_identities").await, 0);
    let events = dir.db.audit().await;
    for reason in ["bad_password", "unknown_user"] {
        assert!(
            events
                .iter()
                .any(|e| e.starts_with("login.failed|") && e.contains(reason)),
            "{reason} in {events:?}"
        );
    }

    // Failures lock the username as for a local password: after the third, even the
    // right directory password is refused without asking the directory.
    refused(&dir.sign_in("ann", "not-anns-password").await);
    let locked = dir.sign_in("ann", "not-anns-password").await;
    locked.assert_status(429);
    let binds = dir.slapd.binds();
    let still = dir.sign_in("ann", "ann-password").await;
    still.assert_status(429);
    assert_eq!(
        dir.slapd.binds(),
        binds,
        "a locked username asks no directory"
    );
    assert_eq!(dir.count("sessions").await, 0);

    // A local user with a local password is checked locally: the directory's password
    // of the same name does not sign in as it.
    local_user(&dir.db, "bob", "bob@local.example").await;
    let binds = dir.slapd.binds();
    refused(&dir.sign_in("bob", "bob-password").await);
    assert_eq!(dir.slapd.binds(), binds, "the directory was not asked");
    let ok = dir.sign_in("bob", LOCAL_PASSWORD).await;
    ok.assert_status(200);
    assert_eq!(dir.count("federated_identities").await, 0);
}

async fn ldap_injection_and_impossible_input_find_nobody(backend: Backend) {
    let dir = setup(backend, |_| json!({}), &[]).await;
    // Filter syntax in the username is a literal value (RFC 4515): with ann's password
    // none of these is ann (or anyone).
    for username in [
        "*",
        "a*",
        ")(uid=*",
        "ann)(|(uid=*",
        "*)(objectClass=*",
        "ann\\",
        "\\2a",
        "\\00",
        "ann\\00",
    ] {
        refused(&dir.sign_in(username, "ann-password").await);
    }
    assert_eq!(dir.count("sessions").await, 0);
    assert_eq!(dir.count("users").await, 0);

    // An empty password never reaches the directory — not even the service account's
    // bind: LDAP takes a DN without a password as an unauthenticated bind.
    let binds = dir.slapd.binds();
    refused(&dir.sign_in("ann", "").await);
    // A NUL in the username and an oversized one are refused before any LDAP.
    refused(&dir.sign_in("ann\u{0}", "ann-password").await);
    let huge = dir.sign_in(&"a".repeat(20_000), "ann-password").await;
    assert!(
        huge.status == 200 || huge.status == 413,
        "{} {}",
        huge.status,
        huge.body
    );
    assert_eq!(dir.slapd.binds(), binds, "{}", dir.slapd.log());
    assert_eq!(dir.count("sessions").await, 0);
    assert!(
        dir.db
            .audit()
            .await
            .iter()
            .any(|e| e.starts_with("login.failed|") && e.contains("empty_password")),
    );
}

async fn ldaps_and_starttls_trust_the_configured_ca_only(backend: Backend) {
    let ca = |s: &Slapd| s.ca_file().display().to_string();
    // LDAPS with the CA that signed the server's certificate.
    let ldaps = setup(
        backend,
        |s| json!({"url": s.ldaps_url(), "caFile": ca(s)}),
        &[],
    )
    .await;
    ldaps
        .sign_in("ann", "ann-password")
        .await
        .assert_status(200);
    assert_eq!(ldaps.count("sessions").await, 1);

    // StartTLS on the plain port, same CA.
    let starttls = setup(backend, |s| json!({"startTls": true, "caFile": ca(s)}), &[]).await;
    starttls
        .sign_in("ann", "ann-password")
        .await
        .assert_status(200);

    // A CA that did not sign the certificate: refused, before any bind.
    let wrong = setup(
        backend,
        |s| json!({"url": s.ldaps_url(), "caFile": s.other_ca_file().display().to_string()}),
        &[],
    )
    .await;
    let page = wrong.sign_in("ann", "ann-password").await;
    page.assert_status(502);
    assert_eq!(problem(&page), "upstream_error");
    assert_eq!(wrong.slapd.binds(), 0, "nothing sent over an untrusted TLS");
    assert_eq!(wrong.count("sessions").await, 0);
}

async fn an_unresponsive_directory_times_out_with_a_clear_page(backend: Backend) {
    let silent = Silent::start().await;
    let url = silent.url();
    let dir = setup(backend, |_| json!({"url": url, "timeoutSeconds": 1}), &[]).await;
    let started = Instant::now();
    let page = dir.sign_in("ann", "ann-password").await;
    let took = started.elapsed();
    page.assert_status(502);
    assert_eq!(problem(&page), "upstream_error");
    assert!(
        page.body
            .contains("Corp directory could not sign you in right now"),
        "{}",
        page.body
    );
    assert!(took.as_secs_f64() < 4.0, "answered after {took:?}");
    assert!(silent.accepted() >= 1, "the directory was tried");
    assert_eq!(dir.count("sessions").await, 0);
    let events = dir.db.audit().await;
    assert!(
        events.iter().any(|e| e.starts_with("login.failed|")
            && e.contains(r#""reason":"upstream_error""#)
            && e.contains("corp-dir")),
        "{events:?}"
    );
    // An empty password does not even connect.
    let before = silent.accepted();
    refused(&dir.sign_in("ann", "").await);
    assert_eq!(silent.accepted(), before);
}

async fn a_directory_that_is_down_shows_a_clear_page(backend: Backend) {
    let port = crate::harness::free_port();
    let dir = setup(
        backend,
        |_| json!({"url": format!("ldap://127.0.0.1:{port}")}),
        &[],
    )
    .await;
    let page = dir.sign_in("ann", "ann-password").await;
    page.assert_status(502);
    assert_eq!(problem(&page), "upstream_error");
    assert!(page.body.contains("Corp directory"), "{}", page.body);
    assert_eq!(dir.count("sessions").await, 0);
    assert_eq!(dir.count("users").await, 0);
}

async fn a_directory_account_links_to_a_local_user_only_with_its_password(backend: Backend) {
    let dir = setup(backend, |_| json!({}), &[]).await;
    local_user(&dir.db, "alice", "alice@corp.example").await;
    // bob's directory entry has alice's (verified) address.
    let b = Browser::new();
    let page = b.sign_in(&dir.issuer(), "bob", "bob-password").await;
    page.assert_status(200);
    assert!(
        page.body
            .contains("An account here, alice, has the same e-mail address"),
        "{}",
        page.body
    );
    let wrong = b
        .submit(&page, &[("password", "not alices password")])
        .await;
    wrong.assert_status(200);
    assert!(wrong.body.contains("Incorrect password."), "{}", wrong.body);
    assert_eq!(dir.count("federated_identities").await, 0);
    assert_eq!(dir.count("sessions").await, 0);
    let ok = b.submit(&wrong, &[("password", LOCAL_PASSWORD)]).await;
    ok.assert_status(200);
    assert!(ok.body.contains("alice"), "{}", ok.body);
    assert_eq!(dir.count("users").await, 1, "nobody provisioned");
    let alice = dir
        .db
        .rows("SELECT user_id FROM users WHERE username = 'alice'")
        .await
        .remove(0);
    assert_eq!(
        dir.db
            .rows("SELECT user_id FROM federated_identities")
            .await,
        std::slice::from_ref(&alice)
    );
    assert!(
        dir.db
            .audit()
            .await
            .iter()
            .any(|e| e.starts_with(&format!("upstream.linked|user|{alice}|"))),
    );
    // alice sees the link on her account page (she has a password: she may remove it).
    let links = b.get(&format!("{}/account/links", dir.issuer())).await;
    links.assert_status(200);
    assert!(links.body.contains("Corp directory"), "{}", links.body);
    // From now on bob's directory password signs in as alice, with no question.
    let next = dir.sign_in("bob", "bob-password").await;
    next.assert_status(200);
    assert!(
        next.body.contains("<strong><bdi>alice</bdi></strong>"),
        "{}",
        next.body
    );
}

async fn an_unverified_directory_address_never_links_silently(backend: Backend) {
    let dir = setup(backend, |_| json!({"emailVerified": false}), &[]).await;
    local_user(&dir.db, "alice", "alice@corp.example").await;
    let page = dir.sign_in("bob", "bob-password").await;
    page.assert_status(403);
    assert_eq!(problem(&page), "unverified_email");
    assert!(!page.body.contains("alice"), "{}", page.body);
    assert_eq!(dir.count("federated_identities").await, 0);
    assert_eq!(dir.count("sessions").await, 0);
    assert_eq!(dir.count("users").await, 1, "nobody provisioned either");
    assert!(
        dir.db
            .audit()
            .await
            .iter()
            .any(|e| e.starts_with("login.failed|")
                && e.contains(r#""reason":"denied_by_policy""#)
                && e.contains("unverified_email")),
    );
}

async fn a_second_factor_can_be_required_after_a_directory_sign_in(backend: Backend) {
    let dir = setup_with(
        backend,
        |_| json!({}),
        &[],
        &json!({"requireSecondFactor": true}),
    )
    .await;
    let page = dir.sign_in("ann", "ann-password").await;
    assert_eq!(page.status, 303, "{}", page.body);
    let next = page.location().unwrap();
    assert!(next.contains("/login/mfa/enroll"), "{next}");
    assert_eq!(
        dir.count("sessions").await,
        0,
        "not signed in before the factor"
    );
    assert_eq!(
        dir.count("users").await,
        1,
        "provisioned, waiting for the factor"
    );
}

/// `check-config` names the directory fields it cannot use (and touches no database).
#[tokio::test]
async fn check_config_names_the_directory_fields_it_cannot_use() {
    let db = TestDb::new(Backend::Sqlite).await;
    let check = async |ldap: Value| {
        let settings = json!({"federation": {"providers": [{
            "id": "corp-dir", "displayName": "Corp directory", "kind": "ldap", "ldap": ldap}]}});
        let path = db.write_config(
            "check.yaml",
            &format!(
                "tenants:\n  - id: main\n    issuer: https://id.example.com\n    settings: {settings}\n"
            ),
        );
        db.cli()
            .args(["check-config", "--config", &path.display().to_string()])
            .run()
            .await
    };
    let out = check(
        json!({"url": "ldaps://dc1.corp.example", "bindDn": "cn=svc,dc=corp",
        "bindPassword": {"file": "/nonexistent/gatehouse/bind"},
        "caFile": "/nonexistent/gatehouse/ca.pem", "userBaseDn": "dc=corp"}),
    )
    .await;
    out.assert_code(2)
        .assert_stderr_contains("tenants[0].settings.federation.providers[0].ldap.bindPassword")
        .assert_stderr_contains("tenants[0].settings.federation.providers[0].ldap.caFile");
    let out = check(
        json!({"url": "ldap://dc1.corp.example", "bindDn": "cn=svc,dc=corp",
        "bindPassword": {"env": "PATH"}, "userBaseDn": "dc=corp", "userFilter": "(uid=alice)"}),
    )
    .await;
    out.assert_code(2)
        .assert_stderr_contains("ldap.userFilter: must contain {username}");
    let out = check(
        json!({"url": "ldap://dc1.corp.example", "bindDn": "cn=svc,dc=corp",
        "bindPassword": "inline-secret", "userBaseDn": "dc=corp"}),
    )
    .await;
    // Inline, not a reference: refused, naming the field.
    out.assert_code(2).assert_stderr_contains("bindPassword");
    assert!(
        !db.sqlite_path().exists(),
        "check-config touched the database"
    );
}
