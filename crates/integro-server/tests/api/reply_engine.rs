//! The reply engine through the real message loop: rules first, then the
//! LLM with the persona and the conversation's history, with fallbacks,
//! budgets, alerts and hand-off. Providers are local HTTP servers.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::channels::{FALLBACK, Loop, TwilioAccepts, field, form, wait_until};
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};

const SEND_PATH: &str = "/2010-04-01/Accounts/AC123/Messages.json";
const OPENAI_KEY: &str = "sk-test-123";

db_tests!(
    a_rule_answers_and_the_llm_answers_the_rest_with_persona_and_history,
    a_handed_off_conversation_gets_no_bot_reply,
    a_rejected_key_gives_the_error_reply_an_event_and_one_signed_alert,
    a_spent_budget_leaves_rules_and_the_fallback,
    the_fallback_profile_answers_while_the_primary_is_overloaded,
    rules_are_validated_exported_and_imported_whole,
    a_dry_run_shows_the_decision_and_sends_nothing,
    credentials_are_never_shown_and_tested_in_plain_words,
    a_burst_is_answered_in_one_llm_turn,
    past_the_rate_limit_one_notice_then_silence,
    reset_and_expiry_start_the_memory_afresh,
    an_agent_takes_over_and_the_bot_returns_after_the_handoff_timeout,
    yaml_aliases_cannot_blow_up_a_rules_import,
);

pub(crate) fn openai_answer(text: &str, input: u64, output: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1718203449, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": text } }],
        "usage": { "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output }
    }))
}

/// An OpenAI-compatible server answering every chat completion with `answer`.
pub(crate) async fn openai_llm(answer: ResponseTemplate) -> MockServer {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer)
        .mount(&llm)
        .await;
    llm
}

async fn twilio_sends(t: &Loop) {
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(TwilioAccepts::default())
        .mount(&t.provider)
        .await;
}

async fn created(t: &Loop, path: &str, body: Value) -> Value {
    let res = t.app.post(path, &t.key, body).await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "POST {path}: {}",
        res.text().await.unwrap()
    );
    res.json().await.unwrap()
}

async fn patch(t: &Loop, path: &str, body: Value) -> Value {
    let res = t.request(Method::PATCH, path, Some(body)).await;
    assert_eq!(res.status(), StatusCode::OK, "PATCH {path}");
    res.json().await.unwrap()
}

