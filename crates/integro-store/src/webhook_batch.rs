//! PostgreSQL: a batch of webhooks stored with one statement. Written as the
//! loop's usual statements (`record_inbound`, `enqueue_leasing`,
//! `record_many` in a transaction), a batch took five round trips (BEGIN,
//! three inserts, COMMIT), each a wake-up of PostgreSQL and of the writer,
//! and the ingest waited on them more than on the disk. Here the messages,
//! their reply jobs and the log entries are one statement of data-modifying
//! `WITH` parts, which is its own transaction: all of it is stored, or none.
//! Which messages went in (not sent before) decides which jobs are stored
//! and each entry's outcome, in the statement itself.
//!
//! The rows travel as one array per column, but for the columns every row of
//! a batch shares, bound once (`insert::column_params`), on the writer's own
//! connection (`BatchWriter`), kept from batch to batch.
//!
//! A batch is first written as if none of its messages had been sent
//! before, without `ON CONFLICT` (ADR 0020): PostgreSQL's conflict check is
//! an index scan of its own before each insert, while a plain insert checks
//! the unique index where it inserts anyway. Retried webhooks are rare; a
//! batch holding one fails on the unique index and is written again with
//! `ON CONFLICT DO NOTHING`, from the same arrays.
//!
//! For batches that lease their jobs or apply status updates, the caller
//! uses the usual statements: those read before they write.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgSeverity};
use sqlx::{ConnectOptions, Connection};

use crate::conversations::{self, Inbound, Ingested};
use crate::db::now_ms;
use crate::insert::{ColumnParam, column_params, rows_sql};
use crate::webhook_logs::{self, NewWebhookLog};
use crate::{Db, StoreError, jobs, parse_id};

/// Stores `inbound` (skipping messages sent before), the reply job of each
/// new one, and `logs`, one entry per webhook; `owners` names each message's
/// webhook (an index into `logs`). Resolves once committed; returns what
/// became of each message.
pub async fn store(
    writer: &BatchWriter,
    inbound: &[Inbound<'_>],
    owners: &[usize],
    logs: Vec<NewWebhookLog>,
) -> Result<Vec<Ingested>, StoreError> {
    let now = now_ms();
    let ids = conversations::first_ids(inbound);
    let mut messages = Vec::with_capacity(inbound.len());
    let mut jobs = Vec::with_capacity(inbound.len());
    // Per webhook: whether it carried messages, and the rows of its own.
    let mut carried = vec![false; logs.len()];
    let mut own: Vec<Vec<String>> = vec![Vec::new(); logs.len()];
    for ((item, id), owner) in inbound.iter().zip(&ids).zip(owners) {
        carried[*owner] = true;
        if let Some(id) = *id {
            messages.push(conversations::inbound_row(item, id, now));
            let job = jobs::new_job(conversations::reply_job(item, id), now, None);
            let mut row = jobs::insert_row(&job, None, now);
            row.push(id.to_string().into());
            jobs.push(row);
            own[*owner].push(id.to_string());
        }
    }
    let logs: Vec<_> = logs
        .into_iter()
        .zip(carried.into_iter().zip(own))
        .map(|(log, (carried, own))| {
            let mut row = webhook_logs::insert_row(log, now);
            row.push(carried.into());
            row.push(own.join(",").into());
            row
        })
        .collect();
    let logs = column_params("webhook_logs", &LOG_COLUMNS, logs, LOG_ONCE)?;
    // A batch without messages (e.g. only webhooks that carried none)
    // stores its log entries alone.
    let messages = match messages.is_empty() {
        true => None,
        false => Some((
            column_params(
                "messages",
                conversations::INBOUND_COLUMNS,
                messages,
                MESSAGE_ONCE,
            )?,
            column_params("jobs", &JOB_COLUMNS, jobs, &JOB_ONCE)?,
        )),
    };
    let mut slot = writer.conn.lock().await;
    let mut kept = slot.is_some();
    let stored = loop {
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => writer.connect().await?,
        };
        let stored = write(writer, &mut conn, messages.as_ref(), &logs).await;
        if !stored.as_ref().is_err_and(ends_the_connection) {
            *slot = Some(conn);
            break stored;
        }
        // A connection kept from an earlier batch may have been closed
        // since (PostgreSQL restarted): once more, on a new one. Had the
        // statement gone in after all, the checked statement finds its
        // messages stored.
        if !kept {
            break stored;
        }
        kept = false;
    }?;
    drop(slot);
    // Stored fewer than the batch's new ids: it held messages sent before.
    let fresh = ids.iter().flatten().count();
    writer
        .recent_duplicates
        .store(stored.len() < fresh, Ordering::Relaxed);
    let inserted = stored
        .iter()
        .map(|id| parse_id(id))
        .collect::<Result<HashSet<_>, _>>()?;
    Ok(conversations::ingested(&ids, &inserted))
}

