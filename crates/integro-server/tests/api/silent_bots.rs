//! Silent bots: a template or condition naming a variable that does not
//! exist is refused when saved; a placeholder may give a default; a turn
//! whose reply renders empty sends the fallback reply and records an event;
//! dry runs show what was missing.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::channels::{FALLBACK, Loop, TwilioAccepts, field, form, wait_until};
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};

const SEND_PATH: &str = "/2010-04-01/Accounts/AC123/Messages.json";

db_tests!(
    unknown_names_are_refused_when_saved_naming_the_field_and_the_known_names,
    a_reply_that_renders_empty_sends_the_fallback_and_records_an_event,
    a_default_answers_a_nameless_contact,
    the_dry_run_warns_of_missing_values,
);

async fn twilio_sends(t: &Loop) {
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(TwilioAccepts::default())
        .mount(&t.provider)
        .await;
}

/// A WhatsApp message through Twilio from a contact with no profile name.
async fn nameless_message(t: &Loop, sid: &str, from: &str, body: &str) {
    let res = t
        .post_twilio(&[
            ("MessageSid", sid),
            ("SmsMessageSid", sid),
            ("AccountSid", "AC123"),
            ("From", &format!("whatsapp:{from}")),
            ("To", "whatsapp:+14155238886"),
            ("Body", body),
            ("NumMedia", "0"),
            ("WaId", from.trim_start_matches('+')),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Twilio `Body` fields of the sends so far, in order.
async fn bodies(t: &Loop) -> Vec<String> {
    t.provider_requests()
        .await
        .iter()
        .filter(|r| r.url.path() == SEND_PATH)
        .filter_map(|r| field(&form(r), "Body").map(String::from))
        .collect()
}

async fn wait_bodies(t: &Loop, n: usize) -> Vec<String> {
    wait_until(Duration::from_secs(20), || async {
        bodies(t).await.len() >= n
    })
    .await;
    bodies(t).await
}

async fn create_rule(t: &Loop, body: Value) -> Value {
    let res = t
        .app
        .post(&format!("/api/v1/bots/{}/rules", t.bot_id), &t.key, body)
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    res.json().await.unwrap()
}

/// Asserts a 422 naming `field`, whose message names `name` as unknown and
/// lists the known names; returns the message.
async fn refused(res: reqwest::Response, field: &str, name: &str) -> String {
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    let message = problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!("`{name}` is not a known name")),
        "{message}"
    );
    for known in [
        "message.text",
        "contact.name",
        "contact.phone",
        "now.hour",
        "channel",
        "vars.<name>",
    ] {
        assert!(message.contains(known), "{known} in {message}");
    }
    message
}

async fn unknown_names_are_refused_when_saved_naming_the_field_and_the_known_names(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    let rules_path = format!("/api/v1/bots/{}/rules", t.bot_id);

    // The misspelt reply of the issue.
    let res = t
        .app
        .post(
            &rules_path,
            &t.key,
            json!({ "match": "contains", "pattern": "hours", "reply": "We open at 9, {{contact.nmae}}." }),
        )
        .await;
    let message = refused(res, "reply", "contact.nmae").await;
    assert!(
        message.contains("did you mean `contact.name`?"),
        "{message}"
    );

    // A CEL condition reading a name that does not exist.
    let res = t
        .app
        .post(
            &rules_path,
            &t.key,
            json!({ "match": "contains", "pattern": "hours", "reply": "9 to 5", "condition": "customer.vip == true" }),
        )
        .await;
    refused(res, "condition", "customer.vip").await;

    // Action templates.
    let res = t
        .app
        .post(
            &rules_path,
            &t.key,
            json!({ "match": "contains", "pattern": "plan", "reply": "Noted", "action": { "type": "set_variable", "name": "plan", "value": "{{mesage.text}}" } }),
        )
        .await;
    refused(res, "action.value", "mesage.text").await;

    // Names under vars are open; the rest of the names are known.
    let rule = create_rule(
        &t,
        json!({ "match": "contains", "pattern": "hours", "reply": "{{contact.name | default: \"Hi\"}}, we open at 9 ({{vars.plan | default: \"basic\"}}, {{channel}}, {{now.time}})", "condition": "\"plan\" in vars || now.hour >= 0" }),
    )
    .await;

    // Changing a rule is checked the same way, and so is an import.
    let res = t
        .request(
            Method::PATCH,
            &format!("{rules_path}/{}", rule["id"].as_str().unwrap()),
            Some(json!({ "condition": "contact.nmae == \"Ann\"" })),
        )
        .await;
    refused(res, "condition", "contact.nmae").await;
    let res = t
        .app
        .request(Method::POST, &format!("{rules_path}/import"), &t.key)
        .header("content-type", "application/yaml")
        .body("rules:\n- pattern: hi\n  reply: Hello\n- pattern: hours\n  reply: 'Open, {{contact.nmae}}'\n")
        .send()
        .await
        .unwrap();
    refused(res, "rules[1].reply", "contact.nmae").await;
    assert_eq!(
        t.get(&rules_path).await["items"].as_array().unwrap().len(),
        1
    );

    // A persona's system prompt, when set and when a bot is created with it.
    let res = t
        .request(
            Method::PUT,
            &format!("/api/v1/bots/{}/persona", t.bot_id),
            Some(json!({ "name": "Lia", "system_prompt": "You are {{persona.name}}, helping {{contact.nmae}}." })),
        )
        .await;
    refused(res, "persona.system_prompt", "contact.nmae").await;
    let res = t
        .app
        .post(
            "/api/v1/bots",
            &t.key,
            json!({ "name": "Other", "fallback_reply": "Hi", "persona": { "name": "Lia", "system_prompt": "Plan: {{plan}}" } }),
        )
        .await;
    refused(res, "persona.system_prompt", "plan").await;
    let res = t
        .request(
            Method::PUT,
            &format!("/api/v1/bots/{}/persona", t.bot_id),
            Some(json!({ "name": "Lia", "system_prompt": "You are {{persona.name}}, helping {{contact.name | default: \"a customer\"}} on {{vars.plan}}." })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // A persona saved before names were checked does not block other
    // changes to its bot; changing the persona itself is checked.
    sqlx::query(
        "UPDATE bots SET persona_json = '{\"name\": \"Lia\", \"system_prompt\": \"Hi {{contact.nmae}}\"}'",
    )
    .execute(&mut *t.app.state.db.writer().await.unwrap())
    .await
    .unwrap();
    let res = t
        .request(
            Method::PATCH,
            &format!("/api/v1/bots/{}", t.bot_id),
            Some(json!({ "name": "Helper 2" })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = t
        .request(
            Method::PUT,
            &format!("/api/v1/bots/{}/persona", t.bot_id),
            Some(json!({ "name": "Lia 2", "system_prompt": "Hi {{contact.nmae}}" })),
        )
        .await;
    refused(res, "persona.system_prompt", "contact.nmae").await;
}

async fn a_reply_that_renders_empty_sends_the_fallback_and_records_an_event(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    // A valid name, but a contact without one: the reply renders empty.
    let rule = create_rule(
        &t,
        json!({ "match": "contains", "pattern": "name", "reply": " {{contact.name}} " }),
    )
    .await;
    nameless_message(&t, "SM1", "+14155550100", "what is my name?").await;
    assert_eq!(wait_bodies(&t, 1).await, vec![FALLBACK]);
    t.wait_outbound_status("sent").await;
    assert_eq!(t.outbound().await[0]["rule_id"], rule["id"]);

    wait_until(Duration::from_secs(20), || async {
        !t.get("/api/v1/events?kind=reply_empty").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    let events = t.get("/api/v1/events?kind=reply_empty").await;
    let events = events["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let detail = events[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(rule["id"].as_str().unwrap()),
        "names the rule: {detail}"
    );
    assert!(detail.contains("{{contact.name}}"), "{detail}");
    assert!(detail.contains("fallback"), "{detail}");

    // A contact with a name gets the rule's reply, and no event.
    t.twilio_message("SM2", "+14155550199", "my name?").await;
    assert_eq!(wait_bodies(&t, 2).await[1], "Ann");
    t.settled().await;
    assert_eq!(
        t.get("/api/v1/events?kind=reply_empty").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn a_default_answers_a_nameless_contact(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    create_rule(
        &t,
        json!({ "match": "contains", "pattern": "opening hours", "reply": "We open at 9, {{ contact.name | default: \"there\" }}." }),
    )
    .await;
    nameless_message(&t, "SM1", "+14155550100", "opening hours?").await;
    assert_eq!(wait_bodies(&t, 1).await, vec!["We open at 9, there."]);
    t.twilio_message("SM2", "+14155550199", "opening hours?")
        .await;
    assert_eq!(wait_bodies(&t, 2).await[1], "We open at 9, Ann.");
    t.settled().await;
    assert!(
        t.get("/api/v1/events?kind=reply_empty").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn the_dry_run_warns_of_missing_values(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    create_rule(
        &t,
        json!({ "match": "contains", "pattern": "hours", "reply": "We open at 9, {{contact.name | default: \"there\"}}." }),
    )
    .await;
    create_rule(
        &t,
        json!({ "match": "contains", "pattern": "plan", "reply": "{{vars.plan}}" }),
    )
    .await;
    let try_path = format!("/api/v1/bots/{}/try", t.bot_id);
    let dry = |body: Value| {
        let t = &t;
        let try_path = &try_path;
        async move {
            let res = t.app.post(try_path, &t.key, body).await;
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };

    let result = dry(json!({ "text": "opening hours?" })).await;
    assert_eq!(result["replies"], json!(["We open at 9, there."]));
    assert_eq!(
        result["warnings"],
        json!(["reply: {{contact.name}} had no value: its default \"there\" was used"])
    );

    let result = dry(json!({ "text": "opening hours?", "contact_name": "Rui" })).await;
    assert_eq!(result["replies"], json!(["We open at 9, Rui."]));
    assert_eq!(result["warnings"], json!([]));

    // A reply that renders empty: the fallback, and why.
    let result = dry(json!({ "text": "which plan am I on?" })).await;
    assert_eq!(result["replies"], json!([FALLBACK]));
    let warnings: Vec<&str> = result["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("reply: {{vars.plan}} had no value and was left out"),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("fallback reply"), "{warnings:?}");
    assert!(
        result["trace"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("rendered empty")),
        "{result}"
    );
    // A dry run records nothing.
    assert!(
        t.get("/api/v1/events?kind=reply_empty").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
