//! The names a workflow's templates and conditions may read.
//!
//! Everything a conversation turn has ([`crate::variables`]) plus three
//! groups of the instance: `fields.<field>` (declared fields and names a
//! transition requires), `data.<key>` (the data of the event or start being
//! handled, any shape) and `workflow.key|state|seq`. `vars` holds the
//! conversation's variables overlaid with the instance's own.

use super::Definition;
use crate::condition::{Condition, ConditionError};
use crate::template::{self, Vars};
use crate::variables;

/// Groups only workflows have.
pub(crate) const FIELDS: &str = "fields";
pub(crate) const DATA: &str = "data";
pub(crate) const WORKFLOW: &str = "workflow";
pub(crate) const WORKFLOW_VALUES: &[&str] = &["key", "state", "seq"];

/// The names one definition's templates and conditions may read.
pub(crate) struct Names<'d> {
    fields: Vec<&'d str>,
}

impl<'d> Names<'d> {
    /// Declared fields, and the names transitions require (which become
    /// fields once given).
    pub(crate) fn of(definition: &'d Definition) -> Names<'d> {
        let mut fields: Vec<&str> = definition.fields.keys().collect();
        for (_, state) in definition.states.iter() {
            for (_, transition) in state.on.iter() {
                for name in &transition.require {
                    if !fields.contains(&name.as_str()) {
                        fields.push(name);
                    }
                }
            }
        }
        Names { fields }
    }

    /// Checks a dotted name; `whole_groups` lets a condition read a group
    /// alone (`"email" in fields`).
    pub(crate) fn check(&self, segments: &[&str], whole_groups: bool) -> Result<(), String> {
        match segments {
            [FIELDS] | [DATA] | [WORKFLOW] if whole_groups => Ok(()),
            [FIELDS, field] if self.fields.contains(field) => Ok(()),
            [FIELDS, field, ..] => Err(self.unknown_field(field, segments.len() > 2)),
            [DATA, _, ..] => Ok(()),
            [WORKFLOW, value] if WORKFLOW_VALUES.contains(value) => Ok(()),
            _ => variables::check_segments(segments, whole_groups).map_err(|e| {
                format!(
                    "{e}; in a workflow also fields.<field> (this one's: {}), data.<key>, \
                     workflow.key, workflow.state, workflow.seq",
                    self.field_list()
                )
            }),
        }
    }

    fn field_list(&self) -> String {
        if self.fields.is_empty() {
            "none".into()
        } else {
            self.fields.join(", ")
        }
    }

    fn unknown_field(&self, field: &str, too_deep: bool) -> String {
        let shown = crate::text::truncate_chars(field, 64);
        if too_deep && self.fields.contains(&field) {
            return format!("fields.{shown} is a single value: read it as `fields.{shown}`");
        }
        let suggestion = self
            .fields
            .iter()
            .map(|f| (edit_distance(field, f), f))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, f)| format!(" (did you mean `fields.{f}`?)"))
            .unwrap_or_default();
        format!(
            "`fields.{shown}` is not a field of this workflow{suggestion}; its fields: {}",
            self.field_list()
        )
    }

    /// Checks every placeholder of a template.
    pub(crate) fn check_template(&self, text: &str) -> Result<(), String> {
        template::check(text).map_err(|e| e.to_string())?;
        for path in template::placeholders(text) {
            let segments: Vec<&str> = path.split('.').collect();
            self.check(&segments, false)?;
        }
        Ok(())
    }

    /// Compiles a condition and checks the names it reads.
    pub(crate) fn check_condition(&self, source: &str) -> Result<(), String> {
        let condition = Condition::compile(source).map_err(|e| e.to_string())?;
        condition.check_names_with(&mut |segments| self.check(segments, true))
    }
}

/// Evaluates a workflow condition: `vars.x`, `fields.x` and `data.x` that
/// are not set read as null (so `vars.lead_id == null` means "not set"
/// rather than failing), except under `has()`.
pub(crate) fn eval(condition: &Condition, vars: &Vars) -> Result<bool, ConditionError> {
    let mut filled: Option<Vars> = None;
    for name in condition.read_names() {
        let [group, key, ..] = name.as_slice() else {
            continue;
        };
        if !matches!(group.as_str(), "vars" | FIELDS | DATA) {
            continue;
        }
        let path = format!("{group}.{key}");
        if vars.get(&path).is_none() {
            filled
                .get_or_insert_with(|| vars.clone())
                .set(&path, serde_json::Value::Null);
        }
    }
    condition.eval(filled.as_ref().unwrap_or(vars))
}

/// Levenshtein distance over characters; both sides are short keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().take(128).enumerate() {
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
    use serde_json::json;

    fn names() -> Names<'static> {
        Names {
            fields: vec!["name", "email", "reason"],
        }
    }

    #[test]
    fn workflow_names() {
        let n = names();
        for ok in [
            "{{fields.name}} {{data.anything.deep}} {{workflow.state}} {{vars.x}}",
            "{{contact.name}} {{channel}} {{now.hour}}",
        ] {
            assert_eq!(n.check_template(ok), Ok(()), "{ok}");
        }
        let err = n.check_template("{{fields.emial}}").unwrap_err();
        assert!(err.contains("did you mean `fields.email`"), "{err}");
        assert!(err.contains("its fields: name, email, reason"), "{err}");
        let err = n.check_template("{{fields}}").unwrap_err();
        assert!(err.contains("fields.<field>"), "{err}");
        let err = n.check_template("{{fields.name.first}}").unwrap_err();
        assert!(err.contains("single value"), "{err}");
        assert!(n.check_template("{{workflow.version}}").is_err());
        assert!(n.check_template("{{customer}}").is_err());
        assert!(
            n.check_template("{{x")
                .unwrap_err()
                .contains("unterminated")
        );
        assert_eq!(
            n.check_condition(r#""email" in fields && data.x == 1"#),
            Ok(())
        );
        assert!(
            n.check_condition("fields.nmae == 'x'")
                .unwrap_err()
                .contains("fields.name")
        );
        assert!(
            n.check_condition("1 +")
                .unwrap_err()
                .contains("invalid condition")
        );
    }

    #[test]
    fn unset_names_read_as_null() {
        let mut vars = Vars::new();
        vars.set("contact.name", "Ana");
        let c = Condition::compile("vars.lead_id == null && fields.email == null").unwrap();
        assert_eq!(eval(&c, &vars), Ok(true));
        vars.set("vars.lead_id", "L1");
        assert_eq!(eval(&c, &vars), Ok(false));
        let has = Condition::compile("has(vars.plan)").unwrap();
        assert_eq!(eval(&has, &vars), Ok(false));
        let deep = Condition::compile("data.a.b == 1").unwrap();
        assert!(eval(&deep, &vars).is_err());
        let mut v = Vars::new();
        v.set("data.a", json!({"b": 1}));
        assert_eq!(eval(&deep, &v), Ok(true));
    }
}
