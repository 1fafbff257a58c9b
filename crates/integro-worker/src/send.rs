//! A `send` job: deliver one outbound message through its channel, within
//! WhatsApp's 24-hour window, behind the provider's circuit breaker.

use std::time::Duration;

use integro_channels::Credentials;
use integro_core::OutboundMessage;
use integro_store::accounts;
use integro_store::conversations;
use integro_store::jobs::{self, Job};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::runner::{Failure, Worker};
use integro_core::breaker::Permit;

/// WhatsApp's customer-service window.
const WINDOW: time::Duration = time::Duration::hours(24);

pub(crate) fn message_id(job: &Job) -> Option<Uuid> {
    serde_json::from_value(job.payload["message_id"].clone()).ok()
}

pub(crate) async fn run(worker: &Worker, job: &Job) -> Result<(), Failure> {
    let id =
        message_id(job).ok_or_else(|| Failure::Permanent("the job names no message".into()))?;
    let message = conversations::message(&worker.db, id)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("message {id} does not exist")))?;
    if message.provider_message_id.is_some() {
        // Sent by an earlier attempt whose completion was lost: not again.
        return finish(worker, job).await;
    }
    let conversation_id = message
        .conversation_id
        .ok_or_else(|| Failure::Permanent("an outbound message without a conversation".into()))?;
    let conversation = conversations::conversation(&worker.db, conversation_id)
        .await?
        .ok_or_else(|| Failure::Permanent("the message's conversation does not exist".into()))?;
    let Some(account) =
        accounts::get(&worker.db, conversation.tenant_id, conversation.account_id).await?
    else {
        conversations::mark_failed(
            &worker.db,
            id,
            Some("account_deleted"),
            "the channel account was deleted",
        )
        .await?;
        return finish(worker, job).await;
    };

    let mut outbound = OutboundMessage {
        to: conversation.contact.channel_user_id.clone(),
        text: (message.kind != "template")
            .then(|| message.body.clone())
            .flatten(),
        media_url: message.media.first().map(|m| m.reference.clone()),
        template: conversations::template_of(&message),
        reply_to: None,
    };
    let mut sent_kind = None;
    let outside_window = account.kind.has_customer_service_window()
        && conversation
            .last_inbound_at
            .is_none_or(|t| OffsetDateTime::now_utc() - t > WINDOW);
    if outside_window && outbound.template.is_none() {
        match &account.template {
            Some(template) => {
                outbound = OutboundMessage {
                    text: None,
                    media_url: None,
                    template: Some(template.clone()),
                    ..outbound
                };
                sent_kind = Some("template");
            }
            None => {
                conversations::mark_failed(
                    &worker.db,
                    id,
                    Some("outside_24h_window"),
                    "the contact's last message is more than 24 hours old: WhatsApp allows only a template, \
                     and the account has none configured",
                )
                .await?;
                return finish(worker, job).await;
            }
        }
    }

    let circuit = format!("{}:{}", account.kind, account.id);
    if let Permit::Wait(after) = worker.breakers.permit(&circuit) {
        return Err(Failure::Postpone(after.max(Duration::from_millis(100))));
    }
    let creds = Credentials(accounts::credentials(&worker.db, &worker.keyring, &account).await?);
    match worker
        .egress
        .send(account.kind, account.id, &creds, &outbound, id)
        .await
    {
        Ok(provider_id) => {
            worker.breakers.success(&circuit);
            let mut tx = worker.db.begin().await?;
            conversations::mark_sent(&mut tx, id, &provider_id, sent_kind).await?;
            if !jobs::complete(&mut tx, job.id, &worker.owner).await? {
                // The message did go out: record that, the other worker will see it.
                tx.commit().await?;
                return Err(Failure::LeaseLost);
            }
            tx.commit().await?;
            Ok(())
        }
        Err(e) if e.retryable => {
            worker.breakers.failure(&circuit);
            Err(Failure::Retry {
                error: e.to_string(),
                after: e.retry_after_secs.map(Duration::from_secs),
            })
        }
        Err(e) => {
            conversations::mark_failed(&worker.db, id, e.code.as_deref(), &e.message).await?;
            Err(Failure::Permanent(e.to_string()))
        }
    }
}

async fn finish(worker: &Worker, job: &Job) -> Result<(), Failure> {
    let mut tx = worker.db.begin().await?;
    if !jobs::complete(&mut tx, job.id, &worker.owner).await? {
        return Err(Failure::LeaseLost);
    }
    tx.commit().await?;
    Ok(())
}
