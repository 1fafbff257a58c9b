//! The workflow definition format, as authors write it in YAML or JSON.
//!
//! These types only describe the shape: unknown keys and wrong types are
//! refused while parsing (with the path, line and column), and everything
//! that needs the whole document (states that exist, fields that are
//! declared, CEL that compiles) is checked by [`Definition::validate`].
//! `docs/workflows.md` documents every key.

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A workflow as written: its fields, its states and how it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Stable identifier, a key such as `lead_intake`.
    pub key: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub triggers: Triggers,
    /// What forms ask and events may carry, in document order.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub fields: OrderedMap<FieldSpec>,
    /// Messages that cancel the instance while a form waits for an answer;
    /// `cancel` and `stop` when not given (see [`Definition::cancel_words`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_words: Option<Vec<String>>,
    /// The state an instance starts in; the first state when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
    /// In document order: the first one is the initial state by default.
    pub states: OrderedMap<StateSpec>,
}

/// The cancel words used when a definition names none.
pub const DEFAULT_CANCEL_WORDS: &[&str] = &["cancel", "stop"];

impl Definition {
    /// The state an instance starts in: `initial`, else the first state.
    pub fn initial_state(&self) -> Option<&str> {
        self.initial
            .as_deref()
            .or_else(|| self.states.keys().next())
    }

    /// The words that cancel an instance while a form waits.
    pub fn cancel_words(&self) -> Vec<&str> {
        match &self.cancel_words {
            Some(words) => words.iter().map(String::as_str).collect(),
            None => DEFAULT_CANCEL_WORDS.to_vec(),
        }
    }

    /// The business calendars the definition's SLAs name, each once, in
    /// document order. The caller checks they exist before publishing.
    pub fn calendars_used(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (_, state) in self.states.iter() {
            if let Some(name) = state.sla.as_ref().and_then(|s| s.calendar.as_deref())
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
        names
    }
}

/// How instances start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Start from a conversation when a message matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationTrigger>,
    /// Allow `POST /api/v1/workflow-instances`.
    #[serde(default)]
    pub api: bool,
}

/// Start when a message contains one of the keywords (whole words, any
/// case or accents) and the condition, if any, holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationTrigger {
    #[serde(default)]
    pub keywords: Vec<String>,
    /// CEL over the conversation's names (`vars`, `contact`, `message`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// The kind of value a field holds, which decides how an answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// One line of text; inner whitespace is collapsed.
    String,
    /// Free text, kept as written (trimmed).
    Text,
    Number,
    Integer,
    /// yes/no, y/n, true/false, 1/0 (and sim/não, sí, oui/non).
    Boolean,
    Email,
    /// E.164: stored as `+` and digits.
    Phone,
    /// `YYYY-MM-DD`.
    Date,
    /// One of `options`, by text or by its 1-based number.
    Choice,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Date => "date",
            FieldType::Choice => "choice",
        }
    }
}

/// One field: its type, its prompts and its constraints (a JSON Schema
/// subset: lengths, pattern, enum, range).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// The question (a template); required when a form asks the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<String>,
    /// Sent after an invalid answer; the question is asked again when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// Invalid answers before the form gives up (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// In characters, for string and text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// A regex that must match somewhere in the value (JSON Schema
    /// semantics: anchor it with `^…$` to match the whole value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For number and integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// The choices of a choice field (`enum` is accepted too).
    #[serde(default, alias = "enum", skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// An optional field accepts `skip` or `-` as an answer (stored as null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Invalid answers a field accepts before the form gives up, by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

