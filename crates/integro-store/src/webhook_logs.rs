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

/// Deletes entries older than `older_than_ms`; returns how many. They are
/// found by id, a range of the primary key (migration 0009): an id is a
/// UUIDv7, stored as lowercase hyphenated hex that begins with its creation
/// time.
pub async fn purge(db: &Db, older_than_ms: i64) -> Result<u64, StoreError> {
    let r = sqlx::query("DELETE FROM webhook_logs WHERE id < $1")
        .bind(first_id_at(now_ms() - older_than_ms))
        .execute(&mut *db.writer().await?)
        .await?;
    Ok(r.rows_affected())
}

/// The text that sorts before every id created at or after `ms` and after
/// every id created before it: the UUIDv7 of that millisecond with all its
/// other bits zero.
fn first_id_at(ms: i64) -> String {
    let ms = ms.clamp(0, (1 << 48) - 1) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::{NoContext, Timestamp};

    const DAY_MS: i64 = 86_400_000;

    /// The id a log entry created at `ms` would have.
    fn id_at(ms: i64) -> String {
        let ts = Timestamp::from_unix(
            NoContext,
            (ms / 1000) as u64,
            (ms % 1000) as u32 * 1_000_000,
        );
        Uuid::new_v7(ts).to_string()
    }

    #[test]
    fn the_first_id_of_a_millisecond_sorts_between_it_and_the_one_before() {
        let ms = 1_764_633_600_123;
        for _ in 0..100 {
            assert!(id_at(ms - 1) < first_id_at(ms));
            assert!(first_id_at(ms) <= id_at(ms));
            assert!(id_at(ms) < first_id_at(ms + 1));
        }
        assert!(first_id_at(ms) < new_id().to_string());
    }

    /// Retention: entries older than the setting go, the others stay,
    /// on SQLite and PostgreSQL.
    #[tokio::test]
    async fn the_purge_deletes_only_entries_older_than_the_retention() {
        let (_dir, sqlite) = crate::migrations::test_sqlite().await;
        purge_keeps_recent_entries(&sqlite).await;
        if let Some(postgres) = crate::migrations::test_postgres("webhook_logs").await {
            purge_keeps_recent_entries(&postgres).await;
            integro_db::testing::drop_postgres(postgres).await;
        }
    }

    async fn purge_keeps_recent_entries(db: &Db) {
        let now = now_ms();
        for age in [3 * DAY_MS, DAY_MS + 60_000, DAY_MS - 60_000, 0] {
            sqlx::query(
                "INSERT INTO webhook_logs (id, channel, method, path, headers_json, status, duration_us, outcome, created_at) \
                 VALUES ($1, 'twilio', 'POST', '/webhooks/twilio/x', '{}', 200, 1, 'accepted', $2)",
            )
            .bind(id_at(now - age))
            .bind(now - age)
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        }
        assert_eq!(purge(db, DAY_MS).await.unwrap(), 2);
        let mut left: Vec<i64> = sqlx::query_scalar("SELECT created_at FROM webhook_logs")
            .fetch_all(db.pool())
            .await
            .unwrap();
        left.sort_unstable();
        assert_eq!(left, [now - DAY_MS + 60_000, now]);
        assert_eq!(purge(db, DAY_MS).await.unwrap(), 0, "nothing more is old");
    }
}
