//! README features that had no test of their own: the request timeout,
//! CORS, cancelling a job, and the bot's time zone in templates and
//! conditions.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::channels::wait_until;
use crate::db_tests;
use crate::helpers::{DbKind, TestApp, assert_problem};

db_tests!(
    a_request_past_the_timeout_answers_408_as_a_problem,
    cors_answers_the_configured_origin_only,
    a_cancelled_job_is_never_run_and_a_finished_one_cannot_be_cancelled,
    now_in_templates_and_conditions_follows_the_bots_time_zone,
);

/// A tenant with an admin API key; returns the key.
async fn tenant_key(app: &TestApp) -> String {
    let tenant = app.create_tenant("Acme").await;
    app.create_key(&tenant, "admin").await.1
}

async fn created(app: &TestApp, key: &str, path: &str, body: Value) -> Value {
    let res = app.post(path, key, body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// `request_timeout_secs`: a request still running after it is cut off with
/// 408 as problem details. The slow route is an AI credential's /test
/// against a provider that answers after 5 s (the test itself waits 20 s).
async fn a_request_past_the_timeout_answers_408_as_a_problem(kind: DbKind) {
    let Some(app) = TestApp::spawn_with(kind, |c| c.request_timeout_secs = 1).await else {
        return;
    };
    let llm = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "object": "list", "data": [] }))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&llm)
        .await;
    let key = tenant_key(&app).await;
    let credential = created(
        &app,
        &key,
        "/api/v1/ai-credentials",
        json!({ "name": "slow", "provider": "openai_compatible", "base_url": format!("{}/v1", llm.uri()) }),
    )
    .await;
    let started = std::time::Instant::now();
    let res = app
        .post(
            &format!("/api/v1/ai-credentials/{}/test", id(&credential)),
            &key,
            json!({}),
        )
        .await;
    let waited = started.elapsed();
    let problem = assert_problem(res, StatusCode::REQUEST_TIMEOUT, "request_timeout").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("timeout"),
        "{problem}"
    );
    // Cut off by the timeout, not answered once the provider was done.
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(
        llm.received_requests().await.unwrap().len(),
        1,
        "the provider was reached, and was slow"
    );

    // A quick request on the same server is not affected.
    let res = app.get("/api/v1/ai-credentials", &key).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// `cors_origins`: browsers from a listed origin may call the API (preflight
/// and actual requests); any other origin gets no allow-origin header.
async fn cors_answers_the_configured_origin_only(kind: DbKind) {
    const ALLOWED: &str = "https://app.example.com";
    const OTHER: &str = "https://evil.example.net";
    let Some(app) = TestApp::spawn_with(kind, |c| c.cors_origins = vec![ALLOWED.to_string()]).await
    else {
        return;
    };
    let key = tenant_key(&app).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/bots"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };

    let res = preflight(ALLOWED).await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let headers = res.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let methods = headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization") && allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );

    let res = preflight(OTHER).await.unwrap();
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        res.headers()
    );

    // The actual request: the listed origin may read the answer (and the
    // request id), another may not; both are answered alike otherwise.
    let res = app
        .request(Method::GET, "/api/v1/bots", &key)
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["access-control-allow-origin"], ALLOWED);
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let vary: Vec<String> = res
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(
        vary.iter().any(|v| v.contains("origin")),
        "caches keep answers per origin: {vary:?}"
    );

    let res = app
        .request(Method::GET, "/api/v1/bots", &key)
        .header("origin", OTHER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        res.headers()
    );
}

