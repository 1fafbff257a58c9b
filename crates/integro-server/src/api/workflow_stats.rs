//! `GET /api/v1/workflow-stats`: per definition over a period, instances by
//! state, time in state (p50, p90) and the SLA breach rate (#37).

use axum::Json;
use axum::extract::{Query, State};
use integro_core::Permission;
use integro_store::workflow_stats::{self, DefinitionStats};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::usage::{DailyUsageParams, date_range};
use crate::error::{ApiResult, Problem};
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_workflow_stats))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowStats {
    pub from: String,
    pub to: String,
    /// Definitions with instances or transitions in the period.
    pub definitions: Vec<DefinitionStats>,
}

/// Workflow statistics for the days `from` to `to` (UTC, the last 30 by
/// default): instances started, where they are now, how long they stayed
/// in each state, and how often SLAs were breached.
#[utoipa::path(get, path = "/api/v1/workflow-stats", tag = "workflows", security(("bearer" = [])),
    params(DailyUsageParams), responses((status = 200, body = WorkflowStats), (status = 422, body = Problem)))]
pub(crate) async fn get_workflow_stats(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<DailyUsageParams>,
) -> ApiResult<Json<WorkflowStats>> {
    ctx.require(Permission::Read)?;
    let (from, to) = date_range(p.from, p.to)?;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let ms = |day: &str| -> i64 {
        let date = time::Date::parse(day, format).expect("date_range gives dates");
        (date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64
    };
    let (from_ms, to_ms) = (ms(&from), ms(&to) + 86_400_000);
    Ok(Json(WorkflowStats {
        definitions: workflow_stats::stats(&state.db, ctx.tenant_id, from_ms, to_ms).await?,
        from,
        to,
    }))
}
