//! What every channel turns its webhooks into, and what it is asked to send.
//! Channel modules translate between these and their provider's wire format.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// WhatsApp through Twilio Programmable Messaging.
    TwilioWhatsapp,
    /// WhatsApp through Meta's Cloud API.
    WhatsappCloud,
    /// Instagram messaging through Meta's Graph API.
    Instagram,
    /// X (Twitter) direct messages through the Account Activity API.
    X,
    /// Integro's own web/API channel: no provider in between.
    Web,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::TwilioWhatsapp,
        ChannelKind::WhatsappCloud,
        ChannelKind::Instagram,
        ChannelKind::X,
        ChannelKind::Web,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::TwilioWhatsapp => "twilio_whatsapp",
            ChannelKind::WhatsappCloud => "whatsapp_cloud",
            ChannelKind::Instagram => "instagram",
            ChannelKind::X => "x",
            ChannelKind::Web => "web",
        }
    }

    /// WhatsApp allows free-form replies only within 24 hours of the
    /// contact's last message.
    pub fn has_customer_service_window(self) -> bool {
        matches!(
            self,
            ChannelKind::TwilioWhatsapp | ChannelKind::WhatsappCloud
        )
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown channel kind `{0}`: expected one of twilio_whatsapp, whatsapp_cloud, instagram, x, web"
)]
pub struct UnknownChannelKind(pub String);

impl FromStr for ChannelKind {
    type Err = UnknownChannelKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownChannelKind(s.to_string()))
    }
}

/// A piece of media attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Media {
    /// `image`, `audio`, `video`, `document`, `sticker`, …
    pub kind: String,
    /// The provider's reference: a URL (Twilio, Instagram) or a media id (Cloud API).
    pub reference: String,
    pub content_type: Option<String>,
}

/// A message a contact sent, as parsed from a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The provider's id, unique per account: duplicates are recognised by it.
    pub provider_message_id: String,
    /// The contact's id on the channel (phone number, IGSID, X user id, …).
    pub from: String,
    pub from_name: Option<String>,
    /// The contact's phone number in E.164, when the channel has one.
    pub phone_e164: Option<String>,
    /// `text`, `image`, `audio`, `location`, `interactive`, …
    pub kind: String,
    pub text: Option<String>,
    pub media: Vec<Media>,
    /// For a reply: the provider id of the message replied to.
    pub reply_to: Option<String>,
}

/// Delivery progress of an outbound message. Only moves forward.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "queued" => DeliveryStatus::Queued,
            "sending" => DeliveryStatus::Sending,
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            _ => return None,
        })
    }

    /// Whether a callback reporting `next` may replace `self`. Callbacks
    /// arrive out of order; a message never goes back (read, then delivered),
    /// and a failure after delivery is not believed.
    pub fn may_become(self, next: DeliveryStatus) -> bool {
        match (self, next) {
            (DeliveryStatus::Failed, _) => false,
            (current, DeliveryStatus::Failed) => current < DeliveryStatus::Delivered,
            (current, next) => next > current,
        }
    }
}

/// A provider's report on a message we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub provider_message_id: String,
    pub status: DeliveryStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Our id of the message, where the provider echoes one given with the
    /// send (WhatsApp Cloud's `biz_opaque_callback_data`): a send whose
    /// answer was lost is recognised by it.
    pub local_id: Option<String>,
}

/// What one webhook request carried. One request may batch several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    Message(InboundMessage),
    Status(StatusUpdate),
}

/// Replaces U+0000 in `text` with U+FFFD; whether there was one.
/// PostgreSQL cannot store U+0000 in text, and a message that can never be
/// stored would be refused on every delivery until the provider gave up.
pub fn replace_nul(text: &mut String) -> bool {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
        true
    } else {
        false
    }
}

impl InboundEvent {
    /// Replaces U+0000 in every text of the event (`replace_nul`); whether
    /// there was one.
    pub fn replace_nul(&mut self) -> bool {
        let mut found = false;
        let mut clean = |text: &mut String| found |= replace_nul(text);
        match self {
            InboundEvent::Message(m) => {
                clean(&mut m.provider_message_id);
                clean(&mut m.from);
                clean(&mut m.kind);
                for text in [
                    &mut m.from_name,
                    &mut m.phone_e164,
                    &mut m.text,
                    &mut m.reply_to,
                ]
                .into_iter()
                .flatten()
                {
                    clean(text);
                }
                for media in &mut m.media {
                    clean(&mut media.kind);
                    clean(&mut media.reference);
                    if let Some(ct) = &mut media.content_type {
                        clean(ct);
                    }
                }
            }
            InboundEvent::Status(s) => {
                clean(&mut s.provider_message_id);
                for text in [&mut s.error_code, &mut s.error_message, &mut s.local_id]
                    .into_iter()
                    .flatten()
                {
                    clean(text);
                }
            }
        }
        found
    }
}

/// A template message (WhatsApp, outside the 24-hour window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Template {
    /// Cloud API template name, or Twilio Content SID (`HX…`).
    pub name: String,
    /// Cloud API language code, e.g. `en_US` (ignored by Twilio).
    #[serde(default)]
    pub language: Option<String>,
    /// Body parameters, in order.
    #[serde(default)]
    pub parameters: Vec<String>,
}

/// What a channel is asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// The contact's id on the channel.
    pub to: String,
    pub text: Option<String>,
    pub media_url: Option<String>,
    pub template: Option<Template>,
    /// Provider id of the message this replies to (threading, where supported).
    pub reply_to: Option<String>,
}

/// Why a send did not succeed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub retryable: bool,
    /// Seconds the provider asked us to wait (429 `Retry-After`).
    pub retry_after_secs: Option<u64>,
    /// The provider's error code, when it gave one.
    pub code: Option<String>,
    pub message: String,
}

impl SendError {
    pub fn permanent(code: Option<String>, message: impl Into<String>) -> SendError {
        SendError {
            retryable: false,
            retry_after_secs: None,
            code,
            message: message.into(),
        }
    }

    pub fn retryable(code: Option<String>, message: impl Into<String>) -> SendError {
        SendError {
            retryable: true,
            retry_after_secs: None,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} (code {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        use DeliveryStatus::*;
        assert!(Sent.may_become(Delivered));
        assert!(Delivered.may_become(Read));
        assert!(!Read.may_become(Delivered));
        assert!(!Sent.may_become(Sent));
        assert!(Sent.may_become(Failed));
        assert!(!Delivered.may_become(Failed));
        assert!(!Failed.may_become(Sent));
    }

    #[test]
    fn kinds_round_trip() {
        for k in ChannelKind::ALL {
            assert_eq!(k.as_str().parse::<ChannelKind>().unwrap(), k);
        }
        assert!("telegram".parse::<ChannelKind>().is_err());
    }
}

/// A published post's public metrics as the provider reports them (X's
/// `public_metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostMetrics {
    pub impressions: i64,
    pub likes: i64,
    pub reposts: i64,
    pub replies: i64,
    pub quotes: i64,
    pub bookmarks: i64,
}
