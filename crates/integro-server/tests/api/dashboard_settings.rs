//! The dashboard's bot page (settings, AI profile, persona), events page
//! and channel connection tests, through the API's handlers and role checks.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::Loop;
use crate::dashboard::{Browser, csrf};
use crate::db_tests;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, DbKind};
use integro_store::events::{self, NewEvent};
use integro_store::sql::Conn;

db_tests!(
    a_bots_settings_and_persona_are_edited,
    engine_events_are_listed,
    a_channel_accounts_connection_is_tested,
);

async fn a_bots_settings_and_persona_are_edited(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 1).await else {
        return;
    };
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let path = format!("/bots/{}", t.bot_id);
    let page = browser.page(&path).await;
    for needle in [
        ">Fallback reply<",
        ">AI profile<",
        ">Persona name<",
        ">Hand-off timeout (minutes)<",
    ] {
        assert!(page.contains(needle), "the bot page lacks {needle}");
    }
    let token = csrf(&page);
    let form = |timeout: &'static str, history: &'static str| {
        vec![
            ("_csrf", token.clone()),
            ("name", "Front desk".to_string()),
            ("description", "Answers the shop".to_string()),
            ("fallback_reply", "We will get back to you.".to_string()),
            ("active", "on".to_string()),
            ("ai_profile_id", String::new()),
            ("history_messages", history.to_string()),
            ("handoff_timeout_minutes", timeout.to_string()),
            ("time_zone", "Europe/Lisbon".to_string()),
            (
                "blocked_phrases",
                "competitor\n\n  refund guaranteed \n".to_string(),
            ),
        ]
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let browser = &browser;
        let path = path.clone();
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser.post(&path, &pairs).await
        }
    };
    let res = post(form("30", "12")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let bot = t.get(&format!("/api/v1/bots/{}", t.bot_id)).await;
    assert_eq!(bot["name"], "Front desk");
    assert_eq!(bot["fallback_reply"], "We will get back to you.");
    assert_eq!(bot["settings"]["history_messages"], 12);
    assert_eq!(bot["settings"]["handoff_timeout_minutes"], 30);
    assert_eq!(bot["settings"]["time_zone"], "Europe/Lisbon");
    assert_eq!(
        bot["settings"]["blocked_phrases"],
        serde_json::json!(["competitor", "refund guaranteed"])
    );
    // A blank timeout means none; a blank number keeps its setting.
    let res = post(form("", "")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let bot = t.get(&format!("/api/v1/bots/{}", t.bot_id)).await;
    assert_eq!(bot["settings"]["handoff_timeout_minutes"], Value::Null);
    assert_eq!(bot["settings"]["history_messages"], 12);
    // Bad values are refused, saying which, and change nothing.
    let res = post(form("soon", "12")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Hand-off timeout (minutes) must be a whole number")
    );
    let mut bad = form("", "12");
    bad[8].1 = "Mars/Olympus".into();
    let res = post(bad).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        t.get(&format!("/api/v1/bots/{}", t.bot_id)).await["settings"]["time_zone"],
        "Europe/Lisbon"
    );

    let res = browser
        .post(
            &format!("{path}/persona"),
            &[
                ("_csrf", &token),
                ("name", "Lia"),
                ("tone", "warm"),
                ("interests", "cakes, coffee ,"),
                ("language", "Portuguese"),
                ("system_prompt", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let persona = t.get(&format!("/api/v1/bots/{}/persona", t.bot_id)).await;
    assert_eq!(persona["name"], "Lia");
    assert_eq!(persona["interests"], serde_json::json!(["cakes", "coffee"]));
    assert_eq!(persona["system_prompt"], Value::Null);
    let audit = t.get("/api/v1/audit-log?target_kind=bot").await;
    assert!(audit["items"].as_array().unwrap().len() >= 3, "{audit}");

    // A viewer reads the bot but has no form, and cannot post one.
    let tenant = crate::dashboard::tenant_named(&t.app, "Shop").await;
    t.app
        .user_token(&tenant, "viewer@example.com", "viewer")
        .await;
    let mut viewer = Browser::new(&t.app);
    viewer
        .sign_in("viewer@example.com", "a-long-password")
        .await;
    let page = viewer.page(&path).await;
    assert!(page.contains("Lia") && !page.contains("Save bot"));
    let res = viewer
        .post(
            &path,
            &[
                ("_csrf", &csrf(&page)),
                ("name", "Mine"),
                ("fallback_reply", "x"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

async fn engine_events_are_listed(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 1).await else {
        return;
    };
    let tenant = crate::dashboard::tenant_named(&t.app, "Shop").await;
    let mut tx = t.app.state.db.begin().await.unwrap();
    events::record(
        &mut Conn::of(&mut tx),
        NewEvent {
            tenant_id: tenant.parse().unwrap(),
            bot_id: None,
            conversation_id: None,
            kind: "ai_auth_failed",
            detail: "an AI provider rejected its credential: <key>".into(),
        },
        true,
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let page = browser.page("/operations/events").await;
    assert!(
        page.contains("rejected its credential: &#60;key&#62;"),
        "{page}"
    );
    let page = browser
        .page("/operations/events?kind=budget_exhausted")
        .await;
    assert!(page.contains("Nothing to report."));
    assert!(!page.contains("rejected its credential"));
}

async fn a_channel_accounts_connection_is_tested(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 1).await else {
        return;
    };
    let test = format!("/api/v1/accounts/{}/test", t.account_id);
    // Twilio answers for the account with its SID and token.
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC123.json"))
        .and(header(
            "authorization",
            "Basic QUMxMjM6dHdpbGlvLWF1dGgtdG9rZW4tMTIz",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "sid": "AC123", "friendly_name": "Shop main", "status": "active" }),
        ))
        .up_to_n_times(1)
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC123.json"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({ "code": 20003, "message": "Authenticate", "status": 401 })),
        )
        .mount(&t.provider)
        .await;
    let res = t.app.post(&test, &t.key, json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let found: Value = res.json().await.unwrap();
    assert_eq!(found["ok"], true, "{found}");
    assert_eq!(found["message"], "Twilio account Shop main is active");

    // The dashboard shows the provider's refusal beside the account.
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let page = browser.page("/channels").await;
    assert!(page.contains("Test connection of"));
    let res = browser
        .post(
            &format!("/channels/{}/test", t.account_id),
            &[("_csrf", &csrf(&page))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("The provider refused: HTTP 401: Authenticate (code 20003)"),
        "{page}"
    );

    // WhatsApp Cloud: the phone number the token reads.
    let res = t
        .app
        .post(
            "/api/v1/accounts",
            &t.key,
            json!({ "bot_id": t.bot_id, "kind": "whatsapp_cloud", "name": "Cloud", "credentials": {
                "phone_number_id": "1065403", "access_token": "EAAG-token", "app_secret": "s", "verify_token": "v" } }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let cloud = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    Mock::given(method("GET"))
        .and(path("/v23.0/1065403"))
        .and(query_param("fields", "display_phone_number,verified_name"))
        .and(header("authorization", "Bearer EAAG-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "display_phone_number": "+1 555-078-3881", "verified_name": "Shop", "id": "1065403" }),
        ))
        .mount(&t.provider)
        .await;
    let found: Value = t
        .app
        .post(&format!("/api/v1/accounts/{cloud}/test"), &t.key, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        found["message"], "WhatsApp number +1 555-078-3881 (Shop)",
        "{found}"
    );

    // X: a token of another user than the account's is a finding.
    let res = t
        .app
        .post(
            "/api/v1/accounts",
            &t.key,
            json!({ "bot_id": t.bot_id, "kind": "x", "name": "X", "credentials": {
                "user_id": "4337869213", "consumer_key": "ck", "consumer_secret": "cs",
                "access_token": "at", "access_token_secret": "ats" } }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let x = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    Mock::given(method("GET"))
        .and(path("/2/users/me"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({ "data": { "id": "99", "name": "Other", "username": "other" } }),
            ),
        )
        .mount(&t.provider)
        .await;
    let found: Value = t
        .app
        .post(&format!("/api/v1/accounts/{x}/test"), &t.key, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["ok"], false);
    assert_eq!(found["code"], "other_account");
    let calls = t.provider.received_requests().await.unwrap();
    let me = calls
        .iter()
        .find(|r| r.url.path() == "/2/users/me")
        .unwrap();
    assert!(
        me.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("OAuth ")
    );

    // Another tenant's key finds no such account; a viewer may not test.
    let other = t.app.create_tenant("Other shop").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let res = t.app.post(&test, &other_key, json!({})).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let tenant = crate::dashboard::tenant_named(&t.app, "Shop").await;
    let (_, viewer) = t.app.create_key(&tenant, "viewer").await;
    let res = t.app.post(&test, &viewer, json!({})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
