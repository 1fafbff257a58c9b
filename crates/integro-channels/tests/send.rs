//! Sends against a local HTTP server standing in for the providers, checking
//! the exact request and how failures are read.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use integro_channels::{Credentials, ProviderUrls, instagram, x};
use integro_core::OutboundMessage;
use serde_json::json;
use wiremock::matchers::{bearer_token, body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    integro_channels::http::client(Duration::from_secs(5))
}

fn urls(server: &MockServer) -> ProviderUrls {
    ProviderUrls {
        instagram: server.uri(),
        x: format!("{}/", server.uri()),
        ..ProviderUrls::default()
    }
}

fn creds(pairs: &[(&str, &str)]) -> Credentials {
    Credentials(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn text(to: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        to: to.into(),
        text: Some(text.into()),
        media_url: None,
        template: None,
        reply_to: None,
    }
}

fn instagram_creds() -> Credentials {
    creds(&[
        ("ig_user_id", "17841400000000001"),
        ("access_token", "IGQVJ-token"),
        ("app_secret", "s"),
        ("verify_token", "v"),
    ])
}

#[tokio::test]
async fn instagram_send_posts_the_message_with_the_bearer_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/17841400000000001/messages"))
        .and(bearer_token("IGQVJ-token"))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"recipient": {"id": "IGSID1"}, "message": {"text": "Thanks for reaching out!"}}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "IGSID1", "message_id": "aWdfOUT"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let id = instagram::send(
        &client(),
        &urls(&server),
        &instagram_creds(),
        &text("IGSID1", "Thanks for reaching out!"),
    )
    .await
    .unwrap();
    assert_eq!(id, "aWdfOUT");
}

#[tokio::test]
async fn instagram_send_sends_media_as_an_attachment() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/17841400000000001/messages"))
        .and(body_json(json!({"recipient": {"id": "IGSID1"},
            "message": {"attachment": {"type": "image", "payload": {"url": "https://cdn.example/p.jpg"}}}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"recipient_id": "IGSID1", "message_id": "aWdfIMG"})))
        .expect(1)
        .mount(&server)
        .await;
    let msg = OutboundMessage {
        media_url: Some("https://cdn.example/p.jpg".into()),
        text: None,
        ..text("IGSID1", "")
    };
    assert_eq!(
        instagram::send(&client(), &urls(&server), &instagram_creds(), &msg)
            .await
            .unwrap(),
        "aWdfIMG"
    );
}

#[tokio::test]
async fn instagram_throttling_is_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json!({"error": {"message": "Calls to this api have exceeded the rate limit.", "code": 613}})),
        )
        .mount(&server)
        .await;
    let e = instagram::send(
        &client(),
        &urls(&server),
        &instagram_creds(),
        &text("IGSID1", "hi"),
    )
    .await
    .unwrap_err();
    assert!(e.retryable);
    assert_eq!(e.retry_after_secs, Some(30));
    assert_eq!(e.code.as_deref(), Some("613"));
}

#[tokio::test]
async fn instagram_policy_errors_are_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "This message is sent outside of allowed window.", "type": "OAuthException",
            "code": 10, "error_subcode": 2534022, "fbtrace_id": "A1"}})))
        .mount(&server)
        .await;
    let e = instagram::send(
        &client(),
        &urls(&server),
        &instagram_creds(),
        &text("IGSID1", "hi"),
    )
    .await
    .unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.code.as_deref(), Some("10"));
    assert!(e.message.contains("outside of allowed window"));
}

#[tokio::test]
async fn instagram_missing_credentials_are_permanent() {
    let e = instagram::send(
        &client(),
        &ProviderUrls::default(),
        &creds(&[("ig_user_id", "1")]),
        &text("IGSID1", "hi"),
    )
    .await
    .unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("access_token"));
}

fn x_creds() -> Credentials {
    creds(&[
        ("user_id", "4337869213"),
        ("consumer_key", "ck"),
        ("consumer_secret", "cs"),
        ("access_token", "at"),
        ("access_token_secret", "ats"),
    ])
}

/// The `k="v"` fields of an `Authorization: OAuth …` header.
fn oauth_fields(value: &str) -> BTreeMap<String, String> {
    value
        .strip_prefix("OAuth ")
        .unwrap_or_default()
        .split(", ")
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.trim_matches('"').to_string()))
        })
        .collect()
}

/// The request carries a valid OAuth 1.0a signature for `base` and its path
/// (the server sees no host in the request URL).
fn signed_with_x_creds(base: String) -> impl Fn(&Request) -> bool + Send + Sync {
    move |req| {
        let Some(auth) = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let f = oauth_fields(auth);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
        let url = format!("{base}{}", req.url.path());
        let expected = x::oauth1_header(
            "POST",
            &url,
            &[],
            "ck",
            "cs",
            "at",
            "ats",
            get("oauth_nonce"),
            get("oauth_timestamp"),
        );
        get("oauth_consumer_key") == "ck"
            && get("oauth_token") == "at"
            && get("oauth_signature_method") == "HMAC-SHA1"
            && get("oauth_version") == "1.0"
            && !get("oauth_signature").is_empty()
            && !get("oauth_nonce").is_empty()
            && auth == expected
    }
}

#[tokio::test]
async fn x_send_posts_a_signed_dm() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2/dm_conversations/with/3001969357/messages"))
        .and(header("content-type", "application/json"))
        .and(signed_with_x_creds(server.uri()))
        .and(body_json(json!({"text": "Hi!"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"data": {
            "dm_conversation_id": "3001969357-4337869213", "dm_event_id": "1582838499983564806"}})))
        .expect(2)
        .mount(&server)
        .await;
    for _ in 0..2 {
        let id = x::send(
            &client(),
            &urls(&server),
            &x_creds(),
            &text("3001969357", "Hi!"),
        )
        .await
        .unwrap();
        assert_eq!(id, "1582838499983564806");
    }
    // Each request gets its own nonce.
    let requests = server.received_requests().await.unwrap();
    let nonce = |i: usize| {
        oauth_fields(requests[i].headers["authorization"].to_str().unwrap())["oauth_nonce"].clone()
    };
    assert_ne!(nonce(0), nonce(1));
}

#[tokio::test]
async fn x_rate_limits_are_retryable_until_the_reset() {
    let server = MockServer::start().await;
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-rate-limit-limit", "200")
                .insert_header("x-rate-limit-remaining", "0")
                .insert_header("x-rate-limit-reset", reset.to_string().as_str())
                .set_body_json(json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429})),
        )
        .mount(&server)
        .await;
    let e = x::send(
        &client(),
        &urls(&server),
        &x_creds(),
        &text("3001969357", "Hi!"),
    )
    .await
    .unwrap_err();
    assert!(e.retryable);
    assert!(
        e.retry_after_secs.is_some_and(|s| (295..=300).contains(&s)),
        "{e:?}"
    );
}

#[tokio::test]
async fn x_forbidden_dms_are_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "title": "Forbidden", "type": "https://api.twitter.com/2/problems/client-forbidden",
            "detail": "You are not permitted to send messages to this user.", "status": 403})))
        .mount(&server)
        .await;
    let e = x::send(
        &client(),
        &urls(&server),
        &x_creds(),
        &text("3001969357", "Hi!"),
    )
    .await
    .unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.code.as_deref(), Some("client-forbidden"));
    assert!(e.message.contains("not permitted"));
}

#[tokio::test]
async fn x_server_errors_are_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let e = x::send(
        &client(),
        &urls(&server),
        &x_creds(),
        &text("3001969357", "Hi!"),
    )
    .await
    .unwrap_err();
    assert!(e.retryable);
}
