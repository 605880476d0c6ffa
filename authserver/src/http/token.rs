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
