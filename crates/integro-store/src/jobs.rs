//! The job queue, in the database so that a job is enqueued in the same
//! transaction as the data it concerns. Jobs are leased, not popped: a worker
//! that dies loses its lease and another takes the job. Jobs sharing a
//! `queue_key` (a conversation) run one at a time, oldest first.

use std::collections::{BTreeSet, HashSet};

use integro_core::new_id;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{from_ms, now_ms, to_ms};
use crate::page::{Page, PageRequest};
use crate::sql::{self, Conn};
use crate::{Db, StoreError, parse_id};

/// What a job does; stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Decide the answer to an inbound message.
    Reply,
    /// Deliver an outbound message through its channel.
    Send,
    /// Tell a tenant about a critical error (its alert webhook).
    Alert,
    /// Publish an approved post on X (`posts.rs`).
    PublishPost,
    /// A workflow timer or SLA check came due (`workflow_instances.rs`).
    WorkflowTimer,
    /// Carry out a workflow step's effects outside the database: messages,
    /// webhooks, hand-off, alerts.
    WorkflowEffects,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::Reply,
        JobKind::Send,
        JobKind::Alert,
        JobKind::PublishPost,
        JobKind::WorkflowTimer,
        JobKind::WorkflowEffects,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Reply => "reply",
            JobKind::Send => "send",
            JobKind::Alert => "alert",
            JobKind::PublishPost => "publish_post",
            JobKind::WorkflowTimer => "workflow_timer",
            JobKind::WorkflowEffects => "workflow_effects",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at`.
    Ready,
    /// Leased by a worker until `lease_until`.
    Running,
    Done,
    /// Failed its last attempt, or failed permanently; can be retried by hand.
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Ready,
        JobState::Running,
        JobState::Done,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub kind: JobKind,
    pub payload: Value,
    pub queue_key: Option<String>,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

type Row = (
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);
const COLUMNS: &str = "id, tenant_id, kind, payload, queue_key, state, attempts, max_attempts, run_at, lease_until, \
                       last_error, created_at, updated_at, finished_at";

fn from_row(r: Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: parse_id(&r.0)?,
        tenant_id: r.1.as_deref().map(parse_id).transpose()?,
        kind: JobKind::parse(&r.2)
            .ok_or_else(|| StoreError::Internal(format!("unknown job kind {}", r.2)))?,
        payload: serde_json::from_str(&r.3).unwrap_or(Value::Null),
        queue_key: r.4,
        state: JobState::parse(&r.5)
            .ok_or_else(|| StoreError::Internal(format!("unknown job state {}", r.5)))?,
        attempts: r.6,
        max_attempts: r.7,
        run_at: from_ms(r.8),
        lease_until: r.9.map(from_ms),
        last_error: r.10,
        created_at: from_ms(r.11),
        updated_at: from_ms(r.12),
        finished_at: r.13.map(from_ms),
    })
}

pub struct NewJob {
    pub kind: JobKind,
    pub payload: Value,
    pub tenant_id: Option<Uuid>,
    pub queue_key: Option<String>,
    pub max_attempts: i64,
    /// Unix ms; now when `None`.
    pub run_at: Option<i64>,
}

/// Enqueues jobs inside the caller's transaction, so that a job exists
/// exactly when the data it concerns does; several with one statement
/// (group commits of webhooks).
pub async fn enqueue_many(tx: &mut Conn<'_>, jobs: Vec<NewJob>) -> Result<(), StoreError> {
    enqueue_leasing(tx, jobs, None).await.map(drop)
}

/// Jobs that a batch may lease to this process's own worker as it enqueues
/// them: their first attempt starts without a claim.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub lease_ms: i64,
    /// The worker's free slots: jobs leased at most.
    pub slots: usize,
}

/// `enqueue_many`, leasing up to `lease.slots` of the jobs to `lease.owner`
/// at once: each job whose queue key has no pending job, in the table or
/// earlier in `jobs` (those wait their turn, as with a claim). Returns the
/// leased jobs.
///
/// The check and the insert are two statements. On SQLite nothing comes
/// between them (writes are serialized); on PostgreSQL, where batches commit
/// concurrently, each batch first locks its queues until it commits, so
/// that two cannot both find a queue idle.
pub async fn enqueue_leasing(
    tx: &mut Conn<'_>,
    jobs: Vec<NewJob>,
    lease: Option<Lease<'_>>,
) -> Result<Vec<Job>, StoreError> {
    let now = now_ms();
    let lease = lease.filter(|l| l.slots > 0);
    let hashes: Vec<Option<i64>> = jobs
        .iter()
        .map(|j| j.queue_key.as_deref().map(queue_hash))
        .collect();
    let mut busy = match lease {
        Some(_) => busy_queues(tx, hashes.iter().flatten().copied().collect()).await?,
        None => HashSet::new(),
    };
    let mut leased = 0;
    let mut rows = Vec::with_capacity(jobs.len());
    for (job, hash) in jobs.into_iter().zip(hashes) {
        let lease = lease.filter(|l| leased < l.slots && hash.is_none_or(|h| !busy.contains(&h)));
        if let Some(hash) = hash {
            busy.insert(hash);
        }
        leased += usize::from(lease.is_some());
        rows.push(new_job(job, now, lease.map(|l| l.lease_ms)));
    }
    let owner = lease.map(|l| l.owner);
    let mut insert = crate::insert::insert("jobs", INSERT_COLUMNS, "");
    for job in &rows {
        insert.row(insert_row(job, owner, now));
    }
    insert.execute(tx).await?;
    rows.retain(|j| j.state == JobState::Running);
    Ok(rows)
}

/// The columns a new job is inserted with (`insert_row`).
pub(crate) const INSERT_COLUMNS: &[&str] = &[
    "id",
    "tenant_id",
    "kind",
    "payload",
    "queue_key",
    "queue_hash",
    "state",
    "attempts",
    "max_attempts",
    "run_at",
    "lease_owner",
    "lease_until",
    "created_at",
    "updated_at",
];

/// The job `job` becomes: ready, or running under a lease of `lease_ms`
/// (its first attempt) when it is leased at once.
pub(crate) fn new_job(job: NewJob, now: i64, lease_ms: Option<i64>) -> Job {
    Job {
        id: new_id(),
        tenant_id: job.tenant_id,
        kind: job.kind,
        payload: job.payload,
        queue_key: job.queue_key,
        state: if lease_ms.is_some() {
            JobState::Running
        } else {
            JobState::Ready
        },
        attempts: i64::from(lease_ms.is_some()),
        max_attempts: job.max_attempts.max(1),
        run_at: from_ms(job.run_at.unwrap_or(now)),
        lease_until: lease_ms.map(|ms| from_ms(now + ms)),
        last_error: None,
        created_at: from_ms(now),
        updated_at: from_ms(now),
        finished_at: None,
    }
}

/// `job`'s values for `INSERT_COLUMNS`; a leased job's lease is `owner`'s.
pub(crate) fn insert_row(job: &Job, owner: Option<&str>, now: i64) -> Vec<sql::Value> {
    vec![
        job.id.to_string().into(),
        job.tenant_id.map(|t| t.to_string()).into(),
        job.kind.as_str().into(),
        job.payload.to_string().into(),
        job.queue_key.clone().into(),
        job.queue_key.as_deref().map(queue_hash).into(),
        job.state.as_str().into(),
        job.attempts.into(),
        job.max_attempts.into(),
        to_ms(job.run_at).into(),
        job.lease_until.and(owner).map(String::from).into(),
        job.lease_until.map(to_ms).into(),
        now.into(),
        now.into(),
    ]
}

/// Which of the queues `hashes` (`queue_hash`) have a job pending (ready or
/// running). On PostgreSQL the queues are first locked until the
/// transaction ends.
async fn busy_queues(tx: &mut Conn<'_>, hashes: BTreeSet<i64>) -> Result<HashSet<i64>, StoreError> {
    let mut busy = HashSet::new();
    let hashes: Vec<i64> = hashes.into_iter().collect();
    if hashes.is_empty() {
        return Ok(busy);
    }
    if !tx.is_sqlite() {
        // The hashes travel as one JSON array (ADR 0014: one statement
        // text, kept prepared, whatever their number). Locked in one order
        // (PostgreSQL evaluates a volatile output after the sort), so that
        // batches sharing queues cannot deadlock. Which are busy is asked in
        // a statement of its own, whose snapshot is taken once the locks
        // are held: it sees the jobs of a batch that held them before.
        let hashes = serde_json::to_string(&hashes).expect("integers serialise");
        sql::query(
            "SELECT pg_advisory_xact_lock(h) \
             FROM (SELECT CAST(json_array_elements_text($1::json) AS BIGINT) AS h) v ORDER BY h",
        )
        .bind(hashes.clone())
        .execute(tx)
        .await?;
        let found: Vec<i64> = sql::query(
            "SELECT DISTINCT queue_hash FROM jobs \
             WHERE queue_hash = ANY (ARRAY(SELECT CAST(json_array_elements_text($1::json) AS BIGINT))) \
             AND state IN ('ready', 'running')",
        )
        .bind(hashes)
        .scalars(tx)
        .await?;
        busy.extend(found);
        return Ok(busy);
    }
    // Chunks of a power of two hashes: their statements stay prepared.
    let mut rest = &hashes[..];
    for size in crate::insert::chunk_sizes(true, hashes.len()) {
        let (chunk, after) = rest.split_at(size);
        rest = after;
        let placeholders = crate::db::values_rows(tx, chunk.len(), 1, |p| p[0].clone());
        let sql = format!(
            "SELECT DISTINCT queue_hash FROM jobs WHERE queue_hash IN ({placeholders}) \
             AND state IN ('ready', 'running')"
        );
        let mut q = sql::query(sqlx::AssertSqlSafe(sql));
        for hash in chunk {
            q = q.bind(*hash);
        }
        let found: Vec<i64> = q.scalars(tx).await?;
        busy.extend(found);
    }
    Ok(busy)
}

/// The 8 bytes of a queue key that the live-queue index holds (migration
/// 0008): the first of its SHA-256, stable across versions since they are
/// stored. Whether a queue is busy is asked by hash only: two keys sharing a
/// hash merely take turns.
pub(crate) fn queue_hash(key: &str) -> i64 {
    let digest = Sha256::digest(key.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 8 bytes"))
}

/// Gives the jobs stored before migration 0008 their queue hash: those that
/// can run again (done ones never do; the states are found through
/// `jobs_due`, so that a long history is not read at every start). Runs
/// after the migrations, before any worker claims; finds nothing once done.
pub(crate) async fn hash_queue_keys(db: &Db) -> Result<(), StoreError> {
    loop {
        let mut reader = db.reader().await?;
        let keys: Vec<(String, String)> = sql::query(
            "SELECT id, queue_key FROM jobs WHERE state IN ('ready', 'running', 'dead', 'cancelled') \
             AND queue_hash IS NULL AND queue_key IS NOT NULL LIMIT 500",
        )
        .fetch_all(&mut reader.conn())
        .await?;
        drop(reader);
        if keys.is_empty() {
            return Ok(());
        }
        db.write(move |tx| {
            Box::pin(async move {
                for (id, key) in keys {
                    sql::query("UPDATE jobs SET queue_hash = $1 WHERE id = $2")
                        .bind(queue_hash(&key))
                        .bind(id)
                        .execute(tx)
                        .await?;
                }
                Ok(())
            })
        })
        .await?;
    }
}

/// Enqueues one job inside the caller's transaction and, when no older job
/// of its queue key is pending, leases it to `owner` at once: the caller runs
/// it next, without waiting for a claim (a reply's send, right after the
/// turn). Returns the job when it was leased.
pub async fn enqueue_leased(
    tx: &mut Conn<'_>,
    job: NewJob,
    owner: &str,
    lease_ms: i64,
) -> Result<Option<Job>, StoreError> {
    let now = now_ms();
    let row: Row = sql::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO jobs (id, tenant_id, kind, payload, queue_key, queue_hash, state, attempts, max_attempts, run_at, \
           lease_owner, lease_until, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $10, CASE WHEN busy THEN 'ready' ELSE 'running' END, CASE WHEN busy THEN 0 ELSE 1 END, \
           $6, $7, CASE WHEN busy THEN NULL ELSE $8 END, CASE WHEN busy THEN NULL ELSE $9 END, $7, $7 \
         FROM (SELECT EXISTS (SELECT 1 FROM jobs o WHERE o.queue_hash = $10 AND o.state IN ('ready', 'running')) AS busy) b \
         RETURNING {COLUMNS}"
    )))
    .bind(new_id().to_string())
    .bind(job.tenant_id.map(|t| t.to_string()))
    .bind(job.kind.as_str())
    .bind(job.payload.to_string())
    .bind(job.queue_key.clone())
    .bind(job.max_attempts.max(1))
    .bind(job.run_at.unwrap_or(now))
    .bind(owner.to_string())
    .bind(now + lease_ms)
    .bind(job.queue_key.as_deref().map(queue_hash))
    .fetch_one(tx)
    .await?;
    let job = from_row(row)?;
    Ok((job.state == JobState::Running).then_some(job))
}

/// `last_error` of a job taken again because its worker stopped mid-attempt:
/// that attempt's outcome is unknown.
pub const LEASE_EXPIRED: &str = "the previous attempt did not finish: its worker stopped";

/// Jobs one claim leases at most.
pub const CLAIM_MAX: i64 = 64;

/// Leases up to `limit` (at most `CLAIM_MAX`) due jobs to `owner` for
/// `lease_ms`. A job is due when
/// it is ready and its time has come, or running with an expired lease (its
/// worker died). A job waits while an older job of its queue key is not
/// finished.
pub async fn claim(
    db: &Db,
    owner: &str,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<Job>, StoreError> {
    // Ready jobs and expired leases are found apart, each walking its index
    // in order and stopping at the limit: one query with an OR collected and
    // sorted every due job, which made a backlog slow down its own claims.
    //
    // The limit is written into the statement, not bound: SQLite (3.51)
    // plans an `ORDER BY … LIMIT` with the limit's value, so it compiled a
    // bound one again each time it ran. At most `CLAIM_MAX` of them are
    // kept prepared (ADR 0005).
    let limit = limit.clamp(0, CLAIM_MAX);
    let skip_locked = db.skip_locked();
    let due = |condition: &str, alias: &str| {
        format!(
            "SELECT id FROM (SELECT j.id FROM jobs j WHERE {condition} \
             AND (j.queue_hash IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.queue_hash = j.queue_hash \
                  AND o.state IN ('ready', 'running') AND o.id < j.id)) \
             ORDER BY j.run_at, j.id LIMIT {limit}{skip_locked}) {alias}",
        )
    };
    // Only kinds this version runs: during a rolling upgrade, jobs of a
    // kind only newer workers know wait for them.
    let kinds = JobKind::ALL
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3, \
         last_error = CASE WHEN state = 'running' THEN '{LEASE_EXPIRED}' ELSE last_error END \
         WHERE id IN ({} UNION ALL {} LIMIT {limit}) \
         RETURNING {COLUMNS}",
        due(
            &format!("j.state = 'ready' AND j.run_at <= $3 AND j.kind IN ({kinds})"),
            "ready"
        ),
        due(
            &format!("j.state = 'running' AND j.lease_until < $3 AND j.kind IN ({kinds})"),
            "expired"
        ),
    );
    let owner = owner.to_string();
    let postgres = db.backend() == crate::Backend::Postgres;
    // Claims share the workers' group commits (a claim is a write, and on
    // SQLite a commit of its own per claim was a flush per job).
    let rows: Vec<Row> = db
        .write(move |tx| {
            Box::pin(async move {
                if postgres {
                    // The jobs table changes faster than its statistics: with
                    // a backlog, PostgreSQL misjudged the due jobs as a few
                    // and chose a bitmap scan that collects and sorts all of
                    // them, instead of walking the index in order and
                    // stopping at the limit (ADR 0005).
                    sql::query("SET LOCAL enable_bitmapscan = off")
                        .execute(tx)
                        .await?;
                }
                let now = now_ms();
                sql::query(sqlx::AssertSqlSafe(sql))
                    .bind(owner)
                    .bind(now + lease_ms)
                    .bind(now)
                    .fetch_all(tx)
                    .await
            })
        })
        .await?;
    let mut jobs = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Extends the lease of a job still held by `owner`; false when it was lost.
pub async fn heartbeat(db: &Db, id: Uuid, owner: &str, lease_ms: i64) -> Result<bool, StoreError> {
    let owner = owner.to_string();
    db.write(move |tx| {
        Box::pin(async move {
            let now = now_ms();
            let r = sql::query(
                "UPDATE jobs SET lease_until = $1, updated_at = $2 WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
            )
            .bind(now + lease_ms)
            .bind(now)
            .bind(id.to_string())
            .bind(owner)
            .execute(tx)
            .await?;
            Ok(r == 1)
        })
    })
    .await
}

/// What completing a job found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// `owner` no longer holds the job: another worker has taken it over,
    /// and the caller must not keep what it wrote.
    LeaseLost,
    /// Done. `next_ready`: a job of the same queue key is ready behind it
    /// (it can be claimed now).
    Done { next_ready: bool },
}

/// Marks the job done inside the transaction that records its effects.
pub async fn complete(tx: &mut Conn<'_>, id: Uuid, owner: &str) -> Result<Completion, StoreError> {
    let now = now_ms();
    // The state is named twice: the live-queue index (migrations 0005, 0008) is
    // used only where the query's condition includes the index's.
    let waiting: Option<i64> = sql::query(
        "UPDATE jobs SET state = 'done', lease_until = NULL, finished_at = $1, updated_at = $1, last_error = NULL \
         WHERE id = $2 AND lease_owner = $3 AND state = 'running' \
         RETURNING (SELECT COUNT(*) FROM jobs o WHERE o.queue_hash = jobs.queue_hash \
           AND o.state IN ('ready', 'running') AND o.state = 'ready')",
    )
    .bind(now)
    .bind(id.to_string())
    .bind(owner)
    .scalar_optional(tx)
    .await?;
    Ok(match waiting {
        None => Completion::LeaseLost,
        Some(n) => Completion::Done { next_ready: n > 0 },
    })
}

/// Records a failed attempt: the job runs again after `delay_ms`, or is dead
/// when it has no attempt left (or `permanent`).
pub async fn fail(
    db: &Db,
    job: &Job,
    owner: &str,
    error: &str,
    delay_ms: i64,
    permanent: bool,
) -> Result<JobState, StoreError> {
    let now = now_ms();
    let state = if permanent || job.attempts >= job.max_attempts {
        JobState::Dead
    } else {
        JobState::Ready
    };
    let error: String = error.chars().take(2000).collect();
    let (id, owner) = (job.id, owner.to_string());
    db.write(move |tx| {
        Box::pin(async move {
            sql::query(
                "UPDATE jobs SET state = $1, run_at = $2, lease_until = NULL, lease_owner = NULL, last_error = $3, updated_at = $4, \
                 finished_at = $5 WHERE id = $6 AND lease_owner = $7 AND state = 'running'",
            )
            .bind(state.as_str())
            .bind(now + delay_ms)
            .bind(error)
            .bind(now)
            .bind((state == JobState::Dead).then_some(now))
            .bind(id.to_string())
            .bind(owner)
            .execute(tx)
            .await?;
            Ok(())
        })
    })
    .await?;
    Ok(state)
}

/// Puts a job back without counting the attempt (its circuit was open, or it
/// waits for news of an earlier attempt); `note`, when given, becomes its
/// `last_error`.
pub async fn postpone(
    db: &Db,
    id: Uuid,
    owner: &str,
    delay_ms: i64,
    note: Option<&'static str>,
) -> Result<(), StoreError> {
    let owner = owner.to_string();
    db.write(move |tx| {
        Box::pin(async move {
            let now = now_ms();
            sql::query(
                "UPDATE jobs SET state = 'ready', run_at = $1, lease_until = NULL, lease_owner = NULL, attempts = attempts - 1, \
                 updated_at = $2, last_error = COALESCE($5, last_error) WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
            )
            .bind(now + delay_ms)
            .bind(now)
            .bind(id.to_string())
            .bind(owner)
            .bind(note)
            .execute(tx)
            .await?;
            Ok(())
        })
    })
    .await
}

/// Hands every job `owner` holds back to the queue (graceful shutdown).
pub async fn release_all(db: &Db, owner: &str) -> Result<u64, StoreError> {
    let now = now_ms();
    let r = sqlx::query(
        "UPDATE jobs SET state = 'ready', run_at = $1, lease_until = NULL, lease_owner = NULL, attempts = attempts - 1, \
         updated_at = $1 WHERE lease_owner = $2 AND state = 'running'",
    )
    .bind(now)
    .bind(owner)
    .execute(&mut *db.writer().await?)
    .await?;
    Ok(r.rows_affected())
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<Job>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    state: Option<JobState>,
    page: &PageRequest,
) -> Result<Page<Job>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM jobs WHERE tenant_id = $1 AND id > $2");
    if state.is_some() {
        sql.push_str(" AND state = $4");
    }
    sql.push_str(" ORDER BY id LIMIT $3");
    let mut q = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id.to_string())
        .bind(page.after_text().unwrap_or_default())
        .bind(page.fetch_limit());
    if let Some(s) = state {
        q = q.bind(s.as_str());
    }
    let jobs = q
        .fetch_all(db.pool())
        .await?
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(jobs, page, |j| j.id))
}

/// A dead or cancelled job back to ready with a fresh set of attempts.
pub async fn retry(tx: &mut Conn<'_>, job: &Job) -> Result<bool, StoreError> {
    let now = now_ms();
    let r = sql::query(
        "UPDATE jobs SET state = 'ready', attempts = 0, run_at = $1, finished_at = NULL, updated_at = $1 \
         WHERE id = $2 AND state IN ('dead', 'cancelled')",
    )
    .bind(now)
    .bind(job.id.to_string())
    .execute(tx)
    .await?;
    Ok(r == 1)
}

/// Cancels a job that has not run (ready) or gave up (dead).
pub async fn cancel(tx: &mut Conn<'_>, job: &Job) -> Result<bool, StoreError> {
    let now = now_ms();
    let r = sql::query(
        "UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1 WHERE id = $2 AND state IN ('ready', 'dead')",
    )
    .bind(now)
    .bind(job.id.to_string())
    .execute(tx)
    .await?;
    Ok(r == 1)
}

/// Jobs per state and the age of the oldest due job, for `/metrics`.
pub async fn stats(db: &Db) -> Result<(Vec<(String, i64)>, Option<i64>), StoreError> {
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            .fetch_all(db.pool())
            .await?;
    let oldest: Option<i64> =
        sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE state = 'ready'")
            .fetch_one(db.pool())
            .await?;
    let now = now_ms();
    Ok((counts, oldest.map(|t| (now - t).max(0))))
}

/// When the next job falls due: the earliest ready job's `run_at` or
/// running job's lease end (ms), if any. Idle workers sleep until then.
pub async fn next_due(db: &Db) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(t) FROM (SELECT MIN(run_at) AS t FROM jobs WHERE state = 'ready' \
         UNION ALL SELECT MIN(lease_until) AS t FROM jobs WHERE state = 'running') due",
    )
    .fetch_one(db.pool())
    .await?)
}

/// Deletes finished jobs older than `older_than_ms`; returns how many.
pub async fn purge_finished(db: &Db, older_than_ms: i64) -> Result<u64, StoreError> {
    let r =
        sqlx::query("DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND finished_at < $1")
            .bind(now_ms() - older_than_ms)
            .execute(&mut *db.writer().await?)
            .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str) -> NewJob {
        NewJob {
            kind: JobKind::Reply,
            payload: serde_json::json!({ "key": key }),
            tenant_id: None,
            queue_key: Some(key.to_string()),
            max_attempts: 3,
            run_at: None,
        }
    }

    use crate::migrations::test_sqlite as sqlite;

    fn keys(jobs: &[Job]) -> Vec<String> {
        let mut keys: Vec<String> = jobs.iter().filter_map(|j| j.queue_key.clone()).collect();
        keys.sort();
        keys
    }

    /// A job of a kind this version does not know (written by a newer one
    /// during a rolling upgrade) is left for the workers that know it, and
    /// the others are claimed as usual.
    #[tokio::test]
    async fn jobs_of_unknown_kinds_are_left_alone() {
        let (_dir, db) = crate::migrations::test_sqlite().await;
        let mut tx = db.begin().await.unwrap();
        enqueue_many(&mut Conn::of(&mut tx), vec![job("a"), job("b")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        sqlx::query("UPDATE jobs SET kind = 'workflow_step' WHERE queue_key = 'a'")
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        let claimed = claim(&db, "w", 10, 60_000).await.unwrap();
        assert_eq!(keys(&claimed), ["b"]);
        assert_eq!(claimed[0].kind, JobKind::Reply);
    }

    /// A batch leases a job only when its conversation has nothing pending,
    /// in the table or earlier in the batch, and no more than the worker's
    /// free slots; the rest wait for a claim, in order.
    #[tokio::test]
    async fn a_batch_leases_only_jobs_whose_queue_is_idle() {
        let (_dir, db) = sqlite().await;
        let mut tx = db.begin().await.unwrap();
        enqueue_many(&mut Conn::of(&mut tx), vec![job("c")])
            .await
            .unwrap();
        let lease = Lease {
            owner: "local",
            lease_ms: 60_000,
            slots: 2,
        };
        let batch = vec![job("a"), job("a"), job("c"), job("b"), job("d")];
        let leased = enqueue_leasing(&mut Conn::of(&mut tx), batch, Some(lease))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        assert_eq!(
            keys(&leased),
            ["a", "b"],
            "the first of a, then b; d finds no slot"
        );
        for j in &leased {
            assert_eq!((j.state, j.attempts), (JobState::Running, 1));
            let stored: (String, Option<String>, i64) =
                sqlx::query_as("SELECT state, lease_owner, attempts FROM jobs WHERE id = $1")
                    .bind(j.id.to_string())
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
            assert_eq!(stored, ("running".into(), Some("local".into()), 1));
        }
        // The second a waits for the first, the second c for the first c.
        let claimed = claim(&db, "other", 10, 60_000).await.unwrap();
        assert_eq!(keys(&claimed), ["c", "d"]);
    }

    /// On PostgreSQL batches commit concurrently: of two batches with a job
    /// for the same idle queue, one leases it and the other waits for it (it
    /// blocks on the first batch's lock of the key, then finds it busy).
    #[tokio::test]
    async fn concurrent_batches_on_postgres_lease_one_job_a_queue() {
        let Some(db) = crate::migrations::test_postgres("jobs").await else {
            return; // The server's tests say how to run PostgreSQL's.
        };
        let lease = Lease {
            owner: "local",
            lease_ms: 60_000,
            slots: 4,
        };
        let mut first = db.begin().await.unwrap();
        let leased = enqueue_leasing(&mut Conn::of(&mut first), vec![job("k")], Some(lease))
            .await
            .unwrap();
        assert_eq!(leased.len(), 1);
        let second = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                let leased = enqueue_leasing(
                    &mut Conn::of(&mut tx),
                    vec![job("k"), job("other")],
                    Some(lease),
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                leased
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        first.commit().await.unwrap();
        let leased = second.await.unwrap();
        assert_eq!(keys(&leased), ["other"], "k was taken by the first batch");
        integro_db::testing::drop_postgres(db).await;
    }

    /// Hashes are stored: the function must give the same value in every
    /// version, or stored jobs would stop waiting for each other.
    #[test]
    fn a_queue_hash_is_the_first_eight_bytes_of_its_sha256() {
        // The first 8 bytes of sha256("contact:a"), big-endian, signed.
        assert_eq!(queue_hash("contact:a"), -6287185214969760713);
        assert_eq!(queue_hash("contact:a"), queue_hash("contact:a"));
        assert_ne!(queue_hash("contact:a"), queue_hash("contact:b"));
    }

    /// Jobs stored before migration 0008 have no hash; opening the store
    /// gives them theirs, and they keep their turn: the newer job of their
    /// queue waits for them.
    #[tokio::test]
    async fn jobs_stored_before_the_queue_hash_get_it_and_keep_their_turn() {
        let (_dir, db) = sqlite().await;
        let mut tx = db.begin().await.unwrap();
        enqueue_many(&mut Conn::of(&mut tx), vec![job("old")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // As a job stored by an earlier version.
        sqlx::query("UPDATE jobs SET queue_hash = NULL")
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        crate::migrations::migrate(&db).await.unwrap();
        let hashes: Vec<Option<i64>> = sqlx::query_scalar("SELECT queue_hash FROM jobs")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(hashes, [Some(queue_hash("old"))]);

        let mut tx = db.begin().await.unwrap();
        enqueue_many(&mut Conn::of(&mut tx), vec![job("old"), job("new")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let claimed = claim(&db, "w", 10, 60_000).await.unwrap();
        assert_eq!(
            keys(&claimed),
            ["new", "old"],
            "the older job of \"old\" first"
        );
        let claimed = claim(&db, "w", 10, 60_000).await.unwrap();
        assert!(claimed.is_empty(), "the second \"old\" waits: {claimed:?}");
    }
}
