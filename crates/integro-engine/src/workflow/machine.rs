//! The state machine: one input in, the next instance state and what to do
//! out.
//!
//! [`step`] never performs anything: sending, assigning, calling webhooks,
//! asking the LLM and arming timer jobs are [`Effect`]s the caller carries
//! out after writing the new state, its events and its timer jobs as one
//! unit. Timers and SLA checks carry the `seq` they were armed at; every
//! transition increments `seq`, so a timer job that comes due after the
//! instance moved is stale and changes nothing, however late or often it
//! runs. Fired timers and SLA warnings are remembered in the state, so a
//! job that runs twice acts once.

mod form;
mod migrate;
mod sla;

use super::definition::{Action, AssignSpec, Definition, StateSpec};
use super::duration::parse_duration;
use super::fields::validate_value;
use super::instance::{
    Assignee, Effect, EventName, Input, InstanceState, SlaClock, Status, Step, StepContext,
    StepError, Transition, WorkflowEvent,
};
use super::names;
use super::{MAX_CHAINED_TRANSITIONS, is_key};
use crate::condition::Condition;
use crate::template::{self, Vars};
use serde_json::{Map, Value, json};

pub use migrate::migrate;

/// Starts an instance: [`step`] with [`Input::Start`] on a blank state.
pub fn start(
    def: &Definition,
    data: Map<String, Value>,
    now_ms: i64,
    ctx: &StepContext,
) -> Result<Step, StepError> {
    step(
        def,
        &InstanceState::default(),
        &Input::Start { data },
        now_ms,
        ctx,
    )
}

/// Applies one input. `Err` leaves the instance as it was; a stale timer or
/// SLA job gives a [`Step`] with `stale` set and nothing else.
pub fn step(
    def: &Definition,
    state: &InstanceState,
    input: &Input,
    now_ms: i64,
    ctx: &StepContext,
) -> Result<Step, StepError> {
    let mut run = Run::new(def, state, now_ms, ctx);
    if state.state.is_empty() && !matches!(input, Input::Start { .. }) {
        return Err(StepError::NotStarted);
    }
    let fresh = match input {
        Input::Start { data } => run.start(data).map(|()| true),
        Input::Message { text } => run.message(text).map(|()| true),
        Input::Event { name, data } => run.event(name, data).map(|()| true),
        Input::Timer { index, armed_seq } => run.timer(*index, *armed_seq),
        Input::Sla { kind, armed_seq } => run.sla(*kind, *armed_seq),
        Input::Cancel { reason } => {
            run.ensure_active()?;
            run.cancel(reason.as_deref().unwrap_or("cancelled"));
            Ok(true)
        }
        Input::Store { var, value } => {
            if !is_key(var) {
                return Err(StepError::InvalidData {
                    field: var.clone(),
                    reason: "is not a valid variable name".into(),
                });
            }
            run.state.vars.insert(var.clone(), value.clone());
            Ok(true)
        }
    }?;
    if !fresh {
        return Ok(Step {
            state: state.clone(),
            consumed: false,
            stale: true,
            transitions: Vec::new(),
            effects: Vec::new(),
            events: Vec::new(),
        });
    }
    run.finish()
}

/// One step in progress; discarded on error.
struct Run<'a> {
    def: &'a Definition,
    ctx: &'a StepContext,
    now: i64,
    state: InstanceState,
    /// The data of the start or event being handled, read as `data.*`.
    data: Map<String, Value>,
    message: Option<String>,
    consumed: bool,
    transitions: Vec<Transition>,
    effects: Vec<Effect>,
    events: Vec<WorkflowEvent>,
    /// Timers and the SLA are armed once, at the end of the step, for the
    /// state the instance ends in: states passed through in a chain were
    /// left at once, and a pause decided at the end may postpone the SLA.
    arm_timers: bool,
    arm_sla: bool,
}

impl<'a> Run<'a> {
    fn new(
        def: &'a Definition,
        state: &InstanceState,
        now_ms: i64,
        ctx: &'a StepContext,
    ) -> Run<'a> {
        Run {
            def,
            ctx,
            now: now_ms,
            state: state.clone(),
            data: Map::new(),
            message: None,
            consumed: false,
            transitions: Vec::new(),
            effects: Vec::new(),
            events: Vec::new(),
            arm_timers: false,
            arm_sla: false,
        }
    }

    /// Ends a step that changed the instance: the SLA's pause, then the
    /// timers and SLA checks the step asked for.
    fn finish(mut self) -> Result<Step, StepError> {
        self.update_sla_pause()?;
        self.arm()?;
        Ok(Step {
            state: self.state,
            consumed: self.consumed,
            stale: false,
            transitions: self.transitions,
            effects: self.effects,
            events: self.events,
        })
    }
}

