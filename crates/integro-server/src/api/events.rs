//! `/api/v1/events`: what the reply engine did that an operator should know
//! about (budget spent, AI failing, a key rejected), newest first.

use axum::Json;
use axum::extract::{Query, State};
use integro_core::Permission;
use integro_store::Page;
use integro_store::events::{self, EngineEvent};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// `budget_exhausted`, `ai_failed`, `ai_auth_failed`, …
    pub kind: Option<String>,
}

/// Engine events, newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "ai", security(("bearer" = [])),
    params(EventParams), responses((status = 200, body = Page<EngineEvent>)))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<EventParams>,
) -> ApiResult<Json<Page<EngineEvent>>> {
    ctx.require(Permission::Read)?;
    let page = integro_store::PageRequest::parse(p.limit, p.cursor.as_deref())?;
    Ok(Json(
        events::list(&state.db, ctx.tenant_id, p.kind.as_deref(), &page).await?,
    ))
}
