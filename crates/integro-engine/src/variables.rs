//! The names templates and CEL conditions can use, and the check that
//! refuses any other when a rule or persona is saved.
//!
//! A misspelt name (`{{contact.nmae}}`) used to be accepted and render as
//! nothing, so a bot could answer with an empty message. The names are
//! fixed by what the worker puts in every turn (see `facts` in
//! `integro-worker`), except under `vars`: conversation variables are set by
//! rules, so any name is accepted there.

use std::fmt;

/// Values that stand alone: `{{channel}}`.
pub const VALUES: &[&str] = &["channel"];

/// Groups with a fixed set of fields: `{{contact.name}}`.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("message", &["text", "kind"]),
    ("contact", &["name", "phone", "id"]),
    ("conversation", &["id"]),
    (
        "now",
        &[
            "year", "month", "day", "hour", "minute", "weekday", "date", "time",
        ],
    ),
    ("bot", &["name"]),
    ("persona", &["name", "tone", "language", "interests"]),
];

/// The group of conversation variables, where any name is accepted.
pub const OPEN_GROUP: &str = "vars";

/// Every known name, as listed in error messages: `message.text`, …,
/// `channel`, `vars.<name>`.
pub fn known_names() -> Vec<String> {
    let mut names: Vec<String> = GROUPS
        .iter()
        .flat_map(|(group, fields)| fields.iter().map(move |f| format!("{group}.{f}")))
        .collect();
    names.extend(VALUES.iter().map(|v| v.to_string()));
    names.push(format!("{OPEN_GROUP}.<name>"));
    names
}

/// A name that templates and conditions do not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// As written, e.g. `contact.nmae`.
    pub name: String,
    /// A known name it may have meant.
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a known name", self.name)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        write!(f, "; known names: {}", known_names().join(", "))
    }
}

impl std::error::Error for UnknownName {}

/// Whether the segments name something a turn has. With `whole_groups`, a
/// group alone (`contact`, `vars`) counts too: CEL can test `"plan" in vars`,
/// while a template would render a group as nothing.
fn is_known(segments: &[&str], whole_groups: bool) -> bool {
    match segments {
        [value] if VALUES.contains(value) => true,
        [group] => whole_groups && (*group == OPEN_GROUP || GROUPS.iter().any(|(g, _)| g == group)),
        [group, _] if *group == OPEN_GROUP => true,
        [group, field] => GROUPS
            .iter()
            .any(|(g, fields)| g == group && fields.contains(field)),
        _ => false,
    }
}

/// Checks a dotted path (`contact.name`) from a template or condition.
pub(crate) fn check_segments(segments: &[&str], whole_groups: bool) -> Result<(), UnknownName> {
    if is_known(segments, whole_groups) {
        return Ok(());
    }
    let name = segments.join(".");
    Err(UnknownName {
        suggestion: suggest(&name),
        name: crate::text::truncate_chars(&name, 80),
    })
}

/// Checks that every placeholder of `template` names a known value. Syntax
/// is [`crate::template::check`]'s business: malformed placeholders are
/// skipped here.
pub fn check_template(template: &str) -> Result<(), UnknownName> {
    for path in crate::template::placeholders(template) {
        let segments: Vec<&str> = path.split('.').collect();
        check_segments(&segments, false)?;
    }
    Ok(())
}

/// The known name closest to `name`, if it is a likely misspelling (at
/// most two edits away).
fn suggest(name: &str) -> Option<String> {
    if name.chars().count() > 64 {
        return None;
    }
    let candidates = GROUPS
        .iter()
        .flat_map(|(g, fields)| fields.iter().map(move |f| format!("{g}.{f}")))
        .chain(VALUES.iter().map(|v| v.to_string()));
    let (distance, best) = candidates
        .map(|c| (edit_distance(name, &c), c))
        .min_by_key(|(d, _)| *d)?;
    (distance <= 2).then_some(best)
}

/// Levenshtein distance over characters (both short: names are ≤ 64 chars).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_are_listed() {
        let names = known_names();
        for n in [
            "message.text",
            "contact.name",
            "now.hour",
            "channel",
            "vars.<name>",
            "persona.interests",
            "conversation.id",
            "bot.name",
        ] {
            assert!(names.contains(&n.to_string()), "{n}");
        }
    }

    #[test]
    fn templates_may_only_name_known_values() {
        assert_eq!(
            check_template(
                r#"Hi {{contact.name | default: "there"}}, {{channel}} {{vars.anything_at_all}} {{now.time}}"#
            ),
            Ok(())
        );
        let err = check_template("We open at 9, {{contact.nmae}}.").unwrap_err();
        assert_eq!(err.name, "contact.nmae");
        assert_eq!(err.suggestion.as_deref(), Some("contact.name"));
        let msg = err.to_string();
        assert!(msg.starts_with("`contact.nmae` is not a known name (did you mean `contact.name`?); known names: message.text, message.kind, contact.name"), "{msg}");
        assert!(msg.ends_with("channel, vars.<name>"), "{msg}");
        for bad in [
            "{{name}}",
            "{{contact}}",
            "{{vars}}",
            "{{vars.a.b}}",
            "{{channel.kind}}",
            "{{contact.name.first}}",
            "{{customer.name}}",
            "{{now.second}}",
        ] {
            assert!(check_template(bad).is_err(), "{bad}");
        }
        // Malformed placeholders are the syntax check's business.
        assert_eq!(check_template("{{ two words }} {{"), Ok(()));
        assert_eq!(
            check_template("{{chanel}}")
                .unwrap_err()
                .suggestion
                .as_deref(),
            Some("channel")
        );
        assert_eq!(check_template("{{zzzzzz}}").unwrap_err().suggestion, None);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("nmae", "name"), 2);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ação", "acao"), 2);
    }
}
