//! Whether an account's credentials work: each channel asks its provider
//! whom they belong to, with a read that sends nothing.

use integro_core::{ChannelKind, SendError};

use crate::{Credentials, ProviderUrls, instagram, twilio, whatsapp_cloud, x};

/// What the provider said the credentials are, in plain words.
pub async fn account(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    kind: ChannelKind,
    creds: &Credentials,
) -> Result<String, SendError> {
    match kind {
        ChannelKind::TwilioWhatsapp => twilio::check(client, &urls.twilio, creds).await,
        ChannelKind::WhatsappCloud => whatsapp_cloud::check(client, urls, creds).await,
        ChannelKind::Instagram => instagram::check(client, urls, creds).await,
        ChannelKind::X => x::check(client, urls, creds).await,
        ChannelKind::Web => Ok("the web channel has no provider: nothing to check".into()),
    }
}
