//! WhatsApp through Meta's Cloud API: webhook envelopes with messages and
//! statuses (signature and handshake in [`crate::meta`]), and
//! `POST /{version}/{phone_number_id}/messages`.

use integro_core::{
    DeliveryStatus, InboundEvent, InboundMessage, Media, OutboundMessage, SendError, StatusUpdate,
};
use serde_json::{Value, json};

use crate::credentials::Credentials;
use crate::{ParseError, ProviderUrls, meta};

const MEDIA_KINDS: &[&str] = &["image", "audio", "video", "document", "sticker"];

/// The events of a webhook, for the account whose phone number id is
/// `phone_number_id` (changes for other numbers in a batch are skipped).
pub fn parse(body: &[u8], phone_number_id: &str) -> Result<Vec<InboundEvent>, ParseError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::new(format!("not JSON: {e}")))?;
    if v["object"] != "whatsapp_business_account" {
        return Err(ParseError::new("`object` is not whatsapp_business_account"));
    }
    let entries = v["entry"]
        .as_array()
        .ok_or_else(|| ParseError::new("`entry` is missing"))?;
    let mut events = Vec::new();
    for change in entries
        .iter()
        .filter_map(|e| e["changes"].as_array())
        .flatten()
    {
        let value = &change["value"];
        if change["field"] != "messages" {
            continue;
        }
        // A change for another number (or naming none) is not this account's.
        if value["metadata"]["phone_number_id"].as_str() != Some(phone_number_id) {
            continue;
        }
        let contacts = value["contacts"].as_array();
        for m in value["messages"].as_array().into_iter().flatten() {
            events.push(InboundEvent::Message(parse_message(m, contacts)?));
        }
        for s in value["statuses"].as_array().into_iter().flatten() {
            if let Some(update) = parse_status(s)? {
                events.push(InboundEvent::Status(update));
            }
        }
    }
    Ok(events)
}

fn text_of(v: &Value) -> Option<String> {
    v.as_str().map(String::from)
}

fn parse_message(m: &Value, contacts: Option<&Vec<Value>>) -> Result<InboundMessage, ParseError> {
    // An empty id would make every such message a "duplicate" of the first.
    let id = m["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ParseError::new("a message has no id"))?;
    let from = m["from"]
        .as_str()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ParseError::new("a message has no `from`"))?;
    let kind = m["type"].as_str().unwrap_or("unknown").to_string();
    // The sender's own contact entry; another sender's name is never borrowed.
    let contact = contacts
        .into_iter()
        .flatten()
        .find(|c| c["wa_id"].as_str() == Some(from));
    let mut media = Vec::new();
    let text = match kind.as_str() {
        "text" => text_of(&m["text"]["body"]),
        "button" => text_of(&m["button"]["text"]),
        "interactive" => text_of(&m["interactive"]["button_reply"]["title"])
            .or_else(|| text_of(&m["interactive"]["list_reply"]["title"])),
        k if MEDIA_KINDS.contains(&k) => {
            let part = &m[k];
            if let Some(media_id) = part["id"].as_str() {
                media.push(Media {
                    kind: k.to_string(),
                    reference: media_id.to_string(),
                    content_type: text_of(&part["mime_type"]),
                });
            }
            text_of(&part["caption"])
        }
        "location" => Some(format!(
            "{}, {}",
            m["location"]["latitude"].as_f64().unwrap_or_default(),
            m["location"]["longitude"].as_f64().unwrap_or_default()
        )),
        _ => None,
    };
    let digits = from.chars().all(|c| c.is_ascii_digit());
    Ok(InboundMessage {
        provider_message_id: id.to_string(),
        from: from.to_string(),
        from_name: contact.and_then(|c| text_of(&c["profile"]["name"])),
        phone_e164: digits.then(|| format!("+{from}")),
        kind,
        text,
        media,
        reply_to: text_of(&m["context"]["id"]),
    })
}

fn parse_status(s: &Value) -> Result<Option<StatusUpdate>, ParseError> {
    let id = s["id"]
        .as_str()
        .ok_or_else(|| ParseError::new("a status has no id"))?;
    let status = match s["status"].as_str() {
        Some("sent") => DeliveryStatus::Sent,
        Some("delivered") => DeliveryStatus::Delivered,
        Some("read") => DeliveryStatus::Read,
        Some("failed") => DeliveryStatus::Failed,
        // `deleted`, `warning` and future values change nothing we track.
        _ => return Ok(None),
    };
    let error = &s["errors"][0];
    Ok(Some(StatusUpdate {
        local_id: text_of(&s["biz_opaque_callback_data"]),
        provider_message_id: id.to_string(),
        status,
        error_code: error["code"].as_i64().map(|c| c.to_string()),
        error_message: text_of(&error["title"]).or_else(|| text_of(&error["message"])),
    }))
}

