//! WhatsApp through Twilio, end to end: signed webhook in, one Messages API
//! call out, delivery callbacks, duplicates, faults, crashes.

use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::{FALLBACK, Loop, field, form, wait_until};
use crate::db_tests;
use crate::helpers::DbKind;

const SEND_PATH: &str = "/2010-04-01/Accounts/AC123/Messages.json";

fn created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({ "sid": sid, "status": "queued" }))
}

async fn a_signed_message_gets_exactly_one_reply(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMout1"))
        .mount(&t.provider)
        .await;

    let res = t
        .twilio_message("SM1", "+14155550100", "Hello, is the shop open?")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/xml");

    let sent = t.wait_for_sends(1).await;
    let req = &sent[0];
    let form = form(req);
    assert_eq!(field(&form, "To"), Some("whatsapp:+14155550100"));
    assert_eq!(field(&form, "From"), Some("whatsapp:+14155238886"));
    assert_eq!(field(&form, "Body"), Some(FALLBACK));
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC123:twilio-auth-token-123")
    );
    assert_eq!(req.headers["authorization"], expected_auth.as_str());
    assert_eq!(
        field(&form, "StatusCallback").map(String::from),
        Some(format!(
            "https://hooks.integro.test/webhooks/twilio/{}",
            t.account_id
        ))
    );

    let out = t.wait_outbound_status("sent").await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["provider_message_id"], "SMout1");
    assert_eq!(out[0]["body"], FALLBACK);
    // The reply's and the send's jobs finished with what they wrote, not
    // left running until their leases expire.
    let jobs = t.get("/api/v1/jobs").await;
    let states: Vec<(&str, &str)> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["kind"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("reply", "done"), ("send", "done")], "{jobs}");
    let conversations = t.get("/api/v1/conversations").await;
    let contact = &conversations["items"][0]["contact"];
    assert_eq!(contact["phone_e164"], "+14155550100");
    assert_eq!(contact["display_name"], "Ann");

    // Delivery callbacks move it forward, never back.
    for status in ["delivered", "read", "delivered"] {
        let res = t
            .post_twilio(&[
                ("MessageSid", "SMout1"),
                ("MessageStatus", status),
                ("AccountSid", "AC123"),
            ])
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(t.outbound().await[0]["status"], "read");
    t.settled().await;
    assert_eq!(t.provider_requests().await.len(), 1, "exactly one send");
}

async fn wrong_signatures_are_refused_and_only_logged(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    let path = t.twilio_path();
    let params = [
        ("MessageSid", "SM9"),
        ("From", "whatsapp:+14155550100"),
        ("Body", "hi"),
    ];
    let forged = integro_channels::twilio::sign(
        "not-the-token",
        &format!("https://hooks.integro.test{path}"),
        &params,
    );
    for signature in [Some(forged.as_str()), Some("bm9wZQ=="), None] {
        let mut req = t.app.client.post(t.app.url(&path)).form(&params);
        if let Some(s) = signature {
            req = req.header("x-twilio-signature", s);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.json::<Value>().await.unwrap()["code"],
            "invalid_signature"
        );
    }
    assert!(t.messages().await.is_empty(), "nothing stored");
    let logs = t.get("/api/v1/webhook-logs?outcome=rejected").await;
    let logs = logs["items"].as_array().unwrap();
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[0]["status"], 401);
    assert_eq!(logs[0]["account_id"], t.account_id.as_str());
    assert!(logs[0]["body"].as_str().unwrap().contains("MessageSid=SM9"));
    assert!(
        logs[0]["error"]
            .as_str()
            .unwrap()
            .contains("X-Twilio-Signature")
    );
    t.settled().await;
    assert!(t.provider_requests().await.is_empty());
}

