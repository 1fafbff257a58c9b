//! `{{path}}` templating for replies, variables and prompts.
//!
//! Deliberately tiny: substitution only, no logic, no loops, no recursion,
//! so a user-written template can never run away (rendering is linear in
//! the template plus the substituted values) and never fails: anything that
//! is not a valid placeholder is left as written. [`check`] is the strict
//! counterpart for the API, so authors learn about mistakes when saving,
//! and [`crate::variables`] says which names exist.
//!
//! A placeholder may give a default for a value that is missing or empty:
//! `{{contact.name | default: "there"}}` (single quotes work too; the text
//! is used as written, never rendered again).

use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Deepest path accepted by [`Vars::set`]: keeps the tree shallow enough
/// that walking, converting and dropping it can never exhaust the stack.
const MAX_PATH_SEGMENTS: usize = 32;

/// A tree of values for templates and CEL conditions, e.g.
/// `{"contact": {"name": "Ana"}, "channel": "whatsapp"}`.
///
/// The root is always a JSON object; every top-level key becomes a CEL
/// variable (see [`crate::condition`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Vars {
    root: Value,
}

impl Default for Vars {
    fn default() -> Self {
        Self::new()
    }
}

impl Vars {
    /// An empty tree.
    pub fn new() -> Self {
        Vars {
            root: Value::Object(Map::new()),
        }
    }

    /// Sets the value at a dotted `path` ("contact.name"), creating objects
    /// along the way and replacing any non-object found there.
    ///
    /// A path that is empty, has an empty segment ("a..b") or more than 32
    /// segments is ignored: such a path could never be read by a template.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) {
        if path.is_empty()
            || path.split('.').any(str::is_empty)
            || path.split('.').count() > MAX_PATH_SEGMENTS
        {
            return;
        }
        let mut node = &mut self.root;
        let mut segments = path.split('.').peekable();
        while let Some(segment) = segments.next() {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else {
                return;
            };
            if segments.peek().is_none() {
                map.insert(segment.to_string(), value.into());
                return;
            }
            node = map
                .entry(segment.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }

    /// The value at a dotted `path`, if every segment exists.
    pub fn get(&self, path: &str) -> Option<&Value> {
        if path.is_empty() {
            return None;
        }
        path.split('.')
            .try_fold(&self.root, |node, segment| node.as_object()?.get(segment))
    }

    /// The whole tree, always a JSON object.
    pub fn as_json(&self) -> &Value {
        &self.root
    }

    /// Builds a tree from a JSON value; `None` unless it is an object.
    pub fn from_json(value: Value) -> Option<Vars> {
        value.is_object().then_some(Vars { root: value })
    }

    /// The top-level entries.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.root.as_object().into_iter().flatten()
    }
}

impl From<Map<String, Value>> for Vars {
    fn from(map: Map<String, Value>) -> Self {
        Vars {
            root: Value::Object(map),
        }
    }
}

/// A template syntax error, with the byte offset of the offending `{{`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` with no matching `}}`.
    #[error("unterminated `{{{{` at byte {offset}: close it with `}}}}`")]
    Unterminated { offset: usize },
    /// `{{}}` or `{{  }}`.
    #[error("empty placeholder at byte {offset}: write a name such as {{{{contact.name}}}}")]
    EmptyPath { offset: usize },
    /// A placeholder that is not a dotted name, with or without a default.
    #[error(
        "invalid placeholder \"{path}\" at byte {offset}: use names made of letters, digits and underscores joined by dots, such as contact.name, optionally with a default in quotes: {{{{contact.name | default: \"there\"}}}}"
    )]
    InvalidPath { offset: usize, path: String },
}

/// Whether `path` is `[A-Za-z_][A-Za-z0-9_]*` segments joined by dots.
pub(crate) fn is_valid_path(path: &str) -> bool {
    !path.is_empty() && path.split('.').all(is_valid_segment)
}

