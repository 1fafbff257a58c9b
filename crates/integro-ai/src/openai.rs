//! OpenAI Chat Completions (`POST {base}/chat/completions`), also spoken by
//! OpenAI-compatible servers (Ollama, vLLM, …) with these differences: they
//! get `max_tokens` instead of `max_completion_tokens`, the `Authorization`
//! header only when a key is configured, and missing `usage`/`id` are fine.

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Serialize;
use serde_json::Value;

use crate::error::AiError;
use crate::wire::{self, ProviderError};
use crate::{ChatRequest, ChatResponse};

/// The header carrying the request id on OpenAI responses.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// `{base}/chat/completions`; `base` is the API root ending in `/v1`.
pub fn chat_url(base: &str) -> String {
    format!("{}/chat/completions", base.trim_end_matches('/'))
}

/// `{base}/models`, to check a key.
pub fn models_url(base: &str) -> String {
    format!("{}/models", base.trim_end_matches('/'))
}

/// `Authorization: Bearer <key>` when there is a key (marked sensitive so it
/// never shows in debug output).
pub fn headers(api_key: Option<&str>) -> Result<HeaderMap, AiError> {
    let mut headers = HeaderMap::new();
    if let Some(key) = api_key {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| AiError::BadRequest {
                status: 0,
                message: "the API key contains characters that cannot be sent in an HTTP header"
                    .into(),
            })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

/// The JSON body: the system prompt as the first message (left out when
/// empty), then the conversation. `compatible` sends `max_tokens` (the
/// portable name) instead of `max_completion_tokens`.
pub fn request_body(request: &ChatRequest, compatible: bool) -> Result<Vec<u8>, AiError> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.trim().is_empty() {
        messages.push(Message {
            role: "system",
            content: &request.system,
        });
    }
    messages.extend(request.messages.iter().map(|m| Message {
        role: m.role.as_str(),
        content: &m.content,
    }));
    let body = Body {
        model: &request.model,
        messages,
        temperature: request.temperature,
        max_completion_tokens: (!compatible).then_some(request.max_output_tokens),
        max_tokens: compatible.then_some(request.max_output_tokens),
    };
    wire::encode(&body)
}

/// A 2xx answer: `choices[0].message.content`, usage (0 when missing),
/// `model`, `finish_reason` and the `x-request-id` header. No text (null
/// content, a refusal, an empty string) is an `InvalidResponse`.
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
    let Some(choice) = value.get("choices").and_then(|c| c.get(0)) else {
        if let Some(e) = wire::error_in_success(&value) {
            return Err(e);
        }
        return Err(AiError::InvalidResponse {
            message: "the answer has no choices".into(),
        });
    };
    let stop_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = choice.get("message");
    let text = message
        .and_then(|m| m.get("content"))
        .and_then(content_text)
        .unwrap_or_default();
    if require_text && text.trim().is_empty() {
        let refusal = message
            .and_then(|m| m.get("refusal"))
            .and_then(Value::as_str)
            .filter(|r| !r.trim().is_empty());
        let reason = stop_reason.as_deref().unwrap_or("none given");
        return Err(AiError::InvalidResponse {
            message: match refusal {
                Some(r) => format!("the model refused: {}", wire::shorten(r, 500)),
                None => format!("the answer has no text (finish_reason: {reason})"),
            },
        });
    }
    let usage = value.get("usage");
    Ok(ChatResponse {
        text,
        input_tokens: wire::count(usage.and_then(|u| u.get("prompt_tokens"))),
        output_tokens: wire::count(usage.and_then(|u| u.get("completion_tokens"))),
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

/// `content` as a string, or (some compatible servers) an array of text
/// parts joined.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.as_str()),
                    _ => p.get("text").and_then(Value::as_str),
                })
                .collect(),
        ),
        _ => None,
    }
}

/// What an OpenAI-style error body says: `{"error":{"message","type","code"}}`.
/// 429 `insufficient_quota` is a quota problem, `model_not_found` an unknown
/// model.
pub(crate) fn provider_error(body: &[u8]) -> ProviderError {
    let Some(err) = wire::error_object(body) else {
        return ProviderError::default();
    };
    let kind = wire::str_field(&err, "type");
    let code = wire::str_field(&err, "code").or(kind);
    let is = |what: &str| code == Some(what) || kind == Some(what);
    ProviderError {
        structured: true,
        message: wire::str_field(&err, "message").map(str::to_string),
        code: code.map(str::to_string),
        quota: is("insufficient_quota"),
        unknown_model: is("model_not_found"),
    }
}

