//! Rule conditions written in CEL (Common Expression Language).
//!
//! CEL is a small, side-effect-free, non-Turing-complete language, which is
//! what a user-written condition needs:
//! `channel == "whatsapp_cloud" && now.hour >= 9`. Conditions are compiled once when a rule set is built and then
//! evaluated against a [`Vars`] tree. Input is untrusted, so compilation
//! bounds the source length and the nesting of list macros (the one way a
//! CEL program can do a lot of work), and both compilation and evaluation
//! turn any failure, including a panic inside the CEL crate, into an error.

use crate::template::Vars;
use crate::variables::{UnknownName, check_segments};
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use serde_json::Value;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

/// Longest accepted condition source, in characters.
pub const MAX_CONDITION_CHARS: usize = 2000;

/// How deeply list macros (`all`, `exists`, `exists_one`, `map`, `filter`)
/// may nest. Each level multiplies the work by a list's length.
pub const MAX_MACRO_NESTING: usize = 2;

/// Deepest JSON nesting converted into CEL values; deeper values are null.
const MAX_VALUE_DEPTH: usize = 64;

/// Longest error detail kept, in characters (CEL errors can quote values).
const MAX_ERROR_CHARS: usize = 300;

/// Why a condition could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("condition is empty")]
    Empty,
    #[error("condition is too long ({chars} characters, at most {max})")]
    TooLong { chars: usize, max: usize },
    /// A syntax error, with line and column as the CEL parser reports them.
    #[error("invalid condition: {0}")]
    Syntax(String),
    #[error(
        "condition is too complex: list macros (all, exists, exists_one, map, filter) nest more than {max} deep"
    )]
    TooComplex { max: usize },
    /// Evaluation failed, e.g. a missing key or mismatched types.
    #[error("condition could not be evaluated: {0}")]
    Eval(String),
    #[error("condition must be true or false, got {0}")]
    NotBool(String),
}

/// A compiled CEL condition and the source it came from.
///
/// Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Condition {
    source: String,
    program: Arc<cel::Program>,
}

/// Two conditions are equal when their sources are.
impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The shared CEL environment (standard library and macros), built once.
fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib()))
}

impl Condition {
    /// Compiles `src`. Errors say what is wrong and where.
    pub fn compile(src: &str) -> Result<Condition, ConditionError> {
        if src.trim().is_empty() {
            return Err(ConditionError::Empty);
        }
        let chars = src.chars().count();
        if chars > MAX_CONDITION_CHARS {
            return Err(ConditionError::TooLong {
                chars,
                max: MAX_CONDITION_CHARS,
            });
        }
        let program = catch_unwind(|| env().compile(src))
            .map_err(|_| ConditionError::Syntax("the expression could not be parsed".into()))?
            .map_err(|errors| ConditionError::Syntax(describe_parse_errors(&errors)))?;
        if macro_nesting(program.expression()) > MAX_MACRO_NESTING {
            return Err(ConditionError::TooComplex {
                max: MAX_MACRO_NESTING,
            });
        }
        Ok(Condition {
            source: src.to_string(),
            program: Arc::new(program),
        })
    }

    /// Checks that the condition only reads names a turn has (see
    /// [`crate::variables`]): `contact.nmae` or `customer` is refused, while
    /// anything under `vars`, a whole group (`"plan" in vars`) and the
    /// variables of list macros (`exists(t, …)`) are fine.
    pub fn check_names(&self) -> Result<(), UnknownName> {
        self.check_names_with(&mut |segments| check_segments(segments, true))
    }

    /// Like [`Condition::check_names`], with the caller deciding which
    /// dotted names exist (workflows add `fields` and `data`). `check` sees
    /// each name read, split at the dots, once per place it is read, and the
    /// first error stops the walk.
    pub fn check_names_with<E>(
        &self,
        check: &mut dyn FnMut(&[&str]) -> Result<(), E>,
    ) -> Result<(), E> {
        check_expr_names(self.program.expression(), &mut Vec::new(), check)
    }

