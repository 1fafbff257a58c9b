//! The job loop: lease due jobs, run each in its own task (up to a limit),
//! keep their leases alive while they run, and on shutdown hand back what
//! was not finished.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use integro_store::conversations::{Conversation, Message};
use integro_store::jobs::{self, Job, JobKind, JobState};
use integro_store::{conversations, message_stats, schedules, webhook_logs};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tracing::Instrument;

use crate::outcome::Failure;
use crate::worker::Worker;

impl Worker {
    /// Runs until `shutdown` turns true, then waits for running jobs (up to
    /// the lease) and hands back any still held.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = self.slots.clone();
        let maintenance = tokio::spawn(self.clone().maintain());
        let x_polls = tokio::spawn(self.clone().poll_x());
        let x_metrics = tokio::spawn(self.clone().refresh_x_metrics());
        let listener = tokio::spawn(self.clone().listen_for_jobs());
        tracing::info!(owner = %self.owner, concurrency = self.config.concurrency, "worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = slots.available_permits();
            if free == 0 {
                // Every slot is busy: claim again as soon as one is free.
                tokio::select! {
                    permit = slots.acquire() => drop(permit),
                    changed = shutdown.changed() => if changed.is_err() { break },
                }
                continue;
            }
            let claimed = {
                match jobs::claim(&self.db, &self.owner, free as i64, self.lease_ms()).await {
                    Ok(jobs) => jobs,
                    Err(e) => {
                        tracing::error!(error = %e, "claiming jobs failed");
                        Vec::new()
                    }
                }
            };
            let got = claimed.len();
            if got < free {
                // Every job due was taken: the ingest may lease again.
                self.backlog.store(false, Ordering::SeqCst);
            }
            for job in claimed {
                let permit = slots.clone().acquire_owned().await.expect("semaphore open");
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.execute(job).await;
                    drop(permit);
                });
            }
            if got == 0 || got < free {
                // Nothing more is due now: sleep until woken, due or stopped.
                let idle = self.idle_for().await;
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                    // A dropped sender means nobody can stop us any more: stop now.
                    changed = shutdown.changed() => if changed.is_err() { break },
                }
            }
        }
        maintenance.abort();
        x_polls.abort();
        x_metrics.abort();
        listener.abort();
        // No job is handed to us any more (`take_slots`).
        slots.close();
        let deadline = Instant::now() + self.config.lease;
        while slots.available_permits() < self.config.concurrency && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match jobs::release_all(&self.db, &self.owner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "handed unfinished jobs back to the queue"),
            Err(e) => {
                tracing::error!(error = %e, "releasing jobs failed; their leases will expire")
            }
        }
        tracing::info!(owner = %self.owner, "worker stopped");
    }

    /// Runs a job leased to this worker outside a claim, in a slot from
    /// `take_slots`.
    pub fn run_leased(self: &Arc<Self>, job: Job, slot: OwnedSemaphorePermit) {
        let worker = self.clone();
        tokio::spawn(async move {
            worker.execute(job).await;
            drop(slot);
        });
    }

    async fn execute(self: Arc<Self>, job: Job) {
        self.execute_with(job, None).await
    }

    /// Runs a job; a send leased by the turn that wrote it comes with its
    /// message and conversation, which need not be read again.
    async fn execute_with(self: Arc<Self>, job: Job, known: Option<(Message, Conversation)>) {
        let started = Instant::now();
        let heartbeat = {
            let (db, owner, id, lease) = (
                self.db.clone(),
                self.owner.clone(),
                job.id,
                self.config.lease,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match jobs::heartbeat(&db, id, &owner, lease.as_millis() as i64).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => tracing::warn!(job = %id, error = %e, "lease renewal failed"),
                    }
                }
            })
        };
        let mut next = Vec::new();
        // The job's span continues the trace of what queued it (the webhook,
        // or the reply that wrote this send), whichever process that was.
        let span = tracing::info_span!(
            "job",
            kind = %job.kind,
            job = %job.id,
            attempt = job.attempts,
            request_id = job.payload["request_id"].as_str().unwrap_or_default(),
        );
        integro_core::trace::continue_trace(&span, job.payload["traceparent"].as_str());
        let result = async {
            match job.kind {
                JobKind::Reply => crate::reply::run(&self, &job)
                    .await
                    .map(|sends| next = sends),
                JobKind::Send => crate::send::run(&self, &job, known).await,
                JobKind::Alert => crate::alert::run(&self, &job).await,
                JobKind::PublishPost => crate::publish::run(&self, &job).await,
                JobKind::WorkflowTimer => crate::workflow::run_timer(&self, &job).await,
                JobKind::WorkflowEffects => crate::workflow::run_effects(&self, &job).await,
            }
        }
        .instrument(span)
        .await;
        heartbeat.abort();
        let outcome = match result {
            Ok(()) => "done",
            Err(failure) => self.record_failure(&job, failure).await,
        };
        metrics::histogram!("integro_job_duration_seconds", "kind" => job.kind.as_str(), "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("integro_jobs_total", "kind" => job.kind.as_str(), "outcome" => outcome)
            .increment(1);
        // Jobs this one leased to us (a reply's send) run now, in this slot.
        for leased in next {
            let known = Some((leased.message, leased.conversation));
            Box::pin(self.clone().execute_with(leased.job, known)).await;
        }
    }

    async fn record_failure(&self, job: &Job, failure: Failure) -> &'static str {
        let (error, delay, permanent) = match failure {
            Failure::LeaseLost => {
                tracing::warn!(job = %job.id, "lease lost; another worker has the job");
                return "lease_lost";
            }
            Failure::Postpone { after, note } => {
                let delay = after.as_millis() as i64;
                if let Err(e) = jobs::postpone(&self.db, job.id, &self.owner, delay, note).await {
                    tracing::error!(job = %job.id, error = %e, "postponing failed");
                }
                return "postponed";
            }
            Failure::Retry { error, after } => {
                (error, after.unwrap_or_else(|| backoff(job.attempts)), false)
            }
            Failure::Permanent(error) => (error, Duration::ZERO, true),
        };
        match jobs::fail(
            &self.db,
            job,
            &self.owner,
            &error,
            delay.as_millis() as i64,
            permanent,
        )
        .await
        {
            Ok(JobState::Dead) => {
                tracing::error!(job = %job.id, kind = %job.kind, attempts = job.attempts, error = %error, "job is dead");
                // A permanent failure was recorded on the message by its handler,
                // with the provider's code; retries running out is recorded here.
                if !permanent
                    && job.kind == JobKind::Send
                    && let Some(id) = crate::send::message_id(job)
                    && let Err(e) = conversations::mark_failed(&self.db, id, None, &error).await
                {
                    tracing::error!(job = %job.id, error = %e, "marking the message failed did not work");
                }
                if !permanent && job.kind == JobKind::Send {
                    self.sends_failing(job, &error).await;
                }
                if !permanent && job.kind == JobKind::PublishPost {
                    crate::publish::gave_up(self, job, &error).await;
                }
                "dead"
            }
            Ok(_) => {
                tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, retry_in_ms = delay.as_millis() as u64, error = %error, "job failed; will retry");
                "retry"
            }
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "recording the failure did not work; the lease will expire");
                "error"
            }
        }
    }

    /// A send that ran out of retries means a provider has been failing for
    /// a while: the tenant hears of it (one alert an hour at most).
    async fn sends_failing(&self, job: &Job, error: &str) {
        let Some(tenant_id) = job.tenant_id else {
            return;
        };
        let event = integro_store::events::NewEvent {
            tenant_id,
            bot_id: None,
            conversation_id: None,
            kind: "sends_failing",
            detail: format!(
                "a message could not be sent after {} attempts: {error}",
                job.attempts
            ),
        };
        let result = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    crate::alert::record_note(tx, event, true, None, integro_store::db::now_ms())
                        .await
                })
            })
            .await;
        if let Err(e) = result {
            tracing::error!(job = %job.id, error = %e, "recording failing sends did not work");
        }
    }

    /// How long an idle loop sleeps unless woken. While this process hears
    /// of ready jobs (PostgreSQL), until the next job falls due (a retry's
    /// time, a lease's end), at most `IDLE_POLL_MAX` in case a notification
    /// was lost; otherwise (SQLite, or no listener) the poll interval, since
    /// another process's jobs would go unnoticed.
    async fn idle_for(&self) -> Duration {
        if !self.listening.load(Ordering::SeqCst) {
            return self.config.poll_interval;
        }
        match jobs::next_due(&self.db).await {
            Ok(Some(due)) => {
                let wait = (due - integro_store::db::now_ms()).max(0) as u64;
                Duration::from_millis(wait).clamp(self.config.poll_interval, IDLE_POLL_MAX)
            }
            Ok(None) => IDLE_POLL_MAX,
            Err(_) => self.config.poll_interval,
        }
    }

    /// Keeps a connection listening for jobs made ready by any process
    /// (PostgreSQL; returns at once on SQLite) and wakes the loop for each.
    async fn listen_for_jobs(self: Arc<Self>) {
        loop {
            match integro_store::job_wakeups::listen(&self.db).await {
                Ok(None) => return,
                Ok(Some(mut listener)) => {
                    self.listening.store(true, Ordering::SeqCst);
                    // Whatever was made ready before the listener: look now.
                    self.wake.notify_one();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(_)) => self.wake.notify_one(),
                            // The connection dropped and is reopened on the
                            // next call; what was sent meanwhile is lost.
                            Ok(None) => self.wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "listening for ready jobs failed; polling meanwhile");
                                break;
                            }
                        }
                    }
                    self.listening.store(false, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for ready jobs; polling meanwhile");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Housekeeping: queue metrics, and deleting what has outlived its retention.
    async fn maintain(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if let Ok((counts, oldest)) = jobs::stats(&self.db).await {
                for state in JobState::ALL {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == state.as_str())
                        .map(|c| c.1)
                        .unwrap_or(0);
                    metrics::gauge!("integro_jobs", "state" => state.as_str()).set(n as f64);
                }
                metrics::gauge!("integro_oldest_ready_job_age_seconds")
                    .set(oldest.unwrap_or(0) as f64 / 1000.0);
            }
            // Once across all processes sharing the database.
            match schedules::claim(&self.db, RETENTION_TASK, RETENTION_EVERY_MS, &self.owner).await
            {
                Ok(true) => self.apply_retention().await,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "claiming the retention task failed"),
            }
            match schedules::claim(&self.db, STATS_TASK, STATS_EVERY_MS, &self.owner).await {
                Ok(true) => {
                    let until = integro_store::db::now_ms() - message_stats::LAG_MS;
                    match message_stats::roll_up(&self.db, until).await {
                        Ok(n) => tracing::debug!(rows = n, "usage statistics rolled up"),
                        Err(e) => tracing::warn!(error = %e, "rolling up usage statistics failed"),
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "claiming the statistics task failed"),
            }
        }
    }

    /// Deletes finished jobs, webhook log entries, idle shared rate limits,
    /// ended dashboard sessions past their retention, and OAuth
    /// authorizations that expired unused.
    async fn apply_retention(&self) {
        let now = integro_store::db::now_ms();
        let jobs =
            jobs::purge_finished(&self.db, self.config.job_retention.as_millis() as i64).await;
        let logs = webhook_logs::purge(
            &self.db,
            self.config.webhook_log_retention.as_millis() as i64,
        )
        .await;
        let limits = integro_store::rate_limits::forget_idle(&self.db, now).await;
        let sessions = integro_store::web_sessions::purge_ended(&self.db, now).await;
        let authorizations = integro_store::oauth_states::purge_expired(&self.db, now).await;
        for (what, result) in [
            ("jobs", jobs),
            ("webhook logs", logs),
            ("rate limits", limits),
            ("dashboard sessions", sessions),
            ("expired OAuth authorizations", authorizations),
        ] {
            match result {
                Ok(n) => tracing::debug!(what, deleted = n, "retention applied"),
                Err(e) => tracing::warn!(what, error = %e, "applying retention failed"),
            }
        }
    }
}

