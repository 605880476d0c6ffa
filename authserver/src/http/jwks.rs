//! `GET {issuer}/jwks`: the tenant's public signing keys (RFC 7517), pending, active and
//! retiring. Never a private member: the set is built from the stored public JWKs only.

use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::tenant_routing::CurrentTenant;
use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route(super::discovery::JWKS_PATH, get(jwks))
}

async fn jwks(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
) -> Result<Response, ApiError> {
    let set = state.keys.jwks(&tenant.id).await?;
    let mut resp = Json(set).into_response();
    // Short enough that relying parties pick up a new key well within the overlap window.
    let cache = format!("public, max-age={}", state.keys.policy().jwks_max_age());
    if let Ok(v) = HeaderValue::from_str(&cache) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    Ok(resp)
}
