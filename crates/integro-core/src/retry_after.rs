//! What a server tells a client about trying again: how long to wait
//! (`Retry-After` in seconds or as an HTTP date, RFC 9110, and OpenAI's and
//! Anthropic's `retry-after-ms`) and whether to retry at all
//! (`x-should-retry`). One reading for the channels' provider calls and the
//! AI clients.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// What the provider asks us to wait: `retry-after-ms` (milliseconds), else
/// `retry-after` in seconds, else `retry-after` as an HTTP date (a date in the
/// past gives zero). Garbage, negative or absurd values give `None`.
pub fn from_headers(headers: &HeaderMap) -> Option<Duration> {
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
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
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

/// `from_headers` in whole seconds, rounded up.
pub fn secs_from_headers(headers: &HeaderMap) -> Option<u64> {
    from_headers(headers).map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
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
        assert_eq!(from_headers(&h), Some(Duration::from_millis(1500)));
        let h = headers(&[("retry-after-ms", "12.5")]);
        assert_eq!(from_headers(&h), Some(Duration::from_micros(12_500)));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            from_headers(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            from_headers(&headers(&[("retry-after", " 0.5 ")])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            from_headers(&headers(&[("retry-after", "0")])),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_http_date() {
        let later = SystemTime::now() + Duration::from_secs(120);
        let h = headers(&[("retry-after", &httpdate::fmt_http_date(later))]);
        let d = from_headers(&h).unwrap();
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );

        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(from_headers(&h), Some(Duration::ZERO), "a past date");
    }

    #[test]
    fn retry_after_garbage() {
        assert_eq!(from_headers(&HeaderMap::new()), None);
        for bad in ["soon", "-3", "NaN", "inf", "1e400", "", "Wed, 99 Foo"] {
            assert_eq!(
                from_headers(&headers(&[("retry-after", bad)])),
                None,
                "{bad}"
            );
        }
        // A bad retry-after-ms falls through to retry-after.
        let h = headers(&[("retry-after-ms", "later"), ("retry-after", "2")]);
        assert_eq!(from_headers(&h), Some(Duration::from_secs(2)));
    }

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(
            secs_from_headers(&headers(&[("retry-after", "0.2")])),
            Some(1)
        );
        assert_eq!(
            secs_from_headers(&headers(&[("retry-after", "3")])),
            Some(3)
        );
        let later = SystemTime::now() + Duration::from_secs(60);
        let h = headers(&[("retry-after", &httpdate::fmt_http_date(later))]);
        assert!(secs_from_headers(&h).is_some_and(|s| (58..=60).contains(&s)));
    }

    #[test]
    fn x_should_retry_is_read_when_clear() {
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "FALSE")])),
            Some(false)
        );
        assert_eq!(should_retry(&headers(&[("x-should-retry", "maybe")])), None);
        assert_eq!(should_retry(&HeaderMap::new()), None);
    }
}
