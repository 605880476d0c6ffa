//! The server as a standard relying party meets it: the `openidconnect` crate discovers
//! the provider, builds the authorization URL (code + PKCE S256 + nonce), redeems the
//! code, verifies the ID token (signature against the JWKS, `iss`, `aud`, `nonce`,
//! `at_hash`), calls userinfo, refreshes, and logs out with `id_token_hint`. The user's
//! side is the scripted browser posting the stable form fields.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    LogoutRequest, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope, TokenResponse as _,
    TokenUrl,
};

use authserver::mfa::totp::{self, Secret};

use crate::harness::browser::{Browser, Page, create_user, fast};
use crate::harness::jose::now;
use crate::harness::oauth::create_client;
use crate::harness::{Backend, Server, TestDb, free_port};

on_both_backends!(
    a_relying_party_signs_in_refreshes_and_logs_out,
    a_public_client_pushes_its_request_and_redeems_with_pkce,
    prompt_none_without_a_session_answers_login_required,
);

/// Pods are stateless: the sign-in happens on one `serve`, consent and the code
/// redemption on another, both on one PostgreSQL database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_on_one_pod_continues_on_another() {
    let (db, _pod_a) = setup(Backend::Postgres).await;
    let port_b = free_port();
    let pod_b = fast(db.cli()).serve(port_b).await;
    let issuer = db.issuer("");
    let creds = create_client(
        &db,
        "web",
        &[
            "--grant-types",
            "authorization_code",
            "--redirect-uri",
            &redirect_uri(&db),
        ],
    )
    .await;
    let client = CoreClient::from_provider_metadata(
        discover(&db).await,
        ClientId::new("web".into()),
        Some(ClientSecret::new(creds.secret().into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri(&db)).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();

    // Pod A: the authorization request and the password.
    let on_a = Browser::new();
    let login = on_a.follow(&on_a.get(auth_url.as_str()).await).await;
    login.assert_status(200);
    let after_login = on_a
        .submit(&login, &[("username", "alice"), ("password", PASSWORD)])
        .await;
    let next = absolute(&db, &after_login.location().expect("signed in: a redirect"));

    // Pod B (same cookies, same Host, another process): consent, then the code.
    let on_b = on_a.via(&issuer, &format!("http://127.0.0.1:{port_b}"));
    let consent = on_b.follow(&on_b.get(&next).await).await;
    consent.assert_status(200);
    assert!(
        consent.body.contains("name=\"decision\""),
        "{}",
        consent.body
    );
    let done = on_b.submit(&consent, &[("decision", "allow")]).await;
    let loc = done.location().expect("consent redirects to the client");
    let q: Vec<(String, String)> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let code = param(&q, "code").expect("a code from pod B").to_owned();

    // The token endpoint on pod B too.
    let token_b = CoreClient::from_provider_metadata(
        discover(&db).await,
        ClientId::new("web".into()),
        Some(ClientSecret::new(creds.secret().into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri(&db)).unwrap())
    .set_token_uri(TokenUrl::new(format!("http://127.0.0.1:{port_b}/token")).unwrap());
    let tokens = token_b
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http_with_host(&db))
        .await
        .expect("pod B redeems a code issued after a sign-in on pod A");
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&client.id_token_verifier(), &nonce)
        .unwrap();
    assert_eq!(claims.issuer().as_str(), issuer);
    // The token request is pod B's last: once its line is there, so are the others.
    let logs = pod_b.logs_with("/token").await;
    for route in ["/consent", "/token"] {
        assert!(logs.contains(route), "pod B served {route}: {logs}");
    }
    assert!(!logs.contains("/login"), "the password went to pod A only");
}

/// An HTTP client that names the issuer's host whichever pod it connects to.
fn http_with_host(db: &TestDb) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::HOST,
        format!("127.0.0.1:{}", db.port).parse().unwrap(),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

const PASSWORD: &str = "correct horse battery staple";
const LOGGED_OUT: &str = "https://rp.example.com/logged-out";