/// An AI profile on `provider` at `base_url`, made the bot's.
pub(crate) async fn give_bot_llm(t: &Loop, provider: &str, base_url: String, model: &str) -> Value {
    let cred = created(
        t,
        "/api/v1/ai-credentials",
        json!({ "name": provider, "provider": provider, "api_key": OPENAI_KEY, "base_url": base_url }),
    )
    .await;
    let profile = created(
        t,
        "/api/v1/ai-profiles",
        json!({ "name": "main", "credential_id": cred["id"], "model": model, "temperature": 0.3, "max_output_tokens": 300 }),
    )
    .await;
    patch(
        t,
        &format!("/api/v1/bots/{}", t.bot_id),
        json!({ "ai_profile_id": profile["id"], "settings": { "burst_window_ms": 0 } }),
    )
    .await;
    profile
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

async fn a_rule_answers_and_the_llm_answers_the_rest_with_persona_and_history(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    let llm = openai_llm(openai_answer("A scarf would be lovely.", 52, 7)).await;
    let profile = give_bot_llm(&t, "openai", format!("{}/v1", llm.uri()), "gpt-4o-mini").await;
    let res = t
        .request(
            Method::PUT,
            &format!("/api/v1/bots/{}/persona", t.bot_id),
            Some(json!({
                "name": "Lia", "tone": "warm", "interests": ["gifts"], "language": "English",
                "system_prompt": "You are {{persona.name}}, {{persona.tone}}. The customer is {{contact.name}}."
            })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let rule = created(
        &t,
        &format!("/api/v1/bots/{}/rules", t.bot_id),
        json!({ "match": "contains", "pattern": "opening hours", "reply": "We open at 9, {{contact.name}}.", "priority": 5 }),
    )
    .await;

    // Accents and case do not matter; the rule's reply is templated.
    t.twilio_message("SM1", "+14155550100", "What are your OPÉNING hours?")
        .await;
    assert_eq!(wait_bodies(&t, 1).await, vec!["We open at 9, Ann."]);
    t.wait_outbound_status("sent").await;
    let out = t.outbound().await;
    assert_eq!(out[0]["rule_id"], rule["id"]);
    assert!(llm.received_requests().await.unwrap().is_empty());

    // Nothing matches: the LLM answers, as the persona, with the history.
    t.twilio_message("SM2", "+14155550100", "Can you recommend a gift?")
        .await;
    assert_eq!(wait_bodies(&t, 2).await[1], "A scarf would be lovely.");
    let calls = llm.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].headers["authorization"],
        format!("Bearer {OPENAI_KEY}").as_str()
    );
    let body: Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_completion_tokens"], 300);
    assert!((body["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(
        body["messages"],
        json!([
            { "role": "system", "content": "You are Lia, warm. The customer is Ann." },
            { "role": "user", "content": "What are your OPÉNING hours?" },
            { "role": "assistant", "content": "We open at 9, Ann." },
            { "role": "user", "content": "Can you recommend a gift?" }
        ])
    );
    wait_until(Duration::from_secs(20), || async {
        t.outbound().await.len() == 2
    })
    .await;
    let out = t.outbound().await;
    assert_eq!(out[1]["ai_profile_id"], profile["id"]);
    assert_eq!(out[1]["input_tokens"], 52);
    assert_eq!(out[1]["output_tokens"], 7);
    assert_eq!(out[1]["rule_id"], Value::Null);

    let usage = t.get("/api/v1/usage").await;
    assert_eq!(usage["total_requests"], 1);
    assert_eq!(usage["total_input_tokens"], 52);
    assert_eq!(usage["total_output_tokens"], 7);
    assert_eq!(usage["days"][0]["bot_id"], t.bot_id.as_str());
    assert_eq!(usage["days"][0]["failed_requests"], 0);
    assert!(usage["days"][0]["latency_ms"].as_i64().unwrap() >= 0);
}

async fn a_handed_off_conversation_gets_no_bot_reply(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    created(
        &t,
        &format!("/api/v1/bots/{}/rules", t.bot_id),
        json!({ "match": "any_keyword", "keywords": ["human", "agent"], "reply": "Connecting you to a person.", "action": { "type": "handoff" } }),
    )
    .await;
    t.twilio_message("SM1", "+14155550100", "hello").await;
    assert_eq!(wait_bodies(&t, 1).await, vec![FALLBACK]);
    t.twilio_message("SM2", "+14155550100", "I want a human please")
        .await;
    assert_eq!(wait_bodies(&t, 2).await[1], "Connecting you to a person.");

    let conversations = t.get("/api/v1/conversations").await;
    let conversation = &conversations["items"][0];
    let id = conversation["id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(10), || async {
        t.get(&format!("/api/v1/conversations/{id}")).await["state"] == "human"
    })
    .await;

    // While a human has it, messages land and the bot says nothing.
    t.twilio_message("SM3", "+14155550100", "are you there?")
        .await;
    wait_until(Duration::from_secs(20), || async {
        let messages = t.messages().await;
        messages.iter().any(|m| m["body"] == "are you there?")
    })
    .await;
    t.settled().await;
    assert_eq!(bodies(&t).await.len(), 2, "no reply while a human has it");

    // Handing off again is refused; resuming gives it back to the bot.
    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{id}/handoff"),
            None,
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "invalid_transition").await;
    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "bot");
    t.twilio_message("SM4", "+14155550100", "thanks").await;
    assert_eq!(wait_bodies(&t, 3).await[2], FALLBACK);

    let transitions = t
        .get(&format!("/api/v1/conversations/{id}/transitions"))
        .await;
    let reasons: Vec<&str> = transitions
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, vec!["rule_handoff", "resume"]);
    assert!(
        transitions[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("rule:")
    );
    assert!(
        transitions[1]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api_key:")
    );
}

