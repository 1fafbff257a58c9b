//! Posts on X (#38): the tenant's posts, newest first, by state and X
//! account; writing one, AI drafts, and the steps of approval (submit,
//! approve, reject with a reason, delete). Every action is the API's own
//! handler (`api::posts`, `api::post_drafts`): one validation, one role
//! check, one audit. A refusal the user can act on (a field past X's
//! limits, a policy conflict, a post in the wrong state, a failed AI call)
//! is shown on this page beside its form, with what was typed; anything
//! else (no such post, a role too low) is the error page.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use integro_core::{ChannelKind, Permission};
use integro_store::posts::{Post, PostState};
use serde::Deserialize;
use time::PrimitiveDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, render_with, when};
use super::session::Acting;
use crate::api;
use crate::api::accounts::AccountParams;
use crate::api::post_drafts::DraftRequest;
use crate::api::posts::{PostParams, PostRequest, RejectRequest};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Posts on one page of the list.
const PAGE_ROWS: u32 = 50;

/// The permission `api::posts::create_post`, `submit_post` and
/// `delete_post` (and the AI drafts) require: the forms are shown to
/// whoever holds it.
const WRITE: Permission = Permission::Converse;
/// The permission `api::posts::approve_post` and `reject_post` require.
const APPROVE: Permission = Permission::Manage;

/// The list's filters and page, repeated by every form's target so that an
/// action comes back to the same view.
#[derive(Debug, Default, Deserialize)]
pub struct PostsQuery {
    /// A state (`draft`, …), or empty for all.
    #[serde(default)]
    state: String,
    /// An X account's id, or empty for all.
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    cursor: String,
    /// After AI drafts: how many were written and left out.
    #[serde(default)]
    drafted: String,
    #[serde(default)]
    skipped: String,
    /// Of the drafts, those approved at once (`x_ai_drafts_skip_approval`).
    #[serde(default)]
    approved: String,
}

impl PostsQuery {
    fn params(&self) -> Result<PostParams, PageError> {
        let state = match self.state.as_str() {
            "" => None,
            s => Some(
                PostState::parse(s)
                    .ok_or_else(|| PageError::Invalid(format!("unknown post state `{s}`")))?,
            ),
        };
        let account_id = match self.account_id.as_str() {
            "" => None,
            id => Some(
                Uuid::parse_str(id)
                    .map_err(|_| PageError::Invalid("account_id is not an id".into()))?,
            ),
        };
        Ok(PostParams {
            limit: Some(PAGE_ROWS),
            cursor: (!self.cursor.is_empty()).then(|| self.cursor.clone()),
            account_id,
            state,
        })
    }

    /// `?state=…&account_id=…` (and the cursor with `page`), or empty
    /// without filters.
    fn query_string(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if !self.state.is_empty() {
            q.append_pair("state", &self.state);
        }
        if !self.account_id.is_empty() {
            q.append_pair("account_id", &self.account_id);
        }
        if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
            q.append_pair("cursor", cursor);
        }
        let q = q.finish();
        if q.is_empty() { q } else { format!("?{q}") }
    }

    /// This view again, for the forms' targets and the redirects after them.
    fn here(&self) -> String {
        self.query_string(Some(&self.cursor))
    }
}

/// A post as its row shows it.
pub struct PostView {
    pub id: Uuid,
    pub account: String,
    pub state: &'static str,
    pub text: String,
    pub media_urls: Vec<String>,
    pub made_with_ai: bool,
    pub scheduled: Option<String>,
    pub published: Option<String>,
    pub provider_post_id: Option<String>,
    /// Its public metrics on X, as last read ("1500 impressions, 40 likes, …").
    pub metrics: Option<String>,
    pub reject_reason: Option<String>,
    pub error: Option<String>,
    pub created_by: String,
    pub created: String,
    pub approved_by: Option<String>,
    pub approved: Option<String>,
    /// Its publication has begun: nothing can be done to it any more.
    pub publishing: bool,
    pub can_submit: bool,
    pub can_approve: bool,
    pub can_reject: bool,
    pub can_delete: bool,
    /// An action on this post was just refused, and why.
    pub refused: Option<String>,
    /// The reason typed for a rejection that was refused, kept.
    pub reason: String,
}

