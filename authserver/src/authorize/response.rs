//! Authorization responses to the client's redirect URI: the code or an error, always
//! with `iss` (RFC 9207) and the client's `state`, in the requested response mode.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::request::{ErrorRedirect, ResponseMode};

/// The one script of the form_post page; allowed by its hash so the page's CSP needs no
/// `unsafe-inline`.
const AUTO_SUBMIT: &str = "document.forms[0].submit();";

static AUTO_SUBMIT_HASH: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, AUTO_SUBMIT.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
});

/// Sends `params` (plus `iss`) to the client.
pub fn to_client(
    issuer: &str,
    redirect_uri: &str,
    mode: ResponseMode,
    mut params: Vec<(&'static str, String)>,
) -> Response {
    params.push(("iss", issuer.to_owned()));
    match mode {
        ResponseMode::Query => redirect(redirect_uri, &params),
        ResponseMode::FormPost => form_post(redirect_uri, &params),
    }
}

/// A successful authorization: the code.
pub fn code(
    issuer: &str,
    redirect_uri: &str,
    mode: ResponseMode,
    code: String,
    state: Option<&str>,
) -> Response {
    let mut params = vec![("code", code)];
    if let Some(s) = state {
        params.push(("state", s.to_owned()));
    }
    to_client(issuer, redirect_uri, mode, params)
}

/// An error for a request whose client and redirect URI were verified.
pub fn error(issuer: &str, e: &ErrorRedirect) -> Response {
    let mut params = vec![
        ("error", e.error.as_str().to_owned()),
        ("error_description", e.description.clone()),
    ];
    if let Some(s) = &e.state {
        params.push(("state", s.clone()));
    }
    to_client(issuer, &e.redirect_uri, e.response_mode, params)
}

/// `303 See Other` to the redirect URI with `params` added to its query (keeping any
/// query the registered URI already has, RFC 6749 §3.1.2).
fn redirect(redirect_uri: &str, params: &[(&'static str, String)]) -> Response {
    let location = match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
            url.to_string()
        }
        // Registered URIs are validated absolute URLs; a failure here is a bug.
        Err(_) => return bad_redirect(redirect_uri),
    };
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    } else {
        return bad_redirect(redirect_uri);
    }
    no_cache(&mut resp);
    resp
}

/// The answer when a registered redirect URI cannot be used after all (a bug: they are
/// validated at registration): the one server error shape.
fn bad_redirect(redirect_uri: &str) -> Response {
    crate::http::ApiError::OAuth(crate::oauth::OAuthError::internal(format!(
        "unusable registered redirect URI {redirect_uri:?}"
    )))
    .into_response()
}

/// OAuth 2.0 Form Post Response Mode: an HTML form that submits itself; without
/// JavaScript the user presses the button.
fn form_post(redirect_uri: &str, params: &[(&'static str, String)]) -> Response {
    let mut inputs = String::new();
    for (k, v) in params {
        let _ = write!(
            inputs,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        );
    }
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Continue</title></head><body>\
         <form method=\"post\" action=\"{action}\">{inputs}\
         <noscript><p>JavaScript is off: press the button to continue.</p>\
         <button type=\"submit\">Continue</button></noscript></form>\
         <script>{AUTO_SUBMIT}</script></body></html>",
        action = escape(redirect_uri),
    );
    let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; frame-ancestors 'none'; base-uri 'none'",
        *AUTO_SUBMIT_HASH
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    no_cache(&mut resp);
    resp
}

fn no_cache(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// HTML text/attribute escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::ErrorCode;

    async fn body(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn query_mode_keeps_the_registered_query_and_adds_iss_and_state() {
        let resp = code(
            "https://id.example.com/t/a",
            "https://app.example.com/cb?tenant=7",
            ResponseMode::Query,
            "abc".into(),
            Some("s&1"),
        );
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let loc = resp.headers()[header::LOCATION].to_str().unwrap();
        let url = url::Url::parse(loc).unwrap();
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            q,
            vec![
                ("tenant".into(), "7".into()),
                ("code".into(), "abc".into()),
                ("state".into(), "s&1".into()),
                ("iss".into(), "https://id.example.com/t/a".into()),
            ]
        );
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn form_post_escapes_values_and_allows_only_its_own_script() {
        let e = ErrorRedirect {
            redirect_uri: "https://app.example.com/cb".into(),
            response_mode: ResponseMode::FormPost,
            state: Some("\"><script>alert(1)</script>".into()),
            error: ErrorCode::AccessDenied,
            description: "the user denied the request".into(),
        };
        let resp = error("https://id.example.com", &e);
        assert_eq!(resp.status(), StatusCode::OK);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"));
        let html = body(resp).await;
        assert!(html.contains("name=\"error\" value=\"access_denied\""));
        assert!(html.contains("name=\"iss\" value=\"https://id.example.com\""));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(!html.contains("\"><script>alert"));
        assert!(html.contains("<button type=\"submit\">"));
        // The hash in the CSP is the hash of the script on the page.
        assert!(html.contains(&format!("<script>{AUTO_SUBMIT}</script>")));
    }
}
