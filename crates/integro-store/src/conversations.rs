//! Contacts, conversations and their messages. Inbound messages are stored
//! once per (account, provider message id), together with the job that will
//! answer them; outbound messages together with the job that sends them.

use std::collections::HashSet;

use integro_core::{DeliveryStatus, InboundMessage, Media, StatusUpdate, Template, new_id};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::Account;
use crate::db::{from_ms, now_ms, to_ms};
use crate::jobs::{self, JobKind, NewJob};
use crate::memory::{self, Memory};
use crate::page::{Page, PageRequest};
use crate::sql::{self, Columns, Conn, FromCols};
use crate::{Db, StoreError, parse_id};

const REPLY_ATTEMPTS: i64 = 5;
const SEND_ATTEMPTS: i64 = 8;

/// Who answers a conversation: `bot`, `human` or `closed`.
pub use integro_engine::handoff::ConversationState;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Contact {
    pub id: Uuid,
    /// The contact's id on the channel.
    pub channel_user_id: String,
    pub display_name: Option<String>,
    pub phone_e164: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub account_id: Uuid,
    pub bot_id: Uuid,
    pub contact: Contact,
    pub state: ConversationState,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_inbound_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_message_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The user the conversation is assigned to, if any.
    pub assignee_id: Option<Uuid>,
    /// Its labels, by name (filled by the API's reads; empty elsewhere).
    pub labels: Vec<String>,
    /// For a signed-in user: the contact's messages since they last read
    /// the conversation, counted up to `reads::UNREAD_CAP` (absent for API
    /// keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    /// The direction as stored; anything but `inbound` reads as outbound.
    pub fn from_stored(s: &str) -> Direction {
        if s == "inbound" {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageSender {
    Contact,
    #[default]
    Bot,
    /// A person of the tenant, from the inbox or the API.
    Agent,
}

impl MessageSender {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageSender::Contact => "contact",
            MessageSender::Bot => "bot",
            MessageSender::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<MessageSender> {
        [
            MessageSender::Contact,
            MessageSender::Bot,
            MessageSender::Agent,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Where a message is: `received` (inbound), or where its delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Received,
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 7] = [
        MessageStatus::Received,
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Received => "received",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: Uuid,
    #[serde(skip)]
    pub tenant_id: Uuid,
    /// Empty for an inbound message not yet filed by a worker (milliseconds).
    pub conversation_id: Option<Uuid>,
    pub account_id: Uuid,
    /// Inbound: the contact's id on the channel, name and phone number as sent.
    pub from_id: Option<String>,
    pub from_name: Option<String>,
    pub from_phone: Option<String>,
    pub direction: Direction,
    pub sender: MessageSender,
    pub provider_message_id: Option<String>,
    /// `text`, `image`, `template`, …
    pub kind: String,
    pub body: Option<String>,
    pub media: Vec<Media>,
    /// Inbound: `received`. Outbound: `queued`, `sending`, `sent`, `delivered`, `read` or `failed`.
    pub status: MessageStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Outbound: the inbound message this answers.
    pub reply_to: Option<Uuid>,
    /// Outbound: the rule whose reply this is.
    pub rule_id: Option<Uuid>,
    /// Outbound: the AI profile that wrote it, and the tokens it cost.
    pub ai_profile_id: Option<Uuid>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    /// Inbound: when a reply job answered it (alone or within a burst), ms.
    #[serde(skip)]
    pub handled_at: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What became of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored, its reply job queued; it is filed into a conversation by the job.
    Stored { message_id: Uuid },
    /// The provider sent it before: acknowledged, nothing more.
    Duplicate,
}

/// An inbound message to store.
pub struct Inbound<'a> {
    pub account: &'a Account,
    pub message: &'a InboundMessage,
    pub request_id: Option<&'a str>,
    /// The webhook's trace context (W3C `traceparent`), carried to the job.
    pub traceparent: Option<&'a str>,
}

/// The queue of a contact's reply jobs: they run one at a time, in order.
pub fn contact_queue_key(account_id: Uuid, from: &str) -> String {
    format!("contact:{account_id}:{from}")
}

/// Stores one inbound message and enqueues the job that answers it, inside
/// the caller's transaction.
pub async fn ingest(
    tx: &mut Conn<'_>,
    account: &Account,
    msg: &InboundMessage,
    request_id: Option<&str>,
) -> Result<Ingested, StoreError> {
    let mut jobs = Vec::with_capacity(1);
    let inbound = [Inbound {
        account,
        message: msg,
        request_id,
        traceparent: None,
    }];
    let outcome = record_inbound(tx, &inbound, &mut jobs).await?.remove(0);
    jobs::enqueue_many(tx, jobs).await?;
    Ok(outcome)
}

/// Stores a batch of inbound messages with one statement; a message whose
/// (account, provider id) is already stored is a duplicate and changes
/// nothing. Leaves the reply jobs of the new ones in `jobs`, for the caller to
/// enqueue before the transaction commits. Jobs of one contact run in order.
pub async fn record_inbound(
    tx: &mut Conn<'_>,
    batch: &[Inbound<'_>],
    jobs: &mut Vec<NewJob>,
) -> Result<Vec<Ingested>, StoreError> {
    let now = now_ms();
    let ids = first_ids(batch);
    let rows: Vec<(&Inbound, Uuid)> = batch
        .iter()
        .zip(&ids)
        .filter_map(|(i, id)| id.map(|id| (i, id)))
        .collect();
    let mut inserted = HashSet::new();
    // A chunk of the insert's size: which of its rows went in is asked per
    // statement.
    for chunk in rows.chunks(crate::insert::CHUNK) {
        let mut insert = crate::insert::insert("messages", INBOUND_COLUMNS, INBOUND_CONFLICT);
        for (i, id) in chunk {
            insert.row(inbound_row(i, *id, now));
        }
        // Which rows went in is asked only when some did not: sqlx hands
        // each returned row over from SQLite's thread on its own, a wake-up
        // of the committer per webhook of the batch.
        let stored = insert.execute(tx).await?;
        if stored == chunk.len() as u64 {
            inserted.extend(chunk.iter().map(|(_, id)| *id));
        } else if stored > 0 {
            let placeholders = crate::db::values_rows(tx, chunk.len(), 1, |p| p[0].clone());
            let mut q = sql::query(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM messages WHERE id IN ({placeholders})"
            )))
            .persistent(false);
            for (_, id) in chunk {
                q = q.bind(id.to_string());
            }
            for id in q.scalars::<String>(tx).await? {
                inserted.insert(parse_id(&id)?);
            }
        }
    }
    let outcomes = ingested(&ids, &inserted);
    for (item, outcome) in batch.iter().zip(&outcomes) {
        if let Ingested::Stored { message_id } = outcome {
            jobs.push(reply_job(item, *message_id));
        }
    }
    Ok(outcomes)
}

/// The columns an inbound message is inserted with (`inbound_row`).
pub(crate) const INBOUND_COLUMNS: &[&str] = &[
    "id",
    "tenant_id",
    "conversation_id",
    "account_id",
    "from_id",
    "from_name",
    "from_phone",
    "direction",
    "sender",
    "provider_message_id",
    "kind",
    "body",
    "media_json",
    "status",
    "reply_to",
    "request_id",
    "created_at",
    "updated_at",
];

/// A message the provider sent before is skipped.
pub(crate) const INBOUND_CONFLICT: &str =
    " ON CONFLICT (account_id, direction, provider_message_id) DO NOTHING";

/// The id of each message's row. A provider may deliver one message twice
/// within a batch: only the first gets a row (the others have no id).
pub(crate) fn first_ids(batch: &[Inbound<'_>]) -> Vec<Option<Uuid>> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .map(|i| {
            seen.insert((i.account.id, i.message.provider_message_id.as_str()))
                .then(new_id)
        })
        .collect()
}

/// `i`'s values for `INBOUND_COLUMNS`, as the row `id`.
pub(crate) fn inbound_row(i: &Inbound<'_>, id: Uuid, now: i64) -> Vec<sql::Value> {
    let m = i.message;
    vec![
        id.to_string().into(),
        i.account.tenant_id.to_string().into(),
        None::<String>.into(),
        i.account.id.to_string().into(),
        m.from.clone().into(),
        m.from_name.clone().into(),
        m.phone_e164.clone().into(),
        "inbound".into(),
        "contact".into(),
        m.provider_message_id.clone().into(),
        m.kind.clone().into(),
        m.text.clone().into(),
        (!m.media.is_empty())
            .then(|| serde_json::to_string(&m.media).expect("serialisable"))
            .into(),
        "received".into(),
        None::<String>.into(),
        i.request_id.map(String::from).into(),
        now.into(),
        now.into(),
    ]
}

/// A reply or send job's payload: the message, and where it came from (the
/// request id, and the trace context when traces are exported).
fn job_payload(
    message_id: Uuid,
    request_id: Option<&str>,
    traceparent: Option<&str>,
) -> serde_json::Value {
    let mut payload = json!({ "message_id": message_id, "request_id": request_id });
    if let Some(traceparent) = traceparent {
        payload["traceparent"] = traceparent.into();
    }
    payload
}

/// The job that answers the stored message `message_id`.
pub(crate) fn reply_job(item: &Inbound<'_>, message_id: Uuid) -> NewJob {
    NewJob {
        kind: JobKind::Reply,
        payload: job_payload(message_id, item.request_id, item.traceparent),
        tenant_id: Some(item.account.tenant_id),
        queue_key: Some(contact_queue_key(item.account.id, &item.message.from)),
        max_attempts: REPLY_ATTEMPTS,
        run_at: None,
    }
}

/// What became of each message, given its row (`ids`, from `first_ids`) and
/// the rows that went in.
pub(crate) fn ingested(ids: &[Option<Uuid>], inserted: &HashSet<Uuid>) -> Vec<Ingested> {
    ids.iter()
        .map(|id| match id.filter(|id| inserted.contains(id)) {
            Some(message_id) => Ingested::Stored { message_id },
            None => Ingested::Duplicate,
        })
        .collect()
}

/// Files a stored inbound message into its contact's open conversation
/// (creating the contact and the conversation on first contact). An open
/// conversation whose last message is older than `expiry_ms` is closed first,
/// so the message starts a new one with no history. Returns the conversation
/// id; filing twice is harmless. Inside the caller's transaction.
pub async fn file_inbound(
    tx: &mut Conn<'_>,
    message: &Message,
    bot_id: Uuid,
    expiry_ms: i64,
) -> Result<Uuid, StoreError> {
    if let Some(id) = message.conversation_id {
        return Ok(id);
    }
    let from = message.from_id.clone().ok_or_else(|| {
        StoreError::Internal(format!("inbound message {} has no sender", message.id))
    })?;
    let (tenant, account_id) = (
        message.tenant_id.to_string(),
        message.account_id.to_string(),
    );
    let at = to_ms(message.created_at);
    let now = now_ms();
    let new_contact_id = new_id().to_string();
    let contact_id: String = sql::query(
        "INSERT INTO contacts (id, tenant_id, account_id, channel_user_id, display_name, phone_e164, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (account_id, channel_user_id) DO UPDATE SET \
           display_name = COALESCE(excluded.display_name, contacts.display_name), \
           phone_e164 = COALESCE(excluded.phone_e164, contacts.phone_e164), updated_at = excluded.updated_at \
         RETURNING id",
    )
    .bind(&new_contact_id)
    .bind(&tenant)
    .bind(&account_id)
    .bind(&from)
    .bind(message.from_name.clone())
    .bind(message.from_phone.clone())
    .bind(now)
    .scalar(tx)
    .await?;
    // A contact just created has no conversation to close (a statement less
    // on the writer for every first message).
    if contact_id != new_contact_id {
        sql::query(
            "UPDATE conversations SET state = 'closed', closed_at = $1, updated_at = $1 \
             WHERE account_id = $2 AND contact_id = $3 AND closed_at IS NULL AND COALESCE(last_message_at, created_at) < $4",
        )
        .bind(now)
        .bind(&account_id)
        .bind(&contact_id)
        .bind(at.saturating_sub(expiry_ms))
        .execute(tx)
        .await?;
    }
    let conversation_id: String = sql::query(
        "INSERT INTO conversations (id, tenant_id, account_id, bot_id, contact_id, state, last_inbound_at, last_message_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'bot', $6, $6, $7, $7) \
         ON CONFLICT (account_id, contact_id) WHERE closed_at IS NULL DO UPDATE SET \
           last_inbound_at = excluded.last_inbound_at, last_message_at = excluded.last_message_at, updated_at = excluded.updated_at \
         RETURNING id",
    )
    .bind(new_id().to_string())
    .bind(&tenant)
    .bind(&account_id)
    .bind(bot_id.to_string())
    .bind(&contact_id)
    .bind(at)
    .bind(now)
    .scalar(tx)
    .await?;
    sql::query("UPDATE messages SET conversation_id = $1, updated_at = $2 WHERE id = $3 AND conversation_id IS NULL")
        .bind(&conversation_id)
        .bind(now)
        .bind(message.id.to_string())
        .execute(tx)
        .await?;
    parse_id(&conversation_id)
}

/// Whether the conversation, idle since its last message (or its creation),
/// has expired by `at` (ms): `file_inbound` would close it and start anew.
pub fn expired(conversation: &Conversation, at: i64, expiry_ms: i64) -> bool {
    let last = conversation
        .last_message_at
        .unwrap_or(conversation.created_at);
    to_ms(last) < at.saturating_sub(expiry_ms)
}

/// Records what a turn brought to a conversation, in one statement inside
/// the caller's transaction: a new inbound message (at `inbound_at`, ms) on
/// an open conversation the caller found and checked (`find_open`, not
/// `expired`), which is `file_inbound` for a contact who is already known,
/// and the time of its last outbound message (`replied_at`, ms) when it
/// queued any (`insert_outbound`). The message itself joins the
/// conversation when it is marked handled (`memory::mark_handled`). False
/// when an inbound message was given and the conversation was closed in the
/// meantime: then the message must be filed with `file_inbound`.
pub async fn touch(
    tx: &mut Conn<'_>,
    conversation_id: Uuid,
    inbound_at: Option<i64>,
    replied_at: Option<i64>,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let r = match (inbound_at, replied_at) {
        (None, None) => return Ok(true),
        (Some(at), replied_at) => sql::query(
            "UPDATE conversations SET last_inbound_at = $1, last_message_at = $2, updated_at = $3 \
                 WHERE id = $4 AND closed_at IS NULL",
        )
        .bind(at)
        .bind(replied_at.unwrap_or(at).max(at))
        .bind(now)
        .bind(conversation_id.to_string())
        .execute(tx)
        .await?,
        (None, Some(replied_at)) => {
            sql::query(
                "UPDATE conversations SET last_message_at = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(replied_at)
            .bind(now)
            .bind(conversation_id.to_string())
            .execute(tx)
            .await?
        }
    };
    Ok(r == 1)
}

/// What to send.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// `Bot` or `Agent`.
    pub sender: MessageSender,
    pub text: Option<String>,
    pub media_url: Option<String>,
    pub template: Option<Template>,
    pub reply_to: Option<Uuid>,
    pub request_id: Option<String>,
    /// The trace context of what queued it (W3C `traceparent`).
    pub traceparent: Option<String>,
    /// What decided it: a rule, or an AI profile and the tokens it spent.
    pub rule_id: Option<Uuid>,
    pub ai_profile_id: Option<Uuid>,
    pub tokens: Option<(u64, u64)>,
}

/// Stores an outbound message as `queued` and enqueues its send job, inside
/// the caller's transaction, and marks the conversation's last message.
/// Sends of one conversation go out in order. Returns the message as stored.
pub async fn queue_outbound(
    tx: &mut Conn<'_>,
    conversation: &Conversation,
    out: Outgoing,
) -> Result<Message, StoreError> {
    let (message, _) = insert_outbound(tx, conversation, out, None).await?;
    touch(tx, conversation.id, None, Some(to_ms(message.created_at))).await?;
    Ok(message)
}

/// `queue_outbound` without marking the conversation, for a caller that
/// marks it once for all it queued (`touch`). With `lease_to` (owner, lease
/// in ms) the send job is leased to that worker when no earlier send of the
/// conversation is pending, and returned.
pub async fn insert_outbound(
    tx: &mut Conn<'_>,
    conversation: &Conversation,
    out: Outgoing,
    lease_to: Option<(&str, i64)>,
) -> Result<(Message, Option<jobs::Job>), StoreError> {
    let id = new_id();
    let now = now_ms();
    let kind = if out.template.is_some() {
        "template"
    } else if out.media_url.is_some() {
        "image"
    } else {
        "text"
    };
    let media_list: Vec<Media> = out
        .media_url
        .iter()
        .map(|url| Media {
            kind: "image".into(),
            reference: url.clone(),
            content_type: None,
        })
        .collect();
    let media =
        (!media_list.is_empty()).then(|| serde_json::to_string(&media_list).expect("serialisable"));
    let body = match &out.template {
        Some(t) => Some(serde_json::to_string(t).expect("serialisable")),
        None => out.text.clone(),
    };
    let stored = |n: u64| n.min(i64::MAX as u64) as i64;
    let input_tokens = out.tokens.map(|t| stored(t.0));
    let output_tokens = out.tokens.map(|t| stored(t.1));
    sql::query(
        "INSERT INTO messages (id, tenant_id, conversation_id, account_id, direction, sender, provider_message_id, kind, body, \
         media_json, status, reply_to, request_id, created_at, updated_at, rule_id, ai_profile_id, input_tokens, output_tokens) \
         VALUES ($1, $2, $3, $4, 'outbound', $5, NULL, $6, $7, $8, 'queued', $9, $10, $11, $11, $12, $13, $14, $15)",
    )
    .bind(id.to_string())
    .bind(conversation.tenant_id.to_string())
    .bind(conversation.id.to_string())
    .bind(conversation.account_id.to_string())
    .bind(out.sender.as_str())
    .bind(kind)
    .bind(body.clone())
    .bind(media)
    .bind(out.reply_to.map(|r| r.to_string()))
    .bind(out.request_id.clone())
    .bind(now)
    .bind(out.rule_id.map(|r| r.to_string()))
    .bind(out.ai_profile_id.map(|p| p.to_string()))
    .bind(input_tokens)
    .bind(output_tokens)
    .execute(tx)
    .await?;
    let job = NewJob {
        kind: JobKind::Send,
        payload: job_payload(id, out.request_id.as_deref(), out.traceparent.as_deref()),
        tenant_id: Some(conversation.tenant_id),
        queue_key: Some(format!("send:{}", conversation.id)),
        max_attempts: SEND_ATTEMPTS,
        run_at: None,
    };
    let leased = match lease_to {
        Some((owner, lease_ms)) => jobs::enqueue_leased(tx, job, owner, lease_ms).await?,
        None => {
            jobs::enqueue_many(tx, vec![job]).await?;
            None
        }
    };
    let at = from_ms(now);
    let message = Message {
        id,
        tenant_id: conversation.tenant_id,
        conversation_id: Some(conversation.id),
        account_id: conversation.account_id,
        from_id: None,
        from_name: None,
        from_phone: None,
        direction: Direction::Outbound,
        sender: out.sender,
        provider_message_id: None,
        kind: kind.to_string(),
        body,
        media: media_list,
        status: MessageStatus::Queued,
        error_code: None,
        error_message: None,
        reply_to: out.reply_to,
        rule_id: out.rule_id,
        ai_profile_id: out.ai_profile_id,
        input_tokens,
        output_tokens,
        handled_at: None,
        created_at: at,
        updated_at: at,
    };
    Ok((message, leased))
}

const MESSAGE_COLUMNS: &str = "id, tenant_id, conversation_id, account_id, from_id, from_name, from_phone, direction, sender, \
                               provider_message_id, kind, body, media_json, status, error_code, error_message, reply_to, \
                               created_at, updated_at, rule_id, ai_profile_id, input_tokens, output_tokens, handled_at";

impl FromCols for Message {
    fn from_cols(r: &impl Columns) -> Result<Message, StoreError> {
        message_from_row(r)
    }
}

fn message_from_row(r: &impl Columns) -> Result<Message, StoreError> {
    let text = |i: usize| r.col::<String>(i);
    let opt = |i: usize| r.col::<Option<String>>(i);
    Ok(Message {
        id: parse_id(&text(0)?)?,
        tenant_id: parse_id(&text(1)?)?,
        conversation_id: opt(2)?.as_deref().map(parse_id).transpose()?,
        account_id: parse_id(&text(3)?)?,
        from_id: opt(4)?,
        from_name: opt(5)?,
        from_phone: opt(6)?,
        direction: Direction::from_stored(&text(7)?),
        sender: {
            let stored = text(8)?;
            MessageSender::parse(&stored).ok_or_else(|| {
                StoreError::Internal(format!("unknown message sender `{stored}` stored"))
            })?
        },
        provider_message_id: opt(9)?,
        kind: text(10)?,
        body: opt(11)?,
        media: opt(12)?
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default(),
        status: {
            let stored = text(13)?;
            MessageStatus::parse(&stored).ok_or_else(|| {
                StoreError::Internal(format!("unknown message status `{stored}` stored"))
            })?
        },
        error_code: opt(14)?,
        error_message: opt(15)?,
        reply_to: opt(16)?.as_deref().map(parse_id).transpose()?,
        created_at: from_ms(r.col(17)?),
        updated_at: from_ms(r.col(18)?),
        rule_id: opt(19)?.as_deref().map(parse_id).transpose()?,
        ai_profile_id: opt(20)?.as_deref().map(parse_id).transpose()?,
        input_tokens: r.col(21)?,
        output_tokens: r.col(22)?,
        handled_at: r.col(23)?,
    })
}

/// A message by id, whatever its tenant (for workers, which got the id from a job).
pub async fn message(db: &Db, id: Uuid) -> Result<Option<Message>, StoreError> {
    sql::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut db.reader().await?.conn())
    .await
}

/// The template stored as an outbound template message's body.
pub fn template_of(message: &Message) -> Option<Template> {
    (message.kind == "template")
        .then(|| {
            message
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok())
        })
        .flatten()
}

