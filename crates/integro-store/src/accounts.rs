//! Channel accounts: a WhatsApp number, an Instagram account, an X account or
//! a web channel, belonging to a bot. Secret credentials are sealed in
//! `sealed_secrets`; only their names are kept here.

use std::collections::BTreeMap;

use integro_core::{Actor, ChannelKind, Template, new_id};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::db::{Tx, from_ms, now_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::secrets::{Keyring, SecretOwner, SecretStore};
use crate::{Db, StoreError, parse_id};

/// Shown in place of a secret credential.
pub const MASK: &str = "********";
const OWNER_KIND: &str = "account";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub bot_id: Uuid,
    pub kind: ChannelKind,
    pub name: String,
    /// The account's id at the provider (phone number, phone number id, …).
    pub external_id: Option<String>,
    /// Credential fields; secret ones are masked.
    pub credentials: BTreeMap<String, String>,
    /// Sent instead of a free-form reply outside WhatsApp's 24-hour window.
    pub template: Option<Template>,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Settings {
    #[serde(default)]
    public: BTreeMap<String, String>,
    #[serde(default)]
    secret_fields: Vec<String>,
    #[serde(default)]
    template: Option<Template>,
}

/// Credentials split into what may be shown and what is sealed.
#[derive(Debug, Clone, Default)]
pub struct CredentialValues {
    pub public: BTreeMap<String, String>,
    pub secret: BTreeMap<String, String>,
}

pub struct NewAccount {
    pub bot_id: Uuid,
    pub kind: ChannelKind,
    pub name: String,
    pub external_id: Option<String>,
    pub credentials: CredentialValues,
    pub template: Option<Template>,
}

/// A change; `None` leaves a field as it is. Credentials given replace those
/// of the same name.
#[derive(Default)]
pub struct AccountChanges {
    pub bot_id: Option<Uuid>,
    pub name: Option<String>,
    pub active: Option<bool>,
    pub external_id: Option<String>,
    pub credentials: Option<CredentialValues>,
    pub template: Option<Option<Template>>,
}

type Row = (
    String,
    String,
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
const COLUMNS: &str = "id, tenant_id, bot_id, kind, name, external_id, settings_json, active, created_at, updated_at, created_by";

fn from_row(r: Row) -> Result<Account, StoreError> {
    let settings: Settings = serde_json::from_str(&r.6).unwrap_or_default();
    let mut credentials = settings.public.clone();
    for f in &settings.secret_fields {
        credentials.insert(f.clone(), MASK.to_string());
    }
    Ok(Account {
        id: parse_id(&r.0)?,
        tenant_id: parse_id(&r.1)?,
        bot_id: parse_id(&r.2)?,
        kind: r
            .3
            .parse()
            .map_err(|e: integro_core::channel::UnknownChannelKind| {
                StoreError::Internal(e.to_string())
            })?,
        name: r.4,
        external_id: r.5,
        credentials,
        template: settings.template,
        active: r.7 != 0,
        created_at: from_ms(r.8),
        updated_at: from_ms(r.9),
        created_by: r.10,
    })
}

fn owner<'a>(tenant: &'a str, account: &'a str, field: &'a str) -> SecretOwner<'a> {
    SecretOwner {
        tenant_id: tenant,
        kind: OWNER_KIND,
        id: account,
        field,
    }
}

async fn bot_exists(tx: &mut Tx<'_>, tenant_id: Uuid, bot_id: Uuid) -> Result<(), StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM bots WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
    )
    .bind(tenant_id.to_string())
    .bind(bot_id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    if n == 0 {
        return Err(StoreError::invalid("bot_id", "no such bot in this tenant"));
    }
    Ok(())
}

