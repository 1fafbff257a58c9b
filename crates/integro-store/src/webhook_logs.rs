//! The webhook log: every webhook request, accepted or not, with its headers
//! (secrets redacted), body, answer, processing time and error.

use integro_core::new_id;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{from_ms, now_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::sql::{self, Conn};
use crate::{Db, StoreError, parse_id};

/// Bodies are kept up to this size.
pub const MAX_BODY_CHARS: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookLog {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub account_id: Option<Uuid>,
    pub channel: String,
    pub method: String,
    pub path: String,
    pub headers: Value,
    pub body: Option<String>,
    pub status: i64,
    pub duration_us: i64,
    /// `accepted`, `duplicate`, `verified` (handshake), `rejected` or `error`.
    pub outcome: String,
    pub error: Option<String>,
    pub request_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct NewWebhookLog {
    pub tenant_id: Option<Uuid>,
    pub account_id: Option<Uuid>,
    pub channel: String,
    pub method: String,
    pub path: String,
    /// The headers as a JSON object, written by the caller (on the request's
    /// thread, not the committer's).
    pub headers_json: String,
    pub body: Option<String>,
    pub status: u16,
    pub duration_us: i64,
    pub outcome: &'static str,
    pub error: Option<String>,
    pub request_id: Option<String>,
}

/// Records several entries with one statement (group commits of webhooks).
pub async fn record_many(tx: &mut Conn<'_>, logs: Vec<NewWebhookLog>) -> Result<(), StoreError> {
    let now = now_ms();
    let mut insert = crate::insert::insert("webhook_logs", INSERT_COLUMNS, "");
    for log in logs {
        insert.row(insert_row(log, now));
    }
    insert.execute(tx).await?;
    Ok(())
}

/// The columns an entry is inserted with (`insert_row`).
pub(crate) const INSERT_COLUMNS: &[&str] = &[
    "id",
    "tenant_id",
    "account_id",
    "channel",
    "method",
    "path",
    "headers_json",
    "body",
    "status",
    "duration_us",
    "outcome",
    "error",
    "request_id",
    "created_at",
];

/// `log`'s values for `INSERT_COLUMNS`, as a new entry.
pub(crate) fn insert_row(log: NewWebhookLog, now: i64) -> Vec<sql::Value> {
    vec![
        new_id().to_string().into(),
        log.tenant_id.map(|t| t.to_string()).into(),
        log.account_id.map(|a| a.to_string()).into(),
        log.channel.into(),
        log.method.into(),
        log.path.into(),
        log.headers_json.into(),
        truncate(log.body).into(),
        i64::from(log.status).into(),
        log.duration_us.into(),
        log.outcome.into(),
        log.error.into(),
        log.request_id.into(),
        now.into(),
    ]
}

/// Records on its own (a rejected webhook).
pub async fn record(db: &Db, log: NewWebhookLog) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    record_many(&mut Conn::of(&mut tx), vec![log]).await?;
    tx.commit().await?;
    Ok(())
}

fn truncate(body: Option<String>) -> Option<String> {
    body.map(|b| {
        if b.len() > MAX_BODY_CHARS {
            let mut cut = MAX_BODY_CHARS;
            while !b.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}…[truncated]", &b[..cut])
        } else {
            b
        }
    })
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    i64,
);

#[derive(Debug, Default, Clone)]
pub struct WebhookLogFilter {
    pub account_id: Option<Uuid>,
    pub channel: Option<String>,
    pub outcome: Option<String>,
}

/// A tenant's webhook log, newest first.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    filter: &WebhookLogFilter,
    page: &PageRequest,
) -> Result<Page<WebhookLog>, StoreError> {
    let rows: Vec<Row> = Where::new(
        "SELECT id, tenant_id, account_id, channel, method, path, headers_json, body, status, duration_us, outcome, error, \
         request_id, created_at FROM webhook_logs",
    )
    .and("tenant_id = {}", Some(tenant_id))
    .and("account_id = {}", filter.account_id)
    .and("channel = {}", filter.channel.as_ref())
    .and("outcome = {}", filter.outcome.as_ref())
    .newest_first(page)
    .fetch(db)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            Ok(WebhookLog {
                id: parse_id(&r.0)?,
                tenant_id: r.1.as_deref().map(parse_id).transpose()?,
                account_id: r.2.as_deref().map(parse_id).transpose()?,
                channel: r.3,
                method: r.4,
                path: r.5,
                headers: serde_json::from_str(&r.6).unwrap_or(Value::Null),
                body: r.7,
                status: r.8,
                duration_us: r.9,
                outcome: r.10,
                error: r.11,
                request_id: r.12,
                created_at: from_ms(r.13),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page::from_rows(items, page, |l| l.id))
}

/// Deletes entries older than `older_than_ms`; returns how many.
pub async fn purge(db: &Db, older_than_ms: i64) -> Result<u64, StoreError> {
    let r = sqlx::query("DELETE FROM webhook_logs WHERE created_at < $1")
        .bind(now_ms() - older_than_ms)
        .execute(&mut *db.writer().await?)
        .await?;
    Ok(r.rows_affected())
}
