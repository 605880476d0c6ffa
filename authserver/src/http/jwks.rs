//! `GET {issuer}/jwks`: the tenant's public signing keys (RFC 7517), pending, active and
//! retiring. Never a private member: the set is built from the stored public JWKs only.

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::get;

use super::document::IfNoneMatch;
use super::tenant_routing::CurrentTenant;
use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route(super::discovery::JWKS_PATH, get(jwks))
}

/// Serialised once per key change (and per key that becomes or stops being published);
/// `If-None-Match` with its `ETag` is answered `304`.
async fn jwks(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let version = state.keys.jwks_version(&tenant.id).await?;
    let doc = state.documents.jwks.get_or_build(
        &tenant.id,
        &version,
        crate::keys::JwksVersion::same,
        || version.jwks(),
    );
    // Short enough that relying parties pick up a new key well within the overlap window.
    let cache = HeaderValue::from_str(&format!(
        "public, max-age={}",
        state.keys.policy().jwks_max_age()
    ))
    .unwrap_or(HeaderValue::from_static("no-cache"));
    Ok(doc.respond(&if_none_match, "application/jwk-set+json", cache))
}
