//! Posts on X (#38): written by agents, approved or rejected by admins,
//! published once at their time against a mock of X; a publication whose
//! answer was lost is found among the account's own posts rather than
//! posted twice; limits, roles, tenants and the audit log.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::{Loop, wait_until};
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};

db_tests!(
    posts_are_approved_and_published_once_at_their_time,
    a_publication_whose_answer_was_lost_is_adopted_not_posted_twice,
    posts_are_checked_and_kept_to_their_tenant,
    x_rules_for_automated_accounts_are_kept,
    ai_drafts_are_written_as_the_persona_and_wait_for_approval,
    past_the_x_spend_limit_only_replies_go_out,
);

const X_CREDS: &str = r#"{ "user_id": "4337869213", "consumer_key": "ck", "consumer_secret": "cs-secret",
    "access_token": "at", "access_token_secret": "ats" }"#;
const OWN_POSTS: &str = "/2/users/4337869213/tweets";

fn in_secs(secs: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&Rfc3339)
        .unwrap()
}

/// The tenant's X loop, with keys for an agent and a viewer besides the
/// admin's (`t.key`).
async fn x_loop(kind: DbKind) -> Option<(Loop, String, String)> {
    let t = Loop::new(kind, "x", serde_json::from_str(X_CREDS).unwrap(), 2).await?;
    let tenant = crate::dashboard::tenant_named(&t.app, "Shop").await;
    let (_, agent) = t.app.create_key(&tenant, "agent").await;
    let (_, viewer) = t.app.create_key(&tenant, "viewer").await;
    Some((t, agent, viewer))
}

