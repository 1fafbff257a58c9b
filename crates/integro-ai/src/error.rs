//! What can go wrong calling a provider, in classes that decide retries and
//! the circuit breaker, and in plain words for the people running the bot.

use std::time::Duration;

/// A failed call. Messages carry the provider's own explanation (shortened),
/// never an API key or a prompt.
///
/// `BadRequest { status: 0, .. }` means the request was refused here and never
/// sent (no messages for Anthropic, no base URL, no API key, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    /// 401/403: the key is wrong, revoked or not allowed.
    #[error("authentication failed: {message}")]
    Auth { message: String },
    /// No quota or credit left (OpenAI 429 `insufficient_quota`, Anthropic
    /// 429 `enforced_spend_limit_reached`). Not retried.
    #[error("quota exhausted: {message}")]
    Quota { message: String },
    /// 404 / `model_not_found` / `not_found_error`.
    #[error("unknown model: {message}")]
    UnknownModel { message: String },
    /// Any other 4xx, or a request refused before sending (`status` 0).
    #[error("bad request (HTTP {status}): {message}")]
    BadRequest { status: u16, message: String },
    /// 429 that may be retried later.
    #[error("rate limited: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// Anthropic 529, or 503.
    #[error("provider overloaded: {message}")]
    Overloaded {
        retry_after: Option<Duration>,
        message: String,
    },
    /// Other 5xx, and 408/409.
    #[error("provider error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// No complete answer within the per-attempt timeout.
    #[error("the provider did not answer in time")]
    Timeout,
    /// No connection, or the connection broke.
    #[error("transport error: {message}")]
    Transport { message: String },
    /// A 2xx answer that cannot be read or has no text.
    #[error("invalid response: {message}")]
    InvalidResponse { message: String },
    /// The circuit breaker for this credential is open; nothing was sent.
    #[error("circuit open: calls with this credential are paused")]
    CircuitOpen,
    /// The outbound URL policy refused the base URL, what its name resolves
    /// to, or a redirect; nothing reached the target.
    #[error("blocked by the outbound URL policy: {message}")]
    Blocked { message: String },
}

impl AiError {
    /// Worth trying again (after a delay).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AiError::RateLimited { .. }
                | AiError::Overloaded { .. }
                | AiError::Server { .. }
                | AiError::Timeout
                | AiError::Transport { .. }
        )
    }

    /// Says the provider or credential is unwell, so it trips the breaker:
    /// the retryable failures, and a rejected key (a revoked key fails every
    /// call until someone fixes it).
    pub fn counts_against_provider(&self) -> bool {
        self.is_retryable() || matches!(self, AiError::Auth { .. })
    }

    /// A stable snake_case code for metrics, logs and APIs.
    pub fn code(&self) -> &'static str {
        match self {
            AiError::Auth { .. } => "auth",
            AiError::Quota { .. } => "quota",
            AiError::UnknownModel { .. } => "unknown_model",
            AiError::BadRequest { .. } => "bad_request",
            AiError::RateLimited { .. } => "rate_limited",
            AiError::Overloaded { .. } => "overloaded",
            AiError::Server { .. } => "server_error",
            AiError::Timeout => "timeout",
            AiError::Transport { .. } => "transport",
            AiError::InvalidResponse { .. } => "invalid_response",
            AiError::CircuitOpen => "circuit_open",
            AiError::Blocked { .. } => "blocked_by_policy",
        }
    }

    /// The coarse class a credential test reports: `unauthorized`,
    /// `http_error` (any other error status), `timeout`, `unreachable`,
    /// `blocked_by_policy`, `invalid_response`, `not_sent` (refused here),
    /// `circuit_open`.
    pub fn reason(&self) -> &'static str {
        match self {
            AiError::Auth { .. } => "unauthorized",
            AiError::BadRequest { status: 0, .. } => "not_sent",
            AiError::Quota { .. }
            | AiError::UnknownModel { .. }
            | AiError::BadRequest { .. }
            | AiError::RateLimited { .. }
            | AiError::Overloaded { .. }
            | AiError::Server { .. } => "http_error",
            AiError::Timeout => "timeout",
            AiError::Transport { .. } => "unreachable",
            AiError::InvalidResponse { .. } => "invalid_response",
            AiError::CircuitOpen => "circuit_open",
            AiError::Blocked { .. } => "blocked_by_policy",
        }
    }

    /// The error in plain words without anything the target answered (its
    /// messages, its body): what a tenant-facing test may show about an
    /// arbitrary host. Only messages written here (connection failures,
    /// requests refused before sending) are kept.
    pub fn summary(&self) -> String {
        match self {
            AiError::Auth { .. } => "the API key was rejected".into(),
            AiError::Quota { .. } => "the account has no quota or credit left".into(),
            AiError::UnknownModel { .. } => {
                "the model does not exist or is not available to this key".into()
            }
            AiError::BadRequest { status: 0, .. }
            | AiError::Transport { .. }
            | AiError::Timeout
            | AiError::CircuitOpen
            | AiError::Blocked { .. } => self.plain_words(),
            AiError::BadRequest { status: 404, .. } => {
                "nothing was found at the base URL; check it".into()
            }
            AiError::BadRequest { .. } => "the provider refused the request".into(),
            AiError::RateLimited { retry_after, .. } => format!(
                "the provider is rate limiting us{}",
                wait_hint(*retry_after)
            ),
            AiError::Overloaded { retry_after, .. } => {
                format!("the provider is overloaded{}", wait_hint(*retry_after))
            }
            AiError::Server { .. } => "the provider failed to answer".into(),
            AiError::InvalidResponse { .. } => {
                "the answer is not one this provider's API gives (check the base URL and the \
                 provider)"
                    .into()
            }
        }
    }

    /// The error for the people running the bot, in plain words.
    pub fn plain_words(&self) -> String {
        match self {
            AiError::Auth { message } => format!("the API key was rejected: {message}"),
            AiError::Quota { message } => {
                format!("the account has no quota or credit left: {message}")
            }
            AiError::UnknownModel { message } => {
                format!("the model does not exist or is not available to this key: {message}")
            }
            AiError::BadRequest { status: 0, message } => {
                format!("the request was not sent: {message}")
            }
            AiError::BadRequest { status, message } => {
                format!("the provider refused the request (HTTP {status}): {message}")
            }
            AiError::RateLimited {
                retry_after,
                message,
            } => format!(
                "the provider is rate limiting us{}: {message}",
                wait_hint(*retry_after)
            ),
            AiError::Overloaded {
                retry_after,
                message,
            } => format!(
                "the provider is overloaded{}: {message}",
                wait_hint(*retry_after)
            ),
            AiError::Server { status, message } => {
                format!("the provider failed to answer (HTTP {status}): {message}")
            }
            AiError::Timeout => "the provider did not answer in time".to_string(),
            AiError::Transport { message } => message.clone(),
            AiError::InvalidResponse { message } => {
                format!("the provider's answer could not be used: {message}")
            }
            AiError::CircuitOpen => "calls with this credential are paused after repeated \
                                     failures; they resume by themselves after a short pause"
                .to_string(),
            AiError::Blocked { message } => {
                format!("the outbound URL policy refused the request: {message}")
            }
        }
    }
}

