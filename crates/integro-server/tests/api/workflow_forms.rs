//! Conversational workflows (#37) over signed Twilio webhooks: a keyword
//! starts the lead form, the form takes the contact's answers before any
//! rule, re-asks on an invalid email, confirms, completes into the
//! back-office state; giving up hands the conversation to a human; a cancel
//! word ends it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::channels::{Loop, TwilioAccepts, field, form, wait_until};
use crate::db_tests;
use crate::helpers::DbKind;

db_tests!(
    the_lead_form_asks_re_asks_confirms_and_completes,
    a_form_that_gives_up_hands_the_conversation_to_a_human,
);

const SEND_PATH: &str = "/2010-04-01/Accounts/AC123/Messages.json";
const CONTACT: &str = "+14155550177";

const LEAD_FORM: &str = r#"
key: lead_intake
triggers: { conversation: { keywords: [quote, price] }, api: true }
fields:
  name:  { type: string, min_length: 2, ask: "What's your name?" }
  email: { type: email, ask: "Your email?", retry: "That email doesn't look right, try again?", max_attempts: 2 }
states:
  collecting:
    form: { fields: [name, email], confirm: "{{fields.name}}, {{fields.email}}: correct?" }
    on_give_up: handoff
    on: { complete: qualified }
  qualified:
    enter: [{ send: "Thanks {{fields.name}}, we will write to {{fields.email}}." }]
    on: { accept: won, reject: { to: lost, require: [reason] } }
  won: { final: true }
  lost: { final: true }
"#;

/// A Twilio loop with the lead form published and a rule that answers
/// "hours" (rules come after the form, before triggers).
async fn lead_loop(kind: DbKind) -> Option<Loop> {
    let t = Loop::twilio(kind, 2).await?;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(TwilioAccepts::default())
        .mount(&t.provider)
        .await;
    let res = t
        .app
        .client
        .post(t.app.url("/api/v1/workflow-definitions"))
        .bearer_auth(&t.key)
        .header("content-type", "application/yaml")
        .body(LEAD_FORM)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = t
        .app
        .post(
            &format!("/api/v1/workflow-definitions/{id}/versions"),
            &t.key,
            json!({}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    let res = t
        .app
        .post(
            &format!("/api/v1/bots/{}/rules", t.bot_id),
            &t.key,
            json!({ "match": "contains", "pattern": "hours", "reply": "We open at 9." }),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    Some(t)
}

/// The texts the provider was asked to send, in order.
async fn sent(t: &Loop) -> Vec<String> {
    t.provider_requests()
        .await
        .iter()
        .filter(|r| r.url.path() == SEND_PATH)
        .filter_map(|r| field(&form(r), "Body").map(String::from))
        .collect()
}

/// Sends `body` as the contact and waits until `n` messages went out.
async fn say(t: &Loop, sid: &str, body: &str, n: usize) -> Vec<String> {
    let res = t.twilio_message(sid, CONTACT, body).await;
    assert_eq!(res.status(), StatusCode::OK);
    wait_until(Duration::from_secs(20), || async {
        sent(t).await.len() >= n
    })
    .await;
    sent(t).await
}

async fn instances(t: &Loop) -> Vec<Value> {
    t.get("/api/v1/workflow-instances").await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn the_lead_form_asks_re_asks_confirms_and_completes(kind: DbKind) {
    let Some(t) = lead_loop(kind).await else {
        return;
    };
    let out = say(&t, "SMw1", "How much is the price of a quote?", 1).await;
    assert_eq!(out, ["What's your name?"]);
    let out = say(&t, "SMw2", "Ann Lee", 2).await;
    assert_eq!(out[1], "Your email?");
    let out = say(&t, "SMw3", "ann at example", 3).await;
    assert_eq!(
        out[2], "That email doesn't look right, try again?",
        "{out:?}"
    );
    let out = say(&t, "SMw4", "ann@example.com", 4).await;
    assert_eq!(out[3], "Ann Lee, ann@example.com: correct?");
    let out = say(&t, "SMw5", "yes", 5).await;
    assert_eq!(out[4], "Thanks Ann Lee, we will write to ann@example.com.");

    let found = instances(&t).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let instance = &found[0];
    assert_eq!(instance["state"], "qualified");
    assert_eq!(instance["fields"]["name"], "Ann Lee");
    assert_eq!(instance["fields"]["email"], "ann@example.com");
    assert!(instance["conversation_id"].is_string());
    let history = t
        .get(&format!(
            "/api/v1/workflow-instances/{}/history?limit=100",
            instance["id"].as_str().unwrap()
        ))
        .await;
    let names: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "workflow.field.rejected")
            .count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "workflow.field.set").count(),
        2,
        "{names:?}"
    );
    assert!(
        names.contains(&"workflow.instance.transitioned"),
        "{names:?}"
    );

    // The form is done: a rule answers again, and the trigger word does not
    // start a second instance while this one runs.
    let out = say(&t, "SMw6", "what are your hours?", 6).await;
    assert_eq!(out[5], "We open at 9.");
    t.settled().await;
    let _ = say(&t, "SMw7", "another quote", 7).await;
    t.settled().await;
    assert_eq!(instances(&t).await.len(), 1);
    // Each message was answered once.
    assert_eq!(sent(&t).await.len(), 7);
}

async fn a_form_that_gives_up_hands_the_conversation_to_a_human(kind: DbKind) {
    let Some(t) = lead_loop(kind).await else {
        return;
    };
    say(&t, "SMg1", "price?", 1).await;
    say(&t, "SMg2", "Ann", 2).await;
    say(&t, "SMg3", "nope", 3).await;
    // The second invalid email is the last attempt: a human takes over.
    let res = t.twilio_message("SMg4", CONTACT, "still nope").await;
    assert_eq!(res.status(), StatusCode::OK);
    wait_until(Duration::from_secs(20), || async {
        let c = t.get("/api/v1/conversations").await;
        c["items"][0]["state"] == "human"
    })
    .await;
    t.settled().await;
    let found = instances(&t).await;
    assert_eq!(found[0]["status"], "cancelled", "{found:?}");
    // The bot stays silent while a human has the conversation.
    let before = sent(&t).await.len();
    let res = t.twilio_message("SMg5", CONTACT, "hello?").await;
    assert_eq!(res.status(), StatusCode::OK);
    t.settled().await;
    assert_eq!(sent(&t).await.len(), before);
}
