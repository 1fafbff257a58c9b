//! Workflow definitions (#37): a tenant's draft, as written (YAML or JSON),
//! and its published versions. A version is immutable: instances run on
//! the version they started on, and a new one changes none of them.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use integro_core::{Actor, new_id};
use integro_engine::workflow::{Definition, Problem};
use serde::{Deserialize, Serialize};
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

/// The most definitions a tenant keeps.
pub const MAX_DEFINITIONS: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "yaml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Parses and validates a definition; each problem names its path, and its
/// line and column where they can be found.
pub fn load(source: &str, format: Format) -> Result<Definition, Vec<Problem>> {
    match format {
        Format::Yaml => Definition::load_yaml(source),
        Format::Json => Definition::load_json(source),
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkflowDefinition {
    pub id: Uuid,
    /// The definition's `key`, unique in the tenant.
    pub key: String,
    pub name: Option<String>,
    /// The draft, as written.
    pub source: String,
    pub format: Format,
    /// The newest published version's number; 0 before the first.
    pub latest_version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkflowVersion {
    pub id: Uuid,
    pub definition_id: Uuid,
    pub version: i64,
    pub source: String,
    pub format: Format,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, key, name, source, format, latest_version, created_at, updated_at";
const VERSION_COLUMNS: &str = "id, definition_id, version, source, format, created_by, created_at";

fn format_of(text: String) -> Result<Format, sqlx::Error> {
    Format::parse(&text)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown definition format {text}").into()))
}

fn id_at(r: &AnyRow, i: usize) -> Result<Uuid, sqlx::Error> {
    parse_id(&r.try_get::<String, _>(i)?).map_err(|e| sqlx::Error::Decode(e.into()))
}

struct Row(WorkflowDefinition);

impl<'r> sqlx::FromRow<'r, AnyRow> for Row {
    fn from_row(r: &'r AnyRow) -> Result<Row, sqlx::Error> {
        Ok(Row(WorkflowDefinition {
            id: id_at(r, 0)?,
            key: r.try_get(1)?,
            name: r.try_get(2)?,
            source: r.try_get(3)?,
            format: format_of(r.try_get(4)?)?,
            latest_version: r.try_get(5)?,
            created_at: from_ms(r.try_get(6)?),
            updated_at: from_ms(r.try_get(7)?),
        }))
    }
}

struct VersionRow(WorkflowVersion);

impl<'r> sqlx::FromRow<'r, AnyRow> for VersionRow {
    fn from_row(r: &'r AnyRow) -> Result<VersionRow, sqlx::Error> {
        Ok(VersionRow(WorkflowVersion {
            id: id_at(r, 0)?,
            definition_id: id_at(r, 1)?,
            version: r.try_get(2)?,
            source: r.try_get(3)?,
            format: format_of(r.try_get(4)?)?,
            created_by: r.try_get(5)?,
            created_at: from_ms(r.try_get(6)?),
        }))
    }
}

/// A draft as written, and what it `load`ed into.
#[derive(Clone, Copy)]
pub struct Draft<'a> {
    pub definition: &'a Definition,
    pub source: &'a str,
    pub format: Format,
}

/// Stores a new definition as a draft.
pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    draft: Draft<'_>,
) -> Result<WorkflowDefinition, StoreError> {
    let Draft {
        definition,
        source,
        format,
    } = draft;
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM workflow_definitions WHERE tenant_id = $1 AND deleted_at IS NULL",
    )
    .bind(tenant_id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    if count >= MAX_DEFINITIONS {
        return Err(StoreError::Conflict(format!(
            "the tenant already has {MAX_DEFINITIONS} workflow definitions, the most allowed"
        )));
    }
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO workflow_definitions (id, tenant_id, key, name, source, format, latest_version, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(&definition.key)
    .bind(definition.name.as_deref())
    .bind(source)
    .bind(format.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await
    .on_unique(&format!(
        "a workflow definition with key `{}` already exists",
        definition.key
    ))?;
    let created = lock(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("workflow definition"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("workflow_definition.create", "workflow_definition", id)
            .tenant(tenant_id)
            .after(&created),
    )
    .await?;
    Ok(created)
}

/// Replaces a definition's draft; published versions stay as they were.
pub async fn update(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    id: Uuid,
    draft: Draft<'_>,
) -> Result<WorkflowDefinition, StoreError> {
    let Draft {
        definition,
        source,
        format,
    } = draft;
    let before = lock(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("workflow definition"))?;
    sqlx::query(
        "UPDATE workflow_definitions SET key = $1, name = $2, source = $3, format = $4, updated_at = $5 \
         WHERE id = $6 AND tenant_id = $7",
    )
    .bind(&definition.key)
    .bind(definition.name.as_deref())
    .bind(source)
    .bind(format.as_str())
    .bind(now_ms())
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .execute(&mut **tx)
    .await
    .on_unique(&format!(
        "a workflow definition with key `{}` already exists",
        definition.key
    ))?;
    let after = lock(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("workflow definition"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("workflow_definition.update", "workflow_definition", id)
            .tenant(tenant_id)
            .before(&before)
            .after(&after),
    )
    .await?;
    Ok(after)
}

/// Soft-deletes a definition: its versions stay, and so do the instances
/// running on them.
pub async fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<(), StoreError> {
    let before = lock(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("workflow definition"))?;
    sqlx::query("UPDATE workflow_definitions SET deleted_at = $1 WHERE id = $2 AND tenant_id = $3")
        .bind(now_ms())
        .bind(id.to_string())
        .bind(tenant_id.to_string())
        .execute(&mut **tx)
        .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("workflow_definition.delete", "workflow_definition", id)
            .tenant(tenant_id)
            .before(&before),
    )
    .await
}

/// Publishes the draft as the next version. The caller has `load`ed it.
pub async fn publish(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<WorkflowVersion, StoreError> {
    let draft = lock(tx, tenant_id, id)
        .await?
        .ok_or(StoreError::NotFound("workflow definition"))?;
    let version = draft.latest_version + 1;
    let version_id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO workflow_versions (id, tenant_id, definition_id, version, source, format, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(version_id.to_string())
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .bind(version)
    .bind(&draft.source)
    .bind(draft.format.as_str())
    .bind(actor.label.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await
    .on_unique("the definition was published meanwhile; try again")?;
    sqlx::query(
        "UPDATE workflow_definitions SET latest_version = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4",
    )
    .bind(version)
    .bind(now)
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .execute(&mut **tx)
    .await?;
    let published = WorkflowVersion {
        id: version_id,
        definition_id: id,
        version,
        source: draft.source,
        format: draft.format,
        created_by: actor.label.clone(),
        created_at: from_ms(now),
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("workflow_definition.publish", "workflow_definition", id)
            .tenant(tenant_id)
            .after(&published),
    )
    .await?;
    Ok(published)
}

/// The definition, locked for the transaction on PostgreSQL (SQLite's
/// writer is alone anyway).
async fn lock(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<WorkflowDefinition>, StoreError> {
    let lock = if crate::Conn::of(tx).is_sqlite() {
        ""
    } else {
        " FOR UPDATE"
    };
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflow_definitions \
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL{lock}"
    )))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.0))
}

pub async fn get(
    db: &Db,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<WorkflowDefinition>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflow_definitions WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    )))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

/// A definition by its key.
pub async fn find_by_key(
    db: &Db,
    tenant_id: Uuid,
    key: &str,
) -> Result<Option<WorkflowDefinition>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflow_definitions WHERE key = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    )))
    .bind(key)
    .bind(tenant_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    page: &PageRequest,
) -> Result<Page<WorkflowDefinition>, StoreError> {
    let rows: Vec<Row> = Where::new(&format!("SELECT {COLUMNS} FROM workflow_definitions"))
        .and_always("deleted_at IS NULL")
        .and("tenant_id = {}", Some(tenant_id))
        .oldest_first(page)
        .fetch(db)
        .await?;
    Ok(Page::from_rows(
        rows.into_iter().map(|r| r.0).collect(),
        page,
        |d| d.id,
    ))
}

