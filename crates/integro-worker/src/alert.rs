//! Critical-error alerts: an `alert` job posts one engine event to the
//! tenant's Slack-compatible incoming webhook (`{"text": …}`), signed when
//! the tenant set a secret, and retried like any job. Which events become
//! alerts, and how rarely, is decided where they are recorded.
//!
//! The webhook is a tenant's URL: it is called through the outbound URL
//! policy's client (the AI client's: one policy, one pool for tenant URLs),
//! which refuses private and metadata addresses, also after resolving, and
//! does not follow redirects.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use integro_core::outbound;
use integro_store::events::{self, NewEvent};
use integro_store::jobs::{self, Job, JobKind, NewJob};
use integro_store::{Conn, StoreError, tenants};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::engine::ALERT_EVERY_MS;
use crate::outcome::Failure;
use crate::worker::Worker;

/// Header with the request's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-integro-timestamp";
/// Header with `v1=<hex HMAC-SHA256 of "{timestamp}.{body}">` under the
/// tenant's alert secret.
pub const SIGNATURE_HEADER: &str = "x-integro-signature";

/// How long a webhook may take to answer.
const ALERT_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn enqueue(tx: &mut Conn<'_>, tenant_id: Uuid, event_id: Uuid) -> Result<(), StoreError> {
    jobs::enqueue_many(
        tx,
        vec![NewJob {
            kind: JobKind::Alert,
            payload: json!({ "event_id": event_id }),
            tenant_id: Some(tenant_id),
            queue_key: None,
            max_attempts: 6,
            run_at: None,
        }],
    )
    .await
}

/// Stores an event, once per `once_key` if it has one, and queues its alert
/// when it asks for one and none of its kind went out for the tenant this
/// hour (one outage, one alert). Concurrent turns agree through the unique
/// dedupe key, not by reading first.
pub async fn record_note(
    tx: &mut Conn<'_>,
    event: NewEvent<'_>,
    alert: bool,
    once_key: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let tenant_id = event.tenant_id;
    if let Some(key) = once_key {
        if let Some(id) = events::record(tx, event, alert, Some(key)).await?
            && alert
        {
            enqueue(tx, tenant_id, id).await?;
        }
        return Ok(());
    }
    if alert {
        let hour_key = format!("alert:{tenant_id}:{}:{}", event.kind, now / ALERT_EVERY_MS);
        if let Some(id) = events::record(tx, event.clone(), true, Some(&hour_key)).await? {
            return enqueue(tx, tenant_id, id).await;
        }
    }
    events::record(tx, event, false, None).await?;
    Ok(())
}

/// `v1=<hex>` over `{timestamp}.{body}`.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

pub(crate) async fn run(worker: &Worker, job: &Job) -> Result<(), Failure> {
    let tenant_id = job
        .tenant_id
        .ok_or_else(|| Failure::Permanent("the alert names no tenant".into()))?;
    let event_id: Uuid = serde_json::from_value(job.payload["event_id"].clone())
        .map_err(|_| Failure::Permanent("the alert names no event".into()))?;
    let event = event_text(worker, tenant_id, event_id).await?;
    let Some(hook) = tenants::alert_webhook(&worker.db, &worker.keyring, tenant_id).await? else {
        tracing::info!(event = %event_id, "alert not sent: the tenant removed its alert webhook");
        return worker.finish(job).await;
    };
    let body = json!({
        "text": format!("Integro alert ({}): {}", event.0, event.1),
        "kind": event.0,
        "detail": event.1,
        "event_id": event_id,
        "tenant_id": tenant_id,
    })
    .to_string();
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    // A URL the policy refuses (saved before it, or no longer allowed) will
    // not become allowed by retrying.
    let refused = |e: &outbound::OutboundError| {
        Failure::Permanent(format!(
            "alert webhook refused by the outbound URL policy: {e}"
        ))
    };
    let mut request = worker
        .engine
        .ai()
        .outbound()
        .post(&hook.url)
        .map_err(|e| refused(&e))?
        .timeout(ALERT_TIMEOUT)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string());
    if let Some(secret) = &hook.secret {
        request = request.header(SIGNATURE_HEADER, sign(secret, timestamp, &body));
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| match outbound::blocked_by(&e) {
            Some(blocked) => refused(blocked),
            None => Failure::Retry {
                error: format!("alert webhook: {e}"),
                after: None,
            },
        })?;
    let status = response.status();
    if status.is_success() {
        return worker.finish(job).await;
    }
    let error = format!("alert webhook answered HTTP {}", status.as_u16());
    if status.as_u16() == 429 || status.is_server_error() {
        Err(Failure::Retry { error, after: None })
    } else {
        Err(Failure::Permanent(error))
    }
}

async fn event_text(
    worker: &Worker,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<(String, String), Failure> {
    integro_store::events::kind_and_detail(&worker.db, tenant_id, id)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("event {id} does not exist")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let a = super::sign("s3cret", 1700000000, "{\"text\":\"x\"}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, super::sign("s3cret", 1700000001, "{\"text\":\"x\"}"));
        assert_ne!(a, super::sign("other", 1700000000, "{\"text\":\"x\"}"));
        assert_eq!(a, super::sign("s3cret", 1700000000, "{\"text\":\"x\"}"));
    }
}
