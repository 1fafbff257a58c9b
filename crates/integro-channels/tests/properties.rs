//! Property tests for every webhook parser and signature verifier: hostile
//! input (arbitrary bytes, huge fields, deep nesting, truncated bodies, wrong
//! types) must never panic and never become a message, a signature must hold
//! for exactly the bytes it signs, and realistic payloads built from the
//! protocol sheets must parse back to what was put in.
//!
//! Each property is bounded (at most 256 cases, modest shrinking) so that the
//! whole file runs in seconds in a debug build. Failures are not persisted to
//! disk: proptest prints the minimal failing input instead.

use std::borrow::Cow;
use std::fmt::Write as _;

use integro_channels::{ParseError, instagram, meta, twilio, whatsapp_cloud, x};
use integro_core::{InboundEvent, InboundMessage};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Shared configuration, parsers and generators
// ---------------------------------------------------------------------------

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The accounts the fixed samples below are addressed to.
const WA_PHONE_ID: &str = "106540352242922";
const IG_ID: &str = "17841400000000001";
const X_USER: &str = "4337869213";
const TWILIO_URL: &str = "https://hooks.integro.example/webhooks/twilio/acc_1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Twilio,
    WhatsApp,
    Instagram,
    X,
}

const CHANNELS: [Channel; 4] = [
    Channel::Twilio,
    Channel::WhatsApp,
    Channel::Instagram,
    Channel::X,
];
const JSON_CHANNELS: [Channel; 3] = [Channel::WhatsApp, Channel::Instagram, Channel::X];

/// A raw webhook body through its channel's parser, as the server does it.
fn parse(channel: Channel, account: &str, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    match channel {
        Channel::Twilio => twilio::parse(&twilio::parse_form(body)),
        Channel::WhatsApp => whatsapp_cloud::parse(body, account),
        Channel::Instagram => instagram::parse(body, account),
        Channel::X => x::parse(body, account),
    }
}

fn default_account(channel: Channel) -> &'static str {
    match channel {
        Channel::Twilio => "",
        Channel::WhatsApp => WA_PHONE_ID,
        Channel::Instagram => IG_ID,
        Channel::X => X_USER,
    }
}

/// Parses with the samples' account; the result only has to exist.
fn parse_default(channel: Channel, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    parse(channel, default_account(channel), body)
}

fn messages(events: &[InboundEvent]) -> Vec<&InboundMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            InboundEvent::Message(m) => Some(m),
            InboundEvent::Status(_) => None,
        })
        .collect()
}

fn has_message(result: &Result<Vec<InboundEvent>, ParseError>) -> bool {
    result
        .as_ref()
        .is_ok_and(|events| !messages(events).is_empty())
}

/// Any `char` at all, control characters and NUL included.
fn any_string(max: usize) -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Pieces that are awkward for form encoding, JSON escaping or UTF-16
/// (emoji outside the BMP, ZWJ sequences, flags, BOM, quotes, `&=+%`).
const AWKWARD: &[&str] = &[
    "👋",
    "🇫🇷",
    "👨\u{200d}👩\u{200d}👧",
    "😀",
    "é",
    "ß",
    "中文",
    "عربى",
    "\u{200d}",
    "\u{feff}",
    "\u{0}",
    " ",
    "\n",
    "\r\n",
    "\t",
    "\"",
    "\\",
    "/",
    "&",
    "=",
    "+",
    "%",
    "%20",
    "<b>",
    "'",
    "\u{7f}",
    "\u{2028}",
    "hello",
    "Hi there",
];

/// Message text: arbitrary unicode, printable text, or awkward pieces.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any_string(64),
        "\\PC{0,120}",
        prop::collection::vec(select(AWKWARD), 0..16).prop_map(|v| v.concat()),
    ]
}

/// JSON as Meta sends it: every non-ASCII character escaped as `\uXXXX`
/// (UTF-16, so emoji become surrogate pairs). Non-ASCII only ever appears
/// inside strings in serde_json's output, so this is a plain substitution.
fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(out, "\\u{unit:04x}").expect("writing to a String");
            }
        }
    }
    out
}

fn to_body(v: &Value, escape: bool) -> Vec<u8> {
    let s = v.to_string();
    if escape { ascii_escaped(&s) } else { s }.into_bytes()
}

fn form<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

// ---------------------------------------------------------------------------
// Fixed samples, one per channel, shaped like the protocol sheets' examples
// ---------------------------------------------------------------------------

const TWILIO_SAMPLE: &str = "MessageSid=SM1a2b3c4d5e6f708192a3b4c5d6e7f809&SmsMessageSid=SM1a2b3c4d5e6f708192a3b4c5d6e7f809\
&SmsSid=SM1a2b3c4d5e6f708192a3b4c5d6e7f809&AccountSid=AC0123456789abcdef0123456789abcdef\
&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&From=whatsapp%3A%2B14155550100\
&To=whatsapp%3A%2B14155238886&Body=Hello+%F0%9F%91%8B+caf%C3%A9&NumMedia=1&NumSegments=1\
&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2F2010-04-01%2FAccounts%2FAC1%2FMessages%2FMM1%2FMedia%2FME1\
&MediaContentType0=image%2Fjpeg&ProfileName=Ann+Example&WaId=14155550100&MessageType=image\
&OriginalRepliedMessageSid=SM00000000000000000000000000000001&ApiVersion=2010-04-01";

const WA_SAMPLE: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[
 {"field":"messages","value":{"messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],
  "messages":[
   {"from":"16505551234","id":"wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTJDQ0U1","timestamp":"1749416383","type":"text",
    "text":{"body":"Hi there \ud83d\udc4b"},"context":{"from":"15550783881","id":"wamid.OUT1"}},
   {"from":"16505551234","id":"wamid.B","timestamp":"1749416384","type":"image",
    "image":{"id":"1003383421387256","mime_type":"image/jpeg","sha256":"x","caption":"look"}},
   {"from":"16505551234","id":"wamid.C","timestamp":"1749416385","type":"interactive",
    "interactive":{"type":"button_reply","button_reply":{"id":"yes","title":"Yes"}}},
   {"from":"16505551234","id":"wamid.D","timestamp":"1749416386","type":"location",
    "location":{"latitude":37.48,"longitude":-122.15,"name":"HQ"}},
   {"from":"16505551234","id":"wamid.E","timestamp":"1749416387","type":"button",
    "button":{"text":"Stop","payload":"STOP"}},
   {"from":"16505551234","id":"wamid.F","timestamp":"1749416388","type":"reaction",
    "reaction":{"message_id":"wamid.OUT1","emoji":"\u2764"}}],
  "statuses":[
   {"id":"wamid.OUT1","status":"read","timestamp":"1749416390","recipient_id":"16505551234"},
   {"id":"wamid.OUT2","status":"failed","timestamp":"1749416391","recipient_id":"16505551234",
    "errors":[{"code":131047,"title":"Re-engagement message","error_data":{"details":"more than 24 hours"}}]}]}},
 {"field":"messages","value":{"metadata":{"phone_number_id":"999"},
  "messages":[{"from":"1","id":"wamid.OTHER","type":"text","text":{"body":"not ours"}}]}},
 {"field":"account_update","value":{"event":"VERIFIED_ACCOUNT"}}]}]}"#;

