//! Posts a tenant publishes on one of its X accounts (#38): an agent
//! writes one (`draft`), submits it (`pending_approval`), an admin approves
//! it (`scheduled`, with its `publish_post` job) or rejects it with a
//! reason (`rejected`); the job publishes it once (`published`, or `failed`
//! with X's code). Changing an approved post sends it back for approval.

use integro_core::{Actor, PostMetrics, new_id};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{from_ms, now_ms, to_ms};
use crate::filter::Where;
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, Tx, parse_id};
use integro_db::OnUnique;

/// X's limit, in weighted characters (`weighted_length`).
pub const MAX_WEIGHTED_CHARS: usize = 280;
/// What a link counts for, whatever its length (X shortens it).
pub const LINK_WEIGHT: usize = 23;
/// The most media links a post carries.
pub const MAX_MEDIA: usize = 4;
/// The longest media link, in characters.
pub const MAX_MEDIA_URL_CHARS: usize = 2000;
/// The most posts a tenant holds that are not published (drafts, posts
/// waiting for approval or their time, rejected and failed ones).
pub const MAX_UNPUBLISHED: i64 = 1000;
/// How far ahead a post can be scheduled.
pub const MAX_SCHEDULE_AHEAD: time::Duration = time::Duration::days(365);
/// The longest reason for a rejection, in characters.
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PostState {
    /// Being written; not yet asked to be approved.
    Draft,
    /// Waiting for an admin or owner to approve or reject it.
    PendingApproval,
    /// Approved: published at `scheduled_at` (or at once).
    Scheduled,
    Published,
    /// X refused it (`error_code`, `error_message`), or it could not be
    /// published after every retry.
    Failed,
    /// Refused by an admin or owner (`reject_reason`).
    Rejected,
}

impl PostState {
    pub const ALL: [PostState; 6] = [
        PostState::Draft,
        PostState::PendingApproval,
        PostState::Scheduled,
        PostState::Published,
        PostState::Failed,
        PostState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PostState::Draft => "draft",
            PostState::PendingApproval => "pending_approval",
            PostState::Scheduled => "scheduled",
            PostState::Published => "published",
            PostState::Failed => "failed",
            PostState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<PostState> {
        PostState::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for PostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Post {
    pub id: Uuid,
    /// The X account it is published on.
    pub account_id: Uuid,
    pub state: PostState,
    pub text: String,
    /// Published as links after the text, one a line (media upload is not
    /// supported).
    pub media_urls: Vec<String>,
    /// Sent to X as `made_with_ai` (the post contains AI-generated media).
    pub made_with_ai: bool,
    /// When it is published once approved; at once when absent.
    #[serde(with = "time::serde::rfc3339::option")]
    pub scheduled_at: Option<OffsetDateTime>,
    /// Why an admin rejected it (state `rejected`).
    pub reject_reason: Option<String>,
    /// Who wrote it (an email, a key's name).
    pub created_by: String,
    /// When it was last submitted for approval.
    #[serde(with = "time::serde::rfc3339::option")]
    pub submitted_at: Option<OffsetDateTime>,
    /// Who approved it last.
    pub approved_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub approved_at: Option<OffsetDateTime>,
    /// When publishing began: from then on the post cannot be changed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub publish_started_at: Option<OffsetDateTime>,
    /// The post's id at X once published.
    pub provider_post_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
    /// X's code and message when it refused the post (state `failed`).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Its public metrics as X last reported them (refreshed on a schedule
    /// for 30 days after publication).
    pub metrics: Option<PostMetrics>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub metrics_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// How many times it was approved: a publish job is for one approval.
    #[serde(skip)]
    pub approval: i64,
}

impl Post {
    /// The text sent to X: the post's text, then its media links.
    pub fn publish_text(&self) -> String {
        publish_text(&self.text, &self.media_urls)
    }
}

/// The text sent to X for `text` with `media_urls`: each link on a line of
/// its own after the text.
pub fn publish_text(text: &str, media_urls: &[String]) -> String {
    let mut out = text.to_string();
    for url in media_urls {
        out.push('\n');
        out.push_str(url);
    }
    out
}

/// A character's weight as X counts it: 1 for Latin, Greek, Cyrillic,
/// Hebrew, Arabic, Indic and other scripts up to U+10FF and for common
/// punctuation; 2 for anything else (CJK, emoji).
fn char_weight(c: char) -> usize {
    match u32::from(c) {
        0..=0x10FF | 0x2000..=0x200D | 0x2010..=0x201F | 0x2032..=0x2037 => 1,
        _ => 2,
    }
}

/// `text`'s length as X counts it, simplified: every `http://` or
/// `https://` word counts 23 whatever its length; other characters 1 or 2
/// (`char_weight`). An emoji made of several code points counts 2 for
/// each, which X counts as 2 in all: the count errs on the long side, so a
/// text it accepts X accepts too.
pub fn weighted_length(text: &str) -> usize {
    let separators: usize = text
        .chars()
        .filter(|c| c.is_whitespace())
        .map(char_weight)
        .sum();
    let words: usize = text
        .split(char::is_whitespace)
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                LINK_WEIGHT
            } else {
                word.chars().map(char_weight).sum()
            }
        })
        .sum();
    separators + words
}