/// Whether `s` is an identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_valid_segment(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One piece of a template.
enum Piece<'a> {
    /// Text copied as is.
    Literal(&'a str),
    /// A valid placeholder: its path, and its default text if it has one.
    Placeholder(&'a str, Option<&'a str>),
    /// `{{ ... }}` whose content is not a valid path, with the offset of
    /// its `{{` and the trimmed content; rendered verbatim.
    Invalid(&'a str, usize, &'a str),
    /// An unterminated `{{` and everything after it; rendered verbatim.
    Unterminated(&'a str, usize),
}

/// Splits a template into pieces in one left-to-right pass.
///
/// Each byte is looked at a bounded number of times, so this is linear.
/// When a `{{` is followed by another `{{` before any `}}`, the first is
/// literal text and the innermost one opens the placeholder.
fn pieces<'a>(template: &'a str, mut emit: impl FnMut(Piece<'a>)) {
    let mut pos = 0;
    while pos < template.len() {
        let rest = &template[pos..];
        let Some(open_rel) = rest.find("{{") else {
            emit(Piece::Literal(rest));
            return;
        };
        let mut open = pos + open_rel;
        let Some(close_rel) = template[open + 2..].find("}}") else {
            emit(Piece::Literal(&template[pos..open]));
            emit(Piece::Unterminated(&template[open..], open));
            return;
        };
        let close = open + 2 + close_rel;
        // Use the last "{{" before the "}}" as the opener.
        if let Some(inner) = template[open + 2..close].rfind("{{") {
            open = open + 2 + inner;
        }
        // "{{{a}}": the extra braces are literal text, the last two open.
        while open + 2 < close && template.as_bytes()[open + 2] == b'{' {
            open += 1;
        }
        emit(Piece::Literal(&template[pos..open]));
        let content = template[open + 2..close].trim();
        match parse_placeholder(content) {
            Some((path, default)) => emit(Piece::Placeholder(path, default)),
            None => emit(Piece::Invalid(&template[open..close + 2], open, content)),
        }
        pos = close + 2;
    }
}

/// `path` or `path | default: "text"` (or `'text'`), spaces optional
/// around the names and the bar; `None` unless `content` is one of these.
fn parse_placeholder(content: &str) -> Option<(&str, Option<&str>)> {
    let Some((path, rest)) = content.split_once('|') else {
        return is_valid_path(content).then_some((content, None));
    };
    let path = path.trim_end();
    let quoted = rest.trim().strip_prefix("default")?.trim_start();
    let quoted = quoted.strip_prefix(':')?.trim_start();
    let quote = quoted.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let text = quoted[1..].strip_suffix(quote)?;
    (is_valid_path(path) && !text.contains(quote)).then_some((path, Some(text)))
}

/// A placeholder that had no value when a template was rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Its path, e.g. `contact.name`.
    pub path: String,
    /// The default written in the placeholder, which was used instead.
    pub default: Option<String>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.default {
            Some(d) => write!(
                f,
                "{{{{{}}}}} had no value: its default \"{d}\" was used",
                self.path
            ),
            None => write!(
                f,
                "{{{{{0}}}}} had no value and was left out (give it a default: {{{{{0} | default: \"…\"}}}})",
                self.path
            ),
        }
    }
}

/// Renders `template`, replacing each `{{ path }}` with the value at that
/// path in `vars`: strings as they are, numbers and booleans as text, and
/// null, missing values, objects and arrays as nothing. A placeholder with
/// a default (`{{ path | default: "text" }}`) gives its text instead when
/// the value would render empty (or only spaces).
///
/// Never fails and never panics: an unterminated `{{` or a placeholder that
/// is not a valid path is copied verbatim. Substituted values are not
/// rendered again.
pub fn render(template: &str, vars: &Vars) -> String {
    render_reporting(template, vars, |_| {})
}

/// Like [`render`], also saying which placeholders had no value.
pub fn render_with_missing(template: &str, vars: &Vars) -> (String, Vec<Missing>) {
    let mut missing = Vec::new();
    let out = render_reporting(template, vars, |m| missing.push(m));
    (out, missing)
}

fn render_reporting(template: &str, vars: &Vars, mut report: impl FnMut(Missing)) -> String {
    let mut out = String::with_capacity(template.len());
    pieces(template, |piece| match piece {
        Piece::Literal(s) | Piece::Invalid(s, _, _) | Piece::Unterminated(s, _) => out.push_str(s),
        Piece::Placeholder(path, default) => {
            if !push_present(&mut out, vars.get(path), default) {
                report(Missing {
                    path: path.to_string(),
                    default: default.map(String::from),
                });
            }
        }
    });
    out
}

