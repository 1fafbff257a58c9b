//! Parsing and validation of definitions: the three documented examples,
//! each problem the validator reports, and where parse errors point.

use super::*;
use crate::workflow::{BusinessCalendar, DurationError, Problem, parse_duration};

pub(crate) const LEAD_INTAKE: &str = include_str!("examples/lead_intake.yaml");
pub(crate) const SUPPORT_CASE: &str = include_str!("examples/support_case.yaml");
pub(crate) const APPOINTMENT: &str = include_str!("examples/appointment_booking.yaml");

fn load(text: &str) -> Definition {
    Definition::load_yaml(text).unwrap_or_else(|p| panic!("{p:#?}"))
}

/// The problems of `yaml` as (path, message) pairs.
fn problems(yaml: &str) -> Vec<Problem> {
    let def = Definition::parse_yaml(yaml).unwrap_or_else(|p| panic!("{p:#?}"));
    let mut problems = def.validate().expect_err("expected problems");
    crate::workflow::source::locate_all(&mut problems, yaml);
    problems
}

/// Asserts one problem at `path` whose message contains `says`.
fn has(problems: &[Problem], path: &str, says: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(says)),
        "no problem at {path} saying {says:?} in {problems:#?}"
    );
}

/// A minimal valid document with `extra` appended under `states:`.
fn doc(states: &str) -> String {
    format!(
        "key: t\ntriggers: {{ api: true }}\nfields:\n  name: {{ type: string, ask: Name? }}\n  reason: {{ type: text }}\nstates:\n{states}"
    )
}

#[test]
fn the_examples_are_valid() {
    let lead = load(LEAD_INTAKE);
    assert_eq!(lead.key, "lead_intake");
    assert_eq!(lead.initial_state(), Some("collecting"));
    assert_eq!(lead.calendars_used(), ["office"]);
    assert_eq!(lead.cancel_words(), ["cancel", "stop"]);
    let qualified = lead.states.get("qualified").unwrap();
    assert_eq!(qualified.on.get("accept").unwrap().to, "won");
    assert_eq!(qualified.on.get("reject").unwrap().require, ["reason"]);
    assert_eq!(qualified.sla.as_ref().unwrap().on_breach, [Action::Alert]);
    let support = load(SUPPORT_CASE);
    assert_eq!(support.calendars_used(), ["support_hours"]);
    let booking = load(APPOINTMENT);
    assert_eq!(booking.cancel_words(), ["cancel", "stop", "never mind"]);
    assert!(booking.calendars_used().is_empty());
}

#[test]
fn json_round_trip() {
    for text in [LEAD_INTAKE, SUPPORT_CASE, APPOINTMENT] {
        let def = load(text);
        let json = serde_json::to_string_pretty(&def).unwrap();
        let back = Definition::load_json(&json).unwrap_or_else(|p| panic!("{p:#?}"));
        assert_eq!(back, def);
        // YAML written back reads the same too.
        let yaml = yaml_serde::to_string(&def).unwrap();
        assert_eq!(Definition::load_yaml(&yaml).unwrap(), def);
    }
}

#[test]
fn yaml_errors_have_path_line_and_column() {
    let yaml = "key: t\nstates:\n  a:\n    final: true\n    colour: red\n";
    let p = Definition::parse_yaml(yaml).unwrap_err();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "states.a.colour");
    assert!(p[0].message.starts_with("unknown field `colour`"), "{p:?}");
    assert_eq!((p[0].line, p[0].column), (Some(5), Some(5)));
    assert!(p[0].to_string().ends_with("(line 5, column 5)"), "{}", p[0]);

    let yaml = "key: t\nstates:\n  a:\n    timers: [{ after: [4] }]\n";
    let p = Definition::parse_yaml(yaml).unwrap_err();
    assert_eq!(p[0].path, "states.a.timers[0].after");
    assert!(p[0].message.contains("invalid type"), "{p:?}");
    assert_eq!(p[0].line, Some(4));

    let p = Definition::parse_yaml("key: t\nstates: {a: {final: true}\n").unwrap_err();
    assert!(p[0].line.is_some(), "{p:?}");
    let p = Definition::parse_yaml("key: t\n").unwrap_err();
    assert!(p[0].message.contains("missing field `states`"), "{p:?}");

    let p =
        Definition::parse_yaml("key: t\nstates:\n  a: { enter: [{ shout: hi }] }\n").unwrap_err();
    assert!(p[0].message.contains("unknown action `shout`"), "{p:?}");
    assert_eq!(p[0].path, "states.a.enter[0]");
    let p = Definition::parse_yaml("key: t\nstates:\n  a: { enter: [{ send: a, set: b }] }\n")
        .unwrap_err();
    assert!(p[0].message.contains("exactly one key"), "{p:?}");
    let p = Definition::parse_yaml("key: t\nstates:\n  a: { final: true }\n  a: { final: true }\n")
        .unwrap_err();
    assert!(p[0].message.contains("`a` is given twice"), "{p:?}");
    let p = Definition::parse_yaml("key: t\nstates:\n  a: { on: { go: { to: b, unless: x } } }\n")
        .unwrap_err();
    assert_eq!(p[0].path, "states.a.on.go.unless");
}

