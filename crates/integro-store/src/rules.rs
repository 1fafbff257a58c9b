//! A bot's rules: keyword and pattern matches with a reply and/or an action.
//! Every change bumps the bot's `rules_version`, so workers know to rebuild
//! their compiled rule set. Soft-deleted.

use integro_core::{Actor, new_id};
use integro_engine::rules::{Action, MatchKind, RuleSpec};
use integro_engine::yaml;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::db::{Tx, from_ms, now_ms};
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, parse_id};

/// More rules than this per bot is a mistake (imports are checked too).
pub const MAX_RULES_PER_BOT: i64 = 20_000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rule {
    pub id: Uuid,
    pub bot_id: Uuid,
    #[serde(flatten)]
    pub fields: RuleFields,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
}

/// What a caller sets on a rule; also the shape of a rule in YAML exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Higher runs first; equal priorities run in creation order.
    #[serde(default)]
    pub priority: i64,
    /// `contains` (default: whole words, ignoring case and accents), `exact`,
    /// `starts_with`, `any_keyword` or `regex`.
    #[serde(rename = "match", default = "contains")]
    pub match_kind: MatchKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For `any_keyword`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// A CEL expression over `message`, `contact`, `channel`, `vars`, `now`,
    /// `conversation`, `bot` and `persona` (see docs/templates.md); other
    /// names are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Text with `{{contact.name}}`-style fields, which may give a default
    /// for a missing value: `{{contact.name | default: "there"}}`. Unknown
    /// names are refused (see docs/templates.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// `{"type": "handoff"}`, `{"type": "set_variable", "name": …, "value": …}`
    /// or `{"type": "ask_llm", "instructions": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default = "yes")]
    pub active: bool,
    /// Fields not listed above: refused by `validate`, so that a misspelt
    /// field is an error rather than ignored. (Not `deny_unknown_fields`,
    /// which would also forbid the `id` and times in the `Rule` schema that
    /// flattens this one.)
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

fn contains() -> MatchKind {
    MatchKind::Contains
}
fn yes() -> bool {
    true
}

impl RuleFields {
    /// The engine's view of the rule.
    pub fn spec(&self, id: Uuid) -> RuleSpec {
        RuleSpec {
            id,
            priority: self.priority,
            match_kind: self.match_kind,
            pattern: self.pattern.clone(),
            keywords: self.keywords.clone(),
            condition: self.condition.clone(),
            reply: self.reply.clone(),
            media_url: self.media_url.clone(),
            action: self.action.clone(),
            active: self.active,
        }
    }

    pub fn validate(&self) -> Result<(), StoreError> {
        if let Some(field) = self.unknown.keys().next() {
            return Err(StoreError::invalid(field, "unknown field"));
        }
        if let Some(n) = &self.name
            && n.chars().count() > 200
        {
            return Err(StoreError::invalid(
                "name",
                "must be at most 200 characters",
            ));
        }
        if let Some(url) = &self.media_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(StoreError::invalid(
                "media_url",
                "must be an http:// or https:// URL",
            ));
        }
        integro_engine::rules::validate(&self.spec(Uuid::nil()))
            .map_err(|e| StoreError::invalid(e.field, &e.message))
    }
}

type Row = (
    String,
    String,
    Option<String>,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
);
const COLUMNS: &str = "id, bot_id, name, priority, match_kind, pattern, keywords_json, condition, reply, media_url, \
     action_json, active, created_at, updated_at, created_by";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("stored rule {what} does not parse: {e}"))
}

fn from_row(r: Row) -> Result<Rule, StoreError> {
    Ok(Rule {
        id: parse_id(&r.0)?,
        bot_id: parse_id(&r.1)?,
        fields: RuleFields {
            name: r.2,
            priority: r.3,
            match_kind: serde_json::from_value(serde_json::Value::String(r.4))
                .map_err(|e| corrupt("match kind", e))?,
            pattern: r.5,
            keywords: serde_json::from_str(&r.6).map_err(|e| corrupt("keywords", e))?,
            condition: r.7,
            reply: r.8,
            media_url: r.9,
            action: r
                .10
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("action", e))?,
            active: r.11 != 0,
            unknown: Default::default(),
        },
        created_at: from_ms(r.12),
        updated_at: from_ms(r.13),
        created_by: r.14,
    })
}

