//! Group commit for webhooks. Each webhook must be durable before it is
//! answered, and a durable commit costs a disk flush; so webhooks that arrive
//! together are stored together: a writer takes whatever is queued, stores
//! it all in one transaction, commits once, then answers them all (should the
//! batch fail, each webhook is tried again on its own). Nothing waits for a
//! batch to fill: a lone webhook is committed at once.
//!
//! A batch is one write unit (`Db::write`): on SQLite it shares the commit,
//! and so the flush, of whatever the workers are writing at that moment
//! (ADR 0009), where a transaction of its own took turns with theirs on the
//! one writer connection.
//!
//! A batch leases the reply jobs it enqueues to the process's own worker, as
//! far as it has free slots, and hands them over once durable: their first
//! attempt needs no claim (on SQLite, a write of its own on the one writer).

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use integro_core::InboundEvent;
use integro_store::conversations::{self, Ingested};
use integro_store::jobs::{self, Job, Lease};
use integro_store::webhook_batch::{self, BatchWriter};
use integro_store::webhook_logs::{self, NewWebhookLog};
use integro_store::{Conn, Db, StoreError};
use integro_worker::Worker;
use integro_worker::accounts::KnownAccount;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, oneshot};

/// Items stored in one transaction at most.
const BATCH_MAX: usize = 256;
/// Items waiting at most; past this, webhooks wait for room.
const QUEUE: usize = 4096;

/// A webhook to store, and where its outcome goes.
pub struct Item {
    pub webhook: Webhook,
    pub reply: oneshot::Sender<Result<&'static str, String>>,
}

/// What a webhook stores.
pub struct Webhook {
    pub account: Arc<KnownAccount>,
    pub events: Vec<InboundEvent>,
    /// Filled in with the outcome before it is stored.
    pub log: NewWebhookLog,
    pub request_id: Option<String>,
    /// The webhook request's trace context, for the reply jobs.
    pub traceparent: Option<String>,
}

#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Item>,
    /// This process's worker, once it runs; reply jobs are leased to it.
    worker: Arc<OnceLock<Arc<Worker>>>,
}

impl Ingestor {
    /// Starts the writer. One on either database: on SQLite there is one
    /// writer anyway; on PostgreSQL, two or more writers overlapped their
    /// commits but made the batches smaller, and PostgreSQL spent more per
    /// row than the overlap saved (ADR 0019).
    pub fn start(db: Db, wake: Arc<Notify>) -> Ingestor {
        let (queue, rx) = mpsc::channel(QUEUE);
        let worker = Arc::new(OnceLock::new());
        tokio::spawn(write_batches(db, rx, wake, worker.clone()));
        Ingestor { queue, worker }
    }

    /// Hands the reply jobs of stored webhooks to `worker`, this process's
    /// own, while it has free slots (`jobs::enqueue_leasing`).
    pub fn attach(&self, worker: Arc<Worker>) {
        let _ = self.worker.set(worker);
    }

    /// Stores the item; resolves once it is durable (or failed).
    pub async fn submit(&self, item: Item) -> Result<(), String> {
        self.queue
            .send(item)
            .await
            .map_err(|_| "the ingest writer has stopped".to_string())
    }
}

async fn write_batches(
    db: Db,
    mut rx: mpsc::Receiver<Item>,
    wake: Arc<Notify>,
    worker: Arc<OnceLock<Arc<Worker>>>,
) {
    // PostgreSQL: the connection of the one-statement batches.
    let batch_writer = BatchWriter::for_db(&db);
    loop {
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
        metrics::histogram!("integro_ingest_batch_size").record(batch.len() as f64);
        let (webhooks, replies): (Vec<Webhook>, Vec<_>) = batch
            .into_iter()
            .map(|item| (item.webhook, item.reply))
            .unzip();
        let webhooks = Arc::new(webhooks);
        let n = webhooks.len();
        let mut handoff = Handoff::new(worker.get(), &webhooks);
        let outcomes = match store(
            &db,
            batch_writer.as_ref(),
            webhooks.clone(),
            0..n,
            &mut handoff,
        )
        .await
        {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            // One bad item must not sink the others: store each on its own.
            Err(e) if n > 1 => {
                tracing::warn!(error = %e, items = n, "a batch failed; storing its webhooks one by one");
                let mut outcomes = Vec::with_capacity(n);
                for i in 0..n {
                    let one = store(
                        &db,
                        batch_writer.as_ref(),
                        webhooks.clone(),
                        i..i + 1,
                        &mut handoff,
                    )
                    .await;
                    outcomes.push(one.map(|o| o[0]).map_err(|e| e.to_string()));
                }
                outcomes
            }
            Err(e) => vec![Err(e.to_string())],
        };
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
        // Jobs left ready wait for a claim.
        if handoff.left_ready {
            handoff.note_backlog();
            wake.notify_one();
        }
        handoff.run();
    }
}

/// Reply jobs that a batch leases to this process's worker, in the slots
/// taken for them.
struct Handoff<'w> {
    worker: Option<&'w Arc<Worker>>,
    slots: Vec<OwnedSemaphorePermit>,
    leased: Vec<Job>,
    /// Some stored job was not leased.
    left_ready: bool,
}