pub async fn messages(
    db: &Db,
    tenant_id: Uuid,
    conversation_id: Uuid,
    page: &PageRequest,
) -> Result<Page<Message>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND id > $3 ORDER BY id LIMIT $4"
    )))
    .bind(tenant_id.to_string())
    .bind(conversation_id.to_string())
    .bind(page.after_text().unwrap_or_default())
    .bind(page.fetch_limit())
    .fetch_all(db.pool())
    .await?;
    let items = rows
        .into_iter()
        .map(|r| message_from_row(&r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |m| m.id))
}

/// A conversation's latest `limit` messages, oldest first (the end of the
/// conversation, as people read it).
pub async fn recent_messages(
    db: &Db,
    tenant_id: Uuid,
    conversation_id: Uuid,
    limit: u32,
) -> Result<Vec<Message>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY id DESC LIMIT $3"
    )))
    .bind(tenant_id.to_string())
    .bind(conversation_id.to_string())
    .bind(i64::from(limit.clamp(1, 500)))
    .fetch_all(db.pool())
    .await?;
    let mut items = rows
        .into_iter()
        .map(|r| message_from_row(&r))
        .collect::<Result<Vec<_>, _>>()?;
    items.reverse();
    Ok(items)
}

/// The outbound message has gone to the provider, which named it `provider_id`.
pub async fn mark_sent(
    tx: &mut Conn<'_>,
    id: Uuid,
    provider_id: &str,
    kind: Option<&str>,
) -> Result<(), StoreError> {
    sql::query(
        "UPDATE messages SET status = CASE WHEN status IN ('queued', 'sending', 'failed') THEN 'sent' ELSE status END, \
         error_code = NULL, error_message = NULL, provider_message_id = $1, kind = COALESCE($2, kind), updated_at = $3 WHERE id = $4",
    )
    .bind(provider_id)
    .bind(kind)
    .bind(now_ms())
    .bind(id.to_string())
    .execute(tx)
    .await?;
    Ok(())
}

