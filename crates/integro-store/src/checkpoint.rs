//! WAL checkpoints off the writer's path (SQLite). By default SQLite copies
//! the WAL back into the database file inside the commit that pushes the WAL
//! past 1,000 pages: that commit also writes a few hundred pages and flushes
//! the database file, and every webhook and job waiting on the one writer
//! waits with it. Measured at ingest saturation, checkpoints took about a
//! quarter of the writer's time (`bench/README.md`).
//!
//! So the writer checkpoints only as a backstop (`WRITER_AUTOCHECKPOINT`),
//! and this task, on a connection of its own, runs passive checkpoints a
//! moment after commits: they copy what no reader still needs while the
//! writer goes on appending, and never block it. Durability is unchanged:
//! a commit is durable once its WAL frames are flushed.
//!
//! Under steady load that is not enough: a passive checkpoint never catches
//! the end of a WAL that grows while it copies, and SQLite starts the WAL
//! over only once all of it is copied and no reader still reads from it. So
//! the WAL grew to the backstop, and then the writer copied thousands of
//! pages after each commit: the loop stalled for hundreds of milliseconds
//! every few seconds (`bench/README.md`). Now, when this task sees a large
//! WAL, it asks the committer to restart it between two batches
//! (`restart_wal`): only the last few hundred pages remain to copy, the
//! writer is idle, and readers are short, so it takes milliseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{AnyPool, AssertSqlSafe};
use tokio::sync::Notify;

/// The writer's own automatic checkpoint, in WAL pages (SQLite's default is
/// 1,000): reached only should this task fall behind or stop.
pub(crate) const WRITER_AUTOCHECKPOINT: u32 = 10_000;

/// From this WAL size, in pages, the committer is asked to restart the WAL
/// (about 16 MiB with 4 KiB pages).
const RESTART_AT: i64 = 4_000;

/// How long the committer waits for readers to leave the WAL when it
/// restarts it; a long reader makes it give up, to try again later.
const RESTART_PATIENCE_MS: u32 = 20;

/// How long after a commit the checkpoint runs, so that one checkpoint
/// covers the commits of that moment.
const PACE: Duration = Duration::from_millis(50);

/// Writes outside the group commit (the API's own transactions) do not
/// signal; they are checkpointed at least this often.
const IDLE: Duration = Duration::from_secs(1);

/// Between the committer and the checkpointer: the committer tells of each
/// commit; the checkpointer asks for the WAL to be restarted.
#[derive(Clone, Default)]
pub(crate) struct Committed {
    commit: Arc<Notify>,
    restart_wanted: Arc<AtomicBool>,
}

impl Committed {
    pub(crate) fn signal(&self) {
        self.commit.notify_one();
    }

    /// Whether the checkpointer asked for a restart since last asked.
    pub(crate) fn take_restart(&self) -> bool {
        self.restart_wanted.swap(false, Ordering::Relaxed)
    }
}

/// Copies what is left of the WAL and waits briefly for readers to leave
/// it, so that the next commit writes the WAL from its start again. Run by
/// the committer on the writer connection, outside any transaction.
pub(crate) async fn restart_wal(writer: &AnyPool) -> Result<(), sqlx::Error> {
    let mut conn = writer.acquire().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {RESTART_PATIENCE_MS}"
    )))
    .execute(&mut *conn)
    .await?;
    let started = std::time::Instant::now();
    let outcome: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
        .fetch_one(&mut *conn)
        .await;
    metrics::histogram!("integro_wal_restart_seconds").record(started.elapsed().as_secs_f64());
    sqlx::raw_sql("PRAGMA busy_timeout = 10000")
        .execute(&mut *conn)
        .await?;
    let (busy, _, _) = outcome?;
    metrics::counter!("integro_wal_restarts_total", "outcome" => if busy == 0 { "done" } else { "busy" })
        .increment(1);
    Ok(())
}