const IG_SAMPLE: &str = r#"{"object":"instagram","entry":[{"id":"17841400000000001","time":1718203450123,"messaging":[
  {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449870,
   "message":{"mid":"aWdfA","text":"Hi! \ud83d\ude00","reply_to":{"mid":"aWdfOUT"}}},
  {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449871,
   "message":{"mid":"aWdfB","attachments":[{"type":"image","payload":{"url":"https://cdn.example/a.jpg"}},
                                           {"type":"file","payload":{"url":"https://cdn.example/b.pdf"}}]}},
  {"sender":{"id":"17841400000000001"},"recipient":{"id":"IGSID1"},"timestamp":1718203449872,
   "message":{"mid":"aWdfECHO","text":"Thanks","is_echo":true}},
  {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449873,
   "message":{"mid":"aWdfU","is_unsupported":true}},
  {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449874,
   "read":{"mid":"aWdfOUT"}},
  {"sender":{"id":"IGSID1"},"recipient":{"id":"17841400000000001"},"timestamp":1718203449875,
   "reaction":{"mid":"aWdfOUT","action":"react","reaction":"love"}}]},
 {"id":"17841499999999999","time":1718203450124,"changes":[{"field":"comments","value":{"id":"C1","text":"nice"}}]}]}"#;

const X_SAMPLE: &str = r#"{"for_user_id":"4337869213","direct_message_events":[
  {"type":"message_create","id":"954491830116155396","created_timestamp":"1516403560557",
   "message_create":{"target":{"recipient_id":"4337869213"},"sender_id":"3001969357",
    "message_data":{"text":"Hello World! \ud83d\ude80","entities":{"hashtags":[],"urls":[],"user_mentions":[]}}}},
  {"type":"message_create","id":"954491830116155397","created_timestamp":"1516403560558",
   "message_create":{"target":{"recipient_id":"3001969357"},"sender_id":"4337869213","message_data":{"text":"Hi back"}}}],
 "users":{"3001969357":{"id":"3001969357","name":"Jordan Brinks","screen_name":"furiouscamper"},
          "4337869213":{"id":"4337869213","name":"Integro","screen_name":"integro"}},
 "tweet_create_events":[
  {"id_str":"1800191123456789012","text":"@integro help","in_reply_to_status_id_str":null,
   "user":{"id_str":"7","name":"Ann","screen_name":"ann"},"entities":{"user_mentions":[{"id_str":"4337869213"}]},
   "extended_tweet":{"full_text":"@integro help me with a long question"}},
  {"id_str":"1800191123456789014","text":"RT @integro: news","user":{"id_str":"8","name":"Bo"},
   "retweeted_status":{"id_str":"1"}}]}"#;

fn sample(channel: Channel) -> &'static str {
    match channel {
        Channel::Twilio => TWILIO_SAMPLE,
        Channel::WhatsApp => WA_SAMPLE,
        Channel::Instagram => IG_SAMPLE,
        Channel::X => X_SAMPLE,
    }
}

#[test]
fn samples_are_what_they_claim_to_be() {
    // The fixed samples must themselves parse, or the mutation tests below
    // would only ever exercise the first error path.
    for channel in CHANNELS {
        let events = parse_default(channel, sample(channel).as_bytes())
            .unwrap_or_else(|e| panic!("{channel:?} sample: {e}"));
        assert!(!messages(&events).is_empty(), "{channel:?} sample");
    }
}

// ---------------------------------------------------------------------------
// Realistic inbound messages, generated per channel (round trip + truncation)
// ---------------------------------------------------------------------------

/// What the parser must find in a generated payload.
#[derive(Debug, Clone)]
struct Expected {
    id: String,
    from: String,
    from_name: Option<String>,
    phone_e164: Option<String>,
    text: Option<String>,
    reply_to: Option<String>,
}

#[derive(Debug, Clone)]
struct Inbound {
    channel: Channel,
    account: String,
    body: Vec<u8>,
    expected: Expected,
}

/// A Twilio WhatsApp inbound form, in a shuffled parameter order.
fn twilio_inbound() -> impl Strategy<Value = Inbound> {
    (
        "(SM|MM)[0-9a-f]{32}",
        "\\+[1-9][0-9]{7,14}",
        text(),
        prop::option::of(text()),
        prop::option::of("SM[0-9a-f]{32}"),
        prop::collection::vec(("image/(jpeg|png)|audio/ogg|video/mp4|application/pdf", "[0-9A-Za-z]{8,34}"), 0..=3),
    )
        .prop_flat_map(|(sid, phone, body, name, replied, media)| {
            let mut pairs: Vec<(String, String)> = vec![
                ("MessageSid".into(), sid.clone()),
                ("SmsMessageSid".into(), sid.clone()),
                ("AccountSid".into(), "AC0123456789abcdef0123456789abcdef".into()),
                ("From".into(), format!("whatsapp:{phone}")),
                ("To".into(), "whatsapp:+14155238886".into()),
                ("Body".into(), body.clone()),
                ("WaId".into(), phone[1..].to_string()),
                ("NumMedia".into(), media.len().to_string()),
                ("ApiVersion".into(), "2010-04-01".into()),
            ];
            for (i, (content_type, media_sid)) in media.iter().enumerate() {
                pairs.push((
                    format!("MediaUrl{i}"),
                    format!("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/{sid}/Media/ME{media_sid}"),
                ));
                pairs.push((format!("MediaContentType{i}"), content_type.clone()));
            }
            if let Some(name) = &name {
                pairs.push(("ProfileName".into(), name.clone()));
            }
            if let Some(replied) = &replied {
                pairs.push(("OriginalRepliedMessageSid".into(), replied.clone()));
            }
            // Twilio drops empty values from what we read (`param` filters them).
            let expected = Expected {
                id: sid,
                from: phone.clone(),
                from_name: name.filter(|n| !n.is_empty()),
                phone_e164: Some(phone),
                text: Some(body).filter(|b| !b.is_empty()),
                reply_to: replied,
            };
            (Just(pairs).prop_shuffle(), Just(expected))
        })
        .prop_map(|(pairs, expected)| Inbound {
            channel: Channel::Twilio,
            account: String::new(),
            body: form(&pairs),
            expected,
        })
}

/// Where a WhatsApp Cloud message keeps the text the parser reads.
#[derive(Debug, Clone, Copy)]
enum WaKind {
    Text,
    Button,
    ButtonReply,
    ListReply,
    ImageCaption,
}

