//! OpenAI Chat Completions and OpenAI-compatible servers, played by a local
//! HTTP server: exact requests, answers, errors and retries.

mod common;

use std::time::{Duration, Instant};

use common::*;
use integro_ai::AiError;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn completion(text: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1718203449,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text, "refusal": null}}],
        "usage": {"prompt_tokens": 57, "completion_tokens": 17, "total_tokens": 74,
                  "prompt_tokens_details": {"cached_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}}
    })
}

fn error(message: &str, kind: &str, code: Option<&str>) -> serde_json::Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn chat_mock() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/v1/chat/completions"))
}

#[tokio::test]
async fn openai_success_sends_the_exact_request_and_reads_text_and_usage() {
    let server = MockServer::start().await;
    chat_mock()
        .and(header("authorization", "Bearer sk-test-123"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a concierge bot."},
                {"role": "user", "content": "Book a table for 2"},
                {"role": "assistant", "content": "For when?"},
                {"role": "user", "content": "Tonight at 8"}
            ],
            "temperature": 0.7,
            "max_completion_tokens": 512
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-request-id", "req_abc")
                .set_body_json(completion("Booked for 8 pm.")),
        )
        .expect(1)
        .mount(&server)
        .await;

    let answer = client()
        .chat(&openai(&server, "cred-1"), &request("gpt-4o-mini"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(answer.text, "Booked for 8 pm.");
    assert_eq!(answer.input_tokens, 57);
    assert_eq!(answer.output_tokens, 17);
    assert_eq!(answer.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(answer.stop_reason.as_deref(), Some("stop"));
    assert_eq!(answer.request_id.as_deref(), Some("req_abc"));
}

#[tokio::test]
async fn compatible_server_without_key_or_usage() {
    let server = MockServer::start().await;
    let mut req = request("llama3.2");
    req.temperature = None;
    chat_mock()
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "You are a concierge bot."},
                {"role": "user", "content": "Book a table for 2"},
                {"role": "assistant", "content": "For when?"},
                {"role": "user", "content": "Tonight at 8"}
            ],
            "max_tokens": 512
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant", "content": "Sure."}, "finish_reason": "stop"}]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let answer = client()
        .chat(&compatible(&server, None), &req, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(answer.text, "Sure.");
    assert_eq!((answer.input_tokens, answer.output_tokens), (0, 0));
    assert_eq!(
        answer.model, "llama3.2",
        "the requested model when none is given"
    );
    assert_eq!(answer.request_id, None);

    let received = server.received_requests().await.unwrap();
    assert!(
        received[0].headers.get("authorization").is_none(),
        "no Authorization header without a key"
    );
}

#[tokio::test]
async fn compatible_server_with_key_sends_bearer() {
    let server = MockServer::start().await;
    chat_mock()
        .and(header("authorization", "Bearer vllm-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .expect(1)
        .mount(&server)
        .await;
    let answer = client()
        .chat(
            &compatible(&server, Some("vllm-token")),
            &request("m"),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(answer.text, "ok");
}

#[tokio::test]
async fn rate_limit_with_retry_after_then_success() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(
            ResponseTemplate::new(429)
                // Thirty seconds, capped at 4 × max_delay = 200 ms.
                .insert_header("retry-after", "30")
                .set_body_json(error(
                    "Rate limit reached",
                    "requests",
                    Some("rate_limit_exceeded"),
                )),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    chat_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("after the wait")))
        .expect(1)
        .mount(&server)
        .await;

    let started = Instant::now();
    let answer = client()
        .chat(&openai(&server, "c"), &request("gpt-4o-mini"), TIMEOUT)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(answer.text, "after the wait");
    assert_eq!(hits(&server).await, 2);
    // Far below the 30 s asked for: room for a loaded runner.
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(10),
        "retry-after honoured and capped: {waited:?}"
    );
}

#[tokio::test]
async fn retry_after_ms_is_honoured() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after-ms", "120")
                .set_body_json(error("slow down", "requests", None)),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    chat_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .mount(&server)
        .await;
    let started = Instant::now();
    client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(115));
}

