//! Trends: X's by location (through the account's app) and the newest items
//! of a tenant's RSS and Atom feeds (a fixture feed served locally), both
//! cached; feeds go through the outbound URL policy.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::channels::Loop;
use crate::db_tests;
use crate::helpers::{DbKind, assert_problem};

db_tests!(trends_come_from_x_and_from_feeds_and_are_cached);

const RSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Bakery news</title><link>https://news.example/</link><description>d</description>
<item><title>Sourdough is back</title><link>https://news.example/sourdough</link><pubDate>Mon, 07 Dec 2026 09:00:00 GMT</pubDate></item>
<item><title>Winter menu</title><link>https://news.example/winter</link><pubDate>Sun, 06 Dec 2026 09:00:00 GMT</pubDate></item>
</channel></rss>"#;

const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Coffee</title><id>urn:coffee</id><updated>2026-12-07T10:00:00Z</updated>
<entry><title>Flat white day</title><id>urn:1</id><link href="https://coffee.example/fw"/><updated>2026-12-07T10:00:00Z</updated></entry>
</feed>"#;

async fn trends_come_from_x_and_from_feeds_and_are_cached(kind: DbKind) {
    let creds = json!({ "user_id": "4337869213", "consumer_key": "ck", "consumer_secret": "cs-secret",
                        "access_token": "at", "access_token_secret": "ats" });
    let Some(t) = Loop::new(kind, "x", creds, 1).await else {
        return;
    };
    // X: the app-only token, then trends by location.
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "token_type": "bearer", "access_token": "APP" })),
        )
        .mount(&t.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/2/trends/by/woeid/23424977"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{ "trend_name": "#AI", "tweet_count": 125000 }, { "trend_name": "Bakeries" }] })))
        .mount(&t.provider)
        .await;
    let x_path = format!(
        "/api/v1/trends?source=x&account_id={}&woeid=23424977",
        t.account_id
    );
    let first = t.get(&x_path).await;
    assert_eq!(first["source"], "x");
    assert_eq!(
        first["items"][0],
        json!({ "name": "#AI", "url": null, "post_count": 125000, "feed": null, "published_at": null })
    );
    assert_eq!(first["items"][1]["name"], "Bakeries");
    assert_eq!(first["cached"], false);
    let again = t.get(&x_path).await;
    assert_eq!(again["cached"], true);
    assert_eq!(again["items"], first["items"]);
    let asked = t
        .provider_requests()
        .await
        .iter()
        .filter(|r| r.url.path().starts_with("/2/trends/"))
        .count();
    assert_eq!(asked, 1, "X asked once in 15 minutes");

    // The trends X picks for the account's user, with its own token.
    Mock::given(method("GET"))
        .and(path("/2/users/personalized_trends"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{ "trend_name": "Sourdough", "category": "Food", "post_count": "5200",
                       "trending_since": "2026-12-07T08:00:00.000Z" }] })))
        .mount(&t.provider)
        .await;
    let mine_path = format!(
        "/api/v1/trends?source=x_personalized&account_id={}",
        t.account_id
    );
    let mine = t.get(&mine_path).await;
    assert_eq!(mine["source"], "x_personalized");
    assert_eq!(mine["items"][0]["name"], "Sourdough");
    assert_eq!(mine["items"][0]["post_count"], 5200);
    assert_eq!(t.get(&mine_path).await["cached"], true);
    let asked: Vec<_> = t
        .provider_requests()
        .await
        .into_iter()
        .filter(|r| r.url.path() == "/2/users/personalized_trends")
        .collect();
    assert_eq!(asked.len(), 1, "X asked once in 15 minutes");
    assert!(
        asked[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("OAuth "),
        "the account's own (OAuth 1.0a) token"
    );

    // Feeds: an RSS and an Atom one, and one that is not a feed.
    let site = MockServer::start().await;
    for (p, body, kind) in [
        ("/rss.xml", RSS, "application/rss+xml"),
        ("/atom.xml", ATOM, "application/atom+xml"),
        ("/page", "<html>hi</html>", "text/html"),
    ] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, kind))
            .mount(&site)
            .await;
    }
    for (name, p) in [
        ("Bakery news", "/rss.xml"),
        ("Coffee", "/atom.xml"),
        ("Broken", "/page"),
    ] {
        let res = t
            .app
            .post(
                "/api/v1/trend-sources",
                &t.key,
                json!({ "name": name, "url": format!("{}{p}", site.uri()) }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let feeds = t.get("/api/v1/trends?source=feeds").await;
    let names: Vec<&str> = feeds["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Flat white day", "Sourdough is back", "Winter menu"],
        "{feeds}"
    );
    assert_eq!(feeds["items"][1]["url"], "https://news.example/sourdough");
    assert_eq!(feeds["items"][1]["feed"], "Bakery news");
    assert_eq!(feeds["errors"][0]["feed"], "Broken");
    assert!(
        feeds["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not an RSS or Atom feed")
    );

    // A feed the outbound URL policy forbids is refused when saved.
    let res = t
        .app
        .post(
            "/api/v1/trend-sources",
            &t.key,
            json!({ "name": "Metadata", "url": "http://169.254.169.254/latest" }),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let res = t.app.get("/api/v1/trends?source=tiktok", &t.key).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    // Tenants see their own: another's feeds and accounts are not theirs.
    let other = t.app.create_tenant("Other shop").await;
    let (_, other_key) = t.app.create_key(&other, "admin").await;
    let theirs: Value = t
        .app
        .get("/api/v1/trend-sources", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], json!([]));
    let res = t.app.get(&x_path, &other_key).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let source = t.get("/api/v1/trend-sources").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = t
        .app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/trend-sources/{source}"),
            &other_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let (_, viewer) = t
        .app
        .create_key(
            &crate::dashboard::tenant_named(&t.app, "Shop").await,
            "viewer",
        )
        .await;
    let res = t
        .app
        .post(
            "/api/v1/trend-sources",
            &viewer,
            json!({ "name": "Mine", "url": format!("{}/rss.xml", site.uri()) }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
