//! `POST {issuer}/token`, `{issuer}/introspect`, `{issuer}/revoke`, `{issuer}/par`. Each
//! route is listed in the discovery document (`token_endpoint`, `introspection_endpoint`,
//! `revocation_endpoint`, `pushed_authorization_request_endpoint`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Extension, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::error::{no_store, rate_headers};
use super::tenant_routing::{CurrentTenant, client_ip};
use super::{ApiError, AppState};
use crate::oauth::EndpointRequest;
use crate::oauth::form::Form;

pub const TOKEN_PATH: &str = "/token";
pub const INTROSPECTION_PATH: &str = "/introspect";
pub const REVOCATION_PATH: &str = "/revoke";
pub const PAR_PATH: &str = "/par";

/// Request bodies beyond this are not OAuth requests.
const MAX_BODY: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(INTROSPECTION_PATH, post(introspect))
        .route(REVOCATION_PATH, post(revoke))
        .route(PAR_PATH, post(par))
}

/// Reads what every protocol endpoint needs from the HTTP request.
async fn read(
    state: &AppState,
    issuer: &str,
    path: &str,
    req: Request,
) -> Result<(Parts, Form), ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let form = Form::parse(content_type, &body)?;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = client_ip(&parts.headers, peer, &state.trusted_proxies).map(|ip| ip.to_string());
    Ok((
        Parts {
            headers: parts.headers,
            url: format!("{issuer}{path}"),
            ip,
        },
        form,
    ))
}

struct Parts {
    headers: axum::http::HeaderMap,
    url: String,
    ip: Option<String>,
}

impl Parts {
    fn request(&self, form: Form) -> EndpointRequest<'_> {
        EndpointRequest {
            method: "POST",
            url: self.url.clone(),
            authorization: self
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            dpop: self
                .headers
                .get_all("dpop")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect(),
            form,
            ip: self.ip.clone(),
        }
    }
}

async fn token(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, form) = read(&state, &tenant.issuer, TOKEN_PATH, req).await?;
    let out = state.oauth.token(&tenant, parts.request(form)).await?;
    let mut resp = Json(out.body).into_response();
    let h = resp.headers_mut();
    no_store(h);
    if let Some(n) = out.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        h.insert("dpop-nonce", n);
    }
    if let Some(rate) = out.rate {
        rate_headers(h, rate);
    }
    Ok(resp)
}

async fn introspect(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, form) = read(&state, &tenant.issuer, INTROSPECTION_PATH, req).await?;
    let (body, rate) = state.oauth.introspect(&tenant, parts.request(form)).await?;
    let mut resp = Json(body).into_response();
    no_store(resp.headers_mut());
    if let Some(rate) = rate {
        rate_headers(resp.headers_mut(), rate);
    }
    Ok(resp)
}

async fn revoke(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, form) = read(&state, &tenant.issuer, REVOCATION_PATH, req).await?;
    let rate = state.oauth.revoke(&tenant, parts.request(form)).await?;
    let mut resp = ().into_response();
    no_store(resp.headers_mut());
    if let Some(rate) = rate {
        rate_headers(resp.headers_mut(), rate);
    }
    Ok(resp)
}

