//! Refresh tokens: stored hashed, rotated on every use, revocable. Tokens
//! descending from one login form a family; presenting a token that was
//! already rotated means it leaked, so the whole family is revoked.

use integro_core::new_id;
use uuid::Uuid;

use crate::credentials::{random_token, token_hash};
use crate::db::now_ms;
use crate::{Db, StoreError, parse_id};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefreshError {
    #[error("the refresh token is unknown or expired")]
    Invalid,
    #[error("the refresh token was already used; every session of this login is revoked")]
    Reused,
}

/// Issues a refresh token for `user_id`, in `family` (a new one when `None`).
pub async fn issue(
    db: &Db,
    user_id: Uuid,
    family: Option<&str>,
    ttl_secs: i64,
) -> Result<String, StoreError> {
    let mut tx = db.begin().await?;
    let token = issue_in(&mut tx, user_id, family, ttl_secs).await?;
    tx.commit().await?;
    Ok(token.0)
}

async fn issue_in(
    tx: &mut crate::Tx<'_>,
    user_id: Uuid,
    family: Option<&str>,
    ttl_secs: i64,
) -> Result<(String, String), StoreError> {
    let token = format!("irt_{}", random_token(32));
    let id = new_id().to_string();
    let family = family.map(String::from).unwrap_or_else(|| id.clone());
    let now = now_ms();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(user_id.to_string())
    .bind(&family)
    .bind(token_hash(&token))
    .bind(now + ttl_secs * 1000)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok((token, id))
}

/// Exchanges a refresh token for a new one; the old one stops working.
/// Returns the user and the new token.
pub async fn rotate(
    db: &Db,
    token: &str,
    ttl_secs: i64,
) -> Result<Result<(Uuid, String), RefreshError>, StoreError> {
    let mut tx = db.begin().await?;
    let row: Option<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT r.id, r.user_id, r.family_id, r.expires_at, r.revoked_at FROM refresh_tokens r \
         JOIN users u ON u.id = r.user_id WHERE r.token_hash = $1 AND u.deleted_at IS NULL \
         AND u.disabled_at IS NULL",
    )
    .bind(token_hash(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, user_id, family, expires_at, revoked_at)) = row else {
        return Ok(Err(RefreshError::Invalid));
    };
    let now = now_ms();
    if revoked_at.is_some() {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&family)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Err(RefreshError::Reused));
    }
    if expires_at <= now {
        return Ok(Err(RefreshError::Invalid));
    }
    let user_id = parse_id(&user_id)?;
    let (new_token, new_id) = issue_in(&mut tx, user_id, Some(&family), ttl_secs).await?;
    // The guard on revoked_at makes two concurrent refreshes with one token
    // yield one winner: the loser updates nothing and is refused.
    let updated = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1, replaced_by = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(new_id)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(Err(RefreshError::Reused));
    }
    tx.commit().await?;
    Ok(Ok((user_id, new_token)))
}

/// Revokes the token's whole family (logout). Unknown tokens are ignored, so
/// logging out twice is harmless.
pub async fn revoke(db: &Db, token: &str) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id = \
         (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
    )
    .bind(now_ms())
    .bind(token_hash(token))
    .execute(&mut *db.writer().await?)
    .await?;
    Ok(result.rows_affected() > 0)
}
