//! WhatsApp through Twilio Programmable Messaging: `X-Twilio-Signature`
//! (HMAC-SHA1 over the public URL and the sorted form parameters), inbound
//! message and status-callback forms, and the Messages API.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use integro_core::{
    DeliveryStatus, InboundEvent, InboundMessage, Media, OutboundMessage, SendError, StatusUpdate,
};
use sha1::Sha1;

use crate::credentials::Credentials;
use crate::{ParseError, http};

/// Form parameters in the order they came, owned (as tests and load
/// generators build them). The functions here take any pairs of strings.
pub type Params = Vec<(String, String)>;

/// A form's parameters in the order they came, borrowed from `body` where
/// nothing needed decoding: owned, a webhook's names and values were two
/// allocations each, a cost on the webhook path (ADR 0029).
pub fn parse_form(body: &[u8]) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(body).collect()
}

fn param<'a, K: AsRef<str>, V: AsRef<str>>(params: &'a [(K, V)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.as_ref() == name)
        .map(|(_, v)| v.as_ref())
        .filter(|v| !v.is_empty())
}

/// The parameters sorted by name, then value, as Twilio signs them.
fn sorted<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Vec<(&str, &str)> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort_unstable();
    sorted
}

/// Checks `X-Twilio-Signature` for a form POST to `url` (the URL exactly as
/// configured at Twilio). Like Twilio's SDKs, accepts the URL with and without
/// its default port.
pub fn verify_signature<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    let Ok(expected) = B64.decode(signature.trim()) else {
        return false;
    };
    let sorted = sorted(params);
    let keyed = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    let signed_over = |candidate: &str| {
        let mut mac = keyed.clone();
        mac.update(candidate.as_bytes());
        for (k, v) in &sorted {
            mac.update(k.as_bytes());
            mac.update(v.as_bytes());
        }
        mac.verify_slice(&expected).is_ok()
    };
    // The other form is built only when the URL as given does not match.
    signed_over(url) || other_port_form(url).is_some_and(|other| signed_over(&other))
}

/// The same URL with its default port removed, or added when it has none.
fn other_port_form(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(host_end);
    let default_port = if scheme == "https" { "443" } else { "80" };
    Some(match host.rsplit_once(':') {
        Some((bare, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            format!("{scheme}://{bare}{tail}")
        }
        _ => format!("{scheme}://{host}:{default_port}{tail}"),
    })
}

/// The signature Twilio would send; for tests and load generators.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted(params) {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    B64.encode(mac.finalize().into_bytes())
}

fn strip_whatsapp(address: &str) -> &str {
    address.strip_prefix("whatsapp:").unwrap_or(address)
}

fn media_kind(content_type: Option<&str>) -> &'static str {
    match content_type.and_then(|c| c.split('/').next()) {
        Some("image") => "image",
        Some("audio") => "audio",
        Some("video") => "video",
        _ => "document",
    }
}

fn status_of(value: &str) -> Option<DeliveryStatus> {
    Some(match value {
        "queued" | "accepted" | "scheduled" => DeliveryStatus::Queued,
        "sending" => DeliveryStatus::Sending,
        "sent" => DeliveryStatus::Sent,
        "delivered" | "partially_delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "failed" | "undelivered" | "canceled" => DeliveryStatus::Failed,
        _ => return None,
    })
}

/// An inbound message webhook, or a status callback (it has `MessageStatus`).
pub fn parse<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
) -> Result<Vec<InboundEvent>, ParseError> {
    let sid = param(params, "MessageSid")
        .or_else(|| param(params, "SmsMessageSid"))
        .ok_or_else(|| ParseError::new("MessageSid is missing"))?;
    if let Some(status) =
        param(params, "MessageStatus").filter(|s| *s != "received" && *s != "receiving")
    {
        let status = status_of(status)
            .ok_or_else(|| ParseError::new(format!("unknown MessageStatus `{status}`")))?;
        return Ok(vec![InboundEvent::Status(StatusUpdate {
            local_id: None,
            provider_message_id: sid.to_string(),
            status,
            error_code: param(params, "ErrorCode").map(String::from),
            error_message: param(params, "ErrorMessage").map(String::from),
        })]);
    }
    let from = param(params, "From").ok_or_else(|| ParseError::new("From is missing"))?;
    let from = strip_whatsapp(from);
    let num_media: usize = match param(params, "NumMedia") {
        None => 0,
        Some(n) => n
            .parse()
            .map_err(|_| ParseError::new("NumMedia is not a number"))?,
    };
    if num_media > 10 {
        return Err(ParseError::new("NumMedia is above Twilio's limit of 10"));
    }
    let media: Vec<Media> = (0..num_media)
        .filter_map(|i| {
            let url = param(params, &format!("MediaUrl{i}"))?;
            let content_type = param(params, &format!("MediaContentType{i}"));
            Some(Media {
                kind: media_kind(content_type).to_string(),
                reference: url.to_string(),
                content_type: content_type.map(String::from),
            })
        })
        .collect();
    let text = param(params, "Body").map(String::from);
    let kind = match (media.first(), param(params, "Latitude")) {
        (Some(m), _) => m.kind.clone(),
        (None, Some(_)) => "location".into(),
        (None, None) => "text".into(),
    };
    let phone = from
        .starts_with('+')
        .then(|| from.to_string())
        .or_else(|| param(params, "WaId").map(|id| format!("+{id}")));
    Ok(vec![InboundEvent::Message(InboundMessage {
        provider_message_id: sid.to_string(),
        from: from.to_string(),
        from_name: param(params, "ProfileName").map(String::from),
        phone_e164: phone,
        kind,
        text,
        media,
        reply_to: param(params, "OriginalRepliedMessageSid").map(String::from),
    })])
}

