//! The authorization endpoint driven like a browser: from `/authorize` through sign-in,
//! the account chooser and consent to the code at the client's redirect URI; errors as
//! pages or redirects exactly as the protocol says; prompt, max_age and login_hint.

use crate::harness::browser::{Browser, Page, create_user, fast};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    the_account_chooser_is_no_way_around_prompt_login,
    the_consent_page_is_no_way_around_a_fresh_sign_in,
    acr_values_step_up_to_a_second_factor_or_fail_unmet,
    a_post_to_authorize_keeps_the_signed_in_session,
    a_first_sign_in_asks_for_consent_and_ends_in_a_code,
    a_bad_client_or_redirect_uri_is_a_page_never_a_redirect,
    other_errors_go_back_to_the_client_with_state_and_iss,
    prompt_none_never_shows_a_page,
    prompt_login_and_max_age_force_a_fresh_sign_in,
    several_accounts_go_through_the_chooser,
    consent_deny_and_first_party_clients,
    a_request_is_honoured_only_in_its_own_browser,
    a_pushed_request_with_form_post_completes_in_the_browser,
    the_second_factor_keeps_the_request,
    the_code_redeems_for_an_id_token_whose_hint_signs_the_session_out,
);

pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const CB: &str = "https://app.example/cb";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn challenge() -> String {
    use base64::Engine as _;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, VERIFIER.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

fn sha256_hex(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref().iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A database with users alice and bob, client `app` (confidential) and `internal`
/// (first party), and a server.
async fn setup(backend: Backend) -> (TestDb, Server) {
    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    create_user(&db, "bob", PASSWORD).await;
    for (id, extra) in [("app", None), ("internal", Some("--first-party"))] {
        let mut cli = db
            .cli()
            .args(["clients", "create", "--id", id, "--redirect-uri", CB]);
        if let Some(e) = extra {
            cli = cli.args([e]);
        }
        cli.run().await.assert_success();
    }
    let server = fast(db.cli()).serve_in_process(db.port).await;
    (db, server)
}

/// `{issuer}/authorize?…` for `client` with PKCE, state `st` and nonce `n`, plus `extra`.
pub(crate) fn authorize_url(db: &TestDb, client: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge();
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", CB),
        ("scope", "openid email"),
        ("state", "st"),
        ("nonce", "n"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    format!("{}/authorize?{q}", db.issuer(""))
}

/// The query parameters of a redirect to the client.
pub(crate) fn client_params(p: &Page) -> std::collections::HashMap<String, String> {
    assert_eq!(p.status, 303, "{}", p.body);
    let loc = p.location().unwrap();
    assert!(loc.starts_with(CB), "redirect to the client, got {loc}");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Follows 303s within the issuer until a page or a redirect to the client.
pub(crate) async fn settle(b: &Browser, mut p: Page) -> Page {
    for _ in 0..8 {
        match p.location() {
            Some(loc) if p.status == 303 && !loc.starts_with(CB) => p = b.get(&loc).await,
            _ => return p,
        }
    }
    panic!("redirect loop");
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.scalar(&format!("SELECT count(*) FROM {sql}")).await
}

#[allow(clippy::too_many_lines)] // one journey, asserted step by step
async fn a_first_sign_in_asks_for_consent_and_ends_in_a_code(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    let login = settle(
        &b,
        b.get(&authorize_url(&db, "app", &[("login_hint", "alice")]))
            .await,
    )
    .await;
    login.assert_status(200);
    assert!(login.body.contains("name=\"password\""), "{}", login.body);
    assert_eq!(
        login.input("username").as_deref(),
        Some("alice"),
        "login_hint pre-fills"
    );
    let consent = settle(
        &b,
        b.submit(&login, &[("username", "alice"), ("password", PASSWORD)])
            .await,
    )
    .await;
    consent.assert_status(200);
    assert!(
        consent.body.contains("See your email address"),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("name=\"decision\" value=\"allow\""));
    assert_eq!(
        consent
            .header("content-security-policy")
            .map(|c| c.contains("frame-ancestors 'none'")),
        Some(true)
    );
    let done = b.submit(&consent, &[("decision", "allow")]).await;
    let params = client_params(&done);
    assert_eq!(params["state"], "st");
    assert_eq!(params["iss"], issuer);
    let code = &params["code"];
    assert_eq!(
        count(&db, &format!("authorization_codes WHERE code_hash = '{}' AND redirect_uri = '{CB}' AND nonce = 'n' AND code_challenge_method = 'S256'", sha256_hex(code))).await,
        1
    );
    let grant = db
        .rows("SELECT g.scope || '|' || g.amr || '|' || coalesce(g.acr, '-') || '|' || u.username || '|' || CASE WHEN g.sid IS NULL THEN 'nosid' ELSE 'sid' END FROM grants g JOIN users u ON u.tenant_id = g.tenant_id AND u.user_id = g.user_id")
        .await;
    assert_eq!(grant, vec!["openid email|[\"pwd\"]|1|alice|sid".to_owned()]);
    assert_eq!(
        db.rows("SELECT scope FROM consents").await,
        vec!["email openid".to_owned()]
    );
    assert!(
        db.audit()
            .await
            .iter()
            .any(|e| e.starts_with("consent.granted|user|"))
    );
    // The request is used up.
    assert_eq!(
        count(&db, "authorization_requests WHERE consumed_at IS NULL").await,
        0
    );

    // Signed in and consented: the next request goes straight to a new code.
    let again = b.get(&authorize_url(&db, "app", &[])).await;
    let params = client_params(&again);
    assert_ne!(&params["code"], code);
    assert_eq!(count(&db, "grants").await, 2);
    // More scopes than consented: asked again.
    let more = settle(
        &b,
        b.get(
            &authorize_url(&db, "app", &[])
                .replace("scope=openid+email", "scope=openid+email+profile"),
        )
        .await,
    )
    .await;
    more.assert_status(200);
    assert!(more.body.contains("name=\"decision\""), "{}", more.body);

    // Consents can be listed and revoked (what the admin API builds on); a revoked
    // consent is asked for again.
    let store = store(&db).await;
    let user_id = db
        .rows("SELECT user_id FROM users WHERE username = 'alice'")
        .await
        .remove(0);
    let listed = store.list_consents("main", &user_id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].client_id, "app");
    assert_eq!(
        listed[0].scopes,
        vec!["email".to_owned(), "openid".to_owned()]
    );
    store
        .record_consent(
            "main",
            &user_id,
            "app",
            &["profile".to_owned(), "email".to_owned()],
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        store.consent_scopes("main", &user_id, "app").await.unwrap(),
        Some(vec![
            "email".to_owned(),
            "openid".to_owned(),
            "profile".to_owned()
        ]),
        "consent is a sorted union"
    );
    assert!(store.revoke_consent("main", &user_id, "app").await.unwrap());
    assert!(!store.revoke_consent("main", &user_id, "app").await.unwrap());
    assert_eq!(
        store.consent_scopes("main", &user_id, "app").await.unwrap(),
        None
    );
    store.close().await;
    let asked = settle(&b, b.get(&authorize_url(&db, "app", &[])).await).await;
    asked.assert_status(200);
    assert!(asked.body.contains("name=\"decision\""));
}

async fn store(db: &TestDb) -> authserver::store::Store {
    authserver::store::Store::connect(&authserver::config::DatabaseSettings {
        url: secrecy::SecretString::from(db.url().to_owned()),
        max_connections: 1,
        connect_timeout_seconds: 5,
        startup_timeout_seconds: 10,
        acquire_timeout_ms: authserver::config::DEFAULT_ACQUIRE_TIMEOUT_MS,
    })
    .await
    .unwrap()
}

async fn a_bad_client_or_redirect_uri_is_a_page_never_a_redirect(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let b = Browser::new();
    let base = authorize_url(&db, "app", &[]);
    for (url, why) in [
        (authorize_url(&db, "nope", &[]), "unknown client"),
        (
            base.replace("app.example%2Fcb", "evil.example%2Fcb"),
            "unregistered redirect_uri",
        ),
        (base.replace("client_id=app&", ""), "no client_id"),
        (format!("{base}&state=again"), "repeated parameter"),
    ] {
        let p = b.get(&url).await;
        assert_eq!(p.status, 400, "{why}: {}", p.body);
        assert!(p.location().is_none(), "{why}");
        assert!(p.body.contains("role=\"alert\""), "{why}");
        assert!(p.header("content-security-policy").is_some());
    }
    assert_eq!(count(&db, "authorization_requests").await, 0);
    assert_eq!(count(&db, "browser_sessions").await, 0);
}

async fn other_errors_go_back_to_the_client_with_state_and_iss(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    let no_pkce = authorize_url(&db, "app", &[])
        .split('&')
        .filter(|p| !p.starts_with("code_challenge"))
        .collect::<Vec<_>>()
        .join("&");
    for (url, error) in [
        (no_pkce, "invalid_request"),
        (
            authorize_url(&db, "app", &[]).replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
    ] {
        let p = b.get(&url).await;
        let params = client_params(&p);
        assert_eq!(params["error"], error, "{params:?}");
        assert_eq!(params["state"], "st");
        assert_eq!(params["iss"], issuer);
    }
    assert_eq!(count(&db, "authorization_requests").await, 0);
}

async fn prompt_none_never_shows_a_page(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    let p = b
        .get(&authorize_url(&db, "app", &[("prompt", "none")]))
        .await;
    assert_eq!(client_params(&p)["error"], "login_required");
    assert_eq!(
        count(&db, "browser_sessions").await,
        0,
        "no session made for nothing"
    );

    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    let p = b
        .get(&authorize_url(&db, "app", &[("prompt", "none")]))
        .await;
    let params = client_params(&p);
    assert_eq!(params["error"], "consent_required");
    assert_eq!(params["state"], "st");
    // First party: no consent needed, so prompt=none succeeds.
    let p = b
        .get(&authorize_url(&db, "internal", &[("prompt", "none")]))
        .await;
    assert!(client_params(&p).contains_key("code"));

    b.sign_in(&issuer, "bob", PASSWORD).await.assert_status(200);
    let p = b
        .get(&authorize_url(&db, "internal", &[("prompt", "none")]))
        .await;
    assert_eq!(client_params(&p)["error"], "account_selection_required");
    let p = b
        .get(&authorize_url(
            &db,
            "internal",
            &[("prompt", "none"), ("login_hint", "bob")],
        ))
        .await;
    assert!(
        client_params(&p).contains_key("code"),
        "login_hint picks the account"
    );
    let p = b
        .get(&authorize_url(
            &db,
            "internal",
            &[("prompt", "none"), ("max_age", "0"), ("login_hint", "bob")],
        ))
        .await;
    assert_eq!(client_params(&p)["error"], "login_required");
}

async fn prompt_login_and_max_age_force_a_fresh_sign_in(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    for extra in [[("prompt", "login")], [("max_age", "0")]] {
        let login = settle(&b, b.get(&authorize_url(&db, "internal", &extra)).await).await;
        login.assert_status(200);
        assert!(
            login.body.contains("name=\"password\""),
            "{extra:?}: {}",
            login.body
        );
        let done = settle(
            &b,
            b.submit(&login, &[("username", "alice"), ("password", PASSWORD)])
                .await,
        )
        .await;
        assert!(client_params(&done).contains_key("code"), "{extra:?}");
    }
    // A generous max_age is satisfied by the session.
    let p = b
        .get(&authorize_url(&db, "internal", &[("max_age", "3600")]))
        .await;
    assert!(client_params(&p).contains_key("code"));
}

async fn several_accounts_go_through_the_chooser(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    b.sign_in(&issuer, "bob", PASSWORD).await.assert_status(200);
    let chooser = settle(&b, b.get(&authorize_url(&db, "internal", &[])).await).await;
    chooser.assert_status(200);
    assert!(
        chooser.body.contains("Use another account"),
        "{}",
        chooser.body
    );
    let end = chooser.body.find(">alice</button>").unwrap();
    let start = chooser.body[..end].rfind("value=\"").unwrap() + 7;
    let alice = chooser.body[start..end].trim_end_matches('"').to_owned();
    let done = settle(&b, b.submit(&chooser, &[("account", &alice)]).await).await;
    assert!(client_params(&done).contains_key("code"));
    assert_eq!(
        db.rows("SELECT u.username FROM grants g JOIN users u ON u.tenant_id = g.tenant_id AND u.user_id = g.user_id").await,
        vec!["alice".to_owned()]
    );
    // prompt=select_account shows the chooser even with one clear choice.
    let p = settle(
        &b,
        b.get(&authorize_url(
            &db,
            "internal",
            &[("prompt", "select_account"), ("login_hint", "bob")],
        ))
        .await,
    )
    .await;
    p.assert_status(200);
    assert!(p.body.contains("Choose an account"));
}

async fn consent_deny_and_first_party_clients(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    let consent = settle(&b, b.get(&authorize_url(&db, "app", &[])).await).await;
    consent.assert_status(200);
    // A forged decision changes nothing.
    let action = consent.form_action().unwrap();
    b.post(&action, &[("decision", "allow"), ("_csrf", "forged")])
        .await
        .assert_status(403);
    assert_eq!(count(&db, "consents").await, 0);
    assert_eq!(count(&db, "grants").await, 0);
    let p = b.submit(&consent, &[("decision", "deny")]).await;
    let params = client_params(&p);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st");
    assert_eq!(params["iss"], issuer);
    assert_eq!(count(&db, "consents").await, 0);
    assert_eq!(count(&db, "grants").await, 0);
    // The denied request cannot be allowed afterwards.
    b.submit(&consent, &[("decision", "allow")])
        .await
        .assert_status(400);
    assert_eq!(count(&db, "grants").await, 0);
    // First party: straight to the code; prompt=consent asks all the same.
    let p = b.get(&authorize_url(&db, "internal", &[])).await;
    assert!(client_params(&p).contains_key("code"));
    let p = settle(
        &b,
        b.get(&authorize_url(&db, "internal", &[("prompt", "consent")]))
            .await,
    )
    .await;
    p.assert_status(200);
    assert!(p.body.contains("name=\"decision\""));
}

async fn a_request_is_honoured_only_in_its_own_browser(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    let p = b.get(&authorize_url(&db, "internal", &[])).await;
    assert_eq!(p.status, 303);
    let login_url = p.location().unwrap();
    assert!(login_url.contains("/login?request="), "{login_url}");
    let handle = login_url.split("request=").nth(1).unwrap().to_owned();
    // Another browser (signed in as bob) cannot continue alice's request.
    let other = Browser::new();
    other
        .sign_in(&issuer, "bob", PASSWORD)
        .await
        .assert_status(200);
    let p = other
        .get(&format!("{issuer}/authorize/continue?request={handle}"))
        .await;
    p.assert_status(400);
    assert!(p.location().is_none());
    let p = other.get(&login_url).await;
    p.assert_status(400);
    assert_eq!(count(&db, "grants").await, 0);
    // Unknown handle.
    b.get(&format!("{issuer}/authorize/continue?request=nope"))
        .await
        .assert_status(400);
}

async fn a_pushed_request_with_form_post_completes_in_the_browser(backend: Backend) {
    use crate::harness::oauth::{create_client, post_form, send};

    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    let creds = create_client(&db, "pushy", &["--redirect-uri", CB, "--first-party"]).await;
    let server = fast(db.cli()).serve_in_process(db.port).await;
    let issuer = db.issuer("");
    let challenge = challenge();
    let pushed = send(
        post_form(
            &server,
            "/par",
            &[
                ("response_type", "code"),
                ("client_id", "pushy"),
                ("redirect_uri", CB),
                ("scope", "openid"),
                ("state", "pst"),
                ("nonce", "pn"),
                ("response_mode", "form_post"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .header(reqwest::header::AUTHORIZATION, creds.basic()),
    )
    .await;
    assert_eq!(pushed.status, 201, "{pushed:?}");
    let request_uri = pushed.body["request_uri"].as_str().unwrap().to_owned();
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "pushy"),
            ("request_uri", request_uri.as_str()),
        ])
        .finish();
    let b = Browser::new();
    let login = settle(&b, b.get(&format!("{issuer}/authorize?{q}")).await).await;
    login.assert_status(200);
    let done = settle(
        &b,
        b.submit(&login, &[("username", "alice"), ("password", PASSWORD)])
            .await,
    )
    .await;
    // form_post: an auto-submitting page posting code, state and iss to the client.
    done.assert_status(200);
    assert_eq!(done.form_action().as_deref(), Some(CB), "{}", done.body);
    assert_eq!(done.input("state").as_deref(), Some("pst"));
    assert_eq!(done.input("iss").as_deref(), Some(issuer.as_str()));
    let code = done.input("code").expect("a code");
    assert_eq!(
        count(
            &db,
            &format!(
                "authorization_codes WHERE code_hash = '{}' AND nonce = 'pn'",
                sha256_hex(&code)
            )
        )
        .await,
        1
    );
    // The request_uri was single use.
    let p = b.get(&format!("{issuer}/authorize?{q}")).await;
    p.assert_status(400);
    assert!(p.location().is_none());
}

async fn the_second_factor_keeps_the_request(backend: Backend) {
    use authserver::mfa::totp::{self, Secret};

    let db = TestDb::migrated(backend).await;
    db.write_config(
        "config.yaml",
        &format!(
            "tenants:\n  - id: main\n    issuer: {}\n    display_name: Tenant main\n    settings: {{mfa: {{required: true}}}}\n",
            db.issuer("")
        ),
    );
    create_user(&db, "alice", PASSWORD).await;
    db.cli()
        .args([
            "clients",
            "create",
            "--id",
            "internal",
            "--redirect-uri",
            CB,
            "--first-party",
        ])
        .run()
        .await
        .assert_success();
    let _server = fast(db.cli()).serve_in_process(db.port).await;
    let b = Browser::new();
    let login = settle(&b, b.get(&authorize_url(&db, "internal", &[])).await).await;
    login.assert_status(200);
    let enrol = settle(
        &b,
        b.submit(&login, &[("username", "alice"), ("password", PASSWORD)])
            .await,
    )
    .await;
    enrol.assert_status(200);
    assert!(enrol.body.contains("name=\"totp\""), "{}", enrol.body);
    assert!(enrol.form_action().unwrap().contains("request="));
    let start =
        enrol.body.find("<code class=\"secret\">").unwrap() + "<code class=\"secret\">".len();
    let end = start + enrol.body[start..].find("</code>").unwrap();
    let secret = Secret::from_bytes(totp::base32_decode(&enrol.body[start..end]).unwrap());
    let code = secret.code_at_step(totp::step(crate::harness::jose::now()));
    let codes = b.submit(&enrol, &[("totp", &code)]).await;
    codes.assert_status(200);
    assert_eq!(count(&db, "grants").await, 0);
    let done = settle(&b, b.submit(&codes, &[]).await).await;
    assert!(client_params(&done).contains_key("code"));
    assert_eq!(
        db.rows("SELECT amr || '|' || acr FROM grants").await,
        vec!["[\"pwd\",\"otp\",\"mfa\"]|2".to_owned()]
    );
}

async fn the_code_redeems_for_an_id_token_whose_hint_signs_the_session_out(backend: Backend) {
    use crate::harness::oauth::{create_client, post_form, send};

    let db = TestDb::migrated(backend).await;
    create_user(&db, "alice", PASSWORD).await;
    let creds = create_client(
        &db,
        "web",
        &[
            "--redirect-uri",
            CB,
            "--post-logout-redirect-uri",
            "https://app.example/bye",
            "--first-party",
        ],
    )
    .await;
    let server = fast(db.cli()).serve_in_process(db.port).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    let login = settle(&b, b.get(&authorize_url(&db, "web", &[])).await).await;
    let done = settle(
        &b,
        b.submit(&login, &[("username", "alice"), ("password", PASSWORD)])
            .await,
    )
    .await;
    let code = client_params(&done)["code"].clone();
    let tokens = send(
        post_form(
            &server,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
            ],
        )
        .header(reqwest::header::AUTHORIZATION, creds.basic()),
    )
    .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    let id_token = tokens.body["id_token"]
        .as_str()
        .expect("an ID token")
        .to_owned();
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let sid = db.rows("SELECT sid FROM sessions").await.remove(0);
    assert_eq!(claims["sid"], sid.as_str(), "{claims}");
    assert_eq!(claims["nonce"], "n");
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["acr"], "1");

    // RP-initiated logout with that ID token ends the session and returns to the client.
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", "https://app.example/bye"),
            ("state", "bye-state"),
        ])
        .finish();
    let p = b.get(&format!("{issuer}/logout?{q}")).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        p.location().unwrap(),
        "https://app.example/bye?state=bye-state"
    );
    assert_eq!(count(&db, "sessions").await, 0);
    assert!(p.set_cookies().iter().any(|c| c.contains("Max-Age=0")));
}

