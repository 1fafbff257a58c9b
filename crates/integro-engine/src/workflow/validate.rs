//! The checks a definition must pass before it is published.
//!
//! Parsing already refused unknown keys and wrong types; what is left needs
//! the whole document: that every state named exists and can be reached,
//! that no state traps an instance, that forms ask declared fields, that
//! CEL compiles and reads names that exist, and the size limits. Every
//! problem is collected (not just the first), each with its path.

use super::definition::{
    Action, AssignSpec, Definition, FieldSpec, FieldType, StateSpec, TimerSpec,
};
use super::duration::parse_duration;
use super::fields::PATTERN_SIZE_LIMIT;
use super::names::{Names, edit_distance};
use super::{
    MAX_ACTIONS, MAX_FIELDS, MAX_STATES, MAX_STRING_CHARS, MAX_TIMERS, Problem, key_problem,
};
use crate::condition::Condition;
use crate::text::fold;
use serde_json::Value;

/// `on_give_up: handoff` hands the conversation to a human; no state may
/// take the name.
pub const HANDOFF: &str = "handoff";
/// The event a form fires when every field is filled (and confirmed).
pub const COMPLETE: &str = "complete";
/// Most keywords of a conversation trigger, cancel words, options or
/// required names in one list.
pub const MAX_LIST_ITEMS: usize = 100;
/// Most invalid answers a field may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

impl Definition {
    /// Checks everything parsing could not; every problem found, in
    /// document order, each with its path (no line or column: see
    /// [`Definition::load_yaml`] for those).
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut v = Validator {
            def: self,
            names: Names::of(self),
            problems: Vec::new(),
        };
        v.run();
        if v.problems.is_empty() {
            Ok(())
        } else {
            Err(v.problems)
        }
    }
}

