//! Workflows: conversational forms and back-office cases as state machines.
//!
//! A workflow [`Definition`] is written in YAML or JSON; [`step`] moves an
//! instance from one [`InstanceState`] to the next for one [`Input`] (a
//! message, an event, a timer coming due) and says what the caller must do
//! ([`Effect`]) and report ([`WorkflowEvent`]); [`migrate`] moves a running
//! instance onto another version of its definition. Like the rest of the
//! crate it is pure: time is an argument, nothing is stored or sent here, so
//! the job queue can run a step, write its result in one unit and retry
//! safely, and `/simulate` can run a whole script on a virtual clock.

mod calendar;
mod definition;
mod duration;
mod fields;
mod instance;
mod machine;
mod names;
mod simulate;
mod source;
mod trigger;
mod validate;

#[cfg(test)]
mod migrate_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod timer_tests;

pub use calendar::{BusinessCalendar, Interval, Weekly};
pub use definition::{
    Action, AskLlmAction, AssignSpec, ConversationTrigger, DEFAULT_CANCEL_WORDS,
    DEFAULT_MAX_ATTEMPTS, Definition, FieldSpec, FieldType, FormSpec, OrderedMap, Role, SetAction,
    SlaSpec, StateSpec, Strategy, TimerSpec, TransitionSpec, Triggers, WebhookAction,
};
pub use duration::{DurationError, parse_duration};
pub use fields::{Rejection, parse_answer, validate_value};
pub use instance::{
    Assignee, Effect, EventName, FormProgress, Input, InstanceState, SlaClock, SlaKind, Status,
    Step, StepContext, StepError, Transition, WorkflowEvent,
};
pub use machine::{migrate, start, step};
pub use simulate::{MAX_SIMULATED_STEPS, ScriptItem, SimulatedStep, simulate};
pub use source::locate_all;
pub use trigger::triggered_by;
pub use validate::{COMPLETE, HANDOFF};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest definition text, in bytes.
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// Most states in one definition.
pub const MAX_STATES: usize = 100;
/// Most fields in one definition.
pub const MAX_FIELDS: usize = 100;
/// Most timers on one state.
pub const MAX_TIMERS: usize = 20;
/// Most actions in one list (`enter`, `exit`, `do`, `on_breach`).
pub const MAX_ACTIONS: usize = 50;
/// Longest string anywhere in a definition, in characters.
pub const MAX_STRING_CHARS: usize = 4096;
/// Longest key (definition key, state, field, event and variable names).
pub const MAX_KEY_CHARS: usize = 64;
/// Most transitions one step may chain (a form completing into a state
/// whose form is already filled, …): a cycle stops here instead of spinning.
pub const MAX_CHAINED_TRANSITIONS: usize = 20;

/// One thing wrong with a definition (or a calendar): where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// Dotted path to the offending value, e.g.
    /// `states.qualified.on.reject.to` or `states.collecting.timers[1].after`;
    /// empty for the document as a whole.
    pub path: String,
    /// 1-based line in the source text, when known.
    pub line: Option<u32>,
    /// 1-based column in the source text, when known.
    pub column: Option<u32>,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " (line {line}, column {column})"),
            (Some(line), None) => write!(f, " (line {line})"),
            _ => Ok(()),
        }
    }
}

/// Whether `s` is a key: `^[a-z][a-z0-9_]{0,63}$`. States, fields, events
/// and variables are keys so they read the same in YAML, CEL, templates and
/// URLs.
pub fn is_key(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= MAX_KEY_CHARS
        && matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Why [`is_key`] refused `s`, for problem messages.
pub(crate) fn key_problem(s: &str) -> Option<String> {
    if is_key(s) {
        return None;
    }
    let shown = crate::text::truncate_chars(s, 80);
    Some(format!(
        "`{shown}` is not a valid name: use 1 to {MAX_KEY_CHARS} lowercase letters, digits and \
         underscores, starting with a letter (e.g. `lead_intake`)"
    ))
}