async fn bad_requests_get_clear_answers(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    let unknown = t
        .app
        .client
        .post(
            t.app
                .url("/webhooks/twilio/8d3e0f5e-4b8e-4c61-9f0e-1a2b3c4d5e6f"),
        )
        .form(&[("a", "b")]);
    assert_eq!(
        unknown.send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let not_uuid = t
        .app
        .client
        .post(t.app.url("/webhooks/twilio/nope"))
        .form(&[("a", "b")]);
    assert_eq!(
        not_uuid.send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // Signed, but not a message: no MessageSid.
    let res = t
        .post_twilio(&[("From", "whatsapp:+1"), ("Body", "x")])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "malformed_webhook"
    );

    let res = t
        .app
        .client
        .post(t.app.url(&t.twilio_path()))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = "x".repeat(2 * 1024 * 1024);
    let res = t
        .app
        .client
        .post(t.app.url(&t.twilio_path()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("Body={huge}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(t.messages().await.is_empty());
    let logs = t.get("/api/v1/webhook-logs").await;
    let statuses: Vec<i64> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![413, 415, 400],
        "refusals of a known account are logged, newest first"
    );
}

async fn a_webhook_delivered_three_times_at_once_is_answered_once(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMout"))
        .mount(&t.provider)
        .await;
    let (a, b, c) = tokio::join!(
        t.twilio_message("SMdup", "+14155550100", "hi"),
        t.twilio_message("SMdup", "+14155550100", "hi"),
        t.twilio_message("SMdup", "+14155550100", "hi"),
    );
    for res in [a, b, c] {
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "every delivery is acknowledged"
        );
    }
    t.wait_for_sends(1).await;
    let again = t.twilio_message("SMdup", "+14155550100", "hi").await;
    assert_eq!(again.status(), StatusCode::OK);
    t.settled().await;
    assert_eq!(t.provider_requests().await.len(), 1, "one reply");
    let inbound: Vec<Value> = t
        .messages()
        .await
        .into_iter()
        .filter(|m| m["direction"] == "inbound")
        .collect();
    assert_eq!(inbound.len(), 1, "one stored message");
    let dup_logs = t.get("/api/v1/webhook-logs?outcome=duplicate").await;
    assert!(!dup_logs["items"].as_array().unwrap().is_empty());
}

async fn rate_limited_sends_are_retried_after_the_wait(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(
                    json!({ "code": 20429, "message": "Too Many Requests", "status": 429 }),
                ),
        )
        .up_to_n_times(1)
        .mount(&t.provider)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMok"))
        .mount(&t.provider)
        .await;
    t.twilio_message("SM429", "+14155550100", "hi").await;
    let out = t.wait_outbound_status("sent").await;
    assert_eq!(out[0]["provider_message_id"], "SMok");
    let sends = t.provider_requests().await;
    assert_eq!(sends.len(), 2, "one refused, one delivered");
    t.settled().await;
    assert_eq!(t.provider_requests().await.len(), 2, "delivered once");
}

async fn permanent_errors_fail_the_message_without_retrying(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400
        })))
        .mount(&t.provider)
        .await;
    t.twilio_message("SMbad", "+14155550100", "hi").await;
    let out = t.wait_outbound_status("failed").await;
    assert_eq!(out[0]["error_code"], "21211");
    assert!(
        out[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("not a valid phone number")
    );
    t.settled().await;
    assert_eq!(t.provider_requests().await.len(), 1, "not retried");

    // The dead job is visible and can be retried once the cause is fixed.
    let dead = t.get("/api/v1/jobs?state=dead").await;
    let dead = dead["items"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], "send");
    t.provider.reset().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMfixed"))
        .mount(&t.provider)
        .await;
    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{}/retry", dead[0]["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let out = t.wait_outbound_status("sent").await;
    assert_eq!(out[0]["provider_message_id"], "SMfixed");
    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{}/retry", dead[0]["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CONFLICT,
        "a finished job is not retried"
    );
}

