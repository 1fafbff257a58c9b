//! Anthropic Messages, played by a local HTTP server: exact requests,
//! answers, errors and retries.

mod common;

use common::*;
use integro_ai::AiError;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn message(text: &str) -> serde_json::Value {
    json!({
        "id": "msg_012899dyMDyCX4FgMNNbao8k", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 30}
    })
}

fn error(kind: &str, message: &str) -> serde_json::Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011"})
}

fn messages_mock() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/v1/messages"))
}

#[tokio::test]
async fn anthropic_success_sends_the_exact_request() {
    let server = MockServer::start().await;
    messages_mock()
        .and(header("x-api-key", "sk-ant-test"))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 512,
            "system": "You are a concierge bot.",
            "messages": [
                {"role": "user", "content": "Book a table for 2"},
                {"role": "assistant", "content": "For when?"},
                {"role": "user", "content": "Tonight at 8"}
            ],
            "temperature": 0.7
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("request-id", "req_018EeWyXxfu5pfWkrYcMdjWG")
                .set_body_json(json!({
                    "id": "msg_1", "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [{"type": "text", "text": "Booked "}, {"type": "text", "text": "for 8 pm."}],
                    "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": {"input_tokens": 21, "output_tokens": 9, "cache_read_input_tokens": 0}
                })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let answer = client()
        .chat(
            &anthropic(&server, "ant-1"),
            &request("claude-sonnet-4-5"),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(answer.text, "Booked for 8 pm.");
    assert_eq!((answer.input_tokens, answer.output_tokens), (21, 9));
    assert_eq!(answer.model, "claude-sonnet-4-5-20250929");
    assert_eq!(answer.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(
        answer.request_id.as_deref(),
        Some("req_018EeWyXxfu5pfWkrYcMdjWG")
    );

    let received = server.received_requests().await.unwrap();
    assert!(received[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn empty_system_and_temperature_are_left_out() {
    let server = MockServer::start().await;
    let mut req = request("claude-haiku-4-5");
    req.system = String::new();
    req.temperature = None;
    req.messages.truncate(1);
    messages_mock()
        .and(body_json(json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 512,
            "messages": [{"role": "user", "content": "Book a table for 2"}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(message("Sure.")))
        .expect(1)
        .mount(&server)
        .await;
    let answer = client()
        .chat(&anthropic(&server, "a"), &req, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(answer.text, "Sure.");
}

#[tokio::test]
async fn empty_messages_are_refused_without_calling() {
    let server = MockServer::start().await;
    messages_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(message("?")))
        .expect(0)
        .mount(&server)
        .await;
    let mut req = request("claude-haiku-4-5");
    req.messages.clear();
    let err = client()
        .chat(&anthropic(&server, "a"), &req, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AiError::BadRequest { status: 0, .. }),
        "{err:?}"
    );
    assert!(err.plain_words().starts_with("the request was not sent"));
}

#[tokio::test]
async fn overloaded_every_time_gives_up_after_max_retries() {
    let server = MockServer::start().await;
    messages_mock()
        .respond_with(
            ResponseTemplate::new(529).set_body_json(error("overloaded_error", "Overloaded")),
        )
        .expect(3)
        .mount(&server)
        .await;
    let err = client()
        .chat(
            &anthropic(&server, "a"),
            &request("claude-sonnet-4-5"),
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AiError::Overloaded {
            retry_after: None,
            message: "Overloaded (overloaded_error, HTTP 529)".into()
        }
    );
    assert_eq!(err.code(), "overloaded");
    assert!(err.plain_words().starts_with("the provider is overloaded"));
    assert_eq!(hits(&server).await, 3, "max_retries + 1 calls");
}

#[tokio::test]
async fn spend_limit_is_quota_and_not_retried() {
    let server = MockServer::start().await;
    messages_mock()
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "Your workspace reached its spend limit.",
                      "details": {"error_code": "enforced_spend_limit_reached"}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&anthropic(&server, "a"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, AiError::Quota { .. }), "{err:?}");
}

#[tokio::test]
async fn rate_limit_then_success() {
    let server = MockServer::start().await;
    messages_mock()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(error(
                    "rate_limit_error",
                    "Number of requests has exceeded your rate limit",
                )),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    messages_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(message("ok")))
        .expect(1)
        .mount(&server)
        .await;
    let answer = client()
        .chat(&anthropic(&server, "a"), &request("m"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(answer.text, "ok");
}

#[tokio::test]
async fn bad_key_is_auth_and_not_retried() {
    let server = MockServer::start().await;
    messages_mock()
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(error("authentication_error", "invalid x-api-key")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&anthropic(&server, "a"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        err.plain_words(),
        "the API key was rejected: invalid x-api-key (authentication_error, HTTP 401)"
    );
}

#[tokio::test]
async fn unknown_model() {
    let server = MockServer::start().await;
    messages_mock()
        .respond_with(
            ResponseTemplate::new(404).set_body_json(error("not_found_error", "model: claude-9")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&anthropic(&server, "a"), &request("claude-9"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, AiError::UnknownModel { .. }), "{err:?}");
}

#[tokio::test]
async fn tool_use_only_is_an_invalid_response() {
    let server = MockServer::start().await;
    messages_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "message", "model": "m",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "book", "input": {}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&anthropic(&server, "a"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AiError::InvalidResponse {
            message: "the answer has no text (stop_reason: tool_use)".into()
        }
    );
}