/// A post's text, trimmed: not empty, at most 280 weighted characters.
pub fn check_text(text: &str) -> Result<String, StoreError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(StoreError::invalid("text", "must not be empty"));
    }
    crate::fields::check_text("text", t, crate::fields::MAX_MESSAGE_CHARS)?;
    let length = weighted_length(t);
    if length > MAX_WEIGHTED_CHARS {
        return Err(StoreError::invalid(
            "text",
            format!(
                "is {length} characters as X counts them; X takes at most {MAX_WEIGHTED_CHARS} \
                 (a link counts {LINK_WEIGHT}, CJK characters and emoji 2)"
            ),
        ));
    }
    Ok(t.to_string())
}

/// Media links: at most 4, each an `https` URL of at most 2,000 characters.
pub fn check_media(urls: &[String]) -> Result<Vec<String>, StoreError> {
    if urls.len() > MAX_MEDIA {
        return Err(StoreError::invalid(
            "media_urls",
            format!("at most {MAX_MEDIA} media links"),
        ));
    }
    urls.iter()
        .map(|u| {
            let u = u.trim();
            let refuse = |why: &str| StoreError::invalid("media_urls", format!("`{u}`: {why}"));
            if u.chars().count() > MAX_MEDIA_URL_CHARS {
                return Err(StoreError::invalid(
                    "media_urls",
                    format!("a link must be at most {MAX_MEDIA_URL_CHARS} characters"),
                ));
            }
            let parsed = url::Url::parse(u).map_err(|_| refuse("not a URL"))?;
            if parsed.scheme() != "https" || parsed.host_str().is_none_or(str::is_empty) {
                return Err(refuse("must be an https URL"));
            }
            if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(refuse("must not contain spaces"));
            }
            Ok(u.to_string())
        })
        .collect()
}

/// The text with its media links must fit X's limit too (each link counts
/// 23 and its line break 1).
pub fn check_length(text: &str, media_urls: &[String]) -> Result<(), StoreError> {
    let length = weighted_length(&publish_text(text, media_urls));
    if length > MAX_WEIGHTED_CHARS {
        return Err(StoreError::invalid(
            "media_urls",
            format!(
                "the text with its media links is {length} characters as X counts them \
                 (each link {}); X takes at most {MAX_WEIGHTED_CHARS}",
                LINK_WEIGHT + 1
            ),
        ));
    }
    Ok(())
}

/// A publication time: in the future, at most a year ahead.
pub fn check_scheduled_at(at: OffsetDateTime) -> Result<(), StoreError> {
    let now = from_ms(now_ms());
    if at <= now {
        return Err(StoreError::invalid("scheduled_at", "must be in the future"));
    }
    if at > now + MAX_SCHEDULE_AHEAD {
        return Err(StoreError::invalid(
            "scheduled_at",
            "must be at most a year ahead",
        ));
    }
    Ok(())
}

/// A rejection's reason, trimmed: 1 to 500 characters.
pub fn check_reason(reason: &str) -> Result<String, StoreError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(StoreError::invalid(
            "reason",
            "say why the post is rejected",
        ));
    }
    crate::fields::check_text("reason", r, MAX_REASON_CHARS)?;
    Ok(r.to_string())
}

const COLUMNS: &str = "id, account_id, state, body, media_urls, made_with_ai, scheduled_at, reject_reason, \
                       created_by, approved_by, approved_at, approval, publish_started_at, provider_post_id, \
                       published_at, error_code, error_message, created_at, updated_at, submitted_at, \
                       impressions, likes, reposts, replies, quotes, bookmarks, metrics_at";

/// A row of `COLUMNS`.
struct Row(Post);

