//! How far each user has read each conversation, and how many of the
//! contact's messages came since: the inbox's unread counts. The mark is the
//! id of the latest message shown to the user (message ids grow with time),
//! so counting walks `messages_conversation` from it, and stops at
//! `UNREAD_CAP`.

use std::collections::HashMap;

use uuid::Uuid;

use crate::db::now_ms;
use crate::{Db, StoreError};

/// Unread messages are counted up to this many per conversation (shown as
/// "99+" from here).
pub const UNREAD_CAP: i64 = 100;

/// Marks the conversation read by `user_id` up to the message
/// `last_message_id`. A mark only moves forward, and is written only when it
/// moves (a page shown again writes nothing).
pub async fn mark(
    db: &Db,
    tenant_id: Uuid,
    user_id: Uuid,
    conversation_id: Uuid,
    last_message_id: Uuid,
) -> Result<(), StoreError> {
    let last = last_message_id.to_string();
    let current: Option<(String,)> = sqlx::query_as(
        "SELECT last_message_id FROM conversation_reads WHERE user_id = $1 AND conversation_id = $2",
    )
    .bind(user_id.to_string())
    .bind(conversation_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    if current.is_some_and(|(c,)| c >= last) {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO conversation_reads (user_id, conversation_id, tenant_id, last_message_id, read_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET \
           last_message_id = excluded.last_message_id, read_at = excluded.read_at \
         WHERE conversation_reads.last_message_id < excluded.last_message_id",
    )
    .bind(user_id.to_string())
    .bind(conversation_id.to_string())
    .bind(tenant_id.to_string())
    .bind(last)
    .bind(now_ms())
    .execute(&mut *db.writer().await?)
    .await?;
    Ok(())
}

/// For each of `conversations`: the contact's messages `user_id` has not
/// read (all of them when the user never opened it), up to `UNREAD_CAP`.
/// One statement, one bounded range of `messages_conversation` per
/// conversation.
pub async fn unread(
    db: &Db,
    user_id: Uuid,
    conversations: &[Uuid],
) -> Result<HashMap<Uuid, i64>, StoreError> {
    let mut counts = HashMap::with_capacity(conversations.len());
    // SQLite takes at most 500 parts in a compound select.
    for chunk in conversations.chunks(200) {
        let parts: Vec<String> = (0..chunk.len())
            .map(|i| {
                let c = i + 2;
                format!(
                    "SELECT CAST({i} AS BIGINT), COUNT(*) FROM (SELECT 1 AS one FROM messages m \
                     WHERE m.conversation_id = ${c} AND m.direction = 'inbound' AND m.id > COALESCE(\
                     (SELECT r.last_message_id FROM conversation_reads r WHERE r.user_id = $1 AND r.conversation_id = ${c}), '') \
                     LIMIT {UNREAD_CAP}) AS u{i}"
                )
            })
            .collect();
        let mut q = sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(parts.join(" UNION ALL ")))
            .bind(user_id.to_string());
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for (i, count) in q.fetch_all(db.pool()).await? {
            if let Some(id) = usize::try_from(i).ok().and_then(|i| chunk.get(i)) {
                counts.insert(*id, count);
            }
        }
    }
    Ok(counts)
}

/// An unread count as shown: empty for none, "99+" from the cap.
pub fn shown(count: i64) -> String {
    match count {
        ..=0 => String::new(),
        n if n >= UNREAD_CAP => format!("{}+", UNREAD_CAP - 1),
        n => n.to_string(),
    }
}