fn redirect_uri(db: &TestDb) -> String {
    // Nothing listens there: the test reads the code off the redirect, as an RP would.
    format!("http://127.0.0.1:{}/callback", db.port + 1)
}

async fn setup(backend: Backend) -> (TestDb, Server) {
    let db = TestDb::migrated(backend).await;
    let server = fast(db.cli()).serve_in_process(db.port).await;
    create_user(&db, "alice", PASSWORD).await;
    db.cli()
        .args([
            "users",
            "create",
            "--username",
            "bob",
            "--email",
            "bob@example.com",
            "--email-verified",
            "--name",
            "Bob Example",
            "--password-stdin",
        ])
        .env("GATEHOUSE_PASSWORDS_BREACHED", "warn")
        .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", "http://127.0.0.1:1")
        .stdin(format!("{PASSWORD}\n"))
        .run()
        .await
        .assert_success();
    (db, server)
}

/// What every relying party uses: a client that does not follow redirects (the
/// crate's own SSRF advice).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn discover(db: &TestDb) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(db.issuer("")).unwrap(), &http())
        .await
        .expect("the discovery document satisfies a standard client library")
}

/// What the scripted user knows: the password, and the TOTP secret once enrolled.
#[derive(Default)]
struct User {
    secret: Option<Secret>,
    /// Recovery codes shown at enrolment.
    recovery: Vec<String>,
}

/// Follows the browser through sign-in (password, TOTP enrolment or TOTP, recovery
/// codes) and consent until the server redirects to the client; returns that final
/// redirect's query.
async fn sign_in_and_consent(
    b: &Browser,
    db: &TestDb,
    auth_url: &str,
    username: &str,
    user: &mut User,
) -> Vec<(String, String)> {
    let mut page = b.get(auth_url).await;
    let redirect = redirect_uri(db);
    for _ in 0..12 {
        if let Some(loc) = page.location() {
            if loc.starts_with(&redirect) {
                return url::Url::parse(&loc)
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect();
            }
            page = b.get(&absolute(db, &loc)).await;
            continue;
        }
        page.assert_status(200);
        page = if page.body.contains("name=\"password\"") {
            b.submit(&page, &[("username", username), ("password", PASSWORD)])
                .await
        } else if page.body.contains("name=\"totp\"") {
            if let Some(shown) = between(&page.body, "<code class=\"secret\">", "</code>") {
                let bytes = totp::base32_decode(&shown).expect("the secret is base32");
                user.secret = Some(Secret::from_bytes(bytes));
            }
            let secret = user.secret.as_ref().expect("enrolled before");
            let code = secret.code_at_step(totp::step(now()));
            b.submit(&page, &[("totp", &code)]).await
        } else if page.body.contains("name=\"decision\"") {
            b.submit(&page, &[("decision", "allow")]).await
        } else if page.body.contains("class=\"codes\"") {
            user.recovery = page
                .body
                .split("<li><code>")
                .skip(1)
                .filter_map(|s| s.split("</code>").next())
                .map(str::to_owned)
                .collect();
            b.submit(&page, &[]).await
        } else {
            panic!("unexpected page: {}", page.body);
        };
    }
    panic!("no redirect to the client after 12 steps: {}", page.body);
}

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let a = s.find(start)? + start.len();
    let b = a + s[a..].find(end)?;
    Some(s[a..b].to_owned())
}

