//! Fetching and caching clients' `jwks_uri` key sets (private_key_jwt). A miss on a kid
//! forces one refetch, at most every few seconds, so a client's key rotation works
//! without letting forged kids turn us into a request amplifier.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

const TTL: Duration = Duration::from_mins(5);
const MIN_REFETCH: Duration = Duration::from_secs(10);
const MAX_BYTES: usize = 256 * 1024;

/// Key sets by URI.
#[derive(Debug)]
pub struct JwksFetcher {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (Instant, Value)>>,
}

impl JwksFetcher {
    pub fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("gatehouse-authserver")
            .build()?;
        Ok(Self {
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The key set at `uri`; `refresh` asks for a refetch (unknown kid).
    pub async fn get(&self, uri: &str, refresh: bool) -> Result<Value, String> {
        let cached = self.cache.lock().ok().and_then(|c| c.get(uri).cloned());
        if let Some((at, set)) = &cached {
            let age = at.elapsed();
            if age < TTL && (!refresh || age < MIN_REFETCH) {
                return Ok(set.clone());
            }
        }
        match self.fetch(uri).await {
            Ok(set) => {
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(uri.to_owned(), (Instant::now(), set.clone()));
                }
                Ok(set)
            }
            // A stale set beats none while the client's server hiccups.
            Err(e) => cached.map(|(_, s)| s).ok_or(e),
        }
    }

    async fn fetch(&self, uri: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(uri)
            .send()
            .await
            .map_err(|e| format!("cannot fetch jwks_uri: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("jwks_uri answered {}", resp.status()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("cannot read jwks_uri: {e}"))?;
        if body.len() > MAX_BYTES {
            return Err("jwks_uri document is too large".to_owned());
        }
        let set: Value =
            serde_json::from_slice(&body).map_err(|_| "jwks_uri is not JSON".to_owned())?;
        if !set.get("keys").is_some_and(Value::is_array) {
            return Err("jwks_uri is not a JWK Set".to_owned());
        }
        Ok(set)
    }
}