#[derive(serde::Deserialize)]
struct TwilioError {
    code: Option<serde_json::Value>,
    message: Option<String>,
}

/// Sends through `POST /2010-04-01/Accounts/{sid}/Messages.json`; returns the
/// message SID.
pub async fn send(
    client: &reqwest::Client,
    api_base: &str,
    creds: &Credentials,
    status_callback: Option<&str>,
    msg: &OutboundMessage,
) -> Result<String, SendError> {
    let account_sid = creds.require("account_sid")?;
    let auth_token = creds.require("auth_token")?;
    let from = creds.require("phone_number")?;
    let mut form: Vec<(&str, String)> = vec![
        ("To", format!("whatsapp:{}", strip_whatsapp(&msg.to))),
        ("From", format!("whatsapp:{}", strip_whatsapp(from))),
    ];
    if let Some(template) = &msg.template {
        form.push(("ContentSid", template.name.clone()));
        if !template.parameters.is_empty() {
            let vars: serde_json::Map<String, serde_json::Value> = template
                .parameters
                .iter()
                .enumerate()
                .map(|(i, p)| ((i + 1).to_string(), serde_json::Value::String(p.clone())))
                .collect();
            form.push((
                "ContentVariables",
                serde_json::Value::Object(vars).to_string(),
            ));
        }
    } else {
        if let Some(text) = &msg.text {
            form.push(("Body", text.clone()));
        }
        if let Some(url) = &msg.media_url {
            form.push(("MediaUrl", url.clone()));
        }
    }
    if let Some(url) = status_callback {
        form.push(("StatusCallback", url.to_string()));
    }
    let http::Answer {
        status,
        headers,
        body,
    } = http::call(
        client
            .post(messages_url(api_base, account_sid))
            .basic_auth(account_sid, Some(auth_token))
            .form(&form),
    )
    .await?;
    if status.is_success() {
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
            SendError::retryable(None, format!("unreadable answer from Twilio: {e}"))
        })?;
        return v["sid"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| SendError::retryable(None, "Twilio's answer has no sid"));
    }
    Err(twilio_error(status, &headers, &body))
}

