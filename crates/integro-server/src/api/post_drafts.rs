//! AI drafts of posts: `POST /api/v1/posts/drafts` asks the account's bot's
//! LLM, as its persona, for a few posts on a topic, with the trends fetched
//! lately (`/api/v1/trends`, from the cache: drafting costs no X request)
//! for inspiration. Each draft is checked like any post, marked
//! `made_with_ai`, and waits for an admin's approval, unless the tenant's
//! `x_ai_drafts_skip_approval` lets an admin's or owner's drafts be
//! approved at once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_store::bots;
use integro_store::posts::{self, NewPost, Post, PostState};
use integro_store::{tenants, trends};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::posts::{audit, x_account};
use super::trends::Trends;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(draft_posts))
}

/// Drafts one request may ask for.
const MAX_DRAFTS: u32 = 5;
/// Trend names given to the LLM.
const TRENDS_SHOWN: usize = 10;
const TRENDS_AGE_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftRequest {
    /// An X account of the tenant; its bot's AI profile and persona write.
    pub account_id: Uuid,
    /// What to write about, at most 200 characters; absent: the business
    /// and the trends.
    pub topic: Option<String>,
    /// 1 to 5 (3 by default).
    pub count: Option<u32>,
    /// When the drafts are published once approved (RFC 3339, within a
    /// year); at once when absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_at: Option<time::OffsetDateTime>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Drafts {
    /// The drafts made, each `made_with_ai`: `pending_approval`, or
    /// `scheduled` when approved at once (`x_ai_drafts_skip_approval`).
    pub posts: Vec<Post>,
    /// Answers of the LLM left out, and why (too long, empty).
    pub skipped: Vec<String>,
    /// Drafts that were to be approved at once but wait for approval, and
    /// why (X's rules for automated accounts).
    pub not_approved: Vec<String>,
}

const INSTRUCTIONS: &str = "You write posts for this business's account on X (formerly Twitter). \
Plain text, friendly and specific, at most 250 characters each, at most two hashtags, no links you were not \
given, nothing you cannot vouch for, and never the same wording twice.";

/// The posts in the LLM's answer: a JSON array of strings, or else one a
/// line (list markers removed).
fn drafts_in(answer: &str, count: usize) -> Vec<String> {
    let json = answer
        .find('[')
        .zip(answer.rfind(']'))
        .and_then(|(a, b)| serde_json::from_str::<Vec<String>>(&answer[a..=b]).ok());
    let found = json.unwrap_or_else(|| {
        answer
            .lines()
            .map(|l| {
                l.trim()
                    .trim_start_matches(|c: char| {
                        c.is_ascii_digit() || matches!(c, '.' | ')' | '-' | '*')
                    })
                    .trim()
                    .trim_matches('"')
                    .to_string()
            })
            .collect()
    });
    found
        .into_iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .take(count)
        .collect()
}

/// Trend names cached for the tenant lately (the account's X trends, the
/// feeds), newest answer first.
async fn recent_trends(
    state: &AppState,
    tenant_id: Uuid,
    account_id: Uuid,
) -> ApiResult<Vec<String>> {
    let mut names = Vec::new();
    for key in [format!("x:{account_id}:1"), "feeds".to_string()] {
        if let Some((body, _)) = trends::cached(&state.db, tenant_id, &key, TRENDS_AGE_MS).await?
            && let Ok(found) = serde_json::from_str::<Trends>(&body)
        {
            names.extend(found.items.into_iter().map(|t| t.name));
        }
    }
    names.truncate(TRENDS_SHOWN);
    Ok(names)
}

