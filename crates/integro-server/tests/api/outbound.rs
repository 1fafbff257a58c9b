//! The outbound URL policy: tenants' URLs (AI base URLs, alert webhooks) may
//! not point at loopback, private, link-local or metadata addresses unless
//! the operator excepts them (`INTEGRO_OUTBOUND_ALLOW`); refused when saved
//! and again when connecting; a credential test never shows what the target
//! answered.

use std::time::Duration;

use integro_core::Actor;
use integro_store::Conn;
use integro_store::ai_credentials::{self, CredentialFields};
use integro_store::events::{self, NewEvent};
use integro_store::tenants::{self, AlertWebhook, SettingsChanges};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::channels::wait_until;
use crate::db_tests;
use crate::helpers::{DbKind, TestApp, assert_problem};

db_tests!(
    forbidden_base_urls_are_refused_naming_the_field,
    forbidden_alert_webhooks_are_refused_naming_the_field,
    an_exception_allows_exactly_its_host_and_port,
    the_test_reports_a_reason_never_the_targets_body,
    a_url_saved_before_the_policy_is_blocked_when_connecting,
    a_name_resolving_to_loopback_is_refused_at_save_and_at_connect,
    an_alert_to_a_refused_url_is_not_sent,
);

/// What the mock targets answer; it must never reach the tenant.
const SECRET: &str = "INTERNAL-SECRET-7f3a";

/// An app with `allow` as its only exceptions, a tenant and its owner's key.
async fn spawn(kind: DbKind, allow: &[String]) -> Option<(TestApp, Uuid, String)> {
    let allow = allow.to_vec();
    let app = TestApp::spawn_with(kind, |c| c.outbound_allow = allow).await?;
    let tenant = app.create_tenant("Outbound").await;
    let (_, key) = app.create_key(&tenant, "owner").await;
    Some((app, tenant.parse().unwrap(), key))
}

async fn create_credential(app: &TestApp, key: &str, base_url: &str) -> reqwest::Response {
    app.post(
        "/api/v1/ai-credentials",
        key,
        json!({ "name": "llm", "provider": "openai_compatible", "base_url": base_url }),
    )
    .await
}

