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
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The most separators (`,` `:` `-` `[` `{`) a definition may hold: a
/// bound on the parser's node count, and so its memory, known before it
/// runs. A full definition of a hundred states stays well below.
pub const MAX_YAML_SEPARATORS: usize = 20_000;

/// How many times its own length a YAML document may expand to through
/// aliases (one unit per node and per byte of text).
const MAX_YAML_EXPANSION: usize = 4;
/// Added to the allowance so tiny documents are never refused.
const YAML_EXPANSION_SLACK: usize = 4096;

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
        let allowed = text
            .len()
            .saturating_mul(MAX_YAML_EXPANSION)
            .saturating_add(YAML_EXPANSION_SLACK);
        expansion_within(text, allowed)?;
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
    if text.len() > MAX_DEFINITION_BYTES || expansion_within(text, text.len() * 4 + 4096).is_err() {
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

fn to_u32(n: usize) -> Option<u32> {
    u32::try_from(n).ok()
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
    let separators = text
        .bytes()
        .filter(|b| matches!(b, b',' | b':' | b'-' | b'[' | b'{'))
        .count();
    if separators > MAX_YAML_SEPARATORS {
        return Err(vec![Problem::new(
            "",
            format!(
                "the definition has too many entries ({separators} separators, at most \
                 {MAX_YAML_SEPARATORS})"
            ),
        )]);
    }
    Ok(())
}

/// Walks `text` without building values, one unit per node and per byte of
/// text with aliases followed, and refuses it past `allowed` units. Other
/// problems are left for the real parse to report.
fn expansion_within(text: &str, allowed: usize) -> Result<(), Vec<Problem>> {
    let left = Cell::new(allowed);
    let exceeded = Cell::new(false);
    let walk = Walk {
        target: &[],
        budget: Some((&left, &exceeded)),
        found: None,
    };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        walk.deserialize(yaml_serde::Deserializer::from_str(text))
    }));
    if exceeded.get() {
        return Err(vec![Problem::new(
            "",
            format!(
                "the definition repeats content through YAML aliases (*name) so much that it \
                 would grow to more than {MAX_YAML_EXPANSION} times its size: write it out in full"
            ),
        )]);
    }
    Ok(())
}

/// One step of a problem path.
#[derive(Debug, PartialEq)]
enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

/// `states.a.timers[1].after` → `states`, `a`, `timers`, 1, `after`.
fn segments(path: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']')?;
            out.push(Segment::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
            if !after.is_empty() && !after.starts_with('[') {
                return None;
            }
        }
    }
    Some(out)
}

/// The 1-based line and column of the node at `path` in `text`: the key
/// for a map entry, the item for a list entry.
pub fn locate(text: &str, path: &str) -> Option<(u32, u32)> {
    let target = segments(path)?;
    if target.is_empty() {
        return None;
    }
    let found = Cell::new(false);
    let walk = Walk {
        target: &target,
        budget: None,
        found: Some(&found),
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        walk.deserialize(yaml_serde::Deserializer::from_str(text))
    }))
    .ok()?;
    let error = result.err()?;
    if !found.get() {
        return None;
    }
    let location = error.location()?;
    Some((to_u32(location.line())?, to_u32(location.column())?))
}

/// A visitor that walks YAML without building it: with a budget, it counts
/// (see [`expansion_within`]); with a target, it follows the path and stops
/// with an error at the target node, whose position the parser attaches.
#[derive(Clone, Copy)]
struct Walk<'a, 'p> {
    target: &'a [Segment<'p>],
    budget: Option<(&'a Cell<usize>, &'a Cell<bool>)>,
    found: Option<&'a Cell<bool>>,
}

impl Walk<'_, '_> {
    fn spend<E: serde::de::Error>(self, units: usize) -> Result<(), E> {
        let Some((left, exceeded)) = self.budget else {
            return Ok(());
        };
        match left.get().checked_sub(units) {
            Some(rest) => {
                left.set(rest);
                Ok(())
            }
            None => {
                exceeded.set(true);
                Err(E::custom("the document expands too much"))
            }
        }
    }

    /// At the target (a locating walk with no path left): stop here.
    fn arrive<E: serde::de::Error>(self) -> Result<(), E> {
        match self.found {
            Some(found) if self.target.is_empty() => {
                found.set(true);
                Err(E::custom("found"))
            }
            _ => Ok(()),
        }
    }

    fn scalar<E: serde::de::Error>(self, units: usize) -> Result<(), E> {
        self.arrive()?;
        self.spend(units)
    }

