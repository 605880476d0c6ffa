//! Routes a request to its tenant by issuer: scheme + host + longest matching path
//! prefix. Several tenants may share a host (`https://id.example.com/t/acme`,
//! `…/t/beta`). The scheme is known only from a trusted proxy's `X-Forwarded-Proto`;
//! a direct request matches on host and path.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use super::{ApiError, AppState};
use crate::config::IpNet;
use crate::domain::tenant::Tenant;

/// The tenant a request was routed to (request extension for tenant handlers).
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub Arc<Tenant>);

/// Tenant id and whether its issuer is https (response extension, for logs/headers).
#[derive(Debug, Clone)]
pub struct TenantLabel {
    pub id: String,
    pub https: bool,
}

/// Scheme and authority as the client saw them. Forwarded headers count only from a
/// trusted proxy: anyone else could claim any host.
fn client_view(
    headers: &HeaderMap,
    uri: &Uri,
    peer: Option<SocketAddr>,
    trusted: &[IpNet],
) -> (Option<bool>, Option<String>) {
    let from_proxy = peer.is_some_and(|p| trusted.iter().any(|n| n.contains(p.ip())));
    let header_str = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(',').next().unwrap_or(s).trim().to_owned())
    };
    let https = if from_proxy {
        header_str("x-forwarded-proto").map(|p| p.eq_ignore_ascii_case("https"))
    } else {
        None
    };
    let forwarded_host = if from_proxy {
        header_str("x-forwarded-host")
    } else {
        None
    };
    let authority = forwarded_host
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| uri.authority().map(ToString::to_string))
        .map(|a| normalize_authority(&a, https));
    (https, authority)
}

/// The client's IP: the peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left
/// are client-controlled).
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted: &[IpNet],
) -> Option<std::net::IpAddr> {
    let peer = peer?.ip();
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(*ip))
            .unwrap_or(peer),
    )
}

/// Lower-cases and drops a default port, matching `IssuerRoute`'s form.
fn normalize_authority(authority: &str, https: Option<bool>) -> String {
    let a = authority.to_ascii_lowercase();
    match (a.rsplit_once(':'), https) {
        (Some((host, "443")), Some(true) | None) | (Some((host, "80")), Some(false) | None) => {
            host.to_owned()
        }
        _ => a,
    }
}

/// Fallback of the process router: find the tenant, strip its issuer path, and hand the
/// request to the tenant router.
pub async fn dispatch(
    State(state): State<AppState>,
    tenant_app: Router,
    mut req: Request,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (https, authority) = client_view(req.headers(), req.uri(), peer, &state.trusted_proxies);
    let Some(authority) = authority else {
        return ApiError::NotFound.into_response();
    };
    let path = req.uri().path().to_owned();
    // RFC 9728 §3: a resource's metadata sits at the well-known prefix followed by the
    // resource's path (`{issuer path}/api/v1`): resolve the tenant from what follows.
    let metadata_of = path
        .strip_prefix(super::management::METADATA_PREFIX)
        .and_then(|p| p.strip_suffix(crate::management::API_PATH))
        .map(|issuer_path| {
            if issuer_path.is_empty() {
                "/".to_owned()
            } else {
                issuer_path.to_owned()
            }
        });
    let path = metadata_of.clone().unwrap_or(path);
    let resolved = match state.tenants.resolve(https, &authority, &path).await {
        Ok(r) => r,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let Some((tenant, rest)) = resolved else {
        return ApiError::NotFound.into_response();
    };
    if metadata_of.is_some() {
        // Only the tenant's own issuer path, nothing below it.
        if !(rest.is_empty() || rest == "/") {
            return ApiError::NotFound.into_response();
        }
        return super::management::metadata(&state, &tenant);
    }
    let rest = if rest.is_empty() {
        "/".to_owned()
    } else {
        rest
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    let Ok(uri) = Uri::builder().path_and_query(path_and_query).build() else {
        return ApiError::NotFound.into_response();
    };
    *req.uri_mut() = uri;
    let label = TenantLabel {
        id: tenant.id.clone(),
        https: tenant.issuer.starts_with("https://"),
    };
    req.extensions_mut().insert(CurrentTenant(tenant));
    let mut response = match tenant_app.oneshot(req.map(Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    response.extensions_mut().insert(label);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "internal:8080".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "ID.example.com".parse().unwrap());
        let uri: Uri = "/x".parse().unwrap();
        let proxy: SocketAddr = "10.0.0.5:1234".parse().unwrap();
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_view(&h, &uri, Some(proxy), &trusted),
            (Some(true), Some("id.example.com".to_owned()))
        );
        let stranger: SocketAddr = "192.0.2.1:1234".parse().unwrap();
        assert_eq!(
            client_view(&h, &uri, Some(stranger), &trusted),
            (None, Some("internal:8080".to_owned()))
        );
    }

    #[test]
    fn client_ip_follows_forwarded_for_only_through_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.0.0.6".parse().unwrap(),
        );
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let proxy: SocketAddr = "10.0.0.5:1".parse().unwrap();
        assert_eq!(
            client_ip(&h, Some(proxy), &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        let direct: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert_eq!(
            client_ip(&h, Some(direct), &trusted),
            Some("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn default_ports_are_dropped() {
        assert_eq!(
            normalize_authority("Example.com:443", Some(true)),
            "example.com"
        );
        assert_eq!(normalize_authority("example.com:80", None), "example.com");
        assert_eq!(
            normalize_authority("example.com:8443", None),
            "example.com:8443"
        );
    }
}
