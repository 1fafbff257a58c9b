//! `/api/v1/conversations`: conversations, their messages, and messages an
//! agent sends by hand (they go out through the same egress as the bot's).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::{Permission, Template};
use integro_engine::handoff::{self, Transition};
use integro_store::Conn;
use integro_store::Page;
use integro_store::conversations::{
    self, Assignee, Conversation, ConversationFilter, ConversationState, Message, MessageSender,
    Outgoing,
};
use integro_store::labels;
use integro_store::memory::{self, Transition as TransitionRecord};
use integro_store::notes::{self, Note};
use integro_store::reads;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ListParams, Principal, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .routes(routes!(get_conversation))
        .routes(routes!(list_messages, send_message))
        .routes(routes!(handoff_conversation))
        .routes(routes!(resume_conversation))
        .routes(routes!(reset_conversation))
        .routes(routes!(list_transitions))
        .routes(routes!(close_conversation))
        .routes(routes!(assign_conversation))
        .routes(routes!(list_notes, add_note))
        .routes(routes!(get_labels, set_labels))
        .routes(routes!(mark_read))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub account_id: Option<Uuid>,
    pub bot_id: Option<Uuid>,
    /// `bot`, `human` or `closed`.
    pub state: Option<ConversationState>,
    /// RFC 3339: only conversations with a message since then.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>)]
    pub since: Option<OffsetDateTime>,
    /// Only those assigned to this user.
    pub assignee_id: Option<Uuid>,
    /// `true`: only those assigned to nobody.
    pub unassigned: Option<bool>,
    /// Only those carrying this label (by name, in any case).
    pub label: Option<String>,
}

/// The tenant's conversations, filtered by account, bot, state, activity,
/// assignee and label. Each carries its labels and, for a signed-in user
/// (not an API key), `unread`: the contact's messages since that user last
/// read it (counted up to 100).
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", security(("bearer" = [])),
    params(ConversationParams), responses((status = 200, body = Page<Conversation>)))]
async fn list_conversations(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<ConversationParams>,
) -> ApiResult<Json<Page<Conversation>>> {
    ctx.require(Permission::Read)?;
    let page = integro_store::PageRequest::parse(p.limit, p.cursor.as_deref())?;
    let assignee = match (p.assignee_id, p.unassigned) {
        (Some(_), Some(true)) => {
            return Err(ApiError::invalid_field(
                "unassigned",
                "give assignee_id or unassigned=true, not both",
            ));
        }
        (Some(user), _) => Some(Assignee::User(user)),
        (None, Some(true)) => Some(Assignee::Nobody),
        (None, _) => None,
    };
    let filter = ConversationFilter {
        account_id: p.account_id,
        bot_id: p.bot_id,
        state: p.state,
        since: p.since.map(integro_store::db::to_ms),
        assignee,
        label: p.label.filter(|l| !l.trim().is_empty()),
    };
    let mut found = conversations::list(&state.db, ctx.tenant_id, &filter, &page).await?;
    describe(&state, &ctx, &mut found.items).await?;
    Ok(Json(found))
}

/// Fills in the conversations' labels and, for a signed-in user, their
/// unread counts.
async fn describe(state: &AppState, ctx: &TenantCtx, items: &mut [Conversation]) -> ApiResult<()> {
    let ids: Vec<Uuid> = items.iter().map(|c| c.id).collect();
    let mut found = labels::of_conversations(&state.db, ctx.tenant_id, &ids).await?;
    let unread = match &ctx.auth.principal {
        Principal::User(user) => Some(reads::unread(&state.db, user.id, &ids).await?),
        Principal::ApiKey(_) => None,
    };
    for c in items {
        c.labels = found.remove(&c.id).unwrap_or_default();
        c.unread = unread.as_ref().map(|u| u.get(&c.id).copied().unwrap_or(0));
    }
    Ok(())
}

/// `find`, with the conversation's labels and unread count.
async fn find_described(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Conversation> {
    let mut conversation = find(state, ctx, id).await?;
    describe(state, ctx, std::slice::from_mut(&mut conversation)).await?;
    Ok(conversation)
}

async fn find(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Conversation> {
    conversations::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))
}

/// One conversation with its contact.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = Problem)))]
async fn get_conversation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conversation>> {
    ctx.require(Permission::Read)?;
    Ok(Json(find_described(&state, &ctx, id).await?))
}

/// A conversation's messages, oldest first, with their delivery status.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id"), ListParams),
    responses((status = 200, body = Page<Message>), (status = 404, body = Problem)))]
