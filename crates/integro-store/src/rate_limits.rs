//! Rate limits kept in the database, so that every process serving one
//! PostgreSQL database counts against the same allowance (GCRA: one
//! theoretical arrival time per key, moved forward by one conditional
//! upsert). Processes on SQLite keep theirs in memory.

use crate::Db;
use crate::StoreError;

/// Takes one from `key`'s allowance: `burst` at once, then one every
/// `period_ms`. `Err(ms)`: spent, with the wait until the next.
pub async fn take(
    db: &Db,
    key: &str,
    period_ms: i64,
    burst: i64,
    now: i64,
) -> Result<Result<(), i64>, StoreError> {
    let period_ms = period_ms.max(1);
    let horizon = period_ms.saturating_mul(burst.max(1));
    let mut conn = db.writer().await?;
    let taken: Option<i64> = sqlx::query_scalar(
        "INSERT INTO rate_limits AS r (key, tat) VALUES ($1, $2 + $3) \
         ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, $2) + $3 \
         WHERE GREATEST(r.tat, $2) + $3 - $2 <= $4 \
         RETURNING tat",
    )
    .bind(key)
    .bind(now)
    .bind(period_ms)
    .bind(horizon)
    .fetch_optional(&mut *conn)
    .await?;
    if taken.is_some() {
        return Ok(Ok(()));
    }
    let tat: i64 = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE key = $1")
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Err((tat + period_ms - horizon - now).max(1)))
}

/// Forgets keys back to a full allowance.
pub async fn forget_idle(db: &Db, now: i64) -> Result<u64, StoreError> {
    let r = sqlx::query("DELETE FROM rate_limits WHERE tat < $1")
        .bind(now)
        .execute(&mut *db.writer().await?)
        .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn processes_share_one_allowance() {
        let Some(db) = crate::migrations::test_postgres("rate_limits").await else {
            return;
        };
        // Two connections stand for two processes; 3 at once, then one a second.
        let now = 1_000_000;
        for n in 0..3 {
            assert_eq!(take(&db, "k", 1000, 3, now + n).await.unwrap(), Ok(()));
        }
        assert_eq!(take(&db, "k", 1000, 3, now + 3).await.unwrap(), Err(997));
        assert_eq!(take(&db, "other", 1000, 3, now).await.unwrap(), Ok(()));
        assert_eq!(take(&db, "k", 1000, 3, now + 1000).await.unwrap(), Ok(()));
        assert!(take(&db, "k", 1000, 3, now + 1001).await.unwrap().is_err());
        assert_eq!(forget_idle(&db, now + 10_000).await.unwrap(), 2);
        assert_eq!(take(&db, "k", 1000, 3, now + 10_000).await.unwrap(), Ok(()));
        integro_db::testing::drop_postgres(db).await;
    }
}