/// Checkpoints through `connection` until `alive` (the database handle's
/// shared part) is dropped or the connection is closed.
pub(crate) fn start<T: Send + Sync + 'static>(
    connection: AnyPool,
    committed: Committed,
    alive: Weak<T>,
) {
    tokio::spawn(async move {
        loop {
            let _ = tokio::time::timeout(IDLE, committed.commit.notified()).await;
            if alive.strong_count() == 0 || connection.is_closed() {
                break;
            }
            tokio::time::sleep(PACE).await;
            let started = std::time::Instant::now();
            let outcome: Result<(i64, i64, i64), _> =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&connection)
                    .await;
            metrics::histogram!("integro_wal_checkpoint_seconds")
                .record(started.elapsed().as_secs_f64());
            match outcome {
                Ok((_, wal_pages, _)) => {
                    if wal_pages >= RESTART_AT {
                        committed.restart_wanted.store(true, Ordering::Relaxed);
                    }
                }
                Err(_) if connection.is_closed() => break,
                Err(e) => tracing::warn!(error = %e, "a WAL checkpoint failed"),
            }
        }
        connection.close().await;
    });
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{Db, StoreError};

    /// A fresh SQLite database with an empty table `t (x, body)`.
    async fn table_t() -> (tempfile::TempDir, std::path::PathBuf, Db) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(db.writer())
            .await
            .unwrap();
        (dir, path, db)
    }

    /// `units` group-commit units of `rows` rows of `size` bytes each.
    async fn insert_rows(db: &Db, units: i64, rows: i64, size: usize) {
        for unit in 0..units {
            db.write(move |tx| {
                Box::pin(async move {
                    for i in 0..rows {
                        sqlx::query("INSERT INTO t (x, body) VALUES ($1, $2)")
                            .bind(unit * rows + i)
                            .bind("x".repeat(size))
                            .execute(&mut **tx)
                            .await?;
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .await
            .unwrap();
        }
    }

    /// What the workers commit reaches the database file soon after, though
    /// the WAL is far below the writer's own checkpoint threshold.
    #[tokio::test]
    async fn commits_are_checkpointed_off_the_writer() {
        let (dir, path, db) = table_t().await;
        let before = std::fs::metadata(&path).unwrap().len();
        // About 1,000 pages: above SQLite's default threshold, far below ours.
        insert_rows(&db, 50, 80, 200).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let grown = loop {
            let size = std::fs::metadata(&path).unwrap().len();
            if size > before + 200 * 4096 || Instant::now() > deadline {
                break size;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            grown > before + 200 * 4096,
            "the database file stayed at {grown} bytes (from {before}): nothing was checkpointed"
        );
        // Still open: the file grew by checkpoints, not by the last
        // connection's closing one.
        let wal = dir.path().join("t.db-wal");
        assert!(wal.exists(), "the WAL was removed: the database was closed");
        db.close().await;
    }

    /// Under steady writes and reads the WAL is started over again and
    /// again, rather than growing until the writer must copy all of it.
    #[tokio::test]
    async fn the_wal_restarts_under_steady_load() {
        let (_dir, path, db) = table_t().await;
        let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut readers = Vec::new();
        for _ in 0..2 {
            let (db, reading) = (db.clone(), reading.clone());
            readers.push(tokio::spawn(async move {
                while reading.load(std::sync::atomic::Ordering::Relaxed) {
                    let _: Option<i64> = sqlx::query_scalar("SELECT MAX(x) FROM t")
                        .fetch_one(db.pool())
                        .await
                        .unwrap();
                }
            }));
        }
        // About 16,000 pages written, beyond the writer's own threshold
        // (10,000 pages): a WAL that never restarts ends at least that big.
        insert_rows(&db, 160, 100, 3_000).await;
        reading.store(false, std::sync::atomic::Ordering::Relaxed);
        for reader in readers {
            reader.await.unwrap();
        }
        let wal = std::fs::metadata(path.with_extension("db-wal"))
            .unwrap()
            .len();
        assert!(
            wal < 8_000 * 4096,
            "the WAL grew to {} pages: it was never started over",
            wal / 4096
        );
        db.close().await;
    }
}
