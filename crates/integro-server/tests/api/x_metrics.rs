//! X metrics (#38): direct messages and mentions in and out, response
//! time, posts by state, approval latency, published posts' public metrics
//! refreshed from X on a schedule, failures by X's code, and the spend.

use std::time::Duration;

use integro_store::db::now_ms;
use integro_store::message_stats;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::{Loop, start_with, wait_until, x_accepts, x_dm};
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};

db_tests!(x_metrics_count_messages_posts_approvals_and_public_metrics);

fn mention(id: &str) -> String {
    json!({ "data": { "event_uuid": "2", "filter": { "user_id": "4337869213" },
        "event_type": "post.mention.create",
        "payload": { "id": id, "text": "@integro hours?", "author_id": "2222", "conversation_id": id,
                     "created_at": "2026-12-07T10:00:00.000Z" },
        "includes": { "users": [{ "id": "2222", "username": "ann", "name": "Ann" }] } } })
    .to_string()
}

/// A direct message from user 3333, whom X will not let the account write to.
fn dm_from_blocked(id: &str) -> String {
    json!({ "data": { "event_uuid": "3", "filter": { "user_id": "4337869213" }, "event_type": "dm.received",
        "payload": { "direct_message_events": [{ "type": "message_create", "id": id,
            "message_create": { "target": { "recipient_id": "4337869213" }, "sender_id": "3333",
                                "message_data": { "text": "hi" } } }] } } })
    .to_string()
}

async fn x_metrics_count_messages_posts_approvals_and_public_metrics(kind: DbKind) {
    let Some((app, provider)) = start_with(kind, |c| {
        c.workers = 2;
        c.x_metrics_secs = 1;
    })
    .await
    else {
        return;
    };
    let creds = json!({ "user_id": "4337869213", "consumer_key": "ck", "consumer_secret": "cs-secret",
                        "access_token": "at", "access_token_secret": "ats" });
    let t = Loop::with_app(app, provider, "x", creds).await;
    x_accepts(&t, "1001", "900").await;
    Mock::given(method("POST"))
        .and(path("/2/dm_conversations/with/3333/messages"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "errors": [{ "code": 349, "message": "You cannot send messages to this user." }] })))
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/2/tweets"))
        .and(query_param("tweet.fields", "public_metrics"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [{
            "id": "1001", "text": "Open late on Friday", "edit_history_tweet_ids": ["1001"],
            "public_metrics": { "retweet_count": 3, "reply_count": 2, "like_count": 40,
                                "quote_count": 1, "bookmark_count": 5, "impression_count": 1500 } }] })))
        .mount(&t.provider)
        .await;

    // A DM and a mention, answered by DM and by a reply post; a DM X
    // refuses to answer.
    t.x_webhook(&x_dm("701", "hello")).await;
    t.x_webhook(&mention("800")).await;
    t.x_webhook(&dm_from_blocked("702")).await;
    wait_until(Duration::from_secs(30), || async {
        let requests = t.provider_requests().await;
        let sent = |p: &str| requests.iter().any(|r| r.url.path() == p);
        sent("/2/dm_conversations/with/2222/messages")
            && sent("/2/dm_conversations/with/3333/messages")
            && sent("/2/tweets")
    })
    .await;

    // A post, submitted and approved: published, then its metrics read.
    let post = t
        .app
        .post(
            "/api/v1/posts",
            &t.key,
            json!({ "account_id": t.account_id, "text": "Open late on Friday", "submit": true }),
        )
        .await;
    assert_eq!(post.status(), StatusCode::CREATED);
    let post: Value = post.json().await.unwrap();
    assert!(post["submitted_at"].is_string(), "{post}");
    assert_eq!(post["metrics"], Value::Null);
    let id = post["id"].as_str().unwrap().to_string();
    let res = t
        .app
        .post(&format!("/api/v1/posts/{id}/approve"), &t.key, json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let metrics = json!({ "impressions": 1500, "likes": 40, "reposts": 3, "replies": 2, "quotes": 1,
                          "bookmarks": 5 });
    wait_until(Duration::from_secs(30), || async {
        t.get(&format!("/api/v1/posts/{id}")).await["metrics"] == metrics
    })
    .await;
    let post = t.get(&format!("/api/v1/posts/{id}")).await;
    assert_eq!(post["state"], "published");
    assert!(post["metrics_at"].is_string());
    t.settled().await;
    message_stats::roll_up(&t.app.state.db, now_ms() + 1000)
        .await
        .unwrap();

    let m = t.get("/api/v1/x/metrics").await;
    let accounts = m["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{m}");
    let a = &accounts[0];
    assert_eq!(a["account_id"], t.account_id);
    assert_eq!(
        a["direct_messages"],
        json!({ "received": 2, "sent": 2 }),
        "{a}"
    );
    assert_eq!(a["mentions"], json!({ "received": 1, "sent": 1 }), "{a}");
    assert_eq!(a["bot_replies"], 3, "{a}");
    assert!(a["response_ms_avg"].as_i64().unwrap() >= 0);
    assert_eq!(
        a["posts_by_state"],
        json!({ "draft": 0, "pending_approval": 0, "scheduled": 0, "published": 1, "failed": 0,
                "rejected": 0 })
    );
    assert_eq!(a["approvals"], 1);
    assert!(a["approval_ms_avg"].as_i64().unwrap() >= 0, "{a}");
    assert_eq!(a["published"], 1);
    assert_eq!(a["public_metrics"], metrics);
    assert_eq!(
        a["failures"],
        json!([{ "code": "349", "deliveries": 1, "posts": 0 }]),
        "{a}"
    );
    assert_eq!(m["top_posts"][0]["id"], id.as_str());
    assert_eq!(m["top_posts"][0]["metrics"], metrics);
    let owned_reads = m["spend"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["operation"] == "owned_read")
        .cloned();
    assert!(
        owned_reads.is_some_and(|l| l["count"].as_i64().unwrap() >= 1),
        "{m}"
    );

    // Another tenant sees none of it.
    let other = t.app.create_tenant("Other").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let res = t.app.get("/api/v1/x/metrics", &other_key).await;
    let theirs: Value = res.json().await.unwrap();
    assert_eq!(theirs["accounts"], json!([]));
    assert_eq!(theirs["top_posts"], json!([]));
    // A bad range is refused.
    let res = t.app.get("/api/v1/x/metrics?from=2026-13-01", &t.key).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
}