fn whatsapp_inbound() -> impl Strategy<Value = Inbound> {
    (
        "[1-9][0-9]{14}",
        "wamid\\.[A-Za-z0-9_=+/-]{16,64}",
        // A phone-number wa_id, or one of the business-scoped ids Meta is rolling out.
        prop_oneof!["[1-9][0-9]{7,14}", "[A-Z]{2}\\.[A-Za-z0-9]{10,40}"],
        prop::option::of(text()),
        text(),
        select(vec![
            WaKind::Text,
            WaKind::Button,
            WaKind::ButtonReply,
            WaKind::ListReply,
            WaKind::ImageCaption,
        ]),
        prop::option::of("wamid\\.[A-Za-z0-9]{16,32}"),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(phone_id, id, from, name, body, kind, context, noise, escape)| {
            let mut message = json!({"from": from, "id": id, "timestamp": "1749416383"});
            match kind {
                WaKind::Text => {
                    message["type"] = json!("text");
                    message["text"] = json!({"body": body});
                }
                WaKind::Button => {
                    message["type"] = json!("button");
                    message["button"] = json!({"text": body, "payload": "P"});
                }
                WaKind::ButtonReply => {
                    message["type"] = json!("interactive");
                    message["interactive"] =
                        json!({"type": "button_reply", "button_reply": {"id": "b1", "title": body}});
                }
                WaKind::ListReply => {
                    message["type"] = json!("interactive");
                    message["interactive"] =
                        json!({"type": "list_reply", "list_reply": {"id": "r1", "title": body, "description": "d"}});
                }
                WaKind::ImageCaption => {
                    message["type"] = json!("image");
                    message["image"] =
                        json!({"id": "1003383421387256", "mime_type": "image/jpeg", "caption": body});
                }
            }
            if let Some(context) = &context {
                message["context"] = json!({"from": "15550783881", "id": context});
            }
            let mut value = json!({
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_id},
                "messages": [message],
            });
            if let Some(name) = &name {
                value["contacts"] = json!([{"profile": {"name": name}, "wa_id": from}]);
            }
            let mut changes = vec![json!({"field": "messages", "value": value})];
            if noise {
                // A status, a change for another number and another field: none is a message.
                changes[0]["value"]["statuses"] = json!([{"id": "wamid.OUT", "status": "delivered",
                    "timestamp": "1749416390", "recipient_id": from}]);
                changes.push(json!({"field": "messages", "value": {
                    "metadata": {"phone_number_id": format!("{phone_id}9")},
                    "messages": [{"from": "1", "id": "wamid.OTHER", "type": "text", "text": {"body": "x"}}]}}));
                changes.push(json!({"field": "account_update", "value": {"event": "x"}}));
            }
            let envelope = json!({"object": "whatsapp_business_account",
                "entry": [{"id": "102290129340398", "changes": changes}]});
            let digits = from.chars().all(|c| c.is_ascii_digit());
            Inbound {
                channel: Channel::WhatsApp,
                account: phone_id,
                body: to_body(&envelope, escape),
                expected: Expected {
                    id,
                    phone_e164: digits.then(|| format!("+{from}")),
                    from,
                    from_name: name,
                    text: Some(body),
                    reply_to: context,
                },
            }
        })
}

fn instagram_inbound() -> impl Strategy<Value = Inbound> {
    (
        "17841[0-9]{12}",
        // IGSIDs: 16 digits, so never equal to the 17-digit account id.
        "[1-9][0-9]{15}",
        "aWdf[A-Za-z0-9_-]{20,80}",
        text(),
        prop::option::of("aWdf[A-Za-z0-9_-]{20,40}"),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(ig_id, sender, mid, body, reply_to, noise, escape)| {
            let mut message = json!({"mid": mid, "text": body});
            if let Some(r) = &reply_to {
                message["reply_to"] = json!({"mid": r});
            }
            let mut messaging = vec![json!({"sender": {"id": sender}, "recipient": {"id": ig_id},
                "timestamp": 1718203449870u64, "message": message})];
            let mut entries = vec![];
            if noise {
                // An echo of our own reply, a read receipt, a reaction, and an
                // entry for another account: none is a message for us.
                messaging.push(json!({"sender": {"id": ig_id}, "recipient": {"id": sender},
                    "timestamp": 1, "message": {"mid": "aWdfECHO", "text": "echo", "is_echo": true}}));
                messaging.push(json!({"sender": {"id": sender}, "recipient": {"id": ig_id},
                    "timestamp": 2, "read": {"mid": "aWdfOUT"}}));
                messaging.push(json!({"sender": {"id": sender}, "recipient": {"id": ig_id},
                    "timestamp": 3, "reaction": {"mid": "aWdfOUT", "action": "react", "reaction": "love"}}));
                entries.push(json!({"id": format!("{ig_id}0"), "time": 1, "messaging": [
                    {"sender": {"id": sender}, "recipient": {"id": "x"}, "timestamp": 4,
                     "message": {"mid": "aWdfOTHER", "text": "not ours"}}]}));
            }
            entries.insert(0, json!({"id": ig_id, "time": 1718203450123u64, "messaging": messaging}));
            let envelope = json!({"object": "instagram", "entry": entries});
            Inbound {
                channel: Channel::Instagram,
                account: ig_id,
                body: to_body(&envelope, escape),
                expected: Expected {
                    id: mid,
                    from: sender,
                    from_name: None,
                    phone_e164: None,
                    text: Some(body),
                    reply_to,
                },
            }
        })
}

fn x_inbound() -> impl Strategy<Value = Inbound> {
    (
        "[1-9][0-9]{9}",
        // At least 11 digits, so never equal to the 10-digit account id.
        "[1-9][0-9]{10,18}",
        "[1-9][0-9]{18}",
        text(),
        prop::option::of(text()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(user, sender, id, body, name, dm, extended, noise, escape)| {
            let mut envelope = json!({"for_user_id": user});
            if dm {
                let mut events = vec![json!({"type": "message_create", "id": id,
                    "created_timestamp": "1516403560557",
                    "message_create": {"target": {"recipient_id": user}, "sender_id": sender,
                        "message_data": {"text": body, "entities": {}}}})];
                let mut user_entry = json!({"id": sender, "screen_name": "someone"});
                if let Some(name) = &name {
                    user_entry["name"] = json!(name);
                }
                let mut users = serde_json::Map::new();
                users.insert(sender.clone(), user_entry);
                if noise {
                    // Our own DM, echoed back to us.
                    events.push(json!({"type": "message_create", "id": "1", "message_create": {
                        "target": {"recipient_id": sender}, "sender_id": user,
                        "message_data": {"text": "our reply"}}}));
                    users.insert(user.clone(), json!({"id": user, "name": "Integro"}));
                    envelope["direct_message_indicate_typing_events"] =
                        json!([{"created_timestamp": "1", "sender_id": sender, "target": {"recipient_id": user}}]);
                }
                envelope["direct_message_events"] = json!(events);
                envelope["users"] = Value::Object(users);
            } else {
                let mut author = json!({"id_str": sender, "screen_name": "someone"});
                if let Some(name) = &name {
                    author["name"] = json!(name);
                }
                let mut tweet = json!({"id_str": id, "in_reply_to_status_id_str": null, "user": author,
                    "entities": {"user_mentions": [{"id_str": user}]}});
                // Long tweets carry a shortened `text` and the full text separately.
                if extended {
                    let short: String = body.chars().take(10).chain(['…']).collect();
                    tweet["text"] = json!(short);
                    tweet["extended_tweet"] = json!({"full_text": body});
                } else {
                    tweet["text"] = json!(body);
                }
                let mut tweets = vec![tweet];
                if noise {
                    // Our own tweet, and someone's retweet: not addressed to us.
                    tweets.push(json!({"id_str": "2", "text": "ours", "user": {"id_str": user}}));
                    tweets.push(json!({"id_str": "3", "text": "RT", "user": {"id_str": "8"},
                        "retweeted_status": {"id_str": "1"}}));
                }
                envelope["tweet_create_events"] = json!(tweets);
            }
            Inbound {
                channel: Channel::X,
                account: user,
                body: to_body(&envelope, escape),
                expected: Expected {
                    id,
                    // A post's author is a contact apart from their DMs.
                    from: if dm { sender } else { format!("post:{sender}") },
                    from_name: name,
                    phone_e164: None,
                    text: Some(body),
                    reply_to: None,
                },
            }
        })
}

fn any_inbound() -> impl Strategy<Value = Inbound> {
    prop_oneof![
        twilio_inbound(),
        whatsapp_inbound(),
        instagram_inbound(),
        x_inbound()
    ]
}

/// Exactly one message, carrying what was put in.
fn check_round_trip(inbound: &Inbound) -> Result<(), TestCaseError> {
    let events = parse(inbound.channel, &inbound.account, &inbound.body)
        .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
    let found = messages(&events);
    prop_assert_eq!(found.len(), 1, "events: {:?}", events);
    let m = found[0];
    let want = &inbound.expected;
    prop_assert_eq!(&m.provider_message_id, &want.id);
    prop_assert_eq!(&m.from, &want.from);
    prop_assert_eq!(&m.from_name, &want.from_name);
    prop_assert_eq!(&m.phone_e164, &want.phone_e164);
    prop_assert_eq!(&m.text, &want.text);
    prop_assert_eq!(&m.reply_to, &want.reply_to);
    Ok(())
}

// ---------------------------------------------------------------------------
// All parsers: hostile input never panics
// ---------------------------------------------------------------------------

/// Bytes that look a little like JSON or forms, to get past the first check
/// more often than uniform random bytes do.
fn jsonish_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        select(vec![
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            "null",
            "true",
            "1",
            "-0.5e9",
            "\\u",
            "\\ud83d",
            "\"object\"",
            "\"entry\"",
            "\"messages\"",
            "\"id\"",
            "\"for_user_id\"",
            "&",
            "=",
            "MessageSid",
            "From",
            "%",
            "%F0",
            "+",
            "\u{0}",
            "é",
        ]),
        0..200,
    )
    .prop_map(|v| v.concat().into_bytes())
}