async fn call(
    t: &Loop,
    key: &str,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = t.app.request(m, path, key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// The answer to a request that must succeed with 200.
async fn done(t: &Loop, key: &str, m: Method, path: &str, body: Option<Value>) -> Value {
    ok(call(t, key, m, path, body).await, StatusCode::OK).await
}

/// The answer to a request that must create something (201).
async fn created(t: &Loop, key: &str, m: Method, path: &str, body: Option<Value>) -> Value {
    ok(call(t, key, m, path, body).await, StatusCode::CREATED).await
}

async fn ok(res: reqwest::Response, status: StatusCode) -> Value {
    let got = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "{body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// A 422 naming `field`.
async fn refused(res: reqwest::Response, field: &str) -> Value {
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    problem
}

async fn tweets(t: &Loop) -> Vec<wiremock::Request> {
    t.provider_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/2/tweets")
        .collect()
}

async fn posts_are_approved_and_published_once_at_their_time(kind: DbKind) {
    let Some((t, agent, viewer)) = x_loop(kind).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path("/2/tweets"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "data": { "id": "1001", "text": "Spring sale" } })),
        )
        .mount(&t.provider)
        .await;
    let admin = t.key.clone();
    let media = "https://cdn.example.com/spring.png";

    // An agent writes a draft; a viewer cannot.
    let draft = json!({ "account_id": t.account_id, "text": "Spring sale starts soon",
        "media_urls": [media], "scheduled_at": in_secs(4), "made_with_ai": true });
    let res = call(
        &t,
        &viewer,
        Method::POST,
        "/api/v1/posts",
        Some(draft.clone()),
    )
    .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let post = created(&t, &agent, Method::POST, "/api/v1/posts", Some(draft)).await;
    assert_eq!(post["state"], "draft");
    assert_eq!(post["made_with_ai"], true);
    assert_eq!(post["created_by"], "api_key:agent key");
    let id = post["id"].as_str().unwrap().to_string();
    let at = |action: &str| format!("/api/v1/posts/{id}/{action}");
    let one = format!("/api/v1/posts/{id}");

    // Only a submitted post is approved, and not by an agent.
    let res = call(&t, &admin, Method::POST, &at("approve"), None).await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let post = done(&t, &agent, Method::POST, &at("submit"), None).await;
    assert_eq!(post["state"], "pending_approval");
    let res = call(&t, &agent, Method::POST, &at("approve"), None).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = call(
        &t,
        &agent,
        Method::POST,
        &at("reject"),
        Some(json!({ "reason": "no" })),
    )
    .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;

    // A rejection says why.
    for body in [
        json!({}),
        json!({ "reason": "  " }),
        json!({ "reason": "x".repeat(501) }),
    ] {
        let res = call(&t, &admin, Method::POST, &at("reject"), Some(body)).await;
        refused(res, "reason").await;
    }
    let post = done(
        &t,
        &admin,
        Method::POST,
        &at("reject"),
        Some(json!({ "reason": "Say which products" })),
    )
    .await;
    assert_eq!(post["state"], "rejected");
    assert_eq!(post["reject_reason"], "Say which products");

    // Changed, it is a draft again; submitted and approved, it is scheduled.
    let post = done(
        &t,
        &agent,
        Method::PATCH,
        &one,
        Some(json!({ "text": "Spring sale: shoes and hats" })),
    )
    .await;
    assert_eq!(post["state"], "draft");
    assert_eq!(post["reject_reason"], Value::Null);
    done(&t, &agent, Method::POST, &at("submit"), None).await;
    let post = done(&t, &admin, Method::POST, &at("approve"), None).await;
    assert_eq!(post["state"], "scheduled");
    assert_eq!(post["approved_by"], "api_key:admin key");

    // Changing an approved post sends it back for approval: the first
    // approval's job, due first, publishes nothing.
    let later = in_secs(7);
    let post = done(
        &t,
        &agent,
        Method::PATCH,
        &one,
        Some(json!({ "text": "Spring sale: shoes & hats", "scheduled_at": later })),
    )
    .await;
    assert_eq!(post["state"], "pending_approval");
    assert_eq!(post["approved_by"], Value::Null);
    let post = done(&t, &admin, Method::POST, &at("approve"), None).await;
    assert_eq!(post["state"], "scheduled");
    let scheduled_at =
        OffsetDateTime::parse(post["scheduled_at"].as_str().unwrap(), &Rfc3339).unwrap();

    // Two more approved posts: one deleted, one rejected before their time.
    let mut others = Vec::new();
    for text in ["Deleted before its time", "Rejected before its time"] {
        let p = created(&t, &agent, Method::POST, "/api/v1/posts", Some(json!({ "account_id": t.account_id, "text": text, "scheduled_at": in_secs(2), "submit": true }))).await;
        assert_eq!(p["state"], "pending_approval");
        let pid = p["id"].as_str().unwrap().to_string();
        done(
            &t,
            &admin,
            Method::POST,
            &format!("/api/v1/posts/{pid}/approve"),
            None,
        )
        .await;
        others.push(pid);
    }
    let res = call(
        &t,
        &agent,
        Method::DELETE,
        &format!("/api/v1/posts/{}", others[0]),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    done(
        &t,
        &admin,
        Method::POST,
        &format!("/api/v1/posts/{}/reject", others[1]),
        Some(json!({ "reason": "Not this week" })),
    )
    .await;
    assert!(
        tweets(&t).await.is_empty(),
        "nothing is published before its time"
    );

    // Published once, at its time, with its media link and AI disclosure.
    wait_until(Duration::from_secs(30), || async {
        !tweets(&t).await.is_empty()
    })
    .await;
    t.settled().await;
    let sent = tweets(&t).await;
    assert_eq!(sent.len(), 1, "published once");
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        body,
        json!({ "text": format!("Spring sale: shoes & hats\n{media}"), "made_with_ai": true })
    );
    assert!(
        sent[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("OAuth ")
    );
    let post = t.get(&one).await;
    assert_eq!(post["state"], "published");
    assert_eq!(post["provider_post_id"], "1001");
    let published_at =
        OffsetDateTime::parse(post["published_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(
        published_at >= scheduled_at,
        "{published_at} before {scheduled_at}"
    );

    // A published post stays as it is.
    let res = call(
        &t,
        &agent,
        Method::PATCH,
        &one,
        Some(json!({ "text": "Changed" })),
    )
    .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let res = call(&t, &admin, Method::DELETE, &one, None).await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let res = call(
        &t,
        &admin,
        Method::POST,
        &at("reject"),
        Some(json!({ "reason": "late" })),
    )
    .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let rejected = t.get(&format!("/api/v1/posts/{}", others[1])).await;
    assert_eq!(rejected["state"], "rejected");
    assert_eq!(rejected["provider_post_id"], Value::Null);
    let res = t
        .app
        .get(&format!("/api/v1/posts/{}", others[0]), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Lists by state and account.
    let published = t.get("/api/v1/posts?state=published").await;
    assert_eq!(published["items"].as_array().unwrap().len(), 1);
    let all = t
        .get(&format!(
            "/api/v1/posts?account_id={}&limit=1",
            t.account_id
        ))
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert!(all["next_cursor"].is_string());

    // Every decision is in the audit log, the publication as Integro's.
    let audit = t
        .get(&format!(
            "/api/v1/audit-log?target_kind=post&target_id={id}&limit=50"
        ))
        .await;
    let mut actions: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor_label"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    actions.reverse();
    let expected: Vec<(String, String)> = [
        ("post.create", "api_key:agent key"),
        ("post.submit", "api_key:agent key"),
        ("post.reject", "api_key:admin key"),
        ("post.update", "api_key:agent key"),
        ("post.submit", "api_key:agent key"),
        ("post.approve", "api_key:admin key"),
        ("post.update", "api_key:agent key"),
        ("post.approve", "api_key:admin key"),
        ("post.publish", "integro"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(actions, expected);
    let deleted = t
        .get(&format!(
            "/api/v1/audit-log?action=post.delete&target_id={}",
            others[0]
        ))
        .await;
    assert_eq!(deleted["items"].as_array().unwrap().len(), 1);
}

async fn a_publication_whose_answer_was_lost_is_adopted_not_posted_twice(kind: DbKind) {
    let Some((t, agent, _)) = x_loop(kind).await else {
        return;
    };
    // X refuses one post outright.
    Mock::given(method("POST"))
        .and(path("/2/tweets"))
        .and(body_string_contains("Forbidden words"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "title": "Forbidden", "detail": "You are not permitted to perform this action.",
            "type": "https://api.x.com/2/problems/client-forbidden", "status": 403 })))
        .with_priority(1)
        .mount(&t.provider)
        .await;
    // The other goes through, but its answer comes after the 2 s timeout.
    Mock::given(method("POST"))
        .and(path("/2/tweets"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "data": { "id": "2001", "text": "New hours & prices" } }))
                .set_delay(Duration::from_secs(4)),
        )
        .mount(&t.provider)
        .await;
    // Among the account's own posts: a reply with the same text (not it),
    // and the post as X returns it (escaped, the link shortened).
    Mock::given(method("GET"))
        .and(path(OWN_POSTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                { "id": "2002", "text": "@ann New hours &amp; prices", "referenced_tweets": [{ "type": "replied_to", "id": "9" }] },
                { "id": "2001", "text": "New hours &amp; prices\nhttps://t.co/abc" },
                { "id": "1999", "text": "Something older" }
            ],
            "meta": { "result_count": 3, "newest_id": "2002", "oldest_id": "1999" }
        })))
        .mount(&t.provider)
        .await;

    let mut ids = Vec::new();
    for text in ["New hours & prices", "Forbidden words"] {
        let post = created(&t, &agent, Method::POST, "/api/v1/posts", Some( json!({ "account_id": t.account_id, "text": text, "submit": true, "media_urls": ["https://cdn.example.com/hours.png"] }), )).await;
        let id = post["id"].as_str().unwrap().to_string();
        let post = done(
            &t,
            &t.key,
            Method::POST,
            &format!("/api/v1/posts/{id}/approve"),
            None,
        )
        .await;
        assert_eq!(post["state"], "scheduled");
        ids.push(id);
    }
    wait_until(Duration::from_secs(30), || async {
        t.get(&format!("/api/v1/posts/{}", ids[0])).await["state"] == "published"
    })
    .await;
    t.settled().await;

    let requests = t.provider_requests().await;
    let posted: Vec<String> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/2/tweets")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|text| text.starts_with("New hours"))
        .collect();
    assert_eq!(posted.len(), 1, "posted once: {posted:?}");
    let lookup = requests
        .iter()
        .find(|r| r.url.path() == OWN_POSTS)
        .expect("the account's own posts were read before publishing again");
    let query = lookup.url.query().unwrap();
    assert!(query.contains("start_time="), "{query}");
    assert!(query.contains("exclude=replies"), "{query}");

    let post = t.get(&format!("/api/v1/posts/{}", ids[0])).await;
    assert_eq!(post["provider_post_id"], "2001");
    assert!(post["publish_started_at"].is_string());

    // The refusal is permanent: failed with X's code, audited.
    let post = t.get(&format!("/api/v1/posts/{}", ids[1])).await;
    assert_eq!(post["state"], "failed", "{post}");
    assert_eq!(post["error_code"], "client-forbidden");
    assert!(
        post["error_message"]
            .as_str()
            .unwrap()
            .contains("not permitted"),
        "{post}"
    );
    let audit = t
        .get(&format!(
            "/api/v1/audit-log?action=post.fail&target_id={}",
            ids[1]
        ))
        .await;
    assert_eq!(audit["items"][0]["actor_label"], "integro", "{audit}");
    // A failed post can be changed and submitted again.
    let post = done(
        &t,
        &agent,
        Method::PATCH,
        &format!("/api/v1/posts/{}", ids[1]),
        Some(json!({ "text": "Kinder words" })),
    )
    .await;
    assert_eq!(post["state"], "draft");
}

