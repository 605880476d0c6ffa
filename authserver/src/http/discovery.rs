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
    State(_state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
) -> Response {
    let issuer = &tenant.issuer;
    let doc = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
    });
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
