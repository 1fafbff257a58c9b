//! The inbox: the tenant's conversations, most recent first, kept live; a
//! conversation's messages with their delivery status; replying by hand,
//! handing off and resuming. Actions call the API's own handlers, so that
//! the checks, the audit and the egress are the API's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect};
use futures_util::Stream;
use integro_core::Permission;
use integro_engine::handoff::ConversationState;
use integro_store::accounts::{self, Account, AccountFilter};
use integro_store::canned_replies::{self, CannedReply};
use integro_store::conversations::{
    self, Assignee, Conversation, ConversationFilter, Direction, InboxRow, Message, MessageStatus,
};
use integro_store::labels::{self, Label};
use integro_store::reads;
use integro_store::{BoxFuture, PageRequest};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, render, when};
use super::session::Acting;
use crate::api;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Conversations on one page of the inbox.
const PAGE_ROWS: u32 = 50;
/// Messages shown on a conversation's page.
const SHOWN_MESSAGES: u32 = 200;
/// How often a live view asks whether something changed.
const LIVE_EVERY: Duration = Duration::from_millis(750);
/// Live views end after this long; the browser reconnects on its own.
const LIVE_FOR: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    /// `bot`, `human`, `closed`, or empty for all.
    #[serde(default)]
    state: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    bot_id: String,
    /// `me`, `none`, or empty for anyone.
    #[serde(default)]
    assigned: String,
    /// A label's name, or empty for any.
    #[serde(default)]
    label: String,
}

impl InboxQuery {
    fn filter(&self, me: Uuid) -> Result<ConversationFilter, PageError> {
        let assignee = match self.assigned.as_str() {
            "" => None,
            "me" => Some(Assignee::User(me)),
            "none" => Some(Assignee::Nobody),
            other => {
                return Err(PageError::Invalid(format!(
                    "unknown assignment filter `{other}`: me or none"
                )));
            }
        };
        let state = match self.state.as_str() {
            "" => None,
            "bot" => Some(ConversationState::Bot),
            "human" => Some(ConversationState::Human),
            "closed" => Some(ConversationState::Closed),
            other => {
                return Err(PageError::Invalid(format!(
                    "unknown state `{other}`: bot, human or closed"
                )));
            }
        };
        let id_of = |field: &str, value: &str| match value {
            "" => Ok(None),
            id => Uuid::parse_str(id)
                .map(Some)
                .map_err(|_| PageError::Invalid(format!("{field} is not an id"))),
        };
        let account_id = id_of("account_id", &self.account_id)?;
        let bot_id = id_of("bot_id", &self.bot_id)?;
        let label = match self.label.trim() {
            "" => None,
            name => Some(integro_store::labels::check_name("label", name)?),
        };
        Ok(ConversationFilter {
            state,
            account_id,
            bot_id,
            assignee,
            label,
            ..ConversationFilter::default()
        })
    }

    /// The query string that repeats these filters.
    fn query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("state", &self.state)
            .append_pair("account_id", &self.account_id)
            .append_pair("bot_id", &self.bot_id)
            .append_pair("assigned", &self.assigned)
            .append_pair("label", &self.label)
            .finish()
    }
}

/// One line of the inbox, ready to show.
pub struct RowView {
    pub id: Uuid,
    pub contact: String,
    pub channel: String,
    pub state: &'static str,
    pub preview: String,
    pub from_contact: bool,
    pub when: String,
    pub labels: Vec<String>,
    /// The contact's messages since the user last read it: 0, or shown as
    /// `unread_shown` ("99+" from the cap).
    pub unread: i64,
    pub unread_shown: String,
}

fn contact_name(c: &Conversation) -> String {
    c.contact
        .display_name
        .clone()
        .or_else(|| c.contact.phone_e164.clone())
        .unwrap_or_else(|| c.contact.channel_user_id.clone())
}

