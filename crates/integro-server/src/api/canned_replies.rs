//! `/api/v1/canned-replies`: texts agents insert by shortcut. Everyone in
//! the tenant reads them; admins and owners manage them (audited).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_store::canned_replies::{self, CannedReply};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_canned_replies, create_canned_reply))
        .routes(routes!(
            get_canned_reply,
            update_canned_reply,
            delete_canned_reply
        ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedReplyRequest {
    /// `[a-z0-9_-]`, 1 to 32 characters, unique in the tenant (a leading
    /// `/` is dropped).
    pub shortcut: String,
    /// At most 4,096 characters.
    pub text: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedReplyUpdate {
    pub shortcut: Option<String>,
    pub text: Option<String>,
}

/// The tenant's canned replies (at most 500), by shortcut.
#[utoipa::path(get, path = "/api/v1/canned-replies", tag = "conversations", security(("bearer" = [])),
    responses((status = 200, body = Vec<CannedReply>)))]
pub(crate) async fn list_canned_replies(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> ApiResult<Json<Vec<CannedReply>>> {
    ctx.require(Permission::Read)?;
    Ok(Json(canned_replies::list(&state.db, ctx.tenant_id).await?))
}

async fn find(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<CannedReply> {
    canned_replies::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("canned reply"))
}

/// One canned reply.
#[utoipa::path(get, path = "/api/v1/canned-replies/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Canned reply id")),
    responses((status = 200, body = CannedReply), (status = 404, body = Problem)))]
pub(crate) async fn get_canned_reply(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<CannedReply>> {
    ctx.require(Permission::Read)?;
    Ok(Json(find(&state, &ctx, id).await?))
}

/// Add a canned reply (admins and owners). 409 when the shortcut is taken;
/// 422 past 500 replies.
#[utoipa::path(post, path = "/api/v1/canned-replies", tag = "conversations", security(("bearer" = [])),
    request_body = CannedReplyRequest,
    responses((status = 201, body = CannedReply), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_canned_reply(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<CannedReplyRequest>,
) -> ApiResult<(StatusCode, Json<CannedReply>)> {
    ctx.require(Permission::Manage)?;
    let shortcut = canned_replies::check_shortcut(&req.shortcut)?;
    let text = canned_replies::check_text(&req.text)?;
    let mut tx = state.db.begin().await?;
    let reply =
        canned_replies::create(&mut tx, ctx.tenant_id, ctx.actor(), &shortcut, &text).await?;
    integro_store::audit::record(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        integro_store::audit::Change::new("canned_reply.create", "canned_reply", reply.id)
            .tenant(ctx.tenant_id)
            .after(&reply),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(reply)))
}

/// Change a canned reply's shortcut or text (admins and owners).
#[utoipa::path(patch, path = "/api/v1/canned-replies/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Canned reply id")), request_body = CannedReplyUpdate,
    responses((status = 200, body = CannedReply), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update_canned_reply(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<CannedReplyUpdate>,
) -> ApiResult<Json<CannedReply>> {
    ctx.require(Permission::Manage)?;
    let before = find(&state, &ctx, id).await?;
    let shortcut = match &req.shortcut {
        Some(s) => canned_replies::check_shortcut(s)?,
        None => before.shortcut.clone(),
    };
    let text = match &req.text {
        Some(t) => canned_replies::check_text(t)?,
        None => before.text.clone(),
    };
    let mut tx = state.db.begin().await?;
    let reply = canned_replies::update(&mut tx, ctx.tenant_id, id, &shortcut, &text)
        .await?
        .ok_or_else(|| ApiError::not_found("canned reply"))?;
    integro_store::audit::record(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        integro_store::audit::Change::new("canned_reply.update", "canned_reply", reply.id)
            .tenant(ctx.tenant_id)
            .before(&before)
            .after(&reply),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(reply))
}

/// Delete a canned reply (admins and owners).
#[utoipa::path(delete, path = "/api/v1/canned-replies/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Canned reply id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete_canned_reply(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let mut tx = state.db.begin().await?;
    let reply = canned_replies::delete(&mut tx, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("canned reply"))?;
    integro_store::audit::record(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        integro_store::audit::Change::new("canned_reply.delete", "canned_reply", reply.id)
            .tenant(ctx.tenant_id)
            .before(&reply),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
