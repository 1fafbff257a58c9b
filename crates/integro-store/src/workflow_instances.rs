//! Workflow instances (#37): an instance runs on one published version; the
//! engine's pure state machine (`integro_engine::workflow::machine`) decides
//! each step, and `apply` writes it, in the caller's transaction, with
//! everything it causes: its events, its timer and SLA jobs, its
//! assignment, and the job that carries out its other effects (messages,
//! webhooks, hand-off, alerts). One step, one write: a crash leaves all of
//! it or none.
//!
//! An instance is read `FOR UPDATE` on PostgreSQL (SQLite has one writer)
//! before its step is computed, so concurrent events on one instance are
//! taken one after the other, each on the state the last one left.
//!
//! `migrate` moves an instance onto another published version of its
//! definition, as a person asks: the engine's `migrate` step, written like
//! any other with the new `version_id`. It is the only thing that changes
//! an instance's version, so a caller that read the version's definition
//! before locking the row checks that the row still names that version.

use integro_core::new_id;
use integro_engine::workflow::{
    self as machine, Assignee, Definition, Effect, Input, InstanceState, Role, Status, Step,
    StepContext, StepError, Strategy,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::conversations::{self, Conversation, ConversationState, MessageSender, Outgoing};
use crate::db::{from_ms, now_ms};
use crate::filter::Where;
use crate::jobs::{self, JobKind, NewJob};
use crate::page::{Page, PageRequest};
use crate::sql::Conn;
use crate::{Db, StoreError, Tx, parse_id};
use crate::{events, memory};

/// The longest external reference, in characters.
pub const MAX_EXTERNAL_REF_CHARS: usize = 200;
/// The event of an assignment, and of one nobody could be picked for.
const ASSIGNED: &str = "workflow.instance.assigned";
const UNASSIGNED: &str = "workflow.instance.unassigned";
/// Attempts of a timer or effects job.
const JOB_ATTEMPTS: i64 = 10;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Instance {
    pub id: Uuid,
    pub definition_id: Uuid,
    /// The published version it runs on.
    pub version_id: Uuid,
    pub state: String,
    /// `active`, `completed` or `cancelled`.
    pub status: String,
    /// Grows with every transition: `expected_seq` of an event.
    pub seq: i64,
    /// The values collected so far.
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    #[schema(value_type = Object)]
    pub vars: Map<String, Value>,
    pub conversation_id: Option<Uuid>,
    pub external_ref: Option<String>,
    pub assignee_id: Option<Uuid>,
    /// `running` or `warning` while the state has an SLA; once it is left,
    /// the last SLA's outcome: `met` or `breached`.
    pub sla_status: Option<String>,
    /// The last SLA's deadline.
    #[serde(with = "time::serde::rfc3339::option")]
    pub sla_due_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The engine's whole state between steps.
    #[serde(skip)]
    pub body: InstanceState,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkflowEventRecord {
    /// Time-ordered: the SSE stream's `Last-Event-ID`.
    pub id: Uuid,
    pub instance_id: Uuid,
    pub seq: i64,
    /// `workflow.instance.created`, `workflow.field.set`, …
    pub name: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Who caused it (an email, a key's name, `system`).
    pub actor: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, definition_id, version_id, state, status, seq, body, conversation_id, external_ref, \
                       assignee_id, sla_status, sla_due_at, created_at, updated_at";
const EVENT_COLUMNS: &str = "id, instance_id, seq, name, payload, actor, created_at";

fn id_at(r: &AnyRow, i: usize) -> Result<Uuid, sqlx::Error> {
    parse_id(&r.try_get::<String, _>(i)?).map_err(|e| sqlx::Error::Decode(e.into()))
}

fn opt_id_at(r: &AnyRow, i: usize) -> Result<Option<Uuid>, sqlx::Error> {
    r.try_get::<Option<String>, _>(i)?
        .map(|s| parse_id(&s).map_err(|e| sqlx::Error::Decode(e.into())))
        .transpose()
}

struct Row(Instance);

impl<'r> sqlx::FromRow<'r, AnyRow> for Row {
    fn from_row(r: &'r AnyRow) -> Result<Row, sqlx::Error> {
        let body: String = r.try_get(6)?;
        let body: InstanceState =
            serde_json::from_str(&body).map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(Row(Instance {
            id: id_at(r, 0)?,
            definition_id: id_at(r, 1)?,
            version_id: id_at(r, 2)?,
            state: r.try_get(3)?,
            status: r.try_get(4)?,
            seq: r.try_get(5)?,
            fields: body.fields.clone(),
            vars: body.vars.clone(),
            conversation_id: opt_id_at(r, 7)?,
            external_ref: r.try_get(8)?,
            assignee_id: opt_id_at(r, 9)?,
            sla_status: r.try_get(10)?,
            sla_due_at: r.try_get::<Option<i64>, _>(11)?.map(from_ms),
            created_at: from_ms(r.try_get(12)?),
            updated_at: from_ms(r.try_get(13)?),
            body,
        }))
    }
}

struct EventRow(WorkflowEventRecord);

impl<'r> sqlx::FromRow<'r, AnyRow> for EventRow {
    fn from_row(r: &'r AnyRow) -> Result<EventRow, sqlx::Error> {
        let payload: String = r.try_get(4)?;
        Ok(EventRow(WorkflowEventRecord {
            id: id_at(r, 0)?,
            instance_id: id_at(r, 1)?,
            seq: r.try_get(2)?,
            name: r.try_get(3)?,
            payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            actor: r.try_get(5)?,
            created_at: from_ms(r.try_get(6)?),
        }))
    }
}

fn status_str(status: Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::Completed => "completed",
        Status::Cancelled => "cancelled",
    }
}

/// Why a step was not written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The engine refused the input (422, or 409 for a finished instance).
    #[error(transparent)]
    Refused(#[from] StepError),
    /// The caller expected another `seq`: the instance moved (409).
    #[error("the instance moved: its seq is {current}")]
    Moved { current: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new instance is started with.
pub struct NewInstance<'a> {
    pub tenant_id: Uuid,
    pub definition_id: Uuid,
    pub version_id: Uuid,
    pub definition: &'a Definition,
    pub data: Map<String, Value>,
    pub conversation_id: Option<Uuid>,
    pub external_ref: Option<String>,
    /// Who started it.
    pub actor: &'a str,
}

/// Starts an instance; with an `external_ref` already started for the
/// definition, returns that one instead (`false`).
pub async fn create(
    tx: &mut Tx<'_>,
    new: NewInstance<'_>,
    ctx: &StepContext,
) -> Result<(Instance, bool), ApplyError> {
    if let Some(reference) = &new.external_ref {
        crate::fields::check_text("external_ref", reference, MAX_EXTERNAL_REF_CHARS)?;
        let found: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM workflow_instances \
             WHERE tenant_id = $1 AND definition_id = $2 AND external_ref = $3"
        )))
        .bind(new.tenant_id.to_string())
        .bind(new.definition_id.to_string())
        .bind(reference)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::from)?;
        if let Some(found) = found {
            return Ok((found.0, false));
        }
    }
    let now = now_ms();
    let step = machine::start(new.definition, new.data, now, ctx)?;
    let id = new_id();
    sqlx::query(
        "INSERT INTO workflow_instances (id, tenant_id, definition_id, version_id, state, status, seq, body, \
         conversation_id, external_ref, created_at, updated_at, sla_status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)",
    )
    .bind(id.to_string())
    .bind(new.tenant_id.to_string())
    .bind(new.definition_id.to_string())
    .bind(new.version_id.to_string())
    .bind(&step.state.state)
    .bind(status_str(step.state.status))
    .bind(step.state.seq)
    .bind(serde_json::to_string(&step.state).map_err(|e| StoreError::Internal(e.to_string()))?)
    .bind(new.conversation_id.map(|c| c.to_string()))
    .bind(new.external_ref.as_deref())
    .bind(now)
    // The initial state's SLA starts now.
    .bind(step.state.sla.as_ref().map(|_| "running"))
    .execute(&mut **tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(
            "an instance with this external_ref was started meanwhile; send the request again".into(),
        ),
        _ => StoreError::Db(e),
    })?;
    let instance = Instance {
        id,
        definition_id: new.definition_id,
        version_id: new.version_id,
        state: String::new(),
        status: String::new(),
        seq: 0,
        fields: Map::new(),
        vars: Map::new(),
        conversation_id: new.conversation_id,
        external_ref: new.external_ref.clone(),
        assignee_id: None,
        sla_status: None,
        sla_due_at: None,
        created_at: from_ms(now),
        updated_at: from_ms(now),
        body: InstanceState::default(),
    };
    record(tx, new.tenant_id, &instance, &step, new.actor, now).await?;
    let stored = lock(tx, new.tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("workflow instance"))?;
    Ok((stored, true))
}

