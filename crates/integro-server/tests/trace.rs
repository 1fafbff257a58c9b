//! One message, one trace: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the
//! webhook request, the reply job, its LLM call, the send job and the
//! provider call are exported over OTLP/HTTP as spans of a single trace, each
//! a child of the one before and each carrying the request id. A test binary
//! of its own: tracing is set up once per process.

#[allow(dead_code)]
#[path = "api/channels.rs"]
mod channels;
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use channels::{Loop, TwilioAccepts, wait_until};
use helpers::DbKind;

/// A stand-in for an OpenTelemetry collector: keeps the spans it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

impl Collector {
    /// Listens on a free port; answers the OTLP/HTTP traces path.
    async fn start(&self) -> String {
        let spans = self.0.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let spans = spans.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    let mut kept = spans.lock().unwrap();
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            kept.extend(scope.spans);
                        }
                    }
                    // An empty ExportTraceServiceResponse.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().clone()
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
        .map(|v| match v {
            AnyValue::StringValue(s) => s,
            AnyValue::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

#[test]
fn one_message_is_one_trace_from_the_webhook_to_the_provider_and_the_llm() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let collector = Collector::default();
    let endpoint = runtime.block_on(collector.start());
    // SAFETY: set before any other thread of this test binary reads the
    // environment (the one test here; the runtime's threads read none).
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    }
    // As `main` does: the exporter's HTTP client needs the TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let telemetry = integro_server::telemetry::init("info", "json");
    runtime.block_on(message_through(&collector));
    drop(runtime);
    telemetry.shutdown();
}

async fn message_through(collector: &Collector) {
    let t = Loop::twilio(DbKind::Sqlite, 2).await.expect("SQLite");
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(TwilioAccepts::default())
        .mount(&t.provider)
        .await;
    let llm = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1718203449, "model": "gpt-4o-mini",
            "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": "We open at nine." } }],
            "usage": { "prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25 }
        })))
        .mount(&llm)
        .await;
    let created = |path: &'static str, body: Value| {
        let t = &t;
        async move {
            let res = t.app.post(path, &t.key, body).await;
            assert_eq!(res.status(), StatusCode::CREATED, "POST {path}");
            res.json::<Value>().await.unwrap()
        }
    };
    let credential = created(
        "/api/v1/ai-credentials",
        json!({ "name": "openai", "provider": "openai", "api_key": "sk-test-123", "base_url": format!("{}/v1", llm.uri()) }),
    )
    .await;
    let profile = created(
        "/api/v1/ai-profiles",
        json!({ "name": "main", "credential_id": credential["id"], "model": "gpt-4o-mini" }),
    )
    .await;
    let res = t
        .request(
            Method::PATCH,
            &format!("/api/v1/bots/{}", t.bot_id),
            Some(json!({ "ai_profile_id": profile["id"], "settings": { "burst_window_ms": 0 } })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = t
        .twilio_message("SM1", "+14155550100", "When do you open?")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();

    let named = |name: &str, kind: Option<&str>| {
        collector.spans().into_iter().find(|s| {
            s.name == name
                && attribute(s, "request_id").as_deref() == Some(request_id.as_str())
                && kind.is_none_or(|k| attribute(s, "kind").as_deref() == Some(k))
        })
    };
    wait_until(Duration::from_secs(20), || async {
        named("provider_call", None).is_some()
    })
    .await;

    let webhook = named("request", None).expect("the webhook's request span");
    assert_eq!(
        attribute(&webhook, "path").as_deref(),
        Some(t.twilio_path().as_str())
    );
    let reply = named("job", Some("reply")).expect("the reply job's span");
    let llm_call = named("llm_call", None).expect("the LLM call's span");
    let send = named("job", Some("send")).expect("the send job's span");
    let provider_call = named("provider_call", None).expect("the provider call's span");
    let chain = [
        ("reply job", &reply, &webhook),
        ("LLM call", &llm_call, &reply),
        ("send job", &send, &reply),
        ("provider call", &provider_call, &send),
    ];
    for (what, span, parent) in chain {
        assert_eq!(span.trace_id, webhook.trace_id, "{what}: one trace");
        assert_eq!(span.parent_span_id, parent.span_id, "{what}: its parent");
    }
    // Every span of the trace carries the request id.
    let in_trace: Vec<Span> = collector
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == webhook.trace_id)
        .collect();
    let names: HashMap<String, Option<String>> = in_trace
        .iter()
        .map(|s| (s.name.clone(), attribute(s, "request_id")))
        .collect();
    assert!(
        names
            .values()
            .all(|id| id.as_deref() == Some(request_id.as_str())),
        "{names:?}"
    );
}
