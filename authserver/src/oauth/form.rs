//! `application/x-www-form-urlencoded` request bodies with the OAuth rule that no
//! parameter appears twice (RFC 6749 §3.1, §3.2).

use std::collections::HashMap;

use super::error::OAuthError;

/// Parsed form parameters; empty values count as absent (RFC 6749 §3.1).
#[derive(Debug, Clone, Default)]
pub struct Form(HashMap<String, String>);

impl Form {
    /// Parses a body. `content_type` must be the form type.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, OAuthError> {
        let is_form = content_type.is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
        if !is_form {
            return Err(OAuthError::invalid_request(
                "request body must be application/x-www-form-urlencoded",
            ));
        }
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k:?} is repeated"
                )));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required parameter.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name:?}")))
    }

    /// Space-separated list parameter (e.g. `scope`), de-duplicated, order kept.
    pub fn list(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self
            .get(name)
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        }
        out
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=UTF-8");

    #[test]
    fn repeated_parameters_are_rejected() {
        let err = Form::parse(FORM, b"scope=a&scope=b").unwrap_err();
        assert_eq!(err.code, super::super::error::ErrorCode::InvalidRequest);
    }

    #[test]
    fn only_form_bodies_are_accepted() {
        assert!(Form::parse(Some("application/json"), b"{}").is_err());
        assert!(Form::parse(None, b"a=b").is_err());
    }

    #[test]
    fn values_are_decoded_and_empty_ones_ignored() {
        let f = Form::parse(FORM, b"a=x%20y&b=&scope=read+write+read").unwrap();
        assert_eq!(f.get("a"), Some("x y"));
        assert_eq!(f.get("b"), None);
        assert_eq!(f.list("scope"), vec!["read", "write"]);
    }
}
