//! `/api/v1/tenants`: organisations, managed by platform operators; members see
//! their own.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_store::Page;
use integro_store::tenants::{self, Tenant};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, Auth, ListParams, Principal};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantRequest {
    pub name: String,
}

/// Create a tenant (platform operators).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    request_body = TenantRequest,
    responses(
        (status = 201, body = Tenant),
        (status = 403, description = "Not a platform operator", body = Problem),
        (status = 422, body = Problem),
    ))]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<TenantRequest>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    auth.require_operator()?;
    let mut tx = state.db.begin().await?;
    let tenant = tenants::create(&mut tx, &auth.actor, auth.request_id(), &req.name).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// List tenants: every tenant for operators, the caller's own otherwise.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = Page<Tenant>)))]
async fn list_tenants(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Page<Tenant>>> {
    let page = params.page()?;
    Ok(Json(match &auth.principal {
        Principal::User(u) if u.is_operator => tenants::list(&state.db, None, &page).await?,
        Principal::User(u) => tenants::list(&state.db, Some(u.id), &page).await?,
        Principal::ApiKey(k) => Page {
            items: tenants::get(&state.db, k.tenant_id)
                .await?
                .into_iter()
                .collect(),
            next_cursor: None,
        },
    }))
}

async fn visible_tenant(
    state: &AppState,
    auth: &Auth,
    id: Uuid,
) -> ApiResult<(Tenant, integro_core::Role)> {
    let role = auth.role_in(state, id).await?;
    let tenant = tenants::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok((tenant, role))
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = 404, body = Problem)))]
async fn get_tenant(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(visible_tenant(&state, &auth, id).await?.0))
}

/// Rename a tenant (operators and the tenant's owners).
#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    request_body = TenantRequest,
    responses((status = 200, body = Tenant), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn update_tenant(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<TenantRequest>,
) -> ApiResult<Json<Tenant>> {
    let (tenant, role) = visible_tenant(&state, &auth, id).await?;
    if role < integro_core::Role::Owner {
        return Err(ApiError::forbidden(
            "only the tenant's owners may rename it",
        ));
    }
    let mut tx = state.db.begin().await?;
    let tenant =
        tenants::rename(&mut tx, &auth.actor, auth.request_id(), &tenant, &req.name).await?;
    tx.commit().await?;
    Ok(Json(tenant))
}

/// Delete a tenant (operators). Soft delete: its API keys stop working and it
/// disappears from listings, but its records remain for the audit trail.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_tenant(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let (tenant, _) = visible_tenant(&state, &auth, id).await?;
    auth.require_operator()?;
    let mut tx = state.db.begin().await?;
    tenants::delete(&mut tx, &auth.actor, auth.request_id(), &tenant).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
