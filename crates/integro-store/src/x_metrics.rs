//! X metrics per account (#38): direct messages and mentions in and out
//! and the bot's response time (from the message rollup, ADR 0033), posts
//! by state, approval latency, published posts' public metrics (refreshed
//! on a schedule by the worker, `integro-worker/src/x_metrics.rs`), and
//! failures by X's error code (deliveries and posts).

use std::collections::BTreeMap;

use integro_core::{ChannelKind, PostMetrics};
use serde::Serialize;
use uuid::Uuid;

use crate::posts::{Post, PostState};
use crate::{Db, StoreError, parse_id};

/// How long after publication a post's public metrics are refreshed.
pub const REFRESH_FOR_MS: i64 = 30 * 24 * 3600 * 1000;
/// The most posts X reads in one `GET /2/tweets?ids=` call.
pub const IDS_PER_CALL: usize = 100;

/// Messages of one kind of thread: received from contacts, sent to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InOut {
    pub received: i64,
    pub sent: i64,
}

/// Failures with one X error code (`429` too many requests, `402` or
/// `usage-capped` out of credits, …; empty when X gave none).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorCount {
    pub code: String,
    /// Messages X did not take.
    pub deliveries: i64,
    /// Posts X refused.
    pub posts: i64,
}

/// One X account's figures over a range of days.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AccountMetrics {
    pub account_id: Uuid,
    pub name: String,
    pub direct_messages: InOut,
    /// Mentions and replies received; reply posts sent.
    pub mentions: InOut,
    /// Bot messages that answer a contact's message, and their mean time
    /// from that message (ms).
    pub bot_replies: i64,
    pub response_ms_avg: Option<i64>,
    /// The account's posts in each state now (every state listed).
    pub posts_by_state: BTreeMap<String, i64>,
    /// Posts approved in the range, and the mean time from their
    /// submission to the approval (ms).
    pub approvals: i64,
    pub approval_ms_avg: Option<i64>,
    /// Posts published in the range, and their public metrics summed (as
    /// last refreshed).
    pub published: i64,
    pub public_metrics: PostMetrics,
    /// Failures in the range by X's error code, most first.
    pub failures: Vec<ErrorCount>,
}