/// One input for `apply`, with who sends it and what the step may read.
pub struct StepRequest<'a> {
    pub input: &'a Input,
    /// The `seq` the caller saw: refused when the instance moved since.
    pub expected_seq: Option<i64>,
    pub actor: &'a str,
    pub ctx: &'a StepContext,
}

/// Applies `input` to the instance (read with `lock` in this transaction)
/// and writes the step. With `expected_seq`, refuses when the instance has
/// moved since. A stale timer or SLA input changes nothing (`None`).
pub async fn apply(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    instance: &Instance,
    definition: &Definition,
    request: StepRequest<'_>,
) -> Result<Option<Step>, ApplyError> {
    let StepRequest {
        input,
        expected_seq,
        actor,
        ctx,
    } = request;
    if let Some(expected) = expected_seq
        && expected != instance.seq
    {
        return Err(ApplyError::Moved {
            current: instance.seq,
        });
    }
    let now = now_ms();
    let step = machine::step(definition, &instance.body, input, now, ctx)?;
    if step.stale {
        return Ok(None);
    }
    write(tx, tenant_id, instance, instance.version_id, &step, now).await?;
    record(tx, tenant_id, instance, &step, actor, now).await?;
    Ok(Some(step))
}

/// Stores the instance as `step` left it, on `version_id`.
async fn write(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    instance: &Instance,
    version_id: Uuid,
    step: &Step,
    now: i64,
) -> Result<(), StoreError> {
    // The last SLA's outcome stays once its state is left: `met`, or
    // `breached`.
    let sla_status = match step.state.sla.as_ref() {
        Some(c) if c.breached => Some("breached"),
        Some(c) if c.warned => Some("warning"),
        Some(_) => Some("running"),
        // Breached as the state was left (its check came late).
        None if step
            .events
            .iter()
            .any(|e| e.name == machine::EventName::SlaBreached) =>
        {
            Some("breached")
        }
        None => match instance.sla_status.as_deref() {
            Some("running" | "warning") => Some("met"),
            Some("breached") => Some("breached"),
            _ => None,
        },
    };
    sqlx::query(
        "UPDATE workflow_instances SET state = $1, status = $2, seq = $3, body = $4, sla_status = $5, \
         updated_at = $6, version_id = $7 WHERE id = $8 AND tenant_id = $9",
    )
    .bind(&step.state.state)
    .bind(status_str(step.state.status))
    .bind(step.state.seq)
    .bind(serde_json::to_string(&step.state).map_err(|e| StoreError::Internal(e.to_string()))?)
    .bind(sla_status)
    .bind(now)
    .bind(version_id.to_string())
    .bind(instance.id.to_string())
    .bind(tenant_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Where `migrate` moves an instance.
pub struct Migration<'a> {
    /// The published version to run on from now: one of the instance's
    /// definition (another definition's is refused).
    pub version_id: Uuid,
    /// That version, parsed.
    pub definition: &'a Definition,
    /// Old state name → new one; a state not in the map keeps its name.
    /// Every state it maps to must be one of the version's. Staying in the
    /// same state on the same version is refused: nothing to migrate.
    pub state_map: &'a BTreeMap<String, String>,
    /// The `seq` the caller saw: refused when the instance moved since.
    pub expected_seq: Option<i64>,
    pub actor: &'a str,
    pub ctx: &'a StepContext,
}

/// A migration written (or, in a dry run, to be rolled back).
#[derive(Debug)]
pub struct Migrated {
    pub step: Step,
    /// The names of the events written, in order.
    pub events: Vec<String>,
}

/// The event of a migration; `migrate` adds the version numbers the engine
/// does not know.
const MIGRATED: &str = "workflow.instance.migrated";

/// Moves the instance (read with `lock` in this transaction) onto
/// `migration.version_id`, in the state `state_map` gives its own, and
/// writes the step with all it causes, as `apply` does, and the new
/// `version_id`. Its `seq` grows, so the timers and SLA checks armed before
/// do nothing when they come due. A dry run is this, rolled back.
pub async fn migrate(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    instance: &Instance,
    migration: Migration<'_>,
) -> Result<Migrated, ApplyError> {
    let Migration {
        version_id,
        definition,
        state_map,
        expected_seq,
        actor,
        ctx,
    } = migration;
    if let Some(expected) = expected_seq
        && expected != instance.seq
    {
        return Err(ApplyError::Moved {
            current: instance.seq,
        });
    }
    // Only a running instance moves.
    match instance.body.status {
        Status::Active => {}
        Status::Completed => return Err(StepError::Completed.into()),
        Status::Cancelled => return Err(StepError::Cancelled.into()),
    }
    let versions: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id, definition_id, version FROM workflow_versions \
         WHERE tenant_id = $1 AND id IN ($2, $3)",
    )
    .bind(tenant_id.to_string())
    .bind(instance.version_id.to_string())
    .bind(version_id.to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::from)?;
    let number = |id: Uuid| {
        versions
            .iter()
            .find(|(v, _, _)| *v == id.to_string())
            .map(|(_, definition, number)| (definition.as_str(), *number))
    };
    let from_version = number(instance.version_id)
        .ok_or(StoreError::NotFound("workflow version"))?
        .1;
    let to_version = match number(version_id) {
        Some((definition, n)) if definition == instance.definition_id.to_string() => n,
        Some(_) => {
            return Err(StoreError::invalid(
                "version_id",
                "is a version of another workflow definition",
            )
            .into());
        }
        None => {
            return Err(StoreError::invalid(
                "version_id",
                "no published workflow version of the tenant has this id",
            )
            .into());
        }
    };
    let states = || definition.states.keys().collect::<Vec<_>>().join(", ");
    for (from, to) in state_map {
        if !definition.states.contains_key(to) {
            return Err(StoreError::invalid(
                &format!("state_map.{from}"),
                format!(
                    "state `{to}` does not exist in version {to_version}; its states: {}",
                    states()
                ),
            )
            .into());
        }
    }
    let to_state = state_map
        .get(&instance.state)
        .map_or(instance.state.as_str(), String::as_str);
    if version_id == instance.version_id && to_state == instance.state {
        return Err(StoreError::invalid(
            "state_map",
            format!(
                "nothing to migrate: the instance is already on version {to_version}, in state \
                 `{to_state}`; name another version, or map `{to_state}` to another state"
            ),
        )
        .into());
    }
    let now = now_ms();
    let mut step =
        machine::migrate(definition, &instance.body, to_state, now, ctx).map_err(|e| match e {
            StepError::UnknownState { state, .. } => ApplyError::Store(StoreError::invalid(
                "state_map",
                format!(
                    "the instance's state `{state}` does not exist in version {to_version}: map it \
                     to one of its states: {}",
                    states()
                ),
            )),
            e => e.into(),
        })?;
    if let Some(event) = step.events.iter_mut().find(|e| e.name.as_str() == MIGRATED)
        && let Value::Object(payload) = &mut event.payload
    {
        payload.insert("from_version".into(), json!(from_version));
        payload.insert("to_version".into(), json!(to_version));
    }
    write(tx, tenant_id, instance, version_id, &step, now).await?;
    let events = record(tx, tenant_id, instance, &step, actor, now).await?;
    Ok(Migrated { step, events })
}

