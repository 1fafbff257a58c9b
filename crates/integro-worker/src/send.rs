//! A `send` job: deliver one outbound message through its channel, within
//! WhatsApp's 24-hour window, behind the provider's circuit breaker.

use std::time::Duration;

use integro_core::{ChannelKind, OutboundMessage};
use integro_store::conversations::{self, Conversation, Message};
use integro_store::jobs::{self, Job};
use integro_store::x_spend::{self, XOperation};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::egress::Egress;
use crate::outcome::Failure;
use crate::worker::Worker;
use integro_core::breaker::Permit;
use tracing::Instrument;

/// Starts the `last_error` of an attempt the provider answered with an error.
const REFUSED: &str = "the provider refused: ";

/// `last_error` of a WhatsApp Cloud send waiting for the status webhook of an
/// attempt whose outcome is unknown.
pub const AWAITING_STATUS: &str = "waiting for the provider's report on an earlier attempt";

/// WhatsApp's customer-service window.
const WINDOW: time::Duration = time::Duration::hours(24);

pub(crate) fn message_id(job: &Job) -> Option<Uuid> {
    serde_json::from_value(job.payload["message_id"].clone()).ok()
}

/// `known`: the message and its conversation, when the caller has just
/// stored them (a reply's send, run right after the turn).
pub(crate) async fn run(
    worker: &Worker,
    job: &Job,
    known: Option<(Message, Conversation)>,
) -> Result<(), Failure> {
    let id =
        message_id(job).ok_or_else(|| Failure::Permanent("the job names no message".into()))?;
    let (message, conversation) = match known {
        Some(known) => known,
        None => load(worker, id).await?,
    };
    if message.provider_message_id.is_some() {
        // Sent by an earlier attempt whose completion was lost: not again.
        return worker.finish(job).await;
    }
    let Some(known) = worker
        .accounts
        .get(
            &worker.db,
            &worker.keyring,
            conversation.tenant_id,
            conversation.account_id,
        )
        .await?
    else {
        conversations::mark_failed(
            &worker.db,
            id,
            Some("account_deleted"),
            "the channel account was deleted",
        )
        .await?;
        return worker.finish(job).await;
    };
    let account = &known.account;
    // An X account connected with OAuth 2.0 sends with a fresh access token;
    // other channels' credentials do not expire.
    let refreshed;
    let creds = if account.kind == ChannelKind::X {
        refreshed = match crate::x_tokens::for_job(worker, &known).await {
            Ok(creds) => creds,
            Err(e) if e.retryable => return Err(Failure::retry(&e)),
            Err(e) => {
                conversations::mark_failed(&worker.db, id, e.code.as_deref(), &e.message).await?;
                return Err(Failure::Permanent(e.to_string()));
            }
        };
        &refreshed
    } else {
        &known.creds
    };

    let mut outbound = OutboundMessage {
        to: conversation.contact.channel_user_id.clone(),
        text: (message.kind != "template")
            .then(|| message.body.clone())
            .flatten(),
        media_url: message.media.first().map(|m| m.reference.clone()),
        template: conversations::template_of(&message),
        reply_to: post_answered(worker, account.kind, &conversation, &message).await?,
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
                return worker.finish(job).await;
            }
        }
    }

    let circuit = format!("{}:{}", account.kind, account.id);
    if let Permit::Wait(after) = worker.breakers.permit(&circuit) {
        return Err(Failure::Postpone {
            after: after.max(Duration::from_millis(100)),
            note: None,
        });
    }
    // An earlier attempt may have reached the provider and died (or timed
    // out) before recording it: adopt what the provider already has rather
    // than send the message twice. A provider that answered with an error
    // did not take the message: no need to ask.
    let outcome_unknown = job.attempts > 1
        && !job
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with(REFUSED));
    if outcome_unknown
        && Egress::reports_local_id(account.kind)
        && job.last_error.as_deref() != Some(AWAITING_STATUS)
    {
        // Such a provider (WhatsApp Cloud, through `biz_opaque_callback_data`)
        // cannot be asked, but its status webhook names the message by our
        // id and makes it adopt the provider's (`conversations::apply_status`):
        // wait for that once, then look again (at the top), and send only if
        // nothing came.
        tracing::info!(message = %id, "an earlier attempt may have gone out; waiting for the provider's report");
        return Err(Failure::Postpone {
            after: worker.config.status_grace,
            note: Some(AWAITING_STATUS),
        });
    }
    // X may have published a post whose answer was an error (a 5xx): a
    // reply post is looked for on every retry.
    let public_post = account.kind == ChannelKind::X && outbound.reply_to.is_some();
    let since = message.created_at.unix_timestamp() - 2;
    if outcome_unknown || (public_post && job.attempts > 1) {
        // If the provider cannot say, sending again is the lesser harm.
        if let Some(sid) =
            earlier_attempt(worker, account.id, account.kind, creds, &outbound, since).await?
        {
            tracing::info!(message = %id, provider_id = %sid, "an earlier attempt had gone out; adopting it");
            // The provider answered: it is up (and this may be the circuit's trial).
            worker.breakers.success(&circuit);
            return record_sent(worker, job, id, &sid, sent_kind).await;
        }
    }
    match worker
        .egress
        .send(account.kind, account.id, creds, &outbound, id)
        .instrument(tracing::info_span!(
            "provider_call",
            channel = %account.kind,
            message = %id,
            request_id = job.payload["request_id"].as_str().unwrap_or_default(),
        ))
        .await
    {
        Ok(provider_id) => {
            worker.breakers.success(&circuit);
            if account.kind == ChannelKind::X {
                let operation = if public_post {
                    XOperation::Reply
                } else {
                    XOperation::DirectMessage
                };
                let now = integro_store::db::now_ms();
                if let Err(e) =
                    x_spend::record(&worker.db, account.tenant_id, operation, 1, now).await
                {
                    tracing::warn!(error = %e, "counting an X call failed");
                }
            }
            record_sent(worker, job, id, &provider_id, sent_kind).await
        }
        Err(e) if e.retryable => {
            worker.breakers.failure(&circuit);
            Err(Failure::Retry {
                // An HTTP answer is a refusal; anything else (a timeout, a
                // dropped connection) leaves the outcome unknown.
                error: if e.message.starts_with("HTTP ") {
                    format!("{REFUSED}{e}")
                } else {
                    e.to_string()
                },
                after: e.retry_after_secs.map(Duration::from_secs),
            })
        }
        Err(e) => {
            // A refusal of this one message: the provider itself is up.
            worker.breakers.success(&circuit);
            // X refuses a post identical to one just made: that one may be
            // this message's, from an attempt whose answer was lost.
            if public_post
                && let Some(sid) =
                    earlier_attempt(worker, account.id, account.kind, creds, &outbound, since)
                        .await?
            {
                tracing::info!(message = %id, provider_id = %sid, "refused as a repeat of a post that went out; adopting it");
                return record_sent(worker, job, id, &sid, sent_kind).await;
            }
            conversations::mark_failed(&worker.db, id, e.code.as_deref(), &e.message).await?;
            Err(Failure::Permanent(e.to_string()))
        }
    }
}

