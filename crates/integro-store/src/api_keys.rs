//! API keys: per tenant, with a role; the secret is shown once and stored as a
//! hash; revocable; the time of last use is kept.

use integro_core::{Actor, Role, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::credentials::{random_token, token_hash};
use crate::db::{Tx, from_ms, now_ms};
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, parse_id};

/// Every API key starts with this, so a leaked one is easy to recognise.
pub const KEY_PREFIX: &str = "ik_";

/// Last-use times are written at most this often per key, so a busy key does
/// not turn every read into a write.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub role: Role,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
);
const COLUMNS: &str = "id, tenant_id, name, role, prefix, created_at, updated_at, created_by, last_used_at, revoked_at";

fn from_row(r: Row) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: parse_id(&r.0)?,
        tenant_id: parse_id(&r.1)?,
        name: r.2,
        role: r
            .3
            .parse()
            .map_err(|e: integro_core::UnknownRole| StoreError::Internal(e.to_string()))?,
        prefix: r.4,
        created_at: from_ms(r.5),
        updated_at: from_ms(r.6),
        created_by: r.7,
        last_used_at: r.8.map(from_ms),
        revoked_at: r.9.map(from_ms),
    })
}

/// Creates a key; returns it with its secret, which is never available again.
pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    name: &str,
    role: Role,
) -> Result<(ApiKey, String), StoreError> {
    crate::fields::check_name("name", name)?;
    let name = name.trim();
    let secret = format!("{KEY_PREFIX}{}", random_token(32));
    let prefix: String = secret.chars().take(KEY_PREFIX.len() + 6).collect();
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, role, prefix, key_hash, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(name)
    .bind(role.as_str())
    .bind(&prefix)
    .bind(token_hash(&secret))
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    let key = ApiKey {
        id,
        tenant_id,
        name: name.to_string(),
        role,
        prefix,
        created_at: from_ms(now),
        updated_at: from_ms(now),
        created_by: Some(actor.label.clone()),
        last_used_at: None,
        revoked_at: None,
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("api_key.create", "api_key", id)
            .tenant(tenant_id)
            .after(&key),
    )
    .await?;
    Ok((key, secret))
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<ApiKey>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    page: &PageRequest,
) -> Result<Page<ApiKey>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    )))
    .bind(tenant_id.to_string())
    .bind(page.after_text().unwrap_or_default())
    .bind(page.fetch_limit())
    .fetch_all(db.pool())
    .await?;
    let keys = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(keys, page, |k| k.id))
}

/// Revokes a key of `tenant_id`; revoking twice is harmless.
pub async fn revoke(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    key: &ApiKey,
) -> Result<ApiKey, StoreError> {
    if key.revoked_at.is_some() {
        return Ok(key.clone());
    }
    let now = now_ms();
    sqlx::query(
        "UPDATE api_keys SET revoked_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3",
    )
    .bind(now)
    .bind(key.tenant_id.to_string())
    .bind(key.id.to_string())
    .execute(&mut **tx)
    .await?;
    let after = ApiKey {
        revoked_at: Some(from_ms(now)),
        updated_at: from_ms(now),
        ..key.clone()
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("api_key.revoke", "api_key", key.id)
            .tenant(key.tenant_id)
            .before(key)
            .after(&after),
    )
    .await?;
    Ok(after)
}

/// The live key with this secret (not revoked, tenant not deleted), recording
/// its use.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Option<ApiKey>, StoreError> {
    if !secret.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND t.deleted_at IS NULL",
        COLUMNS
            .split(", ")
            .map(|c| format!("k.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
    .bind(token_hash(secret))
    .fetch_optional(db.pool())
    .await?;
    let Some(mut key) = row.map(from_row).transpose()? else {
        return Ok(None);
    };
    let now = now_ms();
    let stale = key
        .last_used_at
        .is_none_or(|t| now - crate::db::to_ms(t) >= LAST_USED_RESOLUTION_MS);
    if stale {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(key.id.to_string())
            .execute(&mut *db.writer().await?)
            .await?;
        key.last_used_at = Some(from_ms(now));
    }
    Ok(Some(key))
}
