//! Connecting an X account with OAuth 2.0 and PKCE against a local mock of
//! X's token endpoint and API: the authorize URL, the callback's code
//! exchange, replies sent with the bearer token, and its refresh.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::{Loop, PUBLIC_URL, wait_until, x_dm};
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};
use integro_channels::Credentials;
use integro_store::accounts::{self, CredentialValues};

db_tests!(an_x_account_connects_with_oauth2_and_its_token_is_refreshed);

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{url} has no {name}"))
}

fn form_param(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn post_dm(t: &Loop, id: &str) {
    t.x_webhook(&x_dm(id, "hello")).await;
}

/// The DM replies X received, by the bearer token they carried.
async fn dm_bearers(t: &Loop) -> Vec<String> {
    t.provider_requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/2/dm_conversations/with/2222/messages")
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect()
}

async fn expire_token(t: &Loop) {
    let db = &t.app.state.db;
    let tenant = crate::dashboard::tenant_named(&t.app, "Shop").await;
    let account = accounts::get(db, tenant.parse().unwrap(), t.account_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let expected = account.credentials.get("oauth2_expires_at").cloned();
    let mut values = CredentialValues::default();
    values.public.insert("oauth2_expires_at".into(), "0".into());
    let stored = accounts::replace_refreshed(
        db,
        &t.app.state.keyring,
        &account,
        "oauth2_expires_at",
        expected.as_deref(),
        values,
    )
    .await
    .unwrap();
    assert!(stored);
    t.app.state.accounts.forget(account.id);
}

async fn an_x_account_connects_with_oauth2_and_its_token_is_refreshed(kind: DbKind) {
    // Without OAuth 1.0a tokens, an X account needs an OAuth 2.0 app.
    let Some(t) = Loop::new(
        kind,
        "x",
        json!({ "consumer_key": "ck", "consumer_secret": "cs-secret", "client_id": "cid", "client_secret": "csecret" }),
        2,
    )
    .await
    else {
        return;
    };
    let res = t
        .app
        .post(
            "/api/v1/accounts",
            &t.key,
            json!({ "bot_id": t.bot_id, "kind": "x", "name": "Half", "credentials": { "consumer_key": "ck", "consumer_secret": "cs" } }),
        )
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("without an OAuth 2.0 app"),
        "{problem}"
    );

    let connect = format!("/api/v1/accounts/{}/x/connect", t.account_id);
    let res = t.app.post(&connect, &t.key, json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let started: Value = res.json().await.unwrap();
    let url = started["authorize_url"].as_str().unwrap();
    assert!(url.starts_with("https://x.com/i/oauth2/authorize?"));
    let redirect_uri = format!("{PUBLIC_URL}/oauth/x/callback");
    assert_eq!(started["redirect_uri"], redirect_uri.as_str());
    assert_eq!(query_param(url, "redirect_uri"), redirect_uri);
    assert_eq!(query_param(url, "client_id"), "cid");
    assert_eq!(query_param(url, "code_challenge_method"), "S256");
    assert!(query_param(url, "scope").contains("offline.access"));
    let state = query_param(url, "state");
    let challenge = query_param(url, "code_challenge");

    // X's token endpoint: the code with its verifier, the app by Basic auth.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("cid:csecret")
    );
    Mock::given(method("POST"))
        .and(path("/2/oauth2/token"))
        .and(header("authorization", basic.as_str()))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "bearer", "access_token": "AT1", "refresh_token": "RT1", "expires_in": 7200,
            "scope": "tweet.read tweet.write users.read dm.read dm.write offline.access" })))
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/2/users/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "data": { "id": "4337869213", "name": "Shop", "username": "shopbot" } }),
        ))
        .mount(&t.provider)
        .await;
    // The app's webhook and the account's subscriptions, made after connecting.
    let app_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ck:cs-secret")
    );
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(header("authorization", app_basic.as_str()))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "token_type": "bearer", "access_token": "APP" })),
        )
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/2/webhooks"))
        .and(header("authorization", "Bearer APP"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": [], "meta": { "result_count": 0 } })),
        )
        .mount(&t.provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/2/webhooks"))
        .and(header("authorization", "Bearer APP"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": { "id": "wh1", "valid": true } })),
        )
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/2/activity/subscriptions"))
        .and(header("authorization", "Bearer APP"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{ "subscription_id": "s1", "event_type": "dm.received", "filter": { "user_id": "4337869213" }, "webhook_id": "wh1" },
                     { "subscription_id": "s9", "event_type": "post.mention.create", "filter": { "user_id": "99" }, "webhook_id": "wh1" }],
            "meta": { "total_subscriptions": 2 } })))
        .mount(&t.provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/2/activity/subscriptions"))
        .and(header("authorization", "Bearer AT1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": { "subscription_id": "s2" } })),
        )
        .mount(&t.provider)
        .await;
    let callback = |state: &str| {
        t.app
            .client
            .get(
                t.app
                    .url(&format!("/oauth/x/callback?state={state}&code=the-code")),
            )
            .send()
    };
    let res = callback(&state).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("now speaks as @shopbot on X"), "{page}");
    assert!(page.contains("on webhook wh1"), "{page}");
    let requests = t.provider_requests().await;
    let registered = requests
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == "/2/webhooks")
        .unwrap();
    let registered: Value = serde_json::from_slice(&registered.body).unwrap();
    assert_eq!(
        registered["url"],
        format!("{PUBLIC_URL}/webhooks/x/{}", t.account_id).as_str()
    );
    let mut made: Vec<Value> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/2/activity/subscriptions")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    made.sort_by_key(|b: &Value| b["event_type"].to_string());
    let events: Vec<&str> = made
        .iter()
        .map(|b| b["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["post.mention.create", "post.reply.create"],
        "dm.received existed"
    );
    assert_eq!(made[0]["filter"]["user_id"], "4337869213");
    assert_eq!(made[0]["webhook_id"], "wh1");
    let exchange = t
        .provider_requests()
        .await
        .into_iter()
        .find(|r| r.url.path() == "/2/oauth2/token")
        .unwrap();
    assert_eq!(
        form_param(&exchange.body, "code").as_deref(),
        Some("the-code")
    );
    assert_eq!(
        form_param(&exchange.body, "redirect_uri"),
        Some(redirect_uri.clone())
    );
    let verifier = form_param(&exchange.body, "code_verifier").unwrap();
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes())),
        challenge,
        "the verifier is the one the challenge was made from"
    );
    assert_eq!(
        form_param(&exchange.body, "client_id"),
        None,
        "a confidential client uses Basic"
    );

    // A state works once.
    let res = callback(&state).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("unknown or expired"));

    // The account now acts as the user who authorized; tokens never shown.
    let account = t.get(&format!("/api/v1/accounts/{}", t.account_id)).await;
    let creds = &account["credentials"];
    assert_eq!(creds["user_id"], "4337869213");
    assert_eq!(account["external_id"], "4337869213");
    assert_eq!(
        account["webhook_urls"]["oauth_callback"],
        redirect_uri.as_str()
    );
    assert_ne!(creds["oauth2_access_token"], "AT1");
    assert!(!account.to_string().contains("RT1"));
    let audit = t.get("/api/v1/audit-log?action=account.update").await;
    assert_eq!(
        audit["items"][0]["actor_label"], "api_key:admin key",
        "{audit}"
    );

    // Replies go out with the bearer token.
    Mock::given(method("POST"))
        .and(path("/2/dm_conversations/with/2222/messages"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({ "data": { "dm_conversation_id": "1-2", "dm_event_id": "900" } }),
        ))
        .mount(&t.provider)
        .await;
    post_dm(&t, "701").await;
    wait_until(Duration::from_secs(20), || async {
        dm_bearers(&t).await.len() == 1
    })
    .await;
    assert_eq!(dm_bearers(&t).await, vec!["Bearer AT1"]);

    // Near its expiry, the token is refreshed once; X's new refresh token
    // replaces the old one.
    Mock::given(method("POST"))
        .and(path("/2/oauth2/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=RT1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "bearer", "access_token": "AT2", "refresh_token": "RT2", "expires_in": 7200 })))
        .mount(&t.provider)
        .await;
    expire_token(&t).await;
    post_dm(&t, "702").await;
    wait_until(Duration::from_secs(20), || async {
        dm_bearers(&t).await.len() == 2
    })
    .await;
    assert_eq!(dm_bearers(&t).await[1], "Bearer AT2");
    let tenant = crate::dashboard::tenant_named(&t.app, "Shop").await;
    let stored = accounts::get(
        &t.app.state.db,
        tenant.parse().unwrap(),
        t.account_id.parse().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let creds = Credentials(
        accounts::credentials(&t.app.state.db, &t.app.state.keyring, &stored)
            .await
            .unwrap(),
    );
    assert_eq!(creds.get("oauth2_refresh_token").unwrap(), "RT2");
    assert_eq!(creds.get("oauth2_access_token").unwrap(), "AT2");

    // A refresh token X no longer takes: the reply fails, asking to reconnect.
    Mock::given(method("POST"))
        .and(path("/2/oauth2/token"))
        .and(body_string_contains("refresh_token=RT2"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request", "error_description": "Value passed for the token was invalid." })))
        .mount(&t.provider)
        .await;
    expire_token(&t).await;
    post_dm(&t, "703").await;
    wait_until(Duration::from_secs(20), || async {
        t.outbound()
            .await
            .iter()
            .any(|m| m["error_code"] == "x_reconnect")
    })
    .await;
    assert_eq!(
        dm_bearers(&t).await.len(),
        2,
        "nothing sent without a token"
    );

    // Other tenants and lesser roles cannot start a connection.
    let other = t.app.create_tenant("Other shop").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let res = t.app.post(&connect, &other_key, json!({})).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let (_, agent) = t.app.create_key(&tenant, "agent").await;
    let res = t.app.post(&connect, &agent, json!({})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Deleting the account removes the subscriptions made for it, and only those.
    let tag = format!("integro:{}", t.account_id);
    Mock::given(method("GET"))
        .and(path("/2/activity/subscriptions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{ "subscription_id": "s2", "event_type": "post.mention.create", "tag": tag },
                     { "subscription_id": "s3", "event_type": "post.reply.create", "tag": tag },
                     { "subscription_id": "s9", "event_type": "dm.received", "tag": "someone else" }],
            "meta": { "total_subscriptions": 3 } })))
        .with_priority(1)
        .mount(&t.provider)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/2/activity/subscriptions"))
        .and(header("authorization", "Bearer APP"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{ "subscription_id": "s2", "deleted": true }, { "subscription_id": "s3", "deleted": true }] })))
        .mount(&t.provider)
        .await;
    let res = t
        .app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/accounts/{}", t.account_id),
            &t.key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let deletes: Vec<String> = t
        .provider_requests()
        .await
        .iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .map(|r| r.url.query().unwrap_or_default().to_string())
        .collect();
    assert_eq!(deletes, ["ids=s2%2Cs3"]);
}
