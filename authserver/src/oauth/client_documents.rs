//! JSON documents that clients register by URL — their `jwks_uri` key sets
//! (private_key_jwt) and `sector_identifier_uri` lists (pairwise subjects) — fetched
//! through the bounded [`Fetcher`](crate::outbound::Fetcher) and cached.
//!
//! A registered URL is attacker-controlled, and anyone can make us use a `jwks_uri` by
//! sending an assertion naming the client, unauthenticated. So: at most 256 KiB per
//! document; a good one is kept as long as its `Cache-Control` says, within 1 minute to 1 hour
//! (5 minutes without one); a failure is remembered too and retried only after a backoff
//! that doubles from 10 s to 5 minutes (the previous good set, if any, keeps serving
//! meanwhile); a miss on a kid refetches at most every 10 s, so a client's key rotation
//! works without letting forged kids make us a request amplifier; and one fetch per URI
//! runs at a time (single flight): concurrent requests wait for it and share its result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::outbound::{FetchError, Fetcher};

const DEFAULT_TTL: Duration = Duration::from_mins(5);
const MIN_TTL: Duration = Duration::from_mins(1);
const MAX_TTL: Duration = Duration::from_hours(1);
const MIN_REFETCH: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_mins(5);
/// A JWK Set is a few kilobytes; this leaves room for many large RSA keys.
pub const MAX_BYTES: usize = 256 * 1024;

/// Which documents a cache holds: what they are called in messages and what they must
/// look like.
#[derive(Debug, Clone, Copy)]
pub struct DocumentKind {
    /// The registration field, for messages (`jwks_uri`).
    pub field: &'static str,
    /// What the document must be, for messages (`a JWK Set`).
    pub expected: &'static str,
    pub accept: &'static str,
    pub is_valid: fn(&Value) -> bool,
    /// A miss (`refresh`) refetches at once the first time after a fetch, and then at
    /// most every 10 s — instead of at most every 10 s after any fetch. For key sets of
    /// upstream providers we sign in with: their key rotation must not fail the
    /// sign-ins of the next 10 s, and it is the operator, not a caller, who names the
    /// URL. Forged kids still cost at most one fetch per 10 s.
    pub refetch_first_miss: bool,
}

/// Clients' key sets (RFC 7517 §5).
pub const JWKS: DocumentKind = DocumentKind {
    field: "jwks_uri",
    expected: "a JWK Set",
    accept: "application/jwk-set+json, application/json",
    is_valid: |v| v.get("keys").is_some_and(Value::is_array),
    refetch_first_miss: false,
};

/// Upstream identity providers' key sets (`jwks_uri` of their discovery documents).
pub const UPSTREAM_JWKS: DocumentKind = DocumentKind {
    field: "upstream jwks_uri",
    refetch_first_miss: true,
    ..JWKS
};

/// Upstream identity providers' discovery documents (OpenID Connect Discovery §3):
/// a JSON object with the endpoints a sign-in needs.
pub const UPSTREAM_DISCOVERY: DocumentKind = DocumentKind {
    field: "upstream discovery document",
    expected: "an OpenID Provider configuration",
    accept: "application/json",
    is_valid: |v| {
        [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
        ]
        .iter()
        .all(|k| v.get(*k).is_some_and(Value::is_string))
    },
    refetch_first_miss: false,
};

/// Sector identifier documents (OpenID Connect Registration §5): a JSON array of the
/// client's redirect URIs.
pub const SECTOR_DOCUMENTS: DocumentKind = DocumentKind {
    field: "sector_identifier_uri",
    expected: "a JSON array of URIs",
    accept: "application/json",
    is_valid: |v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
    refetch_first_miss: false,
};

/// What is known about one URI.
#[derive(Debug, Default)]
struct Entry {
    /// The last good set, when it was fetched, and how long it stays fresh.
    good: Option<(Instant, Duration, Value)>,
    /// The last failure: when, the message, and how long to wait before trying again.
    failed: Option<(Instant, Duration, String)>,
    /// When a miss last made us refetch ([`DocumentKind::refetch_first_miss`]).
    forced: Option<Instant>,
    /// Held while a fetch of this URI runs.
    flight: Arc<tokio::sync::Mutex<()>>,
}

/// Documents of one kind by URI.
#[derive(Debug)]
pub struct DocumentCache {
    fetcher: Arc<Fetcher>,
    kind: DocumentKind,
    entries: Mutex<HashMap<String, Entry>>,
}

/// What the cache says before any fetch.
enum Cached {
    /// Use this (fresh, or recently refetched, or a remembered failure's fallback).
    Hit(Result<Value, String>),
    /// Fetch, holding this flight lock.
    Fetch(Arc<tokio::sync::Mutex<()>>),
}

