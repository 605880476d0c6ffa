//! Fixed-window rate limits per client and per source IP. Counters live in this pod's
//! memory, or in Redis when configured so every pod shares them. Redis trouble fails
//! open to the in-memory counters (logged): an unavailable limiter must not take the
//! token endpoint down with it.

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::ExposeSecret as _;

use super::error::RateHeaders;
use crate::clock::UnixTime;

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub headers: RateHeaders,
}

/// Rate limiter with a memory or Redis backend.
pub struct RateLimiter {
    window: u64,
    memory: Mutex<HashMap<String, (u64, u64)>>,
    redis: Option<redis::aio::ConnectionManager>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("window", &self.window)
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

/// Bound on remembered keys per pod; beyond it, old windows are dropped.
const MAX_MEMORY_KEYS: usize = 100_000;

impl RateLimiter {
    /// Connects to Redis when `redis_url` is given.
    pub async fn new(
        window_seconds: u64,
        redis_url: Option<&secrecy::SecretString>,
    ) -> anyhow::Result<Self> {
        let redis = match redis_url {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("invalid REDIS_URL: {e}"))?;
                Some(
                    redis::aio::ConnectionManager::new(client)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot connect to Redis (REDIS_URL): {e}"))?,
                )
            }
        };
        Ok(Self {
            window: window_seconds.max(1),
            memory: Mutex::new(HashMap::new()),
            redis,
        })
    }

    /// Counts one request against `key` with `limit` per window.
    pub async fn hit(&self, key: &str, limit: u64, now: UnixTime) -> Decision {
        let now = u64::try_from(now).unwrap_or(0);
        let window = now / self.window;
        let reset_seconds = (window + 1) * self.window - now;
        let count = match &self.redis {
            Some(conn) => match Self::redis_incr(conn.clone(), key, window, self.window).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "Redis rate limiter unavailable; counting in memory");
                    self.memory_incr(key, window)
                }
            },
            None => self.memory_incr(key, window),
        };
        Decision {
            allowed: count <= limit,
            headers: RateHeaders {
                limit,
                remaining: limit.saturating_sub(count),
                reset_seconds,
            },
        }
    }

    /// Whether the shared counters answer: `None` without Redis.
    pub async fn redis_reachable(&self) -> Option<bool> {
        let mut conn = self.redis.clone()?;
        let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
        Some(pong.is_ok())
    }

    fn memory_incr(&self, key: &str, window: u64) -> u64 {
        let Ok(mut map) = self.memory.lock() else {
            return 0;
        };
        if map.len() >= MAX_MEMORY_KEYS {
            map.retain(|_, (w, _)| *w == window);
        }
        let entry = map.entry(key.to_owned()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += 1;
        entry.1
    }

    async fn redis_incr(
        mut conn: redis::aio::ConnectionManager,
        key: &str,
        window: u64,
        window_seconds: u64,
    ) -> redis::RedisResult<u64> {
        let k = format!("gatehouse:rl:{key}:{window}");
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .incr(&k, 1u64)
            .expire(&k, i64::try_from(window_seconds * 2).unwrap_or(i64::MAX))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_limit_applies_per_key_and_resets_with_the_window() {
        let rl = RateLimiter::new(60, None).await.unwrap();
        let t = 1_700_000_020; // 40 s into a window
        assert!(rl.hit("a", 2, t).await.allowed);
        let second = rl.hit("a", 2, t).await;
        assert!(second.allowed);
        assert_eq!(second.headers.remaining, 0);
        assert_eq!(second.headers.reset_seconds, 20);
        assert!(!rl.hit("a", 2, t).await.allowed);
        assert!(rl.hit("b", 2, t).await.allowed);
        assert!(rl.hit("a", 2, t + 20).await.allowed);
    }
}
