//! What the providers share on the wire: reading a body with a size cap,
//! turning a transport failure or an error status into an [`AiError`], and
//! quoting a provider's words briefly.

use std::error::Error as _;

use reqwest::header::{HeaderMap, LOCATION};

use crate::error::AiError;

/// The largest successful answer we read (a chat completion is a few KiB).
pub(crate) const MAX_ANSWER_BYTES: usize = 8 << 20;
/// How much of an error body we keep.
pub(crate) const MAX_ERROR_BYTES: usize = 64 << 10;
/// How long a quoted provider message may be.
const MAX_MESSAGE_CHARS: usize = 500;

/// A request that got no HTTP answer.
pub(crate) fn request_error(e: &reqwest::Error, url: &str) -> AiError {
    // The resolver (a name resolving to forbidden addresses) or the redirect
    // policy refused the connection.
    if let Some(blocked) = integro_core::outbound::blocked_by(e) {
        return AiError::Blocked {
            message: blocked.to_string(),
        };
    }
    if e.is_timeout() {
        return AiError::Timeout;
    }
    let cause = root_cause(e);
    if e.is_builder() {
        return AiError::BadRequest {
            status: 0,
            message: format!("the request could not be built: {cause}"),
        };
    }
    let origin = origin(url);
    if e.is_connect() {
        AiError::Transport {
            message: format!("could not connect to {origin}: {cause}"),
        }
    } else {
        AiError::Transport {
            message: format!("the connection to {origin} failed: {cause}"),
        }
    }
}

/// The innermost error, which names the actual problem ("Connection refused",
/// "invalid peer certificate: UnknownIssuer"), without the URL.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: Option<&dyn std::error::Error> = e.source();
    let mut last = None;
    while let Some(c) = cause {
        last = Some(c);
        cause = c.source();
    }
    match last {
        Some(c) => c.to_string(),
        None => {
            // reqwest's own message; strip the "for url (…)" part.
            let s = e.to_string();
            match s.find(" for url (") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// `scheme://host[:port]` of a URL, for messages.
pub(crate) fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => url.to_string(),
    }
}

/// Reads a body up to `limit` bytes. Returns the bytes and whether there was
/// more.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<(Vec<u8>, bool), AiError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok((Vec::new(), true));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| request_error(&e, url))? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// A body, shortened and on one line, to quote in a message.
pub(crate) fn snippet(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    shorten(&one_line, max_chars)
}

pub(crate) fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// What a provider's error body says, in the fields all of them share.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProviderError {
    /// The body was a JSON error object (not an HTML page from a proxy, not
    /// an empty body).
    pub structured: bool,
    pub message: Option<String>,
    /// `error.code` (OpenAI) or `error.type` (both).
    pub code: Option<String>,
    /// The account has no quota or credit left.
    pub quota: bool,
    /// The model does not exist or is not available.
    pub unknown_model: bool,
}

/// `{"error": {"message", "type", "code"}}` (OpenAI, Anthropic, vLLM,
/// Ollama) or `{"error": "message"}` (some compatible servers).
pub(crate) fn error_object(body: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.get("error")? {
        serde_json::Value::Object(map) => Some(map.clone()),
        serde_json::Value::String(s) => {
            let mut map = serde_json::Map::new();
            map.insert("message".into(), serde_json::Value::String(s.clone()));
            Some(map)
        }
        _ => None,
    }
}

pub(crate) fn str_field<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a str> {
    map.get(key)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// An error status with what the provider said, as an [`AiError`].
pub(crate) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    said: ProviderError,
    method_and_url: &str,
) -> AiError {
    let retry_after = integro_core::retry_after::from_headers(headers);
    let words = match &said.message {
        Some(m) => shorten(m, MAX_MESSAGE_CHARS),
        None if body.iter().all(u8::is_ascii_whitespace) => "no explanation given".to_string(),
        None => snippet(body, 200),
    };
    // With the HTTP status, for the classes that have no status field.
    let with_status = match &said.code {
        Some(code) => format!("{words} ({code}, HTTP {status})"),
        None => format!("{words} (HTTP {status})"),
    };
    let with_code = match &said.code {
        Some(code) => format!("{words} ({code})"),
        None => words.clone(),
    };
    match status {
        401 | 403 => AiError::Auth {
            message: with_status,
        },
        429 if said.quota => AiError::Quota {
            message: with_status,
        },
        404 if !said.structured => AiError::BadRequest {
            status,
            message: format!(
                "nothing was found at {method_and_url}; check the base URL (the server said: {words})"
            ),
        },
        404 => AiError::UnknownModel {
            message: with_status,
        },
        400..=499 if said.unknown_model => AiError::UnknownModel {
            message: with_status,
        },
        429 => AiError::RateLimited {
            retry_after,
            message: with_status,
        },
        408 | 409 => AiError::Server {
            status,
            message: with_code,
        },
        503 | 529 => AiError::Overloaded {
            retry_after,
            message: with_status,
        },
        500.. => AiError::Server {
            status,
            message: with_code,
        },
        400..=499 => AiError::BadRequest {
            status,
            message: with_code,
        },
        300..=399 => {
            let to = headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("an unnamed place");
            AiError::InvalidResponse {
                message: format!(
                    "the server redirected {method_and_url} to {to} (HTTP {status}); check the base URL"
                ),
            }
        }
        _ => AiError::InvalidResponse {
            message: format!("unexpected HTTP status {status}: {words}"),
        },
    }
}