async fn bump_version(tx: &mut Tx<'_>, bot_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE bots SET rules_version = rules_version + 1 WHERE id = $1")
        .bind(bot_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert(
    tx: &mut Tx<'_>,
    actor: &Actor,
    tenant_id: Uuid,
    bot_id: Uuid,
    f: &RuleFields,
) -> Result<Uuid, StoreError> {
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO rules (id, tenant_id, bot_id, name, priority, match_kind, pattern, keywords_json, condition, reply, \
         media_url, action_json, active, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(bot_id.to_string())
    .bind(f.name.clone())
    .bind(f.priority)
    .bind(f.match_kind.as_str())
    .bind(f.pattern.clone())
    .bind(serde_json::to_string(&f.keywords).expect("serialisable"))
    .bind(f.condition.clone())
    .bind(f.reply.clone())
    .bind(f.media_url.clone())
    .bind(f.action.as_ref().map(|a| serde_json::to_string(a).expect("serialisable")))
    .bind(f.active as i64)
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

async fn count(tx: &mut Tx<'_>, bot_id: Uuid) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM rules WHERE bot_id = $1 AND deleted_at IS NULL")
            .bind(bot_id.to_string())
            .fetch_one(&mut **tx)
            .await?,
    )
}

pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    bot_id: Uuid,
    f: RuleFields,
) -> Result<Rule, StoreError> {
    f.validate()?;
    if count(tx, bot_id).await? >= MAX_RULES_PER_BOT {
        return Err(StoreError::Conflict(format!(
            "the bot already has {MAX_RULES_PER_BOT} rules, the most allowed"
        )));
    }
    let id = insert(tx, actor, tenant_id, bot_id, &f).await?;
    bump_version(tx, bot_id).await?;
    let rule = get_in(tx, tenant_id, bot_id, id)
        .await?
        .ok_or(StoreError::NotFound("rule"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("rule.create", "rule", id)
            .tenant(tenant_id)
            .after(&rule),
    )
    .await?;
    Ok(rule)
}

async fn get_in(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    bot_id: Uuid,
    id: Uuid,
) -> Result<Option<Rule>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rules WHERE tenant_id = $1 AND bot_id = $2 AND id = $3 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(bot_id.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(from_row).transpose()
}

pub async fn get(
    db: &Db,
    tenant_id: Uuid,
    bot_id: Uuid,
    id: Uuid,
) -> Result<Option<Rule>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rules WHERE tenant_id = $1 AND bot_id = $2 AND id = $3 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(bot_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

/// One page of a bot's rules, in creation order.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    bot_id: Uuid,
    page: &PageRequest,
) -> Result<Page<Rule>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rules WHERE tenant_id = $1 AND bot_id = $2 AND deleted_at IS NULL AND id > $3 \
         ORDER BY id LIMIT $4"
    )))
    .bind(tenant_id.to_string())
    .bind(bot_id.to_string())
    .bind(page.after_text().unwrap_or_default())
    .bind(page.fetch_limit())
    .fetch_all(db.pool())
    .await?;
    let items = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |r| r.id))
}

/// Every live rule of a bot, in creation order (for compiling and exports).
pub async fn all(db: &Db, bot_id: Uuid) -> Result<Vec<Rule>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rules WHERE bot_id = $1 AND deleted_at IS NULL ORDER BY id"
    )))
    .bind(bot_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(from_row).collect()
}

pub async fn update(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    before: &Rule,
    f: RuleFields,
) -> Result<Rule, StoreError> {
    f.validate()?;
    sqlx::query(
        "UPDATE rules SET name = $1, priority = $2, match_kind = $3, pattern = $4, keywords_json = $5, condition = $6, \
         reply = $7, media_url = $8, action_json = $9, active = $10, updated_at = $11 WHERE tenant_id = $12 AND id = $13",
    )
    .bind(f.name.clone())
    .bind(f.priority)
    .bind(f.match_kind.as_str())
    .bind(f.pattern.clone())
    .bind(serde_json::to_string(&f.keywords).expect("serialisable"))
    .bind(f.condition.clone())
    .bind(f.reply.clone())
    .bind(f.media_url.clone())
    .bind(f.action.as_ref().map(|a| serde_json::to_string(a).expect("serialisable")))
    .bind(f.active as i64)
    .bind(now_ms())
    .bind(tenant_id.to_string())
    .bind(before.id.to_string())
    .execute(&mut **tx)
    .await?;
    bump_version(tx, before.bot_id).await?;
    let after = get_in(tx, tenant_id, before.bot_id, before.id)
        .await?
        .ok_or(StoreError::NotFound("rule"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("rule.update", "rule", before.id)
            .tenant(tenant_id)
            .before(before)
            .after(&after),
    )
    .await?;
    Ok(after)
}

pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    rule: &Rule,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "UPDATE rules SET deleted_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3",
    )
    .bind(now)
    .bind(tenant_id.to_string())
    .bind(rule.id.to_string())
    .execute(&mut **tx)
    .await?;
    bump_version(tx, rule.bot_id).await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("rule.delete", "rule", rule.id)
            .tenant(tenant_id)
            .before(rule),
    )
    .await
}

