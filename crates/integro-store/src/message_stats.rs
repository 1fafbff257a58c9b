//! Daily message statistics for the usage page (ADR 0033): messages in and
//! out per channel account, bot reply times, new conversations, hand-offs
//! and delivery failures.
//!
//! The message path writes no counter: one process at a time rolls the day
//! totals up from `messages`, `conversations` and `conversation_transitions`
//! a minute behind their writers, reading each table from where it stopped
//! (ids are UUIDv7, so in time order). A batch's counts and its new
//! watermark commit together, and the watermark only moves from the value
//! the batch read, so no row is counted twice even when two processes roll
//! up at once. Delivery failures are counted where they happen, which is off
//! the happy path.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::db::Tx;
use crate::sql::{self, Conn};
use crate::usage::day_of;
use crate::{Db, StoreError, parse_id};

/// How far behind its writers the rollup reads: a row whose id was made
/// earlier than this has been committed (or never will be).
pub const LAG_MS: i64 = 60_000;
const BATCH: i64 = 5_000;
/// Batches per source in one run, so a first run over a long history
/// spreads over several ticks.
const MAX_BATCHES: usize = 40;

/// Message figures: of one day, one account, or one account on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    /// Messages from contacts.
    pub inbound: i64,
    /// Messages the bot sent.
    pub outbound_bot: i64,
    /// Messages people sent (agents, API).
    pub outbound_human: i64,
    /// Bot replies that answer a contact's message.
    pub replies: i64,
    /// Their time from the contact's message to the reply, summed (ms).
    pub reply_ms: i64,
    /// Conversations started.
    pub conversations: i64,
    /// Conversations handed to a human.
    pub handoffs: i64,
    /// Of the messages from contacts, those in public threads (X mentions
    /// and replies to the account's posts); the rest are direct messages.
    pub public_inbound: i64,
    /// Of the messages sent, those in public threads (X reply posts).
    pub public_outbound: i64,
}

/// All accounts' figures on one day (UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayStats {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One account's figures over a range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AccountStats {
    pub account_id: Uuid,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Delivery failures of one channel account and provider code in a range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FailureCount {
    pub account_id: Uuid,
    /// The provider's error code; empty when it gave none.
    pub code: String,
    pub failures: i64,
}

/// The smallest UUIDv7, as text, made at `ms`: every id made earlier sorts
/// below it.
fn id_floor(ms: i64) -> String {
    let ms = ms.max(0) as u64;
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// Sums by tenant, day and account.
type Totals = BTreeMap<(String, String, String), Figures>;

fn totals<'a>(totals: &'a mut Totals, tenant: &str, account: &str, at_ms: i64) -> &'a mut Figures {
    totals
        .entry((tenant.to_string(), day_of(at_ms), account.to_string()))
        .or_default()
}

/// A source table the rollup reads, and how its rows add to the totals.
#[derive(Clone, Copy)]
enum Source {
    Messages,
    Conversations,
    Handoffs,
}

impl Source {
    const ALL: [Source; 3] = [Source::Messages, Source::Conversations, Source::Handoffs];

    fn name(self) -> &'static str {
        match self {
            Source::Messages => "messages",
            Source::Conversations => "conversations",
            Source::Handoffs => "handoffs",
        }
    }

    /// Rows after `$1` and before `$2`, oldest first: id, tenant, account,
    /// created_at, and what the source adds.
    fn select(self) -> &'static str {
        match self {
            // A bot reply's time counts from the contact message it answers;
            // a public thread's contact is a post contact (`post:` and the
            // author's id, x.rs): the sender of an inbound message (filed
            // or not), the contact of an outbound one.
            Source::Messages => {
                "SELECT m.id, m.tenant_id, m.account_id, m.created_at, m.direction, m.sender, r.created_at, \
                 CASE WHEN COALESCE(m.from_id, k.channel_user_id) LIKE 'post:%' THEN 1 ELSE 0 END \
                 FROM messages m LEFT JOIN messages r ON r.id = m.reply_to \
                 LEFT JOIN conversations c ON c.id = m.conversation_id LEFT JOIN contacts k ON k.id = c.contact_id \
                 WHERE m.id > $1 AND m.id < $2 ORDER BY m.id LIMIT $3"
            }
            Source::Conversations => {
                "SELECT id, tenant_id, account_id, created_at, '', '', CAST(NULL AS BIGINT), 0 \
                 FROM conversations WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3"
            }
            Source::Handoffs => {
                "SELECT t.id, t.tenant_id, c.account_id, t.created_at, t.to_state, '', CAST(NULL AS BIGINT), 0 \
                 FROM conversation_transitions t JOIN conversations c ON c.id = t.conversation_id \
                 WHERE t.id > $1 AND t.id < $2 ORDER BY t.id LIMIT $3"
            }
        }
    }

    fn add(self, row: &Row, to: &mut Figures) {
        let (_, _, _, _, kind, _, _, public) = row;
        let public = i64::from(*public != 0);
        match self {
            Source::Messages if kind == "inbound" => {
                to.inbound += 1;
                to.public_inbound += public;
            }
            Source::Messages => {
                to.public_outbound += public;
                Source::add_outbound(row, to);
            }
            Source::Conversations => to.conversations += 1,
            Source::Handoffs if kind == "human" => to.handoffs += 1,
            Source::Handoffs => {}
        }
    }

    fn add_outbound(row: &Row, to: &mut Figures) {
        let (_, _, _, created_at, _, sender, answered_at, _) = row;
        if sender != "bot" {
            to.outbound_human += 1;
            return;
        }
        to.outbound_bot += 1;
        if let Some(answered) = answered_at {
            to.replies += 1;
            to.reply_ms += (created_at - answered).max(0);
        }
    }
}

