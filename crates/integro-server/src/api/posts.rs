//! `/api/v1/posts`: posts the tenant publishes on its X accounts, with an
//! approval step. Agents (and above) write, change, submit and delete
//! them; admins and owners approve or reject them. Approval schedules the
//! post: a `publish_post` job publishes it once at `scheduled_at` (or at
//! once). Every decision is audited; the job's outcome too, as Integro's.
//!
//! States: `draft` → `pending_approval` → (`approved`, in the same step)
//! `scheduled` → `published` | `failed`; `pending_approval` or `scheduled`
//! → `rejected`. A change to a `scheduled` post sends it back to
//! `pending_approval`; one to a `rejected` or `failed` post makes it a
//! `draft` again. Once its publication has begun (`publish_started_at`) a
//! post can no longer be changed, rejected or deleted, nor once published.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::{ChannelKind, Permission};
use integro_store::posts::{self, NewPost, Post, PostState};
use integro_store::{Conn, Page, Tx};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_posts, create_post))
        .routes(routes!(get_post, update_post, delete_post))
        .routes(routes!(submit_post))
        .routes(routes!(approve_post))
        .routes(routes!(reject_post))
}

/// A new post. Its length is counted as X counts it, simplified: a word
/// starting `http://` or `https://` counts 23, a character up to U+10FF
/// (and common punctuation) 1, any other (CJK, emoji) 2; at most 280.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostRequest {
    /// An X account of the tenant.
    pub account_id: Uuid,
    /// 1 to 280 weighted characters, trimmed.
    pub text: String,
    /// At most 4 `https` links of at most 2,000 characters. Media upload is
    /// not supported: they are published as links, each on a line after
    /// the text (23 characters each, with its line break 24, counted in
    /// the 280).
    #[serde(default)]
    pub media_urls: Vec<String>,
    /// RFC 3339, in the future and at most a year ahead: when the post is
    /// published once approved. Absent: at once on approval.
    pub scheduled_at: Option<String>,
    /// Disclosed to X as `made_with_ai` (AI-generated media).
    #[serde(default)]
    pub made_with_ai: bool,
    /// `true`: submitted for approval at once (`pending_approval`), not
    /// kept as a `draft`.
    #[serde(default)]
    pub submit: bool,
}

/// Fields left out stay as they are; `scheduled_at: null` clears the time
/// (published at once on approval).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostUpdate {
    pub text: Option<String>,
    pub media_urls: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    pub scheduled_at: Option<Option<String>>,
    pub made_with_ai: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Why, for the post's author: 1 to 500 characters.
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PostParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Only this account's posts.
    pub account_id: Option<Uuid>,
    /// `draft`, `pending_approval`, `scheduled`, `published`, `failed` or
    /// `rejected`.
    pub state: Option<PostState>,
}

fn parse_time(field: &str, text: &str) -> ApiResult<OffsetDateTime> {
    let at = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| ApiError::invalid_field(field, "must be an RFC 3339 time"))?;
    posts::check_scheduled_at(at)?;
    Ok(at)
}

/// The tenant's posts, newest first.
#[utoipa::path(get, path = "/api/v1/posts", tag = "posts", security(("bearer" = [])),
    params(PostParams), responses((status = 200, body = Page<Post>)))]
pub(crate) async fn list_posts(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<PostParams>,
) -> ApiResult<Json<Page<Post>>> {
    ctx.require(Permission::Read)?;
    let page = integro_store::PageRequest::parse(p.limit, p.cursor.as_deref())?;
    Ok(Json(
        posts::list(&state.db, ctx.tenant_id, p.account_id, p.state, &page).await?,
    ))
}

/// One post, with its state, approval and, once published, X's id.
#[utoipa::path(get, path = "/api/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = Post), (status = 404, body = Problem)))]
pub(crate) async fn get_post(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Post>> {
    ctx.require(Permission::Read)?;
    posts::get(&state.db, ctx.tenant_id, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("post"))
}

/// The account a post is for: an X account of the tenant.
pub(crate) async fn x_account(
    state: &AppState,
    ctx: &TenantCtx,
    id: Uuid,
) -> ApiResult<integro_store::accounts::Account> {
    let account = integro_store::accounts::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| {
            ApiError::invalid_field("account_id", "no account of the tenant has this id")
        })?;
    if account.kind != ChannelKind::X {
        return Err(ApiError::invalid_field(
            "account_id",
            format!("posts are published on X accounts, not {}", account.kind),
        ));
    }
    Ok(account)
}