fn row_view(
    row: InboxRow,
    accounts: &[Account],
    labels: &mut HashMap<Uuid, Vec<String>>,
    unread: &HashMap<Uuid, i64>,
) -> RowView {
    let c = &row.conversation;
    let channel = accounts
        .iter()
        .find(|a| a.id == c.account_id)
        .map(|a| format!("{} ({})", a.name, a.kind.as_str()))
        .unwrap_or_default();
    let mut preview: String = row
        .last_text
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect();
    if preview.is_empty() {
        preview = "(no text)".into();
    }
    let unread = unread.get(&c.id).copied().unwrap_or(0);
    RowView {
        labels: labels.remove(&c.id).unwrap_or_default(),
        unread,
        unread_shown: reads::shown(unread),
        id: c.id,
        contact: contact_name(c),
        channel,
        state: c.state.as_str(),
        preview,
        from_contact: row.last_direction == Some(Direction::Inbound),
        when: when(c.last_message_at.unwrap_or(c.created_at)),
    }
}

pub(super) async fn tenant_accounts(
    state: &AppState,
    tenant_id: Uuid,
) -> Result<Vec<Account>, PageError> {
    let page = PageRequest::first(200);
    Ok(
        accounts::list(&state.db, tenant_id, &AccountFilter::default(), &page)
            .await?
            .items,
    )
}

async fn rows(
    state: &AppState,
    acting: &Acting,
    q: &InboxQuery,
) -> Result<Vec<RowView>, PageError> {
    acting.ctx.require(Permission::Read)?;
    let filter = q.filter(acting.signed.user.id)?;
    let accounts = tenant_accounts(state, acting.ctx.tenant_id).await?;
    let found = conversations::inbox(&state.db, acting.ctx.tenant_id, &filter, PAGE_ROWS).await?;
    let ids: Vec<Uuid> = found.iter().map(|r| r.conversation.id).collect();
    let mut labels = labels::of_conversations(&state.db, acting.ctx.tenant_id, &ids).await?;
    let unread = reads::unread(&state.db, acting.signed.user.id, &ids).await?;
    Ok(found
        .into_iter()
        .map(|r| row_view(r, &accounts, &mut labels, &unread))
        .collect())
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    layout: Layout,
    rows: Vec<RowView>,
    accounts: Vec<Account>,
    bots: Vec<integro_store::bots::Bot>,
    /// The tenant's labels, for the label filter.
    labels: Vec<Label>,
    state: String,
    account_id: String,
    bot_id: String,
    assigned: String,
    label: String,
    query: String,
    /// The change mark the page was drawn at.
    mark: i64,
}

pub async fn inbox(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<InboxQuery>,
) -> PageResult {
    let mark = inbox_mark(&state, acting.ctx.tenant_id).await;
    let rows = rows(&state, &acting, &q).await?;
    let accounts = tenant_accounts(&state, acting.ctx.tenant_id).await?;
    let labels = labels::list(&state.db, acting.ctx.tenant_id).await?;
    let bots = super::bots::tenant_bots(&state, acting.ctx.tenant_id).await?;
    Ok(render(&InboxPage {
        mark,
        bots,
        bot_id: q.bot_id.clone(),
        layout: Layout::of(&acting, "Inbox", "inbox"),
        rows,
        accounts,
        labels,
        query: q.query_string(),
        state: q.state,
        account_id: q.account_id,
        assigned: q.assigned,
        label: q.label,
    }))
}

#[derive(Template)]
#[template(path = "inbox_rows.html")]
struct InboxRows {
    rows: Vec<RowView>,
}

/// The inbox's rows alone, which the live view fetches again on a change.
pub async fn inbox_rows(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<InboxQuery>,
) -> PageResult {
    Ok(render(&InboxRows {
        rows: rows(&state, &acting, &q).await?,
    }))
}