/// Draft posts with the bot's LLM (agents and above): each checked like a
/// post, `made_with_ai`, waiting for approval. 422 when the bot has no AI
/// profile or the budget is spent; 502 when every AI option failed.
#[utoipa::path(post, path = "/api/v1/posts/drafts", tag = "posts", security(("bearer" = [])),
    request_body = DraftRequest,
    responses((status = 201, body = Drafts), (status = 403, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn draft_posts(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<DraftRequest>,
) -> ApiResult<(StatusCode, Json<Drafts>)> {
    ctx.require(Permission::Converse)?;
    let count = req.count.unwrap_or(3);
    if !(1..=MAX_DRAFTS).contains(&count) {
        return Err(ApiError::invalid_field(
            "count",
            format!("must be 1 to {MAX_DRAFTS}"),
        ));
    }
    let topic = req
        .topic
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if topic.is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::invalid_field(
            "topic",
            "must be at most 200 characters",
        ));
    }
    if let Some(at) = req.scheduled_at {
        posts::check_scheduled_at(at)?;
    }
    let account = x_account(&state, &ctx, req.account_id).await?;
    let bot = bots::get(&state.db, ctx.tenant_id, account.bot_id)
        .await?
        .ok_or_else(|| ApiError::invalid_field("account_id", "the account's bot was deleted"))?;
    let trends = recent_trends(&state, ctx.tenant_id, account.id).await?;
    let mut request = format!("Write {count} different posts");
    match topic {
        Some(topic) => request.push_str(&format!(" about: {topic}.")),
        None => request.push_str(" about the business."),
    }
    if !trends.is_empty() {
        request.push_str(&format!(
            " Trending now, to use only where it truly fits: {}.",
            trends.join("; ")
        ));
    }
    request.push_str(&format!(
        " Answer with a JSON array of {count} strings and nothing else."
    ));
    let answer = state
        .engine
        .compose(&state.db, &state.keyring, &bot, INSTRUCTIONS, &request)
        .await
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "drafting posts failed");
            ApiError::internal()
        })?;
    let (text, call, failure) = match answer {
        Ok((text, call)) => (text, call, None),
        Err((why, call)) => (String::new(), call, Some(why)),
    };
    let mut tx = state.db.begin().await?;
    if call != integro_store::usage::LlmCall::default() {
        let now = integro_store::db::now_ms();
        integro_store::usage::record(
            &mut integro_store::Conn::of(&mut tx),
            ctx.tenant_id,
            bot.id,
            now,
            &call,
        )
        .await?;
    }
    if let Some(why) = failure {
        tx.commit().await?;
        let status = if call.failed_attempts > 0 {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return Err(ApiError::new(
            status,
            "drafting_failed",
            format!("no drafts: {why}"),
        ));
    }
    let mut made = Vec::new();
    let mut skipped = Vec::new();
    for draft in drafts_in(&text, count as usize) {
        if let Err(e) =
            posts::check_text(&draft).and_then(|t| posts::check_length(&t, &[]).map(|()| t))
        {
            skipped.push(format!("{draft:?}: {e}"));
            continue;
        }
        let new = NewPost {
            account_id: account.id,
            text: draft,
            media_urls: Vec::new(),
            made_with_ai: true,
            scheduled_at: req.scheduled_at,
            state: PostState::PendingApproval,
        };
        let post = posts::create(&mut tx, ctx.tenant_id, ctx.actor(), new).await?;
        audit(&mut tx, &ctx, "post.draft", None, Some(&post)).await?;
        made.push(post);
    }
    tx.commit().await?;
    let mut not_approved = Vec::new();
    let skip_approval = tenants::settings(&state.db, ctx.tenant_id)
        .await?
        .x_ai_drafts_skip_approval;
    if skip_approval && ctx.role.allows(Permission::Manage) {
        for post in &mut made {
            match super::posts::approve_post(State(state.clone()), ctx.clone(), Path(post.id)).await
            {
                Ok(Json(approved)) => *post = approved,
                Err(e) => not_approved.push(format!("{:?}: {}", post.text, e.detail)),
            }
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(Drafts {
            posts: made,
            skipped,
            not_approved,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_are_read_from_json_or_lines() {
        assert_eq!(
            drafts_in("Here you go:\n[\"One\", \"Two\", \"\"]", 3),
            ["One", "Two"]
        );
        assert_eq!(
            drafts_in("1. First\n2) Second\n- Third", 2),
            ["First", "Second"]
        );
    }
}
