//! Tenants cannot see each other: another tenant's resource answers 404.
//! Nor change, delete or act on it: each write below is tried with tenant
//! B's key on tenant A's resource (404, and A's resources and audit log as
//! they were), then the same request with A's key succeeds, so that the
//! 404 comes from the tenant and not from a malformed request.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::channels::{self, AUTH_TOKEN, PUBLIC_URL};
use crate::db_tests;
use crate::helpers::{DbKind, TestApp, assert_problem};

async fn other_tenants_resources_answer_404(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;
    let (_, key_a) = app.create_key(&a, "owner").await;
    let (key_b_id, key_b) = app.create_key(&b, "owner").await;

    // B's key, looked up or revoked with A's key.
    let path = format!("/api/v1/api-keys/{key_b_id}");
    assert_problem(
        app.get(&path, &key_a).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app
        .request(Method::DELETE, &path, &key_a)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(
        app.get("/api/v1/auth/me", &key_b).await.status(),
        StatusCode::OK,
        "B's key still works"
    );

    // Naming tenant B with A's key.
    let res = app
        .request(Method::GET, "/api/v1/api-keys", &key_a)
        .header("x-integro-tenant", &b)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // Tenant B itself, and its users.
    assert_problem(
        app.get(&format!("/api/v1/tenants/{b}"), &key_a).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app.get(&format!("/api/v1/tenants/{b}/users"), &key_a).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // Lists show only the caller's own.
    let keys: Value = app
        .get("/api/v1/api-keys", &key_a)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    let tenants: Value = app
        .get("/api/v1/tenants", &key_a)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.as_str()]);
}