/// Whether one of the account's outbound messages already carries this
/// provider id.
pub async fn provider_id_known(
    db: &Db,
    account_id: Uuid,
    provider_id: &str,
) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE account_id = $1 AND direction = 'outbound' AND provider_message_id = $2",
    )
    .bind(account_id.to_string())
    .bind(provider_id)
    .fetch_one(db.pool())
    .await?;
    Ok(n > 0)
}

/// The message will not go out; the reason is kept on it.
pub async fn mark_failed(
    db: &Db,
    id: Uuid,
    code: Option<&str>,
    reason: &str,
) -> Result<(), StoreError> {
    let (code, reason) = (code.map(String::from), reason.to_string());
    db.write(move |tx| {
        Box::pin(async move {
            let now = now_ms();
            let newly_failed = sql::query(
                "UPDATE messages SET status = 'failed', error_code = $1, error_message = $2, updated_at = $3 \
                 WHERE id = $4 AND status <> 'failed'",
            )
            .bind(code.clone())
            .bind(reason.clone())
            .bind(now)
            .bind(id.to_string())
            .execute(tx)
            .await?;
            if newly_failed == 1 {
                // Counted once per failure, however often this runs again.
                crate::message_stats::count_failure(tx, &id.to_string(), code.as_deref(), now).await?;
            } else {
                sql::query("UPDATE messages SET error_code = $1, error_message = $2, updated_at = $3 WHERE id = $4")
                    .bind(code)
                    .bind(reason)
                    .bind(now)
                    .bind(id.to_string())
                    .execute(tx)
                    .await?;
            }
            Ok(())
        })
    })
    .await
}