fn definition_error(path: String, message: impl Into<String>) -> StepError {
    StepError::Definition {
        path,
        message: message.into(),
    }
}

impl<'a> Run<'a> {
    fn spec(&self) -> Result<&'a StateSpec, StepError> {
        self.def.states.get(&self.state.state).ok_or_else(|| {
            definition_error(
                format!("states.{}", self.state.state),
                "the state does not exist",
            )
        })
    }

    fn ensure_active(&self) -> Result<(), StepError> {
        match self.state.status {
            Status::Active => Ok(()),
            Status::Completed => Err(StepError::Completed),
            Status::Cancelled => Err(StepError::Cancelled),
        }
    }

    /// The names templates and conditions read now.
    fn scope(&self) -> Vars {
        let mut vars = self.ctx.vars.clone();
        let mut own = match self.ctx.vars.get("vars") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        own.extend(self.state.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars.set("vars", Value::Object(own));
        vars.set("fields", Value::Object(self.state.fields.clone()));
        vars.set("data", Value::Object(self.data.clone()));
        vars.set(
            "workflow",
            json!({"key": self.def.key, "state": self.state.state, "seq": self.state.seq}),
        );
        if let Some(text) = &self.message {
            vars.set("message.text", text.as_str());
        }
        vars
    }

    fn render(&self, text: &str) -> String {
        template::render(text, &self.scope())
    }

    fn send(&mut self, text: String) {
        self.effects.push(Effect::Send { text });
    }

    fn emit(&mut self, name: EventName, details: Value) {
        let mut payload = json!({
            "workflow": self.def.key,
            "state": self.state.state,
            "seq": self.state.seq,
        });
        if let (Value::Object(p), Value::Object(d)) = (&mut payload, details) {
            p.extend(d);
        }
        self.events.push(WorkflowEvent { name, payload });
    }

    fn condition(&self, path: String, source: &str) -> Result<bool, StepError> {
        let condition = Condition::compile(source).map_err(|e| StepError::Condition {
            path: path.clone(),
            message: e.to_string(),
        })?;
        names::eval(&condition, &self.scope()).map_err(|e| StepError::Condition {
            path,
            message: e.to_string(),
        })
    }

    fn start(&mut self, data: &Map<String, Value>) -> Result<(), StepError> {
        if !self.state.state.is_empty() {
            return Err(StepError::AlreadyStarted);
        }
        let initial = self
            .def
            .initial_state()
            .ok_or_else(|| definition_error("states".into(), "there are no states"))?
            .to_string();
        self.data = data.clone();
        self.state = InstanceState {
            state: initial.clone(),
            ..InstanceState::default()
        };
        let mut set = Vec::new();
        for (key, value) in data {
            match self.def.fields.get(key) {
                Some(spec) => {
                    let value =
                        validate_value(spec, value).map_err(|r| StepError::InvalidData {
                            field: key.clone(),
                            reason: r.reason,
                        })?;
                    self.state.fields.insert(key.clone(), value.clone());
                    set.push((key.clone(), value));
                }
                None => {
                    self.state.vars.insert(key.clone(), value.clone());
                }
            }
        }
        self.emit(EventName::InstanceCreated, json!({ "data": data }));
        for (field, value) in set {
            self.emit(
                EventName::FieldSet,
                json!({ "field": field, "value": value }),
            );
        }
        let auto = self.enter(&initial)?;
        self.follow(auto)
    }

    fn cancel(&mut self, reason: &str) {
        self.state.status = Status::Cancelled;
        self.state.form = None;
        self.state.sla = None;
        self.state.seq += 1;
        self.emit(EventName::InstanceCancelled, json!({ "reason": reason }));
    }

    fn event(&mut self, name: &str, data: &Map<String, Value>) -> Result<(), StepError> {
        self.ensure_active()?;
        let spec = self.spec()?;
        let Some(transition) = spec.on.get(name) else {
            return Err(StepError::UnknownEvent {
                event: name.to_string(),
                state: self.state.state.clone(),
                allowed: spec.on.keys().map(String::from).collect(),
            });
        };
        self.data = data.clone();
        let mut set = Vec::new();
        for (key, value) in data {
            let value = match self.def.fields.get(key) {
                Some(field) => {
                    validate_value(field, value).map_err(|r| StepError::InvalidData {
                        field: key.clone(),
                        reason: r.reason,
                    })?
                }
                None if transition.require.contains(key) => value.clone(),
                None => continue,
            };
            set.push((key.clone(), value));
        }
        for (key, value) in &set {
            self.state.fields.insert(key.clone(), value.clone());
        }
        for (field, value) in set {
            self.emit(
                EventName::FieldSet,
                json!({ "field": field, "value": value }),
            );
        }
        self.guarded(name, transition)?;
        let auto = self.move_to(name, &transition.to, &transition.actions)?;
        self.follow(auto)
    }

    /// Checks `require` (against the fields, which hold the event's data by
    /// now) and `when`.
    fn guarded(
        &self,
        event: &str,
        transition: &super::definition::TransitionSpec,
    ) -> Result<(), StepError> {
        let missing: Vec<String> = transition
            .require
            .iter()
            .filter(|name| match self.state.fields.get(name.as_str()) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.trim().is_empty(),
                Some(_) => false,
            })
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(StepError::MissingRequired {
                event: event.to_string(),
                missing,
            });
        }
        if let Some(when) = &transition.when {
            let path = format!("states.{}.on.{event}.when", self.state.state);
            if !self.condition(path, when)? {
                return Err(StepError::GuardFailed {
                    event: event.to_string(),
                    condition: when.clone(),
                });
            }
        }
        Ok(())
    }

    /// Follows events that happen by themselves (a filled form's
    /// `complete`): a transition that is missing or refused leaves the
    /// instance where it is.
    fn follow(&mut self, mut auto: Option<String>) -> Result<(), StepError> {
        while let Some(event) = auto.take() {
            let spec = self.spec()?;
            let Some(transition) = spec.on.get(&event) else {
                return Ok(());
            };
            if self.guarded(&event, transition).is_err() {
                return Ok(());
            }
            auto = self.move_to(&event, &transition.to, &transition.actions)?;
        }
        Ok(())
    }

    /// One transition: `exit`, the transition's actions, then `enter`. A
    /// transition to the current state stays in it: no `exit` or `enter`,
    /// and timers and the SLA keep their due times (re-armed for the new
    /// `seq`). Returns an event that happened by itself on entering.
    fn move_to(
        &mut self,
        event: &str,
        to: &str,
        actions: &[Action],
    ) -> Result<Option<String>, StepError> {
        if self.transitions.len() >= MAX_CHAINED_TRANSITIONS {
            return Err(StepError::TooManyTransitions {
                limit: MAX_CHAINED_TRANSITIONS,
            });
        }
        if !self.def.states.contains_key(to) {
            return Err(definition_error(
                format!("states.{}.on.{event}.to", self.state.state),
                format!("unknown state `{to}`"),
            ));
        }
        let from = self.state.state.clone();
        let internal = from == to;
        if !internal {
            // A deadline passed while its check was late (a worker down, a
            // busy queue) still counts before the state is left.
            self.sla_checks_due()?;
            let exit = &self.spec()?.exit;
            self.actions(exit, "exit")?;
        }
        self.actions(actions, event)?;
        self.state.seq += 1;
        self.transitions.push(Transition {
            from: from.clone(),
            to: to.to_string(),
            event: event.to_string(),
        });
        if internal {
            self.emit(
                EventName::InstanceTransitioned,
                json!({ "from": from, "to": to, "event": event }),
            );
            self.arm_timers = true;
            self.arm_sla = true;
            return Ok(None);
        }
        self.state.state = to.to_string();
        self.emit(
            EventName::InstanceTransitioned,
            json!({ "from": from, "to": to, "event": event }),
        );
        self.enter(to)
    }

    /// Enters a state: assign, `enter` actions, timers, SLA, then the form
    /// (or completion for a final state).
    fn enter(&mut self, name: &str) -> Result<Option<String>, StepError> {
        self.enter_with(name, true)
    }

    /// [`Run::enter`]; without `assign` and the `enter` actions when
    /// `run_actions` is false (a migration that keeps the state's name:
    /// they ran when the instance entered it).
    fn enter_with(&mut self, name: &str, run_actions: bool) -> Result<Option<String>, StepError> {
        self.state.state = name.to_string();
        let spec = self.spec()?;
        self.state.entered_at_ms = self.now;
        self.state.form = None;
        self.state.fired_timers.clear();
        self.state.sla = None;
        if run_actions {
            if let Some(assign) = &spec.assign {
                self.assign(assign);
            }
            self.actions(&spec.enter, "enter")?;
        }
        if spec.is_final {
            self.state.status = Status::Completed;
            self.emit(EventName::InstanceCompleted, json!({}));
            return Ok(None);
        }
        self.arm_timers = true;
        if spec.sla.is_some() {
            self.state.sla = Some(SlaClock {
                started_at_ms: self.now,
                ..SlaClock::default()
            });
            self.arm_sla = true;
        }
        if spec.form.is_some() {
            return self.ask_next();
        }
        Ok(None)
    }

    /// Arms what the step asked for, for the state the instance is in.
    fn arm(&mut self) -> Result<(), StepError> {
        if self.state.status != Status::Active {
            return Ok(());
        }
        if self.arm_timers {
            self.arm_state_timers()?;
        }
        let running = self
            .state
            .sla
            .as_ref()
            .is_some_and(|c| c.paused_since_ms.is_none() && !c.breached);
        if self.arm_sla && running {
            self.arm_sla_checks()?;
        }
        Ok(())
    }

    /// Arms the current state's timers that have not fired, counted from
    /// entering it.
    fn arm_state_timers(&mut self) -> Result<(), StepError> {
        let spec = self.spec()?;
        for (index, timer) in spec.timers.iter().enumerate() {
            if self.state.fired_timers.contains(&index) {
                continue;
            }
            let after = parse_duration(&timer.after).map_err(|e| {
                definition_error(
                    format!("states.{}.timers[{index}].after", self.state.state),
                    e.to_string(),
                )
            })?;
            self.effects.push(Effect::ArmTimer {
                index,
                due_at_ms: self.state.entered_at_ms.saturating_add(after),
                seq: self.state.seq,
            });
        }
        Ok(())
    }

    fn assign(&mut self, assign: &AssignSpec) {
        let assignee = match (&assign.user, assign.role) {
            (Some(user), _) => Assignee::User { user: user.clone() },
            (None, Some(role)) => Assignee::Role {
                role,
                strategy: assign.strategy.unwrap_or_default(),
            },
            (None, None) => return,
        };
        let details = serde_json::to_value(&assignee).unwrap_or(Value::Null);
        self.effects.push(Effect::Assign { assignee });
        self.emit(EventName::InstanceAssigned, json!({ "assignee": details }));
    }

    fn actions(&mut self, actions: &[Action], event: &str) -> Result<(), StepError> {
        for action in actions {
            match action {
                Action::Send(text) => {
                    let text = self.render(text);
                    self.send(text);
                }
                Action::Set(set) => {
                    let value = self.render(&set.value);
                    self.state
                        .vars
                        .insert(set.var.clone(), Value::String(value));
                }
                Action::Assign(assign) => self.assign(assign),
                Action::Handoff(reason) => {
                    let reason = reason.as_deref().map(|r| self.render(r));
                    self.effects.push(Effect::Handoff { reason });
                }
                Action::Webhook(webhook) => {
                    let payload = json!({
                        "workflow": self.def.key,
                        "state": self.state.state,
                        "seq": self.state.seq,
                        "event": event,
                        "fields": self.state.fields,
                        "vars": self.state.vars,
                        "data": self.data,
                    });
                    self.effects.push(Effect::Webhook {
                        url: webhook.url.clone(),
                        secret_ref: webhook.secret_ref.clone(),
                        event: event.to_string(),
                        payload,
                    });
                }
                Action::AskLlm(ask) => {
                    let prompt = self.render(&ask.prompt);
                    self.effects.push(Effect::AskLlm {
                        prompt,
                        store_as: ask.store_as.clone(),
                    });
                }
                Action::Alert => self.effects.push(Effect::Alert {
                    state: self.state.state.clone(),
                }),
            }
        }
        Ok(())
    }

    /// Returns whether the job was fresh.
    fn timer(&mut self, index: usize, armed_seq: i64) -> Result<bool, StepError> {
        if self.state.status != Status::Active
            || armed_seq != self.state.seq
            || self.state.fired_timers.contains(&index)
        {
            return Ok(false);
        }
        let spec = self.spec()?;
        let Some(timer) = spec.timers.get(index) else {
            return Ok(false);
        };
        self.state.fired_timers.push(index);
        self.emit(EventName::TimerFired, json!({ "index": index }));
        if let Some(remind) = &timer.remind {
            let text = self.render(remind);
            self.send(text);
        }
        if let Some(goto) = &timer.goto {
            let auto = self.move_to("timer", goto, &[])?;
            self.follow(auto)?;
        } else if let Some(event) = &timer.event
            && let Some(transition) = spec.on.get(event)
            && self.guarded(event, transition).is_ok()
        {
            let auto = self.move_to(event, &transition.to, &transition.actions)?;
            self.follow(auto)?;
        }
        Ok(true)
    }
}