/// Pushes the value, or the default when the value would render empty;
/// whether the value was there.
fn push_present(out: &mut String, value: Option<&Value>, default: Option<&str>) -> bool {
    let before = out.len();
    push_value(out, value);
    if !out[before..].trim().is_empty() {
        return true;
    }
    if let Some(default) = default {
        out.truncate(before);
        out.push_str(default);
    }
    false
}

/// Like [`render`], but `None` as soon as any placeholder renders empty.
/// Used to drop optional lines of the default system prompt.
pub(crate) fn render_all_present(template: &str, vars: &Vars) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut complete = true;
    pieces(template, |piece| match piece {
        Piece::Literal(s) | Piece::Invalid(s, _, _) | Piece::Unterminated(s, _) => out.push_str(s),
        Piece::Placeholder(path, default) => {
            if !push_present(&mut out, vars.get(path), default) && default.is_none() {
                complete = false;
            }
        }
    });
    complete.then_some(out)
}

/// The paths of a template's valid placeholders, in order (with repeats).
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut paths = Vec::new();
    pieces(template, |piece| {
        if let Piece::Placeholder(path, _) = piece {
            paths.push(path);
        }
    });
    paths
}

fn push_value(out: &mut String, value: Option<&Value>) {
    match value {
        Some(Value::String(s)) => out.push_str(s),
        Some(Value::Number(n)) => {
            let _ = write!(out, "{n}");
        }
        Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::Null | Value::Array(_) | Value::Object(_)) | None => {}
    }
}