/// Applies a delivery report; statuses only move forward. Returns whether
/// the message changed.
pub async fn apply_status(
    tx: &mut Conn<'_>,
    account_id: Uuid,
    update: &StatusUpdate,
) -> Result<bool, StoreError> {
    let row: Option<(String, String)> = sql::query(
        "SELECT id, status FROM messages WHERE account_id = $1 AND direction = 'outbound' AND provider_message_id = $2",
    )
    .bind(account_id.to_string())
    .bind(&update.provider_message_id)
    .fetch_optional(tx)
    .await?;
    // A message whose send went out but whose answer was lost (the worker
    // died, or the answer came too late) has no provider id yet: the status
    // names it by our id, and it adopts the provider's. Its send job, taken
    // again, finds it sent.
    let (row, adopt) = match (row, update.local_id.as_deref().map(crate::parse_id)) {
        (Some(row), _) => (Some(row), false),
        (None, Some(Ok(local_id))) => {
            let row: Option<(String, String)> = sql::query(
                "SELECT id, status FROM messages WHERE id = $1 AND account_id = $2 AND direction = 'outbound' \
                 AND provider_message_id IS NULL",
            )
            .bind(local_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(tx)
            .await?;
            (row, true)
        }
        (None, _) => (None, false),
    };
    let Some((id, current)) = row else {
        return Ok(false);
    };
    let stored_status = current;
    let current = DeliveryStatus::parse(&stored_status).unwrap_or(DeliveryStatus::Queued);
    let status = if current.may_become(update.status) {
        update.status
    } else if adopt {
        current
    } else {
        return Ok(false);
    };
    // Only from the status read: of two reports applied at once, one moves it.
    let changed = sql::query(
        "UPDATE messages SET status = $1, error_code = COALESCE($2, error_code), error_message = COALESCE($3, error_message), \
         provider_message_id = COALESCE(provider_message_id, $4), updated_at = $5 WHERE id = $6 AND status = $7",
    )
    .bind(status.as_str())
    .bind(update.error_code.clone())
    .bind(update.error_message.clone())
    .bind(adopt.then(|| update.provider_message_id.clone()))
    .bind(now_ms())
    .bind(&id)
    .bind(&stored_status)
    .execute(tx)
    .await?;
    if changed == 1 && status == DeliveryStatus::Failed && current != DeliveryStatus::Failed {
        let code = update.error_code.as_deref();
        crate::message_stats::count_failure(tx, &id, code, now_ms()).await?;
    }
    Ok(changed == 1)
}

type ConversationRow = (
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);
const CONVERSATION_COLUMNS: &str = "c.id, c.tenant_id, c.account_id, c.bot_id, c.state, c.last_inbound_at, c.last_message_at, \
     c.created_at, c.updated_at, k.id, k.channel_user_id, k.display_name, k.phone_e164, c.assignee_id";

fn conversation_from_row(r: ConversationRow) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: parse_id(&r.0)?,
        tenant_id: parse_id(&r.1)?,
        account_id: parse_id(&r.2)?,
        bot_id: parse_id(&r.3)?,
        state: ConversationState::from_stored(&r.4),
        last_inbound_at: r.5.map(from_ms),
        last_message_at: r.6.map(from_ms),
        created_at: from_ms(r.7),
        updated_at: from_ms(r.8),
        contact: Contact {
            id: parse_id(&r.9)?,
            channel_user_id: r.10,
            display_name: r.11,
            phone_e164: r.12,
        },
        assignee_id: r.13.as_deref().map(parse_id).transpose()?,
        labels: Vec::new(),
        unread: None,
    })
}

