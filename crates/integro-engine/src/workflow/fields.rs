//! Reading one answer for one field, deterministically.
//!
//! Whether an answer came from the person typing it, from the API or from
//! an LLM extracting it from free text, the same rules decide whether it is
//! valid and how it is stored, so a form never depends on a model to be
//! correct. The constraints are a JSON Schema subset (lengths, pattern,
//! enum, range), implemented here rather than with the `jsonschema` crate:
//! that crate brings about 60 more crates (its own regex engines, URL and
//! big-number libraries) for six checks.

use super::MAX_STRING_CHARS;
use super::definition::{FieldSpec, FieldType};
use crate::text::fold;
use regex::RegexBuilder;
use serde_json::{Number, Value};

/// Why an answer was not accepted, in words for the person who gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: String,
}

fn reject<T>(reason: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection {
        reason: reason.into(),
    })
}

/// Compiled size limit of a field's pattern, in bytes.
pub(crate) const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Answers that leave an optional field empty.
const SKIP_WORDS: &[&str] = &["skip", "-"];

/// Parses a typed answer: trims it, reads it as the field's type, applies
/// the constraints and returns the value to store (null for a skipped
/// optional field).
pub fn parse_answer(spec: &FieldSpec, text: &str) -> Result<Value, Rejection> {
    let text = text.trim();
    if text.is_empty() {
        return reject("the answer is empty");
    }
    if !spec.is_required() && SKIP_WORDS.contains(&fold(text).as_str()) {
        return Ok(Value::Null);
    }
    if text.chars().count() > MAX_STRING_CHARS {
        return reject(format!(
            "the answer is too long (at most {MAX_STRING_CHARS} characters)"
        ));
    }
    let value = match spec.kind {
        FieldType::String => Value::String(text.split_whitespace().collect::<Vec<_>>().join(" ")),
        FieldType::Text => Value::String(text.to_string()),
        FieldType::Number => number(text)?,
        FieldType::Integer => integer(text)?,
        FieldType::Boolean => Value::Bool(boolean(text)?),
        FieldType::Email => Value::String(email(text)?),
        FieldType::Phone => Value::String(phone(text)?),
        FieldType::Date => Value::String(date(text)?),
        FieldType::Choice => Value::String(choice(spec, text)?),
    };
    check_constraints(spec, &value)?;
    Ok(value)
}

/// Validates a value given through the API or event data and returns it
/// normalised as [`parse_answer`] would store it. Strings are read as
/// answers, so `"+1 (555) 010-9999"` and `"yes"` are accepted too.
pub fn validate_value(spec: &FieldSpec, value: &Value) -> Result<Value, Rejection> {
    match value {
        Value::Null if spec.is_required() => reject("a value is required"),
        Value::Null => Ok(Value::Null),
        Value::String(s) => parse_answer(spec, s),
        Value::Bool(b) if spec.kind == FieldType::Boolean => Ok(Value::Bool(*b)),
        Value::Number(n) if matches!(spec.kind, FieldType::Number | FieldType::Integer) => {
            let value = if spec.kind == FieldType::Integer {
                match n.as_i64() {
                    Some(i) => Value::from(i),
                    None => return reject("must be a whole number"),
                }
            } else {
                Value::Number(n.clone())
            };
            check_constraints(spec, &value)?;
            Ok(value)
        }
        Value::Number(n) if spec.kind == FieldType::Choice => parse_answer(spec, &n.to_string()),
        _ => reject(format!("must be a {}", describe(spec.kind))),
    }
}

fn describe(kind: FieldType) -> &'static str {
    match kind {
        FieldType::String | FieldType::Text => "text",
        FieldType::Number => "number",
        FieldType::Integer => "whole number",
        FieldType::Boolean => "yes or no",
        FieldType::Email => "email address",
        FieldType::Phone => "phone number",
        FieldType::Date => "date (YYYY-MM-DD)",
        FieldType::Choice => "one of the options",
    }
}

