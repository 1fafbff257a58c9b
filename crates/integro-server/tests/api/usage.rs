//! Usage statistics: messages, replies, hand-offs and delivery failures
//! rolled up per day and channel account, through the API and the
//! dashboard's usage page.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::{Loop, TwilioAccepts, wait_until};
use crate::dashboard::Browser;
use crate::db_tests;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, DbKind, assert_problem};
use integro_store::db::now_ms;
use integro_store::message_stats;

db_tests!(messages_replies_handoffs_and_failures_are_counted_once);

const SEND_PATH: &str = "/2010-04-01/Accounts/AC123/Messages.json";

async fn messages_replies_handoffs_and_failures_are_counted_once(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    // The first reply is refused for good; the others go out.
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400
        })))
        .up_to_n_times(1)
        .mount(&t.provider)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(TwilioAccepts::default())
        .mount(&t.provider)
        .await;
    let res = t
        .app
        .post(
            &format!("/api/v1/bots/{}/rules", t.bot_id),
            &t.key,
            json!({ "match": "any_keyword", "keywords": ["human"], "reply": "A person will answer.", "action": { "type": "handoff" } }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    t.twilio_message("SM1", "+14155550100", "hi").await;
    wait_until(std::time::Duration::from_secs(20), || async {
        t.outbound().await.iter().any(|m| m["status"] == "failed")
    })
    .await;
    t.twilio_message("SM2", "+14155550100", "hello again").await;
    t.twilio_message("SM3", "+14155550100", "a human please")
        .await;
    wait_until(std::time::Duration::from_secs(20), || async {
        let out = t.outbound().await;
        out.len() == 3 && out.iter().filter(|m| m["status"] == "sent").count() == 2
    })
    .await;
    t.settled().await;

    // Nothing is counted until the rollup has run.
    let usage = t.get("/api/v1/usage/daily").await;
    assert_eq!(usage["days"], json!([]));
    assert_eq!(usage["counted_until"], Value::Null);
    // Failures are counted when they happen.
    assert_eq!(
        usage["failures"],
        json!([{ "account_id": t.account_id, "code": "21211", "failures": 1 }])
    );

    let db = &t.app.state.db;
    let read = message_stats::roll_up(db, now_ms() + 1000).await.unwrap();
    assert!(
        read >= 8,
        "6 messages, a conversation, a transition: {read}"
    );
    // A second run finds nothing new: nothing is counted twice.
    assert_eq!(
        message_stats::roll_up(db, now_ms() + 1000).await.unwrap(),
        0
    );

    let usage = t.get("/api/v1/usage/daily").await;
    let days = usage["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{usage}");
    let today = &days[0];
    assert_eq!(today["inbound"], 3);
    assert_eq!(today["outbound_bot"], 3);
    assert_eq!(today["outbound_human"], 0);
    assert_eq!(today["replies"], 3);
    assert_eq!(today["conversations"], 1);
    assert_eq!(today["handoffs"], 1);
    assert!(today["reply_ms"].as_i64().unwrap() >= 0);
    assert!(usage["counted_until"].is_string());
    assert_eq!(usage["to"], today["day"]);
    let accounts = usage["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["account_id"], t.account_id.as_str());
    assert_eq!(accounts[0]["inbound"], 3);

    // A range that is not one is refused, saying why.
    let res = t
        .app
        .get("/api/v1/usage/daily?from=2026-12-05&to=2026-12-01", &t.key)
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let res = t
        .app
        .get("/api/v1/usage/daily?from=2024-01-01&to=2026-01-01", &t.key)
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let res = t
        .app
        .get("/api/v1/usage/daily?from=yesterday", &t.key)
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    // A year outside 1970-9999 is not a date here (no overflow).
    let res = t
        .app
        .get("/api/v1/usage/daily?to=-9999-01-01", &t.key)
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    // Another tenant sees none of it.
    let other = t.app.create_tenant("Other shop").await;
    let (_, other_key) = t.app.create_key(&other, "viewer").await;
    let theirs: Value = t
        .app
        .get("/api/v1/usage/daily", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["days"], json!([]));
    assert_eq!(theirs["failures"], json!([]));

    // The usage page draws it.
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let tenant = crate::dashboard::tenant_named(&t.app, "Shop").await;
    let picker = browser.page("/tenant").await;
    let token = crate::dashboard::csrf(&picker);
    browser
        .post("/tenant", &[("_csrf", &token), ("tenant_id", &tenant)])
        .await;
    let page = browser.page("/usage").await;
    for needle in [
        "<dt>Messages in</dt><dd>3</dd>",
        "<dt>Hand-off rate</dt><dd>100.0%</dd>",
        "<dt>Delivery failures</dt><dd>1</dd>",
        "Messages per day",
        "<code>21211</code>",
        "role=\"img\"",
    ] {
        assert!(page.contains(needle), "the usage page lacks {needle}");
    }
    // The inbox filters by bot.
    let mine = browser.page(&format!("/inbox?bot_id={}", t.bot_id)).await;
    assert!(
        !mine.contains("No conversations yet"),
        "the bot's conversation is listed"
    );
    let none = browser
        .page("/inbox?bot_id=01900000-0000-7000-8000-000000000000")
        .await;
    assert!(none.contains("No conversations yet"));
    let page = browser.page("/usage?from=2026-13-01&to=x").await;
    assert!(page.contains("must be a date as YYYY-MM-DD"), "{page}");
}