impl<'w> Handoff<'w> {
    fn new(worker: Option<&'w Arc<Worker>>, webhooks: &[Webhook]) -> Handoff<'w> {
        let messages = webhooks
            .iter()
            .flat_map(|w| &w.events)
            .filter(|e| matches!(e, InboundEvent::Message(_)))
            .count();
        Handoff {
            slots: worker.map(|w| w.take_slots(messages)).unwrap_or_default(),
            worker,
            leased: Vec::new(),
            left_ready: false,
        }
    }

    /// What the next write may lease.
    fn lease(&self) -> Option<(String, i64, usize)> {
        let w = self.worker?;
        let free = self.slots.len() - self.leased.len();
        Some((w.owner.clone(), w.lease_ms(), free))
    }

    /// Jobs left ready while every slot taken was used were left for want
    /// of a slot: a backlog, which claims drain oldest first
    /// (`Worker::note_backlog`). Jobs left ready beside an unused slot wait
    /// only for their conversation.
    fn note_backlog(&self) {
        if let Some(worker) = self.worker
            && self.left_ready
            && self.leased.len() == self.slots.len()
        {
            worker.note_backlog();
        }
    }

    /// Starts the leased jobs; slots left over are freed.
    fn run(mut self) {
        let Some(worker) = self.worker else { return };
        for (job, slot) in self.leased.drain(..).zip(self.slots.drain(..)) {
            worker.run_leased(job, slot);
        }
    }
}

/// Stores `webhooks[range]` in one write unit, all or nothing; resolves
/// once it is durable.
async fn store(
    db: &Db,
    batch_writer: Option<&BatchWriter>,
    webhooks: Arc<Vec<Webhook>>,
    range: Range<usize>,
    handoff: &mut Handoff<'_>,
) -> Result<Vec<&'static str>, StoreError> {
    let lease = handoff.lease();
    let items = &webhooks[range.clone()];
    // Nothing to read before writing: one statement (`webhook_batch.rs`).
    if let Some(writer) = batch_writer
        && lease.as_ref().is_none_or(|(_, _, slots)| *slots == 0)
        && !items
            .iter()
            .flat_map(|w| &w.events)
            .any(|e| matches!(e, InboundEvent::Status(_)))
    {
        return store_in_one_statement(writer, items, handoff).await;
    }
    let (outcomes, leased, left_ready) = db
        .write(move |tx| {
            Box::pin(async move {
                let lease = lease.as_ref().map(|(owner, lease_ms, slots)| Lease {
                    owner,
                    lease_ms: *lease_ms,
                    slots: *slots,
                });
                store_together(tx, &webhooks[range], lease).await
            })
        })
        .await?;
    handoff.leased.extend(leased);
    handoff.left_ready |= left_ready;
    Ok(outcomes)
}

/// PostgreSQL, for a batch that leases no job and carries no status: its
/// messages, jobs and log entries in one statement (ADR 0016).
async fn store_in_one_statement(
    writer: &BatchWriter,
    items: &[Webhook],
    handoff: &mut Handoff<'_>,
) -> Result<Vec<&'static str>, StoreError> {
    let (inbound, owners) = inbound_of(items);
    let logs = items.iter().map(|item| item.log.clone()).collect();
    let results = webhook_batch::store(writer, &inbound, &owners, logs).await?;
    let (outcomes, stored) = outcomes(items, &owners, &results);
    handoff.left_ready |= stored > 0;
    Ok(outcomes)
}

/// Stores `items` in the caller's transaction: their messages, their reply
/// jobs and their log entries with one statement each. Returns each item's
/// outcome, the jobs leased to `lease.owner`, and whether any job was left
/// ready for a claim.
async fn store_together(
    tx: &mut Conn<'_>,
    items: &[Webhook],
    lease: Option<Lease<'_>>,
) -> Result<(Vec<&'static str>, Vec<Job>, bool), StoreError> {
    for item in items {
        for event in &item.events {
            if let InboundEvent::Status(s) = event {
                conversations::apply_status(tx, item.account.account.id, s).await?;
            }
        }
    }
    let (inbound, owners) = inbound_of(items);
    let mut jobs = Vec::with_capacity(inbound.len());
    let results = conversations::record_inbound(tx, &inbound, &mut jobs).await?;
    let (outcomes, _) = outcomes(items, &owners, &results);
    let logs = items
        .iter()
        .zip(&outcomes)
        .map(|(item, outcome)| NewWebhookLog {
            outcome,
            ..item.log.clone()
        })
        .collect();
    let enqueued = jobs.len();
    let leased = jobs::enqueue_leasing(tx, jobs, lease).await?;
    webhook_logs::record_many(tx, logs).await?;
    let left_ready = leased.len() < enqueued;
    Ok((outcomes, leased, left_ready))
}

/// The messages of `items`, in order, and the index of the item each
/// belongs to.
fn inbound_of(items: &[Webhook]) -> (Vec<conversations::Inbound<'_>>, Vec<usize>) {
    let mut inbound = Vec::new();
    let mut owners = Vec::new();
    for (n, item) in items.iter().enumerate() {
        for event in &item.events {
            if let InboundEvent::Message(m) = event {
                inbound.push(conversations::Inbound {
                    account: &item.account.account,
                    message: m,
                    request_id: item.request_id.as_deref(),
                    traceparent: item.traceparent.as_deref(),
                });
                owners.push(n);
            }
        }
    }
    (inbound, owners)
}

/// Each item's outcome: a webhook whose messages were all sent before is a
/// duplicate. And how many messages were stored.
fn outcomes(
    items: &[Webhook],
    owners: &[usize],
    results: &[Ingested],
) -> (Vec<&'static str>, usize) {
    // Per item: its messages, and those stored.
    let mut counts = vec![(0usize, 0usize); items.len()];
    for (owner, result) in owners.iter().zip(results) {
        counts[*owner].0 += 1;
        if matches!(result, Ingested::Stored { .. }) {
            counts[*owner].1 += 1;
        }
    }
    let outcomes = counts
        .iter()
        .map(|(messages, stored)| {
            if *messages > 0 && *stored == 0 {
                "duplicate"
            } else {
                "accepted"
            }
        })
        .collect();
    (outcomes, counts.iter().map(|(_, stored)| stored).sum())
}
