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
//! For batches that lease their jobs or apply status updates, the caller
//! uses the usual statements: those read before they write.

use std::collections::HashSet;
use std::sync::{LazyLock, OnceLock};

use crate::conversations::{self, Inbound, Ingested};
use crate::db::now_ms;
use crate::insert::json_rows;
use crate::sql::{self, Conn};
use crate::webhook_logs::{self, NewWebhookLog};
use crate::{Backend, Db, StoreError, jobs, parse_id};

/// Stores `inbound` (skipping messages sent before), the reply job of each
/// new one, and `logs`, one entry per webhook; `owners` names each message's
/// webhook (an index into `logs`). Resolves once committed; returns what
/// became of each message.
pub async fn store(
    db: &Db,
    inbound: &[Inbound<'_>],
    owners: &[usize],
    logs: Vec<NewWebhookLog>,
) -> Result<Vec<Ingested>, StoreError> {
    if db.backend() != Backend::Postgres {
        return Err(StoreError::Conflict(
            "one-statement webhook batches are for PostgreSQL".into(),
        ));
    }
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
            jobs.push(jobs::insert_row(&job, None, now));
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
    let mut conn = db.writer().await?;
    let stored = sql::query(statement())
        .bind(json_rows(conversations::INBOUND_COLUMNS, &messages))
        .bind(json_rows(jobs::INSERT_COLUMNS, &jobs))
        .bind(json_rows(&LOG_COLUMNS, &logs))
        .scalars::<String>(&mut Conn::Sqlx(&mut conn))
        .await?;
    let inserted = stored
        .iter()
        .map(|id| parse_id(id))
        .collect::<Result<HashSet<_>, _>>()?;
    Ok(conversations::ingested(&ids, &inserted))
}

/// A log entry's JSON: its columns, whether the webhook carried messages,
/// and the ids of its own, comma-separated.
static LOG_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut columns = webhook_logs::INSERT_COLUMNS.to_vec();
    columns.extend(["has_messages", "message_ids"]);
    columns
});

/// The one statement (its text never varies, so it stays prepared). A job
/// is stored when its message went in; an entry is a `duplicate` when its
/// webhook carried messages and none of them went in. The entries are read
/// as `jsonb`: parsed once, where each `->>` on `json` parses the entry
/// again.
fn statement() -> &'static str {
    static STATEMENT: OnceLock<String> = OnceLock::new();
    STATEMENT.get_or_init(|| {
        let messages = conversations::INBOUND_COLUMNS.join(", ");
        let jobs = jobs::INSERT_COLUMNS.join(", ");
        let logs = webhook_logs::INSERT_COLUMNS.join(", ");
        let log_values = webhook_logs::INSERT_COLUMNS
            .iter()
            .map(|c| match *c {
                // The stored ids are gathered once (an InitPlan); compared
                // row by row, each entry's JSON was read again per message.
                "outcome" => "CASE WHEN (e ->> 'has_messages')::boolean \
                     AND NOT (string_to_array(e ->> 'message_ids', ',') && ARRAY(SELECT id FROM m)) \
                     THEN 'duplicate' ELSE r.outcome END"
                    .to_string(),
                c => format!("r.{c}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "WITH m AS (\
                 INSERT INTO messages ({messages}) SELECT {messages} \
                 FROM json_populate_recordset(NULL::messages, $1::json){conflict} RETURNING id\
             ), j AS (\
                 INSERT INTO jobs ({jobs}) SELECT {jobs} \
                 FROM json_populate_recordset(NULL::jobs, $2::json) AS r \
                 WHERE r.payload::json ->> 'message_id' IN (SELECT id FROM m)\
             ), l AS (\
                 INSERT INTO webhook_logs ({logs}) SELECT {log_values} \
                 FROM jsonb_array_elements($3::jsonb) AS e \
                 CROSS JOIN LATERAL jsonb_populate_record(NULL::webhook_logs, e) AS r\
             ) SELECT id FROM m",
            conflict = conversations::INBOUND_CONFLICT,
        )
    })
}

#[cfg(test)]
mod tests {
    use integro_core::InboundMessage;

    use super::*;
    use crate::accounts::Account;
    use crate::conversations::fixtures::{account, message};

    fn log(path: &str) -> NewWebhookLog {
        NewWebhookLog {
            tenant_id: None,
            account_id: None,
            channel: "twilio".into(),
            method: "POST".into(),
            path: path.into(),
            headers: serde_json::json!({ "content-type": "application/x-www-form-urlencoded" }),
            body: Some("Body=hello".into()),
            status: 200,
            duration_us: 42,
            outcome: "accepted",
            error: None,
            request_id: None,
        }
    }

    /// Stores webhooks named by path, each with its messages' provider ids.
    async fn store_webhooks(
        db: &Db,
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
            })
            .collect();
        let owners: Vec<usize> = webhooks
            .iter()
            .enumerate()
            .flat_map(|(n, (_, ids))| std::iter::repeat_n(n, ids.len()))
            .collect();
        let logs = webhooks.iter().map(|(path, _)| log(path)).collect();
        store(db, &inbound, &owners, logs).await.unwrap()
    }

    /// New messages are stored with one reply job each; messages sent
    /// before (in an earlier batch or earlier in the same one) are not,
    /// and a webhook whose messages all were is logged as a duplicate.
    #[tokio::test]
    async fn a_batch_stores_new_messages_their_jobs_and_every_log_entry() {
        let Some(db) = crate::db::test_postgres("webhook_batch").await else {
            return; // The server's tests say how to run PostgreSQL's.
        };
        let account = account();
        let first = store_webhooks(&db, &account, &[("/a", &["SM1", "SM2"]), ("/b", &[])]).await;
        assert!(first.iter().all(|o| matches!(o, Ingested::Stored { .. })));
        let second = store_webhooks(
            &db,
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
        db.drop_test_database().await;
    }
}
