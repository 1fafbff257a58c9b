//! Group commit for webhooks. Each webhook must be durable before it is
//! answered, and a durable commit costs a disk flush; so webhooks that arrive
//! together are stored together: a writer takes whatever is queued, stores
//! each item under its own savepoint in one transaction, commits once, then
//! answers them all. Nothing waits for a batch to fill: a lone webhook is
//! committed at once.

use std::sync::Arc;

use integro_core::InboundEvent;
use integro_store::accounts::Account;
use integro_store::conversations::{self, Ingested};
use integro_store::webhook_logs::{self, NewWebhookLog};
use integro_store::{Backend, Db, StoreError};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

/// Items stored in one transaction at most.
const BATCH_MAX: usize = 256;
/// Items waiting at most; past this, webhooks wait for room.
const QUEUE: usize = 4096;

pub struct Item {
    pub account: Account,
    pub events: Vec<InboundEvent>,
    /// Filled in with the outcome before it is stored.
    pub log: NewWebhookLog,
    pub request_id: Option<String>,
    pub reply: oneshot::Sender<Result<&'static str, String>>,
}

#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Item>,
}

impl Ingestor {
    /// Starts the writers: one on SQLite (it has one writer anyway), a few on
    /// PostgreSQL, where commits of different connections overlap.
    pub fn start(db: Db, wake: Arc<Notify>) -> Ingestor {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let writers = match db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        for _ in 0..writers {
            tokio::spawn(write_batches(db.clone(), rx.clone(), wake.clone()));
        }
        Ingestor { queue }
    }

    /// Stores the item; resolves once it is durable (or failed).
    pub async fn submit(&self, item: Item) -> Result<(), String> {
        self.queue
            .send(item)
            .await
            .map_err(|_| "the ingest writer has stopped".to_string())
    }
}

async fn write_batches(db: Db, rx: Arc<Mutex<mpsc::Receiver<Item>>>, wake: Arc<Notify>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            batch
        };
        metrics::histogram!("integro_ingest_batch_size").record(batch.len() as f64);
        match store_batch(&db, batch).await {
            Ok(replies) => {
                for (reply, outcome) in replies {
                    let _ = reply.send(outcome);
                }
                wake.notify_one();
            }
            Err((replies, e)) => {
                tracing::error!(error = %e, "committing a batch of webhooks failed");
                for reply in replies {
                    let _ = reply.send(Err(format!("could not store the webhook: {e}")));
                }
            }
        }
    }
}

type Replies = Vec<(
    oneshot::Sender<Result<&'static str, String>>,
    Result<&'static str, String>,
)>;

async fn store_batch(
    db: &Db,
    batch: Vec<Item>,
) -> Result<
    Replies,
    (
        Vec<oneshot::Sender<Result<&'static str, String>>>,
        StoreError,
    ),
> {
    let mut replies = Vec::with_capacity(batch.len());
    let mut senders_on_failure = Vec::new();
    let mut tx = match db.begin().await {
        Ok(tx) => tx,
        Err(e) => return Err((batch.into_iter().map(|i| i.reply).collect(), e)),
    };
    for item in batch {
        let outcome = store_one(&mut tx, &item).await;
        replies.push((item.reply, outcome));
    }
    if let Err(e) = tx.commit().await {
        senders_on_failure.extend(replies.into_iter().map(|(r, _)| r));
        return Err((senders_on_failure, StoreError::from(e)));
    }
    Ok(replies)
}

/// One webhook under its own savepoint: a failure undoes it alone.
async fn store_one(tx: &mut integro_store::Tx<'_>, item: &Item) -> Result<&'static str, String> {
    let mut sp = integro_store::db::savepoint(tx)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let mut stored = 0;
        for event in &item.events {
            match event {
                InboundEvent::Message(m) => {
                    if let Ingested::Stored { .. } =
                        conversations::ingest(&mut sp, &item.account, m, item.request_id.as_deref())
                            .await?
                    {
                        stored += 1;
                    }
                }
                InboundEvent::Status(s) => {
                    conversations::apply_status(&mut sp, item.account.id, s).await?;
                }
            }
        }
        let has_messages = item
            .events
            .iter()
            .any(|e| matches!(e, InboundEvent::Message(_)));
        let outcome = if has_messages && stored == 0 {
            "duplicate"
        } else {
            "accepted"
        };
        let log = NewWebhookLog {
            outcome,
            ..item.log.clone()
        };
        webhook_logs::record_in(&mut sp, log).await?;
        Ok::<_, StoreError>(outcome)
    }
    .await;
    match result {
        Ok(outcome) => {
            sp.commit().await.map_err(|e| e.to_string())?;
            Ok(outcome)
        }
        Err(e) => {
            let _ = sp.rollback().await;
            Err(e.to_string())
        }
    }
}