impl<'r> sqlx::FromRow<'r, AnyRow> for Row {
    fn from_row(r: &'r AnyRow) -> Result<Row, sqlx::Error> {
        let id = |i: usize| -> Result<Uuid, sqlx::Error> {
            parse_id(&r.try_get::<String, _>(i)?).map_err(|e| sqlx::Error::Decode(e.into()))
        };
        let time = |i: usize| -> Result<Option<OffsetDateTime>, sqlx::Error> {
            Ok(r.try_get::<Option<i64>, _>(i)?.map(from_ms))
        };
        let state: String = r.try_get(2)?;
        let media: String = r.try_get(4)?;
        Ok(Row(Post {
            id: id(0)?,
            account_id: id(1)?,
            state: PostState::parse(&state)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown post state {state}").into()))?,
            text: r.try_get(3)?,
            media_urls: serde_json::from_str(&media).unwrap_or_default(),
            made_with_ai: r.try_get::<i64, _>(5)? != 0,
            scheduled_at: time(6)?,
            reject_reason: r.try_get(7)?,
            created_by: r.try_get(8)?,
            approved_by: r.try_get(9)?,
            approved_at: time(10)?,
            approval: r.try_get(11)?,
            publish_started_at: time(12)?,
            provider_post_id: r.try_get(13)?,
            published_at: time(14)?,
            error_code: r.try_get(15)?,
            error_message: r.try_get(16)?,
            created_at: from_ms(r.try_get(17)?),
            updated_at: from_ms(r.try_get(18)?),
            submitted_at: time(19)?,
            metrics_at: time(26)?,
            // Absent until X reported them (a deleted post is only marked read).
            metrics: match r.try_get::<Option<i64>, _>(20)? {
                None => None,
                Some(_) => {
                    let n = |i: usize| -> Result<i64, sqlx::Error> {
                        Ok(r.try_get::<Option<i64>, _>(i)?.unwrap_or(0))
                    };
                    Some(PostMetrics {
                        impressions: n(20)?,
                        likes: n(21)?,
                        reposts: n(22)?,
                        replies: n(23)?,
                        quotes: n(24)?,
                        bookmarks: n(25)?,
                    })
                }
            },
        }))
    }
}

/// A post about to be created, its fields checked by the caller.
pub struct NewPost {
    pub account_id: Uuid,
    pub text: String,
    pub media_urls: Vec<String>,
    pub made_with_ai: bool,
    pub scheduled_at: Option<OffsetDateTime>,
    /// `draft`, or `pending_approval` when it is submitted at once.
    pub state: PostState,
}

/// Creates a post. Refused past `MAX_UNPUBLISHED` posts not published.
pub async fn create(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    actor: &Actor,
    new: NewPost,
) -> Result<Post, StoreError> {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM posts WHERE tenant_id = $1 AND state <> 'published'")
            .bind(tenant_id.to_string())
            .fetch_one(&mut **tx)
            .await?;
    if count >= MAX_UNPUBLISHED {
        return Err(StoreError::invalid(
            "account_id",
            format!(
                "a tenant has at most {MAX_UNPUBLISHED} posts not yet published; delete drafts, \
                 rejected or failed posts before adding another"
            ),
        ));
    }
    let now = from_ms(now_ms());
    let post = Post {
        id: new_id(),
        account_id: new.account_id,
        state: new.state,
        text: new.text,
        media_urls: new.media_urls,
        made_with_ai: new.made_with_ai,
        scheduled_at: new.scheduled_at,
        reject_reason: None,
        created_by: actor.label.clone(),
        submitted_at: (new.state == PostState::PendingApproval).then_some(now),
        approved_by: None,
        approved_at: None,
        approval: 0,
        publish_started_at: None,
        provider_post_id: None,
        published_at: None,
        error_code: None,
        error_message: None,
        metrics: None,
        metrics_at: None,
        created_at: now,
        updated_at: now,
    };
    sqlx::query(
        "INSERT INTO posts (id, tenant_id, account_id, state, body, media_urls, made_with_ai, scheduled_at, \
         created_by, approval, created_at, updated_at, submitted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10, $11)",
    )
    .bind(post.id.to_string())
    .bind(tenant_id.to_string())
    .bind(post.account_id.to_string())
    .bind(post.state.as_str())
    .bind(&post.text)
    .bind(serde_json::to_string(&post.media_urls).expect("strings serialise"))
    .bind(i64::from(post.made_with_ai))
    .bind(post.scheduled_at.map(to_ms))
    .bind(&post.created_by)
    .bind(to_ms(now))
    .bind(post.submitted_at.map(to_ms))
    .execute(&mut **tx)
    .await?;
    Ok(post)
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<Post>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM posts WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

/// The post, read to be changed: on PostgreSQL its row stays locked until
/// the transaction ends (SQLite's write transaction holds the database).
pub async fn lock(tx: &mut Tx<'_>, tenant_id: Uuid, id: Uuid) -> Result<Option<Post>, StoreError> {
    let sqlite = crate::Conn::of(tx).is_sqlite();
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM posts WHERE tenant_id = $1 AND id = $2{}",
        if sqlite { "" } else { " FOR UPDATE" }
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.0))
}

