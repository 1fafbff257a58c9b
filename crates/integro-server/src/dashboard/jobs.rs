//! Jobs: what the workers have to do, and the dead letters, which can be
//! retried or cancelled (through the API's handlers, audited there).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use integro_core::Permission;
use integro_store::PageRequest;
use integro_store::jobs::{self, Job, JobState};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, render, when};
use super::session::Acting;
use crate::api;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct JobsQuery {
    #[serde(default)]
    state: String,
}

/// A job as its row shows it.
pub struct JobView {
    pub id: Uuid,
    pub kind: &'static str,
    pub attempts: i64,
    pub max_attempts: i64,
    pub last_error: Option<String>,
    pub updated: String,
    pub retryable: bool,
    pub cancellable: bool,
}

fn job_view(job: Job) -> JobView {
    JobView {
        id: job.id,
        kind: job.kind.as_str(),
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        updated: when(job.updated_at),
        retryable: matches!(job.state, JobState::Dead | JobState::Cancelled),
        cancellable: matches!(job.state, JobState::Dead | JobState::Ready),
        last_error: job.last_error,
    }
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    layout: Layout,
    jobs: Vec<JobView>,
    state: String,
    states: [&'static str; 5],
    can_manage: bool,
}

pub async fn jobs(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<JobsQuery>,
) -> PageResult {
    acting.ctx.require(Permission::Read)?;
    let shown = if q.state.is_empty() {
        "dead"
    } else {
        q.state.as_str()
    };
    let filter = JobState::parse(shown)
        .ok_or_else(|| PageError::Invalid(format!("unknown job state `{shown}`")))?;
    let page = PageRequest::first(200);
    let jobs = jobs::list(&state.db, acting.ctx.tenant_id, Some(filter), &page)
        .await?
        .items
        .into_iter()
        .map(job_view)
        .collect();
    Ok(render(&JobsPage {
        layout: Layout::of(&acting, "Jobs", "jobs"),
        jobs,
        state: shown.to_string(),
        states: ["dead", "ready", "running", "done", "cancelled"],
        can_manage: acting.ctx.role.allows(Permission::Manage),
    }))
}

pub async fn retry(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let _ = api::jobs::retry_job(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to("/jobs?state=dead").into_response())
}

pub async fn cancel(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let _ = api::jobs::cancel_job(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to("/jobs?state=dead").into_response())
}