impl FieldSpec {
    /// A field of `kind` with no prompt and no constraints.
    pub fn of(kind: FieldType) -> FieldSpec {
        FieldSpec {
            kind,
            ask: None,
            retry: None,
            max_attempts: None,
            min_length: None,
            max_length: None,
            pattern: None,
            minimum: None,
            maximum: None,
            options: None,
            required: None,
            description: None,
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(true)
    }
}

/// One state of the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Entering a final state completes the instance.
    #[serde(default, rename = "final", skip_serializing_if = "is_false")]
    pub is_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Fields to ask on entry; when all are filled the `complete` event fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<FormSpec>,
    /// Where a form goes after too many invalid answers: a state, or
    /// `handoff` (hand the conversation to a human and cancel). Default
    /// `handoff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_give_up: Option<String>,
    /// Measured from entering the state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timers: Vec<TimerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<SlaSpec>,
    /// Who works on the instance while it is in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign: Option<AssignSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enter: Vec<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit: Vec<Action>,
    /// Event name → transition.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub on: OrderedMap<TransitionSpec>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The fields a state asks, in order, and the confirmation prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormSpec {
    pub fields: Vec<String>,
    /// A yes/no question (template) asked once every field is filled; "no"
    /// asks the fields again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// Something that happens a while after entering a state, unless the
/// instance has moved on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSpec {
    /// ISO 8601 duration from entering the state, e.g. `PT4H`.
    pub after: String,
    /// A message to send (template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind: Option<String>,
    /// A state to move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goto: Option<String>,
    /// An event to fire, handled by the state's `on`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// A deadline for leaving a state, in business time when a calendar is named.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaSpec {
    /// ISO 8601 duration, e.g. `PT4H`.
    pub within: String,
    /// A business calendar's name; wall-clock time (24/7) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// Warn this long before the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_before: Option<String>,
    /// CEL: while true the clock stops (e.g. waiting for the customer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_when: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_breach: Vec<Action>,
}

/// Who to assign: one user, or someone with a role chosen by a strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignSpec {
    /// A user id (UUID) or email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// How to pick among the role's members (default round robin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Admin,
    Owner,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    LeastBusy,
}

/// What an event does in a state: a target state, written alone
/// (`accept: won`) or with conditions (`reject: { to: lost, require: [reason] }`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TransitionSpec {
    pub to: String,
    /// Names that must have a value (in the event's data or the instance's
    /// fields). A declared field is validated as such; any other name is
    /// taken as free text and stored among the fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<String>,
    /// CEL guard; the event is refused when false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Actions run between the old state's `exit` and the new one's `enter`.
    #[serde(rename = "do", default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

/// The long form of a transition.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionFields {
    to: String,
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    when: Option<String>,
    #[serde(rename = "do", default)]
    actions: Vec<Action>,
}

