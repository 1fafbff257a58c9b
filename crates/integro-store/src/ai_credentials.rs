//! AI provider credentials: a tenant's API key for OpenAI, Anthropic or an
//! OpenAI-compatible server. The key is sealed in `sealed_secrets` and never
//! returned. Soft-deleted.

use integro_core::{Actor, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::db::{Tx, from_ms, now_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::secrets::{Keyring, SecretOwner, SecretStore};
use crate::{Db, StoreError, parse_id};

const OWNER_KIND: &str = "ai_credential";
/// The providers an AI credential may name.
pub const PROVIDERS: [&str; 3] = ["openai", "anthropic", "openai_compatible"];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AiCredential {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    /// `openai`, `anthropic` or `openai_compatible`.
    pub provider: String,
    /// None: the provider's public API.
    pub base_url: Option<String>,
    /// Whether an API key is stored (it is never shown).
    pub has_api_key: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
}

pub struct CredentialFields {
    pub name: String,
    pub provider: String,
    pub base_url: Option<String>,
    /// None on update: keep the stored key.
    pub api_key: Option<String>,
}

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    i64,
);
const COLUMNS: &str = "c.id, c.tenant_id, c.name, c.provider, c.base_url, c.created_at, c.updated_at, c.created_by, \
     (SELECT COUNT(*) FROM sealed_secrets s WHERE s.owner_kind = 'ai_credential' AND s.owner_id = c.id)";

fn from_row(r: Row) -> Result<AiCredential, StoreError> {
    Ok(AiCredential {
        id: parse_id(&r.0)?,
        tenant_id: parse_id(&r.1)?,
        name: r.2,
        provider: r.3,
        base_url: r.4,
        created_at: from_ms(r.5),
        updated_at: from_ms(r.6),
        created_by: r.7,
        has_api_key: r.8 > 0,
    })
}

fn owner<'a>(tenant: &'a str, id: &'a str) -> SecretOwner<'a> {
    SecretOwner {
        tenant_id: tenant,
        kind: OWNER_KIND,
        id,
        field: "api_key",
    }
}

fn validate(f: &CredentialFields, creating: bool) -> Result<(), StoreError> {
    crate::fields::check_name("name", &f.name)?;
    if !PROVIDERS.contains(&f.provider.as_str()) {
        return Err(StoreError::invalid(
            "provider",
            "must be `openai`, `anthropic` or `openai_compatible`",
        ));
    }
    match &f.base_url {
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            return Err(StoreError::invalid(
                "base_url",
                "must be an http:// or https:// URL",
            ));
        }
        None if f.provider == "openai_compatible" => {
            return Err(StoreError::invalid(
                "base_url",
                "is required for an OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 (allowed by the operator with INTEGRO_OUTBOUND_ALLOW=127.0.0.1:11434)",
            ));
        }
        _ => {}
    }
    match &f.api_key {
        Some(k) if k.trim().is_empty() || k.len() > 4096 => Err(StoreError::invalid(
            "api_key",
            "must be 1 to 4096 characters",
        )),
        None if creating && f.provider != "openai_compatible" => Err(StoreError::invalid(
            "api_key",
            "is required for this provider",
        )),
        _ => Ok(()),
    }
}

pub async fn create(
    tx: &mut Tx<'_>,
    keyring: &Keyring,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    fields: CredentialFields,
) -> Result<AiCredential, StoreError> {
    validate(&fields, true)?;
    let id = new_id();
    let (tenant, id_text) = (tenant_id.to_string(), id.to_string());
    let now = now_ms();
    sqlx::query(
        "INSERT INTO ai_credentials (id, tenant_id, name, provider, base_url, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(&id_text)
    .bind(&tenant)
    .bind(fields.name.trim())
    .bind(&fields.provider)
    .bind(fields.base_url.as_deref().map(|u| u.trim_end_matches('/')))
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    if let Some(key) = &fields.api_key {
        SecretStore::put(tx, keyring, owner(&tenant, &id_text), key.trim()).await?;
    }
    let created = get_in(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("AI credential"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("ai_credential.create", "ai_credential", id)
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
) -> Result<Option<AiCredential>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM ai_credentials c WHERE c.tenant_id = $1 AND c.id = $2 AND c.deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(from_row).transpose()
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<AiCredential>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM ai_credentials c WHERE c.tenant_id = $1 AND c.id = $2 AND c.deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

/// A credential by id, whatever its tenant (for the command line).
pub async fn by_id(db: &Db, id: Uuid) -> Result<Option<AiCredential>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM ai_credentials c WHERE c.id = $1 AND c.deleted_at IS NULL"
    )))
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    page: &PageRequest,
) -> Result<Page<AiCredential>, StoreError> {
    let rows: Vec<Row> = Where::new(&format!("SELECT {COLUMNS} FROM ai_credentials c"))
        .and_always("c.deleted_at IS NULL")
        .and("c.tenant_id = {}", Some(tenant_id))
        .oldest_first(page)
        .fetch(db)
        .await?;
    let items = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |c| c.id))
}

/// The API key in clear, to call the provider.
pub async fn api_key(
    db: &Db,
    keyring: &Keyring,
    credential: &AiCredential,
) -> Result<Option<String>, StoreError> {
    let (tenant, id) = (credential.tenant_id.to_string(), credential.id.to_string());
    SecretStore::get(db, keyring, owner(&tenant, &id)).await
}

pub async fn update(
    tx: &mut Tx<'_>,
    keyring: &Keyring,
    actor: &Actor,
    request_id: Option<&str>,
    before: &AiCredential,
    fields: CredentialFields,
) -> Result<AiCredential, StoreError> {
    validate(&fields, false)?;
    let (tenant, id) = (before.tenant_id.to_string(), before.id.to_string());
    sqlx::query(
        "UPDATE ai_credentials SET name = $1, provider = $2, base_url = $3, updated_at = $4 WHERE tenant_id = $5 AND id = $6",
    )
    .bind(fields.name.trim())
    .bind(&fields.provider)
    .bind(fields.base_url.as_deref().map(|u| u.trim_end_matches('/')))
    .bind(now_ms())
    .bind(&tenant)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    if let Some(key) = &fields.api_key {
        SecretStore::put(tx, keyring, owner(&tenant, &id), key.trim()).await?;
    }
    let after = get_in(tx, before.tenant_id, before.id)
        .await?
        .ok_or(StoreError::NotFound("AI credential"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("ai_credential.update", "ai_credential", before.id)
            .tenant(before.tenant_id)
            .before(before)
            .after(&after),
    )
    .await?;
    Ok(after)
}

/// Soft delete; refused while an AI profile uses the credential. The sealed
/// key is erased.
pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    credential: &AiCredential,
) -> Result<(), StoreError> {
    let (tenant, id) = (credential.tenant_id.to_string(), credential.id.to_string());
    let users: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ai_profiles WHERE credential_id = $1 AND deleted_at IS NULL",
    )
    .bind(&id)
    .fetch_one(&mut **tx)
    .await?;
    if users > 0 {
        return Err(StoreError::Conflict(format!(
            "{users} AI profile(s) use this credential; delete or change them first"
        )));
    }
    let now = now_ms();
    sqlx::query("UPDATE ai_credentials SET deleted_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(now)
        .bind(&tenant)
        .bind(&id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "DELETE FROM sealed_secrets WHERE tenant_id = $1 AND owner_kind = $2 AND owner_id = $3",
    )
    .bind(&tenant)
    .bind(OWNER_KIND)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("ai_credential.delete", "ai_credential", credential.id)
            .tenant(credential.tenant_id)
            .before(credential),
    )
    .await
}
