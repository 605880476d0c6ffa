//! One error type for HTTP handlers: decides status and body. Internal details are logged
//! here and never sent to the client.
//!
//! Every error answer, server errors included, has one body shape, RFC 6749 §5.2 JSON
//! (`{"error": code, "error_description": text}`, the description optional below 500),
//! with `Cache-Control: no-store`: OAuth endpoints and everything else alike, so a client
//! needs one parser. A 503 (the database is unavailable) is `temporarily_unavailable` and
//! carries `Retry-After`. Browser pages answer the same conditions with an HTML page
//! (`browser::page::PageError`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::oauth::{ErrorCode, OAuthError};

/// An error an HTTP handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such tenant or endpoint.
    #[error("not_found")]
    NotFound,
    /// Something failed on our side; the message is logged, not returned.
    #[error("server_error: {0}")]
    Internal(String),
    /// The database is unavailable: 503 `temporarily_unavailable` with `Retry-After`.
    #[error("temporarily_unavailable")]
    Unavailable,
    /// An OAuth protocol error (RFC 6749 §5.2 JSON).
    #[error("{0}")]
    OAuth(#[from] OAuthError),
    /// The request body is larger than any endpoint accepts (or could not be read).
    #[error("payload_too_large")]
    PayloadTooLarge,
}

/// Whether a failure is an outage: the database is unavailable anywhere in its source
/// chain, or it is an OAuth error that already says so.
pub(crate) fn is_outage(e: &(dyn std::error::Error + 'static)) -> bool {
    crate::store::is_unavailable(e)
        || e.downcast_ref::<OAuthError>()
            .is_some_and(|o| o.code == ErrorCode::TemporarilyUnavailable)
}

impl ApiError {
    /// A failure on our side: `Unavailable` when the database is (anywhere in the
    /// error's source chain), `Internal` otherwise.
    pub fn internal<E: std::error::Error + 'static>(e: E) -> Self {
        if is_outage(&e) {
            tracing::debug!(error = %e, "request refused: database unavailable");
            ApiError::Unavailable
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::OAuth(e) => oauth_response(&e),
            ApiError::Unavailable => oauth_response(&OAuthError::temporarily_unavailable()),
            ApiError::Internal(detail) => oauth_response(&OAuthError::internal(&detail)),
            ApiError::NotFound => error_response(StatusCode::NOT_FOUND, "not_found", None),
            ApiError::PayloadTooLarge => error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                Some("the request body is too large"),
            ),
        }
    }
}

/// The one error body: `{"error", "error_description"}` JSON, not cacheable, and for a
/// 503 a `Retry-After`.
fn error_response(status: StatusCode, code: &str, description: Option<&str>) -> Response {
    let mut body = json!({ "error": code });
    if let Some(d) = description {
        body["error_description"] = d.into();
    }
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    no_store(h);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        retry_after_outage(h);
    }
    resp
}

/// `Retry-After` for an answer refused because the database is unavailable.
pub fn retry_after_outage(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::store::health::RETRY_AFTER.as_secs()),
    );
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, required on token responses
/// (RFC 6749 §5.1) and harmless on the other protocol endpoints.
pub fn no_store(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Rate limit headers (draft-ietf-httpapi-ratelimit-headers style, as widely deployed).
pub fn rate_headers(headers: &mut axum::http::HeaderMap, rate: crate::oauth::RateHeaders) {
    for (name, value) in [
        ("x-ratelimit-limit", rate.limit),
        ("x-ratelimit-remaining", rate.remaining),
        ("x-ratelimit-reset", rate.reset_seconds),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// An RFC 7235 challenge: `scheme` and its auth-params as quoted strings. Values keep only
/// the characters RFC 6750 §3 allows in `error_description` (printable ASCII without `"`
/// and `\`), so no input can break out of the quotes or inject a header line.
pub fn auth_challenge(scheme: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return scheme.to_owned();
    }
    let quoted: Vec<String> = params
        .iter()
        .map(|(name, value)| {
            let value: String = value
                .chars()
                .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
                .collect();
            format!("{name}=\"{value}\"")
        })
        .collect();
    format!("{scheme} {}", quoted.join(", "))
}

fn oauth_response(e: &OAuthError) -> Response {
    let status = match e.code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::SlowDown => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut resp = error_response(status, e.code.as_str(), e.description.as_deref());
    let h = resp.headers_mut();
    if e.code == ErrorCode::InvalidClient {
        // RFC 6749 §5.2: a Basic challenge (a 401 must carry one). The error code and
        // description ride along in the RFC 6750 §3 style, so client libraries that only
        // read the header can still show why.
        let mut params = vec![("realm", "gatehouse")];
        if e.basic_challenge {
            params.push(("charset", "UTF-8"));
        }
        params.push(("error", e.code.as_str()));
        if let Some(d) = &e.description {
            params.push(("error_description", d.as_str()));
        }
        if let Ok(v) = HeaderValue::from_str(&auth_challenge("Basic", &params)) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Some(n) = &e.dpop_nonce
        && let Ok(v) = HeaderValue::from_str(n)
    {
        h.insert("dpop-nonce", v);
    }
    if let Some(rate) = e.rate {
        rate_headers(h, rate);
        if e.code == ErrorCode::SlowDown {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(rate.reset_seconds.max(1)),
            );
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(e: ApiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let resp = e.into_response();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 4096).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn every_server_error_has_one_shape_and_an_outage_says_when_to_retry() {
        let unavailable = crate::store::Error::Unavailable(crate::store::Unavailable::TimedOut(
            std::time::Duration::from_secs(1),
        ));
        let cases = [
            (
                ApiError::internal(unavailable),
                503,
                "temporarily_unavailable",
            ),
            (
                ApiError::Internal("boom: relation x".into()),
                500,
                "server_error",
            ),
            (
                ApiError::OAuth(OAuthError::internal(&"boom")),
                500,
                "server_error",
            ),
            (
                ApiError::OAuth(OAuthError::temporarily_unavailable()),
                503,
                "temporarily_unavailable",
            ),
        ];
        for (e, status, code) in cases {
            let (s, h, body) = parts(e).await;
            assert_eq!(s.as_u16(), status);
            assert_eq!(body["error"], code, "{body}");
            let description = body["error_description"].as_str().unwrap();
            assert!(!description.contains("relation"), "{body}");
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
            assert_eq!(
                h.get(header::RETRY_AFTER).is_some(),
                status == 503,
                "{status}: {h:?}"
            );
        }
    }

    #[test]
    fn an_outage_is_recognised_through_transparent_wrappers() {
        let store = crate::store::Error::Unavailable(crate::store::Unavailable::TimedOut(
            std::time::Duration::from_secs(1),
        ));
        let wrapped = crate::clients::Error::Store(store);
        assert!(crate::store::is_unavailable(&wrapped));
        let other = crate::clients::Error::Store(crate::store::Error::NotFound);
        assert!(!crate::store::is_unavailable(&other));
    }

    #[test]
    fn challenges_quote_their_params_and_nothing_breaks_out() {
        assert_eq!(auth_challenge("Bearer", &[]), "Bearer");
        assert_eq!(
            auth_challenge(
                "Basic",
                &[("realm", "gatehouse"), ("error", "invalid_client")]
            ),
            "Basic realm=\"gatehouse\", error=\"invalid_client\""
        );
        let hostile = "client \"x\\\", error=\"y\"\r\nSet-Cookie: a=b é";
        assert_eq!(
            auth_challenge("Basic", &[("error_description", hostile)]),
            "Basic error_description=\"client x, error=ySet-Cookie: a=b \""
        );
    }
}
