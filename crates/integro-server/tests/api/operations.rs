//! Health, readiness, metrics, docs, OpenAPI, request ids, security headers.

use reqwest::StatusCode;
use serde_json::Value;

use crate::db_tests;
use crate::helpers::{DbKind, TestApp};

async fn health_and_readiness(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let expected = if kind == DbKind::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(body["database"], expected);
}

async fn readiness_fails_when_database_is_gone(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    app.state.db.close().await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
}

async fn docs_are_served_locally(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger"), "Swagger UI page");
    assert!(
        !html.contains("https://"),
        "no asset is loaded from another host"
    );
    let res = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the bundle is served by the binary"
    );
}

async fn openapi_lists_every_route(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/tenants", "post"),
        ("/api/v1/tenants", "get"),
        ("/api/v1/tenants/{id}", "get"),
        ("/api/v1/tenants/{id}", "patch"),
        ("/api/v1/tenants/{id}", "delete"),
        ("/api/v1/tenants/{id}/users", "get"),
        ("/api/v1/invitations", "post"),
        ("/api/v1/invitations", "get"),
        ("/api/v1/invitations/{id}", "get"),
        ("/api/v1/invitations/{id}", "delete"),
        ("/api/v1/invitations/accept", "post"),
        ("/api/v1/members", "get"),
        ("/api/v1/members/{user_id}", "patch"),
        ("/api/v1/members/{user_id}", "delete"),
        ("/api/v1/users/{id}/disable", "post"),
        ("/api/v1/users/{id}/enable", "post"),
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys/{id}", "get"),
        ("/api/v1/api-keys/{id}", "delete"),
        ("/api/v1/audit-log", "get"),
        ("/api/v1/bots", "post"),
        ("/api/v1/bots", "get"),
        ("/api/v1/bots/{id}", "get"),
        ("/api/v1/bots/{id}", "patch"),
        ("/api/v1/bots/{id}", "delete"),
        ("/api/v1/bots/{id}/persona", "get"),
        ("/api/v1/bots/{id}/persona", "put"),
        ("/api/v1/bots/{id}/try", "post"),
        ("/api/v1/bots/{bot_id}/rules", "post"),
        ("/api/v1/bots/{bot_id}/rules", "get"),
        ("/api/v1/bots/{bot_id}/rules/{id}", "get"),
        ("/api/v1/bots/{bot_id}/rules/{id}", "patch"),
        ("/api/v1/bots/{bot_id}/rules/{id}", "delete"),
        ("/api/v1/bots/{bot_id}/rules/export", "get"),
        ("/api/v1/bots/{bot_id}/rules/import", "post"),
        ("/api/v1/ai-credentials", "post"),
        ("/api/v1/ai-credentials", "get"),
        ("/api/v1/ai-credentials/{id}", "get"),
        ("/api/v1/ai-credentials/{id}", "patch"),
        ("/api/v1/ai-credentials/{id}", "delete"),
        ("/api/v1/ai-credentials/{id}/test", "post"),
        ("/api/v1/ai-profiles", "post"),
        ("/api/v1/ai-profiles", "get"),
        ("/api/v1/ai-profiles/{id}", "get"),
        ("/api/v1/ai-profiles/{id}", "patch"),
        ("/api/v1/ai-profiles/{id}", "delete"),
        ("/api/v1/usage", "get"),
        ("/api/v1/events", "get"),
        ("/api/v1/settings", "get"),
        ("/api/v1/settings", "patch"),
        ("/api/v1/conversations/{id}/handoff", "post"),
        ("/api/v1/conversations/{id}/resume", "post"),
        ("/api/v1/conversations/{id}/reset", "post"),
        ("/api/v1/conversations/{id}/transitions", "get"),
        ("/api/v1/conversations/{id}/close", "post"),
        ("/api/v1/conversations/{id}/assignee", "put"),
        ("/api/v1/conversations/{id}/notes", "get"),
        ("/api/v1/conversations/{id}/notes", "post"),
        ("/api/v1/accounts", "post"),
        ("/api/v1/accounts", "get"),
        ("/api/v1/accounts/{id}", "get"),
        ("/api/v1/accounts/{id}", "patch"),
        ("/api/v1/accounts/{id}", "delete"),
        ("/api/v1/conversations", "get"),
        ("/api/v1/conversations/{id}", "get"),
        ("/api/v1/conversations/{id}/messages", "get"),
        ("/api/v1/conversations/{id}/messages", "post"),
        ("/api/v1/web/{account_id}/messages", "post"),
        ("/api/v1/web/{account_id}/messages", "get"),
        ("/api/v1/web/{account_id}/events", "get"),
        ("/api/v1/accounts/{id}/web-public", "get"),
        ("/api/v1/accounts/{id}/web-public", "put"),
        ("/api/v1/accounts/{id}/web-public/rotate-key", "post"),
        ("/api/v1/web-public/{account_id}/sessions", "post"),
        ("/api/v1/web-public/{account_id}/messages", "post"),
        ("/api/v1/web-public/{account_id}/messages", "get"),
        ("/api/v1/web-public/{account_id}/events", "get"),
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/{id}", "get"),
        ("/api/v1/jobs/{id}/retry", "post"),
        ("/api/v1/jobs/{id}/cancel", "post"),
        ("/api/v1/webhook-logs", "get"),
        ("/webhooks/twilio/{account_id}", "post"),
        ("/webhooks/whatsapp/{account_id}", "get"),
        ("/webhooks/whatsapp/{account_id}", "post"),
        ("/webhooks/instagram/{account_id}", "get"),
        ("/webhooks/instagram/{account_id}", "post"),
        ("/webhooks/x/{account_id}", "get"),
        ("/webhooks/x/{account_id}", "post"),
        ("/api/v1/accounts/{id}/test", "post"),
        ("/api/v1/accounts/{id}/x/connect", "post"),
        ("/api/v1/accounts/{id}/x/subscribe", "post"),
        ("/api/v1/canned-replies", "get"),
        ("/api/v1/canned-replies", "post"),
        ("/api/v1/canned-replies/{id}", "delete"),
        ("/api/v1/canned-replies/{id}", "get"),
        ("/api/v1/canned-replies/{id}", "patch"),
        ("/api/v1/conversations/{id}/labels", "get"),
        ("/api/v1/conversations/{id}/labels", "put"),
        ("/api/v1/conversations/{id}/read", "post"),
        ("/api/v1/labels", "get"),
        ("/api/v1/labels/{id}", "delete"),
        ("/api/v1/posts", "get"),
        ("/api/v1/posts", "post"),
        ("/api/v1/posts/drafts", "post"),
        ("/api/v1/posts/{id}", "delete"),
        ("/api/v1/posts/{id}", "get"),
        ("/api/v1/posts/{id}", "patch"),
        ("/api/v1/posts/{id}/approve", "post"),
        ("/api/v1/posts/{id}/reject", "post"),
        ("/api/v1/posts/{id}/submit", "post"),
        ("/api/v1/trend-sources", "get"),
        ("/api/v1/trend-sources", "post"),
        ("/api/v1/trend-sources/{id}", "delete"),
        ("/api/v1/trends", "get"),
        ("/api/v1/x/spend", "get"),
        ("/api/v1/x/metrics", "get"),
        ("/api/v1/usage/daily", "get"),
        ("/api/v1/workflow-definitions", "get"),
        ("/api/v1/workflow-definitions", "post"),
        ("/api/v1/workflow-definitions/{id}", "get"),
        ("/api/v1/workflow-definitions/{id}", "put"),
        ("/api/v1/workflow-definitions/{id}", "delete"),
        ("/api/v1/workflow-definitions/{id}/validate", "post"),
        ("/api/v1/workflow-definitions/{id}/versions", "get"),
        ("/api/v1/workflow-definitions/{id}/versions", "post"),
        ("/api/v1/workflow-definitions/{id}/simulate", "post"),
        ("/api/v1/workflow-instances", "get"),
        ("/api/v1/workflow-instances", "post"),
        ("/api/v1/workflow-instances/{id}", "get"),
        ("/api/v1/workflow-instances/{id}", "delete"),
        ("/api/v1/workflow-instances/{id}/history", "get"),
        ("/api/v1/workflow-instances/{id}/events", "post"),
        ("/api/v1/workflow-instances/{id}/migrate", "post"),
        ("/api/v1/workflow-instances/{id}/assign", "post"),
        ("/api/v1/me/workflow-tasks", "get"),
        ("/api/v1/workflow-events", "get"),
        ("/api/v1/workflow-stats", "get"),
        ("/api/v1/business-calendars", "get"),
        ("/api/v1/business-calendars", "post"),
        ("/api/v1/business-calendars/{id}", "get"),
        ("/api/v1/business-calendars/{id}", "put"),
        ("/api/v1/business-calendars/{id}", "delete"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        expected.len(),
        "a route was added without a test listing it here"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["visitor"].is_object());
    // The visitor routes take no API key: only a visitor token, or (to
    // start a session) the publishable key.
    for (path, method) in [
        ("/api/v1/web-public/{account_id}/messages", "get"),
        ("/api/v1/web-public/{account_id}/events", "get"),
    ] {
        assert_eq!(
            paths[path][method]["security"],
            serde_json::json!([{ "visitor": [] }]),
            "{method} {path}"
        );
    }
    assert!(
        paths["/api/v1/web-public/{account_id}/sessions"]["post"]
            .get("security")
            .is_none()
    );
}