impl DocumentCache {
    pub fn new(fetcher: Arc<Fetcher>, kind: DocumentKind) -> Self {
        Self {
            fetcher,
            kind,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The document at `uri`; `refresh` asks for a refetch (an unknown kid).
    pub async fn get(&self, uri: &str, refresh: bool) -> Result<Value, String> {
        let flight = match self.cached(uri, refresh) {
            Cached::Hit(r) => return r,
            Cached::Fetch(f) => f,
        };
        let _flying = flight.lock().await;
        // Whoever held the flight before us may have just fetched: use that.
        if let Cached::Hit(r) = self.cached(uri, refresh) {
            return r;
        }
        let result = self.fetch(uri).await;
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.entry(uri.to_owned()).or_default();
        if refresh {
            entry.forced = Some(Instant::now());
        }
        match result {
            Ok((set, ttl)) => {
                entry.good = Some((Instant::now(), ttl, set.clone()));
                entry.failed = None;
                Ok(set)
            }
            Err(e) => {
                let backoff = entry
                    .failed
                    .as_ref()
                    .map_or(FIRST_BACKOFF, |(_, b, _)| (*b * 2).min(MAX_BACKOFF));
                tracing::warn!(field = self.kind.field, error = %e, retry_in_s = backoff.as_secs(), "client document fetch failed");
                entry.failed = Some((Instant::now(), backoff, e.clone()));
                // A stale set beats none while the client's server hiccups.
                entry.good.as_ref().map(|(_, _, s)| s.clone()).ok_or(e)
            }
        }
    }

    fn cached(&self, uri: &str, refresh: bool) -> Cached {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.entry(uri.to_owned()).or_default();
        let good = entry
            .good
            .as_ref()
            .map(|(at, ttl, set)| (at.elapsed(), *ttl, set));
        let recently_refetched = |age: Duration| {
            if self.kind.refetch_first_miss {
                entry.forced.is_some_and(|f| f.elapsed() < MIN_REFETCH)
            } else {
                age < MIN_REFETCH
            }
        };
        if let Some((age, ttl, set)) = good
            && age < ttl
            && (!refresh || recently_refetched(age))
        {
            return Cached::Hit(Ok(set.clone()));
        }
        if let Some((at, backoff, e)) = &entry.failed
            && at.elapsed() < *backoff
        {
            return Cached::Hit(good.map(|(_, _, s)| s.clone()).ok_or_else(|| e.clone()));
        }
        Cached::Fetch(Arc::clone(&entry.flight))
    }

    /// The document at `uri` for a health check ([`crate::federation::FederationService::check`]):
    /// a fresh cached one, else fetched now — past any backoff, since the check is
    /// there to see a recovery. A good answer is cached for everyone; a failure is not
    /// remembered, so a check never holds back the next sign-in. The error names what
    /// went wrong without the field (`answered HTTP 404`, `not JSON`).
    pub async fn probe(&self, uri: &str) -> Result<Value, String> {
        let flight = match self.fresh(uri) {
            Ok(fresh) => return Ok(fresh),
            Err(flight) => flight,
        };
        // Single flight as for sign-ins: checks of several providers sharing a
        // document (or a sign-in fetching it) meet here and share a good answer.
        let _flying = flight.lock().await;
        if let Ok(fresh) = self.fresh(uri) {
            return Ok(fresh);
        }
        let (doc, ttl) = self.fetch_document(uri).await.map_err(|e| match e {
            Invalid::Fetch(e) => e.to_string(),
            Invalid::NotJson => "not JSON".to_owned(),
            Invalid::NotExpected => format!("not {}", self.kind.expected),
        })?;
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.entry(uri.to_owned()).or_default();
        entry.good = Some((Instant::now(), ttl, doc.clone()));
        entry.failed = None;
        Ok(doc)
    }

    /// The document at `uri` if it is fresh (a remembered failure's stale fallback is
    /// not), or the flight lock to fetch it under.
    fn fresh(&self, uri: &str) -> Result<Value, Arc<tokio::sync::Mutex<()>>> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.entry(uri.to_owned()).or_default();
        match &entry.good {
            Some((at, ttl, set)) if at.elapsed() < *ttl => Ok(set.clone()),
            _ => Err(Arc::clone(&entry.flight)),
        }
    }

    async fn fetch(&self, uri: &str) -> Result<(Value, Duration), String> {
        let field = self.kind.field;
        self.fetch_document(uri).await.map_err(|e| match e {
            Invalid::Fetch(e) => format!("cannot fetch {field}: {e}"),
            Invalid::NotJson => format!("{field} is not JSON"),
            Invalid::NotExpected => format!("{field} is not {}", self.kind.expected),
        })
    }

    async fn fetch_document(&self, uri: &str) -> Result<(Value, Duration), Invalid> {
        let fetched = self
            .fetcher
            .get(uri, &[("accept", self.kind.accept)], MAX_BYTES, None)
            .await
            .map_err(Invalid::Fetch)?;
        let set: Value = serde_json::from_slice(&fetched.body).map_err(|_| Invalid::NotJson)?;
        if !(self.kind.is_valid)(&set) {
            return Err(Invalid::NotExpected);
        }
        let ttl = fetched
            .max_age
            .map_or(DEFAULT_TTL, |a| a.clamp(MIN_TTL, MAX_TTL));
        Ok((set, ttl))
    }
}

/// Why a fetched document is unusable; [`DocumentCache::fetch`] and
/// [`DocumentCache::probe`] word it for their callers.
enum Invalid {
    Fetch(FetchError),
    NotJson,
    NotExpected,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::{IpNet, OutboundSettings};