async fn list_messages(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Message>>> {
    ctx.require(Permission::Read)?;
    let conversation = find(&state, &ctx, id).await?;
    Ok(Json(
        conversations::messages(&state.db, ctx.tenant_id, conversation.id, &p.page()?).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub text: Option<String>,
    /// A media file the provider fetches by URL.
    pub media_url: Option<String>,
    /// A WhatsApp template instead of free text.
    pub template: Option<Template>,
}

/// Send a message by hand into a conversation. It is queued and goes out
/// through the channel like the bot's replies.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")), request_body = SendMessage,
    responses((status = 202, body = Message), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn send_message(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<SendMessage>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    ctx.require(Permission::Converse)?;
    let conversation = find(&state, &ctx, id).await?;
    let text = req
        .text
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if let Some(text) = &text {
        integro_store::fields::check_text("text", text, integro_store::fields::MAX_MESSAGE_CHARS)?;
    }
    if text.is_none() && req.media_url.is_none() && req.template.is_none() {
        return Err(ApiError::invalid_field(
            "text",
            "give a text, a media_url or a template",
        ));
    }
    if let Some(url) = &req.media_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(ApiError::invalid_field(
            "media_url",
            "must be an http(s) URL the provider can fetch",
        ));
    }
    let mut tx = state.db.begin().await?;
    // An agent writing takes the conversation over: the bot goes quiet.
    if conversation.state == ConversationState::Bot {
        memory::transition(
            &mut Conn::of(&mut tx),
            conversation.tenant_id,
            conversation.id,
            ConversationState::Bot,
            ConversationState::Human,
            "agent_message",
            Some(&ctx.actor().label),
        )
        .await?;
    } else {
        memory::human_active(&mut Conn::of(&mut tx), conversation.id).await?;
    }
    let message = conversations::queue_outbound(
        &mut Conn::of(&mut tx),
        &conversation,
        Outgoing {
            sender: MessageSender::Agent,
            text,
            media_url: req.media_url,
            template: req.template,
            reply_to: None,
            request_id: ctx.request_id().map(String::from),
            traceparent: integro_core::trace::traceparent(),
            ..Outgoing::default()
        },
    )
    .await?;
    tx.commit().await?;
    state.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(message)))
}

/// Applies a state change asked through the API, recording who asked.
async fn move_conversation(
    state: &AppState,
    ctx: &TenantCtx,
    id: Uuid,
    transition: Transition,
    reason: &str,
) -> ApiResult<Json<Conversation>> {
    ctx.require(Permission::Converse)?;
    let conversation = find(state, ctx, id).await?;
    let to = handoff::next_state(conversation.state, transition)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "invalid_transition", e.to_string()))?;
    let mut tx = state.db.begin().await?;
    memory::transition(
        &mut Conn::of(&mut tx),
        conversation.tenant_id,
        conversation.id,
        conversation.state,
        to,
        reason,
        Some(&ctx.actor().label),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(find_described(state, ctx, id).await?))
}

/// Hand the conversation to a human: the bot stays silent, inbound messages
/// still land.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/handoff", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn handoff_conversation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conversation>> {
    move_conversation(&state, &ctx, id, Transition::ApiHandoff, "api_handoff").await
}

/// Give the conversation back to the bot.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/resume", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn resume_conversation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conversation>> {
    move_conversation(&state, &ctx, id, Transition::Resume, "resume").await
}

/// Clear the conversation's memory: the LLM no longer sees the earlier
/// messages, and rule variables are forgotten. The messages stay stored.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/reset", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = Problem)))]
pub(crate) async fn reset_conversation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conversation>> {
    ctx.require(Permission::Converse)?;
    let conversation = find(&state, &ctx, id).await?;
    let mut tx = state.db.begin().await?;
    memory::reset(&mut Conn::of(&mut tx), conversation.id).await?;
    integro_store::audit::record(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        integro_store::audit::Change::new("conversation.reset", "conversation", conversation.id)
            .tenant(conversation.tenant_id),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(conversation))
}

/// Who moved the conversation between bot, human and closed, and why.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/transitions", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Vec<TransitionRecord>), (status = 404, body = Problem)))]
async fn list_transitions(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<TransitionRecord>>> {
    ctx.require(Permission::Read)?;
    let conversation = find(&state, &ctx, id).await?;
    Ok(Json(memory::transitions(&state.db, conversation.id).await?))
}

/// Close the conversation: the contact's next message opens a new one.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/close", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn close_conversation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conversation>> {
    move_conversation(&state, &ctx, id, Transition::Close, "api_close").await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// A member of the tenant who may converse (agent or above), or `null`
    /// for nobody.
    pub user_id: Option<Uuid>,
}

