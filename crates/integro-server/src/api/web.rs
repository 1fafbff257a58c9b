//! `/api/v1/web/{account_id}/…`: Integro's own channel. A client (a site's
//! chat widget backend, a test script) posts a contact's messages and reads
//! the bot's replies by polling or from a server-sent-events stream, so a bot
//! can be tried without any external provider.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use integro_core::{ChannelKind, InboundMessage, Permission};
use integro_store::Conn;
use integro_store::Page;
use integro_store::accounts::{self, Account};
use integro_store::conversations::{self, Direction, Ingested, Message};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;
use crate::streams::StreamSlot;

pub mod public;

/// The web channel's routes for the tenant's callers (the public mode's
/// settings among them); the visitors' own are `public::visitor_router`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_message, read_messages))
        .routes(routes!(events))
        .merge(public::settings_router())
}

/// How long one event stream stays open.
const MAX_STREAM: Duration = Duration::from_secs(600);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebMessage {
    /// The contact's id in your system (a visitor or user id).
    pub contact_id: String,
    /// The contact's display name.
    pub name: Option<String>,
    pub text: String,
    /// Your id for this message: sending it again is recognised as a duplicate.
    pub message_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebAccepted {
    pub message_id: Option<Uuid>,
    /// True when this message id was seen before (nothing more was done).
    pub duplicate: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactParams {
    pub contact_id: String,
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: only messages after it.
    pub cursor: Option<String>,
}

async fn web_account(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Account> {
    accounts::get(&state.db, ctx.tenant_id, id)
        .await?
        .filter(|a| a.kind == ChannelKind::Web)
        .ok_or_else(|| ApiError::not_found("web account"))
}

fn check_contact(contact_id: &str) -> ApiResult<()> {
    if contact_id.trim().is_empty() || contact_id.len() > 200 {
        return Err(ApiError::invalid_field(
            "contact_id",
            "must be 1 to 200 characters",
        ));
    }
    Ok(())
}

/// A contact's message to the bot. Stored and queued like any channel's.
#[utoipa::path(post, path = "/api/v1/web/{account_id}/messages", tag = "web", security(("bearer" = [])),
    params(("account_id" = Uuid, Path, description = "Web channel account id")), request_body = WebMessage,
    responses((status = 202, body = WebAccepted), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn post_message(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(account_id): Path<Uuid>,
    ApiJson(req): ApiJson<WebMessage>,
) -> ApiResult<(StatusCode, Json<WebAccepted>)> {
    ctx.require(Permission::Converse)?;
    let account = web_account(&state, &ctx, account_id).await?;
    check_contact(&req.contact_id)?;
    let inbound = InboundMessage {
        provider_message_id: req
            .message_id
            .unwrap_or_else(|| integro_core::new_id().to_string()),
        from: req.contact_id.trim().to_string(),
        from_name: req.name,
        phone_e164: None,
        kind: "text".into(),
        text: Some(clean_text(&req.text)?),
        media: Vec::new(),
        reply_to: None,
    };
    accept(&state, &account, &inbound, ctx.request_id()).await
}

/// A message's text as it is stored: control characters other than line
/// breaks and tabs dropped (they carry nothing a bot should read); refused
/// when nothing is left or when longer than a message may be.
fn clean_text(text: &str) -> ApiResult<String> {
    let text: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    if text.trim().is_empty() {
        return Err(ApiError::invalid_field("text", "must not be empty"));
    }
    integro_store::fields::check_text("text", &text, integro_store::fields::MAX_MESSAGE_CHARS)?;
    Ok(text)
}

/// Stores a contact's message and queues the job that answers it: 202, or
/// 200 when its id was seen before.
async fn accept(
    state: &AppState,
    account: &Account,
    inbound: &InboundMessage,
    request_id: Option<&str>,
) -> ApiResult<(StatusCode, Json<WebAccepted>)> {
    let mut tx = state.db.begin().await?;
    let outcome =
        conversations::ingest(&mut Conn::of(&mut tx), account, inbound, request_id).await?;
    tx.commit().await?;
    state.wake.notify_one();
    Ok(match outcome {
        Ingested::Stored { message_id } => (
            StatusCode::ACCEPTED,
            Json(WebAccepted {
                message_id: Some(message_id),
                duplicate: false,
            }),
        ),
        Ingested::Duplicate => (
            StatusCode::OK,
            Json(WebAccepted {
                message_id: None,
                duplicate: true,
            }),
        ),
    })
}

/// The contact's conversation, oldest first: their messages and the bot's
/// replies. Poll with the `next_cursor` of the last page to get only new ones.
#[utoipa::path(get, path = "/api/v1/web/{account_id}/messages", tag = "web", security(("bearer" = [])),
    params(("account_id" = Uuid, Path, description = "Web channel account id"), ContactParams),
    responses((status = 200, body = Page<Message>), (status = 404, body = Problem)))]
async fn read_messages(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(account_id): Path<Uuid>,
    Query(p): Query<ContactParams>,
) -> ApiResult<Json<Page<Message>>> {
    ctx.require(Permission::Read)?;
    let account = web_account(&state, &ctx, account_id).await?;
    let messages = contact_messages(&state, &account, &p.contact_id, p.limit, p.cursor).await?;
    Ok(Json(messages))
}

/// A page of the contact's open conversation, oldest first, after `cursor`.
/// An empty page keeps the caller's place, so polling never starts over.
async fn contact_messages(
    state: &AppState,
    account: &Account,
    contact: &str,
    limit: Option<u32>,
    cursor: Option<String>,
) -> ApiResult<Page<Message>> {
    let tenant = account.tenant_id;
    let page = integro_store::PageRequest::parse(limit, cursor.as_deref())?;
    let Some(conversation) =
        conversations::find_open(&state.db, tenant, account.id, contact).await?
    else {
        return Ok(Page {
            items: Vec::new(),
            next_cursor: cursor,
        });
    };
    let mut messages = conversations::messages(&state.db, tenant, conversation.id, &page).await?;
    if messages.next_cursor.is_none() {
        messages.next_cursor = messages.items.last().map(|m| cursor_after(m.id)).or(cursor);
    }
    Ok(messages)
}

fn cursor_after(id: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    pub contact_id: String,
}

/// A server-sent-events stream of the bot's replies (and their delivery
/// status) to one contact: `event: message`, data = the message as JSON.
#[utoipa::path(get, path = "/api/v1/web/{account_id}/events", tag = "web", security(("bearer" = [])),
    params(("account_id" = Uuid, Path, description = "Web channel account id"), EventParams),
    responses((status = 200, description = "text/event-stream of messages", content_type = "text/event-stream"), (status = 404, body = Problem),
        (status = 429, description = "Too many streams open for the caller or the tenant", body = Problem)))]