/// A conversation by id, whatever its tenant (for workers).
pub async fn conversation(db: &Db, id: Uuid) -> Result<Option<Conversation>, StoreError> {
    let row: Option<ConversationRow> = sql::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE c.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut db.reader().await?.conn())
    .await?;
    row.map(conversation_from_row).transpose()
}

/// `conversation`, read in the caller's transaction.
pub async fn conversation_in(
    tx: &mut Conn<'_>,
    id: Uuid,
) -> Result<Option<Conversation>, StoreError> {
    let row: Option<ConversationRow> = sql::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE c.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(tx)
    .await?;
    row.map(conversation_from_row).transpose()
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<Conversation>, StoreError> {
    Ok(conversation(db, id)
        .await?
        .filter(|c| c.tenant_id == tenant_id))
}

#[derive(Debug, Default, Clone)]
pub struct ConversationFilter {
    pub account_id: Option<Uuid>,
    pub bot_id: Option<Uuid>,
    pub state: Option<ConversationState>,
    /// Unix ms: only conversations with a message since then.
    pub since: Option<i64>,
    pub assignee: Option<Assignee>,
    /// Only those carrying this label (by name, in any case).
    pub label: Option<String>,
}

/// Whose conversations a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    User(Uuid),
    Nobody,
}

pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    filter: &ConversationFilter,
    page: &PageRequest,
) -> Result<Page<Conversation>, StoreError> {
    let mut sql = format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN contacts k ON k.id = c.contact_id \
         WHERE c.tenant_id = $1 AND c.id > $2"
    );
    let mut binds: Vec<Value> = vec![
        json!(tenant_id.to_string()),
        json!(page.after_text().unwrap_or_default()),
    ];
    filter.push_clauses(&mut sql, &mut binds);
    sql.push_str(&format!(" ORDER BY c.id LIMIT {}", page.fetch_limit()));
    let items = fetch_conversations(db, sql, binds).await?;
    Ok(Page::from_rows(items, page, |c| c.id))
}

