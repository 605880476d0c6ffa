//! Documents that change only when their inputs do — the discovery document and the
//! JWK Set — serialised once per tenant and version and served as stored bytes with a
//! strong `ETag`; a conditional request naming it (`If-None-Match`) is answered `304`
//! without a body (RFC 9110 §13.1.2). Relying parties poll both, so this keeps their
//! cost at a map lookup and a copy of a reference-counted buffer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

/// A request's `If-None-Match` lines. Extracted alone: the `HeaderMap` extractor copies
/// every header of the request, on the two endpoints relying parties poll most.
#[derive(Debug, Default)]
pub struct IfNoneMatch(Vec<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(
            parts
                .headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .cloned()
                .collect(),
        ))
    }
}

/// A serialised document and its entity tag.
#[derive(Debug)]
pub struct Document {
    body: Bytes,
    etag: HeaderValue,
}

impl Document {
    /// `value` as JSON, tagged with a digest of the bytes.
    pub fn json(value: &serde_json::Value) -> Self {
        let body = Bytes::from(value.to_string());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let tag = format!("\"{}\"", hex::encode(&digest.as_ref()[..16]));
        Self {
            body,
            etag: HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\"")),
        }
    }

    /// The response to a request with `if_none_match`: the document, or `304 Not
    /// Modified` when the request already holds it. Both carry the `ETag` and
    /// `cache_control`.
    pub fn respond(
        &self,
        if_none_match: &IfNoneMatch,
        content_type: &'static str,
        cache_control: HeaderValue,
    ) -> Response {
        let fresh = if_none_match
            .0
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| names(v, &self.etag)));
        let (status, body) = if fresh {
            (StatusCode::NOT_MODIFIED, Body::empty())
        } else {
            (StatusCode::OK, Body::from(self.body.clone()))
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::ETAG, self.etag.clone());
        h.insert(header::CACHE_CONTROL, cache_control);
        if !fresh {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        resp
    }
}

/// Whether an `If-None-Match` value names `etag`: `*`, or a list of tags compared
/// weakly (`W/"x"` matches `"x"`), as RFC 9110 §13.1.2 says for this header.
fn names(if_none_match: &str, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}

/// One document per tenant, valid while its version is the current one. A version
/// holds what the document was built from (an `Arc` of it, so that it cannot be freed
/// and its address reused while cached); the caller says when two versions are the same.
#[derive(Debug)]
pub struct DocumentCache<V> {
    entries: RwLock<HashMap<String, (V, Arc<Document>)>>,
}

impl<V> Default for DocumentCache<V> {
    fn default() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
        }
    }
}

impl<V: Clone> DocumentCache<V> {
    /// The tenant's document for `version`: the cached one when `same` says its
    /// version is this one, otherwise `build`'s, which replaces it.
    pub fn get_or_build(
        &self,
        tenant_id: &str,
        version: &V,
        same: impl Fn(&V, &V) -> bool,
        build: impl FnOnce() -> serde_json::Value,
    ) -> Arc<Document> {
        if let Ok(entries) = self.entries.read()
            && let Some((cached, doc)) = entries.get(tenant_id)
            && same(cached, version)
        {
            return Arc::clone(doc);
        }
        let doc = Arc::new(Document::json(&build()));
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(tenant_id.to_owned(), (version.clone(), Arc::clone(&doc)));
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(if_none_match: Option<&str>) -> IfNoneMatch {
        IfNoneMatch(
            if_none_match
                .map(|v| HeaderValue::from_str(v).unwrap())
                .into_iter()
                .collect(),
        )
    }

    #[test]
    fn a_matching_if_none_match_is_a_bodiless_304_with_the_tag() {
        let doc = Document::json(&json!({"a": 1}));
        let tag = doc.etag.to_str().unwrap().to_owned();
        let cc = HeaderValue::from_static("public, max-age=60");
        let full = doc.respond(&request(None), "application/json", cc.clone());
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(full.headers()[header::ETAG], tag.as_str());
        assert_eq!(full.headers()[header::CONTENT_TYPE], "application/json");
        for matching in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"other\", {tag}"),
            "*".to_owned(),
        ] {
            let r = doc.respond(&request(Some(&matching)), "application/json", cc.clone());
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{matching}");
            assert_eq!(r.headers()[header::ETAG], tag.as_str());
        }
        for other in ["\"other\"", "", "W/\"x\""] {
            let r = doc.respond(&request(Some(other)), "application/json", cc.clone());
            assert_eq!(r.status(), StatusCode::OK, "{other}");
        }
    }

    #[test]
    fn the_tag_follows_the_content() {
        let a = Document::json(&json!({"keys": []}));
        let b = Document::json(&json!({"keys": []}));
        let c = Document::json(&json!({"keys": [1]}));
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
    }

    #[test]
    fn a_document_is_rebuilt_only_for_a_new_version() {
        let cache: DocumentCache<u32> = DocumentCache::default();
        let builds = std::cell::Cell::new(0);
        let build = |n: u32| {
            builds.set(builds.get() + 1);
            json!({ "v": n })
        };
        let same = |a: &u32, b: &u32| a == b;
        let first = cache.get_or_build("t", &1, same, || build(1));
        let again = cache.get_or_build("t", &1, same, || build(1));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(builds.get(), 1);
        let newer = cache.get_or_build("t", &2, same, || build(2));
        assert_eq!(builds.get(), 2);
        assert_ne!(first.etag, newer.etag);
        let other_tenant = cache.get_or_build("u", &2, same, || build(2));
        assert_eq!(builds.get(), 3);
        assert_eq!(other_tenant.etag, newer.etag);
    }
}
