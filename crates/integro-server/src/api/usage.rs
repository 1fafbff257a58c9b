//! `/api/v1/usage`: LLM tokens per bot and day, and the month against the
//! tenant's budget.

use axum::Json;
use axum::extract::{Query, State};
use integro_core::Permission;
use integro_store::db::now_ms;
use integro_store::tenants;
use integro_store::usage::{self, UsageDay, UsageFilter};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_usage))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    pub bot_id: Option<Uuid>,
    /// First day, `YYYY-MM-DD` (UTC).
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC).
    pub to: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Per bot and day, newest first.
    pub days: Vec<UsageDay>,
    pub total_requests: i64,
    pub total_input_tokens: i64,
    pub total_output_tokens: i64,
    /// Tokens spent this calendar month (UTC), all bots.
    pub month_tokens: i64,
    pub monthly_token_budget: Option<u64>,
    /// True when the budget is spent: bots answer from rules and fallback only.
    pub budget_exhausted: bool,
}

fn day(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v)
            if time::Date::parse(
                &v,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .is_err() =>
        {
            Err(ApiError::invalid_field(
                field,
                "must be a date as YYYY-MM-DD",
            ))
        }
        v => Ok(v),
    }
}

/// Token usage per bot and day.
#[utoipa::path(get, path = "/api/v1/usage", tag = "ai", security(("bearer" = [])),
    params(UsageParams), responses((status = 200, body = Usage)))]
pub(crate) async fn get_usage(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<UsageParams>,
) -> ApiResult<Json<Usage>> {
    ctx.require(Permission::Read)?;
    let filter = UsageFilter {
        bot_id: p.bot_id,
        from: day("from", p.from)?,
        to: day("to", p.to)?,
    };
    let days = usage::list(&state.db, ctx.tenant_id, &filter).await?;
    let month_tokens = usage::month_tokens(&state.db, ctx.tenant_id, now_ms()).await?;
    let budget = tenants::settings(&state.db, ctx.tenant_id)
        .await?
        .monthly_token_budget;
    Ok(Json(Usage {
        total_requests: days.iter().map(|d| d.requests).sum(),
        total_input_tokens: days.iter().map(|d| d.input_tokens).sum(),
        total_output_tokens: days.iter().map(|d| d.output_tokens).sum(),
        days,
        month_tokens,
        monthly_token_budget: budget,
        budget_exhausted: budget.is_some_and(|b| month_tokens as u64 >= b),
    }))
}
