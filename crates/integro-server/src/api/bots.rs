//! `/api/v1/bots`: what answers on a tenant's channel accounts.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_engine::prompt::Persona;
use integro_store::Page;
use integro_store::bots::{self, Bot, BotFields, BotSettings};
use integro_store::conversations;
use integro_worker::engine::{DryRun, LlmTrace};
use serde::{Deserialize, Serialize};
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
        .routes(routes!(get_persona, put_persona))
        .routes(routes!(try_bot))
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
    /// The AI profile that answers when no rule does.
    pub ai_profile_id: Option<Uuid>,
    pub persona: Option<Persona>,
    /// Any of the bot settings; the rest take their defaults.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
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
    /// `null` removes the AI profile: rules and the fallback reply only.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<Uuid>)]
    pub ai_profile_id: Option<Option<Uuid>>,
    /// The settings named here change; the others stay.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
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
    let settings = match req.settings {
        Some(s) => bots::merge_settings(&BotSettings::default(), s)?,
        None => BotSettings::default(),
    };
    let fields = BotFields {
        name: req.name,
        description: req.description,
        fallback_reply: req.fallback_reply,
        active: req.active,
        ai_profile_id: req.ai_profile_id,
        persona: req.persona,
        settings,
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
pub(crate) async fn update_bot(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<UpdateBot>,
) -> ApiResult<Json<Bot>> {
    ctx.require(Permission::Manage)?;
    let before = find(&state, &ctx, id).await?;
    let mut fields = BotFields::of(&before);
    if let Some(v) = req.name {
        fields.name = v;
    }
    if let Some(v) = req.description {
        fields.description = Some(v);
    }
    if let Some(v) = req.fallback_reply {
        fields.fallback_reply = v;
    }
    if let Some(v) = req.active {
        fields.active = v;
    }
    if let Some(v) = req.ai_profile_id {
        fields.ai_profile_id = v;
    }
    if let Some(changes) = req.settings {
        fields.settings = bots::merge_settings(&before.settings, changes)?;
    }
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

/// The bot's persona: who it is when the LLM speaks.
#[utoipa::path(get, path = "/api/v1/bots/{id}/persona", tag = "bots", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = Persona), (status = 404, body = Problem)))]
async fn get_persona(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Persona>> {
    ctx.require(Permission::Read)?;
    let bot = find(&state, &ctx, id).await?;
    Ok(Json(bot.persona_or_default()))
}

/// Set the bot's persona: `name`, `tone`, `interests`, `language` and a
/// `system_prompt` template that can use `{{persona.*}}`, `{{contact.*}}`,
/// `{{vars.*}}` and the other names of docs/templates.md (a sensible
/// default is used when left out). A name that does not exist is refused.
#[utoipa::path(put, path = "/api/v1/bots/{id}/persona", tag = "bots", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id")), request_body = Persona,
    responses((status = 200, body = Persona), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn put_persona(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(persona): ApiJson<Persona>,
) -> ApiResult<Json<Persona>> {
    ctx.require(Permission::Manage)?;
    let before = find(&state, &ctx, id).await?;
    let mut fields = BotFields::of(&before);
    fields.persona = Some(persona);
    let mut tx = state.db.begin().await?;
    let bot = bots::update(&mut tx, ctx.actor(), ctx.request_id(), &before, fields).await?;
    tx.commit().await?;
    Ok(Json(bot.persona.unwrap_or_default()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TryMessage {
    /// The made-up message.
    pub text: String,
    /// The contact's name, for templates and conditions.
    pub contact_name: Option<String>,
    /// The channel to pretend (`web` by default): conditions and length limits differ.
    pub channel: Option<integro_core::ChannelKind>,
    /// Decide inside this conversation: its history, variables and state.
    pub conversation_id: Option<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TryResult {
    /// The replies, after filters and splitting, in order.
    pub replies: Vec<String>,
    /// The rule that answered, if one did.
    pub rule_id: Option<Uuid>,
    /// Whether the conversation would go to a human.
    pub handoff: bool,
    /// What happened, step by step: rules, budget, providers, filters.
    pub trace: Vec<String>,
    /// What to fix in the templates: each placeholder that had no value
    /// (and the default used, if it has one), a reply that rendered empty
    /// and was replaced by the fallback reply.
    pub warnings: Vec<String>,
    /// The LLM request and answer, when the LLM was asked.
    pub llm: Option<LlmTrace>,
}

/// Dry run: the whole decision for a made-up message, with its trace. The
/// LLM is really called (and its tokens shown), but nothing is stored and
/// nothing is sent.
#[utoipa::path(post, path = "/api/v1/bots/{id}/try", tag = "bots", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id")), request_body = TryMessage,
    responses((status = 200, body = TryResult), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn try_bot(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<TryMessage>,
) -> ApiResult<Json<TryResult>> {
    ctx.require(Permission::Converse)?;
    let bot = find(&state, &ctx, id).await?;
    let mut conversation = match req.conversation_id {
        Some(c) => Some(
            conversations::get(&state.db, ctx.tenant_id, c)
                .await?
                .filter(|c| c.bot_id == bot.id)
                .ok_or_else(|| {
                    ApiError::invalid_field("conversation_id", "no such conversation of this bot")
                })?,
        ),
        None => None,
    };
    if let (Some(c), Some(name)) = (conversation.as_mut(), &req.contact_name) {
        c.contact.display_name = Some(name.clone());
    }
    let turn = state
        .engine
        .dry_run(
            &state.db,
            &state.keyring,
            &bot,
            DryRun {
                text: req.text,
                contact_name: req.contact_name.as_deref(),
                channel: req.channel.unwrap_or(integro_core::ChannelKind::Web),
                conversation: conversation.as_ref(),
            },
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "dry run failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "dry_run_failed",
                format!("the dry run failed: {e:#}"),
            )
        })?;
    Ok(Json(TryResult {
        replies: turn.replies(),
        rule_id: turn.rule_id(),
        handoff: turn.handoff.is_some(),
        trace: turn.trace,
        warnings: turn.warnings,
        llm: turn.llm,
    }))
}