/// A header's value as text, if present and readable.
pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A 2xx body that is not the JSON object we expect.
/// A request body as bytes; a body that cannot be encoded is refused here.
pub(crate) fn encode(body: &impl serde::Serialize) -> Result<Vec<u8>, AiError> {
    serde_json::to_vec(body).map_err(|e| AiError::BadRequest {
        status: 0,
        message: format!("the request could not be encoded: {e}"),
    })
}

/// A 2xx answer's body, which must be a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<serde_json::Value, AiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| not_json(body, &e))?;
    if !value.is_object() {
        return Err(AiError::InvalidResponse {
            message: format!("the answer is not a JSON object: {}", snippet(body, 120)),
        });
    }
    Ok(value)
}

pub(crate) fn not_json(body: &[u8], e: &serde_json::Error) -> AiError {
    if body.iter().all(u8::is_ascii_whitespace) {
        return AiError::InvalidResponse {
            message: "the answer was empty".into(),
        };
    }
    AiError::InvalidResponse {
        message: format!(
            "the answer is not valid JSON ({e}); it starts with: {}",
            snippet(body, 120)
        ),
    }
}

/// A token count that may be missing, null or oddly typed: 0 then.
pub(crate) fn count(value: Option<&serde_json::Value>) -> u64 {
    match value {
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .unwrap_or(0),
        None => 0,
    }
}

/// A 2xx JSON body that carries an `error` instead of an answer (some
/// compatible servers do this).
pub(crate) fn error_in_success(value: &serde_json::Value) -> Option<AiError> {
    let err = value.get("error")?;
    let message = match err {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => str_field(map, "message")
            .unwrap_or("no explanation given")
            .to_string(),
        _ => return None,
    };
    Some(AiError::InvalidResponse {
        message: format!(
            "the server answered with an error: {}",
            shorten(&message, MAX_MESSAGE_CHARS)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_on_char_boundaries() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten("hi", 2), "hi");
        assert_eq!(
            snippet(b"<html>\n  <body>  x</body>", 100),
            "<html> <body> x</body>"
        );
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin("https://api.openai.com/v1/chat/completions"),
            "https://api.openai.com"
        );
        assert_eq!(origin("http://127.0.0.1:8080/v1"), "http://127.0.0.1:8080");
    }

    #[test]
    fn counts() {
        assert_eq!(count(Some(&serde_json::json!(12))), 12);
        assert_eq!(count(Some(&serde_json::json!(null))), 0);
        assert_eq!(count(Some(&serde_json::json!(-1))), 0);
        assert_eq!(count(Some(&serde_json::json!("x"))), 0);
        assert_eq!(count(None), 0);
    }

    #[test]
    fn classifies_statuses() {
        let h = HeaderMap::new();
        let said = |m: &str| ProviderError {
            structured: true,
            message: Some(m.into()),
            ..Default::default()
        };
        assert!(matches!(
            classify(401, &h, b"", said("x"), "POST u"),
            AiError::Auth { .. }
        ));
        assert!(matches!(
            classify(403, &h, b"", said("x"), "POST u"),
            AiError::Auth { .. }
        ));
        assert!(matches!(
            classify(404, &h, b"", said("x"), "POST u"),
            AiError::UnknownModel { .. }
        ));
        assert!(matches!(
            classify(
                404,
                &h,
                b"404 page not found",
                ProviderError::default(),
                "POST u"
            ),
            AiError::BadRequest { status: 404, .. }
        ));
        assert!(matches!(
            classify(429, &h, b"", said("x"), "POST u"),
            AiError::RateLimited { .. }
        ));
        let quota = ProviderError {
            quota: true,
            ..said("x")
        };
        assert!(matches!(
            classify(429, &h, b"", quota, "POST u"),
            AiError::Quota { .. }
        ));
        assert!(matches!(
            classify(408, &h, b"", said("x"), "POST u"),
            AiError::Server { status: 408, .. }
        ));
        assert!(matches!(
            classify(409, &h, b"", said("x"), "POST u"),
            AiError::Server { status: 409, .. }
        ));
        assert!(matches!(
            classify(503, &h, b"", said("x"), "POST u"),
            AiError::Overloaded { .. }
        ));
        assert!(matches!(
            classify(529, &h, b"", said("x"), "POST u"),
            AiError::Overloaded { .. }
        ));
        assert!(matches!(
            classify(502, &h, b"", said("x"), "POST u"),
            AiError::Server { status: 502, .. }
        ));
        assert!(matches!(
            classify(422, &h, b"", said("x"), "POST u"),
            AiError::BadRequest { status: 422, .. }
        ));
        assert!(matches!(
            classify(301, &h, b"", said("x"), "POST u"),
            AiError::InvalidResponse { .. }
        ));
        match classify(500, &h, b"  ", ProviderError::default(), "POST u") {
            AiError::Server { message, .. } => assert_eq!(message, "no explanation given"),
            e => panic!("{e:?}"),
        }
    }
}
