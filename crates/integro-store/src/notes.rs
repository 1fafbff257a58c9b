//! Agents' private notes on a conversation: kept beside its messages, never
//! sent to the contact.

use integro_core::{Actor, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{from_ms, now_ms};
use crate::{Db, StoreError, Tx, parse_id};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Note {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// Who wrote it: a user's email, or an API key's name.
    pub author: String,
    pub text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The most notes one conversation holds.
pub const MAX_PER_CONVERSATION: i64 = 1000;

/// Adds a note by `actor`; `None` when the conversation already holds
/// `MAX_PER_CONVERSATION`.
pub async fn add(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    conversation_id: Uuid,
    actor: &Actor,
    text: &str,
) -> Result<Option<Note>, StoreError> {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM conversation_notes WHERE conversation_id = $1")
            .bind(conversation_id.to_string())
            .fetch_one(&mut **tx)
            .await?;
    if count >= MAX_PER_CONVERSATION {
        return Ok(None);
    }
    let note = Note {
        id: new_id(),
        conversation_id,
        author: actor.label.clone(),
        text: text.to_string(),
        created_at: from_ms(now_ms()),
    };
    sqlx::query(
        "INSERT INTO conversation_notes (id, tenant_id, conversation_id, author_id, author_label, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(note.id.to_string())
    .bind(tenant_id.to_string())
    .bind(conversation_id.to_string())
    .bind(actor.id.clone())
    .bind(&note.author)
    .bind(&note.text)
    .bind(crate::db::to_ms(note.created_at))
    .execute(&mut **tx)
    .await?;
    Ok(Some(note))
}

/// A conversation's notes, oldest first.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    conversation_id: Uuid,
) -> Result<Vec<Note>, StoreError> {
    let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, conversation_id, author_label, body, created_at FROM conversation_notes \
         WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY id LIMIT $3",
    )
    .bind(tenant_id.to_string())
    .bind(conversation_id.to_string())
    .bind(MAX_PER_CONVERSATION)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(id, conversation, author, text, at)| {
            Ok(Note {
                id: parse_id(&id)?,
                conversation_id: parse_id(&conversation)?,
                author,
                text,
                created_at: from_ms(at),
            })
        })
        .collect()
}