fn absolute(db: &TestDb, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_owned()
    } else {
        format!("{}{loc}", db.issuer(""))
    }
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[allow(clippy::too_many_lines)] // one relying party session, step by step, as the issue lists it
async fn a_relying_party_signs_in_refreshes_and_logs_out(backend: Backend) {
    let (db, _server) = setup(backend).await;
    let issuer = db.issuer("");
    let creds = create_client(
        &db,
        "web",
        &[
            "--grant-types",
            "authorization_code,refresh_token",
            "--redirect-uri",
            &redirect_uri(&db),
            "--post-logout-redirect-uri",
            LOGGED_OUT,
        ],
    )
    .await;
    let http = http();
    let client = CoreClient::from_provider_metadata(
        discover(&db).await,
        ClientId::new("web".into()),
        Some(ClientSecret::new(creds.secret().into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri(&db)).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    // Bob must use a second factor: his first sign-in enrols TOTP.
    db.cli()
        .args([
            "users",
            "set-mfa-required",
            "--username",
            "bob",
            "--required",
            "true",
        ])
        .run()
        .await
        .assert_success();
    let b = Browser::new();
    let mut bob = User::default();
    let q = sign_in_and_consent(&b, &db, auth_url.as_str(), "bob", &mut bob).await;
    assert!(
        bob.secret.is_some(),
        "the sign-in went through TOTP enrolment"
    );
    assert_eq!(bob.recovery.len(), 10, "recovery codes were shown once");
    assert_eq!(param(&q, "state"), Some(csrf.secret().as_str()), "{q:?}");
    assert_eq!(param(&q, "iss"), Some(issuer.as_str()), "RFC 9207: {q:?}");
    let code = param(&q, "code").expect("a code").to_owned();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code redeems");
    let verifier = client.id_token_verifier();
    let id_token = tokens.id_token().expect("an ID token for scope openid");
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("the ID token verifies (signature, iss, aud, exp, nonce)");
    assert_eq!(claims.issuer().as_str(), issuer);
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("bob"));
    assert_eq!(claims.email().map(|e| e.as_str()), Some("bob@example.com"));
    assert_eq!(claims.email_verified(), Some(true));
    assert!(claims.auth_time().is_some());
    let amr: Vec<String> = claims
        .auth_method_refs()
        .map(|a| a.iter().map(|m| m.to_string()).collect())
        .unwrap_or_default();
    assert!(
        amr.contains(&"otp".to_owned()) && amr.contains(&"pwd".to_owned()),
        "{amr:?}"
    );
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    let subject = claims.subject().clone();

    // The code is single use.
    let replay = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .request_async(&http)
        .await;
    match replay {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), CoreErrorResponseType::InvalidGrant);
        }
        other => panic!("a replayed code must fail with invalid_grant: {other:?}"),
    }

    // Userinfo with the access token from the first redemption: the replay revoked
    // everything issued from that code, so it is refused now.
    let info: Result<CoreUserInfoClaims, _> = client
        .user_info(tokens.access_token().clone(), Some(subject.clone()))
        .unwrap()
        .request_async(&http)
        .await;
    assert!(info.is_err(), "tokens of a replayed code are revoked");

    // A fresh sign-in (the session remains: no password, no consent again).
    let (challenge, pkce) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let first = b.get(auth_url.as_str()).await;
    let loc = first.location().expect("a signed-in browser is redirected");
    assert!(
        loc.starts_with(&redirect_uri(&db)),
        "session and consent are remembered: {loc}"
    );
    let q: Vec<(String, String)> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let tokens = client
        .exchange_code(AuthorizationCode::new(param(&q, "code").unwrap().into()))
        .unwrap()
        .set_pkce_verifier(pkce)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap().clone();
    let claims = id_token.claims(&verifier, &nonce).unwrap();
    assert_eq!(claims.subject(), &subject, "the same user, the same sub");

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), Some(subject.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo answers with the same sub");
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("bob"));
    assert_eq!(
        info.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        Some("Bob Example")
    );

    // Refresh: a new refresh token each time; the old one is dead, and using it again
    // revokes the family.
    let refresh = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token");
    let refreshed = client
        .exchange_refresh_token(refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("the refresh token works once");
    let next = refreshed
        .refresh_token()
        .expect("rotation issues a new one");
    assert_ne!(next.secret(), refresh.secret());
    let reuse = client
        .exchange_refresh_token(refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(
        matches!(&reuse, Err(RequestTokenError::ServerResponse(e)) if *e.error() == CoreErrorResponseType::InvalidGrant),
        "{reuse:?}"
    );
    let after_reuse = client
        .exchange_refresh_token(next)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(after_reuse.is_err(), "reuse revoked the whole family");

    // RP-initiated logout with id_token_hint, back to the registered URI with state.
    let with_logout =
        ProviderMetadataWithLogout::discover_async(IssuerUrl::new(issuer.clone()).unwrap(), &http)
            .await
            .unwrap();
    let end_session = with_logout
        .additional_metadata()
        .end_session_endpoint
        .clone()
        .expect("end_session_endpoint is advertised");
    let logout_url = LogoutRequest::from(end_session)
        .set_id_token_hint(&id_token)
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(LOGGED_OUT.into()).unwrap())
        .set_state(CsrfToken::new("bye".into()))
        .http_get_url();
    let out = b.get(logout_url.as_str()).await;
    let loc = out.location().expect("logout redirects to the RP");
    assert!(loc.starts_with(LOGGED_OUT), "{loc}");
    assert!(loc.contains("state=bye"), "{loc}");

    // The session is gone: the next request shows the sign-in page again.
    let again = b.get(auth_url.as_str()).await;
    let page: Page = match again.location() {
        Some(l) => b.get(&absolute(&db, &l)).await,
        None => again,
    };
    assert!(page.body.contains("name=\"password\""), "{}", page.body);
}

