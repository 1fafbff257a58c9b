//! What a job handler answers the job loop: how an attempt ended
//! (`Failure`), and the jobs it leased to this worker (`Leased`).

use std::time::Duration;

use integro_store::conversations::{Conversation, Message};
use integro_store::jobs::Job;

/// A job leased to this worker by the one it just ran (a reply's send),
/// with what it is about.
pub(crate) struct Leased {
    pub job: Job,
    pub message: Message,
    pub conversation: Conversation,
}

/// Why a job attempt did not finish.
pub(crate) enum Failure {
    /// Try again later (after `after`, or the backoff).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// No attempt can succeed; the job is dead.
    Permanent(String),
    /// Not an attempt: come back after this long (open circuit, or waiting
    /// for news of an earlier attempt, said by `note`).
    Postpone {
        after: Duration,
        note: Option<&'static str>,
    },
    /// Another worker holds the job now.
    LeaseLost,
}

impl Failure {
    /// A provider's retryable error: try again after its `Retry-After`, or
    /// the backoff.
    pub fn retry(e: &integro_core::SendError) -> Failure {
        Failure::Retry {
            error: e.to_string(),
            after: e.retry_after_secs.map(Duration::from_secs),
        }
    }
}

impl<E: std::fmt::Display> From<E> for Failure
where
    E: Into<anyhow::Error>,
{
    fn from(e: E) -> Failure {
        Failure::Retry {
            error: e.to_string(),
            after: None,
        }
    }
}
