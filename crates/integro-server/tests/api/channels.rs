//! Shared set-up for the message-loop tests: a tenant with a bot and a channel
//! account whose provider is a local HTTP server.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::MockServer;

use crate::helpers::{DbKind, TestApp};

pub const PUBLIC_URL: &str = "https://hooks.integro.test";
pub const FALLBACK: &str = "Thanks! We will get back to you soon.";
pub const AUTH_TOKEN: &str = "twilio-auth-token-123";
pub const APP_SECRET: &str = "meta-app-secret-456";
pub const VERIFY_TOKEN: &str = "verify-me-789";

pub struct Loop {
    pub app: TestApp,
    pub provider: MockServer,
    /// An admin API key of the tenant.
    pub key: String,
    pub bot_id: String,
    pub account_id: String,
}

/// Starts Integro with its provider APIs pointing at a mock server.
pub async fn start(kind: DbKind, workers: usize) -> Option<(TestApp, MockServer)> {
    start_with(kind, |c| c.workers = workers).await
}

/// `start`, with more settings.
pub async fn start_with(
    kind: DbKind,
    tweak: impl FnOnce(&mut integro_server::Config),
) -> Option<(TestApp, MockServer)> {
    let provider = MockServer::start().await;
    let uri = provider.uri();
    let app = TestApp::spawn_with(kind, |c| {
        c.public_url = Some(PUBLIC_URL.into());
        c.twilio_api_base = uri.clone();
        c.graph_api_base = uri.clone();
        c.instagram_api_base = uri.clone();
        c.x_api_base = uri.clone();
        c.provider_timeout_secs = 2;
        tweak(c);
    })
    .await?;
    Some((app, provider))
}

impl Loop {
    pub async fn new(
        kind: DbKind,
        channel: &str,
        credentials: Value,
        workers: usize,
    ) -> Option<Loop> {
        let (app, provider) = start(kind, workers).await?;
        Some(Loop::with_app(app, provider, channel, credentials).await)
    }

