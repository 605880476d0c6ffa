//! `GET {issuer}/upstream/{provider}/token`: the upstream access token kept for the
//! user an access token of ours was issued to (providers with `storeTokens`), for the
//! clients the provider lists in `tokenReaders` — so an application can call the
//! upstream's APIs (GitHub's, Microsoft Graph) as the user. The rules are the
//! federation service's ([`crate::federation::FederationService::upstream_token`]); a
//! refused token is answered as at userinfo (RFC 6750 §3 / RFC 9449 §7.1), a client
//! that is not a reader with 403 `insufficient_scope`, nothing kept with 404.

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use super::error::no_store;
use super::tenant_routing::CurrentTenant;
use super::userinfo::refused;
use crate::federation::TokenReadError;
use crate::oauth::ErrorCode;
use crate::oauth::resource::{ResourceError, ResourceRequest};

pub const UPSTREAM_TOKEN_PATH: &str = "/upstream/{provider}/token";

pub fn router() -> Router<AppState> {
    Router::new().route(UPSTREAM_TOKEN_PATH, get(upstream_token))
}

async fn upstream_token(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    Path(provider): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request = ResourceRequest {
        method: "GET",
        url: format!("{}/upstream/{provider}/token", tenant.issuer),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        dpop: headers
            .get_all("dpop")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect(),
        form_token: None,
    };
    let oauth = &state.oauth;
    let answer = async {
        let verified = oauth.verify_resource_token(&tenant, &request).await?;
        let holder = oauth
            .token_holder(&tenant, verified.scheme, &verified.claims)
            .await?;
        let read = state
            .federation
            .upstream_token(
                &tenant,
                &provider,
                &holder.user.user_id,
                &holder.client.spec.client_id,
            )
            .await;
        Ok::<_, ResourceError>(match read {
            Ok(tokens) => Json(tokens).into_response(),
            Err(TokenReadError::NotAReader) => refused(
                &state,
                &ResourceError::new(
                    verified.scheme,
                    ErrorCode::InsufficientScope,
                    "this client may not read the user's upstream tokens",
                ),
            ),
            Err(e @ (TokenReadError::UnknownProvider | TokenReadError::NoneKept)) => (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "not_found", "error_description": e.to_string() })),
            )
                .into_response(),
            Err(TokenReadError::Store(e)) => refused(&state, &ResourceError::from(e)),
            Err(TokenReadError::Sealed(e)) => {
                tracing::error!(tenant = %tenant.id, provider, error = %e, "kept upstream tokens do not open");
                refused(
                    &state,
                    &ResourceError::from(crate::oauth::OAuthError::internal(
                        "kept upstream tokens do not open",
                    )),
                )
            }
        })
    };
    let mut resp = match answer.await {
        Ok(r) => r,
        Err(e) => refused(&state, &e),
    };
    no_store(resp.headers_mut());
    resp
}
