//! Sends an authorization response ([`ClientResponse`]) to the client's redirect URI:
//! `303 See Other` with the parameters in the query, or (`response_mode=form_post`) a
//! page that posts them. Never cached, never with a `Referer`.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::authorize::{ClientResponse, ResponseMode};

/// The one script of the form_post page; allowed by its hash so the page's CSP needs no
/// `unsafe-inline`.
const AUTO_SUBMIT: &str = "document.forms[0].submit();";

static AUTO_SUBMIT_HASH: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, AUTO_SUBMIT.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
});

/// The response that carries `r` to the client, in its response mode.
pub fn send(r: &ClientResponse) -> Response {
    match r.mode {
        ResponseMode::Query => redirect(r),
        ResponseMode::FormPost => form_post(r),
    }
}

/// `303 See Other` to the redirect URI with the parameters in its query.
fn redirect(r: &ClientResponse) -> Response {
    let Some(location) = r.location() else {
        return bad_redirect(&r.redirect_uri);
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return bad_redirect(&r.redirect_uri);
    };
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut().insert(header::LOCATION, location);
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
fn form_post(r: &ClientResponse) -> Response {
    let mut inputs = String::new();
    for (k, v) in &r.params {
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
        action = escape(&r.redirect_uri),
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
fn escape(s: &str) -> String {
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
    use crate::authorize::ErrorRedirect;
    use crate::oauth::ErrorCode;

    async fn body(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn query_mode_is_a_see_other_to_the_location_never_cached() {
        let r = ClientResponse::code(
            "https://id.example.com/t/a",
            "https://app.example.com/cb?tenant=7",
            ResponseMode::Query,
            "abc".into(),
            Some("s&1"),
        );
        let resp = send(&r);
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let loc = resp.headers()[header::LOCATION].to_str().unwrap();
        assert_eq!(Some(loc.to_owned()), r.location());
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(resp.headers()[header::REFERRER_POLICY], "no-referrer");
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
        let resp = send(&ClientResponse::error("https://id.example.com", &e));
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
