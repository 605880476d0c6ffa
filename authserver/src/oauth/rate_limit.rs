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
        let hits = self.hit_all(&[(key, limit)], now).await;
        hits.decisions.first().copied().unwrap_or(Decision {
            allowed: true,
            headers: RateHeaders {
                limit,
                remaining: limit,
                reset_seconds: self.window,
            },
        })
    }

    /// Counts one request against each `(key, limit)`: with Redis, all of them in one
    /// round trip (one `MULTI`/`EXEC`). The decisions come in the order of `keys`.
    pub async fn hit_all(&self, keys: &[(&str, u64)], now: UnixTime) -> Hits {
        let now = u64::try_from(now).unwrap_or(0);
        let window = now / self.window;
        let reset_seconds = (window + 1) * self.window - now;
        let counts = match &self.redis {
            Some(conn) => match self.redis_incr_all(conn.clone(), keys, window).await {
                Ok(c) if c.len() == keys.len() => c,
                Ok(_) => self.memory_add_all(keys, window),
                Err(e) => {
                    tracing::warn!(error = %e, "Redis rate limiter unavailable; counting in memory");
                    self.memory_add_all(keys, window)
                }
            },
            None => self.memory_add_all(keys, window),
        };
        let decisions = keys
            .iter()
            .zip(counts)
            .map(|(&(_, limit), count)| Decision {
                allowed: count <= limit,
                headers: RateHeaders {
                    limit,
                    remaining: limit.saturating_sub(count),
                    reset_seconds,
                },
            })
            .collect();
        Hits { window, decisions }
    }

    /// Takes back the request `hits` counted against `key`: it turned out not to be that
    /// key's to pay for (a client id nobody authenticated as). Counted in the window of
    /// the hit, so a window that ended meanwhile is left alone.
    pub async fn give_back(&self, key: &str, hits: &Hits) {
        if let Some(conn) = &self.redis {
            match self.redis_decr(conn.clone(), key, hits.window).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "Redis rate limiter unavailable; counting in memory");
                }
            }
        }
        if let Ok(mut map) = self.memory.lock()
            && let Some((w, count)) = map.get_mut(key)
            && *w == hits.window
        {
            *count = count.saturating_sub(1);
        }
    }

    /// Whether the shared counters answer: `None` without Redis.
    pub async fn redis_reachable(&self) -> Option<bool> {
        let mut conn = self.redis.clone()?;
        let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
        Some(pong.is_ok())
    }

    fn memory_add_all(&self, keys: &[(&str, u64)], window: u64) -> Vec<u64> {
        let Ok(mut map) = self.memory.lock() else {
            return vec![0; keys.len()];
        };
        if map.len() >= MAX_MEMORY_KEYS {
            map.retain(|_, (w, _)| *w == window);
        }
        keys.iter()
            .map(|&(key, _)| {
                // A key seen before (every request after a client's first) costs no
                // allocation.
                let entry = match map.get_mut(key) {
                    Some(entry) => entry,
                    None => map.entry(key.to_owned()).or_insert((window, 0)),
                };
                if entry.0 != window {
                    *entry = (window, 0);
                }
                entry.1 += 1;
                entry.1
            })
            .collect()
    }

    /// Redis keeps a window's counter for two windows, then lets it expire.
    fn redis_key(key: &str, window: u64) -> String {
        format!("gatehouse:rl:{key}:{window}")
    }

    fn redis_ttl(&self) -> i64 {
        i64::try_from(self.window * 2).unwrap_or(i64::MAX)
    }

    async fn redis_incr_all(
        &self,
        mut conn: redis::aio::ConnectionManager,
        keys: &[(&str, u64)],
        window: u64,
    ) -> redis::RedisResult<Vec<u64>> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for &(key, _) in keys {
            let k = Self::redis_key(key, window);
            pipe.incr(&k, 1u64).expire(&k, self.redis_ttl()).ignore();
        }
        pipe.query_async(&mut conn).await
    }

    async fn redis_decr(
        &self,
        mut conn: redis::aio::ConnectionManager,
        key: &str,
        window: u64,
    ) -> redis::RedisResult<()> {
        let k = Self::redis_key(key, window);
        // With its expiry again: a counter that expired meanwhile must not come back
        // as a -1 that never goes away.
        redis::pipe()
            .atomic()
            .decr(&k, 1u64)
            .ignore()
            .expire(&k, self.redis_ttl())
            .ignore()
            .query_async(&mut conn)
            .await
    }
}

/// One request counted against several keys ([`RateLimiter::hit_all`]).
#[derive(Debug)]
pub struct Hits {
    window: u64,
    /// In the order of the keys.
    pub decisions: Vec<Decision>,
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

    fn remaining(hits: &Hits) -> Vec<u64> {
        hits.decisions.iter().map(|d| d.headers.remaining).collect()
    }

    #[tokio::test]
    async fn a_request_given_back_is_uncounted_in_its_window_only() {
        let rl = RateLimiter::new(60, None).await.unwrap();
        let t = 1_700_000_020;
        let first = rl.hit_all(&[("ip", 5), ("client", 2)], t).await;
        assert_eq!(remaining(&first), [4, 1]);
        rl.give_back("client", &first).await;
        let second = rl.hit_all(&[("ip", 5), ("client", 2)], t).await;
        assert_eq!(remaining(&second), [3, 1], "the IP keeps its count");
        // A hit of an earlier window given back now leaves the current one alone.
        let next_window = rl.hit_all(&[("client", 2)], t + 60).await;
        assert_eq!(remaining(&next_window), [1]);
        rl.give_back("client", &second).await;
        assert_eq!(remaining(&rl.hit_all(&[("client", 2)], t + 60).await), [0]);
        // Never below zero.
        let fresh = rl.hit_all(&[("other", 2)], t).await;
        rl.give_back("other", &fresh).await;
        rl.give_back("other", &fresh).await;
        assert_eq!(remaining(&rl.hit_all(&[("other", 2)], t).await), [1]);
    }

    /// How many transactions (`EXEC`s) Redis has run.
    async fn execs(conn: &mut redis::aio::ConnectionManager) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(conn)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_exec:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }

    #[tokio::test]
    #[ignore = "needs Redis (REDIS_URL, else 127.0.0.1:6379): .ci/run starts it and runs this with --ignored"]
    async fn every_key_of_a_request_is_counted_in_one_redis_round_trip() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let secret = secrecy::SecretString::from(url.clone());
        let rl = RateLimiter::new(3600, Some(&secret)).await.unwrap();
        let mut admin = redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
            .await
            .unwrap();
        let run = crate::crypto::b64url(&crate::crypto::random_bytes::<8>());
        let (ip, client) = (format!("test:{run}:ip"), format!("test:{run}:client"));
        let keys = [(ip.as_str(), 5), (client.as_str(), 2)];
        let now = 1_700_000_020;

        let before = execs(&mut admin).await;
        let first = rl.hit_all(&keys, now).await;
        assert_eq!(
            execs(&mut admin).await - before,
            1,
            "one transaction for both keys"
        );
        assert_eq!(remaining(&first), [4, 1]);

        rl.give_back(&client, &first).await;
        assert_eq!(remaining(&rl.hit_all(&keys, now).await), [3, 1]);
        // Both counters expire: a give-back must not leave a key that lives forever.
        let window = 1_700_000_020_u64 / 3600;
        for key in [&ip, &client] {
            let ttl: i64 = redis::cmd("TTL")
                .arg(RateLimiter::redis_key(key, window))
                .query_async(&mut admin)
                .await
                .unwrap();
            assert!((1..=7200).contains(&ttl), "{key}: {ttl}");
        }
    }
}
