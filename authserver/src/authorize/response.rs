//! Authorization responses to the client's redirect URI: the code or an error, always
//! with `iss` (RFC 9207) and the client's `state`, in the requested response mode. What
//! is sent, as a typed value; how it travels (a `303`, or a page that posts itself) is
//! the HTTP edge's business (`http::browser::client_response`).

use super::request::{ErrorRedirect, ResponseMode};

/// What goes back to the client's redirect URI, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    /// The response parameters in order, `iss` last.
    pub params: Vec<(&'static str, String)>,
}

impl ClientResponse {
    /// `params` plus `iss` for `redirect_uri`.
    pub fn new(
        issuer: &str,
        redirect_uri: &str,
        mode: ResponseMode,
        mut params: Vec<(&'static str, String)>,
    ) -> Self {
        params.push(("iss", issuer.to_owned()));
        Self {
            redirect_uri: redirect_uri.to_owned(),
            mode,
            params,
        }
    }

    /// A successful authorization: the code (RFC 6749 §4.1.2).
    pub fn code(
        issuer: &str,
        redirect_uri: &str,
        mode: ResponseMode,
        code: String,
        state: Option<&str>,
    ) -> Self {
        let mut params = vec![("code", code)];
        if let Some(s) = state {
            params.push(("state", s.to_owned()));
        }
        Self::new(issuer, redirect_uri, mode, params)
    }

    /// An error for a request whose client and redirect URI were verified (RFC 6749
    /// §4.1.2.1).
    pub fn error(issuer: &str, e: &ErrorRedirect) -> Self {
        let mut params = vec![
            ("error", e.error.as_str().to_owned()),
            ("error_description", e.description.clone()),
        ];
        if let Some(s) = &e.state {
            params.push(("state", s.clone()));
        }
        Self::new(issuer, &e.redirect_uri, e.response_mode, params)
    }

    /// The redirect URI with the parameters added to its query, keeping any query the
    /// registered URI already has (RFC 6749 §3.1.2): where the query response mode
    /// sends the browser. `None` when the URI does not parse (registered URIs are
    /// validated absolute URLs, so that is a bug).
    pub fn location(&self) -> Option<String> {
        let mut url = url::Url::parse(&self.redirect_uri).ok()?;
        url.query_pairs_mut()
            .extend_pairs(self.params.iter().map(|(k, v)| (*k, v.as_str())));
        Some(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::ErrorCode;

    #[test]
    fn query_mode_keeps_the_registered_query_and_adds_iss_and_state() {
        let resp = ClientResponse::code(
            "https://id.example.com/t/a",
            "https://app.example.com/cb?tenant=7",
            ResponseMode::Query,
            "abc".into(),
            Some("s&1"),
        );
        let loc = resp.location().expect("location");
        let url = url::Url::parse(&loc).unwrap();
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
    }

    #[test]
    fn errors_carry_code_description_state_and_iss() {
        let e = ErrorRedirect {
            redirect_uri: "https://app.example.com/cb".into(),
            response_mode: ResponseMode::FormPost,
            state: Some("st".into()),
            error: ErrorCode::AccessDenied,
            description: "the user denied the request".into(),
        };
        let resp = ClientResponse::error("https://id.example.com", &e);
        assert_eq!(resp.mode, ResponseMode::FormPost);
        assert_eq!(
            resp.params,
            vec![
                ("error", "access_denied".to_owned()),
                (
                    "error_description",
                    "the user denied the request".to_owned()
                ),
                ("state", "st".to_owned()),
                ("iss", "https://id.example.com".to_owned()),
            ]
        );
    }
}
