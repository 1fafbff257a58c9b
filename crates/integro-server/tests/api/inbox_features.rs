//! The inbox's labels, canned replies and unread counts, through the API
//! and the dashboard: tenant scoping (404 across tenants), role checks,
//! limits (422 with the reason) and the inbox's label filter.

use std::time::Duration;

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::channels::{Loop, wait_until};
use crate::dashboard::{Browser, csrf, first_conversation, tenant_named};
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};

db_tests!(
    labels_are_scoped_limited_and_filter_the_inbox,
    canned_replies_are_managed_by_admins_and_offered_to_agents,
    unread_counts_rise_with_the_contact_and_fall_on_reading,
);

const PASSWORD: &str = "a-long-password";

/// Two conversations (Ann at +14155550100, then +14155550101), their ids.
async fn two_conversations(t: &Loop) -> (String, String) {
    t.twilio_message("SMlabel1", "+14155550100", "first").await;
    let first = first_conversation(t).await;
    t.twilio_message("SMlabel2", "+14155550101", "second").await;
    wait_until(Duration::from_secs(10), || async {
        t.get("/api/v1/conversations").await["items"]
            .as_array()
            .unwrap()
            .len()
            == 2
    })
    .await;
    let all = t.get("/api/v1/conversations").await;
    let second = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .find(|id| *id != first)
        .unwrap();
    (first, second)
}

