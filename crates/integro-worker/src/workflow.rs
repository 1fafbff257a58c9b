//! Workflow jobs (#37). A `workflow_timer` job applies a timer or SLA check
//! to its instance; the step, its consequences and the job's completion
//! are one transaction, and the engine ignores a timer armed before the
//! instance last moved, so a timer fires once across crashes and workers.
//! A `workflow_effects` job calls a step's webhooks.

use std::time::Duration;

use integro_core::outbound;
use integro_engine::workflow::{Effect, Input, StepError};
use integro_store::conversations::{self, Conversation};
use integro_store::jobs::{self, Completion, Job};
use integro_store::workflow_instances::{self, ApplyError, NewInstance, StepRequest};
use integro_store::{Conn, StoreError, memory, workflows};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::alert::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::outcome::{Failure, Leased};
use crate::worker::Worker;

/// How long a workflow webhook may take to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);
/// Header a receiver dedupes deliveries by: the same for every retry.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

#[derive(Deserialize)]
struct TimerPayload {
    tenant_id: Uuid,
    instance_id: Uuid,
    input: Input,
}

pub(crate) async fn run_timer(worker: &Worker, job: &Job) -> Result<(), Failure> {
    let payload: TimerPayload = serde_json::from_value(job.payload.clone())
        .map_err(|e| Failure::Permanent(format!("a workflow timer job that does not read: {e}")))?;
    // What the step reads besides the instance, before its row is locked.
    // A migration in between changes the version but also the `seq`, so
    // the timer is then stale whichever definition was read.
    let read = match workflow_instances::get(&worker.db, payload.tenant_id, payload.instance_id)
        .await?
    {
        Some(current) => Some((
            workflows::compiled(&worker.db, payload.tenant_id, current.version_id).await?,
            integro_store::business_calendars::step_context(&worker.db, payload.tenant_id).await?,
        )),
        None => None,
    };
    let mut tx = worker.db.begin().await?;
    if let Some((definition, ctx)) = read
        && let Some(instance) =
            workflow_instances::lock(&mut tx, payload.tenant_id, payload.instance_id).await?
    {
        match workflow_instances::apply(
            &mut tx,
            payload.tenant_id,
            &instance,
            &definition,
            StepRequest {
                input: &payload.input,
                expected_seq: None,
                actor: "system",
                ctx: &ctx,
            },
        )
        .await
        {
            Ok(_) => {}
            // Finished or cancelled since it was armed: nothing to fire.
            Err(ApplyError::Refused(
                StepError::Completed | StepError::Cancelled | StepError::NotStarted,
            )) => {}
            Err(ApplyError::Refused(e)) => return Err(Failure::Permanent(e.to_string())),
            Err(ApplyError::Moved { current }) => {
                return Err(Failure::Permanent(format!(
                    "the instance moved to seq {current}"
                )));
            }
            Err(ApplyError::Store(e)) => return Err(e.into()),
        }
    }
    match jobs::complete(&mut Conn::of(&mut tx), job.id, &worker.owner).await? {
        // Another worker has the job: what this one wrote is undone.
        Completion::LeaseLost => Err(Failure::LeaseLost),
        Completion::Done { .. } => {
            tx.commit().await?;
            // New timers of the step may be due at once.
            worker.wake.notify_one();
            Ok(())
        }
    }
}

#[derive(Deserialize)]
struct EffectsPayload {
    tenant_id: Uuid,
    instance_id: Uuid,
    seq: i64,
    effects: Vec<Effect>,
}

/// Calls the step's webhooks in order, each with the job's id (and its
/// place) as idempotency key: a retry after a lost answer sends the same
/// key, for the receiver to drop.
pub(crate) async fn run_effects(worker: &Worker, job: &Job) -> Result<(), Failure> {
    let payload: EffectsPayload = serde_json::from_value(job.payload.clone()).map_err(|e| {
        Failure::Permanent(format!("a workflow effects job that does not read: {e}"))
    })?;
    let secret =
        integro_store::tenants::alert_webhook(&worker.db, &worker.keyring, payload.tenant_id)
            .await?
            .and_then(|hook| hook.secret);
    for (n, effect) in payload.effects.iter().enumerate() {
        let Effect::Webhook {
            url,
            event,
            payload: instance,
            ..
        } = effect
        else {
            continue;
        };
        let body = json!({
            "event": event,
            "instance_id": payload.instance_id,
            "seq": payload.seq,
            "instance": instance,
        })
        .to_string();
        let refused = |e: &outbound::OutboundError| {
            Failure::Permanent(format!(
                "workflow webhook refused by the outbound URL policy: {e}"
            ))
        };
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut request = worker
            .engine
            .ai()
            .outbound()
            .post(url)
            .map_err(|e| refused(&e))?
            .timeout(WEBHOOK_TIMEOUT)
            .header("content-type", "application/json")
            .header(IDEMPOTENCY_HEADER, format!("{}:{n}", job.id))
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if let Some(secret) = &secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, timestamp, &body));
        }
        let response =
            request
                .body(body)
                .send()
                .await
                .map_err(|e| match outbound::blocked_by(&e) {
                    Some(blocked) => refused(blocked),
                    None => Failure::Retry {
                        error: format!("workflow webhook: {e}"),
                        after: None,
                    },
                })?;
        let status = response.status();
        if !status.is_success() {
            let error = format!("workflow webhook answered HTTP {}", status.as_u16());
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                Failure::Retry { error, after: None }
            } else {
                Failure::Permanent(error)
            });
        }
    }
    worker.finish(job).await
}

