//! Who is answering a conversation: the bot, a human agent, or nobody
//! (closed). One transition function keeps the API, the worker and the
//! rules agreeing on what is allowed, with errors a person can read.

use serde::{Deserialize, Serialize};

/// Who handles a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    /// The bot answers.
    Bot,
    /// A human agent answers; the bot stays quiet.
    Human,
    /// Finished.
    Closed,
}

impl ConversationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationState::Bot => "bot",
            ConversationState::Human => "human",
            ConversationState::Closed => "closed",
        }
    }

    /// The state as stored; anything unknown reads as `bot`.
    pub fn from_stored(s: &str) -> ConversationState {
        match s {
            "human" => ConversationState::Human,
            "closed" => ConversationState::Closed,
            _ => ConversationState::Bot,
        }
    }
}

/// Something that changes who handles a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// A rule's handoff action fired.
    RuleHandoff,
    /// An agent or integration asked for a handoff through the API.
    ApiHandoff,
    /// An agent sent a message by hand.
    AgentMessage,
    /// Give the conversation back to the bot.
    Resume,
    /// The human handoff timed out without activity.
    InactivityTimeout,
    Close,
    Reopen,
}

/// A transition that is not allowed from the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    #[error("the conversation is already with the bot")]
    AlreadyWithBot,
    #[error("the conversation is already with a human")]
    AlreadyWithHuman,
    #[error("the conversation is not with a human, so there is nothing to time out")]
    NotWithHuman,
    #[error("the conversation is not closed, so it cannot be reopened")]
    NotClosed,
    #[error("the conversation is closed")]
    Closed,
}

/// The state after applying `t` to `from`, or why that is not allowed.
///
/// Bot → Human on a handoff or an agent's message; Human → Bot on resume
/// or inactivity timeout; an agent's message keeps Human; any open state
/// can close; only Reopen leaves Closed, back to the bot.
pub fn next_state(
    from: ConversationState,
    t: Transition,
) -> Result<ConversationState, HandoffError> {
    use ConversationState::{Bot, Closed, Human};
    use Transition::*;
    match (from, t) {
        (Closed, Reopen) => Ok(Bot),
        (Closed, _) => Err(HandoffError::Closed),
        (_, Close) => Ok(Closed),
        (_, Reopen) => Err(HandoffError::NotClosed),
        (Bot, RuleHandoff | ApiHandoff | AgentMessage) => Ok(Human),
        (Bot, Resume) => Err(HandoffError::AlreadyWithBot),
        (Bot, InactivityTimeout) => Err(HandoffError::NotWithHuman),
        (Human, AgentMessage) => Ok(Human),
        (Human, RuleHandoff | ApiHandoff) => Err(HandoffError::AlreadyWithHuman),
        (Human, Resume | InactivityTimeout) => Ok(Bot),
    }
}

/// Whether a human handoff has timed out: the conversation is with a
/// human, a timeout is configured (a negative one counts as none), and at
/// least `timeout_ms` have passed since the handoff.
pub fn handoff_expired(
    state: ConversationState,
    handed_off_at_ms: i64,
    now_ms: i64,
    timeout_ms: Option<i64>,
) -> bool {
    match (state, timeout_ms) {
        (ConversationState::Human, Some(timeout)) if timeout >= 0 => {
            now_ms.saturating_sub(handed_off_at_ms) >= timeout
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::ConversationState::*;
    use super::Transition::*;
    use super::*;

    const ALL: [Transition; 7] = [
        RuleHandoff,
        ApiHandoff,
        AgentMessage,
        Resume,
        InactivityTimeout,
        Close,
        Reopen,
    ];

    #[test]
    fn from_bot() {
        assert_eq!(next_state(Bot, RuleHandoff), Ok(Human));
        assert_eq!(next_state(Bot, ApiHandoff), Ok(Human));
        assert_eq!(next_state(Bot, AgentMessage), Ok(Human));
        assert_eq!(next_state(Bot, Resume), Err(HandoffError::AlreadyWithBot));
        assert_eq!(
            next_state(Bot, InactivityTimeout),
            Err(HandoffError::NotWithHuman)
        );
        assert_eq!(next_state(Bot, Close), Ok(Closed));
        assert_eq!(next_state(Bot, Reopen), Err(HandoffError::NotClosed));
    }

    #[test]
    fn from_human() {
        assert_eq!(
            next_state(Human, RuleHandoff),
            Err(HandoffError::AlreadyWithHuman)
        );
        assert_eq!(
            next_state(Human, ApiHandoff),
            Err(HandoffError::AlreadyWithHuman)
        );
        assert_eq!(next_state(Human, AgentMessage), Ok(Human));
        assert_eq!(next_state(Human, Resume), Ok(Bot));
        assert_eq!(next_state(Human, InactivityTimeout), Ok(Bot));
        assert_eq!(next_state(Human, Close), Ok(Closed));
        assert_eq!(next_state(Human, Reopen), Err(HandoffError::NotClosed));
    }

    #[test]
    fn from_closed() {
        for t in ALL {
            let expected = if t == Reopen {
                Ok(Bot)
            } else {
                Err(HandoffError::Closed)
            };
            assert_eq!(next_state(Closed, t), expected, "{t:?}");
        }
    }

    #[test]
    fn error_messages_are_sentences() {
        assert_eq!(
            HandoffError::AlreadyWithBot.to_string(),
            "the conversation is already with the bot"
        );
        assert_eq!(
            HandoffError::AlreadyWithHuman.to_string(),
            "the conversation is already with a human"
        );
        assert_eq!(
            HandoffError::Closed.to_string(),
            "the conversation is closed"
        );
    }

    #[test]
    fn expiry() {
        assert!(handoff_expired(Human, 1_000, 61_000, Some(60_000)));
        assert!(handoff_expired(Human, 1_000, 99_000, Some(60_000)));
        assert!(!handoff_expired(Human, 1_000, 60_999, Some(60_000)));
        assert!(!handoff_expired(Human, 1_000, 99_000, None));
        assert!(!handoff_expired(Human, 1_000, 99_000, Some(-1)));
        assert!(handoff_expired(Human, 1_000, 1_000, Some(0)));
        assert!(!handoff_expired(Bot, 1_000, 99_000, Some(60_000)));
        assert!(!handoff_expired(Closed, 1_000, 99_000, Some(60_000)));
        assert!(handoff_expired(Human, i64::MIN, i64::MAX, Some(i64::MAX)));
    }

    #[test]
    fn serde_names() {
        assert_eq!(
            serde_json::to_value(InactivityTimeout).unwrap(),
            "inactivity_timeout"
        );
        assert_eq!(serde_json::to_value(Human).unwrap(), "human");
    }
}
