//! `/api/v1/business-calendars`: the open hours workflow SLAs count in
//! (#37): weekly intervals in an IANA time zone, minus holidays. Admins
//! and owners write them; anyone in the tenant reads them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_engine::workflow::{BusinessCalendar, Weekly};
use integro_store::business_calendars::{self, Calendar};
use integro_store::{Page, PageRequest};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calendars, create_calendar))
        .routes(routes!(get_calendar, replace_calendar, delete_calendar))
}

/// A calendar: `{"name": "office", "time_zone": "Europe/Lisbon",
/// "weekly": {"monday": [{"start": "09:00", "end": "17:30"}], …},
/// "holidays": ["2026-12-25"]}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarRequest {
    /// What SLAs name it by (`sla: { calendar: office }`); fixed once made.
    pub name: String,
    /// IANA time zone, e.g. `Europe/Lisbon`.
    pub time_zone: String,
    /// Open intervals per weekday (`HH:MM`, `end` may be `24:00`); a day
    /// left out is closed.
    pub weekly: Weekly,
    /// Closed days, `YYYY-MM-DD`, at most 1,000.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// New hours for a calendar (its name stays).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarHours {
    pub time_zone: String,
    pub weekly: Weekly,
    #[serde(default)]
    pub holidays: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The tenant's business calendars.
#[utoipa::path(get, path = "/api/v1/business-calendars", tag = "workflows", security(("bearer" = [])),
    params(ListParams), responses((status = 200, body = Page<Calendar>)))]
pub(crate) async fn list_calendars(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Calendar>>> {
    ctx.require(Permission::Read)?;
    let page = PageRequest::parse(p.limit, p.cursor.as_deref())?;
    Ok(Json(
        business_calendars::list(&state.db, ctx.tenant_id, &page).await?,
    ))
}

/// Make a calendar (admins and owners). 422 naming the field at fault (an
/// unknown time zone, an interval that ends before it starts, a calendar
/// never open); 409 when the name is taken.
#[utoipa::path(post, path = "/api/v1/business-calendars", tag = "workflows", security(("bearer" = [])),
    request_body = CalendarRequest,
    responses((status = 201, body = Calendar), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
pub(crate) async fn create_calendar(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<CalendarRequest>,
) -> ApiResult<(StatusCode, Json<Calendar>)> {
    ctx.require(Permission::Manage)?;
    let hours = BusinessCalendar {
        time_zone: req.time_zone,
        weekly: req.weekly,
        holidays: req.holidays,
    };
    let mut tx = state.db.begin().await?;
    let created = business_calendars::create(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        req.name.trim(),
        &hours,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One calendar.
#[utoipa::path(get, path = "/api/v1/business-calendars/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Calendar id")),
    responses((status = 200, body = Calendar), (status = 404, body = Problem)))]
pub(crate) async fn get_calendar(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Calendar>> {
    ctx.require(Permission::Read)?;
    business_calendars::get(&state.db, ctx.tenant_id, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("business calendar"))
}

/// Replace a calendar's hours (admins and owners). SLA deadlines already
/// set keep their time; later ones use the new hours.
#[utoipa::path(put, path = "/api/v1/business-calendars/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Calendar id")), request_body = CalendarHours,
    responses((status = 200, body = Calendar), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub(crate) async fn replace_calendar(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<CalendarHours>,
) -> ApiResult<Json<Calendar>> {
    ctx.require(Permission::Manage)?;
    let hours = BusinessCalendar {
        time_zone: req.time_zone,
        weekly: req.weekly,
        holidays: req.holidays,
    };
    let mut tx = state.db.begin().await?;
    let changed = business_calendars::update(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        id,
        &hours,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(changed))
}

/// Delete a calendar (admins and owners).
#[utoipa::path(delete, path = "/api/v1/business-calendars/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Calendar id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete_calendar(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let mut tx = state.db.begin().await?;
    business_calendars::delete(&mut tx, ctx.actor(), ctx.request_id(), ctx.tenant_id, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
