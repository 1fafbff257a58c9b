//! Text normalisation shared by matching, templating and the LLM path.
//!
//! Users type "Preço", "preco" and "PREÇO" for the same thing, so rule
//! matching compares a *folded* form (case- and accent-insensitive). Inbound
//! text is also untrusted: control and bidi-override characters can hide or
//! reorder content in replies and prompts, so [`sanitize_input`] removes them.

use unicode_normalization::char::{canonical_combining_class, decompose_canonical};

/// Case- and accent-insensitive form of `s`: "Ação" → "acao", "HÉLLO" → "hello".
///
/// The text is canonically decomposed (NFD), the combining marks that the
/// decomposition separates out (accents, cedillas, tildes: every character
/// with a non-zero canonical combining class) are dropped, and the rest is
/// lowercased. Marks with combining class 0 (such as Indic vowel signs, which
/// change the meaning of a word) are kept. "Straße" becomes "straße".
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_chars(s, |c| out.push(c));
    out
}

/// Calls `emit` with each character of the folded form of `s`.
///
/// Decomposing character by character is equivalent to full NFD here:
/// NFD differs only in reordering combining marks, and every mark it would
/// reorder (non-zero combining class) is dropped anyway.
fn fold_chars(s: &str, mut emit: impl FnMut(char)) {
    let mut push_lower = |c: char| {
        if c.is_ascii() {
            emit(c.to_ascii_lowercase());
        } else if canonical_combining_class(c) == 0 {
            for l in c.to_lowercase() {
                // Lowercasing "İ" yields "i" + U+0307; drop such marks too.
                if l.is_ascii() || canonical_combining_class(l) == 0 {
                    emit(l);
                }
            }
        }
    };
    for c in s.chars() {
        if c.is_ascii() {
            push_lower(c);
        } else {
            decompose_canonical(c, &mut push_lower);
        }
    }
}

/// Folds `s` (see [`fold`]), collapses every run of whitespace into one space
/// and trims both ends, writing into `out` (cleared first).
///
/// This is the form rule patterns and inbound messages are compared in, so
/// "opening   hours" and "Opening hours" are the same text.
pub(crate) fn normalize_into(s: &str, out: &mut String) {
    out.clear();
    out.reserve(s.len());
    let mut pending_space = false;
    fold_chars(s, |c| {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    });
}

/// [`normalize_into`] returning a new string.
pub(crate) fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    normalize_into(s, &mut out);
    out
}

/// Characters that may open a sentence without changing its meaning
/// (Spanish inverted marks) and are ignored at the start for `exact` and
/// `starts_with` matching.
fn is_leading_mark(c: char) -> bool {
    matches!(c, '¡' | '¿' | ' ')
}

/// Characters ignored at the end of a message for `exact` matching.
fn is_trailing_mark(c: char) -> bool {
    matches!(c, '.' | ',' | '!' | '?' | '¡' | '¿' | '…' | ' ')
}

/// Byte offset in a normalised text where its content starts, after any
/// leading "¡" / "¿".
pub(crate) fn content_start(normalized: &str) -> usize {
    normalized.len() - normalized.trim_start_matches(is_leading_mark).len()
}

/// A normalised text without its leading "¡" / "¿": the form `starts_with`
/// patterns are stored in.
pub(crate) fn strip_leading_marks(normalized: &str) -> &str {
    &normalized[content_start(normalized)..]
}

/// The part of a normalised text compared by `exact` rules: leading "¡¿"
/// and trailing punctuation (".,!?¡¿…") removed. Borrowed, no allocation.
pub(crate) fn exact_form(normalized: &str) -> &str {
    normalized
        .trim_start_matches(is_leading_mark)
        .trim_end_matches(is_trailing_mark)
}

