//! The token endpoint with client_credentials: a real OAuth library (`oauth2`) obtains
//! tokens with client_secret_basic and client_secret_post, an independent JWT library
//! (`jsonwebtoken`) verifies them against the JWKS for every signing algorithm, and every
//! error path answers RFC 6749 §5.2 JSON and changes nothing.

use jsonwebtoken::Algorithm;
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse as _, TokenUrl,
};
use reqwest::header;
use serde_json::Value;

use crate::harness::jose::now;
use crate::harness::oauth::{Creds, create_client, post_form, send, token, verify_access_token};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    an_oauth2_client_gets_tokens_that_verify_against_the_jwks,
    token_endpoint_errors_are_oauth_json_and_change_nothing,
);

/// The HTTP client an OAuth library should be given: no redirects (SSRF guard).
fn oauth_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn oauth2_token(
    server: &Server,
    creds: &Creds,
    auth: AuthType,
    scope: Option<&str>,
    audience: Option<&str>,
) -> Result<
    oauth2::basic::BasicTokenResponse,
    RequestTokenError<
        oauth2::HttpClientError<reqwest::Error>,
        oauth2::StandardErrorResponse<BasicErrorResponseType>,
    >,
> {
    let client = BasicClient::new(ClientId::new(creds.id.clone()))
        .set_client_secret(ClientSecret::new(creds.secret().to_owned()))
        .set_token_uri(TokenUrl::new(server.url("/token")).unwrap())
        .set_auth_type(auth);
    let mut request = client.exchange_client_credentials();
    if let Some(s) = scope {
        request = request.add_scope(Scope::new(s.to_owned()));
    }
    if let Some(a) = audience {
        request = request.add_extra_param("audience", a);
    }
    request.request_async(&oauth_http()).await
}

async fn an_oauth2_client_gets_tokens_that_verify_against_the_jwks(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let allowed = [
        "--scopes",
        "read write",
        "--audiences",
        "urn:api urn:reports",
    ];
    let cases: [(&str, &[&str], Algorithm, AuthType); 4] = [
        ("es256-basic", &[], Algorithm::ES256, AuthType::BasicAuth),
        (
            "es256-post",
            &["--auth-method", "client_secret_post"],
            Algorithm::ES256,
            AuthType::RequestBody,
        ),
        (
            "eddsa-basic",
            &["--access-token-alg", "EdDSA"],
            Algorithm::EdDSA,
            AuthType::BasicAuth,
        ),
        (
            "rs256-post",
            &[
                "--access-token-alg",
                "RS256",
                "--auth-method",
                "client_secret_post",
            ],
            Algorithm::RS256,
            AuthType::RequestBody,
        ),
    ];
    let mut jtis = Vec::new();
    for (id, args, alg, auth) in cases {
        let args: Vec<&str> = allowed.iter().chain(args).copied().collect();
        let creds = create_client(&db, id, &args).await;

        // A narrowed request: one scope, one audience.
        let before = now();
        let resp = oauth2_token(&server, &creds, auth.clone(), Some("read"), Some("urn:api"))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert_eq!(*resp.token_type(), BasicTokenType::Bearer, "{id}");
        assert_eq!(resp.expires_in().map(|d| d.as_secs()), Some(600), "{id}");
        let scopes: Vec<String> = resp
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(scopes, ["read"], "{id}");
        let token = resp.access_token().secret();
        let claims = verify_access_token(&server, token, alg, &issuer, "urn:api").await;
        assert_eq!(claims["sub"], id, "{claims}");
        assert_eq!(claims["client_id"], id, "{claims}");
        assert_eq!(claims["scope"], "read", "{claims}");
        assert_eq!(claims["aud"], "urn:api", "{claims}");
        assert_eq!(claims["iss"], issuer.as_str(), "{claims}");
        let iat = claims["iat"].as_i64().expect("iat");
        assert!((before - 5..=now() + 5).contains(&iat), "{claims}");
        assert_eq!(claims["exp"].as_i64(), Some(iat + 600), "{claims}");
        let jti = claims["jti"].as_str().expect("jti").to_owned();
        assert!(jti.len() >= 16, "{claims}");
        assert!(claims.get("cnf").is_none(), "{claims}");
        jtis.push(jti);

        // Nothing requested: everything the client is allowed.
        let resp = oauth2_token(&server, &creds, auth, None, None)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e:?}"));
        let claims = verify_access_token(
            &server,
            resp.access_token().secret(),
            alg,
            &issuer,
            "urn:reports",
        )
        .await;
        assert_eq!(claims["scope"], "read write", "{claims}");
        assert_eq!(
            claims["aud"],
            serde_json::json!(["urn:api", "urn:reports"]),
            "{claims}"
        );
        jtis.push(claims["jti"].as_str().unwrap().to_owned());
    }
    let mut unique = jtis.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), jtis.len(), "every token has its own jti");
    // Tokens are issued without a database write: nothing is recorded per token.
    assert_eq!(db.scalar("SELECT count(*) FROM revoked_tokens").await, 0);
}

/// One bad request: what it sends and the error it must get.
struct Case {
    name: &'static str,
    request: reqwest::RequestBuilder,
    status: u16,
    error: &'static str,
}

