//! `GET {issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
//! Advertises only endpoints and features that are implemented: clients act on it.

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use super::document::IfNoneMatch;
use super::tenant_routing::CurrentTenant;

pub fn router() -> Router<AppState> {
    Router::new().route("/.well-known/openid-configuration", get(discovery))
}

/// Path of the JWKS under the issuer (see `jwks`).
pub const JWKS_PATH: &str = "/jwks";

/// Serialised once per tenant version (the tenant directory reloads a tenant after
/// every change); `If-None-Match` with its `ETag` is answered `304`.
async fn discovery(
    State(state): State<AppState>,
    Extension(CurrentTenant(tenant)): Extension<CurrentTenant>,
    if_none_match: IfNoneMatch,
) -> Response {
    let doc = state.documents.discovery.get_or_build(
        &tenant.id,
        &tenant,
        |a, b| std::sync::Arc::ptr_eq(a, b) || a == b,
        || document(&state, &tenant),
    );
    doc.respond(
        &if_none_match,
        "application/json",
        HeaderValue::from_static("public, max-age=300"),
    )
}

/// The discovery document of `tenant`: everything in it comes from the tenant and the
/// process's settings.
// One document, listed in one place.
#[allow(clippy::too_many_lines)]
fn document(state: &AppState, tenant: &crate::domain::tenant::Tenant) -> Value {
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
    let dpop_algs = state.oauth.dpop.algorithm_names();
    let policy = crate::domain::policy::TenantPolicy::of(tenant);
    let subject_types: Vec<&str> = policy
        .subject_types
        .iter()
        .map(|t| match t {
            crate::domain::client::SubjectType::Public => "public",
            crate::domain::client::SubjectType::Pairwise => "pairwise",
        })
        .collect();
    let id_token_algs: Vec<&str> = state
        .keys
        .policy()
        .algorithms
        .iter()
        .map(|a| a.as_str())
        .collect();
    let mut claims = vec![
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "sid",
        "at_hash",
        "email",
        "email_verified",
        "updated_at",
    ];
    claims.extend_from_slice(crate::domain::user::PROFILE_CLAIMS);
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "token_endpoint": format!("{issuer}{}", super::token::TOKEN_PATH),
        "introspection_endpoint": format!("{issuer}{}", super::token::INTROSPECTION_PATH),
        "revocation_endpoint": format!("{issuer}{}", super::token::REVOCATION_PATH),
        // Served by the authorize, PAR and logout modules; listed here so the document
        // stays the one place that says what this issuer offers.
        "authorization_endpoint": format!("{issuer}/authorize"),
        "pushed_authorization_request_endpoint": format!("{issuer}/par"),
        "require_pushed_authorization_requests": policy.require_par,
        "userinfo_endpoint": format!("{issuer}{}", super::userinfo::USERINFO_PATH),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": subject_types,
        "id_token_signing_alg_values_supported": id_token_algs,
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": claims,
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        // `acr_values=2` asks for a second factor (a step-up when the session has none);
        // a request listing only other values fails with unmet_authentication_requirements.
        "acr_values_supported": crate::interaction::decide::ACR_VALUES_SUPPORTED,
        "claims_parameter_supported": false,
        // The languages of the pages (OIDC Discovery §3): `ui_locales` picks among them.
        "ui_locales_supported": state.ui.catalogues().languages(),
        "request_parameter_supported": false,
        // OIDC Discovery's default is true: say false explicitly.
        "request_uri_parameter_supported": false,
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        // Public clients (`none`) may revoke their tokens (RFC 7009 §2.1) but not
        // introspect: RFC 7662 §2.1 wants real credentials there.
        "introspection_endpoint_auth_methods_supported": &auth_methods[..3],
        "introspection_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
        "dpop_signing_alg_values_supported": dpop_algs,
    })
}
