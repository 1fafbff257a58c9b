//! The AI client under the outbound URL policy: a base URL the policy refuses
//! is never called, and a credential check reports a reason, not what the
//! target answered.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use integro_ai::{AiClient, AiError};
use integro_core::breaker::CircuitBreakers;
use integro_core::outbound::OutboundPolicy;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "INTERNAL-SECRET-42";

fn breakers() -> Arc<CircuitBreakers> {
    Arc::new(CircuitBreakers::new(100, Duration::from_secs(60)))
}

fn strict_client() -> AiClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    AiClient::new(fast_policy(), breakers())
}

#[tokio::test]
async fn the_default_client_refuses_loopback_and_sends_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(SECRET))
        .mount(&server)
        .await;
    let ai = strict_client();
    let err = ai
        .chat(&openai(&server, "c"), &request("m"), TIMEOUT)
        .await
        .unwrap_err();
    match &err {
        AiError::Blocked { message } => {
            assert!(
                message.starts_with("127.0.0.1 is a loopback address"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), "blocked_by_policy");
    assert!(!err.is_retryable(), "a refused URL is not retried");
    let report = ai.check(&openai(&server, "c"), None, TIMEOUT).await;
    assert!(!report.ok);
    assert_eq!(report.reason, "blocked_by_policy");
    assert_eq!(report.status, None);
    assert_eq!(hits(&server).await, 0);
}

#[tokio::test]
async fn an_exception_is_exact() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "data": [] })))
        .mount(&server)
        .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = server.address().port();
    let ai = AiClient::with_outbound(
        OutboundPolicy::allowing([format!("127.0.0.1:{port}")]).unwrap(),
        fast_policy(),
        breakers(),
    );
    let report = ai.check(&compatible(&server, None), None, TIMEOUT).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.status, Some(200));
    // The name `localhost` is not the address it resolves to.
    let mut endpoint = compatible(&server, None);
    endpoint.base_url = format!("http://localhost:{port}/v1");
    let report = ai.check(&endpoint, None, TIMEOUT).await;
    assert_eq!(report.reason, "blocked_by_policy");
    assert_eq!(hits(&server).await, 1);
}

#[tokio::test]
async fn a_check_never_carries_the_targets_words() {
    let server = MockServer::start().await;
    let html = format!("<html>{SECRET}</html>");
    for (prefix, answer) in [
        (
            "/a",
            ResponseTemplate::new(200).set_body_string(html.clone()),
        ),
        (
            "/b",
            ResponseTemplate::new(403).set_body_json(
                serde_json::json!({ "error": { "message": SECRET, "type": "permission_error" } }),
            ),
        ),
        (
            "/c",
            ResponseTemplate::new(429).set_body_json(
                serde_json::json!({ "error": { "message": SECRET, "code": "insufficient_quota" } }),
            ),
        ),
        (
            "/d",
            ResponseTemplate::new(503).set_body_string(html.clone()),
        ),
        (
            "/e",
            ResponseTemplate::new(302).insert_header("location", format!("http://{SECRET}/")),
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("{prefix}/v1/models")))
            .respond_with(answer)
            .mount(&server)
            .await;
    }
    let ai = client();
    let mut seen = Vec::new();
    for prefix in ["/a", "/b", "/c", "/d", "/e"] {
        let mut endpoint = compatible(&server, Some("k"));
        endpoint.base_url = format!("{}{prefix}/v1", server.uri());
        let report = ai.check(&endpoint, None, TIMEOUT).await;
        assert!(!report.message.contains(SECRET), "{report:?}");
        seen.push((report.status, report.reason, report.code));
        // The operator's command line still hears what the provider said.
        if prefix == "/b" {
            let err = ai.test(&endpoint, None, TIMEOUT).await.unwrap_err();
            assert!(err.plain_words().contains(SECRET));
        }
    }
    // A chat that answers a page instead of a completion.
    Mock::given(method("POST"))
        .and(path("/a/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_string(html))
        .mount(&server)
        .await;
    let mut endpoint = compatible(&server, Some("k"));
    endpoint.base_url = format!("{}/a/v1", server.uri());
    let report = ai.check(&endpoint, Some("m"), TIMEOUT).await;
    assert_eq!(
        (report.ok, report.status, report.reason),
        (false, Some(200), "invalid_response")
    );
    assert!(!report.message.contains(SECRET), "{report:?}");
    assert_eq!(
        seen,
        vec![
            // A compatible server's model list may be anything: it answered.
            (Some(200), "ok", None),
            (Some(403), "unauthorized", Some("auth")),
            (Some(429), "http_error", Some("quota")),
            (Some(503), "http_error", Some("overloaded")),
            (Some(302), "invalid_response", Some("invalid_response")),
        ]
    );
}
