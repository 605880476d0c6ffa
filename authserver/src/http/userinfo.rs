//! `GET|POST {issuer}/userinfo` (OpenID Connect Core §5.3), listed in the discovery
//! document as `userinfo_endpoint`. A refused request is answered here as RFC 6750 §3
//! and RFC 9449 §7.1 say: the status for the error code, a `WWW-Authenticate`
//! challenge naming the scheme and the error, and the same error as JSON.

use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::error::{ServerFailure, no_store, server_status};
use super::tenant_routing::CurrentTenant;
use super::{ApiError, AppState};
use crate::oauth::form::Form;
use crate::oauth::resource::{ResourceError, ResourceRequest, TokenScheme};
use crate::oauth::{ErrorCode, OAuthError};

pub const USERINFO_PATH: &str = "/userinfo";

const MAX_BODY: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route(USERINFO_PATH, get(userinfo).post(userinfo))
}

/// The status of a refused resource request: RFC 6750 §3.1 (400 for a malformed
/// request, 401 for a missing or bad token, 403 for too little scope), RFC 9449 §7.1
/// (401 for a DPoP proof or nonce problem); 500 or 503 for a failure on our side.
pub(super) fn resource_status(error: Option<&OAuthError>) -> StatusCode {
    let Some(e) = error else {
        return StatusCode::UNAUTHORIZED;
    };
    match e.code {
        ErrorCode::InvalidToken | ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce => {
            StatusCode::UNAUTHORIZED
        }
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        code => server_status(code).unwrap_or(StatusCode::BAD_REQUEST),
    }
}

/// RFC 6750 §3 / RFC 9449 §7.1 challenge; with `resource_metadata`, RFC 9728 §5.1's
/// pointer to the protected resource's metadata.
fn challenge(e: &ResourceError, dpop_algs: &str, resource_metadata: Option<&str>) -> String {
    let mut params = Vec::new();
    if let Some(url) = resource_metadata {
        params.push(("resource_metadata", url));
    }
    if let Some(err) = &e.error {
        params.push(("error", err.code.as_str()));
        if let Some(d) = &err.description {
            params.push(("error_description", d.as_str()));
        }
    }
    if let Some(scope) = &e.scope {
        params.push(("scope", scope.as_str()));
    }
    if e.scheme == TokenScheme::Dpop {
        params.push(("algs", dpop_algs));
    }
    super::error::auth_challenge(e.scheme.as_str(), &params)
}

/// The answer to a refused resource request: status, challenge, JSON error, and for a
/// failure on our side `Retry-After` (outage) and the detail for the log.
pub(super) fn refused(state: &AppState, e: &ResourceError) -> Response {
    let status = resource_status(e.error.as_ref());
    let body = match &e.error {
        Some(err) => serde_json::json!({
            "error": err.code.as_str(),
            "error_description": err.description,
        }),
        None => serde_json::json!({}),
    };
    let mut resp = (status, Json(body)).into_response();
    add_challenge(state, e, None, &mut resp);
    resp
}

/// What a refused resource request carries besides its status and body: the
/// `WWW-Authenticate` challenge, a DPoP nonce to retry with, `Retry-After` during an
/// outage, and a failure on our side for the log.
pub(super) fn add_challenge(
    state: &AppState,
    e: &ResourceError,
    resource_metadata: Option<&str>,
    resp: &mut Response,
) {
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        super::error::retry_after_outage(resp.headers_mut());
    }
    let algs = state.oauth.dpop.algorithm_names();
    if let Ok(v) = HeaderValue::from_str(&challenge(e, &algs.join(" "), resource_metadata)) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    if let Some(err) = &e.error {
        if let Some(n) = err
            .dpop_nonce
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok())
        {
            resp.headers_mut().insert("dpop-nonce", n);
        }
        ServerFailure::attach(resp, err);
    }
}

