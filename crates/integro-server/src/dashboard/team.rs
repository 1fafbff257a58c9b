//! The team: members and their roles, invitations (with the link to send,
//! shown once), API keys (the secret shown once), and the page where an
//! invited person joins. Every action is the API's handler.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use integro_core::{Permission, Role};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, first_page, render, render_with, when};
use super::session::{Acting, SignedIn};
use crate::api;
use crate::extract::ApiJson;
use crate::state::AppState;

/// A member as their row shows them.
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub is_me: bool,
}

pub struct InvitationView {
    pub id: Uuid,
    pub email: String,
    pub role: &'static str,
    pub state: String,
    pub expires: String,
}

pub struct KeyView {
    pub id: Uuid,
    pub name: String,
    pub role: &'static str,
    pub prefix: String,
    pub last_used: String,
    pub revoked: bool,
}

/// A secret answered once: the invitation link or the API key.
pub struct ShownOnce {
    pub what: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "team.html")]
struct TeamPage {
    layout: Layout,
    members: Vec<MemberView>,
    invitations: Vec<InvitationView>,
    keys: Vec<KeyView>,
    roles: Vec<&'static str>,
    can_manage_members: bool,
    can_manage: bool,
    /// A platform operator acts in any tenant without being a member.
    is_operator: bool,
    shown_once: Option<ShownOnce>,
}

async fn team_page(state: &AppState, acting: &Acting, shown_once: Option<ShownOnce>) -> PageResult {
    acting.ctx.require(Permission::Read)?;
    let ctx = || acting.ctx.clone();
    let members = api::members::list_members(State(state.clone()), ctx(), first_page())
        .await?
        .0
        .items
        .into_iter()
        .map(|m| MemberView {
            is_me: m.user.id == acting.signed.user.id,
            user_id: m.user.id,
            email: m.user.email,
            name: m.user.name.unwrap_or_default(),
            role: m.role.as_str(),
        })
        .collect();
    let can_manage_members = acting.ctx.role.allows(Permission::ManageMembers);
    let invitations = if can_manage_members {
        api::invitations::list_invitations(State(state.clone()), ctx(), first_page())
            .await?
            .0
            .items
            .into_iter()
            .map(|i| InvitationView {
                id: i.id,
                email: i.email,
                role: i.role.as_str(),
                state: i.state,
                expires: when(i.expires_at),
            })
            .collect()
    } else {
        Vec::new()
    };
    let keys = api::api_keys::list_api_keys(State(state.clone()), ctx(), first_page())
        .await?
        .0
        .items
        .into_iter()
        .map(|k| KeyView {
            id: k.id,
            name: k.name,
            role: k.role.as_str(),
            prefix: k.prefix,
            last_used: k.last_used_at.map(when).unwrap_or_else(|| "never".into()),
            revoked: k.revoked_at.is_some(),
        })
        .collect();
    // Only the roles this member may grant.
    let roles = Role::ALL
        .into_iter()
        .filter(|r| acting.ctx.role.may_grant(*r))
        .map(Role::as_str)
        .collect();
    let status = if shown_once.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(render_with(
        status,
        &TeamPage {
            layout: Layout::of(acting, "Team", "team"),
            members,
            invitations,
            keys,
            roles,
            can_manage_members,
            can_manage: acting.ctx.role.allows(Permission::Manage),
            is_operator: acting.signed.user.is_operator,
            shown_once,
        },
    ))
}

pub async fn team(State(state): State<AppState>, acting: Acting) -> PageResult {
    team_page(&state, &acting, None).await
}

