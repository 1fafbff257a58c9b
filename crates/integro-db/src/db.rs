//! The database handle. SQLite and PostgreSQL share one code path through sqlx's
//! `Any` driver: every query is written once with `$1`-style placeholders (which
//! both understand), ids are text and times are Unix milliseconds. What truly
//! differs between the two lives here and nowhere else.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, SqlSafeStr};

use crate::StoreError;
use crate::checkpoint::{self, Committed};
use crate::direct_readers::{DirectReader, DirectReaders};
use crate::group_commit::{GroupCommit, UnitFn};
use crate::pg_group_commit::PgGroupCommit;
use crate::readers::Readers;
use crate::sql::Conn;
use crate::writer_cpu;
use futures_util::future::BoxFuture;

/// A transaction, or a savepoint inside one.
pub type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// A connection lent for reads (`Db::reader`).
pub enum Reader {
    Pool(PoolConnection<Any>),
    Direct(DirectReader),
}

impl Reader {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Reader::Pool(conn) => Conn::Sqlx(conn),
            Reader::Direct(direct) => direct.conn(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config(format!(
                "unsupported database URL `{}`: use sqlite://PATH or postgres://USER@HOST:PORT/DB",
                redact_url(url)
            )))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Hides the password of a database URL before it reaches a log or an error.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL the parser takes: hide everything after the scheme
        // rather than risk showing a password.
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***"),
            None => "***".to_string(),
        },
    }
}

/// A migration compiled into the binary, in both backends' SQL (often the
/// same text).
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigration {
    pub version: i64,
    pub description: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

#[derive(Clone)]
pub struct Db {
    /// Reads. On PostgreSQL sqlx's pool, which also writes.
    pool: Readers,
    /// Writes. On SQLite one connection: SQLite has one writer anyway, and
    /// writers queued here wait their turn in order, where several writer
    /// connections would poll the file lock, sleeping up to 100 ms a try.
    writer: AnyPool,
    backend: Backend,
    /// SQLite: queues the workers' write units into shared commits.
    group_commit: Option<Arc<GroupCommit>>,
    /// PostgreSQL: the same, with several committers at once, when asked for.
    pg_group_commit: Option<Arc<PgGroupCommit>>,
    /// SQLite: the connection that checkpoints the WAL (`checkpoint.rs`).
    checkpointer: Option<AnyPool>,
    /// SQLite: connections for the loop's reads (`direct_readers.rs`).
    direct_readers: Option<Arc<DirectReaders>>,
    /// PostgreSQL: how to open a connection of its own driver, for those
    /// that keep one (the webhook batches' writer, the job listener).
    pg_options: Option<PgConnectOptions>,
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL: write units share commits (`pg_group_commit.rs`); off
    /// (the default: on a machine whose PostgreSQL is bound by CPU it
    /// costs more than it saves, ADR 0009), each is a transaction of its own.
    pub pg_group_commit: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            pg_group_commit: false,
        }
    }
}