/// JSON pointers to every node of `v`, the root included.
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_string());
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, &format!("{at}/{i}"), out);
            }
        }
        Value::Object(fields) => {
            for (k, item) in fields {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(item, &format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

fn all_pointers(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    pointers(v, "", &mut out);
    out
}

fn replace_at(v: &mut Value, pointer: &str, new: Value) {
    *v.pointer_mut(pointer).expect("a pointer from all_pointers") = new;
}

/// Values of the wrong type (or the wrong content) for any known field.
fn wrong_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("x"),
        json!("whatsapp_business_account"),
        json!("instagram"),
        json!(X_USER),
        json!(IG_ID),
        json!([]),
        json!([null]),
        json!({}),
        json!({"id": null}),
    ]
}

fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(wrong_values()),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_string(16).prop_map(Value::from),
    ]
}

/// A huge value, as raw JSON text (so that it can also be a 10 000-digit number).
fn huge_raw() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<char>(), 1..=65_536usize)
            .prop_map(|(c, n)| Value::String(c.to_string().repeat(n)).to_string()),
        (1..=65_536usize).prop_map(|n| format!("\"{}\"", "\\ud83d\\ude00".repeat(n / 12 + 1))),
        (1..=20_000usize).prop_map(|n| "9".repeat(n)),
        (1..=20_000usize).prop_map(|n| format!("1e{}", "9".repeat(n))),
        (1..=10_000usize).prop_map(|n| format!("[{}null]", "null,".repeat(n))),
        (1..=5_000usize).prop_map(|n| {
            let fields: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            format!("{{{}}}", fields.join(","))
        }),
    ]
}

/// Twilio parameter names, and values that are wrong for them.
const TWILIO_NAMES: &[&str] = &[
    "MessageSid",
    "SmsMessageSid",
    "SmsSid",
    "AccountSid",
    "MessagingServiceSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "NumSegments",
    "MediaUrl0",
    "MediaContentType0",
    "MediaUrl1",
    "MediaContentType1",
    "MediaUrl9",
    "MediaUrl10",
    "ProfileName",
    "WaId",
    "MessageType",
    "Latitude",
    "Longitude",
    "ButtonText",
    "ButtonPayload",
    "OriginalRepliedMessageSid",
    "MessageStatus",
    "ErrorCode",
    "ErrorMessage",
    "ApiVersion",
];
const TWILIO_VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "3",
    "10",
    "11",
    "-1",
    "+3",
    " 3",
    "3 ",
    "1e3",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "NaN",
    "whatsapp:",
    "whatsapp:+",
    "whatsapp:+14155550100",
    "+14155550100",
    "received",
    "receiving",
    "read",
    "failed",
    "exploded",
    "image/jpeg",
    "image",
    "/",
    "%",
    "\u{0}",
    "SM1",
];

fn twilio_params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![3 => select(TWILIO_NAMES).prop_map(String::from), 1 => any_string(12)],
            prop_oneof![2 => select(TWILIO_VALUES).prop_map(String::from), 1 => text()],
        ),
        0..24,
    )
}

fn nested(depth: usize, opener: &str, closer: &str, close: bool) -> String {
    let mut s = opener.repeat(depth);
    if close {
        s.push_str(&closer.repeat(depth));
    }
    s
}