pub async fn create(
    tx: &mut Tx<'_>,
    keyring: &Keyring,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    new: NewAccount,
) -> Result<Account, StoreError> {
    crate::fields::check_name("name", &new.name)?;
    let name = new.name.trim().to_string();
    bot_exists(tx, tenant_id, new.bot_id).await?;
    let id = new_id();
    let id_text = id.to_string();
    let tenant_text = tenant_id.to_string();
    for (field, value) in &new.credentials.secret {
        SecretStore::put(tx, keyring, owner(&tenant_text, &id_text, field), value).await?;
    }
    let settings = Settings {
        public: new.credentials.public,
        secret_fields: new.credentials.secret.keys().cloned().collect(),
        template: new.template,
    };
    let now = now_ms();
    sqlx::query(
        "INSERT INTO channel_accounts (id, tenant_id, bot_id, kind, name, external_id, settings_json, active, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8, $9)",
    )
    .bind(&id_text)
    .bind(&tenant_text)
    .bind(new.bot_id.to_string())
    .bind(new.kind.as_str())
    .bind(&name)
    .bind(new.external_id.clone())
    .bind(serde_json::to_string(&settings).expect("serialisable"))
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    let account = get_in(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("account.create", "account", id)
            .tenant(tenant_id)
            .after(&account),
    )
    .await?;
    Ok(account)
}

async fn get_in(tx: &mut Tx<'_>, tenant_id: Uuid, id: Uuid) -> Result<Option<Account>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM channel_accounts WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(from_row).transpose()
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<Account>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM channel_accounts WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

/// The live account a webhook URL names, whichever tenant owns it (the
/// webhook's signature, checked with this account's secret, is the proof).
pub async fn find_for_webhook(db: &Db, id: Uuid) -> Result<Option<Account>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM channel_accounts a WHERE id = $1 AND deleted_at IS NULL \
         AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = a.tenant_id AND t.deleted_at IS NULL)"
    )))
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

/// Live, active accounts of `kind` in every live tenant (for work that
/// runs per account, such as polling X), at most 1,000, oldest first.
pub async fn live_of_kind(db: &Db, kind: ChannelKind) -> Result<Vec<Account>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM channel_accounts a WHERE kind = $1 AND active = 1 AND deleted_at IS NULL \
         AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = a.tenant_id AND t.deleted_at IS NULL) \
         ORDER BY id LIMIT 1000"
    )))
    .bind(kind.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(from_row).collect()
}

#[derive(Debug, Default, Clone)]
pub struct AccountFilter {
    pub bot_id: Option<Uuid>,
    pub kind: Option<ChannelKind>,
}

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    filter: &AccountFilter,
    page: &PageRequest,
) -> Result<Page<Account>, StoreError> {
    let rows: Vec<Row> = Where::new(&format!("SELECT {COLUMNS} FROM channel_accounts"))
        .and_always("deleted_at IS NULL")
        .and("tenant_id = {}", Some(tenant_id))
        .and("bot_id = {}", filter.bot_id)
        .and("kind = {}", filter.kind.map(|k| k.as_str()))
        .oldest_first(page)
        .fetch(db)
        .await?;
    let accounts = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(accounts, page, |a| a.id))
}

/// Every credential of the account in clear, public and secret, for talking
/// to the provider.
pub async fn credentials(
    db: &Db,
    keyring: &Keyring,
    account: &Account,
) -> Result<BTreeMap<String, String>, StoreError> {
    let (tenant, id) = (account.tenant_id.to_string(), account.id.to_string());
    let mut out = BTreeMap::new();
    for (field, value) in &account.credentials {
        if value == MASK {
            let secret = SecretStore::get(db, keyring, owner(&tenant, &id, field))
                .await?
                .ok_or_else(|| {
                    StoreError::Crypto(format!("the sealed `{field}` of account {id} is missing"))
                })?;
            out.insert(field.clone(), secret);
        } else {
            out.insert(field.clone(), value.clone());
        }
    }
    Ok(out)
}