/// The request body for `msg`, our message `local_id`. Meta echoes the
/// `biz_opaque_callback_data` in the message's status webhooks: a send whose
/// answer was lost is recognised by it.
pub fn request_body(msg: &OutboundMessage, local_id: &str) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": msg.to,
        "biz_opaque_callback_data": local_id,
    });
    if let Some(t) = &msg.template {
        body["type"] = json!("template");
        let parameters: Vec<Value> = t
            .parameters
            .iter()
            .map(|p| json!({"type": "text", "text": p}))
            .collect();
        let mut template = json!({
            "name": t.name,
            "language": {"code": t.language.clone().unwrap_or_else(|| "en_US".into()), "policy": "deterministic"},
        });
        if !parameters.is_empty() {
            template["components"] = json!([{"type": "body", "parameters": parameters}]);
        }
        body["template"] = template;
    } else if let Some(url) = &msg.media_url {
        body["type"] = json!("image");
        let mut image = json!({ "link": url });
        if let Some(caption) = &msg.text {
            image["caption"] = json!(caption);
        }
        body["image"] = image;
    } else {
        body["type"] = json!("text");
        body["text"] = json!({"preview_url": false, "body": msg.text.clone().unwrap_or_default()});
    }
    if let Some(reply_to) = &msg.reply_to {
        body["context"] = json!({ "message_id": reply_to });
    }
    body
}

/// Sends `msg`; returns the `wamid`.
pub async fn send(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
    msg: &OutboundMessage,
    local_id: &str,
) -> Result<String, SendError> {
    let phone_number_id = creds.require("phone_number_id")?;
    let token = creds.require("access_token")?;
    let url = format!(
        "{}/{}/{phone_number_id}/messages",
        urls.graph.trim_end_matches('/'),
        urls.graph_version
    );
    meta::send_json(
        client,
        url,
        token,
        &request_body(msg, local_id),
        "/messages/0/id",
    )
    .await
}

/// Checks the credentials by reading the phone number
/// (`GET /{phone-number-id}?fields=display_phone_number,verified_name`).
pub async fn check(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
) -> Result<String, SendError> {
    let phone_number_id = creds.require("phone_number_id")?;
    let token = creds.require("access_token")?;
    let url = format!(
        "{}/{}/{phone_number_id}?fields=display_phone_number,verified_name",
        urls.graph.trim_end_matches('/'),
        urls.graph_version
    );
    let v = meta::get_json(client, url, token).await?;
    let number = v["display_phone_number"]
        .as_str()
        .unwrap_or(phone_number_id);
    Ok(match v["verified_name"].as_str() {
        Some(name) => format!("WhatsApp number {number} ({name})"),
        None => format!("WhatsApp number {number}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{
      "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
      "contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],
      "messages":[{"from":"16505551234","id":"wamid.A","timestamp":"1749416383","type":"text","text":{"body":"Hi there"}},
                  {"from":"16505551234","id":"wamid.B","timestamp":"1749416384","type":"image","image":{"id":"MEDIA1","mime_type":"image/jpeg","caption":"look"}}],
      "statuses":[{"id":"wamid.OUT","status":"read","timestamp":"1","recipient_id":"16505551234","biz_opaque_callback_data":"LOCAL1"}]}}]}]}"#;

    #[test]
    fn parses_messages_media_and_statuses() {
        let events = parse(BODY.as_bytes(), "106540352242922").unwrap();
        assert_eq!(events.len(), 3);
        let InboundEvent::Message(m) = &events[0] else {
            panic!()
        };
        assert_eq!(m.provider_message_id, "wamid.A");
        assert_eq!(m.from_name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(m.phone_e164.as_deref(), Some("+16505551234"));
        assert_eq!(m.text.as_deref(), Some("Hi there"));
        let InboundEvent::Message(m) = &events[1] else {
            panic!()
        };
        assert_eq!(m.media[0].reference, "MEDIA1");
        assert_eq!(m.text.as_deref(), Some("look"));
        let InboundEvent::Status(s) = &events[2] else {
            panic!()
        };
        assert_eq!(s.status, DeliveryStatus::Read);
        assert_eq!(s.local_id.as_deref(), Some("LOCAL1"));
    }

    #[test]
    fn other_numbers_in_a_batch_are_skipped() {
        assert!(parse(BODY.as_bytes(), "999").unwrap().is_empty());
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        assert!(parse(b"not json", "1").is_err());
        assert!(parse(br#"{"object":"page","entry":[]}"#, "1").is_err());
        assert!(parse(br#"{"object":"whatsapp_business_account"}"#, "1").is_err());
        let no_id = r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},"messages":[{"from":"1","type":"text"}]}}]}]}"#;
        assert!(parse(no_id.as_bytes(), "1").is_err());
        let empty_id = no_id.replace(r#""from":"1""#, r#""id":"","from":"1""#);
        assert!(parse(empty_id.as_bytes(), "1").is_err());
        // A change that names no number is not this account's.
        let no_number = no_id.replace(r#""metadata":{"phone_number_id":"1"},"#, "");
        assert!(parse(no_number.as_bytes(), "1").unwrap().is_empty());
    }

    #[test]
    fn builds_text_and_template_requests() {
        let text = request_body(
            &OutboundMessage {
                to: "16505551234".into(),
                text: Some("Hello".into()),
                media_url: None,
                template: None,
                reply_to: Some("wamid.A".into()),
            },
            "LOCAL1",
        );
        assert_eq!(text["type"], "text");
        assert_eq!(text["biz_opaque_callback_data"], "LOCAL1");
        assert_eq!(text["text"]["body"], "Hello");
        assert_eq!(text["context"]["message_id"], "wamid.A");
        let template = request_body(
            &OutboundMessage {
                to: "1".into(),
                text: None,
                media_url: None,
                template: Some(integro_core::Template {
                    name: "order_update".into(),
                    language: Some("en_US".into()),
                    parameters: vec!["#1234".into()],
                }),
                reply_to: None,
            },
            "LOCAL2",
        );
        assert_eq!(
            template["template"]["components"][0]["parameters"][0]["text"],
            "#1234"
        );
    }
}
