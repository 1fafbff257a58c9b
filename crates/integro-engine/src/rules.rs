//! Keyword / pattern rules: which canned reply or action answers a message.
//!
//! A bot may have thousands of rules and answer thousands of messages a
//! second, so a [`RuleSet`] is compiled once and matching never loops over
//! the rules: all literal patterns (contains, any_keyword, starts_with) sit
//! in one Aho-Corasick automaton, exact texts in one hash map, and regexes in
//! a literal-prefiltered regex index. Each message is folded once, the few candidate rules are
//! collected, ordered by precedence, and their conditions evaluated in order.

use crate::condition::{Condition, EvalContext};
use crate::regex_index::{IndexError, RegexIndex};
use crate::template::{self, Vars};
use crate::text;
use crate::variables::{self, UnknownName};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use regex::RegexBuilder;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// Longest `pattern` for the literal kinds, in characters.
pub const MAX_PATTERN_CHARS: usize = 500;
/// Longest `regex` pattern, in characters.
pub const MAX_REGEX_CHARS: usize = 1000;
/// Compiled size limit of one regex, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Compiled size limit of all of a bot's regexes together, in bytes.
pub const REGEX_SET_SIZE_LIMIT: usize = 64 << 20;
/// Most keywords in one `any_keyword` rule.
pub const MAX_KEYWORDS: usize = 100;
/// Longest keyword, in characters.
pub const MAX_KEYWORD_CHARS: usize = 200;
/// Longest reply template, in characters.
pub const MAX_REPLY_CHARS: usize = 10_000;
/// Longest media URL, in characters.
pub const MAX_MEDIA_URL_CHARS: usize = 2048;
/// Longest `set_variable` value template, in characters.
pub const MAX_VARIABLE_VALUE_CHARS: usize = 1000;
/// Longest `ask_llm` instructions, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 4000;

/// How a rule's pattern is compared with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// The pattern occurs in the message as whole words.
    #[default]
    Contains,
    /// The whole message is the pattern (ignoring case, accents, extra
    /// spaces and trailing punctuation).
    Exact,
    /// The message begins with the pattern, as whole words.
    StartsWith,
    /// Any one of the keywords occurs in the message as whole words.
    AnyKeyword,
    /// A regular expression (Rust `regex` syntax) matches the message.
    Regex,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Contains => "contains",
            MatchKind::Exact => "exact",
            MatchKind::StartsWith => "starts_with",
            MatchKind::AnyKeyword => "any_keyword",
            MatchKind::Regex => "regex",
        }
    }
}

/// What a rule does besides (or instead of) replying.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Hand the conversation to a human.
    Handoff,
    /// Store a conversation variable; `value` is a template.
    SetVariable { name: String, value: String },
    /// Ask the LLM, with these extra instructions.
    AskLlm { instructions: String },
}

fn default_true() -> bool {
    true
}

/// A rule as authored by a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub id: uuid::Uuid,
    /// Higher runs first; ties keep the order given to [`RuleSet::compile`].
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub match_kind: MatchKind,
    /// For contains / exact / starts_with / regex.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For any_keyword.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Optional CEL condition (see [`crate::condition`]).
    #[serde(default)]
    pub condition: Option<String>,
    /// Reply template.
    #[serde(default)]
    pub reply: Option<String>,
    #[serde(default)]
    pub media_url: Option<String>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default = "default_true")]
    pub active: bool,
}

/// A rule that cannot be used, naming the field at fault (and the rule,
/// when it comes from [`RuleSet::compile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule at fault, when known.
    pub rule: Option<uuid::Uuid>,
    /// "pattern", "keywords", "condition", "reply", "media_url", "action",
    /// or for an unknown variable "action.value" or "action.instructions".
    pub field: &'static str,
    pub message: String,
}

