//! WhatsApp Cloud API, Instagram, X and the web channel, end to end.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::{APP_SECRET, FALLBACK, Loop, VERIFY_TOKEN, wait_until};
use crate::db_tests;
use crate::helpers::DbKind;

fn whatsapp_body(wamid: &str, text: &str) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
            "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": "16505551234" }],
            "messages": [{ "from": "16505551234", "id": wamid, "timestamp": "1749416383", "type": "text", "text": { "body": text } }]
        }}]}]
    })
    .to_string()
}

async fn post_signed(t: &Loop, path: &str, body: String, signature: String) -> reqwest::Response {
    t.app
        .client
        .post(t.app.url(path))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn whatsapp_cloud_handshake_and_reply(kind: DbKind) {
    let Some(t) = Loop::whatsapp(kind, 4).await else {
        return;
    };
    let hook = format!("/webhooks/whatsapp/{}", t.account_id);
    let ok = t
        .app
        .client
        .get(t.app.url(&format!(
            "{hook}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = t
        .app
        .client
        .get(t.app.url(&format!(
            "{hook}?hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    Mock::given(method("POST"))
        .and(path("/v23.0/106540352242922/messages"))
        .and(header("authorization", "Bearer EAAG-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": "16505551234", "wa_id": "16505551234" }],
            "messages": [{ "id": "wamid.OUT1" }]
        })))
        .mount(&t.provider)
        .await;
    let body = whatsapp_body("wamid.IN1", "Hi there");
    let bad = post_signed(
        &t,
        &hook,
        body.clone(),
        integro_channels::meta::sign("wrong-secret", body.as_bytes()),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let signature = integro_channels::meta::sign(APP_SECRET, body.as_bytes());
    let res = post_signed(&t, &hook, body.clone(), signature.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sent = t.wait_for_sends(1).await;
    let request: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(request["messaging_product"], "whatsapp");
    assert_eq!(request["to"], "16505551234");
    assert_eq!(request["type"], "text");
    assert_eq!(request["text"]["body"], FALLBACK);
    let out = t.wait_outbound_status("sent").await;
    assert_eq!(out[0]["provider_message_id"], "wamid.OUT1");

    // A retried delivery is acknowledged and ignored.
    assert_eq!(
        post_signed(&t, &hook, body, signature).await.status(),
        StatusCode::OK
    );
    // Status webhooks move the message along.
    let status = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "phone_number_id": "106540352242922" },
            "statuses": [{ "id": "wamid.OUT1", "status": "delivered", "timestamp": "1", "recipient_id": "16505551234" }]
        }}]}]
    })
    .to_string();
    let sig = integro_channels::meta::sign(APP_SECRET, status.as_bytes());
    assert_eq!(
        post_signed(&t, &hook, status, sig).await.status(),
        StatusCode::OK
    );
    t.wait_outbound_status("delivered").await;
    t.settled().await;
    assert_eq!(t.provider_requests().await.len(), 1);

    let malformed = "{\"object\": \"whatsapp_business_account\"";
    let sig = integro_channels::meta::sign(APP_SECRET, malformed.as_bytes());
    let res = post_signed(&t, &hook, malformed.into(), sig).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

async fn whatsapp_permanent_errors_keep_the_graph_code(kind: DbKind) {
    let Some(t) = Loop::whatsapp(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v23.0/106540352242922/messages"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": { "message": "Re-engagement message", "type": "OAuthException", "code": 131047,
                       "error_data": { "messaging_product": "whatsapp", "details": "More than 24 hours have passed" } }
        })))
        .mount(&t.provider)
        .await;
    let body = whatsapp_body("wamid.IN2", "hello");
    let sig = integro_channels::meta::sign(APP_SECRET, body.as_bytes());
    post_signed(
        &t,
        &format!("/webhooks/whatsapp/{}", t.account_id),
        body,
        sig,
    )
    .await;
    let out = t.wait_outbound_status("failed").await;
    assert_eq!(out[0]["error_code"], "131047");
    t.settled().await;
    assert_eq!(t.provider_requests().await.len(), 1, "not retried");
}

