//! One error type for HTTP handlers: decides status and body. Internal details are logged
//! here and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error an HTTP handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such tenant or endpoint.
    #[error("not_found")]
    NotFound,
    /// Something failed on our side; the message is logged, not returned.
    #[error("server_error: {0}")]
    Internal(String),
    /// An OAuth protocol error (RFC 6749 §5.2 JSON).
    #[error("{0}")]
    OAuth(#[from] crate::oauth::OAuthError),
    /// The request body is larger than any endpoint accepts (or could not be read).
    #[error("payload_too_large")]
    PayloadTooLarge,
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::OAuth(e) = self {
            return oauth_response(&e);
        }
        let (status, code) = match &self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
            ApiError::OAuth(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
        };
        let mut resp = (status, axum::Json(json!({ "error": code }))).into_response();
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
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

fn oauth_response(e: &crate::oauth::OAuthError) -> Response {
    use crate::oauth::ErrorCode;
    let status = match e.code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::SlowDown => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut body = json!({ "error": e.code.as_str() });
    if let Some(d) = &e.description {
        body["error_description"] = d.clone().into();
    }
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    no_store(h);
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
    use super::auth_challenge;

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