async fn a_post_to_authorize_keeps_the_signed_in_session(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    let cookie = b.cookies(&issuer).unwrap();
    let browsers = count(&db, "browser_sessions").await;
    for prompt in ["", "none"] {
        let url = authorize_url(&db, "internal", &[("prompt", prompt)]);
        let (_, query) = url.split_once('?').unwrap();
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // A cross-site form POST carries no Lax cookie: here, a browser without one.
        let p = Browser::new()
            .post(&format!("{issuer}/authorize"), &fields)
            .await;
        assert_eq!(p.status, 303, "{}", p.body);
        assert!(p.set_cookies().is_empty(), "{:?}", p.set_cookies());
        let loc = p.location().unwrap();
        assert!(loc.starts_with(&format!("{issuer}/authorize?")), "{loc}");
        assert_eq!(count(&db, "browser_sessions").await, browsers);
        // The top-level GET that follows carries the cookie: a code, no new sign-in.
        let get = b.get(&loc).await;
        let end = settle(&b, get).await;
        let params = client_params(&end);
        assert!(params.contains_key("code"), "prompt={prompt}: {params:?}");
        assert_eq!(params["state"], "st");
        assert_eq!(
            b.cookies(&issuer).unwrap(),
            cookie,
            "the cookie was not replaced"
        );
    }
    assert_eq!(count(&db, "sessions").await, 1);
}