/// Asserts a 422 naming `field`; returns the field's message.
async fn refused(res: reqwest::Response, field: &str) -> String {
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A credential stored without the API's check, as one saved before the
/// policy existed (or before an exception was removed).
async fn stored_credential(app: &TestApp, tenant: Uuid, base_url: &str) -> String {
    let mut tx = app.state.db.begin().await.unwrap();
    let credential = ai_credentials::create(
        &mut tx,
        &app.state.keyring,
        &Actor::system(),
        None,
        tenant,
        CredentialFields {
            name: "old".into(),
            provider: "openai_compatible".into(),
            base_url: Some(base_url.into()),
            api_key: Some("sk-old".into()),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    credential.id.to_string()
}

async fn test_credential(app: &TestApp, key: &str, id: &str) -> Value {
    test_model(app, key, id, None).await
}

/// `/test`, with a one-token chat when `model` is given.
async fn test_model(app: &TestApp, key: &str, id: &str, model: Option<&str>) -> Value {
    let res = app
        .post(
            &format!("/api/v1/ai-credentials/{id}/test"),
            key,
            json!({ "model": model }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains(SECRET), "the target's body leaked: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A target on 127.0.0.1 answering `GET {prefix}/v1/models`.
async fn mount_models(server: &MockServer, prefix: &str, answer: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("{prefix}/v1/models")))
        .respond_with(answer)
        .mount(server)
        .await;
}

fn port(server: &MockServer) -> u16 {
    server.address().port()
}

async fn forbidden_base_urls_are_refused_naming_the_field(kind: DbKind) {
    let Some((app, _, key)) = spawn(kind, &[]).await else {
        return;
    };
    for (url, says) in [
        (
            "http://169.254.169.254/",
            "169.254.169.254 is a cloud metadata endpoint",
        ),
        ("http://[fd00:ec2::254]/v1", "is a cloud metadata endpoint"),
        (
            "http://metadata.google.internal/v1",
            "is a cloud metadata endpoint",
        ),
        ("http://10.0.0.1/v1", "10.0.0.1 is a private address"),
        (
            "http://2130706433:11434/v1",
            "127.0.0.1 is a loopback address",
        ),
        ("http://0x7f.1:11434/v1", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/v1", "is a loopback address"),
        ("http://localhost:11434/v1", "localhost is a local name"),
        ("http://[fe80::1]/v1", "is a link-local address"),
        (
            "http://100.64.0.1/v1",
            "is a shared (carrier-grade NAT) address",
        ),
        (
            "http://user:pass@llm.example.com/v1",
            "user name or password",
        ),
        ("ftp://llm.example.com/v1", "only http:// and https://"),
    ] {
        let message = refused(create_credential(&app, &key, url).await, "base_url").await;
        assert!(message.contains(says), "{url}: {message}");
    }
    let message = refused(
        create_credential(&app, &key, "http://10.0.0.1:8000/v1").await,
        "base_url",
    )
    .await;
    assert!(
        message.ends_with("an operator can allow it with INTEGRO_OUTBOUND_ALLOW=10.0.0.1:8000"),
        "{message}"
    );

    // Re-pointing a credential is checked the same way.
    let res = app
        .post(
            "/api/v1/ai-credentials",
            &key,
            json!({ "name": "openai", "provider": "openai", "api_key": "sk-1" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .request(Method::PATCH, &format!("/api/v1/ai-credentials/{id}"), &key)
        .json(&json!({ "base_url": "http://[::ffff:a00:1]/v1" }))
        .send()
        .await
        .unwrap();
    let message = refused(res, "base_url").await;
    assert!(message.contains("private address"), "{message}");
    let after: Value = app
        .get(&format!("/api/v1/ai-credentials/{id}"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert!(after["base_url"].is_null(), "{after}");
}

async fn forbidden_alert_webhooks_are_refused_naming_the_field(kind: DbKind) {
    let Some((app, _, key)) = spawn(kind, &[]).await else {
        return;
    };
    for (url, says) in [
        (
            "http://10.0.0.1/hooks/T0/B0/token",
            "10.0.0.1 is a private address; an operator can allow it with \
             INTEGRO_OUTBOUND_ALLOW=10.0.0.1:80",
        ),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "is a cloud metadata endpoint",
        ),
        (
            "https://169.254.169.254/latest",
            "is a cloud metadata endpoint",
        ),
        (
            "https://hooks:secret@hooks.example.com/x",
            "user name or password",
        ),
    ] {
        let res = app
            .request(Method::PATCH, "/api/v1/settings", &key)
            .json(&json!({ "alert_webhook_url": url }))
            .send()
            .await
            .unwrap();
        let message = refused(res, "alert_webhook_url").await;
        assert!(message.contains(says), "{url}: {message}");
        // The message names the host, not the URL's path (often its secret).
        assert!(!message.contains("token") && !message.contains("/latest"));
    }
    let settings: Value = app
        .get("/api/v1/settings", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(settings["alert_webhook_set"], false);
}

async fn an_exception_allows_exactly_its_host_and_port(kind: DbKind) {
    let allow = ["127.0.0.1:11434".to_string(), "ollama:11434".to_string()];
    let Some((app, _, key)) = spawn(kind, &allow).await else {
        return;
    };
    for url in ["http://127.0.0.1:11434/v1", "http://ollama:11434/v1"] {
        let res = create_credential(&app, &key, url).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{url}");
    }
    let message = refused(
        create_credential(&app, &key, "http://127.0.0.1:11435/v1").await,
        "base_url",
    )
    .await;
    assert!(
        message.contains("INTEGRO_OUTBOUND_ALLOW=127.0.0.1:11435"),
        "{message}"
    );
    let message = refused(
        create_credential(&app, &key, "http://ollama:22/v1").await,
        "base_url",
    )
    .await;
    assert_eq!(
        message,
        "ollama is allowed on port 11434 only (INTEGRO_OUTBOUND_ALLOW)"
    );
    // An address exception does not allow the names that resolve to it.
    let message = refused(
        create_credential(&app, &key, "http://localhost:11434/v1").await,
        "base_url",
    )
    .await;
    assert!(message.contains("local name"), "{message}");
    let res = app
        .request(Method::PATCH, "/api/v1/settings", &key)
        .json(&json!({ "alert_webhook_url": "http://127.0.0.1:11434/hook" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

async fn the_test_reports_a_reason_never_the_targets_body(kind: DbKind) {
    let target = MockServer::start().await;
    let html = format!("<html><body>{SECRET}: admin panel</body></html>");
    mount_models(&target, "/ok", {
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "data": [{ "id": "m1", "object": "model" }], "note": SECRET
        }))
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/html/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_string(html.clone()))
        .mount(&target)
        .await;
    mount_models(
        &target,
        "/denied",
        ResponseTemplate::new(401)
            .set_body_json(json!({ "error": { "message": SECRET, "code": "invalid_api_key" } })),
    )
    .await;
    mount_models(
        &target,
        "/broken",
        ResponseTemplate::new(500).set_body_string(html.clone()),
    )
    .await;
    mount_models(
        &target,
        "/missing",
        ResponseTemplate::new(404).set_body_string(html),
    )
    .await;
    // Only the target's exact address and port.
    let allow = [format!("127.0.0.1:{}", port(&target))];
    let Some((app, _, key)) = spawn(kind, &allow).await else {
        return;
    };
    let mut reports = Vec::new();
    for prefix in ["/ok", "/html", "/denied", "/broken", "/missing"] {
        let res = create_credential(&app, &key, &format!("{}{prefix}/v1", target.uri())).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        // `/html` answers a chat with a page instead of a completion.
        let model = (prefix == "/html").then_some("m");
        reports.push(test_model(&app, &key, &id, model).await);
    }
    let summary: Vec<(Value, Value, Value)> = reports
        .iter()
        .map(|r| (r["ok"].clone(), r["status"].clone(), r["reason"].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!(true), json!(200), json!("ok")),
            (json!(false), json!(200), json!("invalid_response")),
            (json!(false), json!(401), json!("unauthorized")),
            (json!(false), json!(500), json!("http_error")),
            (json!(false), json!(404), json!("http_error")),
        ]
    );
    assert_eq!(
        reports[0]["message"],
        "OK: the server answered (1 model available)"
    );
    assert_eq!(reports[2]["message"], "the API key was rejected (HTTP 401)");
    assert_eq!(reports[2]["code"], "auth");
    assert_eq!(
        reports[3]["message"],
        "the provider failed to answer (HTTP 500)"
    );

    // A port the target does not listen on: unreachable, in our words.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let Some((app, tenant, key)) = spawn(kind, &[format!("127.0.0.1:{closed}")]).await else {
        return;
    };
    let id = stored_credential(&app, tenant, &format!("http://127.0.0.1:{closed}/v1")).await;
    let report = test_credential(&app, &key, &id).await;
    assert_eq!(report["reason"], "unreachable", "{report}");
    assert!(report["status"].is_null());
}

async fn a_url_saved_before_the_policy_is_blocked_when_connecting(kind: DbKind) {
    let target = MockServer::start().await;
    mount_models(
        &target,
        "",
        ResponseTemplate::new(200).set_body_string(SECRET),
    )
    .await;
    // The same target as above, without the exception.
    let Some((app, tenant, key)) = spawn(kind, &[]).await else {
        return;
    };
    let id = stored_credential(&app, tenant, &format!("{}/v1", target.uri())).await;
    let report = test_credential(&app, &key, &id).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["reason"], "blocked_by_policy", "{report}");
    assert_eq!(report["code"], "blocked_by_policy");
    assert!(report["status"].is_null());
    let message = report["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "127.0.0.1 is a loopback address; an operator can allow it with \
             INTEGRO_OUTBOUND_ALLOW=127.0.0.1:{}",
            port(&target)
        )),
        "{message}"
    );
    assert!(target.received_requests().await.unwrap().is_empty());
}

/// This machine's name, when it resolves only to addresses the policy
/// refuses (usually loopback or a private address; not on every host).
async fn local_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name == "localhost" {
        return None;
    }
    let addrs: Vec<_> = tokio::net::lookup_host((name.as_str(), 80))
        .await
        .ok()?
        .collect();
    let all_refused = !addrs.is_empty()
        && addrs
            .iter()
            .all(|a| integro_core::outbound::classify(a.ip()).is_some());
    all_refused.then_some(name)
}

async fn a_name_resolving_to_loopback_is_refused_at_save_and_at_connect(kind: DbKind) {
    let Some(name) = local_name().await else {
        eprintln!("skipped: this machine's name does not resolve to a refused address");
        return;
    };
    let target = MockServer::start().await;
    mount_models(
        &target,
        "",
        ResponseTemplate::new(200).set_body_string(SECRET),
    )
    .await;
    // Every port of 127.0.0.1 is excepted: a name that resolves there is not.
    let Some((app, tenant, key)) = spawn(kind, &["127.0.0.1:*".to_string()]).await else {
        return;
    };
    let url = format!("http://{name}:{}/v1", port(&target));
    let message = refused(create_credential(&app, &key, &url).await, "base_url").await;
    assert!(
        message.starts_with(&format!("{name} resolves to a")),
        "{message}"
    );
    // Stored anyway (say the name resolved elsewhere when it was saved): the
    // connection resolves through the policy.
    let id = stored_credential(&app, tenant, &url).await;
    let report = test_credential(&app, &key, &id).await;
    assert_eq!(report["reason"], "blocked_by_policy", "{report}");
    assert!(target.received_requests().await.unwrap().is_empty());
}

async fn an_alert_to_a_refused_url_is_not_sent(kind: DbKind) {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    let Some((app, tenant, key)) = spawn(kind, &[]).await else {
        return;
    };
    // A webhook saved before the policy, and an alert for it.
    let before = tenants::settings(&app.state.db, tenant).await.unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    tenants::update_settings(
        &mut tx,
        &app.state.keyring,
        &Actor::system(),
        None,
        tenant,
        &before,
        SettingsChanges {
            monthly_token_budget: None,
            x_monthly_spend_limit_usd: None,
            x_ai_drafts_skip_approval: None,
            alert_webhook: Some(Some(AlertWebhook {
                url: format!("{}/hook", slack.uri()),
                secret: None,
            })),
        },
    )
    .await
    .unwrap();
    let event = events::record(
        &mut Conn::of(&mut tx),
        NewEvent {
            tenant_id: tenant,
            bot_id: None,
            conversation_id: None,
            kind: "ai_auth_failed",
            detail: "the API key was rejected".into(),
        },
        true,
        None,
    )
    .await
    .unwrap()
    .unwrap();
    integro_worker::alert::enqueue(&mut Conn::of(&mut tx), tenant, event)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.state.wake.notify_one();

    let dead = || async {
        let jobs: Value = app
            .get("/api/v1/jobs?state=dead", &key)
            .await
            .json()
            .await
            .unwrap();
        jobs["items"].as_array().unwrap().clone()
    };
    wait_until(Duration::from_secs(20), || async {
        !dead().await.is_empty()
    })
    .await;
    let jobs = dead().await;
    assert_eq!(jobs[0]["kind"], "alert");
    let error = jobs[0]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "alert webhook refused by the outbound URL policy: 127.0.0.1 is a loopback address"
        ),
        "{error}"
    );
    assert_eq!(jobs[0]["attempts"], 1, "not retried");
    assert!(slack.received_requests().await.unwrap().is_empty());
}
