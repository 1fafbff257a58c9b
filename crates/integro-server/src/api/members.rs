//! `/api/v1/members`: the people of the caller's tenant: change a role,
//! remove someone. The rules (nobody manages someone above themselves, the
//! last owner stays) live in `integro_store::users::change_member`, shared
//! by every caller.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::{Permission, Role};
use integro_store::Page;
use integro_store::users::{self, Member, MemberChange};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ListParams, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members))
        .routes(routes!(update_member, remove_member))
}

/// The members of the tenant with their roles.
#[utoipa::path(get, path = "/api/v1/members", tag = "users",
    security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, description = "A page of members", body = Page<Member>)))]
pub(crate) async fn list_members(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Page<Member>>> {
    ctx.require(Permission::Read)?;
    Ok(Json(
        users::list_members(&state.db, ctx.tenant_id, &params.page()?).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    pub role: Role,
}

async fn change(
    state: &AppState,
    ctx: &TenantCtx,
    user_id: Uuid,
    change: MemberChange,
) -> ApiResult<()> {
    ctx.require(Permission::ManageMembers)?;
    let mut tx = state.db.begin().await?;
    users::change_member(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        user_id,
        ctx.role,
        change,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Change a member's role. Nobody may change the role of someone above
/// themselves or grant a role above their own; the tenant's last owner
/// cannot be demoted.
#[utoipa::path(patch, path = "/api/v1/members/{user_id}", tag = "users",
    security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    request_body = MemberRequest,
    responses(
        (status = 200, description = "The member with the new role", body = Member),
        (status = 403, description = "The member's role or the new one is above the caller's", body = Problem),
        (status = 404, description = "Not a member of this tenant", body = Problem),
        (status = 409, description = "The tenant's last owner", body = Problem),
    ))]
pub(crate) async fn update_member(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(user_id): Path<Uuid>,
    ApiJson(req): ApiJson<MemberRequest>,
) -> ApiResult<Json<Member>> {
    change(&state, &ctx, user_id, MemberChange::Role(req.role)).await?;
    let user = users::get(&state.db, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    Ok(Json(Member {
        user,
        role: req.role,
    }))
}

/// Remove a member from the tenant. Their sessions end at once (refresh
/// and access tokens). Nobody may remove someone above themselves; the last
/// owner cannot be removed.
#[utoipa::path(delete, path = "/api/v1/members/{user_id}", tag = "users",
    security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The member's role is above the caller's", body = Problem),
        (status = 404, description = "Not a member of this tenant", body = Problem),
        (status = 409, description = "The tenant's last owner", body = Problem),
    ))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(user_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    change(&state, &ctx, user_id, MemberChange::Remove).await?;
    Ok(StatusCode::NO_CONTENT)
}
