//! Tenants cannot see each other: another tenant's resource answers 404.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{DbKind, TestApp, assert_problem};

async fn other_tenants_resources_answer_404(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;
    let (_, key_a) = app.create_key(&a, "owner").await;
    let (key_b_id, key_b) = app.create_key(&b, "owner").await;

    // B's key, looked up or revoked with A's key.
    let path = format!("/api/v1/api-keys/{key_b_id}");
    assert_problem(
        app.get(&path, &key_a).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app
        .request(Method::DELETE, &path, &key_a)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(
        app.get("/api/v1/auth/me", &key_b).await.status(),
        StatusCode::OK,
        "B's key still works"
    );

    // Naming tenant B with A's key.
    let res = app
        .request(Method::GET, "/api/v1/api-keys", &key_a)
        .header("x-integro-tenant", &b)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // Tenant B itself, and its users.
    assert_problem(
        app.get(&format!("/api/v1/tenants/{b}"), &key_a).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app.get(&format!("/api/v1/tenants/{b}/users"), &key_a).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // Lists show only the caller's own.
    let keys: Value = app
        .get("/api/v1/api-keys", &key_a)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    let tenants: Value = app
        .get("/api/v1/tenants", &key_a)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.as_str()]);
}

async fn users_see_only_their_tenants(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;
    let alice = app.user_token(&a, "alice@example.com", "admin").await;
    assert_eq!(
        app.get(&format!("/api/v1/tenants/{a}"), &alice)
            .await
            .status(),
        StatusCode::OK
    );
    assert_problem(
        app.get(&format!("/api/v1/tenants/{b}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // With one tenant, no header is needed.
    let res = app
        .post(
            "/api/v1/api-keys",
            &alice,
            json!({ "name": "ci", "role": "agent" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["tenant_id"], a.as_str());
    // Not an operator.
    assert_problem(
        app.request(Method::DELETE, &format!("/api/v1/tenants/{a}"), &alice)
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

async fn deleted_tenants_disappear_and_their_keys_stop(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let a = app.create_tenant("A").await;
    let (_, key) = app.create_key(&a, "owner").await;
    let op = app.operator_token().await;
    let res = app
        .request(Method::DELETE, &format!("/api/v1/tenants/{a}"), &op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get(&format!("/api/v1/tenants/{a}"), &op).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        app.get("/api/v1/auth/me", &key).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn lists_page_with_cursors(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_tenant(&format!("T{i}")).await);
    }
    let op = app.operator_token().await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/tenants?limit=2".to_string();
    loop {
        let page: Value = app.get(&path, &op).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/tenants?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, created, "every tenant once, in creation order");
    let res = app.get("/api/v1/tenants?cursor=garbage", &op).await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["errors"][0]["field"], "cursor");
}

db_tests!(
    other_tenants_resources_answer_404,
    users_see_only_their_tenants,
    deleted_tenants_disappear_and_their_keys_stop,
    lists_page_with_cursors,
);