/// An error status read the OpenAI way.
pub fn error_from_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    method_and_url: &str,
) -> AiError {
    wire::classify(status, headers, body, provider_error(body), method_and_url)
}

/// The number of models in a `GET /models` answer (`{"data": [...]}`).
pub fn model_count(body: &[u8]) -> Option<usize> {
    let value: Value = serde_json::from_slice(body).ok()?;
    Some(value.get("data")?.as_array()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatMessage, ChatRole};

    fn request() -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".into(),
            system: "Be brief.".into(),
            messages: vec![
                ChatMessage {
                    role: ChatRole::User,
                    content: "Hi".into(),
                },
                ChatMessage {
                    role: ChatRole::Assistant,
                    content: "Hello".into(),
                },
            ],
            temperature: Some(0.7),
            max_output_tokens: 100,
        }
    }

    #[test]
    fn body_shapes() {
        let v: Value = serde_json::from_slice(&request_body(&request(), false).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"gpt-4o-mini","messages":[
                {"role":"system","content":"Be brief."},
                {"role":"user","content":"Hi"},
                {"role":"assistant","content":"Hello"}],
                "temperature":0.7,"max_completion_tokens":100})
        );
        let mut r = request();
        r.system.clear();
        r.temperature = None;
        let v: Value = serde_json::from_slice(&request_body(&r, true).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"gpt-4o-mini","messages":[
                {"role":"user","content":"Hi"},
                {"role":"assistant","content":"Hello"}],
                "max_tokens":100})
        );
    }

    #[test]
    fn parses_answers_and_refusals() {
        let h = HeaderMap::new();
        let ok = br#"{"model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Yes"}}]}"#;
        let r = parse_response(ok, &h, "asked").unwrap();
        assert_eq!(
            (r.text.as_str(), r.input_tokens, r.model.as_str()),
            ("Yes", 0, "m")
        );

        let refused = br#"{"choices":[{"finish_reason":"stop","message":{"content":null,"refusal":"I can't help with that."}}]}"#;
        assert_eq!(
            parse_response(refused, &h, "m").unwrap_err(),
            AiError::InvalidResponse {
                message: "the model refused: I can't help with that.".into()
            }
        );
        let tools = br#"{"choices":[{"finish_reason":"tool_calls","message":{"content":null}}]}"#;
        assert!(
            matches!(parse_response(tools, &h, "m"), Err(AiError::InvalidResponse { message }) if message.contains("tool_calls"))
        );
        assert!(parse(tools, &h, "m", false).is_ok());
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(parse_response(parts, &h, "m").unwrap().text, "ab");
        for bad in [
            &b"[]"[..],
            b"null",
            b"",
            b"{\"choices\":[]}",
            b"{\"choices\":\"x\"}",
        ] {
            assert!(matches!(
                parse_response(bad, &h, "m"),
                Err(AiError::InvalidResponse { .. })
            ));
        }
        let err = br#"{"error":{"message":"model is loading"}}"#;
        assert!(
            matches!(parse_response(err, &h, "m"), Err(AiError::InvalidResponse { message }) if message.contains("model is loading"))
        );
    }

    #[test]
    fn reads_errors() {
        let h = HeaderMap::new();
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert!(matches!(
            error_from_response(429, &h, quota, "POST u"),
            AiError::Quota { .. }
        ));
        let rl = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert!(matches!(
            error_from_response(429, &h, rl, "POST u"),
            AiError::RateLimited { .. }
        ));
        let model = br#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#;
        assert_eq!(
            error_from_response(400, &h, model, "POST u"),
            AiError::UnknownModel {
                message: "The model `x` does not exist (model_not_found, HTTP 400)".into()
            }
        );
        let ollama = br#"{"error":"model 'x' not found"}"#;
        assert!(matches!(
            error_from_response(404, &h, ollama, "POST u"),
            AiError::UnknownModel { .. }
        ));
    }
}