/// Replaces all of a bot's rules with `rules` (an import): every rule is
/// checked first, and nothing changes unless all are valid. Errors name the
/// rule by its position (`rules[3].pattern`).
pub async fn replace_all(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    bot_id: Uuid,
    rules: Vec<RuleFields>,
) -> Result<usize, StoreError> {
    if rules.len() as i64 > MAX_RULES_PER_BOT {
        return Err(StoreError::invalid(
            "rules",
            format!("at most {MAX_RULES_PER_BOT} rules per bot"),
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        r.validate().map_err(|e| match e {
            StoreError::Invalid { field, message } => StoreError::Invalid {
                field: format!("rules[{i}].{field}"),
                message,
            },
            other => other,
        })?;
    }
    let now = now_ms();
    let removed = sqlx::query("UPDATE rules SET deleted_at = $1, updated_at = $1 WHERE bot_id = $2 AND deleted_at IS NULL")
        .bind(now)
        .bind(bot_id.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    for r in &rules {
        insert(tx, actor, tenant_id, bot_id, r).await?;
    }
    bump_version(tx, bot_id).await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("rule.import", "bot", bot_id)
            .tenant(tenant_id)
            .after(&serde_json::json!({ "removed": removed, "imported": rules.len() })),
    )
    .await?;
    Ok(rules.len())
}

/// A bot's rules as one YAML document `{rules: [...]}`: what export writes
/// and import reads.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDocument {
    pub rules: Vec<RuleFields>,
}

impl RuleDocument {
    /// The bot's live rules, in creation order.
    pub async fn of_bot(db: &Db, bot_id: Uuid) -> Result<RuleDocument, StoreError> {
        Ok(RuleDocument {
            rules: all(db, bot_id)
                .await?
                .into_iter()
                .map(|r| r.fields)
                .collect(),
        })
    }

    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).expect("rules serialise to YAML")
    }

    /// Reads YAML (or JSON, which YAML includes). The error says where the
    /// document is wrong.
    ///
    /// YAML aliases (`*name`) repeat an anchored node (`&name`) without
    /// repeating its text, so a small document can stand for a huge one. The
    /// document is first walked without building anything, counting what
    /// it expands to, and refused when that passes `yaml::MAX_EXPANSION`
    /// times its own size: values are only built from a document whose
    /// expanded size is bounded by its length.
    pub fn from_yaml(text: &str) -> Result<RuleDocument, YamlError> {
        entries_within(text)?;
        expanded_size_within(text, yaml::allowance(text.len()))?;
        yaml_serde::from_str(text)
            .map_err(|e| YamlError::Malformed(format!("the rules document does not parse: {e}")))
    }
}

/// The most separators a rules document may hold (`yaml::MAX_SEPARATORS`).
/// A thousand rules with their keywords and replies stay well below.
pub const MAX_YAML_SEPARATORS: usize = yaml::MAX_SEPARATORS;

/// Refuses a document denser than `MAX_YAML_SEPARATORS` before it is parsed.
fn entries_within(text: &str) -> Result<(), YamlError> {
    let separators = yaml::separators(text);
    if separators > MAX_YAML_SEPARATORS {
        return Err(YamlError::TooRepetitive(format!(
            "the rules document has too many entries ({separators} separators, at most \
             {MAX_YAML_SEPARATORS}): import it in several parts"
        )));
    }
    Ok(())
}