#[test]
fn json_errors_have_path_line_and_column() {
    let p = Definition::parse_json("{\"key\": \"t\",\n \"states\": {\"a\": {\"final\": \"yes\"}}}")
        .unwrap_err();
    assert_eq!(p[0].path, "states.a.final");
    assert_eq!(p[0].line, Some(2));
    assert!(p[0].column.is_some());
    assert!(!p[0].message.contains("at line"), "{p:?}");
    let p = Definition::parse_json("{\"key\": \"t\", \"states\": {}} trailing").unwrap_err();
    assert!(p[0].message.contains("trailing"), "{p:?}");
}

#[test]
fn semantic_problems_point_at_the_yaml() {
    let yaml = doc("  a:\n    on: { go: b, back: { to: nowhere } }\n  b: { final: true }\n");
    let p = problems(&yaml);
    has(&p, "states.a.on.back.to", "unknown state `nowhere`");
    let back = p.iter().find(|p| p.path == "states.a.on.back.to").unwrap();
    assert_eq!((back.line, back.column), (Some(8), Some(26)));
    // A short-form target is found at its event.
    let yaml = doc("  a:\n    on: { go: bb }\n  b: { final: true }\n");
    let p = problems(&yaml);
    let go = p.iter().find(|p| p.path == "states.a.on.go.to").unwrap();
    assert!(go.message.contains("(did you mean `b`?)"), "{go:?}");
    assert_eq!((go.line, go.column), (Some(8), Some(11)));
}

#[test]
fn unreachable_and_dead_end_states() {
    let p = problems(&doc(
        "  a: { on: { go: b } }\n  b: { final: true }\n  island: { final: true }\n  stuck: { enter: [{ send: hi }] }\n",
    ));
    has(&p, "states.island", "unreachable");
    has(&p, "states.stuck", "no way out");
    assert!(!p.iter().any(|p| p.path == "states.b"), "{p:#?}");
    // An explicit initial state changes what is reachable.
    let p = problems(&format!(
        "initial: b\n{}",
        doc("  a: { on: { go: b } }\n  b: { final: true }\n")
    ));
    has(&p, "states.a", "from the initial state `b`");
    let p = problems(&format!("initial: zz\n{}", doc("  a: { final: true }\n")));
    has(&p, "initial", "unknown state `zz`");
}

#[test]
fn form_problems() {
    let p = problems(&doc(
        "  a:\n    form: { fields: [name, nmae, reason, name], confirm: \"{{fields.nam}}\" }\n    on: { done: b }\n  b: { final: true }\n",
    ));
    has(
        &p,
        "states.a.form.fields[1]",
        "unknown field `nmae` (did you mean `name`?)",
    );
    has(&p, "states.a.form.fields[2]", "no `ask` prompt");
    has(&p, "states.a.form.fields[3]", "asked twice");
    has(&p, "states.a.form.confirm", "did you mean `fields.name`");
    has(&p, "states.a.form", "add `on: { complete: <state> }`");
    let p = problems(&doc(
        "  a: { on_give_up: b, on: { go: b } }\n  b: { form: { fields: [] }, on_give_up: zz, on: { complete: a } }\n",
    ));
    has(&p, "states.a.on_give_up", "only a form gives up");
    has(&p, "states.b.form.fields", "at least one field");
    has(&p, "states.b.on_give_up", "unknown state `zz`");
}