/// Stores what a person may change of a post (read with `lock`): its
/// state, text, media, schedule, approval and rejection, and (on a new
/// approval) what is left of an earlier publication that failed.
pub async fn save(tx: &mut Tx<'_>, tenant_id: Uuid, post: &Post) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE posts SET state = $1, body = $2, media_urls = $3, made_with_ai = $4, scheduled_at = $5, \
         reject_reason = $6, approved_by = $7, approved_at = $8, approval = $9, updated_at = $10, \
         publish_started_at = $13, error_code = $14, error_message = $15, \
         submitted_at = $16 WHERE tenant_id = $11 AND id = $12",
    )
    .bind(post.state.as_str())
    .bind(&post.text)
    .bind(serde_json::to_string(&post.media_urls).expect("strings serialise"))
    .bind(i64::from(post.made_with_ai))
    .bind(post.scheduled_at.map(to_ms))
    .bind(post.reject_reason.clone())
    .bind(post.approved_by.clone())
    .bind(post.approved_at.map(to_ms))
    .bind(post.approval)
    .bind(to_ms(post.updated_at))
    .bind(tenant_id.to_string())
    .bind(post.id.to_string())
    .bind(post.publish_started_at.map(to_ms))
    .bind(post.error_code.clone())
    .bind(post.error_message.clone())
    .bind(post.submitted_at.map(to_ms))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn delete(tx: &mut Tx<'_>, tenant_id: Uuid, id: Uuid) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM posts WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id.to_string())
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The tenant's posts, newest first, of one account or in one state.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    account_id: Option<Uuid>,
    state: Option<PostState>,
    page: &PageRequest,
) -> Result<Page<Post>, StoreError> {
    let rows: Vec<Row> = Where::new(&format!("SELECT {COLUMNS} FROM posts"))
        .and("tenant_id = {}", Some(tenant_id))
        .and("account_id = {}", account_id)
        .and("state = {}", state.map(PostState::as_str))
        .newest_first(page)
        .fetch(db)
        .await?;
    Ok(Page::from_rows(
        rows.into_iter().map(|r| r.0).collect(),
        page,
        |p| p.id,
    ))
}

/// A publish job's first step: the post, if it is still the one approved
/// (`approval`) and scheduled, marked as being published from now on (the
/// first attempt's time is kept). `None`: rejected, changed or deleted
/// since, or already published.
pub async fn start_publishing(
    db: &Db,
    tenant_id: Uuid,
    id: Uuid,
    approval: i64,
) -> Result<Option<Post>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE posts SET publish_started_at = COALESCE(publish_started_at, $1) \
         WHERE tenant_id = $2 AND id = $3 AND state = 'scheduled' AND approval = $4 RETURNING {COLUMNS}"
    )))
    .bind(now_ms())
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .bind(approval)
    .fetch_optional(&mut *db.writer().await?)
    .await?;
    Ok(row.map(|r| r.0))
}

/// The post went out as `provider_post_id`.
pub async fn mark_published(
    tx: &mut Tx<'_>,
    id: Uuid,
    provider_post_id: &str,
) -> Result<Option<Post>, StoreError> {
    let now = now_ms();
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE posts SET state = 'published', provider_post_id = $1, published_at = $2, error_code = NULL, \
         error_message = NULL, updated_at = $2 WHERE id = $3 RETURNING {COLUMNS}"
    )))
    .bind(provider_post_id)
    .bind(now)
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await
    .on_unique("the X post is already recorded as another post's")?;
    Ok(row.map(|r| r.0))
}

/// The post could not be published: X refused it (its code and message),
/// or every attempt failed. A published post stays published.
pub async fn mark_failed(
    tx: &mut Tx<'_>,
    id: Uuid,
    code: Option<&str>,
    message: &str,
) -> Result<Option<Post>, StoreError> {
    let now = now_ms();
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE posts SET state = 'failed', error_code = $1, error_message = $2, updated_at = $3 \
         WHERE id = $4 AND state = 'scheduled' RETURNING {COLUMNS}"
    )))
    .bind(code)
    .bind(message.chars().take(1000).collect::<String>())
    .bind(now)
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.0))
}

