//! Instagram messaging through Meta's Graph API (Instagram Login): webhook
//! envelopes with `messaging[]` events (signature and handshake in
//! [`crate::meta`]), and `POST /{version}/{ig_user_id}/messages`.

use integro_core::{
    DeliveryStatus, InboundEvent, InboundMessage, Media, OutboundMessage, SendError, StatusUpdate,
};
use serde_json::{Value, json};

use crate::credentials::Credentials;
use crate::{ParseError, ProviderUrls, meta};

/// The events of a webhook, for the account whose Instagram professional
/// account id is `ig_user_id` (entries for other accounts in a batch are
/// skipped, as are echoes of what the account sent).
pub fn parse(body: &[u8], ig_user_id: &str) -> Result<Vec<InboundEvent>, ParseError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::new(format!("not JSON: {e}")))?;
    if v["object"] != "instagram" {
        return Err(ParseError::new("`object` is not instagram"));
    }
    let entries = v["entry"]
        .as_array()
        .ok_or_else(|| ParseError::new("`entry` is missing"))?;
    let mut events = Vec::new();
    for entry in entries {
        // An entry for another account (or naming none) is not this account's.
        if entry["id"].as_str() != Some(ig_user_id) {
            continue;
        }
        // Comments come as `changes[]`; only direct messages are handled.
        for e in entry["messaging"].as_array().into_iter().flatten() {
            let sender = e["sender"]["id"].as_str();
            if sender == Some(ig_user_id) {
                continue;
            }
            if e["message"].is_object() {
                if let Some(m) = parse_message(e, sender)? {
                    events.push(InboundEvent::Message(m));
                }
            } else if let Some(mid) = e["read"]["mid"].as_str() {
                events.push(InboundEvent::Status(StatusUpdate {
                    local_id: None,
                    provider_message_id: mid.to_string(),
                    status: DeliveryStatus::Read,
                    error_code: None,
                    error_message: None,
                }));
            }
            // Reactions, postbacks, edits, referrals: nothing we track.
        }
    }
    Ok(events)
}

fn text_of(v: &Value) -> Option<String> {
    v.as_str().map(String::from)
}

/// Instagram calls documents `file`; the rest keep their attachment type.
fn media_kind(attachment_type: &str) -> &str {
    match attachment_type {
        "file" => "document",
        other => other,
    }
}

fn parse_message(e: &Value, sender: Option<&str>) -> Result<Option<InboundMessage>, ParseError> {
    let m = &e["message"];
    // An empty id would make every such message a "duplicate" of the first.
    let mid = m["mid"]
        .as_str()
        .filter(|mid| !mid.is_empty())
        .ok_or_else(|| ParseError::new("a message has no mid"))?;
    let from = sender
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ParseError::new("a message has no sender"))?;
    // Echoes would make the bot answer itself; deletions are not new messages.
    if m["is_echo"] == true || m["is_deleted"] == true {
        return Ok(None);
    }
    let media: Vec<Media> = m["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some(Media {
                kind: media_kind(a["type"].as_str().unwrap_or("unknown")).to_string(),
                reference: a["payload"]["url"].as_str()?.to_string(),
                content_type: None,
            })
        })
        .collect();
    let text = text_of(&m["text"]);
    let kind = match (media.first(), &text) {
        (Some(first), _) => first.kind.clone(),
        (None, Some(_)) => "text".into(),
        (None, None) if m["is_unsupported"] == true => "unsupported".into(),
        (None, None) => "unknown".into(),
    };
    Ok(Some(InboundMessage {
        provider_message_id: mid.to_string(),
        from: from.to_string(),
        from_name: None,
        phone_e164: None,
        kind,
        text,
        media,
        reply_to: text_of(&m["reply_to"]["mid"]),
    }))
}

/// The attachment type for a media URL, guessed from its extension (the Send
/// API needs one; anything unknown is sent as an image).
fn attachment_type(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "ogg" | "avi" | "mov" | "webm" => "video",
        "aac" | "m4a" | "wav" => "audio",
        _ => "image",
    }
}

/// The request body for `msg`. A message carries either text or one
/// attachment, so with `media_url` set the text is not sent.
pub fn request_body(msg: &OutboundMessage) -> Value {
    let message = match &msg.media_url {
        Some(url) => json!({"attachment": {"type": attachment_type(url), "payload": {"url": url}}}),
        None => json!({"text": msg.text.clone().unwrap_or_default()}),
    };
    json!({"recipient": {"id": msg.to}, "message": message})
}

/// Sends `msg`; returns the message id (`mid`).
pub async fn send(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
    msg: &OutboundMessage,
) -> Result<String, SendError> {
    let ig_user_id = creds.require("ig_user_id")?;
    let token = creds.require("access_token")?;
    if msg.template.is_some() {
        return Err(SendError::permanent(
            None,
            "Instagram has no message templates",
        ));
    }
    let url = format!(
        "{}/{}/{ig_user_id}/messages",
        urls.instagram.trim_end_matches('/'),
        urls.graph_version
    );
    meta::send_json(client, url, token, &request_body(msg), "/message_id").await
}