#[test]
fn require_and_guards() {
    let p = problems(&doc(
        "  a:\n    on:\n      go: { to: b, require: [reason, Bad, reason], when: \"fields.reason == 'x' && nope\" }\n      bad: { to: b, when: \"1 +\" }\n  b: { final: true }\n",
    ));
    has(&p, "states.a.on.go.require[1]", "is not a valid name");
    has(&p, "states.a.on.go.require[2]", "required twice");
    has(&p, "states.a.on.go.when", "`nope` is not a known name");
    has(&p, "states.a.on.bad.when", "invalid condition");
    // Undeclared required names are event data, readable as fields.
    let def = load(&doc(
        "  a: { on: { go: { to: b, require: [ticket], when: \"fields.ticket != ''\" } } }\n  b: { final: true }\n",
    ));
    assert!(def.validate().is_ok());
}

#[test]
fn timer_problems() {
    let p = problems(&doc(
        "  a:\n    timers:\n      - { after: PT1H }\n      - { after: P1M, goto: b }\n      - { after: PT1H, goto: zz, event: go }\n      - { after: PT1H, event: nothing }\n      - { after: 1h, remind: hi }\n    on: { go: b }\n  b: { final: true }\n",
    ));
    has(&p, "states.a.timers[0]", "no exit");
    has(
        &p,
        "states.a.timers[1].after",
        "months have no fixed length",
    );
    has(&p, "states.a.timers[2].goto", "unknown state `zz`");
    has(&p, "states.a.timers[2]", "not both");
    has(
        &p,
        "states.a.timers[3].event",
        "no transition for `nothing`",
    );
    has(&p, "states.a.timers[4].after", "starting with P");
    let timers = "      - { after: PT1H, remind: hi }\n".repeat(21);
    let p = problems(&doc(&format!(
        "  a:\n    timers:\n{timers}    on: {{ go: b }}\n  b: {{ final: true }}\n"
    )));
    has(&p, "states.a.timers", "at most 20 timers");
}

#[test]
fn sla_problems() {
    let p = problems(&doc(
        "  a:\n    sla: { within: PT1H, warn_before: PT2H, calendar: Office, pause_when: \"vars.x ==\", on_breach: [alert, { send: \"\" }] }\n    enter: [alert]\n    on: { go: b }\n  b: { final: true }\n",
    ));
    has(&p, "states.a.sla.warn_before", "shorter than `within`");
    has(&p, "states.a.sla.calendar", "not a valid name");
    has(&p, "states.a.sla.pause_when", "invalid condition");
    has(&p, "states.a.sla.on_breach[1].send", "empty");
    has(&p, "states.a.enter[0]", "under `sla.on_breach`");
    let p = problems(&doc(
        "  a:\n    sla: { within: PT0S }\n    on: { go: b }\n  b: { final: true }\n",
    ));
    has(&p, "states.a.sla.within", "longer than zero");
}

#[test]
fn action_problems() {
    let p = problems(&doc(concat!(
        "  a:\n    enter:\n",
        "      - webhook: { url: \"ftp://x.example\" }\n",
        "      - webhook: { url: \"https://user:pw@x.example/a\", secret_ref: \"Bad Ref\" }\n",
        "      - webhook: { url: \"https://:80/\" }\n",
        "      - webhook: { url: \"https://x.example:99999/\" }\n",
        "      - set: { var: 9lives, value: \"{{contact.nmae}}\" }\n",
        "      - ask_llm: { prompt: \"\", store_as: Summary }\n",
        "      - assign: { user: someone, strategy: least_busy }\n",
        "      - assign: { user: a@example.com, role: agent }\n",
        "      - assign: {}\n",
        "    on: { go: b }\n  b: { final: true }\n",
    )));
    has(&p, "states.a.enter[0].webhook.url", "http:// or https://");
    has(&p, "states.a.enter[1].webhook.url", "credentials");
    has(
        &p,
        "states.a.enter[1].webhook.secret_ref",
        "not a valid name",
    );
    has(&p, "states.a.enter[2].webhook.url", "no host");
    has(&p, "states.a.enter[3].webhook.url", "invalid port");
    has(&p, "states.a.enter[4].set.var", "not a valid name");
    has(
        &p,
        "states.a.enter[4].set.value",
        "did you mean `contact.name`",
    );
    has(&p, "states.a.enter[5].ask_llm.prompt", "empty");
    has(&p, "states.a.enter[5].ask_llm.store_as", "not a valid name");
    has(&p, "states.a.enter[6].assign.user", "(UUID) or email");
    has(&p, "states.a.enter[6].assign.strategy", "needs `role`");
    has(&p, "states.a.enter[7].assign", "not both");
    has(&p, "states.a.enter[8].assign", "give a `user` or a `role`");
    for ok in [
        "https://crm.example.com/leads?x=1",
        "http://[::1]:8080/x",
        "HTTPS://Example.com",
    ] {
        assert_eq!(check_url(ok), Ok(()), "{ok}");
    }
    assert!(check_url("https://ex ample.com").is_err());
    assert!(check_url("https://[::1/").is_err());
}