async fn instagram_message_gets_a_reply(kind: DbKind) {
    let creds = json!({ "ig_user_id": "17841400000000000", "access_token": "IGQV-token", "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN });
    let Some(t) = Loop::new(kind, "instagram", creds, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/v23.0/17841400000000000/messages"))
        .and(header("authorization", "Bearer IGQV-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "recipient_id": "1254477777772919", "message_id": "aWdfZAG1OUT" }),
        ))
        .mount(&t.provider)
        .await;
    let body = json!({
        "object": "instagram",
        "entry": [{ "id": "17841400000000000", "time": 1569262486134i64, "messaging": [
            { "sender": { "id": "1254477777772919" }, "recipient": { "id": "17841400000000000" }, "timestamp": 1569262485349i64,
              "message": { "mid": "aWdfZAG1IN", "text": "Do you ship abroad?" } },
            { "sender": { "id": "17841400000000000" }, "recipient": { "id": "1254477777772919" }, "timestamp": 1569262485350i64,
              "message": { "mid": "aWdfZAG1ECHO", "text": "echo", "is_echo": true } }
        ]}]
    })
    .to_string();
    let sig = integro_channels::meta::sign(APP_SECRET, body.as_bytes());
    let res = post_signed(
        &t,
        &format!("/webhooks/instagram/{}", t.account_id),
        body,
        sig,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let sent = t.wait_for_sends(1).await;
    let request: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(request["recipient"]["id"], "1254477777772919");
    assert_eq!(request["message"]["text"], FALLBACK);
    t.wait_outbound_status("sent").await;
    let inbound: Vec<Value> = t
        .messages()
        .await
        .into_iter()
        .filter(|m| m["direction"] == "inbound")
        .collect();
    assert_eq!(
        inbound.len(),
        1,
        "the echo is not a message from the contact"
    );
}

async fn x_crc_and_direct_message(kind: DbKind) {
    let creds = json!({ "user_id": "4337869213", "consumer_key": "ck", "consumer_secret": "cs-secret",
                        "access_token": "at", "access_token_secret": "ats" });
    let Some(t) = Loop::new(kind, "x", creds, 4).await else {
        return;
    };
    let hook = format!("/webhooks/x/{}", t.account_id);
    let crc: Value = t
        .app
        .client
        .get(t.app.url(&format!("{hook}?crc_token=abc123")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        crc["response_token"],
        integro_channels::x::crc_response("cs-secret", "abc123")
            .unwrap()
            .as_str()
    );

    Mock::given(method("POST"))
        .and(path("/2/dm_conversations/with/3001969357/messages"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "data": { "dm_conversation_id": "1-2", "dm_event_id": "1582838499983564806" } })))
        .mount(&t.provider)
        .await;
    let body = json!({
        "for_user_id": "4337869213",
        "direct_message_events": [{ "type": "message_create", "id": "954491830116155396", "created_timestamp": "1516403560557",
            "message_create": { "target": { "recipient_id": "4337869213" }, "sender_id": "3001969357",
                                "message_data": { "text": "Hello World!" } } }],
        "users": { "3001969357": { "id": "3001969357", "name": "Jordan", "screen_name": "jordan" } }
    })
    .to_string();
    let bad = t
        .app
        .client
        .post(t.app.url(&hook))
        .header(
            "x-twitter-webhooks-signature",
            integro_channels::x::sign("other", body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let res = t
        .app
        .client
        .post(t.app.url(&hook))
        .header("content-type", "application/json")
        .header(
            "x-twitter-webhooks-signature",
            integro_channels::x::sign("cs-secret", body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let sent = t.wait_for_sends(1).await;
    let auth = sent[0].headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("OAuth ")
            && auth.contains("oauth_consumer_key=\"ck\"")
            && auth.contains("oauth_token=\"at\"")
    );
    let request: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(request["text"], FALLBACK);
    let out = t.wait_outbound_status("sent").await;
    assert_eq!(out[0]["provider_message_id"], "1582838499983564806");
}

const X_CREDS: &str = r#"{ "user_id": "4337869213", "consumer_key": "ck", "consumer_secret": "cs-secret",
    "access_token": "at", "access_token_secret": "ats" }"#;

async fn post_x(t: &Loop, body: &str, signature: &str) -> reqwest::Response {
    t.app
        .client
        .post(t.app.url(&format!("/webhooks/x/{}", t.account_id)))
        .header("content-type", "application/json")
        .header("x-twitter-webhooks-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn x_crc(t: &Loop, account_id: &str, token: &str) -> reqwest::Response {
    t.app
        .client
        .get(t.app.url(&format!("/webhooks/x/{account_id}")))
        .query(&[("crc_token", token)])
        .send()
        .await
        .unwrap()
}

/// The CRC answer is the webhook signature of the token: a body passed as
/// the token must not come back signed (it would be stored and answered as
/// a DM from whoever the forger names). Only tokens shaped like X's are
/// answered, and only so often per account.
async fn x_crc_is_not_a_signing_oracle(kind: DbKind) {
    let creds: Value = serde_json::from_str(X_CREDS).unwrap();
    let Some(t) = Loop::new(kind, "x", creds.clone(), 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(
                json!({ "data": { "dm_conversation_id": "1-2", "dm_event_id": "1" } }),
            ),
        )
        .mount(&t.provider)
        .await;
    let forged = json!({
        "for_user_id": "4337869213",
        "direct_message_events": [{ "type": "message_create", "id": "954491830116155999", "created_timestamp": "1516403560557",
            "message_create": { "target": { "recipient_id": "4337869213" }, "sender_id": "666",
                                "message_data": { "text": "forged" } } }]
    })
    .to_string();
    let crc = x_crc(&t, &t.account_id, &forged).await;
    let crc_status = crc.status();
    let content_type = crc.headers()["content-type"].to_str().unwrap().to_string();
    let crc: Value = crc.json().await.unwrap();
    let signature = crc["response_token"].as_str().unwrap_or_default();
    let res = post_x(&t, &forged, signature).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a body signed through the CRC endpoint is refused"
    );
    assert_eq!(crc_status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(crc["code"], "malformed_webhook");
    assert!(crc.get("response_token").is_none());
    for token in ["", "a b", "tok.en", &"A".repeat(129)] {
        let res = x_crc(&t, &t.account_id, token).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{token:?}");
    }

    // X's tokens are base64: `+`, `/` and `=` (percent-encoded) are answered.
    let token = "YjU0ZjE1ZmQ+NTk1Ny00ZmM5/WE0NzctZGYzYWVmMDcyNzM4==";
    let res = x_crc(&t, &t.account_id, token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap()["response_token"],
        integro_channels::x::crc_response("cs-secret", token)
            .unwrap()
            .as_str()
    );

    // Refusals do not count; answers do, up to the limit, then 429.
    let limit = integro_server::webhooks::x::CRC_PER_MINUTE as usize;
    let mut answered = 1;
    let limited = loop {
        let res = x_crc(&t, &t.account_id, "abc123").await;
        if res.status() != StatusCode::OK {
            break res;
        }
        answered += 1;
        assert!(answered <= limit + 3, "the CRC endpoint is not limited");
    };
    assert!(answered >= limit, "{answered} answered before the limit");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["code"],
        "rate_limited"
    );
    // Per account: another account of the tenant is still answered.
    let other = t
        .app
        .post(
            "/api/v1/accounts",
            &t.key,
            json!({ "bot_id": t.bot_id, "kind": "x", "name": "Second", "credentials": creds }),
        )
        .await;
    assert_eq!(other.status(), StatusCode::CREATED);
    let other = other.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(x_crc(&t, &other, "abc123").await.status(), StatusCode::OK);

    // Nothing was stored or sent; the refusals are in the webhook log.
    assert!(t.messages().await.is_empty(), "nothing stored");
    let logs = t.get("/api/v1/webhook-logs?outcome=rejected").await;
    let refused: Vec<(String, i64)> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["method"].as_str().unwrap().to_string(),
                l["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(refused.contains(&("GET".into(), 400)), "{refused:?}");
    assert!(refused.contains(&("GET".into(), 429)), "{refused:?}");
    assert!(refused.contains(&("POST".into(), 401)), "{refused:?}");
    t.settled().await;
    assert!(t.provider_requests().await.is_empty(), "nothing answered");
}

fn x_mention(tweet_id: &str, author: &str, user_has_blocked: &str) -> String {
    json!({
        "for_user_id": "4337869213",
        "user_has_blocked": user_has_blocked,
        "tweet_create_events": [{ "id_str": tweet_id, "text": "@integro help", "in_reply_to_status_id_str": null,
            "user": { "id_str": author, "name": "Someone", "screen_name": "someone" },
            "entities": { "user_mentions": [{ "id_str": "4337869213" }] } }]
    })
    .to_string()
}

/// X tells at the top of the payload, as the string `"true"`, that the
/// account has blocked the author of a mention: such a mention is
/// acknowledged, neither stored nor answered.
async fn x_mentions_from_blocked_authors_are_not_answered(kind: DbKind) {
    let creds: Value = serde_json::from_str(X_CREDS).unwrap();
    let Some(t) = Loop::new(kind, "x", creds, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/2/tweets"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(
                json!({ "data": { "id": "1800191123456789999", "text": FALLBACK } }),
            ),
        )
        .mount(&t.provider)
        .await;
    let blocked = x_mention("1800191123456789001", "7", "true");
    let sig = integro_channels::x::sign("cs-secret", blocked.as_bytes());
    assert_eq!(post_x(&t, &blocked, &sig).await.status(), StatusCode::OK);
    let allowed = x_mention("1800191123456789002", "8", "false");
    let sig = integro_channels::x::sign("cs-secret", allowed.as_bytes());
    assert_eq!(post_x(&t, &allowed, &sig).await.status(), StatusCode::OK);

    t.wait_outbound_status("sent").await;
    t.settled().await;
    let sent = t.provider_requests().await;
    assert_eq!(
        sent.len(),
        1,
        "only the author who is not blocked is answered"
    );
    // A mention is answered in public, as a reply to it.
    assert_eq!(sent[0].url.path(), "/2/tweets");
    let reply: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        reply,
        json!({ "text": FALLBACK, "reply": { "in_reply_to_tweet_id": "1800191123456789002" } })
    );
    let conversations = t.get("/api/v1/conversations").await;
    assert_eq!(conversations["items"].as_array().unwrap().len(), 1);
    let inbound: Vec<Value> = t
        .messages()
        .await
        .into_iter()
        .filter(|m| m["direction"] == "inbound")
        .map(|m| m["provider_message_id"].clone())
        .collect();
    assert_eq!(inbound, vec![json!("1800191123456789002")]);
}

async fn web_channel_polling_and_events(kind: DbKind) {
    let Some(t) = Loop::new(kind, "web", json!({}), 4).await else {
        return;
    };
    let base = format!("/api/v1/web/{}", t.account_id);

    // Subscribe first: the stream carries what comes next.
    let events = t
        .app
        .request(
            Method::GET,
            &format!("{base}/events?contact_id=visitor-42"),
            &t.key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = events.bytes_stream();

    let res = t
        .app
        .post(&format!("{base}/messages"), &t.key, json!({ "contact_id": "visitor-42", "name": "Vi", "text": "Hello?", "message_id": "m-1" }))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let again = t
        .app
        .post(
            &format!("{base}/messages"),
            &t.key,
            json!({ "contact_id": "visitor-42", "text": "Hello?", "message_id": "m-1" }),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);

    let seen = crate::channels::read_until(&mut stream, FALLBACK).await;
    assert!(seen.contains("event: message"));

    wait_until(Duration::from_secs(10), || async {
        let page: Value = t
            .app
            .get(&format!("{base}/messages?contact_id=visitor-42"), &t.key)
            .await
            .json()
            .await
            .unwrap();
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["direction"] == "outbound" && m["status"] == "sent")
    })
    .await;
    let page: Value = t
        .app
        .get(&format!("{base}/messages?contact_id=visitor-42"), &t.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        2,
        "one message, one reply"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let newer: Value = t
        .app
        .get(
            &format!("{base}/messages?contact_id=visitor-42&cursor={cursor}"),
            &t.key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        newer["items"].as_array().unwrap().is_empty(),
        "nothing new since the cursor"
    );
    assert_eq!(newer["next_cursor"], cursor, "polling keeps its place");

    let res = t
        .app
        .post(
            &format!("{base}/messages"),
            &t.key,
            json!({ "contact_id": "visitor-42", "text": "   " }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        t.provider_requests().await.is_empty(),
        "the web channel calls no provider"
    );
}

async fn shutdown_ends_event_streams(kind: DbKind) {
    let Some(mut t) = Loop::new(kind, "web", json!({}), 1).await else {
        return;
    };
    let path = format!("/api/v1/web/{}/events?contact_id=v", t.account_id);
    let events = t
        .app
        .request(Method::GET, &path, &t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let mut stream = events.bytes_stream();
    assert!(
        t.app.stop_within(Duration::from_secs(10)).await,
        "an open event stream does not hold up a graceful shutdown"
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream was closed");
}

/// A send whose answer never came (a timeout) may have gone out: the retry
/// waits for Meta's status report, which names the message by the id we
/// passed (`biz_opaque_callback_data`), and adopts it instead of sending twice.
async fn a_whatsapp_send_whose_answer_was_lost_is_not_sent_twice(kind: DbKind) {
    let Some((app, provider)) = crate::channels::start_with(kind, |c| {
        c.workers = 4;
        c.provider_timeout_secs = 1;
        c.send_status_grace_secs = 2;
    })
    .await
    else {
        return;
    };
    let creds = json!({ "phone_number_id": "106540352242922", "access_token": "EAAG-token", "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN });
    let t = Loop::with_app(app, provider, "whatsapp_cloud", creds).await;
    let sends = "/v23.0/106540352242922/messages";
    // Meta takes the message but answers too late: the outcome is unknown.
    Mock::given(method("POST"))
        .and(path(sends))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "messaging_product": "whatsapp", "messages": [{ "id": "wamid.LOST" }] }))
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .mount(&t.provider)
        .await;
    // Any second send would be a duplicate.
    Mock::given(method("POST"))
        .and(path(sends))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "messaging_product": "whatsapp", "messages": [{ "id": "wamid.TWICE" }] }),
        ))
        .mount(&t.provider)
        .await;
    let hook = format!("/webhooks/whatsapp/{}", t.account_id);
    let body = whatsapp_body("wamid.IN9", "hello");
    let sig = integro_channels::meta::sign(APP_SECRET, body.as_bytes());
    assert_eq!(
        post_signed(&t, &hook, body, sig).await.status(),
        StatusCode::OK
    );
    let sent = t.wait_for_sends(1).await;
    let request: Value = serde_json::from_slice(&sent[0].body).unwrap();
    let local_id = request["biz_opaque_callback_data"]
        .as_str()
        .unwrap()
        .to_string();
    let out = t.outbound().await;
    assert_eq!(
        out[0]["id"],
        local_id.as_str(),
        "the send names our message"
    );
    // The attempt times out; the retry waits for Meta's report.
    wait_until(Duration::from_secs(20), || async {
        let jobs = t.get("/api/v1/jobs?state=ready").await;
        jobs["items"].as_array().unwrap().iter().any(|j| {
            j["kind"] == "send" && j["last_error"] == integro_worker::send::AWAITING_STATUS
        })
    })
    .await;

    // Meta reports the message it took, naming it by our id.
    let status = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "phone_number_id": "106540352242922" },
            "statuses": [{ "id": "wamid.LOST", "status": "sent", "timestamp": "1", "recipient_id": "16505551234",
                           "biz_opaque_callback_data": local_id }]
        }}]}]
    })
    .to_string();
    let sig = integro_channels::meta::sign(APP_SECRET, status.as_bytes());
    assert_eq!(
        post_signed(&t, &hook, status, sig).await.status(),
        StatusCode::OK
    );
    let out = t.wait_outbound_status("sent").await;
    assert_eq!(out[0]["provider_message_id"], "wamid.LOST");
    // The send job, taken again after the timeout and the grace, finds the
    // message sent and finishes without sending it again.
    wait_until(Duration::from_secs(20), || async {
        let jobs = t.get("/api/v1/jobs?state=done").await;
        jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "send")
    })
    .await;
    assert_eq!(t.provider_requests().await.len(), 1, "sent once");
}