/// 10 000 levels of nesting, alone and inside each channel's envelope.
fn deep_bodies(depth: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for (opener, closer) in [("[", "]"), ("{\"a\":", "}"), ("[{\"entry\":", "}]")] {
        for close in [false, true] {
            let nest = nested(depth, opener, closer, close);
            bodies.push(nest.clone());
            bodies.push(format!(
                r#"{{"object":"whatsapp_business_account","entry":{nest}}}"#
            ));
            bodies.push(format!(
                r#"{{"object":"instagram","entry":[{{"id":"{IG_ID}","messaging":{nest}}}]}}"#
            ));
            bodies.push(format!(
                r#"{{"for_user_id":"{X_USER}","direct_message_events":{nest}}}"#
            ));
            bodies.push(format!(r#"{{"for_user_id":"{X_USER}","users":{nest}}}"#));
        }
    }
    bodies
}

#[test]
fn ten_thousand_levels_of_nesting_are_refused_without_overflowing_the_stack() {
    for body in deep_bodies(10_000) {
        for channel in CHANNELS {
            let result = parse_default(channel, body.as_bytes());
            assert!(!has_message(&result), "{channel:?}");
            if channel != Channel::Twilio {
                assert!(result.is_err(), "{channel:?} accepted 10 000 levels");
            }
        }
    }
}

#[test]
fn every_truncation_of_every_sample_is_survived() {
    for channel in CHANNELS {
        let body = sample(channel).as_bytes();
        for cut in 0..=body.len() {
            let _ = parse_default(channel, &body[..cut]);
        }
    }
}

/// Every node of every sample replaced, one at a time, by every wrong value
/// (exhaustive: cheaper and surer than sampling).
#[test]
fn every_field_of_every_sample_survives_every_wrong_type() {
    for channel in JSON_CHANNELS {
        let original: Value = serde_json::from_str(sample(channel)).expect("sample is JSON");
        for pointer in all_pointers(&original) {
            for wrong in wrong_values() {
                let mut v = original.clone();
                replace_at(&mut v, &pointer, wrong);
                let _ = parse_default(channel, v.to_string().as_bytes());
            }
        }
    }
}

/// `null` in every leaf at once (but for the envelope's discriminators, so
/// that the parser walks in), then in every node, bottom-up.
#[test]
fn null_everywhere_is_survived() {
    fn null_leaves(v: &mut Value) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(null_leaves),
            Value::Object(fields) => {
                for (k, field) in fields.iter_mut() {
                    if !matches!(k.as_str(), "object" | "for_user_id" | "field" | "type") {
                        null_leaves(field);
                    }
                }
            }
            leaf => *leaf = Value::Null,
        }
    }
    for channel in JSON_CHANNELS {
        let mut v: Value = serde_json::from_str(sample(channel)).expect("sample is JSON");
        null_leaves(&mut v);
        let result = parse_default(channel, v.to_string().as_bytes());
        assert!(!has_message(&result), "{channel:?}: {result:?}");
        // Each container in turn, keeping the envelope above it.
        let mut pointers = all_pointers(&v);
        pointers.reverse();
        for pointer in pointers {
            replace_at(&mut v, &pointer, Value::Null);
            let _ = parse_default(channel, v.to_string().as_bytes());
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic_any_parser(
        body in prop_oneof![prop::collection::vec(any::<u8>(), 0..4096), jsonish_bytes()],
    ) {
        for channel in CHANNELS {
            let _ = parse_default(channel, &body);
        }
    }

    #[test]
    fn truncated_realistic_payloads_never_panic(inbound in any_inbound(), cut in any::<Index>()) {
        let body = &inbound.body[..cut.index(inbound.body.len() + 1)];
        let _ = parse(inbound.channel, &inbound.account, body);
    }

    #[test]
    fn wrong_types_anywhere_in_a_sample_never_panic(
        channel in select(JSON_CHANNELS.to_vec()),
        edits in prop::collection::vec((any::<Index>(), wrong_value()), 1..6),
    ) {
        let mut v: Value = serde_json::from_str(sample(channel)).expect("sample is JSON");
        for (at, wrong) in edits {
            let pointers = all_pointers(&v);
            replace_at(&mut v, &pointers[at.index(pointers.len())], wrong);
        }
        let _ = parse_default(channel, v.to_string().as_bytes());
    }

    #[test]
    fn twilio_forms_with_wrong_values_never_panic(params in twilio_params()) {
        let result = twilio::parse(&params);
        for m in result.iter().flat_map(|events| messages(events)) {
            // What Twilio cannot send must not come out either.
            prop_assert!(!m.provider_message_id.is_empty());
            prop_assert!(m.media.len() <= 10);
        }
        let _ = parse_default(Channel::Twilio, &form(&params));
    }
}

proptest! {
    // Each case parses up to 64 KiB (or 20 000 digits) a few times.
    #![proptest_config(config(48))]

    #[test]
    fn huge_fields_never_panic_any_parser(
        channel in select(CHANNELS.to_vec()),
        at in any::<Index>(),
        huge in huge_raw(),
    ) {
        const MARK: &str = "\u{e000}HUGE\u{e000}";
        if channel == Channel::Twilio {
            let mut params = twilio::parse_form(TWILIO_SAMPLE.as_bytes());
            let i = at.index(params.len());
            params[i].1 = huge.clone().into();
            let _ = twilio::parse(&params);
            let _ = parse_default(channel, &form(&params));
        } else {
            let mut v: Value = serde_json::from_str(sample(channel)).expect("sample is JSON");
            let pointers = all_pointers(&v);
            replace_at(&mut v, &pointers[at.index(pointers.len())], json!(MARK));
            let body = v.to_string().replacen(&format!("\"{MARK}\""), &huge, 1);
            let _ = parse_default(channel, body.as_bytes());
        }
    }

    #[test]
    fn deep_nesting_of_any_depth_is_survived(
        depth in 1..=20_000usize,
        opener in select(vec!["[", "{\"a\":", "[{\"changes\":", "{\"messaging\":["]),
        close in any::<bool>(),
    ) {
        let closer: String = opener.chars().rev().filter_map(|c| match c {
            '[' => Some(']'),
            '{' => Some('}'),
            _ => None,
        }).collect();
        let nest = nested(depth, opener, &closer, close);
        let bodies = [
            nest.clone(),
            format!(r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"field":"messages","value":{nest}}}]}}]}}"#),
            format!(r#"{{"object":"instagram","entry":{nest}}}"#),
            format!(r#"{{"for_user_id":"{X_USER}","tweet_create_events":{nest}}}"#),
        ];
        for body in &bodies {
            for channel in CHANNELS {
                let _ = parse_default(channel, body.as_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// All parsers: garbage is never a message
// ---------------------------------------------------------------------------

/// Any JSON at all, with keys and strings biased towards the real field
/// names and values, so that envelopes are sometimes half right.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => select(vec![
            "object", "entry", "changes", "field", "value", "metadata", "phone_number_id",
            "messages", "statuses", "contacts", "id", "from", "type", "text", "body",
            "messaging", "sender", "message", "mid", "is_echo", "read", "for_user_id",
            "direct_message_events", "message_create", "sender_id", "message_data",
            "tweet_create_events", "id_str", "user", "users",
        ]).prop_map(String::from),
        1 => any_string(8),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        select(vec![
            "whatsapp_business_account",
            "instagram",
            "messages",
            "text",
            "message_create",
            WA_PHONE_ID,
            IG_ID,
            X_USER,
            "",
        ])
        .prop_map(Value::from),
        any_string(16).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Whether `v` carries `channel`'s envelope for the samples' account; only
/// then may a message come out.
fn has_envelope(channel: Channel, v: &Value) -> bool {
    match channel {
        Channel::WhatsApp => v["object"] == "whatsapp_business_account",
        Channel::Instagram => v["object"] == "instagram",
        Channel::X => v["for_user_id"] == X_USER,
        Channel::Twilio => unreachable!("not JSON"),
    }
}

/// The names without which a Twilio form is not a message.
fn is_sid_or_from(name: &str) -> bool {
    matches!(name, "MessageSid" | "SmsMessageSid" | "From")
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn bytes_that_are_not_json_are_never_a_message(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048),
            jsonish_bytes(),
            // A real payload with garbage spliced in somewhere.
            (select(JSON_CHANNELS.to_vec()), any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
                .prop_map(|(channel, at, junk)| {
                    let mut body = sample(channel).as_bytes().to_vec();
                    let at = at.index(body.len() + 1);
                    body.splice(at..at, junk);
                    body
                }),
        ],
    ) {
        prop_assume!(serde_json::from_slice::<Value>(&body).is_err());
        for channel in JSON_CHANNELS {
            let result = parse_default(channel, &body);
            let refused_or_empty = match &result {
                Err(_) => true,
                Ok(events) => events.is_empty(),
            };
            prop_assert!(refused_or_empty, "{:?}: {:?}", channel, result);
        }
    }

    #[test]
    fn json_without_the_channel_envelope_is_never_a_message(v in any_json()) {
        let body = v.to_string();
        for channel in JSON_CHANNELS {
            let result = parse_default(channel, body.as_bytes());
            if !has_envelope(channel, &v) {
                prop_assert!(!has_message(&result), "{:?}: {:?}", channel, result);
            }
        }
    }

    #[test]
    fn any_json_inside_a_valid_envelope_never_panics(inner in any_json(), batch in any_json()) {
        let bodies = [
            json!({"object": "whatsapp_business_account", "entry": inner}),
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": inner}]}]}),
            json!({"object": "instagram", "entry": [{"id": IG_ID, "messaging": [inner]}]}),
            json!({"object": "instagram", "entry": batch}),
            json!({"for_user_id": X_USER, "direct_message_events": [inner], "users": batch}),
            json!({"for_user_id": X_USER, "tweet_create_events": [inner]}),
        ];
        for body in &bodies {
            for channel in JSON_CHANNELS {
                let _ = parse_default(channel, body.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn twilio_forms_without_message_sid_or_from_are_never_messages(
        params in twilio_params(),
        drop_from in any::<bool>(),
    ) {
        // Remove the sids, or `From`; an empty value counts as missing too.
        let params: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| {
                let missing = if drop_from { k == "From" } else { k.ends_with("MessageSid") };
                if missing && is_sid_or_from(&k) { (k, String::new()) } else { (k, v) }
            })
            .collect();
        let result = parse_default(Channel::Twilio, &form(&params));
        prop_assert!(!has_message(&result), "{:?}", result);
        prop_assert!(!has_message(&twilio::parse(&params)));
    }
}

// ---------------------------------------------------------------------------
// Signatures: each holds for exactly what it signs
// ---------------------------------------------------------------------------

/// Secrets: arbitrary unicode (some longer than HMAC's 64-byte block, which
/// takes another code path), or hex like real app secrets.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![any_string(100), "[0-9a-f]{32}", "[A-Za-z0-9]{64,200}"]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4096),
        Just(WA_SAMPLE.as_bytes().to_vec()),
        Just(X_SAMPLE.as_bytes().to_vec()),
    ]
}

/// Two secrets are the same HMAC key when they differ only by trailing NULs
/// (HMAC pads short keys with zeros): an HMAC property, not a bug here.
fn same_hmac_key(a: &str, b: &str) -> bool {
    a.trim_end_matches('\0') == b.trim_end_matches('\0')
}

/// One way of spoiling a signature header.
#[derive(Debug, Clone)]
enum Tamper {
    Replace(Index, char),
    Insert(Index, char),
    Delete(Index),
    Truncate(Index),
    Append(String),
    /// Another scheme or spelling in place of the header's prefix.
    Prefix(&'static str),
    /// `+` for a `0` that starts a byte: `u8::from_str_radix` reads `+f` as 15.
    PlusForZero,
    FlipCase(Index),
    Pad(&'static str, &'static str),
    Arbitrary(String),
    /// The header (or only its prefix) followed by up to 64 KiB of one char.
    Huge(bool, char, usize),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    let special = prop_oneof![
        select(vec![
            '+', '-', '0', '=', ' ', 'g', 'G', 'A', '/', '_', 'é', '\0'
        ]),
        any::<char>(),
    ];
    prop_oneof![
        (any::<Index>(), special.clone()).prop_map(|(i, c)| Tamper::Replace(i, c)),
        (any::<Index>(), special).prop_map(|(i, c)| Tamper::Insert(i, c)),
        any::<Index>().prop_map(Tamper::Delete),
        any::<Index>().prop_map(Tamper::Truncate),
        prop_oneof![Just("0".to_string()), Just("==".to_string()), any_string(8)]
            .prop_map(Tamper::Append),
        select(vec![
            "",
            "sha1=",
            "SHA256=",
            "sha256:",
            "sha256 =",
            "sha512=",
            "sha256=sha256=",
            "=",
            " sha256="
        ])
        .prop_map(Tamper::Prefix),
        Just(Tamper::PlusForZero),
        any::<Index>().prop_map(Tamper::FlipCase),
        select(vec![
            ("", ""),
            (" ", ""),
            ("", " "),
            ("\t", "\r\n"),
            ("\u{a0}", ""),
            ("x", ""),
            ("", ",")
        ])
        .prop_map(|(a, b)| Tamper::Pad(a, b)),
        any_string(80).prop_map(Tamper::Arbitrary),
        (
            any::<bool>(),
            select(vec!['a', '0', '=', '+', 'z', ' ']),
            1..=65_536usize
        )
            .prop_map(|(whole, c, n)| Tamper::Huge(whole, c, n)),
    ]
}

/// `header` spoiled by `t`; `prefix_len` is the length of its `sha256=`.
fn tampered(header: &str, prefix_len: usize, t: &Tamper) -> String {
    let mut chars: Vec<char> = header.chars().collect();
    let n = chars.len();
    match t {
        Tamper::Replace(i, c) => chars[i.index(n)] = *c,
        Tamper::Insert(i, c) => chars.insert(i.index(n + 1), *c),
        Tamper::Delete(i) => {
            chars.remove(i.index(n));
        }
        Tamper::Truncate(i) => chars.truncate(i.index(n)),
        Tamper::Append(s) => chars.extend(s.chars()),
        Tamper::Prefix(p) => return format!("{p}{}", &header[prefix_len..]),
        Tamper::PlusForZero => {
            if let Some(i) = (prefix_len..n).step_by(2).find(|&i| chars[i] == '0') {
                chars[i] = '+';
            }
        }
        Tamper::FlipCase(i) => {
            let c = &mut chars[i.index(n)];
            *c = if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
        }
        Tamper::Pad(before, after) => return format!("{before}{header}{after}"),
        Tamper::Arbitrary(s) => return s.clone(),
        Tamper::Huge(whole, c, len) => {
            let kept = if *whole {
                header
            } else {
                &header[..prefix_len]
            };
            return format!("{kept}{}", c.to_string().repeat(*len));
        }
    }
    chars.into_iter().collect()
}

/// Headers that are wrong by construction, for the `sha256=` schemes.
fn malformed_sha256_headers(true_digest: &str, filler: char) -> Vec<String> {
    let mut headers = vec![
        String::new(),
        "sha256=".to_string(),
        format!("sha1={true_digest}"),
        format!("SHA256={true_digest}"),
        format!("sha256 {true_digest}"),
        true_digest.to_string(),
        format!("sha256={}", &true_digest[..true_digest.len() - 1]),
        format!("sha256={}", &true_digest[..true_digest.len() / 2]),
        format!("sha256={true_digest}{filler}"),
        format!("sha256={true_digest}{true_digest}"),
        format!("sha256={}", filler.to_string().repeat(true_digest.len())),
        format!("sha256={}", "0".repeat(65_536)),
        "sha256=".repeat(10_000),
    ];
    // Each position in turn holding the filler (when that changes anything).
    for i in 0..true_digest.len() {
        let mut d: Vec<char> = true_digest.chars().collect();
        if d[i] != filler {
            d[i] = filler;
            headers.push(format!("sha256={}", String::from_iter(d)));
        }
    }
    headers
}

// --- Meta: X-Hub-Signature-256 (WhatsApp Cloud and Instagram) ---------------

/// What Meta's check may accept besides the exact header: surrounding
/// whitespace (HTTP strips it anyway) and upper-case hex (same bytes).
fn meta_accepts(header: &str, true_header: &str) -> bool {
    let true_hex = &true_header["sha256=".len()..];
    header
        .trim()
        .strip_prefix("sha256=")
        .is_some_and(|hex| hex.eq_ignore_ascii_case(true_hex))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn meta_signature_verifies_what_it_signs(secret in secret(), body in body()) {
        let header = meta::sign(&secret, &body);
        prop_assert!(header.starts_with("sha256="));
        prop_assert_eq!(header.len(), "sha256=".len() + 64);
        prop_assert!(meta::verify_signature(&secret, &body, &header));
    }

    #[test]
    fn meta_signature_fails_when_any_body_byte_changes(
        secret in secret(),
        body in body().prop_filter("not empty", |b| !b.is_empty()),
        at in any::<Index>(),
        flip in 1..=255u8,
    ) {
        let header = meta::sign(&secret, &body);
        let mut changed = body.clone();
        changed[at.index(body.len())] ^= flip;
        prop_assert!(!meta::verify_signature(&secret, &changed, &header));
    }

    #[test]
    fn meta_signature_fails_under_another_secret(a in secret(), b in secret(), body in body()) {
        prop_assume!(!same_hmac_key(&a, &b));
        prop_assert!(!meta::verify_signature(&b, &body, &meta::sign(&a, &body)));
    }

    #[test]
    fn meta_signature_accepts_no_other_header(secret in secret(), body in body(), t in tamper()) {
        let true_header = meta::sign(&secret, &body);
        let header = tampered(&true_header, "sha256=".len(), &t);
        prop_assert_eq!(
            meta::verify_signature(&secret, &body, &header),
            meta_accepts(&header, &true_header),
            "header {:?}", header
        );
    }

    #[test]
    fn meta_malformed_signature_headers_are_false(
        secret in secret(),
        body in body(),
        filler in prop_oneof![select(vec!['+', '-', ' ', 'g', 'x', 'é', '\0']), any::<char>()]
            // Not whitespace either: surrounding whitespace is trimmed, on purpose.
            .prop_filter("not hex", |c| !c.is_ascii_hexdigit() && !c.is_whitespace()),
    ) {
        let true_header = meta::sign(&secret, &body);
        for header in malformed_sha256_headers(&true_header["sha256=".len()..], filler) {
            prop_assert!(!meta::verify_signature(&secret, &body, &header), "header {:?}", header);
        }
        // A `+` in place of a leading `0` of any byte: still not hex.
        let hex = &true_header["sha256=".len()..];
        for i in (0..hex.len()).step_by(2).filter(|&i| hex.as_bytes()[i] == b'0') {
            let header = format!("sha256={}+{}", &hex[..i], &hex[i + 1..]);
            prop_assert!(!meta::verify_signature(&secret, &body, &header), "header {:?}", header);
        }
    }
}

// --- Meta: the hub.challenge handshake -------------------------------------

fn query_pairs(
    keys: Vec<&'static str>,
    token: String,
) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![2 => select(keys).prop_map(String::from), 1 => any_string(12)],
            prop_oneof![
                Just("subscribe".to_string()),
                Just(token),
                select(vec![
                    "Subscribe",
                    "subscribe ",
                    " subscribe",
                    "unsubscribe",
                    "",
                    "1158201444"
                ])
                .prop_map(String::from),
                any_string(16),
            ],
        ),
        0..8,
    )
}