    /// A tenant, a bot and an account of `channel` on a running app.
    pub async fn with_app(
        app: TestApp,
        provider: MockServer,
        channel: &str,
        credentials: Value,
    ) -> Loop {
        let tenant = app.create_tenant("Shop").await;
        let (_, key) = app.create_key(&tenant, "admin").await;
        let res = app
            .post(
                "/api/v1/bots",
                &key,
                json!({ "name": "Helper", "fallback_reply": FALLBACK }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let bot_id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let res = app
            .post(
                "/api/v1/accounts",
                &key,
                json!({ "bot_id": bot_id, "kind": channel, "name": "Main", "credentials": credentials }),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        let account_id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        Loop {
            app,
            provider,
            key,
            bot_id,
            account_id,
        }
    }

    pub async fn twilio(kind: DbKind, workers: usize) -> Option<Loop> {
        let creds = json!({ "account_sid": "AC123", "auth_token": AUTH_TOKEN, "phone_number": "+14155238886" });
        Loop::new(kind, "twilio_whatsapp", creds, workers).await
    }

    pub async fn whatsapp(kind: DbKind, workers: usize) -> Option<Loop> {
        let creds = json!({ "phone_number_id": "106540352242922", "access_token": "EAAG-token", "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN });
        Loop::new(kind, "whatsapp_cloud", creds, workers).await
    }

    pub fn twilio_path(&self) -> String {
        format!("/webhooks/twilio/{}", self.account_id)
    }

    /// A Twilio inbound message form, signed as Twilio would.
    pub async fn post_twilio(&self, params: &[(&str, &str)]) -> reqwest::Response {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let path = self.twilio_path();
        let signature =
            integro_channels::twilio::sign(AUTH_TOKEN, &format!("{PUBLIC_URL}{path}"), &params);
        self.app
            .client
            .post(self.app.url(&path))
            .header("x-twilio-signature", signature)
            .form(&params)
            .send()
            .await
            .unwrap()
    }

    pub async fn twilio_message(&self, sid: &str, from: &str, body: &str) -> reqwest::Response {
        self.post_twilio(&[
            ("MessageSid", sid),
            ("SmsMessageSid", sid),
            ("AccountSid", "AC123"),
            ("From", &format!("whatsapp:{from}")),
            ("To", "whatsapp:+14155238886"),
            ("Body", body),
            ("NumMedia", "0"),
            ("ProfileName", "Ann"),
            ("WaId", from.trim_start_matches('+')),
        ])
        .await
    }

    pub async fn get(&self, path: &str) -> Value {
        let res = self.app.get(path, &self.key).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.json().await.unwrap()
    }

    /// Requests the provider has received so far.
    pub async fn provider_requests(&self) -> Vec<wiremock::Request> {
        self.provider.received_requests().await.unwrap_or_default()
    }

    /// Waits until the provider has received `n` requests.
    pub async fn wait_for_sends(&self, n: usize) -> Vec<wiremock::Request> {
        wait_until(Duration::from_secs(20), || async {
            self.provider_requests().await.len() >= n
        })
        .await;
        self.provider_requests().await
    }

    /// The messages of the only conversation, once `n` exist with `settled` statuses.
    pub async fn messages(&self) -> Vec<Value> {
        let conversations = self.get("/api/v1/conversations").await;
        let Some(c) = conversations["items"].as_array().unwrap().first() else {
            return Vec::new();
        };
        let messages = self
            .get(&format!(
                "/api/v1/conversations/{}/messages",
                c["id"].as_str().unwrap()
            ))
            .await;
        messages["items"].as_array().unwrap().clone()
    }

    pub async fn outbound(&self) -> Vec<Value> {
        self.messages()
            .await
            .into_iter()
            .filter(|m| m["direction"] == "outbound")
            .collect()
    }

    pub async fn wait_outbound_status(&self, status: &str) -> Vec<Value> {
        wait_until(Duration::from_secs(20), || async {
            let out = self.outbound().await;
            !out.is_empty() && out.iter().all(|m| m["status"] == status)
        })
        .await;
        self.outbound().await
    }

    /// Waits until no job can run again (`settled`): from then on, what the
    /// provider received is all it will receive.
    pub async fn settled(&self) {
        settled(&self.app, Duration::from_secs(30)).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self.app.request(method, path, &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }
}

/// Twilio accepting every send, each with its own message SID.
#[derive(Default)]
pub struct TwilioAccepts(std::sync::atomic::AtomicUsize);

impl wiremock::Respond for TwilioAccepts {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        wiremock::ResponseTemplate::new(201)
            .set_body_json(json!({ "sid": format!("SMout{n}"), "status": "queued" }))
    }
}

/// Polls `check` until it holds or `timeout` passes (then panics).
pub async fn wait_until<F, Fut>(timeout: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within {timeout:?}");
}

/// Waits until every job is done, dead or cancelled, so none can send
/// again: "nothing more was sent" checks wait for this instead of sleeping
/// for less than a retry's delay (the first is 0.5–1 s, `runner::backoff`,
/// or the provider's Retry-After). No jobs at all counts as settled: a
/// webhook's or request's jobs are committed before it is answered, and the
/// jobs a job causes (a reply's send, an alert) in that job's own
/// transaction.
pub async fn settled(app: &TestApp, timeout: Duration) {
    wait_until(timeout, || async {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE state NOT IN ('done', 'dead', 'cancelled')",
        )
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
        pending == 0
    })
    .await;
}

/// Reads an event stream until `needle` shows up in it, for at most 15 s;
/// panics, saying what it read, when it does not. Answers what it read.
pub async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    needle: &str,
) -> String {
    use futures_util::StreamExt;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(chunk) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "`{needle}` arrives on the stream: {seen}");
    seen
}

/// Decoded form fields of a provider request.
pub fn form(req: &wiremock::Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&req.body).into_owned().collect()
}

pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An X Activity API event: a direct message from user 2222 to the X test
/// account (4337869213).
pub fn x_dm(id: &str, text: &str) -> String {
    json!({ "data": { "event_uuid": "1", "filter": { "user_id": "4337869213" }, "event_type": "dm.received",
        "payload": { "direct_message_events": [{ "type": "message_create", "id": id,
            "message_create": { "target": { "recipient_id": "4337869213" }, "sender_id": "2222",
                                "message_data": { "text": text } } }] } } })
    .to_string()
}

/// X takes reply posts (answering `post_id`) and DMs to 2222 (`dm_id`).
pub async fn x_accepts(t: &Loop, post_id: &str, dm_id: &str) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    Mock::given(method("POST"))
        .and(path("/2/tweets"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "data": { "id": post_id, "text": "x" } })),
        )
        .mount(&t.provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/2/dm_conversations/with/2222/messages"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({ "data": { "dm_conversation_id": "1-2", "dm_event_id": dm_id } }),
        ))
        .mount(&t.provider)
        .await;
}

impl Loop {
    /// Posts `body` to the account's X webhook, signed with the test app's
    /// consumer secret; X's answer must be 200.
    pub async fn x_webhook(&self, body: &str) {
        let res = self
            .app
            .client
            .post(self.app.url(&format!("/webhooks/x/{}", self.account_id)))
            .header("content-type", "application/json")
            .header(
                "x-twitter-webhooks-signature",
                integro_channels::x::sign("cs-secret", body.as_bytes()),
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
