//! Trend sources (RSS and Atom feeds a tenant reads) and trends fetched
//! lately, kept for a while per tenant.

use integro_core::{Actor, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::db::{Tx, from_ms, now_ms};
use crate::{Db, StoreError, parse_id};

/// Feeds one tenant may read.
pub const MAX_SOURCES: i64 = 50;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrendSource {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

type Row = (String, String, String, i64);

fn from_row(r: Row) -> Result<TrendSource, StoreError> {
    Ok(TrendSource {
        id: parse_id(&r.0)?,
        name: r.1,
        url: r.2,
        created_at: from_ms(r.3),
    })
}

pub async fn list(db: &Db, tenant_id: Uuid) -> Result<Vec<TrendSource>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, url, created_at FROM trend_sources WHERE tenant_id = $1 ORDER BY id LIMIT 100",
    )
    .bind(tenant_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(from_row).collect()
}

/// Adds a feed; refused past `MAX_SOURCES`.
pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    name: &str,
    url: &str,
) -> Result<TrendSource, StoreError> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trend_sources WHERE tenant_id = $1")
        .bind(tenant_id.to_string())
        .fetch_one(&mut **tx)
        .await?;
    if count >= MAX_SOURCES {
        return Err(StoreError::invalid(
            "url",
            format!("a tenant reads at most {MAX_SOURCES} feeds"),
        ));
    }
    let source = TrendSource {
        id: new_id(),
        name: name.to_string(),
        url: url.to_string(),
        created_at: from_ms(now_ms()),
    };
    sqlx::query(
        "INSERT INTO trend_sources (id, tenant_id, name, url, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(source.id.to_string())
    .bind(tenant_id.to_string())
    .bind(name)
    .bind(url)
    .bind(actor.id.clone())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("trend_source.create", "trend_source", source.id)
            .tenant(tenant_id)
            .after(&source),
    )
    .await?;
    forget(tx, tenant_id).await?;
    Ok(source)
}

/// Deletes a feed; false when the tenant has none of that id.
pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let deleted = sqlx::query("DELETE FROM trend_sources WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id.to_string())
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Ok(false);
    }
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("trend_source.delete", "trend_source", id).tenant(tenant_id),
    )
    .await?;
    forget(tx, tenant_id).await?;
    Ok(true)
}

/// The feeds changed: what was read from them is stale.
async fn forget(tx: &mut Tx<'_>, tenant_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM trend_cache WHERE tenant_id = $1 AND cache_key = 'feeds'")
        .bind(tenant_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A cached answer younger than `max_age_ms`: its body and when it was fetched.
pub async fn cached(
    db: &Db,
    tenant_id: Uuid,
    key: &str,
    max_age_ms: i64,
) -> Result<Option<(String, OffsetDateTime)>, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT body, fetched_at FROM trend_cache WHERE tenant_id = $1 AND cache_key = $2 AND fetched_at > $3",
    )
    .bind(tenant_id.to_string())
    .bind(key)
    .bind(now_ms() - max_age_ms)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(body, at)| (body, from_ms(at))))
}

pub async fn cache(db: &Db, tenant_id: Uuid, key: &str, body: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO trend_cache (tenant_id, cache_key, body, fetched_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, cache_key) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at",
    )
    .bind(tenant_id.to_string())
    .bind(key)
    .bind(body)
    .bind(now_ms())
    .execute(&mut *db.writer().await?)
    .await?;
    Ok(())
}