type Row = (
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<i64>,
    i64,
);

/// Adds to the day totals every row made before `until_ms` (at most
/// `LAG_MS` ago when run by the scheduler) that no earlier run counted.
/// Returns the rows read.
pub async fn roll_up(db: &Db, until_ms: i64) -> Result<u64, StoreError> {
    let until = id_floor(until_ms);
    let mut read = 0;
    for source in Source::ALL {
        for _ in 0..MAX_BATCHES {
            let n = roll_up_batch(db, source, &until).await?;
            read += n;
            if n < BATCH as u64 {
                break;
            }
        }
    }
    Ok(read)
}

async fn roll_up_batch(db: &Db, source: Source, until: &str) -> Result<u64, StoreError> {
    let mut tx = db.begin().await?;
    let from: String = sqlx::query_scalar("SELECT last_id FROM stats_watermarks WHERE source = $1")
        .bind(source.name())
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or_default();
    let rows: Vec<Row> = sqlx::query_as(source.select())
        .bind(&from)
        .bind(until)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
    let Some(last) = rows.last().map(|r| r.0.clone()) else {
        return Ok(0);
    };
    let mut sums = Totals::new();
    for row in &rows {
        source.add(row, totals(&mut sums, &row.1, &row.2, row.3));
    }
    for ((tenant, day, account), s) in &sums {
        add_day(&mut tx, tenant, day, account, s).await?;
    }
    let moved = sqlx::query(
        "INSERT INTO stats_watermarks (source, last_id) VALUES ($1, $2) \
         ON CONFLICT (source) DO UPDATE SET last_id = excluded.last_id WHERE stats_watermarks.last_id = $3",
    )
    .bind(source.name())
    .bind(&last)
    .bind(&from)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() != 1 {
        // Another process counted these rows first.
        tx.rollback().await?;
        return Ok(0);
    }
    tx.commit().await?;
    Ok(rows.len() as u64)
}

async fn add_day(
    tx: &mut Tx<'_>,
    tenant: &str,
    day: &str,
    account: &str,
    s: &Figures,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO message_stats_daily (tenant_id, day, account_id, inbound, outbound_bot, outbound_human, \
         replies, reply_ms, conversations, handoffs, public_inbound, public_outbound) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (tenant_id, day, account_id) DO UPDATE SET \
         inbound = message_stats_daily.inbound + excluded.inbound, \
         outbound_bot = message_stats_daily.outbound_bot + excluded.outbound_bot, \
         outbound_human = message_stats_daily.outbound_human + excluded.outbound_human, \
         replies = message_stats_daily.replies + excluded.replies, \
         reply_ms = message_stats_daily.reply_ms + excluded.reply_ms, \
         conversations = message_stats_daily.conversations + excluded.conversations, \
         handoffs = message_stats_daily.handoffs + excluded.handoffs, \
         public_inbound = message_stats_daily.public_inbound + excluded.public_inbound, \
         public_outbound = message_stats_daily.public_outbound + excluded.public_outbound",
    )
    .bind(tenant)
    .bind(day)
    .bind(account)
    .bind(s.inbound)
    .bind(s.outbound_bot)
    .bind(s.outbound_human)
    .bind(s.replies)
    .bind(s.reply_ms)
    .bind(s.conversations)
    .bind(s.handoffs)
    .bind(s.public_inbound)
    .bind(s.public_outbound)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Counts a delivery failure of the outbound message `message_id` today.
