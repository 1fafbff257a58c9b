//! Canned replies: texts a tenant's agents insert into a message by
//! shortcut (`/shortcut` in the dashboard's message box).

use integro_core::{Actor, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{from_ms, now_ms, to_ms};
use crate::{Db, StoreError, Tx, parse_id};
use integro_db::OnUnique;

/// The most canned replies a tenant holds.
pub const MAX_PER_TENANT: i64 = 500;
/// The longest shortcut, in characters.
pub const MAX_SHORTCUT_CHARS: usize = 32;
/// The longest text (a message's own limit).
pub const MAX_TEXT_CHARS: usize = crate::fields::MAX_MESSAGE_CHARS;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CannedReply {
    pub id: Uuid,
    /// Typed after `/` to find it: `[a-z0-9_-]`, 1 to 32 characters,
    /// unique in the tenant.
    pub shortcut: String,
    pub text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A shortcut, trimmed: 1 to 32 of `a-z`, `0-9`, `_` and `-`.
pub fn check_shortcut(shortcut: &str) -> Result<String, StoreError> {
    let s = shortcut.trim();
    let s = s.strip_prefix('/').unwrap_or(s);
    if s.is_empty()
        || s.len() > MAX_SHORTCUT_CHARS
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
    {
        return Err(StoreError::invalid(
            "shortcut",
            format!(
                "1 to {MAX_SHORTCUT_CHARS} characters of a-z, 0-9, _ and - (lower case, no spaces)"
            ),
        ));
    }
    Ok(s.to_string())
}

/// A reply's text, trimmed: not empty, at most 4,096 characters.
pub fn check_text(text: &str) -> Result<String, StoreError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(StoreError::invalid("text", "must not be empty"));
    }
    crate::fields::check_text("text", t, MAX_TEXT_CHARS)?;
    Ok(t.to_string())
}

const COLUMNS: &str = "id, shortcut, body, created_at, updated_at";
type Row = (String, String, String, i64, i64);

fn from_row((id, shortcut, text, created, updated): Row) -> Result<CannedReply, StoreError> {
    Ok(CannedReply {
        id: parse_id(&id)?,
        shortcut,
        text,
        created_at: from_ms(created),
        updated_at: from_ms(updated),
    })
}

/// The tenant's canned replies, by shortcut.
pub async fn list(db: &Db, tenant_id: Uuid) -> Result<Vec<CannedReply>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM canned_replies WHERE tenant_id = $1 ORDER BY shortcut LIMIT $2"
    )))
    .bind(tenant_id.to_string())
    .bind(MAX_PER_TENANT)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(from_row).collect()
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<CannedReply>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM canned_replies WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

fn taken(shortcut: &str) -> String {
    format!("the shortcut `{shortcut}` is already used by another canned reply")
}

/// Creates a canned reply (`shortcut` and `text` checked by the caller with
/// `check_shortcut` and `check_text`). Refused past `MAX_PER_TENANT`.
pub async fn create(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    actor: &Actor,
    shortcut: &str,
    text: &str,
) -> Result<CannedReply, StoreError> {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM canned_replies WHERE tenant_id = $1")
            .bind(tenant_id.to_string())
            .fetch_one(&mut **tx)
            .await?;
    if count >= MAX_PER_TENANT {
        return Err(StoreError::invalid(
            "shortcut",
            format!(
                "a tenant has at most {MAX_PER_TENANT} canned replies; delete one before adding another"
            ),
        ));
    }
    let now = from_ms(now_ms());
    let reply = CannedReply {
        id: new_id(),
        shortcut: shortcut.to_string(),
        text: text.to_string(),
        created_at: now,
        updated_at: now,
    };
    sqlx::query(
        "INSERT INTO canned_replies (id, tenant_id, shortcut, body, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(reply.id.to_string())
    .bind(tenant_id.to_string())
    .bind(&reply.shortcut)
    .bind(&reply.text)
    .bind(actor.id.clone())
    .bind(to_ms(now))
    .execute(&mut **tx)
    .await
    .on_unique(&taken(shortcut))?;
    Ok(reply)
}

/// Changes a canned reply's shortcut and text (checked by the caller).
/// `None` when the tenant has no such reply.
pub async fn update(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
    shortcut: &str,
    text: &str,
) -> Result<Option<CannedReply>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE canned_replies SET shortcut = $1, body = $2, updated_at = $3 \
         WHERE tenant_id = $4 AND id = $5 RETURNING {COLUMNS}"
    )))
    .bind(shortcut)
    .bind(text)
    .bind(now_ms())
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await
    .on_unique(&taken(shortcut))?;
    row.map(from_row).transpose()
}

/// Deletes a canned reply; `None` when the tenant has no such reply.
pub async fn delete(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<CannedReply>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM canned_replies WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(from_row).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_are_short_lower_case_words() {
        assert_eq!(check_shortcut(" hours ").unwrap(), "hours");
        assert_eq!(
            check_shortcut("/refund-policy_2").unwrap(),
            "refund-policy_2"
        );
        assert!(check_shortcut("").is_err());
        assert!(check_shortcut("Hours").is_err());
        assert!(check_shortcut("two words").is_err());
        assert!(check_shortcut(&"x".repeat(33)).is_err());
        assert!(check_text("  ").is_err());
        assert!(check_text(&"x".repeat(4097)).is_err());
    }
}
