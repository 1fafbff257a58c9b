//! A web account's public mode: a website's visitors chat from its pages
//! with a publishable key and a visitor token each, never an API key.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::channels::{FALLBACK, Loop, read_until, wait_until};
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};

const SHOP: &str = "https://shop.example.com";
const ELSEWHERE: &str = "https://evil.example.net";
/// The API's own CORS list (the dashboard's origin) in these tests.
const DASHBOARD: &str = "https://dashboard.example.org";

/// A tenant with a bot and a web account in public mode for `SHOP`.
struct Site {
    t: Loop,
    /// The account's publishable key.
    key: String,
}

/// What a page sends with a request.
#[derive(Clone, Copy)]
struct Page<'a> {
    /// `Origin` (none: no header).
    origin: Option<&'a str>,
    /// `Authorization: Bearer …`
    token: Option<&'a str>,
    /// `x-integro-publishable-key`
    key: Option<&'a str>,
}

/// The shop's page with `token`.
fn shop(token: &str) -> Page<'_> {
    Page {
        origin: Some(SHOP),
        token: Some(token),
        key: None,
    }
}

/// A page of `origin` (none: no Origin header) with publishable `key`.
fn keyed<'a>(origin: Option<&'a str>, key: Option<&'a str>) -> Page<'a> {
    Page {
        origin,
        token: None,
        key,
    }
}

impl Site {
    async fn new(kind: DbKind, workers: usize) -> Option<Site> {
        let (app, provider) = crate::channels::start_with(kind, |c| {
            c.workers = workers;
            c.cors_origins = vec![DASHBOARD.into()];
        })
        .await?;
        let t = Loop::with_app(app, provider, "web", json!({})).await;
        let key = enable(&t, &t.account_id, &t.key).await;
        Some(Site { t, key })
    }

    /// The site's tenant id.
    async fn tenant(&self) -> String {
        let account = self
            .t
            .get(&format!("/api/v1/accounts/{}", self.t.account_id))
            .await;
        account["tenant_id"].as_str().unwrap().to_string()
    }

