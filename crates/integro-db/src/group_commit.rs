//! Group commit for the workers' small writes (ADR 0009). On SQLite every
//! commit is a disk flush through the one writer, and a message costs the
//! workers several commits (the claim, filing, the turn, the send's record);
//! committed one by one they capped the loop at the flush rate. So a write
//! unit is queued to a committer that takes whatever units are waiting, runs
//! each in a savepoint of one transaction and commits once: each unit still
//! succeeds or fails on its own, and its caller hears of it only once it is
//! durable. Nothing waits for a batch to fill.
//!
//! The committer runs the batch on a connection of its own, opened on its
//! own thread (ADR 0010): every statement is a call into SQLite there, where
//! through sqlx each was a round trip to sqlx's thread for the connection,
//! and those hand-overs were most of the loop's cost. sqlx's writer
//! connection stays for the API's transactions and the migrations; the
//! committer holds it while it writes, so that the two take turns in order
//! instead of meeting on SQLite's file lock. Whoever else needs it says so
//! (`WriterClaims`), and the committer hands it back at once if idle, or
//! after its batch.
//!
//! On PostgreSQL a unit is its own transaction, or, when asked for, units
//! are group-committed by several committers at once (`pg_group_commit.rs`).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::StoreError;
use crate::checkpoint::Committed;
use crate::sql::{Conn, sqlite_error};

/// Units committed together at most.
const BATCH_MAX: usize = 128;

/// Prepared statements the committer's connection keeps: every statement
/// of the loop's units, whose texts do not vary.
const STATEMENT_CACHE: usize = 128;

/// What a unit does with the transaction it is given. It must write through
/// that transaction only: a read elsewhere does not see the batch.
pub type UnitFn<T> =
    Box<dyn for<'a, 't> FnOnce(&'a mut Conn<'t>) -> BoxFuture<'a, Result<T, StoreError>> + Send>;

/// A unit waiting in the queue, its result type erased.
pub(crate) trait Queued: Send {
    /// Runs the unit; false when it failed (its writes must be undone).
    fn run<'a, 't>(&'a mut self, tx: &'a mut Conn<'t>) -> BoxFuture<'a, bool>;
    /// Tells the caller: the unit's result, once the batch is durable, or
    /// the batch's error.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Unit<T> {
    work: Option<UnitFn<T>>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send + 'static> Queued for Unit<T> {
    fn run<'a, 't>(&'a mut self, tx: &'a mut Conn<'t>) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(work) = self.work.take() else {
                return false;
            };
            // A panicking unit fails alone; the committer goes on.
            let result = match AssertUnwindSafe(work(tx)).catch_unwind().await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Internal("a write unit panicked".into())),
            };
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match (self.result, committed) {
            // A failed unit's own error says more than the batch's.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(StoreError::Internal(format!("the commit failed: {e}"))),
            (None, Ok(())) => Err(StoreError::Internal("the write unit did not run".into())),
        };
        // The caller may have stopped waiting; the unit is committed anyway.
        let _ = self.reply.send(result);
    }
}

/// `work` as a unit to queue, and where its result will be told.
pub(crate) fn queued<T: Send + 'static>(
    work: UnitFn<T>,
) -> (Box<dyn Queued>, oneshot::Receiver<Result<T, StoreError>>) {
    let (reply, answer) = oneshot::channel();
    let unit = Box::new(Unit {
        work: Some(work),
        result: None,
        reply,
    });
    (unit, answer)
}

/// Callers other than the committer that wait for the writer connection.
#[derive(Default)]
pub(crate) struct WriterClaims {
    waiting: AtomicUsize,
    asked: Notify,
}

impl WriterClaims {
    /// Asks the committer for the writer connection until the claim is
    /// dropped (once the caller holds the connection, or gave up).
    pub(crate) fn claim(&self) -> Claim<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.asked.notify_one();
        Claim(self)
    }

    fn wanted(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }
}

pub(crate) struct Claim<'a>(&'a WriterClaims);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The queue in front of SQLite's writer.
pub(crate) struct GroupCommit {
    /// sqlx's writer connection: held by the committer while it writes, so
    /// that the process's writers take turns in order instead of meeting
    /// on SQLite's file lock (ADR 0008).
    writer: AnyPool,
    /// The database file: the committer opens its own connection to it.
    path: PathBuf,
    queue: Mutex<Option<mpsc::UnboundedSender<Box<dyn Queued>>>>,
    /// Told of each commit: the checkpointer follows them.
    committed: Committed,
    pub(crate) claims: Arc<WriterClaims>,
    /// Where the committer runs (`writer_cpu.rs`).
    cpu: Option<usize>,
}

