//! Idle workers sleep until a job is ready. In one process the ingest and
//! the API wake them directly; across processes on PostgreSQL, a trigger on
//! `jobs` notifies channel `integro_jobs` when a job becomes ready
//! (migration 0013) and each worker process listens. SQLite has no such
//! channel: worker processes of their own poll.

use sqlx::postgres::{PgListener, PgPoolOptions};

use crate::{Db, StoreError};

/// The channel the `jobs` triggers notify.
pub const CHANNEL: &str = "integro_jobs";

/// A connection listening for ready jobs; `None` on SQLite.
pub async fn listen(db: &Db) -> Result<Option<PgListener>, StoreError> {
    let Some(options) = db.pg_options().cloned() else {
        return Ok(None);
    };
    // One connection of its own, reopened by the listener when it drops.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{self, NewJob};
    use crate::sql::Conn;

    #[tokio::test]
    async fn a_ready_job_notifies_and_a_leased_one_does_not() {
        let Some(db) = crate::migrations::test_postgres("wakeups").await else {
            return;
        };
        let mut listener = listen(&db).await.unwrap().unwrap();
        let job = |key: &str| NewJob {
            kind: jobs::JobKind::Reply,
            payload: serde_json::json!({}),
            tenant_id: None,
            queue_key: Some(key.into()),
            max_attempts: 3,
            run_at: None,
        };
        let lease = jobs::Lease {
            owner: "here",
            lease_ms: 60_000,
            slots: 1,
        };
        // Leased to this process's worker: nobody else needs waking.
        let mut tx = db.begin().await.unwrap();
        let leased = jobs::enqueue_leasing(&mut Conn::of(&mut tx), vec![job("a")], Some(lease))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(leased.len(), 1);
        let quiet =
            tokio::time::timeout(std::time::Duration::from_millis(300), listener.recv()).await;
        assert!(quiet.is_err(), "a leased job notified");
        // Ready for anyone: one notification for the transaction.
        let mut tx = db.begin().await.unwrap();
        jobs::enqueue_many(&mut Conn::of(&mut tx), vec![job("b"), job("c")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let note = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification")
            .unwrap();
        assert_eq!(note.channel(), CHANNEL);
        let more =
            tokio::time::timeout(std::time::Duration::from_millis(300), listener.recv()).await;
        assert!(more.is_err(), "one notification per transaction");
        drop(listener);
        integro_db::testing::drop_postgres(db).await;
    }
}
