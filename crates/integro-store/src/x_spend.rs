//! X's estimated spend per tenant: the calls made, by day and kind, priced
//! from X's pay-per-use table (shared/protocols/x-api-v2.md §6; X says its
//! prices may change, so this is an estimate). The tenant's
//! `x_monthly_spend_limit_usd` stops what is not a reply once reached.

use serde::Serialize;
use uuid::Uuid;

use crate::usage::day_of;
use crate::{Db, StoreError};

/// A kind of billed X call and its price in USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XOperation {
    /// A post published (no link).
    Post,
    /// A post with a link.
    PostWithUrl,
    /// A reply to a post that summoned the account.
    Reply,
    /// A direct message sent.
    DirectMessage,
    /// A trends request.
    Trends,
    /// A post read from the account's own timelines (mentions, its posts).
    OwnedRead,
    /// A direct message event read.
    DirectMessageRead,
}

impl XOperation {
    pub const ALL: [XOperation; 7] = [
        XOperation::Post,
        XOperation::PostWithUrl,
        XOperation::Reply,
        XOperation::DirectMessage,
        XOperation::Trends,
        XOperation::OwnedRead,
        XOperation::DirectMessageRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            XOperation::Post => "post",
            XOperation::PostWithUrl => "post_with_url",
            XOperation::Reply => "reply",
            XOperation::DirectMessage => "direct_message",
            XOperation::Trends => "trends",
            XOperation::OwnedRead => "owned_read",
            XOperation::DirectMessageRead => "direct_message_read",
        }
    }

    pub fn price_usd(self) -> f64 {
        match self {
            XOperation::Post => 0.015,
            XOperation::PostWithUrl => 0.20,
            XOperation::Reply => 0.010,
            XOperation::DirectMessage => 0.015,
            XOperation::Trends => 0.010,
            XOperation::OwnedRead => 0.001,
            XOperation::DirectMessageRead => 0.010,
        }
    }

    /// A post's kind by its text: X bills a post with a link more.
    pub fn post(text: &str) -> XOperation {
        if text.contains("http://") || text.contains("https://") {
            XOperation::PostWithUrl
        } else {
            XOperation::Post
        }
    }
}

/// Counts `n` calls of `operation` made now.
pub async fn record(
    db: &Db,
    tenant_id: Uuid,
    operation: XOperation,
    n: u64,
    at_ms: i64,
) -> Result<(), StoreError> {
    if n == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO x_spend_daily (tenant_id, day, operation, count) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, day, operation) DO UPDATE SET count = x_spend_daily.count + excluded.count",
    )
    .bind(tenant_id.to_string())
    .bind(day_of(at_ms))
    .bind(operation.as_str())
    .bind(n.min(i64::MAX as u64) as i64)
    .execute(&mut *db.writer().await?)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SpendLine {
    pub operation: String,
    pub count: i64,
    pub usd: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MonthSpend {
    /// `YYYY-MM`, UTC.
    pub month: String,
    pub lines: Vec<SpendLine>,
    pub estimated_usd: f64,
}

/// The tenant's estimated X spend in the calendar month (UTC) of `at_ms`.
pub async fn month(db: &Db, tenant_id: Uuid, at_ms: i64) -> Result<MonthSpend, StoreError> {
    let day = day_of(at_ms);
    let month = day[..7].to_string();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT operation, CAST(SUM(count) AS BIGINT) FROM x_spend_daily \
         WHERE tenant_id = $1 AND day >= $2 AND day <= $3 GROUP BY operation ORDER BY operation",
    )
    .bind(tenant_id.to_string())
    .bind(format!("{month}-01"))
    .bind(&day)
    .fetch_all(db.pool())
    .await?;
    let lines: Vec<SpendLine> = rows
        .into_iter()
        .filter_map(|(op, count)| {
            let price = XOperation::ALL
                .into_iter()
                .find(|o| o.as_str() == op)?
                .price_usd();
            Some(SpendLine {
                operation: op,
                count,
                usd: count as f64 * price,
            })
        })
        .collect();
    Ok(MonthSpend {
        month,
        // Folded from 0: an empty sum of floats is -0.0.
        estimated_usd: lines.iter().fold(0.0, |sum, l| sum + l.usd),
        lines,
    })
}

/// Why the tenant may not make a call that is not a reply now: its month's
/// estimate reached its limit. `None`: go ahead.
pub async fn over_limit(
    db: &Db,
    tenant_id: Uuid,
    at_ms: i64,
) -> Result<Option<String>, StoreError> {
    let Some(limit) = crate::tenants::settings(db, tenant_id)
        .await?
        .x_monthly_spend_limit_usd
    else {
        return Ok(None);
    };
    let spent = month(db, tenant_id, at_ms).await?.estimated_usd;
    Ok((spent >= limit).then(|| {
        format!("X's estimated spend this month (${spent:.2}) reached the limit (${limit:.2}): only replies go out")
    }))
}
