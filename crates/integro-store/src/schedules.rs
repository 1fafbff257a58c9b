//! Periodic work that runs once across all processes sharing a database
//! (retention today; SLA timers and post schedules run on jobs). Each
//! process asks on its own tick; only the one whose conditional UPDATE moves
//! the task's `next_run_at` forward runs it, whichever database it is.

use crate::Db;
use crate::StoreError;
use crate::db::now_ms;

/// Claims this period's run of `name` for `owner`: true when the caller
/// must run it now, false when it is not due or another process took it.
pub async fn claim(db: &Db, name: &str, every_ms: i64, owner: &str) -> Result<bool, StoreError> {
    let now = now_ms();
    let mut conn = db.writer().await?;
    sqlx::query(
        "INSERT INTO schedules (name, next_run_at, runs) VALUES ($1, 0, 0) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?;
    let claimed = sqlx::query(
        "UPDATE schedules SET next_run_at = $2, runs = runs + 1, last_run_by = $3, last_run_at = $4 \
         WHERE name = $1 AND next_run_at <= $4",
    )
    .bind(name)
    .bind(now + every_ms.max(1))
    .bind(owner)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// A task's runs so far and the process that ran it last.
pub async fn runs(db: &Db, name: &str) -> Result<Option<(i64, Option<String>)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT runs, last_run_by FROM schedules WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn a_period_is_claimed_once(db: &Db) {
        assert!(claim(db, "purge", 60_000, "a").await.unwrap());
        assert!(!claim(db, "purge", 60_000, "b").await.unwrap());
        assert!(claim(db, "other", 60_000, "b").await.unwrap());
        assert_eq!(
            runs(db, "purge").await.unwrap(),
            Some((1, Some("a".into())))
        );
        // Once due again, the next caller takes it.
        sqlx::query("UPDATE schedules SET next_run_at = 0")
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        assert!(claim(db, "purge", 60_000, "b").await.unwrap());
        assert_eq!(
            runs(db, "purge").await.unwrap(),
            Some((2, Some("b".into())))
        );
    }

    #[tokio::test]
    async fn a_period_is_claimed_once_on_sqlite() {
        let (_dir, db) = crate::migrations::test_sqlite().await;
        a_period_is_claimed_once(&db).await;
    }

    #[tokio::test]
    async fn a_period_is_claimed_once_on_postgres() {
        let Some(db) = crate::migrations::test_postgres("schedules").await else {
            return;
        };
        a_period_is_claimed_once(&db).await;
        // Many processes asking at once: one wins.
        sqlx::query("UPDATE schedules SET next_run_at = 0")
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        let askers = (0..8).map(|n| {
            let db = db.clone();
            tokio::spawn(
                async move { claim(&db, "purge", 60_000, &format!("p{n}")).await.unwrap() },
            )
        });
        let mut won = 0;
        for asker in askers {
            won += usize::from(asker.await.unwrap());
        }
        assert_eq!(won, 1);
        integro_db::testing::drop_postgres(db).await;
    }
}