/// What a step causes, in its transaction: its events, its timer and SLA
/// jobs, its assignment, its messages (queued like any bot message, sent
/// once by their send jobs), its hand-off and its alerts; and one job for
/// the effects that reach outside (webhooks, the LLM). Returns the names of
/// the events written, in order.
async fn record(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    instance: &Instance,
    step: &Step,
    actor: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let seq = step.state.seq;
    let mut events: Vec<(String, Value)> = step
        .events
        .iter()
        .map(|e| (e.name.as_str().to_string(), e.payload.clone()))
        .collect();
    // Where the next assignment's event is looked for.
    let mut next_assigned = 0;
    let mut jobs = Vec::new();
    let mut outside = Vec::new();
    let job = |input: Input, run_at: i64| NewJob {
        kind: JobKind::WorkflowTimer,
        payload: json!({ "tenant_id": tenant_id, "instance_id": instance.id, "input": input }),
        tenant_id: Some(tenant_id),
        // Not the conversation's queue: a timer must not wait for its
        // replies, nor they for it.
        queue_key: None,
        max_attempts: JOB_ATTEMPTS,
        run_at: Some(run_at),
    };
    for effect in &step.effects {
        match effect {
            Effect::ArmTimer {
                index,
                due_at_ms,
                seq,
            } => jobs.push(job(
                Input::Timer {
                    index: *index,
                    armed_seq: *seq,
                },
                *due_at_ms,
            )),
            Effect::ArmSla {
                warn_at_ms,
                breach_at_ms,
                seq,
                ..
            } => {
                if let Some(warn_at) = warn_at_ms {
                    jobs.push(job(
                        Input::Sla {
                            kind: machine::SlaKind::Warning,
                            armed_seq: *seq,
                        },
                        *warn_at,
                    ));
                }
                jobs.push(job(
                    Input::Sla {
                        kind: machine::SlaKind::Breach,
                        armed_seq: *seq,
                    },
                    *breach_at_ms,
                ));
                sqlx::query("UPDATE workflow_instances SET sla_due_at = $1 WHERE id = $2")
                    .bind(*breach_at_ms)
                    .bind(instance.id.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
            Effect::Assign { assignee } => {
                let picked = pick_assignee(tx, tenant_id, instance, assignee).await?;
                if let Some(user) = picked {
                    sqlx::query("UPDATE workflow_instances SET assignee_id = $1 WHERE id = $2")
                        .bind(user.to_string())
                        .bind(instance.id.to_string())
                        .execute(&mut **tx)
                        .await?;
                }
                // The engine published this assignment's event, with the
                // rule; it gains the person picked (or, with nobody,
                // becomes `unassigned`): one event per assignment.
                let found = events
                    .iter()
                    .enumerate()
                    .skip(next_assigned)
                    .find(|(_, (name, _))| name == ASSIGNED)
                    .map(|(at, _)| at);
                let at = found.unwrap_or_else(|| {
                    events.push((
                        ASSIGNED.to_string(),
                        json!({ "state": step.state.state, "seq": seq }),
                    ));
                    events.len() - 1
                });
                next_assigned = at + 1;
                let (name, payload) = &mut events[at];
                if let Value::Object(map) = payload {
                    map.insert("assignee_id".into(), json!(picked));
                    if picked.is_none() {
                        map.insert(
                            "reason".into(),
                            "nobody in the tenant matches the assignment".into(),
                        );
                    }
                }
                if picked.is_none() {
                    *name = UNASSIGNED.to_string();
                }
            }
            Effect::Send { text } => match conversation(tx, tenant_id, instance).await? {
                Some(conversation) => {
                    let out = Outgoing {
                        sender: MessageSender::Bot,
                        text: Some(text.clone()),
                        ..Outgoing::default()
                    };
                    conversations::queue_outbound(&mut Conn::of(tx), &conversation, out).await?;
                }
                None => events.push(skipped(step, "send", "the instance has no conversation")),
            },
            Effect::Handoff { reason } => match conversation(tx, tenant_id, instance).await? {
                Some(conversation) if conversation.state == ConversationState::Bot => {
                    memory::transition(
                        &mut Conn::of(tx),
                        tenant_id,
                        conversation.id,
                        conversation.state,
                        ConversationState::Human,
                        "workflow_handoff",
                        Some(reason.as_deref().unwrap_or(actor)),
                    )
                    .await?;
                }
                Some(_) => {}
                None => events.push(skipped(step, "handoff", "the instance has no conversation")),
            },
            Effect::Alert { state } => {
                let event = events::NewEvent {
                    tenant_id,
                    bot_id: None,
                    conversation_id: instance.conversation_id,
                    kind: "workflow_sla_breached",
                    detail: format!(
                        "workflow instance {} breached the SLA of state `{state}`",
                        instance.id
                    ),
                };
                let once = format!("workflow_sla:{}:{seq}:{state}", instance.id);
                if let Some(event_id) =
                    events::record(&mut Conn::of(tx), event, true, Some(&once)).await?
                {
                    jobs.push(NewJob {
                        kind: JobKind::Alert,
                        payload: json!({ "event_id": event_id }),
                        tenant_id: Some(tenant_id),
                        queue_key: None,
                        max_attempts: 6,
                        run_at: None,
                    });
                }
            }
            other => outside.push(other.clone()),
        }
    }
    if !outside.is_empty() {
        jobs.push(NewJob {
            kind: JobKind::WorkflowEffects,
            payload: json!({
                "tenant_id": tenant_id,
                "instance_id": instance.id,
                "conversation_id": instance.conversation_id,
                "seq": seq,
                "effects": outside,
            }),
            tenant_id: Some(tenant_id),
            // After the conversation's reply, in its order.
            queue_key: instance
                .conversation_id
                .map(|c| format!("conversation:{c}")),
            max_attempts: JOB_ATTEMPTS,
            run_at: None,
        });
    }
    let mut names = Vec::with_capacity(events.len());
    for (name, payload) in events {
        sqlx::query(
            "INSERT INTO workflow_events (id, tenant_id, instance_id, seq, name, payload, actor, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id().to_string())
        .bind(tenant_id.to_string())
        .bind(instance.id.to_string())
        .bind(seq)
        .bind(&name)
        .bind(payload.to_string())
        .bind(actor)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        names.push(name);
    }
    if !jobs.is_empty() {
        jobs::enqueue_many(&mut Conn::of(tx), jobs).await?;
    }
    Ok(names)
}

/// The instance's conversation, if it has one in this tenant.
async fn conversation(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    instance: &Instance,
) -> Result<Option<Conversation>, StoreError> {
    let Some(id) = instance.conversation_id else {
        return Ok(None);
    };
    Ok(conversations::conversation_in(&mut Conn::of(tx), id)
        .await?
        .filter(|c| c.tenant_id == tenant_id))
}

/// An event saying an effect could not be carried out, and why.
fn skipped(step: &Step, effect: &str, reason: &str) -> (String, Value) {
    (
        "workflow.effect.skipped".into(),
        json!({ "state": step.state.state, "seq": step.state.seq, "effect": effect, "reason": reason }),
    )
}

/// The person an `assign` names: a member by id or email, or, for a role,
/// the next member holding it (`round_robin`: after the one this
/// definition assigned last; `least_busy`: the one with the fewest active
/// instances). `None` when nobody matches.
async fn pick_assignee(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    instance: &Instance,
    assignee: &Assignee,
) -> Result<Option<Uuid>, StoreError> {
    let found: Option<String> = match assignee {
        Assignee::User { user } => {
            sqlx::query_scalar(
                "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.tenant_id = $1 AND (u.id = $2 OR lower(u.email) = lower($2)) AND u.disabled_at IS NULL",
            )
            .bind(tenant_id.to_string())
            .bind(user)
            .fetch_optional(&mut **tx)
            .await?
        }
        Assignee::Role { role, strategy } => {
            let members: Vec<String> = sqlx::query_scalar(
                "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.tenant_id = $1 AND m.role = $2 AND u.disabled_at IS NULL ORDER BY m.user_id",
            )
            .bind(tenant_id.to_string())
            .bind(role_str(*role))
            .fetch_all(&mut **tx)
            .await?;
            match strategy {
                Strategy::RoundRobin => {
                    let last: Option<String> = sqlx::query_scalar(
                        "SELECT assignee_id FROM workflow_instances WHERE tenant_id = $1 AND definition_id = $2 \
                         AND assignee_id IS NOT NULL AND id <> $3 ORDER BY updated_at DESC, id DESC LIMIT 1",
                    )
                    .bind(tenant_id.to_string())
                    .bind(instance.definition_id.to_string())
                    .bind(instance.id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
                    let next = last
                        .and_then(|l| members.iter().position(|m| *m == l))
                        .map_or(0, |i| (i + 1) % members.len().max(1));
                    members.get(next).cloned()
                }
                Strategy::LeastBusy => {
                    let mut best: Option<(i64, String)> = None;
                    for member in members {
                        let busy: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM workflow_instances WHERE tenant_id = $1 AND assignee_id = $2 \
                             AND status = 'active' AND deleted_at IS NULL",
                        )
                        .bind(tenant_id.to_string())
                        .bind(&member)
                        .fetch_one(&mut **tx)
                        .await?;
                        if best.as_ref().is_none_or(|(n, _)| busy < *n) {
                            best = Some((busy, member));
                        }
                    }
                    best.map(|(_, m)| m)
                }
            }
        }
    };
    found.map(|id| parse_id(&id)).transpose()
}

fn role_str(role: Role) -> &'static str {
    match role {
        Role::Agent => "agent",
        Role::Admin => "admin",
        Role::Owner => "owner",
    }
}

/// Assigns the instance to a member (or nobody), as a person asked.
pub async fn assign(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    instance: &Instance,
    assignee: Option<Uuid>,
    actor: &str,
) -> Result<(), StoreError> {
    if let Some(user) = assignee {
        let member: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM memberships WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant_id.to_string())
        .bind(user.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        if member.is_none() {
            return Err(StoreError::invalid(
                "user_id",
                "is not a member of this tenant",
            ));
        }
    }
    let now = now_ms();
    sqlx::query(
        "UPDATE workflow_instances SET assignee_id = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4",
    )
    .bind(assignee.map(|a| a.to_string()))
    .bind(now)
    .bind(instance.id.to_string())
    .bind(tenant_id.to_string())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO workflow_events (id, tenant_id, instance_id, seq, name, payload, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id().to_string())
    .bind(tenant_id.to_string())
    .bind(instance.id.to_string())
    .bind(instance.seq)
    .bind(machine::EventName::InstanceAssigned.as_str())
    .bind(json!({ "state": instance.state, "seq": instance.seq, "assignee_id": assignee }).to_string())
    .bind(actor)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Soft-deletes an instance (after cancelling it, when it was active).
pub async fn mark_deleted(tx: &mut Tx<'_>, tenant_id: Uuid, id: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE workflow_instances SET deleted_at = $1 WHERE id = $2 AND tenant_id = $3")
        .bind(now_ms())
        .bind(id.to_string())
        .bind(tenant_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The definition and number of a published version of the tenant: what a
/// migration may name, checked before its definition is read.
pub async fn version_of(
    db: &Db,
    tenant_id: Uuid,
    version_id: Uuid,
) -> Result<Option<(Uuid, i64)>, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT definition_id, version FROM workflow_versions WHERE id = $1 AND tenant_id = $2",
    )
    .bind(version_id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(|(definition, number)| Ok((parse_id(&definition)?, number)))
        .transpose()
}

/// The instance, locked for this transaction on PostgreSQL.
pub async fn lock(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Instance>, StoreError> {
    let lock = if Conn::of(tx).is_sqlite() {
        ""
    } else {
        " FOR UPDATE"
    };
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflow_instances \
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL{lock}"
    )))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.0))
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<Instance>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflow_instances WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    )))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

