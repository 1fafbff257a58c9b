//! WAL checkpoints off the writer's path (SQLite). By default SQLite copies
//! the WAL back into the database file inside the commit that pushes the WAL
//! past 1,000 pages: that commit also writes a few hundred pages and flushes
//! the database file, and every webhook and job waiting on the one writer
//! waits with it, and at ingest saturation checkpoints were a large share
//! of the writer's time (ADR 0008).
//!
//! So the writer checkpoints only as a backstop (`WRITER_AUTOCHECKPOINT`),
//! and this task, on a connection of its own, runs passive checkpoints a
//! moment after commits: they copy what no reader still needs while the
//! writer goes on appending, and never block it. Durability is unchanged:
//! a commit is durable once its WAL frames are flushed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::Notify;

/// The writer's own automatic checkpoint, in WAL pages (SQLite's default is
/// 1,000). Under a steady load the WAL never empties by itself: a passive
/// checkpoint copies the frames committed before it began, and commits
/// go on meanwhile, so the WAL starts over only after a checkpoint that
/// the writer itself runs (inside a commit) at this size.
pub(crate) const WRITER_AUTOCHECKPOINT: u32 = 10_000;

/// WAL pages from which the checkpointer runs back to back (below): early
/// enough that at ingest saturation it has caught up by the time the
/// writer checkpoints (ADR 0015).
const SPRINT_FROM: i64 = WRITER_AUTOCHECKPOINT as i64 / 4;

/// How long after a commit the checkpoint runs, so that one checkpoint
/// covers the commits of that moment.
const PACE: Duration = Duration::from_millis(50);

/// Writes outside the group commit (the API's own transactions) do not
/// signal; they are checkpointed at least this often.
const IDLE: Duration = Duration::from_secs(1);

/// Tells the checkpointer that something was committed.
#[derive(Clone, Default)]
pub(crate) struct Committed(Arc<Notify>);

impl Committed {
    pub(crate) fn signal(&self) {
        self.0.notify_one();
    }
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
            let _ = tokio::time::timeout(IDLE, committed.0.notified()).await;
            if alive.strong_count() == 0 || connection.is_closed() {
                break;
            }
            tokio::time::sleep(PACE).await;
            // Close to the writer's threshold, checkpoints run back to
            // back, so that the writer's own has only the last moment's
            // frames to copy: otherwise the commits that ran it stalled the
            // ingest's tail (ADR 0015).
            // When a run finds nothing new (nothing committed, or a reader
            // still needs the frames), the next waits for a commit; none
            // within PACE ends the sprint.
            let mut last = None;
            loop {
                let started = std::time::Instant::now();
                let outcome: Result<(i64, i64, i64), _> =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(&connection)
                        .await;
                metrics::histogram!("integro_wal_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
                match outcome {
                    Ok((busy, frames, copied)) => {
                        // Busy: the writer is running its own checkpoint
                        // (the counts are -1), after which the WAL starts over.
                        if busy == 0 {
                            metrics::gauge!("integro_wal_frames").set(frames as f64);
                        }
                        if (busy == 0 && frames < SPRINT_FROM) || alive.strong_count() == 0 {
                            break;
                        }
                        if (busy != 0 || last == Some((frames, copied)))
                            && tokio::time::timeout(PACE, committed.0.notified())
                                .await
                                .is_err()
                        {
                            break;
                        }
                        last = Some((frames, copied));
                    }
                    Err(e) => {
                        if !connection.is_closed() {
                            tracing::warn!(error = %e, "a WAL checkpoint failed");
                        }
                        break;
                    }
                }
            }
        }
        connection.close().await;
    });
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{Db, StoreError};

    /// What the workers commit reaches the database file soon after, though
    /// the WAL is far below the writer's own checkpoint threshold.
    #[tokio::test]
    async fn commits_are_checkpointed_off_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        // About 1,000 pages: above SQLite's default threshold, far below ours.
        for batch in 0..50i64 {
            db.write(move |tx| {
                Box::pin(async move {
                    for i in 0..80 {
                        crate::sql::query("INSERT INTO t (x, body) VALUES ($1, $2)")
                            .bind(batch * 100 + i)
                            .bind("x".repeat(200))
                            .execute(tx)
                            .await?;
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .await
            .unwrap();
        }
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
}