/// The start of `day` (`YYYY-MM-DD`, UTC) in ms.
fn day_start_ms(day: &str) -> Result<i64, StoreError> {
    let date = time::Date::parse(
        day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| StoreError::invalid("from", "must be a date as YYYY-MM-DD"))?;
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// An account's posts published in a range and their metrics summed.
type PublishedRow = (String, i64, i64, i64, i64, i64, i64, i64);

/// The tenant's X accounts' figures from `from` to `to` (inclusive
/// `YYYY-MM-DD`, UTC), by account name.
pub async fn accounts(
    db: &Db,
    tenant_id: Uuid,
    from: &str,
    to: &str,
) -> Result<Vec<AccountMetrics>, StoreError> {
    let tenant = tenant_id.to_string();
    let (from_ms, until_ms) = (day_start_ms(from)?, day_start_ms(to)? + 24 * 3600 * 1000);
    let pool = db.pool();
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, name FROM channel_accounts WHERE tenant_id = $1 AND kind = $2 AND deleted_at IS NULL \
         ORDER BY name, id",
    )
    .bind(&tenant)
    .bind(ChannelKind::X.as_str())
    .fetch_all(pool)
    .await?;
    let mut out: Vec<AccountMetrics> = names
        .into_iter()
        .map(|(id, name)| {
            Ok(AccountMetrics {
                account_id: parse_id(&id)?,
                name,
                direct_messages: InOut::default(),
                mentions: InOut::default(),
                bot_replies: 0,
                response_ms_avg: None,
                posts_by_state: PostState::ALL
                    .iter()
                    .map(|s| (s.as_str().to_string(), 0))
                    .collect(),
                approvals: 0,
                approval_ms_avg: None,
                published: 0,
                public_metrics: PostMetrics::default(),
                failures: Vec::new(),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let index: BTreeMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, a)| (a.account_id.to_string(), i))
        .collect();
    let of = |id: &str| index.get(id).copied();

    let messages: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT account_id, CAST(SUM(inbound) AS BIGINT), CAST(SUM(public_inbound) AS BIGINT), \
         CAST(SUM(outbound_bot + outbound_human) AS BIGINT), CAST(SUM(public_outbound) AS BIGINT), \
         CAST(SUM(replies) AS BIGINT), CAST(SUM(reply_ms) AS BIGINT) \
         FROM message_stats_daily WHERE tenant_id = $1 AND day >= $2 AND day <= $3 GROUP BY account_id",
    )
    .bind(&tenant)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    for (id, inbound, public_in, outbound, public_out, replies, reply_ms) in messages {
        let Some(i) = of(&id) else { continue };
        let a = &mut out[i];
        a.direct_messages = InOut {
            received: inbound - public_in,
            sent: outbound - public_out,
        };
        a.mentions = InOut {
            received: public_in,
            sent: public_out,
        };
        a.bot_replies = replies;
        a.response_ms_avg = (replies > 0).then(|| reply_ms / replies);
    }

    let states: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT account_id, state, COUNT(*) FROM posts WHERE tenant_id = $1 GROUP BY account_id, state",
    )
    .bind(&tenant)
    .fetch_all(pool)
    .await?;
    for (id, state, n) in states {
        if let Some(i) = of(&id) {
            out[i].posts_by_state.insert(state, n);
        }
    }

    let approvals: Vec<(String, i64, Option<i64>, i64)> = sqlx::query_as(
        "SELECT account_id, COUNT(*), CAST(SUM(approved_at - submitted_at) AS BIGINT), \
         COUNT(submitted_at) FROM posts \
         WHERE tenant_id = $1 AND approved_at >= $2 AND approved_at < $3 GROUP BY account_id",
    )
    .bind(&tenant)
    .bind(from_ms)
    .bind(until_ms)
    .fetch_all(pool)
    .await?;
    for (id, n, waited_ms, timed) in approvals {
        if let Some(i) = of(&id) {
            out[i].approvals = n;
            out[i].approval_ms_avg = waited_ms.filter(|_| timed > 0).map(|ms| ms / timed);
        }
    }

    let published: Vec<PublishedRow> = sqlx::query_as(
        "SELECT account_id, COUNT(*), CAST(COALESCE(SUM(impressions), 0) AS BIGINT), \
         CAST(COALESCE(SUM(likes), 0) AS BIGINT), CAST(COALESCE(SUM(reposts), 0) AS BIGINT), \
         CAST(COALESCE(SUM(replies), 0) AS BIGINT), CAST(COALESCE(SUM(quotes), 0) AS BIGINT), \
         CAST(COALESCE(SUM(bookmarks), 0) AS BIGINT) FROM posts \
         WHERE tenant_id = $1 AND state = 'published' AND published_at >= $2 AND published_at < $3 \
         GROUP BY account_id",
    )
    .bind(&tenant)
    .bind(from_ms)
    .bind(until_ms)
    .fetch_all(pool)
    .await?;
    for (id, n, impressions, likes, reposts, replies, quotes, bookmarks) in published {
        if let Some(i) = of(&id) {
            out[i].published = n;
            out[i].public_metrics = PostMetrics {
                impressions,
                likes,
                reposts,
                replies,
                quotes,
                bookmarks,
            };
        }
    }

    let mut failures: BTreeMap<(usize, String), ErrorCount> = BTreeMap::new();
    let deliveries: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT account_id, code, CAST(SUM(failures) AS BIGINT) FROM delivery_failures_daily \
         WHERE tenant_id = $1 AND day >= $2 AND day <= $3 GROUP BY account_id, code",
    )
    .bind(&tenant)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let refused: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT account_id, COALESCE(error_code, ''), COUNT(*) FROM posts \
         WHERE tenant_id = $1 AND state = 'failed' AND updated_at >= $2 AND updated_at < $3 \
         GROUP BY account_id, COALESCE(error_code, '')",
    )
    .bind(&tenant)
    .bind(from_ms)
    .bind(until_ms)
    .fetch_all(pool)
    .await?;
    for (posts, rows) in [(false, deliveries), (true, refused)] {
        for (id, code, n) in rows {
            let Some(i) = of(&id) else { continue };
            let entry = failures
                .entry((i, code.clone()))
                .or_insert_with(|| ErrorCount {
                    code,
                    deliveries: 0,
                    posts: 0,
                });
            if posts {
                entry.posts += n;
            } else {
                entry.deliveries += n;
            }
        }
    }
    for ((i, _), count) in failures {
        out[i].failures.push(count);
    }
    for a in &mut out {
        a.failures
            .sort_by_key(|f| (std::cmp::Reverse(f.deliveries + f.posts), f.code.clone()));
    }
    Ok(out)
}

