//! Last checks on an outgoing reply: blocked phrases, empty replies, and
//! splitting to fit each channel's message size limit.

use crate::text;
use unicode_normalization::char::is_combining_mark;

/// The first of `phrases` found anywhere in `text`, comparing folded forms
/// (case, accents and runs of whitespace ignored). A blocked phrase blocks
/// even inside a longer word: better to hold a reply than to leak it.
/// Empty phrases are ignored.
pub fn blocked_phrase<'a>(text: &str, phrases: &'a [String]) -> Option<&'a str> {
    if phrases.is_empty() {
        return None;
    }
    let haystack = text::normalize(text);
    phrases.iter().map(String::as_str).find(|phrase| {
        let needle = text::normalize(phrase);
        !needle.is_empty() && haystack.contains(&needle)
    })
}

/// Whether `c` cannot start a new part: it attaches to the character
/// before it (combining marks, zero-width joiner, variation selectors,
/// emoji skin tones), so cutting before it would break a visible glyph.
fn attaches_to_previous(c: char) -> bool {
    is_combining_mark(c)
        || matches!(c, '\u{200D}' | '\u{FE00}'..='\u{FE0F}' | '\u{1F3FB}'..='\u{1F3FF}' | '\u{E0020}'..='\u{E007F}')
}

/// Where to cut `rest` (which starts with a non-space) so the first part
/// has at most as many characters as fit before byte `limit`. Returns a
/// byte index in `1..=limit` on a character boundary.
fn cut_point(rest: &str, limit: usize) -> usize {
    let mut sentence_end = None;
    let mut space = None;
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if i >= limit {
            break;
        }
        let next = chars.peek().map(|&(_, n)| n);
        match c {
            '\n' if i > 0 => sentence_end = Some(i),
            '.' | '!' | '?' | '…' if next.is_none_or(char::is_whitespace) => {
                sentence_end = Some(i + c.len_utf8());
            }
            '。' | '！' | '？' => sentence_end = Some(i + c.len_utf8()),
            c if c.is_whitespace() && i > 0 => space = Some(i),
            _ => {}
        }
    }
    if let Some(cut) = sentence_end.or(space) {
        return cut;
    }
    // Hard cut, stepping back so a glyph made of several characters
    // (accent, emoji sequence) is not split, unless that would leave nothing.
    let mut cut = limit;
    while cut > 0 {
        let after = rest[cut..].chars().next();
        let before = rest[..cut].chars().next_back();
        if after.is_some_and(attaches_to_previous) || before == Some('\u{200D}') {
            cut -= before.map_or(1, char::len_utf8);
        } else {
            break;
        }
    }
    if cut == 0 { limit } else { cut }
}

/// Splits `text` into parts of at most `max_chars` characters, breaking at
/// the last sentence end (". ", "! ", "? ", a newline) within the limit,
/// else the last whitespace, else a hard cut between characters. Parts are
/// trimmed and empty parts dropped. `max_chars == 0` means no limit.
pub fn split_for_limit(text: &str, max_chars: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    if max_chars == 0 {
        if !rest.is_empty() {
            parts.push(rest.to_string());
        }
        return parts;
    }
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let Some((limit, _)) = rest.char_indices().nth(max_chars) else {
            parts.push(rest.trim_end().to_string());
            break;
        };
        let cut = cut_point(rest, limit);
        let part = rest[..cut].trim();
        if !part.is_empty() {
            parts.push(part.to_string());
        }
        rest = &rest[cut..];
    }
    parts
}

/// The longest message a channel accepts, in characters.
pub fn channel_limit(channel: &str) -> usize {
    match channel {
        // Twilio's body limit for WhatsApp messages.
        "twilio_whatsapp" => 1600,
        "whatsapp_cloud" => 4096,
        "instagram" => 1000,
        "x" => 10_000,
        "web" => 4096,
        _ => 4096,
    }
}