impl<'de> Deserialize<'de> for TransitionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TransitionSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a state name, or a map with `to` and optionally `require`, `when`, `do`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TransitionSpec, E> {
                Ok(TransitionSpec {
                    to: v.to_string(),
                    ..TransitionSpec::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TransitionSpec, A::Error> {
                let t = TransitionFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TransitionSpec {
                    to: t.to,
                    require: t.require,
                    when: t.when,
                    actions: t.actions,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Something a state or transition does. Written as a map with one key
/// (`{ send: "Hi" }`), or `alert` / `handoff` alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a message (template) to the conversation.
    Send(String),
    /// Store a variable of the instance.
    Set(SetAction),
    Assign(AssignSpec),
    /// Hand the conversation to a human, with an optional reason.
    Handoff(Option<String>),
    /// POST the event to a URL (signed with the named secret).
    Webhook(WebhookAction),
    /// Ask the LLM; its answer is stored in a variable.
    AskLlm(AskLlmAction),
    /// Alert the assignees and admins that the SLA was breached.
    Alert,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAction {
    /// The variable, readable as `vars.<name>`.
    pub var: String,
    /// A template.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAction {
    /// An http or https URL.
    pub url: String,
    /// The name of the tenant secret that signs the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskLlmAction {
    /// A template.
    pub prompt: String,
    /// The variable the answer is stored in.
    pub store_as: String,
}

/// The action keys, for error messages.
const ACTION_KEYS: &str =
    "send, set, assign, handoff, webhook, ask_llm (or `alert` / `handoff` alone)";

impl Action {
    /// The action's key as written, e.g. `send`.
    pub fn key(&self) -> &'static str {
        match self {
            Action::Send(_) => "send",
            Action::Set(_) => "set",
            Action::Assign(_) => "assign",
            Action::Handoff(_) => "handoff",
            Action::Webhook(_) => "webhook",
            Action::AskLlm(_) => "ask_llm",
            Action::Alert => "alert",
        }
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = match self {
            Action::Alert => return s.serialize_str("alert"),
            _ => s.serialize_map(Some(1))?,
        };
        match self {
            Action::Send(text) => map.serialize_entry("send", text)?,
            Action::Set(set) => map.serialize_entry("set", set)?,
            Action::Assign(assign) => map.serialize_entry("assign", assign)?,
            Action::Handoff(None) => map.serialize_entry("handoff", &true)?,
            Action::Handoff(Some(reason)) => map.serialize_entry("handoff", reason)?,
            Action::Webhook(webhook) => map.serialize_entry("webhook", webhook)?,
            Action::AskLlm(ask) => map.serialize_entry("ask_llm", ask)?,
            Action::Alert => {}
        }
        map.end()
    }
}

/// `handoff: true` or `handoff: "reason"`.
struct HandoffArg(Option<String>);

impl<'de> Deserialize<'de> for HandoffArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HandoffArg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or a reason")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HandoffArg, E> {
                if v {
                    Ok(HandoffArg(None))
                } else {
                    Err(E::custom(
                        "`handoff: false` does nothing: remove the action",
                    ))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HandoffArg, E> {
                Ok(HandoffArg(Some(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Action;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an action: a map with one of {ACTION_KEYS}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Action, E> {
                match v {
                    "alert" => Ok(Action::Alert),
                    "handoff" => Ok(Action::Handoff(None)),
                    _ => Err(E::custom(format!(
                        "unknown action `{}`: use a map with one of {ACTION_KEYS}",
                        crate::text::truncate_chars(v, 40)
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Action, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!(
                        "an empty action: use one of {ACTION_KEYS}"
                    )));
                };
                let action = match key.as_str() {
                    "send" => Action::Send(map.next_value()?),
                    "set" => Action::Set(map.next_value()?),
                    "assign" => Action::Assign(map.next_value()?),
                    "handoff" => Action::Handoff(map.next_value::<HandoffArg>()?.0),
                    "webhook" => Action::Webhook(map.next_value()?),
                    "ask_llm" => Action::AskLlm(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                            "unknown action `{}`: use one of {ACTION_KEYS}",
                            crate::text::truncate_chars(other, 40)
                        )));
                    }
                };
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "an action has exactly one key (here `{key}`): write each action as its own list item"
                    )));
                }
                Ok(action)
            }
        }
        d.deserialize_any(V)
    }
}

/// A map that keeps its entries in document order (the first state is the
/// initial one; problems are reported in the order written) and refuses a
/// key given twice. Lookups are linear: definitions hold at most a hundred
/// states or fields.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<T>(Vec<(String, T)>);

impl<T> Default for OrderedMap<T> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<T> OrderedMap<T> {
    pub fn get(&self, key: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds an entry, replacing the value of an existing key in place.
    pub fn insert(&mut self, key: impl Into<String>, value: T) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }
}

impl<T> FromIterator<(String, T)> for OrderedMap<T> {
    fn from_iter<I: IntoIterator<Item = (String, T)>>(iter: I) -> Self {
        let mut map = OrderedMap::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<T: Serialize> Serialize for OrderedMap<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OrderedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            /// `on:` with nothing after it is an empty map, not an error.
            fn visit_unit<E: de::Error>(self) -> Result<OrderedMap<T>, E> {
                Ok(OrderedMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap<T>, A::Error> {
                let mut entries: Vec<(String, T)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!(
                            "`{}` is given twice",
                            crate::text::truncate_chars(&key, 80)
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}
