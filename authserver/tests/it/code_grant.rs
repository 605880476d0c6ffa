//! The authorization_code grant: codes are planted in the database as the browser side
//! leaves them (a grant row and a code row, the code stored as its SHA-256), then
//! redeemed over HTTP; ID tokens are verified with jsonwebtoken against the JWKS, and
//! one redemption goes through the `oauth2` crate as a relying party would.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;

use crate::harness::jose::{b64url, now};
use crate::harness::oauth::{
    Creds, Reply, create_client, introspect, is_active, post_form, send, verify_access_token,
};
use crate::harness::{Backend, Server, TestDb, random_hex};

on_both_backends!(
    a_code_is_redeemed_once_for_access_id_and_refresh_tokens,
    a_replayed_code_fails_and_revokes_what_it_issued,
    bad_redemptions_are_invalid_grant_and_change_nothing,
    a_public_client_redeems_with_the_oauth2_crate,
    pairwise_subjects_differ_per_sector_and_are_stable,
    pairwise_subjects_survive_encryption_key_rotation,
    dpop_bound_codes_and_deleted_users,
    concurrent_redemptions_of_one_code_issue_once,
);

pub const REDIRECT: &str = "https://app.example.com/cb";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const PASSWORD: &str = "correct-horse-battery-staple-42";

/// Creates user `alice` (email, name) and returns her user id, as `authserver users
/// create` does but in-process ([`TestDb::commands`]). The breach check points at a
/// closed loopback port and fails open at once.
pub async fn create_user(db: &TestDb, username: &str) -> String {
    let email = format!("{username}@example.com");
    let v = db
        .cli()
        .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", "http://127.0.0.1:9")
        .env("GATEHOUSE_PASSWORDS_HIBP_TIMEOUT_SECONDS", "1")
        .commands()
        .await
        .create_user(
            &[
                "--username",
                username,
                "--email",
                &email,
                "--email-verified",
                "--name",
                "Alice Example",
                "--password-stdin",
            ],
            PASSWORD,
        )
        .await
        .unwrap_or_else(|e| panic!("users create {username}: {e:#}"));
    v["user_id"].as_str().unwrap().to_owned()
}

/// What a planted code carries.
#[derive(Debug, Clone)]
pub struct Plant<'a> {
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub scope: &'a str,
    pub redirect_uri: &'a str,
    pub challenge: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub dpop_jkt: Option<&'a str>,
    /// Seconds from now until the code expires (negative: expired).
    pub expires_in: i64,
}

impl<'a> Plant<'a> {
    pub fn new(client_id: &'a str, user_id: &'a str, scope: &'a str) -> Self {
        Self {
            client_id,
            user_id,
            scope,
            redirect_uri: REDIRECT,
            challenge: Some(CHALLENGE),
            nonce: Some("n-0S6_WzA2Mj"),
            dpop_jkt: None,
            expires_in: 60,
        }
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref())
}

fn sql_opt(v: Option<&str>) -> String {
    v.map_or_else(|| "NULL".to_owned(), |s| format!("'{s}'"))
}

/// Inserts a grant and its code as the authorization endpoint would; returns the code.
pub async fn plant_code(db: &TestDb, p: &Plant<'_>) -> String {
    let code = b64url(&hex::decode(random_hex(32)).unwrap());
    let grant_id = random_hex(16);
    let now = now();
    db.rows(&format!(
        "INSERT INTO grants (tenant_id, grant_id, client_id, user_id, sid, scope, auth_time, \
         amr, acr, created_at, expires_at) VALUES ('main', '{grant_id}', '{}', '{}', 'sid-1', \
         '{}', {}, '[\"pwd\"]', 'urn:gatehouse:pwd', {now}, {}) RETURNING tenant_id",
        p.client_id,
        p.user_id,
        p.scope,
        now - 5,
        now + 86_400,
    ))
    .await;
    db.rows(&format!(
        "INSERT INTO authorization_codes (tenant_id, code_hash, grant_id, client_id, \
         redirect_uri, nonce, code_challenge, code_challenge_method, dpop_jkt, created_at, \
         expires_at) VALUES ('main', '{}', '{grant_id}', '{}', '{}', {}, {}, {}, {}, {now}, {}) \
         RETURNING tenant_id",
        sha256_hex(&code),
        p.client_id,
        p.redirect_uri,
        sql_opt(p.nonce),
        sql_opt(p.challenge),
        sql_opt(p.challenge.map(|_| "S256")),
        sql_opt(p.dpop_jkt),
        now + p.expires_in,
    ))
    .await;
    code
}