/// The reply trimmed of surrounding whitespace and control characters, or
/// `None` when nothing is left to send.
pub fn clean_reply(text: &str) -> Option<String> {
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> usize {
        s.chars().count()
    }

    fn phrases(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blocked_phrases_match_folded_substrings() {
        let list = phrases(&["", "  ", "Cartão de crédito", "secret"]);
        assert_eq!(
            blocked_phrase("Send your CARTAO  DE credito number", &list),
            Some("Cartão de crédito")
        );
        assert_eq!(blocked_phrase("topsecretstuff", &list), Some("secret"));
        assert_eq!(blocked_phrase("all good", &list), None);
        assert_eq!(blocked_phrase("anything", &[]), None);
        assert_eq!(blocked_phrase("", &list), None);
        assert_eq!(blocked_phrase("x", &phrases(&["", " "])), None);
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_for_limit("  hello  ", 10), vec!["hello"]);
        assert_eq!(split_for_limit("hello", 5), vec!["hello"]);
        assert!(split_for_limit("   ", 5).is_empty());
        assert!(split_for_limit("", 5).is_empty());
        assert_eq!(split_for_limit(" long text ", 0), vec!["long text"]);
    }

    #[test]
    fn splits_at_sentence_end() {
        let text = "First sentence here. Second one! Third?";
        assert_eq!(
            split_for_limit(text, 25),
            vec!["First sentence here.", "Second one! Third?"]
        );
        assert_eq!(
            split_for_limit(text, 33),
            vec!["First sentence here. Second one!", "Third?"]
        );
        // Punctuation exactly at the limit, its space just beyond.
        assert_eq!(
            split_for_limit("Hello there. Bye", 12),
            vec!["Hello there.", "Bye"]
        );
        assert_eq!(
            split_for_limit("line one\nline two", 12),
            vec!["line one", "line two"]
        );
        // "3.5" is not a sentence end.
        assert_eq!(
            split_for_limit("costs 3.50 dollars", 12),
            vec!["costs 3.50", "dollars"]
        );
        assert_eq!(
            split_for_limit("你好。再见。谢谢", 4),
            vec!["你好。", "再见。", "谢谢"]
        );
        assert_eq!(
            split_for_limit("你好。再见。谢谢", 6),
            vec!["你好。再见。", "谢谢"]
        );
    }

    #[test]
    fn splits_at_word_boundary() {
        assert_eq!(
            split_for_limit("one two three four", 9),
            vec!["one two", "three", "four"]
        );
        assert_eq!(split_for_limit("aaaa bbbb", 4), vec!["aaaa", "bbbb"]);
    }

    #[test]
    fn hard_cuts_long_words() {
        assert_eq!(split_for_limit("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(split_for_limit("abcdefghij", 1).len(), 10);
    }

    #[test]
    fn never_splits_multibyte_chars() {
        let parts = split_for_limit("çãõéíçãõéí", 3);
        assert_eq!(parts, vec!["çãõ", "éíç", "ãõé", "í"]);
        let parts = split_for_limit("👋👋👋👋👋", 2);
        assert_eq!(parts, vec!["👋👋", "👋👋", "👋"]);
        // Decomposed accents stay with their letter.
        let parts = split_for_limit("e\u{301}e\u{301}e\u{301}", 3);
        assert_eq!(parts, vec!["e\u{301}", "e\u{301}", "e\u{301}"]);
        // A ZWJ family emoji is not cut inside when it fits in a part.
        let family = "👨\u{200D}👩\u{200D}👧";
        let parts = split_for_limit(&format!("ab{family}"), 5);
        assert_eq!(parts, vec!["ab".to_string(), family.to_string()]);
    }

    #[test]
    fn parts_respect_limit_exactly() {
        let text = "word ".repeat(100);
        for max in [1, 2, 3, 4, 5, 6, 7, 50, 499, 500, 501] {
            let parts = split_for_limit(&text, max);
            assert!(
                parts.iter().all(|p| n(p) <= max && !p.is_empty()),
                "max {max}: {parts:?}"
            );
            assert_eq!(
                parts.concat().replace(' ', ""),
                text.replace(' ', ""),
                "max {max}"
            );
        }
    }

    #[test]
    fn channel_limits() {
        assert_eq!(channel_limit("twilio_whatsapp"), 1600);
        assert_eq!(channel_limit("whatsapp_cloud"), 4096);
        assert_eq!(channel_limit("instagram"), 1000);
        assert_eq!(channel_limit("x"), 10_000);
        assert_eq!(channel_limit("web"), 4096);
        assert_eq!(channel_limit("carrier_pigeon"), 4096);
    }

    #[test]
    fn clean_replies() {
        assert_eq!(clean_reply("  hi  \n"), Some("hi".into()));
        assert_eq!(clean_reply("\u{0} hi \u{7}"), Some("hi".into()));
        assert_eq!(clean_reply(""), None);
        assert_eq!(clean_reply(" \n\t "), None);
        assert_eq!(clean_reply("\u{0}\u{1b}"), None);
        assert_eq!(clean_reply("a\nb"), Some("a\nb".into()));
    }
}
