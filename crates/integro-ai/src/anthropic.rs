//! Anthropic Messages (`POST {base}/v1/messages`, `x-api-key`,
//! `anthropic-version: 2023-06-01`). The system prompt is a top-level field;
//! messages are user/assistant turns, starting with a user turn.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;

use crate::error::AiError;
use crate::wire::{self, ProviderError};
use crate::{ChatRequest, ChatResponse};

pub const API_VERSION: &str = "2023-06-01";
/// The header carrying the request id on Anthropic responses.
pub const REQUEST_ID_HEADER: &str = "request-id";

/// The host part of a base URL: trailing slashes and a trailing `/v1` are
/// dropped, so `https://api.anthropic.com/v1/` works too.
pub fn host_base(base: &str) -> &str {
    let base = base.trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base)
}

/// `{base}/v1/messages`; `base` is the host.
pub fn messages_url(base: &str) -> String {
    format!("{}/v1/messages", host_base(base))
}

/// `{base}/v1/models`, to check a key.
pub fn models_url(base: &str) -> String {
    format!("{}/v1/models", host_base(base))
}

/// `x-api-key` (sensitive) and `anthropic-version`.
pub fn headers(api_key: &str) -> Result<HeaderMap, AiError> {
    let mut headers = HeaderMap::new();
    let mut key = HeaderValue::from_str(api_key).map_err(|_| AiError::BadRequest {
        status: 0,
        message: "the API key contains characters that cannot be sent in an HTTP header".into(),
    })?;
    key.set_sensitive(true);
    headers.insert(HeaderName::from_static("x-api-key"), key);
    headers.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(API_VERSION),
    );
    Ok(headers)
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

/// The JSON body. An empty message list is refused here (Anthropic would
/// answer 400 anyway); alternation is the caller's job.
pub fn request_body(request: &ChatRequest) -> Result<Vec<u8>, AiError> {
    if request.messages.is_empty() {
        return Err(AiError::BadRequest {
            status: 0,
            message: "there is no message to answer (Anthropic needs at least one user message)"
                .into(),
        });
    }
    let body = Body {
        model: &request.model,
        max_tokens: request.max_output_tokens,
        system: Some(request.system.as_str()).filter(|s| !s.trim().is_empty()),
        messages: request
            .messages
            .iter()
            .map(|m| Message {
                role: m.role.as_str(),
                content: &m.content,
            })
            .collect(),
        temperature: request.temperature,
    };
    wire::encode(&body)
}

/// A 2xx answer: the text blocks joined, usage, `stop_reason` and the
/// `request-id` header. No text is an `InvalidResponse`.
pub fn parse_response(
    body: &[u8],
    headers: &HeaderMap,
    requested_model: &str,
) -> Result<ChatResponse, AiError> {
    parse(body, headers, requested_model, true)
}

pub(crate) fn parse(
    body: &[u8],
    headers: &HeaderMap,
    requested_model: &str,
    require_text: bool,
) -> Result<ChatResponse, AiError> {
    let value = wire::json_object(body)?;
    let Some(blocks) = value.get("content").and_then(Value::as_array) else {
        if let Some(e) = wire::error_in_success(&value) {
            return Err(e);
        }
        return Err(AiError::InvalidResponse {
            message: "the answer has no content".into(),
        });
    };
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let stop_reason = value
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    if require_text && text.trim().is_empty() {
        return Err(AiError::InvalidResponse {
            message: match stop_reason.as_deref() {
                Some("refusal") => "the model refused to answer (stop_reason: refusal)".into(),
                Some(reason) => format!("the answer has no text (stop_reason: {reason})"),
                None => "the answer has no text".into(),
            },
        });
    }
    let usage = value.get("usage");
    Ok(ChatResponse {
        text,
        input_tokens: wire::count(usage.and_then(|u| u.get("input_tokens"))),
        output_tokens: wire::count(usage.and_then(|u| u.get("output_tokens"))),
        model: value
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(requested_model)
            .to_string(),
        stop_reason,
        request_id: wire::header_text(headers, REQUEST_ID_HEADER),
    })
}

