//! Bots: what answers on a tenant's channel accounts. Soft-deleted.

use integro_core::{Actor, new_id};
use integro_engine::prompt::Persona;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::db::{Tx, from_ms, now_ms};
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, parse_id};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Bot {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// What the bot answers when nothing else does.
    pub fallback_reply: String,
    /// An inactive bot stores what arrives and answers nothing.
    pub active: bool,
    /// The AI profile that answers when no rule does; none: rules and the
    /// fallback reply only.
    pub ai_profile_id: Option<Uuid>,
    /// Who the bot is when the LLM speaks.
    pub persona: Option<Persona>,
    pub settings: BotSettings,
    /// Bumped on every change to the bot's rules.
    #[serde(skip)]
    pub rules_version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
}

/// How a bot behaves around its replies. Every field has a default, so a
/// stored object may name only what was changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BotSettings {
    /// How many earlier messages of the conversation the LLM sees.
    pub history_messages: u32,
    /// The most tokens (estimated) of history given to the LLM; oldest go first.
    pub history_tokens: u32,
    /// After this long without a message a conversation ends and the next
    /// message starts a new one, with no history.
    pub conversation_expiry_minutes: u32,
    /// Messages arriving this close together, before the LLM has answered,
    /// are answered in one turn (rule and fallback replies never wait).
    pub burst_window_ms: u32,
    /// Per contact: at most this many messages per window are answered.
    pub rate_limit_messages: u32,
    pub rate_limit_window_seconds: u32,
    /// Sent once when a contact goes past the rate limit.
    pub rate_limit_notice: String,
    /// Incoming text is cut to this many characters.
    pub max_input_chars: u32,
    /// A reply containing one of these (case- and accent-insensitive) is not
    /// sent; the fallback reply goes instead.
    pub blocked_phrases: Vec<String>,
    /// Sent when every AI option failed.
    pub error_reply: String,
    /// A conversation handed to a human returns to the bot after this long
    /// without a message; none: it stays with the human.
    pub handoff_timeout_minutes: Option<u32>,
    /// IANA time zone for `now` in rule conditions, e.g. `Europe/Lisbon`.
    pub time_zone: String,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            history_messages: 20,
            history_tokens: 2000,
            conversation_expiry_minutes: 24 * 60,
            burst_window_ms: 2000,
            rate_limit_messages: 20,
            rate_limit_window_seconds: 60,
            rate_limit_notice: "You are sending messages faster than I can answer. I will be back with you in a minute.".into(),
            max_input_chars: 4000,
            blocked_phrases: Vec::new(),
            error_reply: "Sorry, I cannot answer right now. Please try again in a little while.".into(),
            handoff_timeout_minutes: None,
            time_zone: "UTC".into(),
        }
    }
}

impl BotSettings {
    pub fn validate(&self) -> Result<(), StoreError> {
        let check = |ok: bool, field: &'static str, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(StoreError::invalid(field, why))
            }
        };
        check(
            self.history_messages <= 200,
            "settings.history_messages",
            "must be at most 200",
        )?;
        check(
            self.history_tokens <= 200_000,
            "settings.history_tokens",
            "must be at most 200000",
        )?;
        check(
            self.conversation_expiry_minutes >= 1,
            "settings.conversation_expiry_minutes",
            "must be at least 1",
        )?;
        check(
            self.burst_window_ms <= 60_000,
            "settings.burst_window_ms",
            "must be at most 60000 (one minute)",
        )?;
        check(
            self.rate_limit_window_seconds >= 1,
            "settings.rate_limit_window_seconds",
            "must be at least 1",
        )?;
        check(
            self.rate_limit_messages >= 1,
            "settings.rate_limit_messages",
            "must be at least 1",
        )?;
        check(
            !self.rate_limit_notice.trim().is_empty(),
            "settings.rate_limit_notice",
            "must not be empty",
        )?;
        check(
            (1..=100_000).contains(&self.max_input_chars),
            "settings.max_input_chars",
            "must be 1 to 100000",
        )?;
        check(
            !self.error_reply.trim().is_empty(),
            "settings.error_reply",
            "must not be empty",
        )?;
        check(
            self.blocked_phrases.len() <= 1000,
            "settings.blocked_phrases",
            "at most 1000 phrases",
        )?;
        check(
            self.handoff_timeout_minutes != Some(0),
            "settings.handoff_timeout_minutes",
            "must be at least 1, or null for never",
        )?;
        check(
            jiff::tz::TimeZone::get(&self.time_zone).is_ok(),
            "settings.time_zone",
            "must be an IANA time zone name such as `Europe/Lisbon` or `UTC`",
        )
    }
}