impl RuleError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        RuleError {
            rule: None,
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(rule) = self.rule {
            write!(f, "rule {rule}: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for RuleError {}

/// What matching needs from a valid rule, computed once.
struct Prepared {
    condition: Option<Condition>,
    /// Normalised literal patterns for the automaton (contains, any_keyword,
    /// starts_with).
    literals: Vec<String>,
    /// Normalised exact form, for exact rules.
    exact: Option<String>,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Checks a rule for the API: the match has what it needs, regexes and
/// conditions compile, templates are well-formed, the rule does something
/// (a reply, a media URL or an action), and its condition and templates
/// only name variables a turn has (see [`crate::variables`]).
///
/// Compiling a [`RuleSet`] does not check names, so a rule saved before
/// that check existed still runs.
pub fn validate(spec: &RuleSpec) -> Result<(), RuleError> {
    let prepared = prepare(spec)?;
    let unknown = |field: &'static str| move |e: UnknownName| RuleError::new(field, e.to_string());
    if let Some(condition) = &prepared.condition {
        condition.check_names().map_err(unknown("condition"))?;
    }
    if let Some(reply) = &spec.reply {
        variables::check_template(reply).map_err(unknown("reply"))?;
    }
    match &spec.action {
        Some(Action::SetVariable { value, .. }) => {
            variables::check_template(value).map_err(unknown("action.value"))?
        }
        Some(Action::AskLlm { instructions }) => {
            variables::check_template(instructions).map_err(unknown("action.instructions"))?
        }
        Some(Action::Handoff) | None => {}
    }
    Ok(())
}

fn required_pattern(spec: &RuleSpec) -> Result<&str, RuleError> {
    match spec.pattern.as_deref() {
        Some(p) if !p.trim().is_empty() => Ok(p),
        _ => Err(RuleError::new(
            "pattern",
            format!("is required for match kind {}", spec.match_kind.as_str()),
        )),
    }
}

fn literal_pattern(spec: &RuleSpec) -> Result<String, RuleError> {
    let pattern = required_pattern(spec)?;
    let n = chars(pattern);
    if n > MAX_PATTERN_CHARS {
        return Err(RuleError::new(
            "pattern",
            format!("is too long ({n} characters, at most {MAX_PATTERN_CHARS})"),
        ));
    }
    let normalized = text::normalize(pattern);
    if normalized.is_empty() {
        return Err(RuleError::new(
            "pattern",
            "is empty once accents, case and spaces are ignored",
        ));
    }
    Ok(normalized)
}

fn compile_regex(pattern: &str) -> Result<(), String> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "regular expression is too large once compiled (limit {limit} bytes); simplify it"
            ),
            e => format!("invalid regular expression: {e}"),
        })
}

fn prepare(spec: &RuleSpec) -> Result<Prepared, RuleError> {
    let mut literals = Vec::new();
    let mut exact = None;
    match spec.match_kind {
        MatchKind::Contains => literals.push(literal_pattern(spec)?),
        MatchKind::StartsWith => {
            let normalized = literal_pattern(spec)?;
            let stripped = text::strip_leading_marks(&normalized);
            if stripped.is_empty() {
                return Err(RuleError::new("pattern", "has no text to compare"));
            }
            literals.push(stripped.to_string());
        }
        MatchKind::Exact => {
            let normalized = literal_pattern(spec)?;
            let form = text::exact_form(&normalized);
            if form.is_empty() {
                return Err(RuleError::new(
                    "pattern",
                    "has no text to compare once punctuation is ignored",
                ));
            }
            exact = Some(form.to_string());
        }
        MatchKind::AnyKeyword => {
            if spec.keywords.len() > MAX_KEYWORDS {
                return Err(RuleError::new(
                    "keywords",
                    format!(
                        "too many keywords ({}, at most {MAX_KEYWORDS})",
                        spec.keywords.len()
                    ),
                ));
            }
            for (i, keyword) in spec.keywords.iter().enumerate() {
                let n = chars(keyword);
                if n > MAX_KEYWORD_CHARS {
                    return Err(RuleError::new(
                        "keywords",
                        format!(
                            "keyword {} is too long ({n} characters, at most {MAX_KEYWORD_CHARS})",
                            i + 1
                        ),
                    ));
                }
                let normalized = text::normalize(keyword);
                if !normalized.is_empty() && !literals.contains(&normalized) {
                    literals.push(normalized);
                }
            }
            if literals.is_empty() {
                return Err(RuleError::new(
                    "keywords",
                    "at least one non-empty keyword is required for match kind any_keyword",
                ));
            }
        }
        MatchKind::Regex => {
            let pattern = required_pattern(spec)?;
            let n = chars(pattern);
            if n > MAX_REGEX_CHARS {
                return Err(RuleError::new(
                    "pattern",
                    format!("is too long ({n} characters, at most {MAX_REGEX_CHARS})"),
                ));
            }
            compile_regex(pattern).map_err(|m| RuleError::new("pattern", m))?;
        }
    }

    let condition = match spec.condition.as_deref() {
        Some(src) if !src.trim().is_empty() => {
            Some(Condition::compile(src).map_err(|e| RuleError::new("condition", e.to_string()))?)
        }
        _ => None,
    };

    let reply = spec.reply.as_deref().filter(|r| !r.trim().is_empty());
    if let Some(reply) = reply {
        let n = chars(reply);
        if n > MAX_REPLY_CHARS {
            return Err(RuleError::new(
                "reply",
                format!("is too long ({n} characters, at most {MAX_REPLY_CHARS})"),
            ));
        }
        template::check(reply).map_err(|e| RuleError::new("reply", e.to_string()))?;
    }

    let media_url = spec.media_url.as_deref().filter(|u| !u.trim().is_empty());
    if let Some(url) = media_url {
        validate_media_url(url)?;
    }

    if let Some(action) = &spec.action {
        validate_action(action)?;
    }

    if reply.is_none() && media_url.is_none() && spec.action.is_none() {
        return Err(RuleError::new(
            "reply",
            "a rule needs a reply, a media_url or an action",
        ));
    }

    Ok(Prepared {
        condition,
        literals,
        exact,
    })
}