pub async fn count_failure(
    tx: &mut Conn<'_>,
    message_id: &str,
    code: Option<&str>,
    at_ms: i64,
) -> Result<(), StoreError> {
    sql::query(
        "INSERT INTO delivery_failures_daily (tenant_id, day, account_id, code, failures) \
         SELECT tenant_id, $1, account_id, $2, 1 FROM messages WHERE id = $3 \
         ON CONFLICT (tenant_id, day, account_id, code) DO UPDATE SET failures = delivery_failures_daily.failures + 1",
    )
    .bind(day_of(at_ms))
    .bind(code.unwrap_or_default().chars().take(64).collect::<String>())
    .bind(message_id)
    .execute(tx)
    .await?;
    Ok(())
}

const SUMS: &str = "CAST(SUM(inbound) AS BIGINT), CAST(SUM(outbound_bot) AS BIGINT), \
     CAST(SUM(outbound_human) AS BIGINT), CAST(SUM(replies) AS BIGINT), CAST(SUM(reply_ms) AS BIGINT), \
     CAST(SUM(conversations) AS BIGINT), CAST(SUM(handoffs) AS BIGINT), \
     CAST(SUM(public_inbound) AS BIGINT), CAST(SUM(public_outbound) AS BIGINT)";

type SumRow = (String, i64, i64, i64, i64, i64, i64, i64, i64, i64);

fn figures(r: &SumRow) -> Figures {
    Figures {
        inbound: r.1,
        outbound_bot: r.2,
        outbound_human: r.3,
        replies: r.4,
        reply_ms: r.5,
        conversations: r.6,
        handoffs: r.7,
        public_inbound: r.8,
        public_outbound: r.9,
    }
}

/// The tenant's figures from `from` to `to` summed by `by` (`day` or
/// `account_id`, a column name of ours), in its order.
async fn sums(
    db: &Db,
    tenant_id: Uuid,
    from: &str,
    to: &str,
    by: &'static str,
) -> Result<Vec<SumRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {by}, {SUMS} FROM message_stats_daily WHERE tenant_id = $1 AND day >= $2 AND day <= $3 \
         GROUP BY {by} ORDER BY {by}"
    )))
    .bind(tenant_id.to_string())
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?)
}

/// The tenant's figures per day from `from` to `to` (inclusive
/// `YYYY-MM-DD`), all accounts together, oldest first; days without
/// messages are absent.
pub async fn days(
    db: &Db,
    tenant_id: Uuid,
    from: &str,
    to: &str,
) -> Result<Vec<DayStats>, StoreError> {
    let rows = sums(db, tenant_id, from, to, "day").await?;
    Ok(rows
        .iter()
        .map(|r| DayStats {
            day: r.0.clone(),
            figures: figures(r),
        })
        .collect())
}

/// The tenant's figures per channel account from `from` to `to`.
pub async fn accounts(
    db: &Db,
    tenant_id: Uuid,
    from: &str,
    to: &str,
) -> Result<Vec<AccountStats>, StoreError> {
    let rows = sums(db, tenant_id, from, to, "account_id").await?;
    rows.iter()
        .map(|r| {
            Ok(AccountStats {
                account_id: parse_id(&r.0)?,
                figures: figures(r),
            })
        })
        .collect()
}

/// The tenant's delivery failures from `from` to `to`, by account and
/// code, most first.
pub async fn failures(
    db: &Db,
    tenant_id: Uuid,
    from: &str,
    to: &str,
) -> Result<Vec<FailureCount>, StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT account_id, code, CAST(SUM(failures) AS BIGINT) AS n FROM delivery_failures_daily \
         WHERE tenant_id = $1 AND day >= $2 AND day <= $3 GROUP BY account_id, code \
         ORDER BY n DESC, account_id, code LIMIT 500",
    )
    .bind(tenant_id.to_string())
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(FailureCount {
                account_id: parse_id(&r.0)?,
                code: r.1,
                failures: r.2,
            })
        })
        .collect()
}

/// The time up to which messages are counted: the id the messages rollup
/// stopped at (ms), if it has run.
pub async fn counted_until(db: &Db) -> Result<Option<i64>, StoreError> {
    let last: Option<String> =
        sqlx::query_scalar("SELECT last_id FROM stats_watermarks WHERE source = 'messages'")
            .fetch_optional(db.pool())
            .await?;
    Ok(last
        .and_then(|id| Uuid::parse_str(&id).ok())
        .and_then(|id| id.get_timestamp())
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs as i64 * 1000 + i64::from(nanos) / 1_000_000
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_floor_sorts_between_the_ids_of_two_times() {
        let ms = 1_765_000_000_123;
        let before = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ms / 1000 - 1) as u64,
            0,
        ));
        let at = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ms / 1000) as u64,
            123_000_000,
        ));
        let floor = id_floor(ms);
        assert!(before.to_string() < floor, "{before} < {floor}");
        assert!(at.to_string() >= floor, "{at} >= {floor}");
        assert_eq!(Uuid::parse_str(&floor).unwrap().get_version_num(), 7);
    }
}
