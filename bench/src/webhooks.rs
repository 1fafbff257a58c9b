//! Signed inbound webhooks as each provider sends them (shapes from
//! `../shared/protocols/`): Twilio's WhatsApp form, the WhatsApp Cloud API's
//! and Instagram's JSON envelopes.

use serde::Serialize;
use serde_json::json;

/// The provider a webhook comes from and a reply goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Twilio,
    Whatsapp,
    Instagram,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Twilio => "twilio",
            Channel::Whatsapp => "whatsapp",
            Channel::Instagram => "instagram",
        }
    }

    /// Integro's account kind (`integro account add --kind`).
    pub fn kind(self) -> &'static str {
        match self {
            Channel::Twilio => "twilio_whatsapp",
            Channel::Whatsapp => "whatsapp_cloud",
            Channel::Instagram => "instagram",
        }
    }

    /// Accepts the short names and Integro's kinds.
    pub fn parse(name: &str) -> Option<Channel> {
        match name.trim() {
            "twilio" | "twilio_whatsapp" => Some(Channel::Twilio),
            "whatsapp" | "whatsapp_cloud" => Some(Channel::Whatsapp),
            "instagram" => Some(Channel::Instagram),
            _ => None,
        }
    }
}

/// One inbound message, whatever the channel.
pub struct Inbound<'a> {
    /// The provider's message id (a new one each time, or Integro drops it as a duplicate).
    pub id: &'a str,
    /// Twilio: `+E.164`; WhatsApp: the `wa_id` (digits); Instagram: the IGSID.
    pub from: &'a str,
    pub name: &'a str,
    pub text: &'a str,
}

/// A request ready to post.
pub struct Signed {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub signature_header: &'static str,
    pub signature: String,
}

/// The bench side of a channel account: what signing and addressing need.
#[derive(Clone, Debug)]
pub struct Account {
    pub channel: Channel,
    /// Twilio: the bot's number (`+E.164`); WhatsApp: the phone number id;
    /// Instagram: the professional account's id.
    pub external_id: String,
    /// Twilio: the auth token; Meta: the app secret.
    pub secret: String,
    /// Twilio's account SID (empty for Meta).
    pub account_sid: String,
    /// Where to post, which is also the URL Twilio signs.
    pub url: String,
}

impl Account {
    pub fn webhook(&self, m: &Inbound) -> Signed {
        match self.channel {
            Channel::Twilio => {
                let params = twilio_params(&self.account_sid, &self.external_id, m);
                twilio_signed(&self.secret, &self.url, params)
            }
            Channel::Whatsapp => meta_signed(&self.secret, whatsapp_body(&self.external_id, m)),
            Channel::Instagram => meta_signed(&self.secret, instagram_body(&self.external_id, m)),
        }
    }
}

/// A new provider message id in the provider's format.
pub fn message_id(channel: Channel) -> String {
    let r = rand::random::<u128>();
    match channel {
        Channel::Twilio => format!("SM{r:032x}"),
        Channel::Whatsapp => format!("wamid.HBgLMTU1NTAxMDAwMDAVAgASGCA{r:032X}AA=="),
        Channel::Instagram => format!("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx{r:032x}"),
    }
}

/// A customer's message of realistic length; every other one asks about
/// prices, which the e2e bot's keyword rule answers (the rest get the
/// fallback reply).
pub fn text(seq: u64) -> String {
    if seq.is_multiple_of(2) {
        format!(
            "Hi! What is the price of the annual plan for a team of {} people, and do you offer a discount for nonprofits? Thanks a lot.",
            3 + seq % 40
        )
    } else {
        format!(
            "Hello, can you tell me your support hours on weekends and whether order #{:05} has shipped already? Thank you so much.",
            1000 + seq % 90000
        )
    }
}

const NAMES: &[&str] = &[
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
    "Edsger Dijkstra",
    "Barbara Liskov",
];

/// A display name for contact number `n`.
pub fn name(n: u64) -> &'static str {
    NAMES[(n % NAMES.len() as u64) as usize]
}