fn validate_media_url(url: &str) -> Result<(), RuleError> {
    let n = chars(url);
    if n > MAX_MEDIA_URL_CHARS {
        return Err(RuleError::new(
            "media_url",
            format!("is too long ({n} characters, at most {MAX_MEDIA_URL_CHARS})"),
        ));
    }
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
        _ => {
            return Err(RuleError::new(
                "media_url",
                "must be an absolute http:// or https:// URL",
            ));
        }
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RuleError::new(
            "media_url",
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

/// Whether `name` is `[A-Za-z_][A-Za-z0-9_]{0,63}`.
fn is_valid_variable_name(name: &str) -> bool {
    name.len() <= 64 && template::is_valid_segment(name)
}

fn validate_action(action: &Action) -> Result<(), RuleError> {
    match action {
        Action::Handoff => Ok(()),
        Action::SetVariable { name, value } => {
            if !is_valid_variable_name(name) {
                return Err(RuleError::new(
                    "action",
                    format!(
                        "variable name {:?} is invalid: use 1 to 64 letters, digits and underscores, not starting with a digit",
                        text::truncate_chars(name, 70)
                    ),
                ));
            }
            let n = chars(value);
            if n > MAX_VARIABLE_VALUE_CHARS {
                return Err(RuleError::new(
                    "action",
                    format!(
                        "variable value is too long ({n} characters, at most {MAX_VARIABLE_VALUE_CHARS})"
                    ),
                ));
            }
            template::check(value)
                .map_err(|e| RuleError::new("action", format!("variable value: {e}")))
        }
        Action::AskLlm { instructions } => {
            let n = chars(instructions);
            if n > MAX_INSTRUCTIONS_CHARS {
                return Err(RuleError::new(
                    "action",
                    format!(
                        "instructions are too long ({n} characters, at most {MAX_INSTRUCTIONS_CHARS})"
                    ),
                ));
            }
            Ok(())
        }
    }
}

/// One compiled rule, in precedence order.
struct CompiledRule {
    spec: RuleSpec,
    condition: Option<Condition>,
    /// "rule <id> (priority 5, contains \"price\")", for traces.
    label: String,
}

/// A rule reached through the automaton.
#[derive(Clone, Copy)]
struct Target {
    /// Index into `RuleSet::rules`.
    rule: u32,
    /// starts_with: the match must begin where the message's content does.
    at_start: bool,
}

/// A bot's active rules, compiled for matching. `Send + Sync`; build it
/// once per rule change and share it in an `Arc`.
#[derive(Default)]
pub struct RuleSet {
    /// Sorted by precedence: priority descending, then input order.
    rules: Vec<CompiledRule>,
    /// All literal patterns, deduplicated; `None` when there are none.
    literals: Option<AhoCorasick>,
    /// For automaton pattern `i`, `targets[target_ranges[i].0..target_ranges[i].1]`.
    target_ranges: Vec<(u32, u32)>,
    targets: Vec<Target>,
    /// Exact form → rules, in precedence order.
    exact: HashMap<Box<str>, Vec<u32>>,
    /// All regexes; `None` when there are none.
    regexes: Option<RegexIndex>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .field("literal_patterns", &self.target_ranges.len())
            .field("exact_texts", &self.exact.len())
            .field("regexes", &self.regexes.as_ref().map_or(0, RegexIndex::len))
            .finish()
    }
}

/// The outcome of [`RuleSet::find`].
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMatch<'a> {
    /// The winning rule, if any.
    pub rule: Option<&'a RuleSpec>,
    /// Human-readable lines explaining the decision, for dry runs.
    pub trace: Vec<String>,
}

fn describe(spec: &RuleSpec) -> String {
    let what = match spec.match_kind {
        MatchKind::AnyKeyword => {
            let shown: Vec<String> = spec
                .keywords
                .iter()
                .filter(|k| !k.trim().is_empty())
                .take(5)
                .map(|k| format!("{:?}", text::truncate_chars(k, 40)))
                .collect();
            let more = spec.keywords.len() > shown.len();
            format!("{}{}", shown.join(", "), if more { ", …" } else { "" })
        }
        _ => format!(
            "{:?}",
            text::truncate_chars(spec.pattern.as_deref().unwrap_or(""), 60)
        ),
    };
    format!(
        "rule {} (priority {}, {} {what})",
        spec.id,
        spec.priority,
        spec.match_kind.as_str()
    )
}