/// The tenant's posts published in the range with the most impressions
/// (as last refreshed), at most `limit`.
pub async fn top_posts(
    db: &Db,
    tenant_id: Uuid,
    from: &str,
    to: &str,
    limit: i64,
) -> Result<Vec<Post>, StoreError> {
    let (from_ms, until_ms) = (day_start_ms(from)?, day_start_ms(to)? + 24 * 3600 * 1000);
    crate::posts::published_between(db, tenant_id, from_ms, until_ms, limit).await
}

/// A published post whose public metrics are due for a refresh.
#[derive(Debug, Clone)]
pub struct DuePost {
    pub tenant_id: Uuid,
    pub account_id: Uuid,
    pub provider_post_id: String,
}

/// Posts published since `published_since_ms` whose metrics were not read
/// since `refreshed_before_ms`, those never read and then the stalest
/// first, at most `limit`.
pub async fn due(
    db: &Db,
    published_since_ms: i64,
    refreshed_before_ms: i64,
    limit: i64,
) -> Result<Vec<DuePost>, StoreError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tenant_id, account_id, provider_post_id FROM posts \
         WHERE state = 'published' AND published_at >= $1 AND provider_post_id IS NOT NULL \
         AND (metrics_at IS NULL OR metrics_at < $2) \
         ORDER BY COALESCE(metrics_at, 0), published_at LIMIT $3",
    )
    .bind(published_since_ms)
    .bind(refreshed_before_ms)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(tenant, account, post)| {
            Ok(DuePost {
                tenant_id: parse_id(&tenant)?,
                account_id: parse_id(&account)?,
                provider_post_id: post,
            })
        })
        .collect()
}

/// Stores the public metrics X reported for the account's posts, and marks
/// every post asked for as read at `at_ms` (one X no longer returns, being
/// deleted, keeps its last figures and is not asked again until due).
pub async fn store(
    db: &Db,
    account_id: Uuid,
    asked: &[String],
    reported: &[(String, PostMetrics)],
    at_ms: i64,
) -> Result<(), StoreError> {
    let account = account_id.to_string();
    let mut tx = db.begin().await?;
    for (id, m) in reported {
        sqlx::query(
            "UPDATE posts SET impressions = $1, likes = $2, reposts = $3, replies = $4, quotes = $5, \
             bookmarks = $6, metrics_at = $7 WHERE account_id = $8 AND provider_post_id = $9",
        )
        .bind(m.impressions)
        .bind(m.likes)
        .bind(m.reposts)
        .bind(m.replies)
        .bind(m.quotes)
        .bind(m.bookmarks)
        .bind(at_ms)
        .bind(&account)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    for id in asked
        .iter()
        .filter(|a| !reported.iter().any(|r| &r.0 == *a))
    {
        sqlx::query(
            "UPDATE posts SET metrics_at = $1 WHERE account_id = $2 AND provider_post_id = $3",
        )
        .bind(at_ms)
        .bind(&account)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
