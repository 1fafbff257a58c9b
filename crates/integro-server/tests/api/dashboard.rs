//! The dashboard over HTTP, as a browser uses it: a cookie session, forms
//! with the CSRF token, the same role checks and tenant scoping as the API.
//! (`tests/browser/` drives it in Chromium.)

use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::channels::Loop;
use crate::channels::wait_until;
use crate::db_tests;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, DbKind, TestApp};

db_tests!(
    signing_in_opens_the_inbox_with_the_conversation,
    forms_need_the_session_token_and_this_sites_origin,
    an_agent_hands_off_and_replies_through_the_provider,
    pages_are_scoped_to_the_chosen_tenant,
    a_revoked_session_stops_working,
    rules_are_edited_and_tried,
    the_widget_and_assets_are_served,
    the_team_invites_and_the_invited_person_joins,
    a_channel_account_is_added_with_the_fields_of_its_kind,
    conversations_are_assigned_annotated_and_closed,
    ai_credentials_profiles_and_budget,
);

const SEND_PATH: &str = "/2010-04-01/Accounts/AC123/Messages.json";

/// A browser: no redirects followed, the session cookie kept by hand.
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    client: Client,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            client: Client::builder().redirect(Policy::none()).build().unwrap(),
            cookie: None,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        let mut req = self.client.get(self.app.url(path));
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        req.send().await.unwrap()
    }

    /// A form posted from one of the dashboard's pages.
    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.app.url(path))
            .header(ORIGIN, &self.app.base)
            .form(form);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        req.send().await.unwrap()
    }

    pub(crate) async fn sign_in(&mut self, email: &str, password: &str) {
        let res = self
            .post(
                "/login",
                &[("email", email), ("password", password), ("next", "/inbox")],
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "{}",
            res.text().await.unwrap()
        );
        assert_eq!(res.headers()[LOCATION], "/inbox");
        let set = res.headers()[SET_COOKIE].to_str().unwrap().to_string();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{set} lacks {attribute}");
        }
        self.cookie = Some(set.split(';').next().unwrap().to_string());
    }

    /// A page's text, which must answer 200.
    pub(crate) async fn page(&self, path: &str) -> String {
        let res = self.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.text().await.unwrap()
    }
}

/// The id of the tenant called `name`.
pub(crate) async fn tenant_named(app: &TestApp, name: &str) -> String {
    let operator = app.operator_token().await;
    let tenants: Value = app
        .get("/api/v1/tenants", &operator)
        .await
        .json()
        .await
        .unwrap();
    tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The CSRF token a page's forms carry.
pub(crate) fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"_csrf\" value=\"")
        .expect("a form with a token")
        + 20;
    page[at..].split('"').next().unwrap().to_string()
}