/// Checks the credentials by reading the token's own account
/// (`GET /me?fields=user_id,username`), which must be `ig_user_id`.
pub async fn check(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
) -> Result<String, SendError> {
    let ig_user_id = creds.require("ig_user_id")?;
    let token = creds.require("access_token")?;
    let url = format!(
        "{}/{}/me?fields=user_id,username",
        urls.instagram.trim_end_matches('/'),
        urls.graph_version
    );
    let v = meta::get_json(client, url, token).await?;
    let id = match &v["user_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let username = v["username"].as_str().unwrap_or("?");
    if id != ig_user_id {
        return Err(SendError::permanent(
            Some("other_account".into()),
            format!("the access token is @{username}'s (user {id}), not user {ig_user_id}'s"),
        ));
    }
    Ok(format!("Instagram account @{username}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"object":"instagram","entry":[{"id":"17841400000000001","time":1718203450123,"messaging":[
      {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449870,
       "message":{"mid":"aWdfA","text":"Hi!","reply_to":{"mid":"aWdfOUT"}}},
      {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449871,
       "message":{"mid":"aWdfB","attachments":[{"type":"image","payload":{"url":"https://cdn.example/a.jpg"}},
                                               {"type":"file","payload":{"url":"https://cdn.example/b.pdf"}}]}},
      {"sender":{"id":"17841400000000001"},"recipient":{"id":"IGSID1"},"timestamp":1718203449872,
       "message":{"mid":"aWdfECHO1","text":"Thanks","is_echo":true}},
      {"sender":{"id":"SOME_OTHER_ID"},"recipient":{"id":"IGSID1"},"timestamp":1718203449873,
       "message":{"mid":"aWdfECHO2","text":"Thanks","is_echo":true}},
      {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449874,
       "read":{"mid":"aWdfOUT"}},
      {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449875,
       "reaction":{"mid":"aWdfOUT","action":"react","reaction":"love"}}]}]}"#;

    #[test]
    fn parses_messages_media_and_reads_and_skips_echoes() {
        let events = parse(BODY.as_bytes(), "17841400000000001").unwrap();
        assert_eq!(events.len(), 3);
        let InboundEvent::Message(m) = &events[0] else {
            panic!()
        };
        assert_eq!(m.provider_message_id, "aWdfA");
        assert_eq!(m.from, "IGSID1");
        assert_eq!(m.kind, "text");
        assert_eq!(m.text.as_deref(), Some("Hi!"));
        assert_eq!(m.reply_to.as_deref(), Some("aWdfOUT"));
        assert_eq!(m.phone_e164, None);
        let InboundEvent::Message(m) = &events[1] else {
            panic!()
        };
        assert_eq!(m.kind, "image");
        assert_eq!(m.text, None);
        assert_eq!(m.media.len(), 2);
        assert_eq!(m.media[0].reference, "https://cdn.example/a.jpg");
        assert_eq!(m.media[1].kind, "document");
        let InboundEvent::Status(s) = &events[2] else {
            panic!()
        };
        assert_eq!(s.provider_message_id, "aWdfOUT");
        assert_eq!(s.status, DeliveryStatus::Read);
    }

    #[test]
    fn other_accounts_in_a_batch_are_skipped() {
        assert!(parse(BODY.as_bytes(), "999").unwrap().is_empty());
    }

    #[test]
    fn comments_and_deletions_are_not_messages() {
        let body = r#"{"object":"instagram","entry":[{"id":"1","time":1,"changes":[{"field":"comments","value":{"id":"C1","text":"nice"}}],
          "messaging":[{"sender":{"id":"U"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"M1","is_deleted":true}}]}]}"#;
        assert!(parse(body.as_bytes(), "1").unwrap().is_empty());
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        assert!(parse(b"not json", "1").is_err());
        assert!(parse(br#"{"object":"page","entry":[]}"#, "1").is_err());
        assert!(parse(br#"{"object":"instagram"}"#, "1").is_err());
        let no_mid = r#"{"object":"instagram","entry":[{"id":"1","messaging":[{"sender":{"id":"U"},"message":{"text":"x"}}]}]}"#;
        assert!(parse(no_mid.as_bytes(), "1").is_err());
        let empty_mid = no_mid.replace(r#""text":"x""#, r#""mid":"","text":"x""#);
        assert!(parse(empty_mid.as_bytes(), "1").is_err());
        let no_sender = r#"{"object":"instagram","entry":[{"id":"1","messaging":[{"message":{"mid":"M","text":"x"}}]}]}"#;
        assert!(parse(no_sender.as_bytes(), "1").is_err());
        // An entry that names no account is not this account's.
        let no_account = no_sender.replace(r#""id":"1","#, "");
        assert!(parse(no_account.as_bytes(), "1").unwrap().is_empty());
    }

    #[test]
    fn builds_text_and_attachment_requests() {
        let msg = |text: Option<&str>, media_url: Option<&str>| OutboundMessage {
            to: "IGSID1".into(),
            text: text.map(String::from),
            media_url: media_url.map(String::from),
            template: None,
            reply_to: None,
        };
        assert_eq!(
            request_body(&msg(Some("Hello"), None)),
            json!({"recipient": {"id": "IGSID1"}, "message": {"text": "Hello"}})
        );
        assert_eq!(
            request_body(&msg(None, Some("https://cdn.example/p.png"))),
            json!({"recipient": {"id": "IGSID1"}, "message": {"attachment": {"type": "image", "payload": {"url": "https://cdn.example/p.png"}}}})
        );
        let video = request_body(&msg(None, Some("https://cdn.example/clip.MP4?sig=1")));
        assert_eq!(video["message"]["attachment"]["type"], "video");
        assert_eq!(attachment_type("https://cdn.example/voice.m4a"), "audio");
    }
}