/// Ends a conversation's turn taken by a workflow, in its transaction: the
/// message joins its conversation and is answered, and the reply job is
/// done. The workflow's own messages were queued by its step.
async fn finish_turn(
    worker: &Worker,
    job: &Job,
    tx: &mut integro_store::Tx<'static>,
    conversation: &Conversation,
    filing: Option<i64>,
    message_id: Uuid,
) -> Result<(), Failure> {
    let mut conn = Conn::of(tx);
    if !conversations::touch(&mut conn, conversation.id, filing, None).await? {
        return Err(StoreError::Conflict(
            "the conversation closed while the workflow took the message".into(),
        )
        .into());
    }
    memory::mark_handled(&mut conn, conversation.id, &[message_id]).await?;
    match jobs::complete(&mut conn, job.id, &worker.owner).await? {
        Completion::LeaseLost => Err(Failure::LeaseLost),
        Completion::Done { .. } => Ok(()),
    }
}

/// A message for the conversation's form, when one waits: the form takes
/// it (an answer, a confirmation, a cancel word) before any rule.
/// `None`: no form waits, or it did not take the message; the turn goes on
/// to the rules.
pub(crate) async fn answer_form(
    worker: &Worker,
    job: &Job,
    conversation: &Conversation,
    filing: Option<i64>,
    message_id: Uuid,
    text: &str,
) -> Result<Option<Vec<Leased>>, Failure> {
    let tenant_id = conversation.tenant_id;
    let waiting =
        workflow_instances::active_in_conversation(&worker.db, tenant_id, conversation.id)
            .await?
            .into_iter()
            .find(|i| i.body.form.is_some());
    let Some(waiting) = waiting else {
        return Ok(None);
    };
    let ctx = integro_store::business_calendars::step_context(&worker.db, tenant_id).await?;
    // The version's definition is read before the row is locked; a
    // migration in between changes the version, and then it is read again.
    let mut version_id = waiting.version_id;
    let (mut tx, instance, definition) = loop {
        let definition = workflows::compiled(&worker.db, tenant_id, version_id).await?;
        let mut tx = worker.db.begin().await?;
        let Some(instance) = workflow_instances::lock(&mut tx, tenant_id, waiting.id).await? else {
            return Ok(None);
        };
        if instance.version_id == version_id {
            break (tx, instance, definition);
        }
        version_id = instance.version_id;
        tx.rollback().await?;
    };
    if instance.status != "active" || instance.body.form.is_none() {
        return Ok(None);
    }
    let input = Input::Message {
        text: text.to_string(),
    };
    let request = StepRequest {
        input: &input,
        expected_seq: None,
        actor: "contact",
        ctx: &ctx,
    };
    match workflow_instances::apply(&mut tx, tenant_id, &instance, &definition, request).await {
        Ok(Some(step)) if step.consumed => {}
        Ok(_) => return Ok(None),
        Err(e) => {
            tracing::warn!(instance = %instance.id, error = %e, "the form did not take the message");
            return Ok(None);
        }
    }
    finish_turn(worker, job, &mut tx, conversation, filing, message_id).await?;
    tx.commit().await?;
    worker.wake.notify_one();
    Ok(Some(Vec::new()))
}

/// Starts the workflow a message triggered, in the message's conversation:
/// its first question answers the message.
pub(crate) async fn start_from_conversation(
    worker: &Worker,
    job: &Job,
    conversation: &Conversation,
    filing: Option<i64>,
    message_id: Uuid,
    definition_id: Uuid,
) -> Result<Vec<Leased>, Failure> {
    let tenant_id = conversation.tenant_id;
    let version = workflows::version(&worker.db, tenant_id, definition_id, None)
        .await?
        .ok_or_else(|| {
            Failure::Permanent("the triggered workflow has no published version".into())
        })?;
    let definition = workflows::compiled(&worker.db, tenant_id, version.id).await?;
    let ctx = integro_store::business_calendars::step_context(&worker.db, tenant_id).await?;
    let mut tx = worker.db.begin().await?;
    workflow_instances::create(
        &mut tx,
        NewInstance {
            tenant_id,
            definition_id,
            version_id: version.id,
            definition: &definition,
            data: Default::default(),
            conversation_id: Some(conversation.id),
            external_ref: None,
            actor: "contact",
        },
        &ctx,
    )
    .await
    .map_err(|e| Failure::Permanent(format!("the workflow could not start: {e}")))?;
    finish_turn(worker, job, &mut tx, conversation, filing, message_id).await?;
    tx.commit().await?;
    worker.wake.notify_one();
    Ok(Vec::new())
}