/// The fields a caller sets.
#[derive(Debug, Clone)]
pub struct BotFields {
    pub name: String,
    pub description: Option<String>,
    pub fallback_reply: String,
    pub active: bool,
    pub ai_profile_id: Option<Uuid>,
    pub persona: Option<Persona>,
    pub settings: BotSettings,
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
);
const COLUMNS: &str = "id, tenant_id, name, description, fallback_reply, active, created_at, updated_at, created_by, \
     ai_profile_id, persona_json, settings_json, rules_version";

fn from_row(r: Row) -> Result<Bot, StoreError> {
    Ok(Bot {
        id: parse_id(&r.0)?,
        tenant_id: parse_id(&r.1)?,
        name: r.2,
        description: r.3,
        fallback_reply: r.4,
        active: r.5 != 0,
        created_at: from_ms(r.6),
        updated_at: from_ms(r.7),
        created_by: r.8,
        ai_profile_id: r.9.as_deref().map(parse_id).transpose()?,
        persona: r
            .10
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Internal(format!("stored persona does not parse: {e}")))?,
        settings: serde_json::from_str(&r.11)
            .map_err(|e| StoreError::Internal(format!("stored bot settings do not parse: {e}")))?,
        rules_version: r.12,
    })
}

/// The stored settings with `changes` (a partial object) laid over them.
pub fn merge_settings(
    current: &BotSettings,
    changes: serde_json::Value,
) -> Result<BotSettings, StoreError> {
    let mut merged = serde_json::to_value(current).expect("serialisable");
    let serde_json::Value::Object(changes) = changes else {
        return Err(StoreError::invalid("settings", "must be an object"));
    };
    for (k, v) in changes {
        merged[k] = v;
    }
    serde_json::from_value(merged).map_err(|e| StoreError::invalid("settings", e.to_string()))
}

async fn profile_exists(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Option<Uuid>,
) -> Result<(), StoreError> {
    let Some(id) = id else { return Ok(()) };
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ai_profiles WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
    )
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    if n == 0 {
        return Err(StoreError::invalid(
            "ai_profile_id",
            "no such AI profile in this tenant",
        ));
    }
    Ok(())
}

/// Checks a bot's fields. `before` is the stored bot when updating: a
/// persona that did not change is not held to the variable-name check, so
/// one saved before it existed does not block unrelated changes.
fn validate(fields: &BotFields, before: Option<&Bot>) -> Result<(), StoreError> {
    crate::fields::check_name("name", &fields.name)?;
    if fields.fallback_reply.trim().is_empty() {
        return Err(StoreError::invalid(
            "fallback_reply",
            "must not be empty: a bot always answers",
        ));
    }
    crate::fields::check_text(
        "fallback_reply",
        &fields.fallback_reply,
        crate::fields::MAX_MESSAGE_CHARS,
    )?;
    if let Some(p) = &fields.persona {
        crate::fields::check_name("persona.name", &p.name)?;
        if before.is_none_or(|b| b.persona.as_ref() != Some(p)) {
            integro_engine::prompt::validate_persona(p)
                .map_err(|(field, message)| StoreError::invalid(field, message))?;
        } else if let Some(t) = &p.system_prompt {
            integro_engine::template::check(t)
                .map_err(|e| StoreError::invalid("persona.system_prompt", e.to_string()))?;
        }
    }
    fields.settings.validate()
}

pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    fields: BotFields,
) -> Result<Bot, StoreError> {
    validate(&fields, None)?;
    profile_exists(tx, tenant_id, fields.ai_profile_id).await?;
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO bots (id, tenant_id, name, description, fallback_reply, active, created_at, updated_at, created_by, \
         ai_profile_id, persona_json, settings_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11)",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(fields.name.trim())
    .bind(fields.description.clone())
    .bind(&fields.fallback_reply)
    .bind(fields.active as i64)
    .bind(now)
    .bind(actor.label.clone())
    .bind(fields.ai_profile_id.map(|p| p.to_string()))
    .bind(fields.persona.as_ref().map(|p| serde_json::to_string(p).expect("serialisable")))
    .bind(serde_json::to_string(&fields.settings).expect("serialisable"))
    .execute(&mut **tx)
    .await?;
    let bot = Bot {
        id,
        tenant_id,
        name: fields.name.trim().to_string(),
        description: fields.description,
        fallback_reply: fields.fallback_reply,
        active: fields.active,
        ai_profile_id: fields.ai_profile_id,
        persona: fields.persona,
        settings: fields.settings,
        rules_version: 0,
        created_at: from_ms(now),
        updated_at: from_ms(now),
        created_by: Some(actor.label.clone()),
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("bot.create", "bot", id)
            .tenant(tenant_id)
            .after(&bot),
    )
    .await?;
    Ok(bot)
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<Bot>, StoreError> {
    let row: Option<Row> = crate::sql::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM bots WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut db.reader().await?.conn())
    .await?;
    row.map(from_row).transpose()
}