/// RFC 9126 §2.2: `201 Created` with the `request_uri`.
async fn par(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, form) = read(&state, &tenant.issuer, PAR_PATH, req).await?;
    let (body, rate) = state
        .oauth
        .push_authorization_request(&tenant, parts.request(form))
        .await?;
    let mut resp = (axum::http::StatusCode::CREATED, Json(body)).into_response();
    no_store(resp.headers_mut());
    if let Some(rate) = rate {
        rate_headers(resp.headers_mut(), rate);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;
    use serde_json::json;

    use crate::domain::client::{AuthMethod, ClientSpec};
    use crate::domain::signing_key::Algorithm;
    use crate::store::Backend;
    use crate::testing::{CapturedLogs, ISSUER, NOW, Reply, TestApp, basic};

    fn form(pairs: &[(&str, &str)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    async fn client_credentials(app: &TestApp, id: &str, secret: &str) -> Reply {
        app.post_form(
            "/token",
            "grant_type=client_credentials",
            &[("authorization", &basic(id, secret))],
        )
        .await
    }

    /// A 500 or 503 in the one error shape, with nothing of the database in it.
    #[track_caller]
    fn assert_ours(r: &Reply, status: u16, code: &str) {
        assert_eq!(r.status.as_u16(), status, "{r:?}");
        assert_eq!(r.json["error"], code, "{r:?}");
        assert_eq!(r.header("retry-after").is_some(), status == 503, "{r:?}");
        assert!(r.header("www-authenticate").is_none(), "{r:?}");
        for text in [
            "no such table",
            "does not exist",
            "_gone",
            "clients",
            "assertion_jti",
        ] {
            assert!(!r.text.contains(text), "{text:?} in {r:?}");
        }
    }

    #[track_caller]
    fn assert_invalid_client(r: &Reply) {
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.json["error"], "invalid_client", "{r:?}");
    }

    /// Registers `svc` and authenticates it once (so it is cached from then on);
    /// returns its secret.
    async fn svc(app: &TestApp) -> String {
        let spec = ClientSpec {
            client_id: "svc".into(),
            ..ClientSpec::default()
        };
        let secret = app.client(spec).await.expect("a generated secret");
        let secret = secret.expose_secret().to_owned();
        let ok = client_credentials(app, "svc", &secret).await;
        assert_eq!(ok.status, 200, "{ok:?}");
        secret
    }

    #[tokio::test]
    async fn a_database_failure_during_client_authentication_is_ours_never_invalid_client() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let app = TestApp::new(backend).await;
            let secret = svc(&app).await;
            let wrong = "w".repeat(43);

            // The client could not be read: no verdict on its credentials.
            app.sql("ALTER TABLE clients RENAME TO clients_gone").await;
            assert_ours(
                &client_credentials(&app, "ghost", &secret).await,
                500,
                "server_error",
            );
            // The request did reach client authentication: a known (cached) client's
            // wrong secret is still refused.
            assert_invalid_client(&client_credentials(&app, "svc", &wrong).await);
            app.sql("ALTER TABLE clients_gone RENAME TO clients").await;

            if backend == Backend::Postgres {
                app.outage();
                assert_ours(
                    &client_credentials(&app, "ghost", &secret).await,
                    503,
                    "temporarily_unavailable",
                );
                assert_invalid_client(&client_credentials(&app, "svc", &wrong).await);
            }
        }
    }

    #[tokio::test]
    async fn a_database_failure_while_checking_an_assertion_is_ours_never_invalid_client() {
        let key = crate::crypto::signing::generate(Algorithm::Es256, 2048)
            .expect("key")
            .key;
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let app = TestApp::new(backend).await;
            app.client(ClientSpec {
                client_id: "signer".into(),
                auth_method: AuthMethod::PrivateKeyJwt,
                jwks: Some(json!({ "keys": [key.public_jwk()] })),
                ..ClientSpec::default()
            })
            .await;
            let app = &app;
            let send = |jti: &str| {
                let assertion = key
                    .sign_jwt(
                        "JWT",
                        &json!({ "iss": "signer", "sub": "signer", "aud": ISSUER,
                            "jti": jti, "iat": NOW, "exp": NOW + 60 }),
                    )
                    .expect("signed");
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ]);
                async move { app.post_form("/token", &body, &[]).await }
            };
            let ok = send("first").await;
            assert_eq!(ok.status, 200, "{ok:?}");

            // The replay cache could not be consulted: the assertion is neither accepted
            // nor refused as the client's fault.
            app.sql("ALTER TABLE assertion_jti RENAME TO assertion_jti_gone")
                .await;
            assert_ours(&send("second").await, 500, "server_error");
            app.sql("ALTER TABLE assertion_jti_gone RENAME TO assertion_jti")
                .await;

            if backend == Backend::Postgres {
                app.outage();
                assert_ours(&send("third").await, 503, "temporarily_unavailable");
            }
        }
    }

    #[tokio::test]
    async fn a_server_error_is_logged_once_inside_its_request_span() {
        let app = TestApp::new(Backend::Sqlite).await;
        let secret = svc(&app).await;
        app.sql("ALTER TABLE clients RENAME TO clients_gone").await;

        let logs = CapturedLogs::start();
        let r = client_credentials(&app, "ghost", &secret).await;
        assert_ours(&r, 500, "server_error");
        assert_invalid_client(&client_credentials(&app, "svc", &"w".repeat(43)).await);

        let lines = logs.lines();
        let failures: Vec<_> = lines
            .iter()
            .filter(|l| l.to_string().contains("no such table"))
            .collect();
        assert_eq!(failures.len(), 1, "{lines:#?}");
        let line = failures[0];
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["message"], "request failed", "{line}");
        assert_eq!(line["span"]["name"], "http_request", "{line}");
        // The refusal is a verdict, not a failure: nothing at ERROR for it.
        let errors = lines.iter().filter(|l| l["level"] == "ERROR").count();
        assert_eq!(errors, 1, "{lines:#?}");
    }
}
