//! API keys: shown once, stored hashed, usable, revocable; roles enforced.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{DbKind, TestApp, assert_problem};

async fn api_key_works_until_revoked(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let (id, key) = app.create_key(&tenant, "admin").await;
    assert!(key.starts_with("ik_"));

    let me: Value = app.get("/api/v1/auth/me", &key).await.json().await.unwrap();
    assert_eq!(me["kind"], "api_key");
    assert_eq!(me["api_key"]["tenant_id"], tenant.as_str());
    assert!(me["api_key"]["last_used_at"].is_string(), "use is recorded");

    // The secret is never shown again, nor stored in clear.
    let list: Value = app
        .get("/api/v1/api-keys", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&key));
    let stored: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    assert!(!stored.is_empty(), "the key is stored");
    assert!(stored.iter().all(|h| !h.contains(&key[3..])));

    let res = app
        .request(Method::DELETE, &format!("/api/v1/api-keys/{id}"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(body["revoked_at"].is_string());
    assert_problem(
        app.get("/api/v1/auth/me", &key).await,
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
    )
    .await;
}

async fn viewer_cannot_create_things(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let (_, viewer) = app.create_key(&tenant, "viewer").await;
    let res = app
        .post(
            "/api/v1/api-keys",
            &viewer,
            json!({ "name": "x", "role": "viewer" }),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app
        .post("/api/v1/tenants", &viewer, json!({ "name": "mine" }))
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app
        .post(
            "/api/v1/invitations",
            &viewer,
            json!({ "email": "v@example.com", "role": "viewer" }),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    // Reading is allowed.
    assert_eq!(
        app.get("/api/v1/api-keys", &viewer).await.status(),
        StatusCode::OK
    );

    let viewer_user = app
        .user_token(&tenant, "viewer@example.com", "viewer")
        .await;
    let res = app
        .post(
            "/api/v1/api-keys",
            &viewer_user,
            json!({ "name": "x", "role": "viewer" }),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
}

async fn nobody_grants_more_than_they_hold(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let (_, admin) = app.create_key(&tenant, "admin").await;
    let res = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({ "name": "x", "role": "owner" }),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app
        .post(
            "/api/v1/invitations",
            &admin,
            json!({ "email": "o@example.com", "role": "owner" }),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app
        .post(
            "/api/v1/invitations",
            &admin,
            json!({ "email": "a@example.com", "role": "agent" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["state"], "pending");
    assert!(body["token"].as_str().unwrap().starts_with("iinv_"));
}

db_tests!(
    api_key_works_until_revoked,
    viewer_cannot_create_things,
    nobody_grants_more_than_they_hold
);