/// A failed answer: Twilio's error code and message.
fn twilio_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> SendError {
    let err: Option<TwilioError> = serde_json::from_str(body).ok();
    let code = err.as_ref().and_then(|e| e.code.as_ref()).map(|c| match c {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let message = err
        .and_then(|e| e.message)
        .unwrap_or_else(|| body.chars().take(300).collect());
    http::classify(status, headers, code, message)
}

/// Checks the credentials by reading the account (`GET
/// /2010-04-01/Accounts/{sid}.json`); says which account and its status.
pub async fn check(
    client: &reqwest::Client,
    api_base: &str,
    creds: &Credentials,
) -> Result<String, SendError> {
    let account_sid = creds.require("account_sid")?;
    let auth_token = creds.require("auth_token")?;
    let url = format!(
        "{}/2010-04-01/Accounts/{account_sid}.json",
        api_base.trim_end_matches('/')
    );
    let http::Answer {
        status,
        headers,
        body,
    } = http::call(client.get(url).basic_auth(account_sid, Some(auth_token))).await?;
    if !status.is_success() {
        return Err(twilio_error(status, &headers, &body));
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let name = v["friendly_name"].as_str().unwrap_or(account_sid);
    let state = v["status"].as_str().unwrap_or("unknown");
    if state != "active" {
        return Err(SendError::permanent(
            Some(state.to_string()),
            format!("the Twilio account {name} is {state}, not active"),
        ));
    }
    Ok(format!("Twilio account {name} is active"))
}

/// The Messages resource of the account: where sends go and are listed.
fn messages_url(api_base: &str, account_sid: &str) -> String {
    format!(
        "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
        api_base.trim_end_matches('/')
    )
}

/// Messages Twilio already holds from the account's number to `msg.to` with
/// `msg`'s text, created at or after `since` (Unix seconds), oldest first:
/// their SIDs. A send whose outcome is unknown (the process died, or the
/// answer timed out, after Twilio may have accepted it) looks here before
/// sending again, because Twilio's API takes no idempotency key. Lists the
/// 50 newest messages between the two numbers (`GET Messages.json?To&From`,
/// newest first); no `DateSent` filter, since a queued message has no send
/// date yet.
pub async fn find_sent(
    client: &reqwest::Client,
    api_base: &str,
    creds: &Credentials,
    msg: &OutboundMessage,
    since: i64,
) -> Result<Vec<String>, SendError> {
    // Templates and media-only messages have no text to recognise them by.
    let Some(text) = msg.text.as_deref().filter(|_| msg.template.is_none()) else {
        return Ok(Vec::new());
    };
    let account_sid = creds.require("account_sid")?;
    let auth_token = creds.require("auth_token")?;
    let from = creds.require("phone_number")?;
    let http::Answer {
        status,
        headers,
        body,
    } = http::call(
        client
            .get(messages_url(api_base, account_sid))
            .basic_auth(account_sid, Some(auth_token))
            .query(&[
                ("To", format!("whatsapp:{}", strip_whatsapp(&msg.to))),
                ("From", format!("whatsapp:{}", strip_whatsapp(from))),
                ("PageSize", "50".to_string()),
            ]),
    )
    .await?;
    if !status.is_success() {
        return Err(http::classify(
            status,
            &headers,
            None,
            body.chars().take(300).collect(),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
        SendError::retryable(None, format!("unreadable message list from Twilio: {e}"))
    })?;
    let mut found: Vec<(i64, String)> = v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["body"].as_str() == Some(text))
        .filter_map(|m| {
            let created = time::OffsetDateTime::parse(
                m["date_created"].as_str()?,
                &time::format_description::well_known::Rfc2822,
            )
            .ok()?
            .unix_timestamp();
            let sid = m["sid"].as_str()?.to_string();
            (created >= since).then_some((created, sid))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, sid)| sid).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Twilio's own SDK test vector.
    #[test]
    fn signature_matches_twilios_example() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert!(verify_signature(
            "12345",
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert_eq!(sign("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(!verify_signature(
            "12346",
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let mut tampered = params.clone();
        tampered[2].1 = "1235".into();
        assert!(!verify_signature(
            "12345",
            url,
            &tampered,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!verify_signature("12345", url, &params, "not base64!"));
    }

    #[test]
    fn default_ports_are_accepted_either_way() {
        let params = p(&[("A", "1")]);
        let sig = sign("t", "https://h.example/x", &params);
        assert!(verify_signature(
            "t",
            "https://h.example:443/x",
            &params,
            &sig
        ));
        let sig = sign("t", "https://h.example:443/x", &params);
        assert!(verify_signature("t", "https://h.example/x", &params, &sig));
    }

    #[test]
    fn parses_an_inbound_whatsapp_message_with_media() {
        let params = p(&[
            ("MessageSid", "SM1"),
            ("From", "whatsapp:+14155550100"),
            ("To", "whatsapp:+14155238886"),
            ("Body", "hello"),
            ("ProfileName", "Ann"),
            ("WaId", "14155550100"),
            ("NumMedia", "1"),
            ("MediaUrl0", "https://api.twilio.com/media/ME1"),
            ("MediaContentType0", "image/jpeg"),
        ]);
        let events = parse(&params).unwrap();
        let InboundEvent::Message(m) = &events[0] else {
            panic!("a message")
        };
        assert_eq!(m.provider_message_id, "SM1");
        assert_eq!(m.from, "+14155550100");
        assert_eq!(m.phone_e164.as_deref(), Some("+14155550100"));
        assert_eq!(m.from_name.as_deref(), Some("Ann"));
        assert_eq!(m.kind, "image");
        assert_eq!(m.media[0].reference, "https://api.twilio.com/media/ME1");
        assert_eq!(m.text.as_deref(), Some("hello"));
    }

    #[test]
    fn parses_status_callbacks() {
        let events = parse(&p(&[
            ("MessageSid", "SM2"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "63016"),
        ]))
        .unwrap();
        assert_eq!(
            events,
            vec![InboundEvent::Status(StatusUpdate {
                local_id: None,
                provider_message_id: "SM2".into(),
                status: DeliveryStatus::Failed,
                error_code: Some("63016".into()),
                error_message: None,
            })]
        );
    }

    #[test]
    fn rejects_what_twilio_does_not_send() {
        assert!(parse(&p(&[("Body", "x")])).is_err());
        assert!(parse(&p(&[("MessageSid", "SM1")])).is_err());
        assert!(
            parse(&p(&[
                ("MessageSid", "SM1"),
                ("From", "x"),
                ("NumMedia", "lots")
            ]))
            .is_err()
        );
        assert!(parse(&p(&[("MessageSid", "SM1"), ("MessageStatus", "exploded")])).is_err());
    }
}