/// Write a post (agents and above): a `draft`, or `pending_approval` with
/// `"submit": true`. 422 naming the field past X's limits, and past 1,000
/// posts not yet published.
#[utoipa::path(post, path = "/api/v1/posts", tag = "posts", security(("bearer" = [])),
    request_body = PostRequest,
    responses((status = 201, body = Post), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_post(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<PostRequest>,
) -> ApiResult<(StatusCode, Json<Post>)> {
    ctx.require(Permission::Converse)?;
    let text = posts::check_text(&req.text)?;
    let media_urls = posts::check_media(&req.media_urls)?;
    posts::check_length(&text, &media_urls)?;
    let scheduled_at = req
        .scheduled_at
        .as_deref()
        .map(|t| parse_time("scheduled_at", t))
        .transpose()?;
    x_account(&state, &ctx, req.account_id).await?;
    let new = NewPost {
        account_id: req.account_id,
        text,
        media_urls,
        made_with_ai: req.made_with_ai,
        scheduled_at,
        state: if req.submit {
            PostState::PendingApproval
        } else {
            PostState::Draft
        },
    };
    let mut tx = state.db.begin().await?;
    let post = posts::create(&mut tx, ctx.tenant_id, ctx.actor(), new).await?;
    audit(&mut tx, &ctx, "post.create", None, Some(&post)).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(post)))
}

/// Change a post's text, media, time or AI disclosure (agents and above).
/// An approved (`scheduled`) post goes back to `pending_approval`; a
/// `rejected` or `failed` one becomes a `draft`. 409 once its publication
/// has begun.
#[utoipa::path(patch, path = "/api/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")), request_body = PostUpdate,
    responses((status = 200, body = Post), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update_post(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<PostUpdate>,
) -> ApiResult<Json<Post>> {
    ctx.require(Permission::Converse)?;
    let text = req.text.as_deref().map(posts::check_text).transpose()?;
    let media_urls = req
        .media_urls
        .as_deref()
        .map(posts::check_media)
        .transpose()?;
    let scheduled_at = match &req.scheduled_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(t)) => Some(Some(parse_time("scheduled_at", t)?)),
    };
    change(&state, &ctx, id, "post.update", move |post| {
        let next = match post.state {
            PostState::Draft | PostState::PendingApproval => post.state,
            PostState::Scheduled => PostState::PendingApproval,
            PostState::Rejected | PostState::Failed => PostState::Draft,
            PostState::Published => return Err(conflict(post, "changed")),
        };
        if let Some(text) = text {
            post.text = text;
        }
        if let Some(media_urls) = media_urls {
            post.media_urls = media_urls;
        }
        if let Some(at) = scheduled_at {
            post.scheduled_at = at;
        }
        if let Some(made_with_ai) = req.made_with_ai {
            post.made_with_ai = made_with_ai;
        }
        posts::check_length(&post.text, &post.media_urls)?;
        if next != post.state {
            post.state = next;
            post.reject_reason = None;
            post.approved_by = None;
            post.approved_at = None;
        }
        Ok(())
    })
    .await
}

/// Ask for approval (agents and above): a `draft`, `rejected` or `failed`
/// post becomes `pending_approval`.
#[utoipa::path(post, path = "/api/v1/posts/{id}/submit", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = Post), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn submit_post(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Post>> {
    ctx.require(Permission::Converse)?;
    change(&state, &ctx, id, "post.submit", |post| {
        match post.state {
            PostState::Draft | PostState::Rejected | PostState::Failed => {}
            _ => return Err(conflict(post, "submitted")),
        }
        post.state = PostState::PendingApproval;
        post.reject_reason = None;
        Ok(())
    })
    .await
}