struct Validator<'d> {
    def: &'d Definition,
    names: Names<'d>,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn run(&mut self) {
        let def = self.def;
        if let Some(p) = key_problem(&def.key) {
            self.problem("key", p);
        }
        self.string_lengths();
        self.triggers();
        if let Some(words) = &def.cancel_words {
            self.list("cancel_words", words);
        }
        if def.fields.len() > MAX_FIELDS {
            self.problem("fields", format!("at most {MAX_FIELDS} fields"));
        }
        for (name, field) in def.fields.iter() {
            self.field(name, field);
        }
        if def.states.is_empty() {
            self.problem("states", "a workflow needs at least one state");
        } else if def.states.len() > MAX_STATES {
            self.problem("states", format!("at most {MAX_STATES} states"));
        }
        if let Some(initial) = &def.initial
            && !def.states.contains_key(initial)
        {
            let message = self.unknown_state(initial);
            self.problem("initial", message);
        }
        for (name, state) in def.states.iter() {
            self.state(name, state);
        }
        self.reachability();
    }

    /// Every string of the document, wherever it is, within the limit.
    fn string_lengths(&mut self) {
        let Ok(tree) = serde_json::to_value(self.def) else {
            return;
        };
        let mut stack = vec![(String::new(), &tree)];
        while let Some((path, value)) = stack.pop() {
            match value {
                Value::String(s) => {
                    let chars = s.chars().count();
                    if chars > MAX_STRING_CHARS {
                        self.problem(
                            path,
                            format!("is too long ({chars} characters, at most {MAX_STRING_CHARS})"),
                        );
                    }
                }
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        stack.push((format!("{path}[{i}]"), item));
                    }
                }
                Value::Object(map) => {
                    for (k, item) in map {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        stack.push((p, item));
                    }
                }
                _ => {}
            }
        }
    }

    /// Items of a word list: non-empty and not too many.
    fn list(&mut self, path: &str, items: &[String]) {
        if items.len() > MAX_LIST_ITEMS {
            self.problem(path, format!("at most {MAX_LIST_ITEMS} items"));
        }
        for (i, item) in items.iter().enumerate() {
            if item.trim().is_empty() {
                self.problem(format!("{path}[{i}]"), "must not be empty");
            }
        }
    }

    fn triggers(&mut self) {
        let triggers = &self.def.triggers;
        if !triggers.api && triggers.conversation.is_none() {
            self.problem(
                "triggers",
                "nothing starts this workflow: set `api: true`, a `conversation` trigger, or both",
            );
        }
        let Some(conversation) = &triggers.conversation else {
            return;
        };
        self.list("triggers.conversation.keywords", &conversation.keywords);
        if conversation.keywords.is_empty() && conversation.condition.is_none() {
            self.problem(
                "triggers.conversation",
                "give `keywords`, a `condition`, or both",
            );
        }
        if let Some(source) = &conversation.condition {
            // Evaluated before any instance exists: a conversation's names.
            let checked = Condition::compile(source)
                .map_err(|e| e.to_string())
                .and_then(|c| c.check_names().map_err(|e| e.to_string()));
            if let Err(e) = checked {
                self.problem("triggers.conversation.condition", e);
            }
        }
    }

    fn template(&mut self, path: String, text: &str) {
        if let Err(e) = self.names.check_template(text) {
            self.problem(path, e);
        }
    }

    fn condition(&mut self, path: String, source: &str) {
        if let Err(e) = self.names.check_condition(source) {
            self.problem(path, e);
        }
    }

    fn duration(&mut self, path: String, text: &str) -> Option<i64> {
        match parse_duration(text) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.problem(path, e.to_string());
                None
            }
        }
    }

    fn field(&mut self, name: &str, field: &FieldSpec) {
        let at = |key: &str| format!("fields.{name}.{key}");
        if let Some(p) = key_problem(name) {
            self.problem(format!("fields.{name}"), p);
        }
        if let Some(ask) = &field.ask {
            self.template(at("ask"), ask);
        }
        if let Some(retry) = &field.retry {
            self.template(at("retry"), retry);
        }
        if let Some(n) = field.max_attempts
            && !(1..=MAX_ATTEMPTS_LIMIT).contains(&n)
        {
            self.problem(
                at("max_attempts"),
                format!("must be from 1 to {MAX_ATTEMPTS_LIMIT}"),
            );
        }
        let kind = field.kind.as_str();
        let textual = matches!(field.kind, FieldType::String | FieldType::Text);
        let numeric = matches!(field.kind, FieldType::Number | FieldType::Integer);
        for (key, given) in [
            ("min_length", field.min_length.is_some()),
            ("max_length", field.max_length.is_some()),
            ("pattern", field.pattern.is_some()),
        ] {
            if given && !textual {
                self.problem(
                    at(key),
                    format!("applies to string and text fields, not {kind}"),
                );
            }
        }
        for (key, given) in [("minimum", field.minimum), ("maximum", field.maximum)] {
            match given {
                Some(_) if !numeric => self.problem(
                    at(key),
                    format!("applies to number and integer fields, not {kind}"),
                ),
                Some(x) if !x.is_finite() => self.problem(at(key), "must be a finite number"),
                _ => {}
            }
        }
        if let (Some(min), Some(max)) = (field.min_length, field.max_length)
            && min > max
        {
            self.problem(at("min_length"), "is larger than max_length");
        }
        if field
            .max_length
            .is_some_and(|m| m as usize > MAX_STRING_CHARS)
        {
            self.problem(at("max_length"), format!("at most {MAX_STRING_CHARS}"));
        }
        if let (Some(min), Some(max)) = (field.minimum, field.maximum)
            && min > max
        {
            self.problem(at("minimum"), "is larger than maximum");
        }
        if let Some(pattern) = &field.pattern
            && let Err(e) = regex::RegexBuilder::new(pattern)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
        {
            let e = crate::text::truncate_chars(&e.to_string(), 300);
            self.problem(at("pattern"), format!("invalid regular expression: {e}"));
        }
        match (&field.options, field.kind) {
            (None, FieldType::Choice) => {
                self.problem(at("options"), "a choice field needs its options")
            }
            (Some(_), kind) if kind != FieldType::Choice => self.problem(
                at("options"),
                format!("applies to choice fields, not {}", kind.as_str()),
            ),
            (Some(options), _) => {
                if options.is_empty() {
                    self.problem(at("options"), "give at least one option");
                }
                self.list(&at("options"), options);
                let folded: Vec<String> = options.iter().map(|o| fold(o.trim())).collect();
                for (i, f) in folded.iter().enumerate() {
                    if folded[..i].contains(f) {
                        self.problem(
                            format!("{}[{i}]", at("options")),
                            "repeats an earlier option",
                        );
                    }
                }
            }
            (None, _) => {}
        }
    }

    fn unknown_state(&self, name: &str) -> String {
        let states: Vec<&str> = self.def.states.keys().collect();
        let suggestion = states
            .iter()
            .map(|s| (edit_distance(name, s), s))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, s)| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        format!(
            "unknown state `{}`{suggestion}; states: {}",
            crate::text::truncate_chars(name, 64),
            states.join(", ")
        )
    }

    fn target(&mut self, path: String, name: &str) {
        if !self.def.states.contains_key(name) {
            let message = self.unknown_state(name);
            self.problem(path, message);
        }
    }

    fn state(&mut self, name: &str, state: &StateSpec) {
        let at = |key: &str| format!("states.{name}.{key}");
        if let Some(p) = key_problem(name) {
            self.problem(format!("states.{name}"), p);
        } else if name == HANDOFF {
            self.problem(
                format!("states.{name}"),
                "`handoff` is reserved (on_give_up: handoff hands the conversation to a human): rename the state",
            );
        }
        if state.is_final {
            for (key, unused) in [
                ("on", !state.on.is_empty()),
                ("form", state.form.is_some()),
                ("timers", !state.timers.is_empty()),
                ("sla", state.sla.is_some()),
                ("on_give_up", state.on_give_up.is_some()),
                ("exit", !state.exit.is_empty()),
            ] {
                if unused {
                    self.problem(
                        at(key),
                        format!(
                            "a final state ends the instance, so its `{key}` would never be used"
                        ),
                    );
                }
            }
        }
        if let Some(form) = &state.form {
            if form.fields.is_empty() {
                self.problem(at("form.fields"), "a form asks at least one field");
            }
            for (i, field) in form.fields.iter().enumerate() {
                let path = format!("{}[{i}]", at("form.fields"));
                match self.def.fields.get(field) {
                    None => {
                        let known: Vec<&str> = self.def.fields.keys().collect();
                        let hint = known
                            .iter()
                            .find(|k| edit_distance(field, k) <= 2)
                            .map(|k| format!(" (did you mean `{k}`?)"))
                            .unwrap_or_default();
                        self.problem(
                            path,
                            format!(
                                "unknown field `{}`{hint}: declare it under `fields` (declared: {})",
                                crate::text::truncate_chars(field, 64),
                                if known.is_empty() { "none".into() } else { known.join(", ") }
                            ),
                        );
                    }
                    Some(spec) if spec.ask.is_none() => self.problem(
                        path,
                        format!("field `{field}` has no `ask` prompt, so a form cannot ask it"),
                    ),
                    Some(_) => {}
                }
                if form.fields[..i].contains(field) {
                    self.problem(format!("{}[{i}]", at("form.fields")), "is asked twice");
                }
            }
            if let Some(confirm) = &form.confirm {
                self.template(at("form.confirm"), confirm);
            }
            if !state.is_final && !state.on.contains_key(COMPLETE) {
                self.problem(
                    at("form"),
                    "a form fires `complete` once filled: add `on: { complete: <state> }`",
                );
            }
        }
        match (&state.on_give_up, &state.form) {
            (Some(_), None) if !state.is_final => self.problem(
                at("on_give_up"),
                "only a form gives up (after too many invalid answers): add a form or remove it",
            ),
            (Some(target), _) if target != HANDOFF => self.target(at("on_give_up"), target),
            _ => {}
        }
        if state.timers.len() > MAX_TIMERS {
            self.problem(
                at("timers"),
                format!("at most {MAX_TIMERS} timers per state"),
            );
        }
        for (i, timer) in state.timers.iter().enumerate() {
            self.timer(&format!("{}[{i}]", at("timers")), timer, state);
        }
        if let Some(sla) = &state.sla {
            let within = self.duration(at("sla.within"), &sla.within);
            if let Some(warn) = &sla.warn_before
                && let Some(warn_ms) = self.duration(at("sla.warn_before"), warn)
                && within.is_some_and(|w| warn_ms >= w)
            {
                self.problem(at("sla.warn_before"), "must be shorter than `within`");
            }
            if let Some(calendar) = &sla.calendar
                && let Some(p) = key_problem(calendar)
            {
                self.problem(at("sla.calendar"), p);
            }
            if let Some(pause) = &sla.pause_when {
                self.condition(at("sla.pause_when"), pause);
            }
            self.actions(&at("sla.on_breach"), &sla.on_breach, true);
        }
        if let Some(assign) = &state.assign {
            self.assign(&at("assign"), assign);
        }
        self.actions(&at("enter"), &state.enter, false);
        self.actions(&at("exit"), &state.exit, false);
        for (event, transition) in state.on.iter() {
            let path = format!("{}.{event}", at("on"));
            if let Some(p) = key_problem(event) {
                self.problem(path.clone(), p);
            }
            self.target(format!("{path}.to"), &transition.to);
            if transition.require.len() > MAX_LIST_ITEMS {
                self.problem(
                    format!("{path}.require"),
                    format!("at most {MAX_LIST_ITEMS} names"),
                );
            }
            for (i, required) in transition.require.iter().enumerate() {
                let item = format!("{path}.require[{i}]");
                if let Some(p) = key_problem(required) {
                    self.problem(
                        item,
                        format!("{p}; `require` names fields or keys of the event's data"),
                    );
                } else if transition.require[..i].contains(required) {
                    self.problem(item, "is required twice");
                }
            }
            if let Some(when) = &transition.when {
                self.condition(format!("{path}.when"), when);
            }
            self.actions(&format!("{path}.do"), &transition.actions, false);
        }
    }

    fn timer(&mut self, path: &str, timer: &TimerSpec, state: &StateSpec) {
        self.duration(format!("{path}.after"), &timer.after);
        if let Some(remind) = &timer.remind {
            self.template(format!("{path}.remind"), remind);
        }
        if let Some(goto) = &timer.goto {
            self.target(format!("{path}.goto"), goto);
        }
        if let Some(event) = &timer.event {
            if let Some(p) = key_problem(event) {
                self.problem(format!("{path}.event"), p);
            } else if !state.on.contains_key(event) {
                self.problem(
                    format!("{path}.event"),
                    format!("the state has no transition for `{event}` under `on`, so the timer would do nothing"),
                );
            }
        }
        match (&timer.goto, &timer.event, &timer.remind) {
            (Some(_), Some(_), _) => self.problem(
                path.to_string(),
                "a timer either goes to a state (`goto`) or fires an `event`, not both",
            ),
            (None, None, None) => self.problem(
                path.to_string(),
                "the timer has no exit: give it `goto`, `event` or `remind`",
            ),
            _ => {}
        }
    }

    fn actions(&mut self, path: &str, actions: &[Action], breach: bool) {
        if actions.len() > MAX_ACTIONS {
            self.problem(path, format!("at most {MAX_ACTIONS} actions"));
        }
        for (i, action) in actions.iter().enumerate() {
            let at = format!("{path}[{i}]");
            match action {
                Action::Send(text) => {
                    if text.trim().is_empty() {
                        self.problem(format!("{at}.send"), "the message is empty");
                    }
                    self.template(format!("{at}.send"), text);
                }
                Action::Set(set) => {
                    if let Some(p) = key_problem(&set.var) {
                        self.problem(format!("{at}.set.var"), p);
                    }
                    self.template(format!("{at}.set.value"), &set.value);
                }
                Action::Assign(assign) => self.assign(&format!("{at}.assign"), assign),
                Action::Handoff(Some(reason)) => self.template(format!("{at}.handoff"), reason),
                Action::Handoff(None) => {}
                Action::Webhook(webhook) => {
                    if let Err(e) = check_url(&webhook.url) {
                        self.problem(format!("{at}.webhook.url"), e);
                    }
                    if let Some(secret) = &webhook.secret_ref
                        && let Some(p) = key_problem(secret)
                    {
                        self.problem(format!("{at}.webhook.secret_ref"), p);
                    }
                }
                Action::AskLlm(ask) => {
                    if ask.prompt.trim().is_empty() {
                        self.problem(format!("{at}.ask_llm.prompt"), "the prompt is empty");
                    }
                    self.template(format!("{at}.ask_llm.prompt"), &ask.prompt);
                    if let Some(p) = key_problem(&ask.store_as) {
                        self.problem(format!("{at}.ask_llm.store_as"), p);
                    }
                }
                Action::Alert if !breach => self.problem(
                    at,
                    "`alert` reports an SLA breach: use it under `sla.on_breach`",
                ),
                Action::Alert => {}
            }
        }
    }

    fn assign(&mut self, path: &str, assign: &AssignSpec) {
        match (&assign.user, &assign.role) {
            (Some(_), Some(_)) => {
                self.problem(path, "assign either a `user` or a `role`, not both")
            }
            (None, None) => self.problem(path, "give a `user` or a `role` to assign"),
            (Some(user), None) => {
                let is_uuid = uuid::Uuid::parse_str(user).is_ok();
                let is_email =
                    super::fields::parse_answer(&FieldSpec::of(FieldType::Email), user).is_ok();
                if !is_uuid && !is_email {
                    self.problem(format!("{path}.user"), "must be a user id (UUID) or email");
                }
                if assign.strategy.is_some() {
                    self.problem(
                        format!("{path}.strategy"),
                        "a strategy picks among a role's members: it needs `role`",
                    );
                }
            }
            (None, Some(_)) => {}
        }
    }

    /// States no transition, timer or give-up leads to from the initial
    /// state, and states an instance can enter but never leave.
    fn reachability(&mut self) {
        let def = self.def;
        let Some(initial) = def.initial_state() else {
            return;
        };
        if !def.states.contains_key(initial) {
            return;
        }
        let mut reached: Vec<&str> = vec![initial];
        let mut queue: Vec<&str> = vec![initial];
        while let Some(name) = queue.pop() {
            let Some(state) = def.states.get(name) else {
                continue;
            };
            for next in exits(state) {
                if def.states.contains_key(next) && !reached.contains(&next) {
                    reached.push(next);
                    queue.push(next);
                }
            }
        }
        for (name, state) in def.states.iter() {
            if !reached.contains(&name) {
                self.problem(
                    format!("states.{name}"),
                    format!(
                        "unreachable: no transition, timer or on_give_up leads here from the initial state `{initial}`"
                    ),
                );
            }
            let timed_exit = state
                .timers
                .iter()
                .any(|t| t.goto.is_some() || t.event.is_some());
            if !state.is_final && state.on.is_empty() && !timed_exit {
                self.problem(
                    format!("states.{name}"),
                    "not final but has no way out: add `final: true`, transitions under `on`, or a timer with `goto`",
                );
            }
        }
    }
}

/// The states a state can lead to.
fn exits(state: &StateSpec) -> impl Iterator<Item = &str> {
    state
        .on
        .iter()
        .map(|(_, t)| t.to.as_str())
        .chain(state.timers.iter().filter_map(|t| t.goto.as_deref()))
        .chain(state.on_give_up.as_deref().filter(|g| *g != HANDOFF))
}

/// An absolute http(s) URL with a host and no credentials. The outbound URL
/// policy (no private addresses, …) is applied by the caller when sending.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err("must be an http:// or https:// URL".into());
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "must not contain credentials (user@): use `secret_ref` to sign requests".into(),
        );
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err("has an invalid IPv6 host".into());
            };
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err("has an invalid host".into()),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err("has an invalid port".into());
    }
    if host.is_empty() {
        return Err("has no host".into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
pub(crate) mod tests;