async fn a_rejected_key_gives_the_error_reply_an_event_and_one_signed_alert(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    let llm = openai_llm(ResponseTemplate::new(401).set_body_json(json!({
            "error": { "message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key" }
        }))).await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    give_bot_llm(&t, "openai", format!("{}/v1", llm.uri()), "gpt-4o-mini").await;
    let settings = patch(
        &t,
        "/api/v1/settings",
        json!({ "alert_webhook_url": format!("{}/hook", slack.uri()), "alert_webhook_secret": "shh" }),
    )
    .await;
    assert_eq!(settings["alert_webhook_set"], true);
    assert!(!settings.to_string().contains("/hook"), "the URL is sealed");

    t.twilio_message("SM1", "+14155550100", "hello?").await;
    t.twilio_message("SM2", "+14155550199", "anyone?").await;
    let sent = wait_bodies(&t, 2).await;
    let error_reply = integro_store::bots::BotSettings::default().error_reply;
    assert_eq!(sent, vec![error_reply.clone(), error_reply]);
    // A rejected key is not retried.
    assert_eq!(llm.received_requests().await.unwrap().len(), 2);

    wait_until(Duration::from_secs(20), || async {
        !slack.received_requests().await.unwrap().is_empty()
    })
    .await;
    t.settled().await;
    let alerts = slack.received_requests().await.unwrap();
    assert_eq!(alerts.len(), 1, "one outage, one alert");
    let body = String::from_utf8(alerts[0].body.clone()).unwrap();
    let timestamp: i64 = alerts[0].headers["x-integro-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        alerts[0].headers["x-integro-signature"],
        integro_worker::alert::sign("shh", timestamp, &body).as_str()
    );
    let alert: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["kind"], "ai_auth_failed");
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .contains("API key was rejected")
    );

    let events = t.get("/api/v1/events?kind=ai_auth_failed").await;
    let events = events["items"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events.iter().filter(|e| e["alerted"] == true).count(), 1);
    let failed = t.get("/api/v1/events?kind=ai_failed").await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 2);
}

async fn a_spent_budget_leaves_rules_and_the_fallback(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    let llm = openai_llm(openai_answer("From the LLM.", 60, 40)).await;
    give_bot_llm(&t, "openai", format!("{}/v1", llm.uri()), "gpt-4o-mini").await;
    patch(
        &t,
        "/api/v1/settings",
        json!({ "monthly_token_budget": 100 }),
    )
    .await;
    created(
        &t,
        &format!("/api/v1/bots/{}/rules", t.bot_id),
        json!({ "match": "exact", "pattern": "menu", "reply": "Here is the menu." }),
    )
    .await;

    t.twilio_message("SM1", "+14155550100", "tell me something")
        .await;
    assert_eq!(wait_bodies(&t, 1).await, vec!["From the LLM."]);
    wait_until(Duration::from_secs(20), || async {
        t.get("/api/v1/usage").await["budget_exhausted"] == true
    })
    .await;

    t.twilio_message("SM2", "+14155550101", "tell me more")
        .await;
    t.twilio_message("SM3", "+14155550102", "Menu!").await;
    let sent = wait_bodies(&t, 3).await;
    assert!(sent[1..].contains(&FALLBACK.to_string()));
    assert!(sent[1..].contains(&"Here is the menu.".to_string()));
    assert_eq!(
        llm.received_requests().await.unwrap().len(),
        1,
        "no LLM call once the budget is spent: {sent:?} {}",
        t.get("/api/v1/jobs").await
    );
    let events = t.get("/api/v1/events?kind=budget_exhausted").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 1);
}

