//! Shared helpers: a client with fast retries, endpoints and requests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use integro_ai::{
    AiClient, ChatMessage, ChatRequest, ChatRole, Endpoint, ProviderKind, RetryPolicy,
};
use integro_core::breaker::CircuitBreakers;
use wiremock::MockServer;

pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Two retries, 10 ms base, 50 ms cap (so `retry-after` is capped at 200 ms).
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// The mock servers listen on 127.0.0.1, which the outbound policy refuses
/// unless excepted.
pub fn client_with(policy: RetryPolicy, breakers: Arc<CircuitBreakers>) -> AiClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outbound = integro_core::outbound::OutboundPolicy::allowing(["127.0.0.1:*"]).unwrap();
    AiClient::with_outbound(outbound, policy, breakers)
}

/// Fast retries and a breaker that does not open during a test.
pub fn client() -> AiClient {
    client_with(
        fast_policy(),
        Arc::new(CircuitBreakers::new(100, Duration::from_secs(60))),
    )
}

pub fn openai(server: &MockServer, credential: &str) -> Endpoint {
    Endpoint {
        credential_id: credential.into(),
        provider: ProviderKind::Openai,
        // A trailing slash must not matter.
        base_url: format!("{}/v1/", server.uri()),
        api_key: Some("sk-test-123".into()),
    }
}

pub fn compatible(server: &MockServer, key: Option<&str>) -> Endpoint {
    Endpoint {
        credential_id: "local".into(),
        provider: ProviderKind::OpenaiCompatible,
        base_url: format!("{}/v1", server.uri()),
        api_key: key.map(str::to_string),
    }
}

pub fn anthropic(server: &MockServer, credential: &str) -> Endpoint {
    Endpoint {
        credential_id: credential.into(),
        provider: ProviderKind::Anthropic,
        base_url: server.uri(),
        api_key: Some("sk-ant-test".into()),
    }
}

pub fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        system: "You are a concierge bot.".into(),
        messages: vec![
            ChatMessage {
                role: ChatRole::User,
                content: "Book a table for 2".into(),
            },
            ChatMessage {
                role: ChatRole::Assistant,
                content: "For when?".into(),
            },
            ChatMessage {
                role: ChatRole::User,
                content: "Tonight at 8".into(),
            },
        ],
        temperature: Some(0.7),
        max_output_tokens: 512,
    }
}

/// How many requests the server got.
pub async fn hits(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}