fn wait_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) if !d.is_zero() => format!(" (it asks to wait {:.1} s)", d.as_secs_f64()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_classes() {
        let auth = AiError::Auth {
            message: "Invalid key (HTTP 401)".into(),
        };
        assert_eq!(auth.code(), "auth");
        assert!(!auth.is_retryable());
        assert!(auth.counts_against_provider());
        assert_eq!(
            auth.plain_words(),
            "the API key was rejected: Invalid key (HTTP 401)"
        );

        let quota = AiError::Quota {
            message: "no".into(),
        };
        assert!(!quota.is_retryable() && !quota.counts_against_provider());

        for e in [
            AiError::RateLimited {
                retry_after: None,
                message: String::new(),
            },
            AiError::Overloaded {
                retry_after: Some(Duration::from_secs(2)),
                message: String::new(),
            },
            AiError::Server {
                status: 500,
                message: String::new(),
            },
            AiError::Timeout,
            AiError::Transport {
                message: String::new(),
            },
        ] {
            assert!(e.is_retryable(), "{e:?}");
            assert!(e.counts_against_provider(), "{e:?}");
        }
        for e in [
            AiError::UnknownModel {
                message: String::new(),
            },
            AiError::BadRequest {
                status: 400,
                message: String::new(),
            },
            AiError::InvalidResponse {
                message: String::new(),
            },
            AiError::CircuitOpen,
            AiError::Blocked {
                message: String::new(),
            },
        ] {
            assert!(!e.is_retryable(), "{e:?}");
            assert!(!e.counts_against_provider(), "{e:?}");
        }
        assert_eq!(
            AiError::Overloaded {
                retry_after: Some(Duration::from_secs(2)),
                message: "busy".into()
            }
            .plain_words(),
            "the provider is overloaded (it asks to wait 2.0 s): busy"
        );
        assert_eq!(
            AiError::BadRequest {
                status: 0,
                message: "no base URL".into()
            }
            .plain_words(),
            "the request was not sent: no base URL"
        );
        assert_eq!(
            AiError::Server {
                status: 502,
                message: String::new()
            }
            .code(),
            "server_error"
        );
    }

    #[test]
    fn summaries_leave_out_what_the_target_said() {
        let said = "<html>internal admin panel: secret</html>";
        for e in [
            AiError::Auth {
                message: said.into(),
            },
            AiError::Quota {
                message: said.into(),
            },
            AiError::UnknownModel {
                message: said.into(),
            },
            AiError::BadRequest {
                status: 404,
                message: said.into(),
            },
            AiError::BadRequest {
                status: 422,
                message: said.into(),
            },
            AiError::RateLimited {
                retry_after: None,
                message: said.into(),
            },
            AiError::Overloaded {
                retry_after: None,
                message: said.into(),
            },
            AiError::Server {
                status: 500,
                message: said.into(),
            },
            AiError::InvalidResponse {
                message: said.into(),
            },
        ] {
            assert!(!e.summary().contains("secret"), "{e:?}");
            assert!(!e.reason().is_empty());
        }
        assert_eq!(
            AiError::Auth {
                message: said.into()
            }
            .reason(),
            "unauthorized"
        );
        let blocked = AiError::Blocked {
            message: "10.0.0.1 is a private address".into(),
        };
        assert_eq!(blocked.code(), "blocked_by_policy");
        assert_eq!(blocked.reason(), "blocked_by_policy");
        assert!(blocked.summary().contains("10.0.0.1 is a private address"));
    }
}
