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
    crate::fields::check_name("name", name)?;
    Ok(name.trim().to_string())
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

/// The live tenants named `name` (names are not unique; compared without
/// regard to case), for the CLI's `--tenant NAME`.
pub async fn find_by_name(db: &Db, name: &str) -> Result<Vec<Tenant>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenants WHERE lower(name) = lower($1) AND deleted_at IS NULL ORDER BY id"
    )))
    .bind(name.trim())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(from_row).collect()
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

/// A tenant's engine settings. The alert webhook's URL and signing secret
/// are sealed; answers only say whether they are set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TenantSettings {
    /// Tokens (input + output) the tenant's bots may spend per calendar month
    /// (UTC); once spent, bots answer from rules and fallback replies only.
    /// None: no limit.
    #[serde(default)]
    pub monthly_token_budget: Option<u64>,
    /// X's estimated spend (USD, from its price table) the tenant allows
    /// per calendar month (UTC); past it only replies go out to X: no
    /// publishing, no trends. None: no limit.
    #[serde(default)]
    pub x_monthly_spend_limit_usd: Option<f64>,
    /// AI drafts of X posts asked for by an admin or owner are approved at
    /// once (each through the same checks and audit as an approval) instead
    /// of waiting for approval. An agent's drafts wait either way.
    #[serde(default)]
    pub x_ai_drafts_skip_approval: bool,
    /// Whether a Slack-compatible incoming webhook receives critical alerts.
    #[serde(default, skip_deserializing)]
    pub alert_webhook_set: bool,
}

const SETTINGS_OWNER: &str = "tenant";

fn settings_owner<'a>(tenant: &'a str, field: &'a str) -> crate::secrets::SecretOwner<'a> {
    crate::secrets::SecretOwner {
        tenant_id: tenant,
        kind: SETTINGS_OWNER,
        id: tenant,
        field,
    }
}

pub async fn settings(db: &Db, tenant_id: Uuid) -> Result<TenantSettings, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT t.settings_json, (SELECT COUNT(*) FROM sealed_secrets s WHERE s.tenant_id = t.id AND s.owner_kind = 'tenant' \
         AND s.field = 'alert_webhook_url') FROM tenants t WHERE t.id = $1",
    )
    .bind(tenant_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    let (json, hooks) = row.ok_or(StoreError::NotFound("tenant"))?;
    let mut s: TenantSettings = serde_json::from_str(&json)
        .map_err(|e| StoreError::Internal(format!("stored tenant settings do not parse: {e}")))?;
    s.alert_webhook_set = hooks > 0;
    Ok(s)
}

/// Where alerts go and the secret they are signed with.
#[derive(Debug, Clone)]
pub struct AlertWebhook {
    pub url: String,
    pub secret: Option<String>,
}

pub async fn alert_webhook(
    db: &Db,
    keyring: &crate::secrets::Keyring,
    tenant_id: Uuid,
) -> Result<Option<AlertWebhook>, StoreError> {
    use crate::secrets::SecretStore;
    let tenant = tenant_id.to_string();
    let Some(url) =
        SecretStore::get(db, keyring, settings_owner(&tenant, "alert_webhook_url")).await?
    else {
        return Ok(None);
    };
    let secret =
        SecretStore::get(db, keyring, settings_owner(&tenant, "alert_webhook_secret")).await?;
    Ok(Some(AlertWebhook { url, secret }))
}

/// A change of settings; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct SettingsChanges {
    pub monthly_token_budget: Option<Option<u64>>,
    pub x_monthly_spend_limit_usd: Option<Option<f64>>,
    pub x_ai_drafts_skip_approval: Option<bool>,
    pub alert_webhook: Option<Option<AlertWebhook>>,
}

pub async fn update_settings(
    tx: &mut Tx<'_>,
    keyring: &crate::secrets::Keyring,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    before: &TenantSettings,
    changes: SettingsChanges,
) -> Result<(), StoreError> {
    use crate::secrets::SecretStore;
    let tenant = tenant_id.to_string();
    let mut after = before.clone();
    if let Some(budget) = changes.monthly_token_budget {
        after.monthly_token_budget = budget;
    }
    if let Some(limit) = changes.x_monthly_spend_limit_usd {
        if limit.is_some_and(|l| !(0.0..=1_000_000.0).contains(&l)) {
            return Err(StoreError::invalid(
                "x_monthly_spend_limit_usd",
                "must be between 0 and 1,000,000",
            ));
        }
        after.x_monthly_spend_limit_usd = limit;
    }
    if let Some(skip) = changes.x_ai_drafts_skip_approval {
        after.x_ai_drafts_skip_approval = skip;
    }
    if let Some(hook) = changes.alert_webhook {
        sqlx::query(
            "DELETE FROM sealed_secrets WHERE tenant_id = $1 AND owner_kind = $2 AND owner_id = $1",
        )
        .bind(&tenant)
        .bind(SETTINGS_OWNER)
        .execute(&mut **tx)
        .await?;
        after.alert_webhook_set = hook.is_some();
        if let Some(hook) = hook {
            if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                return Err(StoreError::invalid(
                    "alert_webhook_url",
                    "must be an http:// or https:// URL",
                ));
            }
            SecretStore::put(
                tx,
                keyring,
                settings_owner(&tenant, "alert_webhook_url"),
                &hook.url,
            )
            .await?;
            if let Some(secret) = &hook.secret {
                SecretStore::put(
                    tx,
                    keyring,
                    settings_owner(&tenant, "alert_webhook_secret"),
                    secret,
                )
                .await?;
            }
        }
    }
    sqlx::query("UPDATE tenants SET settings_json = $1, updated_at = $2 WHERE id = $3")
        .bind(serde_json::to_string(&after).expect("serialisable"))
        .bind(now_ms())
        .bind(&tenant)
        .execute(&mut **tx)
        .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("tenant.settings", "tenant", tenant_id)
            .tenant(tenant_id)
            .before(before)
            .after(&after),
    )
    .await
}