db_tests!(
    a_whatsapp_send_whose_answer_was_lost_is_not_sent_twice,
    shutdown_ends_event_streams,
    whatsapp_cloud_handshake_and_reply,
    whatsapp_permanent_errors_keep_the_graph_code,
    instagram_message_gets_a_reply,
    x_crc_and_direct_message,
    x_crc_is_not_a_signing_oracle,
    x_mentions_from_blocked_authors_are_not_answered,
    x_activity_api_messages_and_mentions_are_answered_where_they_came,
    web_channel_polling_and_events,
);

/// An X Activity API event, as X posts it to the webhook.
fn xaa_event(event_type: &str, payload: Value, includes: Value) -> String {
    json!({ "data": { "event_uuid": "-6850472171600526495", "filter": { "user_id": "4337869213" },
        "event_type": event_type, "tag": "integro", "payload": payload, "includes": includes } })
    .to_string()
}

/// The X Activity API's envelope: a DM is answered by DM, a mention by a
/// reply post; a repeated delivery is answered once, and a reply post
/// whose answer was lost is found among the account's own posts rather
/// than posted twice.
async fn x_activity_api_messages_and_mentions_are_answered_where_they_came(kind: DbKind) {
    let creds: Value = serde_json::from_str(X_CREDS).unwrap();
    let Some(t) = Loop::new(kind, "x", creds, 2).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/2/dm_conversations/with/2222/messages"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({ "data": { "dm_conversation_id": "1-2", "dm_event_id": "900" } }),
        ))
        .mount(&t.provider)
        .await;
    // The first reply post goes through but its answer never arrives in time.
    Mock::given(method("POST"))
        .and(path("/2/tweets"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "data": { "id": "901", "text": FALLBACK } }))
                .set_delay(Duration::from_secs(4)),
        )
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/2/users/4337869213/tweets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                { "id": "902", "text": "something else", "referenced_tweets": [{ "type": "replied_to", "id": "800" }] },
                { "id": "901", "text": FALLBACK, "referenced_tweets": [{ "type": "replied_to", "id": "800" }] }
            ],
            "meta": { "result_count": 2, "newest_id": "902", "oldest_id": "901" }
        })))
        .mount(&t.provider)
        .await;

    let dm = xaa_event(
        "dm.received",
        json!({ "direct_message_events": [{ "type": "message_create", "id": "700", "created_timestamp": "1784928224372",
            "message_create": { "target": { "recipient_id": "4337869213" }, "sender_id": "2222",
                                "message_data": { "text": "hello!" } } }],
            "users": { "2222": { "data": { "id": "2222", "username": "ann", "name": "Ann" } } } }),
        json!({}),
    );
    let sig = integro_channels::x::sign("cs-secret", dm.as_bytes());
    assert_eq!(post_x(&t, &dm, &sig).await.status(), StatusCode::OK);
    // Delivered again: stored and answered once.
    assert_eq!(post_x(&t, &dm, &sig).await.status(), StatusCode::OK);
    wait_until(Duration::from_secs(20), || async {
        t.provider_requests()
            .await
            .iter()
            .any(|r| r.url.path() == "/2/dm_conversations/with/2222/messages")
    })
    .await;

    let mention = xaa_event(
        "post.mention.create",
        json!({ "id": "800", "text": "@integro help", "author_id": "2222", "conversation_id": "800",
                "created_at": "2026-12-07T10:00:00.000Z" }),
        json!({ "users": [{ "id": "2222", "username": "ann", "name": "Ann" }] }),
    );
    let sig = integro_channels::x::sign("cs-secret", mention.as_bytes());
    assert_eq!(post_x(&t, &mention, &sig).await.status(), StatusCode::OK);
    // Its answer lost, the reply is found among the account's own posts.
    wait_until(Duration::from_secs(30), || async {
        t.provider_requests()
            .await
            .iter()
            .any(|r| r.url.path() == "/2/users/4337869213/tweets")
    })
    .await;
    t.settled().await;

    let requests = t.provider_requests().await;
    let count = |p: &str| requests.iter().filter(|r| r.url.path() == p).count();
    assert_eq!(
        count("/2/dm_conversations/with/2222/messages"),
        1,
        "the DM answered once, by DM"
    );
    assert_eq!(
        count("/2/tweets"),
        1,
        "the mention answered once, in public"
    );
    let lookup = requests
        .iter()
        .find(|r| r.url.path() == "/2/users/4337869213/tweets")
        .expect("the account's own posts were read before posting again");
    assert!(lookup.url.query().unwrap().contains("start_time="));
    assert!(
        lookup.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("OAuth ")
    );
    let post = requests
        .iter()
        .find(|r| r.url.path() == "/2/tweets")
        .unwrap();
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["reply"]["in_reply_to_tweet_id"], "800");
    let inbound: Vec<Value> = all_messages(&t)
        .await
        .into_iter()
        .filter(|m| m["direction"] == "inbound")
        .map(|m| json!([m["provider_message_id"], m["kind"]]))
        .collect();
    assert_eq!(
        inbound,
        vec![json!(["700", "text"]), json!(["800", "mention"])]
    );
    let out: Vec<Value> = all_messages(&t)
        .await
        .into_iter()
        .filter(|m| m["direction"] == "outbound")
        .map(|m| json!([m["provider_message_id"], m["status"]]))
        .collect();
    assert_eq!(out, vec![json!(["900", "sent"]), json!(["901", "sent"])]);
    // The DM and the mention are two conversations: nothing said in private
    // is in the history of the one answered in public.
    let mut contacts: Vec<String> = t.get("/api/v1/conversations").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["contact"]["channel_user_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    contacts.sort();
    assert_eq!(contacts, vec!["2222", "post:2222"]);
}

/// Every message of every conversation, oldest first.
async fn all_messages(t: &Loop) -> Vec<Value> {
    let mut all = Vec::new();
    for c in t.get("/api/v1/conversations").await["items"]
        .as_array()
        .unwrap()
    {
        let id = c["id"].as_str().unwrap();
        let page = t.get(&format!("/api/v1/conversations/{id}/messages")).await;
        all.extend(page["items"].as_array().unwrap().iter().cloned());
    }
    all.sort_by_key(|m| m["id"].as_str().unwrap().to_string());
    all
}