async fn the_fallback_profile_answers_while_the_primary_is_overloaded(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 1).await else {
        return;
    };
    twilio_sends(&t).await;
    let anthropic = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(529).set_body_json(json!({
            "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" }
        })))
        .mount(&anthropic)
        .await;
    let openai = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer("Backup here.", 10, 3))
        .mount(&openai)
        .await;
    let backup_cred = created(
        &t,
        "/api/v1/ai-credentials",
        json!({ "name": "openai", "provider": "openai", "api_key": OPENAI_KEY, "base_url": format!("{}/v1", openai.uri()) }),
    )
    .await;
    let backup = created(
        &t,
        "/api/v1/ai-profiles",
        json!({ "name": "backup", "credential_id": backup_cred["id"], "model": "gpt-4o-mini" }),
    )
    .await;
    let cred = created(
        &t,
        "/api/v1/ai-credentials",
        json!({ "name": "anthropic", "provider": "anthropic", "api_key": "sk-ant-1", "base_url": anthropic.uri() }),
    )
    .await;
    let primary = created(
        &t,
        "/api/v1/ai-profiles",
        json!({ "name": "primary", "credential_id": cred["id"], "model": "claude-sonnet-4-5", "max_output_tokens": 200, "fallback_profile_id": backup["id"] }),
    )
    .await;
    patch(
        &t,
        &format!("/api/v1/bots/{}", t.bot_id),
        json!({ "ai_profile_id": primary["id"], "settings": { "burst_window_ms": 0 } }),
    )
    .await;
    // A loop of fallbacks is refused.
    let res = t
        .request(
            Method::PATCH,
            &format!("/api/v1/ai-profiles/{}", backup["id"].as_str().unwrap()),
            Some(json!({ "fallback_profile_id": primary["id"] })),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    // The breaker opens after 5 failed calls (each retried twice); from then
    // on the primary is not called at all and the backup answers at once.
    for i in 0..7 {
        t.twilio_message(&format!("SM{i}"), &format!("+1415555010{i}"), "hi")
            .await;
        let sent = wait_bodies(&t, i + 1).await;
        assert_eq!(sent[i], "Backup here.");
    }
    let calls = anthropic.received_requests().await.unwrap();
    assert_eq!(
        calls.len(),
        5 * 3,
        "5 calls of 3 attempts, then the circuit is open"
    );
    // Usage counts each turn's answer and the primary it went past.
    let usage = t.get("/api/v1/usage").await;
    assert_eq!(usage["days"][0]["requests"], 7);
    assert_eq!(usage["days"][0]["failed_requests"], 7);
    let body: Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(calls[0].headers["x-api-key"], "sk-ant-1");
    assert_eq!(calls[0].headers["anthropic-version"], "2023-06-01");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["max_tokens"], 200);
    assert_eq!(
        body["messages"],
        json!([{ "role": "user", "content": "hi" }])
    );
    assert!(body["system"].as_str().unwrap().contains("Helper"));
    let metrics = t
        .app
        .client
        .get(t.app.url("/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("integro_circuit_open")
                && l.contains(&format!("ai:{}", cred["id"].as_str().unwrap()))
                && l.ends_with(" 1")),
        "the open circuit shows in /metrics"
    );
}

