//! Managing an account's X Activity API delivery (shared/protocols/
//! x-api-v2.md §2): the app's webhook (registered once per URL, with the
//! app-only token made from the API Key and Secret) and the account's
//! subscriptions to its private events (made with the account's own OAuth
//! 2.0 token: X allows them only for users who authorized the app).

use integro_core::SendError;
use serde_json::{Value, json};

use crate::x::{OAUTH2_ACCESS_TOKEN, api, read_json};
use crate::{Credentials, ProviderUrls};

/// The events a bot answers: DMs, mentions, and replies to its posts
/// (a reply without an explicit @ raises no mention event).
pub const EVENT_TYPES: [&str; 3] = ["dm.received", "post.mention.create", "post.reply.create"];

/// The app-only token (`POST /oauth2/token`, client credentials with the
/// API Key and Secret).
pub async fn app_token(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
) -> Result<String, SendError> {
    let v = read_json(
        client
            .post(api(urls, "/oauth2/token"))
            .basic_auth(
                creds.require("consumer_key")?,
                Some(creds.require("consumer_secret")?),
            )
            .form(&[("grant_type", "client_credentials")]),
    )
    .await?;
    v["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(String::from)
        .ok_or_else(|| SendError::retryable(None, "X's answer has no access_token"))
}

/// The id of the app's webhook for `url`, registered if it is not yet
/// (X then checks it with a CRC at once); and whether it was registered now.
pub async fn ensure_webhook(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    app_token: &str,
    url: &str,
) -> Result<(String, bool), SendError> {
    let listed = read_json(client.get(api(urls, "/2/webhooks")).bearer_auth(app_token)).await?;
    if let Some(id) = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["url"] == url)
        .and_then(|w| w["id"].as_str())
    {
        return Ok((id.to_string(), false));
    }
    let created = read_json(
        client
            .post(api(urls, "/2/webhooks"))
            .bearer_auth(app_token)
            .json(&json!({ "url": url })),
    )
    .await?;
    created["data"]["id"]
        .as_str()
        .map(|id| (id.to_string(), true))
        .ok_or_else(|| SendError::retryable(None, "X's answer names no webhook"))
}

/// The tag Integro gives an account's subscriptions, to find them again.
pub fn tag_of(account_id: impl std::fmt::Display) -> String {
    format!("integro:{account_id}")
}

/// The app's subscriptions, as X lists them.
async fn subscriptions(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    app_token: &str,
) -> Result<Vec<Value>, SendError> {
    let mut found = Vec::new();
    let mut page: Option<String> = None;
    // 1,500 subscriptions at most on self-serve: two pages of 1,000.
    for _ in 0..10 {
        let mut request = client
            .get(api(urls, "/2/activity/subscriptions"))
            .bearer_auth(app_token)
            .query(&[("max_results", "1000")]);
        if let Some(token) = &page {
            request = request.query(&[("pagination_token", token)]);
        }
        let mut v = read_json(request).await?;
        if let Value::Array(listed) = v["data"].take() {
            found.extend(listed);
        }
        page = v["meta"]["next_token"].as_str().map(String::from);
        if page.is_none() {
            break;
        }
    }
    Ok(found)
}

/// The event types `user_id` is already subscribed to on `webhook_id`.
pub async fn subscribed(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    app_token: &str,
    user_id: &str,
    webhook_id: &str,
) -> Result<Vec<(String, String)>, SendError> {
    Ok(subscriptions(client, urls, app_token)
        .await?
        .iter()
        .filter(|s| s["filter"]["user_id"] == user_id && s["webhook_id"] == webhook_id)
        .filter_map(|s| {
            Some((
                s["event_type"].as_str()?.to_string(),
                s["subscription_id"].as_str()?.to_string(),
            ))
        })
        .collect())
}

/// Deletes the app's subscriptions tagged `tag` (`tag_of` an account):
/// `DELETE /2/activity/subscriptions?ids=…`, 100 at a time. How many X
/// deleted.
pub async fn unsubscribe(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    app_token: &str,
    tag: &str,
) -> Result<usize, SendError> {
    let ids: Vec<String> = subscriptions(client, urls, app_token)
        .await?
        .iter()
        .filter(|s| s["tag"] == tag)
        .filter_map(|s| s["subscription_id"].as_str().map(String::from))
        .collect();
    let mut deleted = 0;
    for chunk in ids.chunks(100) {
        let v = read_json(
            client
                .delete(api(urls, "/2/activity/subscriptions"))
                .bearer_auth(app_token)
                .query(&[("ids", chunk.join(","))]),
        )
        .await?;
        deleted += v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["deleted"] == true)
            .count();
    }
    Ok(deleted)
}

/// Subscribes the account (its OAuth 2.0 token) to `event_type` on the
/// webhook; the subscription's id.
pub async fn subscribe(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
    event_type: &str,
    webhook_id: &str,
    tag: &str,
) -> Result<String, SendError> {
    let token = creds.get(OAUTH2_ACCESS_TOKEN).map_err(|_| {
        SendError::permanent(
            Some("x_not_connected".into()),
            "subscribing needs the account's OAuth 2.0 connection",
        )
    })?;
    let v = read_json(
        client
            .post(api(urls, "/2/activity/subscriptions"))
            .bearer_auth(token)
            .json(&json!({
                "event_type": event_type,
                "filter": { "user_id": creds.require("user_id")? },
                "tag": tag,
                "webhook_id": webhook_id,
            })),
    )
    .await?;
    // X's documents disagree on the answer's shape.
    [
        "/data/subscription_id",
        "/data/subscription/subscription_id",
        "/data/0/subscription_id",
    ]
    .iter()
    .find_map(|p| v.pointer(p).and_then(Value::as_str))
    .map(String::from)
    .ok_or_else(|| SendError::retryable(None, "X's answer names no subscription"))
}