/// Approve a post waiting for it (admins and owners): it is `scheduled`
/// and published at `scheduled_at`, or at once without one. 422 when its
/// time has passed meanwhile (set another, or clear it).
#[utoipa::path(post, path = "/api/v1/posts/{id}/approve", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = Post), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn approve_post(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Post>> {
    ctx.require(Permission::Manage)?;
    let approver = ctx.actor().label.clone();
    change(&state, &ctx, id, "post.approve", move |post| {
        if post.state != PostState::PendingApproval {
            return Err(conflict(post, "approved"));
        }
        if let Some(at) = post.scheduled_at
            && at <= OffsetDateTime::now_utc()
        {
            return Err(ApiError::invalid_field(
                "scheduled_at",
                "has passed: set a new time, or clear it to publish at once",
            ));
        }
        post.state = PostState::Scheduled;
        post.approved_by = Some(approver);
        post.approved_at = Some(OffsetDateTime::now_utc());
        post.approval += 1;
        post.publish_started_at = None;
        post.error_code = None;
        post.error_message = None;
        Ok(())
    })
    .await
}

/// Reject a post waiting for approval or its time (admins and owners),
/// saying why.
#[utoipa::path(post, path = "/api/v1/posts/{id}/reject", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")), request_body = RejectRequest,
    responses((status = 200, body = Post), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn reject_post(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<RejectRequest>,
) -> ApiResult<Json<Post>> {
    ctx.require(Permission::Manage)?;
    let reason = posts::check_reason(&req.reason)?;
    change(&state, &ctx, id, "post.reject", move |post| {
        match post.state {
            PostState::PendingApproval | PostState::Scheduled => {}
            _ => return Err(conflict(post, "rejected")),
        }
        post.state = PostState::Rejected;
        post.reject_reason = Some(reason);
        Ok(())
    })
    .await
}

/// Delete a post not published (agents and above). 409 once published or
/// being published.
#[utoipa::path(delete, path = "/api/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn delete_post(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Converse)?;
    let mut tx = state.db.begin().await?;
    let post = locked(&mut tx, &ctx, id).await?;
    if post.state == PostState::Published {
        return Err(conflict(&post, "deleted"));
    }
    posts::delete(&mut tx, ctx.tenant_id, id).await?;
    audit(&mut tx, &ctx, "post.delete", Some(&post), None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 409: a post in its state cannot be `done`.
fn conflict(post: &Post, done: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("a {} post cannot be {done}", post.state),
    )
}

/// The post, locked for a change; 409 once its publication has begun.
async fn locked(tx: &mut Tx<'_>, ctx: &TenantCtx, id: Uuid) -> ApiResult<Post> {
    let post = posts::lock(tx, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("post"))?;
    if post.state == PostState::Scheduled && post.publish_started_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the post is being published: it can no longer be changed",
        ));
    }
    Ok(post)
}

/// Applies `apply` to the post, locked, and stores it with its audit entry
/// (and, once it is newly `scheduled`, its publish job) in one transaction.
async fn change(
    state: &AppState,
    ctx: &TenantCtx,
    id: Uuid,
    action: &str,
    apply: impl FnOnce(&mut Post) -> ApiResult<()>,
) -> ApiResult<Json<Post>> {
    let mut tx = state.db.begin().await?;
    let before = locked(&mut tx, ctx, id).await?;
    let mut post = before.clone();
    apply(&mut post)?;
    post.updated_at = OffsetDateTime::now_utc();
    if post.state == PostState::PendingApproval && before.state != PostState::PendingApproval {
        post.submitted_at = Some(post.updated_at);
    }
    posts::save(&mut tx, ctx.tenant_id, &post).await?;
    if post.approval != before.approval {
        x_account(state, ctx, post.account_id).await?;
        if let Some((field, why)) = posts::policy_conflict(&mut tx, ctx.tenant_id, &post).await? {
            return Err(ApiError::invalid_field(field, why));
        }
        integro_worker::publish::enqueue(
            &mut Conn::of(&mut tx),
            ctx.tenant_id,
            &post,
            ctx.request_id(),
        )
        .await?;
    }
    audit(&mut tx, ctx, action, Some(&before), Some(&post)).await?;
    tx.commit().await?;
    Ok(Json(post))
}

pub(crate) async fn audit(
    tx: &mut Tx<'_>,
    ctx: &TenantCtx,
    action: &str,
    before: Option<&Post>,
    after: Option<&Post>,
) -> ApiResult<()> {
    let id = after.or(before).map(|p| p.id).unwrap_or_default();
    let mut change = integro_store::audit::Change::new(action, "post", id).tenant(ctx.tenant_id);
    if let Some(before) = before {
        change = change.before(before);
    }
    if let Some(after) = after {
        change = change.after(after);
    }
    integro_store::audit::record(tx, ctx.actor(), ctx.request_id(), change).await?;
    Ok(())
}
