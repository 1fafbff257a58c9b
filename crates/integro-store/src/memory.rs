//! What the reply engine keeps about a conversation besides its messages:
//! variables set by rules, where its memory starts (after a reset), the
//! per-contact rate-limit notice, and who answers it (bot or human), with
//! every hand-off recorded.

use std::collections::BTreeMap;

use integro_core::new_id;
use serde::Serialize;
use sqlx::AssertSqlSafe;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::conversations::ConversationState;
use crate::db::{from_ms, now_ms};
use crate::sql::{self, Conn};
use crate::{Db, StoreError, parse_id};

/// A conversation's engine state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    pub vars: BTreeMap<String, String>,
    /// Messages before this time (ms) are not part of the LLM's history.
    pub memory_from: Option<i64>,
    /// When a human took the conversation, or last wrote in it.
    pub handed_off_at: Option<i64>,
    pub rate_notice_at: Option<i64>,
}

pub async fn load(db: &Db, conversation_id: Uuid) -> Result<Memory, StoreError> {
    type Row = (String, Option<i64>, Option<i64>, Option<i64>);
    let row: Option<Row> = sql::query(AssertSqlSafe(format!(
        "SELECT {MEMORY_COLUMNS} FROM conversations WHERE id = $1"
    )))
    .bind(conversation_id.to_string())
    .fetch_optional(&mut db.reader().await?.conn())
    .await?;
    let Some((vars, memory_from, handed_off_at, rate_notice_at)) = row else {
        return Err(StoreError::NotFound("conversation"));
    };
    Ok(Memory::from_columns(
        &vars,
        memory_from,
        handed_off_at,
        rate_notice_at,
    ))
}

impl Memory {
    /// The columns `MEMORY_COLUMNS` names, as read.
    pub(crate) fn from_columns(
        vars_json: &str,
        memory_from: Option<i64>,
        handed_off_at: Option<i64>,
        rate_notice_at: Option<i64>,
    ) -> Memory {
        Memory {
            vars: serde_json::from_str(vars_json).unwrap_or_default(),
            memory_from,
            handed_off_at,
            rate_notice_at,
        }
    }
}

/// A conversation's memory columns, in `Memory::from_columns`'s order.
pub(crate) const MEMORY_COLUMNS: &str = "vars_json, memory_from, handed_off_at, rate_notice_at";

pub async fn set_vars(
    tx: &mut Conn<'_>,
    conversation_id: Uuid,
    vars: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    sql::query("UPDATE conversations SET vars_json = $1, updated_at = $2 WHERE id = $3")
        .bind(serde_json::to_string(vars).expect("serialisable"))
        .bind(now_ms())
        .bind(conversation_id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

pub async fn note_rate_notice(
    tx: &mut Conn<'_>,
    conversation_id: Uuid,
    at: i64,
) -> Result<(), StoreError> {
    sql::query("UPDATE conversations SET rate_notice_at = $1 WHERE id = $2")
        .bind(at)
        .bind(conversation_id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

/// Forgets the conversation's history and variables: the LLM starts afresh.
pub async fn reset(tx: &mut Conn<'_>, conversation_id: Uuid) -> Result<(), StoreError> {
    let now = now_ms();
    sql::query("UPDATE conversations SET vars_json = '{}', memory_from = $1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(conversation_id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

/// One earlier message, for the LLM's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    pub id: Uuid,
    /// `contact`, `bot` or `agent`.
    pub sender: String,
    pub text: String,
    pub at_ms: i64,
}

/// The last `limit` text messages of the conversation since `since_ms`,
/// oldest first, without those in `except` (the ones being answered).
/// Failed outbound messages never reached the contact and are left out.
pub async fn history(
    db: &Db,
    conversation_id: Uuid,
    since_ms: i64,
    limit: u32,
    except: &[Uuid],
) -> Result<Vec<Said>, StoreError> {
    // The limit is written into the statement: SQLite prepares a bound
    // `ORDER BY … LIMIT` again every time it runs (`jobs::claim`). The
    // variants are few (a bot's history length, plus a burst's size).
    let limit = u64::from(limit) + except.len() as u64;
    let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, sender, body, created_at FROM messages WHERE conversation_id = $1 AND created_at >= $2 \
         AND kind = 'text' AND status <> 'failed' AND body IS NOT NULL ORDER BY id DESC LIMIT {limit}",
    )))
    .bind(conversation_id.to_string())
    .bind(since_ms)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, sender, body, at) in rows {
        let id = parse_id(&id)?;
        if except.contains(&id) {
            continue;
        }
        out.push(Said {
            id,
            sender,
            text: body.unwrap_or_default(),
            at_ms: at,
        });
    }
    out.truncate(limit as usize);
    out.reverse();
    Ok(out)
}

/// Inbound messages of the conversation received since `since_ms` (the rate limit).
pub async fn inbound_since(
    db: &Db,
    conversation_id: Uuid,
    since_ms: i64,
) -> Result<u32, StoreError> {
    let n: i64 = sql::query(
        "SELECT COUNT(*) FROM messages WHERE conversation_id = $1 AND direction = 'inbound' AND created_at >= $2",
    )
    .bind(conversation_id.to_string())
    .bind(since_ms)
    .scalar(&mut db.reader().await?.conn())
    .await?;
    Ok(n.clamp(0, u32::MAX as i64) as u32)
}

/// Messages of the same contact after `after` not answered yet: a burst
/// answered in one turn. Those filed into the conversation, and those not
/// filed yet, found through their reply jobs still waiting in the contact's
/// queue: an index of unfiled messages by contact, written at a random place
/// by every webhook, was a page of each ingest commit.
pub async fn unanswered_from(
    db: &Db,
    account_id: Uuid,
    from_id: &str,
    conversation_id: Uuid,
    after: Uuid,
) -> Result<Vec<(Uuid, Option<String>, i64)>, StoreError> {
    const LIMIT: usize = 50;
    type Row = (String, Option<String>, i64);
    let mut reader = db.reader().await?;
    let mut rows: Vec<Row> = sql::query(AssertSqlSafe(format!(
        "SELECT id, body, created_at FROM messages WHERE conversation_id = $1 \
         AND direction = 'inbound' AND handled_at IS NULL AND id > $2 ORDER BY id LIMIT {LIMIT}"
    )))
    .bind(conversation_id.to_string())
    .bind(after.to_string())
    .fetch_all(&mut reader.conn())
    .await?;
    // Found through the live-queue index (migration 0008).
    let key = crate::conversations::contact_queue_key(account_id, from_id);
    let payloads: Vec<String> = sql::query(AssertSqlSafe(format!(
        "SELECT payload FROM jobs WHERE queue_hash = $1 AND queue_key = $2 AND state IN ('ready', 'running') \
         AND kind = $3 ORDER BY id LIMIT {LIMIT}"
    )))
    .bind(crate::jobs::queue_hash(&key))
    .bind(key)
    .bind(crate::jobs::JobKind::Reply.as_str())
    .scalars(&mut reader.conn())
    .await?;
    let waiting: Vec<String> = payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|p| p.get("message_id")?.as_str().map(String::from))
        .filter(|id| Uuid::parse_str(id).is_ok_and(|id| id > after))
        .collect();
    if !waiting.is_empty() {
        let sqlite = db.backend() == crate::Backend::Sqlite;
        let placeholders = crate::db::placeholder_rows(sqlite, waiting.len(), 1, |p| p[0].clone());
        let sql = format!(
            "SELECT id, body, created_at FROM messages WHERE id IN ({placeholders}) \
             AND conversation_id IS NULL AND handled_at IS NULL"
        );
        let mut q = sql::query(AssertSqlSafe(sql)).persistent(false);
        for id in &waiting {
            q = q.bind(id);
        }
        rows.extend(q.fetch_all::<Row>(&mut reader.conn()).await?);
    }
    // Filed and unfiled are apart (`conversation_id` set or not). Ids are
    // time-ordered: the order they arrived in.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.truncate(LIMIT);
    rows.into_iter()
        .map(|(id, body, at)| Ok((parse_id(&id)?, body, at)))
        .collect()
}