/// A server-sent event named `event` each time `probe` answers something
/// new, for as long as the page stays open. Works whichever process stored
/// the change: the probe reads the database.
///
/// `since` is the mark the page was drawn at, so that a change between the
/// page and its stream is not missed.
fn live(
    state: AppState,
    (caller, tenant): (String, Uuid),
    event: &'static str,
    since: Option<i64>,
    probe: impl Fn(AppState) -> BoxFuture<'static, i64> + Send + Sync + 'static,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let slot = state.streams.acquire(&caller, tenant)?;
    let opened = std::time::Instant::now();
    let probe = std::sync::Arc::new(probe);
    let stream =
        futures_util::stream::unfold((state, since, slot), move |(state, mut seen, slot)| {
            let probe = probe.clone();
            async move {
                loop {
                    if *state.stopping.borrow() || opened.elapsed() > LIVE_FOR {
                        return None;
                    }
                    let now = probe(state.clone()).await;
                    let changed = seen.is_some_and(|before| before != now);
                    seen = Some(now);
                    if changed {
                        let event = Event::default().event(event).data("changed");
                        return Some((Ok(event), (state, seen, slot)));
                    }
                    let mut stopping = state.stopping.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(LIVE_EVERY) => {}
                        _ = stopping.changed() => {}
                    }
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Who holds a live view open, for the limits on open streams.
fn viewer(acting: &Acting) -> (String, Uuid) {
    (
        format!("user:{}", acting.signed.user.id),
        acting.ctx.tenant_id,
    )
}

/// Where the page was drawn from: `?since=` of a live view.
#[derive(Deserialize)]
pub struct LiveQuery {
    since: Option<i64>,
}

/// The inbox's change mark: the latest change to any of the tenant's
/// conversations (0 before the first).
async fn inbox_mark(state: &AppState, tenant: Uuid) -> i64 {
    conversations::last_change(&state.db, tenant)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

pub async fn inbox_live(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<LiveQuery>,
) -> PageResult<impl IntoResponse> {
    acting.ctx.require(Permission::Read)?;
    let tenant = acting.ctx.tenant_id;
    live(state, viewer(&acting), "inbox", q.since, move |state| {
        Box::pin(async move { inbox_mark(&state, tenant).await })
    })
}

async fn find(state: &AppState, acting: &Acting, id: Uuid) -> Result<Conversation, PageError> {
    acting.ctx.require(Permission::Read)?;
    conversations::get(&state.db, acting.ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation").into())
}

/// One message, ready to show.
pub struct MessageView {
    pub id: Uuid,
    pub inbound: bool,
    pub sender: String,
    pub text: String,
    pub media: Vec<String>,
    pub status: String,
    pub failed: bool,
    pub error: Option<String>,
    pub when: String,
}

fn message_view(m: Message) -> MessageView {
    let error = match (&m.error_code, &m.error_message) {
        (Some(code), Some(message)) => Some(format!("{message} (code {code})")),
        (None, Some(message)) => Some(message.clone()),
        (Some(code), None) => Some(format!("code {code}")),
        (None, None) => None,
    };
    MessageView {
        id: m.id,
        inbound: m.direction == Direction::Inbound,
        sender: match m.direction {
            Direction::Inbound => m.from_name.clone().unwrap_or_else(|| "Contact".into()),
            Direction::Outbound => m.sender.as_str().to_string(),
        },
        text: m.body.clone().unwrap_or_default(),
        media: m
            .media
            .iter()
            .map(|x| format!("{} {}", x.kind, x.reference))
            .collect(),
        failed: m.status == MessageStatus::Failed,
        status: m.status.as_str().to_string(),
        error,
        when: when(m.created_at),
    }
}

async fn shown_messages(
    state: &AppState,
    acting: &Acting,
    id: Uuid,
) -> Result<Vec<MessageView>, PageError> {
    let found =
        conversations::recent_messages(&state.db, acting.ctx.tenant_id, id, SHOWN_MESSAGES).await?;
    Ok(found.into_iter().map(message_view).collect())
}

/// A member the conversation can be assigned to.
pub struct AssigneeChoice {
    pub id: Uuid,
    pub email: String,
    pub current: bool,
}

pub struct NoteView {
    pub author: String,
    pub text: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "conversation.html")]
struct ConversationPage {
    /// The conversation's labels, and the tenant's (offered when adding).
    labels: Vec<String>,
    tenant_labels: Vec<Label>,
    /// The tenant's canned replies (`canned.js` offers them on `/`), and
    /// the message box's text (a canned reply chosen without script).
    canned: Vec<CannedReply>,
    draft: String,
    assignees: Vec<AssigneeChoice>,
    assignee: Option<String>,
    notes: Vec<NoteView>,
    layout: Layout,
    conversation: Conversation,
    contact: String,
    channel: String,
    state: &'static str,
    messages: Vec<MessageView>,
    can_converse: bool,
    /// The change mark the page was drawn at.
    mark: i64,
}

/// `?canned=<id>`: the canned reply to put in the message box.
#[derive(Debug, Default, Deserialize)]
pub struct ConversationQuery {
    #[serde(default)]
    canned: String,
}

/// Marks the conversation read by the signed-in user up to the latest of
/// the messages shown. A failure only costs the mark.
async fn mark_read(state: &AppState, acting: &Acting, id: Uuid, shown: &[MessageView]) {
    let Some(last) = shown.last() else {
        return;
    };
    if let Err(e) = reads::mark(
        &state.db,
        acting.ctx.tenant_id,
        acting.signed.user.id,
        id,
        last.id,
    )
    .await
    {
        tracing::warn!(error = %e, conversation = %id, "a read mark was not stored");
    }
}

pub async fn conversation(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Query(q): Query<ConversationQuery>,
) -> PageResult {
    let conversation = find(&state, &acting, id).await?;
    let mark = conversation_mark(&state, id).await;
    let messages = shown_messages(&state, &acting, id).await?;
    mark_read(&state, &acting, id, &messages).await;
    let labels = labels::of_conversation(&state.db, acting.ctx.tenant_id, id).await?;
    let tenant_labels = labels::list(&state.db, acting.ctx.tenant_id).await?;
    let canned = canned_replies::list(&state.db, acting.ctx.tenant_id).await?;
    let draft = match q.canned.as_str() {
        "" => String::new(),
        chosen => canned
            .iter()
            .find(|r| r.id.to_string() == chosen)
            .map(|r| r.text.clone())
            .ok_or_else(|| ApiError::not_found("canned reply"))?,
    };
    let channel = accounts::get(&state.db, acting.ctx.tenant_id, conversation.account_id)
        .await?
        .map(|a| format!("{} ({})", a.name, a.kind.as_str()))
        .unwrap_or_default();
    let contact = contact_name(&conversation);
    let members = integro_store::users::list_members(
        &state.db,
        acting.ctx.tenant_id,
        &PageRequest::first(200),
    )
    .await?
    .items;
    let assignees: Vec<AssigneeChoice> = members
        .into_iter()
        .filter(|m| m.role.allows(Permission::Converse))
        .map(|m| AssigneeChoice {
            current: conversation.assignee_id == Some(m.user.id),
            id: m.user.id,
            email: m.user.email,
        })
        .collect();
    let assignee = assignees
        .iter()
        .find(|a| a.current)
        .map(|a| a.email.clone());
    let notes = integro_store::notes::list(&state.db, acting.ctx.tenant_id, id)
        .await?
        .into_iter()
        .map(|n| NoteView {
            author: n.author,
            text: n.text,
            when: when(n.created_at),
        })
        .collect();
    Ok(render(&ConversationPage {
        labels,
        tenant_labels,
        canned,
        draft,
        assignees,
        assignee,
        notes,
        layout: Layout::of(&acting, format!("Conversation with {contact}"), "inbox"),
        state: conversation.state.as_str(),
        can_converse: acting.ctx.role.allows(Permission::Converse),
        mark,
        contact,
        channel,
        conversation,
        messages,
    }))
}

#[derive(Template)]
#[template(path = "conversation_messages.html")]
struct MessagesFragment {
    messages: Vec<MessageView>,
}

/// The messages alone, which the live view fetches again on a change.
pub async fn conversation_messages(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    find(&state, &acting, id).await?;
    let messages = shown_messages(&state, &acting, id).await?;
    // The page is open: what it now shows is read.
    mark_read(&state, &acting, id, &messages).await;
    Ok(render(&MessagesFragment { messages }))
}

/// A conversation's change mark: the latest change to it or its messages.
async fn conversation_mark(state: &AppState, id: Uuid) -> i64 {
    conversations::last_conversation_change(&state.db, id)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

pub async fn conversation_live(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Query(q): Query<LiveQuery>,
) -> PageResult<impl IntoResponse> {
    let conversation = find(&state, &acting, id).await?;
    live(state, viewer(&acting), "messages", q.since, move |state| {
        Box::pin(async move { conversation_mark(&state, conversation.id).await })
    })
}

#[derive(Deserialize)]
pub struct SendForm {
    text: String,
}

/// Replies as a human: the API's send, then back to the conversation.
pub async fn send(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<SendForm>,
) -> PageResult {
    let request = api::conversations::SendMessage {
        text: Some(form.text),
        media_url: None,
        template: None,
    };
    let _ = api::conversations::send_message(State(state), acting.ctx, Path(id), ApiJson(request))
        .await?;
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

pub async fn hand_off(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let _ = api::conversations::handoff_conversation(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

pub async fn resume(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let _ = api::conversations::resume_conversation(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

/// Closes the conversation (the API's handler).
pub async fn close(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let _ = api::conversations::close_conversation(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct AssignForm {
    /// A user id, `me`, or empty for nobody.
    #[serde(default)]
    user_id: String,
}

pub async fn assign(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<AssignForm>,
) -> PageResult {
    let user_id = match form.user_id.as_str() {
        "" => None,
        "me" => Some(acting.signed.user.id),
        other => Some(
            Uuid::parse_str(other)
                .map_err(|_| PageError::Invalid("user_id is not an id".into()))?,
        ),
    };
    let request = api::conversations::AssignRequest { user_id };
    let _ = api::conversations::assign_conversation(
        State(state),
        acting.ctx,
        Path(id),
        ApiJson(request),
    )
    .await?;
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct NoteForm {
    text: String,
}

pub async fn add_note(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<NoteForm>,
) -> PageResult {
    let request = api::conversations::NoteRequest { text: form.text };
    let _ =
        api::conversations::add_note(State(state), acting.ctx, Path(id), ApiJson(request)).await?;
    Ok(Redirect::to(&format!("/conversations/{id}#notes")).into_response())
}

/// Clears the conversation's memory (the API's reset); messages stay.
pub async fn reset(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let _ = api::conversations::reset_conversation(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct LabelForm {
    label: String,
}

/// The conversation's labels changed by `change`, through the API's handler.
async fn change_labels(
    state: AppState,
    acting: Acting,
    id: Uuid,
    change: impl FnOnce(&mut Vec<String>),
) -> PageResult {
    let conversation = find(&state, &acting, id).await?;
    let mut set = labels::of_conversation(&state.db, acting.ctx.tenant_id, conversation.id).await?;
    change(&mut set);
    let request = api::conversations::LabelSet { labels: set };
    let _ = api::conversations::set_labels(State(state), acting.ctx, Path(id), ApiJson(request))
        .await?;
    Ok(Redirect::to(&format!("/conversations/{id}#labels")).into_response())
}

/// Adds a label (a new name creates it).
pub async fn add_label(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<LabelForm>,
) -> PageResult {
    let name = labels::check_name("label", &form.label)?;
    change_labels(state, acting, id, move |set| set.push(name)).await
}

/// Takes a label off (case aside).
pub async fn remove_label(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<LabelForm>,
) -> PageResult {
    let name = form.label.trim().to_lowercase();
    change_labels(state, acting, id, move |set| {
        set.retain(|l| l.to_lowercase() != name)
    })
    .await
}
