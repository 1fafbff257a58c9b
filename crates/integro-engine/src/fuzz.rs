//! Pseudo-random inputs through every entry point that takes untrusted
//! text: nothing may panic and every length limit must hold. A fixed-seed
//! LCG keeps runs reproducible without extra dependencies.

use crate::condition::Condition;
use crate::filters::{blocked_phrase, clean_reply, split_for_limit};
use crate::rules::{MatchKind, RuleSet, RuleSpec, validate};
use crate::template::{Vars, check, render};
use crate::text::{fold, sanitize_input};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn string(&mut self, max_pieces: usize) -> String {
        const PIECES: &[&str] = &[
            "a",
            "b",
            "hi",
            "price",
            "preço",
            "Ação",
            " ",
            "  ",
            ".",
            "!",
            "?",
            "¿",
            "¡",
            ",",
            "\n",
            "\r",
            "\r\n",
            "\t",
            "\u{0}",
            "\u{7}",
            "\u{1b}",
            "{{",
            "}}",
            "{",
            "}",
            "{{a}}",
            "{{ contact.name }}",
            "{{x.",
            "é",
            "e\u{301}",
            "\u{301}",
            "👋",
            "👨\u{200D}👩",
            "\u{200D}",
            "\u{FE0F}",
            "\u{202E}",
            "\u{200B}",
            "\u{FEFF}",
            "价格",
            "ß",
            "İ",
            "(",
            ")",
            "[",
            "]",
            "\\",
            "*",
            "+",
            "|",
            "^",
            "$",
            "&&",
            "||",
            "==",
            "\"",
            "'",
            "order",
            "123",
            "…",
            "。",
        ];
        let n = self.below(max_pieces + 1);
        (0..n).map(|_| PIECES[self.below(PIECES.len())]).collect()
    }
}

fn n(s: &str) -> usize {
    s.chars().count()
}

#[test]
fn text_functions_never_panic_and_respect_limits() {
    let mut rng = Lcg(42);
    let mut vars = Vars::new();
    vars.set("contact.name", "Ana {{a}}");
    vars.set("a", "A");
    for _ in 0..4000 {
        let s = rng.string(40);
        let max = rng.below(20);

        let clean = sanitize_input(&s, max);
        assert!(n(&clean) <= max, "{s:?} -> {clean:?}");
        assert!(
            !clean
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        );
        assert!(!clean.contains('\u{202E}') && !clean.contains('\u{200B}'));

        let rendered = render(&s, &vars);
        // Each placeholder expands to at most the longest value.
        assert!(rendered.len() <= s.len() * "Ana {{a}}".len());
        let _ = check(&s);
        let _ = fold(&s);
        let _ = clean_reply(&s);
        let _ = blocked_phrase(&s, &[rng.string(3)]);

        let parts = split_for_limit(&s, max);
        for p in &parts {
            assert!(!p.is_empty());
            if max > 0 {
                assert!(n(p) <= max, "{s:?} max {max} -> {parts:?}");
            }
        }
        let kept: usize = parts.iter().map(|p| n(p)).sum();
        assert!(kept <= n(&s));
    }
}

#[test]
fn conditions_never_panic() {
    let mut rng = Lcg(7);
    let mut vars = Vars::new();
    vars.set("contact.name", "Ana");
    vars.set("now.hour", 3);
    const ATOMS: &[&str] = &[
        "contact.name",
        "now.hour",
        "1",
        "\"x\"",
        "==",
        "&&",
        "||",
        "!",
        "(",
        ")",
        "[",
        "]",
        ".size()",
        ".startsWith(",
        "in",
        ",",
        "+",
        "-",
        "/",
        "%",
        "0",
        "true",
        "null",
        ".all(x,",
        "x",
        ">",
        "{",
        "}",
        ":",
        "'",
        "1u",
        "2.5",
        "has(",
        "?",
        "matches(",
        "\"(\"",
    ];
    for _ in 0..400 {
        let src: String = (0..rng.below(12) + 1)
            .map(|_| ATOMS[rng.below(ATOMS.len())])
            .collect::<Vec<_>>()
            .join(" ");
        if let Ok(c) = Condition::compile(&src) {
            let _ = c.eval(&vars);
        }
    }
}

#[test]
fn rule_matching_never_panics() {
    let mut rng = Lcg(1234);
    const KINDS: [MatchKind; 5] = [
        MatchKind::Contains,
        MatchKind::Exact,
        MatchKind::StartsWith,
        MatchKind::AnyKeyword,
        MatchKind::Regex,
    ];
    let mut specs = Vec::new();
    for i in 0..300u128 {
        let kind = KINDS[rng.below(KINDS.len())];
        let spec = RuleSpec {
            id: uuid::Uuid::from_u128(i),
            priority: rng.below(5) as i64,
            match_kind: kind,
            pattern: Some(rng.string(4)),
            keywords: (0..rng.below(4)).map(|_| rng.string(3)).collect(),
            condition: (rng.below(10) == 0).then(|| "contact.name == \"Ana\"".to_string()),
            reply: Some(rng.string(6)),
            media_url: None,
            action: None,
            active: true,
        };
        // Random rules are often invalid; keep the valid ones.
        if validate(&spec).is_ok() {
            specs.push(spec);
        }
    }
    assert!(specs.len() > 50, "only {} valid random rules", specs.len());
    let set = RuleSet::compile(specs).expect("valid rules compile together");
    let mut vars = Vars::new();
    vars.set("contact.name", "Ana");
    let mut matched = 0;
    for _ in 0..3000 {
        let text = rng.string(30);
        let m = set.find(&text, &vars);
        assert!(!m.trace.is_empty());
        assert_eq!(m.rule, set.find_rule(&text, &vars));
        matched += usize::from(m.rule.is_some());
    }
    assert!(matched > 0);
}
