//! A `reply` job: decide the answer to one inbound message and queue it.

use integro_store::conversations::{self, ConversationState};
use integro_store::{accounts, bots, jobs};
use uuid::Uuid;

use crate::pipeline::{Decision, ReplyContext};
use crate::runner::{Failure, Worker};
use integro_store::jobs::Job;

pub(crate) async fn run(worker: &Worker, job: &Job) -> Result<(), Failure> {
    let id: Uuid = serde_json::from_value(job.payload["message_id"].clone())
        .map_err(|_| Failure::Permanent("the job names no message".into()))?;
    let message = conversations::message(&worker.db, id)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("message {id} does not exist")))?;
    // Webhooks store the message alone, to be fast; it joins its contact's
    // conversation here.
    let account = accounts::get(&worker.db, message.tenant_id, message.account_id)
        .await?
        .ok_or_else(|| Failure::Permanent("the message's channel account was deleted".into()))?;
    let conversation_id = conversations::file_inbound(&worker.db, &message, account.bot_id).await?;
    let conversation = conversations::conversation(&worker.db, conversation_id)
        .await?
        .ok_or_else(|| Failure::Permanent("the message's conversation does not exist".into()))?;
    let bot = bots::get(&worker.db, conversation.tenant_id, conversation.bot_id).await?;
    let decision = match (&bot, conversation.state) {
        (None, _) => Decision::Silent("the bot was deleted"),
        (Some(b), _) if !b.active => Decision::Silent("the bot is inactive"),
        (_, ConversationState::Human) => Decision::Silent("a human has the conversation"),
        (_, ConversationState::Closed) => Decision::Silent("the conversation is closed"),
        (Some(bot), ConversationState::Bot) => worker
            .pipeline
            .decide(ReplyContext {
                bot,
                conversation: &conversation,
                message: &message,
            })
            .await
            .map_err(|e| Failure::Retry {
                error: format!("reply pipeline: {e:#}"),
                after: None,
            })?,
    };
    let request_id = job.payload["request_id"].as_str().map(String::from);
    // The answer and the job's completion commit together: a worker that dies
    // before the commit leaves nothing behind, and the job is taken again.
    let mut tx = worker.db.begin().await?;
    match decision {
        Decision::Reply(outgoing) => {
            for mut out in outgoing {
                out.request_id = out.request_id.or_else(|| request_id.clone());
                conversations::queue_outbound(&mut tx, &conversation, out).await?;
            }
        }
        Decision::Silent(why) => tracing::info!(message = %id, reason = why, "no reply"),
    }
    if !jobs::complete(&mut tx, job.id, &worker.owner).await? {
        return Err(Failure::LeaseLost);
    }
    tx.commit().await?;
    worker.wake.notify_one();
    Ok(())
}