async fn userinfo(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let form_token = if parts.method == axum::http::Method::POST {
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| OAuthError::invalid_request("request body is too large or unreadable"))?;
        if body.is_empty() {
            None
        } else {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            Form::parse(content_type, &body)?
                .get("access_token")
                .map(str::to_owned)
        }
    } else {
        None
    };
    let request = ResourceRequest {
        method: &method,
        url: format!("{}{USERINFO_PATH}", tenant.issuer),
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        dpop: parts
            .headers
            .get_all("dpop")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect(),
        form_token,
    };
    let mut resp = match state.oauth.userinfo(&tenant, request).await {
        Ok(claims) => Json(claims).into_response(),
        Err(e) => refused(&state, &e),
    };
    no_store(resp.headers_mut());
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(scheme: TokenScheme, code: ErrorCode) -> ResourceError {
        ResourceError {
            scheme,
            error: Some(OAuthError::new(code, "why")),
            scope: None,
        }
    }

    #[test]
    fn each_resource_error_has_the_status_rfc_6750_and_9449_give_it() {
        let outage = OAuthError::from(crate::store::Error::Unavailable(
            crate::store::Unavailable::TimedOut(std::time::Duration::from_secs(1)),
        ));
        let cases = [
            (None, 401),
            (Some(OAuthError::invalid_request("x")), 400),
            (Some(OAuthError::new(ErrorCode::InvalidToken, "x")), 401),
            (Some(OAuthError::new(ErrorCode::InvalidDpopProof, "x")), 401),
            (Some(OAuthError::new(ErrorCode::UseDpopNonce, "x")), 401),
            (
                Some(OAuthError::new(ErrorCode::InsufficientScope, "x")),
                403,
            ),
            (Some(OAuthError::internal("x")), 500),
            (Some(outage), 503),
        ];
        for (e, expected) in cases {
            assert_eq!(resource_status(e.as_ref()).as_u16(), expected, "{e:?}");
        }
    }

    #[test]
    fn challenges_name_the_scheme_the_error_and_for_dpop_the_algorithms() {
        let none = ResourceError {
            scheme: TokenScheme::Bearer,
            error: None,
            scope: None,
        };
        assert_eq!(challenge(&none, "ES256", None), "Bearer");
        assert_eq!(
            challenge(
                &refused(TokenScheme::Bearer, ErrorCode::InsufficientScope),
                "ES256",
                None
            ),
            "Bearer error=\"insufficient_scope\", error_description=\"why\""
        );
        assert_eq!(
            challenge(
                &refused(TokenScheme::Dpop, ErrorCode::UseDpopNonce),
                "ES256 EdDSA",
                None
            ),
            "DPoP error=\"use_dpop_nonce\", error_description=\"why\", algs=\"ES256 EdDSA\""
        );
        let mut scoped = refused(TokenScheme::Bearer, ErrorCode::InsufficientScope);
        scoped.scope = Some("gatehouse:audit:read".into());
        assert_eq!(
            challenge(
                &scoped,
                "ES256",
                Some("https://id.example/.well-known/oauth-protected-resource/api/v1")
            ),
            "Bearer resource_metadata=\"https://id.example/.well-known/oauth-protected-resource/api/v1\", \
             error=\"insufficient_scope\", error_description=\"why\", scope=\"gatehouse:audit:read\""
        );
    }
}

#[cfg(test)]
mod edge_tests {
    use axum::body::Body;
    use axum::http::Request;
    use secrecy::ExposeSecret as _;

    use crate::domain::client::ClientSpec;
    use crate::store::Backend;
    use crate::testing::{TestApp, basic};

    #[tokio::test]
    async fn a_failure_of_ours_at_userinfo_is_a_server_error_with_a_bearer_challenge() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let app = TestApp::new(backend).await;
            let secret = app
                .client(ClientSpec {
                    client_id: "svc".into(),
                    ..ClientSpec::default()
                })
                .await
                .expect("secret");
            let token = app
                .post_form(
                    "/token",
                    "grant_type=client_credentials",
                    &[("authorization", &basic("svc", secret.expose_secret()))],
                )
                .await;
            assert_eq!(token.status, 200, "{token:?}");
            let access = token.json["access_token"].as_str().expect("token");
            let userinfo = || {
                Request::get(super::USERINFO_PATH)
                    .header("authorization", format!("Bearer {access}"))
                    .body(Body::empty())
                    .expect("request")
            };

            app.sql("ALTER TABLE revoked_tokens RENAME TO revoked_tokens_gone")
                .await;
            let r = app.send(userinfo()).await;
            assert_eq!(r.status, 500, "{r:?}");
            assert_eq!(r.json["error"], "server_error", "{r:?}");
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer error=\"server_error\", error_description=\"internal error\""),
            );
            assert!(!r.text.contains("revoked_tokens"), "{r:?}");
            assert_eq!(r.header("cache-control"), Some("no-store"));
            app.sql("ALTER TABLE revoked_tokens_gone RENAME TO revoked_tokens")
                .await;

            if backend == Backend::Postgres {
                app.outage();
                let r = app.send(userinfo()).await;
                assert_eq!(r.status, 503, "{r:?}");
                assert_eq!(r.json["error"], "temporarily_unavailable", "{r:?}");
                assert_eq!(r.header("retry-after"), Some("2"), "{r:?}");
                assert!(
                    r.header("www-authenticate")
                        .is_some_and(|c| c.starts_with("Bearer error=\"temporarily_unavailable\"")),
                    "{r:?}"
                );
            }
        }
    }
}
