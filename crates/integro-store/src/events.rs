//! Engine events: what the reply engine did that an operator should know
//! about (a budget spent, every AI option failing, a provider key rejected,
//! sends failing), kept per tenant; some are also sent as alerts.

use integro_core::new_id;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{from_ms, now_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::sql::{self, Conn};
use crate::{Db, StoreError, parse_id};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EngineEvent {
    pub id: Uuid,
    pub bot_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    /// `budget_exhausted`, `ai_failed`, `ai_auth_failed`, `sends_failing`, `alert_failed`.
    pub kind: String,
    pub detail: String,
    /// Whether an alert went out for it.
    pub alerted: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Clone)]
pub struct NewEvent<'a> {
    pub tenant_id: Uuid,
    pub bot_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub kind: &'a str,
    pub detail: String,
}

/// Stores an event. With a `dedupe_key`, an event of the same key already
/// stored (by this or a concurrent transaction) wins and this one is not
/// stored: `None`.
pub async fn record(
    tx: &mut Conn<'_>,
    e: NewEvent<'_>,
    alerted: bool,
    dedupe_key: Option<&str>,
) -> Result<Option<Uuid>, StoreError> {
    let id = new_id();
    let stored: Option<String> = sql::query(
        "INSERT INTO engine_events (id, tenant_id, bot_id, conversation_id, kind, detail, alerted, dedupe_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(id.to_string())
    .bind(e.tenant_id.to_string())
    .bind(e.bot_id.map(|b| b.to_string()))
    .bind(e.conversation_id.map(|c| c.to_string()))
    .bind(e.kind)
    .bind(e.detail)
    .bind(alerted as i64)
    .bind(dedupe_key)
    .bind(now_ms())
    .scalar_optional(tx)
    .await?;
    Ok(stored.map(|_| id))
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    i64,
);

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    kind: Option<&str>,
    page: &PageRequest,
) -> Result<Page<EngineEvent>, StoreError> {
    let rows: Vec<Row> = Where::new(
        "SELECT id, bot_id, conversation_id, kind, detail, alerted, created_at FROM engine_events",
    )
    .and("tenant_id = {}", Some(tenant_id))
    .and("kind = {}", kind)
    .newest_first(page)
    .fetch(db)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            Ok(EngineEvent {
                id: parse_id(&r.0)?,
                bot_id: r.1.as_deref().map(parse_id).transpose()?,
                conversation_id: r.2.as_deref().map(parse_id).transpose()?,
                kind: r.3,
                detail: r.4,
                alerted: r.5 != 0,
                created_at: from_ms(r.6),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page::from_rows(items, page, |e| e.id))
}

/// An event's kind and detail (for the alert that reports it).
pub async fn kind_and_detail(
    db: &Db,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT kind, detail FROM engine_events WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.to_string())
            .bind(id.to_string())
            .fetch_optional(db.pool())
            .await?,
    )
}