/// Near misses of a verify token: one char changed, added or removed, case
/// flipped, whitespace around it, or anything else.
fn other_token(token: &str) -> impl Strategy<Value = String> {
    let token = token.to_string();
    (tamper(), Just(token)).prop_map(|(t, token)| tampered(&token, 0, &t))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn handshake_answers_the_exact_token_with_the_challenge(
        (token, challenge, query) in (
            any_string(40).prop_filter("configured tokens are not empty", |t| !t.is_empty()),
            any_string(40),
            prop::collection::vec((any_string(12), any_string(12)), 0..6),
        )
            .prop_flat_map(|(token, challenge, extra)| {
                let mut query = vec![
                    ("hub.mode".to_string(), "subscribe".to_string()),
                    ("hub.challenge".to_string(), challenge.clone()),
                    ("hub.verify_token".to_string(), token.clone()),
                ];
                // Other parameters around them, in any order.
                query.extend(extra.into_iter().filter(|(k, _)| !k.starts_with("hub.")));
                (Just(token), Just(challenge), Just(query).prop_shuffle())
            }),
    ) {
        prop_assert_eq!(meta::handshake(&query, &token), Some(challenge));
    }

    #[test]
    fn handshake_refuses_any_other_token(
        token in any_string(40).prop_filter("configured tokens are not empty", |t| !t.is_empty()),
        wrong in any_string(40),
        near in any::<bool>(),
        t in tamper(),
    ) {
        let wrong = if near { tampered(&token, 0, &t) } else { wrong };
        prop_assume!(wrong != token);
        let query = vec![
            ("hub.mode".to_string(), "subscribe".to_string()),
            ("hub.challenge".to_string(), "1158201444".to_string()),
            ("hub.verify_token".to_string(), wrong),
        ];
        prop_assert_eq!(meta::handshake(&query, &token), None);
    }

    #[test]
    fn handshake_refuses_any_mode_but_subscribe(
        token in "[A-Za-z0-9]{1,40}",
        mode in prop_oneof![other_token("subscribe"), any_string(16)],
    ) {
        prop_assume!(mode != "subscribe");
        let query = vec![
            ("hub.mode".to_string(), mode),
            ("hub.challenge".to_string(), "1158201444".to_string()),
            ("hub.verify_token".to_string(), token.clone()),
        ];
        prop_assert_eq!(meta::handshake(&query, &token), None);
    }

    /// Arbitrary query pairs: the challenge comes back only when the (first)
    /// `hub.mode` is `subscribe` and the (first) `hub.verify_token` is exact.
    #[test]
    fn handshake_on_arbitrary_queries_answers_only_the_exact_subscription(
        (token, query) in "[A-Za-z0-9._-]{1,24}".prop_flat_map(|token| {
            let keys = vec!["hub.mode", "hub.verify_token", "hub.challenge", "hub.topic", "hub_mode"];
            (Just(token.clone()), query_pairs(keys, token))
        }),
    ) {
        let first = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let subscribed = first("hub.mode") == Some("subscribe")
            && first("hub.verify_token") == Some(token.as_str());
        let expected = if subscribed { first("hub.challenge").map(String::from) } else { None };
        prop_assert_eq!(meta::handshake(&query, &token), expected);
    }
}