impl Db {
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        Db::connect_with(url, ConnectOptions::default()).await
    }

    pub async fn connect_with(url: &str, opts: ConnectOptions) -> Result<Db, StoreError> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            // Create the file on first use.
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let connect = |options: AnyPoolOptions| {
            let url = url.clone();
            async move {
                options
                    .connect(&url)
                    .await
                    .map_err(|e| StoreError::Connect(format!("{}: {e}", redact_url(&url))))
            }
        };
        let options = || {
            AnyPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
        };
        match backend {
            Backend::Postgres => {
                let pg_options = PgConnectOptions::from_str(&url)
                    .map_err(|e| StoreError::Connect(format!("{}: {e}", redact_url(&url))))?;
                let port = pg_options.get_port();
                let pool = connect(options().after_connect(move |_conn, _meta| {
                    Box::pin(async move {
                        crate::pg_socket::set_nodelay_to_port(port);
                        Ok(())
                    })
                }))
                .await?;
                Ok(Db {
                    pg_options: Some(pg_options),
                    pg_group_commit: opts
                        .pg_group_commit
                        .then(|| PgGroupCommit::new(pool.clone())),
                    writer: pool.clone(),
                    pool: Readers::Pool(pool),
                    backend,
                    group_commit: None,
                    checkpointer: None,
                    direct_readers: None,
                })
            }
            Backend::Sqlite => {
                // The writer first: it creates the file and turns WAL on.
                // Opened on the CPU the committer keeps to (`writer_cpu.rs`),
                // and kept open: a connection opened again elsewhere would
                // run on any CPU.
                let cpu = writer_cpu::choose();
                let writer = sqlite_pragmas(options(), false)
                    .max_connections(1)
                    .max_lifetime(None)
                    .idle_timeout(None);
                let writer = writer_cpu::run_pinned(cpu, connect(writer))
                    .await
                    .map_err(|e| StoreError::Connect(e.to_string()))??;
                let pool = Readers::sqlite(
                    connect(sqlite_pragmas(options(), true)).await?,
                    opts.max_connections,
                    opts.acquire_timeout,
                );
                // At a lower CPU priority: its checkpoints take what the
                // committer and the requests leave (ADR 0022).
                let checkpointer = writer_cpu::run_niced(
                    writer_cpu::CHECKPOINTER_NICENESS,
                    // Kept for good: a connection opened again later would
                    // be opened on a runtime thread, at the usual priority.
                    connect(
                        sqlite_pragmas(options(), false)
                            .max_connections(1)
                            .max_lifetime(None)
                            .idle_timeout(None),
                    ),
                )
                .await
                .map_err(|e| StoreError::Connect(e.to_string()))??;
                let path = database_file(&writer).await?;
                let committed = Committed::default();
                let direct_readers = Some(DirectReaders::new(path.clone()));
                let group = GroupCommit::new(writer.clone(), path, committed.clone(), cpu);
                checkpoint::start(checkpointer.clone(), committed, Arc::downgrade(&group));
                Ok(Db {
                    pool,
                    pg_options: None,
                    group_commit: Some(group),
                    pg_group_commit: None,
                    checkpointer: Some(checkpointer),
                    direct_readers,
                    writer,
                    backend,
                })
            }
        }
    }

    /// For reads. On SQLite its connections are read-only.
    pub fn pool(&self) -> &Readers {
        &self.pool
    }

    /// A connection for the message loop's reads, through `sql::query`. On
    /// SQLite one of ours, read on the caller's thread
    /// (`direct_readers.rs`); on PostgreSQL one of the pool's.
    pub async fn reader(&self) -> Result<Reader, StoreError> {
        Ok(match &self.direct_readers {
            Some(direct) => Reader::Direct(direct.lend()?),
            // On PostgreSQL the writer is the pool.
            None => Reader::Pool(self.writer.acquire().await?),
        })
    }

    /// The writer connection, for a statement that writes outside a
    /// transaction. On SQLite it is asked of the committer, which keeps it
    /// between its batches (`group_commit.rs`).
    pub async fn writer(&self) -> Result<PoolConnection<Any>, StoreError> {
        let _claim = self.group_commit.as_ref().map(|g| g.claims.claim());
        Ok(self.writer.acquire().await?)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// PostgreSQL: how to open a connection of its own driver, for a
    /// connection kept apart from the pool (listeners, the webhook batches'
    /// writer).
    pub fn pg_options(&self) -> Option<&PgConnectOptions> {
        self.pg_options.as_ref()
    }

    /// How long a caller waits for a connection.
    pub fn acquire_timeout(&self) -> Duration {
        self.writer.options().get_acquire_timeout()
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of
    /// deadlocking when a read turns into a write.
    pub async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let _claim = self.group_commit.as_ref().map(|g| g.claims.claim());
                self.writer.begin_with("BEGIN IMMEDIATE").await?
            }
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    /// Runs `work` in a transaction and commits it; resolves once it is
    /// durable. Units queued at the same moment share one commit (each in a
    /// savepoint, so each succeeds or fails alone); see `group_commit.rs`
    /// and, on PostgreSQL, `pg_group_commit.rs`. `work` must read and write through the transaction
    /// it is given, and an error from it undoes its writes.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 't> FnOnce(&'a mut Conn<'t>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let work: UnitFn<T> = Box::new(work);
        if let Some(group) = &self.pg_group_commit {
            return group.write(work).await;
        }
        match &self.group_commit {
            Some(group) => group.write(work).await,
            None => {
                let mut tx = self.begin().await?;
                let value = work(&mut Conn::of(&mut tx)).await?;
                tx.commit().await?;
                Ok(value)
            }
        }
    }

    /// Appended to a job-claiming `SELECT`: on PostgreSQL, concurrent workers
    /// skip rows another is claiming instead of waiting; SQLite has a single
    /// writer and needs nothing.
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Applies every migration of `migrations` not applied yet, each in
    /// the SQL of this database's backend.
    pub async fn migrate_with(&self, migrations: &[EmbeddedMigration]) -> Result<(), StoreError> {
        let migrations = migrations
            .iter()
            .map(|m| {
                let sql = match self.backend {
                    Backend::Sqlite => m.sqlite,
                    Backend::Postgres => m.postgres,
                };
                Migration::new(
                    m.version,
                    m.description.into(),
                    MigrationType::Simple,
                    AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// The migration versions applied to this database, successful ones only.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let table: Option<String> = match self.backend {
            Backend::Sqlite => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_optional(&self.pool)
            .await?,
            Backend::Postgres => {
                sqlx::query_scalar("SELECT CAST(to_regclass('_sqlx_migrations') AS TEXT)")
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        if table.is_none() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Reachable, and every version of `expected` applied: what `/readyz`
    /// and `integro doctor` ask.
    pub async fn readiness(&self, expected: &[EmbeddedMigration]) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        let applied = self.applied_migrations().await?;
        let missing: Vec<i64> = expected
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Migrate(format!(
                "migrations not applied: {missing:?}; run `integro migrate`"
            )))
        }
    }

    pub async fn close(&self) {
        // The committer hands the writer back and keeps it no longer.
        let _claim = self.group_commit.as_ref().map(|g| g.claims.claim());
        self.pool.close().await;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.close().await;
        }
        if let Some(direct) = &self.direct_readers {
            direct.close();
        }
        self.writer.close().await;
    }
}

