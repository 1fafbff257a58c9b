//! Reading YAML written by users, safely: YAML aliases (`*name`) repeat an
//! anchored node (`&name`) without repeating its text, so a small document
//! can stand for a huge one, and the parser keeps every node in memory
//! before any value is built. Callers check a document with `separators`
//! and `expands_within` before deserialising it; `locate` finds where a
//! path is in a document, for error messages. Shared by rule documents
//! (`integro-store`) and workflow definitions (`workflow::source`).

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// How many times its own length a document may expand to through aliases
/// (one unit per node and per byte of text). A document without aliases
/// expands to at most about twice its length (an escape such as `\L` is 2
/// bytes that decode to 3; `{a, b}` holds 4 nodes), so this never refuses
/// one.
pub const MAX_EXPANSION: usize = 4;
/// Added to the allowance so tiny documents are never refused.
pub const EXPANSION_SLACK: usize = 4096;
/// The most separators (`,` `:` `-` `[` `{`) a document may hold: a node
/// needs one, so counting them bounds the parser's memory (a hundred bytes
/// and more a node) before it runs (ADR 0007).
pub const MAX_SEPARATORS: usize = 20_000;

/// What a document of `len` bytes may expand to.
pub fn allowance(len: usize) -> usize {
    len.saturating_mul(MAX_EXPANSION)
        .saturating_add(EXPANSION_SLACK)
}

/// The separators in `text`: a bound on its nodes.
pub fn separators(text: &str) -> usize {
    text.bytes()
        .filter(|b| matches!(b, b',' | b':' | b'-' | b'[' | b'{'))
        .count()
}

/// Whether `text`, walked without building values (one unit per node and
/// per byte of text, aliases followed), stays within `allowed` units. The
/// walk itself stops once they are spent; other problems are left for the
/// real parse to report.
pub fn expands_within(text: &str, allowed: usize) -> bool {
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
    !exceeded.get()
}

pub(crate) fn to_u32(n: usize) -> Option<u32> {
    u32::try_from(n).ok()
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
/// (see [`expands_within`]); with a target, it follows the path and stops
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
}