pub async fn versions(
    db: &Db,
    tenant_id: Uuid,
    definition_id: Uuid,
    page: &PageRequest,
) -> Result<Page<WorkflowVersion>, StoreError> {
    let rows: Vec<VersionRow> =
        Where::new(&format!("SELECT {VERSION_COLUMNS} FROM workflow_versions"))
            .and("tenant_id = {}", Some(tenant_id))
            .and("definition_id = {}", Some(definition_id))
            .oldest_first(page)
            .fetch(db)
            .await?;
    Ok(Page::from_rows(
        rows.into_iter().map(|r| r.0).collect(),
        page,
        |v| v.id,
    ))
}

/// A published version: `number`, or the newest when `None`.
pub async fn version(
    db: &Db,
    tenant_id: Uuid,
    definition_id: Uuid,
    number: Option<i64>,
) -> Result<Option<WorkflowVersion>, StoreError> {
    let row: Option<VersionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM workflow_versions WHERE tenant_id = $1 AND definition_id = $2 \
         AND version = COALESCE($3, (SELECT MAX(version) FROM workflow_versions WHERE definition_id = $2))"
    )))
    .bind(tenant_id.to_string())
    .bind(definition_id.to_string())
    .bind(number)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

/// Parsed versions, by id: a version never changes, so what was parsed
/// once stays right. Bounded: emptied when it grows past `CACHED_VERSIONS`.
/// Keyed by tenant and version: a version id alone must not reach another
/// tenant's definition.
static PARSED: LazyLock<Mutex<HashMap<TenantVersion, Arc<Definition>>>> =
    LazyLock::new(Default::default);
