//! Userinfo (Bearer and DPoP, RFC 6750 errors), CORS on the browser-facing endpoints,
//! and the end-user fields of the discovery document.

use jsonwebtoken::Algorithm;
use reqwest::header;
use serde_json::{Value, json};

use crate::code_grant::{
    Plant, REDIRECT, VERIFIER, create_user, plant_code, redeem, verify_id_token, web_client,
};
use crate::harness::jose::{ClientKey, b64url};
use crate::harness::oauth::{Reply, access_token, create_client, post_form, send};
use crate::harness::{Backend, Server, TestDb};

on_both_backends!(
    userinfo_returns_the_claims_of_the_scopes,
    userinfo_rejects_bad_tokens_with_challenges,
    userinfo_with_dpop_bound_tokens,
    cors_preflight_and_actual_requests,
    discovery_advertises_the_end_user_endpoints,
);

async fn get_userinfo(server: &Server, auth: Option<&str>, dpop: Option<&str>) -> Reply {
    let mut req = server
        .http()
        .get(server.url("/userinfo"))
        .header(header::HOST, server.host());
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    if let Some(p) = dpop {
        req = req.header("DPoP", p);
    }
    send(req).await
}

fn challenge(r: &Reply) -> String {
    r.header("www-authenticate").unwrap_or_default().to_owned()
}

async fn userinfo_returns_the_claims_of_the_scopes(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let code = plant_code(&db, &Plant::new("web", &alice, "openid profile email")).await;
    let t = redeem(&server, &web, &code, &[]).await.ok().clone();
    let access = t["access_token"].as_str().unwrap();
    let id = verify_id_token(
        &server,
        t["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        &issuer,
        "web",
    )
    .await;
    let r = get_userinfo(&server, Some(&format!("Bearer {access}")), None).await;
    let body = r.ok().clone();
    assert_eq!(body["sub"], id["sub"]);
    assert_eq!(body["preferred_username"], "alice");
    assert_eq!(body["name"], "Alice Example");
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["email_verified"], true);
    // POST with the token in the form (RFC 6750 §2.2) or the header.
    let r = send(post_form(&server, "/userinfo", &[("access_token", access)])).await;
    assert_eq!(r.ok(), &body);
    let r = send(
        server
            .post("/userinfo")
            .header(header::AUTHORIZATION, format!("bearer {access}")),
    )
    .await;
    assert_eq!(r.ok(), &body);
    // Only openid: just the subject.
    let code = plant_code(&db, &Plant::new("web", &alice, "openid")).await;
    let t = redeem(&server, &web, &code, &[]).await.ok().clone();
    let r = get_userinfo(
        &server,
        Some(&format!("Bearer {}", t["access_token"].as_str().unwrap())),
        None,
    )
    .await;
    assert_eq!(r.ok(), &json!({ "sub": alice }));
}

async fn userinfo_rejects_bad_tokens_with_challenges(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(&db, "web", &[]).await;
    let machine = create_client(&db, "machine", &["--scopes", "openid"]).await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;

    let r = get_userinfo(&server, None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(challenge(&r), "Bearer");

    let r = get_userinfo(&server, Some("Bearer not-a-token"), None).await;
    assert_eq!(r.status, 401);
    assert!(
        challenge(&r).starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{r:?}"
    );
    assert_eq!(r.body["error"], "invalid_token");

    // A machine token has openid but no user behind it.
    let m = access_token(&server, &machine).await;
    let r = get_userinfo(&server, Some(&format!("Bearer {m}")), None).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.body["error"], "invalid_token");

    // A user token without openid.
    let code = plant_code(&db, &Plant::new("web", &alice, "profile")).await;
    let t = redeem(&server, &web, &code, &[]).await.ok().clone();
    let r = get_userinfo(
        &server,
        Some(&format!("Bearer {}", t["access_token"].as_str().unwrap())),
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        challenge(&r).contains("error=\"insufficient_scope\""),
        "{r:?}"
    );

    // A token of a revoked grant (its code was replayed).
    let code = plant_code(&db, &Plant::new("web", &alice, "openid")).await;
    let t = redeem(&server, &web, &code, &[]).await.ok().clone();
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    get_userinfo(&server, Some(&bearer), None).await.ok();
    redeem(&server, &web, &code, &[])
        .await
        .assert_error(400, "invalid_grant");
    let r = get_userinfo(&server, Some(&bearer), None).await;
    assert_eq!(r.status, 401, "{r:?}");

    // Token in both places; an unknown scheme.
    let r = send(
        post_form(&server, "/userinfo", &[("access_token", "x")])
            .header(header::AUTHORIZATION, "Bearer y"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_request");
    let r = get_userinfo(&server, Some("Basic eDp5"), None).await;
    assert_eq!(r.status, 400);
}

async fn userinfo_with_dpop_bound_tokens(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    create_client(
        &db,
        "spa",
        &[
            "--public",
            "--redirect-uri",
            REDIRECT,
            "--grant-types",
            "authorization_code",
            "--scopes",
            "openid email",
        ],
    )
    .await;
    let alice = create_user(&db, "alice").await;
    let server = db.serve_in_process().await;
    let key = ClientKey::es256();
    let code = plant_code(&db, &Plant::new("spa", &alice, "openid email")).await;
    let proof = key.dpop_proof("POST", &db.issuer("/token"), &json!({}), &json!({}));
    let t = send(
        post_form(
            &server,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", "spa"),
            ],
        )
        .header("DPoP", proof),
    )
    .await
    .ok()
    .clone();
    assert_eq!(t["token_type"], "DPoP");
    let access = t["access_token"].as_str().unwrap();
    let ath =
        b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes()).as_ref());
    let htu = db.issuer("/userinfo");
    let good = || key.dpop_proof("GET", &htu, &json!({}), &json!({ "ath": ath }));
    let r = get_userinfo(&server, Some(&format!("DPoP {access}")), Some(&good())).await;
    assert_eq!(r.ok()["email"], "alice@example.com");

    // Bearer use of a bound token, a missing proof, a proof without ath, another key.
    let r = get_userinfo(&server, Some(&format!("Bearer {access}")), None).await;
    assert_eq!(r.status, 401);
    assert!(
        challenge(&r).starts_with("DPoP error=\"invalid_token\""),
        "{r:?}"
    );
    let r = get_userinfo(&server, Some(&format!("DPoP {access}")), None).await;
    assert_eq!(r.status, 401);
    assert!(challenge(&r).contains("invalid_dpop_proof"), "{r:?}");
    let no_ath = key.dpop_proof("GET", &htu, &json!({}), &json!({}));
    let r = get_userinfo(&server, Some(&format!("DPoP {access}")), Some(&no_ath)).await;
    assert_eq!(r.status, 401);
    assert!(challenge(&r).contains("invalid_dpop_proof"), "{r:?}");
    let other = ClientKey::es256().dpop_proof("GET", &htu, &json!({}), &json!({ "ath": ath }));
    let r = get_userinfo(&server, Some(&format!("DPoP {access}")), Some(&other)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "invalid_token");
}