/// A confidential authorization_code + refresh_token client with Basic auth.
pub async fn web_client(db: &TestDb, id: &str, extra: &[&str]) -> Creds {
    let mut args = vec![
        "--redirect-uri",
        REDIRECT,
        "--grant-types",
        "authorization_code,refresh_token",
        "--scopes",
        "openid profile email offline_access",
    ];
    args.extend_from_slice(extra);
    create_client(db, id, &args).await
}

/// Redeems `code` as `creds` (Basic when it has a secret, else `client_id` in the form).
pub async fn redeem(server: &Server, creds: &Creds, code: &str, extra: &[(&str, &str)]) -> Reply {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    for (k, v) in extra {
        params.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            params.push((k, v));
        }
    }
    let mut req = post_form(server, "/token", &params);
    if creds.secret.is_some() {
        req = req.header(header::AUTHORIZATION, creds.basic());
    } else {
        req = post_form(
            server,
            "/token",
            &[params.clone(), vec![("client_id", creds.id.as_str())]].concat(),
        );
    }
    send(req).await
}

/// Verifies an ID token with jsonwebtoken against the JWKS (`alg`, `iss`, `aud`, `exp`,
/// `typ: JWT`); returns its claims.
pub async fn verify_id_token(
    server: &Server,
    token: &str,
    alg: Algorithm,
    issuer: &str,
    client_id: &str,
) -> Value {
    let h = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(h.alg, alg, "{h:?}");
    assert_eq!(h.typ.as_deref(), Some("JWT"), "{h:?}");
    let kid = h.kid.expect("ID tokens name their key");
    let (status, _, jwks) = server.get_json("/jwks").await;
    assert_eq!(status, StatusCode::OK);
    let set: JwkSet = serde_json::from_value(jwks).unwrap();
    let key = DecodingKey::from_jwk(set.find(&kid).expect("kid in JWKS")).unwrap();
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap_or_else(|e| panic!("ID token does not verify: {e}"))
        .claims
}

/// OIDC Core §3.1.3.6 for SHA-256 algorithms.
pub fn at_hash_sha256(access_token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    b64url(&d.as_ref()[..16])
}

async fn a_code_is_redeemed_once_for_access_id_and_refresh_tokens(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let code = plant_code(
        &db,
        &Plant::new("web", &alice, "openid profile email offline_access"),
    )
    .await;
    let r = redeem(&server, &web, &code, &[]).await;
    let body = r.ok().clone();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["scope"], "openid profile email offline_access");
    assert_eq!(body["expires_in"], 600);
    let access = body["access_token"].as_str().unwrap();
    let at = verify_access_token(&server, access, Algorithm::ES256, &issuer, "web").await;
    assert_eq!(at["sub"], alice.as_str());
    assert_eq!(at["client_id"], "web");
    assert_eq!(at["scope"], "openid profile email offline_access");
    assert!(at["auth_time"].is_i64(), "{at}");
    assert_eq!(at["acr"], "urn:gatehouse:pwd");

    let id = verify_id_token(
        &server,
        body["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        &issuer,
        "web",
    )
    .await;
    assert_eq!(id["sub"], alice.as_str());
    assert_eq!(id["azp"], "web");
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["sid"], "sid-1");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert_eq!(id["acr"], "urn:gatehouse:pwd");
    assert_eq!(id["auth_time"], at["auth_time"]);
    assert_eq!(id["at_hash"], at_hash_sha256(access));
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["name"], "Alice Example");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(refresh.len() >= 43, "{refresh}");
    // Stored hashed: the token itself is nowhere in the database.
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM refresh_tokens WHERE token_hash = '{}'",
            sha256_hex(refresh)
        ))
        .await,
        1
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM refresh_tokens WHERE token_hash = '{refresh}'"
        ))
        .await,
        0
    );
    assert!(is_active(&server, &web, access).await);
    let r = introspect(&server, &web, refresh).await;
    assert_eq!(r.ok()["active"], true, "{r:?}");
    assert_eq!(r.body["token_type"], "refresh_token");
    assert_eq!(r.body["sub"], alice.as_str());

    // Without offline_access: no refresh token; without openid: no ID token.
    let code = plant_code(&db, &Plant::new("web", &alice, "profile")).await;
    let body = redeem(&server, &web, &code, &[]).await.ok().clone();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("id_token").is_none(), "{body}");
}

