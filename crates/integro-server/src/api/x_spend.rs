//! `/api/v1/x/spend`: the tenant's estimated X spend this month, by kind of
//! call, against its `x_monthly_spend_limit_usd`.

use axum::Json;
use axum::extract::State;
use integro_core::Permission;
use integro_store::db::now_ms;
use integro_store::tenants;
use integro_store::x_spend::{self, SpendLine};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_spend))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct XSpend {
    /// `YYYY-MM`, UTC.
    pub month: String,
    /// Calls by kind, priced from X's pay-per-use table (an estimate: X's
    /// prices may change).
    pub lines: Vec<SpendLine>,
    pub estimated_usd: f64,
    pub limit_usd: Option<f64>,
    /// The limit is reached: only replies go out to X.
    pub limited: bool,
}

/// The tenant's estimated X spend this month.
#[utoipa::path(get, path = "/api/v1/x/spend", tag = "trends", security(("bearer" = [])),
    responses((status = 200, body = XSpend)))]
async fn get_spend(State(state): State<AppState>, ctx: TenantCtx) -> ApiResult<Json<XSpend>> {
    ctx.require(Permission::Read)?;
    Ok(Json(spend(&state, &ctx).await?))
}

/// The tenant's estimated X spend this month against its limit.
pub(crate) async fn spend(state: &AppState, ctx: &TenantCtx) -> ApiResult<XSpend> {
    let month = x_spend::month(&state.db, ctx.tenant_id, now_ms()).await?;
    let limit = tenants::settings(&state.db, ctx.tenant_id)
        .await?
        .x_monthly_spend_limit_usd;
    Ok(XSpend {
        limited: limit.is_some_and(|l| month.estimated_usd >= l),
        month: month.month,
        lines: month.lines,
        estimated_usd: month.estimated_usd,
        limit_usd: limit,
    })
}