async fn rules_are_validated_exported_and_imported_whole(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    let rules_path = format!("/api/v1/bots/{}/rules", t.bot_id);
    for (body, field) in [
        (
            json!({ "match": "regex", "pattern": "(unclosed", "reply": "x" }),
            "pattern",
        ),
        (
            json!({ "match": "contains", "pattern": "hi", "reply": "x", "condition": "channel ==" }),
            "condition",
        ),
        (
            json!({ "match": "any_keyword", "keywords": [], "reply": "x" }),
            "keywords",
        ),
        (json!({ "match": "contains", "pattern": "hi" }), "reply"),
        (
            json!({ "match": "contains", "pattern": "hi", "reply": "Hi {{contact.name" }),
            "reply",
        ),
        (
            json!({ "match": "sounds_like", "pattern": "hi", "reply": "x" }),
            "match",
        ),
    ] {
        let res = t.app.post(&rules_path, &t.key, body.clone()).await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
    created(
        &t,
        &rules_path,
        json!({ "name": "hours", "match": "contains", "pattern": "hours", "reply": "9 to 5", "priority": 2 }),
    )
    .await;
    let rule = created(
        &t,
        &rules_path,
        json!({ "match": "regex", "pattern": "(?i)order #?\\d+", "reply": "Checking your order", "condition": "channel == \"twilio_whatsapp\"" }),
    )
    .await;
    let updated = patch(
        &t,
        &format!("{rules_path}/{}", rule["id"].as_str().unwrap()),
        json!({ "priority": 9, "condition": null }),
    )
    .await;
    assert_eq!(updated["priority"], 9);
    assert!(updated.get("condition").is_none());
    assert_eq!(updated["pattern"], "(?i)order #?\\d+");

    let res = t.app.get(&format!("{rules_path}/export"), &t.key).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/yaml");
    let yaml = res.text().await.unwrap();
    assert!(yaml.contains("pattern: hours"), "{yaml}");

    // An import with one bad rule changes nothing and names the rule.
    let bad = format!("{yaml}- match: regex\n  pattern: '(['\n  reply: broken\n");
    let res = t
        .app
        .request(Method::POST, &format!("{rules_path}/import"), &t.key)
        .header("content-type", "application/yaml")
        .body(bad)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "rules[2].pattern");
    assert_eq!(
        t.get(&rules_path).await["items"].as_array().unwrap().len(),
        2
    );

    // A good import replaces the rules: export → import round-trips.
    let res = t
        .app
        .request(Method::POST, &format!("{rules_path}/import"), &t.key)
        .header("content-type", "application/yaml")
        .body(yaml.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["imported"], 2);
    let again = t.app.get(&format!("{rules_path}/export"), &t.key).await;
    assert_eq!(again.text().await.unwrap(), yaml);

    let res = t
        .app
        .request(Method::POST, &format!("{rules_path}/import"), &t.key)
        .body("rules: [ {")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "malformed_yaml").await;

    // Another tenant sees none of it.
    let other = t.app.create_tenant("Other").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let res = t.app.get(&rules_path, &other_key).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn a_dry_run_shows_the_decision_and_sends_nothing(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    let llm = openai_llm(openai_answer("Dry answer.", 20, 4)).await;
    give_bot_llm(&t, "openai", format!("{}/v1", llm.uri()), "gpt-4o-mini").await;
    let rule = created(
        &t,
        &format!("/api/v1/bots/{}/rules", t.bot_id),
        json!({ "match": "starts_with", "pattern": "price", "reply": "It costs 5, {{contact.name}}." }),
    )
    .await;
    let try_path = format!("/api/v1/bots/{}/try", t.bot_id);
    let res = t
        .app
        .post(
            &try_path,
            &t.key,
            json!({ "text": "Price of the cake?", "contact_name": "Rui" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let result: Value = res.json().await.unwrap();
    assert_eq!(result["replies"], json!(["It costs 5, Rui."]));
    assert_eq!(result["rule_id"], rule["id"]);
    assert_eq!(result["llm"], Value::Null);

    let res = t
        .app
        .post(&try_path, &t.key, json!({ "text": "Do you deliver?" }))
        .await;
    let result: Value = res.json().await.unwrap();
    assert_eq!(result["replies"], json!(["Dry answer."]));
    assert_eq!(result["llm"]["input_tokens"], 20);
    assert!(
        result["llm"]["system_prompt"]
            .as_str()
            .unwrap()
            .contains("Helper")
    );
    assert!(
        result["trace"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("no rule matched"))
    );
    // Nothing stored, nothing sent.
    assert!(t.provider_requests().await.is_empty());
    assert!(
        t.get("/api/v1/conversations").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.get("/api/v1/usage").await["total_requests"], 0);
}

async fn credentials_are_never_shown_and_tested_in_plain_words(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    let llm = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": { "message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key" }
        })))
        .mount(&llm)
        .await;
    let cred = created(
        &t,
        "/api/v1/ai-credentials",
        json!({ "name": "main", "provider": "openai", "api_key": "sk-very-secret", "base_url": format!("{}/v1", llm.uri()) }),
    )
    .await;
    assert_eq!(cred["has_api_key"], true);
    let id = cred["id"].as_str().unwrap();
    for body in [
        cred.to_string(),
        t.get("/api/v1/ai-credentials").await.to_string(),
        t.get(&format!("/api/v1/ai-credentials/{id}"))
            .await
            .to_string(),
        t.get("/api/v1/audit-log").await.to_string(),
    ] {
        assert!(!body.contains("sk-very-secret"));
    }
    let res = t
        .app
        .post(
            &format!("/api/v1/ai-credentials/{id}/test"),
            &t.key,
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let result: Value = res.json().await.unwrap();
    assert_eq!(result["ok"], false);
    assert_eq!(result["code"], "auth");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("API key was rejected")
    );
    assert_eq!(
        llm.received_requests().await.unwrap()[0].headers["authorization"],
        "Bearer sk-very-secret"
    );

    let res = t
        .app
        .post(
            "/api/v1/ai-credentials",
            &t.key,
            json!({ "name": "local", "provider": "openai_compatible" }),
        )
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "base_url");
    let res = t
        .app
        .post(
            "/api/v1/ai-credentials",
            &t.key,
            json!({ "name": "x", "provider": "gemini", "api_key": "k" }),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
}