/// The jobs of `app`'s tenant (one page is all of them here).
async fn jobs(app: &TestApp, key: &str) -> Vec<Value> {
    let page: Value = app
        .get("/api/v1/jobs?limit=200", key)
        .await
        .json()
        .await
        .unwrap();
    assert!(page["next_cursor"].is_null(), "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn job(app: &TestApp, key: &str, id: &str) -> Value {
    let res = app.get(&format!("/api/v1/jobs/{id}"), key).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// `POST /api/v1/jobs/{id}/cancel`: a waiting job is cancelled, and a
/// worker that starts later never runs it; a job that is done cannot be
/// cancelled (409, naming its state).
async fn a_cancelled_job_is_never_run_and_a_finished_one_cannot_be_cancelled(kind: DbKind) {
    // No workers: the message's reply job stays waiting.
    let Some(app) = TestApp::spawn_with(kind, |c| c.workers = 0).await else {
        return;
    };
    let key = tenant_key(&app).await;
    let bot = created(
        &app,
        &key,
        "/api/v1/bots",
        json!({ "name": "Helper", "fallback_reply": "Hello from the bot" }),
    )
    .await;
    let account = created(
        &app,
        &key,
        "/api/v1/accounts",
        json!({ "bot_id": id(&bot), "kind": "web", "name": "Site", "credentials": {} }),
    )
    .await;
    let web = format!("/api/v1/web/{}/messages", id(&account));
    let say = |contact: &'static str| {
        let (app, key, web) = (&app, &key, &web);
        async move {
            let res = app
                .post(web, key, json!({ "contact_id": contact, "text": "hi" }))
                .await;
            assert_eq!(res.status(), StatusCode::ACCEPTED);
        }
    };
    say("cancelled-contact").await;
    let waiting = jobs(&app, &key).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0]["kind"], "reply");
    assert_eq!(waiting[0]["state"], "ready");
    let cancelled_id = id(&waiting[0]);

    let cancel = |job: String| {
        let (app, key) = (&app, &key);
        async move {
            app.request(Method::POST, &format!("/api/v1/jobs/{job}/cancel"), key)
                .send()
                .await
                .unwrap()
        }
    };
    let res = cancel(cancelled_id.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["state"], "cancelled");
    assert!(body["finished_at"].is_string(), "{body}");
    // Cancelling it again is a conflict, and says why.
    let problem = assert_problem(
        cancel(cancelled_id.clone()).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("cancelled"),
        "{problem}"
    );

    // Another contact's message, after the cancellation; then a worker
    // starts on the same database. Once it has run the later job, it has
    // looked at the queue with the cancelled job in it (jobs are taken
    // oldest first).
    say("answered-contact").await;
    let mut config = app.config.clone();
    config.workers = 1;
    let workers = integro_server::App::build(config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(workers.run_workers(async {
        let _ = stopped.await;
    }));
    wait_until(Duration::from_secs(20), || async {
        let all = jobs(&app, &key).await;
        let others: Vec<&Value> = all.iter().filter(|j| id(j) != cancelled_id).collect();
        // The later message's reply (and the send it queued).
        !others.is_empty() && others.iter().all(|j| j["state"] == "done")
    })
    .await;
    let _ = stop.send(());
    running.await.unwrap();

    let still = job(&app, &key, &cancelled_id).await;
    assert_eq!(still["state"], "cancelled", "{still}");
    assert_eq!(still["attempts"], 0, "never run: {still}");
    let conversation = |contact: &'static str| {
        let (app, key, web) = (&app, &key, &web);
        async move {
            let page: Value = app
                .get(&format!("{web}?contact_id={contact}"), key)
                .await
                .json()
                .await
                .unwrap();
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["direction"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        conversation("answered-contact").await,
        ["inbound", "outbound"],
        "the later message was answered"
    );
    // The cancelled job's message was never filed into a conversation
    // (its reply job does that), let alone answered: it is still as the
    // web channel stored it, and the one reply is the other contact's.
    assert!(
        conversation("cancelled-contact").await.is_empty(),
        "the cancelled job's message was not answered"
    );
    let message_id = still["payload"]["message_id"].as_str().unwrap().to_string();
    let (conversation_id, status): (Option<String>, String) =
        sqlx::query_as("SELECT conversation_id, status FROM messages WHERE id = $1")
            .bind(&message_id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(conversation_id, None);
    assert_eq!(status, "received");
    let replies: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE direction = 'outbound'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(replies, 1);

    // A job that is done cannot be cancelled, and stays done.
    let done = jobs(&app, &key)
        .await
        .into_iter()
        .find(|j| j["state"] == "done")
        .expect("a done job");
    let problem = assert_problem(cancel(id(&done)).await, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(
        problem["detail"], "the job is done and cannot be cancelled",
        "{problem}"
    );
    assert_eq!(job(&app, &key, &id(&done)).await["state"], "done");

    // The cancellation is in the audit log, once.
    let log: Value = app
        .get("/api/v1/audit-log?action=job.cancel", &key)
        .await
        .json()
        .await
        .unwrap();
    let entries = log["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["after"]["state"], "cancelled");
}

/// `settings.time_zone`: `now` in templates and rule conditions is the
/// local time of the bot's zone. Asia/Kolkata is UTC+5:30 all year (no
/// daylight saving), so its hour always differs from UTC's.
async fn now_in_templates_and_conditions_follows_the_bots_time_zone(kind: DbKind) {
    let Some(app) = TestApp::spawn_with(kind, |c| c.workers = 0).await else {
        return;
    };
    let key = tenant_key(&app).await;
    let kolkata = UtcOffset::from_hms(5, 30, 0).unwrap();
    let minute = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");

    // The zone is checked when saved.
    let res = app
        .post(
            "/api/v1/bots",
            &key,
            json!({ "name": "Nowhere", "fallback_reply": "x", "settings": { "time_zone": "Mars/Olympus" } }),
        )
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(
        problem["errors"][0]["field"], "settings.time_zone",
        "{problem}"
    );

    // The rules name the hour as it is now, in Kolkata and in UTC; the dry
    // run happens a moment later. Should the hour turn in between (the
    // rules would then be wrong, not the server), the round is done again
    // with the new hour: each round takes well under a second, so a second
    // round always stays within one hour.
    for round in 0..3 {
        let before = OffsetDateTime::now_utc();
        let (local_hour, utc_hour) = (before.to_offset(kolkata).hour(), before.hour());
        assert_ne!(local_hour, utc_hour);
        let bot = created(
            &app,
            &key,
            "/api/v1/bots",
            json!({ "name": format!("Clock {round}"), "fallback_reply": "no rule matched", "settings": { "time_zone": "Asia/Kolkata" } }),
        )
        .await;
        assert_eq!(bot["settings"]["time_zone"], "Asia/Kolkata");
        let rules = format!("/api/v1/bots/{}/rules", id(&bot));
        created(
            &app,
            &key,
            &rules,
            json!({ "match": "contains", "pattern": "time", "priority": 2,
                    "condition": format!("now.hour == {utc_hour}"), "reply": "UTC: {{now.time}}" }),
        )
        .await;
        let local_rule = created(
            &app,
            &key,
            &rules,
            json!({ "match": "contains", "pattern": "time", "priority": 1,
                    "condition": format!("now.hour == {local_hour}"), "reply": "{{now.date}} {{now.time}} ({{now.hour}}h)" }),
        )
        .await;
        let res = app
            .post(
                &format!("/api/v1/bots/{}/try", id(&bot)),
                &key,
                json!({ "text": "what time is it?" }),
            )
            .await;
        let after = OffsetDateTime::now_utc();
        assert_eq!(res.status(), StatusCode::OK);
        let result: Value = res.json().await.unwrap();
        if after.to_offset(kolkata).hour() != local_hour {
            eprintln!("the hour turned during round {round}; again");
            continue;
        }
        // The local rule matched, the UTC one did not.
        assert_eq!(result["rule_id"], local_rule["id"], "{result}");
        // The reply is Kolkata's wall clock at the moment of the dry run:
        // the minute it shows lies between the minutes before and after.
        let reply = result["replies"][0].as_str().unwrap().to_string();
        let shown = |t: OffsetDateTime| {
            format!(
                "{} ({}h)",
                t.to_offset(kolkata).format(&minute).unwrap(),
                t.to_offset(kolkata).hour()
            )
        };
        assert!(
            reply == shown(before) || reply == shown(after),
            "{reply:?}, expected {:?} (or {:?})",
            shown(before),
            shown(after)
        );
        // The same bot in UTC takes the other rule.
        let res = app
            .request(Method::PATCH, &format!("/api/v1/bots/{}", id(&bot)), &key)
            .json(&json!({ "settings": { "time_zone": "UTC" } }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = app
            .post(
                &format!("/api/v1/bots/{}/try", id(&bot)),
                &key,
                json!({ "text": "what time is it?" }),
            )
            .await;
        let later = OffsetDateTime::now_utc();
        let result: Value = res.json().await.unwrap();
        if later.hour() != utc_hour {
            eprintln!("the hour turned during round {round}; again");
            continue;
        }
        let utc_minute = time::macros::format_description!("[hour]:[minute]");
        let reply = result["replies"][0].as_str().unwrap();
        assert!(
            reply == format!("UTC: {}", after.format(&utc_minute).unwrap())
                || reply == format!("UTC: {}", later.format(&utc_minute).unwrap()),
            "{reply:?} at {after} to {later}"
        );
        return;
    }
    panic!("the hour turned in every round");
}
