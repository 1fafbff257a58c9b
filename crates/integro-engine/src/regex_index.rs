//! Finding which of many regexes match a message, fast.
//!
//! A `RegexSet` of hundreds of user regexes is slow on real chat text: a
//! Unicode `\b` makes its DFA give up on any non-ASCII byte (accents,
//! emoji), leaving a PikeVM that steps every regex through every byte.
//! Most user regexes contain literal text that any match must begin (or
//! end) with, so this index runs one Aho-Corasick automaton over those
//! literals and then only the few regexes whose literals occur. Regexes
//! without usable literals share one `RegexSet`, run on every message.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use regex_syntax::hir::literal::{ExtractKind, Extractor, Literal, Seq};

/// Most literals one regex may contribute to the prefilter; beyond this
/// (say, a big alternation of case variants) it goes to the shared set.
const MAX_LITERALS_PER_REGEX: usize = 64;

/// Compiled regexes of a rule set, searchable together.
pub(crate) struct RegexIndex {
    /// Literal prefilter over the raw text, ignoring ASCII case; `None` if
    /// no regex has literals.
    prefilter: Option<AhoCorasick>,
    /// For prefilter pattern `i`, `prefiltered[ranges[i].0..ranges[i].1]`
    /// are the regexes (indices into `prefiltered_regexes`) it stands for.
    ranges: Vec<(u32, u32)>,
    targets: Vec<u32>,
    /// Regexes reached through the prefilter, with their rule.
    prefiltered_regexes: Vec<(Regex, u32)>,
    /// Regexes without literals, checked on every message.
    always: Option<RegexSet>,
    always_rules: Vec<u32>,
}

/// Why the index could not be built.
pub(crate) enum IndexError {
    /// The regexes together exceed the compiled size limit.
    TooBig,
    Other(String),
}

/// Most literals extracted before giving up; generous so that `(?i)`
/// words (2^n case variants) survive until they are folded back together.
const EXTRACT_LIMIT_TOTAL: usize = 4096;

/// The literals of `seq` lowercased (ASCII) and deduplicated, if `seq` is
/// finite, has no empty literal (which would match everywhere and prefilter
/// nothing) and few enough distinct literals remain.
fn usable(seq: &Seq) -> Option<Vec<Vec<u8>>> {
    let lits = seq.literals()?;
    if lits.iter().any(Literal::is_empty) {
        return None;
    }
    let mut out: Vec<Vec<u8>> = lits
        .iter()
        .map(|l| l.as_bytes().to_ascii_lowercase())
        .collect();
    out.sort_unstable();
    out.dedup();
    (out.len() <= MAX_LITERALS_PER_REGEX).then_some(out)
}

/// Literals one of which every match of `pattern` contains (compared
/// ignoring ASCII case), if a small, non-empty set can be proven.
fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let extract = |kind| {
        Extractor::new()
            .kind(kind)
            .limit_total(EXTRACT_LIMIT_TOTAL)
            .extract(&hir)
    };
    let prefix = usable(&extract(ExtractKind::Prefix));
    let suffix = usable(&extract(ExtractKind::Suffix));
    let shortest = |lits: &[Vec<u8>]| lits.iter().map(Vec::len).min().unwrap_or(usize::MAX);
    match (prefix, suffix) {
        (Some(p), Some(s)) if shortest(&s) > shortest(&p) => Some(s),
        (Some(p), _) => Some(p),
        (None, s) => s,
    }
}