#[derive(Debug, Default, Clone)]
pub struct InstanceFilter {
    /// A definition's id.
    pub definition_id: Option<Uuid>,
    pub state: Option<String>,
    /// `active`, `completed` or `cancelled`.
    pub status: Option<String>,
    pub assignee_id: Option<Uuid>,
    /// `running`, `warning` or `breached`.
    pub sla_status: Option<String>,
    pub conversation_id: Option<Uuid>,
}

/// Instances, newest first.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    filter: &InstanceFilter,
    page: &PageRequest,
) -> Result<Page<Instance>, StoreError> {
    let rows: Vec<Row> = Where::new(&format!("SELECT {COLUMNS} FROM workflow_instances"))
        .and_always("deleted_at IS NULL")
        .and("tenant_id = {}", Some(tenant_id))
        .and("definition_id = {}", filter.definition_id)
        .and("state = {}", filter.state.as_ref())
        .and("status = {}", filter.status.as_ref())
        .and("assignee_id = {}", filter.assignee_id)
        .and("sla_status = {}", filter.sla_status.as_ref())
        .and("conversation_id = {}", filter.conversation_id)
        .newest_first(page)
        .fetch(db)
        .await?;
    Ok(Page::from_rows(
        rows.into_iter().map(|r| r.0).collect(),
        page,
        |i| i.id,
    ))
}

