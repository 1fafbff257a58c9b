//! The circuit breaker, the fallback chain, credential tests and connection
//! failures.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use integro_ai::{AiError, Attempt, RetryPolicy};
use integro_core::breaker::CircuitBreakers;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn completion(text: &str) -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
           "message": {"role": "assistant", "content": text}}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
}

fn no_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 0,
        ..fast_policy()
    }
}

#[tokio::test]
async fn breaker_opens_after_the_threshold_and_fallback_answers() {
    let primary = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"message": "down", "type": "server_error"}})),
        )
        .mount(&primary)
        .await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "claude-haiku-4-5", "content": [{"type": "text", "text": "from the fallback"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 3}
        })))
        .expect(1)
        .mount(&secondary)
        .await;

    // Threshold 2; each call makes 2 attempts (1 retry) and counts once.
    let policy = RetryPolicy {
        max_retries: 1,
        ..fast_policy()
    };
    let ai = client_with(
        policy,
        Arc::new(CircuitBreakers::new(2, Duration::from_secs(60))),
    );
    let endpoint = openai(&primary, "key-a");
    for _ in 0..2 {
        let err = ai
            .chat(&endpoint, &request("gpt-4o-mini"), TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AiError::Server { status: 500, .. }),
            "{err:?}"
        );
    }
    assert_eq!(hits(&primary).await, 4);

    let err = ai
        .chat(&endpoint, &request("gpt-4o-mini"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err, AiError::CircuitOpen);
    assert_eq!(err.code(), "circuit_open");
    assert_eq!(hits(&primary).await, 4, "an open circuit sends nothing");

    // Another credential on the same server is a separate circuit.
    let other = openai(&primary, "key-b");
    let err = ai
        .chat(&other, &request("gpt-4o-mini"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, AiError::Server { .. }), "{err:?}");

    let chain = [
        Attempt {
            endpoint: endpoint.clone(),
            request: request("gpt-4o-mini"),
            timeout: TIMEOUT,
        },
        Attempt {
            endpoint: anthropic(&secondary, "ant"),
            request: request("claude-haiku-4-5"),
            timeout: TIMEOUT,
        },
    ];
    let before = hits(&primary).await;
    let (index, answer) = ai.chat_with_fallback(&chain).await.unwrap();
    assert_eq!(index, 1);
    assert_eq!(answer.text, "from the fallback");
    assert_eq!(hits(&primary).await, before, "the open circuit is skipped");
}

#[tokio::test]
async fn fallback_returns_every_error_in_order() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"message": "bad key", "code": "invalid_api_key"}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(529).set_body_json(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})))
        .mount(&server)
        .await;
    let ai = client_with(
        no_retries(),
        Arc::new(CircuitBreakers::new(5, Duration::from_secs(60))),
    );
    let chain = [
        Attempt {
            endpoint: openai(&server, "o"),
            request: request("gpt-4o-mini"),
            timeout: TIMEOUT,
        },
        Attempt {
            endpoint: anthropic(&server, "a"),
            request: request("claude-haiku-4-5"),
            timeout: TIMEOUT,
        },
    ];
    let errors = ai.chat_with_fallback(&chain).await.unwrap_err();
    let codes: Vec<_> = errors.iter().map(AiError::code).collect();
    assert_eq!(codes, ["auth", "overloaded"]);
    assert!(ai.chat_with_fallback(&[]).await.unwrap_err().is_empty());
}

#[tokio::test]
async fn first_link_answers_when_healthy() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("first")))
        .expect(1)
        .mount(&server)
        .await;
    let chain = [
        Attempt {
            endpoint: openai(&server, "o"),
            request: request("gpt-4o-mini"),
            timeout: TIMEOUT,
        },
        Attempt {
            endpoint: anthropic(&server, "a"),
            request: request("claude"),
            timeout: TIMEOUT,
        },
    ];
    let (index, answer) = client().chat_with_fallback(&chain).await.unwrap();
    assert_eq!((index, answer.text.as_str()), (0, "first"));
}

#[tokio::test]
async fn a_request_error_after_the_cool_down_closes_the_circuit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "busy"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": {"message": "context too long", "type": "invalid_request_error"}}),
        ))
        .mount(&server)
        .await;
    // A cool-down long enough that the call right after the failure surely
    // falls within it, even on a loaded runner (50 ms did not).
    let ai = client_with(
        no_retries(),
        Arc::new(CircuitBreakers::new(1, Duration::from_millis(500))),
    );
    let endpoint = openai(&server, "c");
    let err = ai
        .chat(&endpoint, &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, AiError::Overloaded { .. }), "{err:?}");
    assert_eq!(
        ai.chat(&endpoint, &request("m"), TIMEOUT)
            .await
            .unwrap_err(),
        AiError::CircuitOpen
    );
    assert_eq!(hits(&server).await, 1, "an open circuit sends nothing");
    // After the cool-down, one trial call goes out; until then calls are
    // refused without reaching the provider.
    let started = std::time::Instant::now();
    let err = loop {
        match ai.chat(&endpoint, &request("m"), TIMEOUT).await {
            Err(AiError::CircuitOpen) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the circuit never half-opened"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other.unwrap_err(),
        }
    };
    assert_eq!(hits(&server).await, 2, "one trial call");
    // The trial call gets a 400: the provider answered, so the circuit closes.
    assert!(
        matches!(err, AiError::BadRequest { status: 400, .. }),
        "{err:?}"
    );
    let err = ai
        .chat(&endpoint, &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AiError::BadRequest { status: 400, .. }),
        "not stuck half-open: {err:?}"
    );
}

