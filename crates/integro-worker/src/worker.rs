//! The worker's state, shared by the job loop (`runner.rs`) and the job
//! handlers (`reply.rs`, `send.rs`, `alert.rs`): its database and clients,
//! its slots, and how a handler completes a job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use integro_core::breaker::CircuitBreakers;
use integro_store::jobs::{self, Completion, Job};
use integro_store::secrets::Keyring;
use integro_store::{BoxFuture, Conn, Db, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::accounts::AccountCache;
use crate::egress::Egress;
use crate::engine::Engine;
use crate::outcome::Failure;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at the same time by this process.
    pub concurrency: usize,
    /// How long a lease lasts; it is renewed while the job runs.
    pub lease: Duration,
    /// How often to look for due jobs when nothing wakes the worker.
    pub poll_interval: Duration,
    /// Finished jobs are deleted after this long.
    pub job_retention: Duration,
    /// Webhook log entries are deleted after this long.
    pub webhook_log_retention: Duration,
    /// How long a send whose outcome is unknown waits for the provider's
    /// report on it, where one comes (WhatsApp Cloud), before sending again.
    pub status_grace: Duration,
    /// Failures in a row that open a provider's circuit, and how long it stays open.
    pub breaker_threshold: u32,
    pub breaker_cool_down: Duration,
    /// How often X accounts set to `receive=polling` are polled.
    pub x_poll_interval: Duration,
    /// How often published X posts' public metrics are read again.
    pub x_metrics_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            lease: Duration::from_secs(60),
            status_grace: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            job_retention: Duration::from_secs(24 * 3600),
            webhook_log_retention: Duration::from_secs(7 * 24 * 3600),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(30),
            x_poll_interval: Duration::from_secs(60),
            x_metrics_interval: Duration::from_secs(900),
        }
    }
}

/// Shared by every job of one worker process.
pub struct Worker {
    pub db: Db,
    pub keyring: Arc<Keyring>,
    pub egress: Egress,
    /// Decides replies: rules, fallback, LLMs.
    pub engine: Arc<Engine>,
    /// Accounts and their credentials, shared with the webhook handlers.
    pub accounts: Arc<AccountCache>,
    pub breakers: CircuitBreakers,
    pub config: WorkerConfig,
    /// Wakes the loop at once when this process enqueues a job.
    pub wake: Arc<Notify>,
    /// Unique per process, so that a lease names its holder.
    pub owner: String,
    /// One permit per job running at the same time (`config.concurrency`).
    pub(crate) slots: Arc<Semaphore>,
    /// Jobs wait for a claim for want of a slot (`note_backlog`).
    pub(crate) backlog: AtomicBool,
    /// PostgreSQL: this process hears of jobs made ready anywhere
    /// (`job_wakeups`), so an idle loop need not poll often.
    pub(crate) listening: AtomicBool,
}

impl Worker {
    pub fn new(
        db: Db,
        keyring: Arc<Keyring>,
        egress: Egress,
        engine: Arc<Engine>,
        accounts: Arc<AccountCache>,
        config: WorkerConfig,
        wake: Arc<Notify>,
    ) -> Worker {
        Worker {
            slots: Arc::new(Semaphore::new(config.concurrency)),
            breakers: CircuitBreakers::new(config.breaker_threshold, config.breaker_cool_down),
            db,
            keyring,
            egress,
            engine,
            accounts,
            config,
            wake,
            owner: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
            backlog: AtomicBool::new(false),
            listening: AtomicBool::new(false),
        }
    }

    /// Takes up to `n` free slots for jobs leased to this worker outside a
    /// claim (the webhook ingest leases reply jobs as it stores them); none
    /// once the worker is stopping, and none while jobs wait for want of a
    /// slot (`note_backlog`): they are older, and a claim takes them oldest
    /// first.
    pub fn take_slots(&self, n: usize) -> Vec<OwnedSemaphorePermit> {
        if self.backlog.load(Ordering::SeqCst) {
            return Vec::new();
        }
        std::iter::from_fn(|| self.slots.clone().try_acquire_owned().ok())
            .take(n)
            .collect()
    }

    /// Reply jobs were left ready for want of a free slot. Until a claim has
    /// taken every job due, `take_slots` gives none: the ingest would
    /// otherwise hand each slot that frees up to the newest webhook, and the
    /// backlog would drain newest first.
    pub fn note_backlog(&self) {
        self.backlog.store(true, Ordering::SeqCst);
    }

    /// How long a lease lasts, in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        self.config.lease.as_millis() as i64
    }

    /// Completes `job` together with `writes`, in one unit that becomes
    /// durable with the workers' next group commit. A worker whose lease was
    /// taken over writes and finishes nothing.
    pub(crate) async fn complete<T, F>(&self, job: &Job, writes: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: for<'a, 't> FnOnce(&'a mut Conn<'t>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (id, owner) = (job.id, self.owner.clone());
        let (completion, value) = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    let completion = jobs::complete(tx, id, &owner).await?;
                    let value = match completion {
                        Completion::LeaseLost => None,
                        Completion::Done { .. } => Some(writes(tx).await?),
                    };
                    Ok((completion, value))
                })
            })
            .await?;
        self.completed(completion)?;
        value.ok_or(Failure::LeaseLost)
    }

    /// What a job's completion means to this worker: a job queued behind
    /// it can be claimed now, or another worker holds the job.
    pub(crate) fn completed(&self, completion: Completion) -> Result<(), Failure> {
        match completion {
            Completion::LeaseLost => Err(Failure::LeaseLost),
            Completion::Done { next_ready } => {
                if next_ready {
                    self.wake.notify_one();
                }
                Ok(())
            }
        }
    }

    /// Completes `job`, which wrote nothing.
    pub(crate) async fn finish(&self, job: &Job) -> Result<(), Failure> {
        self.complete(job, |_| Box::pin(async { Ok(()) })).await
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "integro".into())
}