    /// A request to `route` of `account`'s visitor routes, as `page` sends it.
    async fn call_at(
        &self,
        account: &str,
        page: Page<'_>,
        method: Method,
        route: &str,
        body: Option<Value>,
    ) -> Response {
        let url = self
            .t
            .app
            .url(&format!("/api/v1/web-public/{account}/{route}"));
        let mut req = self.t.app.client.request(method, url);
        if let Some(origin) = page.origin {
            req = req.header("origin", origin);
        }
        if let Some(token) = page.token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = page.key {
            req = req.header("x-integro-publishable-key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    /// `call_at` this site's account.
    async fn call(
        &self,
        page: Page<'_>,
        method: Method,
        route: &str,
        body: Option<Value>,
    ) -> Response {
        self.call_at(&self.t.account_id, page, method, route, body)
            .await
    }

    /// `POST …/sessions` with `body`.
    async fn start(&self, page: Page<'_>, body: Value) -> Response {
        self.call(page, Method::POST, "sessions", Some(body)).await
    }

    /// A new visitor's session from the shop's pages: (visitor id, token).
    async fn session(&self) -> (String, String) {
        let res = self
            .start(keyed(Some(SHOP), Some(&self.key)), json!({}))
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        assert_eq!(res.headers()["access-control-allow-origin"], SHOP);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["resumed"], false);
        (
            body["visitor_id"].as_str().unwrap().to_string(),
            body["visitor_token"].as_str().unwrap().to_string(),
        )
    }

    async fn say(&self, token: &str, text: &str) -> Response {
        let body = json!({ "text": text });
        self.call(shop(token), Method::POST, "messages", Some(body))
            .await
    }

    async fn read(&self, token: &str) -> Response {
        self.call(shop(token), Method::GET, "messages", None).await
    }

    async fn items(&self, token: &str) -> Vec<Value> {
        let res = self.read(token).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// `PUT /api/v1/accounts/{account}/web-public` with `api_key`.
    async fn set(&self, api_key: &str, account: &str, body: Value) -> Response {
        put_settings(&self.t, api_key, account, body).await
    }
}

async fn put_settings(t: &Loop, api_key: &str, account: &str, body: Value) -> Response {
    t.app
        .request(
            Method::PUT,
            &format!("/api/v1/accounts/{account}/web-public"),
            api_key,
        )
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Another tenant on the same server, with a web account of its own.
struct Other {
    api_key: String,
    account_id: String,
}

async fn other_tenant(t: &Loop, name: &str) -> Other {
    let tenant = t.app.create_tenant(name).await;
    let (_, api_key) = t.app.create_key(&tenant, "admin").await;
    let res = t
        .app
        .post(
            "/api/v1/bots",
            &api_key,
            json!({ "name": "Other", "fallback_reply": "Other" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let bot = res.json::<Value>().await.unwrap()["id"].clone();
    let res = t
        .app
        .post(
            "/api/v1/accounts",
            &api_key,
            json!({ "bot_id": bot, "kind": "web", "name": "Web" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let account_id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    Other {
        api_key,
        account_id,
    }
}

/// Turns public mode on for `account` with `SHOP`; its publishable key.
async fn enable(t: &Loop, account: &str, api_key: &str) -> String {
    let body = json!({ "enabled": true, "allowed_origins": [format!("{SHOP}/")] });
    let res = put_settings(t, api_key, account, body).await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["enabled"], true);
    assert_eq!(
        body["allowed_origins"],
        json!([SHOP]),
        "kept as browsers send it"
    );
    assert!(body.get("key_hash").is_none());
    let key = body["publishable_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ipk_"));
    assert_eq!(body["key_prefix"], key[..10]);
    key
}

async fn a_visitor_chats_with_the_bot_and_sees_only_their_conversation(kind: DbKind) {
    let Some(site) = Site::new(kind, 2).await else {
        return;
    };
    let (visitor, token) = site.session().await;
    assert!(visitor.starts_with("vis_"));

    // The reply stream, as EventSource opens it: the token in the query.
    let page = keyed(Some(SHOP), None);
    let events = site
        .call(page, Method::GET, &format!("events?token={token}"), None)
        .await;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["access-control-allow-origin"], SHOP);
    let mut stream = events.bytes_stream();

    let res = site.say(&token, "Hello?").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.headers()["access-control-allow-origin"], SHOP);
    let vary: Vec<_> = res.headers().get_all("vary").iter().collect();
    assert!(vary.iter().any(|v| v.to_str().unwrap().contains("origin")));

    let seen = read_until(&mut stream, FALLBACK).await;
    assert!(
        !seen.contains("rule_id") && !seen.contains("account_id"),
        "a visitor sees the message, not its workings: {seen}"
    );

    wait_until(Duration::from_secs(10), || async {
        site.items(&token).await.len() == 2
    })
    .await;
    let items = site.items(&token).await;
    assert_eq!(items[0]["direction"], "inbound");
    assert_eq!(items[0]["body"], "Hello?");
    assert_eq!(items[1]["direction"], "outbound");
    assert_eq!(items[1]["body"], FALLBACK);
    assert!(items[1].get("from_id").is_none() && items[1].get("rule_id").is_none());

    // A reconnecting EventSource names the last event it saw: what came
    // after it arrives, though it came before the stream opened.
    let url = format!("/api/v1/web-public/{}/events", site.t.account_id);
    let events = site
        .t
        .app
        .client
        .get(site.t.app.url(&url))
        .query(&[("token", &token)])
        .header("origin", SHOP)
        .header("last-event-id", items[0]["id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let seen = read_until(&mut events.bytes_stream(), FALLBACK).await;
    assert!(seen.contains(items[1]["id"].as_str().unwrap()));

    // The tenant sees the same conversation through its API key, under the
    // visitor id the server chose.
    let page = site
        .t
        .get(&format!(
            "/api/v1/web/{}/messages?contact_id={visitor}",
            site.t.account_id
        ))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);

    // A second visitor has a conversation of their own.
    let (other, other_token) = site.session().await;
    assert_ne!(other, visitor);
    assert!(site.items(&other_token).await.is_empty());
    let res = site.say(&other_token, "Me too").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    wait_until(Duration::from_secs(10), || async {
        site.items(&other_token).await.len() == 2
    })
    .await;
    let mine: Vec<_> = site.items(&token).await;
    assert_eq!(
        mine.len(),
        2,
        "the first visitor's conversation is unchanged"
    );
    assert!(mine.iter().all(|m| m["body"] != "Me too"));

    // A message id is the visitor's own: the other visitor's use of the same
    // one is no duplicate.
    let site = &site;
    let send = |token: String| async move {
        let body = json!({ "text": "Again", "message_id": "m-1" });
        site.call(shop(&token), Method::POST, "messages", Some(body))
            .await
    };
    assert_eq!(send(token.clone()).await.status(), StatusCode::ACCEPTED);
    let again = send(token.clone()).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);
    assert_eq!(
        send(other_token.clone()).await.status(),
        StatusCode::ACCEPTED
    );

    // Resuming with a valid token keeps the visitor; a bad one starts anew.
    let body = json!({ "publishable_key": site.key, "visitor_token": token });
    let res = site.start(keyed(Some(SHOP), None), body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["visitor_id"], visitor.as_str());
    assert_eq!(body["resumed"], true);
    let body = json!({ "visitor_token": "not.a.token" });
    let res = site.start(keyed(Some(SHOP), Some(&site.key)), body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_ne!(
        res.json::<Value>().await.unwrap()["visitor_id"],
        visitor.as_str()
    );

    // The web channel's limits hold, and a visitor names nobody else.
    let res = site.say(&token, &"x".repeat(4097)).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let res = site.say(&token, " \u{7}\t ").await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let body = json!({ "text": "hi", "contact_id": "someone-else" });
    let res = site
        .call(shop(&token), Method::POST, "messages", Some(body))
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
}

async fn origins_are_checked_and_cors_answers_only_the_accounts(kind: DbKind) {
    let Some(site) = Site::new(kind, 1).await else {
        return;
    };
    let (_, token) = site.session().await;
    let lookalike = "https://shop.example.com.evil.net";
    for origin in [Some(ELSEWHERE), Some(DASHBOARD), Some(lookalike), None] {
        let res = site.start(keyed(origin, Some(&site.key)), json!({})).await;
        assert!(res.headers().get("access-control-allow-origin").is_none());
        assert_problem(res, StatusCode::FORBIDDEN, "origin_not_allowed").await;
        let page = Page {
            origin,
            ..shop(&token)
        };
        let res = site.call(page, Method::GET, "messages", None).await;
        assert_problem(res, StatusCode::FORBIDDEN, "origin_not_allowed").await;
        let body = json!({ "text": "hi" });
        let res = site.call(page, Method::POST, "messages", Some(body)).await;
        assert_problem(res, StatusCode::FORBIDDEN, "origin_not_allowed").await;
    }

    let preflight = |origin: &'static str, path: String| {
        site.t
            .app
            .client
            .request(Method::OPTIONS, site.t.app.url(&path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-integro-publishable-key",
            )
            .send()
    };
    let public = |route: &str| format!("/api/v1/web-public/{}/{route}", site.t.account_id);
    for route in ["sessions", "messages", "events"] {
        let res = preflight(SHOP, public(route)).await.unwrap();
        assert!(res.status().is_success(), "{route}: {}", res.status());
        let h = res.headers();
        assert_eq!(h["access-control-allow-origin"], SHOP);
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains("POST") && methods.contains("GET"));
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        for name in ["authorization", "content-type", "x-integro-publishable-key"] {
            assert!(allowed.contains(name), "{name} in {allowed}");
        }
        assert!(h.get("access-control-allow-credentials").is_none());
        // Neither another site nor the API's own CORS list opens these routes.
        for other in [ELSEWHERE, DASHBOARD] {
            let res = preflight(other, public(route)).await.unwrap();
            assert!(!res.status().is_success(), "{other} {route}");
            assert!(res.headers().get("access-control-allow-origin").is_none());
            assert!(res.headers().get("access-control-allow-methods").is_none());
        }
    }
    // While the API's own CORS still answers the dashboard, and only it.
    let bots = || "/api/v1/bots".to_string();
    let res = preflight(DASHBOARD, bots()).await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], DASHBOARD);
    let res = preflight(SHOP, bots()).await.unwrap();
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "a site's origin opens only its public routes"
    );

    // Turned off: there is no public chat here any more, for new sessions
    // and tokens alike, and no CORS either.
    let body = json!({ "enabled": false, "allowed_origins": [SHOP] });
    let res = site.set(&site.t.key, &site.t.account_id, body).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.json::<Value>()
            .await
            .unwrap()
            .get("publishable_key")
            .is_none()
    );
    let res = site
        .start(keyed(Some(SHOP), Some(&site.key)), json!({}))
        .await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(site.read(&token).await, StatusCode::NOT_FOUND, "not_found").await;
    let res = preflight(SHOP, public("sessions")).await.unwrap();
    assert!(!res.status().is_success());
    // An unknown account answers the same.
    let unknown = uuid::Uuid::now_v7().to_string();
    let page = keyed(Some(SHOP), Some(&site.key));
    let res = site
        .call_at(&unknown, page, Method::POST, "sessions", Some(json!({})))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

async fn tokens_and_keys_hold_for_their_visitor_and_account_only(kind: DbKind) {
    let Some(site) = Site::new(kind, 1).await else {
        return;
    };
    let (visitor, token) = site.session().await;
    assert_eq!(site.read(&token).await.status(), StatusCode::OK);

    // Another tenant's public web account, for the same origin.
    let other = other_tenant(&site.t, "Other shop").await;
    let other_key = enable(&site.t, &other.account_id, &other.api_key).await;
    let page = keyed(Some(SHOP), Some(&other_key));
    let res = site
        .call_at(
            &other.account_id,
            page,
            Method::POST,
            "sessions",
            Some(json!({})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let other_token = res.json::<Value>().await.unwrap()["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();

    // The other account's key does not open this one; nor does a guess.
    let res = site.start(page, json!({})).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_publishable_key").await;
    for body in [json!({}), json!({ "publishable_key": "ipk_guess" })] {
        let res = site.start(keyed(Some(SHOP), None), body).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_publishable_key").await;
    }

    let settings = integro_store::web_public::get(
        &site.t.app.state.db,
        site.tenant().await.parse().unwrap(),
        site.t.account_id.parse().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let visitors = &site.t.app.state.visitors;
    let expired = visitors.sign(&settings, &visitor, -5).0;
    let foreign_key = integro_server::api::web::public::Visitors::new(&[7; 32], None)
        .sign(&settings, &visitor, 600)
        .0;
    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 3.., "abc");
    let mut forged = token.split('.').map(String::from).collect::<Vec<_>>();
    forged[1] = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&b64.decode(&forged[1]).unwrap()).unwrap();
        claims["sub"] = json!("vis_someone_else");
        b64.encode(claims.to_string())
    };
    let forged = forged.join(".");
    let access = site.t.app.operator_token().await;
    for bad in [
        expired.as_str(),
        foreign_key.as_str(),
        tampered.as_str(),
        forged.as_str(),
        other_token.as_str(),
        access.as_str(),
        site.t.key.as_str(),
        site.key.as_str(),
    ] {
        assert_problem(
            site.read(bad).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        assert_problem(
            site.say(bad, "hi").await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        let page = keyed(Some(SHOP), None);
        let res = site
            .call(page, Method::GET, &format!("events?token={bad}"), None)
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let res = site
        .call(keyed(Some(SHOP), None), Method::GET, "messages", None)
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // A visitor token is no key to the API.
    let web = format!(
        "/api/v1/web/{}/messages?contact_id={visitor}",
        site.t.account_id
    );
    for path in ["/api/v1/bots", "/api/v1/auth/me", "/api/v1/accounts", &web] {
        let res = site.t.app.get(path, &token).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }

    // Rotating the key: the old key and the sessions started with it stop.
    let rotate = format!(
        "/api/v1/accounts/{}/web-public/rotate-key",
        site.t.account_id
    );
    let res = site.t.app.post(&rotate, &site.t.key, json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let new_key = res.json::<Value>().await.unwrap()["publishable_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_key, site.key);
    assert_problem(
        site.read(&token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let res = site
        .start(keyed(Some(SHOP), Some(&site.key)), json!({}))
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_publishable_key").await;
    let body = json!({ "visitor_token": token });
    let res = site.start(keyed(Some(SHOP), Some(&new_key)), body).await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "the old token resumes nobody"
    );
}

async fn settings_are_the_tenants_and_for_web_accounts_only(kind: DbKind) {
    let Some(site) = Site::new(kind, 1).await else {
        return;
    };
    let account = &site.t.account_id;
    let path = format!("/api/v1/accounts/{account}/web-public");
    let rotate = format!("{path}/rotate-key");

    let view = site.t.get(&path).await;
    assert_eq!(view["enabled"], true);
    assert!(view.get("publishable_key").is_none(), "shown once");
    let sessions = format!("/api/v1/web-public/{account}/sessions");
    assert!(
        view["endpoints"]["sessions"]
            .as_str()
            .unwrap()
            .ends_with(&sessions)
    );

    // Another tenant's key: as if the account did not exist.
    let other = other_tenant(&site.t, "Other shop").await;
    let res = site.t.app.get(&path, &other.api_key).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let body = json!({ "enabled": true, "allowed_origins": [ELSEWHERE] });
    let res = site.set(&other.api_key, account, body).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = site.t.app.post(&rotate, &other.api_key, json!({})).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(site.t.get(&path).await["allowed_origins"], json!([SHOP]));

    // A viewer reads; only managers change.
    let (_, viewer) = site.t.app.create_key(&site.tenant().await, "viewer").await;
    assert_eq!(
        site.t.app.get(&path, &viewer).await.status(),
        StatusCode::OK
    );
    let res = site
        .set(&viewer, account, json!({ "enabled": false }))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = site.t.app.post(&rotate, &viewer, json!({})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Origins: at least one to turn it on, each a bare origin.
    for (origins, field) in [
        (json!([]), "allowed_origins"),
        (
            json!([SHOP, "https://shop.example.com/chat"]),
            "allowed_origins[1]",
        ),
        (json!(["*"]), "allowed_origins[0]"),
        (json!(["shop.example.com"]), "allowed_origins[0]"),
    ] {
        let body = json!({ "enabled": true, "allowed_origins": origins });
        let res = site.set(&site.t.key, account, body).await;
        let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(body["errors"][0]["field"], field, "{origins}");
    }

    // Not a web account: 422, and no public chat there.
    let creds = json!({ "account_sid": "AC1", "auth_token": "t", "phone_number": "+14155238886" });
    let body = json!({ "bot_id": site.t.bot_id, "kind": "twilio_whatsapp", "name": "WA", "credentials": creds });
    let res = site.t.app.post("/api/v1/accounts", &site.t.key, body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let whatsapp = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({ "enabled": true, "allowed_origins": [SHOP] });
    let res = site.set(&site.t.key, &whatsapp, body).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "not_a_web_account").await;
    let page = keyed(Some(SHOP), Some(&site.key));
    let res = site
        .call_at(&whatsapp, page, Method::POST, "sessions", Some(json!({})))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // Every change is in the audit log, without the key.
    let log = site.t.get("/api/v1/audit-log").await;
    let changes = log["items"].as_array().unwrap().iter().filter(|e| {
        e["action"]
            .as_str()
            .is_some_and(|a| a.starts_with("account.web_public"))
    });
    assert!(changes.count() > 0);
    assert!(!log.to_string().contains(&site.key));
}

async fn visitors_are_rate_limited(kind: DbKind) {
    let Some(site) = Site::new(kind, 1).await else {
        return;
    };
    let (_, token) = site.session().await;
    let limit = integro_server::api::web::public::VISITOR_MESSAGES_PER_MINUTE;
    for i in 0..limit {
        let res = site.say(&token, &format!("message {i}")).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "message {i}");
    }
    let res = site.say(&token, "one too many").await;
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(res.headers()["access-control-allow-origin"], SHOP);
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another visitor has an allowance of their own.
    let (_, other) = site.session().await;
    assert_eq!(
        site.say(&other, "hello").await.status(),
        StatusCode::ACCEPTED
    );

    // Sessions per address.
    let mut refused = None;
    for i in 0..=integro_server::api::web::public::SESSIONS_PER_MINUTE {
        let res = site
            .start(keyed(Some(SHOP), Some(&site.key)), json!({}))
            .await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(i);
            break;
        }
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    assert!(refused.is_some(), "sessions are limited per address");
}

db_tests!(
    a_visitor_chats_with_the_bot_and_sees_only_their_conversation,
    origins_are_checked_and_cors_answers_only_the_accounts,
    tokens_and_keys_hold_for_their_visitor_and_account_only,
    settings_are_the_tenants_and_for_web_accounts_only,
    visitors_are_rate_limited,
);
