//! Refused webhooks are logged, which costs disk: an unauthenticated sender
//! could fill it. Past a budget of refusals per (webhook path, source) and
//! per source, further requests from that source answer 429 without being
//! handled or logged, until the budget refills. Providers' own deliveries
//! are never refused in the first place, so they are never held back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::rate_limit::{RateLimit, SharedLimits};

pub struct Refusals {
    /// Reverse proxies whose `X-Forwarded-For` names the source.
    trusted_proxies: Arc<[IpAddr]>,
    per_path: RateLimit<(String, IpAddr)>,
    per_source: RateLimit<IpAddr>,
    /// Sources (and paths) over budget, until when.
    blocked: Mutex<HashMap<(Option<String>, IpAddr), Instant>>,
    /// `blocked`'s size, read without the lock on every webhook.
    blocked_count: AtomicUsize,
}

impl Refusals {
    pub fn new(trusted_proxies: Arc<[IpAddr]>, shared: Option<&SharedLimits>) -> Arc<Refusals> {
        Arc::new(Refusals {
            trusted_proxies,
            // 30 refusals at once, then one every 2 s, per path and source.
            per_path: RateLimit::new("webhook_refusals_path", Duration::from_secs(2), 30)
                .shared_in(shared),
            // 300 at once, then 5 a second, per source over all paths.
            per_source: RateLimit::new("webhook_refusals_source", Duration::from_millis(200), 300)
                .shared_in(shared),
            blocked: Mutex::new(HashMap::new()),
            blocked_count: AtomicUsize::new(0),
        })
    }

    fn blocked_until(&self, path: &str, source: IpAddr) -> Option<Instant> {
        if self.blocked_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = Instant::now();
        let mut blocked = self.blocked.lock().expect("refusals");
        blocked.retain(|_, until| *until > now);
        self.blocked_count.store(blocked.len(), Ordering::Relaxed);
        [
            blocked.get(&(Some(path.to_string()), source)),
            blocked.get(&(None, source)),
        ]
        .into_iter()
        .flatten()
        .max()
        .copied()
    }

    /// Counts a refusal; past a budget, blocks the path and source (or the
    /// source) until it refills.
    async fn refused(&self, path: &str, source: IpAddr) {
        let block: Vec<(Option<String>, u64)> = [
            self.per_path
                .take(&(path.to_string(), source))
                .await
                .err()
                .map(|secs| (Some(path.to_string()), secs)),
            self.per_source
                .take(&source)
                .await
                .err()
                .map(|secs| (None, secs)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if block.is_empty() {
            return;
        }
        let mut blocked = self.blocked.lock().expect("refusals");
        for (path, secs) in block {
            blocked.insert((path, source), Instant::now() + Duration::from_secs(secs));
        }
        self.blocked_count.store(blocked.len(), Ordering::Relaxed);
    }

    /// Forgets what is back to a full budget (run periodically).
    pub fn forget_idle(&self) {
        self.per_path.forget_idle();
        self.per_source.forget_idle();
    }
}

/// The middleware around every webhook route.
pub async fn limit(State(refusals): State<Arc<Refusals>>, req: Request, next: Next) -> Response {
    let source = crate::client_address::client_address(
        crate::client_address::peer(req.extensions()),
        req.headers(),
        &refusals.trusted_proxies,
    );
    // The path is copied only for a refusal: a `Uri` clone shares its bytes.
    let uri = req.uri().clone();
    if let Some(until) = refusals.blocked_until(uri.path(), source) {
        metrics::counter!("integro_webhook_refusals_throttled_total").increment(1);
        let wait = until.saturating_duration_since(Instant::now());
        return ApiError {
            retry_after_secs: Some(wait.as_secs().max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many refused webhooks from this address; wait before sending more",
            )
        }
        .into_response();
    }
    let response = next.run(req).await;
    let status = response.status();
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        refusals.refused(uri.path(), source).await;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_source_over_budget_is_held_back_on_that_path_only() {
        let refusals = Refusals::new(Arc::from([]), None);
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        let provider: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..30 {
            assert!(refusals.blocked_until("/webhooks/x/1", attacker).is_none());
            refusals.refused("/webhooks/x/1", attacker).await;
        }
        refusals.refused("/webhooks/x/1", attacker).await;
        assert!(refusals.blocked_until("/webhooks/x/1", attacker).is_some());
        assert!(refusals.blocked_until("/webhooks/x/2", attacker).is_none());
        assert!(refusals.blocked_until("/webhooks/x/1", provider).is_none());
    }
}