impl ConversationFilter {
    /// ` AND …` for each filter set, its value appended to `binds`.
    fn push_clauses(&self, sql: &mut String, binds: &mut Vec<Value>) {
        let mut push = |clause: &str, v: Value| {
            binds.push(v);
            sql.push_str(&format!(" AND {clause} ${}", binds.len()));
        };
        if let Some(a) = self.account_id {
            push("c.account_id =", json!(a.to_string()));
        }
        if let Some(b) = self.bot_id {
            push("c.bot_id =", json!(b.to_string()));
        }
        if let Some(s) = self.state {
            push("c.state =", json!(s.as_str()));
        }
        if let Some(since) = self.since {
            push("c.last_message_at >=", json!(since));
        }
        if let Some(Assignee::User(id)) = self.assignee {
            push("c.assignee_id =", json!(id.to_string()));
        }
        if self.assignee == Some(Assignee::Nobody) {
            sql.push_str(" AND c.assignee_id IS NULL");
        }
        if let Some(label) = &self.label {
            // The label's conversations, by conversation_labels_label; the
            // tenant is $1 in every list.
            binds.push(json!(label.trim().to_lowercase()));
            sql.push_str(&format!(
                " AND c.id IN (SELECT cl.conversation_id FROM conversation_labels cl \
                 WHERE cl.label_id = (SELECT l.id FROM labels l WHERE l.tenant_id = $1 AND l.name_key = ${}))",
                binds.len()
            ));
        }
    }
}