    /// The dotted names the condition reads other than through `has()`, so
    /// a caller can give missing ones a null value: `vars.lead_id == null`
    /// then means "not set" instead of failing with "no such key".
    pub fn read_names(&self) -> Vec<Vec<String>> {
        let mut names = Vec::new();
        collect_read_names(self.program.expression(), &mut Vec::new(), &mut names);
        names
    }

    /// The source text this condition was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition; every top-level key of `vars` is a variable.
    pub fn eval(&self, vars: &Vars) -> Result<bool, ConditionError> {
        let context = EvalContext::new(vars);
        self.eval_in(&context)
    }

    /// Evaluates against a prepared context, so a caller testing several
    /// conditions on one message converts the variables only once.
    pub(crate) fn eval_in(&self, context: &EvalContext<'_>) -> Result<bool, ConditionError> {
        let result = catch_unwind(AssertUnwindSafe(|| self.program.execute(&context.0)))
            .map_err(|_| ConditionError::Eval("the expression failed unexpectedly".into()))?;
        match result {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBool(other.type_of().to_string())),
            Err(e) => Err(ConditionError::Eval(crate::text::truncate_chars(
                &e.to_string(),
                MAX_ERROR_CHARS,
            ))),
        }
    }
}

/// The CEL variables for one evaluation, borrowing strings from [`Vars`].
pub(crate) struct EvalContext<'v>(cel::Context<'v, 'v>);

impl<'v> EvalContext<'v> {
    pub(crate) fn new(vars: &'v Vars) -> Self {
        let mut context = cel::Context::with_env(Arc::clone(env()));
        for (name, value) in vars.entries() {
            context.add_variable_as_val(name.as_str(), to_val(value, 0));
        }
        EvalContext(context)
    }
}

/// Converts JSON into CEL values without copying strings. Integers become
/// `int` when they fit (so `now.hour >= 9` compares int to int), else `uint`,
/// else `double`.
fn to_val(value: &Value, depth: usize) -> Box<dyn Val + '_> {
    if depth > MAX_VALUE_DEPTH {
        return Box::new(CelNull);
    }
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => Box::new(CelList::from(
            items
                .iter()
                .map(|item| to_val(item, depth + 1))
                .collect::<Vec<_>>(),
        )),
        Value::Object(map) => Box::new(CelMap::from(
            map.iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), to_val(v, depth + 1)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// Formats the parser's errors (at most three) as "line L, column C: message".
fn describe_parse_errors(errors: &cel::ParseErrors) -> String {
    let described: Vec<String> = errors
        .errors
        .iter()
        .take(3)
        .map(|e| {
            let msg = e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg);
            let msg = crate::text::truncate_chars(msg, MAX_ERROR_CHARS);
            // The parser reports 1-based lines and columns.
            if e.pos.0 > 0 && e.pos.1 > 0 {
                format!("line {}, column {}: {msg}", e.pos.0, e.pos.1)
            } else {
                msg
            }
        })
        .collect();
    if described.is_empty() {
        "the expression could not be parsed".into()
    } else {
        described.join("; ")
    }
}

/// The deepest nesting of comprehensions (expanded list macros) in `expr`.
/// Recursion is bounded by the parser's own depth limit.
fn macro_nesting(expr: &IdedExpr) -> usize {
    let max_of =
        |exprs: &mut dyn Iterator<Item = &IdedExpr>| exprs.map(macro_nesting).max().unwrap_or(0);
    match &expr.expr {
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => 0,
        Expr::Call(call) => max_of(&mut call.target.as_deref().into_iter().chain(call.args.iter())),
        Expr::Comprehension(c) => {
            let body =
                max_of(&mut [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result].into_iter());
            (1 + body).max(macro_nesting(&c.iter_range))
        }
        Expr::List(list) => max_of(&mut list.elements.iter()),
        Expr::Map(map) => max_of(&mut map.entries.iter().flat_map(|e| entry_exprs(&e.expr))),
        Expr::Struct(s) => max_of(&mut s.entries.iter().flat_map(|e| entry_exprs(&e.expr))),
        Expr::Select(select) => macro_nesting(&select.operand),
    }
}

