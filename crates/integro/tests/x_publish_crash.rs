//! An approved X post is published once across a SIGKILL: `integro serve`
//! is killed while X (a local mock following X's wire format) is creating
//! the post, so its answer is lost; started again, the publish job is taken
//! again once its lease runs out, finds the post among the account's own
//! (`GET /2/users/:id/tweets`) and adopts it instead of posting twice.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Canned, Request, mock_provider, new_master_key, serve_with};

const USER_ID: &str = "4337869213";
const TEXT: &str = "Our spring opening hours start on Monday";
const POST_ID: &str = "1850000000000000555";

/// One API call; the status and the JSON answer.
fn call(addr: &str, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let (status, text) = support::http(addr, method, path, token, &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn an_approved_post_is_published_once_across_a_sigkill_on_sqlite() {
    published_once_across_a_sigkill(&[]);
}

#[test]
fn an_approved_post_is_published_once_across_a_sigkill_on_postgres() {
    let Some(database) = support::postgres_or_skip("x_publish_crash") else {
        return;
    };
    published_once_across_a_sigkill(&[("INTEGRO_DATABASE_URL", &database.url())]);
}

/// The scenario, with `database` settings (SQLite in the data directory
/// when empty).
fn published_once_across_a_sigkill(database: &[(&str, &str)]) {
    // X creates the post when asked, but answers only after a while: the
    // process is killed before it hears back.
    let created = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(Mutex::new(()));
    let (x, received) = {
        let (created, killed) = (created.clone(), killed.clone());
        mock_provider(move |r: &Request| {
            if r.method == "POST" && r.path == "/2/tweets" {
                created.store(true, Ordering::SeqCst);
                // Held until the test has killed the process.
                drop(killed.lock().unwrap());
                return Canned {
                    status: 201,
                    body: json!({ "data": { "id": POST_ID, "text": TEXT } }).to_string(),
                };
            }
            if r.method == "GET" && r.path.starts_with(&format!("/2/users/{USER_ID}/tweets")) {
                let data = if created.load(Ordering::SeqCst) {
                    json!([{ "id": POST_ID, "text": TEXT, "created_at": "2026-12-07T10:00:00.000Z",
                             "edit_history_tweet_ids": [POST_ID] }])
                } else {
                    json!([])
                };
                return Canned {
                    status: 200,
                    body: json!({ "data": data, "meta": { "result_count": 1 } }).to_string(),
                };
            }
            Canned {
                status: 404,
                body: json!({ "title": "Not Found" }).to_string(),
            }
        })
    };
    let x_base = format!("http://{x}");
    let dir = tempfile::tempdir().unwrap();
    let key = new_master_key();
    let env: Vec<(&str, &str)> = [
        ("INTEGRO_MASTER_KEY", key.as_str()),
        ("INTEGRO_X_API_BASE", x_base.as_str()),
        ("INTEGRO_ADMIN_EMAIL", "operator@integro.test"),
        // A killed worker's job is taken again this soon.
        ("INTEGRO_JOB_LEASE_SECS", "2"),
    ]
    .into_iter()
    .chain(database.iter().copied())
    .collect();
    let (server, addr) = serve_with(dir.path(), &env);

    let owner = support::owner_key(&addr, "Shop");
    let (status, bot) = call(
        &addr,
        "POST",
        "/api/v1/bots",
        Some(&owner),
        json!({ "name": "Shop bot", "fallback_reply": "Thanks!" }),
    );
    assert_eq!(status, 201, "{bot}");
    let (status, account) = call(
        &addr,
        "POST",
        "/api/v1/accounts",
        Some(&owner),
        json!({ "bot_id": bot["id"], "kind": "x", "name": "Shop on X", "credentials": {
            "user_id": USER_ID, "consumer_key": "ck", "consumer_secret": "cs-secret",
            "access_token": "at", "access_token_secret": "ats" } }),
    );
    assert_eq!(status, 201, "{account}");
    let (status, post) = call(
        &addr,
        "POST",
        "/api/v1/posts",
        Some(&owner),
        json!({ "account_id": account["id"], "text": TEXT, "submit": true }),
    );
    assert_eq!(status, 201, "{post}");
    let id = post["id"].as_str().unwrap().to_string();

    // Approved (published at once); killed while X creates it.
    let held = killed.lock().unwrap();
    let (status, post) = call(
        &addr,
        "POST",
        &format!("/api/v1/posts/{id}/approve"),
        Some(&owner),
        json!({}),
    );
    assert_eq!(status, 200, "{post}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !created.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the post was not sent to X");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    drop(held);

    // Started again: the post is adopted, not published a second time.
    let (_server, addr) = serve_with(dir.path(), &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let post = loop {
        let (status, post) = call(
            &addr,
            "GET",
            &format!("/api/v1/posts/{id}"),
            Some(&owner),
            Value::Null,
        );
        assert_eq!(status, 200, "{post}");
        if post["state"] != "scheduled" {
            break post;
        }
        assert!(Instant::now() < deadline, "still not published: {post}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(post["state"], "published", "{post}");
    assert_eq!(post["provider_post_id"], POST_ID);
    let received = received.lock().unwrap();
    let posted = received
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/2/tweets")
        .count();
    assert_eq!(posted, 1, "posted once");
    assert!(
        received
            .iter()
            .any(|r| r.method == "GET" && r.path.starts_with(&format!("/2/users/{USER_ID}/tweets"))),
        "the account's own posts were read before trying again"
    );
}