pub async fn update(
    tx: &mut Tx<'_>,
    keyring: &Keyring,
    actor: &Actor,
    request_id: Option<&str>,
    before: &Account,
    changes: AccountChanges,
) -> Result<Account, StoreError> {
    let (tenant, id) = (before.tenant_id.to_string(), before.id.to_string());
    let row: (String,) = sqlx::query_as(
        "SELECT settings_json FROM channel_accounts WHERE tenant_id = $1 AND id = $2",
    )
    .bind(&tenant)
    .bind(&id)
    .fetch_one(&mut **tx)
    .await?;
    let mut settings: Settings = serde_json::from_str(&row.0).unwrap_or_default();
    if let Some(bot) = changes.bot_id {
        bot_exists(tx, before.tenant_id, bot).await?;
    }
    if let Some(name) = &changes.name {
        crate::fields::check_name("name", name)?;
    }
    if let Some(creds) = changes.credentials {
        for (field, value) in creds.secret {
            SecretStore::put(tx, keyring, owner(&tenant, &id, &field), &value).await?;
            if !settings.secret_fields.contains(&field) {
                settings.secret_fields.push(field);
            }
        }
        settings.public.extend(creds.public);
    }
    if let Some(template) = changes.template {
        settings.template = template;
    }
    sqlx::query(
        "UPDATE channel_accounts SET bot_id = $1, name = $2, active = $3, external_id = $4, settings_json = $5, updated_at = $6 \
         WHERE tenant_id = $7 AND id = $8",
    )
    .bind(changes.bot_id.unwrap_or(before.bot_id).to_string())
    .bind(changes.name.as_deref().map(str::trim).unwrap_or(&before.name))
    .bind(changes.active.unwrap_or(before.active) as i64)
    .bind(changes.external_id.or_else(|| before.external_id.clone()))
    .bind(serde_json::to_string(&settings).expect("serialisable"))
    .bind(now_ms())
    .bind(&tenant)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    let after = get_in(tx, before.tenant_id, before.id)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("account.update", "account", before.id)
            .tenant(before.tenant_id)
            .before(before)
            .after(&after),
    )
    .await?;
    Ok(after)
}

/// Stores refreshed credentials (an OAuth 2.0 access token, and the refresh
/// token that replaces the one used) if the account's `version_field` still
/// holds `expected`: true when stored, false when another process refreshed
/// first (its tokens stand). Routine upkeep, so not audited; the row is
/// locked first, so that two refreshes cannot both win.
pub async fn replace_refreshed(
    db: &Db,
    keyring: &Keyring,
    account: &Account,
    version_field: &str,
    expected: Option<&str>,
    values: CredentialValues,
) -> Result<bool, StoreError> {
    let (tenant, id) = (account.tenant_id.to_string(), account.id.to_string());
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE channel_accounts SET updated_at = updated_at WHERE tenant_id = $1 AND id = $2",
    )
    .bind(&tenant)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT settings_json FROM channel_accounts WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
    )
    .bind(&tenant)
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let mut settings: Settings = serde_json::from_str(&row.0).unwrap_or_default();
    if settings.public.get(version_field).map(String::as_str) != expected {
        return Ok(false);
    }
    for (field, value) in values.secret {
        SecretStore::put(&mut tx, keyring, owner(&tenant, &id, &field), &value).await?;
        if !settings.secret_fields.contains(&field) {
            settings.secret_fields.push(field);
        }
    }
    settings.public.extend(values.public);
    sqlx::query("UPDATE channel_accounts SET settings_json = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(serde_json::to_string(&settings).expect("serialisable"))
        .bind(&tenant)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Soft delete; its webhooks answer 404 from then on. The sealed credentials
/// are erased: nothing can use them any more.
pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    account: &Account,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query("UPDATE channel_accounts SET deleted_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(now)
        .bind(account.tenant_id.to_string())
        .bind(account.id.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "DELETE FROM sealed_secrets WHERE tenant_id = $1 AND owner_kind = $2 AND owner_id = $3",
    )
    .bind(account.tenant_id.to_string())
    .bind(OWNER_KIND)
    .bind(account.id.to_string())
    .execute(&mut **tx)
    .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("account.delete", "account", account.id)
            .tenant(account.tenant_id)
            .before(account),
    )
    .await
}