fn post_view(p: Post, accounts: &[(Uuid, String)], write: bool, approve: bool) -> PostView {
    let publishing = p.state == PostState::Scheduled && p.publish_started_at.is_some();
    let open = !publishing;
    PostView {
        id: p.id,
        account: accounts
            .iter()
            .find(|(id, _)| *id == p.account_id)
            .map_or_else(|| p.account_id.to_string(), |(_, name)| name.clone()),
        state: p.state.as_str(),
        can_submit: write
            && matches!(
                p.state,
                PostState::Draft | PostState::Rejected | PostState::Failed
            ),
        can_approve: approve && p.state == PostState::PendingApproval,
        can_reject: approve
            && open
            && matches!(p.state, PostState::PendingApproval | PostState::Scheduled),
        can_delete: write && open && p.state != PostState::Published,
        publishing,
        text: p.text,
        media_urls: p.media_urls,
        made_with_ai: p.made_with_ai,
        scheduled: p.scheduled_at.map(when),
        published: p.published_at.map(when),
        provider_post_id: p.provider_post_id,
        metrics: p.metrics.map(|m| {
            format!(
                "{} impressions, {} likes, {} reposts, {} replies, {} quotes, {} bookmarks",
                m.impressions, m.likes, m.reposts, m.replies, m.quotes, m.bookmarks
            )
        }),
        reject_reason: p.reject_reason,
        error: match (p.error_code, p.error_message) {
            (None, None) => None,
            (Some(code), None) => Some(code),
            (None, Some(message)) => Some(message),
            (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        },
        created_by: p.created_by,
        created: when(p.created_at),
        approved_by: p.approved_by,
        approved: p.approved_at.map(when),
        refused: None,
        reason: String::new(),
    }
}

/// The "Write a post" form's fields, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct ComposeForm {
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    text: String,
    /// One link a line.
    #[serde(default)]
    media_urls: String,
    /// `datetime-local`, read as UTC; empty: at once on approval.
    #[serde(default)]
    scheduled_at: String,
    /// Present when ticked.
    made_with_ai: Option<String>,
    submit: Option<String>,
}

/// The "Draft with AI" form's fields, as typed.
#[derive(Debug, Deserialize)]
pub struct DraftForm {
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    count: String,
}

impl Default for DraftForm {
    fn default() -> DraftForm {
        DraftForm {
            account_id: String::new(),
            topic: String::new(),
            count: "3".into(),
        }
    }
}

#[derive(Template)]
#[template(path = "posts.html")]
struct PostsPage {
    layout: Layout,
    posts: Vec<PostView>,
    /// The tenant's X accounts: id and name.
    accounts: Vec<(Uuid, String)>,
    states: [&'static str; 6],
    state: String,
    account_id: String,
    /// This view's query string, for the forms' targets.
    here: String,
    /// The next page's address, when there is one.
    older: Option<String>,
    /// Not the first page: a link back to it.
    first: Option<String>,
    can_write: bool,
    can_approve: bool,
    compose: ComposeForm,
    compose_error: Option<String>,
    draft: DraftForm,
    draft_error: Option<String>,
    /// A refusal of an action on a post this page does not show.
    error: Option<String>,
    notice: Option<String>,
    /// Each X account's figures over the last 30 days.
    metrics: Vec<AccountFigures>,
    /// This month's estimated X spend, and the limit if any.
    spend: String,
}

/// An X account's figures as the page shows them.
struct AccountFigures {
    name: String,
    direct_messages: String,
    mentions: String,
    response: String,
    approvals: String,
    published: String,
    public_metrics: String,
    failures: String,
}

/// `ms` as seconds or minutes, for people.
fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{:.0} min", ms as f64 / 60_000.0),
    }
}