/// PostgreSQL's connection for webhook batches, kept by the one ingest
/// writer (ADR 0019), and what the last batch showed.
///
/// The writer keeps its connection between batches rather than taking it
/// from a pool for each: sqlx pings a pooled connection when it is given
/// back (in a task of its own) and again when it is taken, two more round
/// trips to PostgreSQL per batch that the next batch waited for (ADR 0023).
#[derive(Clone)]
pub struct BatchWriter {
    options: PgConnectOptions,
    connect_timeout: Duration,
    /// The open connection, if any; taken out while a batch uses it, so
    /// that a batch dropped halfway leaves none behind in an unknown state.
    conn: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    /// Whether the last batch held messages sent before: while retried
    /// webhooks keep coming (a provider catching up, a duplicate storm),
    /// batches go straight to the checked statement instead of failing
    /// first. Only the choice of statement depends on it, never what is
    /// stored.
    recent_duplicates: Arc<AtomicBool>,
}

impl BatchWriter {
    /// The writer for `db`, if it is PostgreSQL; its connection is opened
    /// with the first batch.
    pub fn for_db(db: &Db) -> Option<BatchWriter> {
        Some(BatchWriter {
            options: db.pg_options()?.clone(),
            connect_timeout: db.acquire_timeout(),
            conn: Arc::default(),
            recent_duplicates: Arc::default(),
        })
    }

    async fn connect(&self) -> Result<PgConnection, StoreError> {
        let conn = tokio::time::timeout(self.connect_timeout, self.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        crate::pg_socket::set_nodelay_to_port(self.options.get_port());
        Ok(conn)
    }

    /// Closes the connection, if open.
    pub async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}

/// Whether the statement skips messages sent before, or assumes there are
/// none (and fails on the unique index if there are).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Dedup {
    Assume,
    Check,
}

/// Stores the batch on `conn`: as new messages, or, when some were sent
/// before, checked. Returns the ids of the messages stored.
async fn write(
    writer: &BatchWriter,
    conn: &mut PgConnection,
    messages: Option<&(Vec<ColumnParam>, Vec<ColumnParam>)>,
    logs: &[ColumnParam],
) -> Result<Vec<String>, sqlx::Error> {
    if !writer.recent_duplicates.load(Ordering::Relaxed) {
        match run(conn, messages, logs, Dedup::Assume).await {
            Err(e) if is_unique_violation(&e) => {}
            done => return done,
        }
    }
    run(conn, messages, logs, Dedup::Check).await
}

/// Runs the batch's statement; returns the ids of the messages stored.
async fn run(
    conn: &mut PgConnection,
    messages: Option<&(Vec<ColumnParam>, Vec<ColumnParam>)>,
    logs: &[ColumnParam],
    dedup: Dedup,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = cached_statement(messages, logs, dedup);
    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
    for array in messages
        .into_iter()
        .flat_map(|(m, j)| m.iter().chain(j))
        .chain(logs)
    {
        q = array.bind(q);
    }
    q.fetch_all(conn).await
}

/// Whether `e` leaves the connection unusable: an I/O or protocol error, or
/// one PostgreSQL reported as FATAL (the server ends the session: shut
/// down, terminated by an administrator). A statement's own error (a
/// constraint, a bad value) leaves it ready for the next.
fn ends_the_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(e) => e
            .try_downcast_ref::<PgDatabaseError>()
            .is_none_or(|e| matches!(e.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
        _ => true,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Columns whose value a batch's every row shares, by how the rows are
/// made (the batch's time, a new row's fixed state): each is bound once
/// instead of as an array (`insert::column_params`).
const MESSAGE_ONCE: &[&str] = &[
    "conversation_id",
    "direction",
    "sender",
    "status",
    "reply_to",
    "created_at",
    "updated_at",
];
/// A new reply job's columns but its own (id, tenant, payload, queue): it
/// is ready, not tried yet, due and created now.
static JOB_ONCE: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let own = ["id", "tenant_id", "payload", "queue_key", "queue_hash"];
    let columns = jobs::INSERT_COLUMNS.iter().copied();
    columns.filter(|c| !own.contains(c)).collect()
});
const LOG_ONCE: &[&str] = &["created_at"];

