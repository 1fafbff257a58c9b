//! Group commit for the workers' write units on PostgreSQL, when
//! `INTEGRO_PG_GROUP_COMMIT` asks for it (ADR 0009; as on SQLite in
//! `group_commit.rs`, where it is always on): a unit is queued to one of a few
//! committers, which takes whatever units are waiting, runs each in a
//! savepoint of one transaction and commits once. Each unit still succeeds
//! or fails on its own, and its caller hears of it once it is durable; a
//! message then costs a share of a commit (a WAL flush) instead of several.
//!
//! Several committers run at once, each on a pooled connection while it
//! has a batch: PostgreSQL commits concurrently, and while one batch waits
//! for its flush the next one forms. A batch has at most `BATCH_MAX`
//! units: each writing savepoint takes a subtransaction id, and past 64 in
//! one transaction PostgreSQL's snapshots overflow to disk lookups for
//! every session.

use std::sync::{Arc, Mutex};

use sqlx::AnyPool;
use tokio::sync::mpsc;

use crate::StoreError;
use crate::group_commit::{Queued, UnitFn, queued};
use crate::sql::Conn;

/// Units committed together at most (see the module's comment).
const BATCH_MAX: usize = 32;
/// Batches in flight at once.
const COMMITTERS: usize = 4;

type Receiver = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Box<dyn Queued>>>>;

pub(crate) struct PgGroupCommit {
    pool: AnyPool,
    queue: Mutex<Option<mpsc::UnboundedSender<Box<dyn Queued>>>>,
}

impl PgGroupCommit {
    pub(crate) fn new(pool: AnyPool) -> Arc<PgGroupCommit> {
        Arc::new(PgGroupCommit {
            pool,
            queue: Mutex::new(None),
        })
    }

    pub(crate) async fn write<T: Send + 'static>(&self, work: UnitFn<T>) -> Result<T, StoreError> {
        let (unit, answer) = queued(work);
        {
            let mut queue = self.queue.lock().expect("group commit queue");
            let unsent = match queue.as_ref() {
                Some(sender) => sender.send(unit).err().map(|back| back.0),
                None => Some(unit),
            };
            // The committers start with the first unit, on the runtime that
            // sent it (and again, should that runtime have stopped).
            if let Some(unit) = unsent {
                let (sender, receiver) = mpsc::unbounded_channel();
                let receiver: Receiver = Arc::new(tokio::sync::Mutex::new(receiver));
                for _ in 0..COMMITTERS {
                    tokio::spawn(run(self.pool.clone(), receiver.clone()));
                }
                if sender.send(unit).is_err() {
                    return Err(StoreError::Internal("the committers stopped".into()));
                }
                *queue = Some(sender);
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Internal("the committers stopped".into())))
    }
}

/// A committer: takes the units waiting (while it holds the queue, the
/// other committers wait for it), runs them as one transaction, tells
/// their callers, and goes back for more.
async fn run(pool: AnyPool, queue: Receiver) {
    let mut batch: Vec<Box<dyn Queued>> = Vec::with_capacity(BATCH_MAX);
    loop {
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                break;
            };
            batch.push(first);
            while batch.len() < BATCH_MAX {
                match queue.try_recv() {
                    Ok(unit) => batch.push(unit),
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!("integro_group_commit_units").record(batch.len() as f64);
        let started = std::time::Instant::now();
        let outcome = run_batch(&pool, &mut batch)
            .await
            .map_err(|e| e.to_string());
        metrics::histogram!("integro_group_commit_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &outcome {
            tracing::error!(units = batch.len(), error = %e, "a group commit failed");
        }
        for unit in batch.drain(..) {
            unit.finish(outcome.clone());
        }
    }
}

/// Runs the batch in one transaction, each unit in a savepoint of its own
/// so that a failing unit is undone alone; a lone unit needs none. An error
/// of the batch's own rolls the transaction back (sqlx does, on drop).
async fn run_batch(pool: &AnyPool, batch: &mut [Box<dyn Queued>]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    if let [unit] = batch {
        if unit.run(&mut Conn::of(&mut tx)).await {
            tx.commit().await?;
        }
        return Ok(());
    }
    for unit in batch.iter_mut() {
        sqlx::query("SAVEPOINT unit").execute(&mut *tx).await?;
        if unit.run(&mut Conn::of(&mut tx)).await {
            sqlx::query("RELEASE SAVEPOINT unit")
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("ROLLBACK TO SAVEPOINT unit")
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Db, StoreError};

    /// Units queued together share a commit, yet each succeeds or fails on
    /// its own on PostgreSQL too: a failing (or panicking) unit leaves none
    /// of its writes. Runs when `INTEGRO_TEST_POSTGRES_URL` names a server.
    #[tokio::test]
    async fn a_failing_unit_is_undone_alone_on_postgres() {
        let Ok(url) = std::env::var("INTEGRO_TEST_POSTGRES_URL") else {
            return;
        };
        let options = crate::db::ConnectOptions {
            pg_group_commit: true,
            ..Default::default()
        };
        let db = Db::connect_with(&url, options).await.unwrap();
        let table = format!("group_commit_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {table} (x BIGINT UNIQUE)"
        )))
        .execute(db.pool())
        .await
        .unwrap();
        let insert = |x: i64| format!("INSERT INTO {table} (x) VALUES ({x})");
        let mut units = Vec::new();
        for i in 0..40i64 {
            let db = db.clone();
            // Units 7 and 9 insert what units 5 and 6 did, queued before
            // them in the same batch.
            let (mine, clash) = (insert(1000 + i), insert(if i == 7 { 1005 } else { 1006 }));
            units.push(tokio::spawn(async move {
                db.write(move |tx| {
                    Box::pin(async move {
                        if i < 4 {
                            // Hold the committers so that the others queue up.
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        crate::sql::query(sqlx::AssertSqlSafe(mine))
                            .execute(tx)
                            .await?;
                        match i {
                            7 | 9 => {
                                crate::sql::query(sqlx::AssertSqlSafe(clash))
                                    .execute(tx)
                                    .await?
                            }
                            13 => panic!("a bug in a unit"),
                            _ => 0,
                        };
                        Ok::<_, StoreError>(i)
                    })
                })
                .await
            }));
            if i == 3 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let mut failed = Vec::new();
        for (i, unit) in units.into_iter().enumerate() {
            match unit.await.unwrap() {
                Ok(v) => assert_eq!(v, i as i64),
                Err(_) => failed.push(i),
            }
        }
        assert_eq!(failed, vec![7, 9, 13]);
        let stored: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT x FROM {table} ORDER BY x"
        )))
        .fetch_all(db.pool())
        .await
        .unwrap();
        let expected: Vec<i64> = (0..40)
            .filter(|i| ![7, 9, 13].contains(i))
            .map(|i| 1000 + i)
            .collect();
        assert_eq!(stored, expected);
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(db.pool())
            .await
            .unwrap();
    }
}
