//! The dashboard's bot page (settings, AI profile, persona) and events page,
//! through the API's handlers and role checks.

use reqwest::StatusCode;
use serde_json::Value;

use crate::channels::Loop;
use crate::dashboard::{Browser, csrf};
use crate::db_tests;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, DbKind};
use integro_store::events::{self, NewEvent};
use integro_store::sql::Conn;

db_tests!(
    a_bots_settings_and_persona_are_edited,
    engine_events_are_listed
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
