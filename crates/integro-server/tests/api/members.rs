//! People join a tenant by invitation and set their own password; roles
//! change only downwards from the caller; the last owner stays; removal and
//! disabling end sessions at once.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{DbKind, TestApp, assert_problem};

const PASSWORD: &str = "a-long-password";

async fn accept(
    app: &TestApp,
    token: &str,
    password: Option<&str>,
    bearer: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/invitations/accept"))
        .json(&json!({ "token": token, "password": password }));
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    req.send().await.unwrap()
}

async fn login_tokens(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let res = app.login(email, password).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn member_ids(app: &TestApp, tenant: &str) -> Vec<String> {
    let token = app.operator_token().await;
    let body: Value = app
        .get(&format!("/api/v1/tenants/{tenant}/users"), &token)
        .await
        .json()
        .await
        .unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap().to_string())
        .collect()
}

/// The reported takeover: an admin of tenant A set a password for an email
/// it did not own; tenant B later added that email and the attacker signed
/// in as B's admin. Now nobody sets another person's password.
async fn no_one_sets_another_persons_password(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;
    let (_, attacker) = app.create_key(&a, "admin").await;

    // The old way is gone.
    let res = app
        .post(
            &format!("/api/v1/tenants/{a}/users"),
            &attacker,
            json!({ "email": "victim@example.com", "role": "agent", "password": "attacker-chosen-1" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);

    // An invitation creates no account and no membership.
    let res = app
        .post(
            "/api/v1/invitations",
            &attacker,
            json!({ "email": "victim@example.com", "role": "agent" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let invited: Value = res.json().await.unwrap();
    assert!(member_ids(&app, &a).await.is_empty());
    assert_eq!(
        app.login("victim@example.com", "attacker-chosen-1")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // The attacker accepts its own invitation with a password it chooses:
    // it now holds an account for that email, in tenant A only.
    let res = accept(
        &app,
        invited["token"].as_str().unwrap(),
        Some("attacker-chosen-1"),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // B invites the same email (as the real victim's admin would); the
    // answer does not say the email has an account, nor anything about it.
    let operator = app.operator_token().await;
    let res = app
        .request(Method::POST, "/api/v1/invitations", &operator)
        .header("x-integro-tenant", &b)
        .json(&json!({ "email": "Victim@Example.com", "role": "admin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let for_b: Value = res.json().await.unwrap();
    for leak in ["name", "is_operator", "created", "user", "password"] {
        assert!(
            for_b.get(leak).is_none(),
            "the answer reveals `{leak}`: {for_b}"
        );
    }
    assert_eq!(for_b["email"], "victim@example.com");
    // Accepting B's token for an email with an account needs that account's
    // sign-in: a password in the body does not replace it.
    let b_token = for_b["token"].as_str().unwrap();
    let res = accept(&app, b_token, Some("another-password-2"), None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "sign_in_required").await;
    assert_eq!(
        app.login("victim@example.com", "another-password-2")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Someone signed in as another account cannot take it either.
    let other = app.user_token(&a, "other@example.com", "agent").await;
    let res = accept(&app, b_token, None, Some(&other)).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(member_ids(&app, &b).await, Vec::<String>::new());
}

async fn invitations_work_once_and_can_be_revoked(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let other = app.create_tenant("Other").await;
    let (_, admin) = app.create_key(&tenant, "admin").await;
    let (_, other_admin) = app.create_key(&other, "admin").await;

    let res = app
        .post(
            "/api/v1/invitations",
            &admin,
            json!({ "email": "ann@example.com", "role": "agent" }),
        )
        .await;
    let invitation: Value = res.json().await.unwrap();
    let id = invitation["id"].as_str().unwrap();
    let token = invitation["token"].as_str().unwrap();

    // Not another tenant's to see or revoke.
    let path = format!("/api/v1/invitations/{id}");
    assert_problem(
        app.get(&path, &other_admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app
        .request(Method::DELETE, &path, &other_admin)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // The owner's view never shows the token again.
    let shown: Value = app.get(&path, &admin).await.json().await.unwrap();
    assert_eq!(shown["state"], "pending");
    assert!(shown.get("token").is_none());

    // A new account needs a password of at least 10 characters.
    let res = accept(&app, token, None, None).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let res = accept(&app, token, Some("short"), None).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let res = accept(&app, token, Some(PASSWORD), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let member: Value = res.json().await.unwrap();
    assert_eq!(
        (member["role"].as_str(), member["tenant_id"].as_str()),
        (Some("agent"), Some(tenant.as_str()))
    );
    // Once only.
    let res = accept(&app, token, Some("yet-another-pass"), None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let shown: Value = app.get(&path, &admin).await.json().await.unwrap();
    assert_eq!(shown["state"], "accepted");
    assert_eq!(member_ids(&app, &tenant).await, vec!["ann@example.com"]);

    // An existing account accepts signed in as itself.
    let res = app
        .post(
            "/api/v1/invitations",
            &other_admin,
            json!({ "email": "ann@example.com", "role": "viewer" }),
        )
        .await;
    let second: Value = res.json().await.unwrap();
    let ann = app.access_token("ann@example.com", PASSWORD).await;
    let res = accept(&app, second["token"].as_str().unwrap(), None, Some(&ann)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(member_ids(&app, &other).await, vec!["ann@example.com"]);
    // Inviting a member again is a conflict, not a second membership.
    let res = app
        .post(
            "/api/v1/invitations",
            &admin,
            json!({ "email": "ann@example.com", "role": "admin" }),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;

    // A revoked invitation's token stops working.
    let res = app
        .post(
            "/api/v1/invitations",
            &admin,
            json!({ "email": "bob@example.com", "role": "viewer" }),
        )
        .await;
    let revoked: Value = res.json().await.unwrap();
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/invitations/{}", revoked["id"].as_str().unwrap()),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = accept(
        &app,
        revoked["token"].as_str().unwrap(),
        Some(PASSWORD),
        None,
    )
    .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // An expired one too.
    let res = app
        .post(
            "/api/v1/invitations",
            &admin,
            json!({ "email": "cy@example.com", "role": "viewer" }),
        )
        .await;
    let expired: Value = res.json().await.unwrap();
    sqlx::query("UPDATE invitations SET expires_at = 1 WHERE id = $1")
        .bind(expired["id"].as_str().unwrap())
        .execute(&mut *app.state.db.writer().await.unwrap())
        .await
        .unwrap();
    let res = accept(
        &app,
        expired["token"].as_str().unwrap(),
        Some(PASSWORD),
        None,
    )
    .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let list: Value = app
        .get("/api/v1/invitations", &admin)
        .await
        .json()
        .await
        .unwrap();
    let states: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["accepted", "revoked", "expired"]);
}

async fn user_id(app: &TestApp, tenant: &str, email: &str) -> String {
    let token = app.operator_token().await;
    let body: Value = app
        .get(&format!("/api/v1/tenants/{tenant}/users"), &token)
        .await
        .json()
        .await
        .unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == email)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn patch_role(app: &TestApp, token: &str, user: &str, role: &str) -> reqwest::Response {
    app.request(Method::PATCH, &format!("/api/v1/members/{user}"), token)
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap()
}

async fn roles_change_only_below_the_caller(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let owner = app.user_token(&tenant, "owner@example.com", "owner").await;
    let admin = app.user_token(&tenant, "admin@example.com", "admin").await;
    let _admin2 = app.user_token(&tenant, "admin2@example.com", "admin").await;
    let agent = app.user_token(&tenant, "agent@example.com", "agent").await;
    let owner_id = user_id(&app, &tenant, "owner@example.com").await;
    let admin_id = user_id(&app, &tenant, "admin@example.com").await;
    let admin2_id = user_id(&app, &tenant, "admin2@example.com").await;
    let agent_id = user_id(&app, &tenant, "agent@example.com").await;

    // An admin cannot touch the owner, nor make anyone owner.
    assert_problem(
        patch_role(&app, &admin, &owner_id, "viewer").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/members/{owner_id}"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(
        patch_role(&app, &admin, &agent_id, "owner").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // An agent manages nobody.
    assert_problem(
        patch_role(&app, &agent, &admin2_id, "viewer").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // An admin may demote another admin.
    let res = patch_role(&app, &admin, &admin2_id, "agent").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["role"], "agent");
    // Another tenant's member is not found.
    let other = app.create_tenant("Other").await;
    let (_, other_owner) = app.create_key(&other, "owner").await;
    assert_problem(
        patch_role(&app, &other_owner, &agent_id, "viewer").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // The last owner can be neither demoted nor removed, even by itself.
    assert_problem(
        patch_role(&app, &owner, &owner_id, "admin").await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/members/{owner_id}"),
            &owner,
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    // With a second owner, it can step down.
    assert_eq!(
        patch_role(&app, &owner, &admin_id, "owner").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        patch_role(&app, &owner, &owner_id, "admin").await.status(),
        StatusCode::OK
    );

    // Removal ends the member's sessions at once: access and refresh tokens.
    let (agent_access, agent_refresh) = login_tokens(&app, "agent@example.com", PASSWORD).await;
    assert_eq!(
        app.get("/api/v1/auth/me", &agent_access).await.status(),
        StatusCode::OK
    );
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/members/{agent_id}"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for token in [&agent_access, &agent] {
        assert_problem(
            app.get("/api/v1/auth/me", token).await,
            StatusCode::UNAUTHORIZED,
            "session_ended",
        )
        .await;
    }
    let res = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": agent_refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !member_ids(&app, &tenant)
            .await
            .contains(&"agent@example.com".to_string())
    );
}

async fn disabled_users_lose_access_at_once(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let _ = app.user_token(&tenant, "ann@example.com", "admin").await;
    let (access, refresh) = login_tokens(&app, "ann@example.com", PASSWORD).await;
    let ann_id = user_id(&app, &tenant, "ann@example.com").await;
    let (_, owner_key) = app.create_key(&tenant, "owner").await;

    // Only operators disable accounts.
    let path = format!("/api/v1/users/{ann_id}/disable");
    let res = app
        .request(Method::POST, &path, &owner_key)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let operator = app.operator_token().await;
    let res = app
        .request(Method::POST, &path, &operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.json::<Value>().await.unwrap()["disabled_at"].is_string());

    assert_problem(
        app.get("/api/v1/auth/me", &access).await,
        StatusCode::UNAUTHORIZED,
        "account_disabled",
    )
    .await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_problem(
        app.login("ann@example.com", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "account_disabled",
    )
    .await;

    let res = app
        .request(
            Method::POST,
            &format!("/api/v1/users/{ann_id}/enable"),
            &operator,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

/// Guessing one account's password from one address is slowed down; the
/// account's owner, elsewhere, is not locked out.
async fn sign_in_is_throttled_per_account_and_address(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tenant = app.create_tenant("Acme").await;
    let _ = app.user_token(&tenant, "ann@example.com", "admin").await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            app.login("ann@example.com", "wrong-password-x")
                .await
                .status(),
        );
    }
    assert!(
        statuses[..9].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // Another account from the same address is not affected.
    assert_eq!(
        app.login("nobody@example.com", "wrong-password-x")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Behind a trusted reverse proxy the throttles count the client that
/// `X-Forwarded-For` names; from anyone else the header is ignored.
async fn forwarded_addresses_count_only_from_trusted_proxies(kind: DbKind) {
    for trusted in [true, false] {
        let Some(app) = TestApp::spawn_with(kind, |c| {
            if trusted {
                c.trusted_proxies = vec!["127.0.0.1".into()];
            }
        })
        .await
        else {
            return;
        };
        let attempt = |client: &'static str| {
            app.client
                .post(app.url("/api/v1/auth/login"))
                .header("x-forwarded-for", client)
                .json(&json!({ "email": "ann@example.com", "password": "wrong-password-x" }))
                .send()
        };
        for _ in 0..10 {
            assert_eq!(
                attempt("198.51.100.1").await.unwrap().status(),
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            attempt("198.51.100.1").await.unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let other = attempt("198.51.100.2").await.unwrap().status();
        if trusted {
            assert_eq!(
                other,
                StatusCode::UNAUTHORIZED,
                "another client behind the proxy"
            );
        } else {
            assert_eq!(
                other,
                StatusCode::TOO_MANY_REQUESTS,
                "the header is not trusted"
            );
        }
    }
}

db_tests!(
    forwarded_addresses_count_only_from_trusted_proxies,
    no_one_sets_another_persons_password,
    invitations_work_once_and_can_be_revoked,
    roles_change_only_below_the_caller,
    disabled_users_lose_access_at_once,
    sign_in_is_throttled_per_account_and_address,
);