async fn posts_are_checked_and_kept_to_their_tenant(kind: DbKind) {
    let Some((t, agent, _)) = x_loop(kind).await else {
        return;
    };
    let post = |body: Value| call(&t, &agent, Method::POST, "/api/v1/posts", Some(body));
    let with = |field: &str, value: Value| {
        let mut body = json!({ "account_id": t.account_id, "text": "Hello" });
        body[field] = value;
        body
    };
    let media = |n: usize| json!(vec!["https://cdn.example.com/a.png"; n]);
    for (body, field) in [
        (with("text", json!("   ")), "text"),
        (with("text", json!("a".repeat(281))), "text"),
        (with("text", json!("日".repeat(141))), "text"),
        (with("media_urls", media(5)), "media_urls"),
        (
            with("media_urls", json!(["http://cdn.example.com/a.png"])),
            "media_urls",
        ),
        (
            with(
                "media_urls",
                json!([format!("https://cdn.example.com/{}", "a".repeat(2000))]),
            ),
            "media_urls",
        ),
        (with("scheduled_at", json!(in_secs(-60))), "scheduled_at"),
        (
            with("scheduled_at", json!(in_secs(367 * 24 * 3600))),
            "scheduled_at",
        ),
        (with("scheduled_at", json!("tomorrow")), "scheduled_at"),
        (
            with("account_id", json!(uuid::Uuid::now_v7())),
            "account_id",
        ),
    ] {
        refused(post(body).await, field).await;
    }
    // The text with its media links must fit too; links count 23.
    let mut body = with("text", json!("a".repeat(256)));
    body["media_urls"] = media(1);
    ok(post(body.clone()).await, StatusCode::CREATED).await;
    body["text"] = json!("a".repeat(257));
    refused(post(body).await, "media_urls").await;
    let long_link = format!("https://example.com/{}", "a".repeat(300));
    ok(
        post(with(
            "text",
            json!(format!("{} {long_link}", "a".repeat(256))),
        ))
        .await,
        StatusCode::CREATED,
    )
    .await;

    // Only X accounts.
    let web = created(
        &t,
        &t.key,
        Method::POST,
        "/api/v1/accounts",
        Some(json!({ "bot_id": t.bot_id, "kind": "web", "name": "Site", "credentials": {} })),
    )
    .await;
    let problem = refused(
        post(with("account_id", web["id"].clone())).await,
        "account_id",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("X accounts"),
        "{problem}"
    );

    // A time that passed while the post waited is not approved.
    let p = ok(
        post(with("scheduled_at", json!(in_secs(1)))).await,
        StatusCode::CREATED,
    )
    .await;
    let id = p["id"].as_str().unwrap().to_string();
    done(
        &t,
        &agent,
        Method::POST,
        &format!("/api/v1/posts/{id}/submit"),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let approve = format!("/api/v1/posts/{id}/approve");
    refused(
        call(&t, &t.key, Method::POST, &approve, None).await,
        "scheduled_at",
    )
    .await;
    let one = format!("/api/v1/posts/{id}");
    let p = done(
        &t,
        &agent,
        Method::PATCH,
        &one,
        Some(json!({ "scheduled_at": in_secs(3600) })),
    )
    .await;
    assert_eq!(p["state"], "pending_approval");

    // Another tenant sees none of it.
    let other = t.app.create_tenant("Other").await;
    let (_, stranger) = t.app.create_key(&other, "owner").await;
    let res = call(&t, &stranger, Method::GET, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    for (m, path, body) in [
        (
            Method::PATCH,
            one.clone(),
            Some(json!({ "text": "mine now" })),
        ),
        (Method::DELETE, one.clone(), None),
        (Method::POST, approve.clone(), None),
        (
            Method::POST,
            format!("{one}/reject"),
            Some(json!({ "reason": "no" })),
        ),
        (Method::POST, format!("{one}/submit"), None),
    ] {
        let res = call(&t, &stranger, m, &path, body).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed = done(&t, &stranger, Method::GET, "/api/v1/posts", None).await;
    assert!(listed["items"].as_array().unwrap().is_empty());
    let res = call(
        &t,
        &stranger,
        Method::POST,
        "/api/v1/posts",
        Some(json!({ "account_id": t.account_id, "text": "Hello" })),
    )
    .await;
    refused(res, "account_id").await;
    assert_eq!(t.get(&one).await["state"], "pending_approval");

    // At most 1,000 posts not yet published per tenant.
    let tenant: uuid::Uuid = crate::dashboard::tenant_named(&t.app, "Shop")
        .await
        .parse()
        .unwrap();
    let db = &t.app.state.db;
    let mut tx = db.begin().await.unwrap();
    let unpublished: i64 = 3;
    for i in unpublished..integro_store::posts::MAX_UNPUBLISHED {
        integro_store::posts::create(
            &mut tx,
            tenant,
            &integro_core::Actor::system(),
            integro_store::posts::NewPost {
                account_id: t.account_id.parse().unwrap(),
                text: format!("Draft {i}"),
                media_urls: Vec::new(),
                made_with_ai: false,
                scheduled_at: None,
                state: integro_store::posts::PostState::Draft,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let problem = refused(
        post(with("text", json!("One too many"))).await,
        "account_id",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("1000"),
        "{problem}"
    );
}

/// X forbids the same content on several accounts and floods: approving a
/// post with the same text as another account's within a day, or past the
/// account's daily cap, is refused.
async fn x_rules_for_automated_accounts_are_kept(kind: DbKind) {
    let Some((t, _, _)) = x_loop(kind).await else {
        return;
    };
    let second = created(
        &t,
        &t.key,
        Method::POST,
        "/api/v1/accounts",
        Some(json!({ "bot_id": t.bot_id, "kind": "x", "name": "Second",
            "credentials": { "user_id": "5", "consumer_key": "ck", "consumer_secret": "cs", "access_token": "a", "access_token_secret": "b" } })),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |account: &str, text: &str, at: i64| json!({ "account_id": account, "text": text, "scheduled_at": in_secs(at), "submit": true });
    let first = created(
        &t,
        &t.key,
        Method::POST,
        "/api/v1/posts",
        Some(post(&t.account_id, "Fresh bread at 8", 3600)),
    )
    .await;
    done(
        &t,
        &t.key,
        Method::POST,
        &format!("/api/v1/posts/{}/approve", first["id"].as_str().unwrap()),
        None,
    )
    .await;
    // The same words (case and spacing aside) on the other account, hours later.
    let copy = created(
        &t,
        &t.key,
        Method::POST,
        "/api/v1/posts",
        Some(post(&second, "fresh  BREAD at 8", 7200)),
    )
    .await;
    let approve = format!("/api/v1/posts/{}/approve", copy["id"].as_str().unwrap());
    let res = call(&t, &t.key, Method::POST, &approve, None).await;
    let problem = refused(res, "text").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("identical content"),
        "{problem}"
    );
    // Two days later it is another day.
    done(
        &t,
        &t.key,
        Method::PATCH,
        &format!("/api/v1/posts/{}", copy["id"].as_str().unwrap()),
        Some(json!({ "scheduled_at": in_secs(3 * 24 * 3600) })),
    )
    .await;
    let approved = done(&t, &t.key, Method::POST, &approve, None).await;
    assert_eq!(approved["state"], "scheduled");
}

/// Asks for `count` AI drafts on the winter menu.
async fn draft(t: &Loop, key: &str, count: u32) -> reqwest::Response {
    let body = json!({ "account_id": t.account_id, "topic": "our winter menu", "count": count });
    call(t, key, Method::POST, "/api/v1/posts/drafts", Some(body)).await
}

/// AI drafts: written by the bot's LLM as its persona, with the trends
/// fetched lately, each marked made with AI and waiting for an admin.
async fn ai_drafts_are_written_as_the_persona_and_wait_for_approval(kind: DbKind) {
    let Some((t, agent, viewer)) = x_loop(kind).await else {
        return;
    };
    // Without an AI profile there is nothing to write with.
    let res = draft(&t, &agent, 2).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "drafting_failed").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no AI profile"),
        "{problem}"
    );

    let llm = crate::reply_engine::openai_llm(crate::reply_engine::openai_answer(
        "[\"Soup season is here: pumpkin and leek, all week.\", \"Hot chocolate with real cocoa, from 8.\", \"spare\"]",
        120,
        40,
    ))
    .await;
    crate::reply_engine::give_bot_llm(&t, "openai", format!("{}/v1", llm.uri()), "gpt-4o-mini")
        .await;
    let made = ok(draft(&t, &agent, 2).await, StatusCode::CREATED).await;
    let posts = made["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 2, "{made}");
    assert_eq!(
        posts[0]["text"],
        "Soup season is here: pumpkin and leek, all week."
    );
    for p in posts {
        assert_eq!(p["state"], "pending_approval");
        assert_eq!(p["made_with_ai"], true);
    }
    // The LLM was asked as the persona, for the topic, for JSON.
    let asked: Value =
        serde_json::from_slice(&llm.received_requests().await.unwrap()[0].body).unwrap();
    let prompt = asked["messages"].to_string();
    assert!(
        prompt.contains("You write posts for this business"),
        "{prompt}"
    );
    assert!(
        prompt.contains("our winter menu") && prompt.contains("JSON array of 2 strings"),
        "{prompt}"
    );
    // The tokens count against the tenant's budget like a reply's.
    let usage = t.get("/api/v1/usage").await;
    assert_eq!(usage["total_input_tokens"], 120);
    // Limits, and roles: a viewer drafts nothing.
    let res = draft(&t, &agent, 9).await;
    refused(res, "count").await;
    let res = draft(&t, &viewer, 1).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A tenant may let its admins' and owners' AI drafts be approved at
    // once; an agent's still wait, and only an admin changes the setting.
    let skip = Some(json!({ "x_ai_drafts_skip_approval": true }));
    let res = call(&t, &agent, Method::PATCH, "/api/v1/settings", skip.clone()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let settings = done(&t, &t.key, Method::PATCH, "/api/v1/settings", skip).await;
    assert_eq!(settings["x_ai_drafts_skip_approval"], true);
    let made = ok(draft(&t, &agent, 1).await, StatusCode::CREATED).await;
    assert_eq!(made["posts"][0]["state"], "pending_approval", "{made}");
    let at = in_secs(3600);
    let body = json!({ "account_id": t.account_id, "count": 2, "scheduled_at": at });
    let made = created(&t, &t.key, Method::POST, "/api/v1/posts/drafts", Some(body)).await;
    for p in made["posts"].as_array().unwrap() {
        assert_eq!(p["state"], "scheduled", "{made}");
        assert_eq!(p["approved_by"], "api_key:admin key");
        assert!(p["scheduled_at"].is_string());
    }
    assert_eq!(made["not_approved"], json!([]));
    let audit = t.get("/api/v1/audit-log?action=post.approve").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
    let past = json!({ "account_id": t.account_id, "scheduled_at": in_secs(-60) });
    let res = call(&t, &t.key, Method::POST, "/api/v1/posts/drafts", Some(past)).await;
    refused(res, "scheduled_at").await;
}

/// The tenant's X spend limit: once the month's estimate reaches it, posts
/// are not published and trends not asked for; replies still go out.
async fn past_the_x_spend_limit_only_replies_go_out(kind: DbKind) {
    let Some((t, _, _)) = x_loop(kind).await else {
        return;
    };
    let res = call(
        &t,
        &t.key,
        Method::PATCH,
        "/api/v1/settings",
        Some(json!({ "x_monthly_spend_limit_usd": -5 })),
    )
    .await;
    refused(res, "x_monthly_spend_limit_usd").await;
    done(
        &t,
        &t.key,
        Method::PATCH,
        "/api/v1/settings",
        Some(json!({ "x_monthly_spend_limit_usd": 0.01 })),
    )
    .await;
    crate::channels::x_accepts(&t, "700", "900").await;
    let publish = |text: &'static str| {
        let t = &t;
        async move {
            let post = created(
                t,
                &t.key,
                Method::POST,
                "/api/v1/posts",
                Some(json!({ "account_id": t.account_id, "text": text, "submit": true })),
            )
            .await;
            let id = post["id"].as_str().unwrap().to_string();
            done(
                t,
                &t.key,
                Method::POST,
                &format!("/api/v1/posts/{id}/approve"),
                None,
            )
            .await;
            wait_until(Duration::from_secs(30), || async {
                let state = t.get(&format!("/api/v1/posts/{id}")).await["state"].clone();
                state == "published" || state == "failed"
            })
            .await;
            t.get(&format!("/api/v1/posts/{id}")).await
        }
    };
    // Under the limit: published, and counted.
    assert_eq!(publish("Open until 8 tonight").await["state"], "published");
    let spend = t.get("/api/v1/x/spend").await;
    assert_eq!(
        spend["lines"],
        json!([{ "operation": "post", "count": 1, "usd": 0.015 }])
    );
    assert_eq!(spend["limited"], true);
    // Past it: not published, and said why.
    let stopped = publish("Closed on Sunday").await;
    assert_eq!(stopped["state"], "failed");
    assert_eq!(stopped["error_code"], "x_spend_limit");
    assert_eq!(tweets(&t).await.len(), 1);
    let res = call(
        &t,
        &t.key,
        Method::GET,
        &format!("/api/v1/trends?source=x&account_id={}", t.account_id),
        None,
    )
    .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "x_spend_limit").await;
    // A direct message is still answered.
    t.x_webhook(&crate::channels::x_dm("701", "hello")).await;
    wait_until(Duration::from_secs(20), || async {
        t.get("/api/v1/x/spend").await["lines"]
            .to_string()
            .contains("direct_message")
    })
    .await;
}