#[tokio::test]
async fn test_lists_models_with_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", "Bearer sk-test-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [{"id": "gpt-4o-mini", "object": "model"}, {"id": "gpt-4o", "object": "model"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let report = client()
        .test(&openai(&server, "c"), None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(report, "OK: the key is valid (2 models available)");
}

#[tokio::test]
async fn test_with_a_model_makes_a_one_token_chat() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_json(json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Reply with OK."}],
            "max_completion_tokens": 1
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "gpt-4o-mini", "choices": [{"finish_reason": "length", "message": {"content": ""}}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let report = client()
        .test(&openai(&server, "c"), Some("gpt-4o-mini"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(report, "OK: gpt-4o-mini answered");
}

#[tokio::test]
async fn test_anthropic_lists_models() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("x-api-key", "sk-ant-test"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"type": "model", "id": "claude-sonnet-4-5"}], "has_more": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    let report = client()
        .test(&anthropic(&server, "a"), None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(report, "OK: the key is valid (1 model available)");
}

#[tokio::test]
async fn test_reports_a_bad_key_in_plain_words_without_retry_or_breaker() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": "Incorrect API key provided: sk-bad.", "type": "invalid_request_error",
                      "param": null, "code": "invalid_api_key"}
        })))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("still callable")))
        .expect(1)
        .mount(&server)
        .await;
    // Threshold 1: had the tests counted, the circuit would be open.
    let ai = client_with(
        fast_policy(),
        Arc::new(CircuitBreakers::new(1, Duration::from_secs(60))),
    );
    let endpoint = openai(&server, "c");
    for _ in 0..2 {
        let err = ai.test(&endpoint, None, TIMEOUT).await.unwrap_err();
        assert_eq!(
            err.plain_words(),
            "the API key was rejected: Incorrect API key provided: sk-bad. (invalid_api_key, HTTP 401)"
        );
    }
    let answer = ai.chat(&endpoint, &request("m"), TIMEOUT).await.unwrap();
    assert_eq!(answer.text, "still callable");
}

#[tokio::test]
async fn test_a_compatible_server_without_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .expect(1)
        .mount(&server)
        .await;
    let report = client()
        .test(&compatible(&server, None), None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(report, "OK: the server answered");
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // A port nobody listens on (wiremock pools its servers, so not one of those).
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut endpoint = openai(&MockServer::start().await, "c");
    endpoint.base_url = format!("http://127.0.0.1:{port}/v1");
    let ai = client_with(
        no_retries(),
        Arc::new(CircuitBreakers::new(5, Duration::from_secs(60))),
    );
    let err = ai
        .chat(&endpoint, &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    match &err {
        AiError::Transport { message } => {
            assert!(
                message.starts_with("could not connect to http://127.0.0.1:"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable());
    let err = ai.test(&endpoint, None, TIMEOUT).await.unwrap_err();
    assert_eq!(err.code(), "transport");
}

#[tokio::test]
async fn missing_key_or_base_url_is_refused_locally() {
    let ai = client();
    let server = MockServer::start().await;
    let mut endpoint = openai(&server, "c");
    endpoint.api_key = None;
    let err = ai
        .chat(&endpoint, &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        err.plain_words(),
        "the request was not sent: no API key is set for this openai endpoint"
    );
    let mut endpoint = compatible(&server, None);
    endpoint.base_url = "  ".into();
    let err = ai.test(&endpoint, None, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(err, AiError::BadRequest { status: 0, .. }),
        "{err:?}"
    );
    assert_eq!(hits(&server).await, 0);
}

#[tokio::test]
async fn a_call_abandoned_by_the_caller_counts_as_a_failure() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late"))
                .set_delay(Duration::from_millis(500)),
        )
        .mount(&server)
        .await;
    let ai = client_with(
        no_retries(),
        Arc::new(CircuitBreakers::new(1, Duration::from_secs(60))),
    );
    let endpoint = openai(&server, "c");
    let abandoned = tokio::time::timeout(
        Duration::from_millis(50),
        ai.chat(&endpoint, &request("m"), TIMEOUT),
    )
    .await;
    assert!(abandoned.is_err(), "the caller gave up");
    let err = ai
        .chat(&endpoint, &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err, AiError::CircuitOpen);
}