async fn users_see_only_their_tenants(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;
    let alice = app.user_token(&a, "alice@example.com", "admin").await;
    assert_eq!(
        app.get(&format!("/api/v1/tenants/{a}"), &alice)
            .await
            .status(),
        StatusCode::OK
    );
    assert_problem(
        app.get(&format!("/api/v1/tenants/{b}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // With one tenant, no header is needed.
    let res = app
        .post(
            "/api/v1/api-keys",
            &alice,
            json!({ "name": "ci", "role": "agent" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["tenant_id"], a.as_str());
    // Not an operator.
    assert_problem(
        app.request(Method::DELETE, &format!("/api/v1/tenants/{a}"), &alice)
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

async fn deleted_tenants_disappear_and_their_keys_stop(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let a = app.create_tenant("A").await;
    let (_, key) = app.create_key(&a, "owner").await;
    let op = app.operator_token().await;
    let res = app
        .request(Method::DELETE, &format!("/api/v1/tenants/{a}"), &op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get(&format!("/api/v1/tenants/{a}"), &op).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        app.get("/api/v1/auth/me", &key).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn lists_page_with_cursors(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_tenant(&format!("T{i}")).await);
    }
    let op = app.operator_token().await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/tenants?limit=2".to_string();
    loop {
        let page: Value = app.get(&path, &op).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/tenants?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, created, "every tenant once, in creation order");
    let res = app.get("/api/v1/tenants?cursor=garbage", &op).await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["errors"][0]["field"], "cursor");
}

/// A request's body.
enum Body {
    None,
    Json(Value),
    Yaml(&'static str),
}

/// One request, tried with tenant B's key and then with tenant A's.
struct Act {
    method: Method,
    path: String,
    body: Body,
    /// `X-Integro-Tenant`, naming the tenant to act in.
    tenant: Option<String>,
}

impl Act {
    fn new(method: Method, path: impl Into<String>) -> Act {
        Act {
            method,
            path: path.into(),
            body: Body::None,
            tenant: None,
        }
    }

    fn json(mut self, body: Value) -> Act {
        self.body = Body::Json(body);
        self
    }

    fn yaml(mut self, body: &'static str) -> Act {
        self.body = Body::Yaml(body);
        self
    }

    fn in_tenant(mut self, tenant: &str) -> Act {
        self.tenant = Some(tenant.to_string());
        self
    }
}

/// Two tenants on one server, each with an owner's key; providers are a
/// local mock.
struct Two {
    app: TestApp,
    provider: MockServer,
    a: String,
    key_a: String,
    key_b: String,
}

impl Two {
    /// With `workers` running jobs (none: jobs stay as they were queued).
    async fn start(kind: DbKind, workers: usize) -> Option<Two> {
        let (app, provider) = channels::start(kind, workers).await?;
        let a = app.create_tenant("A").await;
        let b = app.create_tenant("B").await;
        let (_, key_a) = app.create_key(&a, "owner").await;
        let (_, key_b) = app.create_key(&b, "owner").await;
        Some(Two {
            app,
            provider,
            a,
            key_a,
            key_b,
        })
    }

    /// A Twilio WhatsApp account of A's `bot`, its provider the mock.
    async fn twilio_account(&self, bot: &Value) -> Value {
        self.create(
            &self.key_a,
            "/api/v1/accounts",
            json!({ "bot_id": id(bot), "kind": "twilio_whatsapp", "name": "WhatsApp",
                    "credentials": { "account_sid": "AC123", "auth_token": AUTH_TOKEN, "phone_number": "+14155238886" } }),
        )
        .await
    }

    /// A contact's message to `account`, signed with A's Twilio token.
    async fn twilio_webhook(&self, account: &Value, sid: &str, body: &str) -> Response {
        let path = format!("/webhooks/twilio/{}", id(account));
        let params: Vec<(String, String)> = [
            ("MessageSid", sid),
            ("AccountSid", "AC123"),
            ("From", "whatsapp:+15550001111"),
            ("To", "whatsapp:+14155238886"),
            ("Body", body),
            ("NumMedia", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
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

    /// Waits until A has jobs and each has finished (done, dead or cancelled).
    async fn settled(&self) {
        channels::wait_until(Duration::from_secs(20), || async {
            let page: Value = self
                .app
                .get("/api/v1/jobs", &self.key_a)
                .await
                .json()
                .await
                .unwrap();
            let jobs = page["items"].as_array().unwrap();
            !jobs.is_empty()
                && jobs
                    .iter()
                    .all(|j| ["done", "dead", "cancelled"].contains(&j["state"].as_str().unwrap()))
        })
        .await;
    }

    /// A's one conversation.
    async fn only_conversation(&self) -> Value {
        let page: Value = self
            .app
            .get("/api/v1/conversations", &self.key_a)
            .await
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{page}");
        items[0].clone()
    }

    async fn send(&self, key: &str, act: &Act) -> Response {
        let mut req = self.app.request(act.method.clone(), &act.path, key);
        if let Some(tenant) = &act.tenant {
            req = req.header("x-integro-tenant", tenant);
        }
        req = match &act.body {
            Body::None => req,
            Body::Json(body) => req.json(body),
            Body::Yaml(body) => req.header("content-type", "application/yaml").body(*body),
        };
        req.send().await.unwrap()
    }

    /// B's key on A's resource: 404 `not_found`, as if it did not exist.
    async fn refused(&self, act: &Act) {
        let res = self.send(&self.key_b, act).await;
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = res.text().await.unwrap();
        let what = format!("{} {} with another tenant's key", act.method, act.path);
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {text}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{what}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], "not_found", "{what}: {body}");
    }

    /// The same request with A's key answers `status`; its body as JSON
    /// (`Null` when empty; an event stream is not read).
    async fn allowed(&self, act: &Act, status: StatusCode) -> Value {
        let res = self.send(&self.key_a, act).await;
        let what = format!("{} {} with the owner's key", act.method, act.path);
        let got = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        if content_type.starts_with("text/event-stream") {
            assert_eq!(got, status, "{what}");
            return Value::Null;
        }
        let text = res.text().await.unwrap();
        assert_eq!(got, status, "{what}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
    }

    /// `POST path` with `key`: 201; the created resource.
    async fn create(&self, key: &str, path: &str, body: Value) -> Value {
        let res = self.app.post(path, key, body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// B's key pointing B's own resource at one of A's: 422 on `field`.
    async fn invalid_reference(&self, act: &Act, field: &str) {
        let what = format!(
            "{} {} naming another tenant's resource",
            act.method, act.path
        );
        let res = self.send(&self.key_b, act).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{what}");
        let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(body["errors"][0]["field"], field, "{what}: {body}");
    }

    /// What A's key reads at each of `paths`, then A's audit log: what B's
    /// requests must leave as it was.
    async fn snapshot(&self, paths: &[&str]) -> Vec<Value> {
        assert!(!paths.is_empty());
        let mut seen = Vec::new();
        for path in paths {
            let res = self.app.get(path, &self.key_a).await;
            let status = res.status();
            let text = res.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "GET {path}: {text}");
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            seen.push(json!({ "path": path, "body": body }));
        }
        seen.push(json!({ "audit_log": self.audit_a().await }));
        seen
    }

    /// Tenant A's audit log (all of it: a test writes far fewer than a page).
    async fn audit_a(&self) -> Vec<Value> {
        let res = self
            .app
            .get("/api/v1/audit-log?limit=200", &self.key_a)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["next_cursor"], Value::Null, "more than a page");
        page["items"].as_array().unwrap().clone()
    }

    /// Every request of `acts`, with B's key: refused, and A's view of
    /// `watched` (and audit log) unchanged.
    async fn refuse_all(&self, acts: &[Act], watched: &[&str]) {
        assert!(!acts.is_empty());
        let before = self.snapshot(watched).await;
        for act in acts {
            self.refused(act).await;
        }
        assert_eq!(
            self.snapshot(watched).await,
            before,
            "another tenant's requests changed A's resources"
        );
    }
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

async fn bots_and_rules_are_changed_by_their_tenant_only(kind: DbKind) {
    let Some(t) = Two::start(kind, 0).await else {
        return;
    };
    let bot = t
        .create(
            &t.key_a,
            "/api/v1/bots",
            json!({ "name": "Helper", "fallback_reply": "A's fallback" }),
        )
        .await;
    let bot_path = format!("/api/v1/bots/{}", id(&bot));
    let persona_path = format!("{bot_path}/persona");
    let rules_path = format!("{bot_path}/rules");
    let export_path = format!("{rules_path}/export");
    let rule = t
        .create(
            &t.key_a,
            &rules_path,
            json!({ "match": "starts_with", "pattern": "price", "reply": "It costs 5." }),
        )
        .await;
    let rule_path = format!("{rules_path}/{}", id(&rule));
    // B's own bot, under which B names A's rule.
    let b_bot = t
        .create(
            &t.key_b,
            "/api/v1/bots",
            json!({ "name": "Other", "fallback_reply": "B's fallback" }),
        )
        .await;
    let rule_under_b = format!("/api/v1/bots/{}/rules/{}", id(&b_bot), id(&rule));

    let acts = [
        Act::new(Method::PATCH, &bot_path)
            .json(json!({ "name": "Taken", "fallback_reply": "B was here" })),
        Act::new(Method::PUT, &persona_path).json(json!({ "name": "Mallory", "tone": "sly" })),
        Act::new(Method::POST, format!("{bot_path}/try")).json(json!({ "text": "price?" })),
        Act::new(Method::POST, &rules_path).json(json!({ "pattern": "hours", "reply": "Never." })),
        Act::new(Method::PATCH, &rule_path).json(json!({ "reply": "Free!" })),
        Act::new(Method::DELETE, &rule_path),
        Act::new(Method::GET, &export_path),
        Act::new(Method::POST, format!("{rules_path}/import"))
            .yaml("rules:\n- pattern: hello\n  reply: Hi there.\n"),
        Act::new(Method::DELETE, &bot_path),
    ];
    let mut refused = acts.iter().collect::<Vec<_>>();
    let by_other_bot = [
        Act::new(Method::GET, &rule_under_b),
        Act::new(Method::PATCH, &rule_under_b).json(json!({ "reply": "Free!" })),
        Act::new(Method::DELETE, &rule_under_b),
    ];
    refused.extend(&by_other_bot);
    let watched = [
        bot_path.as_str(),
        &persona_path,
        &rules_path,
        &rule_path,
        &export_path,
    ];
    let before = t.snapshot(&watched).await;
    for act in refused {
        t.refused(act).await;
    }
    assert_eq!(t.snapshot(&watched).await, before);

    // The same requests with A's key.
    let audit = t.audit_a().await.len();
    let [
        patch_bot,
        put_persona,
        try_bot,
        create_rule,
        patch_rule,
        delete_rule,
        export,
        import,
        delete_bot,
    ] = &acts;
    assert_eq!(t.allowed(patch_bot, StatusCode::OK).await["name"], "Taken");
    assert_eq!(
        t.allowed(put_persona, StatusCode::OK).await["name"],
        "Mallory"
    );
    assert_eq!(
        t.allowed(try_bot, StatusCode::OK).await["replies"],
        json!(["It costs 5."])
    );
    assert_eq!(
        t.allowed(create_rule, StatusCode::CREATED).await["pattern"],
        "hours"
    );
    assert_eq!(
        t.allowed(patch_rule, StatusCode::OK).await["reply"],
        "Free!"
    );
    t.allowed(delete_rule, StatusCode::NO_CONTENT).await;
    let yaml = t.allowed(export, StatusCode::OK).await;
    assert!(yaml.as_str().unwrap().contains("hours"), "{yaml}");
    assert_eq!(t.allowed(import, StatusCode::OK).await["imported"], 1);
    t.allowed(delete_bot, StatusCode::NO_CONTENT).await;
    assert_problem(
        t.app.get(&bot_path, &t.key_a).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(
        t.audit_a().await.len() > audit,
        "A's changes are in its audit log (so an unchanged log means something)"
    );
}

async fn ai_credentials_and_profiles_are_changed_by_their_tenant_only(kind: DbKind) {
    let Some(t) = Two::start(kind, 0).await else {
        return;
    };
    let llm = MockServer::start().await;
    let credential = t
        .create(
            &t.key_a,
            "/api/v1/ai-credentials",
            json!({ "name": "main", "provider": "openai_compatible", "api_key": "sk-tenant-a",
                    "base_url": format!("{}/v1", llm.uri()) }),
        )
        .await;
    let credential_path = format!("/api/v1/ai-credentials/{}", id(&credential));
    let profile = t
        .create(
            &t.key_a,
            "/api/v1/ai-profiles",
            json!({ "name": "default", "credential_id": id(&credential), "model": "small" }),
        )
        .await;
    let profile_path = format!("/api/v1/ai-profiles/{}", id(&profile));

    let acts = [
        Act::new(Method::PATCH, &credential_path)
            .json(json!({ "name": "renamed", "api_key": "sk-replaced" })),
        Act::new(Method::POST, format!("{credential_path}/test")).json(json!({})),
        Act::new(Method::PATCH, &profile_path)
            .json(json!({ "model": "large", "temperature": 1.5, "max_output_tokens": 9 })),
        Act::new(Method::DELETE, &profile_path),
        Act::new(Method::DELETE, &credential_path),
    ];
    let watched = [
        credential_path.as_str(),
        &profile_path,
        "/api/v1/ai-credentials",
        "/api/v1/ai-profiles",
    ];
    let before = t.snapshot(&watched).await;
    t.refuse_all(&acts, &watched).await;
    assert!(
        llm.received_requests().await.unwrap().is_empty(),
        "another tenant's test reached A's provider with A's key"
    );

    // Nor can B's own profiles and bots use A's credential or profile.
    let b_credential = t
        .create(
            &t.key_b,
            "/api/v1/ai-credentials",
            json!({ "name": "b", "provider": "openai", "api_key": "sk-tenant-b" }),
        )
        .await;
    let b_profile = t
        .create(
            &t.key_b,
            "/api/v1/ai-profiles",
            json!({ "name": "b", "credential_id": id(&b_credential), "model": "small" }),
        )
        .await;
    t.invalid_reference(
        &Act::new(Method::POST, "/api/v1/ai-profiles")
            .json(json!({ "name": "stolen", "credential_id": id(&credential), "model": "small" })),
        "credential_id",
    )
    .await;
    let b_profile_path = format!("/api/v1/ai-profiles/{}", id(&b_profile));
    t.invalid_reference(
        &Act::new(Method::PATCH, &b_profile_path).json(json!({ "credential_id": id(&credential) })),
        "credential_id",
    )
    .await;
    t.invalid_reference(
        &Act::new(Method::PATCH, &b_profile_path)
            .json(json!({ "fallback_profile_id": id(&profile) })),
        "fallback_profile_id",
    )
    .await;
    t.invalid_reference(
        &Act::new(Method::POST, "/api/v1/bots")
            .json(json!({ "name": "b", "fallback_reply": "b", "ai_profile_id": id(&profile) })),
        "ai_profile_id",
    )
    .await;
    assert_eq!(t.snapshot(&watched).await, before);

    // The same requests with A's key.
    let [
        patch_credential,
        test,
        patch_profile,
        delete_profile,
        delete_credential,
    ] = &acts;
    assert_eq!(
        t.allowed(patch_credential, StatusCode::OK).await["name"],
        "renamed"
    );
    let result = t.allowed(test, StatusCode::OK).await;
    assert!(result["ok"].is_boolean(), "{result}");
    let calls = llm.received_requests().await.unwrap();
    assert!(!calls.is_empty(), "the owner's test reached the provider");
    assert_eq!(calls[0].headers["authorization"], "Bearer sk-replaced");
    let changed = t.allowed(patch_profile, StatusCode::OK).await;
    assert_eq!(
        (
            changed["model"].as_str(),
            changed["max_output_tokens"].as_u64()
        ),
        (Some("large"), Some(9))
    );
    t.allowed(delete_profile, StatusCode::NO_CONTENT).await;
    t.allowed(delete_credential, StatusCode::NO_CONTENT).await;
    assert_problem(
        t.app.get(&credential_path, &t.key_a).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

async fn accounts_and_web_channels_are_used_by_their_tenant_only(kind: DbKind) {
    let Some(t) = Two::start(kind, 2).await else {
        return;
    };
    Mock::given(method("POST"))
        .respond_with(channels::TwilioAccepts::default())
        .mount(&t.provider)
        .await;
    let bot = t
        .create(
            &t.key_a,
            "/api/v1/bots",
            json!({ "name": "Helper", "fallback_reply": "Hello from A" }),
        )
        .await;
    let twilio = t.twilio_account(&bot).await;
    let web = t
        .create(
            &t.key_a,
            "/api/v1/accounts",
            json!({ "bot_id": id(&bot), "kind": "web", "name": "Site" }),
        )
        .await;
    let twilio_path = format!("/api/v1/accounts/{}", id(&twilio));
    let web_path = format!("/api/v1/accounts/{}", id(&web));
    let web_channel = format!("/api/v1/web/{}", id(&web));
    // A's contact has a conversation already, which B's message would join.
    let res = t
        .app
        .post(
            &format!("{web_channel}/messages"),
            &t.key_a,
            json!({ "contact_id": "c1", "text": "first" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    t.settled().await;
    let conversation = t.only_conversation().await;
    let conversation_messages = format!("/api/v1/conversations/{}/messages", id(&conversation));

    let acts = [
        Act::new(Method::PATCH, &twilio_path).json(
            json!({ "name": "Taken", "active": false, "credentials": { "auth_token": "b-token" } }),
        ),
        Act::new(Method::DELETE, &twilio_path),
        Act::new(Method::POST, format!("{web_channel}/messages"))
            .json(json!({ "contact_id": "c1", "text": "second" })),
        Act::new(Method::GET, format!("{web_channel}/messages?contact_id=c1")),
        Act::new(Method::GET, format!("{web_channel}/events?contact_id=c1")),
        Act::new(Method::PATCH, &web_path).json(json!({ "name": "Taken" })),
        Act::new(Method::DELETE, &web_path),
    ];
    let watched = [
        twilio_path.as_str(),
        &web_path,
        "/api/v1/accounts",
        "/api/v1/conversations",
        &conversation_messages,
        "/api/v1/jobs",
    ];
    t.refuse_all(&acts, &watched).await;

    // Nor can B's own accounts belong to A's bot.
    t.invalid_reference(
        &Act::new(Method::POST, "/api/v1/accounts")
            .json(json!({ "bot_id": id(&bot), "kind": "web", "name": "Stolen" })),
        "bot_id",
    )
    .await;
    let b_bot = t
        .create(
            &t.key_b,
            "/api/v1/bots",
            json!({ "name": "Other", "fallback_reply": "B's" }),
        )
        .await;
    let b_web = t
        .create(
            &t.key_b,
            "/api/v1/accounts",
            json!({ "bot_id": id(&b_bot), "kind": "web", "name": "B's site" }),
        )
        .await;
    t.invalid_reference(
        &Act::new(Method::PATCH, format!("/api/v1/accounts/{}", id(&b_web)))
            .json(json!({ "bot_id": id(&bot) })),
        "bot_id",
    )
    .await;
    assert_eq!(
        t.app
            .get(&format!("/api/v1/accounts/{}", id(&b_web)), &t.key_b)
            .await
            .json::<Value>()
            .await
            .unwrap()["bot_id"],
        id(&b_bot)
    );

    // A's Twilio token (never shown) still verifies A's webhooks.
    let res = t.twilio_webhook(&twilio, "SMa1", "hello").await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );

    // The same requests with A's key.
    let [
        patch_twilio,
        delete_twilio,
        post_message,
        read_messages,
        events,
        patch_web,
        delete_web,
    ] = &acts;
    let changed = t.allowed(patch_twilio, StatusCode::OK).await;
    assert_eq!(
        (changed["name"].as_str(), changed["active"].as_bool()),
        (Some("Taken"), Some(false))
    );
    t.allowed(delete_twilio, StatusCode::NO_CONTENT).await;
    let accepted = t.allowed(post_message, StatusCode::ACCEPTED).await;
    assert_eq!(accepted["duplicate"], false);
    // The message is filed into the conversation as its reply is decided.
    channels::wait_until(Duration::from_secs(20), || async {
        let read = t.allowed(read_messages, StatusCode::OK).await;
        let inbound: Vec<&str> = read["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .filter_map(|m| m["body"].as_str())
            .collect();
        inbound == ["first", "second"]
    })
    .await;
    t.allowed(events, StatusCode::OK).await;
    assert_eq!(t.allowed(patch_web, StatusCode::OK).await["name"], "Taken");
    t.allowed(delete_web, StatusCode::NO_CONTENT).await;
}

async fn conversations_and_jobs_are_acted_on_by_their_tenant_only(kind: DbKind) {
    let Some(t) = Two::start(kind, 2).await else {
        return;
    };
    // The provider refuses every send for good: the send jobs die, and a
    // dead job can be cancelled and retried.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400
        })))
        .mount(&t.provider)
        .await;
    let bot = t
        .create(
            &t.key_a,
            "/api/v1/bots",
            json!({ "name": "Helper", "fallback_reply": "Hello from A" }),
        )
        .await;
    let twilio = t.twilio_account(&bot).await;
    let res = t.twilio_webhook(&twilio, "SMa1", "hello").await;
    assert_eq!(res.status(), StatusCode::OK);
    t.settled().await;
    let conversation = t.only_conversation().await;
    assert_eq!(conversation["state"], "bot");
    let list: Value = t
        .app
        .get("/api/v1/jobs?state=dead", &t.key_a)
        .await
        .json()
        .await
        .unwrap();
    let dead = list["items"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "the reply's send died: {list}");
    let job = &dead[0];
    let conversation_path = format!("/api/v1/conversations/{}", id(&conversation));
    let job_path = format!("/api/v1/jobs/{}", id(job));

    let acts = [
        Act::new(Method::POST, format!("{conversation_path}/handoff")),
        Act::new(Method::POST, format!("{conversation_path}/resume")),
        Act::new(Method::POST, format!("{conversation_path}/reset")),
        Act::new(Method::POST, format!("{conversation_path}/messages"))
            .json(json!({ "text": "An agent speaking" })),
        Act::new(Method::POST, format!("{job_path}/cancel")),
        Act::new(Method::POST, format!("{job_path}/retry")),
        Act::new(Method::GET, format!("{conversation_path}/messages")),
        Act::new(Method::GET, format!("{conversation_path}/transitions")),
    ];
    let messages_path = format!("{conversation_path}/messages");
    let transitions_path = format!("{conversation_path}/transitions");
    let watched = [
        conversation_path.as_str(),
        &messages_path,
        &transitions_path,
        &job_path,
        "/api/v1/jobs",
        "/api/v1/conversations",
    ];
    t.refuse_all(&acts, &watched).await;
    assert_eq!(
        t.provider.received_requests().await.unwrap().len(),
        1,
        "only the bot's reply was tried"
    );

    // Nor can B's dry run read A's conversation through B's own bot.
    let b_bot = t
        .create(
            &t.key_b,
            "/api/v1/bots",
            json!({ "name": "Other", "fallback_reply": "B's" }),
        )
        .await;
    t.invalid_reference(
        &Act::new(Method::POST, format!("/api/v1/bots/{}/try", id(&b_bot)))
            .json(json!({ "text": "hi", "conversation_id": id(&conversation) })),
        "conversation_id",
    )
    .await;

    // The same requests with A's key.
    let [
        handoff,
        resume,
        reset,
        send,
        cancel,
        retry,
        messages,
        transitions,
    ] = &acts;
    assert_eq!(t.allowed(handoff, StatusCode::OK).await["state"], "human");
    assert_eq!(t.allowed(resume, StatusCode::OK).await["state"], "bot");
    t.allowed(reset, StatusCode::OK).await;
    let sent = t.allowed(send, StatusCode::ACCEPTED).await;
    assert_eq!(
        (sent["direction"].as_str(), sent["sender"].as_str()),
        (Some("outbound"), Some("agent"))
    );
    assert_eq!(
        t.allowed(cancel, StatusCode::OK).await["state"],
        "cancelled"
    );
    // Ready again, unless a worker took it at once.
    let retried = t.allowed(retry, StatusCode::OK).await;
    assert_ne!(retried["state"], "cancelled", "{retried}");
    let messages = t.allowed(messages, StatusCode::OK).await;
    assert!(
        messages["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["sender"] == "agent"),
        "{messages}"
    );
    let transitions = t.allowed(transitions, StatusCode::OK).await;
    assert!(
        transitions.as_array().unwrap().len() >= 3,
        "handoff, resume, the agent's message: {transitions}"
    );
    let actions: Vec<Value> = t
        .audit_a()
        .await
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    for action in ["conversation.reset", "job.cancel", "job.retry"] {
        assert!(actions.contains(&json!(action)), "{action} in {actions:?}");
    }
}

async fn tenant_wide_writes_stay_in_the_tenant(kind: DbKind) {
    let Some(t) = Two::start(kind, 0).await else {
        return;
    };
    let tenant_path = format!("/api/v1/tenants/{}", t.a);
    let acts = [
        Act::new(Method::PATCH, &tenant_path).json(json!({ "name": "Taken" })),
        Act::new(Method::PATCH, "/api/v1/settings")
            .json(json!({ "monthly_token_budget": 7 }))
            .in_tenant(&t.a),
        Act::new(Method::POST, "/api/v1/api-keys")
            .json(json!({ "name": "backdoor", "role": "owner" }))
            .in_tenant(&t.a),
        Act::new(Method::POST, "/api/v1/invitations")
            .json(json!({ "email": "mallory@example.com", "role": "owner" }))
            .in_tenant(&t.a),
    ];
    let watched = [
        tenant_path.as_str(),
        "/api/v1/settings",
        "/api/v1/api-keys",
        "/api/v1/invitations",
        "/api/v1/members",
    ];
    t.refuse_all(&acts, &watched).await;
    t.refused(&Act::new(Method::DELETE, &tenant_path)).await;
    assert_eq!(t.snapshot(&watched).await[0]["body"]["name"], "A");

    // The same requests with A's key.
    let [rename, settings, api_key, invitation] = &acts;
    assert_eq!(t.allowed(rename, StatusCode::OK).await["name"], "Taken");
    assert_eq!(
        t.allowed(settings, StatusCode::OK).await["monthly_token_budget"],
        7
    );
    assert_eq!(
        t.allowed(api_key, StatusCode::CREATED).await["tenant_id"],
        t.a.as_str()
    );
    t.allowed(invitation, StatusCode::CREATED).await;
}

db_tests!(
    other_tenants_resources_answer_404,
    users_see_only_their_tenants,
    deleted_tenants_disappear_and_their_keys_stop,
    lists_page_with_cursors,
    bots_and_rules_are_changed_by_their_tenant_only,
    ai_credentials_and_profiles_are_changed_by_their_tenant_only,
    accounts_and_web_channels_are_used_by_their_tenant_only,
    conversations_and_jobs_are_acted_on_by_their_tenant_only,
    tenant_wide_writes_stay_in_the_tenant,
);
