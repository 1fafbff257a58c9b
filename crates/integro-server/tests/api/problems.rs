//! Bad input gets problem details that name what is wrong.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{DbKind, TestApp, assert_problem};

async fn bad_bodies_are_explained(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let op = app.operator_token().await;
    let send = |body: &'static str| {
        app.request(Method::POST, "/api/v1/tenants", &op)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_problem(
        send("{\"name\": ").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;

    let body = assert_problem(
        send("{}").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");
    assert!(body["detail"].as_str().unwrap().contains("name"));

    let body = assert_problem(
        send("{\"name\": \"x\", \"colour\": 1}").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "colour");

    let body = assert_problem(
        send("{\"name\": 42}").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");

    let body = assert_problem(
        send("{\"name\": \"   \"}").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");

    let tenant = app.create_tenant("Acme").await;
    let res = app
        .request(Method::POST, "/api/v1/api-keys", &op)
        .header("x-integro-tenant", &tenant)
        .json(&serde_json::json!({ "name": "k", "role": "boss" }))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["errors"][0]["field"], "role");

    let res = app
        .request(Method::POST, "/api/v1/tenants", &op)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

async fn unknown_routes_and_bad_ids_are_problems(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let op = app.operator_token().await;
    assert_problem(
        app.get("/api/v1/nope", &op).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app.get("/api/v1/tenants/not-a-uuid", &op).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app
        .request(Method::PUT, "/api/v1/tenants", &op)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

async fn oversized_bodies_answer_413(kind: DbKind) {
    let Some(app) = TestApp::spawn_with(kind, |c| c.body_limit_bytes = 1024).await else {
        return;
    };
    let op = app.operator_token().await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(4096));
    let res = app
        .request(Method::POST, "/api/v1/tenants", &op)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

/// U+0000 reaches PostgreSQL from no edge: a body with one answers 422
/// naming the field, a path or query parameter 400, never a 500 (the
/// sign-in's one was unauthenticated).
async fn nul_characters_get_clear_answers(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let (_, key) = app.create_key(&tenant, "admin").await;
    let res = app
        .request(Method::POST, "/api/v1/bots", &key)
        .header("content-type", "application/json")
        .body(r#"{"name": "He\u0000lper", "fallback_reply": "hi"}"#)
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["errors"][0]["field"], "name");
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email": "ann\u0000@example.com", "password": "whatever-it-is"}"#)
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["errors"][0]["field"], "email");
    for path in [
        "/api/v1/audit-log?action=a%00b",
        "/api/v1/events?kind=a%00b",
    ] {
        let res = app.get(path, &key).await;
        // PostgreSQL refuses the text (400); SQLite finds nothing (200).
        let status = res.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::OK,
            "{path}: {status}"
        );
    }
}

/// Input limits: names without control characters, free text of bounded
/// length, event streams per caller, refused webhooks per source, private
/// files.
async fn limits_hold(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let (_, key) = app.create_key(&tenant, "admin").await;

    // A name that would drive the operator's terminal through the CLI.
    let res = app
        .post(
            "/api/v1/api-keys",
            &key,
            serde_json::json!({ "name": "ci\u{1b}]0;pwned\u{7}", "role": "viewer" }),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["errors"][0]["field"], "name");

    // Free text has a length limit (1 MB was accepted).
    let res = app
        .post(
            "/api/v1/bots",
            &key,
            serde_json::json!({ "name": "Helper", "fallback_reply": "x".repeat(40_000) }),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["errors"][0]["field"], "fallback_reply");

    // Event streams: at most 10 open per caller.
    let bot: serde_json::Value = app
        .post(
            "/api/v1/bots",
            &key,
            serde_json::json!({ "name": "Helper", "fallback_reply": "hi" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let web: serde_json::Value = app
        .post(
            "/api/v1/accounts",
            &key,
            serde_json::json!({ "bot_id": bot["id"], "kind": "web", "name": "Site" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let events = format!(
        "/api/v1/web/{}/events?contact_id=visitor-1",
        web["id"].as_str().unwrap()
    );
    let mut open = Vec::new();
    for _ in 0..10 {
        let res = app.get(&events, &key).await;
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res);
    }
    assert_problem(
        app.get(&events, &key).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_streams",
    )
    .await;
    // Closing one frees its slot.
    drop(open.pop());
    let mut freed = false;
    for _ in 0..50 {
        let res = app.get(&events, &key).await;
        if res.status() == StatusCode::OK {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(freed, "a closed stream gives its slot back");

    // Refused webhooks from one source are held back past a budget.
    let path = format!("/webhooks/twilio/{}", uuid::Uuid::new_v4());
    let mut statuses = Vec::new();
    for _ in 0..32 {
        let res = app
            .client
            .post(app.url(&path))
            .form(&[("Body", "x".repeat(1000))])
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert!(statuses[..30].iter().all(|s| *s == 404), "{statuses:?}");
    assert_eq!(statuses[31], 429, "{statuses:?}");
    // Another path is not held back.
    let res = app
        .client
        .post(app.url(&format!("/webhooks/twilio/{}", uuid::Uuid::new_v4())))
        .form(&[("Body", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // The data directory and the database's files are the server's alone.
    #[cfg(unix)]
    if kind == DbKind::Sqlite {
        use std::os::unix::fs::PermissionsExt;
        let dir = &app.config.data_dir;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir), 0o700);
        for file in ["integro.db", "integro.db-wal", "master.key"] {
            let path = dir.join(file);
            if file != "master.key" || path.exists() {
                assert_eq!(mode(&path), 0o600, "{file}");
            }
        }
    }
}

/// A fault of ours (stored data that no longer reads back) is a 500 with
/// a generic detail, never a 409 that blames the caller or leaks the cause.
async fn internal_faults_answer_500(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Shop").await;
    let (_, key) = app.create_key(&tenant, "admin").await;
    let res = app
        .post(
            "/api/v1/bots",
            &key,
            json!({ "name": "Helper", "fallback_reply": "Hi" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let bot = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("UPDATE bots SET settings_json = 'not json' WHERE id = $1")
        .bind(&bot)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let res = app.get(&format!("/api/v1/bots/{bot}"), &key).await;
    let problem = assert_problem(res, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
    assert!(
        !problem.to_string().contains("settings"),
        "the cause stays in the log: {problem}"
    );
}

db_tests!(
    internal_faults_answer_500,
    limits_hold,
    nul_characters_get_clear_answers,
    bad_bodies_are_explained,
    unknown_routes_and_bad_ids_are_problems,
    oversized_bodies_answer_413
);
