//! `/api/v1/api-keys`: keys for programs, per tenant, with a role. The secret
//! is answered once, as `key`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::{Permission, Role};
use integro_store::Page;
use integro_store::api_keys::{self, ApiKey};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ListParams, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(get_api_key, revoke_api_key))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The secret, shown this once: send it as `Authorization: Bearer <key>`.
    pub key: String,
}

/// Create an API key in the caller's tenant. Admins and owners; never with a
/// role above the caller's own.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys",
    security(("bearer" = [])),
    params(("X-Integro-Tenant" = Option<Uuid>, Header, description = "Tenant to act in (operators, users of several tenants)")),
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, body = CreatedApiKey),
        (status = 403, body = Problem),
        (status = 422, body = Problem),
    ))]
pub(crate) async fn create_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    ctx.require(Permission::Manage)?;
    if !ctx.role.may_grant(req.role) {
        return Err(ApiError::forbidden(format!(
            "the {} role may not create a key with the {} role",
            ctx.role, req.role
        )));
    }
    let mut tx = state.db.begin().await?;
    let (api_key, key) = api_keys::create(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        &req.name,
        req.role,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { api_key, key })))
}

/// The tenant's API keys, revoked ones included (secrets are never shown).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys",
    security(("bearer" = [])),
    params(ListParams, ("X-Integro-Tenant" = Option<Uuid>, Header, description = "Tenant to act in")),
    responses((status = 200, body = Page<ApiKey>)))]
pub(crate) async fn list_api_keys(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Page<ApiKey>>> {
    ctx.require(Permission::Read)?;
    Ok(Json(
        api_keys::list(&state.db, ctx.tenant_id, &params.page()?).await?,
    ))
}

/// One API key of the tenant.
#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "API key id"), ("X-Integro-Tenant" = Option<Uuid>, Header, description = "Tenant to act in")),
    responses((status = 200, body = ApiKey), (status = 404, body = Problem)))]
async fn get_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ApiKey>> {
    ctx.require(Permission::Read)?;
    let key = api_keys::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    Ok(Json(key))
}

/// Revoke an API key: it stops working at once. Revoking twice is harmless.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "API key id"), ("X-Integro-Tenant" = Option<Uuid>, Header, description = "Tenant to act in")),
    responses((status = 200, body = ApiKey), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn revoke_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ApiKey>> {
    ctx.require(Permission::Manage)?;
    let key = api_keys::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    let mut tx = state.db.begin().await?;
    let key = api_keys::revoke(&mut tx, ctx.actor(), ctx.request_id(), &key).await?;
    tx.commit().await?;
    Ok(Json(key))
}
