//! X's trends by location (`GET /2/trends/by/woeid/{woeid}`, app-only
//! token) and the account's personalized trends
//! (`GET /2/users/personalized_trends`, its own token); X bills each
//! request, so callers cache the answer.

use integro_core::SendError;
use serde_json::Value;

use crate::{Credentials, ProviderUrls};

/// One trend: its name and, when X gives it, how many posts it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trend {
    pub name: String,
    pub post_count: Option<u64>,
}

/// Where on Earth IDs: 1 is worldwide, 23424977 the United States.
pub const WORLDWIDE: u32 = 1;

pub async fn by_woeid(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    app_token: &str,
    woeid: u32,
) -> Result<Vec<Trend>, SendError> {
    let url = crate::x::api(
        urls,
        &format!("/2/trends/by/woeid/{woeid}?max_trends=20&trend.fields=trend_name,tweet_count"),
    );
    let v = crate::x::read_json(client.get(url).bearer_auth(app_token)).await?;
    Ok(trends_in(&v))
}

/// The trends X picks for the account's user (X's docs name a Premium
/// subscription as needed; without one X refuses).
pub async fn personalized(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
) -> Result<Vec<Trend>, SendError> {
    let url = crate::x::api(
        urls,
        "/2/users/personalized_trends?personalized_trend.fields=category,post_count,trend_name,trending_since",
    );
    let v = crate::x::user_call(client, reqwest::Method::GET, url, creds, None).await?;
    Ok(trends_in(&v))
}

/// The trends of an answer: `data[].trend_name` with `tweet_count` (a
/// number) or `post_count` (a string, in X's OpenAPI document).
fn trends_in(v: &Value) -> Vec<Trend> {
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Trend {
                name: t["trend_name"]
                    .as_str()
                    .filter(|n| !n.is_empty())?
                    .to_string(),
                post_count: t["tweet_count"]
                    .as_u64()
                    .or_else(|| t["post_count"].as_u64())
                    .or_else(|| t["post_count"].as_str().and_then(|c| c.parse().ok())),
            })
        })
        .collect()
}
