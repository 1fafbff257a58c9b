//! A `publish_post` job: publishes an approved post on X, once, at its
//! time (the job's `run_at`). A post rejected, changed or deleted since
//! its approval is not published: the job finds it so and finishes. X
//! takes no idempotency key, so a retry first looks for the post among the
//! account's own recent posts and adopts it rather than posting it twice;
//! so does a refusal, which may be X refusing a repeat of the post an
//! earlier attempt made.

use std::time::Duration;

use integro_channels::{Credentials, x};
use integro_core::Actor;
use integro_core::breaker::Permit;
use integro_store::audit::{self, Change};
use integro_store::db::now_ms;
use integro_store::jobs::{self, Job, JobKind, NewJob};
use integro_store::posts::{self, Post};
use integro_store::x_spend::{self, XOperation};
use integro_store::{Conn, StoreError};
use serde_json::json;
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use crate::outcome::Failure;
use crate::worker::Worker;

/// Attempts before a post is given up as `failed`.
const MAX_ATTEMPTS: i64 = 8;

/// Queues the publication of `post`, just approved, for its
/// `scheduled_at` (or now), in the caller's transaction.
pub async fn enqueue(
    tx: &mut Conn<'_>,
    tenant_id: Uuid,
    post: &Post,
    request_id: Option<&str>,
) -> Result<(), StoreError> {
    jobs::enqueue_many(
        tx,
        vec![NewJob {
            kind: JobKind::PublishPost,
            payload: json!({ "post_id": post.id, "approval": post.approval, "request_id": request_id }),
            tenant_id: Some(tenant_id),
            queue_key: Some(format!("post:{}", post.id)),
            max_attempts: MAX_ATTEMPTS,
            run_at: post.scheduled_at.map(integro_store::db::to_ms),
        }],
    )
    .await
}

/// The post a job publishes, and the approval it was queued for.
fn post_of(job: &Job) -> Option<(Uuid, Uuid, i64)> {
    let id = serde_json::from_value(job.payload["post_id"].clone()).ok()?;
    Some((job.tenant_id?, id, job.payload["approval"].as_i64()?))
}

pub(crate) async fn run(worker: &Worker, job: &Job) -> Result<(), Failure> {
    let (tenant_id, id, approval) =
        post_of(job).ok_or_else(|| Failure::Permanent("the job names no post".into()))?;
    let Some(post) = posts::start_publishing(&worker.db, tenant_id, id, approval).await? else {
        tracing::info!(post = %id, "not published: rejected, changed, deleted or published since its approval");
        return worker.finish(job).await;
    };
    let Some(known) = worker
        .accounts
        .get(&worker.db, &worker.keyring, tenant_id, post.account_id)
        .await?
    else {
        return failed(
            worker,
            job,
            &post,
            Some("account_deleted"),
            "the X account was deleted",
        )
        .await;
    };
    let account = &known.account;
    let creds = &match crate::x_tokens::for_job(worker, &known).await {
        Ok(creds) => creds,
        Err(e) if e.retryable => return Err(Failure::retry(&e)),
        Err(e) => return failed(worker, job, &post, e.code.as_deref(), &e.message).await,
    };
    let circuit = format!("{}:{}", account.kind, account.id);
    if let Permit::Wait(after) = worker.breakers.permit(&circuit) {
        return Err(Failure::Postpone {
            after: after.max(Duration::from_millis(100)),
            note: None,
        });
    }
    let text = post.publish_text();
    // The account's posts since the first attempt (a little before, for
    // clocks that differ).
    let since = post
        .publish_started_at
        .unwrap_or_else(OffsetDateTime::now_utc)
        .unix_timestamp()
        - 2;
    // An earlier attempt may have gone out: its answer lost (a timeout, a
    // crash), or X took the post and answered an error (a 5xx).
    if job.attempts > 1
        && let Some(provider_id) = earlier_attempt(worker, &post, creds, &text, since).await?
    {
        tracing::info!(post = %id, provider_id = %provider_id, "an earlier attempt had published the post; adopting it");
        worker.breakers.success(&circuit);
        return published(worker, job, &post, &provider_id).await;
    }
    // Past the tenant's X spend limit only replies go out.
    if let Some(why) = x_spend::over_limit(&worker.db, tenant_id, now_ms()).await? {
        return failed(worker, job, &post, Some("x_spend_limit"), &why).await;
    }
    let outcome = x::publish(
        &worker.egress.client,
        &worker.egress.urls,
        creds,
        &text,
        post.made_with_ai,
    )
    .instrument(tracing::info_span!("provider_call", channel = "x", post = %id))
    .await;
    match outcome {
        Ok(provider_id) => {
            worker.breakers.success(&circuit);
            let spent =
                x_spend::record(&worker.db, tenant_id, XOperation::post(&text), 1, now_ms());
            if let Err(e) = spent.await {
                tracing::warn!(error = %e, "counting an X post failed");
            }
            published(worker, job, &post, &provider_id).await
        }
        Err(e) if e.retryable => {
            worker.breakers.failure(&circuit);
            Err(Failure::retry(&e))
        }
        Err(e) => {
            worker.breakers.success(&circuit);
            // X refuses a post identical to a recent one: that one may be
            // this post's, from an attempt whose answer was lost.
            if let Some(provider_id) = earlier_attempt(worker, &post, creds, &text, since).await? {
                tracing::info!(post = %id, provider_id = %provider_id, "refused as a repeat of a post that went out; adopting it");
                return published(worker, job, &post, &provider_id).await;
            }
            failed(worker, job, &post, e.code.as_deref(), &e.message).await
        }
    }
}

