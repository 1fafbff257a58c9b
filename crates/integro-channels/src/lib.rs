//! One module per channel. Each one verifies its provider's webhook signature,
//! parses webhooks into [`InboundEvent`]s, and sends [`OutboundMessage`]s
//! through the provider's API. Nothing here touches the database.
//!
//! [`InboundEvent`]: integro_core::InboundEvent
//! [`OutboundMessage`]: integro_core::OutboundMessage

pub mod check;
pub mod credentials;
pub mod http;
pub mod instagram;
pub mod meta;
pub mod twilio;
pub mod whatsapp_cloud;
pub mod x;
pub mod x_activity;
pub mod x_oauth;
pub mod x_trends;

pub use credentials::{CredentialField, Credentials, credential_fields};

/// Where the providers' APIs are. Configurable so that tests and proxies can
/// stand in for them.
#[derive(Debug, Clone)]
pub struct ProviderUrls {
    /// `INTEGRO_TWILIO_API_BASE`
    pub twilio: String,
    /// `INTEGRO_GRAPH_API_BASE` (WhatsApp Cloud API)
    pub graph: String,
    /// `INTEGRO_GRAPH_API_VERSION`
    pub graph_version: String,
    /// `INTEGRO_INSTAGRAM_API_BASE`
    pub instagram: String,
    /// `INTEGRO_X_API_BASE`
    pub x: String,
}

impl Default for ProviderUrls {
    fn default() -> Self {
        ProviderUrls {
            twilio: "https://api.twilio.com".into(),
            graph: "https://graph.facebook.com".into(),
            graph_version: "v23.0".into(),
            instagram: "https://graph.instagram.com".into(),
            x: "https://api.x.com".into(),
        }
    }
}

/// A webhook that is not what its channel sends.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(msg: impl Into<String>) -> ParseError {
        ParseError(msg.into())
    }
}
