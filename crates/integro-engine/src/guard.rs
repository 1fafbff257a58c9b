//! Per-contact rate limiting: a contact (or a bot on the other side)
//! flooding a conversation must not make us flood the LLM and the channel
//! back. Over the limit we say so once per window, then stay silent.

use serde::{Deserialize, Serialize};

/// At most `max_messages` inbound messages per contact every `per_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub max_messages: u32,
    pub per_ms: i64,
}

impl Default for RateLimit {
    /// 20 messages per minute.
    fn default() -> Self {
        RateLimit {
            max_messages: 20,
            per_ms: 60_000,
        }
    }
}

/// What to do with an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the limit: process normally.
    Allow,
    /// Over the limit for the first time in this window: send the
    /// "slow down" notice, do not answer the message.
    Notice,
    /// Over the limit and already noticed: drop silently.
    Silent,
}

/// `inbound_in_window` counts the current message too. Up to
/// `max_messages` is allowed; above it, the first time in the window gets
/// a notice and later messages get silence. (A limit of 0 allows nothing.)
pub fn rate_verdict(
    limit: &RateLimit,
    inbound_in_window: u32,
    notice_sent_in_window: bool,
) -> RateVerdict {
    if inbound_in_window <= limit.max_messages {
        RateVerdict::Allow
    } else if notice_sent_in_window {
        RateVerdict::Silent
    } else {
        RateVerdict::Notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_twenty_per_minute() {
        assert_eq!(
            RateLimit::default(),
            RateLimit {
                max_messages: 20,
                per_ms: 60_000
            }
        );
    }

    #[test]
    fn verdicts() {
        let l = RateLimit::default();
        assert_eq!(rate_verdict(&l, 1, false), RateVerdict::Allow);
        assert_eq!(rate_verdict(&l, 20, false), RateVerdict::Allow);
        assert_eq!(rate_verdict(&l, 20, true), RateVerdict::Allow);
        assert_eq!(rate_verdict(&l, 21, false), RateVerdict::Notice);
        assert_eq!(rate_verdict(&l, 21, true), RateVerdict::Silent);
        assert_eq!(rate_verdict(&l, u32::MAX, true), RateVerdict::Silent);
    }

    #[test]
    fn zero_limit_allows_nothing() {
        let l = RateLimit {
            max_messages: 0,
            per_ms: 1_000,
        };
        assert_eq!(rate_verdict(&l, 1, false), RateVerdict::Notice);
        assert_eq!(rate_verdict(&l, 0, false), RateVerdict::Allow);
    }

    #[test]
    fn serde_round_trip() {
        let l = RateLimit::default();
        let json = serde_json::to_value(l).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"max_messages": 20, "per_ms": 60000})
        );
        assert_eq!(serde_json::from_value::<RateLimit>(json).unwrap(), l);
    }
}