/// Zero-width characters and bidirectional overrides/isolates: invisible,
/// and able to disguise or reorder text shown to agents or sent to the LLM.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// Cleans untrusted inbound text before templating and before the LLM.
///
/// Removes control characters except `\n` and `\t` (`\r\n` and a lone `\r`
/// become `\n`), removes zero-width and bidi-override characters, trims,
/// and keeps at most `max_chars` characters (cut on a character boundary,
/// then trimmed again so no dangling whitespace remains).
pub fn sanitize_input(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(4)));
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() || is_invisible_format(c) => {}
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    let end = trimmed
        .char_indices()
        .nth(max_chars)
        .map_or(trimmed.len(), |(i, _)| i);
    trimmed[..end].trim_end().to_string()
}

/// At most `max` characters of `s`, with "…" appended when cut. For error
/// messages and traces that quote user input.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// Whether `c` takes part in whole-word matching. Letters and digits do,
/// except those of scripts written without spaces between words (CJK,
/// kana, Thai, Lao, Khmer, Myanmar, and Korean, whose particles attach to
/// words), where a word boundary cannot be seen
/// and any occurrence must count.
pub(crate) fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    if !c.is_alphanumeric() {
        return false;
    }
    !matches!(c,
        '\u{0E00}'..='\u{0EFF}'   // Thai, Lao
        | '\u{1000}'..='\u{109F}' // Myanmar
        | '\u{1780}'..='\u{17FF}' // Khmer
        | '\u{2E80}'..='\u{2FDF}' // CJK radicals
        | '\u{3040}'..='\u{30FF}' // Hiragana, Katakana
        | '\u{3100}'..='\u{31FF}' // Bopomofo etc.
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{4E00}'..='\u{9FFF}' // CJK unified
        // Korean is spaced, but particles attach to words ("가격은"); folded
        // text holds Hangul as conjoining jamo.
        | '\u{1100}'..='\u{11FF}'
        | '\u{A960}'..='\u{A97F}'
        | '\u{AC00}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FF66}'..='\u{FF9F}' // half-width kana
        | '\u{20000}'..='\u{3FFFF}')
}