#[test]
fn final_state_problems() {
    let p = problems(&doc(
        "  a:\n    final: true\n    on: { go: a }\n    timers: [{ after: PT1H, remind: hi }]\n    exit: [{ send: bye }]\n",
    ));
    has(&p, "states.a.on", "would never be used");
    has(&p, "states.a.timers", "would never be used");
    has(&p, "states.a.exit", "would never be used");
}

#[test]
fn field_problems() {
    let yaml = concat!(
        "key: t\ntriggers: { api: true }\nfields:\n",
        "  a: { type: choice, ask: \"?\" }\n",
        "  b: { type: choice, options: [x, X, \"\"] }\n",
        "  c: { type: email, min_length: 3, options: [x], minimum: 1 }\n",
        "  d: { type: string, min_length: 5, max_length: 2, pattern: \"(\", max_attempts: 0 }\n",
        "  e: { type: number, minimum: 5, maximum: 1, ask: \"{{fields.zz}}\" }\n",
        "  Bad: { type: text }\n",
        "states:\n  s: { final: true }\n",
    );
    let p = problems(yaml);
    has(&p, "fields.a.options", "needs its options");
    has(&p, "fields.b.options[1]", "repeats an earlier option");
    has(&p, "fields.b.options[2]", "must not be empty");
    has(&p, "fields.c.min_length", "not email");
    has(&p, "fields.c.options", "applies to choice fields");
    has(&p, "fields.c.minimum", "applies to number and integer");
    has(&p, "fields.d.min_length", "larger than max_length");
    has(&p, "fields.d.pattern", "invalid regular expression");
    has(&p, "fields.d.max_attempts", "from 1 to 10");
    has(&p, "fields.e.minimum", "larger than maximum");
    has(&p, "fields.e.ask", "`fields.zz` is not a field");
    has(&p, "fields.Bad", "not a valid name");
    let bad = p.iter().find(|p| p.path == "fields.Bad").unwrap();
    assert_eq!(bad.line, Some(9));
}

#[test]
fn top_level_problems() {
    let yaml = "key: Lead-Intake\ncancel_words: [\"\"]\ntriggers: { conversation: { condition: \"contact.nmae == 'x'\" } }\nstates:\n  handoff: { final: true }\n";
    let p = problems(yaml);
    has(&p, "key", "not a valid name");
    has(&p, "cancel_words[0]", "must not be empty");
    has(
        &p,
        "triggers.conversation.condition",
        "did you mean `contact.name`",
    );
    has(&p, "states.handoff", "reserved");
    let p = problems("key: t\nstates:\n  a: { final: true }\n");
    has(&p, "triggers", "nothing starts this workflow");
    let p = problems("key: t\ntriggers: { conversation: {} }\nstates: {}\n");
    has(&p, "triggers.conversation", "give `keywords`");
    has(&p, "states", "at least one state");
}