/// The id of a post of the account with this post's text, published since
/// `since` and not recorded as another post's. When X cannot say, none
/// (posting again is the lesser harm).
async fn earlier_attempt(
    worker: &Worker,
    post: &Post,
    creds: &Credentials,
    text: &str,
    since: i64,
) -> Result<Option<String>, Failure> {
    let candidates = match x::find_posts(
        &worker.egress.client,
        &worker.egress.urls,
        creds,
        text,
        since,
        None,
    )
    .await
    {
        Ok(candidates) => candidates,
        Err(e) => {
            tracing::warn!(post = %post.id, error = %e, "could not ask X whether an earlier attempt went out");
            return Ok(None);
        }
    };
    for provider_id in candidates {
        if !posts::provider_id_known(&worker.db, post.account_id, &provider_id).await? {
            return Ok(Some(provider_id));
        }
    }
    Ok(None)
}

/// Audits what became of the post, as Integro's own doing.
async fn audit_outcome(
    tx: &mut integro_store::Tx<'_>,
    job: &Job,
    action: &str,
    before: &Post,
    after: Option<&Post>,
) -> Result<(), StoreError> {
    let tenant_id = job.tenant_id.unwrap_or_default();
    let mut change = Change::new(action, "post", before.id)
        .tenant(tenant_id)
        .before(before);
    if let Some(after) = after {
        change = change.after(after);
    }
    audit::record(
        tx,
        &Actor::system(),
        job.payload["request_id"].as_str(),
        change,
    )
    .await
}

/// The post went out as `provider_id`: recorded, audited, the job done.
/// Should the lease have been taken over, the post did go out all the same.
async fn published(
    worker: &Worker,
    job: &Job,
    post: &Post,
    provider_id: &str,
) -> Result<(), Failure> {
    let mut tx = worker.db.begin().await?;
    let after = posts::mark_published(&mut tx, post.id, provider_id).await?;
    audit_outcome(&mut tx, job, "post.publish", post, after.as_ref()).await?;
    let completion = jobs::complete(&mut Conn::of(&mut tx), job.id, &worker.owner).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(post = %post.id, provider_id, "post published");
    worker.completed(completion)
}

/// X refused the post (or it cannot be published): `failed` with the code
/// and message, audited; the job is dead.
async fn failed(
    worker: &Worker,
    job: &Job,
    post: &Post,
    code: Option<&str>,
    message: &str,
) -> Result<(), Failure> {
    record_failed(worker, job, post, code, message).await?;
    Err(Failure::Permanent(match code {
        Some(code) => format!("{code}: {message}"),
        None => message.to_string(),
    }))
}

async fn record_failed(
    worker: &Worker,
    job: &Job,
    post: &Post,
    code: Option<&str>,
    message: &str,
) -> Result<(), StoreError> {
    let mut tx = worker.db.begin().await?;
    if let Some(after) = posts::mark_failed(&mut tx, post.id, code, message).await? {
        audit_outcome(&mut tx, job, "post.fail", post, Some(&after)).await?;
    }
    tx.commit().await?;
    tracing::warn!(post = %post.id, code, message, "post not published");
    Ok(())
}

/// A publish job ran out of attempts: its post is `failed` with the last
/// error.
pub(crate) async fn gave_up(worker: &Worker, job: &Job, error: &str) {
    let Some((tenant_id, id, _)) = post_of(job) else {
        return;
    };
    let result = async {
        match posts::get(&worker.db, tenant_id, id).await? {
            Some(post) => record_failed(worker, job, &post, None, error).await,
            None => Ok(()),
        }
    }
    .await;
    if let Err(e) = result {
        tracing::error!(job = %job.id, error = %e, "marking the post failed did not work");
    }
}
