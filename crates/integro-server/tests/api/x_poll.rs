//! An X account that Integro polls instead of receiving webhooks (installs
//! X cannot reach): new mentions (after a `since_id` cursor) and direct
//! messages are taken in and answered once; what came before polling began
//! is not answered.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::{Loop, start_with, wait_until};
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};

db_tests!(a_polled_x_account_answers_new_mentions_and_messages_once);

const MENTIONS: &str = "/2/users/4337869213/mentions";

fn mention(id: &str, text: &str) -> Value {
    json!({ "id": id, "text": text, "author_id": "2222", "created_at": "2026-12-07T10:00:00.000Z" })
}

fn users() -> Value {
    json!({ "users": [{ "id": "2222", "name": "Ann", "username": "ann" }] })
}

async fn a_polled_x_account_answers_new_mentions_and_messages_once(kind: DbKind) {
    let Some((app, provider)) = start_with(kind, |c| {
        c.workers = 2;
        c.x_poll_secs = 1;
    })
    .await
    else {
        return;
    };
    let creds = json!({ "user_id": "4337869213", "consumer_key": "ck", "consumer_secret": "cs-secret",
                        "access_token": "at", "access_token_secret": "ats", "receive": "polling" });
    let t = Loop::with_app(app, provider, "x", creds).await;
    let res = t
        .app
        .post(
            "/api/v1/accounts",
            &t.key,
            json!({ "bot_id": t.bot_id, "kind": "x", "name": "Bad", "credentials": {
                "user_id": "1", "consumer_key": "ck", "consumer_secret": "cs", "access_token": "a",
                "access_token_secret": "b", "receive": "sometimes" } }),
        )
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("webhook, polling"),
        "{problem}"
    );

    // The first poll finds one old mention and one old DM: where to start.
    Mock::given(method("GET"))
        .and(path(MENTIONS))
        .and(query_param_is_missing("since_id"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [mention("100", "@shop old")], "includes": users(),
            "meta": { "result_count": 1, "newest_id": "100", "oldest_id": "100" } })))
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path(MENTIONS))
        .and(query_param("since_id", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [mention("101", "@shop hi")], "includes": users(),
            "meta": { "result_count": 1, "newest_id": "101", "oldest_id": "101" } })))
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path(MENTIONS))
        .and(query_param("since_id", "101"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "meta": { "result_count": 0 } })),
        )
        .mount(&t.provider)
        .await;
    let dm = |id: &str, text: &str| json!({ "id": id, "event_type": "MessageCreate", "text": text, "sender_id": "2222", "dm_conversation_id": "2222-4337869213" });
    Mock::given(method("GET"))
        .and(path("/2/dm_events"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [dm("500", "old")], "includes": users(), "meta": { "result_count": 1 } })))
        .up_to_n_times(1)
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/2/dm_events"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                dm("502", "new too"),
                { "id": "501", "event_type": "MessageCreate", "text": "our answer", "sender_id": "4337869213" },
                dm("500", "old")
            ],
            "includes": users(), "meta": { "result_count": 3 } })))
        .mount(&t.provider)
        .await;
    crate::channels::x_accepts(&t, "901", "900").await;

    let sent = |p: &'static str| {
        let provider = &t.provider;
        async move {
            provider
                .received_requests()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.method.as_str() == "POST" && r.url.path() == p)
                .collect::<Vec<_>>()
        }
    };
    wait_until(Duration::from_secs(30), || async {
        !sent("/2/tweets").await.is_empty()
            && !sent("/2/dm_conversations/with/2222/messages")
                .await
                .is_empty()
    })
    .await;
    // Several more polls: nothing new, nothing answered again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.settled().await;
    let posts = sent("/2/tweets").await;
    assert_eq!(posts.len(), 1, "the new mention answered once");
    let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(body["reply"]["in_reply_to_tweet_id"], "101");
    assert_eq!(
        sent("/2/dm_conversations/with/2222/messages").await.len(),
        1,
        "the new DM answered once"
    );

    let mut inbound: Vec<String> = Vec::new();
    for c in t.get("/api/v1/conversations").await["items"]
        .as_array()
        .unwrap()
    {
        let id = c["id"].as_str().unwrap();
        let page = t.get(&format!("/api/v1/conversations/{id}/messages")).await;
        for m in page["items"].as_array().unwrap() {
            if m["direction"] == "inbound" {
                inbound.push(format!(
                    "{}:{}",
                    m["provider_message_id"].as_str().unwrap(),
                    m["from_id"].as_str().unwrap()
                ));
            }
        }
    }
    inbound.sort();
    assert_eq!(
        inbound,
        vec!["101:post:2222", "502:2222"],
        "only what came after polling began"
    );

    // The cursors are in the database: a restarted process goes on from them.
    let cursors: Vec<(String, String)> = sqlx::query_as(
        "SELECT stream, last_id FROM x_poll_cursors WHERE account_id = $1 ORDER BY stream",
    )
    .bind(&t.account_id)
    .fetch_all(t.app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(
        cursors,
        vec![
            ("direct_messages".into(), "502".into()),
            ("mentions".into(), "101".into())
        ]
    );
    let mentions_polls = t
        .provider
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == MENTIONS)
        .count();
    assert!(mentions_polls >= 3, "polled every second: {mentions_polls}");
}
