//! `/api/v1/bots`: what answers on a tenant's channel accounts.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_store::Page;
use integro_store::bots::{self, Bot, BotFields};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ListParams, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_bot, list_bots))
        .routes(routes!(get_bot, update_bot, delete_bot))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBot {
    pub name: String,
    pub description: Option<String>,
    /// What the bot answers when nothing else does.
    pub fallback_reply: String,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBot {
    pub name: Option<String>,
    pub description: Option<String>,
    pub fallback_reply: Option<String>,
    pub active: Option<bool>,
}

pub(crate) async fn find(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Bot> {
    bots::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("bot"))
}

/// Create a bot.
#[utoipa::path(post, path = "/api/v1/bots", tag = "bots", security(("bearer" = [])),
    request_body = CreateBot,
    responses((status = 201, body = Bot), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_bot(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<CreateBot>,
) -> ApiResult<(StatusCode, Json<Bot>)> {
    ctx.require(Permission::Manage)?;
    let fields = BotFields {
        name: req.name,
        description: req.description,
        fallback_reply: req.fallback_reply,
        active: req.active,
    };
    let mut tx = state.db.begin().await?;
    let bot = bots::create(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        fields,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(bot)))
}

/// The tenant's bots.
#[utoipa::path(get, path = "/api/v1/bots", tag = "bots", security(("bearer" = [])),
    params(ListParams), responses((status = 200, body = Page<Bot>)))]
async fn list_bots(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Bot>>> {
    ctx.require(Permission::Read)?;
    Ok(Json(
        bots::list(&state.db, ctx.tenant_id, &p.page()?).await?,
    ))
}

/// One bot.
#[utoipa::path(get, path = "/api/v1/bots/{id}", tag = "bots", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = Bot), (status = 404, body = Problem)))]
async fn get_bot(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Bot>> {
    ctx.require(Permission::Read)?;
    Ok(Json(find(&state, &ctx, id).await?))
}

/// Change a bot; fields left out stay as they are.
#[utoipa::path(patch, path = "/api/v1/bots/{id}", tag = "bots", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id")), request_body = UpdateBot,
    responses((status = 200, body = Bot), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_bot(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<UpdateBot>,
) -> ApiResult<Json<Bot>> {
    ctx.require(Permission::Manage)?;
    let before = find(&state, &ctx, id).await?;
    let fields = BotFields {
        name: req.name.unwrap_or_else(|| before.name.clone()),
        description: req.description.or_else(|| before.description.clone()),
        fallback_reply: req
            .fallback_reply
            .unwrap_or_else(|| before.fallback_reply.clone()),
        active: req.active.unwrap_or(before.active),
    };
    let mut tx = state.db.begin().await?;
    let bot = bots::update(&mut tx, ctx.actor(), ctx.request_id(), &before, fields).await?;
    tx.commit().await?;
    Ok(Json(bot))
}

/// Delete a bot (soft). Its channel accounts must be deleted first.
#[utoipa::path(delete, path = "/api/v1/bots/{id}", tag = "bots", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_bot(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let bot = find(&state, &ctx, id).await?;
    let mut tx = state.db.begin().await?;
    bots::delete(&mut tx, ctx.actor(), ctx.request_id(), &bot).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
