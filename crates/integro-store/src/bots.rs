//! Bots: what answers on a tenant's channel accounts. Soft-deleted.

use integro_core::{Actor, new_id};
use serde::Serialize;
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
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
}

/// The fields a caller sets.
#[derive(Debug, Clone)]
pub struct BotFields {
    pub name: String,
    pub description: Option<String>,
    pub fallback_reply: String,
    pub active: bool,
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
);
const COLUMNS: &str =
    "id, tenant_id, name, description, fallback_reply, active, created_at, updated_at, created_by";

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
    })
}

fn validate(fields: &BotFields) -> Result<(), StoreError> {
    let name = fields.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(StoreError::invalid("name", "must be 1 to 200 characters"));
    }
    if fields.fallback_reply.trim().is_empty() {
        return Err(StoreError::invalid(
            "fallback_reply",
            "must not be empty: a bot always answers",
        ));
    }
    if fields.fallback_reply.chars().count() > 4096 {
        return Err(StoreError::invalid(
            "fallback_reply",
            "must be at most 4096 characters",
        ));
    }
    Ok(())
}

pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    fields: BotFields,
) -> Result<Bot, StoreError> {
    validate(&fields)?;
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO bots (id, tenant_id, name, description, fallback_reply, active, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(fields.name.trim())
    .bind(fields.description.clone())
    .bind(&fields.fallback_reply)
    .bind(fields.active as i64)
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    let bot = Bot {
        id,
        tenant_id,
        name: fields.name.trim().to_string(),
        description: fields.description,
        fallback_reply: fields.fallback_reply,
        active: fields.active,
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
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM bots WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
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
    validate(&fields)?;
    let now = now_ms();
    sqlx::query(
        "UPDATE bots SET name = $1, description = $2, fallback_reply = $3, active = $4, updated_at = $5 \
         WHERE tenant_id = $6 AND id = $7 AND deleted_at IS NULL",
    )
    .bind(fields.name.trim())
    .bind(fields.description.clone())
    .bind(&fields.fallback_reply)
    .bind(fields.active as i64)
    .bind(now)
    .bind(before.tenant_id.to_string())
    .bind(before.id.to_string())
    .execute(&mut **tx)
    .await?;
    let after = Bot {
        name: fields.name.trim().to_string(),
        description: fields.description,
        fallback_reply: fields.fallback_reply,
        active: fields.active,
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