/// Identifiers CEL itself gives meaning to (type names, used as values in
/// `type(x) == string`).
const CEL_IDENTIFIERS: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

/// The names `expr` reads, checked; `bound` holds the variables of the
/// enclosing list macros. Recursion is bounded by the parser's depth limit.
fn check_expr_names<'e, E>(
    expr: &'e IdedExpr,
    bound: &mut Vec<&'e str>,
    check: &mut dyn FnMut(&[&str]) -> Result<(), E>,
) -> Result<(), E> {
    // `a.b.c` over an identifier: check the whole dotted name at once.
    let mut segments = Vec::new();
    let mut node = expr;
    while let Expr::Select(select) = &node.expr {
        segments.push(select.field.as_str());
        node = &select.operand;
    }
    if let Expr::Ident(name) = &node.expr {
        if bound.contains(&name.as_str())
            || (segments.is_empty() && CEL_IDENTIFIERS.contains(&name.as_str()))
        {
            return Ok(());
        }
        segments.push(name.as_str());
        segments.reverse();
        return check(&segments);
    }
    let mut each = |exprs: &mut dyn Iterator<Item = &'e IdedExpr>, bound: &mut Vec<&'e str>| {
        for e in exprs {
            check_expr_names(e, bound, check)?;
        }
        Ok(())
    };
    match &expr.expr {
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => Ok(()),
        Expr::Select(_) => check_expr_names(node, bound, check),
        Expr::Call(call) => each(
            &mut call.target.as_deref().into_iter().chain(call.args.iter()),
            bound,
        ),
        Expr::Comprehension(c) => {
            each(&mut [&c.iter_range, &c.accu_init].into_iter(), bound)?;
            let depth = bound.len();
            bound.push(c.iter_var.as_str());
            bound.extend(c.iter_var2.as_deref());
            bound.push(c.accu_var.as_str());
            let inner = each(
                &mut [&c.loop_cond, &c.loop_step, &c.result].into_iter(),
                bound,
            );
            bound.truncate(depth);
            inner
        }
        Expr::List(list) => each(&mut list.elements.iter(), bound),
        Expr::Map(map) => each(
            &mut map.entries.iter().flat_map(|e| entry_exprs(&e.expr)),
            bound,
        ),
        Expr::Struct(s) => each(
            &mut s.entries.iter().flat_map(|e| entry_exprs(&e.expr)),
            bound,
        ),
    }
}

/// The dotted names under `expr` (see [`Condition::read_names`]), leaving
/// out the variables of the enclosing list macros (`bound`). Recursion is
/// bounded by the parser's depth limit.
fn collect_read_names<'e>(
    expr: &'e IdedExpr,
    bound: &mut Vec<&'e str>,
    names: &mut Vec<Vec<String>>,
) {
    let mut segments = Vec::new();
    let mut node = expr;
    let mut tested = false;
    while let Expr::Select(select) = &node.expr {
        tested |= select.test;
        segments.push(select.field.clone());
        node = &select.operand;
    }
    if let Expr::Ident(name) = &node.expr {
        if !tested && !bound.contains(&name.as_str()) {
            segments.push(name.clone());
            segments.reverse();
            names.push(segments);
        }
        return;
    }
    let mut each = |exprs: &mut dyn Iterator<Item = &'e IdedExpr>, bound: &mut Vec<&'e str>| {
        for e in exprs {
            collect_read_names(e, bound, names);
        }
    };
    match &expr.expr {
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
        Expr::Select(_) => each(&mut std::iter::once(node), bound),
        Expr::Call(call) => each(
            &mut call.target.as_deref().into_iter().chain(call.args.iter()),
            bound,
        ),
        Expr::Comprehension(c) => {
            each(&mut [&c.iter_range, &c.accu_init].into_iter(), bound);
            let depth = bound.len();
            bound.push(c.iter_var.as_str());
            bound.extend(c.iter_var2.as_deref());
            bound.push(c.accu_var.as_str());
            each(
                &mut [&c.loop_cond, &c.loop_step, &c.result].into_iter(),
                bound,
            );
            bound.truncate(depth);
        }
        Expr::List(list) => each(&mut list.elements.iter(), bound),
        Expr::Map(map) => each(
            &mut map.entries.iter().flat_map(|e| entry_exprs(&e.expr)),
            bound,
        ),
        Expr::Struct(s) => each(
            &mut s.entries.iter().flat_map(|e| entry_exprs(&e.expr)),
            bound,
        ),
    }
}

