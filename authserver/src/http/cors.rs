//! CORS for the endpoints browsers call directly (single-page apps): discovery and JWKS
//! are public documents and allow any origin (`*`, no credentials involved); token,
//! userinfo, introspection and revocation allow exactly the origins some client of the
//! tenant lists in `allowed_cors_origins`. Other origins get no CORS headers, so the
//! browser withholds the response.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::domain::tenant::Tenant;

/// Who may read an endpoint's responses from a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Public document: any origin.
    Public,
    /// A client's registered origins; the methods allowed.
    Clients(&'static str),
}

fn policy(path: &str) -> Option<Policy> {
    match path {
        "/.well-known/openid-configuration" | super::discovery::JWKS_PATH => Some(Policy::Public),
        super::userinfo::USERINFO_PATH => Some(Policy::Clients("GET, POST")),
        super::token::TOKEN_PATH
        | super::token::INTROSPECTION_PATH
        | super::token::REVOCATION_PATH => Some(Policy::Clients("POST")),
        _ => None,
    }
}

const ALLOW_HEADERS: &str = "Authorization, Content-Type, DPoP";
const EXPOSE_HEADERS: &str = "DPoP-Nonce, WWW-Authenticate";

fn add_headers(h: &mut HeaderMap, allow_origin: HeaderValue, varies: bool) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    if varies {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Runs `req` through `next` with the CORS headers of its endpoint, or answers its
/// preflight. Part of the one middleware over the tenant router
/// ([`super::observe::tenant_request`]).
pub async fn apply(state: &AppState, tenant: &Tenant, req: Request, next: Next) -> Response {
    let Some(policy) = policy(req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let allowed = match policy {
        Policy::Public => Some(HeaderValue::from_static("*")),
        Policy::Clients(_) => match origin.to_str() {
            Ok(o) => match state.oauth.clients.cors_origins(&tenant.id).await {
                Ok(set) if set.contains(o) => Some(origin.clone()),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to load CORS origins");
                    None
                }
            },
            Err(_) => None,
        },
    };
    let varies = matches!(policy, Policy::Clients(_));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        if varies {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(allow) = allowed {
            add_headers(h, allow, false);
            let methods = match policy {
                Policy::Public => "GET",
                Policy::Clients(m) => m,
            };
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    match allowed {
        Some(allow) => add_headers(resp.headers_mut(), allow, varies),
        None if varies => {
            resp.headers_mut()
                .append(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {}
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_browser_facing_endpoints_have_a_policy() {
        assert_eq!(policy("/jwks"), Some(Policy::Public));
        assert_eq!(
            policy("/.well-known/openid-configuration"),
            Some(Policy::Public)
        );
        assert_eq!(policy("/token"), Some(Policy::Clients("POST")));
        assert_eq!(policy("/userinfo"), Some(Policy::Clients("GET, POST")));
        assert_eq!(policy("/authorize"), None);
    }
}