async fn a_public_client_pushes_its_request_and_redeems_with_pkce(backend: Backend) {
    let (db, server) = setup(backend).await;
    create_client(
        &db,
        "spa",
        &[
            "--public",
            "--grant-types",
            "authorization_code",
            "--redirect-uri",
            &redirect_uri(&db),
        ],
    )
    .await;
    let http = http();
    let client =
        CoreClient::from_provider_metadata(discover(&db).await, ClientId::new("spa".into()), None)
            .set_redirect_uri(RedirectUrl::new(redirect_uri(&db)).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();

    // RFC 9126: push exactly the parameters the library put in the URL.
    let params: Vec<(String, String)> = auth_url.query_pairs().into_owned().collect();
    let pushed = http
        .post(server.url("/par"))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let body: serde_json::Value = pushed.json().await.unwrap();
    let request_uri = body["request_uri"].as_str().unwrap().to_owned();

    let mut front = url::Url::parse(&format!("{}/authorize", db.issuer(""))).unwrap();
    front
        .query_pairs_mut()
        .append_pair("client_id", "spa")
        .append_pair("request_uri", &request_uri);
    let b = Browser::new();
    let q = sign_in_and_consent(&b, &db, front.as_str(), "alice", &mut User::default()).await;
    assert_eq!(param(&q, "state"), Some(csrf.secret().as_str()));
    let tokens = client
        .exchange_code(AuthorizationCode::new(param(&q, "code").unwrap().into()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("a public client redeems with its verifier");
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&client.id_token_verifier(), &nonce)
        .unwrap();
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        None,
        "no profile claims without the profile scope"
    );
    assert!(
        tokens.refresh_token().is_none(),
        "no offline_access, no refresh token"
    );

    // The request_uri was used up.
    let again = b.get(front.as_str()).await;
    again.assert_status(400);
    assert!(again.header("location").is_none());
}

async fn prompt_none_without_a_session_answers_login_required(backend: Backend) {
    let (db, _server) = setup(backend).await;
    create_client(
        &db,
        "web",
        &[
            "--grant-types",
            "authorization_code",
            "--redirect-uri",
            &redirect_uri(&db),
        ],
    )
    .await;
    let client =
        CoreClient::from_provider_metadata(discover(&db).await, ClientId::new("web".into()), None)
            .set_redirect_uri(RedirectUrl::new(redirect_uri(&db)).unwrap());
    let (challenge, _verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, _nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_prompt(openidconnect::core::CoreAuthPrompt::None)
        .set_pkce_challenge(challenge)
        .url();
    let page = Browser::new().get(auth_url.as_str()).await;
    let loc = page
        .location()
        .expect("prompt=none redirects, never shows a page");
    let q: Vec<(String, String)> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(param(&q, "error"), Some("login_required"), "{loc}");
    assert_eq!(param(&q, "state"), Some(csrf.secret().as_str()));
    assert_eq!(param(&q, "iss"), Some(db.issuer("").as_str()));
}
