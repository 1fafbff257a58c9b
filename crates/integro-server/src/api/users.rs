//! `/api/v1/tenants/{id}/users` (a tenant's people and their roles) and
//! `/api/v1/users/{id}/…` (operators disabling or enabling an account).
//! People join a tenant by invitation (`invitations.rs`); nobody sets
//! another person's password through the API.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_store::Page;
use integro_store::users::{self, Member, User};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
}

/// The users of a tenant with their roles.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/users", tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Tenant id"), ListParams),
    responses(
        (status = 200, description = "A page of members", body = Page<Member>),
        (status = 404, description = "No such tenant visible to the caller", body = Problem),
    ))]
async fn list_users(
    State(state): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<Uuid>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Page<Member>>> {
    let role = auth.role_in(&state, tenant_id).await?;
    if !role.allows(Permission::Read) {
        return Err(ApiError::forbidden("no access to this tenant's users"));
    }
    Ok(Json(
        users::list_members(&state.db, tenant_id, &params.page()?).await?,
    ))
}

async fn set_disabled(state: &AppState, auth: &Auth, id: Uuid, disabled: bool) -> ApiResult<User> {
    auth.require_operator()?;
    if disabled && matches!(&auth.principal, crate::extract::Principal::User(u) if u.id == id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "operators cannot disable their own account",
        ));
    }
    let mut tx = state.db.begin().await?;
    users::set_disabled(&mut tx, &auth.actor, auth.request_id(), id, disabled).await?;
    tx.commit().await?;
    users::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

/// Disable an account (platform operators): it can no longer sign in, and
/// its refresh and access tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The disabled user", body = User),
        (status = 403, description = "Not a platform operator", body = Problem),
        (status = 409, description = "Operators cannot disable themselves", body = Problem),
        (status = 404, description = "No such user", body = Problem),
    ))]
async fn disable_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<User>> {
    Ok(Json(set_disabled(&state, &auth, id, true).await?))
}

/// Enable a disabled account again (platform operators).
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user, enabled", body = User),
        (status = 403, description = "Not a platform operator", body = Problem),
        (status = 404, description = "No such user", body = Problem),
    ))]
async fn enable_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<User>> {
    Ok(Json(set_disabled(&state, &auth, id, false).await?))
}