/// A job's row, and the id of the message it replies to.
static JOB_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut columns = jobs::INSERT_COLUMNS.to_vec();
    columns.push("message_id");
    columns
});

/// A log entry's row, whether its webhook carried messages, and the ids of
/// its own, comma-separated.
static LOG_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut columns = webhook_logs::INSERT_COLUMNS.to_vec();
    columns.extend(["has_messages", "message_ids"]);
    columns
});

/// `statement`, written once per shape: some hundred `format!`s and joins
/// per batch were a measurable cost on the one writer's path (ADR 0016).
fn cached_statement(
    messages: Option<&(Vec<ColumnParam>, Vec<ColumnParam>)>,
    logs: &[ColumnParam],
    dedup: Dedup,
) -> Arc<str> {
    type Shape = (Dedup, Vec<&'static str>);
    static TEXTS: LazyLock<Mutex<HashMap<Shape, Arc<str>>>> = LazyLock::new(Mutex::default);
    // The arrays' types, with a marker where the message arrays end.
    let types = messages
        .into_iter()
        .flat_map(|(m, j)| m.iter().chain(j))
        .map(ColumnParam::sql_type)
        .chain(["|"])
        .chain(logs.iter().map(ColumnParam::sql_type))
        .collect();
    let mut texts = TEXTS.lock().expect("statement texts");
    texts
        .entry((dedup, types))
        .or_insert_with(|| statement(messages, logs, dedup).into())
        .clone()
}

/// Column `name`'s value in a statement's rows (`insert::rows_sql`).
fn value_of<'v>(values: &'v [String], columns: &[&str], name: &str) -> &'v String {
    let at = columns.iter().position(|c| *c == name);
    &values[at.expect("a column of the table")]
}

