//! One error type for HTTP handlers: decides status, body and `WWW-Authenticate`.
//! Internal details never reach the client; they are logged once, here at the edge.
//!
//! Every error answer, server errors included, has one body shape, RFC 6749 §5.2 JSON
//! (`{"error": code, "error_description": text}`, the description optional below 500),
//! with `Cache-Control: no-store`: OAuth endpoints and everything else alike, so a client
//! needs one parser. A 503 (the database is unavailable) is `temporarily_unavailable` and
//! carries `Retry-After`. Browser pages answer the same conditions with an HTML page
//! (`browser::page::PageError`).
//!
//! A failure on our side travels as the error's source up to here; the response that
//! answers it carries a [`ServerFailure`] extension, and the logging middleware
//! (`observe`) writes the one log line for it inside the request's span, so with its
//! trace id. Services and constructors never log failures they return: an error built
//! and then converted would be logged twice, one built and dropped for nothing.

use std::sync::Arc;

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
    /// An OAuth protocol error (RFC 6749 §5.2 JSON), or a failure on our side: 500
    /// `server_error`, or 503 `temporarily_unavailable` with `Retry-After` when the
    /// database is unavailable.
    #[error("{0}")]
    OAuth(#[from] OAuthError),
    /// The request body is larger than any endpoint accepts (or could not be read).
    #[error("payload_too_large")]
    PayloadTooLarge,
}

impl ApiError {
    /// A failure on our side: 503 when the database is unavailable (anywhere in the
    /// error's source chain), 500 otherwise. See [`OAuthError::server`].
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::OAuth(OAuthError::server(e))
    }
}

/// Service errors that reach an HTTP handler only as failures on our side.
macro_rules! server_errors {
    ($($e:ty),* $(,)?) => {$(
        impl From<$e> for ApiError {
            fn from(e: $e) -> Self {
                ApiError::OAuth(e.into())
            }
        }
    )*};
}
server_errors!(crate::store::Error, crate::keys::Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::OAuth(e) => oauth_response(&e),
            ApiError::NotFound => error_response(StatusCode::NOT_FOUND, "not_found", None),
            ApiError::PayloadTooLarge => error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                Some("the request body is too large"),
            ),
        }
    }
}

/// A failure on our side that a response answers: what failed (the error and its
/// sources, never sent), for the logging middleware to write once.
#[derive(Debug, Clone)]
pub(crate) struct ServerFailure {
    detail: Arc<str>,
    /// The database is unavailable: expected during an outage (which the store logs once
    /// when it starts), so not an error of its own.
    outage: bool,
}

impl ServerFailure {
    /// Marks `resp` as the answer to the server failure `e` (an outage when the database
    /// is unavailable anywhere in its chain): the browser pages' counterpart of
    /// [`Self::attach`].
    pub(crate) fn attach_error(resp: &mut Response, e: &(dyn std::error::Error + 'static)) {
        resp.extensions_mut().insert(ServerFailure {
            detail: Arc::from(error_chain(e)),
            outage: crate::store::is_unavailable(e),
        });
    }

    /// What failed, as logged.
    #[cfg(test)]
    pub(crate) fn detail(&self) -> &str {
        &self.detail
    }

    /// Whether it is an outage (logged at debug: the store logs the outage once).
    #[cfg(test)]
    pub(crate) fn is_outage(&self) -> bool {
        self.outage
    }

    /// Marks `resp` as the answer to `e` when `e` is a failure on our side.
    pub(crate) fn attach(resp: &mut Response, e: &OAuthError) {
        if !e.is_server_failure() {
            return;
        }
        let detail = match e.failure() {
            Some(failure) => error_chain(failure),
            None => e.to_string(),
        };
        resp.extensions_mut().insert(ServerFailure {
            detail: Arc::from(detail),
            outage: e.code == ErrorCode::TemporarilyUnavailable,
        });
    }

    /// Writes the one log line of the failure `resp` answers, if any; call it inside the
    /// request's span.
    pub(crate) fn log(resp: &Response) {
        match resp.extensions().get::<ServerFailure>() {
            Some(f) if f.outage => {
                tracing::debug!(error = %f.detail, "request refused: database unavailable");
            }
            Some(f) => tracing::error!(error = %f.detail, "request failed"),
            None => {}
        }
    }
}

/// `e: its source: its source…`, for the one log line of a failure.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        // `#[error("…: {0}")]` wrappers already show their source.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
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
    use axum::http::HeaderName;
    const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    // Room for these and the security headers to come at once: a response's header map
    // holds six before it grows, and growing it (reallocating, rehashing what it holds)
    // was a third of what the limits cost a token request.
    headers.reserve(6);
    for (name, value) in [
        (LIMIT, rate.limit),
        (REMAINING, rate.remaining),
        (RESET, rate.reset_seconds),
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

/// The status of an OAuth error at the token, introspection, revocation and PAR
/// endpoints (RFC 6749 §5.2: 400 unless said otherwise).
fn oauth_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::SlowDown => StatusCode::TOO_MANY_REQUESTS,
        _ => server_status(code).unwrap_or(StatusCode::BAD_REQUEST),
    }
}