    /// A local server answering every GET with `body` (after `delay`), counting requests.
    async fn serve(status: u16, body: &'static str, delay: Duration) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = sock.read(&mut buf).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                });
            }
        });
        (format!("http://127.0.0.1:{port}/jwks"), hits)
    }

    fn fetcher() -> DocumentCache {
        let settings = OutboundSettings {
            allowed_networks: IpNet::parse("127.0.0.0/8").into_iter().collect(),
            allow_http: true,
            ..OutboundSettings::default()
        };
        DocumentCache::new(Arc::new(Fetcher::new(&settings).unwrap()), JWKS)
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch_and_a_kid_miss_refetches_at_most_every_10_s() {
        let (uri, hits) = serve(200, r#"{"keys":[]}"#, Duration::from_millis(200)).await;
        let jwks = Arc::new(fetcher());
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (jwks, uri) = (Arc::clone(&jwks), uri.clone());
            tasks.push(tokio::spawn(async move { jwks.get(&uri, false).await }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "single flight");
        // A kid miss right after the fetch does not refetch.
        jwks.get(&uri, true).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn upstream_key_sets_refetch_at_the_first_miss_then_at_most_every_10_s() {
        let (uri, hits) = serve(200, r#"{"keys":[]}"#, Duration::ZERO).await;
        let settings = OutboundSettings {
            allowed_networks: IpNet::parse("127.0.0.0/8").into_iter().collect(),
            allow_http: true,
            ..OutboundSettings::default()
        };
        let jwks = DocumentCache::new(Arc::new(Fetcher::new(&settings).unwrap()), UPSTREAM_JWKS);
        jwks.get(&uri, false).await.unwrap();
        jwks.get(&uri, false).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1, "cached");
        // The upstream rotated its keys: the first unknown kid refetches at once…
        jwks.get(&uri, true).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // …and forged kids after it do not.
        for _ in 0..5 {
            jwks.get(&uri, true).await.unwrap();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2, "rate-limited");
    }

    #[tokio::test]
    async fn failures_are_remembered_with_backoff() {
        let (uri, hits) = serve(500, "", Duration::ZERO).await;
        let jwks = fetcher();
        for refresh in [false, true, false, true] {
            let e = jwks.get(&uri, refresh).await.unwrap_err();
            assert!(e.contains("HTTP 500"), "{e}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one fetch, then backoff");
        let (bad, _) = serve(200, "not json", Duration::ZERO).await;
        assert_eq!(
            jwks.get(&bad, false).await.unwrap_err(),
            "jwks_uri is not JSON"
        );
        let (not_a_set, _) = serve(200, r#"{"k":1}"#, Duration::ZERO).await;
        assert_eq!(
            jwks.get(&not_a_set, false).await.unwrap_err(),
            "jwks_uri is not a JWK Set"
        );
    }

    #[tokio::test]
    async fn a_probe_neither_remembers_its_failure_nor_waits_out_a_backoff() {
        let (down, hits) = serve(503, "", Duration::ZERO).await;
        let jwks = fetcher();
        assert_eq!(jwks.probe(&down).await.unwrap_err(), "answered HTTP 503");
        // The next sign-in fetches for itself instead of meeting the probe's failure…
        assert!(
            jwks.get(&down, false)
                .await
                .unwrap_err()
                .contains("HTTP 503")
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // …and a probe goes past the backoff that sign-in's failure started.
        jwks.probe(&down).await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 3);

        let (up, hits) = serve(200, r#"{"keys":[]}"#, Duration::from_millis(100)).await;
        let (a, b) = tokio::join!(jwks.probe(&up), jwks.probe(&up));
        assert_eq!(a.unwrap(), serde_json::json!({"keys": []}));
        assert_eq!(
            b.unwrap(),
            serde_json::json!({"keys": []}),
            "shared one fetch"
        );
        jwks.probe(&up).await.unwrap();
        jwks.get(&up, false).await.unwrap();
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "a good answer is cached for all"
        );
        let (bad, _) = serve(200, "not json", Duration::ZERO).await;
        assert_eq!(jwks.probe(&bad).await.unwrap_err(), "not JSON");
        let (not_a_set, _) = serve(200, r#"{"k":1}"#, Duration::ZERO).await;
        assert_eq!(jwks.probe(&not_a_set).await.unwrap_err(), "not a JWK Set");
    }
}