impl GroupCommit {
    pub(crate) fn new(
        writer: AnyPool,
        path: PathBuf,
        committed: Committed,
        cpu: Option<usize>,
    ) -> Arc<GroupCommit> {
        Arc::new(GroupCommit {
            writer,
            path,
            queue: Mutex::new(None),
            committed,
            claims: Arc::default(),
            cpu,
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
            // The committer starts with the first unit (and again, should it
            // have died). It has a thread of its own: it is the one serial
            // path of every worker write, and on the shared runtime each of
            // its wake-ups waited behind HTTP handlers and jobs.
            if let Some(unit) = unsent {
                let (sender, receiver) = mpsc::unbounded_channel();
                let committer = Committer {
                    writer: self.writer.clone(),
                    path: self.path.clone(),
                    committed: self.committed.clone(),
                    claims: self.claims.clone(),
                };
                let cpu = self.cpu;
                std::thread::Builder::new()
                    .name("integro-commit".into())
                    .spawn(move || {
                        crate::writer_cpu::pin_current_thread(cpu);
                        // Time only: no socket is ever polled here, and
                        // without an I/O driver the thread parks on a futex
                        // rather than in epoll behind an eventfd write.
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_time()
                            .build()
                        {
                            Ok(runtime) => runtime.block_on(committer.run(receiver)),
                            Err(e) => tracing::error!(error = %e, "the committer could not start"),
                        }
                    })
                    .map_err(|e| {
                        StoreError::Internal(format!("the committer could not start: {e}"))
                    })?;
                if sender.send(unit).is_err() {
                    return Err(StoreError::Internal("the committer stopped".into()));
                }
                *queue = Some(sender);
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Internal("the committer stopped".into())))
    }
}

struct Committer {
    writer: AnyPool,
    path: PathBuf,
    committed: Committed,
    claims: Arc<WriterClaims>,
}

impl Committer {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Box<dyn Queued>>) {
        let mut batch: Vec<Box<dyn Queued>> = Vec::with_capacity(BATCH_MAX);
        // The committer's own connection, opened on this thread (ADR 0010).
        let mut conn: Option<rusqlite::Connection> = None;
        // sqlx's writer connection, kept between batches while nobody else
        // asks for it: taking it back costs a round trip to its thread.
        let mut held: Option<PoolConnection<Any>> = None;
        loop {
            let first = if held.is_some() {
                tokio::select! {
                    unit = queue.recv() => unit,
                    () = self.claims.asked.notified() => {
                        if self.claims.wanted() {
                            held = None;
                        }
                        continue;
                    }
                }
            } else {
                queue.recv().await
            };
            let Some(first) = first else { break };
            batch.push(first);
            while batch.len() < BATCH_MAX {
                match queue.try_recv() {
                    Ok(unit) => batch.push(unit),
                    Err(_) => break,
                }
            }
            metrics::histogram!("integro_group_commit_units").record(batch.len() as f64);
            let started = std::time::Instant::now();
            let turn = match held.take() {
                Some(turn) => Ok(turn),
                None => self.writer.acquire().await,
            };
            let outcome = match turn {
                Ok(turn) => {
                    let outcome = match self.connection(&mut conn) {
                        Ok(c) => run_batch(c, &mut batch).await,
                        Err(e) => Err(e),
                    };
                    if outcome.is_err() {
                        // Closing it ends whatever it was left inside.
                        conn = None;
                    }
                    if !self.claims.wanted() {
                        held = Some(turn);
                    }
                    outcome
                }
                Err(e) => Err(e.into()),
            }
            .map_err(|e| e.to_string());
            metrics::histogram!("integro_group_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            match &outcome {
                Ok(()) => self.committed.signal(),
                Err(e) => tracing::error!(units = batch.len(), error = %e, "a group commit failed"),
            }
            for unit in batch.drain(..) {
                unit.finish(outcome.clone());
            }
        }
    }

    /// The committer's connection, opened when it has none.
    fn connection<'c>(
        &self,
        conn: &'c mut Option<rusqlite::Connection>,
    ) -> Result<&'c mut rusqlite::Connection, StoreError> {
        if conn.is_none() {
            let opened = crate::db::open_sqlite(&self.path, false)?;
            opened.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            *conn = Some(opened);
        }
        Ok(conn.as_mut().expect("just opened"))
    }
}

/// Runs the batch in one transaction, each unit in a savepoint of its own,
/// so that a failing unit is undone alone (a lone unit needs none: when it
/// fails the transaction is rolled back, and a savepoint would copy every
/// page it changes into its journal). Every statement is a call on this
/// thread: nothing here waits for another.
async fn run_batch(
    conn: &mut rusqlite::Connection,
    batch: &mut [Box<dyn Queued>],
) -> Result<(), StoreError> {
    control(conn, "BEGIN IMMEDIATE")?;
    let outcome = async {
        if let [unit] = batch {
            let ok = unit.run(&mut Conn::Sqlite(conn)).await;
            return control(conn, if ok { "COMMIT" } else { "ROLLBACK" });
        }
        for unit in batch.iter_mut() {
            control(conn, "SAVEPOINT unit")?;
            if unit.run(&mut Conn::Sqlite(conn)).await {
                control(conn, "RELEASE unit")?;
            } else {
                control(conn, "ROLLBACK TO unit")?;
                control(conn, "RELEASE unit")?;
            }
        }
        control(conn, "COMMIT")
    }
    .await;
    if outcome.is_err() && !conn.is_autocommit() {
        let _ = control(conn, "ROLLBACK");
    }
    outcome
}