async fn a_worker_that_dies_mid_job_does_not_lose_the_reply(kind: DbKind) {
    // No workers at first: the message waits in the queue.
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMlate"))
        .mount(&t.provider)
        .await;
    t.twilio_message("SMcrash", "+14155550100", "hi").await;
    // A worker takes the job and dies without finishing it.
    let taken = integro_store::jobs::claim(&t.app.state.db, "worker-that-died", 10, 300)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    // A live worker takes it over once the lease expires.
    let worker = integro_server::startup::build_worker(&t.app.state);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    t.wait_for_sends(1).await;
    t.wait_outbound_status("sent").await;
    let _ = stop.send(true);
    running.await.unwrap();
    assert_eq!(t.provider_requests().await.len(), 1);
    let job = integro_store::jobs::get(&t.app.state.db, taken[0].tenant_id.unwrap(), taken[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.attempts, 2, "the dead worker's attempt counts");
}

async fn outside_the_24h_window_only_a_template_goes(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMtpl"))
        .mount(&t.provider)
        .await;
    t.twilio_message("SMold", "+14155550100", "hi").await;
    let two_days_ago = integro_store::db::now_ms() - 48 * 3600 * 1000;
    // The message arrived two days ago (the worker files it into its conversation).
    sqlx::query("UPDATE messages SET created_at = $1 WHERE direction = 'inbound'")
        .bind(two_days_ago)
        .execute(&mut *t.app.state.db.writer().await.unwrap())
        .await
        .unwrap();
    let worker = integro_server::startup::build_worker(&t.app.state);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    // No template configured: the reply fails with a clear reason.
    let out = t.wait_outbound_status("failed").await;
    assert_eq!(out[0]["error_code"], "outside_24h_window");
    assert!(t.provider_requests().await.is_empty());

    // With a template, the template goes instead.
    let res = t
        .request(
            Method::PATCH,
            &format!("/api/v1/accounts/{}", t.account_id),
            Some(json!({ "template": { "name": "HX0123456789abcdef", "parameters": ["Ann"] } })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let conversation = t.get("/api/v1/conversations").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(json!({ "text": "Are you still there?" })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let sent = t.wait_for_sends(1).await;
    let form = form(&sent[0]);
    assert_eq!(field(&form, "ContentSid"), Some("HX0123456789abcdef"));
    assert_eq!(field(&form, "ContentVariables"), Some(r#"{"1":"Ann"}"#));
    assert_eq!(
        field(&form, "Body"),
        None,
        "no free-form text outside the window"
    );
    let _ = stop.send(true);
    running.await.unwrap();
}

async fn agents_send_messages_through_the_same_egress(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMx"))
        .mount(&t.provider)
        .await;
    t.twilio_message("SMa", "+14155550100", "hi").await;
    t.wait_for_sends(1).await;
    let conversation = t.get("/api/v1/conversations").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(
                json!({ "text": "Hi Ann, Bob here.", "media_url": "https://cdn.example/menu.jpg" }),
            ),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let msg: Value = res.json().await.unwrap();
    assert_eq!(msg["sender"], "agent");
    assert_eq!(msg["status"], "queued");
    let sent = t.wait_for_sends(2).await;
    let form = form(&sent[1]);
    assert_eq!(field(&form, "Body"), Some("Hi Ann, Bob here."));
    assert_eq!(
        field(&form, "MediaUrl"),
        Some("https://cdn.example/menu.jpg")
    );

    let res = t
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(json!({})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn messages_of_one_conversation_are_answered_in_order(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMo").set_delay(Duration::from_millis(100)))
        .mount(&t.provider)
        .await;
    for i in 0..5 {
        t.twilio_message(
            &format!("SMord{i}"),
            "+14155550100",
            &format!("message {i}"),
        )
        .await;
    }
    t.wait_for_sends(5).await;
    let messages = t.messages().await;
    let replies: Vec<&Value> = messages
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .collect();
    assert_eq!(replies.len(), 5, "none dropped");
    let inbound: Vec<String> = messages
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    let answered: Vec<String> = replies
        .iter()
        .map(|m| m["reply_to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        answered, inbound,
        "answered one at a time, in arrival order"
    );
}

async fn conversations_of_other_tenants_are_invisible(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMt"))
        .mount(&t.provider)
        .await;
    t.twilio_message("SMt", "+14155550100", "hi").await;
    t.wait_outbound_status("sent").await;
    let conversation = t.get("/api/v1/conversations").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = t.app.create_tenant("Other").await;
    let (_, other_key) = t.app.create_key(&other, "owner").await;
    let res = t
        .app
        .get(&format!("/api/v1/conversations/{conversation}"), &other_key)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = t
        .app
        .get(&format!("/api/v1/accounts/{}", t.account_id), &other_key)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let list: Value = t
        .app
        .get("/api/v1/conversations", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
    let logs: Value = t
        .app
        .get("/api/v1/webhook-logs", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(logs["items"].as_array().unwrap().is_empty());
}

async fn credentials_are_sealed_and_masked(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    let account = t.get(&format!("/api/v1/accounts/{}", t.account_id)).await;
    assert_eq!(account["credentials"]["auth_token"], "********");
    assert_eq!(account["credentials"]["account_sid"], "AC123");
    assert_eq!(
        account["webhook_urls"]["messages"],
        format!(
            "https://hooks.integro.test/webhooks/twilio/{}",
            t.account_id
        )
        .as_str()
    );
    let stored: Vec<String> = sqlx::query_scalar("SELECT settings_json FROM channel_accounts")
        .fetch_all(t.app.state.db.pool())
        .await
        .unwrap();
    assert!(!stored.is_empty(), "the account is stored");
    assert!(stored.iter().all(|s| !s.contains("twilio-auth-token-123")));
    let audit = t.get("/api/v1/audit-log?action=account.create").await;
    assert!(
        !audit.to_string().contains("twilio-auth-token-123"),
        "not in the audit log either"
    );

    // Missing and unknown credentials are named.
    let res = t
        .app
        .post(
            "/api/v1/accounts",
            &t.key,
            json!({ "bot_id": t.bot_id, "kind": "twilio_whatsapp", "name": "x", "credentials": { "account_sid": "AC1" } }),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "credentials.auth_token");
    wait_until(Duration::from_millis(10), || async { true }).await;
}

db_tests!(
    a_signed_message_gets_exactly_one_reply,
    wrong_signatures_are_refused_and_only_logged,
    bad_requests_get_clear_answers,
    a_webhook_delivered_three_times_at_once_is_answered_once,
    rate_limited_sends_are_retried_after_the_wait,
    permanent_errors_fail_the_message_without_retrying,
    a_worker_that_dies_mid_job_does_not_lose_the_reply,
    outside_the_24h_window_only_a_template_goes,
    agents_send_messages_through_the_same_egress,
    messages_of_one_conversation_are_answered_in_order,
    conversations_of_other_tenants_are_invisible,
    credentials_are_sealed_and_masked,
    a_send_twilio_took_before_its_answer_was_lost_is_not_sent_again,
    a_public_url_with_a_prefix_and_a_trailing_slash_works,
    without_a_public_url_accounts_warn,
    a_message_holding_nul_is_stored_and_answered,
);

/// A correctly signed message whose text holds U+0000 (which PostgreSQL
/// cannot store) is stored with U+FFFD in its place and answered, once; a
/// refused one with a raw NUL byte still reaches the webhook log.
async fn a_message_holding_nul_is_stored_and_answered(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMout1"))
        .mount(&t.provider)
        .await;
    let res = t.twilio_message("SMnul", "+14155550100", "hel\0lo").await;
    assert_eq!(res.status(), StatusCode::OK);
    t.wait_for_sends(1).await;
    let messages = t.messages().await;
    let inbound: Vec<&Value> = messages
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .collect();
    assert_eq!(inbound.len(), 1, "{messages:?}");
    assert_eq!(inbound[0]["body"], "hel\u{FFFD}lo");
    let logs = t.get("/api/v1/webhook-logs?outcome=accepted").await;
    let notes: Vec<&str> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["error"].as_str())
        .collect();
    assert!(notes.iter().any(|n| n.contains("U+0000")), "{logs}");

    let res = t
        .app
        .client
        .post(t.app.url(&t.twilio_path()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "bm9wZQ==")
        .body(b"MessageSid=SMraw&Body=a\0b".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let logs = t.get("/api/v1/webhook-logs?outcome=rejected").await;
    let bodies: Vec<&str> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["MessageSid=SMraw&Body=a\u{FFFD}b"], "{logs}");
}

/// `INTEGRO_PUBLIC_URL=https://host/prefix/` (a proxy that strips the
/// prefix): the webhook URLs, Twilio's signatures and the status callbacks
/// all name `https://host/prefix/webhooks/…`, without `//`.
async fn a_public_url_with_a_prefix_and_a_trailing_slash_works(kind: DbKind) {
    let Some((app, provider)) = crate::channels::start_with(kind, |c| {
        c.workers = 2;
        c.public_url = Some("https://hooks.integro.test/integro/".into());
    })
    .await
    else {
        return;
    };
    let creds = json!({ "account_sid": "AC123", "auth_token": crate::channels::AUTH_TOKEN, "phone_number": "+14155238886" });
    let t = Loop::with_app(app, provider, "twilio_whatsapp", creds).await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMout1"))
        .mount(&t.provider)
        .await;
    let public = format!(
        "https://hooks.integro.test/integro/webhooks/twilio/{}",
        t.account_id
    );
    let account = t.get(&format!("/api/v1/accounts/{}", t.account_id)).await;
    assert_eq!(account["webhook_urls"]["status_callback"], public.as_str());
    assert_eq!(account["webhook_urls"]["messages"], public.as_str());
    assert!(account.get("warnings").is_none(), "{account}");

    let params = [
        ("MessageSid", "SM1"),
        ("AccountSid", "AC123"),
        ("From", "whatsapp:+14155550100"),
        ("To", "whatsapp:+14155238886"),
        ("Body", "hello"),
    ];
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let signature = integro_channels::twilio::sign(crate::channels::AUTH_TOKEN, &public, &owned);
    let res = t
        .app
        .client
        .post(t.app.url(&t.twilio_path()))
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let sent = t.wait_for_sends(1).await;
    assert_eq!(
        field(&form(&sent[0]), "StatusCallback"),
        Some(public.as_str())
    );
}

async fn without_a_public_url_accounts_warn(kind: DbKind) {
    let Some(app) = crate::helpers::TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Shop").await;
    let (_, key) = app.create_key(&tenant, "admin").await;
    let bot: Value = app
        .post(
            "/api/v1/bots",
            &key,
            json!({ "name": "Helper", "fallback_reply": FALLBACK }),
        )
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .post(
            "/api/v1/accounts",
            &key,
            json!({ "bot_id": bot["id"], "kind": "twilio_whatsapp", "name": "Main",
                    "credentials": { "account_sid": "AC123", "auth_token": crate::channels::AUTH_TOKEN, "phone_number": "+14155238886" } }),
        )
        .await;
    let status = res.status();
    let account: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let warning = account["warnings"][0].as_str().expect("a warning");
    assert!(
        warning.contains("INTEGRO_PUBLIC_URL") && warning.contains("127.0.0.1"),
        "{warning}"
    );
}

/// Twilio accepts the message but its answer never arrives in time (as when
/// the process dies after the call): the retry finds the message in Twilio's
/// list and adopts it instead of sending a second copy.
async fn a_send_twilio_took_before_its_answer_was_lost_is_not_sent_again(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    // Longer than the client's 2 s timeout: the first attempt sees no answer.
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMlate").set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .mount(&t.provider)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(created("SMsecond"))
        .mount(&t.provider)
        .await;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap();
    Mock::given(method("GET"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [
                // Another message to the same person, older: not this one.
                { "sid": "SMold", "body": FALLBACK, "to": "whatsapp:+14155550100", "from": "whatsapp:+14155238886",
                  "date_created": "Thu, 30 Jul 2015 20:12:31 +0000", "status": "delivered" },
                { "sid": "SMlate", "body": FALLBACK, "to": "whatsapp:+14155550100", "from": "whatsapp:+14155238886",
                  "date_created": now, "status": "queued" }
            ],
            "page": 0, "page_size": 50
        })))
        .mount(&t.provider)
        .await;

    t.twilio_message("SM1", "+14155550100", "hello").await;
    let out = t.wait_outbound_status("sent").await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["provider_message_id"], "SMlate");
    let requests = t.provider_requests().await;
    let posts = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1, "the message was not sent a second time");
    let list = requests
        .iter()
        .find(|r| r.method.as_str() == "GET")
        .expect("the retry asked Twilio what it has");
    let query: Vec<(String, String)> = list.url.query_pairs().into_owned().collect();
    assert!(query.contains(&("To".into(), "whatsapp:+14155550100".into())));
    assert!(query.contains(&("From".into(), "whatsapp:+14155238886".into())));
    assert!(
        list.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
}