fn entry_exprs(entry: &EntryExpr) -> Vec<&IdedExpr> {
    match entry {
        EntryExpr::StructField(f) => vec![&f.value],
        EntryExpr::MapEntry(e) => vec![&e.key, &e.value],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("channel", "whatsapp");
        v.set("now.hour", 10);
        v.set("now.weekday", 3);
        v.set("contact.name", "Ana");
        v.set("message.text", "hello");
        v.set("vars.vip", "yes");
        v.set("contact.tags", json!(["a", "b"]));
        v.set("big", u64::MAX);
        v.set("ratio", 0.5);
        v
    }

    fn eval(src: &str) -> Result<bool, ConditionError> {
        Condition::compile(src)?.eval(&vars())
    }

    #[test]
    fn send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Condition>();
    }

    #[test]
    fn example_expressions() {
        assert_eq!(
            eval(r#"channel == "whatsapp" && now.hour >= 9 && now.hour < 18"#),
            Ok(true)
        );
        assert_eq!(eval(r#"contact.name.startsWith("A")"#), Ok(true));
        assert_eq!(eval(r#""vip" in vars && vars.vip == "yes""#), Ok(true));
        assert_eq!(eval("message.text.size() > 3"), Ok(true));
        assert_eq!(eval("now.weekday in [1,2,3,4,5]"), Ok(true));
    }

    #[test]
    fn false_results() {
        assert_eq!(eval(r#"channel == "instagram""#), Ok(false));
        assert_eq!(eval("now.hour >= 18"), Ok(false));
        assert_eq!(eval(r#""missing" in vars"#), Ok(false));
        assert_eq!(eval(r#"contact.tags.exists(t, t == "z")"#), Ok(false));
        assert_eq!(eval(r#"has(contact.email)"#), Ok(false));
    }

    #[test]
    fn number_kinds() {
        assert_eq!(eval("big > 0u"), Ok(true));
        assert_eq!(eval("ratio < 1.0"), Ok(true));
        assert_eq!(eval("now.hour == 10"), Ok(true));
    }

    #[test]
    fn evaluation_errors() {
        assert!(matches!(eval("nope == 1"), Err(ConditionError::Eval(m)) if m.contains("nope")));
        assert!(
            matches!(eval("contact.email == 'x'"), Err(ConditionError::Eval(m)) if m.contains("email"))
        );
        assert!(matches!(
            eval("contact.name > 3"),
            Err(ConditionError::Eval(_))
        ));
        assert!(matches!(eval("1 / 0 == 1"), Err(ConditionError::Eval(_))));
    }

    #[test]
    fn non_bool_is_an_error() {
        let err = eval("now.hour + 1").unwrap_err();
        assert_eq!(err, ConditionError::NotBool("int".into()));
        assert_eq!(err.to_string(), "condition must be true or false, got int");
        assert!(matches!(eval("contact.name"), Err(ConditionError::NotBool(t)) if t == "string"));
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = Condition::compile("1 +").unwrap_err();
        let ConditionError::Syntax(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(
            msg.starts_with("line 1, column 4: mismatched input '<EOF>'"),
            "{msg}"
        );
        let err = Condition::compile("  )").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid condition: line 1, column 3: "),
            "{err}"
        );
        assert!(Condition::compile("a &&& b").is_err());
        assert!(Condition::compile("\"unterminated").is_err());
        assert_eq!(Condition::compile("  "), Err(ConditionError::Empty));
    }

    #[test]
    fn limits() {
        let long = "true && ".repeat(300) + "true";
        assert!(matches!(
            Condition::compile(&long),
            Err(ConditionError::TooLong { .. })
        ));
        assert!(Condition::compile("[1,2].all(x, [1,2].exists(y, x == y))").is_ok());
        assert_eq!(
            Condition::compile("[1].all(x, [1].all(y, [1].all(z, true)))").map(|_| ()),
            Err(ConditionError::TooComplex { max: 2 })
        );
        // Deep nesting is refused by the parser, not a stack overflow.
        let deep = "(".repeat(500) + "true" + &")".repeat(500);
        assert!(Condition::compile(&deep).is_err());
        let deep = "!".repeat(1900) + "true";
        let _ = Condition::compile(&deep).map(|c| c.eval(&vars()));
        let deep = "[".repeat(900) + &"]".repeat(900) + " == []";
        assert!(Condition::compile(&deep).is_err());
        let chain = "contact".to_string() + &".a".repeat(900) + " == 1";
        let _ = Condition::compile(&chain).map(|c| c.eval(&vars()));
    }

    #[test]
    fn source_is_kept() {
        let c = Condition::compile("true").unwrap();
        assert_eq!(c.source(), "true");
        assert_eq!(c.eval(&Vars::new()), Ok(true));
    }

    fn names(src: &str) -> Result<(), UnknownName> {
        Condition::compile(src).unwrap().check_names()
    }

    #[test]
    fn only_known_names_may_be_read() {
        for ok in [
            r#"channel == "whatsapp" && now.hour >= 9 && now.hour < 18"#,
            r#"contact.name.startsWith("A") || contact.phone == """#,
            r#""vip" in vars && vars.vip == "yes""#,
            r#"has(vars.plan) && vars["plan"] == "gold""#,
            "message.text.size() > 3 && message.kind == 'text'",
            "now.weekday in [1,2,3,4,5]",
            "[1, 2].exists(t, t == now.day) && [3].all(x, [x].exists(y, y == x))",
            r#"{"a": contact.id}.size() == 1 && type(now.hour) == int"#,
            "persona.name != bot.name && conversation.id != ''",
            "size(message.text) > 0 ? true : false",
        ] {
            assert_eq!(names(ok), Ok(()), "{ok}");
        }
        for (bad, name) in [
            ("contact.nmae == 'x'", "contact.nmae"),
            ("customer == 'x'", "customer"),
            ("has(contact.email)", "contact.email"),
            ("channel.kind == 'web'", "channel.kind"),
            ("now.hour > 9 && nmae == 'x'", "nmae"),
            ("[1].exists(t, t == tt)", "tt"),
            ("[1].exists(t, true) && t == 1", "t"),
            ("size(contact.name.first) > 0", "contact.name.first"),
            ("string == contact.nmae", "contact.nmae"),
        ] {
            let err = names(bad).unwrap_err();
            assert_eq!(err.name, name, "{bad}");
            assert!(err.to_string().contains("known names: "), "{err}");
        }
        assert_eq!(
            names("contact.nmae == 'x'")
                .unwrap_err()
                .suggestion
                .as_deref(),
            Some("contact.name")
        );
    }

    #[test]
    fn read_names_skip_has() {
        let c = Condition::compile(
            "vars.a == null && has(vars.b) && [1].exists(x, x == fields.c.d) && size(data.e) > 0",
        )
        .unwrap();
        let names: Vec<String> = c.read_names().iter().map(|n| n.join(".")).collect();
        assert_eq!(names, ["vars.a", "fields.c.d", "data.e"]);
        let mut seen = Vec::new();
        let r: Result<(), String> = c.check_names_with(&mut |s| {
            seen.push(s.join("."));
            if s[0] == "data" {
                Err("no data".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err("no data".into()));
        assert_eq!(seen, ["vars.a", "vars.b", "fields.c.d", "data.e"]);
    }

    #[test]
    fn deep_vars_do_not_overflow() {
        let mut v = Vars::new();
        v.set(&vec!["a"; 32].join("."), 1);
        let c = Condition::compile("has(a.a)").unwrap();
        assert_eq!(c.eval(&v), Ok(true));
    }
}