pub async fn list(db: &Db, tenant_id: Uuid, page: &PageRequest) -> Result<Page<Bot>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM bots WHERE tenant_id = $1 AND deleted_at IS NULL AND id > $2 ORDER BY id LIMIT $3"
    )))
    .bind(tenant_id.to_string())
    .bind(page.after_text().unwrap_or_default())
    .bind(page.fetch_limit())
    .fetch_all(db.pool())
    .await?;
    let bots = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(bots, page, |b| b.id))
}

pub async fn update(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    before: &Bot,
    fields: BotFields,
) -> Result<Bot, StoreError> {
    validate(&fields, Some(before))?;
    profile_exists(tx, before.tenant_id, fields.ai_profile_id).await?;
    let now = now_ms();
    sqlx::query(
        "UPDATE bots SET name = $1, description = $2, fallback_reply = $3, active = $4, updated_at = $5, \
         ai_profile_id = $6, persona_json = $7, settings_json = $8 \
         WHERE tenant_id = $9 AND id = $10 AND deleted_at IS NULL",
    )
    .bind(fields.name.trim())
    .bind(fields.description.clone())
    .bind(&fields.fallback_reply)
    .bind(fields.active as i64)
    .bind(now)
    .bind(fields.ai_profile_id.map(|p| p.to_string()))
    .bind(fields.persona.as_ref().map(|p| serde_json::to_string(p).expect("serialisable")))
    .bind(serde_json::to_string(&fields.settings).expect("serialisable"))
    .bind(before.tenant_id.to_string())
    .bind(before.id.to_string())
    .execute(&mut **tx)
    .await?;
    let after = Bot {
        name: fields.name.trim().to_string(),
        description: fields.description,
        fallback_reply: fields.fallback_reply,
        active: fields.active,
        ai_profile_id: fields.ai_profile_id,
        persona: fields.persona,
        settings: fields.settings,
        updated_at: from_ms(now),
        ..before.clone()
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("bot.update", "bot", before.id)
            .tenant(before.tenant_id)
            .before(before)
            .after(&after),
    )
    .await?;
    Ok(after)
}

/// A bot by id, whatever its tenant (for workers, which got it from a message).
pub async fn by_id(db: &Db, id: Uuid) -> Result<Option<Bot>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM bots WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

impl Bot {
    /// The bot's persona, or one that only carries the bot's name.
    pub fn persona_or_default(&self) -> Persona {
        self.persona.clone().unwrap_or_else(|| Persona {
            name: self.name.clone(),
            ..Persona::default()
        })
    }
}

impl BotFields {
    /// The fields of a stored bot, to change some of them.
    pub fn of(bot: &Bot) -> BotFields {
        BotFields {
            name: bot.name.clone(),
            description: bot.description.clone(),
            fallback_reply: bot.fallback_reply.clone(),
            active: bot.active,
            ai_profile_id: bot.ai_profile_id,
            persona: bot.persona.clone(),
            settings: bot.settings.clone(),
        }
    }
}

/// Soft delete. A bot with live channel accounts cannot be deleted: delete
/// or move the accounts first.
pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    bot: &Bot,
) -> Result<(), StoreError> {
    let accounts: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM channel_accounts WHERE bot_id = $1 AND deleted_at IS NULL",
    )
    .bind(bot.id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    if accounts > 0 {
        return Err(StoreError::Conflict(format!(
            "the bot still has {accounts} channel account(s); delete them first"
        )));
    }
    let now = now_ms();
    sqlx::query(
        "UPDATE bots SET deleted_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3",
    )
    .bind(now)
    .bind(bot.tenant_id.to_string())
    .bind(bot.id.to_string())
    .execute(&mut **tx)
    .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("bot.delete", "bot", bot.id)
            .tenant(bot.tenant_id)
            .before(bot),
    )
    .await
}
