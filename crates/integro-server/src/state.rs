//! What every handler shares.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use integro_store::Db;
use integro_store::secrets::Keyring;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::error::ApiError;
use crate::tokens::TokenKeys;

/// Cloned for every request (and by every middleware on its way), so it is
/// one reference count: cloning and dropping the fields themselves took 2%
/// of perf's samples of webhook ingest.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub db: Db,
    pub config: Arc<Config>,
    pub keyring: Arc<Keyring>,
    pub tokens: TokenKeys,
    pub rate_limit: Arc<RateLimit>,
    /// Sign-in's throttles and password-hashing threads.
    pub login_guard: Arc<crate::login_guard::LoginGuard>,
    /// `INTEGRO_TRUSTED_PROXIES`, parsed.
    pub trusted_proxies: Arc<[std::net::IpAddr]>,
    /// Event streams open per caller and per tenant.
    pub streams: Arc<crate::streams::StreamSlots>,
    /// Web chat visitors: their tokens' keys and rate limits (`api::web::public`).
    pub visitors: Arc<crate::api::web::public::Visitors>,
    /// Refused webhooks per path and source, to hold back a flood of them.
    pub refusals: Arc<crate::webhooks::refusals::Refusals>,
    pub metrics: PrometheusHandle,
    /// Wakes this process's workers when a request enqueues a job.
    pub wake: Arc<tokio::sync::Notify>,
    /// Channel accounts recently named by webhooks.
    pub accounts: Arc<integro_worker::accounts::AccountCache>,
    /// Turns true when the process is shutting down.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Stores webhooks in group commits.
    pub ingest: crate::ingest::Ingestor,
    /// The reply engine, shared with this process's workers (dry runs use it).
    pub engine: Arc<integro_worker::Engine>,
    /// X CRC answers per account (`webhooks::x::CRC_PER_MINUTE`).
    pub x_crc: RateLimit<uuid::Uuid>,
}

/// An in-process keyed rate limit (GCRA, `governor`): per API key or user,
/// per sign-in address, per webhook source, per X account, per visitor.
/// Past it, 429 with `Retry-After`.
pub struct RateLimit<K: Hash + Eq + Clone = String> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// `burst` at once, then one every `per`.
    pub fn new(per: Duration, burst: u32) -> RateLimit<K> {
        let burst = NonZeroU32::new(burst.max(1)).expect("at least one");
        RateLimit {
            limiter: RateLimiter::keyed(
                Quota::with_period(per)
                    .expect("non-zero period")
                    .allow_burst(burst),
            ),
        }
    }

    /// `n` an hour, all of them at once at most; refills evenly.
    pub fn per_hour(n: u32) -> RateLimit<K> {
        RateLimit::new(Duration::from_secs(3600) / n.max(1), n)
    }

    /// `n` a minute, all of them at once at most.
    pub fn per_minute(n: u32) -> RateLimit<K> {
        RateLimit::new(Duration::from_secs(60) / n.max(1), n)
    }

    /// Takes one from `key`'s allowance; when it is spent, the whole seconds
    /// (at least one) until the next.
    pub fn take(&self, key: &K) -> Result<(), u64> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }

    /// `take`, refused as 429 `rate_limited` saying what was too many.
    pub fn check_for(&self, key: &K, what: &str) -> Result<(), ApiError> {
        self.take(key).map_err(|secs| ApiError {
            retry_after_secs: Some(secs),
            ..ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many {what}; retry in {secs} s"),
            )
        })
    }

    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        self.check_for(key, "requests")
    }

    /// Forgets callers that are back to a full allowance (run periodically).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}
