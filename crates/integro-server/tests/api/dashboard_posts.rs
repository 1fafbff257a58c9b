//! The dashboard's Posts page (#38) over HTTP: writing, submitting,
//! approving, rejecting and deleting X posts, and AI drafts, through the
//! API's handlers: the same validation, role checks and tenant scoping.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::ResponseTemplate;

use crate::channels::Loop;
use crate::dashboard::{Browser, csrf, tenant_named};
use crate::db_tests;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, DbKind};

db_tests!(
    posts_are_written_approved_and_rejected_on_the_page,
    ai_drafts_and_their_failures_are_shown_on_the_page,
    roles_tenants_and_pages_of_posts,
);

const X_CREDS: &str = r#"{ "user_id": "4337869213", "consumer_key": "ck", "consumer_secret": "cs-secret",
    "access_token": "at", "access_token_secret": "ats" }"#;

/// The tenant "Shop" with an X account "Main"; no workers, so nothing is
/// published.
async fn x_shop(kind: DbKind) -> Option<Loop> {
    Loop::new(kind, "x", serde_json::from_str(X_CREDS).unwrap(), 0).await
}

/// A `datetime-local` value, UTC, `minutes` from now.
fn local_in(minutes: i64) -> String {
    let at = OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    at.format(&f).unwrap()
}

/// The tenant's posts through the API, newest first.
async fn posts(t: &Loop) -> Vec<Value> {
    t.get("/api/v1/posts").await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn post_with_text(t: &Loop, text: &str) -> Value {
    posts(t)
        .await
        .into_iter()
        .find(|p| p["text"] == text)
        .unwrap_or_else(|| panic!("no post {text:?}"))
}

/// A form posted, with its CSRF token.
async fn send(
    browser: &Browser<'_>,
    token: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("_csrf", token)];
    form.extend_from_slice(fields);
    browser.post(path, &form).await
}

