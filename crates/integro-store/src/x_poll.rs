//! Cursors of X accounts that are polled rather than sent webhooks: the
//! newest mention or direct message id taken in, per account and stream.
//! A poll stores what it read and moves the cursor in one write unit, so a
//! restart polls again from where the last commit stopped.

use uuid::Uuid;

use crate::db::now_ms;
use crate::sql::{self, Conn};
use crate::{Db, StoreError};

pub const MENTIONS: &str = "mentions";
pub const DIRECT_MESSAGES: &str = "direct_messages";

/// The stream's cursor, if the account was polled before.
pub async fn cursor(db: &Db, account_id: Uuid, stream: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT last_id FROM x_poll_cursors WHERE account_id = $1 AND stream = $2",
    )
    .bind(account_id.to_string())
    .bind(stream)
    .fetch_optional(db.pool())
    .await?)
}

/// Moves the stream's cursor to `last_id`.
pub async fn advance(
    tx: &mut Conn<'_>,
    account_id: Uuid,
    stream: &str,
    last_id: &str,
) -> Result<(), StoreError> {
    sql::query(
        "INSERT INTO x_poll_cursors (account_id, stream, last_id, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_id, stream) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at",
    )
    .bind(account_id.to_string())
    .bind(stream)
    .bind(last_id)
    .bind(now_ms())
    .execute(tx)
    .await?;
    Ok(())
}