/// (tenant, version id).
type TenantVersion = (Uuid, Uuid);
const CACHED_VERSIONS: usize = 1000;

/// The definition of the version `version_id`, parsed once per process.
pub async fn compiled(
    db: &Db,
    tenant_id: Uuid,
    version_id: Uuid,
) -> Result<Arc<Definition>, StoreError> {
    if let Some(found) = PARSED.lock().expect("cache").get(&(tenant_id, version_id)) {
        return Ok(found.clone());
    }
    let row: Option<VersionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM workflow_versions WHERE id = $1 AND tenant_id = $2"
    )))
    .bind(version_id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    let version = row.ok_or(StoreError::NotFound("workflow version"))?.0;
    let parsed = load(&version.source, version.format).map_err(|problems| {
        StoreError::Internal(format!(
            "published workflow version {version_id} no longer validates: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    let parsed = Arc::new(parsed);
    let mut cache = PARSED.lock().expect("cache");
    if cache.len() >= CACHED_VERSIONS {
        cache.clear();
    }
    cache.insert((tenant_id, version_id), parsed.clone());
    Ok(parsed)
}

/// A definition's newest published version, parsed.
#[derive(Debug, Clone)]
pub struct Published {
    pub definition_id: Uuid,
    pub version_id: Uuid,
    pub definition: Arc<Definition>,
}

/// The newest published version of each of the tenant's definitions that
/// conversations can start (a `triggers.conversation`).
pub async fn conversation_triggered(
    db: &Db,
    tenant_id: Uuid,
) -> Result<Vec<Published>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.id, v.id FROM workflow_definitions d \
         JOIN workflow_versions v ON v.definition_id = d.id AND v.version = d.latest_version \
         WHERE d.tenant_id = $1 AND d.deleted_at IS NULL ORDER BY d.key",
    )
    .bind(tenant_id.to_string())
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::new();
    for (definition_id, version_id) in rows {
        let version_id = parse_id(&version_id)?;
        let definition = compiled(db, tenant_id, version_id).await?;
        if definition.triggers.conversation.is_some() {
            out.push(Published {
                definition_id: parse_id(&definition_id)?,
                version_id,
                definition,
            });
        }
    }
    Ok(out)
}

/// Whether the tenant has published any workflow version: a reply turn of
/// a tenant without one has no form to look for.
pub async fn any_published(db: &Db, tenant_id: Uuid) -> Result<bool, StoreError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT id FROM workflow_versions WHERE tenant_id = $1 LIMIT 1")
            .bind(tenant_id.to_string())
            .fetch_optional(db.pool())
            .await?;
    Ok(found.is_some())
}
