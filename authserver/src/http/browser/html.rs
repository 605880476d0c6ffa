//! HTML responses: a rendered template with the headers every page carries, and the
//! stylesheet. The templates themselves are [`crate::ui`]'s.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ui::{CSP, STYLESHEET, Templates};

/// Renders `name` with `ctx` as a page; a render failure is a 500 with a plain message
/// (the template is ours or the operator's, never the user's fault).
pub fn page(ui: &Templates, status: StatusCode, name: &str, ctx: &impl Serialize) -> Response {
    match ui.render(name, ctx) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><html lang=\"en\"><title>Error</title>\
                 <p role=\"alert\">Something went wrong. Please try again later.</p></html>"
                    .to_owned(),
            )
        }
    }
}

/// An HTML response with the page headers.
fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    page_headers(resp.headers_mut());
    resp
}

/// The headers every HTML page carries beyond the ones `http::observe` adds to all
/// responses (`X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, `nosniff`).
fn page_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `GET {issuer}/assets/gatehouse.css`: long-cached (its content changes only with the
/// binary; an operator who restyles overrides `base.html` to point elsewhere).
pub fn stylesheet() -> Response {
    let mut resp = STYLESHEET.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_csp_and_no_store() {
        let r = html(StatusCode::OK, String::new());
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert!(!csp.contains("form-action"));
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
