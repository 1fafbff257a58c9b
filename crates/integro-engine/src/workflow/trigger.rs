//! Conversation triggers: which message starts a workflow.

use super::definition::Definition;
use super::names;
use crate::condition::Condition;
use crate::template::Vars;
use crate::text::normalize;

/// Whether a message starts this workflow: it contains one of the
/// conversation trigger's keywords as whole words (case and accents
/// ignored) and its condition holds over `vars` (a turn's names). A
/// condition that fails to evaluate counts as false.
pub fn triggered_by(def: &Definition, text: &str, vars: &Vars) -> bool {
    let Some(trigger) = &def.triggers.conversation else {
        return false;
    };
    let text = normalize(text);
    let hit = trigger.keywords.is_empty()
        || trigger
            .keywords
            .iter()
            .any(|k| contains_words(&text, &normalize(k)));
    hit && trigger.condition.as_deref().is_none_or(|source| {
        Condition::compile(source)
            .ok()
            .and_then(|c| names::eval(&c, vars).ok())
            .unwrap_or(false)
    })
}

/// Whether `needle` occurs in `hay` with no letter or digit on either side.
fn contains_words(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    hay.match_indices(needle).any(|(at, _)| {
        let before = hay[..at].chars().next_back();
        let after = hay[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        assert!(contains_words("a quote please", "quote"));
        assert!(contains_words("quote", "quote"));
        assert!(contains_words("(quote)", "quote"));
        assert!(contains_words("not working", "not working"));
        assert!(!contains_words("quoted", "quote"));
        assert!(!contains_words("misquote", "quote"));
        assert!(contains_words("misquote, quote", "quote"));
        assert!(!contains_words("anything", ""));
    }
}
