//! Trends for a tenant's posts: X's trends by location for one of its X
//! accounts, and the newest items of the RSS and Atom feeds it reads
//! (`/api/v1/trend-sources`), parsed with feed-rs. Both are cached 15
//! minutes per tenant (X bills each request; feeds' servers are spared).
//! Feeds are fetched through the outbound URL policy. No page of x.com is
//! ever read.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_channels::{Credentials, x_activity, x_trends};
use integro_core::{ChannelKind, Permission};
use integro_store::accounts;
use integro_store::trends::{self, TrendSource};
use integro_store::x_spend::{self, XOperation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sources, create_source))
        .routes(routes!(delete_source))
        .routes(routes!(get_trends))
}

const CACHE_MS: i64 = 15 * 60 * 1000;
/// A feed larger than this is not read.
const MAX_FEED_BYTES: usize = 2 * 1024 * 1024;
/// Items kept from each feed, and in all.
const PER_FEED: usize = 20;
const ITEMS: usize = 100;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrendSources {
    pub items: Vec<TrendSource>,
}

/// The tenant's feeds.
#[utoipa::path(get, path = "/api/v1/trend-sources", tag = "trends", security(("bearer" = [])),
    responses((status = 200, body = TrendSources)))]
async fn list_sources(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> ApiResult<Json<TrendSources>> {
    ctx.require(Permission::Read)?;
    Ok(Json(TrendSources {
        items: trends::list(&state.db, ctx.tenant_id).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrendSource {
    /// 1 to 100 characters.
    pub name: String,
    /// An `https` (or `http`) URL of an RSS or Atom feed, at most 2,000
    /// characters, that the outbound URL policy allows.
    pub url: String,
}

/// Add a feed to read trends from (at most 50).
#[utoipa::path(post, path = "/api/v1/trend-sources", tag = "trends", security(("bearer" = [])),
    request_body = NewTrendSource,
    responses((status = 201, body = TrendSource), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_source(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<NewTrendSource>,
) -> ApiResult<(StatusCode, Json<TrendSource>)> {
    ctx.require(Permission::Manage)?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let url = req.url.trim();
    if url.len() > 2000 || !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ApiError::invalid_field(
            "url",
            "must be an http(s) URL of at most 2,000 characters",
        ));
    }
    state
        .engine
        .ai()
        .outbound()
        .policy()
        .check_url_resolving(url)
        .await
        .map_err(|e| ApiError::invalid_field("url", e.to_string()))?;
    let mut tx = state.db.begin().await?;
    let source = trends::create(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        name,
        url,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(source)))
}

/// Stop reading a feed.
#[utoipa::path(delete, path = "/api/v1/trend-sources/{id}", tag = "trends", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Trend source id")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_source(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let mut tx = state.db.begin().await?;
    if !trends::delete(&mut tx, ctx.actor(), ctx.request_id(), ctx.tenant_id, id).await? {
        return Err(ApiError::not_found("trend source"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendParams {
    /// `x` (X's trends by location, for `account_id`), `x_personalized`
    /// (the trends X picks for `account_id`'s user) or `feeds`.
    pub source: String,
    /// The X account whose app asks X (with `source=x`).
    pub account_id: Option<Uuid>,
    /// Where On Earth ID (`source=x`): 1 worldwide (the default), 23424977
    /// the United States, 23424975 the United Kingdom.
    pub woeid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrendItem {
    /// The trend's name, or the feed item's title.
    pub name: String,
    /// The feed item's link.
    pub url: Option<String>,
    /// Posts about it, when X says.
    pub post_count: Option<u64>,
    /// The feed that has it.
    pub feed: Option<String>,
    /// RFC 3339, when the feed dates it.
    pub published_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeedError {
    pub feed: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trends {
    pub source: String,
    pub items: Vec<TrendItem>,
    /// Feeds that could not be read this time.
    pub errors: Vec<FeedError>,
    #[serde(with = "time::serde::rfc3339")]
    pub fetched_at: OffsetDateTime,
    /// Served from the last 15 minutes' answer.
    #[serde(default)]
    pub cached: bool,
}

/// Trends: X's by location for one of the tenant's X accounts, or the
/// newest items of the tenant's feeds; cached 15 minutes.
#[utoipa::path(get, path = "/api/v1/trends", tag = "trends", security(("bearer" = [])),
    params(TrendParams),
    responses((status = 200, body = Trends), (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn get_trends(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<TrendParams>,
) -> ApiResult<Json<Trends>> {
    ctx.require(Permission::Read)?;
    let key = match p.source.as_str() {
        "feeds" => "feeds".to_string(),
        "x" => {
            let account = p.account_id.ok_or_else(|| {
                ApiError::invalid_field("account_id", "is required with source=x")
            })?;
            format!("x:{account}:{}", p.woeid.unwrap_or(x_trends::WORLDWIDE))
        }
        "x_personalized" => {
            let account = p.account_id.ok_or_else(|| {
                ApiError::invalid_field("account_id", "is required with source=x_personalized")
            })?;
            format!("x_personalized:{account}")
        }
        _ => {
            return Err(ApiError::invalid_field(
                "source",
                "must be x, x_personalized or feeds",
            ));
        }
    };
    if let Some((body, _)) = trends::cached(&state.db, ctx.tenant_id, &key, CACHE_MS).await?
        && let Ok(mut answer) = serde_json::from_str::<Trends>(&body)
    {
        answer.cached = true;
        return Ok(Json(answer));
    }
    let answer = match p.source.as_str() {
        "feeds" => read_feeds(&state, ctx.tenant_id).await?,
        "x_personalized" => x_trends_of(&state, &ctx, p.account_id, None).await?,
        _ => x_trends_of(&state, &ctx, p.account_id, Some(p.woeid)).await?,
    };
    let body = serde_json::to_string(&answer).expect("serialisable");
    trends::cache(&state.db, ctx.tenant_id, &key, &body).await?;
    Ok(Json(answer))
}

/// X's trends for the account: by location (`Some(woeid)`), or the ones
/// X picks for its user (`None`).
async fn x_trends_of(
    state: &AppState,
    ctx: &TenantCtx,
    account_id: Option<Uuid>,
    location: Option<Option<u32>>,
) -> ApiResult<Trends> {
    let account = match account_id {
        Some(id) => accounts::get(&state.db, ctx.tenant_id, id).await?,
        None => None,
    }
    .ok_or_else(|| ApiError::not_found("account"))?;
    if account.kind != ChannelKind::X {
        return Err(ApiError::invalid_field("account_id", "not an X account"));
    }
    let now = integro_store::db::now_ms();
    if let Some(why) = x_spend::over_limit(&state.db, ctx.tenant_id, now).await? {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "x_spend_limit",
            why,
        ));
    }
    let stored = Credentials(accounts::credentials(&state.db, &state.keyring, &account).await?);
    let client = integro_channels::http::client(Duration::from_secs(15));
    let urls = state.config.provider_urls();
    let refused = |e: integro_core::SendError| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_refused",
            format!("X refused: {}", e.message),
        )
    };
    let (source, found) = match location {
        Some(woeid) => {
            let app = x_activity::app_token(&client, &urls, &stored)
                .await
                .map_err(refused)?;
            let woeid = woeid.unwrap_or(x_trends::WORLDWIDE);
            let found = x_trends::by_woeid(&client, &urls, &app, woeid).await;
            ("x", found.map_err(refused)?)
        }
        None => {
            // The account's own token, refreshed when it is an OAuth 2.0 one.
            let (creds, changed) = integro_worker::x_tokens::fresh(
                &state.db,
                &state.keyring,
                &client,
                &urls,
                &account,
                &stored,
            )
            .await
            .map_err(refused)?;
            if changed {
                state.accounts.forget(account.id);
            }
            let found = x_trends::personalized(&client, &urls, &creds).await;
            ("x_personalized", found.map_err(refused)?)
        }
    };
    x_spend::record(&state.db, ctx.tenant_id, XOperation::Trends, 1, now).await?;
    Ok(Trends {
        source: source.into(),
        items: found
            .into_iter()
            .map(|t| TrendItem {
                name: t.name,
                url: None,
                post_count: t.post_count,
                feed: None,
                published_at: None,
            })
            .collect(),
        errors: Vec::new(),
        fetched_at: OffsetDateTime::now_utc(),
        cached: false,
    })
}

/// Reads every feed (a failing one is reported, the others still count),
/// newest items first.
async fn read_feeds(state: &AppState, tenant_id: Uuid) -> ApiResult<Trends> {
    let sources = trends::list(&state.db, tenant_id).await?;
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        match read_feed(state, &source).await {
            Ok(found) => items.extend(found),
            Err(message) => errors.push(FeedError {
                feed: source.name.clone(),
                message,
            }),
        }
    }
    items.sort_by(|a: &TrendItem, b: &TrendItem| b.published_at.cmp(&a.published_at));
    items.truncate(ITEMS);
    Ok(Trends {
        source: "feeds".into(),
        items,
        errors,
        fetched_at: OffsetDateTime::now_utc(),
        cached: false,
    })
}

async fn read_feed(state: &AppState, source: &TrendSource) -> Result<Vec<TrendItem>, String> {
    let request = state
        .engine
        .ai()
        .outbound()
        .request(axum::http::Method::GET, &source.url)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(10))
        .header(
            axum::http::header::ACCEPT,
            "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
        );
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading failed: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_FEED_BYTES {
            return Err("the feed is larger than 2 MB".into());
        }
    }
    let feed =
        feed_rs::parser::parse(&body[..]).map_err(|e| format!("not an RSS or Atom feed: {e}"))?;
    Ok(feed
        .entries
        .into_iter()
        .filter_map(|entry| {
            let name = entry
                .title
                .map(|t| t.content.trim().to_string())
                .filter(|t| !t.is_empty())?;
            Some(TrendItem {
                name,
                url: entry.links.first().map(|l| l.href.clone()),
                post_count: None,
                feed: Some(source.name.clone()),
                published_at: entry.published.or(entry.updated).map(|t| t.to_rfc3339()),
            })
        })
        .take(PER_FEED)
        .collect())
}
