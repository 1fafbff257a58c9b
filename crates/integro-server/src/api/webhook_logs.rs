//! `/api/v1/webhook-logs`: every webhook request of the tenant's accounts,
//! accepted or refused, newest first.

use axum::Json;
use axum::extract::{Query, State};
use integro_core::Permission;
use integro_store::Page;
use integro_store::webhook_logs::{self, WebhookLog, WebhookLogFilter};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::ApiResult;
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_webhook_logs))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhookLogParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub account_id: Option<Uuid>,
    /// `twilio`, `whatsapp`, `instagram`, `x` or `web`.
    pub channel: Option<String>,
    /// `accepted`, `duplicate`, `verified`, `rejected` or `error`.
    pub outcome: Option<String>,
}

/// The webhook log (headers with secrets redacted, body, answer, time taken, error).
#[utoipa::path(get, path = "/api/v1/webhook-logs", tag = "webhook-logs", security(("bearer" = [])),
    params(WebhookLogParams), responses((status = 200, body = Page<WebhookLog>)))]
pub(crate) async fn list_webhook_logs(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<WebhookLogParams>,
) -> ApiResult<Json<Page<WebhookLog>>> {
    ctx.require(Permission::Manage)?;
    let page = integro_store::PageRequest::parse(p.limit, p.cursor.as_deref())?;
    let filter = WebhookLogFilter {
        account_id: p.account_id,
        channel: p.channel,
        outcome: p.outcome,
    };
    Ok(Json(
        webhook_logs::list(&state.db, ctx.tenant_id, &filter, &page).await?,
    ))
}
