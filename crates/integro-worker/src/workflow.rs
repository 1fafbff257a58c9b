//! Workflow jobs (#37). A `workflow_timer` job applies a timer or SLA check
//! to its instance; the step, its consequences and the job's completion
//! are one transaction, and the engine ignores a timer armed before the
//! instance last moved, so a timer fires once across crashes and workers.
//! A `workflow_effects` job calls a step's webhooks.

use std::time::Duration;

use integro_core::outbound;
use integro_engine::workflow::{Effect, Input, StepContext, StepError};
use integro_store::jobs::{self, Completion, Job};
use integro_store::workflow_instances::{self, ApplyError, StepRequest};
use integro_store::{Conn, workflows};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::alert::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::outcome::Failure;
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
    let mut tx = worker.db.begin().await?;
    if let Some(instance) =
        workflow_instances::lock(&mut tx, payload.tenant_id, payload.instance_id).await?
    {
        let definition =
            workflows::compiled(&worker.db, payload.tenant_id, instance.version_id).await?;
        let ctx = StepContext::default();
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