/// The inbound messages have been answered (alone or together); jobs of the
/// others of a burst find this and stay silent. They are filed into the
/// conversation too, if they were not yet.
pub async fn mark_handled(
    tx: &mut Conn<'_>,
    conversation_id: Uuid,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    let now = now_ms();
    for id in ids {
        sql::query(
            "UPDATE messages SET handled_at = $1, conversation_id = COALESCE(conversation_id, $2), updated_at = $1 \
             WHERE id = $3 AND handled_at IS NULL",
        )
        .bind(now)
        .bind(conversation_id.to_string())
        .bind(id.to_string())
        .execute(tx)
        .await?;
    }
    Ok(())
}

/// The human who has the conversation just wrote: the hand-off timeout
/// counts from now.
pub async fn human_active(tx: &mut Conn<'_>, conversation_id: Uuid) -> Result<(), StoreError> {
    sql::query("UPDATE conversations SET handed_off_at = $1 WHERE id = $2 AND state = 'human'")
        .bind(now_ms())
        .bind(conversation_id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

/// A change of who answers a conversation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Transition {
    pub id: Uuid,
    pub from_state: ConversationState,
    pub to_state: ConversationState,
    /// `rule_handoff`, `api_handoff`, `agent_message`, `resume`, `inactivity_timeout`, `close`, `reopen`.
    pub reason: String,
    /// Who made it: a user, an API key, a rule (`rule:<id>`) or `system`.
    pub actor: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Moves the conversation to `to` and records why and by whom.
pub async fn transition(
    tx: &mut Conn<'_>,
    tenant_id: Uuid,
    conversation_id: Uuid,
    from: ConversationState,
    to: ConversationState,
    reason: &str,
    actor: Option<&str>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let handed_off_at = (to == ConversationState::Human).then_some(now);
    sql::query(
        "UPDATE conversations SET state = $1, handed_off_at = $2, updated_at = $3, \
         closed_at = CASE WHEN $1 = 'closed' THEN $3 ELSE NULL END WHERE id = $4",
    )
    .bind(to.as_str())
    .bind(handed_off_at)
    .bind(now)
    .bind(conversation_id.to_string())
    .execute(tx)
    .await?;
    sql::query(
        "INSERT INTO conversation_transitions (id, tenant_id, conversation_id, from_state, to_state, reason, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id().to_string())
    .bind(tenant_id.to_string())
    .bind(conversation_id.to_string())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(reason)
    .bind(actor)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn transitions(db: &Db, conversation_id: Uuid) -> Result<Vec<Transition>, StoreError> {
    let rows: Vec<(String, String, String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, from_state, to_state, reason, actor, created_at FROM conversation_transitions \
         WHERE conversation_id = $1 ORDER BY id",
    )
    .bind(conversation_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Transition {
                id: parse_id(&r.0)?,
                from_state: ConversationState::from_stored(&r.1),
                to_state: ConversationState::from_stored(&r.2),
                reason: r.3,
                actor: r.4,
                created_at: from_ms(r.5),
            })
        })
        .collect()
}