/// A Twilio WhatsApp inbound form (about 700 bytes) in Twilio's order.
pub fn twilio_params(account_sid: &str, bot_number: &str, m: &Inbound) -> Vec<(String, String)> {
    let wa_id = m.from.trim_start_matches('+');
    let metadata =
        json!({"type": "whatsapp", "data": {"context": {"ProfileName": m.name, "WaId": wa_id}}});
    [
        ("SmsMessageSid", m.id),
        ("NumMedia", "0"),
        ("ProfileName", m.name),
        ("MessageType", "text"),
        ("SmsSid", m.id),
        ("WaId", wa_id),
        ("SmsStatus", "received"),
        ("Body", m.text),
        ("To", &format!("whatsapp:{bot_number}")),
        ("NumSegments", "1"),
        ("ReferralNumMedia", "0"),
        ("MessageSid", m.id),
        ("AccountSid", account_sid),
        ("From", &format!("whatsapp:{}", m.from)),
        ("ChannelMetadata", &metadata.to_string()),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn twilio_signed(auth_token: &str, url: &str, params: Vec<(String, String)>) -> Signed {
    Signed {
        signature: integro_channels::twilio::sign(auth_token, url, &params),
        body: form_body(&params).into_bytes(),
        content_type: "application/x-www-form-urlencoded",
        signature_header: "x-twilio-signature",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A WhatsApp Cloud API `messages` webhook with one text message.
pub fn whatsapp_body(phone_number_id: &str, m: &Inbound) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
                    "contacts": [{"profile": {"name": m.name}, "wa_id": m.from}],
                    "messages": [{
                        "from": m.from,
                        "id": m.id,
                        "timestamp": unix_now().to_string(),
                        "type": "text",
                        "text": {"body": m.text}
                    }]
                },
                "field": "messages"
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

/// An Instagram messaging webhook with one text message.
pub fn instagram_body(ig_user_id: &str, m: &Inbound) -> Vec<u8> {
    let ms = unix_now() * 1000;
    json!({
        "object": "instagram",
        "entry": [{
            "time": ms,
            "id": ig_user_id,
            "messaging": [{
                "sender": {"id": m.from},
                "recipient": {"id": ig_user_id},
                "timestamp": ms,
                "message": {"mid": m.id, "text": m.text}
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

fn meta_signed(app_secret: &str, body: Vec<u8>) -> Signed {
    Signed {
        signature: integro_channels::meta::sign(app_secret, &body),
        body,
        content_type: "application/json",
        signature_header: "x-hub-signature-256",
    }
}

pub fn form_body(params: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use integro_core::InboundEvent;

    use super::*;

    fn account(channel: Channel, external_id: &str) -> Account {
        Account {
            channel,
            external_id: external_id.into(),
            secret: "s3cret".into(),
            account_sid: "AC0123".into(),
            url: "http://127.0.0.1:9/webhooks/x/1".into(),
        }
    }

    fn inbound<'a>(id: &'a str, from: &'a str) -> Inbound<'a> {
        Inbound {
            id,
            from,
            name: "Ada Lovelace",
            text: "Hi \"there\" & welcome, ünïcode?",
        }
    }

    fn the_message(events: Vec<InboundEvent>) -> integro_core::InboundMessage {
        assert_eq!(events.len(), 1);
        match events.into_iter().next() {
            Some(InboundEvent::Message(m)) => m,
            _ => panic!("not a message"),
        }
    }

    #[test]
    fn twilio_webhooks_pass_integros_signature_check_and_parser() {
        let a = account(Channel::Twilio, "+14155238886");
        let id = message_id(Channel::Twilio);
        let s = a.webhook(&inbound(&id, "+15550000042"));
        assert_eq!(id.len(), 34, "a Twilio SID is 34 characters");
        let params = integro_channels::twilio::parse_form(&s.body);
        assert!(integro_channels::twilio::verify_signature(
            "s3cret",
            &a.url,
            &params,
            &s.signature
        ));
        let m = the_message(integro_channels::twilio::parse(&params).unwrap());
        assert_eq!(m.provider_message_id, id);
        assert_eq!(m.from, "+15550000042");
        assert_eq!(m.text.as_deref(), Some("Hi \"there\" & welcome, ünïcode?"));
    }

    #[test]
    fn whatsapp_webhooks_pass_integros_signature_check_and_parser() {
        let a = account(Channel::Whatsapp, "106540352242922");
        let id = message_id(Channel::Whatsapp);
        let s = a.webhook(&inbound(&id, "4915000000042"));
        assert!(integro_channels::meta::verify_signature(
            "s3cret",
            &s.body,
            &s.signature
        ));
        let m = the_message(
            integro_channels::whatsapp_cloud::parse(&s.body, "106540352242922").unwrap(),
        );
        assert_eq!(m.provider_message_id, id);
        assert_eq!(m.from, "4915000000042");
        assert_eq!(m.from_name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(m.text.as_deref(), Some("Hi \"there\" & welcome, ünïcode?"));
    }

    #[test]
    fn instagram_webhooks_pass_integros_signature_check_and_parser() {
        let a = account(Channel::Instagram, "17841400000000001");
        let id = message_id(Channel::Instagram);
        let s = a.webhook(&inbound(&id, "6000000000000042"));
        assert!(integro_channels::meta::verify_signature(
            "s3cret",
            &s.body,
            &s.signature
        ));
        let m =
            the_message(integro_channels::instagram::parse(&s.body, "17841400000000001").unwrap());
        assert_eq!(m.provider_message_id, id);
        assert_eq!(m.from, "6000000000000042");
        assert_eq!(m.text.as_deref(), Some("Hi \"there\" & welcome, ünïcode?"));
    }

    #[test]
    fn twilio_forms_are_about_700_bytes() {
        let id = message_id(Channel::Twilio);
        let text = text(1);
        let params = twilio_params(
            "AC0000000000000000000000000000acc0",
            "+14155238886",
            &Inbound {
                id: &id,
                from: "+15550000042",
                name: name(0),
                text: &text,
            },
        );
        let len = form_body(&params).len();
        assert!((600..900).contains(&len), "about 700 bytes: {len}");
    }
}
