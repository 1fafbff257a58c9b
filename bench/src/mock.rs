//! A stand-in for the providers' send APIs, answering a successful send as
//! each real API does (the fields Integro reads, and the rest of a typical
//! answer) and recording when each send arrived and for whom:
//!
//! - Twilio: `POST /2010-04-01/Accounts/{sid}/Messages.json` (201, the
//!   Message resource with its `sid`), and the message list Integro reads
//!   before re-sending a message whose outcome it does not know (`GET`, here
//!   always empty: a run without provider timeouts never needs it, and
//!   `twilio_lookups` in the report says whether it was asked);
//! - WhatsApp Cloud API: `POST {GRAPH_PREFIX}/{version}/{phone_number_id}/messages`
//!   (200, `messages[0].id` a `wamid`);
//! - Instagram: `POST {INSTAGRAM_PREFIX}/{version}/{ig_user_id}/messages`
//!   (200, `recipient_id` and `message_id`).
//!
//! The Graph hosts get path prefixes because both APIs share one path shape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};

use crate::webhooks::Channel;

/// Where `INTEGRO_GRAPH_API_BASE` points, under the mock's address.
pub const GRAPH_PREFIX: &str = "/graph";
/// Where `INTEGRO_INSTAGRAM_API_BASE` points, under the mock's address.
pub const INSTAGRAM_PREFIX: &str = "/instagram";

/// One send the mock accepted.
#[derive(Clone, Debug)]
pub struct Send {
    pub at: Instant,
    pub channel: Channel,
    /// The recipient, as [`contact_key`] writes it.
    pub to: String,
}

/// The recipient without `whatsapp:` and `+`, so that a send's `To` and a
/// webhook's `From` compare equal.
pub fn contact_key(address: &str) -> &str {
    address
        .trim_start_matches("whatsapp:")
        .trim_start_matches('+')
}

#[derive(Clone)]
pub struct Mock {
    inner: Arc<Inner>,
}

struct Inner {
    /// Keep every send (e2e) or only count them (`mock-provider`, which may
    /// run for long).
    keep: bool,
    sends: Mutex<Vec<Send>>,
    count: AtomicU64,
    lookups: AtomicU64,
    unexpected: AtomicU64,
}

impl Mock {
    pub fn new(keep: bool) -> Mock {
        Mock {
            inner: Arc::new(Inner {
                keep,
                sends: Mutex::new(Vec::new()),
                count: AtomicU64::new(0),
                lookups: AtomicU64::new(0),
                unexpected: AtomicU64::new(0),
            }),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(twilio_send).get(twilio_list),
            )
            .route(
                &format!("{GRAPH_PREFIX}/{{version}}/{{id}}/messages"),
                post(whatsapp_send),
            )
            .route(
                &format!("{INSTAGRAM_PREFIX}/{{version}}/{{id}}/messages"),
                post(instagram_send),
            )
            .route("/count", get(count))
            .fallback(unexpected)
            .with_state(self.clone())
    }

    /// Serves on an ephemeral local port; returns the base URL.
    pub async fn start(&self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{addr}"))
    }

    /// Sends so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// A copy of the record, in arrival order.
    pub fn sends(&self) -> Vec<Send> {
        self.inner.sends.lock().unwrap().clone()
    }

    /// Twilio message-list lookups (Integro's re-send check).
    pub fn lookups(&self) -> u64 {
        self.inner.lookups.load(Ordering::Relaxed)
    }

    /// Requests to no known route.
    pub fn unexpected(&self) -> u64 {
        self.inner.unexpected.load(Ordering::Relaxed)
    }

    /// Returns a sequence number for the provider's id.
    fn record(&self, channel: Channel, to: &str) -> u64 {
        if self.inner.keep {
            let mut sends = self.inner.sends.lock().unwrap();
            // Stamped under the lock, so the record is in time order.
            sends.push(Send {
                at: Instant::now(),
                channel,
                to: contact_key(to).to_string(),
            });
        }
        self.inner.count.fetch_add(1, Ordering::Relaxed)
    }
}

fn rfc2822_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

async fn twilio_send(
    State(mock): State<Mock>,
    Path(account_sid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let n = mock.record(Channel::Twilio, &field("To"));
    let sid = format!("SM{n:032x}");
    let now = rfc2822_now();
    let uri = format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}");
    (
        StatusCode::CREATED,
        Json(json!({
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": field("Body"),
            "date_created": now,
            "date_sent": null,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": field("From"),
            "messaging_service_sid": null,
            "num_media": "0",
            "num_segments": "1",
            "price": null,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": format!("{uri}/Media.json")},
            "to": field("To"),
            "uri": format!("{uri}.json"),
        })),
    )
}

