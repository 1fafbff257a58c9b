//! Sign-in, access tokens, refresh rotation, logout.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, DbKind, TestApp, assert_problem};

async fn login_succeeds_with_the_right_password(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();
    let me: Value = app
        .get("/api/v1/auth/me", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["kind"], "user");
    assert_eq!(me["user"]["email"], ADMIN_EMAIL);
    assert_eq!(me["user"]["is_operator"], true);
}

async fn login_fails_with_a_wrong_password_or_unknown_email(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app.login(ADMIN_EMAIL, "not-the-password").await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app.login("nobody@example.com", ADMIN_PASSWORD).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

async fn requests_without_valid_tokens_are_refused(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let res = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let user = integro_store::users::find_by_email(&app.state.db, ADMIN_EMAIL)
        .await
        .unwrap()
        .unwrap();
    let expired = app.state.tokens.sign(user.id, 0, -5);
    let body = assert_problem(
        app.get("/api/v1/auth/me", &expired).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));

    let good = app.operator_token().await;
    let mut tampered: Vec<char> = good.chars().collect();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == 'a' { 'b' } else { 'a' };
    let tampered: String = tampered.into_iter().collect();
    assert_problem(
        app.get("/api/v1/auth/me", &tampered).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;

    // A token signed by another installation's key.
    let other = integro_server::tokens::TokenKeys::new(&[9; 32]).sign(user.id, 0, 60);
    assert_problem(
        app.get("/api/v1/auth/me", &other).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

async fn refresh_tokens_rotate_and_work_once(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let first: Value = app
        .login(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let refresh = |token: Value| {
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .json(&json!({ "refresh_token": token }))
            .send()
    };
    let res = refresh(first["refresh_token"].clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let second: Value = res.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let me = app
        .get("/api/v1/auth/me", second["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.status(), StatusCode::OK);

    // The first token was used: presenting it again revokes the whole family.
    let res = refresh(first["refresh_token"].clone()).await.unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let res = refresh(second["refresh_token"].clone()).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the leaked family is revoked"
    );

    let res = refresh(json!("irt_made-up")).await.unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

async fn logout_revokes_the_refresh_token(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let tokens: Value = app
        .login(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({ "refresh_token": tokens["refresh_token"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": tokens["refresh_token"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn rate_limit_answers_429_with_retry_after(kind: DbKind) {
    let Some(app) = TestApp::spawn_with(kind, |c| c.rate_limit_per_hour = 3).await else {
        return;
    };
    let token = app.operator_token().await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/api/v1/auth/me", &token).await.status(),
            StatusCode::OK
        );
    }
    let res = app.get("/api/v1/auth/me", &token).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1200).contains(&retry), "retry after {retry} s");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another caller has an allowance of its own.
    let actor = integro_core::Actor::system();
    let mut tx = app.state.db.begin().await.unwrap();
    let tenant = integro_store::tenants::create(&mut tx, &actor, None, "Other")
        .await
        .unwrap();
    let (_, key) = integro_store::api_keys::create(
        &mut tx,
        &actor,
        None,
        tenant.id,
        "k",
        integro_core::Role::Viewer,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let res = app
        .request(Method::GET, "/api/v1/auth/me", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

db_tests!(
    login_succeeds_with_the_right_password,
    login_fails_with_a_wrong_password_or_unknown_email,
    requests_without_valid_tokens_are_refused,
    refresh_tokens_rotate_and_work_once,
    logout_revokes_the_refresh_token,
    rate_limit_answers_429_with_retry_after,
);
