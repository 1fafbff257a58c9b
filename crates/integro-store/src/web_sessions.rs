//! Dashboard sign-ins. The browser keeps the session's token in a cookie;
//! the database keeps its hash, the CSRF token the session's forms carry, and
//! the tenant the user is acting in. A session ends when it expires, when it
//! is revoked (sign-out, or from the list of sessions), or when the user's
//! token generation rises (`users::end_sessions`).

use integro_core::new_id;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::credentials::{random_token, token_hash};
use crate::db::{from_ms, now_ms};
use crate::users::{self, User};
use crate::{Db, StoreError, parse_id};

/// How long a session lives without use.
pub const IDLE_MS: i64 = 12 * 3600 * 1000;
/// `last_seen_at` is written at most this often, not on every page.
const SEEN_EVERY_MS: i64 = 60 * 1000;
/// The longest user agent kept (for the list of sessions).
const MAX_USER_AGENT: usize = 256;

#[derive(Debug, Clone, Serialize)]
pub struct WebSession {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Carried by every form and htmx request of this session.
    #[serde(skip)]
    pub csrf_token: String,
    /// The tenant the user acts in; `None` until chosen (users of one
    /// tenant act in it without choosing).
    pub tenant_id: Option<Uuid>,
    pub user_agent: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A new session's cookie value and record.
pub struct Started {
    pub token: String,
    pub session: WebSession,
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
);
const COLUMNS: &str =
    "id, user_id, csrf_token, tenant_id, user_agent, created_at, last_seen_at, expires_at";

fn from_row(r: Row) -> Result<WebSession, StoreError> {
    Ok(WebSession {
        id: parse_id(&r.0)?,
        user_id: parse_id(&r.1)?,
        csrf_token: r.2,
        tenant_id: r.3.as_deref().map(parse_id).transpose()?,
        user_agent: r.4,
        created_at: from_ms(r.5),
        last_seen_at: from_ms(r.6),
        expires_at: from_ms(r.7),
    })
}

/// Starts a session for `user` (whose password was just verified).
pub async fn start(db: &Db, user: &User, user_agent: Option<&str>) -> Result<Started, StoreError> {
    let token = format!("iws_{}", random_token(32));
    let now = now_ms();
    let user_agent = user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT).collect::<String>());
    let session = WebSession {
        id: new_id(),
        user_id: user.id,
        csrf_token: random_token(24),
        tenant_id: None,
        user_agent,
        created_at: from_ms(now),
        last_seen_at: from_ms(now),
        expires_at: from_ms(now + IDLE_MS),
    };
    sqlx::query(
        "INSERT INTO web_sessions (id, user_id, token_hash, csrf_token, token_generation, tenant_id, \
         user_agent, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $7, $8)",
    )
    .bind(session.id.to_string())
    .bind(user.id.to_string())
    .bind(token_hash(&token))
    .bind(&session.csrf_token)
    .bind(user.token_generation)
    .bind(&session.user_agent)
    .bind(now)
    .bind(now + IDLE_MS)
    .execute(&mut *db.writer().await?)
    .await?;
    Ok(Started { token, session })
}

/// The live session a cookie's token names, with its user; `None` when the
/// token is unknown, expired or revoked, or the user was disabled, deleted
/// or had every session ended. Use extends the session.
pub async fn authenticate(db: &Db, token: &str) -> Result<Option<(WebSession, User)>, StoreError> {
    let now = now_ms();
    let row: Option<(Row, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, token_generation FROM web_sessions \
         WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2"
    )))
    .bind(token_hash(token))
    .bind(now)
    .fetch_optional(db.pool())
    .await?
    .map(|(a, b, c, d, e, f, g, h, generation)| ((a, b, c, d, e, f, g, h), generation));
    let Some((row, generation)) = row else {
        return Ok(None);
    };
    let mut session = from_row(row)?;
    let Some(user) = users::get(db, session.user_id).await? else {
        return Ok(None);
    };
    if user.disabled_at.is_some() || user.token_generation != generation {
        return Ok(None);
    }
    let seen = crate::db::to_ms(session.last_seen_at);
    if now - seen >= SEEN_EVERY_MS {
        sqlx::query(
            "UPDATE web_sessions SET last_seen_at = $1, expires_at = $2 WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(now + IDLE_MS)
        .bind(session.id.to_string())
        .execute(&mut *db.writer().await?)
        .await?;
        session.last_seen_at = from_ms(now);
        session.expires_at = from_ms(now + IDLE_MS);
    }
    Ok(Some((session, user)))
}

/// Records the tenant the session acts in from now on.
pub async fn choose_tenant(db: &Db, session_id: Uuid, tenant_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE web_sessions SET tenant_id = $1 WHERE id = $2")
        .bind(tenant_id.to_string())
        .bind(session_id.to_string())
        .execute(&mut *db.writer().await?)
        .await?;
    Ok(())
}

/// `user_id`'s live sessions, newest first.
pub async fn list(db: &Db, user_id: Uuid) -> Result<Vec<WebSession>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM web_sessions WHERE user_id = $1 AND revoked_at IS NULL \
         AND expires_at > $2 ORDER BY created_at DESC, id DESC LIMIT 100"
    )))
    .bind(user_id.to_string())
    .bind(now_ms())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(from_row).collect()
}

/// Ends one of `user_id`'s sessions; false when it is not theirs or already
/// ended.
pub async fn revoke(db: &Db, user_id: Uuid, session_id: Uuid) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE web_sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(session_id.to_string())
    .bind(user_id.to_string())
    .execute(&mut *db.writer().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How long an ended session stays listed in the database (for an
/// investigation) before retention deletes it.
const KEEP_ENDED_MS: i64 = 30 * 24 * 3600 * 1000;

/// Deletes sessions that expired or were revoked more than 30 days before
/// `now`; the number deleted.
pub async fn purge_ended(db: &Db, now: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1 OR revoked_at < $1")
        .bind(now - KEEP_ENDED_MS)
        .execute(&mut *db.writer().await?)
        .await?;
    Ok(done.rows_affected())
}