async fn a_replayed_code_fails_and_revokes_what_it_issued(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let code = plant_code(&db, &Plant::new("web", &alice, "openid offline_access")).await;
    let first = redeem(&server, &web, &code, &[]).await.ok().clone();
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert!(is_active(&server, &web, access).await);

    redeem(&server, &web, &code, &[])
        .await
        .assert_error(400, "invalid_grant");
    assert!(
        !is_active(&server, &web, access).await,
        "access token revoked"
    );
    assert!(
        !is_active(&server, &web, refresh).await,
        "refresh token dead"
    );
    let r = send(
        post_form(
            &server,
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .header(header::AUTHORIZATION, web.basic()),
    )
    .await;
    r.assert_error(400, "invalid_grant");
    let audit = db.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e.starts_with(&format!("authorization_code.replayed|web|{alice}|"))),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .all(|e| !e.contains(&code) && !e.contains(refresh)),
        "no secrets in audit: {audit:?}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL")
            .await,
        1
    );
}

/// Codes and grants as rows, to show a rejected request changed nothing.
async fn code_state(db: &TestDb) -> Vec<String> {
    let mut rows = db
        .rows(
            "SELECT code_hash || '|' || coalesce(CAST(used_at AS TEXT), '-') \
             FROM authorization_codes",
        )
        .await;
    rows.extend(
        db.rows("SELECT grant_id || '|' || coalesce(CAST(revoked_at AS TEXT), '-') FROM grants")
            .await,
    );
    rows.extend(db.rows("SELECT token_hash FROM refresh_tokens").await);
    rows.extend(db.rows("SELECT jti FROM grant_access_tokens").await);
    rows.extend(db.snapshot().await);
    rows.sort();
    rows
}

async fn bad_redemptions_are_invalid_grant_and_change_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let other = web_client(&db, "other", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let code = plant_code(&db, &Plant::new("web", &alice, "openid offline_access")).await;
    let expired = plant_code(
        &db,
        &Plant {
            expires_in: -1,
            ..Plant::new("web", &alice, "openid")
        },
    )
    .await;
    let no_pkce = plant_code(
        &db,
        &Plant {
            challenge: None,
            ..Plant::new("web", &alice, "openid")
        },
    )
    .await;
    let before = code_state(&db).await;
    let wrong_verifier = "x".repeat(43);
    for (who, code, extra) in [
        (
            &web,
            code.as_str(),
            vec![("redirect_uri", "https://app.example.com/other")],
        ),
        (
            &web,
            code.as_str(),
            vec![("code_verifier", wrong_verifier.as_str())],
        ),
        (&web, code.as_str(), vec![("code_verifier", "")]),
        (&web, code.as_str(), vec![("code_verifier", "short")]),
        (&other, code.as_str(), vec![]),
        (&web, expired.as_str(), vec![]),
        (&web, no_pkce.as_str(), vec![]),
        (&web, "not-a-code", vec![]),
    ] {
        let r = redeem(&server, who, code, &extra).await;
        r.assert_error(400, "invalid_grant");
    }
    // Missing parameters are invalid_request.
    redeem(&server, &web, &code, &[("code", "")])
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(code_state(&db).await, before, "nothing changed");
    // The code is still good for its own client with the right verifier; with a single
    // registered redirect URI, leaving redirect_uri out names that one (RFC 6749 §4.1.3).
    redeem(&server, &web, &code, &[("redirect_uri", "")])
        .await
        .ok();
    redeem(&server, &web, &no_pkce, &[("code_verifier", "")])
        .await
        .ok();
}

