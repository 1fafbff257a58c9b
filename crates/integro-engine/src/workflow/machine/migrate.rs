//! Migration: a running instance moved, as a person asks, onto another
//! published version of its definition (`POST
//! /api/v1/workflow-instances/{id}/migrate`), or to another state of its own.

use super::Run;
use crate::workflow::definition::Definition;
use crate::workflow::instance::{EventName, InstanceState, Step, StepContext, StepError};
use serde_json::json;

/// Moves an active instance onto `def`, the version it migrates to, in
/// `to_state` (one of `def`'s states; [`StepError::UnknownState`]
/// otherwise, listing them).
///
/// - Its fields and variables stay as they are, fields `def` does not
///   declare included.
/// - `seq` grows by one, so every timer and SLA job armed before is stale.
/// - `to_state` is entered as by a transition on `def`: from now, its
///   timers and SLA armed from now, its form asking its first field without
///   a value (or completing at once when all have one), a final state
///   completing the instance. Its `assign` and `enter` actions run only
///   when the state's name changes: under the same name they ran when the
///   instance entered it. No `exit` actions run, of either version.
/// - `workflow.instance.migrated` (`from_state`, `to_state`) comes first
///   among the step's events.
///
/// Which version the instance was on is the caller's to know and to check
/// (migrating onto its own version in its own state is a re-entry here).
pub fn migrate(
    def: &Definition,
    state: &InstanceState,
    to_state: &str,
    now_ms: i64,
    ctx: &StepContext,
) -> Result<Step, StepError> {
    if state.state.is_empty() {
        return Err(StepError::NotStarted);
    }
    let mut run = Run::new(def, state, now_ms, ctx);
    run.ensure_active()?;
    if !def.states.contains_key(to_state) {
        return Err(StepError::UnknownState {
            state: to_state.to_string(),
            states: def.states.keys().map(String::from).collect(),
        });
    }
    let from = run.state.state.clone();
    let renamed = from != to_state;
    run.state.seq += 1;
    run.state.state = to_state.to_string();
    run.emit(
        EventName::InstanceMigrated,
        json!({ "from_state": from, "to_state": to_state }),
    );
    let auto = run.enter_with(to_state, renamed)?;
    run.follow(auto)?;
    run.finish()
}
