//! `GET {issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
//! Advertises only endpoints and features that are implemented: clients act on it.

use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use super::tenant_routing::CurrentTenant;

pub fn router() -> Router<AppState> {
    Router::new().route("/.well-known/openid-configuration", get(discovery))
}

/// Path of the JWKS under the issuer (see `jwks`).
pub const JWKS_PATH: &str = "/jwks";

async fn discovery(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
) -> Response {
    let issuer = &tenant.issuer;
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ];
    let algs: Vec<&str> = crate::domain::signing_key::Algorithm::ALL
        .iter()
        .map(|a| a.as_str())
        .collect();
    let dpop_algs: Vec<&str> = state
        .oauth
        .dpop
        .settings()
        .algorithms
        .iter()
        .map(|a| a.as_str())
        .collect();
    let doc = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "token_endpoint": format!("{issuer}{}", super::token::TOKEN_PATH),
        "introspection_endpoint": format!("{issuer}{}", super::token::INTROSPECTION_PATH),
        "revocation_endpoint": format!("{issuer}{}", super::token::REVOCATION_PATH),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        // Public clients (`none`) may revoke their tokens (RFC 7009 §2.1) but not
        // introspect: RFC 7662 §2.1 wants real credentials there.
        "introspection_endpoint_auth_methods_supported": &auth_methods[..3],
        "introspection_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
        "dpop_signing_alg_values_supported": dpop_algs,
    });
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
