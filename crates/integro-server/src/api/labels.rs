//! `/api/v1/labels`: the tenant's conversation labels. Labels are created by
//! using them (`PUT /api/v1/conversations/{id}/labels`); here they are
//! listed and, by admins, deleted.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_store::labels::{self, Label};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_labels))
        .routes(routes!(delete_label))
}

/// The tenant's labels (at most 100), by name.
#[utoipa::path(get, path = "/api/v1/labels", tag = "conversations", security(("bearer" = [])),
    responses((status = 200, body = Vec<Label>)))]
pub(crate) async fn list_labels(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> ApiResult<Json<Vec<Label>>> {
    ctx.require(Permission::Read)?;
    Ok(Json(labels::list(&state.db, ctx.tenant_id).await?))
}

/// Delete a label: it comes off every conversation (admins and owners;
/// audited as `label.delete`).
#[utoipa::path(delete, path = "/api/v1/labels/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Label id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete_label(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let mut tx = state.db.begin().await?;
    let label = labels::delete(&mut tx, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("label"))?;
    integro_store::audit::record(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        integro_store::audit::Change::new("label.delete", "label", label.id)
            .tenant(ctx.tenant_id)
            .before(&label),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
