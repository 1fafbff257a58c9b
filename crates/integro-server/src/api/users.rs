//! `/api/v1/tenants/{id}/users`: the people of a tenant and their roles.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::{Permission, Role};
use integro_store::Page;
use integro_store::credentials::generate_password;
use integro_store::users::{self, Member, NewUser};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(add_user, list_users))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUserRequest {
    pub email: String,
    pub role: Role,
    pub name: Option<String>,
    /// For a new user; generated and returned once when omitted. Ignored for
    /// someone who already has an account (they keep their password).
    pub password: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddUserResponse {
    #[serde(flatten)]
    pub member: Member,
    /// Whether a new account was created (false: an existing one was added).
    pub created: bool,
    /// The generated password, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Add a user to a tenant with a role, creating the account when needed.
/// Owners and admins may do this (admins cannot grant owner); so may operators.
#[utoipa::path(post, path = "/api/v1/tenants/{id}/users", tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    request_body = AddUserRequest,
    responses(
        (status = 201, body = AddUserResponse),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    ))]
async fn add_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<Uuid>,
    ApiJson(req): ApiJson<AddUserRequest>,
) -> ApiResult<(StatusCode, Json<AddUserResponse>)> {
    let role = auth.role_in(&state, tenant_id).await?;
    if !role.may_grant(req.role) {
        return Err(ApiError::forbidden(format!(
            "the {role} role may not grant the {} role",
            req.role
        )));
    }
    let existing = users::find_by_email(&state.db, &req.email).await?;
    let generated = match (&existing, &req.password) {
        (None, None) => Some(generate_password()),
        _ => None,
    };
    let mut tx = state.db.begin().await?;
    let (user, created) = match existing {
        Some(user) => (user, false),
        None => {
            let password = req
                .password
                .as_deref()
                .or(generated.as_deref())
                .unwrap_or_default();
            let new = NewUser {
                email: &req.email,
                name: req.name.as_deref(),
                password,
                is_operator: false,
            };
            (
                users::create(&mut tx, &auth.actor, auth.request_id(), new).await?,
                true,
            )
        }
    };
    users::set_membership(
        &mut tx,
        &auth.actor,
        auth.request_id(),
        tenant_id,
        user.id,
        req.role,
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AddUserResponse {
            member: Member {
                user,
                role: req.role,
            },
            created,
            password: generated,
        }),
    ))
}

/// The users of a tenant with their roles.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/users", tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Tenant id"), ListParams),
    responses((status = 200, body = Page<Member>), (status = 404, body = Problem)))]
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