#[test]
fn limits() {
    let long = "x".repeat(MAX_STRING_CHARS + 1);
    let p = problems(&doc(&format!(
        "  a: {{ final: true, enter: [{{ send: \"{long}\" }}] }}\n"
    )));
    has(&p, "states.a.enter[0].send", "is too long (4097 characters");
    let states: String = (0..=MAX_STATES)
        .map(|i| format!("  s{i}: {{ final: true }}\n"))
        .collect();
    let p = problems(&doc(&states));
    has(&p, "states", "at most 100 states");
    let actions = "{ send: hi }, ".repeat(MAX_ACTIONS + 1);
    let p = problems(&doc(&format!(
        "  a: {{ final: true, enter: [{actions}] }}\n"
    )));
    has(&p, "states.a.enter", "at most 50 actions");
    let fields: String = (0..=MAX_FIELDS)
        .map(|i| format!("  f{i}: {{ type: text }}\n"))
        .collect();
    let p = problems(&format!(
        "key: t\ntriggers: {{ api: true }}\nfields:\n{fields}states:\n  a: {{ final: true }}\n"
    ));
    has(&p, "fields", "at most 100 fields");
    let long_key = "k".repeat(65);
    let p = problems(&doc(&format!("  {long_key}: {{ final: true }}\n")));
    has(&p, &format!("states.{long_key}"), "not a valid name");
}

#[test]
fn durations_are_exported() {
    assert_eq!(parse_duration("PT30M"), Ok(1_800_000));
    let e: DurationError = parse_duration("P1Y").unwrap_err();
    assert!(e.reason.contains("years"));
}

/// The examples in `docs/workflows.md` are the fixtures, and its sample
/// problem is what validation says.
#[test]
fn the_documentation_matches() {
    let doc = include_str!("../../../../docs/workflows.md");
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .filter(|b| b.starts_with("key: "))
        .collect();
    for example in [LEAD_INTAKE, SUPPORT_CASE, APPOINTMENT] {
        assert!(
            blocks.contains(&example.trim_end()),
            "docs/workflows.md lacks {}",
            example.lines().next().unwrap_or("")
        );
    }
    for block in blocks {
        load(block);
    }
    let typo = LEAD_INTAKE.replace("{ to: lost,", "{ to: lots,");
    let p = Definition::load_yaml(&typo).unwrap_err();
    let json = serde_json::to_string(&p[0]).unwrap();
    let shown = "{\"path\":\"states.qualified.on.reject.to\",\"line\":16,\"column\":34,\"message\":\"unknown state `lots` (did you mean `lost`?); states: collecting, qualified, won, lost, abandoned\"}";
    assert_eq!(json, shown);
    assert!(doc.contains("\"line\": 16, \"column\": 34"));
    let calendar = doc
        .split("# The calendar named `office`.\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .unwrap();
    let calendar: BusinessCalendar = yaml_serde::from_str(calendar).unwrap();
    assert_eq!(calendar.validate(), Ok(()));
}

/// Mangled definitions (lines dropped, repeated or cut, characters
/// swapped) are refused or accepted, never a panic.
#[test]
fn mangled_definitions_never_panic() {
    let mut seed: u64 = 42;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n.max(1)
    };
    const NOISE: &[&str] = &[
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "- ",
        "&a ",
        "*a",
        "!x ",
        "\"",
        "'",
        "\t",
        "#",
        "{{",
        "}}",
        "ção",
        "\u{0}",
        "on",
        "to",
        "final: true",
        "PT",
        "P1M",
        "null",
    ];
    for _ in 0..300 {
        let source = [LEAD_INTAKE, SUPPORT_CASE, APPOINTMENT][next(3)];
        let mut lines: Vec<String> = source.lines().map(String::from).collect();
        for _ in 0..1 + next(4) {
            let i = next(lines.len());
            match next(4) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let line = lines[i].clone();
                    lines.insert(i, line);
                }
                2 => {
                    let cut = next(lines[i].len() + 1);
                    let cut = (0..=cut)
                        .rev()
                        .find(|c| lines[i].is_char_boundary(*c))
                        .unwrap_or(0);
                    lines[i].truncate(cut);
                }
                _ => {
                    let at = next(lines[i].len() + 1);
                    let at = (0..=at)
                        .rev()
                        .find(|c| lines[i].is_char_boundary(*c))
                        .unwrap_or(0);
                    lines[i].insert_str(at, NOISE[next(NOISE.len())]);
                }
            }
            if lines.is_empty() {
                lines.push(String::new());
            }
        }
        let text = lines.join("\n");
        let _ = Definition::load_yaml(&text);
        let _ = Definition::load_json(&text);
    }
}
