//! The audit log: who created, changed or deleted what, when, with a summary of
//! the record before and after. Written in the same transaction as the change.

use integro_core::{Actor, new_id};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Tx, from_ms, now_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError};

/// One change about to be recorded.
pub struct Change<'a> {
    pub tenant_id: Option<Uuid>,
    pub action: &'a str,
    pub target_kind: &'a str,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl<'a> Change<'a> {
    pub fn new(action: &'a str, target_kind: &'a str, target_id: impl ToString) -> Change<'a> {
        Change {
            tenant_id: None,
            action,
            target_kind,
            target_id: target_id.to_string(),
            before: None,
            after: None,
        }
    }

    pub fn tenant(mut self, tenant_id: Uuid) -> Self {
        self.tenant_id = Some(tenant_id);
        self
    }

    pub fn before(mut self, value: &impl Serialize) -> Self {
        self.before = serde_json::to_value(value).ok();
        self
    }

    pub fn after(mut self, value: &impl Serialize) -> Self {
        self.after = serde_json::to_value(value).ok();
        self
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    /// `user`, `api_key`, `cli` or `system`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_label: String,
    /// e.g. `tenant.create`, `api_key.revoke`.
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// `None` lists every tenant's entries (platform operators only).
    pub tenant_id: Option<Uuid>,
    pub action: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
}

pub async fn record(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    change: Change<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, tenant_id, actor_kind, actor_id, actor_label, action, \
         target_kind, target_id, before_json, after_json, request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(new_id().to_string())
    .bind(change.tenant_id.map(|t| t.to_string()))
    .bind(actor.kind.as_str())
    .bind(actor.id.clone())
    .bind(actor.label.clone())
    .bind(change.action)
    .bind(change.target_kind)
    .bind(change.target_id)
    .bind(change.before.map(|v| v.to_string()))
    .bind(change.after.map(|v| v.to_string()))
    .bind(request_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

type Row = (
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// Newest first.
pub async fn list(
    db: &Db,
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Page<AuditEntry>, StoreError> {
    let rows: Vec<Row> = Where::new(
        "SELECT id, tenant_id, actor_kind, actor_id, actor_label, action, target_kind, target_id, \
         before_json, after_json, request_id, created_at FROM audit_log",
    )
    .and("tenant_id = {}", filter.tenant_id)
    .and("action = {}", filter.action.as_ref())
    .and("target_kind = {}", filter.target_kind.as_ref())
    .and("target_id = {}", filter.target_id.as_ref())
    .newest_first(page)
    .fetch(db)
    .await?;
    let entries = rows
        .into_iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(entries, page, |e| e.id))
}

fn entry_from_row(r: Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: crate::parse_id(&r.0)?,
        tenant_id: r.1.as_deref().map(crate::parse_id).transpose()?,
        actor_kind: r.2,
        actor_id: r.3,
        actor_label: r.4,
        action: r.5,
        target_kind: r.6,
        target_id: r.7,
        before: r.8.and_then(|s| serde_json::from_str(&s).ok()),
        after: r.9.and_then(|s| serde_json::from_str(&s).ok()),
        request_id: r.10,
        created_at: from_ms(r.11),
    })
}
