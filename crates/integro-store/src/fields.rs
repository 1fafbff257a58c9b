//! Checks every stored name and free text goes through: lengths, and no
//! control characters where a person reads the value (a name shown by the
//! CLI could otherwise drive the operator's terminal).

use crate::StoreError;

/// Names of anything: tenants, bots, accounts, keys, credentials, profiles.
pub const MAX_NAME_CHARS: usize = 200;
/// A message's text (WhatsApp's own limit is 4,096).
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// A name: 1 to 200 characters once trimmed, no control characters.
pub fn check_name(field: &str, name: &str) -> Result<(), StoreError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::invalid(
            field,
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Free text (a message, an instruction): at most `max` characters, and no
/// control characters but line breaks and tabs.
pub fn check_text(field: &str, text: &str, max: usize) -> Result<(), StoreError> {
    if text.chars().count() > max {
        return Err(StoreError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(StoreError::invalid(
            field,
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_printable() {
        assert!(check_name("name", "Acme bot").is_ok());
        assert!(check_name("name", "  ").is_err());
        assert!(check_name("name", &"x".repeat(201)).is_err());
        assert!(check_name("name", "evil\u{1b}]0;pwned\u{7}").is_err());
        assert!(check_name("name", "tab\tname").is_err());
    }

    #[test]
    fn texts_keep_line_breaks() {
        assert!(check_text("text", "line one\nline two\ttab", 100).is_ok());
        assert!(check_text("text", "bell\u{7}", 100).is_err());
        assert!(check_text("text", &"x".repeat(101), 100).is_err());
    }
}
