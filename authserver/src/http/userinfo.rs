//! `GET|POST {issuer}/userinfo` (OpenID Connect Core §5.3), listed in the discovery
//! document as `userinfo_endpoint`.

use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::error::no_store;
use super::tenant_routing::CurrentTenant;
use super::{ApiError, AppState};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::oauth::userinfo::{ResourceError, ResourceRequest};

pub const USERINFO_PATH: &str = "/userinfo";

const MAX_BODY: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route(USERINFO_PATH, get(userinfo).post(userinfo))
}

/// RFC 6750 §3 / RFC 9449 §7.1 challenge.
fn challenge(e: &ResourceError, dpop_algs: &str) -> String {
    let mut params = Vec::new();
    if let Some(err) = e.error {
        params.push(("error", err));
    }
    if let Some(d) = &e.description {
        params.push(("error_description", d.as_str()));
    }
    if e.scheme == "DPoP" {
        params.push(("algs", dpop_algs));
    }
    super::error::auth_challenge(e.scheme, &params)
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
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED);
            let body = match e.error {
                Some(code) => serde_json::json!({
                    "error": code,
                    "error_description": e.description,
                }),
                None => serde_json::json!({}),
            };
            let mut resp = (status, Json(body)).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                super::error::retry_after_outage(resp.headers_mut());
            }
            let algs: Vec<&str> = state
                .oauth
                .dpop
                .settings()
                .algorithms
                .iter()
                .map(|a| a.as_str())
                .collect();
            if let Ok(v) = HeaderValue::from_str(&challenge(&e, &algs.join(" "))) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            if let Some(n) = e.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
                resp.headers_mut().insert("dpop-nonce", n);
            }
            resp
        }
    };
    no_store(resp.headers_mut());
    Ok(resp)
}
