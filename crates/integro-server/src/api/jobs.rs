//! `/api/v1/jobs`: the tenant's jobs; dead ones can be retried or cancelled.

use axum::Json;
use axum::extract::{Path, Query, State};
use integro_core::Permission;
use integro_store::Conn;
use integro_store::Page;
use integro_store::jobs::{self, Job, JobState};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(retry_job))
        .routes(routes!(cancel_job))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// `ready`, `running`, `done`, `dead` or `cancelled`.
    pub state: Option<JobState>,
}

/// The tenant's jobs, oldest first; `?state=dead` lists those that gave up.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])),
    params(JobParams), responses((status = 200, body = Page<Job>)))]
async fn list_jobs(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<JobParams>,
) -> ApiResult<Json<Page<Job>>> {
    ctx.require(Permission::Read)?;
    let page = integro_store::PageRequest::parse(p.limit, p.cursor.as_deref())?;
    Ok(Json(
        jobs::list(&state.db, ctx.tenant_id, p.state, &page).await?,
    ))
}

async fn find(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Job> {
    jobs::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))
}

/// One job, with its attempts and last error.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = Problem)))]
async fn get_job(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    ctx.require(Permission::Read)?;
    Ok(Json(find(&state, &ctx, id).await?))
}

/// Run a dead or cancelled job again, with a fresh set of attempts.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn retry_job(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    change(&state, &ctx, id, Action::Retry).await
}

/// Cancel a job that is waiting or dead.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn cancel_job(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    change(&state, &ctx, id, Action::Cancel).await
}

#[derive(Clone, Copy)]
enum Action {
    Retry,
    Cancel,
}

/// Applies a state change with its audit entry, in one transaction.
async fn change(
    state: &AppState,
    ctx: &TenantCtx,
    id: Uuid,
    action: Action,
) -> ApiResult<Json<Job>> {
    ctx.require(Permission::Manage)?;
    let job = find(state, ctx, id).await?;
    let mut tx = state.db.begin().await?;
    let (changed, name, verb, next) = match action {
        Action::Retry => (
            jobs::retry(&mut Conn::of(&mut tx), &job).await?,
            "job.retry",
            "retried",
            JobState::Ready,
        ),
        Action::Cancel => (
            jobs::cancel(&mut Conn::of(&mut tx), &job).await?,
            "job.cancel",
            "cancelled",
            JobState::Cancelled,
        ),
    };
    if !changed {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!("the job is {} and cannot be {verb}", job.state.as_str()),
        ));
    }
    integro_store::audit::record(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        integro_store::audit::Change::new(name, "job", job.id)
            .tenant(ctx.tenant_id)
            .before(&serde_json::json!({ "state": job.state }))
            .after(&serde_json::json!({ "state": next })),
    )
    .await?;
    tx.commit().await?;
    state.wake.notify_one();
    Ok(Json(find(state, ctx, id).await?))
}
