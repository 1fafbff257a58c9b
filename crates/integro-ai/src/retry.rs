//! How long to wait before trying again: exponential backoff with jitter,
//! unless the provider says (`integro_core::retry_after`). Mirrors the
//! official SDKs.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` calls at most).
    pub max_retries: u32,
    /// The backoff before the first retry (before jitter).
    pub base_delay: Duration,
    /// The longest backoff; a provider's `retry-after` is honoured up to
    /// four times this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The longest wait a provider's `retry-after` can impose on us.
    pub fn max_retry_after(&self) -> Duration {
        self.max_delay.saturating_mul(4)
    }
}

/// The wait before retry number `attempt + 1` (`attempt` 0 is the first
/// retry): `base_delay × 2^attempt`, capped at `max_delay`, with equal jitter
/// (between half and all of it), so waits never collapse to zero.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(31));
    let ceiling = policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay);
    let half = ceiling / 2;
    half + (ceiling - half).mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_bounds() {
        let p = RetryPolicy::default();
        for _ in 0..200 {
            for attempt in 0..40 {
                let ceiling =
                    (p.base_delay * 2u32.saturating_pow(attempt.min(31))).min(p.max_delay);
                let d = backoff(&p, attempt);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
        assert!(backoff(&p, 0) <= Duration::from_millis(500));
        assert!(backoff(&p, 0) >= Duration::from_millis(250));
        assert!(backoff(&p, 10) >= Duration::from_secs(4));
        assert!(backoff(&p, u32::MAX) <= Duration::from_secs(8));
        assert_eq!(p.max_retry_after(), Duration::from_secs(32));
    }
}