async fn a_public_client_redeems_with_the_oauth2_crate(backend: Backend) {
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, PkceCodeVerifier, RedirectUrl, TokenResponse as _,
        TokenUrl, basic::BasicClient,
    };
    let db = TestDb::migrated(backend).await;
    create_client(
        &db,
        "spa",
        &[
            "--public",
            "--redirect-uri",
            REDIRECT,
            "--grant-types",
            "authorization_code,refresh_token",
            "--scopes",
            "openid offline_access",
        ],
    )
    .await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let code = plant_code(&db, &Plant::new("spa", &alice, "openid offline_access")).await;
    let client = BasicClient::new(ClientId::new("spa".to_owned()))
        .set_auth_uri(AuthUrl::new(format!("{issuer}/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(format!("{issuer}/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(PkceCodeVerifier::new(VERIFIER.to_owned()))
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {e:?}"));
    let claims = verify_access_token(
        &server,
        tokens.access_token().secret(),
        Algorithm::ES256,
        &issuer,
        "spa",
    )
    .await;
    assert_eq!(claims["sub"], alice.as_str());
    assert!(tokens.refresh_token().is_some());
    // A second exchange of the same code fails.
    let again = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(VERIFIER.to_owned()))
        .request_async(&http)
        .await;
    assert!(again.is_err(), "replay must fail");
}

/// Serves sector identifier documents: `/good.json` lists [`REDIRECT`], `/other.json`
/// lists another URI only.
async fn sector_server() -> u16 {
    let app = axum::Router::new()
        .route(
            "/good.json",
            axum::routing::get(|| async { axum::Json(serde_json::json!([REDIRECT])) }),
        )
        .route(
            "/other.json",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!(["https://elsewhere.example/cb"]))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn pairwise_subjects_differ_per_sector_and_are_stable(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let sectors = sector_server().await;
    let a = web_client(&db, "a", &["--subject-type", "pairwise"]).await;
    let b = web_client(
        &db,
        "b",
        &[
            "--subject-type",
            "pairwise",
            "--sector-identifier-uri",
            &format!("http://localhost:{sectors}/good.json"),
        ],
    )
    .await;
    // Security review, item 8: a sector document that does not list the client's
    // redirect URIs gives it no pairwise subject (it could claim any host's sector).
    let liar = web_client(
        &db,
        "liar",
        &[
            "--subject-type",
            "pairwise",
            "--sector-identifier-uri",
            &format!("http://localhost:{sectors}/other.json"),
        ],
    )
    .await;
    let a2 = web_client(&db, "a2", &["--subject-type", "pairwise"]).await;
    let public = web_client(&db, "pub", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    // The tenant does not offer pairwise subjects yet: refused.
    let code = plant_code(&db, &Plant::new("a", &alice, "openid")).await;
    redeem(&server, &a, &code, &[])
        .await
        .assert_error(400, "unauthorized_client");
    assert_eq!(db.scalar("SELECT count(*) FROM tenant_secrets").await, 0);
    drop(server);
    db.rows(
        "UPDATE tenants SET settings = '{\"subjectTypes\":[\"public\",\"pairwise\"]}' \
         WHERE id = 'main' RETURNING id",
    )
    .await;
    let server = db.serve_in_process().await;
    let code = plant_code(&db, &Plant::new("liar", &alice, "openid")).await;
    let r = redeem(&server, &liar, &code, &[]).await;
    r.assert_error(400, "unauthorized_client");
    assert!(
        r.body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("does not list the redirect URI")),
        "{r:?}"
    );
    let mut subs = Vec::new();
    for creds in [a.clone(), b, a2, public, a] {
        let code = plant_code(&db, &Plant::new(&creds.id, &alice, "openid")).await;
        let body = redeem(&server, &creds, &code, &[]).await.ok().clone();
        let id = verify_id_token(
            &server,
            body["id_token"].as_str().unwrap(),
            Algorithm::RS256,
            &issuer,
            &creds.id,
        )
        .await;
        subs.push(id["sub"].as_str().unwrap().to_owned());
    }
    assert_ne!(subs[0], alice, "pairwise sub is not the user id");
    assert_ne!(subs[0], subs[1], "different sectors, different subs");
    assert_eq!(subs[0], subs[2], "same sector (redirect host), same sub");
    assert_eq!(subs[3], alice, "public sub is the user id");
    assert_eq!(subs[4], subs[0], "stable");
    assert_eq!(subs[0].len(), 43);
    // One salt, sealed (not the raw 32 bytes in hex).
    assert_eq!(db.scalar("SELECT count(*) FROM tenant_secrets").await, 1);
    let sealed = db.rows("SELECT sealed FROM tenant_secrets").await;
    assert!(sealed[0].len() > 64, "sealed salt carries nonce and tag");
}

async fn pairwise_sub(db: &TestDb, server: &Server, creds: &Creds, user: &str) -> String {
    let code = plant_code(db, &Plant::new(&creds.id, user, "openid")).await;
    let body = redeem(server, creds, &code, &[]).await.ok().clone();
    let id = verify_id_token(
        server,
        body["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        &db.issuer(""),
        &creds.id,
    )
    .await;
    id["sub"].as_str().unwrap().to_owned()
}

async fn pairwise_subjects_survive_encryption_key_rotation(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    // A public client: client secret digests are keyed by a subkey of ENCRYPTION_KEY
    // and do not survive its rotation, which this test is not about.
    let a = web_client(&db, "a", &["--public", "--subject-type", "pairwise"]).await;
    let alice = create_user(&db, "alice").await;
    db.rows(
        "UPDATE tenants SET settings = '{\"subjectTypes\":[\"pairwise\"]}' \
         WHERE id = 'main' RETURNING id",
    )
    .await;
    let server = db.serve_in_process().await;
    let before = pairwise_sub(&db, &server, &a, &alice).await;
    drop(server);
    let new_key = crate::harness::new_encryption_key();
    let with_new = db.cli().env("ENCRYPTION_KEY", new_key.as_str());
    let out = with_new
        .clone()
        .env("OLD_ENCRYPTION_KEY", db.key())
        .args(["keys", "reencrypt", "--old-key-env", "OLD_ENCRYPTION_KEY"])
        .run()
        .await;
    out.assert_success();
    assert!(
        out.stdout.contains("re-encrypted 1 tenant secret(s)"),
        "{out}"
    );
    let server = with_new.serve_in_process(db.port).await;
    assert_eq!(pairwise_sub(&db, &server, &a, &alice).await, before);
}

async fn dpop_bound_codes_and_deleted_users(backend: Backend) {
    use crate::harness::jose::ClientKey;
    use serde_json::json;
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let bob = create_user(&db, "bob").await;
    let server = db.serve_in_process().await;
    let key = ClientKey::es256();
    let jkt = key.thumbprint();
    let htu = db.issuer("/token");
    let code = plant_code(
        &db,
        &Plant {
            dpop_jkt: Some(&jkt),
            ..Plant::new("web", &alice, "openid")
        },
    )
    .await;
    let with_proof = |proof: Option<String>| {
        let mut req = post_form(
            &server,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .header(header::AUTHORIZATION, web.basic());
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        send(req)
    };
    with_proof(None)
        .await
        .assert_error(400, "invalid_dpop_proof");
    let other = ClientKey::es256().dpop_proof("POST", &htu, &json!({}), &json!({}));
    with_proof(Some(other))
        .await
        .assert_error(400, "invalid_dpop_proof");
    let body = with_proof(Some(key.dpop_proof("POST", &htu, &json!({}), &json!({}))))
        .await
        .ok()
        .clone();
    assert_eq!(body["token_type"], "DPoP");

    // A user deleted between login and redemption: the code is gone with the grant; the
    // tokens issued before are no longer active (the CLI is another process: within a
    // second, through the change feed).
    let code = plant_code(&db, &Plant::new("web", &bob, "openid")).await;
    let earlier = plant_code(&db, &Plant::new("web", &bob, "openid")).await;
    let issued = redeem(&server, &web, &earlier, &[]).await.ok().clone();
    let access = issued["access_token"].as_str().unwrap();
    assert!(is_active(&server, &web, access).await);
    db.cli()
        .args(["users", "delete", "--username", "bob"])
        .run()
        .await
        .assert_success();
    redeem(&server, &web, &code, &[])
        .await
        .assert_error(400, "invalid_grant");
    crate::verified_tokens::inactive_within(&server, &web, access, "user deleted by the CLI").await;
}

async fn concurrent_redemptions_of_one_code_issue_once(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    for _ in 0..3 {
        let code = plant_code(&db, &Plant::new("web", &alice, "openid offline_access")).await;
        let (a, b) = tokio::join!(
            redeem(&server, &web, &code, &[]),
            redeem(&server, &web, &code, &[])
        );
        let (won, lost) = if a.status == StatusCode::OK {
            (a, b)
        } else {
            (b, a)
        };
        let tokens = won.ok().clone();
        lost.assert_error(400, "invalid_grant");
        // The loser is a replay: whatever the winner got is revoked.
        assert!(!is_active(&server, &web, tokens["access_token"].as_str().unwrap()).await);
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM grants WHERE revoked_at IS NULL")
            .await,
        0
    );
}
