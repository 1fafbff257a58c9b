//! What an instance is between steps, what goes into a step and what
//! comes out: the contract between the pure machine and the caller that
//! stores instances, runs timer jobs and carries out effects. Everything
//! here serialises, so states are stored as they are and `/simulate`
//! answers with steps as they are.

use super::calendar::BusinessCalendar;
use super::definition::{Role, Strategy};
use crate::template::Vars;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// An instance between steps; the caller stores it as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    /// The current state; empty before [`Input::Start`].
    pub state: String,
    /// Incremented by every transition and by cancellation.
    pub seq: i64,
    #[serde(default)]
    pub status: Status,
    /// Field values collected so far (by forms, start data and events).
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// The instance's variables (`set`, `ask_llm`, start data that is not a
    /// field); read as `vars.*` over the conversation's own variables.
    #[serde(default)]
    pub vars: Map<String, Value>,
    /// The form waiting for an answer, if any.
    #[serde(default)]
    pub form: Option<FormProgress>,
    pub entered_at_ms: i64,
    /// Timers of the current state that already fired.
    #[serde(default)]
    pub fired_timers: Vec<usize>,
    /// The current state's SLA clock, if it has one.
    #[serde(default)]
    pub sla: Option<SlaClock>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Active,
    /// Reached a final state.
    Completed,
    /// Cancelled by a cancel word, a form giving up to a human, or the API.
    Cancelled,
}

/// Where a form is: the field asked (index into the form's `fields`), the
/// invalid answers given to it, and whether the confirmation is pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormProgress {
    pub field: usize,
    pub attempts: u32,
    pub confirming: bool,
}

/// An SLA running in the current state. Pauses are kept in business time
/// (the calendar's, or wall-clock) and push the deadline back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaClock {
    pub started_at_ms: i64,
    #[serde(default)]
    pub paused_since_ms: Option<i64>,
    #[serde(default)]
    pub paused_ms: i64,
    #[serde(default)]
    pub warned: bool,
    #[serde(default)]
    pub breached: bool,
}

/// What the caller knows about the conversation and tenant for one step.
#[derive(Debug, Clone, Default)]
pub struct StepContext {
    /// A turn's names (`contact`, `conversation`, `channel`, `now`, `bot`,
    /// `vars` …) as for rules; the instance adds `fields`, `data`,
    /// `workflow` and its own `vars` over these.
    pub vars: Vars,
    /// The business calendars SLAs may name. A named calendar missing here
    /// is an error ([`StepError::UnknownCalendar`]): keep calendars that
    /// published versions use
    /// ([`crate::workflow::Definition::calendars_used`]).
    pub calendars: HashMap<String, BusinessCalendar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// Create the instance; data keys that are fields are validated and
    /// count as filled, the others become variables.
    Start {
        #[serde(default)]
        data: Map<String, Value>,
    },
    /// A message from the conversation; taken only while a form waits.
    Message { text: String },
    /// An event from the API, a rule or another system.
    Event {
        name: String,
        #[serde(default)]
        data: Map<String, Value>,
    },
    /// A timer job came due (run it at or after its `due_at_ms`).
    Timer { index: usize, armed_seq: i64 },
    /// An SLA job came due. Pass `now_ms` of at least the job's due time
    /// (the later of the clock and `due_at`): a check that looks early is
    /// taken for one superseded by a pause and ignored, so a worker whose
    /// clock lags must not make a due check look early.
    Sla { kind: SlaKind, armed_seq: i64 },
    /// Cancel the instance (the API's DELETE).
    Cancel {
        #[serde(default)]
        reason: Option<String>,
    },
    /// Store a variable: the answer to an [`Effect::AskLlm`], kept before it
    /// is used so a retry never sends different text.
    Store { var: String, value: Value },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaKind {
    Warning,
    Breach,
}

/// Who to assign, as the definition says; the caller picks the person for
/// a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Assignee {
    User { user: String },
    Role { role: Role, strategy: Strategy },
}

