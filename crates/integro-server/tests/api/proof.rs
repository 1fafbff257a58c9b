//! Integro's promise under stress, on both databases: a duplicate storm gets
//! exactly one reply per message, and a provider that fails for a while
//! (429, 500, hanging) gets every message exactly once after it recovers,
//! with its circuit opening and closing in `/metrics` and no job given up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::channels::{
    AUTH_TOKEN, FALLBACK, Loop, PUBLIC_URL, TwilioAccepts, field, form, wait_until,
};
use crate::db_tests;
use crate::helpers::DbKind;

const SEND_PATH: &str = "/2010-04-01/Accounts/AC123/Messages.json";

db_tests!(
    a_duplicate_storm_gets_one_reply_per_message,
    after_a_provider_outage_every_message_goes_out_exactly_once,
);

fn contact(i: usize) -> String {
    format!("+1415555{i:04}")
}

async fn a_duplicate_storm_gets_one_reply_per_message(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 4).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(TwilioAccepts::default())
        .mount(&t.provider)
        .await;
    const MESSAGES: usize = 30;
    // Every message three times at once, all messages at once.
    let storm = (0..MESSAGES).flat_map(|i| (0..3).map(move |_| i)).map(|i| {
        let t = &t;
        async move {
            t.twilio_message(&format!("SMstorm{i}"), &contact(i), &format!("hello {i}"))
                .await
                .status()
        }
    });
    let statuses = join_all(storm).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    t.wait_for_sends(MESSAGES).await;
    // And once more, later.
    for i in 0..MESSAGES {
        let res = t
            .twilio_message(&format!("SMstorm{i}"), &contact(i), &format!("hello {i}"))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sends = t.provider_requests().await;
    let mut per_contact: HashMap<String, usize> = HashMap::new();
    for r in &sends {
        let f = form(r);
        assert_eq!(field(&f, "Body"), Some(FALLBACK));
        *per_contact
            .entry(field(&f, "To").unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_contact.len(), MESSAGES, "every message answered");
    assert!(
        per_contact.values().all(|n| *n == 1),
        "exactly one reply each: {per_contact:?}"
    );
    let conversations = t.get("/api/v1/conversations?limit=100").await;
    assert_eq!(conversations["items"].as_array().unwrap().len(), MESSAGES);
    // Each conversation holds its one inbound message and one reply.
    for c in conversations["items"].as_array().unwrap() {
        let messages = t
            .get(&format!(
                "/api/v1/conversations/{}/messages",
                c["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(messages["items"].as_array().unwrap().len(), 2);
    }
}

/// Twilio failing while `down` (429 with Retry-After, 500, or hanging past
/// the client's timeout, in turn), then accepting; counts what it accepted.
struct FlakyTwilio {
    down: Arc<AtomicBool>,
    calls: AtomicUsize,
    accepted: Arc<Mutex<Vec<String>>>,
}

impl Respond for FlakyTwilio {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return match n % 3 {
                0 => ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(json!({ "code": 20429, "message": "Too Many Requests" })),
                1 => ResponseTemplate::new(500)
                    .set_body_json(json!({ "code": 20500, "message": "Internal Server Error" })),
                // Longer than the client waits: the attempt times out.
                _ => ResponseTemplate::new(503).set_delay(Duration::from_millis(1500)),
            };
        }
        let to = field(&form(request), "To").unwrap_or_default().to_string();
        self.accepted.lock().unwrap().push(to);
        ResponseTemplate::new(201)
            .set_body_json(json!({ "sid": format!("SMok{n}"), "status": "queued" }))
    }
}

async fn circuit_open(t: &Loop) -> Option<bool> {
    let metrics = t
        .app
        .client
        .get(t.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("integro_circuit_open{") && l.contains(&t.account_id))
        .map(|l| l.ends_with(" 1"))
}

async fn after_a_provider_outage_every_message_goes_out_exactly_once(kind: DbKind) {
    let provider = wiremock::MockServer::start().await;
    let uri = provider.uri();
    let Some(app) = crate::helpers::TestApp::spawn_with(kind, |c| {
        c.public_url = Some(PUBLIC_URL.into());
        c.twilio_api_base = uri.clone();
        c.workers = 4;
        c.provider_timeout_secs = 1;
        c.breaker_threshold = 3;
        c.breaker_cool_down_secs = 1;
    })
    .await
    else {
        return;
    };
    let t = Loop::with_app(
        app,
        provider,
        "twilio_whatsapp",
        json!({ "account_sid": "AC123", "auth_token": AUTH_TOKEN, "phone_number": "+14155238886" }),
    )
    .await;
    let down = Arc::new(AtomicBool::new(true));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(FlakyTwilio {
            down: down.clone(),
            calls: AtomicUsize::new(0),
            accepted: accepted.clone(),
        })
        .mount(&t.provider)
        .await;

    const MESSAGES: usize = 12;
    for i in 0..MESSAGES {
        let res = t
            .twilio_message(&format!("SMfault{i}"), &contact(i), "hi")
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // The provider keeps failing: the circuit opens.
    wait_until(Duration::from_secs(30), || async {
        circuit_open(&t).await == Some(true)
    })
    .await;
    // It recovers: every message goes out once, and the circuit closes.
    down.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(60), || async {
        accepted.lock().unwrap().len() >= MESSAGES
    })
    .await;
    wait_until(Duration::from_secs(10), || async {
        circuit_open(&t).await == Some(false)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut delivered = accepted.lock().unwrap().clone();
    delivered.sort();
    let mut expected: Vec<String> = (0..MESSAGES)
        .map(|i| format!("whatsapp:{}", contact(i)))
        .collect();
    expected.sort();
    assert_eq!(delivered, expected, "each message delivered exactly once");
    let dead = t.get("/api/v1/jobs?state=dead").await;
    assert!(
        dead["items"].as_array().unwrap().is_empty(),
        "no job gave up: {dead}"
    );
    wait_until(Duration::from_secs(10), || async {
        let conversations = t.get("/api/v1/conversations?limit=100").await;
        let mut all_sent = true;
        for c in conversations["items"].as_array().unwrap() {
            let messages = t
                .get(&format!(
                    "/api/v1/conversations/{}/messages",
                    c["id"].as_str().unwrap()
                ))
                .await;
            all_sent &= messages["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["direction"] == "outbound")
                .all(|m| m["status"] == "sent");
        }
        all_sent
    })
    .await;
}