// --- Twilio: X-Twilio-Signature over the URL and the sorted form params -----

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ("https?", "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,10}){0,3}", "(:[0-9]{1,5})?", "(/[A-Za-z0-9._~%-]{0,12}){0,4}", "(\\?[a-z]{1,5}=[A-Za-z0-9%]{0,8}(&[a-z]{1,5}=[0-9]{0,4}){0,3})?")
            .prop_map(|(scheme, host, port, path, query)| format!("{scheme}://{host}{port}{path}{query}")),
        1 => Just(TWILIO_URL.to_string()),
        1 => any_string(40),
    ]
}

/// Parsed parameters as owned strings, for strategies.
fn owned(params: Vec<(Cow<'_, str>, Cow<'_, str>)>) -> Vec<(String, String)> {
    params
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop_oneof![
        prop::collection::vec((any_string(12), text()), 0..12),
        twilio_params(),
        Just(owned(twilio::parse_form(TWILIO_SAMPLE.as_bytes()))),
    ]
}

/// Params with distinct names, as Twilio's forms have: then no two different
/// forms concatenate to the same signed string.
fn unique_params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map(any_string(12), text(), 1..12).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn twilio_signature_verifies_in_any_param_order(
        token in secret(),
        url in url(),
        (params, shuffled) in params().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
    ) {
        let signature = twilio::sign(&token, &url, &params);
        prop_assert!(twilio::verify_signature(&token, &url, &params, &signature));
        prop_assert!(twilio::verify_signature(&token, &url, &shuffled, &signature));
    }

    #[test]
    fn twilio_signature_survives_form_encoding(token in secret(), params in params()) {
        // Signed over the decoded values; checked over what the server decodes.
        let signature = twilio::sign(&token, TWILIO_URL, &params);
        let body = form(&params);
        let received = twilio::parse_form(&body);
        prop_assert!(twilio::verify_signature(&token, TWILIO_URL, &received, &signature));
    }

    #[test]
    fn twilio_signature_fails_when_a_param_value_changes(
        token in secret(),
        url in url(),
        params in unique_params(),
        at in any::<Index>(),
        new_value in text(),
    ) {
        let signature = twilio::sign(&token, &url, &params);
        let mut changed = params.clone();
        let i = at.index(changed.len());
        prop_assume!(changed[i].1 != new_value);
        changed[i].1 = new_value;
        prop_assert!(!twilio::verify_signature(&token, &url, &changed, &signature));
    }

    #[test]
    fn twilio_signature_fails_when_a_param_is_added_or_removed(
        token in secret(),
        params in unique_params(),
        at in any::<Index>(),
        added in (any_string(12), text()).prop_filter("signs something", |(k, v)| !k.is_empty() || !v.is_empty()),
    ) {
        let signature = twilio::sign(&token, TWILIO_URL, &params);
        let mut more = params.clone();
        more.push(added);
        prop_assert!(!twilio::verify_signature(&token, TWILIO_URL, &more, &signature));
        let mut fewer = params.clone();
        let (k, v) = fewer.remove(at.index(params.len()));
        if !k.is_empty() || !v.is_empty() {
            prop_assert!(!twilio::verify_signature(&token, TWILIO_URL, &fewer, &signature));
        }
    }

    #[test]
    fn twilio_signature_fails_for_another_url(
        token in secret(),
        url in url(),
        params in params(),
        suffix in any_string(12),
    ) {
        let signature = twilio::sign(&token, &url, &params);
        // A longer path: never one of the default-port variants of `url`.
        let longer = format!("{url}/{suffix}");
        prop_assert!(!twilio::verify_signature(&token, &longer, &params, &signature));
        // The other scheme.
        if let Some(rest) = url.strip_prefix("https://") {
            let http = format!("http://{rest}");
            prop_assert!(!twilio::verify_signature(&token, &http, &params, &signature));
        }
    }

    #[test]
    fn twilio_signature_fails_under_another_token(a in secret(), b in secret(), params in params()) {
        prop_assume!(!same_hmac_key(&a, &b));
        let signature = twilio::sign(&a, TWILIO_URL, &params);
        prop_assert!(!twilio::verify_signature(&b, TWILIO_URL, &params, &signature));
    }

    #[test]
    fn twilio_signature_accepts_the_default_port_either_way(
        token in secret(),
        https in any::<bool>(),
        host in "[a-z0-9-]{1,20}(\\.[a-z]{2,6}){1,2}",
        tail in "(/[A-Za-z0-9._-]{0,12}){0,3}(\\?a=1)?",
        params in params(),
    ) {
        let (scheme, port) = if https { ("https", 443) } else { ("http", 80) };
        let bare = format!("{scheme}://{host}{tail}");
        let with_port = format!("{scheme}://{host}:{port}{tail}");
        prop_assert!(twilio::verify_signature(&token, &with_port, &params, &twilio::sign(&token, &bare, &params)));
        prop_assert!(twilio::verify_signature(&token, &bare, &params, &twilio::sign(&token, &with_port, &params)));
    }

    #[test]
    fn twilio_signature_accepts_no_other_header(
        token in secret(),
        url in url(),
        params in params(),
        t in tamper(),
    ) {
        let signature = twilio::sign(&token, &url, &params);
        let header = tampered(&signature, 0, &t);
        prop_assert_eq!(
            twilio::verify_signature(&token, &url, &params, &header),
            header.trim() == signature,
            "header {:?}", header
        );
    }
}