/// Assign the conversation to a member, or to nobody.
#[utoipa::path(put, path = "/api/v1/conversations/{id}/assignee", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")), request_body = AssignRequest,
    responses((status = 200, body = Conversation), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn assign_conversation(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<AssignRequest>,
) -> ApiResult<Json<Conversation>> {
    ctx.require(Permission::Converse)?;
    let conversation = find(&state, &ctx, id).await?;
    if let Some(user) = req.user_id {
        let role = integro_store::users::role_in(&state.db, ctx.tenant_id, user).await?;
        match role {
            None => {
                return Err(ApiError::invalid_field(
                    "user_id",
                    "not a member of this tenant",
                ));
            }
            Some(role) if !role.allows(Permission::Converse) => {
                return Err(ApiError::invalid_field(
                    "user_id",
                    format!("the {role} role cannot converse; assign an agent or above"),
                ));
            }
            Some(_) => {}
        }
    }
    let mut tx = state.db.begin().await?;
    conversations::assign(&mut tx, conversation.id, req.user_id).await?;
    integro_store::audit::record(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        integro_store::audit::Change::new("conversation.assign", "conversation", conversation.id)
            .tenant(conversation.tenant_id)
            .before(&serde_json::json!({ "assignee_id": conversation.assignee_id }))
            .after(&serde_json::json!({ "assignee_id": req.user_id })),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(find_described(&state, &ctx, id).await?))
}

/// The conversation's private notes, oldest first.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/notes", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Vec<Note>), (status = 404, body = Problem)))]
pub(crate) async fn list_notes(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<Note>>> {
    ctx.require(Permission::Read)?;
    let conversation = find(&state, &ctx, id).await?;
    Ok(Json(
        notes::list(&state.db, ctx.tenant_id, conversation.id).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub text: String,
}

/// Add a private note: seen by the tenant's members, never sent.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/notes", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")), request_body = NoteRequest,
    responses((status = 201, body = Note), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn add_note(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<NoteRequest>,
) -> ApiResult<(StatusCode, Json<Note>)> {
    ctx.require(Permission::Converse)?;
    let conversation = find(&state, &ctx, id).await?;
    let text = req.text.trim();
    if text.is_empty() {
        return Err(ApiError::invalid_field("text", "must not be empty"));
    }
    integro_store::fields::check_text("text", text, integro_store::fields::MAX_MESSAGE_CHARS)?;
    let mut tx = state.db.begin().await?;
    let note = notes::add(&mut tx, ctx.tenant_id, conversation.id, ctx.actor(), text)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "too_many_notes",
                format!(
                    "a conversation holds at most {} notes",
                    notes::MAX_PER_CONVERSATION
                ),
            )
        })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(note)))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelSet {
    /// Label names: 1 to 40 letters, digits, spaces, `-` and `_`; at most
    /// 20 on a conversation. A name the tenant does not use yet creates the
    /// label (at most 100 per tenant); one it uses in another case is that
    /// label.
    pub labels: Vec<String>,
}

/// The conversation's labels, by name.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/labels", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = LabelSet), (status = 404, body = Problem)))]
pub(crate) async fn get_labels(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<LabelSet>> {
    ctx.require(Permission::Read)?;
    let conversation = find(&state, &ctx, id).await?;
    Ok(Json(LabelSet {
        labels: labels::of_conversation(&state.db, ctx.tenant_id, conversation.id).await?,
    }))
}

/// Replace the conversation's labels (agents and above; audited as
/// `conversation.labels`). An empty list takes every label off.
#[utoipa::path(put, path = "/api/v1/conversations/{id}/labels", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")), request_body = LabelSet,
    responses((status = 200, body = LabelSet), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn set_labels(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<LabelSet>,
) -> ApiResult<Json<LabelSet>> {
    ctx.require(Permission::Converse)?;
    let conversation = find(&state, &ctx, id).await?;
    let wanted = labels::check_set(&req.labels)?;
    let before = labels::of_conversation(&state.db, ctx.tenant_id, conversation.id).await?;
    let mut tx = state.db.begin().await?;
    let after = labels::set(&mut tx, ctx.tenant_id, conversation.id, &wanted).await?;
    integro_store::audit::record(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        integro_store::audit::Change::new("conversation.labels", "conversation", conversation.id)
            .tenant(conversation.tenant_id)
            .before(&serde_json::json!({ "labels": before }))
            .after(&serde_json::json!({ "labels": after })),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(LabelSet { labels: after }))
}

/// Mark the conversation read by the signed-in user, up to its latest
/// message: its `unread` count goes to 0. Opening it in the dashboard does
/// the same. API keys have no read marks (403).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conversation>> {
    ctx.require(Permission::Read)?;
    let conversation = find(&state, &ctx, id).await?;
    let Principal::User(user) = &ctx.auth.principal else {
        return Err(ApiError::forbidden(
            "read marks are a signed-in user's; an API key has none",
        ));
    };
    let latest =
        conversations::recent_messages(&state.db, ctx.tenant_id, conversation.id, 1).await?;
    if let Some(last) = latest.last() {
        reads::mark(&state.db, ctx.tenant_id, user.id, conversation.id, last.id).await?;
    }
    Ok(Json(find_described(&state, &ctx, id).await?))
}