/// Something the caller must do, in order, after storing the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    Send {
        text: String,
    },
    Assign {
        assignee: Assignee,
    },
    Handoff {
        reason: Option<String>,
    },
    /// Signed, retried, with the event id as idempotency key, under the
    /// outbound URL policy.
    Webhook {
        url: String,
        secret_ref: Option<String>,
        /// What led to the call: the transition's event, `enter`, `exit` or
        /// `sla_breach`.
        event: String,
        /// The instance as of this step.
        payload: Value,
    },
    /// Ask the LLM, then feed the answer back with [`Input::Store`].
    AskLlm {
        prompt: String,
        store_as: String,
    },
    /// Tell the assignees and admins that an SLA was breached.
    Alert {
        state: String,
    },
    /// Queue [`Input::Timer`] `{ index, armed_seq: seq }` for `due_at_ms`.
    ArmTimer {
        index: usize,
        due_at_ms: i64,
        seq: i64,
    },
    /// Queue [`Input::Sla`] warning and breach checks. Due times are already
    /// in business time when `calendar` is named. A re-arm (after a pause)
    /// carries the same `seq`: the earlier jobs then find the deadline not
    /// yet reached and do nothing.
    ArmSla {
        warn_at_ms: Option<i64>,
        breach_at_ms: i64,
        seq: i64,
        calendar: Option<String>,
    },
}

/// The events workflows publish, named as at `/api/v1/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventName {
    #[serde(rename = "workflow.instance.created")]
    InstanceCreated,
    #[serde(rename = "workflow.instance.transitioned")]
    InstanceTransitioned,
    #[serde(rename = "workflow.instance.assigned")]
    InstanceAssigned,
    #[serde(rename = "workflow.instance.completed")]
    InstanceCompleted,
    #[serde(rename = "workflow.instance.cancelled")]
    InstanceCancelled,
    /// Moved onto another version (or state) by a person.
    #[serde(rename = "workflow.instance.migrated")]
    InstanceMigrated,
    #[serde(rename = "workflow.field.set")]
    FieldSet,
    #[serde(rename = "workflow.field.rejected")]
    FieldRejected,
    #[serde(rename = "workflow.sla.warning")]
    SlaWarning,
    #[serde(rename = "workflow.sla.breached")]
    SlaBreached,
    #[serde(rename = "workflow.timer.fired")]
    TimerFired,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::InstanceCreated => "workflow.instance.created",
            EventName::InstanceTransitioned => "workflow.instance.transitioned",
            EventName::InstanceAssigned => "workflow.instance.assigned",
            EventName::InstanceCompleted => "workflow.instance.completed",
            EventName::InstanceCancelled => "workflow.instance.cancelled",
            EventName::InstanceMigrated => "workflow.instance.migrated",
            EventName::FieldSet => "workflow.field.set",
            EventName::FieldRejected => "workflow.field.rejected",
            EventName::SlaWarning => "workflow.sla.warning",
            EventName::SlaBreached => "workflow.sla.breached",
            EventName::TimerFired => "workflow.timer.fired",
        }
    }
}

/// An event to publish; every payload has `workflow`, `state` and `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowEvent {
    pub name: EventName,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: String,
    pub to: String,
    /// The event that caused it (`complete` for a form, `timer` for a timer's
    /// `goto`, `give_up` for `on_give_up`).
    pub event: String,
}

/// The outcome of one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub state: InstanceState,
    /// The message was an answer to the form (the reply pipeline stops here).
    pub consumed: bool,
    /// A timer or SLA job for a state the instance has left (or already
    /// handled): nothing changed, drop the job.
    pub stale: bool,
    /// In order; several when one input chains (a form completing into a
    /// state whose form is already filled, …).
    pub transitions: Vec<Transition>,
    pub effects: Vec<Effect>,
    pub events: Vec<WorkflowEvent>,
}

/// Why an input was refused; the instance is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("the instance has already started")]
    AlreadyStarted,
    #[error("the instance has not started")]
    NotStarted,
    #[error("the instance is completed")]
    Completed,
    #[error("the instance is cancelled")]
    Cancelled,
    #[error("state `{state}` has no transition for event `{event}`; allowed: {}", list(.allowed))]
    UnknownEvent {
        event: String,
        state: String,
        allowed: Vec<String>,
    },
    #[error("event `{event}` requires {}", list(.missing))]
    MissingRequired { event: String, missing: Vec<String> },
    #[error("event `{event}` is not allowed now: its condition `{condition}` is false")]
    GuardFailed { event: String, condition: String },
    #[error("{field}: {reason}")]
    InvalidData { field: String, reason: String },
    #[error("{path}: {message}")]
    Condition { path: String, message: String },
    /// The definition is inconsistent (it was not validated).
    #[error("{path}: {message}")]
    Definition { path: String, message: String },
    /// A migration's state is not one of the version's.
    #[error("state `{state}` does not exist; states: {}", list(.states))]
    UnknownState { state: String, states: Vec<String> },
    #[error("business calendar `{name}` does not exist")]
    UnknownCalendar { name: String },
    #[error("more than {limit} transitions in one step: the definition loops")]
    TooManyTransitions { limit: usize },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