/// The status of a failure on our side, at any endpoint: 500, or 503 when the database
/// is unavailable.
pub(crate) fn server_status(code: ErrorCode) -> Option<StatusCode> {
    match code {
        ErrorCode::ServerError => Some(StatusCode::INTERNAL_SERVER_ERROR),
        ErrorCode::TemporarilyUnavailable => Some(StatusCode::SERVICE_UNAVAILABLE),
        _ => None,
    }
}

fn oauth_response(e: &OAuthError) -> Response {
    let status = oauth_status(e.code);
    let mut resp = error_response(status, e.code.as_str(), e.description.as_deref());
    ServerFailure::attach(&mut resp, e);
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

    fn outage() -> crate::store::Error {
        crate::store::Error::Unavailable(crate::store::Unavailable::TimedOut(
            std::time::Duration::from_secs(1),
        ))
    }

    #[tokio::test]
    async fn every_server_error_has_one_shape_and_an_outage_says_when_to_retry() {
        let cases = [
            (ApiError::from(outage()), 503, "temporarily_unavailable"),
            (
                ApiError::from(crate::store::Error::Corrupt("boom: relation x".into())),
                500,
                "server_error",
            ),
            (ApiError::internal(outage()), 503, "temporarily_unavailable"),
            (
                ApiError::OAuth(OAuthError::internal("boom: relation x")),
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
    fn a_server_failure_response_carries_its_detail_for_the_log_and_a_verdict_none() {
        let resp = ApiError::internal(crate::clients::Error::Store(crate::store::Error::Corrupt(
            "relation x".into(),
        )))
        .into_response();
        let failure = resp.extensions().get::<ServerFailure>().unwrap();
        assert_eq!(&*failure.detail, "stored data is invalid: relation x");
        assert!(!failure.outage);
        let resp = ApiError::from(outage()).into_response();
        assert!(resp.extensions().get::<ServerFailure>().unwrap().outage);
        for verdict in [
            ApiError::OAuth(OAuthError::invalid_client("no")),
            ApiError::NotFound,
            ApiError::PayloadTooLarge,
        ] {
            let resp = verdict.into_response();
            assert!(resp.extensions().get::<ServerFailure>().is_none());
        }
    }

    #[test]
    fn error_chains_name_each_source_once() {
        let keys = crate::keys::Error::Store(crate::store::Error::Corrupt("bad row".into()));
        assert_eq!(error_chain(&keys), "stored data is invalid: bad row");
        let subject = crate::subject::Error::Store(crate::store::Error::Corrupt("x".into()));
        assert_eq!(
            error_chain(&subject),
            "failed to read or store the pairwise salt: stored data is invalid: x"
        );
    }

    #[test]
    fn an_outage_is_recognised_through_transparent_wrappers() {
        let wrapped = crate::clients::Error::Store(outage());
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