async fn a_burst_is_answered_in_one_llm_turn(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    let llm = openai_llm(openai_answer("All three answered.", 30, 5)).await;
    give_bot_llm(&t, "openai", format!("{}/v1", llm.uri()), "gpt-4o-mini").await;
    patch(
        &t,
        &format!("/api/v1/bots/{}", t.bot_id),
        json!({ "settings": { "burst_window_ms": 1500 } }),
    )
    .await;
    for (sid, text) in [
        ("SM1", "hi"),
        ("SM2", "I need a cake"),
        ("SM3", "for Saturday"),
    ] {
        assert_eq!(
            t.twilio_message(sid, "+14155550100", text).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(wait_bodies(&t, 1).await, vec!["All three answered."]);
    // Every message is kept; the later ones' jobs find them answered.
    wait_until(Duration::from_secs(20), || async {
        t.messages()
            .await
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count()
            == 3
            && t.get("/api/v1/jobs?state=ready").await["items"]
                .as_array()
                .unwrap()
                .is_empty()
    })
    .await;
    t.settled().await;
    assert_eq!(bodies(&t).await.len(), 1, "one reply for the burst");
    let calls = llm.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1);
    let body: Value = serde_json::from_slice(&calls[0].body).unwrap();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages.last().unwrap(),
        &json!({ "role": "user", "content": "hi\nI need a cake\nfor Saturday" })
    );
}

async fn past_the_rate_limit_one_notice_then_silence(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    patch(
        &t,
        &format!("/api/v1/bots/{}", t.bot_id),
        json!({ "settings": { "rate_limit_messages": 2, "rate_limit_window_seconds": 60, "rate_limit_notice": "Easy there!" } }),
    )
    .await;
    for i in 1..=3 {
        t.twilio_message(&format!("SM{i}"), "+14155550100", "hello")
            .await;
        wait_bodies(&t, i).await;
    }
    for i in 4..=5 {
        t.twilio_message(&format!("SM{i}"), "+14155550100", "hello")
            .await;
    }
    wait_until(Duration::from_secs(20), || async {
        t.messages()
            .await
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count()
            == 5
    })
    .await;
    t.settled().await;
    assert_eq!(bodies(&t).await, vec![FALLBACK, FALLBACK, "Easy there!"]);
    // Another contact is not limited by the first one.
    t.twilio_message("SM6", "+14155550199", "hello").await;
    assert_eq!(wait_bodies(&t, 4).await[3], FALLBACK);
}

