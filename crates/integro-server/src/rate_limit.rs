//! Keyed rate limits (GCRA): per API key or user, per sign-in address, per
//! webhook source, per X account, per visitor. Past one, 429 with
//! `Retry-After`. Processes that share a PostgreSQL database, or a Redis
//! server (`INTEGRO_REDIS_URL`), share each allowance, so that N replicas do
//! not allow N times the limit; on SQLite (one process) they live in memory.

use std::fmt::Debug;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use integro_store::{Backend, Db};

use crate::error::ApiError;

/// Where the processes keep the allowances they share.
#[derive(Clone)]
pub enum SharedLimits {
    Postgres(Box<Db>),
    Redis(redis::aio::ConnectionManager),
}

/// GCRA on one key: `KEYS[1]` holds the theoretical arrival time (ms);
/// answers 0 when one is taken, else the ms to wait. Hashed once; sent by
/// its hash (`EVALSHA`) after the first time.
static REDIS_GCRA: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + period
if next_tat - now > horizon then return next_tat - horizon - now end
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
return 0
",
    )
});

impl SharedLimits {
    /// Redis when `redis_url` is set, else PostgreSQL when it is the
    /// database, else none (SQLite: one process).
    pub async fn connect(redis_url: Option<&str>, db: &Db) -> anyhow::Result<Option<SharedLimits>> {
        if let Some(url) = redis_url.filter(|u| !u.trim().is_empty()) {
            return Ok(Some(SharedLimits::redis(url).await?));
        }
        Ok((db.backend() == Backend::Postgres)
            .then(|| SharedLimits::Postgres(Box::new(db.clone()))))
    }

    /// Connects to the Redis server at `url`.
    pub async fn redis(url: &str) -> anyhow::Result<SharedLimits> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("INTEGRO_REDIS_URL is not a Redis URL: {e}"))?;
        let manager = tokio::time::timeout(
            Duration::from_secs(10),
            redis::aio::ConnectionManager::new(client),
        )
        .await
        .map_err(|_| anyhow::anyhow!("Redis (INTEGRO_REDIS_URL) did not answer within 10 s"))?
        .map_err(|e| anyhow::anyhow!("cannot connect to Redis (INTEGRO_REDIS_URL): {e}"))?;
        Ok(SharedLimits::Redis(manager))
    }

    /// Takes one from `key`: `Ok(Err(ms))` when spent.
    async fn take(&self, key: &str, period_ms: i64, burst: i64) -> Result<Result<(), i64>, String> {
        let now = integro_store::db::now_ms();
        match self {
            SharedLimits::Postgres(db) => {
                integro_store::rate_limits::take(db, key, period_ms, burst, now)
                    .await
                    .map_err(|e| e.to_string())
            }
            SharedLimits::Redis(manager) => {
                let wait: i64 = REDIS_GCRA
                    .key(format!("integro:rate:{key}"))
                    .arg(now)
                    .arg(period_ms.max(1))
                    .arg(period_ms.max(1).saturating_mul(burst.max(1)))
                    .invoke_async(&mut manager.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if wait > 0 { Err(wait) } else { Ok(()) })
            }
        }
    }
}

pub struct RateLimit<K: Hash + Eq + Clone = String> {
    /// Names the limit among the shared ones.
    name: &'static str,
    period: Duration,
    burst: u32,
    /// This process's own allowances: all of them without a shared store,
    /// and a fallback while it cannot be reached.
    local: DefaultKeyedRateLimiter<K>,
    shared: Option<SharedLimits>,
}

impl<K: Hash + Eq + Clone + Debug> RateLimit<K> {
    /// `burst` at once, then one every `period`.
    pub fn new(name: &'static str, period: Duration, burst: u32) -> RateLimit<K> {
        let burst = burst.max(1);
        RateLimit {
            name,
            period,
            burst,
            local: RateLimiter::keyed(
                Quota::with_period(period)
                    .expect("non-zero period")
                    .allow_burst(NonZeroU32::new(burst).expect("at least one")),
            ),
            shared: None,
        }
    }

    /// `n` an hour, all of them at once at most; refills evenly.
    pub fn per_hour(name: &'static str, n: u32) -> RateLimit<K> {
        RateLimit::new(name, Duration::from_secs(3600) / n.max(1), n)
    }

    /// `n` a minute, all of them at once at most.
    pub fn per_minute(name: &'static str, n: u32) -> RateLimit<K> {
        RateLimit::new(name, Duration::from_secs(60) / n.max(1), n)
    }

    /// The same limit, counted in `shared` (when there is one).
    pub fn shared_in(mut self, shared: Option<&SharedLimits>) -> RateLimit<K> {
        self.shared = shared.cloned();
        self
    }

    /// Takes one from `key`'s allowance; when it is spent, the whole seconds
    /// (at least one) until the next.
    pub async fn take(&self, key: &K) -> Result<(), u64> {
        if let Some(shared) = &self.shared {
            let period_ms = i64::try_from(self.period.as_millis()).unwrap_or(i64::MAX);
            match shared
                .take(
                    &format!("{}:{key:?}", self.name),
                    period_ms,
                    i64::from(self.burst),
                )
                .await
            {
                Ok(taken) => return taken.map_err(|ms| (ms as u64).div_ceil(1000).max(1)),
                Err(e) => {
                    tracing::warn!(limit = self.name, error = %e, "the shared rate limits cannot be reached; counting in this process");
                }
            }
        }
        self.local.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }

    /// `take`, refused as 429 `rate_limited` saying what was too many.
    pub async fn check_for(&self, key: &K, what: &str) -> Result<(), ApiError> {
        self.take(key).await.map_err(|secs| ApiError {
            retry_after_secs: Some(secs),
            ..ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many {what}; retry in {secs} s"),
            )
        })
    }

    pub async fn check(&self, key: &K) -> Result<(), ApiError> {
        self.check_for(key, "requests").await
    }

    /// Forgets callers that are back to a full allowance in this process
    /// (run periodically; the workers' retention forgets PostgreSQL's, and
    /// Redis expires its own).
    pub fn forget_idle(&self) {
        self.local.retain_recent();
        self.local.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two limits on one shared store stand for two processes.
    #[tokio::test]
    async fn processes_share_limits_in_redis() {
        let Some(url) = std::env::var("INTEGRO_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            return; // .ci/run sets it; without Redis there is nothing to talk to.
        };
        let shared = SharedLimits::redis(&url).await.unwrap();
        let key = uuid::Uuid::new_v4().to_string();
        let a: RateLimit =
            RateLimit::new("test", Duration::from_secs(60), 4).shared_in(Some(&shared));
        let b: RateLimit =
            RateLimit::new("test", Duration::from_secs(60), 4).shared_in(Some(&shared));
        let mut taken = 0;
        for n in 0..10 {
            let limit = if n % 2 == 0 { &a } else { &b };
            if limit.take(&key).await.is_ok() {
                taken += 1;
            }
        }
        assert_eq!(taken, 4, "4 in all, not 4 each");
        let wait = a.take(&key).await.unwrap_err();
        assert!((55..=60).contains(&wait), "{wait}");
        assert!(b.take(&format!("{key}-other")).await.is_ok());
    }

    #[tokio::test]
    async fn a_bad_redis_url_is_a_clear_error() {
        let err = SharedLimits::redis("not a url").await.err().unwrap();
        assert!(err.to_string().contains("INTEGRO_REDIS_URL"), "{err}");
    }
}
