//! `/api/v1/invitations`: how people join a tenant. An admin invites an email
//! with a role and passes on the one-time token; the person accepts it with a
//! password of their own (a new account) or signed in (an existing one).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use integro_core::{Permission, Role};
use integro_store::Page;
use integro_store::invitations::{self, AcceptError, Acceptance, Invitation};
use integro_store::users::Member;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, Auth, ListParams, Principal, REQUEST_ID_HEADER, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_invitation, list_invitations))
        .routes(routes!(get_invitation, revoke_invitation))
        .routes(routes!(accept_invitation))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedInvitation {
    #[serde(flatten)]
    pub invitation: Invitation,
    /// The one-time token to pass on to the person invited, shown this once.
    /// They accept it at `POST /api/v1/invitations/accept`.
    pub token: String,
}

/// Invite someone into the tenant with a role. The answer is the same
/// whether or not the email has an account; no membership exists until the
/// invitation is accepted. Admins may invite up to admin, owners anyone.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "users",
    security(("bearer" = [])),
    request_body = InvitationRequest,
    responses(
        (status = 201, description = "Invited; the token is shown once", body = CreatedInvitation),
        (status = 403, description = "The caller may not grant that role", body = Problem),
        (status = 409, description = "Already a member", body = Problem),
        (status = 422, description = "Invalid email or role", body = Problem),
    ))]
pub(crate) async fn create_invitation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<InvitationRequest>,
) -> ApiResult<(StatusCode, Json<CreatedInvitation>)> {
    ctx.require(Permission::ManageMembers)?;
    if !ctx.role.may_grant(req.role) {
        return Err(ApiError::forbidden(format!(
            "the {} role may not grant the {} role",
            ctx.role, req.role
        )));
    }
    let mut tx = state.db.begin().await?;
    let (invitation, token) = invitations::create(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        &req.email,
        req.role,
        invitations::DEFAULT_TTL_SECS,
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedInvitation { invitation, token }),
    ))
}

/// The tenant's invitations (pending, accepted, revoked, expired).
#[utoipa::path(get, path = "/api/v1/invitations", tag = "users",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of invitations", body = Page<Invitation>),
        (status = 403, description = "Not allowed to manage members", body = Problem),
    ))]
pub(crate) async fn list_invitations(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Page<Invitation>>> {
    ctx.require(Permission::ManageMembers)?;
    Ok(Json(
        invitations::list(&state.db, ctx.tenant_id, &params.page()?).await?,
    ))
}

async fn find(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Invitation> {
    ctx.require(Permission::ManageMembers)?;
    invitations::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))
}

/// One invitation (never its token).
#[utoipa::path(get, path = "/api/v1/invitations/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invitation id")),
    responses(
        (status = 200, description = "The invitation", body = Invitation),
        (status = 404, description = "No such invitation in this tenant", body = Problem),
    ))]
async fn get_invitation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Invitation>> {
    Ok(Json(find(&state, &ctx, id).await?))
}

/// Revoke a pending invitation: its token stops working.
#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invitation id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such invitation in this tenant", body = Problem),
        (status = 409, description = "Already accepted", body = Problem),
    ))]
pub(crate) async fn revoke_invitation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let invitation = find(&state, &ctx, id).await?;
    let mut tx = state.db.begin().await?;
    invitations::revoke(&mut tx, ctx.actor(), ctx.request_id(), &invitation).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The invitation's token.
    pub token: String,
    /// The password of the new account (when the email has none yet).
    pub password: Option<String>,
    /// The new account's display name.
    pub name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedInvitation {
    pub tenant_id: Uuid,
    #[serde(flatten)]
    pub member: Member,
}

/// Accept an invitation. For an email without an account, this creates it
/// with the password given; for one with an account, sign in as it first
/// and send its access token. Works once.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "users",
    request_body = AcceptRequest,
    responses(
        (status = 201, description = "A member of the tenant now", body = AcceptedInvitation),
        (status = 401, description = "The email has an account: sign in as it", body = Problem),
        (status = 403, description = "Signed in as another account", body = Problem),
        (status = 404, description = "Unknown, expired, revoked or used token", body = Problem),
        (status = 422, description = "A password is needed, or too short", body = Problem),
    ))]
pub(crate) async fn accept_invitation(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AcceptRequest>,
) -> ApiResult<(StatusCode, Json<AcceptedInvitation>)> {
    let signed_in = match headers.contains_key(header::AUTHORIZATION) {
        true => match Auth::authenticate(&state, &headers).await?.principal {
            Principal::User(user) => Some(user),
            Principal::ApiKey(_) => {
                return Err(ApiError::forbidden(
                    "an invitation is accepted by a person, not an API key",
                ));
            }
        },
        false => None,
    };
    let request_id = headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok());
    let mut tx = state.db.begin().await?;
    let accepted = invitations::accept(
        &mut tx,
        request_id,
        Acceptance {
            token: req.token.trim(),
            password: req.password.as_deref(),
            name: req.name.as_deref(),
            signed_in: signed_in.as_ref(),
        },
    )
    .await?;
    let (tenant_id, member) = match accepted {
        Ok(accepted) => accepted,
        Err(e) => {
            let detail = e.to_string();
            return Err(match e {
                AcceptError::Invalid => ApiError::new(StatusCode::NOT_FOUND, "not_found", detail),
                AcceptError::SignInRequired => ApiError::unauthorized("sign_in_required", detail),
                AcceptError::OtherAccount => ApiError::forbidden(detail),
                AcceptError::PasswordRequired => ApiError::invalid_field("password", detail),
            });
        }
    };
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AcceptedInvitation { tenant_id, member }),
    ))
}