/// The conversations `sql` (selecting `CONVERSATION_COLUMNS`) finds.
async fn fetch_conversations(
    db: &Db,
    sql: String,
    binds: Vec<Value>,
) -> Result<Vec<Conversation>, StoreError> {
    bind_all(
        sqlx::query_as::<_, ConversationRow>(sqlx::AssertSqlSafe(sql)),
        binds,
    )
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(conversation_from_row)
    .collect()
}

/// Binds JSON numbers as integers and everything else as text.
fn bind_all<'q, O>(
    mut q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments>,
    binds: Vec<Value>,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments> {
    for b in binds {
        q = match b {
            Value::Number(n) => q.bind(n.as_i64().unwrap_or_default()),
            other => q.bind(other.as_str().unwrap_or_default().to_string()),
        };
    }
    q
}

/// A row of the inbox: a conversation and its latest message.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub conversation: Conversation,
    pub last_text: Option<String>,
    pub last_direction: Option<Direction>,
}

/// The tenant's conversations, most recently active first (for people
/// reading them, where the API's lists go in id order for machines).
pub async fn inbox(
    db: &Db,
    tenant_id: Uuid,
    filter: &ConversationFilter,
    limit: u32,
) -> Result<Vec<InboxRow>, StoreError> {
    let mut sql = format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN contacts k ON k.id = c.contact_id \
         WHERE c.tenant_id = $1"
    );
    let mut binds: Vec<Value> = vec![json!(tenant_id.to_string())];
    filter.push_clauses(&mut sql, &mut binds);
    sql.push_str(&format!(
        " ORDER BY c.updated_at DESC, c.id DESC LIMIT {}",
        limit.clamp(1, 200)
    ));
    let found = fetch_conversations(db, sql, binds).await?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    // Each listed conversation's latest message (ids grow with time).
    let marks: Vec<String> = (1..=found.len()).map(|i| format!("${i}")).collect();
    let latest_sql = format!(
        "SELECT m.conversation_id, m.body, m.direction FROM messages m WHERE m.id IN \
         (SELECT MAX(l.id) FROM messages l WHERE l.conversation_id IN ({}) GROUP BY l.conversation_id)",
        marks.join(", ")
    );
    let mut latest_q =
        sqlx::query_as::<_, (String, Option<String>, String)>(sqlx::AssertSqlSafe(latest_sql));
    for c in &found {
        latest_q = latest_q.bind(c.id.to_string());
    }
    let latest: std::collections::HashMap<String, (Option<String>, String)> = latest_q
        .fetch_all(db.pool())
        .await?
        .into_iter()
        .map(|(c, body, direction)| (c, (body, direction)))
        .collect();
    Ok(found
        .into_iter()
        .map(|conversation| {
            let last = latest.get(&conversation.id.to_string());
            InboxRow {
                last_text: last.and_then(|l| l.0.clone()),
                last_direction: last.map(|l| Direction::from_stored(&l.1)),
                conversation,
            }
        })
        .collect())
}

/// Assigns the conversation to `assignee` (a user of its tenant, checked
/// by the caller), or to nobody.
pub async fn assign(
    tx: &mut crate::Tx<'_>,
    conversation_id: Uuid,
    assignee: Option<Uuid>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE conversations SET assignee_id = $1, updated_at = $2 WHERE id = $3")
        .bind(assignee.map(|a| a.to_string()))
        .bind(now_ms())
        .bind(conversation_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The latest change to any of the tenant's conversations (Unix ms): the
/// inbox's live view looks again when it moves.
pub async fn last_change(db: &Db, tenant_id: Uuid) -> Result<Option<i64>, StoreError> {
    latest_update(db, "conversations WHERE tenant_id = $1", tenant_id).await
}

/// The latest change to a conversation (Unix ms): to it (state,
/// assignment) or to its messages, delivery statuses included.
pub async fn last_conversation_change(
    db: &Db,
    conversation_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    latest_update(
        db,
        "(SELECT updated_at FROM messages WHERE conversation_id = $1 \
         UNION ALL SELECT updated_at FROM conversations WHERE id = $1) AS changes",
        conversation_id,
    )
    .await
}

/// `MAX(updated_at)` of the rows `rows` (a table and a condition on `$1`,
/// or a subquery) selects.
async fn latest_update(db: &Db, rows: &'static str, id: Uuid) -> Result<Option<i64>, StoreError> {
    let (at,): (Option<i64>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT MAX(updated_at) FROM {rows}"
    )))
    .bind(id.to_string())
    .fetch_one(db.pool())
    .await?;
    Ok(at)
}

/// The open conversation of a contact on an account, by the contact's channel id.
pub async fn find_open(
    db: &Db,
    tenant_id: Uuid,
    account_id: Uuid,
    channel_user_id: &str,
) -> Result<Option<Conversation>, StoreError> {
    let row: Option<ConversationRow> =
        open_row(db, tenant_id, account_id, channel_user_id, "").await?;
    row.map(conversation_from_row).transpose()
}

/// A conversation and its memory, read together (`CONVERSATION_COLUMNS`,
/// then `memory::MEMORY_COLUMNS`).
struct WithMemory(Conversation, Memory);