/// Whether `haystack[start..end]` is a whole-word occurrence: at each end,
/// the match edge and its neighbour are not both word characters. `start`
/// and `end` must be character boundaries (matches of valid UTF-8 patterns
/// in valid UTF-8 text always are); if not, the answer is `false`.
pub(crate) fn at_word_boundaries(haystack: &str, start: usize, end: usize) -> bool {
    let (Some(before), Some(inside), Some(after)) = (
        haystack.get(..start),
        haystack.get(start..end),
        haystack.get(end..),
    ) else {
        return false;
    };
    let (Some(first), Some(last)) = (inside.chars().next(), inside.chars().next_back()) else {
        return false;
    };
    let start_ok = !(is_word_char(first) && before.chars().next_back().is_some_and(is_word_char));
    let end_ok = !(is_word_char(last) && after.chars().next().is_some_and(is_word_char));
    start_ok && end_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_removes_case_and_accents() {
        assert_eq!(fold("Ação"), "acao");
        assert_eq!(fold("HÉLLO"), "hello");
        assert_eq!(fold("Preço"), "preco");
        assert_eq!(fold("Straße"), "straße");
        assert_eq!(fold("ÑANDÚ"), "nandu");
        assert_eq!(fold("İstanbul"), "istanbul");
        assert_eq!(fold("plain ascii 123"), "plain ascii 123");
        assert_eq!(fold(""), "");
        // Already decomposed input folds the same as precomposed.
        assert_eq!(fold("e\u{0301}"), "e");
        // Emoji and CJK survive.
        assert_eq!(fold("Olá 👋 你好"), "ola 👋 你好");
    }

    #[test]
    fn fold_matches_full_nfd_reference() {
        use unicode_normalization::UnicodeNormalization;
        let reference = |s: &str| -> String {
            s.nfd()
                .filter(|&c| canonical_combining_class(c) == 0)
                .flat_map(char::to_lowercase)
                .filter(|&c| canonical_combining_class(c) == 0)
                .collect()
        };
        for s in [
            "Ação É ñ Ü ß İ ǅ Ω ὰ",
            "e\u{301}\u{327}a\u{308}\u{301}",
            "\u{1E69}\u{323}\u{307} ḍ̇",
            "한국어 日本語 ひらがな が",
            "Ελληνικά Ά ΐ",
            "русский Й ё",
            "עִבְרִית",
            "👋🏽 👨\u{200D}👩",
        ] {
            assert_eq!(fold(s), reference(s), "{s}");
        }
    }

    #[test]
    fn normalize_collapses_whitespace() {
        assert_eq!(normalize("  Opening \t\n  HOURS  "), "opening hours");
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("   "), "");
        assert_eq!(normalize("a"), "a");
    }

    #[test]
    fn exact_form_strips_punctuation() {
        assert_eq!(exact_form("hello!!!"), "hello");
        assert_eq!(exact_form("¿precio?"), "precio");
        assert_eq!(exact_form("ok. "), "ok");
        assert_eq!(exact_form("what's up?"), "what's up");
        assert_eq!(exact_form("?!"), "");
        assert_eq!(content_start("¿ precio"), "¿ ".len());
        assert_eq!(content_start("precio"), 0);
    }

    #[test]
    fn sanitize_strips_controls_and_bidi() {
        assert_eq!(sanitize_input("  hi\u{0}\u{7}there  ", 100), "hithere");
        assert_eq!(sanitize_input("a\r\nb\rc\td", 100), "a\nb\nc\td");
        assert_eq!(
            sanitize_input("pa\u{202E}yp\u{200B}al\u{FEFF}", 100),
            "paypal"
        );
        assert_eq!(sanitize_input("x\u{2066}y\u{2069}z\u{200F}", 100), "xyz");
        assert_eq!(sanitize_input("\u{1b}[31mred", 100), "[31mred");
        assert_eq!(sanitize_input("", 10), "");
        assert_eq!(sanitize_input("\u{0}\u{200B} \n", 10), "");
    }

    #[test]
    fn sanitize_caps_on_char_boundary() {
        assert_eq!(sanitize_input("ação", 2), "aç");
        assert_eq!(sanitize_input("👋👋👋", 2), "👋👋");
        assert_eq!(sanitize_input("abc", 3), "abc");
        assert_eq!(sanitize_input("abc", 0), "");
        // A cut that lands after a space does not leave it dangling.
        assert_eq!(sanitize_input("ab cd", 3), "ab");
        assert_eq!(sanitize_input("ab", usize::MAX), "ab");
    }

    #[test]
    fn truncate_chars_cuts_on_boundaries() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "abc…");
        assert_eq!(truncate_chars("ççç", 1), "ç…");
        assert_eq!(truncate_chars("", 0), "");
    }

    #[test]
    fn word_boundaries() {
        let t = "this is oh, hi!";
        let hi = t.rfind("hi").unwrap();
        assert!(at_word_boundaries(t, hi, hi + 2));
        let in_this = t.find("hi").unwrap();
        assert!(!at_word_boundaries(t, in_this, in_this + 2));
        assert!(at_word_boundaries("hi", 0, 2));
        assert!(!at_word_boundaries("hi", 0, 0));
        // Not a char boundary: false, no panic.
        assert!(!at_word_boundaries("ção", 1, 2));
        assert!(!at_word_boundaries("abc", 2, 9));
        // Accented neighbours count as letters.
        let t = "cafés";
        assert!(!at_word_boundaries(t, 0, 4));
        // Scripts without spaces always match.
        let t = "这个价格多少";
        let p = t.find("价格").unwrap();
        assert!(at_word_boundaries(t, p, p + "价格".len()));
        // A pattern edge that is punctuation needs no boundary.
        let t = "abc#promo";
        assert!(at_word_boundaries(t, 3, t.len()));
    }
}
