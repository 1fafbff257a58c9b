//! A `reply` job: file one inbound message into its conversation, ask the
//! reply engine what to answer, and store the answer with everything it
//! changes (variables, hand-off, usage, events), in one transaction with the
//! job's completion.

use integro_engine::handoff;
use integro_store::bots::{Bot, BotSettings};
use integro_store::conversations::{self, Conversation, ConversationState};
use integro_store::db::{now_ms, to_ms};
use integro_store::events::NewEvent;
use integro_store::jobs::Job;
use integro_store::memory;
use integro_store::{Db, StoreError, bots, usage};
use uuid::Uuid;

use crate::engine::{Said, Turn, TurnRequest};
use crate::outcome::{Failure, Leased};
use crate::worker::Worker;

/// Returns the send jobs leased to this worker, to run next.
pub(crate) async fn run(worker: &Worker, job: &Job) -> Result<Vec<Leased>, Failure> {
    let id: Uuid = serde_json::from_value(job.payload["message_id"].clone())
        .map_err(|_| Failure::Permanent("the job names no message".into()))?;
    let message = conversations::message(&worker.db, id)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("message {id} does not exist")))?;
    if message.handled_at.is_some() {
        // An earlier turn answered it together with its burst.
        return worker.finish(job).await.map(|()| Vec::new());
    }
    let known = worker
        .accounts
        .get(
            &worker.db,
            &worker.keyring,
            message.tenant_id,
            message.account_id,
        )
        .await?
        .ok_or_else(|| Failure::Permanent("the message's channel account was deleted".into()))?;
    let account = &known.account;
    let bot = bots::get(&worker.db, account.tenant_id, account.bot_id).await?;
    // Conversations of a deleted bot still expire like a default bot's.
    let expiry_minutes = bot.as_ref().map_or_else(
        || BotSettings::default().conversation_expiry_minutes,
        |b| b.settings.conversation_expiry_minutes,
    );
    let expiry_ms = expiry_minutes as i64 * 60_000;
    // Webhooks store the message alone, to be fast; it joins its contact's
    // conversation here. A known contact's open conversation is only
    // touched, in the turn's own commit; anything else (a new contact, a new
    // name or number, an expired conversation) is filed first.
    let at_ms = to_ms(message.created_at);
    let open = match (&message.conversation_id, &message.from_id) {
        (None, Some(from)) => {
            conversations::find_open_with_memory(&worker.db, message.tenant_id, account.id, from)
                .await?
                .filter(|(c, _)| {
                    !conversations::expired(c, at_ms, expiry_ms)
                        && message
                            .from_name
                            .as_ref()
                            .is_none_or(|n| Some(n) == c.contact.display_name.as_ref())
                        && message
                            .from_phone
                            .as_ref()
                            .is_none_or(|p| Some(p) == c.contact.phone_e164.as_ref())
                })
        }
        _ => None,
    };
    // When set, the turn's commit touches the open conversation (ms of the message).
    let filing = open.as_ref().map(|_| at_ms);
    let (mut conversation, memory) = match open {
        Some((mut c, memory)) => {
            c.last_inbound_at = Some(message.created_at);
            c.last_message_at = Some(message.created_at);
            (c, Some(memory))
        }
        None => {
            let conversation_id = match message.conversation_id {
                Some(id) => id,
                None => {
                    let (message, bot_id) = (message.clone(), account.bot_id);
                    worker
                        .db
                        .write(move |tx| {
                            Box::pin(async move {
                                conversations::file_inbound(tx, &message, bot_id, expiry_ms).await
                            })
                        })
                        .await?
                }
            };
            let conversation = conversations::conversation(&worker.db, conversation_id)
                .await?
                .ok_or_else(|| {
                    Failure::Permanent("the message's conversation does not exist".into())
                })?;
            (conversation, None)
        }
    };
    let now = now_ms();
    // A known contact's memory came with its conversation.
    let memory = match memory {
        Some(memory) => memory,
        None => memory::load(&worker.db, conversation.id).await?,
    };
    if let Some(bot) = &bot {
        return_after_handoff_timeout(&worker.db, bot, &mut conversation, &memory, now).await?;
    }
    let Some(bot) = bot.filter(|b| b.active) else {
        tracing::info!(message = %id, "no reply: the bot is inactive or deleted");
        return complete_with(
            worker,
            job,
            &conversation,
            filing,
            None,
            Turn {
                answered: vec![id],
                ..Turn::default()
            },
        )
        .await;
    };
    // Guards, then the conversation's waiting form, then rules, workflow
    // triggers and the LLM (`Engine::decide`).
    if conversation.state == ConversationState::Bot
        && worker
            .engine
            .has_workflows(&worker.db, conversation.tenant_id)
            .await?
        && let Some(sends) = crate::workflow::answer_form(
            worker,
            job,
            &conversation,
            filing,
            id,
            message.body.as_deref().unwrap_or_default(),
        )
        .await?
    {
        return Ok(sends);
    }
    let inbound = Said {
        id,
        text: message.body.clone().unwrap_or_default(),
        at_ms,
    };
    let burst: Vec<Said> = match &message.from_id {
        Some(from) => memory::unanswered_from(&worker.db, account.id, from, conversation.id, id)
            .await?
            .into_iter()
            .map(|(m, body, at)| Said {
                id: m,
                text: body.unwrap_or_default(),
                at_ms: at,
            })
            .collect(),
        None => Vec::new(),
    };
    let window_ms = bot.settings.rate_limit_window_seconds as i64 * 1000;
    // A message not filed yet is not counted by the query.
    let inbound_in_window = memory::inbound_since(&worker.db, conversation.id, now - window_ms)
        .await?
        + u32::from(filing.is_some());
    let turn = worker
        .engine
        .decide(
            &worker.db,
            &worker.keyring,
            TurnRequest {
                bot: &bot,
                channel: account.kind,
                conversation: Some(&conversation),
                contact_name: None,
                memory: &memory,
                inbound: &inbound,
                burst: &burst,
                kind: &message.kind,
                now_ms: now,
                request_id: job.payload["request_id"].as_str(),
                inbound_in_window,
                coalesce: true,
            },
        )
        .await
        .map_err(|e| Failure::Retry {
            error: format!("reply engine: {e:#}"),
            after: None,
        })?;
    if let Some(until) = turn.wait_until {
        return Err(Failure::Postpone {
            after: std::time::Duration::from_millis((until - now).max(1) as u64),
            note: None,
        });
    }
    for line in &turn.trace {
        tracing::debug!(message = %id, "{line}");
    }
    if let Some(definition_id) = turn.start_workflow {
        return crate::workflow::start_from_conversation(
            worker,
            job,
            &conversation,
            filing,
            id,
            definition_id,
        )
        .await;
    }
    complete_with(worker, job, &conversation, filing, Some(&bot), turn).await
}