/// An instance's events, oldest first.
pub async fn history(
    db: &Db,
    tenant_id: Uuid,
    instance_id: Uuid,
    page: &PageRequest,
) -> Result<Page<WorkflowEventRecord>, StoreError> {
    let rows: Vec<EventRow> = Where::new(&format!("SELECT {EVENT_COLUMNS} FROM workflow_events"))
        .and("tenant_id = {}", Some(tenant_id))
        .and("instance_id = {}", Some(instance_id))
        .oldest_first(page)
        .fetch(db)
        .await?;
    Ok(Page::from_rows(
        rows.into_iter().map(|r| r.0).collect(),
        page,
        |e| e.id,
    ))
}

/// The tenant's workflow events after `after` (an event id), oldest first,
/// at most `limit`: the SSE stream.
pub async fn events_after(
    db: &Db,
    tenant_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<WorkflowEventRecord>, StoreError> {
    let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM workflow_events WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT {}",
        limit.clamp(1, 1000)
    )))
    .bind(tenant_id.to_string())
    .bind(after.map_or_else(String::new, |a| a.to_string()))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The conversation's active instances, newest first.
pub async fn active_in_conversation(
    db: &Db,
    tenant_id: Uuid,
    conversation_id: Uuid,
) -> Result<Vec<Instance>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflow_instances WHERE conversation_id = $1 AND status = 'active' \
         AND tenant_id = $2 AND deleted_at IS NULL ORDER BY id DESC LIMIT 20"
    )))
    .bind(conversation_id.to_string())
    .bind(tenant_id.to_string())
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
