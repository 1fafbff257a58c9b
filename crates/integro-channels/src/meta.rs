//! What Meta's platforms (WhatsApp Cloud API, Instagram) share: the
//! `X-Hub-Signature-256` check, the `hub.challenge` handshake and Graph API
//! errors.

use hmac::{Hmac, KeyInit, Mac};
use integro_core::SendError;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use sha2::Sha256;

use crate::http;

/// Checks `X-Hub-Signature-256: sha256=<hex>` over the raw body, keyed with
/// the app secret, in constant time.
pub fn verify_signature(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The header Meta would send; for tests and load generators.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    // Hex digits only: `u8::from_str_radix` alone would also take a sign
    // (`+f` is 15), so a header other than Meta's would pass.
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The subscription handshake: `hub.mode=subscribe` with the right
/// `hub.verify_token` is answered with `hub.challenge`.
pub fn handshake(query: &[(String, String)], verify_token: &str) -> Option<String> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let token_ok = get("hub.verify_token")
        .is_some_and(|t| constant_time_eq(t.as_bytes(), verify_token.as_bytes()));
    (get("hub.mode") == Some("subscribe") && token_ok)
        .then(|| get("hub.challenge").map(String::from))
        .flatten()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// POSTs a JSON request to the Graph API with `token`; returns the string at
/// `id_pointer` (a JSON pointer) in the answer: the message id.
pub async fn send_json(
    client: &reqwest::Client,
    url: String,
    token: &str,
    body: &serde_json::Value,
    id_pointer: &str,
) -> Result<String, SendError> {
    let http::Answer {
        status,
        headers,
        body: text,
    } = http::call(client.post(url).bearer_auth(token).json(body)).await?;
    if !status.is_success() {
        return Err(graph_error(status, &headers, &text));
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| SendError::retryable(None, format!("unreadable answer: {e}")))?;
    v.pointer(id_pointer)
        .and_then(|id| id.as_str())
        .map(String::from)
        .ok_or_else(|| SendError::retryable(None, format!("the answer has no {id_pointer}")))
}

/// Graph API error codes worth retrying: throttling and transient faults.
const RETRYABLE_CODES: &[i64] = &[1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131056, 133004];

/// Reads a Graph API error answer (`{"error": {"code": …, "message": …}}`).
/// Reads `url` with the account's token (a Graph API identity check): the
/// answer's JSON.
pub async fn get_json(
    client: &reqwest::Client,
    url: String,
    token: &str,
) -> Result<serde_json::Value, SendError> {
    let http::Answer {
        status,
        headers,
        body: text,
    } = http::call(client.get(url).bearer_auth(token)).await?;
    if !status.is_success() {
        return Err(graph_error(status, &headers, &text));
    }
    serde_json::from_str(&text)
        .map_err(|e| SendError::retryable(None, format!("unreadable answer: {e}")))
}

pub fn graph_error(status: StatusCode, headers: &HeaderMap, body: &str) -> SendError {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let error = &v["error"];
    let code = error["code"].as_i64();
    let mut message = error["message"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| body.chars().take(300).collect());
    if let Some(details) = error["error_data"]["details"].as_str() {
        message = format!("{message}: {details}");
    }
    let mut e = http::classify(status, headers, code.map(|c| c.to_string()), message);
    if code.is_some_and(|c| RETRYABLE_CODES.contains(&c)) {
        e.retryable = true;
        e.retry_after_secs = integro_core::retry_after::secs_from_headers(headers);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_checked_over_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign("app-secret", body);
        assert!(verify_signature("app-secret", body, &header));
        assert!(!verify_signature("other-secret", body, &header));
        assert!(!verify_signature("app-secret", b"{}", &header));
        assert!(!verify_signature(
            "app-secret",
            body,
            header.trim_start_matches("sha256=")
        ));
        assert!(!verify_signature("app-secret", body, "sha256=zz"));
        assert!(!verify_signature("app-secret", body, "sha256=é1"));
    }

    #[test]
    fn handshake_needs_the_verify_token() {
        let q = |token: &str| {
            vec![
                ("hub.mode".to_string(), "subscribe".to_string()),
                ("hub.challenge".to_string(), "1158201444".to_string()),
                ("hub.verify_token".to_string(), token.to_string()),
            ]
        };
        assert_eq!(
            handshake(&q("secret"), "secret").as_deref(),
            Some("1158201444")
        );
        assert_eq!(handshake(&q("wrong"), "secret"), None);
    }

    #[test]
    fn graph_errors_are_classified() {
        let h = HeaderMap::new();
        let e = graph_error(
            StatusCode::BAD_REQUEST,
            &h,
            r#"{"error":{"message":"Re-engagement","code":131047}}"#,
        );
        assert!(!e.retryable);
        assert_eq!(e.code.as_deref(), Some("131047"));
        let e = graph_error(
            StatusCode::BAD_REQUEST,
            &h,
            r#"{"error":{"message":"Rate","code":130429}}"#,
        );
        assert!(e.retryable);
        let e = graph_error(
            StatusCode::UNAUTHORIZED,
            &h,
            r#"{"error":{"message":"expired","code":190}}"#,
        );
        assert!(!e.retryable);
        assert!(graph_error(StatusCode::BAD_GATEWAY, &h, "oops").retryable);
    }
}
