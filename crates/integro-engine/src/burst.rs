//! Coalescing bursts: people send "hi" / "I have a question" / "about
//! prices" as three messages in a few seconds. Waiting a short window after
//! the first unanswered message and answering them together gives one good
//! reply instead of three confused ones.

/// What to do about the unanswered messages of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coalesce {
    /// Wait for more messages; decide again at `until_ms`.
    Wait { until_ms: i64 },
    /// Answer all unanswered messages now.
    AnswerNow,
}

/// Waits until `first_unanswered_at_ms + window_ms` if `now_ms` is earlier,
/// else answers now. A window of 0 (or less) always answers now.
pub fn coalesce(first_unanswered_at_ms: i64, now_ms: i64, window_ms: i64) -> Coalesce {
    if window_ms <= 0 {
        return Coalesce::AnswerNow;
    }
    let until_ms = first_unanswered_at_ms.saturating_add(window_ms);
    if now_ms < until_ms {
        Coalesce::Wait { until_ms }
    } else {
        Coalesce::AnswerNow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_inside_the_window() {
        assert_eq!(
            coalesce(1_000, 1_000, 3_000),
            Coalesce::Wait { until_ms: 4_000 }
        );
        assert_eq!(
            coalesce(1_000, 3_999, 3_000),
            Coalesce::Wait { until_ms: 4_000 }
        );
    }

    #[test]
    fn answers_at_and_after_the_deadline() {
        assert_eq!(coalesce(1_000, 4_000, 3_000), Coalesce::AnswerNow);
        assert_eq!(coalesce(1_000, 90_000, 3_000), Coalesce::AnswerNow);
    }

    #[test]
    fn zero_or_negative_window_answers_now() {
        assert_eq!(coalesce(1_000, 1_000, 0), Coalesce::AnswerNow);
        assert_eq!(coalesce(1_000, 0, -5), Coalesce::AnswerNow);
    }

    #[test]
    fn clock_skew_and_extremes() {
        // A message stamped in the future still waits only one window.
        assert_eq!(
            coalesce(10_000, 1_000, 2_000),
            Coalesce::Wait { until_ms: 12_000 }
        );
        assert_eq!(
            coalesce(i64::MAX - 1, 0, 10),
            Coalesce::Wait { until_ms: i64::MAX }
        );
        assert_eq!(coalesce(i64::MIN, 0, 10), Coalesce::AnswerNow);
    }
}