/// A statement of the batch's own (transaction and savepoints), kept prepared.
fn control(conn: &rusqlite::Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .map(drop)
        .map_err(|e| sqlite_error(e, sql))
}

#[cfg(test)]
mod tests {
    use crate::{Db, StoreError};

    /// A new SQLite database with one table.
    async fn with_table(
        create: &'static str,
        options: crate::db::ConnectOptions,
    ) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect_with(&url, options).await.unwrap();
        sqlx::query(create)
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        (dir, db)
    }

    /// Units queued together share a commit, yet each succeeds or fails on
    /// its own: a failing (or panicking) unit leaves none of its writes.
    #[tokio::test]
    async fn a_failing_unit_is_undone_alone() {
        let (_dir, db) = with_table("CREATE TABLE t (x INTEGER UNIQUE)", Default::default()).await;
        async fn insert(tx: &mut crate::Conn<'_>, x: i64) -> Result<(), StoreError> {
            crate::sql::query("INSERT INTO t (x) VALUES ($1)")
                .bind(x)
                .execute(tx)
                .await?;
            Ok(())
        }
        let mut units = Vec::new();
        for i in 0..20i64 {
            let db = db.clone();
            units.push(tokio::spawn(async move {
                db.write(move |tx| {
                    Box::pin(async move {
                        if i == 0 {
                            // Holds the committer so that the others queue up
                            // and go together in the next batch.
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        insert(tx, 1000 + i).await?;
                        match i {
                            // Taken by units 3 and 5.
                            7 => insert(tx, 1003).await?,
                            19 => insert(tx, 1005).await?,
                            9 => panic!("a bug in a unit"),
                            _ => {}
                        }
                        Ok::<_, StoreError>(i)
                    })
                })
                .await
            }));
            if i == 0 {
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
        assert_eq!(failed, vec![7, 9, 19]);
        let stored: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(db.pool())
            .await
            .unwrap();
        let expected: Vec<i64> = (0..20)
            .filter(|i| ![7, 9, 19].contains(i))
            .map(|i| 1000 + i)
            .collect();
        assert_eq!(stored, expected);
    }

    /// A unit committed alone (no savepoint) that fails leaves none of its
    /// writes, and the committer goes on with the next.
    #[tokio::test]
    async fn a_lone_failing_unit_leaves_nothing() {
        let (_dir, db) = with_table("CREATE TABLE t (x INTEGER UNIQUE)", Default::default()).await;
        let insert_twice = |x: i64, again: i64| {
            db.write(move |tx| {
                Box::pin(async move {
                    for v in [x, again] {
                        crate::sql::query("INSERT INTO t (x) VALUES ($1)")
                            .bind(v)
                            .execute(tx)
                            .await?;
                    }
                    Ok::<_, StoreError>(())
                })
            })
        };
        assert!(insert_twice(1, 1).await.is_err());
        insert_twice(2, 3).await.unwrap();
        let stored: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(stored, vec![2, 3]);
    }

    /// The committer keeps the writer connection between batches, yet an
    /// API transaction or a lone statement gets it while units keep coming
    /// (with a short acquire timeout, a connection never handed back fails
    /// the test instead of hanging it).
    #[tokio::test]
    async fn others_get_the_writer_while_units_keep_coming() {
        let options = crate::db::ConnectOptions {
            acquire_timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        };
        let (_dir, db) = with_table(
            "CREATE TABLE t (x INTEGER PRIMARY KEY, who TEXT NOT NULL)",
            options,
        )
        .await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let units = {
            let (db, stop) = (db.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0i64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    db.write(move |tx| {
                        Box::pin(async move {
                            crate::sql::query("INSERT INTO t (who) VALUES ('unit')")
                                .execute(tx)
                                .await?;
                            Ok::<_, StoreError>(())
                        })
                    })
                    .await
                    .unwrap();
                }
                n
            })
        };
        for _ in 0..20 {
            let mut tx = db.begin().await.unwrap();
            sqlx::query("INSERT INTO t (who) VALUES ('api')")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            sqlx::query("INSERT INTO t (who) VALUES ('statement')")
                .execute(&mut *db.writer().await.unwrap())
                .await
                .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(units.await.unwrap() > 0);
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT who, COUNT(*) FROM t GROUP BY who ORDER BY who")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(counts[0], ("api".to_string(), 20));
        assert_eq!(counts[1], ("statement".to_string(), 20));
        // And it is handed back for good when the database closes.
        db.close().await;
    }
}