/// A conversation handed to a human goes back to the bot when the human has
/// not written for the bot's hand-off timeout.
async fn return_after_handoff_timeout(
    db: &Db,
    bot: &Bot,
    conversation: &mut Conversation,
    memory: &memory::Memory,
    now: i64,
) -> Result<(), StoreError> {
    let timeout = bot
        .settings
        .handoff_timeout_minutes
        .map(|m| m as i64 * 60_000);
    // The human's last sign of life: the hand-off, or their last message.
    let Some(last_activity) = memory.handed_off_at else {
        return Ok(());
    };
    if conversation.state != ConversationState::Human
        || !handoff::handoff_expired(ConversationState::Human, last_activity, now, timeout)
    {
        return Ok(());
    }
    let (tenant_id, id) = (conversation.tenant_id, conversation.id);
    db.write(move |tx| {
        Box::pin(async move {
            memory::transition(
                tx,
                tenant_id,
                id,
                ConversationState::Human,
                ConversationState::Bot,
                "inactivity_timeout",
                Some("system"),
            )
            .await
        })
    })
    .await?;
    conversation.state = ConversationState::Bot;
    Ok(())
}

/// Stores the turn and completes the job, in one transaction: a worker that
/// dies before the commit leaves nothing behind, and the job is taken again.
async fn complete_with(
    worker: &Worker,
    job: &Job,
    conversation: &Conversation,
    filing: Option<i64>,
    bot: Option<&Bot>,
    turn: Turn,
) -> Result<Vec<Leased>, Failure> {
    let request_id = job.payload["request_id"].as_str().map(String::from);
    let traceparent = integro_core::trace::traceparent();
    let bot_id = bot.map(|b| b.id);
    let conversation = conversation.clone();
    let (owner, lease_ms) = (worker.owner.clone(), worker.lease_ms());
    worker
        .complete(job, move |tx| {
            Box::pin(async move {
                let now = now_ms();
                // The first send is leased to this worker, which runs it
                // next; any more wait their turn in the queue.
                let mut sends = Vec::new();
                let mut replied_at = None;
                for mut out in turn.outgoing {
                    out.request_id = out.request_id.or_else(|| request_id.clone());
                    out.traceparent = out.traceparent.or_else(|| traceparent.clone());
                    let (message, leased) = conversations::insert_outbound(
                        tx,
                        &conversation,
                        out,
                        Some((&owner, lease_ms)),
                    )
                    .await?;
                    replied_at = Some(to_ms(message.created_at));
                    sends.extend(leased.map(|job| Leased {
                        job,
                        message,
                        conversation: conversation.clone(),
                    }));
                }
                // The message joins its open conversation (`mark_handled`
                // files it); should that have closed meanwhile, the job is
                // tried again and files it anew.
                if !conversations::touch(tx, conversation.id, filing, replied_at).await? {
                    return Err(StoreError::Conflict(
                        "the conversation closed while the reply was being decided".into(),
                    ));
                }
                if let Some(vars) = &turn.vars {
                    memory::set_vars(tx, conversation.id, vars).await?;
                }
                if turn.rate_notice {
                    memory::note_rate_notice(tx, conversation.id, now).await?;
                }
                if let Some(rule) = turn.handoff {
                    memory::transition(
                        tx,
                        conversation.tenant_id,
                        conversation.id,
                        ConversationState::Bot,
                        ConversationState::Human,
                        "rule_handoff",
                        Some(&format!("rule:{rule}")),
                    )
                    .await?;
                }
                if let (Some(call), Some(bot_id)) = (&turn.usage, bot_id) {
                    usage::record(tx, conversation.tenant_id, bot_id, now, call).await?;
                }
                for note in turn.events {
                    let event = NewEvent {
                        tenant_id: conversation.tenant_id,
                        bot_id,
                        conversation_id: Some(conversation.id),
                        kind: note.kind,
                        detail: note.detail,
                    };
                    crate::alert::record_note(tx, event, note.alert, note.once_key.as_deref(), now)
                        .await?;
                }
                memory::mark_handled(tx, conversation.id, &turn.answered).await?;
                Ok(sends)
            })
        })
        .await
}
