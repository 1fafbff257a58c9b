//! Tenants: the organisations that own bots. Soft-deleted.

use integro_core::{Actor, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::db::{Tx, from_ms, now_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, parse_id};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
}

type Row = (String, String, i64, i64, Option<String>);
const COLUMNS: &str = "id, name, created_at, updated_at, created_by";

fn from_row(r: Row) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: parse_id(&r.0)?,
        name: r.1,
        created_at: from_ms(r.2),
        updated_at: from_ms(r.3),
        created_by: r.4,
    })
}

pub fn validate_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StoreError::invalid("name", "must not be empty"));
    }
    if name.chars().count() > 200 {
        return Err(StoreError::invalid(
            "name",
            "must be at most 200 characters",
        ));
    }
    Ok(name.to_string())
}

pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    name: &str,
) -> Result<Tenant, StoreError> {
    let name = validate_name(name)?;
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO tenants (id, name, created_at, updated_at, created_by) VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(id.to_string())
    .bind(&name)
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    let tenant = Tenant {
        id,
        name,
        created_at: from_ms(now),
        updated_at: from_ms(now),
        created_by: Some(actor.label.clone()),
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("tenant.create", "tenant", id)
            .tenant(id)
            .after(&tenant),
    )
    .await?;
    Ok(tenant)
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<Tenant>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenants WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

/// Every live tenant (platform operators), or only those `member` belongs to.
pub async fn list(
    db: &Db,
    member: Option<Uuid>,
    page: &PageRequest,
) -> Result<Page<Tenant>, StoreError> {
    let rows = Where::new(&format!("SELECT {COLUMNS} FROM tenants"))
        .and_always("deleted_at IS NULL")
        .and(
            "id IN (SELECT tenant_id FROM memberships WHERE user_id = {})",
            member,
        )
        .oldest_first(page)
        .fetch::<Row>(db)
        .await?
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page, |t| t.id))
}

pub async fn rename(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    before: &Tenant,
    name: &str,
) -> Result<Tenant, StoreError> {
    let name = validate_name(name)?;
    let now = now_ms();
    sqlx::query(
        "UPDATE tenants SET name = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL",
    )
    .bind(&name)
    .bind(now)
    .bind(before.id.to_string())
    .execute(&mut **tx)
    .await?;
    let after = Tenant {
        name,
        updated_at: from_ms(now),
        ..before.clone()
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("tenant.update", "tenant", before.id)
            .tenant(before.id)
            .before(before)
            .after(&after),
    )
    .await?;
    Ok(after)
}

/// Soft delete: the tenant disappears from every listing and lookup, and its
/// API keys stop working, but its rows stay for the audit trail.
pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant: &Tenant,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query("UPDATE tenants SET deleted_at = $1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(tenant.id.to_string())
        .execute(&mut **tx)
        .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("tenant.delete", "tenant", tenant.id)
            .tenant(tenant.id)
            .before(tenant),
    )
    .await
}
