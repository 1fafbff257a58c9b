//! Hands an outbound message to its channel's module.

use integro_channels::{Credentials, ProviderUrls, instagram, twilio, whatsapp_cloud, x};
use integro_core::{ChannelKind, OutboundMessage, SendError};
use uuid::Uuid;

pub struct Egress {
    pub client: reqwest::Client,
    pub urls: ProviderUrls,
    /// Base URL providers reach us at, for delivery callbacks.
    pub public_url: Option<String>,
}

impl Egress {
    /// Sends; returns the provider's message id.
    pub async fn send(
        &self,
        kind: ChannelKind,
        account_id: Uuid,
        creds: &Credentials,
        msg: &OutboundMessage,
        local_id: Uuid,
    ) -> Result<String, SendError> {
        match kind {
            ChannelKind::TwilioWhatsapp => {
                let callback = self
                    .public_url
                    .as_ref()
                    .map(|base| format!("{base}/webhooks/twilio/{account_id}"));
                twilio::send(
                    &self.client,
                    &self.urls.twilio,
                    creds,
                    callback.as_deref(),
                    msg,
                )
                .await
            }
            ChannelKind::WhatsappCloud => {
                whatsapp_cloud::send(&self.client, &self.urls, creds, msg, &local_id.to_string())
                    .await
            }
            ChannelKind::Instagram => instagram::send(&self.client, &self.urls, creds, msg).await,
            ChannelKind::X => x::send(&self.client, &self.urls, creds, msg).await,
            // The web channel has no provider: the client reads replies from us.
            ChannelKind::Web => Ok(format!("web-{local_id}")),
        }
    }

    /// Whether the provider reports each message it took with a status
    /// webhook that names it by our id (`StatusUpdate::local_id`): a send
    /// whose outcome is unknown can wait for that report instead of asking.
    pub fn reports_local_id(kind: ChannelKind) -> bool {
        kind == ChannelKind::WhatsappCloud
    }

    /// Provider ids of messages the provider already holds that look like
    /// `msg` (same recipient and text) created since `since` (Unix seconds),
    /// oldest first. Twilio can be asked, and X for reply posts; for the
    /// others the answer is empty (see docs/architecture.md on the crash
    /// window).
    pub async fn find_sent(
        &self,
        kind: ChannelKind,
        creds: &Credentials,
        msg: &OutboundMessage,
        since: i64,
    ) -> Result<Vec<String>, SendError> {
        match kind {
            ChannelKind::TwilioWhatsapp => {
                twilio::find_sent(&self.client, &self.urls.twilio, creds, msg, since).await
            }
            ChannelKind::X => x::find_sent(&self.client, &self.urls, creds, msg, since).await,
            _ => Ok(Vec::new()),
        }
    }
}
