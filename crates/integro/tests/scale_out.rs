//! Scaled out: two `integro serve` (no workers of their own) and two
//! `integro worker` processes on one PostgreSQL database, as behind a load
//! balancer. Webhooks posted to either server are answered exactly once; an
//! event stream on one server carries replies to messages posted to the
//! other; the retention task runs once across the processes; and one API
//! key's hourly allowance is shared by both servers, not granted by each.
//!
//! Needs `INTEGRO_TEST_POSTGRES_URL` (an admin URL: a database is created
//! and dropped); skipped without it.

mod support;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use support::{
    Canned, Database, Request, Server, integro, mock_provider, new_master_key, start_logged, text,
};

const ACCOUNT_SID: &str = "ACscaleout";
const AUTH_TOKEN: &str = "scale-out-auth-token";
const BOT_NUMBER: &str = "+14155238886";
const FALLBACK: &str = "Thanks! We will get back to you soon.";
/// What every process calls itself: the load balancer's address, over
/// which Twilio signs (so a webhook signed once is good at either server).
const PUBLIC_URL: &str = "https://hooks.integro.test";
const OPERATOR_EMAIL: &str = "operator@integro.test";
/// What `support::start` sets as INTEGRO_ADMIN_PASSWORD.
const OPERATOR_PASSWORD: &str = "operator-password-1";
/// INTEGRO_RATE_LIMIT_PER_HOUR of every process.
const RATE_LIMIT: usize = 60;
/// Distinct inbound webhooks, alternating between the servers.
const WEBHOOKS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_two_workers_share_one_database() {
    let Some(admin) = std::env::var("INTEGRO_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!("scale_out: skipped, INTEGRO_TEST_POSTGRES_URL is not set");
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let began = Instant::now();
    // Dropped last: every process is stopped before the database goes.
    let database = Database::create(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let (twilio, sent) = mock_twilio();

    let database_url = database.url();
    let master_key = new_master_key();
    let rate_limit = RATE_LIMIT.to_string();
    let common = [
        ("INTEGRO_DATABASE_URL", database_url.as_str()),
        ("INTEGRO_MASTER_KEY", master_key.as_str()),
        ("INTEGRO_PUBLIC_URL", PUBLIC_URL),
        ("INTEGRO_TWILIO_API_BASE", twilio.as_str()),
        ("INTEGRO_RATE_LIMIT_PER_HOUR", rate_limit.as_str()),
        ("INTEGRO_ADMIN_EMAIL", OPERATOR_EMAIL),
        // `integro migrate` below is the deployment's one migration step.
        ("INTEGRO_AUTO_MIGRATE", "false"),
    ];
    let out = integro(&dir.path().join("migrate"), &["migrate"], &common);
    assert!(out.status.success(), "integro migrate: {}", text(&out));

    // A first (it creates the operator), then B and the two workers. Each
    // has a data directory of its own: they share the database and the key.
    let mut logs = LogsOnFailure(Vec::new());
    let mut launch = |name: &str, what: &str, extra: &[(&str, &str)]| -> (Server, String) {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let env: Vec<(&str, &str)> = common.iter().chain(extra).copied().collect();
        let started = start_logged(what, &data, &env, Some(&log));
        logs.0.push(log);
        started
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (_server_a, a) = launch("server-a", "serve", &[("INTEGRO_WORKERS", "0")]);
    wait_ready(&client, &a).await;
    let (_server_b, b) = launch("server-b", "serve", &[("INTEGRO_WORKERS", "0")]);
    let (_worker_1, w1) = launch("worker-1", "worker", &[("INTEGRO_WORKERS", "4")]);
    let (_worker_2, w2) = launch("worker-2", "worker", &[("INTEGRO_WORKERS", "4")]);
    for addr in [&b, &w1, &w2] {
        wait_ready(&client, addr).await;
    }
    let api = Api {
        client: client.clone(),
    };

    // Set-up through server A: a tenant, a key for the set-up's calls, a bot
    // answering everything with its fallback reply, a Twilio account and a
    // web channel account bound to it.
    let (status, login) = api
        .call(
            &a,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let operator = Caller::bearer(login["access_token"].as_str().unwrap());
    let (status, tenant) = api
        .call(
            &a,
            "POST",
            "/api/v1/tenants",
            Some(&operator),
            Some(json!({ "name": "Scale" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let operator = operator.in_tenant(tenant["id"].as_str().unwrap());
    let new_key = |name: &'static str| {
        let (api, operator, a) = (&api, &operator, &a);
        async move {
            let (status, key) = api
                .call(
                    a,
                    "POST",
                    "/api/v1/api-keys",
                    Some(operator),
                    Some(json!({ "name": name, "role": "admin" })),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{key}");
            Caller::bearer(key["key"].as_str().unwrap())
        }
    };
    let setup = new_key("set-up").await;
    let (status, bot) = api
        .call(
            &a,
            "POST",
            "/api/v1/bots",
            Some(&setup),
            Some(json!({ "name": "Helper", "fallback_reply": FALLBACK })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    let bot = bot["id"].as_str().unwrap().to_string();
    let credentials =
        json!({ "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "phone_number": BOT_NUMBER });
    let (status, account) = api
        .call(
            &a,
            "POST",
            "/api/v1/accounts",
            Some(&setup),
            Some(json!({ "bot_id": bot, "kind": "twilio_whatsapp", "name": "WhatsApp", "credentials": credentials })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let account_id = account["id"].as_str().unwrap().to_string();
    // Where Twilio is told to post, and so the URL it signs.
    let signed_url = account["webhook_urls"]["messages"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        signed_url,
        format!("{PUBLIC_URL}/webhooks/twilio/{account_id}")
    );
    let hook_path = signed_url.strip_prefix(PUBLIC_URL).unwrap().to_string();
    let (status, web) = api
        .call(
            &a,
            "POST",
            "/api/v1/accounts",
            Some(&setup),
            Some(json!({ "bot_id": bot, "kind": "web", "name": "Site", "credentials": {} })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{web}");
    let web = format!("/api/v1/web/{}", web["id"].as_str().unwrap());

    // Live events across servers: a stream opened on A, before anything is
    // posted, of the bot's replies to one web visitor.
    let stream = client
        .get(format!("http://{a}{web}/events?contact_id=visitor-sse"))
        .bearer_auth(&setup.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let content_type = stream.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let streamed = Arc::new(Mutex::new(String::new()));
    let reader = {
        let streamed = streamed.clone();
        let mut stream = stream;
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = stream.chunk().await {
                streamed
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
        })
    };

    // Webhooks: each posted once, alternately to A and B, all at once; one
    // more posted to both A and B at the same moment; and the web visitor's
    // message posted to B.
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..WEBHOOKS {
        let server = if n % 2 == 0 { a.clone() } else { b.clone() };
        let (client, path, url) = (client.clone(), hook_path.clone(), signed_url.clone());
        posts.spawn(async move {
            let status = post_webhook(&client, &server, &path, &url, &inbound(n)).await;
            (server, format!("SMscale{n:04}"), status)
        });
    }
    for server in [a.clone(), b.clone()] {
        let (client, path, url) = (client.clone(), hook_path.clone(), signed_url.clone());
        posts.spawn(async move {
            let status = post_webhook(&client, &server, &path, &url, &inbound(WEBHOOKS)).await;
            (server, format!("SMscale{WEBHOOKS:04} (twice)"), status)
        });
    }
    let (status, accepted) = api
        .call(
            &b,
            "POST",
            &format!("{web}/messages"),
            Some(&setup),
            Some(json!({ "contact_id": "visitor-sse", "name": "Vi", "text": "Hello from B", "message_id": "web-1" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let mut answered: HashMap<String, Vec<(String, StatusCode)>> = HashMap::new();
    while let Some(done) = posts.join_next().await {
        let (server, sid, status) = done.unwrap();
        answered.entry(server).or_default().push((sid, status));
    }
    for server in [&a, &b] {
        let got = &answered[server];
        assert_eq!(got.len(), WEBHOOKS / 2 + 1, "{server}: {got:?}");
        assert!(
            got.iter().all(|(_, s)| *s == StatusCode::OK),
            "every webhook server {server} got was answered 200: {got:?}"
        );
    }

    // Exactly one send per inbound message, the duplicate included.
    let expected: Vec<String> = (0..=WEBHOOKS).map(contact).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.lock().unwrap().len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer, for a second send that would come late.
    tokio::time::sleep(Duration::from_secs(1)).await;
    check_one_reply_each(&sent, &expected);

    // The stream on A carried the reply to the message posted to B.
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let events = sse_messages(&streamed.lock().unwrap());
        if let Some(e) = events.into_iter().find(|(_, m)| m["body"] == FALLBACK) {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no reply on A's stream within 20 s; it carried: {:?}",
            streamed.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    reader.abort();
    let (status, page) = api
        .call(
            &b,
            "GET",
            &format!("{web}/messages?contact_id=visitor-sse"),
            Some(&setup),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    let asked = items
        .iter()
        .find(|m| m["direction"] == "inbound")
        .unwrap_or_else(|| panic!("the visitor's message: {page}"));
    let (event_id, message) = event;
    assert_eq!(message["direction"], "outbound", "{message}");
    assert_eq!(
        message["reply_to"], asked["id"],
        "{message} answers {asked}"
    );
    assert_eq!(
        message["conversation_id"], asked["conversation_id"],
        "{message}"
    );
    assert_eq!(
        event_id,
        message["id"].as_str().unwrap(),
        "the event's id is the message's"
    );

    // The shared allowance: a key used for nothing else, alternately at A
    // and B, past the hourly limit. Each server alone sees half the
    // requests, yet together they grant the limit once.
    let limited_key = new_key("rate").await;
    let rate_started = Instant::now();
    let mut tally: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut retry_after = None;
    for n in 0..RATE_LIMIT + 10 {
        let server = if n % 2 == 0 { a.as_str() } else { b.as_str() };
        let res = client
            .get(format!("http://{server}/api/v1/bots"))
            .bearer_auth(&limited_key.token)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap();
        let counts = tally.entry(server).or_default();
        match res.status() {
            StatusCode::OK => counts.0 += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                counts.1 += 1;
                retry_after = res.headers().get("retry-after").cloned();
            }
            other => panic!("GET /api/v1/bots at {server}: {other}"),
        }
    }
    // The allowance refills one request a minute (60 an hour).
    let refilled = (rate_started.elapsed().as_secs() / 60) as usize;
    let granted = tally[a.as_str()].0 + tally[b.as_str()].0;
    assert!(
        (RATE_LIMIT..=RATE_LIMIT + refilled).contains(&granted),
        "A and B together granted {granted} requests of a key allowed {RATE_LIMIT} an hour \
         (A: {:?}, B: {:?} as (200s, 429s))",
        tally[a.as_str()],
        tally[b.as_str()]
    );
    assert!(
        tally[a.as_str()].1 > 0 && tally[b.as_str()].1 > 0,
        "both servers refuse once the shared allowance is spent: {tally:?}"
    );
    assert!(retry_after.is_some(), "a 429 says when to retry");

    // The retention task ran once, though both workers asked: each has had
    // its first maintenance tick (it sets the queue gauges, then claims).
    for worker in [&w1, &w2] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let metrics = client
                .get(format!("http://{worker}/metrics"))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if metrics.contains("integro_oldest_ready_job_age_seconds") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker {worker} had no maintenance tick within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut db = database.connect().await;
    let (runs, last_run_by): (i64, Option<String>) =
        sqlx::query_as("SELECT runs, last_run_by FROM schedules WHERE name = 'retention'")
            .fetch_one(&mut db)
            .await
            .expect("the retention task's row");
    assert_eq!(runs, 1, "retention ran once in its 5-minute period");
    assert!(
        last_run_by.is_some_and(|by| !by.is_empty()),
        "it names who ran it"
    );

    // What the database stored: each inbound webhook once.
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT provider_message_id, COUNT(*) FROM messages \
         WHERE account_id::text = $1 AND direction = 'inbound' GROUP BY provider_message_id",
    )
    .bind(&account_id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(stored.len(), WEBHOOKS + 1, "{stored:?}");
    assert!(stored.iter().all(|(_, n)| *n == 1), "{stored:?}");
    db.close().await.unwrap();

    // Seconds later, still one send each: nothing was answered twice late.
    check_one_reply_each(&sent, &expected);
    eprintln!(
        "scale_out: passed in {:.1} s: {} webhooks, {} sends; the shared allowance granted {granted} \
         (A: {:?}, B: {:?} as (200s, 429s))",
        began.elapsed().as_secs_f64(),
        WEBHOOKS + 2,
        sent.lock().unwrap().len(),
        tally[a.as_str()],
        tally[b.as_str()]
    );
}

/// Prints the end of each process's log when the test fails.
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for log in &self.0 {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = said.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- {} (last 40 lines)\n{tail}", log.display());
        }
    }
}

async fn wait_ready(client: &reqwest::Client, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("http://{addr}/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} was not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Who calls the API: a bearer token (an access token or an API key), in a
/// tenant when it is an operator's.
struct Caller {
    token: String,
    tenant: Option<String>,
}

impl Caller {
    fn bearer(token: &str) -> Caller {
        Caller {
            token: token.to_string(),
            tenant: None,
        }
    }

    fn in_tenant(self, tenant: &str) -> Caller {
        Caller {
            tenant: Some(tenant.to_string()),
            ..self
        }
    }
}

struct Api {
    client: reqwest::Client,
}

impl Api {
    /// One API call to the server at `addr`; the status and the JSON answer
    /// (its text as a JSON string when it is not JSON).
    async fn call(
        &self,
        addr: &str,
        method: &str,
        path: &str,
        caller: Option<&Caller>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(method, format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(20));
        if let Some(c) = caller {
            req = req.bearer_auth(&c.token);
            if let Some(t) = &c.tenant {
                req = req.header("x-integro-tenant", t);
            }
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The WhatsApp address of the contact who sends webhook `n`.
fn contact(n: usize) -> String {
    format!("whatsapp:+1555010{n:04}")
}

/// Twilio's inbound message webhook `n`, from a contact of its own.
fn inbound(n: usize) -> Vec<(String, String)> {
    let sid = format!("SMscale{n:04}");
    [
        ("MessageSid", sid.clone()),
        ("SmsMessageSid", sid),
        ("AccountSid", ACCOUNT_SID.to_string()),
        ("From", contact(n)),
        ("To", format!("whatsapp:{BOT_NUMBER}")),
        ("Body", format!("message {n}")),
        ("NumMedia", "0".to_string()),
        ("ProfileName", format!("Contact {n}")),
        ("WaId", format!("1555010{n:04}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Posts a webhook to the server at `addr`, signed as Twilio signs it, over
/// `signed_url`; the answer's status.
async fn post_webhook(
    client: &reqwest::Client,
    addr: &str,
    path: &str,
    signed_url: &str,
    params: &[(String, String)],
) -> StatusCode {
    let signature = integro_channels::twilio::sign(AUTH_TOKEN, signed_url, params);
    client
        .post(format!("http://{addr}{path}"))
        .header("x-twilio-signature", signature)
        .form(params)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap()
        .status()
}

/// A message the mock Twilio accepted.
#[derive(Clone, Debug)]
struct Sent {
    sid: String,
    to: String,
    from: String,
    body: String,
    created: SystemTime,
}

type Sends = Arc<Mutex<Vec<Sent>>>;

/// Twilio's Messages resource of the account: sends (`POST`), and the list
/// (`GET`, newest first, by `To` and `From`) a worker reads before sending
/// again when it does not know whether a send went out. Its base URL and
/// what it accepted.
fn mock_twilio() -> (String, Sends) {
    let sent: Sends = Default::default();
    let accepted = sent.clone();
    let resource = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    let (addr, _) = mock_provider(move |request: &Request| {
        let (path, query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        if path != resource {
            return Canned {
                status: 404,
                body: r#"{"code":20404,"message":"The requested resource was not found"}"#.into(),
            };
        }
        let mut sent = accepted.lock().unwrap();
        if request.method == "POST" {
            let form = integro_channels::twilio::parse_form(request.body.as_bytes());
            let sid = format!("SM{:032x}", sent.len() + 1);
            sent.push(Sent {
                sid: sid.clone(),
                to: field(&form, "To"),
                from: field(&form, "From"),
                body: field(&form, "Body"),
                created: SystemTime::now(),
            });
            return Canned {
                status: 201,
                body: json!({ "sid": sid, "status": "queued" }).to_string(),
            };
        }
        let query = integro_channels::twilio::parse_form(query.as_bytes());
        let (to, from) = (field(&query, "To"), field(&query, "From"));
        let messages: Vec<Value> = sent
            .iter()
            .rev()
            .filter(|s| s.to == to && s.from == from)
            .take(50)
            .map(|s| {
                json!({ "sid": s.sid, "to": s.to, "from": s.from, "body": s.body,
                        "status": "sent", "date_created": rfc2822(s.created) })
            })
            .collect();
        Canned {
            status: 200,
            body: json!({ "messages": messages, "page": 0, "page_size": 50 }).to_string(),
        }
    });
    (format!("http://{addr}"), sent)
}

/// The value of parameter `name`, or "".
fn field(params: &[(Cow<'_, str>, Cow<'_, str>)], name: &str) -> String {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// Each of `contacts` got exactly one send, the bot's reply from its
/// number, and nobody else got any.
fn check_one_reply_each(sent: &Sends, contacts: &[String]) {
    let sent = sent.lock().unwrap().clone();
    let mut per_contact: HashMap<&str, usize> = HashMap::new();
    for s in &sent {
        *per_contact.entry(s.to.as_str()).or_default() += 1;
        assert_eq!(s.body, FALLBACK, "{s:?}");
        assert_eq!(s.from, format!("whatsapp:{BOT_NUMBER}"), "{s:?}");
    }
    let missed: Vec<&String> = contacts
        .iter()
        .filter(|c| !per_contact.contains_key(c.as_str()))
        .collect();
    let twice: Vec<(&&str, &usize)> = per_contact.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missed.is_empty(),
        "not answered: {missed:?} ({} sends)",
        sent.len()
    );
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    assert_eq!(sent.len(), contacts.len(), "{sent:?}");
}

/// The `message` events of a server-sent-events text: (id, data as JSON);
/// an event not complete yet is left out.
fn sse_messages(text: &str) -> Vec<(String, Value)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let (mut event, mut id, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            let data = serde_json::from_str(&data).ok()?;
            (event.as_deref() == Some("message")).then_some((id, data))
        })
        .collect()
}

/// `t` as Twilio writes dates (RFC 2822, UTC).
fn rfc2822(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{weekday}, {day:02} {month} {year} {:02}:{:02}:{:02} +0000",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[test]
fn dates_are_written_as_twilio_writes_them() {
    let at = |secs| rfc2822(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    // 2024-02-29T13:05:09Z, a leap day.
    assert_eq!(at(1_709_211_909), "Thu, 29 Feb 2024 13:05:09 +0000");
}