fn role(text: &str) -> Result<Role, PageError> {
    text.parse()
        .map_err(|_| PageError::Invalid(format!("unknown role `{text}`")))
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn change_role(
    State(state): State<AppState>,
    acting: Acting,
    Path(user_id): Path<Uuid>,
    Form(form): Form<RoleForm>,
) -> PageResult {
    let request = api::members::MemberRequest {
        role: role(&form.role)?,
    };
    let _ = api::members::update_member(State(state), acting.ctx, Path(user_id), ApiJson(request))
        .await?;
    Ok(Redirect::to("/team").into_response())
}

pub async fn remove_member(
    State(state): State<AppState>,
    acting: Acting,
    Path(user_id): Path<Uuid>,
) -> PageResult {
    api::members::remove_member(State(state), acting.ctx, Path(user_id)).await?;
    Ok(Redirect::to("/team").into_response())
}

#[derive(Deserialize)]
pub struct InviteForm {
    email: String,
    role: String,
}

pub async fn invite(
    State(state): State<AppState>,
    acting: Acting,
    Form(form): Form<InviteForm>,
) -> PageResult {
    let request = api::invitations::InvitationRequest {
        email: form.email,
        role: role(&form.role)?,
    };
    let created = api::invitations::create_invitation(
        State(state.clone()),
        acting.ctx.clone(),
        ApiJson(request),
    )
    .await?
    .1
    .0;
    let link = format!(
        "{}/invitation?token={}",
        state.config.public_base(),
        form_urlencoded::byte_serialize(created.token.as_bytes()).collect::<String>()
    );
    team_page(
        &state,
        &acting,
        Some(ShownOnce {
            what: "Send this link to the person you invited; it is shown only now",
            value: link,
        }),
    )
    .await
}

pub async fn revoke_invitation(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    api::invitations::revoke_invitation(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to("/team").into_response())
}

#[derive(Deserialize)]
pub struct KeyForm {
    name: String,
    role: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    acting: Acting,
    Form(form): Form<KeyForm>,
) -> PageResult {
    let request = api::api_keys::CreateApiKeyRequest {
        name: form.name,
        role: role(&form.role)?,
    };
    let created =
        api::api_keys::create_api_key(State(state.clone()), acting.ctx.clone(), ApiJson(request))
            .await?
            .1
            .0;
    team_page(
        &state,
        &acting,
        Some(ShownOnce {
            what: "The new API key; copy it now, it is shown only once",
            value: created.key,
        }),
    )
    .await
}

pub async fn revoke_key(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let _ = api::api_keys::revoke_api_key(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to("/team").into_response())
}

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    token: String,
    /// This page's address, for signing in and coming back.
    back: String,
    signed_in_as: Option<String>,
    /// The session's CSRF token, when signed in.
    csrf: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct InvitationQuery {
    #[serde(default)]
    token: String,
}

/// Where an invitation link leads: choose a password (a new account), or,
/// signed in already, join with this account.
pub async fn invitation_form(
    Query(q): Query<InvitationQuery>,
    signed: Option<SignedIn>,
) -> Response {
    render(&InvitationPage {
        back: back_here(&q.token),
        token: q.token,
        csrf: signed.as_ref().map(|s| s.session.csrf_token.clone()),
        signed_in_as: signed.map(|s| s.user.email),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct JoinForm {
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    name: String,
}

pub async fn join(
    State(state): State<AppState>,
    signed: Option<SignedIn>,
    Form(form): Form<JoinForm>,
) -> PageResult {
    // A signed-in browser joins as its user: the API's handler takes the
    // user from a bearer token, so it gets a short one.
    let mut headers = HeaderMap::new();
    if let Some(signed) = &signed {
        let token = state
            .tokens
            .sign(signed.user.id, signed.user.token_generation, 60);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| PageError::Api(crate::error::ApiError::internal()))?,
        );
    }
    let request = api::invitations::AcceptRequest {
        token: form.token.clone(),
        password: (!form.password.is_empty()).then_some(form.password),
        name: (!form.name.trim().is_empty()).then(|| form.name.trim().to_string()),
    };
    match api::invitations::accept_invitation(State(state), headers, ApiJson(request)).await {
        Ok(_) if signed.is_some() => Ok(Redirect::to("/inbox").into_response()),
        Ok(_) => Ok(Redirect::to("/login?joined=1").into_response()),
        Err(e) => Ok(render_with(
            e.status,
            &InvitationPage {
                back: back_here(&form.token),
                token: form.token,
                csrf: signed.as_ref().map(|s| s.session.csrf_token.clone()),
                signed_in_as: signed.map(|s| s.user.email),
                error: Some(e.detail),
            },
        )),
    }
}

/// `/invitation?token=…`, encoded as the sign-in form's `next`.
fn back_here(token: &str) -> String {
    let here = format!(
        "/invitation?token={}",
        form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    form_urlencoded::byte_serialize(here.as_bytes()).collect()
}