async fn request_ids_are_made_or_kept(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    let made = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&made).is_ok());
    let res = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    // Webhooks have a stack of their own (no CORS, no browser headers), but
    // keep the request id and answer errors as problem details.
    let res = app
        .client
        .post(app.url(&format!("/webhooks/twilio/{}", uuid::Uuid::new_v4())))
        .header("x-request-id", "hook-7")
        .form(&[("Body", "hi")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-request-id"], "hook-7");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // An id too long to put in every log line is replaced.
    let long = "x".repeat(129);
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    let given = res.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(given).is_ok(), "{given}");
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "x".repeat(128))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "x".repeat(128).as_str());
}

/// A URI too long for the server is answered as problem details.
async fn a_uri_too_long_is_a_problem(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app
        .client
        .get(app.url(&format!("/api/v1/bots?cursor={}", "a".repeat(10_000))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

async fn metrics_count_requests_by_route(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    for _ in 0..3 {
        app.client.get(app.url("/healthz")).send().await.unwrap();
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("route=\"/healthz\"")
                && l.contains("status=\"200\"")
        })
        .expect("request counter for /healthz");
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    assert!(text.contains("http_request_duration_seconds_bucket"));
}

/// `/` sends a signed-out visitor to the sign-in page, which says what
/// this is and where the API documentation is.
async fn the_root_is_a_page_about_integro(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/login");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let page = res.text().await.unwrap();
    for needle in [
        "<title>Sign in · Integro</title>",
        "href=\"/docs\"",
        "/api/v1/auth/login",
    ] {
        assert!(page.contains(needle), "the page lacks {needle}");
    }
    // Unknown paths still answer problem details.
    let res = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

db_tests!(
    the_root_is_a_page_about_integro,
    a_uri_too_long_is_a_problem,
    health_and_readiness,
    readiness_fails_when_database_is_gone,
    docs_are_served_locally,
    openapi_lists_every_route,
    request_ids_are_made_or_kept,
    metrics_count_requests_by_route,
);