/// Opens the account chooser for the request `page`'s form belongs to and picks alice's
/// existing account there; returns the request handle and the chooser's answer.
async fn choose_alice(b: &Browser, issuer: &str, page: &Page) -> (String, Page) {
    let action = page.form_action().unwrap();
    let handle = action.split_once("request=").unwrap().1.to_owned();
    let chooser = b
        .get(&format!("{issuer}/select-account?request={handle}"))
        .await;
    chooser.assert_status(200);
    let end = chooser.body.find(">alice</button>").unwrap();
    let start = chooser.body[..end].rfind("value=\"").unwrap() + 7;
    let alice = chooser.body[start..end].trim_end_matches('"').to_owned();
    let answer = b.submit(&chooser, &[("account", &alice)]).await;
    (handle, answer)
}

async fn the_account_chooser_is_no_way_around_prompt_login(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    b.sign_in(&issuer, "bob", PASSWORD).await.assert_status(200);
    // Both accounts signed in well before the request.
    db.rows("UPDATE sessions SET auth_time = auth_time - 600 RETURNING sid")
        .await;
    for extra in [[("prompt", "login")], [("max_age", "60")]] {
        // The sign-in form (prompt=login) or the chooser (max_age: two accounts).
        let first = settle(&b, b.get(&authorize_url(&db, "internal", &extra)).await).await;
        first.assert_status(200);
        // Instead of signing in, pick an old account in the chooser for this request.
        let (_, chosen) = choose_alice(&b, &issuer, &first).await;
        let p = settle(&b, chosen).await;
        assert!(
            !p.location().is_some_and(|l| l.starts_with(CB)),
            "{extra:?}: the chooser ended in a redirect to the client: {:?}",
            p.location()
        );
        p.assert_status(200);
        assert!(
            p.body.contains("name=\"password\""),
            "{extra:?}: {}",
            p.body
        );
        // Signing in for real completes it.
        let done = settle(
            &b,
            b.submit(&p, &[("username", "alice"), ("password", PASSWORD)])
                .await,
        )
        .await;
        assert!(client_params(&done).contains_key("code"), "{extra:?}");
        db.rows("UPDATE sessions SET auth_time = auth_time - 600 RETURNING sid")
            .await;
    }
}