impl FromCols for WithMemory {
    fn from_cols(row: &impl Columns) -> Result<WithMemory, StoreError> {
        let conversation = conversation_from_row(ConversationRow::from_cols(row)?)?;
        let first = CONVERSATION_COLUMNS.split(',').count();
        let vars: String = row.col(first)?;
        let memory = Memory::from_columns(
            &vars,
            row.col(first + 1)?,
            row.col(first + 2)?,
            row.col(first + 3)?,
        );
        Ok(WithMemory(conversation, memory))
    }
}

/// `find_open` and the conversation's memory, in one read: a reply turn
/// needs both.
pub async fn find_open_with_memory(
    db: &Db,
    tenant_id: Uuid,
    account_id: Uuid,
    channel_user_id: &str,
) -> Result<Option<(Conversation, Memory)>, StoreError> {
    // Names only the conversations table has: no alias needed.
    let extra = format!(", {}", memory::MEMORY_COLUMNS);
    let row: Option<WithMemory> =
        open_row(db, tenant_id, account_id, channel_user_id, &extra).await?;
    Ok(row.map(|WithMemory(c, m)| (c, m)))
}

/// The row of a contact's open conversation: `CONVERSATION_COLUMNS`, then
/// `extra` (a list that starts with a comma, or nothing).
async fn open_row<R: FromCols>(
    db: &Db,
    tenant_id: Uuid,
    account_id: Uuid,
    channel_user_id: &str,
    extra: &str,
) -> Result<Option<R>, StoreError> {
    sql::query(sqlx::AssertSqlSafe(format!(
        // The contact first, by its unique (account, channel id), then its
        // open conversation (CROSS JOIN keeps SQLite to that order: it
        // preferred walking the tenant's conversations). The contact's id
        // is also given as a subquery so that the conversation is found by
        // (account, contact) whatever the statistics: PostgreSQL, before
        // its first ANALYZE, walked all of the account's open
        // conversations per lookup (ADR 0030).
        "SELECT {CONVERSATION_COLUMNS}{extra} FROM contacts k CROSS JOIN conversations c \
         WHERE k.account_id = $2 AND k.channel_user_id = $3 AND c.account_id = $2 \
         AND c.contact_id = (SELECT id FROM contacts WHERE account_id = $2 AND channel_user_id = $3) \
         AND c.contact_id = k.id AND c.closed_at IS NULL AND c.tenant_id = $1"
    )))
    .bind(tenant_id.to_string())
    .bind(account_id.to_string())
    .bind(channel_user_id)
    .fetch_optional(&mut db.reader().await?.conn())
    .await
}

/// An account and inbound messages for the store's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use integro_core::{ChannelKind, InboundMessage};
    use time::OffsetDateTime;
    use uuid::Uuid;

    use crate::accounts::Account;

    pub(crate) fn account() -> Account {
        Account {
            id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            bot_id: Uuid::new_v4(),
            kind: ChannelKind::TwilioWhatsapp,
            name: "test".into(),
            external_id: None,
            credentials: BTreeMap::new(),
            template: None,
            active: true,
            created_at: OffsetDateTime::now_utc(),
            updated_at: OffsetDateTime::now_utc(),
            created_by: None,
        }
    }

    pub(crate) fn message(provider_id: &str) -> InboundMessage {
        InboundMessage {
            provider_message_id: provider_id.into(),
            from: "+15550001".into(),
            from_name: None,
            phone_e164: None,
            kind: "text".into(),
            text: Some(format!("hello {provider_id}")),
            media: Vec::new(),
            reply_to: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use integro_core::InboundMessage;

    use super::fixtures::{account, message};
    use super::*;

    /// A batch that repeats messages stored before (a provider's retries)
    /// stores only its new ones, queues a job for each of those only, and
    /// says which were duplicates.
    #[tokio::test]
    async fn a_batch_stores_its_new_messages_and_names_the_duplicates() {
        let (_dir, db) = crate::migrations::test_sqlite().await;
        let account = account();
        let store = |ids: &'static [&'static str]| {
            let (db, account) = (db.clone(), account.clone());
            async move {
                db.write(move |tx| {
                    Box::pin(async move {
                        let messages: Vec<InboundMessage> =
                            ids.iter().map(|id| message(id)).collect();
                        let batch: Vec<Inbound> = messages
                            .iter()
                            .map(|m| Inbound {
                                account: &account,
                                message: m,
                                request_id: None,
                                traceparent: None,
                            })
                            .collect();
                        let mut jobs = Vec::new();
                        let outcomes = record_inbound(tx, &batch, &mut jobs).await?;
                        Ok((outcomes, jobs.len()))
                    })
                })
                .await
                .unwrap()
            }
        };
        let (first, jobs) = store(&["SM1", "SM2"]).await;
        assert!(first.iter().all(|o| matches!(o, Ingested::Stored { .. })));
        assert_eq!(jobs, 2);
        // Old, new, old again, new twice within the batch.
        let (second, jobs) = store(&["SM2", "SM3", "SM1", "SM4", "SM4"]).await;
        let stored: Vec<bool> = second
            .iter()
            .map(|o| matches!(o, Ingested::Stored { .. }))
            .collect();
        assert_eq!(stored, [false, true, false, true, false]);
        assert_eq!(jobs, 2);
        // Nothing but duplicates.
        let (third, jobs) = store(&["SM3", "SM4"]).await;
        assert_eq!(third, [Ingested::Duplicate, Ingested::Duplicate]);
        assert_eq!(jobs, 0);
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(count, 4);
        db.close().await;
    }
}
