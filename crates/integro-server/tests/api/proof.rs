//! Integro's promise under stress, on both databases: a duplicate storm gets
//! exactly one reply per message, and a provider that fails for a while
//! (429, 500, answers too slow to wait for, connection resets) gets every
//! message exactly once after it recovers, with its circuit opening and
//! closing in `/metrics` and no job given up.

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
    crate::channels::settled(&t.app, Duration::from_secs(60)).await;
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

/// A message the mock Twilio took.
#[derive(Clone)]
struct Taken {
    sid: String,
    to: String,
    body: String,
    at: time::OffsetDateTime,
}

/// Twilio failing while `down`, in turn: 429 with Retry-After, 500, or taking
/// the message but answering later than the client waits (so the sender does
/// not know it went out); then accepting. Records what it took.
struct FlakyTwilio {
    down: Arc<AtomicBool>,
    calls: AtomicUsize,
    taken: Arc<Mutex<Vec<Taken>>>,
}

impl Respond for FlakyTwilio {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let down = self.down.load(Ordering::SeqCst);
        if down && n.is_multiple_of(3) {
            return ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({ "code": 20429, "message": "Too Many Requests" }));
        }
        if down && n % 3 == 1 {
            return ResponseTemplate::new(500)
                .set_body_json(json!({ "code": 20500, "message": "Internal Server Error" }));
        }
        let f = form(request);
        let sid = format!("SMok{n}");
        self.taken.lock().unwrap().push(Taken {
            sid: sid.clone(),
            to: field(&f, "To").unwrap_or_default().to_string(),
            body: field(&f, "Body").unwrap_or_default().to_string(),
            at: time::OffsetDateTime::now_utc(),
        });
        let answer =
            ResponseTemplate::new(201).set_body_json(json!({ "sid": sid, "status": "queued" }));
        if down {
            // Longer than the client waits: the attempt times out, yet the message went out.
            answer.set_delay(Duration::from_millis(1500))
        } else {
            answer
        }
    }
}

/// Twilio's message list (`GET Messages.json?To=…`), from what the mock took:
/// how a sender that timed out finds that its message did go out.
struct TwilioList {
    taken: Arc<Mutex<Vec<Taken>>>,
}

impl Respond for TwilioList {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let to = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "To")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let messages: Vec<serde_json::Value> = self
            .taken
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to == to)
            .map(|m| {
                json!({
                    "sid": m.sid, "to": m.to, "body": m.body, "status": "sent",
                    "date_created": m.at.format(&time::format_description::well_known::Rfc2822).unwrap(),
                })
            })
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({ "messages": messages, "page": 0, "page_size": 50 }))
    }
}

/// A TCP proxy in front of the mock provider. While `resetting`, every other
/// new connection is reset (RST) once the request has arrived, without being
/// forwarded; the others, and all of them afterwards, are passed through.
struct ResettingProxy {
    url: String,
    resetting: Arc<AtomicBool>,
    resets: Arc<AtomicUsize>,
}

impl ResettingProxy {
    async fn start(target: &str) -> ResettingProxy {
        use tokio::io::AsyncReadExt;
        let target = target.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let resetting = Arc::new(AtomicBool::new(true));
        let resets = Arc::new(AtomicUsize::new(0));
        let (on, count) = (resetting.clone(), resets.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                n += 1;
                if on.load(Ordering::SeqCst) && n.is_multiple_of(2) {
                    let mut first = [0u8; 64];
                    let _ = inbound.read(&mut first).await;
                    let _ = inbound.set_zero_linger();
                    drop(inbound);
                    count.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        ResettingProxy {
            url,
            resetting,
            resets,
        }
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
    let proxy = ResettingProxy::start(&provider.uri()).await;
    let uri = proxy.url.clone();
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
    let taken = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(FlakyTwilio {
            down: down.clone(),
            calls: AtomicUsize::new(0),
            taken: taken.clone(),
        })
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path(SEND_PATH))
        .respond_with(TwilioList {
            taken: taken.clone(),
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
    proxy.resetting.store(false, Ordering::SeqCst);
    assert!(
        proxy.resets.load(Ordering::SeqCst) > 0,
        "the outage included connection resets"
    );
    wait_until(Duration::from_secs(60), || async {
        taken.lock().unwrap().len() >= MESSAGES
    })
    .await;
    wait_until(Duration::from_secs(10), || async {
        circuit_open(&t).await == Some(false)
    })
    .await;
    crate::channels::settled(&t.app, Duration::from_secs(60)).await;
    let mut delivered: Vec<String> = taken.lock().unwrap().iter().map(|m| m.to.clone()).collect();
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
        let conversations = conversations["items"].as_array().unwrap();
        // Every message's conversation, each with its reply: none missing
        // makes the check below vacuous.
        let mut all_sent = conversations.len() == MESSAGES;
        for c in conversations {
            let messages = t
                .get(&format!(
                    "/api/v1/conversations/{}/messages",
                    c["id"].as_str().unwrap()
                ))
                .await;
            let outbound: Vec<&serde_json::Value> = messages["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["direction"] == "outbound")
                .collect();
            all_sent &= !outbound.is_empty() && outbound.iter().all(|m| m["status"] == "sent");
        }
        all_sent
    })
    .await;
}
