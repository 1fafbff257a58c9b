//! Reading a definition's text: bounded, with errors that say where.
//!
//! The text is untrusted and up to [`MAX_DEFINITION_BYTES`] long. As for
//! rule documents in `integro-store`, the YAML parser keeps every node in
//! memory before any value is built and aliases (`*name`) can stand for
//! far more text than they take, so separators are counted and aliases
//! expanded on a budget before anything is built. Type errors carry the
//! path (from `serde_path_to_error`) and the parser's line and column;
//! problems found later are mapped back to a line and column by walking
//! the document to their path ([`locate`]).

use super::{Definition, MAX_DEFINITION_BYTES, Problem};
use crate::yaml::{self, locate, to_u32};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Each walk of [`locate`] parses the whole text again (the parser gives
/// positions only with errors), so locating stops after this many bytes
/// of parsing: about 16 walks of a definition of the largest size.
const LOCATE_BUDGET_BYTES: usize = 4 << 20;

impl Definition {
    /// Parses a YAML definition (JSON is YAML too, but see
    /// [`Definition::parse_json`] for exact JSON positions). Only the shape
    /// is checked; call [`Definition::validate`] (or use
    /// [`Definition::load_yaml`]) for the rest.
    pub fn parse_yaml(text: &str) -> Result<Definition, Vec<Problem>> {
        within_size(text)?;
        expansion_within(text, yaml::allowance(text.len()))?;
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(text))
        }))
        .map_err(|_| vec![Problem::new("", "the document could not be read as YAML")])?;
        parsed.map_err(|e| {
            let path = path_string(e.path());
            let inner = e.into_inner();
            let location = inner.location();
            let (line, column) = location
                .as_ref()
                .map_or((None, None), |l| (to_u32(l.line()), to_u32(l.column())));
            let mut message = inner.to_string();
            if let Some(l) = location {
                let suffix = format!(" at line {} column {}", l.line(), l.column());
                if let Some(stripped) = message.strip_suffix(&suffix) {
                    message = stripped.to_string();
                }
            }
            vec![problem_from_parser(path, message, line, column)]
        })
    }

    /// Parses a JSON definition; see [`Definition::parse_yaml`].
    pub fn parse_json(text: &str) -> Result<Definition, Vec<Problem>> {
        within_size(text)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| (path_string(e.path()), e.into_inner()))
            .and_then(|d| de.end().map(|()| d).map_err(|e| (String::new(), e)));
        parsed.map_err(|(path, inner)| {
            let (line, column) = (to_u32(inner.line()), to_u32(inner.column()));
            let mut message = inner.to_string();
            let suffix = format!(" at line {} column {}", inner.line(), inner.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_string();
            }
            let line = line.filter(|l| *l > 0);
            vec![problem_from_parser(
                path,
                message,
                line,
                column.filter(|_| line.is_some()),
            )]
        })
    }

    /// [`Definition::parse_yaml`] then [`Definition::validate`], with each
    /// problem's line and column found in `text`.
    pub fn load_yaml(text: &str) -> Result<Definition, Vec<Problem>> {
        let definition = Definition::parse_yaml(text)?;
        checked(definition, text)
    }

    /// [`Definition::parse_json`] then [`Definition::validate`], with lines
    /// and columns.
    pub fn load_json(text: &str) -> Result<Definition, Vec<Problem>> {
        let definition = Definition::parse_json(text)?;
        checked(definition, text)
    }
}

fn checked(definition: Definition, text: &str) -> Result<Definition, Vec<Problem>> {
    match definition.validate() {
        Ok(()) => Ok(definition),
        Err(mut problems) => {
            locate_all(&mut problems, text);
            Err(problems)
        }
    }
}

/// Fills in the line and column of problems that have none, by walking
/// `text` (YAML or JSON) to each path. A path that is not in the text (a
/// missing entry, or `on.go.to` written in short as `go: b`) points at its
/// nearest ancestor that is.
pub fn locate_all(problems: &mut [Problem], text: &str) {
    if text.len() > MAX_DEFINITION_BYTES || !yaml::expands_within(text, yaml::allowance(text.len()))
    {
        return;
    }
    let mut walks = LOCATE_BUDGET_BYTES / text.len().max(1);
    for problem in problems.iter_mut().filter(|p| p.line.is_none()) {
        let mut path = problem.path.as_str();
        while !path.is_empty() && walks > 0 {
            walks -= 1;
            if let Some((line, column)) = locate(text, path) {
                problem.line = Some(line);
                problem.column = Some(column);
                break;
            }
            path = path.rfind(['.', '[']).map_or("", |at| &path[..at]);
        }
    }
}

/// The parser's message without its own copy of the path (yaml_serde
/// starts messages with it).
fn problem_from_parser(
    path: String,
    message: String,
    line: Option<u32>,
    column: Option<u32>,
) -> Problem {
    // yaml_serde names the map an unknown key is in: strip the path or any
    // of its ancestors.
    let mut prefix = path.as_str();
    let mut message = message;
    loop {
        if let Some(rest) = message.strip_prefix(&format!("{prefix}: ")) {
            message = rest.to_string();
            break;
        }
        match prefix.rfind(['.', '[']) {
            Some(at) => prefix = &prefix[..at],
            None => break,
        }
    }
    let message = crate::text::truncate_chars(&message, 500);
    Problem {
        path,
        line,
        column,
        message,
    }
}

/// `states.qualified.on[0]` style, the same as [`Problem::path`] everywhere.
fn path_string(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

fn within_size(text: &str) -> Result<(), Vec<Problem>> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(vec![Problem::new(
            "",
            format!(
                "the definition is too long ({} bytes, at most {MAX_DEFINITION_BYTES})",
                text.len()
            ),
        )]);
    }
    let separators = yaml::separators(text);
    if separators > yaml::MAX_SEPARATORS {
        return Err(vec![Problem::new(
            "",
            format!(
                "the definition has too many entries ({separators} separators, at most \
                 {})",
                yaml::MAX_SEPARATORS
            ),
        )]);
    }
    Ok(())
}

/// Refuses `text` when its aliases expand it past `allowed` units
/// (`yaml::expands_within`).
fn expansion_within(text: &str, allowed: usize) -> Result<(), Vec<Problem>> {
    if yaml::expands_within(text, allowed) {
        return Ok(());
    }
    Err(vec![Problem::new(
        "",
        format!(
            "the definition repeats content through YAML aliases (*name) so much that it \
             would grow to more than {} times its size: write it out in full",
            yaml::MAX_EXPANSION
        ),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::MAX_SEPARATORS as MAX_YAML_SEPARATORS;

    #[test]
    fn alias_bombs_and_huge_texts_are_refused() {
        let mut yaml = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        for (name, prev) in ["b", "c", "d", "e", "f", "g"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f"])
        {
            let items = vec![format!("*{prev}"); 9].join(",");
            yaml.push_str(&format!("{name}: &{name} [{items}]\n"));
        }
        let err = Definition::parse_yaml(&yaml).unwrap_err();
        assert!(err[0].message.contains("aliases"), "{err:?}");
        let big = "x".repeat(MAX_DEFINITION_BYTES + 1);
        assert!(
            Definition::parse_yaml(&big).unwrap_err()[0]
                .message
                .contains("too long")
        );
        assert!(
            Definition::parse_json(&big).unwrap_err()[0]
                .message
                .contains("too long")
        );
        let dense = "[".to_string() + &"a,".repeat(MAX_YAML_SEPARATORS) + "]";
        assert!(
            Definition::parse_yaml(&dense).unwrap_err()[0]
                .message
                .contains("too many")
        );
    }
}