/// The one statement. Its text depends only on the columns' types and
/// which are bound once (`MESSAGE_ONCE`…: the same for every batch), and
/// on `dedup`: it stays prepared. Checking for messages
/// sent before, a job is stored when its message went in, and an entry is a
/// `duplicate` when its webhook carried messages and none of them went in.
fn statement(
    messages: Option<&(Vec<ColumnParam>, Vec<ColumnParam>)>,
    logs: &[ColumnParam],
    dedup: Dedup,
) -> String {
    let log_columns = webhook_logs::INSERT_COLUMNS.join(", ");
    let Some((message_params, job_params)) = messages else {
        let (values, from) = rows_sql(logs, &LOG_COLUMNS, 1);
        let values = values[..webhook_logs::INSERT_COLUMNS.len()].join(", ");
        return format!("INSERT INTO webhook_logs ({log_columns}) SELECT {values} FROM {from}");
    };
    // Parameters are numbered messages', then jobs', then logs'.
    let jobs_first = 1 + message_params.len();
    let logs_first = jobs_first + job_params.len();
    let (message_values, messages_from) =
        rows_sql(message_params, conversations::INBOUND_COLUMNS, 1);
    let (job_values, jobs_from) = rows_sql(job_params, &JOB_COLUMNS, jobs_first);
    let (log_values, logs_from) = rows_sql(logs, &LOG_COLUMNS, logs_first);
    let job_value = |name| value_of(&job_values, &JOB_COLUMNS, name);
    let log_value = |name| value_of(&log_values, &LOG_COLUMNS, name);
    let message_columns = conversations::INBOUND_COLUMNS.join(", ");
    let job_columns = jobs::INSERT_COLUMNS.join(", ");
    let (conflict, job_filter) = match dedup {
        Dedup::Assume => ("", String::new()),
        Dedup::Check => (
            conversations::INBOUND_CONFLICT,
            format!(" WHERE {} IN (SELECT id FROM m)", job_value("message_id")),
        ),
    };
    let log_values = webhook_logs::INSERT_COLUMNS
        .iter()
        .map(|c| match *c {
            "outcome" if dedup == Dedup::Check => format!(
                // The stored ids are gathered once (an InitPlan); compared
                // row by row, each entry's ids were read again per message.
                "CASE WHEN {} AND NOT (string_to_array({}, ',') && ARRAY(SELECT id FROM m)) \
                 THEN 'duplicate' ELSE {} END",
                log_value("has_messages"),
                log_value("message_ids"),
                log_value("outcome"),
            ),
            c => log_value(c).clone(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let message_values = message_values.join(", ");
    let job_values = job_values[..jobs::INSERT_COLUMNS.len()].join(", ");
    format!(
        "WITH m AS (\
             INSERT INTO messages ({message_columns}) SELECT {message_values} \
             FROM {messages_from}{conflict} RETURNING id\
         ), j AS (\
             INSERT INTO jobs ({job_columns}) SELECT {job_values} \
             FROM {jobs_from}{job_filter}\
         ), l AS (\
             INSERT INTO webhook_logs ({log_columns}) SELECT {log_values} FROM {logs_from}\
         ) SELECT id FROM m"
    )
}

#[cfg(test)]
mod tests {
    use integro_core::InboundMessage;

    use super::*;
    use crate::accounts::Account;
    use crate::conversations::fixtures::{account, message};

    /// Stored byte for byte: quotes, backslashes, commas, braces, control
    /// characters and non-ASCII text.
    const BODY: &str = "Body=\"hi\", {a\\b}\n\tNULL \u{1F389} é";

    fn log(path: &str) -> NewWebhookLog {
        NewWebhookLog {
            tenant_id: None,
            account_id: None,
            channel: "twilio".into(),
            method: "POST".into(),
            path: path.into(),
            headers_json: r#"{"content-type":"application/x-www-form-urlencoded"}"#.into(),
            body: Some(BODY.into()),
            status: 200,
            duration_us: 42,
            outcome: "accepted",
            error: None,
            request_id: None,
        }
    }

    /// Stores webhooks named by path, each with its messages' provider ids.
    async fn store_webhooks(
        writer: &BatchWriter,
        account: &Account,
        webhooks: &[(&str, &[&str])],
    ) -> Vec<Ingested> {
        let messages: Vec<InboundMessage> = webhooks
            .iter()
            .flat_map(|(_, ids)| ids.iter().map(|id| message(id)))
            .collect();
        let inbound: Vec<Inbound> = messages
            .iter()
            .map(|m| Inbound {
                account,
                message: m,
                request_id: None,
                traceparent: None,
            })
            .collect();
        let owners: Vec<usize> = webhooks
            .iter()
            .enumerate()
            .flat_map(|(n, (_, ids))| std::iter::repeat_n(n, ids.len()))
            .collect();
        let logs = webhooks.iter().map(|(path, _)| log(path)).collect();
        store(writer, &inbound, &owners, logs).await.unwrap()
    }

    /// The writer keeps its connection between batches; when PostgreSQL
    /// closes it (a restart, an administrator), the next batch is stored
    /// on a new one instead of failing.
    #[tokio::test]
    async fn a_batch_after_the_connection_was_closed_is_stored_on_a_new_one() {
        let Some(db) = crate::migrations::test_postgres("webhook_batch_reconnect").await else {
            return; // The server's tests say how to run PostgreSQL's.
        };
        let account = account();
        let writer = BatchWriter::for_db(&db).unwrap();
        let writer_pid = || async {
            sqlx::query_scalar::<_, Option<i32>>(
                "SELECT max(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND query LIKE 'WITH m AS (INSERT INTO messages %'",
            )
            .fetch_one(db.pool())
            .await
            .unwrap()
        };
        let first = store_webhooks(&writer, &account, &[("/a", &["SM1"])]).await;
        assert!(matches!(first[..], [Ingested::Stored { .. }]));
        let before = writer_pid()
            .await
            .expect("the writer's connection stays open");
        let closed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
            .bind(before)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert!(closed);

        let second = store_webhooks(&writer, &account, &[("/b", &["SM2"])]).await;
        assert!(matches!(second[..], [Ingested::Stored { .. }]));
        let after = writer_pid().await.expect("a new connection");
        assert_ne!(after, before);
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT provider_message_id FROM messages ORDER BY provider_message_id",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(stored, ["SM1", "SM2"]);
        integro_db::testing::drop_postgres(db).await;
    }

    /// New messages are stored with one reply job each; messages sent
    /// before (in an earlier batch or earlier in the same one) are not,
    /// and a webhook whose messages all were is logged as a duplicate.
    #[tokio::test]
    async fn a_batch_stores_new_messages_their_jobs_and_every_log_entry() {
        let Some(db) = crate::migrations::test_postgres("webhook_batch").await else {
            return; // The server's tests say how to run PostgreSQL's.
        };
        let account = account();
        let writer = BatchWriter::for_db(&db).unwrap();
        let recent_duplicates = || writer.recent_duplicates.load(Ordering::Relaxed);
        let first =
            store_webhooks(&writer, &account, &[("/a", &["SM1", "SM2"]), ("/b", &[])]).await;
        assert!(first.iter().all(|o| matches!(o, Ingested::Stored { .. })));
        assert!(!recent_duplicates());
        let second = store_webhooks(
            &writer,
            &account,
            &[
                ("/c", &["SM2", "SM3"]),
                ("/d", &["SM1"]),
                ("/e", &["SM4", "SM4"]),
                ("/f", &["SM4"]),
            ],
        )
        .await;
        let stored: Vec<bool> = second
            .iter()
            .map(|o| matches!(o, Ingested::Stored { .. }))
            .collect();
        assert_eq!(stored, [false, true, false, true, false, false]);
        // Written as new, refused on the unique index, written again checked.
        assert!(recent_duplicates());

        let messages: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, provider_message_id FROM messages ORDER BY provider_message_id",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        let providers: Vec<&str> = messages.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(providers, ["SM1", "SM2", "SM3", "SM4"]);
        let mut replied: Vec<String> = sqlx::query_scalar(
            "SELECT payload::json ->> 'message_id' FROM jobs WHERE kind = 'reply' AND state = 'ready'",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        replied.sort();
        let mut ids: Vec<String> = messages.into_iter().map(|(id, _)| id).collect();
        ids.sort();
        assert_eq!(replied, ids, "one reply job per stored message");
        let logs: Vec<(String, String, String)> =
            sqlx::query_as("SELECT path, outcome, headers_json FROM webhook_logs ORDER BY path")
                .fetch_all(db.pool())
                .await
                .unwrap();
        let outcomes: Vec<(&str, &str)> = logs
            .iter()
            .map(|(p, o, _)| (p.as_str(), o.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("/a", "accepted"),
                ("/b", "accepted"),
                ("/c", "accepted"),
                ("/d", "duplicate"),
                ("/e", "accepted"),
                ("/f", "duplicate"),
            ]
        );
        assert!(logs[0].2.contains("application/x-www-form-urlencoded"));
        let bodies: Vec<Option<String>> = sqlx::query_scalar("SELECT body FROM webhook_logs")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert!(bodies.iter().all(|b| b.as_deref() == Some(BODY)));

        // A batch of webhooks without messages stores its log entries alone.
        let none = store_webhooks(&writer, &account, &[("/g", &[]), ("/h", &[])]).await;
        assert!(none.is_empty());
        let entries: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_logs WHERE path IN ('/g', '/h') AND outcome = 'accepted'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(entries, 2);
        assert!(!recent_duplicates());

        // Retried webhooks: the batch after one goes straight to the
        // checked statement, until a batch holds none.
        let retried =
            store_webhooks(&writer, &account, &[("/i", &["SM3"]), ("/j", &["SM5"])]).await;
        assert!(matches!(
            retried[..],
            [Ingested::Duplicate, Ingested::Stored { .. }]
        ));
        assert!(recent_duplicates());
        let after = store_webhooks(&writer, &account, &[("/k", &["SM6"])]).await;
        assert!(matches!(after[..], [Ingested::Stored { .. }]));
        assert!(!recent_duplicates());
        let counts: (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(DISTINCT provider_message_id) FROM messages), \
             (SELECT COUNT(*) FROM jobs)",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(counts, (6, 6, 6), "SM1 to SM6 once each, one job each");
        let outcomes: Vec<String> = sqlx::query_scalar(
            "SELECT outcome FROM webhook_logs WHERE path IN ('/i', '/j', '/k') ORDER BY path",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(outcomes, ["duplicate", "accepted", "accepted"]);
        integro_db::testing::drop_postgres(db).await;
    }
}