/// Checks template syntax for the API: every `{{` must be closed by `}}`
/// and contain a dotted name. Reports the first problem.
pub fn check(template: &str) -> Result<(), TemplateError> {
    let mut error = None;
    pieces(template, |piece| {
        if error.is_some() {
            return;
        }
        match piece {
            Piece::Literal(_) | Piece::Placeholder(..) => {}
            Piece::Unterminated(_, offset) => error = Some(TemplateError::Unterminated { offset }),
            Piece::Invalid(_, offset, "") => error = Some(TemplateError::EmptyPath { offset }),
            Piece::Invalid(_, offset, path) => {
                error = Some(TemplateError::InvalidPath {
                    offset,
                    path: crate::text::truncate_chars(path, 60),
                })
            }
        }
    });
    error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("contact.name", "Ana");
        v.set("contact.age", 31);
        v.set("contact.vip", true);
        v.set("contact.score", 4.5);
        v.set("contact.tags", json!(["a", "b"]));
        v.set("contact.nothing", Value::Null);
        v.set("channel", "whatsapp");
        v.set("evil", "{{contact.name}}");
        v
    }

    #[test]
    fn vars_set_and_get() {
        let v = vars();
        assert_eq!(v.get("contact.name"), Some(&json!("Ana")));
        assert_eq!(v.get("contact"), v.as_json().get("contact"));
        assert_eq!(v.get("contact.missing"), None);
        assert_eq!(v.get("channel.deeper"), None);
        assert_eq!(v.get(""), None);
        assert!(v.as_json().is_object());
    }

    #[test]
    fn vars_set_replaces_scalars_with_objects() {
        let mut v = Vars::new();
        v.set("a", 1);
        v.set("a.b", 2);
        assert_eq!(v.as_json(), &json!({"a": {"b": 2}}));
        v.set("a", "x");
        assert_eq!(v.as_json(), &json!({"a": "x"}));
    }

    #[test]
    fn vars_ignores_bad_paths() {
        let mut v = Vars::new();
        v.set("", 1);
        v.set("a..b", 1);
        v.set(".a", 1);
        v.set("a.", 1);
        v.set(&vec!["x"; 33].join("."), 1);
        assert_eq!(v.as_json(), &json!({}));
        v.set(&vec!["x"; 32].join("."), 1);
        assert!(v.get(&vec!["x"; 32].join(".")).is_some());
    }

    #[test]
    fn vars_from_json() {
        assert!(Vars::from_json(json!([1])).is_none());
        let v = Vars::from_json(json!({"a": {"b": "c"}})).unwrap();
        assert_eq!(v.get("a.b"), Some(&json!("c")));
        let mut map = Map::new();
        map.insert("k".into(), json!(1));
        assert_eq!(Vars::from(map).get("k"), Some(&json!(1)));
    }

    #[test]
    fn render_substitutes_values() {
        let v = vars();
        assert_eq!(render("Hi {{contact.name}}!", &v), "Hi Ana!");
        assert_eq!(render("Hi {{ contact.name }}!", &v), "Hi Ana!");
        assert_eq!(render("Hi {{\tcontact.name\n}}!", &v), "Hi Ana!");
        assert_eq!(
            render("{{contact.age}}/{{contact.vip}}/{{contact.score}}", &v),
            "31/true/4.5"
        );
        assert_eq!(render("{{channel}}{{channel}}", &v), "whatsappwhatsapp");
        assert_eq!(render("no placeholders", &v), "no placeholders");
        assert_eq!(render("", &v), "");
    }

    #[test]
    fn render_missing_and_non_scalars_are_empty() {
        let v = vars();
        assert_eq!(render("[{{contact.missing}}]", &v), "[]");
        assert_eq!(render("[{{nope.at.all}}]", &v), "[]");
        assert_eq!(render("[{{contact.tags}}]", &v), "[]");
        assert_eq!(render("[{{contact}}]", &v), "[]");
        assert_eq!(render("[{{contact.nothing}}]", &v), "[]");
        assert_eq!(render("[{{contact.name.first}}]", &v), "[]");
    }

    #[test]
    fn render_leaves_bad_syntax_verbatim() {
        let v = vars();
        assert_eq!(render("Hi {{contact.name", &v), "Hi {{contact.name");
        assert_eq!(render("Hi {{", &v), "Hi {{");
        assert_eq!(render("{{}}", &v), "{{}}");
        assert_eq!(render("{{ two words }}", &v), "{{ two words }}");
        assert_eq!(render("{{1abc}}", &v), "{{1abc}}");
        assert_eq!(render("}} {{channel}} }}", &v), "}} whatsapp }}");
        assert_eq!(render("{{ {{channel}} }}", &v), "{{ whatsapp }}");
        assert_eq!(render("{{{channel}}}", &v), "{whatsapp}");
        assert_eq!(render("{{a}", &v), "{{a}");
        assert_eq!(render("{{ação}}", &v), "{{ação}}");
    }

    #[test]
    fn render_is_not_recursive() {
        let v = vars();
        assert_eq!(render("{{evil}}", &v), "{{contact.name}}");
    }

    #[test]
    fn render_is_linear_on_hostile_input() {
        let v = vars();
        let t = "{{".repeat(50_000);
        assert_eq!(render(&t, &v), t);
        let t = "{{a".repeat(50_000) + "}}";
        assert_eq!(render(&t, &v).len(), t.len() - 5);
        let t = "{{channel}}".repeat(20_000);
        assert_eq!(render(&t, &v), "whatsapp".repeat(20_000));
    }

    #[test]
    fn check_accepts_valid_templates() {
        assert_eq!(
            check("Hi {{ contact.name }}, {{channel}} {{_x.y_1}}"),
            Ok(())
        );
        assert_eq!(check("no placeholders }} at all"), Ok(()));
        assert_eq!(check(""), Ok(()));
    }

    #[test]
    fn check_reports_errors_with_offsets() {
        assert_eq!(
            check("Hi {{name"),
            Err(TemplateError::Unterminated { offset: 3 })
        );
        assert_eq!(
            check("ab{{  }}"),
            Err(TemplateError::EmptyPath { offset: 2 })
        );
        assert_eq!(
            check("x {{a.}}"),
            Err(TemplateError::InvalidPath {
                offset: 2,
                path: "a.".into()
            })
        );
        assert!(matches!(
            check("{{1a}}"),
            Err(TemplateError::InvalidPath { .. })
        ));
        assert!(matches!(
            check("{{a-b}}"),
            Err(TemplateError::InvalidPath { .. })
        ));
        let msg = check("Hi {{name").unwrap_err().to_string();
        assert!(msg.contains("byte 3"), "{msg}");
        assert!(msg.contains("{{"), "{msg}");
        let msg = check("{{ bad path }}").unwrap_err().to_string();
        assert!(msg.contains("\"bad path\""), "{msg}");
    }

    #[test]
    fn defaults_fill_missing_and_empty_values() {
        let mut v = vars();
        v.set("contact.blank", "  ");
        v.set("contact.empty", "");
        v.set("contact.zero", 0);
        let r = |t: &str| render(t, &v);
        assert_eq!(
            r(r#"We open at 9, {{contact.nmae | default: "there"}}."#),
            "We open at 9, there."
        );
        assert_eq!(r(r#"Hi {{contact.name | default: "there"}}"#), "Hi Ana");
        assert_eq!(r(r#"[{{contact.empty|default:"x"}}]"#), "[x]");
        assert_eq!(r(r#"[{{ contact.blank  |  default :  'y' }}]"#), "[y]");
        assert_eq!(r(r#"[{{contact.nothing | default: "n"}}]"#), "[n]");
        assert_eq!(r(r#"[{{contact.tags | default: "t"}}]"#), "[t]");
        assert_eq!(r(r#"[{{contact.zero | default: "z"}}]"#), "[0]");
        assert_eq!(r(r#"[{{contact.vip | default: "z"}}]"#), "[true]");
        assert_eq!(r(r#"[{{contact.x | default: ""}}]"#), "[]");
        assert_eq!(r(r#"{{x | default: "a | b: 'c'"}}"#), "a | b: 'c'");
        // The default is text, never rendered again.
        assert_eq!(r(r#"{{x | default: "{contact.name}"}}"#), "{contact.name}");
        // Not a default: left as written.
        for bad in [
            r#"{{x | default: there}}"#,
            r#"{{x | default "there"}}"#,
            r#"{{x | fallback: "there"}}"#,
            r#"{{x | default: "there'}}"#,
            r#"{{x | default: "a"b"}}"#,
            r#"{{ | default: "a"}}"#,
            r#"{{x | default: "a" | default: "b"}}"#,
        ] {
            assert_eq!(r(bad), bad);
            assert!(
                matches!(check(bad), Err(TemplateError::InvalidPath { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn render_with_missing_reports_what_had_no_value() {
        let v = vars();
        let (text, missing) = render_with_missing(
            r#"Hi {{contact.name}} {{contact.missing}}{{vars.plan | default: "basic"}}"#,
            &v,
        );
        assert_eq!(text, "Hi Ana basic");
        assert_eq!(
            missing,
            vec![
                Missing {
                    path: "contact.missing".into(),
                    default: None
                },
                Missing {
                    path: "vars.plan".into(),
                    default: Some("basic".into())
                }
            ]
        );
        assert!(
            missing[0]
                .to_string()
                .contains("{{contact.missing}} had no value")
        );
        assert!(
            missing[0]
                .to_string()
                .contains(r#"{{contact.missing | default: "…"}}"#)
        );
        assert_eq!(
            missing[1].to_string(),
            r#"{{vars.plan}} had no value: its default "basic" was used"#
        );
        assert_eq!(render_with_missing("plain", &v), ("plain".into(), vec![]));
    }

    #[test]
    fn check_accepts_defaults_and_placeholders_lists_paths() {
        assert_eq!(check(r#"Hi {{contact.name | default: "there"}}"#), Ok(()));
        assert_eq!(check("{{a|default:''}}"), Ok(()));
        assert_eq!(
            placeholders(r#"{{a}} {{ b.c | default: "x" }} {{bad path}} {{a}} {{"#),
            vec!["a", "b.c", "a"]
        );
        let msg = check("{{a | nope}}").unwrap_err().to_string();
        assert!(
            msg.contains(r#"{{contact.name | default: "there"}}"#),
            "{msg}"
        );
    }

    #[test]
    fn render_all_present_detects_empty_values() {
        let v = vars();
        assert_eq!(
            render_all_present("Hi {{contact.name}}", &v),
            Some("Hi Ana".into())
        );
        assert_eq!(render_all_present("Hi {{contact.missing}}", &v), None);
        assert_eq!(render_all_present("plain", &v), Some("plain".into()));
        assert_eq!(
            render_all_present(r#"Hi {{contact.missing | default: "you"}}"#, &v),
            Some("Hi you".into())
        );
    }
}