async fn cors_preflight_and_actual_requests(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let web = web_client(
        &db,
        "web",
        &["--allowed-cors-origin", "https://spa.example.com"],
    )
    .await;
    let server = db.serve_in_process().await;
    let preflight = |origin: &'static str, path: &'static str| {
        send(
            server
                .http()
                .request(reqwest::Method::OPTIONS, server.url(path))
                .header(header::HOST, server.host())
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .header(
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                    "authorization, dpop",
                ),
        )
    };
    for path in ["/token", "/userinfo", "/revoke", "/introspect"] {
        let r = preflight("https://spa.example.com", path).await;
        assert_eq!(r.status, 204, "{path}: {r:?}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://spa.example.com")
        );
        assert!(
            r.header("access-control-allow-methods")
                .unwrap()
                .contains("POST")
        );
        let allowed = r.header("access-control-allow-headers").unwrap();
        for h in ["Authorization", "Content-Type", "DPoP"] {
            assert!(allowed.contains(h), "{allowed}");
        }
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("DPoP-Nonce, WWW-Authenticate")
        );
        assert_eq!(r.header("vary"), Some("Origin"));
        let r = preflight("https://evil.example.com", path).await;
        assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    }
    // Actual requests.
    let r = send(
        post_form(&server, "/token", &[("grant_type", "client_credentials")])
            .header(header::AUTHORIZATION, web.basic())
            .header(header::ORIGIN, "https://spa.example.com"),
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://spa.example.com")
    );
    assert!(r.header("access-control-expose-headers").is_some());
    let r = send(
        post_form(&server, "/token", &[("grant_type", "client_credentials")])
            .header(header::ORIGIN, "https://evil.example.com"),
    )
    .await;
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    // Public documents: any origin.
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        let r = server
            .http()
            .get(server.url(path))
            .header(header::HOST, server.host())
            .header(header::ORIGIN, "https://anyone.example.org")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
        let r = server.get(path).await.unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
}

async fn discovery_advertises_the_end_user_endpoints(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let server = db.serve_in_process().await;
    let issuer = db.issuer("");
    let (_, _, doc) = server.get_json("/.well-known/openid-configuration").await;
    let at = |p: &str| Value::String(format!("{issuer}{p}"));
    assert_eq!(doc["authorization_endpoint"], at("/authorize"));
    assert_eq!(doc["pushed_authorization_request_endpoint"], at("/par"));
    assert_eq!(doc["userinfo_endpoint"], at("/userinfo"));
    assert_eq!(doc["end_session_endpoint"], at("/logout"));
    assert_eq!(doc["require_pushed_authorization_requests"], false);
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(
        doc["response_modes_supported"],
        json!(["query", "form_post"])
    );
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert!(
        doc["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256"))
    );
    assert_eq!(
        doc["scopes_supported"],
        json!(["openid", "profile", "email", "offline_access"])
    );
    for c in [
        "sub",
        "email",
        "preferred_username",
        "name",
        "auth_time",
        "acr",
    ] {
        assert!(
            doc["claims_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(c)),
            "{c}"
        );
    }
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        doc["prompt_values_supported"],
        json!(["none", "login", "consent", "select_account"])
    );
    assert_eq!(doc["claims_parameter_supported"], false);
    assert_eq!(doc["request_parameter_supported"], false);
    assert_eq!(doc["request_uri_parameter_supported"], false);
}