async fn twilio_list(State(mock): State<Mock>, Path(account_sid): Path<String>) -> Json<Value> {
    mock.inner.lookups.fetch_add(1, Ordering::Relaxed);
    let uri = format!("/2010-04-01/Accounts/{account_sid}/Messages.json?PageSize=50&Page=0");
    Json(json!({
        "messages": [], "end": 0, "start": 0, "page": 0, "page_size": 50,
        "first_page_uri": uri, "uri": uri, "next_page_uri": null, "previous_page_uri": null,
    }))
}

async fn whatsapp_send(State(mock): State<Mock>, Json(body): Json<Value>) -> Json<Value> {
    let to = body["to"].as_str().unwrap_or_default();
    let n = mock.record(Channel::Whatsapp, to);
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": contact_key(to)}],
        "messages": [{"id": format!("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI{n:020X}AA==")}],
    }))
}

async fn instagram_send(State(mock): State<Mock>, Json(body): Json<Value>) -> Json<Value> {
    let to = body["recipient"]["id"].as_str().unwrap_or_default();
    let n = mock.record(Channel::Instagram, to);
    Json(json!({
        "recipient_id": to,
        "message_id": format!("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAw{n:020x}"),
    }))
}

async fn count(State(mock): State<Mock>) -> String {
    mock.count().to_string()
}

async fn unexpected(State(mock): State<Mock>) -> StatusCode {
    mock.inner.unexpected.fetch_add(1, Ordering::Relaxed);
    StatusCode::NOT_FOUND
}

#[cfg(test)]
mod tests {
    use integro_channels::{Credentials, ProviderUrls};
    use integro_core::OutboundMessage;

    use super::*;

    fn creds(pairs: &[(&str, &str)]) -> Credentials {
        Credentials(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn text_to(to: &str) -> OutboundMessage {
        OutboundMessage {
            to: to.into(),
            text: Some("Thanks!".into()),
            media_url: None,
            template: None,
            reply_to: None,
        }
    }

    /// Integro's own channel clients get the answers they need.
    #[tokio::test]
    async fn integros_senders_accept_the_answers() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mock = Mock::new(true);
        let base = mock.start().await.unwrap();
        let client = reqwest::Client::new();
        let urls = ProviderUrls {
            twilio: base.clone(),
            graph: format!("{base}{GRAPH_PREFIX}"),
            instagram: format!("{base}{INSTAGRAM_PREFIX}"),
            ..ProviderUrls::default()
        };
        let twilio = creds(&[
            ("account_sid", "AC1"),
            ("auth_token", "t"),
            ("phone_number", "+14155238886"),
        ]);
        let sid = integro_channels::twilio::send(
            &client,
            &urls.twilio,
            &twilio,
            None,
            &text_to("+15550000001"),
        )
        .await
        .unwrap();
        assert!(sid.starts_with("SM"));
        let found = integro_channels::twilio::find_sent(
            &client,
            &urls.twilio,
            &twilio,
            &text_to("+15550000001"),
            0,
        )
        .await
        .unwrap();
        assert!(found.is_empty());
        let wa = creds(&[("phone_number_id", "1065"), ("access_token", "a")]);
        let wamid = integro_channels::whatsapp_cloud::send(
            &client,
            &urls,
            &wa,
            &text_to("4915000000001"),
            "local-1",
        )
        .await
        .unwrap();
        assert!(wamid.starts_with("wamid."));
        let ig = creds(&[("ig_user_id", "1784"), ("access_token", "a")]);
        let mid =
            integro_channels::instagram::send(&client, &urls, &ig, &text_to("6000000000000001"))
                .await
                .unwrap();
        assert!(mid.starts_with("aWdf"));

        let sends = mock.sends();
        let got: Vec<(Channel, &str)> = sends.iter().map(|s| (s.channel, s.to.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Channel::Twilio, "15550000001"),
                (Channel::Whatsapp, "4915000000001"),
                (Channel::Instagram, "6000000000000001"),
            ]
        );
        assert_eq!((mock.lookups(), mock.unexpected()), (1, 0));
    }
}