pub(crate) async fn first_conversation(t: &Loop) -> String {
    wait_until(Duration::from_secs(10), || async {
        let page = t.get("/api/v1/conversations").await;
        !page["items"].as_array().unwrap().is_empty()
    })
    .await;
    t.get("/api/v1/conversations").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn conversation_state(t: &Loop, id: &str) -> Value {
    t.get(&format!("/api/v1/conversations/{id}")).await["state"].clone()
}

async fn signing_in_opens_the_inbox_with_the_conversation(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    let mut browser = Browser::new(&t.app);
    let res = browser.get("/").await;
    assert_eq!(res.headers()[LOCATION], "/login");
    let res = browser.get("/inbox").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/login?next=%2Finbox");

    let login = browser.page("/login").await;
    for needle in [">Email<", ">Password<", ">Sign in<"] {
        assert!(login.contains(needle), "the sign-in form lacks {needle}");
    }
    let wrong = browser
        .post(
            "/login",
            &[("email", ADMIN_EMAIL), ("password", "not-the-password")],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(
        wrong.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "the form again, not a problem document"
    );
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("wrong email or password")
    );

    // Only a path of this server, whatever the browser would make of it.
    for next in [
        "//evil.example",
        "/\t/evil.example",
        "/\\evil.example",
        "https://evil.example",
    ] {
        let res = browser
            .post(
                "/login",
                &[
                    ("email", ADMIN_EMAIL),
                    ("password", ADMIN_PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(res.headers()[LOCATION], "/inbox", "next = {next:?}");
    }

    t.twilio_message("SMdash1", "+14155550100", "Do you ship to Lisbon?")
        .await;
    first_conversation(&t).await;
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let inbox = browser.page("/inbox").await;
    assert!(inbox.contains("Ann"), "the contact is listed");
    assert!(inbox.contains(">Tenant<"), "the tenant picker is labelled");
    assert!(inbox.contains("sse-connect=\"/inbox/live?since="));
    let rows = browser.page("/inbox/rows?state=bot").await;
    assert!(rows.contains("Ann"));
    let closed = browser.page("/inbox/rows?state=closed").await;
    assert!(!closed.contains("Ann"), "filters apply");
    let bad = browser.get("/inbox?state=sleeping").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The live view says when something changed.
    let live = browser.get("/inbox/live").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = live.bytes_stream();
    t.twilio_message("SMdash2", "+14155550199", "And to Porto?")
        .await;
    let seen = crate::channels::read_until(&mut stream, "event: inbox").await;
    assert!(seen.contains("event: inbox"));
}

async fn forms_need_the_session_token_and_this_sites_origin(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    t.twilio_message("SMcsrf", "+14155550100", "hello").await;
    let id = first_conversation(&t).await;
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let page = browser.page(&format!("/conversations/{id}")).await;
    let token = csrf(&page);
    let handoff = format!("/conversations/{id}/handoff");

    let res = browser.post(&handoff, &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no token");
    let res = browser.post(&handoff, &[("_csrf", "forged")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "a wrong token");
    let res = browser
        .client
        .post(t.app.url(&handoff))
        .header(COOKIE, browser.cookie.as_deref().unwrap())
        .header(ORIGIN, "https://evil.example")
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "another site's form");
    let res = browser
        .client
        .post(t.app.url(&handoff))
        .header(COOKIE, browser.cookie.as_deref().unwrap())
        .header(ORIGIN, &t.app.base)
        .header("sec-fetch-site", "cross-site")
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "the browser says cross-site"
    );
    let res = browser
        .client
        .post(t.app.url(&handoff))
        .header(COOKIE, browser.cookie.as_deref().unwrap())
        .header(ORIGIN, "null")
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "an opaque origin");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(conversation_state(&t, &id).await, "bot", "nothing changed");

    // What Chromium sends with a form of this site under the dashboard's
    // referrer policy.
    let res = browser
        .client
        .post(t.app.url(&handoff))
        .header(COOKIE, browser.cookie.as_deref().unwrap())
        .header("sec-fetch-site", "same-origin")
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(conversation_state(&t, &id).await, "human");
    let page = browser.get(&format!("/conversations/{id}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        page.headers()["referrer-policy"],
        "same-origin",
        "{:?}",
        page.headers()
    );
}

async fn an_agent_hands_off_and_replies_through_the_provider(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({ "sid": "SMout", "status": "queued" })),
        )
        .mount(&t.provider)
        .await;
    t.twilio_message("SMagent", "+14155550100", "I need a person")
        .await;
    let id = first_conversation(&t).await;
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let page = browser.page(&format!("/conversations/{id}")).await;
    assert!(page.contains("I need a person"));
    assert!(page.contains(">Hand off<") && !page.contains(">Resume<"));
    let token = csrf(&page);
    let res = browser
        .post(
            &format!("/conversations/{id}/handoff"),
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(res.headers()[LOCATION], format!("/conversations/{id}"));
    let page = browser.page(&format!("/conversations/{id}")).await;
    assert!(page.contains(">Resume<") && !page.contains(">Hand off<"));

    let res = browser
        .post(
            &format!("/conversations/{id}/send"),
            &[("_csrf", &token), ("text", "Hi Ann, Maria here.")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    wait_until(Duration::from_secs(10), || async {
        t.provider_requests().await.iter().any(|r| {
            form_urlencoded::parse(&r.body).any(|(k, v)| k == "Body" && v == "Hi Ann, Maria here.")
        })
    })
    .await;
    let messages = browser.page(&format!("/conversations/{id}/messages")).await;
    assert!(messages.contains("Hi Ann, Maria here."));

    // An empty reply is refused with the API's reason, as a page.
    let res = browser
        .post(
            &format!("/conversations/{id}/send"),
            &[("_csrf", &token), ("text", "   ")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("give a text"));

    let res = browser
        .post(&format!("/conversations/{id}/resume"), &[("_csrf", &token)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(conversation_state(&t, &id).await, "bot");
}

async fn pages_are_scoped_to_the_chosen_tenant(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    t.twilio_message("SMscope", "+14155550100", "hello").await;
    let id = first_conversation(&t).await;
    let other = t.app.create_tenant("Other shop").await;

    // An operator with two tenants chooses one first.
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let res = browser.get("/inbox").await;
    assert_eq!(res.headers()[LOCATION], "/tenant");
    let picker = browser.page("/tenant").await;
    assert!(picker.contains(">Tenant<") && picker.contains("Other shop"));
    let token = csrf(&picker);
    let res = browser
        .post("/tenant", &[("_csrf", &token), ("tenant_id", &other)])
        .await;
    assert_eq!(res.headers()[LOCATION], "/inbox");

    // A form drawn for the first tenant, sent after the switch, is refused.
    let first = tenant_named(&t.app, "Shop").await;
    let stale = browser
        .post(
            "/team/invitations",
            &[
                ("_csrf", &token),
                ("_tenant", &first),
                ("email", "x@example.com"),
                ("role", "agent"),
            ],
        )
        .await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);

    // Acting in the other tenant, the first one's conversation is not found.
    let res = browser.get(&format!("/conversations/{id}")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = browser
        .post(
            &format!("/conversations/{id}/handoff"),
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(!browser.page("/inbox").await.contains("Ann"));

    // A member of the other tenant only cannot pick the first.
    t.app.user_token(&other, "agent@example.com", "agent").await;
    let mut agent = Browser::new(&t.app);
    agent.sign_in("agent@example.com", "a-long-password").await;
    let inbox = agent.page("/inbox").await;
    let token = csrf(&inbox);
    let shop = tenant_named(&t.app, "Shop").await;
    let res = agent
        .post("/tenant", &[("_csrf", &token), ("tenant_id", &shop)])
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = agent.get(&format!("/conversations/{id}")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let bots = agent.page("/bots").await;
    assert!(
        !bots.contains("Helper"),
        "the other tenant's bot is not listed"
    );
}

async fn a_revoked_session_stops_working(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    // A new install has no tenant: the operator makes the first one here.
    let mut laptop = Browser::new(&app);
    laptop.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(laptop.get("/inbox").await.headers()[LOCATION], "/tenant");
    let picker = laptop.page("/tenant").await;
    assert!(picker.contains("There is no tenant yet") && picker.contains(">Create tenant<"));
    let res = laptop
        .post("/tenants", &[("_csrf", &csrf(&picker)), ("name", "   ")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = laptop
        .post("/tenants", &[("_csrf", &csrf(&picker)), ("name", "Solo")])
        .await;
    assert_eq!(res.headers()[LOCATION], "/inbox");
    assert_eq!(laptop.get("/inbox").await.status(), StatusCode::OK);
    tenant_named(&app, "Solo").await;
    let mut phone = Browser::new(&app);
    phone.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let sessions = laptop.page("/account/sessions").await;
    assert_eq!(sessions.matches("Sign out this session").count(), 2);
    let token = csrf(&sessions);
    // The phone's session is the one not marked as this one.
    let phone_row = sessions
        .split("<tr>")
        .find(|row| row.contains("revoke") && !row.contains("(this one)"))
        .unwrap();
    let at = phone_row.find("/account/sessions/").unwrap() + "/account/sessions/".len();
    let phone_id = &phone_row[at..at + 36];
    let res = laptop
        .post(
            &format!("/account/sessions/{phone_id}/revoke"),
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(res.headers()[LOCATION], "/account/sessions");
    let res = phone.get("/inbox").await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the phone is signed out"
    );
    assert!(
        res.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    assert_eq!(laptop.get("/inbox").await.status(), StatusCode::OK);

    // Signing out ends the laptop's session and clears its cookie.
    let res = laptop.post("/logout", &[("_csrf", &token)]).await;
    assert!(
        res.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(laptop.get("/inbox").await.status(), StatusCode::SEE_OTHER);
}

async fn rules_are_edited_and_tried(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    let res = t
        .app
        .post(
            &format!("/api/v1/bots/{}/rules", t.bot_id),
            &t.key,
            json!({ "name": "Opening hours", "pattern": "hours", "reply": "We are open 9 to 5." }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let rule_id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let bots = browser.page("/bots").await;
    assert!(bots.contains(&format!("/bots/{}/rules", t.bot_id)));
    let rules_path = format!("/bots/{}/rules", t.bot_id);
    let page = browser.page(&rules_path).await;
    for needle in [">Test message<", ">Try<", "Opening hours"] {
        assert!(page.contains(needle), "the rules page lacks {needle}");
    }
    let token = csrf(&page);
    let res = browser
        .post(
            &format!("{rules_path}/{rule_id}"),
            &[
                ("_csrf", &token),
                ("name", "Opening hours"),
                ("priority", "5"),
                ("match", "contains"),
                ("pattern", "hours"),
                (
                    "reply",
                    "We are open 8 to 6, {{contact.name | default: \"friend\"}}.",
                ),
                ("action", "none"),
                ("active", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let stored = t
        .get(&format!("/api/v1/bots/{}/rules/{rule_id}", t.bot_id))
        .await;
    assert_eq!(stored["priority"], 5);
    assert!(
        stored["reply"]
            .as_str()
            .unwrap()
            .starts_with("We are open 8 to 6")
    );

    let tried = browser
        .post(
            &format!("/bots/{}/try", t.bot_id),
            &[("_csrf", &token), ("text", "what are your hours?")],
        )
        .await;
    assert_eq!(tried.status(), StatusCode::OK);
    let tried = tried.text().await.unwrap();
    assert!(tried.contains("id=\"try-result\""));
    assert!(tried.contains("We are open 8 to 6, friend."), "{tried}");
    assert!(tried.contains("Rule: Opening hours"));
    // htmx asks for the result alone.
    let fragment = browser
        .client
        .post(t.app.url(&format!("/bots/{}/try", t.bot_id)))
        .header(COOKIE, browser.cookie.as_deref().unwrap())
        .header(ORIGIN, &t.app.base)
        .header("hx-request", "true")
        .form(&[("_csrf", token.as_str()), ("text", "hours?")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fragment.trim_start().starts_with("<div id=\"try-result\""));
    assert!(!fragment.contains("<html"));

    // A bad rule is refused with the API's reason, and nothing changes.
    let res = browser
        .post(
            &rules_path,
            &[
                ("_csrf", &token),
                ("match", "regex"),
                ("pattern", "(unclosed"),
                ("reply", "x"),
                ("active", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let all = t.get(&format!("/api/v1/bots/{}/rules", t.bot_id)).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);

    // Export, then import: all valid, or nothing changes.
    let export = browser.get(&format!("{rules_path}.yaml")).await;
    assert_eq!(export.status(), StatusCode::OK);
    assert!(
        export.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let yaml = export.text().await.unwrap();
    assert!(yaml.contains("Opening hours"));
    let bad = browser
        .post(
            &format!("{rules_path}/import"),
            &[
                ("_csrf", &token),
                ("yaml", "rules:\n  - match: regex\n    pattern: \"(\"\n"),
            ],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let two = format!("{yaml}- name: Greeting\n  pattern: hello\n  reply: Hi!\n");
    let res = browser
        .post(
            &format!("{rules_path}/import"),
            &[("_csrf", &token), ("yaml", &two)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{two}");
    let all = t.get(&format!("/api/v1/bots/{}/rules", t.bot_id)).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let res = browser
        .post(
            &format!("{rules_path}/import"),
            &[("_csrf", &token), ("yaml", &yaml)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let rule_id = t.get(&format!("/api/v1/bots/{}/rules", t.bot_id)).await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Deleting goes through the API's handler too.
    let res = browser
        .post(
            &format!("{rules_path}/{rule_id}/delete"),
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let all = t.get(&format!("/api/v1/bots/{}/rules", t.bot_id)).await;
    assert!(all["items"].as_array().unwrap().is_empty());
}

async fn the_widget_and_assets_are_served(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let browser = Browser::new(&app);
    let widget = browser.get("/widget.js").await;
    assert_eq!(widget.status(), StatusCode::OK);
    assert!(
        widget.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let script = widget.text().await.unwrap();
    assert!(script.contains("data-account") && script.contains("/api/v1/web-public/"));
    let htmx = browser.get("/assets/htmx-2.0.11.min.js").await;
    assert_eq!(htmx.status(), StatusCode::OK);
    assert!(
        htmx.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(
        browser.get("/assets/nothing.js").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The value of the read-only "Copy this" box a page shows once.
fn shown_once(page: &str) -> String {
    let at = page
        .find("id=\"shown-once\" readonly value=\"")
        .expect("a secret shown once")
        + "id=\"shown-once\" readonly value=\"".len();
    page[at..].split('"').next().unwrap().replace("&amp;", "&")
}

async fn the_team_invites_and_the_invited_person_joins(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    app.create_tenant("Solo").await;
    let mut owner = Browser::new(&app);
    owner.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let team = owner.page("/team").await;
    assert!(team.contains("as a platform operator"));
    let token = csrf(&team);

    // An invitation, its link shown once.
    let res = owner
        .post(
            "/team/invitations",
            &[
                ("_csrf", &token),
                ("email", "nina@example.com"),
                ("role", "agent"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let link = shown_once(&res.text().await.unwrap());
    let path = link
        .strip_prefix(&app.config.public_base())
        .unwrap()
        .to_string();
    assert!(path.starts_with("/invitation?token="), "{link}");

    // Nina opens it, chooses a password, and signs in.
    let mut nina = Browser::new(&app);
    let form = nina.page(&path).await;
    assert!(form.contains(">Password<") && form.contains(">Join<"));
    let invitation = path.split("token=").nth(1).unwrap();
    let invitation: String = form_urlencoded::parse(format!("t={invitation}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    let short = nina
        .post(
            "/invitation",
            &[("token", &invitation), ("password", "short")],
        )
        .await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = nina
        .post(
            "/invitation",
            &[
                ("token", &invitation),
                ("password", "a-long-password"),
                ("name", "Nina"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/login?joined=1");
    let again = nina
        .post(
            "/invitation",
            &[("token", &invitation), ("password", "a-long-password")],
        )
        .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "a link works once");
    nina.sign_in("nina@example.com", "a-long-password").await;
    assert_eq!(nina.get("/inbox").await.status(), StatusCode::OK);

    // An agent sees the team but manages neither members nor keys.
    let team = nina.page("/team").await;
    assert!(team.contains("nina@example.com") && team.contains("(you)"));
    assert!(!team.contains("action=\"/team/invitations\""));
    let nina_token = csrf(&team);
    let res = nina
        .post(
            "/team/invitations",
            &[
                ("_csrf", &nina_token),
                ("email", "x@example.com"),
                ("role", "viewer"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        nina.get("/operations/webhooks").await.status(),
        StatusCode::FORBIDDEN
    );

    // The owner makes Nina a viewer, then makes an API key that works.
    let team = owner.page("/team").await;
    // Nina is the only member: the first member form is hers.
    let at = team.find("/team/members/").unwrap() + "/team/members/".len();
    let nina_id = &team[at..at + 36];
    let res = owner
        .post(
            &format!("/team/members/{nina_id}"),
            &[("_csrf", &token), ("role", "viewer")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(owner.page("/team").await.contains(">viewer<"));
    let res = owner
        .post(
            "/team/api-keys",
            &[("_csrf", &token), ("name", "ci"), ("role", "admin")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let key = shown_once(&res.text().await.unwrap());
    assert!(key.starts_with("ik_"));
    let me = app.get("/api/v1/auth/me", &key).await;
    assert_eq!(me.status(), StatusCode::OK);

    // What happened is in the audit log.
    let audit = owner.page("/operations/audit").await;
    for action in ["invitation.create", "invitation.accept", "api_key.create"] {
        assert!(audit.contains(action), "the audit log lacks {action}");
    }
    assert_eq!(
        owner.get("/operations/webhooks").await.status(),
        StatusCode::OK
    );
}

async fn a_channel_account_is_added_with_the_fields_of_its_kind(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let form = browser.page("/channels/new?kind=whatsapp_cloud").await;
    for field in [
        "phone_number_id",
        "access_token (secret)",
        "app_secret (secret)",
        "verify_token (secret)",
    ] {
        assert!(
            form.contains(&format!(">{field}<")),
            "the form lacks {field}"
        );
    }
    assert_eq!(
        browser.get("/channels/new?kind=fax").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let token = csrf(&form);
    let fields = |secret: &'static str| {
        vec![
            ("_csrf", token.clone()),
            ("kind", "whatsapp_cloud".to_string()),
            ("name", "Cloud".to_string()),
            ("bot_id", t.bot_id.clone()),
            ("credential.phone_number_id", "1065".to_string()),
            ("credential.access_token", "EAAG-secret-token".to_string()),
            ("credential.app_secret", secret.to_string()),
            ("credential.verify_token", "verify-me".to_string()),
        ]
    };
    let missing: Vec<(&str, String)> = fields("")
        .into_iter()
        .filter(|(k, _)| *k != "credential.app_secret")
        .collect();
    let refused = browser
        .post(
            "/channels",
            &missing
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("app_secret"));

    let good = fields("app-secret-1");
    let res = browser
        .post(
            "/channels",
            &good
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = browser.page("/channels").await;
    let created = t.get("/api/v1/accounts?kind=whatsapp_cloud").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(page.contains(&format!("/webhooks/whatsapp/{created}")));
    assert!(page.contains(&format!("/webhooks/twilio/{}", t.account_id)));
    assert!(
        !page.contains("EAAG-secret-token"),
        "secrets are never shown"
    );
}

async fn conversations_are_assigned_annotated_and_closed(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 2).await else {
        return;
    };
    t.twilio_message("SMassign", "+14155550100", "Who can help me?")
        .await;
    let id = first_conversation(&t).await;
    let operator = t.app.operator_token().await;
    let tenants: Value = t
        .app
        .get("/api/v1/tenants", &operator)
        .await
        .json()
        .await
        .unwrap();
    let shop = tenants["items"][0]["id"].as_str().unwrap().to_string();
    t.app.user_token(&shop, "ana@example.com", "agent").await;
    t.app.user_token(&shop, "vic@example.com", "viewer").await;
    let members: Value = t
        .app
        .get("/api/v1/members", &t.key)
        .await
        .json()
        .await
        .unwrap();
    let member = |email: &str| {
        members["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == email)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ana, vic) = (member("ana@example.com"), member("vic@example.com"));
    let assign = |user: Value| {
        t.app
            .request(
                reqwest::Method::PUT,
                &format!("/api/v1/conversations/{id}/assignee"),
                &t.key,
            )
            .json(&json!({ "user_id": user }))
            .send()
    };
    let res = assign(json!(vic)).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a viewer cannot converse"
    );
    let res = assign(json!(uuid::Uuid::new_v4())).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "not a member"
    );
    let res = assign(json!(ana)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap()["assignee_id"],
        json!(ana)
    );
    let mine = t
        .get(&format!("/api/v1/conversations?assignee_id={ana}"))
        .await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let nobodys = t.get("/api/v1/conversations?unassigned=true").await;
    assert!(nobodys["items"].as_array().unwrap().is_empty());
    let both = t
        .app
        .get(
            &format!("/api/v1/conversations?assignee_id={ana}&unassigned=true"),
            &t.key,
        )
        .await;
    assert_eq!(both.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Ana works it from the dashboard: her inbox, a note, then closing it.
    let mut browser = Browser::new(&t.app);
    browser.sign_in("ana@example.com", "a-long-password").await;
    let rows = browser.page("/inbox/rows?assigned=me").await;
    assert!(rows.contains("Ann"));
    let rows = browser.page("/inbox/rows?assigned=none").await;
    assert!(!rows.contains("Ann"));
    let page = browser.page(&format!("/conversations/{id}")).await;
    assert!(page.contains("ana@example.com") && page.contains(">Add note<"));
    let token = csrf(&page);
    let res = browser
        .post(
            &format!("/conversations/{id}/notes"),
            &[("_csrf", &token), ("text", "VIP: answer within the hour")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = browser
        .post(
            &format!("/conversations/{id}/notes"),
            &[("_csrf", &token), ("text", "  ")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let notes = t.get(&format!("/api/v1/conversations/{id}/notes")).await;
    assert_eq!(notes.as_array().unwrap().len(), 1);
    assert_eq!(notes[0]["author"], "ana@example.com");
    assert!(
        !t.provider_requests()
            .await
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("VIP")),
        "a note is never sent"
    );
    let res = browser
        .post(
            &format!("/conversations/{id}/assign"),
            &[("_csrf", &token), ("user_id", "")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(conversation_state(&t, &id).await, "bot");
    assert!(t.get(&format!("/api/v1/conversations/{id}")).await["assignee_id"].is_null());
    let res = browser
        .post(&format!("/conversations/{id}/reset"), &[("_csrf", &token)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let audit = t.get("/api/v1/audit-log?action=conversation.reset").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    let res = browser
        .post(&format!("/conversations/{id}/close"), &[("_csrf", &token)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(conversation_state(&t, &id).await, "closed");
    let again = browser
        .post(&format!("/conversations/{id}/close"), &[("_csrf", &token)])
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

async fn ai_credentials_profiles_and_budget(kind: DbKind) {
    let Some(t) = Loop::twilio(kind, 0).await else {
        return;
    };
    let mut browser = Browser::new(&t.app);
    browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let page = browser.page("/ai").await;
    assert!(page.contains(">Add credential<") && page.contains("no monthly limit"));
    let token = csrf(&page);
    let llm = format!("{}/v1", t.provider.uri());
    let res = browser
        .post(
            "/ai/credentials",
            &[
                ("_csrf", &token),
                ("name", "Local"),
                ("provider", "openai_compatible"),
                ("api_key", "sk-local-secret"),
                ("base_url", &llm),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let bad = browser
        .post(
            "/ai/credentials",
            &[
                ("_csrf", &token),
                ("name", "Nowhere"),
                ("provider", "openai_compatible"),
            ],
        )
        .await;
    assert_eq!(
        bad.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a base URL is needed"
    );
    let page = browser.page("/ai").await;
    assert!(page.contains("set (never shown)") && !page.contains("sk-local-secret"));
    let credential = t.get("/api/v1/ai-credentials").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tested = browser
        .post(
            &format!("/ai/credentials/{credential}/test"),
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(tested.status(), StatusCode::OK);
    assert!(tested.text().await.unwrap().contains("The credential"));

    let res = browser
        .post(
            "/ai/profiles",
            &[
                ("_csrf", &token),
                ("name", "Default"),
                ("credential_id", &credential),
                ("model", "llama3"),
                ("fallback_profile_id", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        t.get("/api/v1/ai-profiles").await["items"][0]["model"],
        "llama3"
    );

    let res = browser
        .post("/ai/budget", &[("_csrf", &token), ("budget", "50000")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        t.get("/api/v1/settings").await["monthly_token_budget"],
        50000
    );
    assert!(browser.page("/ai").await.contains("of 50000"));
    let res = browser
        .post("/ai/budget", &[("_csrf", &token), ("budget", "lots")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = browser
        .post("/ai/budget", &[("_csrf", &token), ("budget", "")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(t.get("/api/v1/settings").await["monthly_token_budget"].is_null());
}