async fn posts_are_written_approved_and_rejected_on_the_page(kind: DbKind) {
    let Some(t) = x_shop(kind).await else {
        return;
    };
    let mut owner = Browser::new(&t.app);
    owner.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let page = owner.page("/posts").await;
    for needle in [
        r#"<a href="/posts" aria-current="page">Posts</a>"#,
        ">Write a post<",
        ">Draft with AI<",
        "$0.20",
        "$0.015",
        "automated accounts to be labelled",
        ">Main<",
        ">X accounts, last 30 days<",
        "0 in, 0 out",
        "$0.00 this month (estimated), no limit",
        "No posts yet.",
    ] {
        assert!(page.contains(needle), "the posts page lacks {needle}");
    }
    let token = csrf(&page);
    let account = t.account_id.as_str();
    let later = local_in(60);

    // Too long for X: refused beside the form, with what was typed kept.
    let long = "a".repeat(300);
    let res = send(
        &owner,
        &token,
        "/posts",
        &[
            ("account_id", account),
            ("text", &long),
            ("media_urls", "https://cdn.example.com/a.png"),
            ("scheduled_at", &later),
            ("submit", "on"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("Text: is 300 characters"), "{page}");
    assert!(page.contains(&format!(">{long}</textarea>")));
    assert!(page.contains(&format!("value=\"{later}\"")));
    assert!(page.contains("https://cdn.example.com/a.png</textarea>"));
    assert!(posts(&t).await.is_empty());
    // A time that is not one, and one past: refused too.
    for (at, why) in [
        ("soon", "Schedule time: must be a date and a time"),
        ("2001-01-01T10:00", "Schedule time: must be in the future"),
    ] {
        let res = send(
            &owner,
            &token,
            "/posts",
            &[
                ("account_id", account),
                ("text", "Hi"),
                ("scheduled_at", at),
            ],
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(res.text().await.unwrap().contains(why), "{why}");
    }

    // Written and submitted, an hour ahead.
    let res = send(
        &owner,
        &token,
        "/posts",
        &[
            ("account_id", account),
            ("text", "Spring sale starts soon"),
            ("media_urls", "https://cdn.example.com/a.png\n\n"),
            ("scheduled_at", &later),
            ("submit", "on"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let spring = post_with_text(&t, "Spring sale starts soon").await;
    let id = spring["id"].as_str().unwrap().to_string();
    assert_eq!(res.headers()[LOCATION], format!("/posts#post-{id}"));
    assert_eq!(spring["state"], "pending_approval");
    assert_eq!(spring["made_with_ai"], false);
    assert_eq!(
        spring["media_urls"],
        json!(["https://cdn.example.com/a.png"])
    );
    assert!(spring["scheduled_at"].as_str().unwrap().starts_with(&later));
    let page = owner.page("/posts").await;
    assert!(page.contains(&format!("id=\"post-{id}\"")));
    assert!(page.contains(">pending_approval<") && page.contains(">Approve<"));

    // Approved: scheduled, with who approved it.
    let res = send(&owner, &token, &format!("/posts/{id}/approve"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let spring = post_with_text(&t, "Spring sale starts soon").await;
    assert_eq!(spring["state"], "scheduled");
    assert_eq!(spring["approved_by"], ADMIN_EMAIL);
    let page = owner.page("/posts?state=scheduled").await;
    assert!(page.contains("Scheduled for") && page.contains(&format!("Approved by {ADMIN_EMAIL}")));

    // A draft, made with AI, then submitted from its row.
    let res = send(
        &owner,
        &token,
        "/posts?state=draft",
        &[
            ("account_id", account),
            ("text", "Autumn menu"),
            ("made_with_ai", "on"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let autumn = post_with_text(&t, "Autumn menu").await;
    let autumn_id = autumn["id"].as_str().unwrap().to_string();
    assert_eq!(
        res.headers()[LOCATION],
        format!("/posts?state=draft#post-{autumn_id}")
    );
    assert_eq!(autumn["state"], "draft");
    assert_eq!(autumn["made_with_ai"], true);
    let page = owner.page("/posts?state=draft").await;
    assert!(page.contains("made with AI") && page.contains(">Submit for approval<"));
    assert!(!page.contains("Spring sale"));
    let res = send(&owner, &token, &format!("/posts/{autumn_id}/submit"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // Rejecting needs a reason; the refusal is shown in the row.
    let reject = format!("/posts/{autumn_id}/reject");
    let res = send(&owner, &token, &reject, &[("reason", "  ")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Reason: say why the post is rejected")
    );
    let res = send(&owner, &token, &reject, &[("reason", "Too salesy")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let autumn = post_with_text(&t, "Autumn menu").await;
    assert_eq!(autumn["state"], "rejected");
    assert_eq!(autumn["reject_reason"], "Too salesy");
    let page = owner.page("/posts?state=rejected").await;
    assert!(page.contains("Rejected: Too salesy") && !page.contains("Spring sale"));

    // A rejected post cannot be approved: said on the page, at the post.
    let res = send(
        &owner,
        &token,
        &format!("/posts/{autumn_id}/approve?state=rejected"),
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("a rejected post cannot be approved"),
        "{page}"
    );

    // The same text on another X account the same day: X's rule, refused
    // on approval, said at the post.
    let res = t
        .app
        .post(
            "/api/v1/accounts",
            &t.key,
            json!({ "bot_id": t.bot_id, "kind": "x", "name": "Second",
                "credentials": serde_json::from_str::<Value>(X_CREDS).unwrap() }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let second = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = send(
        &owner,
        &token,
        "/posts",
        &[
            ("account_id", &second),
            ("text", "SPRING sale   starts soon"),
            ("scheduled_at", &later),
            ("submit", "on"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let copy = post_with_text(&t, "SPRING sale   starts soon").await;
    let copy_id = copy["id"].as_str().unwrap();
    let res = send(&owner, &token, &format!("/posts/{copy_id}/approve"), &[]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    let row = &page[page.find(&format!("id=\"post-{copy_id}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("role=\"alert\">Text: the same text goes out on another of your X accounts"),
        "{row}"
    );
    assert_eq!(
        post_with_text(&t, "SPRING sale   starts soon").await["state"],
        "pending_approval"
    );

    // Deleted.
    let res = send(&owner, &token, &format!("/posts/{autumn_id}/delete"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/posts");
    assert!(posts(&t).await.iter().all(|p| p["id"] != autumn_id));
    let audit = t.get("/api/v1/audit-log?target_kind=post").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "post.create",
        "post.approve",
        "post.submit",
        "post.reject",
        "post.delete",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

async fn ai_drafts_and_their_failures_are_shown_on_the_page(kind: DbKind) {
    let Some(t) = x_shop(kind).await else {
        return;
    };
    let mut owner = Browser::new(&t.app);
    owner.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = csrf(&owner.page("/posts").await);
    let account = t.account_id.as_str();

    // No AI profile: a message on the page, with the form as typed.
    let res = send(
        &owner,
        &token,
        "/posts/drafts",
        &[
            ("account_id", account),
            ("topic", "our soups"),
            ("count", "2"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("No drafts were written.") && page.contains("no AI profile"));
    assert!(page.contains("value=\"our soups\"") && page.contains("value=\"2\""));
    for (count, why) in [
        ("9", "Number of drafts: must be 1 to 5"),
        ("two", "Number of drafts: must be a whole number"),
    ] {
        let res = send(
            &owner,
            &token,
            "/posts/drafts",
            &[("account_id", account), ("count", count)],
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(res.text().await.unwrap().contains(why), "{why}");
    }

    // The LLM writes two (and one too long, left out).
    let long = "b".repeat(300);
    let llm = crate::reply_engine::openai_llm(crate::reply_engine::openai_answer(
        &json!(["Soup season is here.", "Hot chocolate from 8.", long]).to_string(),
        50,
        20,
    ))
    .await;
    crate::reply_engine::give_bot_llm(&t, "openai", format!("{}/v1", llm.uri()), "gpt-4o-mini")
        .await;
    let res = send(
        &owner,
        &token,
        "/posts/drafts",
        &[("account_id", account), ("topic", ""), ("count", "3")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = res.headers()[LOCATION].to_str().unwrap().to_string();
    assert_eq!(to, "/posts?drafted=2&skipped=1");
    let page = owner.page(&to).await;
    assert!(page.contains("2 AI drafts written: they wait for approval."));
    assert!(page.contains("1 answer of the AI was left out"));
    assert!(page.contains("Soup season is here.") && page.contains("made with AI"));
    let drafted = post_with_text(&t, "Hot chocolate from 8.").await;
    assert_eq!(drafted["state"], "pending_approval");

    // The LLM failing: a message on the page, not a server error page.
    llm.reset().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": { "message": "Incorrect API key provided", "type": "invalid_request_error" }
        })))
        .mount(&llm)
        .await;
    let res = send(
        &owner,
        &token,
        "/posts/drafts",
        &[("account_id", account), ("topic", "tea"), ("count", "1")],
    )
    .await;
    let status = res.status();
    let page = res.text().await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("No drafts were written.") && page.contains("<h1>Posts</h1>"));
    assert!(page.contains("value=\"tea\""));
}

async fn roles_tenants_and_pages_of_posts(kind: DbKind) {
    let Some(t) = x_shop(kind).await else {
        return;
    };
    let tenant = tenant_named(&t.app, "Shop").await;
    let mut owner = Browser::new(&t.app);
    owner.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let owner_token = csrf(&owner.page("/posts").await);
    let res = t
        .app
        .post(
            "/api/v1/posts",
            &t.key,
            json!({ "account_id": t.account_id, "text": "Waiting for you", "submit": true }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let waiting = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // An agent writes and submits, but sees no Approve and cannot approve
    // or reject.
    t.app
        .user_token(&tenant, "agent@example.com", "agent")
        .await;
    let mut agent = Browser::new(&t.app);
    agent.sign_in("agent@example.com", "a-long-password").await;
    let page = agent.page("/posts").await;
    assert!(page.contains(">Write a post<") && page.contains("Waiting for you"));
    assert!(!page.contains(">Approve<") && !page.contains("Reason for rejecting"));
    let token = csrf(&page);
    let res = send(&agent, &token, &format!("/posts/{waiting}/approve"), &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(
        &agent,
        &token,
        &format!("/posts/{waiting}/reject"),
        &[("reason", "no")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        post_with_text(&t, "Waiting for you").await["state"],
        "pending_approval"
    );
    let res = send(
        &agent,
        &token,
        "/posts",
        &[("account_id", &t.account_id), ("text", "From the agent")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let mine = post_with_text(&t, "From the agent").await;
    assert_eq!(mine["created_by"], "agent@example.com");
    let res = send(
        &agent,
        &token,
        &format!("/posts/{}/submit", mine["id"].as_str().unwrap()),
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        post_with_text(&t, "From the agent").await["state"],
        "pending_approval"
    );

    // A viewer reads, without forms, and cannot write.
    t.app
        .user_token(&tenant, "viewer@example.com", "viewer")
        .await;
    let mut viewer = Browser::new(&t.app);
    viewer
        .sign_in("viewer@example.com", "a-long-password")
        .await;
    let page = viewer.page("/posts").await;
    assert!(page.contains("Waiting for you") && !page.contains(">Write a post<"));
    assert!(
        page.contains(">X accounts, last 30 days<"),
        "viewers see the figures"
    );
    assert!(!page.contains(">Delete<") && !page.contains(">Approve<"));
    let res = send(
        &viewer,
        &csrf(&page),
        "/posts",
        &[("account_id", &t.account_id), ("text", "Mine")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Another tenant's post is not found, whatever the action.
    let other = t.app.create_tenant("Other").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let bot = t
        .app
        .post(
            "/api/v1/bots",
            &other_key,
            json!({ "name": "Theirs", "fallback_reply": "Hi" }),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .clone();
    let res = t
        .app
        .post(
            "/api/v1/accounts",
            &other_key,
            json!({ "bot_id": bot, "kind": "x", "name": "Theirs",
                "credentials": serde_json::from_str::<Value>(X_CREDS).unwrap() }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let their_account = res.json::<Value>().await.unwrap()["id"].clone();
    let res = t
        .app
        .post(
            "/api/v1/posts",
            &other_key,
            json!({ "account_id": their_account, "text": "Theirs", "submit": true }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let theirs = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for action in ["approve", "submit", "delete", "reject"] {
        let res = send(
            &owner,
            &owner_token,
            &format!("/posts/{theirs}/{action}"),
            &[("reason", "not yours")],
        )
        .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{action}");
    }
    // Nor can their account be written on from this tenant.
    let res = send(
        &owner,
        &owner_token,
        "/posts",
        &[
            ("account_id", their_account.as_str().unwrap()),
            ("text", "Hello"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("X account: no account of the tenant has this id"));
    assert!(!owner.page("/posts").await.contains("Theirs"));

    // Pages of 50, newest first, by cursor; filters by account and state.
    for n in 0..50 {
        let res = t
            .app
            .post(
                "/api/v1/posts",
                &t.key,
                json!({ "account_id": t.account_id, "text": format!("Numbered {n}") }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let page = owner.page("/posts").await;
    assert!(page.contains("Numbered 49") && !page.contains("Waiting for you"));
    let at = page.find("Older posts").expect("a link to older posts");
    let href = page[..at].rsplit("href=\"").next().unwrap();
    let href = href.split('"').next().unwrap().replace("&amp;", "&");
    assert!(href.starts_with("/posts?cursor="), "{href}");
    let older = owner.page(&href).await;
    assert!(older.contains("Waiting for you") && !older.contains("Numbered 49"));
    assert!(older.contains("Newest posts"));
    let page = owner
        .page(&format!(
            "/posts?state=pending_approval&account_id={}",
            t.account_id
        ))
        .await;
    assert!(page.contains("Waiting for you") && !page.contains("Numbered"));
    assert!(!page.contains("Older posts"));
    for bad in ["/posts?state=lost", "/posts?account_id=nope"] {
        let res = owner.get(bad).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}
