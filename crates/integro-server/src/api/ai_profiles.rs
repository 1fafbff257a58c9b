//! `/api/v1/ai-profiles`: which credential and model answer for a bot, how,
//! and which profile takes over when one fails.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_store::Page;
use integro_store::ai_profiles::{self, AiProfile, ProfileFields};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ListParams, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_profile, list_profiles))
        .routes(routes!(get_profile, update_profile, delete_profile))
}

const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 512;
const DEFAULT_TIMEOUT_MS: u32 = 30_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProfile {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    pub credential_id: Uuid,
    #[schema(min_length = 1, max_length = 200)]
    pub model: String,
    /// 0 to 2; the provider's default when left out.
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Default 512.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_output_tokens: Option<u32>,
    /// Per request, default 30000.
    #[schema(minimum = 100, maximum = 600000)]
    pub timeout_ms: Option<u32>,
    /// Answers when this profile fails or its provider's circuit is open.
    pub fallback_profile_id: Option<Uuid>,
}

/// Fields left out stay as they are; `null` clears `temperature` and
/// `fallback_profile_id`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    pub credential_id: Option<Uuid>,
    #[schema(min_length = 1, max_length = 200)]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<f64>, minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<Option<f64>>,
    #[schema(minimum = 1, maximum = 100000)]
    pub max_output_tokens: Option<u32>,
    #[schema(minimum = 100, maximum = 600000)]
    pub timeout_ms: Option<u32>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<Uuid>)]
    pub fallback_profile_id: Option<Option<Uuid>>,
}

async fn find(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<AiProfile> {
    ai_profiles::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("AI profile"))
}

/// Create an AI profile.
#[utoipa::path(post, path = "/api/v1/ai-profiles", tag = "ai", security(("bearer" = [])),
    request_body = CreateProfile,
    responses((status = 201, body = AiProfile), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_profile(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<CreateProfile>,
) -> ApiResult<(StatusCode, Json<AiProfile>)> {
    ctx.require(Permission::Manage)?;
    let fields = ProfileFields {
        name: req.name,
        credential_id: req.credential_id,
        model: req.model,
        temperature: req.temperature,
        max_output_tokens: req.max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
        timeout_ms: req.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        fallback_profile_id: req.fallback_profile_id,
    };
    let mut tx = state.db.begin().await?;
    let created = ai_profiles::create(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        fields,
    )
    .await?;
    tx.commit().await?;
    state.engine.forget_settings();
    Ok((StatusCode::CREATED, Json(created)))
}

/// The tenant's AI profiles.
#[utoipa::path(get, path = "/api/v1/ai-profiles", tag = "ai", security(("bearer" = [])),
    params(ListParams), responses((status = 200, body = Page<AiProfile>)))]
pub(crate) async fn list_profiles(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<AiProfile>>> {
    ctx.require(Permission::Read)?;
    Ok(Json(
        ai_profiles::list(&state.db, ctx.tenant_id, &p.page()?).await?,
    ))
}

/// One AI profile.
#[utoipa::path(get, path = "/api/v1/ai-profiles/{id}", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Profile id")),
    responses((status = 200, body = AiProfile), (status = 404, body = Problem)))]
async fn get_profile(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AiProfile>> {
    ctx.require(Permission::Read)?;
    Ok(Json(find(&state, &ctx, id).await?))
}

/// Change a profile.
#[utoipa::path(patch, path = "/api/v1/ai-profiles/{id}", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Profile id")), request_body = UpdateProfile,
    responses((status = 200, body = AiProfile), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_profile(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<UpdateProfile>,
) -> ApiResult<Json<AiProfile>> {
    ctx.require(Permission::Manage)?;
    let before = find(&state, &ctx, id).await?;
    let mut f = ProfileFields::of(&before);
    if let Some(v) = req.name {
        f.name = v;
    }
    if let Some(v) = req.credential_id {
        f.credential_id = v;
    }
    if let Some(v) = req.model {
        f.model = v;
    }
    if let Some(v) = req.temperature {
        f.temperature = v;
    }
    if let Some(v) = req.max_output_tokens {
        f.max_output_tokens = v;
    }
    if let Some(v) = req.timeout_ms {
        f.timeout_ms = v;
    }
    if let Some(v) = req.fallback_profile_id {
        f.fallback_profile_id = v;
    }
    let mut tx = state.db.begin().await?;
    let after = ai_profiles::update(&mut tx, ctx.actor(), ctx.request_id(), &before, f).await?;
    tx.commit().await?;
    state.engine.forget_settings();
    Ok(Json(after))
}

/// Delete a profile. Refused while a bot or another profile uses it.
#[utoipa::path(delete, path = "/api/v1/ai-profiles/{id}", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Profile id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_profile(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let profile = find(&state, &ctx, id).await?;
    let mut tx = state.db.begin().await?;
    ai_profiles::delete(&mut tx, ctx.actor(), ctx.request_id(), &profile).await?;
    tx.commit().await?;
    state.engine.forget_settings();
    Ok(StatusCode::NO_CONTENT)
}