/// Lengths and pattern for text, range for numbers.
fn check_constraints(spec: &FieldSpec, value: &Value) -> Result<(), Rejection> {
    if let Value::String(s) = value {
        let chars = s.chars().count();
        if let Some(min) = spec.min_length
            && chars < min as usize
        {
            return reject(format!("must be at least {min} characters"));
        }
        if let Some(max) = spec.max_length
            && chars > max as usize
        {
            return reject(format!("must be at most {max} characters"));
        }
        if let Some(pattern) = &spec.pattern {
            let regex = RegexBuilder::new(pattern)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .or_else(|_| reject("the field's pattern is invalid"))?;
            if !regex.is_match(s) {
                return reject("does not have the expected format");
            }
        }
    }
    if let Value::Number(n) = value {
        let x = n.as_f64().unwrap_or(f64::NAN);
        if let Some(min) = spec.minimum
            && (x.is_nan() || x < min)
        {
            return reject(format!("must be at least {min}"));
        }
        if let Some(max) = spec.maximum
            && (x.is_nan() || x > max)
        {
            return reject(format!("must be at most {max}"));
        }
    }
    Ok(())
}

fn number(text: &str) -> Result<Value, Rejection> {
    let plain = text.strip_prefix('+').unwrap_or(text);
    let valid = !plain.is_empty()
        && plain
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E'));
    let parsed = if valid {
        plain.parse::<f64>().ok()
    } else {
        None
    };
    match parsed.filter(|x| x.is_finite()) {
        Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(Value::from(x as i64)),
        Some(x) => Ok(Number::from_f64(x).map_or(Value::Null, Value::Number)),
        None => reject("must be a number, such as 12 or 12.5"),
    }
}

fn integer(text: &str) -> Result<Value, Rejection> {
    let plain = text.strip_prefix('+').unwrap_or(text);
    match plain.parse::<i64>() {
        Ok(i) if !plain.starts_with('+') => Ok(Value::from(i)),
        _ => reject("must be a whole number, such as 3"),
    }
}

/// Yes and no in the words people type (accents and case ignored).
fn boolean(text: &str) -> Result<bool, Rejection> {
    let folded = fold(text);
    let word = folded.trim_end_matches(['.', '!']);
    match word {
        "yes" | "y" | "true" | "1" | "sim" | "si" | "oui" | "ok" => Ok(true),
        "no" | "n" | "false" | "0" | "nao" | "non" => Ok(false),
        _ => reject("please answer yes or no"),
    }
}

/// A sane address check, not RFC 5322: one `@`, a dotted domain, no spaces,
/// at most 254 characters. The domain is lowercased.
fn email(text: &str) -> Result<String, Rejection> {
    let bad = || reject("must be an email address, such as name@example.com");
    if text.chars().count() > 254 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad();
    }
    let Some((local, domain)) = text.split_once('@') else {
        return bad();
    };
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if local.is_empty()
        || local.chars().count() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || !labels_ok
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || local.contains(['(', ')', '<', '>', ',', ';', ':', '\\', '"', '[', ']'])
    {
        return bad();
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

/// E.164: a leading `+` (or `00`), then 7 to 15 digits, the first not 0;
/// spaces, dashes, dots and parentheses are dropped.
fn phone(text: &str) -> Result<String, Rejection> {
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
        .collect();
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"));
    let Some(digits) = digits else {
        return reject(
            "must be an international number starting with + and the country code, such as +351 912 345 678",
        );
    };
    if !(7..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return reject("must be a phone number with country code, such as +351 912 345 678");
    }
    Ok(format!("+{digits}"))
}

/// `YYYY-MM-DD`, a real calendar date.
pub(crate) fn date(text: &str) -> Result<String, Rejection> {
    let bad = || reject("must be a date written YYYY-MM-DD, such as 2026-12-24");
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return bad();
    }
    let (Ok(year), Ok(month), Ok(day)) = (
        text[0..4].parse::<i16>(),
        text[5..7].parse::<i8>(),
        text[8..10].parse::<i8>(),
    ) else {
        return bad();
    };
    match jiff::civil::Date::new(year, month, day) {
        Ok(_) => Ok(text.to_string()),
        Err(_) => reject("is not a real date"),
    }
}