async fn events(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(account_id): Path<Uuid>,
    Query(p): Query<EventParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    ctx.require(Permission::Read)?;
    let account = web_account(&state, &ctx, account_id).await?;
    check_contact(&p.contact_id)?;
    let slot = state.streams.acquire(
        &format!(
            "{}:{}",
            ctx.actor().kind.as_str(),
            ctx.actor().id.as_deref().unwrap_or_default()
        ),
        ctx.tenant_id,
    )?;
    reply_events(state, &account, p.contact_id, &headers, slot, |m| m).await
}

/// The bot's (and agents') replies to a contact as server-sent events, from
/// now on, or after the event a reconnecting client names in
/// `Last-Event-ID` (EventSource sends it, so nothing is lost in between):
/// `event: message`, data = `view` of the message as JSON. Holds `slot`
/// while open.
async fn reply_events<V: Serialize + Send + 'static>(
    state: AppState,
    account: &Account,
    contact: String,
    headers: &HeaderMap,
    slot: StreamSlot,
    view: fn(Message) -> V,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>> + use<V>>> {
    let (tenant, account_id) = (account.tenant_id, account.id);
    // Only ever compared with the ids of this contact's own messages.
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok());
    let start = match last_seen {
        Some(id) => Some(id),
        None => match conversations::find_open(&state.db, tenant, account_id, &contact).await? {
            Some(c) => last_id(&state, tenant, c.id).await?,
            None => None,
        },
    };
    let opened = std::time::Instant::now();
    let stream = futures_util::stream::unfold(
        (state, start, Vec::<Message>::new(), slot),
        move |(state, mut after, mut pending, slot)| {
            let contact = contact.clone();
            async move {
                loop {
                    // Streams end on shutdown (so it is not held up) and after a
                    // while (EventSource clients reconnect on their own).
                    if *state.stopping.borrow() || opened.elapsed() > MAX_STREAM {
                        return None;
                    }
                    if let Some(m) = pending.pop() {
                        let id = m.id.to_string();
                        let event = Event::default()
                            .event("message")
                            .id(id)
                            .json_data(view(m))
                            .unwrap_or_default();
                        return Some((Ok(event), (state, after, pending, slot)));
                    }
                    let mut stopping = state.stopping.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = stopping.changed() => continue,
                    }
                    let Ok(Some(c)) =
                        conversations::find_open(&state.db, tenant, account_id, &contact).await
                    else {
                        continue;
                    };
                    let page = integro_store::PageRequest { limit: 100, after };
                    if let Ok(found) = conversations::messages(&state.db, tenant, c.id, &page).await
                    {
                        if let Some(last) = found.items.last() {
                            after = Some(last.id);
                        }
                        pending = found
                            .items
                            .into_iter()
                            .filter(|m| m.direction == Direction::Outbound)
                            .rev()
                            .collect();
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn last_id(state: &AppState, tenant: Uuid, conversation: Uuid) -> ApiResult<Option<Uuid>> {
    let mut after = None;
    loop {
        let page = integro_store::PageRequest { limit: 200, after };
        let found = conversations::messages(&state.db, tenant, conversation, &page).await?;
        match found.items.last() {
            Some(m) => after = Some(m.id),
            None => return Ok(after),
        }
        if found.next_cursor.is_none() {
            return Ok(after);
        }
    }
}