/// Security review, defect 2: with `prompt=login` or `max_age=0`, choosing an old account
/// in the chooser and then going straight to the consent page (GET, then POST
/// `decision=allow`) issued a code with the old `auth_time`. The consent page now sends
/// the browser to the sign-in form, and a POST to it issues nothing.
async fn the_consent_page_is_no_way_around_a_fresh_sign_in(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    db.rows("UPDATE sessions SET auth_time = auth_time - 600 RETURNING sid")
        .await;
    for extra in [[("prompt", "login")], [("max_age", "0")]] {
        let login = settle(&b, b.get(&authorize_url(&db, "app", &extra)).await).await;
        login.assert_status(200);
        assert!(login.body.contains("name=\"password\""), "{extra:?}");
        let csrf = login.input("_csrf").unwrap();
        // The chooser binds the old account to the request…
        let (handle, _) = choose_alice(&b, &issuer, &login).await;
        let codes = db.scalar("SELECT count(*) FROM authorization_codes").await;
        // …but the consent page neither shows nor accepts it.
        let shown = settle(
            &b,
            b.get(&format!("{issuer}/consent?request={handle}")).await,
        )
        .await;
        assert!(
            shown.body.contains("name=\"password\"") && !shown.body.contains("decision"),
            "{extra:?}: the consent page was shown: {}",
            shown.body
        );
        let posted = b
            .post(
                &format!("{issuer}/consent?request={handle}"),
                &[("_csrf", &csrf), ("decision", "allow")],
            )
            .await;
        assert!(
            !posted.location().is_some_and(|l| l.starts_with(CB)),
            "{extra:?}: a code went to the client: {:?}",
            posted.location()
        );
        assert_eq!(
            db.scalar("SELECT count(*) FROM authorization_codes").await,
            codes,
            "{extra:?}: no code was issued"
        );
        assert_eq!(
            db.scalar("SELECT count(*) FROM consents").await,
            0,
            "{extra:?}: no consent was recorded"
        );
        // Signing in for real goes on to the consent page, then the code.
        let p = settle(
            &b,
            b.submit(&shown, &[("username", "alice"), ("password", PASSWORD)])
                .await,
        )
        .await;
        assert!(p.body.contains("value=\"allow\""), "{extra:?}: {}", p.body);
        let done = b.submit(&p, &[("decision", "allow")]).await;
        assert!(client_params(&done).contains_key("code"), "{extra:?}");
        db.rows("UPDATE sessions SET auth_time = auth_time - 600 RETURNING sid")
            .await;
        db.execute("DELETE FROM consents").await;
    }
}