/// A reading connection keeps a small page cache: SQLite empties it
/// whenever another connection has committed since its last read, which
/// under load is before nearly every read, so the default 2 MiB each bought
/// memory (ten connections) and no speed (ADR 0008).
const READER_CACHE_KIB: u32 = 256;

/// WAL lets readers work while the writer commits; synchronous=FULL makes a
/// commit durable before we acknowledge it; the busy timeout makes writers of
/// other processes (the CLI) queue instead of failing. Savepoints (ADR 0009)
/// keep their journals in memory rather than in temporary files: they are
/// only for undoing a unit inside its transaction. Reading connections
/// refuse to write, so a write sent to the wrong connection fails loudly.
/// The others leave checkpoints to the checkpointer (`checkpoint.rs`) but
/// for a backstop. Every SQLite connection gets these, sqlx's
/// (`sqlite_pragmas`) and ours (`open_sqlite`).
fn sqlite_settings(read_only: bool) -> String {
    let role = if read_only {
        format!("PRAGMA query_only = ON; PRAGMA cache_size = -{READER_CACHE_KIB};")
    } else {
        format!(
            "PRAGMA wal_autocheckpoint = {};",
            checkpoint::WRITER_AUTOCHECKPOINT
        )
    };
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY; {role}"
    )
}

/// sqlx's SQLite connections, with `sqlite_settings`.
///
/// A connection is not pinged before each use, as sqlx does by default: a
/// local file does not go stale, and the ping was one more round trip to
/// the connection's thread for every read and every transaction.
fn sqlite_pragmas(options: AnyPoolOptions, read_only: bool) -> AnyPoolOptions {
    options
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute(AssertSqlSafe(sqlite_settings(read_only)))
                    .await?;
                Ok(())
            })
        })
}

/// A connection of ours to the SQLite database at `path` (ADR 0010: the
/// committer's, and the loop's readers), with `sqlite_settings`.
pub(crate) fn open_sqlite(
    path: &std::path::Path,
    read_only: bool,
) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|conn| {
        conn.execute_batch(&sqlite_settings(read_only))?;
        Ok(conn)
    })
    .map_err(|e| StoreError::Connect(format!("{}: {e}", path.display())))
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::from_url(s)
    }
}

/// The `VALUES` list of a multi-row insert: `rows` tuples, each laid out by
/// `row` from its `columns` placeholders. SQLite gets plain `?`: it looks up
/// each named parameter (`$n`) by name, time proportional to the parameter
/// count, for every parameter, which made big batches quadratic.
pub fn values_rows(
    tx: &Conn<'_>,
    rows: usize,
    columns: usize,
    row: impl Fn(&[String]) -> String,
) -> String {
    placeholder_rows(tx.is_sqlite(), rows, columns, row)
}

/// `values_rows` outside a transaction, for the backend named (`sqlite`).
pub fn placeholder_rows(
    sqlite: bool,
    rows: usize,
    columns: usize,
    row: impl Fn(&[String]) -> String,
) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        let params: Vec<String> = (1..=columns)
            .map(|c| {
                if sqlite {
                    "?".to_string()
                } else {
                    format!("${}", r * columns + c)
                }
            })
            .collect();
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row(&params));
    }
    sql
}

/// The file of the SQLite database `writer` writes, for the committer's own
/// connection (ADR 0010): a database in memory would be another database on
/// each connection, so it is refused.
async fn database_file(writer: &AnyPool) -> Result<std::path::PathBuf, StoreError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as("PRAGMA database_list")
        .fetch_all(writer)
        .await?;
    match rows.into_iter().find(|r| r.1 == "main").map(|r| r.2) {
        Some(file) if !file.is_empty() => Ok(file.into()),
        _ => Err(StoreError::Config(
            "an SQLite database in memory is not supported: give it a file (sqlite://PATH)".into(),
        )),
    }
}

/// Current time as stored: Unix milliseconds.
pub fn now_ms() -> i64 {
    to_ms(time::OffsetDateTime::now_utc())
}

/// A date-time as stored: Unix milliseconds.
pub fn to_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A stored time back as a date-time.
pub fn from_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(
            redact_url("postgres://app:p%40ss:word@db/x?sslmode=require"),
            "postgres://app:***@db/x?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app:pw@[oops/x"), "postgres://***");
    }

    #[test]
    fn rejects_unknown_schemes() {
        assert!(Backend::from_url("mysql://x").is_err());
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
    }

    #[tokio::test]
    async fn sqlite_writes_go_through_the_writer_and_readers_refuse_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (x) VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        sqlx::query("INSERT INTO t (x) VALUES (2)")
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO t (x) VALUES (3)")
            .execute(db.pool())
            .await;
        assert!(refused.is_err(), "readers are read-only: {refused:?}");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 2);
    }
}