/// What an Anthropic error body says:
/// `{"type":"error","error":{"type","message","details"?:{"error_code"}}}`.
/// 429 `enforced_spend_limit_reached` is a quota problem.
pub(crate) fn provider_error(body: &[u8]) -> ProviderError {
    let Some(err) = wire::error_object(body) else {
        return ProviderError::default();
    };
    let kind = wire::str_field(&err, "type");
    let detail = err
        .get("details")
        .and_then(Value::as_object)
        .and_then(|d| wire::str_field(d, "error_code"));
    ProviderError {
        structured: true,
        message: wire::str_field(&err, "message").map(str::to_string),
        code: detail.or(kind).map(str::to_string),
        quota: detail == Some("enforced_spend_limit_reached"),
        unknown_model: false,
    }
}

/// An error status read the Anthropic way (529 overloaded, 404
/// `not_found_error` an unknown model).
pub fn error_from_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    method_and_url: &str,
) -> AiError {
    wire::classify(status, headers, body, provider_error(body), method_and_url)
}

/// The number of models in a `GET /v1/models` answer (`{"data": [...]}`).
pub fn model_count(body: &[u8]) -> Option<usize> {
    let value: Value = serde_json::from_slice(body).ok()?;
    Some(value.get("data")?.as_array()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatMessage, ChatRole};

    #[test]
    fn urls() {
        assert_eq!(
            messages_url("https://api.anthropic.com/"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            messages_url("https://api.anthropic.com/v1/"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(models_url("http://h:1"), "http://h:1/v1/models");
    }

    #[test]
    fn body_and_empty_messages() {
        let mut r = ChatRequest {
            model: "claude".into(),
            system: String::new(),
            messages: vec![ChatMessage {
                role: ChatRole::User,
                content: "Hi".into(),
            }],
            temperature: None,
            max_output_tokens: 5,
        };
        let v: Value = serde_json::from_slice(&request_body(&r).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]})
        );
        r.messages.clear();
        assert!(matches!(
            request_body(&r),
            Err(AiError::BadRequest { status: 0, .. })
        ));
    }

    #[test]
    fn parses_answers() {
        let h = HeaderMap::new();
        let ok = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hel"},{"type":"tool_use","id":"t","name":"n","input":{}},{"type":"text","text":"lo"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":4}}"#;
        let r = parse_response(ok, &h, "asked").unwrap();
        assert_eq!(r.text, "Hello");
        assert_eq!((r.input_tokens, r.output_tokens), (3, 4));
        let refusal = br#"{"content":[],"stop_reason":"refusal"}"#;
        assert!(
            matches!(parse_response(refusal, &h, "m"), Err(AiError::InvalidResponse { message }) if message.contains("refused"))
        );
        assert!(matches!(
            parse_response(b"{}", &h, "m"),
            Err(AiError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn reads_errors() {
        let h = HeaderMap::new();
        let spend = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Spend limit reached","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert!(matches!(
            error_from_response(429, &h, spend, "POST u"),
            AiError::Quota { .. }
        ));
        let rl = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        assert!(matches!(
            error_from_response(429, &h, rl, "POST u"),
            AiError::RateLimited { .. }
        ));
        let over =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            error_from_response(529, &h, over, "POST u"),
            AiError::Overloaded {
                retry_after: None,
                message: "Overloaded (overloaded_error, HTTP 529)".into()
            }
        );
        let nf = br#"{"type":"error","error":{"type":"not_found_error","message":"model: nope"}}"#;
        assert!(matches!(
            error_from_response(404, &h, nf, "POST u"),
            AiError::UnknownModel { .. }
        ));
        let auth = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(
            error_from_response(401, &h, auth, "POST u"),
            AiError::Auth {
                message: "invalid x-api-key (authentication_error, HTTP 401)".into()
            }
        );
    }
}
