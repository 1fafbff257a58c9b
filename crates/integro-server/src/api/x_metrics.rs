//! `/api/v1/x/metrics`: per X account, direct messages and mentions in and
//! out, the bot's response time, posts by state, approval latency,
//! published posts' public metrics and failures by X's error code; the
//! posts with the most impressions; the month's estimated spend.

use axum::Json;
use axum::extract::{Query, State};
use integro_core::Permission;
use integro_store::posts::Post;
use integro_store::x_metrics::{self, AccountMetrics};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::usage::{DailyUsageParams, date_range};
use crate::api::x_spend::{XSpend, spend};
use crate::error::{ApiResult, Problem};
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_metrics))
}

/// Posts listed in `top_posts`.
const TOP_POSTS: i64 = 20;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct XMetrics {
    pub from: String,
    pub to: String,
    /// Every X account of the tenant, by name. Messages are counted a
    /// minute or two behind (as on `/api/v1/usage/daily`).
    pub accounts: Vec<AccountMetrics>,
    /// Posts published in the range with the most impressions (public
    /// metrics as last refreshed, every 15 minutes by default).
    pub top_posts: Vec<Post>,
    /// This month's estimated X spend against the tenant's limit.
    pub spend: XSpend,
}

/// The tenant's X accounts' figures over a range of days.
#[utoipa::path(get, path = "/api/v1/x/metrics", tag = "trends", security(("bearer" = [])),
    params(DailyUsageParams), responses((status = 200, body = XMetrics), (status = 422, body = Problem)))]
pub(crate) async fn get_metrics(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<DailyUsageParams>,
) -> ApiResult<Json<XMetrics>> {
    ctx.require(Permission::Read)?;
    let (from, to) = date_range(p.from, p.to)?;
    let (db, tenant) = (&state.db, ctx.tenant_id);
    Ok(Json(XMetrics {
        accounts: x_metrics::accounts(db, tenant, &from, &to).await?,
        top_posts: x_metrics::top_posts(db, tenant, &from, &to, TOP_POSTS).await?,
        spend: spend(&state, &ctx).await?,
        from,
        to,
    }))
}