/// An option by its text (case and accents ignored) or its 1-based number.
fn choice(spec: &FieldSpec, text: &str) -> Result<String, Rejection> {
    let options = spec.options.as_deref().unwrap_or_default();
    let folded = fold(text);
    let folded = folded.trim_end_matches(['.', '!']).trim();
    if let Some(option) = options.iter().find(|o| fold(o.trim()) == folded) {
        return Ok(option.clone());
    }
    if let Ok(n) = folded.parse::<usize>()
        && let Some(option) = n.checked_sub(1).and_then(|i| options.get(i))
    {
        return Ok(option.clone());
    }
    let listed = options
        .iter()
        .enumerate()
        .take(20)
        .map(|(i, o)| format!("{}. {o}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    reject(format!("please choose one of: {listed}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(kind: FieldType) -> FieldSpec {
        FieldSpec::of(kind)
    }

    fn ok(spec: &FieldSpec, text: &str) -> Value {
        parse_answer(spec, text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn strings_and_text() {
        let mut s = spec(FieldType::String);
        assert_eq!(ok(&s, "  Ana   Maria \n"), json!("Ana Maria"));
        assert_eq!(ok(&spec(FieldType::Text), " a\n b "), json!("a\n b"));
        assert!(parse_answer(&s, "   ").is_err());
        s.min_length = Some(2);
        s.max_length = Some(5);
        assert_eq!(
            parse_answer(&s, "A").unwrap_err().reason,
            "must be at least 2 characters"
        );
        assert!(parse_answer(&s, "Ana Maria").is_err());
        assert_eq!(ok(&s, "Zoë"), json!("Zoë"));
        s.pattern = Some("^[A-Z]".into());
        assert!(parse_answer(&s, "ana").is_err());
        s.pattern = Some("(".into());
        assert!(parse_answer(&s, "Ana").is_err());
        assert!(parse_answer(&spec(FieldType::Text), &"x".repeat(5000)).is_err());
    }

    #[test]
    fn numbers() {
        let mut n = spec(FieldType::Number);
        assert_eq!(ok(&n, "12.5"), json!(12.5));
        assert_eq!(ok(&n, " 12 "), json!(12));
        assert_eq!(ok(&n, "-3"), json!(-3));
        assert_eq!(ok(&n, "+3"), json!(3));
        for bad in ["abc", "1,5", "NaN", "inf", "1e999", "", "--1", "0x10"] {
            assert!(parse_answer(&n, bad).is_err(), "{bad}");
        }
        n.minimum = Some(1.0);
        n.maximum = Some(10.0);
        assert_eq!(
            parse_answer(&n, "0").unwrap_err().reason,
            "must be at least 1"
        );
        assert_eq!(
            parse_answer(&n, "11").unwrap_err().reason,
            "must be at most 10"
        );
        let mut i = spec(FieldType::Integer);
        assert_eq!(ok(&i, "42"), json!(42));
        assert_eq!(ok(&i, "+7"), json!(7));
        for bad in ["4.2", "x", "99999999999999999999", "++1"] {
            assert!(parse_answer(&i, bad).is_err(), "{bad}");
        }
        i.maximum = Some(5.0);
        assert!(parse_answer(&i, "6").is_err());
    }

    #[test]
    fn booleans() {
        let b = spec(FieldType::Boolean);
        for yes in ["yes", "Y", "TRUE", "1", "Sim", "sí", "ok!"] {
            assert_eq!(ok(&b, yes), json!(true), "{yes}");
        }
        for no in ["no", "n", "False", "0", "não", "NON."] {
            assert_eq!(ok(&b, no), json!(false), "{no}");
        }
        assert_eq!(
            parse_answer(&b, "maybe").unwrap_err().reason,
            "please answer yes or no"
        );
    }

    #[test]
    fn emails() {
        let e = spec(FieldType::Email);
        assert_eq!(ok(&e, " Ana@Example.COM "), json!("Ana@example.com"));
        assert_eq!(
            ok(&e, "a.b+c@mail.example.pt"),
            json!("a.b+c@mail.example.pt")
        );
        for bad in [
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "ana@@example.com",
            "a@b@example.com",
            "an a@example.com",
            "ana@exa mple.com",
            "ana@.example.com",
            "ana@example..com",
            "ana@-example.com",
            ".ana@example.com",
            "an..a@example.com",
            "<ana>@example.com",
        ] {
            assert!(parse_answer(&e, bad).is_err(), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(parse_answer(&e, &long).is_err());
    }

    #[test]
    fn phones() {
        let p = spec(FieldType::Phone);
        assert_eq!(ok(&p, "+351 912 345 678"), json!("+351912345678"));
        assert_eq!(ok(&p, "+1 (555) 010-9999"), json!("+15550109999"));
        assert_eq!(ok(&p, "0044 20.7946.0000"), json!("+442079460000"));
        for bad in [
            "912345678",
            "+12",
            "+1234567890123456",
            "+0123456789",
            "+351 91x 345 678",
            "+",
        ] {
            assert!(parse_answer(&p, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates() {
        let d = spec(FieldType::Date);
        assert_eq!(ok(&d, "2026-12-24"), json!("2026-12-24"));
        assert_eq!(ok(&d, "2028-02-29"), json!("2028-02-29"));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "24/12/2026",
            "2026-1-1",
            "tomorrow",
            "2026-12-24T10:00",
        ] {
            assert!(parse_answer(&d, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn choices() {
        let mut c = spec(FieldType::Choice);
        c.options = Some(vec!["Haircut".into(), "Colour".into(), "Manicure".into()]);
        assert_eq!(ok(&c, "haircut"), json!("Haircut"));
        assert_eq!(ok(&c, "COLOUR."), json!("Colour"));
        assert_eq!(ok(&c, "3"), json!("Manicure"));
        let err = parse_answer(&c, "4").unwrap_err().reason;
        assert_eq!(
            err,
            "please choose one of: 1. Haircut, 2. Colour, 3. Manicure"
        );
        assert!(parse_answer(&c, "0").is_err());
        assert!(parse_answer(&c, "spa").is_err());
    }

    #[test]
    fn optional_fields_can_be_skipped() {
        let mut s = spec(FieldType::Email);
        assert!(parse_answer(&s, "skip").is_err());
        s.required = Some(false);
        assert_eq!(ok(&s, "Skip"), Value::Null);
        assert_eq!(ok(&s, "-"), Value::Null);
        assert_eq!(validate_value(&s, &Value::Null), Ok(Value::Null));
    }

    #[test]
    fn api_values() {
        let mut n = spec(FieldType::Integer);
        n.minimum = Some(1.0);
        assert_eq!(validate_value(&n, &json!(3)), Ok(json!(3)));
        assert_eq!(validate_value(&n, &json!("3")), Ok(json!(3)));
        assert!(validate_value(&n, &json!(0)).is_err());
        assert!(validate_value(&n, &json!(2.5)).is_err());
        assert!(validate_value(&n, &json!(true)).is_err());
        assert!(validate_value(&n, &Value::Null).is_err());
        let b = spec(FieldType::Boolean);
        assert_eq!(validate_value(&b, &json!(false)), Ok(json!(false)));
        assert_eq!(validate_value(&b, &json!("yes")), Ok(json!(true)));
        let p = spec(FieldType::Phone);
        assert_eq!(
            validate_value(&p, &json!("+1 555 010 9999")),
            Ok(json!("+15550109999"))
        );
        assert_eq!(
            validate_value(&p, &json!({"a": 1})).unwrap_err().reason,
            "must be a phone number"
        );
        let mut c = spec(FieldType::Choice);
        c.options = Some(vec!["a".into(), "b".into()]);
        assert_eq!(validate_value(&c, &json!(2)), Ok(json!("b")));
    }
}
