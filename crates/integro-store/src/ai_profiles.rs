//! AI profiles: which credential and model answer, how (temperature, output
//! tokens, timeout), and which profile takes over when this one fails.
//! Soft-deleted.

use integro_core::{Actor, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::db::{Tx, from_ms, now_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, parse_id};

/// A fallback chain longer than this is a configuration mistake.
pub const MAX_CHAIN: usize = 5;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AiProfile {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub credential_id: Uuid,
    pub model: String,
    pub temperature: Option<f64>,
    pub max_output_tokens: u32,
    pub timeout_ms: u32,
    /// Answers when this profile fails or its provider's circuit is open.
    pub fallback_profile_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProfileFields {
    pub name: String,
    pub credential_id: Uuid,
    pub model: String,
    pub temperature: Option<f64>,
    pub max_output_tokens: u32,
    pub timeout_ms: u32,
    pub fallback_profile_id: Option<Uuid>,
}

impl ProfileFields {
    pub fn of(p: &AiProfile) -> ProfileFields {
        ProfileFields {
            name: p.name.clone(),
            credential_id: p.credential_id,
            model: p.model.clone(),
            temperature: p.temperature,
            max_output_tokens: p.max_output_tokens,
            timeout_ms: p.timeout_ms,
            fallback_profile_id: p.fallback_profile_id,
        }
    }
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    Option<f64>,
    i64,
    i64,
    Option<String>,
    i64,
    i64,
    Option<String>,
);
const COLUMNS: &str = "id, tenant_id, name, credential_id, model, temperature, max_output_tokens, timeout_ms, \
     fallback_profile_id, created_at, updated_at, created_by";

fn from_row(r: Row) -> Result<AiProfile, StoreError> {
    Ok(AiProfile {
        id: parse_id(&r.0)?,
        tenant_id: parse_id(&r.1)?,
        name: r.2,
        credential_id: parse_id(&r.3)?,
        model: r.4,
        temperature: r.5,
        max_output_tokens: r.6.clamp(0, u32::MAX as i64) as u32,
        timeout_ms: r.7.clamp(0, u32::MAX as i64) as u32,
        fallback_profile_id: r.8.as_deref().map(parse_id).transpose()?,
        created_at: from_ms(r.9),
        updated_at: from_ms(r.10),
        created_by: r.11,
    })
}

async fn validate(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Option<Uuid>,
    f: &ProfileFields,
) -> Result<(), StoreError> {
    crate::fields::check_name("name", &f.name)?;
    if f.model.trim().is_empty() || f.model.len() > 200 {
        return Err(StoreError::invalid("model", "must be 1 to 200 characters"));
    }
    if let Some(t) = f.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(StoreError::invalid(
            "temperature",
            "must be between 0 and 2",
        ));
    }
    if !(1..=100_000).contains(&f.max_output_tokens) {
        return Err(StoreError::invalid(
            "max_output_tokens",
            "must be 1 to 100000",
        ));
    }
    if !(100..=600_000).contains(&f.timeout_ms) {
        return Err(StoreError::invalid(
            "timeout_ms",
            "must be 100 to 600000 (ten minutes)",
        ));
    }
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ai_credentials WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
    )
    .bind(tenant_id.to_string())
    .bind(f.credential_id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    if n == 0 {
        return Err(StoreError::invalid(
            "credential_id",
            "no such AI credential in this tenant",
        ));
    }
    // The fallback must exist in the tenant, and following fallbacks must
    // never come back to this profile.
    let mut next = f.fallback_profile_id;
    let mut hops = 0;
    while let Some(p) = next {
        if Some(p) == id {
            return Err(StoreError::invalid(
                "fallback_profile_id",
                "would make a loop of fallbacks back to this profile",
            ));
        }
        hops += 1;
        if hops >= MAX_CHAIN {
            return Err(StoreError::invalid(
                "fallback_profile_id",
                format!("fallback chains are limited to {MAX_CHAIN} profiles"),
            ));
        }
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT fallback_profile_id FROM ai_profiles WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(tenant_id.to_string())
        .bind(p.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let Some((after,)) = row else {
            return Err(StoreError::invalid(
                "fallback_profile_id",
                "no such AI profile in this tenant",
            ));
        };
        next = after.as_deref().map(parse_id).transpose()?;
    }
    Ok(())
}

pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    f: ProfileFields,
) -> Result<AiProfile, StoreError> {
    validate(tx, tenant_id, None, &f).await?;
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO ai_profiles (id, tenant_id, name, credential_id, model, temperature, max_output_tokens, timeout_ms, \
         fallback_profile_id, created_at, updated_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(f.name.trim())
    .bind(f.credential_id.to_string())
    .bind(f.model.trim())
    .bind(f.temperature)
    .bind(f.max_output_tokens as i64)
    .bind(f.timeout_ms as i64)
    .bind(f.fallback_profile_id.map(|p| p.to_string()))
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    let created = get_in(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("AI profile"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("ai_profile.create", "ai_profile", id)
            .tenant(tenant_id)
            .after(&created),
    )
    .await?;
    Ok(created)
}

async fn get_in(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<AiProfile>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM ai_profiles WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(from_row).transpose()
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<AiProfile>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM ai_profiles WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

/// The profile and its fallbacks, in the order they are tried.
pub async fn chain(db: &Db, tenant_id: Uuid, first: Uuid) -> Result<Vec<AiProfile>, StoreError> {
    let mut out: Vec<AiProfile> = Vec::new();
    let mut next = Some(first);
    while let Some(id) = next {
        if out.len() >= MAX_CHAIN || out.iter().any(|p| p.id == id) {
            break;
        }
        let Some(p) = get(db, tenant_id, id).await? else {
            break;
        };
        next = p.fallback_profile_id;
        out.push(p);
    }
    Ok(out)
}

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    page: &PageRequest,
) -> Result<Page<AiProfile>, StoreError> {
    let rows: Vec<Row> = Where::new(&format!("SELECT {COLUMNS} FROM ai_profiles"))
        .and_always("deleted_at IS NULL")
        .and("tenant_id = {}", Some(tenant_id))
        .oldest_first(page)
        .fetch(db)
        .await?;
    let items = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |p| p.id))
}

pub async fn update(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    before: &AiProfile,
    f: ProfileFields,
) -> Result<AiProfile, StoreError> {
    validate(tx, before.tenant_id, Some(before.id), &f).await?;
    sqlx::query(
        "UPDATE ai_profiles SET name = $1, credential_id = $2, model = $3, temperature = $4, max_output_tokens = $5, \
         timeout_ms = $6, fallback_profile_id = $7, updated_at = $8 WHERE tenant_id = $9 AND id = $10",
    )
    .bind(f.name.trim())
    .bind(f.credential_id.to_string())
    .bind(f.model.trim())
    .bind(f.temperature)
    .bind(f.max_output_tokens as i64)
    .bind(f.timeout_ms as i64)
    .bind(f.fallback_profile_id.map(|p| p.to_string()))
    .bind(now_ms())
    .bind(before.tenant_id.to_string())
    .bind(before.id.to_string())
    .execute(&mut **tx)
    .await?;
    let after = get_in(tx, before.tenant_id, before.id)
        .await?
        .ok_or(StoreError::NotFound("AI profile"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("ai_profile.update", "ai_profile", before.id)
            .tenant(before.tenant_id)
            .before(before)
            .after(&after),
    )
    .await?;
    Ok(after)
}

/// Soft delete; refused while a bot or another profile's fallback uses it.
pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    profile: &AiProfile,
) -> Result<(), StoreError> {
    let id = profile.id.to_string();
    let users: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM bots WHERE ai_profile_id = $1 AND deleted_at IS NULL) + \
         (SELECT COUNT(*) FROM ai_profiles WHERE fallback_profile_id = $1 AND deleted_at IS NULL)",
    )
    .bind(&id)
    .fetch_one(&mut **tx)
    .await?;
    if users > 0 {
        return Err(StoreError::Conflict(format!(
            "{users} bot(s) or profile(s) use this AI profile; change them first"
        )));
    }
    let now = now_ms();
    sqlx::query(
        "UPDATE ai_profiles SET deleted_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3",
    )
    .bind(now)
    .bind(profile.tenant_id.to_string())
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("ai_profile.delete", "ai_profile", profile.id)
            .tenant(profile.tenant_id)
            .before(profile),
    )
    .await
}
