//! `/api/v1/usage`: LLM tokens per bot and day, and the month against the
//! tenant's budget; `/api/v1/usage/daily`: messages, replies, hand-offs,
//! LLM calls and delivery failures per day and channel account.

use axum::Json;
use axum::extract::{Query, State};
use integro_core::Permission;
use integro_store::db::now_ms;
use integro_store::message_stats::{self, AccountStats, DayStats, FailureCount};
use integro_store::tenants;
use integro_store::usage::{self, LlmDay, UsageDay, UsageFilter};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_usage))
        .routes(routes!(get_daily_usage))
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DailyUsageParams {
    /// First day, `YYYY-MM-DD` (UTC); 29 days before `to` when absent.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC); today when absent.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DailyUsage {
    pub from: String,
    pub to: String,
    /// Messages per day, all channel accounts together, oldest first; days
    /// without messages are absent.
    pub days: Vec<DayStats>,
    /// LLM calls per day, all bots together, oldest first.
    pub llm_days: Vec<LlmDay>,
    /// Messages per channel account over the range.
    pub accounts: Vec<AccountStats>,
    /// Delivery failures in the range by account and provider code, most first.
    pub failures: Vec<FailureCount>,
    /// Messages are counted a minute or two behind: up to this time.
    #[serde(with = "time::serde::rfc3339::option")]
    pub counted_until: Option<time::OffsetDateTime>,
}

/// The longest range one request covers.
pub const MAX_RANGE_DAYS: i64 = 366;

/// The range a request asks for, checked: `YYYY-MM-DD` bounds, `from` not
/// after `to`, at most `MAX_RANGE_DAYS`. Defaults to the last 30 days.
pub(crate) fn date_range(from: Option<String>, to: Option<String>) -> ApiResult<(String, String)> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let parse = |field: &str, v: Option<String>| -> ApiResult<Option<time::Date>> {
        v.filter(|v| !v.is_empty())
            .map(|v| {
                time::Date::parse(&v, format)
                    .ok()
                    .filter(|d| (1970..=9999).contains(&d.year()))
                    .ok_or_else(|| ApiError::invalid_field(field, "must be a date as YYYY-MM-DD"))
            })
            .transpose()
    };
    let to = parse("to", to)?.unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
    let from = parse("from", from)?.unwrap_or(to - time::Duration::days(29));
    if from > to {
        return Err(ApiError::invalid_field("from", "must not be after to"));
    }
    if (to - from).whole_days() >= MAX_RANGE_DAYS {
        return Err(ApiError::invalid_field(
            "from",
            format!("the range may cover at most {MAX_RANGE_DAYS} days"),
        ));
    }
    let show = |d: time::Date| d.format(format).expect("a date formats");
    Ok((show(from), show(to)))
}

/// Messages in and out, bot reply times, conversations and hand-offs per
/// day and per channel account; LLM calls, tokens, time and failures per
/// day; delivery failures by provider code.
#[utoipa::path(get, path = "/api/v1/usage/daily", tag = "usage", security(("bearer" = [])),
    params(DailyUsageParams), responses((status = 200, body = DailyUsage), (status = 422, body = Problem)))]
pub(crate) async fn get_daily_usage(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<DailyUsageParams>,
) -> ApiResult<Json<DailyUsage>> {
    ctx.require(Permission::Read)?;
    let (from, to) = date_range(p.from, p.to)?;
    let (db, tenant) = (&state.db, ctx.tenant_id);
    Ok(Json(DailyUsage {
        days: message_stats::days(db, tenant, &from, &to).await?,
        llm_days: usage::days(db, tenant, &from, &to).await?,
        accounts: message_stats::accounts(db, tenant, &from, &to).await?,
        failures: message_stats::failures(db, tenant, &from, &to).await?,
        counted_until: message_stats::counted_until(db)
            .await?
            .map(integro_store::db::from_ms),
        from,
        to,
    }))
}