/// The provider's id of a message like `outbound` it already holds and
/// that no message of ours is recorded as: an earlier attempt's. A
/// provider that cannot say is taken as holding none (sending again is the
/// lesser harm).
async fn earlier_attempt(
    worker: &Worker,
    account_id: Uuid,
    kind: ChannelKind,
    creds: &integro_channels::Credentials,
    outbound: &OutboundMessage,
    since: i64,
) -> Result<Option<String>, Failure> {
    let candidates = match worker.egress.find_sent(kind, creds, outbound, since).await {
        Ok(candidates) => candidates,
        Err(e) => {
            tracing::warn!(error = %e, "could not ask the provider whether an earlier attempt went out");
            return Ok(None);
        }
    };
    for sid in candidates {
        if !conversations::provider_id_known(&worker.db, account_id, &sid).await? {
            return Ok(Some(sid));
        }
    }
    Ok(None)
}

/// On X, the post a reply answers: a mention of the account, or a reply to
/// one of its posts, is answered with a reply post (the author summoned
/// the account); a direct message with a direct message. A person's
/// message in a public conversation answers its latest post.
async fn post_answered(
    worker: &Worker,
    kind: ChannelKind,
    conversation: &Conversation,
    message: &Message,
) -> Result<Option<String>, Failure> {
    if kind != ChannelKind::X {
        return Ok(None);
    }
    let is_post = |m: &Message| matches!(m.kind.as_str(), "mention" | "reply");
    if let Some(answered) = message.reply_to {
        return Ok(conversations::message(&worker.db, answered)
            .await?
            .filter(is_post)
            .and_then(|m| m.provider_message_id));
    }
    if !conversation
        .contact
        .channel_user_id
        .starts_with(integro_channels::x::POST_CONTACT_PREFIX)
    {
        return Ok(None);
    }
    let recent =
        conversations::recent_messages(&worker.db, conversation.tenant_id, conversation.id, 50)
            .await?;
    Ok(recent
        .into_iter()
        .rev()
        .find(|m| m.direction == conversations::Direction::Inbound && is_post(m))
        .and_then(|m| m.provider_message_id))
}

async fn load(worker: &Worker, id: Uuid) -> Result<(Message, Conversation), Failure> {
    let message = conversations::message(&worker.db, id)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("message {id} does not exist")))?;
    let conversation_id = message
        .conversation_id
        .ok_or_else(|| Failure::Permanent("an outbound message without a conversation".into()))?;
    let conversation = conversations::conversation(&worker.db, conversation_id)
        .await?
        .ok_or_else(|| Failure::Permanent("the message's conversation does not exist".into()))?;
    Ok((message, conversation))
}

/// The message went out as `provider_id`: recorded with the job's completion.
async fn record_sent(
    worker: &Worker,
    job: &Job,
    id: Uuid,
    provider_id: &str,
    sent_kind: Option<&str>,
) -> Result<(), Failure> {
    let (provider_id, sent_kind) = (provider_id.to_string(), sent_kind.map(String::from));
    let (job_id, owner) = (job.id, worker.owner.clone());
    let completed = worker
        .db
        .write(move |tx| {
            Box::pin(async move {
                conversations::mark_sent(tx, id, &provider_id, sent_kind.as_deref()).await?;
                // Should the lease have been taken over, the message did go
                // out all the same: that is recorded, the other worker sees it.
                jobs::complete(tx, job_id, &owner).await
            })
        })
        .await?;
    worker.completed(completed)
}