/// Why a rules document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlError {
    /// Not YAML, or not the shape of a rules document: where and why.
    Malformed(String),
    /// Its aliases would expand it past `yaml::MAX_EXPANSION` times its length.
    TooRepetitive(String),
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            YamlError::Malformed(m) | YamlError::TooRepetitive(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for YamlError {}

/// Refuses `text` when its aliases would expand it past `allowed`
/// (`yaml::expands_within`): values are only built from a document whose
/// expanded size is bounded by its length.
fn expanded_size_within(text: &str, allowed: usize) -> Result<(), YamlError> {
    if yaml::expands_within(text, allowed) {
        return Ok(());
    }
    Err(YamlError::TooRepetitive(format!(
        "the rules document repeats content through YAML aliases (*name) so much that it would \
         grow to more than {} times its size: write the repeated rules or texts out in full \
         instead of using anchors (&name) and aliases",
        yaml::MAX_EXPANSION
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn allowance(text: &str) -> usize {
        yaml::allowance(text.len())
    }

    #[test]
    fn a_plain_document_and_a_modest_alias_are_read() {
        let doc = RuleDocument::from_yaml(
            "rules:\n- match: contains\n  pattern: &p hours\n  reply: 9 to 5\n- pattern: *p\n  reply: again\n",
        )
        .unwrap();
        assert_eq!(doc.rules.len(), 2);
        assert_eq!(doc.rules[1].pattern.as_deref(), Some("hours"));
        let json =
            RuleDocument::from_yaml(r#"{"rules": [{"pattern": "a", "reply": "b"}]}"#).unwrap();
        assert_eq!(json.rules[0].reply.as_deref(), Some("b"));
    }

    #[test]
    fn a_nest_of_aliases_is_refused_quickly() {
        let mut yaml = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let items = vec![format!("*{prev}"); 9].join(",");
            yaml.push_str(&format!("{name}: &{name} [{items}]\n"));
        }
        yaml.push_str("rules: [*i]\n");
        let started = Instant::now();
        let err = RuleDocument::from_yaml(&yaml).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(&err, YamlError::TooRepetitive(m) if m.contains("aliases")),
            "{err}"
        );
    }

    #[test]
    fn a_large_scalar_repeated_by_alias_is_refused_before_it_is_copied() {
        // The reported import: one large scalar, then many aliases of it.
        let big = "x".repeat(400_000);
        let mut yaml = format!("rules:\n- reply: &big {big}\n  pattern: a\n");
        for _ in 0..50_000 {
            yaml.push_str("- {pattern: a, reply: *big}\n");
        }
        assert!(yaml.len() < 2_000_000);
        let started = Instant::now();
        let err = RuleDocument::from_yaml(&yaml).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(err, YamlError::TooRepetitive(_)), "{err}");
    }

    #[test]
    fn dense_documents_without_aliases_stay_within_the_allowance() {
        let dense = [
            format!("[{}]", vec!["a"; 100_000].join(",")),
            format!("{{{}}}", vec!["a"; 100_000].join(",")),
            format!("[{}]", vec!["?"; 100_000].join(",")),
            format!("\"{}\"", "\\L".repeat(100_000)),
            "- \n".repeat(100_000),
            "[[[[[[[[[[]]]]]]]]]]".to_string(),
            String::new(),
        ];
        for text in dense {
            assert_eq!(
                expanded_size_within(&text, allowance(&text)),
                Ok(()),
                "{}",
                &text[..text.len().min(40)]
            );
        }
    }

    #[test]
    fn a_dense_document_is_refused_before_it_is_parsed() {
        // ~1 MB of one-letter keywords: 500,000 nodes for the parser.
        let text = format!(
            "rules:\n  - name: x\n    keywords: [{}]\n    reply: hi\n",
            vec!["a"; 500_000].join(",")
        );
        assert!(matches!(
            RuleDocument::from_yaml(&text),
            Err(YamlError::TooRepetitive(m)) if m.contains("too many entries")
        ));
        // A thousand ordinary rules are read.
        let mut ok = String::from("rules:\n");
        for i in 0..1000 {
            ok.push_str(&format!(
                "  - name: rule {i}\n    keywords: [price, cost, quote]\n    reply: \"Our prices are on the site, thanks for asking!\"\n"
            ));
        }
        assert!(RuleDocument::from_yaml(&ok).is_ok());
    }

    #[test]
    fn syntax_errors_are_still_reported_as_such() {
        assert!(matches!(
            RuleDocument::from_yaml("rules: [ {"),
            Err(YamlError::Malformed(m)) if m.contains("does not parse")
        ));
        assert!(matches!(
            RuleDocument::from_yaml("rules: [*nowhere]"),
            Err(YamlError::Malformed(_))
        ));
        assert!(matches!(
            RuleDocument::from_yaml("rules: []\n---\nrules: []\n"),
            Err(YamlError::Malformed(_))
        ));
    }
}
