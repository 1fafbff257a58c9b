//! How long to wait before trying again: exponential backoff with jitter, or
//! what the provider asks for (`retry-after-ms`, `retry-after`), and whether
//! it says to retry at all (`x-should-retry`). Mirrors the official SDKs.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

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

/// What the provider asks us to wait: `retry-after-ms` (milliseconds), else
/// `retry-after` in seconds, else `retry-after` as an HTTP date (a date in the
/// past gives zero). Garbage, negative or absurd values give `None`.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(parse_number) {
        return Some(ms / 1000);
    }
    let value = header_str(headers, RETRY_AFTER.as_str())?;
    if let Some(secs) = parse_number(value) {
        return Some(secs);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `x-should-retry: true|false`, when the provider says explicitly.
pub fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match header_str(headers, "x-should-retry")?
        .to_ascii_lowercase()
        .as_str()
    {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    Some(headers.get(name)?.to_str().ok()?.trim()).filter(|s| !s.is_empty())
}

/// A non-negative decimal number of units (seconds, or milliseconds to be
/// divided by 1000 by the caller), as a `Duration` of that many seconds.
fn parse_number(value: &str) -> Option<Duration> {
    let n: f64 = value.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_milliseconds_win() {
        let h = headers(&[("retry-after-ms", "1500"), ("retry-after", "30")]);
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let h = headers(&[("retry-after-ms", "12.5")]);
        assert_eq!(retry_after(&h), Some(Duration::from_micros(12_500)));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", " 0.5 ")])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0")])),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_http_date() {
        let later = SystemTime::now() + Duration::from_secs(120);
        let h = headers(&[("retry-after", &httpdate::fmt_http_date(later))]);
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );

        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a past date");
    }

    #[test]
    fn retry_after_garbage() {
        assert_eq!(retry_after(&HeaderMap::new()), None);
        for bad in ["soon", "-3", "NaN", "inf", "1e400", "", "Wed, 99 Foo"] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", bad)])),
                None,
                "{bad}"
            );
        }
        // A bad retry-after-ms falls through to retry-after.
        let h = headers(&[("retry-after-ms", "later"), ("retry-after", "2")]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }

    #[test]
    fn should_retry() {
        assert_eq!(
            should_retry_header(&headers(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            should_retry_header(&headers(&[("x-should-retry", "FALSE")])),
            Some(false)
        );
        assert_eq!(
            should_retry_header(&headers(&[("x-should-retry", "maybe")])),
            None
        );
        assert_eq!(should_retry_header(&HeaderMap::new()), None);
    }

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
