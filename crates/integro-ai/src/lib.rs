//! Integro's LLM providers behind one interface: OpenAI Chat Completions,
//! Anthropic Messages and OpenAI-compatible servers (Ollama, vLLM, …).
//!
//! [`client::AiClient`] sends a [`ChatRequest`] to an [`Endpoint`] with
//! retries (honouring `retry-after`), a circuit breaker per credential and a
//! fallback chain. The provider modules only know their wire format.
//!
//! The HTTP client uses rustls without a built-in crypto provider: the binary
//! installs one (ring) at start-up, tests install it themselves.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod anthropic;
pub mod client;
pub mod error;
pub mod openai;
pub mod retry;

mod wire;

pub use client::{AiClient, Attempt, TestReport};
pub use error::AiError;
pub use retry::RetryPolicy;

/// Which wire format an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    OpenaiCompatible,
}

impl ProviderKind {
    /// The public API's base URL; an OpenAI-compatible server has none (the
    /// base URL must be configured).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::OpenaiCompatible => None,
        }
    }

    /// The serialized name, also used as the `provider` metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenaiCompatible => "openai_compatible",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and with which key to call a provider.
///
/// `base_url`: for OpenAI and compatible servers the API root ending in `/v1`
/// (we POST `{base}/chat/completions`); for Anthropic the host (we POST
/// `{base}/v1/messages`). Trailing slashes are ignored; an empty base URL
/// means the provider's default.
#[derive(Clone)]
pub struct Endpoint {
    /// The breaker key: calls made with one credential share one circuit.
    pub credential_id: String,
    pub provider: ProviderKind,
    pub base_url: String,
    pub api_key: Option<String>,
}

/// Debug without the API key, so an endpoint can be logged safely.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("credential_id", &self.credential_id)
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

/// One completion request, provider-neutral. `system` may be empty (then it
/// is not sent).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_output_tokens: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The model the provider says answered (the requested one if it does
    /// not say).
    pub model: String,
    /// OpenAI `finish_reason`, Anthropic `stop_reason`.
    pub stop_reason: Option<String>,
    /// OpenAI `x-request-id`, Anthropic `request-id`.
    pub request_id: Option<String>,
}