/// The longest an idle worker that listens for ready jobs sleeps between
/// looks at the queue (a safety net for a lost notification).
const IDLE_POLL_MAX: Duration = Duration::from_secs(5);

/// The retention task's name in `schedules`, and how often it runs.
pub const RETENTION_TASK: &str = "retention";
const RETENTION_EVERY_MS: i64 = 5 * 60 * 1000;
/// The usage statistics' rollup (`message_stats.rs`) and how often it runs.
pub const STATS_TASK: &str = "usage_statistics";
const STATS_EVERY_MS: i64 = 60 * 1000;

/// Exponential backoff with jitter: about 1 s, 2 s, 4 s, … capped at 5 minutes,
/// each drawn from the upper half of its range so retries spread out.
pub fn backoff(attempt: i64) -> Duration {
    let exp = attempt.clamp(1, 20) as u32 - 1;
    let ceiling = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(exp))
        .min(Duration::from_secs(300));
    let half = ceiling / 2;
    let jitter = half.mul_f64(rand::random::<f64>());
    half + jitter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::AccountCache;
    use crate::egress::Egress;
    use crate::engine::Engine;
    use crate::worker::WorkerConfig;
    use integro_core::breaker::CircuitBreakers;
    use integro_store::Db;
    use integro_store::secrets::Keyring;
    use tokio::sync::Notify;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..30 {
            let d = backoff(attempt);
            let ceiling =
                Duration::from_secs(1 << (attempt - 1).min(9)).min(Duration::from_secs(300));
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }

    fn worker(db: Db) -> Arc<Worker> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let breakers = Arc::new(CircuitBreakers::new(5, Duration::from_secs(30)));
        Arc::new(Worker::new(
            db,
            Arc::new(Keyring::new(
                integro_store::secrets::MasterKey::generate(),
                Vec::new(),
            )),
            Egress {
                client: reqwest::Client::new(),
                urls: integro_channels::ProviderUrls::default(),
                public_url: None,
            },
            Arc::new(Engine::new(integro_ai::AiClient::new(
                integro_ai::RetryPolicy::default(),
                breakers,
            ))),
            AccountCache::new(Duration::from_secs(5)),
            WorkerConfig {
                concurrency: 2,
                ..WorkerConfig::default()
            },
            Arc::new(Notify::new()),
        ))
    }

    /// While reply jobs wait for want of a slot, the ingest gets no slot to
    /// lease its newer jobs in; once a claim finds fewer jobs due than it
    /// has slots (the backlog is drained), it does again.
    #[tokio::test]
    async fn a_backlog_stops_leasing_until_a_claim_drains_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        integro_store::migrations::migrate(&db).await.unwrap();
        let worker = worker(db.clone());
        assert_eq!(worker.take_slots(3).len(), 2, "both slots are free");
        worker.note_backlog();
        assert!(worker.take_slots(1).is_empty());
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(worker.clone().run(stopped));
        // The loop's first claim finds nothing due: the backlog is drained.
        let deadline = Instant::now() + Duration::from_secs(10);
        while worker.take_slots(1).is_empty() {
            assert!(Instant::now() < deadline, "the backlog never cleared");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        worker.wake.notify_one();
        running.await.unwrap();
        db.close().await;
    }
}
