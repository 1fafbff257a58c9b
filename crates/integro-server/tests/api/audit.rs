//! Every create, update and delete lands in the audit log, per tenant.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{ADMIN_EMAIL, DbKind, TestApp, assert_problem};

async fn changes_are_audited(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;
    let (key_id, key) = app.create_key(&a, "admin").await;
    app.create_key(&b, "admin").await;
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/v1/tenants/{a}"),
            &app.operator_token().await,
        )
        .json(&json!({ "name": "A2" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/api-keys/{key_id}"),
            &app.operator_token().await,
        )
        .header("x-integro-tenant", &a)
        .header("x-request-id", "audit-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // The operator sees every tenant's entries, newest first.
    let op = app.operator_token().await;
    let log: Value = app
        .get("/api/v1/audit-log", &op)
        .await
        .json()
        .await
        .unwrap();
    let entries = log["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "api_key.revoke",
            "tenant.update",
            "api_key.create",
            "api_key.create",
            "tenant.create",
            "tenant.create",
            "user.create"
        ]
    );
    let revoke = &entries[0];
    assert_eq!(revoke["actor_kind"], "user");
    assert_eq!(revoke["actor_label"], ADMIN_EMAIL);
    assert_eq!(revoke["target_id"], key_id.as_str());
    assert_eq!(revoke["tenant_id"], a.as_str());
    assert_eq!(revoke["request_id"], "audit-req-1");
    assert!(revoke["before"]["revoked_at"].is_null());
    assert!(revoke["after"]["revoked_at"].is_string());
    assert_eq!(entries[1]["before"]["name"], "A");
    assert_eq!(entries[1]["after"]["name"], "A2");

    // A tenant's admin sees that tenant's entries only; a viewer none.
    let (_, admin_a) = app.create_key(&a, "admin").await;
    let log: Value = app
        .get("/api/v1/audit-log?limit=100", &admin_a)
        .await
        .json()
        .await
        .unwrap();
    let items = log["items"].as_array().unwrap();
    assert!(!items.is_empty(), "A's own entries are listed: {log}");
    assert!(items.iter().all(|e| e["tenant_id"] == a.as_str()), "{log}");
    let filtered: Value = app
        .get("/api/v1/audit-log?action=tenant.update", &admin_a)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    let (_, viewer) = app.create_key(&a, "viewer").await;
    assert_problem(
        app.get("/api/v1/audit-log", &viewer).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    drop(key);
}

db_tests!(changes_are_audited);
