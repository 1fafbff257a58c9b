//! LLM token usage per tenant, bot and day, and the tenant's monthly budget.

use serde::Serialize;
use uuid::Uuid;

use crate::sql::{self, Conn};
use crate::{Db, StoreError, parse_id};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageDay {
    pub bot_id: Uuid,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// LLM calls answered.
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Time the calls took, summed (ms).
    pub latency_ms: i64,
    /// Attempts that failed (timeouts, errors) or were skipped while a
    /// provider's breaker was open, including those a fallback then answered.
    pub failed_requests: i64,
}

/// `YYYY-MM-DD` (UTC) of a time in ms.
pub fn day_of(ms: i64) -> String {
    let t = crate::db::from_ms(ms);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// One turn's LLM calls: the answer's tokens, the time the calls took and
/// the attempts that failed (a fallback that answered counts the ones before).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LlmCall {
    pub answered: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    pub failed_attempts: u64,
}

fn count(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// Adds one turn's LLM calls to the day's totals.
pub async fn record(
    tx: &mut Conn<'_>,
    tenant_id: Uuid,
    bot_id: Uuid,
    at_ms: i64,
    call: &LlmCall,
) -> Result<(), StoreError> {
    sql::query(
        "INSERT INTO usage_daily (tenant_id, bot_id, day, requests, input_tokens, output_tokens, latency_ms, failed_requests) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, bot_id, day) DO UPDATE SET requests = usage_daily.requests + excluded.requests, \
         input_tokens = usage_daily.input_tokens + excluded.input_tokens, \
         output_tokens = usage_daily.output_tokens + excluded.output_tokens, \
         latency_ms = usage_daily.latency_ms + excluded.latency_ms, \
         failed_requests = usage_daily.failed_requests + excluded.failed_requests",
    )
    .bind(tenant_id.to_string())
    .bind(bot_id.to_string())
    .bind(day_of(at_ms))
    .bind(i64::from(call.answered))
    .bind(count(call.input_tokens))
    .bind(count(call.output_tokens))
    .bind(count(call.latency_ms))
    .bind(count(call.failed_attempts))
    .execute(tx)
    .await?;
    Ok(())
}

/// Tokens (input + output) the tenant has spent in the calendar month (UTC)
/// of `at_ms`.
pub async fn month_tokens(db: &Db, tenant_id: Uuid, at_ms: i64) -> Result<i64, StoreError> {
    let day = day_of(at_ms);
    let month_start = format!("{}-01", &day[..7]);
    let total: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(input_tokens + output_tokens) AS BIGINT) FROM usage_daily WHERE tenant_id = $1 AND day >= $2 AND day <= $3",
    )
    .bind(tenant_id.to_string())
    .bind(month_start)
    .bind(day)
    .fetch_one(db.pool())
    .await?;
    Ok(total.unwrap_or(0))
}

#[derive(Debug, Default, Clone)]
pub struct UsageFilter {
    pub bot_id: Option<Uuid>,
    /// Inclusive `YYYY-MM-DD` bounds.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Daily totals, newest day first (at most 1000 rows).
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    filter: &UsageFilter,
) -> Result<Vec<UsageDay>, StoreError> {
    let rows: Vec<(String, String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT bot_id, day, requests, input_tokens, output_tokens, latency_ms, failed_requests FROM usage_daily WHERE tenant_id = $1 \
         AND ($2 = '' OR bot_id = $2) AND ($3 = '' OR day >= $3) AND ($4 = '' OR day <= $4) \
         ORDER BY day DESC, bot_id LIMIT 1000",
    )
    .bind(tenant_id.to_string())
    .bind(filter.bot_id.map(|b| b.to_string()).unwrap_or_default())
    .bind(filter.from.clone().unwrap_or_default())
    .bind(filter.to.clone().unwrap_or_default())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(UsageDay {
                bot_id: parse_id(&r.0)?,
                day: r.1,
                requests: r.2,
                input_tokens: r.3,
                output_tokens: r.4,
                latency_ms: r.5,
                failed_requests: r.6,
            })
        })
        .collect()
}

/// All bots' LLM figures on one day (UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LlmDay {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// LLM calls answered.
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Time the calls took, summed (ms).
    pub latency_ms: i64,
    /// Attempts that failed or were skipped while a breaker was open.
    pub failed_requests: i64,
}

/// The tenant's LLM figures per day from `from` to `to` (inclusive
/// `YYYY-MM-DD`), all bots together, oldest first.
pub async fn days(
    db: &Db,
    tenant_id: Uuid,
    from: &str,
    to: &str,
) -> Result<Vec<LlmDay>, StoreError> {
    type DayRow = (String, i64, i64, i64, i64, i64);
    let rows: Vec<DayRow> = sqlx::query_as(
        "SELECT day, CAST(SUM(requests) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT), \
         CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(latency_ms) AS BIGINT), CAST(SUM(failed_requests) AS BIGINT) \
         FROM usage_daily WHERE tenant_id = $1 AND day >= $2 AND day <= $3 GROUP BY day ORDER BY day",
    )
    .bind(tenant_id.to_string())
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| LlmDay {
            day: r.0,
            requests: r.1,
            input_tokens: r.2,
            output_tokens: r.3,
            latency_ms: r.4,
            failed_requests: r.5,
        })
        .collect())
}