// --- X: CRC response and x-twitter-webhooks-signature (base64) --------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn x_crc_response_is_the_signature_of_the_token(secret in secret(), token in any_string(64)) {
        // Answered only for tokens shaped like X's, and then it is the
        // token's signature.
        match x::crc_response(&secret, &token) {
            Ok(response) => {
                prop_assert!(x::crc_token_is_valid(&token));
                prop_assert_eq!(&response, &x::sign(&secret, token.as_bytes()));
                prop_assert!(x::verify_signature(&secret, token.as_bytes(), &response));
            }
            Err(_) => prop_assert!(!x::crc_token_is_valid(&token)),
        }
    }

    #[test]
    fn x_crc_response_signs_tokens_shaped_like_x_s(secret in secret(), token in "[A-Za-z0-9+/=_-]{1,128}") {
        let response = x::crc_response(&secret, &token).unwrap();
        prop_assert_eq!(&response, &x::sign(&secret, token.as_bytes()));
        prop_assert!(x::verify_signature(&secret, token.as_bytes(), &response));
    }

    #[test]
    fn x_signature_verifies_what_it_signs(secret in secret(), body in body()) {
        let header = x::sign(&secret, &body);
        prop_assert!(header.starts_with("sha256="));
        prop_assert_eq!(header.len(), "sha256=".len() + 44);
        prop_assert!(x::verify_signature(&secret, &body, &header));
    }

    #[test]
    fn x_signature_fails_when_any_body_byte_changes(
        secret in secret(),
        body in body().prop_filter("not empty", |b| !b.is_empty()),
        at in any::<Index>(),
        flip in 1..=255u8,
    ) {
        let header = x::sign(&secret, &body);
        let mut changed = body.clone();
        changed[at.index(body.len())] ^= flip;
        prop_assert!(!x::verify_signature(&secret, &changed, &header));
    }

    #[test]
    fn x_signature_fails_under_another_secret(a in secret(), b in secret(), body in body()) {
        prop_assume!(!same_hmac_key(&a, &b));
        prop_assert!(!x::verify_signature(&b, &body, &x::sign(&a, &body)));
    }

    #[test]
    fn x_signature_accepts_no_other_header(secret in secret(), body in body(), t in tamper()) {
        let true_header = x::sign(&secret, &body);
        let header = tampered(&true_header, "sha256=".len(), &t);
        // Base64 with canonical padding has one spelling per digest.
        prop_assert_eq!(
            x::verify_signature(&secret, &body, &header),
            header.trim() == true_header,
            "header {:?}", header
        );
    }

    #[test]
    fn x_malformed_signature_headers_are_false(
        secret in secret(),
        body in body(),
        filler in prop_oneof![select(vec!['-', '_', ' ', '.', '=', 'é', '\0']), any::<char>()]
            .prop_filter("not base64", |c| {
                !c.is_ascii_alphanumeric() && !matches!(c, '+' | '/') && !c.is_whitespace()
            }),
    ) {
        let true_header = x::sign(&secret, &body);
        let b64 = &true_header["sha256=".len()..];
        let mut headers = malformed_sha256_headers(b64, filler);
        // The same digest as hex, as url-safe base64, and without padding.
        let digest = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b64).expect("our own base64")
        };
        headers.push(format!("sha256={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>()));
        headers.push(format!("sha256={}", b64.replace('+', "-").replace('/', "_")));
        headers.push(format!("sha256={}", b64.trim_end_matches('=')));
        for header in headers {
            if header == true_header {
                continue; // url-safe spelling of a digest without `+` or `/`
            }
            prop_assert!(!x::verify_signature(&secret, &body, &header), "header {:?}", header);
        }
    }
}

// ---------------------------------------------------------------------------
// Round trips: realistic payloads parse back to exactly what was put in
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn twilio_inbound_message_round_trips(inbound in twilio_inbound()) {
        check_round_trip(&inbound)?;
        // And the signature Twilio would send for it holds after decoding.
        let params = twilio::parse_form(&inbound.body);
        let signature = twilio::sign("auth-token", TWILIO_URL, &params);
        prop_assert!(twilio::verify_signature("auth-token", TWILIO_URL, &params, &signature));
    }

    #[test]
    fn whatsapp_cloud_inbound_message_round_trips(inbound in whatsapp_inbound()) {
        check_round_trip(&inbound)?;
    }

    #[test]
    fn instagram_inbound_message_round_trips(inbound in instagram_inbound()) {
        check_round_trip(&inbound)?;
    }

    #[test]
    fn x_inbound_dm_or_mention_round_trips(inbound in x_inbound()) {
        check_round_trip(&inbound)?;
    }

    #[test]
    fn payloads_for_another_account_are_never_messages(inbound in any_inbound()) {
        // The same payload addressed to an account we are not.
        prop_assume!(inbound.channel != Channel::Twilio);
        let other = format!("{}1", inbound.account);
        let result = parse(inbound.channel, &other, &inbound.body);
        prop_assert!(!has_message(&result), "{:?}", result);
    }
}