#[tokio::test]
async fn insufficient_quota_is_not_retried() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(ResponseTemplate::new(429).set_body_json(error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            Some("insufficient_quota"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, AiError::Quota { .. }), "{err:?}");
    assert_eq!(err.code(), "quota");
    assert!(err.plain_words().starts_with("the account has no quota"));
    assert_eq!(hits(&server).await, 1);
}

#[tokio::test]
async fn bad_key_is_auth_and_not_retried() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(ResponseTemplate::new(401).set_body_json(error(
            "Incorrect API key provided: sk-test***123.",
            "invalid_request_error",
            Some("invalid_api_key"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AiError::Auth {
            message: "Incorrect API key provided: sk-test***123. (invalid_api_key, HTTP 401)"
                .into()
        }
    );
    assert_eq!(
        err.plain_words(),
        "the API key was rejected: Incorrect API key provided: sk-test***123. (invalid_api_key, HTTP 401)"
    );
    assert_eq!(hits(&server).await, 1);
}

#[tokio::test]
async fn unknown_model() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(ResponseTemplate::new(404).set_body_json(error(
            "The model `gpt-9` does not exist or you do not have access to it.",
            "invalid_request_error",
            Some("model_not_found"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&openai(&server, "c"), &request("gpt-9"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, AiError::UnknownModel { .. }), "{err:?}");
    assert!(err.plain_words().starts_with(
        "the model does not exist or is not available to this key: The model `gpt-9`"
    ));
}

#[tokio::test]
async fn a_404_without_an_error_body_points_at_the_base_url() {
    let server = MockServer::start().await;
    // Nothing mounted: every path is a plain 404.
    let mut endpoint = compatible(&server, None);
    endpoint.base_url = server.uri(); // forgot the /v1
    let err = client()
        .chat(&endpoint, &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    match &err {
        AiError::BadRequest {
            status: 404,
            message,
        } => {
            assert!(message.contains("/chat/completions"), "{message}");
            assert!(message.contains("check the base URL"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_error_then_success() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(ResponseTemplate::new(500).set_body_json(error(
            "The server had an error while processing your request.",
            "server_error",
            None,
        )))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    chat_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("fine now")))
        .expect(1)
        .mount(&server)
        .await;
    let answer = client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(answer.text, "fine now");
}

#[tokio::test]
async fn x_should_retry_false_stops_retries() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("x-should-retry", "false")
                .set_body_json(error("boom", "server_error", None)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AiError::Server { status: 500, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn x_should_retry_true_retries_even_a_bad_request() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("x-should-retry", "true")
                .set_body_json(error("try again", "invalid_request_error", None)),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    chat_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .mount(&server)
        .await;
    client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(hits(&server).await, 2);
}

#[tokio::test]
async fn a_slow_provider_times_out_on_every_attempt() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("too late"))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = client()
        .chat(
            &openai(&server, "c"),
            &request("m"),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert_eq!(err, AiError::Timeout);
    assert_eq!(err.plain_words(), "the provider did not answer in time");
    assert_eq!(hits(&server).await, 3, "max_retries + 1 attempts");
    // Three attempts cut at 100 ms each, well before one answer (10 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn garbage_success_body_is_an_invalid_response() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>502 Bad Gateway</html>"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    match &err {
        AiError::InvalidResponse { message } => {
            assert!(message.contains("not valid JSON"), "{message}");
            assert!(
                message.contains("<html>502 Bad Gateway</html>"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn null_content_with_refusal_is_an_invalid_response() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AiError::InvalidResponse {
            message: "the model refused: I can't help with that.".into()
        }
    );
}

#[tokio::test]
async fn a_redirect_is_reported_not_followed() {
    let server = MockServer::start().await;
    chat_mock()
        .respond_with(
            ResponseTemplate::new(301)
                .insert_header("location", "https://elsewhere.test/v1/chat/completions"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client()
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    match &err {
        AiError::InvalidResponse { message } => {
            assert!(message.contains("https://elsewhere.test"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
