//! Conversation memory for the LLM: which recent turns to send.
//!
//! Models bill and limit by tokens, and old turns matter less than recent
//! ones, so the window keeps the newest turns that fit both a message count
//! and a token budget. Token counts are estimated (no tokenizer here): good
//! enough to stay under a budget chosen with some margin.

use serde::{Deserialize, Serialize};

/// Who said a turn. Agents' manual messages count as the bot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Contact,
    Bot,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
    /// When it was sent, in Unix milliseconds.
    pub at_ms: i64,
}

/// Fixed per-message cost of role markers and separators, in tokens.
const MESSAGE_OVERHEAD_TOKENS: usize = 4;

/// An *estimate* of the tokens a message costs: one token per four
/// characters, rounded up, plus 4 for the message's framing. Real
/// tokenizers differ by model and language; budgets should keep a margin.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4) + MESSAGE_OVERHEAD_TOKENS
}

/// The turns to send, oldest first: the last `max_messages` of `history`
/// (oldest first), then the oldest dropped until their estimated tokens
/// total at most `max_tokens`. Turns are never split; the result may be
/// empty (when even the newest turn alone is over budget).
pub fn window(history: &[Turn], max_messages: usize, max_tokens: usize) -> Vec<Turn> {
    let recent = &history[history.len().saturating_sub(max_messages)..];
    // Walk from the newest turn back while the budget holds.
    let mut total = 0usize;
    let mut keep_from = recent.len();
    for (i, turn) in recent.iter().enumerate().rev() {
        let cost = estimate_tokens(&turn.text);
        match total.checked_add(cost) {
            Some(t) if t <= max_tokens => {
                total = t;
                keep_from = i;
            }
            _ => break,
        }
    }
    recent[keep_from..].to_vec()
}

/// Joins consecutive turns of the same speaker with "\n" (keeping the last
/// one's time) and drops leading bot turns: LLM APIs want alternating roles
/// and some (Anthropic's) want the user to speak first.
pub fn merge_consecutive(turns: Vec<Turn>) -> Vec<Turn> {
    let mut out: Vec<Turn> = Vec::with_capacity(turns.len());
    for turn in turns {
        match out.last_mut() {
            None if turn.speaker == Speaker::Bot => {}
            Some(last) if last.speaker == turn.speaker => {
                last.text.push('\n');
                last.text.push_str(&turn.text);
                last.at_ms = turn.at_ms;
            }
            _ => out.push(turn),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(speaker: Speaker, text: &str, at_ms: i64) -> Turn {
        Turn {
            speaker,
            text: text.to_string(),
            at_ms,
        }
    }

    fn history(n: usize) -> Vec<Turn> {
        (0..n)
            .map(|i| {
                let speaker = if i % 2 == 0 {
                    Speaker::Contact
                } else {
                    Speaker::Bot
                };
                t(speaker, &format!("m{i:02}"), i as i64)
            })
            .collect()
    }

    #[test]
    fn estimate() {
        assert_eq!(estimate_tokens(""), 4);
        assert_eq!(estimate_tokens("abcd"), 5);
        assert_eq!(estimate_tokens("abcde"), 6);
        assert_eq!(estimate_tokens("çççç"), 5, "counts characters, not bytes");
    }

    #[test]
    fn window_keeps_last_messages() {
        let h = history(10);
        let w = window(&h, 3, usize::MAX);
        assert_eq!(w, h[7..].to_vec());
        assert_eq!(window(&h, 100, usize::MAX), h);
        assert!(window(&h, 0, usize::MAX).is_empty());
        assert!(window(&[], 5, 100).is_empty());
    }

    #[test]
    fn window_drops_oldest_to_fit_tokens() {
        let h = history(10); // each "mNN" costs 1 + 4 = 5 tokens
        assert_eq!(window(&h, 10, 15), h[7..].to_vec());
        assert_eq!(window(&h, 10, 14), h[8..].to_vec());
        assert_eq!(window(&h, 10, 5), h[9..].to_vec());
        assert!(window(&h, 10, 4).is_empty());
        assert!(window(&h, 10, 0).is_empty());
    }

    #[test]
    fn window_never_skips_a_turn_to_fit_an_older_one() {
        let h = vec![
            t(Speaker::Contact, "hi", 1),
            t(Speaker::Bot, &"x".repeat(400), 2),
            t(Speaker::Contact, "ok", 3),
        ];
        // The long middle turn does not fit: only the newest stays, even
        // though "hi" alone would fit too.
        assert_eq!(window(&h, 10, 20), h[2..].to_vec());
    }

    #[test]
    fn merge_joins_runs_and_drops_leading_bot() {
        let turns = vec![
            t(Speaker::Bot, "welcome", 1),
            t(Speaker::Bot, "anything?", 2),
            t(Speaker::Contact, "hi", 3),
            t(Speaker::Contact, "price?", 4),
            t(Speaker::Bot, "10", 5),
            t(Speaker::Contact, "ok", 6),
            t(Speaker::Contact, "thanks", 7),
        ];
        assert_eq!(
            merge_consecutive(turns),
            vec![
                t(Speaker::Contact, "hi\nprice?", 4),
                t(Speaker::Bot, "10", 5),
                t(Speaker::Contact, "ok\nthanks", 7),
            ]
        );
        assert!(merge_consecutive(vec![]).is_empty());
        assert!(merge_consecutive(vec![t(Speaker::Bot, "x", 1)]).is_empty());
    }
}