/// The tenant's X figures over the last 30 days, through the API's
/// `GET /api/v1/x/metrics`.
async fn x_figures(state: &AppState, acting: &Acting) -> PageResult<(Vec<AccountFigures>, String)> {
    let range = api::usage::DailyUsageParams {
        from: None,
        to: None,
    };
    let m = api::x_metrics::get_metrics(State(state.clone()), acting.ctx.clone(), Query(range))
        .await?
        .0;
    let figures = m
        .accounts
        .into_iter()
        .map(|a| {
            let p = a.public_metrics;
            AccountFigures {
                name: a.name,
                direct_messages: format!(
                    "{} in, {} out",
                    a.direct_messages.received, a.direct_messages.sent
                ),
                mentions: format!("{} in, {} replies", a.mentions.received, a.mentions.sent),
                response: duration(a.response_ms_avg),
                approvals: format!(
                    "{} (mean wait {})",
                    a.approvals,
                    duration(a.approval_ms_avg)
                ),
                published: a.published.to_string(),
                public_metrics: format!(
                    "{} impressions, {} likes, {} reposts, {} replies",
                    p.impressions, p.likes, p.reposts, p.replies
                ),
                failures: match a.failures.as_slice() {
                    [] => "none".into(),
                    f => f
                        .iter()
                        .map(|f| {
                            let code = if f.code.is_empty() {
                                "no code"
                            } else {
                                &f.code
                            };
                            format!("{code}: {}", f.deliveries + f.posts)
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            }
        })
        .collect();
    let spend = match m.spend.limit_usd {
        Some(limit) => format!(
            "${:.2} of ${limit:.2} this month (estimated){}",
            m.spend.estimated_usd,
            if m.spend.limited {
                ": only replies go out"
            } else {
                ""
            }
        ),
        None => format!(
            "${:.2} this month (estimated), no limit",
            m.spend.estimated_usd
        ),
    };
    Ok((figures, spend))
}

/// What a page drawn after a form shows besides the list.
#[derive(Default)]
struct Outcome {
    compose: ComposeForm,
    compose_error: Option<String>,
    draft: DraftForm,
    draft_error: Option<String>,
    /// The post an action was refused on, why, and the reason typed.
    refused: Option<(Uuid, String, String)>,
}

/// A refusal the user can act on, shown on the page; others are the error
/// page.
fn shown(e: ApiError) -> Result<ApiError, PageError> {
    match e.status {
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT | StatusCode::BAD_REQUEST => Ok(e),
        _ => Err(PageError::Api(e)),
    }
}

/// The form's label for an API field.
fn label(field: &str) -> &str {
    match field {
        "account_id" => "X account",
        "text" => "Text",
        "media_urls" => "Media links",
        "scheduled_at" => "Schedule time",
        "reason" => "Reason",
        "topic" => "Topic",
        "count" => "Number of drafts",
        other => other,
    }
}

/// An API refusal in the form's words: the field's label, then why.
fn explain(e: &ApiError) -> String {
    match e.errors.as_slice() {
        [] => e.detail.clone(),
        errors => errors
            .iter()
            .map(|f| format!("{}: {}", label(&f.field), f.message))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// A `datetime-local` value (`YYYY-MM-DDTHH:MM`, seconds optional), read
/// as UTC, in RFC 3339 for the API, which checks the time itself.
fn utc_time(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let at = PrimitiveDateTime::parse(text, minutes)
        .or_else(|_| PrimitiveDateTime::parse(text, seconds))
        .map_err(|_| "Schedule time: must be a date and a time (UTC)".to_string())?;
    at.assume_utc()
        .format(&Rfc3339)
        .map(Some)
        .map_err(|_| "Schedule time: is out of range".to_string())
}

fn account_of(text: &str, what: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text.trim()).map_err(|_| format!("X account: choose the account {what}"))
}

/// The tenant's X accounts, through the API's list (its role check).
async fn x_accounts(state: &AppState, acting: &Acting) -> PageResult<Vec<(Uuid, String)>> {
    let params = AccountParams {
        limit: Some(200),
        cursor: None,
        bot_id: None,
        kind: Some(ChannelKind::X),
    };
    Ok(
        api::accounts::list_accounts(State(state.clone()), acting.ctx.clone(), Query(params))
            .await?
            .0
            .items
            .into_iter()
            .map(|v| (v.account.id, v.account.name))
            .collect(),
    )
}

async fn posts_page(
    state: &AppState,
    acting: &Acting,
    q: &PostsQuery,
    status: StatusCode,
    outcome: Outcome,
) -> PageResult {
    let page = api::posts::list_posts(State(state.clone()), acting.ctx.clone(), Query(q.params()?))
        .await?
        .0;
    let accounts = x_accounts(state, acting).await?;
    let (metrics, spend) = x_figures(state, acting).await?;
    let can_write = acting.ctx.role.allows(WRITE);
    let can_approve = acting.ctx.role.allows(APPROVE);
    let mut posts: Vec<PostView> = page
        .items
        .into_iter()
        .map(|p| post_view(p, &accounts, can_write, can_approve))
        .collect();
    let mut error = None;
    if let Some((id, why, reason)) = outcome.refused {
        match posts.iter_mut().find(|p| p.id == id) {
            Some(p) => {
                p.refused = Some(why);
                p.reason = reason;
            }
            None => error = Some(why),
        }
    }
    let number = |s: &str| s.parse::<u32>().ok();
    let notice = number(&q.drafted).map(|made| {
        let mut text = match (made, number(&q.approved).unwrap_or(0)) {
            (1, 0) => "1 AI draft written: it waits for approval.".to_string(),
            (n, 0) => format!("{n} AI drafts written: they wait for approval."),
            (1, 1) => "1 AI draft written and approved (the tenant's setting).".to_string(),
            (n, a) if a == n => {
                format!("{n} AI drafts written and approved (the tenant's setting).")
            }
            (n, a) => format!(
                "{n} AI drafts written: {a} approved (the tenant's setting), the others wait for \
                 approval."
            ),
        };
        match number(&q.skipped) {
            None | Some(0) => {}
            Some(1) => text.push_str(" 1 answer of the AI was left out (too long or empty)."),
            Some(n) => {
                text.push_str(&format!(
                    " {n} answers of the AI were left out (too long or empty)."
                ));
            }
        }
        text
    });
    let mut compose = outcome.compose;
    if compose.account_id.is_empty() {
        compose.account_id = q.account_id.clone();
    }
    let mut draft = outcome.draft;
    if draft.account_id.is_empty() {
        draft.account_id = q.account_id.clone();
    }
    Ok(render_with(
        status,
        &PostsPage {
            layout: Layout::of(acting, "Posts", "posts"),
            posts,
            accounts,
            states: PostState::ALL.map(PostState::as_str),
            state: q.state.clone(),
            account_id: q.account_id.clone(),
            here: q.here(),
            older: page
                .next_cursor
                .map(|c| format!("/posts{}", q.query_string(Some(&c)))),
            first: (!q.cursor.is_empty()).then(|| format!("/posts{}", q.query_string(None))),
            can_write,
            can_approve,
            compose,
            compose_error: outcome.compose_error,
            draft,
            draft_error: outcome.draft_error,
            error,
            notice,
            metrics,
            spend,
        },
    ))
}

pub async fn posts(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<PostsQuery>,
) -> PageResult {
    posts_page(&state, &acting, &q, StatusCode::OK, Outcome::default()).await
}

/// Back to this view, at the post.
fn back(q: &PostsQuery, id: Option<Uuid>) -> PageResult {
    let at = id.map(|id| format!("#post-{id}")).unwrap_or_default();
    Ok(Redirect::to(&format!("/posts{}{at}", q.here())).into_response())
}

/// Writes a post (`POST /api/v1/posts`); a refusal is shown beside the
/// form, with what was typed.
pub async fn create(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<PostsQuery>,
    Form(form): Form<ComposeForm>,
) -> PageResult {
    let request = account_of(&form.account_id, "to publish on").and_then(|account_id| {
        Ok(PostRequest {
            account_id,
            text: form.text.clone(),
            media_urls: form
                .media_urls
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            scheduled_at: utc_time(&form.scheduled_at)?,
            made_with_ai: form.made_with_ai.is_some(),
            submit: form.submit.is_some(),
        })
    });
    let refused = match request {
        Err(why) => (StatusCode::UNPROCESSABLE_ENTITY, why),
        Ok(request) => {
            match api::posts::create_post(
                State(state.clone()),
                acting.ctx.clone(),
                ApiJson(request),
            )
            .await
            {
                Ok((_, post)) => return back(&q, Some(post.0.id)),
                Err(e) => {
                    let e = shown(e)?;
                    (e.status, explain(&e))
                }
            }
        }
    };
    let outcome = Outcome {
        compose: form,
        compose_error: Some(refused.1),
        ..Outcome::default()
    };
    posts_page(&state, &acting, &q, refused.0, outcome).await
}

/// AI drafts (`POST /api/v1/posts/drafts`); a refusal, or the AI failing,
/// is shown beside the form.
pub async fn draft(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<PostsQuery>,
    Form(form): Form<DraftForm>,
) -> PageResult {
    let request = account_of(&form.account_id, "to write for").and_then(|account_id| {
        let count = match form.count.trim() {
            "" => None,
            n => Some(
                n.parse::<u32>()
                    .map_err(|_| "Number of drafts: must be a whole number".to_string())?,
            ),
        };
        let topic = form.topic.trim();
        Ok(DraftRequest {
            account_id,
            topic: (!topic.is_empty()).then(|| topic.to_string()),
            count,
            scheduled_at: None,
        })
    });
    let refused = match request {
        Err(why) => (StatusCode::UNPROCESSABLE_ENTITY, why),
        Ok(request) => {
            match api::post_drafts::draft_posts(
                State(state.clone()),
                acting.ctx.clone(),
                ApiJson(request),
            )
            .await
            {
                Ok((_, drafts)) => {
                    let drafts = drafts.0;
                    let mut to = form_urlencoded::Serializer::new(String::new());
                    if !q.state.is_empty() {
                        to.append_pair("state", &q.state);
                    }
                    if !q.account_id.is_empty() {
                        to.append_pair("account_id", &q.account_id);
                    }
                    to.append_pair("drafted", &drafts.posts.len().to_string());
                    to.append_pair("skipped", &drafts.skipped.len().to_string());
                    let approved = drafts
                        .posts
                        .iter()
                        .filter(|p| p.state == PostState::Scheduled)
                        .count();
                    if approved > 0 {
                        to.append_pair("approved", &approved.to_string());
                    }
                    return Ok(Redirect::to(&format!("/posts?{}", to.finish())).into_response());
                }
                // Not allowed, or an unknown account: the error page.
                Err(e) if matches!(e.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) => {
                    return Err(PageError::Api(e));
                }
                // The AI's failure (502, or 422 without a profile or budget),
                // and anything else, on the page: never the error page.
                Err(e) => {
                    let status = if e.status.is_server_error() {
                        StatusCode::BAD_GATEWAY
                    } else {
                        e.status
                    };
                    (status, format!("No drafts were written. {}", explain(&e)))
                }
            }
        }
    };
    let outcome = Outcome {
        draft: form,
        draft_error: Some(refused.1),
        ..Outcome::default()
    };
    posts_page(&state, &acting, &q, refused.0, outcome).await
}

/// What an action on one post came to: back to the list, or the list with
/// the refusal beside the post.
async fn acted<T>(
    state: &AppState,
    acting: &Acting,
    q: &PostsQuery,
    id: Uuid,
    result: Result<T, ApiError>,
    reason: String,
) -> PageResult {
    match result {
        Ok(_) => back(q, Some(id)),
        Err(e) => {
            let e = shown(e)?;
            let outcome = Outcome {
                refused: Some((id, explain(&e), reason)),
                ..Outcome::default()
            };
            posts_page(state, acting, q, e.status, outcome).await
        }
    }
}

pub async fn submit(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Query(q): Query<PostsQuery>,
) -> PageResult {
    let result = api::posts::submit_post(State(state.clone()), acting.ctx.clone(), Path(id)).await;
    acted(&state, &acting, &q, id, result, String::new()).await
}

pub async fn approve(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Query(q): Query<PostsQuery>,
) -> PageResult {
    let result = api::posts::approve_post(State(state.clone()), acting.ctx.clone(), Path(id)).await;
    acted(&state, &acting, &q, id, result, String::new()).await
}

#[derive(Deserialize)]
pub struct RejectForm {
    #[serde(default)]
    reason: String,
}

pub async fn reject(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Query(q): Query<PostsQuery>,
    Form(form): Form<RejectForm>,
) -> PageResult {
    let request = RejectRequest {
        reason: form.reason.clone(),
    };
    let result = api::posts::reject_post(
        State(state.clone()),
        acting.ctx.clone(),
        Path(id),
        ApiJson(request),
    )
    .await;
    acted(&state, &acting, &q, id, result, form.reason).await
}

pub async fn delete(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Query(q): Query<PostsQuery>,
) -> PageResult {
    let result = api::posts::delete_post(State(state.clone()), acting.ctx.clone(), Path(id)).await;
    match result {
        Ok(_) => back(&q, None),
        Err(e) => acted::<()>(&state, &acting, &q, id, Err(e), String::new()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_times_are_read_as_utc() {
        assert_eq!(
            utc_time("2030-05-01T09:30").unwrap().as_deref(),
            Some("2030-05-01T09:30:00Z")
        );
        assert_eq!(
            utc_time(" 2030-05-01T09:30:15 ").unwrap().as_deref(),
            Some("2030-05-01T09:30:15Z")
        );
        assert_eq!(utc_time("  ").unwrap(), None);
        assert!(utc_time("tomorrow").is_err());
    }

    #[test]
    fn filters_are_repeated_without_the_notice() {
        let q = PostsQuery {
            state: "scheduled".into(),
            account_id: String::new(),
            cursor: "abc".into(),
            drafted: "2".into(),
            skipped: String::new(),
            approved: String::new(),
        };
        assert_eq!(q.here(), "?state=scheduled&cursor=abc");
        assert_eq!(q.query_string(None), "?state=scheduled");
        assert_eq!(PostsQuery::default().here(), "");
    }
}