async fn put_labels(t: &Loop, token: &str, id: &str, labels: Value) -> reqwest::Response {
    t.app
        .request(
            Method::PUT,
            &format!("/api/v1/conversations/{id}/labels"),
            token,
        )
        .json(&json!({ "labels": labels }))
        .send()
        .await
        .unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

async fn labels_are_scoped_limited_and_filter_the_inbox(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    let (a, b) = two_conversations(&t).await;
    let res = put_labels(&t, &t.key, &a, json!(["VIP", " billing ", "vip"])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap()["labels"],
        json!(["billing", "VIP"])
    );
    // The filter, in any case; the labels come with each conversation.
    let vip = t.get("/api/v1/conversations?label=vip").await;
    assert_eq!(ids(&vip), std::slice::from_ref(&a));
    assert_eq!(vip["items"][0]["labels"], json!(["billing", "VIP"]));
    assert!(
        vip["items"][0].get("unread").is_none(),
        "an API key has no read marks"
    );
    let none = t.get("/api/v1/conversations?label=nothing").await;
    assert!(ids(&none).is_empty());
    let one = t.get(&format!("/api/v1/conversations/{a}")).await;
    assert_eq!(one["labels"], json!(["billing", "VIP"]));
    let got = t.get(&format!("/api/v1/conversations/{a}/labels")).await;
    assert_eq!(got["labels"], json!(["billing", "VIP"]));

    // Limits: the name, 20 on a conversation, 100 in a tenant.
    let res = put_labels(&t, &t.key, &a, json!(["a<b"])).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        problem.to_string().contains("not allowed in a label"),
        "{problem}"
    );
    let res = put_labels(&t, &t.key, &a, json!(["x".repeat(41)])).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let many: Vec<String> = (0..21).map(|i| format!("many {i}")).collect();
    let res = put_labels(&t, &t.key, &a, json!(many)).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        problem.to_string().contains("at most 20 labels"),
        "{problem}"
    );
    // 2 labels so far; 98 more fill the tenant.
    for round in 0..5 {
        let count = if round < 4 { 20 } else { 18 };
        let names: Vec<String> = (0..count).map(|i| format!("r{round} l{i}")).collect();
        let res = put_labels(&t, &t.key, &b, json!(names)).await;
        assert_eq!(res.status(), StatusCode::OK, "round {round}");
    }
    let all: Value = t.get("/api/v1/labels").await;
    assert_eq!(all.as_array().unwrap().len(), 100);
    let res = put_labels(&t, &t.key, &b, json!(["one too many"])).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        problem.to_string().contains("at most 100 labels"),
        "{problem}"
    );
    // Deleting labels makes room (admins; they come off their conversations).
    for label in all.as_array().unwrap() {
        if label["name"].as_str().unwrap().starts_with("r4 l1") {
            let res = t
                .app
                .request(
                    Method::DELETE,
                    &format!("/api/v1/labels/{}", label["id"].as_str().unwrap()),
                    &t.key,
                )
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        }
    }
    let all_now: Value = t.get("/api/v1/labels").await;
    assert_eq!(all_now.as_array().unwrap().len(), 91);
    // Known labels still go on.
    let res = put_labels(&t, &t.key, &b, json!(["vip"])).await;
    assert_eq!(res.json::<Value>().await.unwrap()["labels"], json!(["VIP"]));
    let vip = t.get("/api/v1/conversations?label=VIP").await;
    assert_eq!(ids(&vip).len(), 2);
    let audit = t.get("/api/v1/audit-log?action=conversation.labels").await;
    assert!(audit["items"].as_array().unwrap().len() >= 7);

    // Another tenant sees none of it.
    let other = t.app.create_tenant("Other shop").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let res = t
        .app
        .get(&format!("/api/v1/conversations/{a}/labels"), &other_key)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = put_labels(&t, &other_key, &a, json!(["mine"])).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let theirs: Value = t
        .app
        .get("/api/v1/labels", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs.as_array().unwrap().is_empty());
    let vip_id = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "VIP")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = t
        .app
        .request(
            Method::DELETE,
            &format!("/api/v1/labels/{vip_id}"),
            &other_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let other_page: Value = t
        .app
        .get("/api/v1/conversations?label=VIP", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(ids(&other_page).is_empty());

    // Viewers read labels; agents set them.
    let shop = tenant_named(&t.app, "Shop").await;
    let viewer = t.app.user_token(&shop, "vic@example.com", "viewer").await;
    let res = put_labels(&t, &viewer, &a, json!(["seen"])).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let agent = t.app.user_token(&shop, "ana@example.com", "agent").await;
    let res = put_labels(&t, &agent, &a, json!(["VIP", "Urgent"])).await;
    assert_eq!(res.status(), StatusCode::OK);

    // The dashboard: labels on the rows and the page, added and removed
    // there, and the inbox's "Label" filter.
    let mut browser = Browser::new(&t.app);
    browser.sign_in("ana@example.com", PASSWORD).await;
    let inbox = browser.page("/inbox").await;
    assert!(
        inbox.contains("<label for=\"label\">Label</label>") && inbox.contains(">Urgent</option>")
    );
    let rows = browser.page("/inbox/rows?label=urgent").await;
    assert!(
        rows.contains(&format!("/conversations/{a}"))
            && !rows.contains(&format!("/conversations/{b}"))
    );
    assert!(rows.contains("<li class=\"label\">Urgent</li>"));
    let page = browser.page(&format!("/conversations/{a}")).await;
    assert!(page.contains("aria-label=\"Remove label Urgent\"") && page.contains(">Add label<"));
    let token = csrf(&page);
    let res = browser
        .post(
            &format!("/conversations/{a}/labels"),
            &[("_csrf", &token), ("label", "Call back")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = browser
        .post(
            &format!("/conversations/{a}/labels"),
            &[("_csrf", &token), ("label", "no/slashes")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = browser
        .post(
            &format!("/conversations/{a}/labels/remove"),
            &[("_csrf", &token), ("label", "urgent")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let got = t.get(&format!("/api/v1/conversations/{a}/labels")).await;
    assert_eq!(got["labels"], json!(["Call back", "VIP"]));
    let rows = browser.page("/inbox/rows?label=Urgent").await;
    assert!(!rows.contains(&format!("/conversations/{a}")));
    // An admin deletes a label: it comes off every conversation.
    let res = t
        .app
        .request(Method::DELETE, &format!("/api/v1/labels/{vip_id}"), &agent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = t
        .app
        .request(Method::DELETE, &format!("/api/v1/labels/{vip_id}"), &t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let got = t.get(&format!("/api/v1/conversations/{a}/labels")).await;
    assert_eq!(got["labels"], json!(["Call back"]));
}

async fn canned_replies_are_managed_by_admins_and_offered_to_agents(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    t.twilio_message("SMcanned", "+14155550100", "When are you open?")
        .await;
    let conversation = first_conversation(&t).await;
    let create = |token: String, body: Value| {
        let app = &t.app;
        async move {
            app.request(Method::POST, "/api/v1/canned-replies", &token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let res = create(
        t.key.clone(),
        json!({ "shortcut": "hours", "text": "We are open 9 to 5, Monday to Friday." }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let hours: Value = res.json().await.unwrap();
    let id = hours["id"].as_str().unwrap().to_string();
    let res = create(
        t.key.clone(),
        json!({ "shortcut": "hours", "text": "again" }),
    )
    .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let res = create(
        t.key.clone(),
        json!({ "shortcut": "Two Words", "text": "x" }),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "shortcut");
    let res = create(
        t.key.clone(),
        json!({ "shortcut": "long", "text": "x".repeat(4097) }),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "text");

    // Agents read them and may not change them.
    let shop = tenant_named(&t.app, "Shop").await;
    let agent = t.app.user_token(&shop, "ana@example.com", "agent").await;
    let list: Value = t
        .app
        .get("/api/v1/canned-replies", &agent)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["shortcut"], "hours");
    let res = create(agent.clone(), json!({ "shortcut": "mine", "text": "x" })).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = t
        .app
        .request(
            Method::PATCH,
            &format!("/api/v1/canned-replies/{id}"),
            &agent,
        )
        .json(&json!({ "text": "changed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = t
        .app
        .request(
            Method::PATCH,
            &format!("/api/v1/canned-replies/{id}"),
            &t.key,
        )
        .json(&json!({ "text": "We are open 9 to 6, Monday to Friday." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["shortcut"], "hours");

    // Another tenant finds none of them.
    let other = t.app.create_tenant("Other shop").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let path = format!("/api/v1/canned-replies/{id}");
    assert_eq!(
        t.app.get(&path, &other_key).await.status(),
        StatusCode::NOT_FOUND
    );
    for method in [Method::PATCH, Method::DELETE] {
        let res = t
            .app
            .request(method.clone(), &path, &other_key)
            .json(&json!({ "text": "theirs" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method}");
    }
    let theirs: Value = t
        .app
        .get("/api/v1/canned-replies", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs.as_array().unwrap().is_empty());

    // The conversation offers them: to the script (data attributes) and,
    // without it, through a plain form that fills the message box.
    let mut browser = Browser::new(&t.app);
    browser.sign_in("ana@example.com", PASSWORD).await;
    let page = browser
        .page(&format!("/conversations/{conversation}"))
        .await;
    assert!(page.contains("data-shortcut=\"hours\"") && page.contains("/assets/canned.js"));
    assert!(page.contains("role=\"listbox\"") && page.contains("<label for=\"canned\">"));
    let filled = browser
        .page(&format!("/conversations/{conversation}?canned={id}"))
        .await;
    assert!(filled.contains(">We are open 9 to 6, Monday to Friday.</textarea>"));
    let res = browser
        .get(&format!(
            "/conversations/{conversation}?canned={}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let script = browser.get("/assets/canned.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // The agent's page lists them without forms; sending one is a message.
    let canned = browser.page("/canned-replies").await;
    assert!(canned.contains("/hours") && !canned.contains(">Add canned reply<"));
    let token = csrf(&canned);
    let res = browser
        .post(
            "/canned-replies",
            &[("_csrf", &token), ("shortcut", "mine"), ("text", "x")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // An admin manages them on the page.
    t.app.user_token(&shop, "adam@example.com", "admin").await;
    let mut admin = Browser::new(&t.app);
    admin.sign_in("adam@example.com", PASSWORD).await;
    let canned = admin.page("/canned-replies").await;
    assert!(canned.contains(">Add canned reply<"));
    let token = csrf(&canned);
    let res = admin
        .post(
            "/canned-replies",
            &[
                ("_csrf", &token),
                ("shortcut", "/thanks"),
                ("text", "Thank you!"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin
        .post(
            "/canned-replies",
            &[
                ("_csrf", &token),
                ("shortcut", "bad shortcut"),
                ("text", "x"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = admin
        .post(
            &format!("/canned-replies/{id}"),
            &[
                ("_csrf", &token),
                ("shortcut", "open"),
                ("text", "Open 9 to 6."),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let list: Value = t.get("/api/v1/canned-replies").await;
    let shortcuts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["shortcut"].as_str().unwrap())
        .collect();
    assert_eq!(shortcuts, ["open", "thanks"]);
    let res = admin
        .post(
            &format!("/canned-replies/{id}/delete"),
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        t.app.get(&path, &t.key).await.status(),
        StatusCode::NOT_FOUND
    );
    let audit = t.get("/api/v1/audit-log?action=canned_reply.delete").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);

    // At most 500 in a tenant (one is left): 499 more fill it.
    let tenant = uuid::Uuid::parse_str(&shop).unwrap();
    let mut tx = t.app.state.db.begin().await.unwrap();
    for i in 0..499 {
        sqlx::query(
            "INSERT INTO canned_replies (id, tenant_id, shortcut, body, created_at, updated_at) \
             VALUES ($1, $2, $3, 'x', 0, 0)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant.to_string())
        .bind(format!("filler-{i}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let res = create(
        t.key.clone(),
        json!({ "shortcut": "one-more", "text": "x" }),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        problem.to_string().contains("at most 500 canned replies"),
        "{problem}"
    );
}

/// The agent's `unread` for the conversation, through the API.
async fn unread(t: &Loop, token: &str) -> Value {
    let page: Value = t
        .app
        .get("/api/v1/conversations", token)
        .await
        .json()
        .await
        .unwrap();
    page["items"][0]["unread"].clone()
}

async fn unread_counts_rise_with_the_contact_and_fall_on_reading(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    t.twilio_message("SMunread1", "+14155550100", "hello").await;
    let id = first_conversation(&t).await;
    let shop = tenant_named(&t.app, "Shop").await;
    let agent = t.app.user_token(&shop, "ana@example.com", "agent").await;
    assert_eq!(unread(&t, &agent).await, json!(1));
    let mut browser = Browser::new(&t.app);
    browser.sign_in("ana@example.com", PASSWORD).await;
    let rows = browser.page("/inbox/rows").await;
    assert!(
        rows.contains("1 unread") && rows.contains("class=\"unread\""),
        "{rows}"
    );

    // Opening the conversation reads it.
    browser.page(&format!("/conversations/{id}")).await;
    assert_eq!(unread(&t, &agent).await, json!(0));
    let rows = browser.page("/inbox/rows").await;
    assert!(!rows.contains("unread"), "{rows}");

    // The contact writes twice more; the bot's replies do not count.
    t.twilio_message("SMunread2", "+14155550100", "are you there?")
        .await;
    t.twilio_message("SMunread3", "+14155550100", "hello?")
        .await;
    wait_until(Duration::from_secs(10), || async {
        unread(&t, &agent).await == json!(2)
    })
    .await;
    let rows = browser.page("/inbox/rows").await;
    assert!(rows.contains("2 unread"), "{rows}");
    // Another member's marks are their own.
    let other_agent = t.app.user_token(&shop, "bo@example.com", "agent").await;
    assert_eq!(unread(&t, &other_agent).await, json!(3));

    // The live view's refresh of the messages reads them too.
    browser.page(&format!("/conversations/{id}/messages")).await;
    assert_eq!(unread(&t, &agent).await, json!(0));

    // Through the API: a user marks it read; an API key has no marks.
    let res = t
        .app
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{id}/read"),
            &other_agent,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["unread"], json!(0));
    let res = t
        .app
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{id}/read"),
            &t.key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Across tenants: not found.
    let other = t.app.create_tenant("Other shop").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let res = t
        .app
        .request(
            Method::POST,
            &format!("/api/v1/conversations/{id}/read"),
            &other_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
