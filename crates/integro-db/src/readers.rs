//! The connections that serve reads (`Db::pool`).
//!
//! On SQLite each connection lives on a thread of its own, and every call
//! to it is a round trip to that thread. sqlx's pool pings a connection on
//! its way back (to flush a rollback left by a dropped transaction, or to
//! find a dead server): for a read on SQLite that doubled the round trips
//! and the reading threads' switches (ADR 0012). Reading connections never
//! hold a transaction and a local file does not hang up, so on SQLite they
//! come from this small pool instead, which takes a connection back as it is
//! when its statement finished, and closes it when the statement did not
//! (an error, or a caller that stopped waiting). PostgreSQL keeps sqlx's
//! pool and its pings: there a restarted server must cost no failed request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use either::Either;
use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use sqlx::AnyConnection;
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyPool, Execute, Executor, SqlStr};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Where reads go: sqlx's pool (PostgreSQL), or SQLite's reading connections.
#[derive(Clone, Debug)]
pub enum Readers {
    Pool(AnyPool),
    Sqlite(Arc<SqliteReaders>),
}

#[derive(Debug)]
pub struct SqliteReaders {
    /// Opens connections (with the reading pragmas); they are then detached
    /// from it and kept here.
    opener: AnyPool,
    idle: Mutex<Vec<AnyConnection>>,
    /// One permit per connection open or opening.
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

impl Readers {
    pub(crate) fn sqlite(opener: AnyPool, max: u32, acquire_timeout: Duration) -> Readers {
        Readers::Sqlite(Arc::new(SqliteReaders {
            opener,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1) as usize)),
            acquire_timeout,
        }))
    }

    pub(crate) async fn close(&self) {
        match self {
            Readers::Pool(pool) => pool.close().await,
            Readers::Sqlite(readers) => {
                readers.permits.close();
                let idle = std::mem::take(&mut *readers.idle.lock().expect("readers"));
                for conn in idle {
                    let _ = sqlx::Connection::close(conn).await;
                }
                readers.opener.close().await;
            }
        }
    }
}

/// A reading connection lent for one statement: it goes back to the idle
/// list when its statement has finished (`give_back`); dropped before that
/// (an error, a caller that stopped waiting), it is closed.
struct Lent {
    conn: Option<AnyConnection>,
    readers: Arc<SqliteReaders>,
    _permit: OwnedSemaphorePermit,
}

impl Lent {
    fn conn(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("a lent connection")
    }

    fn give_back(mut self) {
        if let Some(conn) = self.conn.take()
            && !self.readers.permits.is_closed()
        {
            self.readers.idle.lock().expect("readers").push(conn);
        }
    }
}

impl SqliteReaders {
    async fn lend(self: Arc<Self>) -> Result<Lent, sqlx::Error> {
        let permit =
            tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?
                .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().expect("readers").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.opener.acquire().await?.detach(),
        };
        Ok(Lent {
            conn: Some(conn),
            readers: self,
            _permit: permit,
        })
    }
}

impl<'p> Executor<'p> for &'_ Readers {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Readers::Pool(pool) => pool.fetch_many(query),
            Readers::Sqlite(readers) => {
                let readers = readers.clone();
                // Read whole before the connection goes back: the results
                // of a read are small, and the callers collect them anyway.
                let all = async move {
                    let mut lent = readers.lend().await?;
                    let all: Vec<_> = lent.conn().fetch_many(query).try_collect().await?;
                    lent.give_back();
                    Ok::<_, sqlx::Error>(stream::iter(all.into_iter().map(Ok)))
                };
                Box::pin(stream::once(all).try_flatten())
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Readers::Pool(pool) => pool.fetch_optional(query),
            Readers::Sqlite(readers) => {
                let readers = readers.clone();
                Box::pin(async move {
                    let mut lent = readers.lend().await?;
                    let row = lent.conn().fetch_optional(query).await?;
                    lent.give_back();
                    Ok(row)
                })
            }
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        match self {
            Readers::Pool(pool) => pool.prepare_with(sql, parameters),
            Readers::Sqlite(readers) => {
                let readers = readers.clone();
                Box::pin(async move {
                    let mut lent = readers.lend().await?;
                    let statement = lent.conn().prepare_with(sql, parameters).await?;
                    lent.give_back();
                    Ok(statement)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Db;

    /// Reads keep working through errors and abandoned statements: a
    /// connection whose statement failed or was dropped midway is not lent
    /// again, and the pool never lends more connections than it has.
    #[tokio::test]
    async fn readers_survive_errors_and_abandoned_reads() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let options = crate::db::ConnectOptions {
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        };
        let db = Db::connect_with(&url, options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (x) WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) SELECT x FROM n")
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        for _ in 0..5 {
            assert!(
                sqlx::query("SELECT nope FROM t")
                    .fetch_all(db.pool())
                    .await
                    .is_err()
            );
            // A read abandoned by its caller (or not: either way, the next
            // reads must not notice).
            let slow = sqlx::query_scalar::<_, i64>("SELECT x FROM t").fetch_all(db.pool());
            let _ = tokio::time::timeout(std::time::Duration::from_millis(1), slow).await;
        }
        let reads = (0..20).map(|_| {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM t")
                    .fetch_one(db.pool())
                    .await
                    .unwrap()
            }
        });
        let counts = futures_util::future::join_all(reads).await;
        assert!(counts.iter().all(|&n| n == 100_000));
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t WHERE x <= 3 ORDER BY x")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(rows, vec![1, 2, 3]);
        db.close().await;
    }
}