    /// Where the walk goes below this node: `None` to skip the subtree.
    fn child(self, segment: &Segment<'_>) -> Option<Self> {
        if self.found.is_none() {
            return Some(self);
        }
        match self.target.split_first() {
            Some((first, rest)) if first == segment => Some(Walk {
                target: rest,
                ..self
            }),
            _ => None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key on a locating walk: stops at the key when it is the target.
struct Key<'a, 'p> {
    walk: Walk<'a, 'p>,
    key: Option<String>,
}

impl<'de> DeserializeSeed<'de> for &mut Key<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Key<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.walk.spend(v.len().saturating_add(1))?;
        if self.walk.found.is_some()
            && self.walk.target.len() == 1
            && self.walk.target.first() == Some(&Segment::Key(v))
        {
            return Walk {
                target: &[],
                ..self.walk
            }
            .arrive();
        }
        self.key = Some(v.to_string());
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.visit_str(if v { "true" } else { "false" })
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_str("")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self.walk_all())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let all = self.walk_all();
        while map.next_key_seed(all)?.is_some() {
            map.next_value_seed(all)?;
        }
        Ok(())
    }
}

impl<'a, 'p> Key<'a, 'p> {
    /// A complex key is counted but never a target.
    fn walk_all(&self) -> Walk<'a, 'p> {
        Walk {
            target: &[],
            budget: self.walk.budget,
            found: None,
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar(1)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar(1)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar(1)
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<(), E> {
        self.scalar(1)
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<(), E> {
        self.scalar(1)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar(1)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v.len().saturating_add(1))
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.scalar(v.len().saturating_add(1))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar(1)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar(1)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.spend(1)?;
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.spend(1)?;
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.arrive()?;
        self.spend(1)?;
        let mut index = 0;
        loop {
            let more = match self.child(&Segment::Index(index)) {
                Some(walk) => seq.next_element_seed(walk)?,
                None => seq.next_element::<IgnoredAny>()?.map(|_| ()),
            };
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.arrive()?;
        self.spend(1)?;
        loop {
            let mut key = Key {
                walk: self,
                key: None,
            };
            if map.next_key_seed(&mut key)?.is_none() {
                return Ok(());
            }
            let child = key
                .key
                .as_deref()
                .and_then(|k| self.child(&Segment::Key(k)));
            match child {
                Some(walk) => map.next_value_seed(walk)?,
                None => map.next_value::<IgnoredAny>().map(|_| ())?,
            }
        }
    }

    /// A tagged node (`!tag value`).
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess as _;
        self.arrive()?;
        self.spend(1)?;
        let all = Walk {
            target: &[],
            found: None,
            ..self
        };
        let ((), variant) = data.variant_seed(all)?;
        variant.newtype_variant_seed(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "key: a\nstates:\n  first:\n    on: { go: second, back: { to: first } }\n    timers:\n      - after: PT1H\n        goto: second\n  second: { final: true }\n";

    #[test]
    fn locate_finds_keys_and_items() {
        assert_eq!(locate(DOC, "key"), Some((1, 1)));
        assert_eq!(locate(DOC, "states.first"), Some((3, 3)));
        assert_eq!(locate(DOC, "states.first.on.go"), Some((4, 11)));
        assert_eq!(locate(DOC, "states.first.on.back.to"), Some((4, 31)));
        assert_eq!(locate(DOC, "states.first.timers[0]"), Some((6, 9)));
        assert_eq!(locate(DOC, "states.first.timers[0].goto"), Some((7, 9)));
        assert_eq!(locate(DOC, "states.second.final"), Some((8, 13)));
        assert_eq!(locate(DOC, "states.third"), None);
        assert_eq!(locate(DOC, "states.first.timers[3]"), None);
        assert_eq!(locate(DOC, ""), None);
        assert_eq!(locate("{", "a"), None);
    }

    #[test]
    fn locate_works_on_json() {
        let json = "{\n  \"key\": \"a\",\n  \"states\": {\"s\": {\"final\": true}}\n}";
        assert_eq!(locate(json, "states.s.final"), Some((3, 20)));
    }

    #[test]
    fn segments_parse_paths() {
        assert_eq!(
            segments("a.b[2][3].c"),
            Some(vec![
                Segment::Key("a"),
                Segment::Key("b"),
                Segment::Index(2),
                Segment::Index(3),
                Segment::Key("c")
            ])
        );
        assert_eq!(segments("a[x]"), None);
        assert_eq!(segments("a[1]b"), None);
    }

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