async fn reset_and_expiry_start_the_memory_afresh(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    let llm = openai_llm(openai_answer("Noted.", 10, 2)).await;
    give_bot_llm(&t, "openai", format!("{}/v1", llm.uri()), "gpt-4o-mini").await;
    let user_turns = |n: usize| {
        let llm = &llm;
        async move {
            let calls = llm.received_requests().await.unwrap();
            let body: Value = serde_json::from_slice(&calls[n].body).unwrap();
            body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] != "system")
                .map(|m| m["content"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    t.twilio_message("SM1", "+14155550100", "my name is Ana")
        .await;
    wait_bodies(&t, 1).await;
    t.twilio_message("SM2", "+14155550100", "what is my name?")
        .await;
    wait_bodies(&t, 2).await;
    assert_eq!(
        user_turns(1).await,
        vec!["my name is Ana", "Noted.", "what is my name?"]
    );

    // A reset forgets the history; the messages stay.
    let id = t.get("/api/v1/conversations").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{id}/reset"),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    t.twilio_message("SM3", "+14155550100", "who am I?").await;
    wait_bodies(&t, 3).await;
    assert_eq!(user_turns(2).await, vec!["who am I?"]);
    assert_eq!(t.messages().await.len(), 6);

    // A conversation idle past the bot's expiry is closed; the next message
    // starts a new one with no history.
    sqlx::query("UPDATE conversations SET last_message_at = last_message_at - 90000000")
        .execute(&mut *t.app.state.db.writer().await.unwrap())
        .await
        .unwrap();
    t.twilio_message("SM4", "+14155550100", "hello again").await;
    wait_bodies(&t, 4).await;
    assert_eq!(user_turns(3).await, vec!["hello again"]);
    let closed = t.get("/api/v1/conversations?state=closed").await;
    assert_eq!(closed["items"][0]["id"], id.as_str());
    let open = t.get("/api/v1/conversations?state=bot").await;
    assert_eq!(open["items"].as_array().unwrap().len(), 1);
    assert_ne!(open["items"][0]["id"], id.as_str());
}

async fn an_agent_takes_over_and_the_bot_returns_after_the_handoff_timeout(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    twilio_sends(&t).await;
    patch(
        &t,
        &format!("/api/v1/bots/{}", t.bot_id),
        json!({ "settings": { "handoff_timeout_minutes": 10 } }),
    )
    .await;
    t.twilio_message("SM1", "+14155550100", "hello").await;
    assert_eq!(wait_bodies(&t, 1).await, vec![FALLBACK]);
    let id = t.get("/api/v1/conversations").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // An agent writing takes the conversation: the bot goes quiet.
    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            Some(json!({ "text": "Hi, Marta here." })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(wait_bodies(&t, 2).await[1], "Hi, Marta here.");
    assert_eq!(
        t.get(&format!("/api/v1/conversations/{id}")).await["state"],
        "human"
    );
    t.twilio_message("SM2", "+14155550100", "thanks Marta")
        .await;
    wait_until(Duration::from_secs(20), || async {
        t.messages()
            .await
            .iter()
            .any(|m| m["body"] == "thanks Marta")
    })
    .await;
    t.settled().await;
    assert_eq!(bodies(&t).await.len(), 2);

    // Ten quiet minutes later (moved back in time here), the bot answers again.
    sqlx::query(
        "UPDATE conversations SET last_message_at = last_message_at - 700000, handed_off_at = handed_off_at - 700000",
    )
    .execute(&mut *t.app.state.db.writer().await.unwrap())
    .await
    .unwrap();
    t.twilio_message("SM3", "+14155550100", "hello?").await;
    assert_eq!(wait_bodies(&t, 3).await[2], FALLBACK);
    let transitions = t
        .get(&format!("/api/v1/conversations/{id}/transitions"))
        .await;
    let moves: Vec<(String, String)> = transitions
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["reason"].as_str().unwrap().to_string(),
                x["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(moves[0].0, "agent_message");
    assert!(moves[0].1.starts_with("api_key:"));
    assert_eq!(
        moves[1],
        ("inactivity_timeout".to_string(), "system".to_string())
    );
}

async fn yaml_aliases_cannot_blow_up_a_rules_import(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    let import = |body: String| {
        t.app
            .request(
                Method::POST,
                &format!("/api/v1/bots/{}/rules/import", t.bot_id),
                &t.key,
            )
            .header("content-type", "application/yaml")
            .body(body)
            .send()
    };
    // One large scalar, repeated by alias: 480 KB of text that stands for
    // 1.2 GB of rules. Few enough entries (15,000 separators) that the
    // separator limit does not refuse it first: the aliases must.
    let big = "x".repeat(400_000);
    let mut yaml = format!("rules:\n- pattern: a\n  reply: &big {big}\n");
    for _ in 0..3_000 {
        yaml.push_str("- {pattern: a, reply: *big}\n");
    }
    assert!(yaml.len() < 1024 * 1024);
    let separators = yaml.bytes().filter(|b| b",:-[{".contains(b)).count();
    assert!(
        separators < integro_store::rules::MAX_YAML_SEPARATORS,
        "{separators}"
    );
    let started = std::time::Instant::now();
    let problem = assert_problem(
        import(yaml).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "yaml_too_repetitive",
    )
    .await;
    // Refused before anything is expanded: expanded, the 1.2 GB would take
    // minutes (or all the memory), so a generous bound for a loaded 2-core
    // runner still tells the two apart.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("aliases"),
        "{problem}"
    );

    // Aliases nested to a billion laughs: a few hundred bytes.
    let mut yaml = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .into_iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let items = vec![format!("*{prev}"); 9].join(", ");
        yaml.push_str(&format!("{name}: &{name} [{items}]\n"));
    }
    yaml.push_str("rules: [{pattern: a, keywords: *i}]\n");
    assert_problem(
        import(yaml).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "yaml_too_repetitive",
    )
    .await;
    assert!(
        t.get(&format!("/api/v1/bots/{}/rules", t.bot_id)).await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // An ordinary import, even one using an alias sparingly, still works.
    let res = import(
        "rules:\n- pattern: &p hours\n  reply: 9 to 5\n- match: exact\n  pattern: *p\n  reply: Nine to five\n"
            .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["imported"], 2);
}