impl RegexIndex {
    /// Builds the index for `(pattern, rule)` pairs. Each pattern is
    /// compiled with `size_limit`; the shared set with `set_size_limit`.
    pub(crate) fn build(
        regexes: Vec<(String, u32)>,
        size_limit: usize,
        set_size_limit: usize,
    ) -> Result<RegexIndex, IndexError> {
        let mut literal_ids: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut literal_targets: Vec<Vec<u32>> = Vec::new();
        let mut prefiltered_regexes = Vec::new();
        let mut always_patterns = Vec::new();
        let mut always_rules = Vec::new();
        // Bound the memory of all the regexes together: compiling them as
        // one set measures their total compiled size against the limit.
        if regexes.len() > 1 {
            RegexSetBuilder::new(regexes.iter().map(|(p, _)| p))
                .size_limit(set_size_limit)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => IndexError::TooBig,
                    e => IndexError::Other(e.to_string()),
                })?;
        }

        for (pattern, rule) in regexes {
            match required_literals(&pattern) {
                Some(lits) => {
                    let regex = RegexBuilder::new(&pattern)
                        .size_limit(size_limit)
                        .build()
                        .map_err(|e| match e {
                            regex::Error::CompiledTooBig(_) => IndexError::TooBig,
                            e => IndexError::Other(e.to_string()),
                        })?;
                    let index = prefiltered_regexes.len() as u32;
                    prefiltered_regexes.push((regex, rule));
                    for lit in lits {
                        let id = *literal_ids.entry(lit).or_insert_with_key(|lit| {
                            literals.push(lit.clone());
                            literal_targets.push(Vec::new());
                            literals.len() - 1
                        });
                        literal_targets[id].push(index);
                    }
                }
                None => {
                    always_patterns.push(pattern);
                    always_rules.push(rule);
                }
            }
        }

        let prefilter = if literals.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(aho_corasick::MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .build(&literals)
                    .map_err(|e| IndexError::Other(e.to_string()))?,
            )
        };
        let mut ranges = Vec::with_capacity(literal_targets.len());
        let mut targets = Vec::new();
        for list in literal_targets {
            let start = targets.len() as u32;
            targets.extend(list);
            ranges.push((start, targets.len() as u32));
        }

        let always = if always_patterns.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&always_patterns)
                    .size_limit(set_size_limit)
                    .build()
                    .map_err(|e| match e {
                        regex::Error::CompiledTooBig(_) => IndexError::TooBig,
                        e => IndexError::Other(e.to_string()),
                    })?,
            )
        };

        Ok(RegexIndex {
            prefilter,
            ranges,
            targets,
            prefiltered_regexes,
            always,
            always_rules,
        })
    }

    /// Pushes the rule of every regex that matches `text` (unordered, may
    /// repeat).
    pub(crate) fn matching_rules(&self, text: &str, out: &mut Vec<u32>) {
        if let Some(prefilter) = &self.prefilter
            && let Ok(matches) = prefilter.try_find_overlapping_iter(text.as_bytes())
        {
            // Literals found, then the regexes they stand for, once each.
            let mut found: Vec<u32> = matches.map(|m| m.pattern().as_u32()).collect();
            found.sort_unstable();
            found.dedup();
            let mut to_run: Vec<u32> = Vec::new();
            for id in found {
                if let Some(&(from, to)) = self.ranges.get(id as usize)
                    && let Some(targets) = self.targets.get(from as usize..to as usize)
                {
                    to_run.extend_from_slice(targets);
                }
            }
            to_run.sort_unstable();
            to_run.dedup();
            for index in to_run {
                if let Some((regex, rule)) = self.prefiltered_regexes.get(index as usize)
                    && regex.is_match(text)
                {
                    out.push(*rule);
                }
            }
        }
        if let Some(set) = &self.always {
            // `is_match` needs no allocation; only a hit pays for `matches`.
            if set.is_match(text) {
                out.extend(
                    set.matches(text)
                        .iter()
                        .filter_map(|i| self.always_rules.get(i).copied()),
                );
            }
        }
    }

    /// Number of regexes.
    pub(crate) fn len(&self) -> usize {
        self.prefiltered_regexes.len() + self.always_rules.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(patterns: &[&str]) -> RegexIndex {
        let regexes = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), i as u32))
            .collect();
        match RegexIndex::build(regexes, 1 << 20, 64 << 20) {
            Ok(index) => index,
            Err(_) => panic!("index builds"),
        }
    }

    fn rules(index: &RegexIndex, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        index.matching_rules(text, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn literals_are_found() {
        assert_eq!(required_literals("abc"), Some(vec![b"abc".to_vec()]));
        assert!(required_literals(r"(?i)cupom\s+\d+").is_some());
        // Suffix literals when there is no prefix.
        let lits = required_literals(r"\d+abc").unwrap();
        assert!(
            lits.iter()
                .all(|l| l.ends_with(b"abc") || b"abc".ends_with(l))
        );
        assert_eq!(
            required_literals(r"[0-9]+"),
            Some((b'0'..=b'9').map(|b| vec![b]).collect())
        );
        // Unicode \d has too many digits to list.
        assert_eq!(required_literals(r"\d+"), None);
        // Case variants collapse to one lowercase literal.
        assert_eq!(
            required_literals(r"(?i)\bZanflexmo\s*#?\d{3}\b"),
            Some(vec![b"zanflexmo".to_vec()])
        );
        assert_eq!(required_literals(r"\w+@\w+"), None);
        assert_eq!(required_literals(r"a*"), None);
        assert_eq!(required_literals(r"^$"), None);
    }

    #[test]
    fn prefiltered_and_shared_regexes_match() {
        let idx = index(&[
            r"(?i)\border\s*#?\d{4,}\b",
            r"\w+@\w+\.com",
            r"^$",
            r"(?i)(cupom|coupon|cupón)\s+x\d{2}",
            r"Preço",
            r"a*",
        ]);
        assert_eq!(idx.len(), 6);
        assert_eq!(rules(&idx, "Where is ORDER #12345, olá?"), vec![0, 5]);
        assert_eq!(rules(&idx, "mail ana@x.com"), vec![1, 5]);
        assert_eq!(rules(&idx, ""), vec![2, 5]);
        assert_eq!(rules(&idx, "meu CUPÓN x12 ç"), vec![3, 5]);
        assert_eq!(rules(&idx, "o Preço"), vec![4, 5]);
        assert_eq!(rules(&idx, "o preço"), vec![5]);
        // Overlapping literals of different regexes are all seen.
        let idx = index(&["abcd", "bc", "cde"]);
        assert_eq!(rules(&idx, "abcde"), vec![0, 1, 2]);
    }
}
