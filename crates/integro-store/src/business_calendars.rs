//! Business calendars (#37): a tenant's open hours, by name, that workflow
//! SLAs count in (`sla: { calendar: office }`). A calendar in use by a
//! published version can still change: deadlines armed before keep their
//! time, later ones use the new hours.

use std::collections::HashMap;

use integro_core::{Actor, new_id};
use integro_engine::workflow::BusinessCalendar;
use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::db::{from_ms, now_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, Tx, parse_id};
use integro_db::OnUnique;

/// The most calendars a tenant keeps.
pub const MAX_CALENDARS: i64 = 50;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Calendar {
    pub id: Uuid,
    /// What SLAs name it by: lowercase letters, digits and underscores.
    pub name: String,
    #[serde(flatten)]
    pub hours: BusinessCalendar,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, name, body, created_at, updated_at";

struct Row(Calendar);

impl<'r> sqlx::FromRow<'r, AnyRow> for Row {
    fn from_row(r: &'r AnyRow) -> Result<Row, sqlx::Error> {
        let body: String = r.try_get(2)?;
        Ok(Row(Calendar {
            id: parse_id(&r.try_get::<String, _>(0)?).map_err(|e| sqlx::Error::Decode(e.into()))?,
            name: r.try_get(1)?,
            hours: serde_json::from_str(&body).map_err(|e| sqlx::Error::Decode(e.into()))?,
            created_at: from_ms(r.try_get(3)?),
            updated_at: from_ms(r.try_get(4)?),
        }))
    }
}

/// A calendar's name and hours, checked: 422 naming the field at fault.
pub fn check(name: &str, hours: &BusinessCalendar) -> Result<(), StoreError> {
    if !integro_engine::workflow::is_key(name) {
        return Err(StoreError::invalid(
            "name",
            "use 1 to 64 lowercase letters, digits and underscores, starting with a letter",
        ));
    }
    hours.validate().map_err(|problems| {
        let first = &problems[0];
        StoreError::invalid(
            if first.path.is_empty() {
                "weekly"
            } else {
                &first.path
            },
            first.message.clone(),
        )
    })
}

pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    name: &str,
    hours: &BusinessCalendar,
) -> Result<Calendar, StoreError> {
    check(name, hours)?;
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM business_calendars WHERE tenant_id = $1 AND deleted_at IS NULL",
    )
    .bind(tenant_id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    if count >= MAX_CALENDARS {
        return Err(StoreError::Conflict(format!(
            "the tenant already has {MAX_CALENDARS} business calendars, the most allowed"
        )));
    }
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO business_calendars (id, tenant_id, name, body, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(name)
    .bind(serde_json::to_string(hours).map_err(|e| StoreError::Internal(e.to_string()))?)
    .bind(now)
    .execute(&mut **tx)
    .await
    .on_unique(&format!(
        "a business calendar named `{name}` already exists"
    ))?;
    let created = read(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("business calendar"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("business_calendar.create", "business_calendar", id)
            .tenant(tenant_id)
            .after(&created),
    )
    .await?;
    Ok(created)
}

pub async fn update(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    id: Uuid,
    hours: &BusinessCalendar,
) -> Result<Calendar, StoreError> {
    let before = read(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("business calendar"))?;
    check(&before.name, hours)?;
    sqlx::query(
        "UPDATE business_calendars SET body = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4",
    )
    .bind(serde_json::to_string(hours).map_err(|e| StoreError::Internal(e.to_string()))?)
    .bind(now_ms())
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .execute(&mut **tx)
    .await?;
    let after = read(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("business calendar"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("business_calendar.update", "business_calendar", id)
            .tenant(tenant_id)
            .before(&before)
            .after(&after),
    )
    .await?;
    Ok(after)
}

/// Deletes a calendar; a published version naming it fails its SLA steps
/// until a calendar of that name exists again.
pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<(), StoreError> {
    let before = read(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("business calendar"))?;
    sqlx::query("UPDATE business_calendars SET deleted_at = $1 WHERE id = $2 AND tenant_id = $3")
        .bind(now_ms())
        .bind(id.to_string())
        .bind(tenant_id.to_string())
        .execute(&mut **tx)
        .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("business_calendar.delete", "business_calendar", id)
            .tenant(tenant_id)
            .before(&before),
    )
    .await
}

async fn read(tx: &mut Tx<'_>, tenant_id: Uuid, id: Uuid) -> Result<Option<Calendar>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM business_calendars WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    )))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.0))
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<Calendar>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM business_calendars WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    )))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    page: &PageRequest,
) -> Result<Page<Calendar>, StoreError> {
    let rows: Vec<Row> = Where::new(&format!("SELECT {COLUMNS} FROM business_calendars"))
        .and_always("deleted_at IS NULL")
        .and("tenant_id = {}", Some(tenant_id))
        .oldest_first(page)
        .fetch(db)
        .await?;
    Ok(Page::from_rows(
        rows.into_iter().map(|r| r.0).collect(),
        page,
        |c| c.id,
    ))
}

/// The tenant's calendars by name, for a workflow step.
pub async fn by_name(
    db: &Db,
    tenant_id: Uuid,
) -> Result<HashMap<String, BusinessCalendar>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM business_calendars WHERE tenant_id = $1 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| (r.0.name, r.0.hours)).collect())
}

/// What a workflow step of the tenant may read: its calendars.
pub async fn step_context(
    db: &Db,
    tenant_id: Uuid,
) -> Result<integro_engine::workflow::StepContext, StoreError> {
    Ok(integro_engine::workflow::StepContext {
        calendars: by_name(db, tenant_id).await?,
        ..Default::default()
    })
}