/// `acr_values=2` (advertised in `acr_values_supported`) asks a password-only session for
/// a second factor; values the tenant cannot satisfy fail with
/// `unmet_authentication_requirements` instead of a silent downgrade.
async fn acr_values_step_up_to_a_second_factor_or_fail_unmet(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let b = Browser::new();
    b.sign_in(&issuer, "alice", PASSWORD)
        .await
        .assert_status(200);
    let doc = crate::harness::discovery(&issuer).await;
    assert_eq!(
        doc["acr_values_supported"],
        serde_json::json!(["1", "2", "phr"])
    );

    // Nothing we can satisfy: an error for the client, nothing issued.
    let p = settle(
        &b,
        b.get(&authorize_url(
            &db,
            "internal",
            &[("acr_values", "urn:example:loa:4")],
        ))
        .await,
    )
    .await;
    let params = client_params(&p);
    assert_eq!(
        params["error"], "unmet_authentication_requirements",
        "{params:?}"
    );
    assert_eq!(params["state"], "st");

    // A password session is not enough for "2": the sign-in form, and after the
    // password the second factor (enrolment, as alice has none yet) — never a code.
    let p = settle(
        &b,
        b.get(&authorize_url(&db, "internal", &[("acr_values", "2")]))
            .await,
    )
    .await;
    p.assert_status(200);
    assert!(p.body.contains("name=\"password\""), "{}", p.body);
    let after = b
        .submit(&p, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(after.status, 303, "{}", after.body);
    assert!(
        after
            .location()
            .is_some_and(|l| l.contains("/login/mfa/enroll")),
        "{:?}",
        after.location()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM authorization_codes").await,
        0
    );

    // "1" (or "1 2") is met by the password session at once.
    for values in ["1", "2 1"] {
        let p = settle(
            &b,
            b.get(&authorize_url(&db, "internal", &[("acr_values", values)]))
                .await,
        )
        .await;
        assert!(client_params(&p).contains_key("code"), "{values}");
    }
}