/// Posts one account may have published or scheduled within a day either
/// side of a new one: well below X's own limits (X's docs give 100 per 15
/// minutes, and lower elsewhere), as X asks of automated accounts.
pub const DAILY_CAP: i64 = 50;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Text as two posts compare for X's rule against the same content on
/// several accounts: case, spacing and links aside.
fn same_content(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| !w.starts_with("http://") && !w.starts_with("https://"))
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What X's rules for automated accounts forbid of `post` once approved:
/// the same text on another of the tenant's accounts within a day of it,
/// or more than `DAILY_CAP` posts on its account within a day. `(field,
/// why)` when so.
pub async fn policy_conflict(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    post: &Post,
) -> Result<Option<(&'static str, String)>, StoreError> {
    let at = post.scheduled_at.map(to_ms).unwrap_or_else(now_ms);
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT account_id, body FROM posts \
         WHERE tenant_id = $1 AND state IN ('scheduled', 'published') AND id <> $2 \
         AND COALESCE(published_at, scheduled_at, approved_at) BETWEEN $3 AND $4",
    )
    .bind(tenant_id.to_string())
    .bind(post.id.to_string())
    .bind(at - DAY_MS)
    .bind(at + DAY_MS)
    .fetch_all(&mut **tx)
    .await?;
    let account = post.account_id.to_string();
    let content = same_content(&post.text);
    if rows
        .iter()
        .any(|r| r.0 != account && same_content(&r.1) == content)
    {
        return Ok(Some((
            "text",
            "the same text goes out on another of your X accounts within a day of it: X forbids \
             identical content across accounts"
                .into(),
        )));
    }
    let on_account = rows.iter().filter(|r| r.0 == account).count() as i64;
    if on_account >= DAILY_CAP {
        return Ok(Some((
            "scheduled_at",
            format!(
                "the account already has {on_account} posts within a day of this one (at most {DAILY_CAP})"
            ),
        )));
    }
    Ok(None)
}

/// The tenant's posts published from `from_ms` until `until_ms`, most
/// impressions first (as last refreshed), at most `limit`.
pub async fn published_between(
    db: &Db,
    tenant_id: Uuid,
    from_ms: i64,
    until_ms: i64,
    limit: i64,
) -> Result<Vec<Post>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM posts WHERE tenant_id = $1 AND state = 'published' \
         AND published_at >= $2 AND published_at < $3 \
         ORDER BY COALESCE(impressions, -1) DESC, published_at DESC LIMIT $4"
    )))
    .bind(tenant_id.to_string())
    .bind(from_ms)
    .bind(until_ms)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Whether a post of the account is already recorded as `provider_post_id`.
pub async fn provider_id_known(
    db: &Db,
    account_id: Uuid,
    provider_post_id: &str,
) -> Result<bool, StoreError> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT id FROM posts WHERE account_id = $1 AND provider_post_id = $2")
            .bind(account_id.to_string())
            .bind(provider_post_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_links_as_23_and_wide_characters_as_2() {
        assert_eq!(weighted_length("hello world"), 11);
        assert_eq!(
            weighted_length("see https://example.com/a/very/long/path?with=query"),
            4 + LINK_WEIGHT
        );
        assert_eq!(weighted_length("日本"), 4);
        assert_eq!(weighted_length("ok 👍"), 5);
        assert_eq!(weighted_length("“quoted” — café"), 15);
        assert!(check_text(&"a".repeat(280)).is_ok());
        assert!(check_text(&"a".repeat(281)).is_err());
        assert!(check_text(&"日".repeat(141)).is_err());
        assert!(check_text("   ").is_err());
    }

    #[test]
    fn media_links_are_https_and_fit_with_the_text() {
        let ok = vec!["https://cdn.example.com/a.png".to_string()];
        assert_eq!(check_media(&ok).unwrap(), ok);
        assert!(check_media(&["http://cdn.example.com/a.png".to_string()]).is_err());
        assert!(check_media(&["not a url".to_string()]).is_err());
        assert!(check_media(&vec![ok[0].clone(); 5]).is_err());
        let long = format!("https://example.com/{}", "a".repeat(2000));
        assert!(check_media(&[long]).is_err());
        assert!(check_length(&"a".repeat(256), &ok).is_ok());
        assert!(check_length(&"a".repeat(257), &ok).is_err());
        assert_eq!(publish_text("hi", &ok), "hi\nhttps://cdn.example.com/a.png");
    }

    #[test]
    fn schedules_are_in_the_coming_year() {
        let now = from_ms(now_ms());
        assert!(check_scheduled_at(now + time::Duration::hours(1)).is_ok());
        assert!(check_scheduled_at(now - time::Duration::minutes(1)).is_err());
        assert!(check_scheduled_at(now + time::Duration::days(366)).is_err());
        assert!(check_reason(" ").is_err());
        assert!(check_reason(&"x".repeat(501)).is_err());
    }
}