#[allow(clippy::too_many_lines)] // one case per error path, in the order of the issue
async fn token_endpoint_errors_are_oauth_json_and_change_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve().await;
    let scoped = ["--scopes", "read", "--audiences", "urn:api"];
    let basic = create_client(&db, "basic-client", &scoped).await;
    let post = create_client(
        &db,
        "post-client",
        &["--auth-method", "client_secret_post", "--scopes", "read"],
    )
    .await;
    let public = create_client(
        &db,
        "spa",
        &["--public", "--redirect-uri", "http://127.0.0.1/cb"],
    )
    .await;
    assert_eq!(public.secret, None);
    // The clients work, so each rejection below is about the one thing that is wrong.
    token(&server, &basic, &[]).await.ok();
    let ok = send(post_form(
        &server,
        "/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &post.id),
            ("client_secret", post.secret()),
        ],
    ))
    .await;
    ok.ok();

    // A real OAuth library sees a standard error it can act on.
    let wrong = basic.with_secret("not-the-secret");
    match oauth2_token(&server, &wrong, AuthType::BasicAuth, None, None).await {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), BasicErrorResponseType::InvalidClient);
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }

    let before = db.snapshot().await;
    let audit_before = db.audit().await.len();
    let grant = ("grant_type", "client_credentials");
    let with_basic = |params: &[(&str, &str)], creds: &Creds| {
        post_form(&server, "/token", params).header(header::AUTHORIZATION, creds.basic())
    };
    let cases = vec![
        Case {
            name: "wrong secret",
            request: with_basic(&[grant], &wrong),
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "unknown client",
            request: with_basic(
                &[grant],
                &Creds {
                    id: "nobody".into(),
                    secret: Some("x".repeat(43)),
                },
            ),
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "no client authentication at all",
            request: post_form(&server, "/token", &[grant]),
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "public client asking for client_credentials",
            request: post_form(&server, "/token", &[grant, ("client_id", "spa")]),
            status: 400,
            error: "unauthorized_client",
        },
        Case {
            name: "scope the client may not request",
            request: with_basic(&[grant, ("scope", "read admin")], &basic),
            status: 400,
            error: "invalid_scope",
        },
        Case {
            name: "audience the client may not request",
            request: with_basic(&[grant, ("audience", "urn:other")], &basic),
            status: 400,
            error: "invalid_target",
        },
        Case {
            name: "resource the client may not request",
            request: with_basic(&[grant, ("resource", "https://other.example/")], &basic),
            status: 400,
            error: "invalid_target",
        },
        Case {
            name: "unsupported grant type",
            request: with_basic(&[("grant_type", "password")], &basic),
            status: 400,
            error: "unsupported_grant_type",
        },
        Case {
            name: "missing grant type",
            request: with_basic(&[("scope", "read")], &basic),
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "JSON body",
            request: server
                .post("/token")
                .header(header::AUTHORIZATION, basic.basic())
                .header(header::CONTENT_TYPE, "application/json")
                .body(r#"{"grant_type":"client_credentials"}"#),
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "repeated parameter",
            request: with_basic(&[grant, ("scope", "read"), ("scope", "read")], &basic),
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "Basic and client_secret at once",
            request: with_basic(
                &[
                    grant,
                    ("client_id", &basic.id),
                    ("client_secret", basic.secret()),
                ],
                &basic,
            ),
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "client registered for Basic using client_secret_post",
            request: post_form(
                &server,
                "/token",
                &[
                    grant,
                    ("client_id", &basic.id),
                    ("client_secret", basic.secret()),
                ],
            ),
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "client registered for client_secret_post using Basic",
            request: with_basic(&[grant], &post),
            status: 401,
            error: "invalid_client",
        },
    ];
    for case in cases {
        let reply = send(case.request).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body["error"].as_str()),
            (case.status, Some(case.error)),
            "{}: {reply:?}",
            case.name
        );
        reply.assert_error(case.status, case.error);
        if case.status == 401 {
            reply.assert_invalid_client();
        }
        assert!(reply.body.get("access_token").is_none(), "{}", case.name);
        assert_eq!(
            db.snapshot().await,
            before,
            "{} changed the database",
            case.name
        );
    }

    // Each authentication failure is audited with its reason, never with the secret.
    let audit = db.audit().await;
    let failures: Vec<Value> = audit[audit_before..]
        .iter()
        .map(|row| {
            let parts: Vec<&str> = row.splitn(4, '|').collect();
            assert_eq!(parts[0], "client.auth_failed", "{row}");
            serde_json::json!({ "client": parts[2], "details": serde_json::from_str::<Value>(parts[3]).unwrap() })
        })
        .collect();
    let reason = |c: &str, r: &str| serde_json::json!({ "client": c, "details": { "reason": r } });
    assert_eq!(
        failures,
        [
            reason("basic-client", "wrong_secret"),
            reason("nobody", "unknown_client"),
            reason("basic-client", "method_mismatch"),
            reason("post-client", "method_mismatch"),
        ]
    );
    for row in audit {
        assert!(
            !row.contains(basic.secret()) && !row.contains(post.secret()),
            "{row}"
        );
    }
    let logs = server.logs_settled().await;
    for secret in [basic.secret(), post.secret(), "not-the-secret"] {
        assert!(!logs.contains(secret), "a secret was logged:\n{logs}");
    }
}