impl RuleSet {
    /// Compiles the active rules; inactive ones are skipped. The first
    /// invalid rule is an error naming its id.
    pub fn compile(rules: Vec<RuleSpec>) -> Result<RuleSet, RuleError> {
        let mut prepared = Vec::with_capacity(rules.len());
        for spec in rules.into_iter().filter(|r| r.active) {
            let p = prepare(&spec).map_err(|mut e| {
                e.rule = Some(spec.id);
                e
            })?;
            prepared.push((spec, p));
        }
        // Stable: equal priorities keep the order given.
        prepared.sort_by_key(|(spec, _)| std::cmp::Reverse(spec.priority));
        if u32::try_from(prepared.len()).is_err() {
            return Err(RuleError::new("rules", "too many rules"));
        }

        let mut pattern_ids: HashMap<String, usize> = HashMap::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut pattern_targets: Vec<Vec<Target>> = Vec::new();
        let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut regex_patterns = Vec::new();
        let mut compiled = Vec::with_capacity(prepared.len());

        for (index, (spec, p)) in prepared.into_iter().enumerate() {
            let rule = index as u32;
            let at_start = spec.match_kind == MatchKind::StartsWith;
            for literal in p.literals {
                let id = *pattern_ids.entry(literal).or_insert_with_key(|literal| {
                    patterns.push(literal.clone());
                    pattern_targets.push(Vec::new());
                    patterns.len() - 1
                });
                pattern_targets[id].push(Target { rule, at_start });
            }
            if let Some(form) = p.exact {
                exact.entry(form.into_boxed_str()).or_default().push(rule);
            }
            if spec.match_kind == MatchKind::Regex
                && let Some(pattern) = &spec.pattern
            {
                regex_patterns.push((pattern.clone(), rule));
            }
            compiled.push(CompiledRule {
                label: describe(&spec),
                condition: p.condition,
                spec,
            });
        }

        let literals = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(aho_corasick::MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| {
                        RuleError::new(
                            "pattern",
                            format!("the patterns could not be compiled: {e}"),
                        )
                    })?,
            )
        };
        let mut target_ranges = Vec::with_capacity(pattern_targets.len());
        let mut targets = Vec::new();
        for list in pattern_targets {
            let start = targets.len() as u32;
            targets.extend(list);
            target_ranges.push((start, targets.len() as u32));
        }

        let regexes = if regex_patterns.is_empty() {
            None
        } else {
            Some(
                RegexIndex::build(regex_patterns, REGEX_SIZE_LIMIT, REGEX_SET_SIZE_LIMIT)
                    .map_err(|e| {
                        RuleError::new(
                            "pattern",
                            match e {
                                IndexError::TooBig => "the bot's regular expressions are too large together; simplify or remove some".to_string(),
                                IndexError::Other(e) => format!("the regular expressions could not be compiled: {e}"),
                            },
                        )
                    })?,
            )
        };

        Ok(RuleSet {
            rules: compiled,
            literals,
            target_ranges,
            targets,
            exact,
            regexes,
        })
    }

    /// Number of active rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no active rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that answers `text`, with a trace of the decision.
    ///
    /// `text` should already be sanitised ([`text::sanitize_input`]);
    /// regexes see it as is, the other kinds see its folded form. Candidates
    /// are tried by priority (then rule order); the first whose condition is
    /// absent or true wins. A condition that fails to evaluate counts as
    /// false and is reported in the trace.
    pub fn find(&self, text: &str, vars: &Vars) -> RuleMatch<'_> {
        let mut trace = Vec::new();
        let rule = self.find_impl(text, vars, Some(&mut trace));
        RuleMatch { rule, trace }
    }

    /// Like [`RuleSet::find`] without building the trace: the hot path.
    pub fn find_rule(&self, text: &str, vars: &Vars) -> Option<&RuleSpec> {
        self.find_impl(text, vars, None)
    }

    fn find_impl(
        &self,
        text: &str,
        vars: &Vars,
        mut trace: Option<&mut Vec<String>>,
    ) -> Option<&RuleSpec> {
        let mut normalized = String::new();
        text::normalize_into(text, &mut normalized);
        if let Some(trace) = trace.as_deref_mut() {
            trace.push(format!(
                "message compared as {:?}",
                text::truncate_chars(&normalized, 200)
            ));
        }

        let mut candidates: Vec<u32> = Vec::new();
        self.collect_candidates(text, &normalized, &mut candidates);
        candidates.sort_unstable();
        candidates.dedup();

        let mut context: Option<EvalContext<'_>> = None;
        for (n, &index) in candidates.iter().enumerate() {
            let rule = &self.rules[index as usize];
            let verdict = match &rule.condition {
                None => Ok(None),
                Some(condition) => {
                    let context = context.get_or_insert_with(|| EvalContext::new(vars));
                    condition.eval_in(context).map(Some)
                }
            };
            match verdict {
                Ok(None | Some(true)) => {
                    if let Some(trace) = trace {
                        trace.push(match verdict {
                            Ok(Some(true)) => {
                                format!("{} matched and its condition was true", rule.label)
                            }
                            _ => format!("{} matched", rule.label),
                        });
                        let rest = &candidates[n + 1..];
                        if !rest.is_empty() {
                            let shown: Vec<&str> = rest
                                .iter()
                                .take(3)
                                .map(|&i| self.rules[i as usize].label.as_str())
                                .collect();
                            trace.push(format!(
                                "{} more rule(s) also matched but rank lower: {}{}",
                                rest.len(),
                                shown.join("; "),
                                if rest.len() > shown.len() {
                                    "; …"
                                } else {
                                    ""
                                }
                            ));
                        }
                    }
                    return Some(&rule.spec);
                }
                Ok(Some(false)) => {
                    if let Some(trace) = trace.as_deref_mut() {
                        trace.push(format!(
                            "{} matched but its condition was false",
                            rule.label
                        ));
                    }
                }
                Err(e) => {
                    if let Some(trace) = trace.as_deref_mut() {
                        trace.push(format!(
                            "{} matched but its condition could not be evaluated, so it was skipped: {e}",
                            rule.label
                        ));
                    }
                }
            }
        }
        if let Some(trace) = trace {
            trace.push(format!(
                "no rule matched ({} active rules)",
                self.rules.len()
            ));
        }
        None
    }

    /// Pushes the index of every rule whose pattern matches (unordered,
    /// possibly repeated). Work is proportional to the matches found, not
    /// to the number of rules.
    fn collect_candidates(&self, raw: &str, normalized: &str, out: &mut Vec<u32>) {
        if let Some(ac) = &self.literals
            && let Ok(matches) = ac.try_find_overlapping_iter(normalized)
        {
            let start = text::content_start(normalized);
            // Patterns found as whole words, then expanded to their rules
            // once each: a word repeated in a long message, or shared by
            // many rules, costs one expansion, not one per occurrence.
            let mut anywhere: Vec<u32> = Vec::new();
            let mut at_start: Vec<u32> = Vec::new();
            for m in matches {
                if text::at_word_boundaries(normalized, m.start(), m.end()) {
                    let id = m.pattern().as_u32();
                    anywhere.push(id);
                    if m.start() == start {
                        at_start.push(id);
                    }
                }
            }
            anywhere.sort_unstable();
            anywhere.dedup();
            for (ids, wants_start) in [(&anywhere, false), (&at_start, true)] {
                for &id in ids {
                    let targets = self
                        .target_ranges
                        .get(id as usize)
                        .and_then(|&(from, to)| self.targets.get(from as usize..to as usize))
                        .unwrap_or_default();
                    out.extend(
                        targets
                            .iter()
                            .filter(|t| t.at_start == wants_start)
                            .map(|t| t.rule),
                    );
                }
            }
        }
        if !self.exact.is_empty()
            && let Some(rules) = self.exact.get(text::exact_form(normalized))
        {
            out.extend_from_slice(rules);
        }
        if let Some(regexes) = &self.regexes {
            regexes.matching_rules(raw, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn rule(n: u128, kind: MatchKind, pattern: &str) -> RuleSpec {
        RuleSpec {
            id: Uuid::from_u128(n),
            priority: 0,
            match_kind: kind,
            pattern: Some(pattern.to_string()),
            keywords: vec![],
            condition: None,
            reply: Some(format!("reply {n}")),
            media_url: None,
            action: None,
            active: true,
        }
    }

    fn keywords(n: u128, words: &[&str]) -> RuleSpec {
        RuleSpec {
            pattern: None,
            keywords: words.iter().map(|w| w.to_string()).collect(),
            ..rule(n, MatchKind::AnyKeyword, "")
        }
    }

    fn set(rules: Vec<RuleSpec>) -> RuleSet {
        RuleSet::compile(rules).expect("rules compile")
    }

    fn hit(set: &RuleSet, text: &str) -> Option<u128> {
        let vars = Vars::new();
        let found = set.find(text, &vars);
        let fast = set.find_rule(text, &vars);
        assert_eq!(found.rule, fast, "find and find_rule disagree on {text:?}");
        found.rule.map(|r| r.id.as_u128())
    }

    #[test]
    fn send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RuleSet>();
    }

    #[test]
    fn contains_whole_words_accents_and_case() {
        let s = set(vec![
            rule(1, MatchKind::Contains, "hi"),
            rule(2, MatchKind::Contains, "preço"),
            rule(3, MatchKind::Contains, "Opening Hours"),
        ]);
        assert_eq!(hit(&s, "oh, hi!"), Some(1));
        assert_eq!(hit(&s, "HI"), Some(1));
        assert_eq!(hit(&s, "this is it"), None);
        assert_eq!(hit(&s, "hiking"), None);
        assert_eq!(hit(&s, "qual o preco?"), Some(2));
        assert_eq!(hit(&s, "Qual o PREÇO"), Some(2));
        assert_eq!(hit(&s, "preços"), None);
        assert_eq!(hit(&s, "what are your opening   hours?"), Some(3));
        assert_eq!(hit(&s, "opening\nhours"), Some(3));
        assert_eq!(hit(&s, "reopening hours"), None);
        assert_eq!(hit(&s, ""), None);
    }

    #[test]
    fn contains_in_unspaced_scripts() {
        let s = set(vec![rule(1, MatchKind::Contains, "价格")]);
        assert_eq!(hit(&s, "这个价格多少"), Some(1));
        let s = set(vec![rule(1, MatchKind::Contains, "가격")]);
        assert_eq!(hit(&s, "가격은 얼마예요?"), Some(1));
        let s = set(vec![rule(1, MatchKind::Exact, "안녕하세요")]);
        assert_eq!(hit(&s, "안녕하세요!"), Some(1));
    }

    #[test]
    fn repeated_words_and_shared_patterns_stay_cheap() {
        let mut rules: Vec<RuleSpec> = (0..500)
            .map(|i| rule(i, MatchKind::Contains, "a"))
            .collect();
        rules.push(rule(1000, MatchKind::StartsWith, "a"));
        rules[0].priority = -1;
        let s = set(rules);
        let text = "a ".repeat(2000);
        let m = s.find(&text, &Vars::new());
        assert_eq!(m.rule.map(|r| r.id.as_u128()), Some(1));
        assert!(
            m.trace.iter().any(|l| l.contains("500 more rule(s)")),
            "{:?}",
            m.trace
        );
    }

    #[test]
    fn exact_ignores_punctuation_and_spacing() {
        let s = set(vec![rule(1, MatchKind::Exact, "Hello there")]);
        assert_eq!(hit(&s, "hello there"), Some(1));
        assert_eq!(hit(&s, "  Hello   THERE!!! "), Some(1));
        assert_eq!(hit(&s, "hello there?"), Some(1));
        assert_eq!(hit(&s, "héllo there."), Some(1));
        assert_eq!(hit(&s, "hello there friend"), None);
        assert_eq!(hit(&s, "oh hello there"), None);
        let s = set(vec![rule(2, MatchKind::Exact, "¿precio?")]);
        assert_eq!(hit(&s, "precio"), Some(2));
        assert_eq!(hit(&s, "¡¿Precio?!"), Some(2));
    }

    #[test]
    fn starts_with_at_word_boundary() {
        let s = set(vec![rule(1, MatchKind::StartsWith, "order")]);
        assert_eq!(hit(&s, "Order 1234 status"), Some(1));
        assert_eq!(hit(&s, "  order"), Some(1));
        assert_eq!(hit(&s, "¿order?"), Some(1));
        assert_eq!(hit(&s, "orders please"), None);
        assert_eq!(hit(&s, "my order"), None);
        // Same literal as contains and starts_with: both targets work.
        let s = set(vec![
            rule(1, MatchKind::StartsWith, "order"),
            rule(2, MatchKind::Contains, "order"),
        ]);
        assert_eq!(hit(&s, "order now"), Some(1));
        assert_eq!(hit(&s, "my order"), Some(2));
    }

    #[test]
    fn any_keyword() {
        let s = set(vec![keywords(
            1,
            &["refund", "money back", "", "  ", "Devolução"],
        )]);
        assert_eq!(hit(&s, "I want a REFUND"), Some(1));
        assert_eq!(hit(&s, "money back now"), Some(1));
        assert_eq!(hit(&s, "quero devolucao"), Some(1));
        assert_eq!(hit(&s, "refunds?"), None);
        assert_eq!(hit(&s, "no thanks"), None);
    }

    #[test]
    fn regex_uses_original_text() {
        let s = set(vec![
            rule(1, MatchKind::Regex, r"(?i)\border\s*#?\d{4,}\b"),
            rule(2, MatchKind::Regex, r"^Preço$"),
        ]);
        assert_eq!(hit(&s, "where is ORDER #12345?"), Some(1));
        assert_eq!(hit(&s, "order 12"), None);
        assert_eq!(hit(&s, "Preço"), Some(2));
        assert_eq!(hit(&s, "preco"), None, "regex does not fold");
    }

    #[test]
    fn priority_then_order() {
        let mut low = rule(1, MatchKind::Contains, "price");
        low.priority = 1;
        let mut high = rule(2, MatchKind::Contains, "price");
        high.priority = 5;
        let mut tie = rule(3, MatchKind::AnyKeyword, "");
        tie.keywords = vec!["price".into()];
        tie.priority = 5;
        tie.pattern = None;
        let s = set(vec![low.clone(), high.clone(), tie.clone()]);
        assert_eq!(hit(&s, "the price"), Some(2));
        let s = set(vec![tie.clone(), high.clone(), low.clone()]);
        assert_eq!(hit(&s, "the price"), Some(3));
        let mut neg = rule(4, MatchKind::Regex, "price");
        neg.priority = -10;
        let s = set(vec![neg, low]);
        assert_eq!(hit(&s, "the price"), Some(1));
    }

    #[test]
    fn conditions_decide_between_candidates() {
        let mut vip = rule(1, MatchKind::Contains, "price");
        vip.priority = 10;
        vip.condition = Some(r#"contact.vip == true"#.into());
        let mut broken = rule(2, MatchKind::Contains, "price");
        broken.priority = 5;
        broken.condition = Some("contact.missing == 1".into());
        let fallback = rule(3, MatchKind::Contains, "price");
        let s = set(vec![vip, broken, fallback]);

        let mut vars = Vars::new();
        vars.set("contact.vip", true);
        let m = s.find("price?", &vars);
        assert_eq!(m.rule.map(|r| r.id.as_u128()), Some(1));
        assert!(
            m.trace.iter().any(|l| l.contains("condition was true")),
            "{:?}",
            m.trace
        );
        assert!(
            m.trace.iter().any(|l| l.contains("2 more rule(s)")),
            "{:?}",
            m.trace
        );

        vars.set("contact.vip", false);
        let m = s.find("price?", &vars);
        assert_eq!(m.rule.map(|r| r.id.as_u128()), Some(3));
        assert!(m.trace[1].contains("condition was false"), "{:?}", m.trace);
        assert!(
            m.trace[2].contains("could not be evaluated"),
            "{:?}",
            m.trace
        );
        assert!(m.trace[2].contains(&Uuid::from_u128(2).to_string()));
        assert!(m.trace[3].contains("matched"), "{:?}", m.trace);
    }

    #[test]
    fn trace_when_nothing_matches() {
        let s = set(vec![rule(1, MatchKind::Contains, "price")]);
        let m = s.find("Hello", &Vars::new());
        assert_eq!(m.rule, None);
        assert_eq!(m.trace[0], "message compared as \"hello\"");
        assert_eq!(m.trace.last().unwrap(), "no rule matched (1 active rules)");
        let m = s.find("price", &Vars::new());
        assert!(
            m.trace[1].contains(&format!(
                "rule {} (priority 0, contains \"price\") matched",
                Uuid::from_u128(1)
            )),
            "{:?}",
            m.trace
        );
    }

    #[test]
    fn inactive_rules_are_skipped() {
        let mut off = rule(1, MatchKind::Contains, "price");
        off.active = false;
        off.pattern = None; // invalid, but inactive: not even validated
        let s = set(vec![off, rule(2, MatchKind::Contains, "other")]);
        assert_eq!(s.len(), 1);
        assert_eq!(hit(&s, "price"), None);
        let empty = set(vec![]);
        assert!(empty.is_empty());
        assert_eq!(hit(&empty, "anything"), None);
    }

    #[test]
    fn compile_names_the_invalid_rule() {
        let bad = rule(7, MatchKind::Regex, "(");
        let err = RuleSet::compile(vec![rule(1, MatchKind::Contains, "a"), bad]).unwrap_err();
        assert_eq!(err.rule, Some(Uuid::from_u128(7)));
        assert_eq!(err.field, "pattern");
        assert!(
            err.to_string()
                .starts_with(&format!("rule {}: pattern: ", Uuid::from_u128(7)))
        );
    }

    fn field_of(spec: RuleSpec) -> &'static str {
        let err = validate(&spec).unwrap_err();
        assert!(err.to_string().starts_with(err.field), "{err}");
        assert!(!err.message.is_empty());
        err.field
    }

    #[test]
    fn validate_pattern_errors() {
        assert_eq!(validate(&rule(1, MatchKind::Contains, "ok")), Ok(()));
        let mut r = rule(1, MatchKind::Contains, "x");
        r.pattern = None;
        assert_eq!(field_of(r), "pattern");
        assert_eq!(field_of(rule(1, MatchKind::Exact, "   ")), "pattern");
        assert_eq!(field_of(rule(1, MatchKind::Exact, "?!")), "pattern");
        assert_eq!(field_of(rule(1, MatchKind::StartsWith, "¿")), "pattern");
        assert_eq!(field_of(rule(1, MatchKind::Contains, "\u{301}")), "pattern");
        assert_eq!(
            field_of(rule(1, MatchKind::Contains, &"a".repeat(501))),
            "pattern"
        );
        assert_eq!(field_of(rule(1, MatchKind::Regex, "a(")), "pattern");
        assert_eq!(
            field_of(rule(1, MatchKind::Regex, &"a".repeat(1001))),
            "pattern"
        );
        let err = validate(&rule(1, MatchKind::Regex, r"\w{500}\w{500}")).unwrap_err();
        assert_eq!(err.field, "pattern");
        assert!(err.message.contains("too large"), "{err}");
    }

    #[test]
    fn validate_keyword_errors() {
        assert_eq!(validate(&keywords(1, &["a"])), Ok(()));
        assert_eq!(field_of(keywords(1, &[])), "keywords");
        assert_eq!(field_of(keywords(1, &["", " "])), "keywords");
        let many: Vec<String> = (0..101).map(|i| format!("k{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(field_of(keywords(1, &many)), "keywords");
        assert_eq!(field_of(keywords(1, &[&"k".repeat(201)])), "keywords");
    }

    #[test]
    fn validate_condition_reply_media_action() {
        let mut r = rule(1, MatchKind::Contains, "x");
        r.condition = Some("1 +".into());
        assert_eq!(field_of(r.clone()), "condition");
        r.condition = Some("  ".into());
        assert_eq!(validate(&r), Ok(()));

        let mut r = rule(1, MatchKind::Contains, "x");
        r.reply = Some("Hi {{name".into());
        assert_eq!(field_of(r.clone()), "reply");
        r.reply = Some("x".repeat(10_001));
        assert_eq!(field_of(r.clone()), "reply");
        r.reply = Some("  ".into());
        assert_eq!(field_of(r.clone()), "reply", "a blank reply is no reply");
        r.reply = None;
        assert_eq!(field_of(r.clone()), "reply");

        r.media_url = Some("https://cdn.example.com/a.png".into());
        assert_eq!(validate(&r), Ok(()));
        r.media_url = Some("ftp://x/a.png".into());
        assert_eq!(field_of(r.clone()), "media_url");
        r.media_url = Some("https://".into());
        assert_eq!(field_of(r.clone()), "media_url");
        r.media_url = Some("https://x/a b.png".into());
        assert_eq!(field_of(r.clone()), "media_url");
        r.media_url = None;

        r.action = Some(Action::Handoff);
        assert_eq!(validate(&r), Ok(()));
        r.action = Some(Action::SetVariable {
            name: "plan".into(),
            value: "{{message.text}}".into(),
        });
        assert_eq!(validate(&r), Ok(()));
        for bad in ["", "1abc", "a-b", &"a".repeat(65)] {
            r.action = Some(Action::SetVariable {
                name: bad.into(),
                value: "v".into(),
            });
            assert_eq!(field_of(r.clone()), "action", "{bad:?}");
        }
        r.action = Some(Action::SetVariable {
            name: "a".repeat(64),
            value: "v".into(),
        });
        assert_eq!(validate(&r), Ok(()));
        r.action = Some(Action::SetVariable {
            name: "ok".into(),
            value: "{{".into(),
        });
        assert_eq!(field_of(r.clone()), "action");
        r.action = Some(Action::AskLlm {
            instructions: "be brief".into(),
        });
        assert_eq!(validate(&r), Ok(()));
        r.action = Some(Action::AskLlm {
            instructions: "x".repeat(4001),
        });
        assert_eq!(field_of(r), "action");
    }

    #[test]
    fn validate_refuses_unknown_variables_naming_the_field() {
        let mut r = rule(1, MatchKind::Contains, "hours");
        r.reply = Some("We open at 9, {{contact.nmae}}.".into());
        let err = validate(&r).unwrap_err();
        assert_eq!(err.field, "reply");
        assert!(
            err.message.contains("`contact.nmae` is not a known name"),
            "{err}"
        );
        assert!(err.message.contains("did you mean `contact.name`"), "{err}");
        assert!(err.message.contains("contact.name, contact.phone"), "{err}");
        r.reply = Some(r#"We open at 9, {{contact.name | default: "friend"}}."#.into());
        assert_eq!(validate(&r), Ok(()));

        r.condition = Some("customer.vip == true".into());
        let err = validate(&r).unwrap_err();
        assert_eq!(err.field, "condition");
        assert!(err.message.contains("`customer.vip`"), "{err}");
        r.condition = Some(r#""vip" in vars && vars.vip == "yes""#.into());
        assert_eq!(validate(&r), Ok(()));

        r.action = Some(Action::SetVariable {
            name: "who".into(),
            value: "{{contact.fullname}}".into(),
        });
        assert_eq!(validate(&r).unwrap_err().field, "action.value");
        r.action = Some(Action::AskLlm {
            instructions: "Greet {{contact.nick}}".into(),
        });
        assert_eq!(validate(&r).unwrap_err().field, "action.instructions");
        r.action = Some(Action::AskLlm {
            instructions: "Greet {{contact.name}} about {{vars.topic}}".into(),
        });
        assert_eq!(validate(&r), Ok(()));

        // A rule stored before names were checked still compiles and runs.
        r.reply = Some("Hi {{contact.nmae}}".into());
        r.condition = Some("nobody == 1 || true".into());
        assert!(RuleSet::compile(vec![r]).is_ok());
    }

    #[test]
    fn serde_shapes() {
        let json = serde_json::json!({
            "id": Uuid::from_u128(1),
            "priority": 3,
            "match_kind": "any_keyword",
            "keywords": ["a"],
            "action": {"type": "set_variable", "name": "n", "value": "v"}
        });
        let spec: RuleSpec = serde_json::from_value(json).unwrap();
        assert_eq!(spec.match_kind, MatchKind::AnyKeyword);
        assert!(spec.active);
        assert_eq!(
            spec.action,
            Some(Action::SetVariable {
                name: "n".into(),
                value: "v".into()
            })
        );
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["action"]["type"], "set_variable");
        assert_eq!(
            serde_json::to_value(Action::Handoff).unwrap(),
            serde_json::json!({"type": "handoff"})
        );
        assert_eq!(MatchKind::default(), MatchKind::Contains);
        assert_eq!(
            serde_json::to_value(MatchKind::StartsWith).unwrap(),
            "starts_with"
        );
    }
}
