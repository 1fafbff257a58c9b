//! Workflows (#37) over HTTP: definitions in YAML or JSON refused with
//! their path, line and column; published versions that running instances
//! keep; instances moved by events (with `expected_seq`), one at a time;
//! timers and SLAs fired exactly once by the workers; simulation; tasks
//! assigned to members; migration to another version (with a dry run);
//! roles and tenants.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::channels::{settled, wait_until};
use crate::db_tests;
use crate::helpers::{DbKind, TestApp, assert_problem};

db_tests!(
    definitions_are_validated_stored_and_kept_to_their_tenant,
    publishing_makes_numbered_versions,
    instances_are_started_moved_and_listed,
    a_new_version_leaves_running_instances_alone,
    concurrent_events_are_taken_one_at_a_time,
    timers_and_slas_fire_exactly_once,
    simulate_runs_a_script_on_a_virtual_clock,
    instances_are_assigned_to_members_and_listed_as_their_tasks,
    migrate_moves_a_running_instance_to_another_version,
    migrate_refuses_what_it_cannot_do,
);

const DEFINITIONS: &str = "/api/v1/workflow-definitions";
const INSTANCES: &str = "/api/v1/workflow-instances";

/// A back-office case: accepted, or rejected with a reason.
const CASE: &str = "\
key: case
name: Back-office case
triggers: { api: true }
states:
  open:
    on: { accept: won, reject: { to: lost, require: [reason] } }
  won: { final: true }
  lost: { final: true }
";

/// The lead intake of docs/workflows.md, without its `calendar`.
const LEAD_INTAKE: &str = r#"key: lead_intake
triggers: { conversation: { keywords: [quote, price], condition: "vars.lead_id == null" }, api: true }
fields:
  name:  { type: string, min_length: 2, ask: "What's your name?" }
  email: { type: email, ask: "Your email?", retry: "That email doesn't look right, try again?", max_attempts: 3 }
states:
  collecting:
    form: { fields: [name, email], confirm: "{{fields.name}}, {{fields.email}}: correct?" }
    on_give_up: handoff
    timers: [{ after: PT4H, remind: "Still there?" }, { after: PT24H, goto: abandoned }]
    on: { complete: qualified }
  qualified:
    assign: { role: agent, strategy: round_robin }
    sla: { within: PT4H, warn_before: PT30M, on_breach: [alert] }
    enter: [{ webhook: { url: "https://crm.example.com/leads" } }]
    on: { accept: won, reject: { to: lost, require: [reason] } }
  won: { final: true }
  lost: { final: true }
  abandoned: { final: true }
"#;

/// A tenant with an admin key, on a running app (workers included).
struct Tenant {
    app: TestApp,
    id: String,
    admin: String,
}

async fn tenant(kind: DbKind) -> Option<Tenant> {
    let app = TestApp::spawn(kind).await?;
    let id = app.create_tenant("Shop").await;
    let (_, admin) = app.create_key(&id, "admin").await;
    Some(Tenant { app, id, admin })
}

async fn call(app: &TestApp, key: &str, m: Method, path: &str, body: Option<Value>) -> Response {
    let mut req = app.request(m, path, key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// Sends a definition's text with `content_type`.
async fn send_text(
    app: &TestApp,
    key: &str,
    m: Method,
    path: &str,
    content_type: &str,
    text: &str,
) -> Response {
    app.request(m, path, key)
        .header("content-type", content_type)
        .body(text.to_string())
        .send()
        .await
        .unwrap()
}

async fn yaml(app: &TestApp, key: &str, m: Method, path: &str, text: &str) -> Response {
    send_text(app, key, m, path, "application/yaml", text).await
}

/// The body of an answer that must have `status`.
async fn expect(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "{body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

/// Stores `text` as a definition and publishes it; the definition.
async fn published(app: &TestApp, key: &str, text: &str) -> Value {
    let res = yaml(app, key, Method::POST, DEFINITIONS, text).await;
    let definition = expect(res, StatusCode::CREATED).await;
    let path = format!("{DEFINITIONS}/{}/versions", id(&definition));
    expect(
        call(app, key, Method::POST, &path, None).await,
        StatusCode::CREATED,
    )
    .await;
    definition
}

async fn start(app: &TestApp, key: &str, body: Value) -> Value {
    expect(
        call(app, key, Method::POST, INSTANCES, Some(body)).await,
        StatusCode::CREATED,
    )
    .await
}

async fn event(app: &TestApp, key: &str, instance: &str, body: Value) -> Response {
    let path = format!("{INSTANCES}/{instance}/events");
    call(app, key, Method::POST, &path, Some(body)).await
}

async fn instance(app: &TestApp, key: &str, instance: &str) -> Value {
    let path = format!("{INSTANCES}/{instance}");
    expect(
        call(app, key, Method::GET, &path, None).await,
        StatusCode::OK,
    )
    .await
}

/// The instance's history, oldest first.
async fn history(app: &TestApp, key: &str, instance: &str) -> Vec<Value> {
    let path = format!("{INSTANCES}/{instance}/history?limit=200");
    let page = expect(
        call(app, key, Method::GET, &path, None).await,
        StatusCode::OK,
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

fn names(history: &[Value]) -> Vec<&str> {
    history
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

fn count(history: &[Value], name: &str) -> usize {
    history.iter().filter(|e| e["name"] == name).count()
}

/// The ids of a page's items.
async fn listed(app: &TestApp, key: &str, path: &str) -> Vec<String> {
    let page = expect(
        call(app, key, Method::GET, path, None).await,
        StatusCode::OK,
    )
    .await;
    page["items"].as_array().unwrap().iter().map(id).collect()
}

/// A 422 refusing a definition; its `errors`.
async fn invalid_definition(res: Response) -> Vec<Value> {
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition").await;
    let errors = problem["errors"].as_array().unwrap().clone();
    assert!(!errors.is_empty(), "{problem}");
    errors
}

/// The error at `field`, whose message says `says` and `(line L, column C)`.
fn located(errors: &[Value], field: &str, says: &str) -> (u32, u32) {
    let error = errors
        .iter()
        .find(|e| e["field"] == field)
        .unwrap_or_else(|| panic!("no error at {field}: {errors:#?}"));
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
    let (_, place) = message
        .rsplit_once("(line ")
        .unwrap_or_else(|| panic!("no line in {message}"));
    let (line, column) = place
        .trim_end_matches(')')
        .split_once(", column ")
        .unwrap_or_else(|| panic!("no column in {message}"));
    (line.parse().unwrap(), column.parse().unwrap())
}

async fn definitions_are_validated_stored_and_kept_to_their_tenant(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    let (_, agent) = app.create_key(&t.id, "agent").await;
    let (_, viewer) = app.create_key(&t.id, "viewer").await;

    // YAML, stored as written.
    let case = expect(
        yaml(app, admin, Method::POST, DEFINITIONS, CASE).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(case["key"], "case");
    assert_eq!(case["name"], "Back-office case");
    assert_eq!(case["source"], CASE);
    assert_eq!(case["format"], "yaml");
    assert_eq!(case["latest_version"], 0);
    let case_id = id(&case);
    let one = format!("{DEFINITIONS}/{case_id}");
    let got = expect(
        call(app, &viewer, Method::GET, &one, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got, case);

    // JSON too.
    let json_text = r#"{"key": "ticket", "triggers": {"api": true},
        "states": {"new": {"on": {"close": "closed"}}, "closed": {"final": true}}}"#;
    let ticket = expect(
        send_text(
            app,
            admin,
            Method::POST,
            DEFINITIONS,
            "application/json",
            json_text,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(ticket["key"], "ticket");
    assert_eq!(ticket["format"], "json");
    assert_eq!(ticket["source"], json_text);
    assert_eq!(ticket["latest_version"], 0);

    // A key is the tenant's once.
    let res = yaml(app, admin, Method::POST, DEFINITIONS, CASE).await;
    let problem = assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("`case`"),
        "{problem}"
    );

    // Refusals name the path, line and column.
    let typo = CASE.replace("reject: { to: lost", "reject: { to: lots");
    let errors = invalid_definition(yaml(app, admin, Method::POST, DEFINITIONS, &typo).await).await;
    let (line, column) = located(&errors, "states.open.on.reject.to", "unknown state `lots`");
    assert_eq!((line, column), (6, 34), "{errors:#?}");
    let unknown = CASE.replace(
        "  won: { final: true }",
        "  won: { final: true, colour: red }",
    );
    let errors =
        invalid_definition(yaml(app, admin, Method::POST, DEFINITIONS, &unknown).await).await;
    let (line, _) = located(&errors, "states.won.colour", "unknown field `colour`");
    assert_eq!(line, 7);
    let broken = "key: broken\ntriggers: { api: true }\nstates: { a: { final: true }\n";
    let errors =
        invalid_definition(yaml(app, admin, Method::POST, DEFINITIONS, broken).await).await;
    assert!(
        errors[0]["message"].as_str().unwrap().contains("(line "),
        "{errors:#?}"
    );
    let res = send_text(
        app,
        admin,
        Method::POST,
        DEFINITIONS,
        "application/json",
        "{\"key\": \"t\",\n \"states\": {\"a\": {\"final\": \"yes\"}}}",
    )
    .await;
    let errors = invalid_definition(res).await;
    let (line, _) = located(&errors, "states.a.final", "invalid type");
    assert_eq!(line, 2);
    // Nothing refused was stored.
    let page = expect(
        call(app, admin, Method::GET, DEFINITIONS, None).await,
        StatusCode::OK,
    )
    .await;
    let keys: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["case", "ticket"]);
    // Neither XML nor anything else.
    let res = send_text(
        app,
        admin,
        Method::POST,
        DEFINITIONS,
        "application/xml",
        "<x/>",
    )
    .await;
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // Validation: the draft (empty body), or the body given.
    let validate = format!("{one}/validate");
    let checked = expect(
        call(app, &viewer, Method::POST, &validate, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(checked, json!({ "valid": true, "problems": [] }));
    let checked = expect(
        yaml(app, admin, Method::POST, &validate, &typo).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(checked["valid"], false);
    let problem = &checked["problems"][0];
    assert_eq!(problem["path"], "states.open.on.reject.to", "{checked}");
    assert_eq!(
        (problem["line"].clone(), problem["column"].clone()),
        (json!(6), json!(34))
    );
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("unknown state `lots` (did you mean `lost`?)"),
        "{checked}"
    );
    // Validating changed nothing.
    let got = expect(
        call(app, admin, Method::GET, &one, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["source"], CASE);

    // What Integro does not run yet is refused, saying so.
    let llm = CASE.replace(
        "  won: { final: true }",
        "  won: { final: true, enter: [{ ask_llm: { prompt: \"Summarise\", store_as: summary } }] }",
    )
    .replace("key: case", "key: llm_case");
    let errors = invalid_definition(yaml(app, admin, Method::POST, DEFINITIONS, &llm).await).await;
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("`ask_llm` actions are not available yet"),
        "{errors:#?}"
    );
    let checked = expect(
        yaml(app, admin, Method::POST, &validate, &llm).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(checked["valid"], false, "{checked}");

    // A definition naming a calendar is stored, but not published while
    // the calendar does not exist.
    let office = CASE.replace("key: case", "key: office_case").replace(
        "  open:\n",
        "  open:\n    sla: { within: PT4H, calendar: office }\n",
    );
    let stored = expect(
        yaml(app, admin, Method::POST, DEFINITIONS, &office).await,
        StatusCode::CREATED,
    )
    .await;
    let res = call(
        app,
        admin,
        Method::POST,
        &format!("{DEFINITIONS}/{}/versions", id(&stored)),
        None,
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("`office`") && detail.contains("does not exist"),
        "{problem}"
    );
    let got = expect(
        call(
            app,
            admin,
            Method::GET,
            &format!("{DEFINITIONS}/{}", id(&stored)),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["latest_version"], 0);

    // PUT replaces the draft, validated like a create.
    let changed = CASE.replace("name: Back-office case", "name: Case v2");
    let put = expect(
        yaml(app, admin, Method::PUT, &one, &changed).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(put["id"], case_id.as_str());
    assert_eq!(put["name"], "Case v2");
    assert_eq!(put["source"], changed);
    let got = expect(
        call(app, admin, Method::GET, &one, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["source"], changed);
    invalid_definition(yaml(app, admin, Method::PUT, &one, &typo).await).await;
    // Renamed to a key that is taken.
    let res = yaml(
        app,
        admin,
        Method::PUT,
        &one,
        &CASE.replace("key: case", "key: ticket"),
    )
    .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let got = expect(
        call(app, admin, Method::GET, &one, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["source"], changed);

    // Roles: only admins and owners write definitions.
    for key in [&agent, &viewer] {
        let res = yaml(
            app,
            key,
            Method::POST,
            DEFINITIONS,
            &CASE.replace("key: case", "key: other"),
        )
        .await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = yaml(app, key, Method::PUT, &one, CASE).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = call(app, key, Method::POST, &format!("{one}/versions"), None).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = call(app, key, Method::DELETE, &one, None).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }

    // Another tenant sees none of it.
    let other = app.create_tenant("Other").await;
    let (_, stranger) = app.create_key(&other, "admin").await;
    let res = call(app, &stranger, Method::GET, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = yaml(app, &stranger, Method::PUT, &one, CASE).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(app, &stranger, Method::POST, &validate, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(
        app,
        &stranger,
        Method::POST,
        &format!("{one}/versions"),
        None,
    )
    .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(
        app,
        &stranger,
        Method::GET,
        &format!("{one}/versions"),
        None,
    )
    .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(
        app,
        &stranger,
        Method::POST,
        &format!("{one}/simulate"),
        Some(json!({ "script": [] })),
    )
    .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(app, &stranger, Method::DELETE, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    assert!(listed(app, &stranger, DEFINITIONS).await.is_empty());
    // Keys are per tenant: the other tenant may use `case` too.
    expect(
        yaml(app, &stranger, Method::POST, DEFINITIONS, CASE).await,
        StatusCode::CREATED,
    )
    .await;

    // Deleted, it is gone, and its key is free again.
    let res = call(app, admin, Method::DELETE, &one, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = call(app, admin, Method::GET, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(app, admin, Method::DELETE, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(app, admin, Method::POST, &validate, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    expect(
        yaml(app, admin, Method::POST, DEFINITIONS, CASE).await,
        StatusCode::CREATED,
    )
    .await;
}

async fn publishing_makes_numbered_versions(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    let (_, viewer) = app.create_key(&t.id, "viewer").await;
    let definition = expect(
        yaml(app, admin, Method::POST, DEFINITIONS, CASE).await,
        StatusCode::CREATED,
    )
    .await;
    let one = format!("{DEFINITIONS}/{}", id(&definition));
    let versions = format!("{one}/versions");
    let page = expect(
        call(app, &viewer, Method::GET, &versions, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"], json!([]));

    let v1 = expect(
        call(app, admin, Method::POST, &versions, None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["definition_id"], id(&definition).as_str());
    assert_eq!(v1["source"], CASE);
    assert_eq!(v1["format"], "yaml");
    assert_eq!(v1["created_by"], "api_key:admin key");
    let got = expect(
        call(app, admin, Method::GET, &one, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["latest_version"], 1);
    let page = expect(
        call(app, &viewer, Method::GET, &versions, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"], json!([v1]));

    // The draft changes; version 1 does not.
    let changed = CASE.replace("name: Back-office case", "name: Renamed");
    expect(
        yaml(app, admin, Method::PUT, &one, &changed).await,
        StatusCode::OK,
    )
    .await;
    let v2 = expect(
        call(app, admin, Method::POST, &versions, None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["source"], changed);
    assert_ne!(v2["id"], v1["id"]);
    let page = expect(
        call(app, admin, Method::GET, &versions, None).await,
        StatusCode::OK,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(items[0], v1);
    assert_eq!(items[1], v2);
    let got = expect(
        call(app, admin, Method::GET, &one, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["latest_version"], 2);
    // Publishing an unchanged draft still makes a version.
    let v3 = expect(
        call(app, admin, Method::POST, &versions, None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(v3["version"], 3);
    // Pages.
    let page = expect(
        call(
            app,
            admin,
            Method::GET,
            &format!("{versions}?limit=2"),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let page = expect(
        call(
            app,
            admin,
            Method::GET,
            &format!("{versions}?limit=2&cursor={cursor}"),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"], json!([v3]));
}

async fn instances_are_started_moved_and_listed(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    let (_, agent) = app.create_key(&t.id, "agent").await;
    let (_, viewer) = app.create_key(&t.id, "viewer").await;

    // No such definition; no published version yet.
    let res = call(
        app,
        admin,
        Method::POST,
        INSTANCES,
        Some(json!({ "definition": "nope" })),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "definition");
    let definition = expect(
        yaml(app, admin, Method::POST, DEFINITIONS, CASE).await,
        StatusCode::CREATED,
    )
    .await;
    let definition_id = id(&definition);
    for by in ["case", definition_id.as_str()] {
        let res = call(
            app,
            admin,
            Method::POST,
            INSTANCES,
            Some(json!({ "definition": by })),
        )
        .await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(problem["errors"][0]["field"], "definition");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("no published version"),
            "{problem}"
        );
    }
    let v1 = expect(
        call(
            app,
            admin,
            Method::POST,
            &format!("{DEFINITIONS}/{definition_id}/versions"),
            None,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;

    // Started by key (an agent may) and by id; a viewer may not.
    let res = call(
        app,
        &viewer,
        Method::POST,
        INSTANCES,
        Some(json!({ "definition": "case" })),
    )
    .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let a = start(
        app,
        &agent,
        json!({ "definition": "case", "data": { "customer": "ACME" } }),
    )
    .await;
    assert_eq!(a["definition_id"], definition_id.as_str());
    assert_eq!(a["version_id"], v1["id"]);
    assert_eq!(a["state"], "open");
    assert_eq!(a["status"], "active");
    assert_eq!(a["seq"], 0);
    assert_eq!(a["vars"], json!({ "customer": "ACME" }));
    assert_eq!(a["sla_status"], Value::Null);
    let a_id = id(&a);
    let b = start(app, admin, json!({ "definition": definition_id })).await;
    let b_id = id(&b);
    assert_ne!(a_id, b_id);
    assert_eq!(b["state"], "open");
    let got = instance(app, &viewer, &a_id).await;
    assert_eq!(got, a);
    // Data a start does not take.
    let res = call(
        app,
        admin,
        Method::POST,
        INSTANCES,
        Some(json!({ "definition": "case", "colour": "red" })),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = call(
        app,
        admin,
        Method::POST,
        INSTANCES,
        Some(json!({ "definition": "case", "conversation_id": uuid::Uuid::new_v4() })),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "conversation_id");

    // Idempotent by external_ref, and by Idempotency-Key.
    let body = json!({ "definition": "case", "external_ref": "order-42" });
    let c = start(app, admin, body.clone()).await;
    assert_eq!(c["external_ref"], "order-42");
    let again = expect(
        call(app, admin, Method::POST, INSTANCES, Some(body)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["id"], c["id"]);
    let keyed = |k: &str| {
        app.request(Method::POST, INSTANCES, admin)
            .header("idempotency-key", k)
            .json(&json!({ "definition": "case" }))
    };
    let d = expect(keyed("req-1").send().await.unwrap(), StatusCode::CREATED).await;
    let again = expect(keyed("req-1").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(again["id"], d["id"]);
    let e = expect(keyed("req-2").send().await.unwrap(), StatusCode::CREATED).await;
    assert_ne!(e["id"], d["id"]);
    let res = keyed(&"k".repeat(201)).send().await.unwrap();
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");

    // Events: one the state does not take lists those it does.
    let res = event(app, &agent, &a_id, json!({ "event": "close" })).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "event_refused").await;
    assert_eq!(
        problem["detail"],
        "state `open` has no transition for event `close`; allowed: accept, reject"
    );
    let res = event(app, &agent, &a_id, json!({ "event": "reject" })).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "event_refused").await;
    assert_eq!(problem["detail"], "event `reject` requires reason");
    let res = event(
        app,
        &agent,
        &a_id,
        json!({ "event": "reject", "data": { "reason": "  " } }),
    )
    .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "event_refused").await;
    let res = event(
        app,
        &viewer,
        &a_id,
        json!({ "event": "accept", "expected_seq": 0 }),
    )
    .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = event(
        app,
        &agent,
        &a_id,
        json!({ "event": "accept", "expected_seq": 3 }),
    )
    .await;
    let problem = assert_problem(res, StatusCode::CONFLICT, "seq_moved").await;
    assert_eq!(problem["errors"][0]["field"], "expected_seq");
    assert_eq!(
        problem["errors"][0]["message"], "the instance is at seq 0",
        "{problem}"
    );
    // Refused events changed nothing.
    let got = instance(app, admin, &a_id).await;
    assert_eq!(got["seq"], 0);
    assert_eq!(got["fields"], json!({}));
    assert_eq!(got["updated_at"], a["updated_at"]);

    let won = expect(
        event(
            app,
            &agent,
            &a_id,
            json!({ "event": "accept", "expected_seq": 0 }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(won["id"], a_id.as_str());
    assert_eq!(won["state"], "won");
    assert_eq!(won["status"], "completed");
    assert_eq!(won["seq"], 1);
    assert_eq!(instance(app, admin, &a_id).await, won);
    let res = event(app, &agent, &a_id, json!({ "event": "accept" })).await;
    let problem = assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(problem["detail"], "the instance is completed");
    let res = event(
        app,
        &agent,
        &a_id,
        json!({ "event": "reject", "data": { "reason": "late" } }),
    )
    .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;

    let lost = expect(
        event(
            app,
            admin,
            &b_id,
            json!({ "event": "reject", "data": { "reason": "too expensive", "note": "x" } }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(lost["state"], "lost");
    assert_eq!(lost["status"], "completed");
    assert_eq!(lost["fields"], json!({ "reason": "too expensive" }));

    // History, oldest first, by who did it.
    let past = history(app, &viewer, &a_id).await;
    assert_eq!(
        names(&past),
        [
            "workflow.instance.created",
            "workflow.instance.transitioned",
            "workflow.instance.completed",
        ]
    );
    assert_eq!(past[0]["seq"], 0);
    assert_eq!(past[0]["payload"]["data"], json!({ "customer": "ACME" }));
    assert_eq!(past[0]["actor"], "api_key:agent key");
    assert_eq!(past[1]["seq"], 1);
    assert_eq!(past[1]["payload"]["from"], "open");
    assert_eq!(past[1]["payload"]["to"], "won");
    assert_eq!(past[1]["payload"]["event"], "accept");
    assert_eq!(past[1]["payload"]["workflow"], "case");
    assert_eq!(past[2]["payload"]["state"], "won");
    assert!(past.iter().all(|e| e["instance_id"] == a_id.as_str()));
    let past = history(app, admin, &b_id).await;
    assert_eq!(
        names(&past),
        [
            "workflow.instance.created",
            "workflow.field.set",
            "workflow.instance.transitioned",
            "workflow.instance.completed",
        ]
    );
    assert_eq!(past[1]["payload"]["field"], "reason");
    assert_eq!(past[1]["payload"]["value"], "too expensive");

    // Lists, newest first, by state, status and definition.
    let other = published(
        app,
        admin,
        "key: other\ntriggers: { api: true }\nstates:\n  open: { on: { done: done } }\n  done: { final: true }\n",
    )
    .await;
    let f = start(app, admin, json!({ "definition": "other" })).await;
    let f_id = id(&f);
    let (c_id, d_id, e_id) = (id(&c), id(&d), id(&e));
    assert_eq!(
        listed(app, &viewer, INSTANCES).await,
        [
            f_id.as_str(),
            e_id.as_str(),
            d_id.as_str(),
            c_id.as_str(),
            b_id.as_str(),
            a_id.as_str()
        ]
    );
    assert_eq!(
        listed(app, admin, &format!("{INSTANCES}?state=won")).await,
        [a_id.as_str()]
    );
    assert_eq!(
        listed(app, admin, &format!("{INSTANCES}?status=completed")).await,
        [b_id.as_str(), a_id.as_str()]
    );
    assert_eq!(
        listed(app, admin, &format!("{INSTANCES}?status=active")).await,
        [f_id.as_str(), e_id.as_str(), d_id.as_str(), c_id.as_str()]
    );
    assert_eq!(
        listed(
            app,
            admin,
            &format!("{INSTANCES}?definition_id={}", id(&other))
        )
        .await,
        [f_id.as_str()]
    );
    assert_eq!(
        listed(
            app,
            admin,
            &format!("{INSTANCES}?definition_id={definition_id}&state=open")
        )
        .await,
        [e_id.as_str(), d_id.as_str(), c_id.as_str()]
    );
    let page = expect(
        call(
            app,
            admin,
            Method::GET,
            &format!("{INSTANCES}?limit=4"),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let cursor = page["next_cursor"].as_str().expect("a next page");
    assert_eq!(
        listed(app, admin, &format!("{INSTANCES}?limit=4&cursor={cursor}")).await,
        [b_id.as_str(), a_id.as_str()]
    );

    // Another tenant sees none of it.
    let stranger_tenant = app.create_tenant("Other").await;
    let (_, stranger) = app.create_key(&stranger_tenant, "admin").await;
    let one = format!("{INSTANCES}/{c_id}");
    let res = call(app, &stranger, Method::GET, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(app, &stranger, Method::GET, &format!("{one}/history"), None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = event(app, &stranger, &c_id, json!({ "event": "accept" })).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(
        app,
        &stranger,
        Method::POST,
        &format!("{one}/assign"),
        Some(json!({ "user_id": null })),
    )
    .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(app, &stranger, Method::DELETE, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    assert!(listed(app, &stranger, INSTANCES).await.is_empty());
    for by in ["case", definition_id.as_str()] {
        let res = call(
            app,
            &stranger,
            Method::POST,
            INSTANCES,
            Some(json!({ "definition": by })),
        )
        .await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    }
    assert_eq!(instance(app, admin, &c_id).await["seq"], 0);

    // Deleting an active instance cancels it; it is gone from the API, its
    // history stays.
    let res = call(app, &viewer, Method::DELETE, &one, None).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = call(app, &agent, Method::DELETE, &one, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = call(app, admin, Method::GET, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(app, admin, Method::DELETE, &one, None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = event(app, admin, &c_id, json!({ "event": "accept" })).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    assert!(!listed(app, admin, INSTANCES).await.contains(&c_id));
    let kept: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT name, seq, payload FROM workflow_events WHERE instance_id = $1 ORDER BY id",
    )
    .bind(&c_id)
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    let kept_names: Vec<&str> = kept.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        kept_names,
        ["workflow.instance.created", "workflow.instance.cancelled"]
    );
    assert_eq!(kept[1].1, 1);
    let payload: Value = serde_json::from_str(&kept[1].2).unwrap();
    assert_eq!(payload["reason"], "deleted");
    // A finished instance is deleted too, without another event.
    let res = call(
        app,
        admin,
        Method::DELETE,
        &format!("{INSTANCES}/{a_id}"),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cancelled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM workflow_events WHERE instance_id = $1 AND name = 'workflow.instance.cancelled'",
    )
    .bind(&a_id)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(cancelled, 0);
}

/// `a → b → end` in version 1; `b` renamed `review`, with another event,
/// in version 2.
const STAGES_V1: &str = "\
key: stages
triggers: { api: true }
states:
  a: { on: { next: b } }
  b: { on: { done: end } }
  end: { final: true }
";
const STAGES_V2: &str = "\
key: stages
triggers: { api: true }
states:
  a: { on: { next: review } }
  review: { on: { approve: end } }
  end: { final: true }
";

async fn a_new_version_leaves_running_instances_alone(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    let definition = published(app, admin, STAGES_V1).await;
    let one = format!("{DEFINITIONS}/{}", id(&definition));
    let page = expect(
        call(app, admin, Method::GET, &format!("{one}/versions"), None).await,
        StatusCode::OK,
    )
    .await;
    let v1 = page["items"][0]["id"].as_str().unwrap().to_string();
    let old = start(app, admin, json!({ "definition": "stages" })).await;
    let old_id = id(&old);
    let moved = start(app, admin, json!({ "definition": "stages" })).await;
    let moved_id = id(&moved);
    expect(
        event(app, admin, &moved_id, json!({ "event": "next" })).await,
        StatusCode::OK,
    )
    .await;

    // Version 2: the draft changes and is published.
    expect(
        yaml(app, admin, Method::PUT, &one, STAGES_V2).await,
        StatusCode::OK,
    )
    .await;
    // A changed draft alone changes nothing.
    let fresh = start(app, admin, json!({ "definition": "stages" })).await;
    assert_eq!(fresh["version_id"], v1.as_str());
    let v2 = expect(
        call(app, admin, Method::POST, &format!("{one}/versions"), None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(v2["version"], 2);

    // The instances started on version 1 keep it, and its states.
    let got = instance(app, admin, &old_id).await;
    assert_eq!(got["version_id"], v1.as_str());
    let b = expect(
        event(app, admin, &old_id, json!({ "event": "next" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(b["state"], "b");
    assert_eq!(b["version_id"], v1.as_str());
    let res = event(app, admin, &old_id, json!({ "event": "approve" })).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "event_refused").await;
    assert_eq!(
        problem["detail"],
        "state `b` has no transition for event `approve`; allowed: done"
    );
    let end = expect(
        event(app, admin, &old_id, json!({ "event": "done" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(end["state"], "end");
    assert_eq!(end["status"], "completed");
    let got = expect(
        event(app, admin, &moved_id, json!({ "event": "done" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["state"], "end");
    assert_eq!(got["version_id"], v1.as_str());

    // A new instance runs on version 2.
    let new = start(app, admin, json!({ "definition": "stages" })).await;
    assert_eq!(new["version_id"], v2["id"]);
    let review = expect(
        event(app, admin, &id(&new), json!({ "event": "next" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(review["state"], "review");
    let res = event(app, admin, &id(&new), json!({ "event": "done" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "event_refused").await;
    let end = expect(
        event(app, admin, &id(&new), json!({ "event": "approve" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(end["status"], "completed");
    // And so does the one started between the edit and the publication,
    // on version 1.
    let b = expect(
        event(app, admin, &id(&fresh), json!({ "event": "next" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(b["state"], "b");

    // Deleting the definition leaves its instances running.
    let running = start(app, admin, json!({ "definition": "stages" })).await;
    let res = call(app, admin, Method::DELETE, &one, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let got = expect(
        event(app, admin, &id(&running), json!({ "event": "next" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["state"], "review");
}

/// A state whose events only record that they happened.
const PINGS: &str = "\
key: pings
triggers: { api: true }
states:
  a:
    on:
      ping: a
      e1: a
      e2: a
      e3: a
      e4: a
      e5: a
      finish: done
  done: { final: true }
";

async fn concurrent_events_are_taken_one_at_a_time(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    published(app, admin, PINGS).await;
    let started = start(app, admin, json!({ "definition": "pings" })).await;
    let i = id(&started);
    let i = i.as_str();

    // Ten at once, each expecting seq 0: exactly one goes through.
    let answers = join_all((0..10).map(|_| async {
        let res = event(app, admin, i, json!({ "event": "ping", "expected_seq": 0 })).await;
        let status = res.status();
        (status, res.json::<Value>().await.unwrap())
    }))
    .await;
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok.len(), 1, "{answers:#?}");
    assert_eq!(ok[0]["seq"], 1);
    for (status, body) in &answers {
        if *status != StatusCode::OK {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["code"], "seq_moved", "{body}");
            assert_eq!(body["errors"][0]["message"], "the instance is at seq 1");
        }
    }
    assert_eq!(instance(app, admin, i).await["seq"], 1);

    // Five different events at once, none expecting a seq: all taken, one
    // after the other.
    let answers = join_all(
        ["e1", "e2", "e3", "e4", "e5"]
            .into_iter()
            .map(|name| async move {
                let res = event(app, admin, i, json!({ "event": name })).await;
                let status = res.status();
                (status, res.json::<Value>().await.unwrap())
            }),
    )
    .await;
    let mut seqs: Vec<i64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["seq"].as_i64().unwrap()
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, [2, 3, 4, 5, 6], "each answer saw its own step");
    assert_eq!(instance(app, admin, i).await["seq"], 6);
    let past = history(app, admin, i).await;
    let moves: Vec<&Value> = past
        .iter()
        .filter(|e| e["name"] == "workflow.instance.transitioned")
        .collect();
    assert_eq!(moves.len(), 6, "{past:#?}");
    let in_order: Vec<i64> = moves.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(in_order, [1, 2, 3, 4, 5, 6], "unique and increasing");
    let mut events: Vec<&str> = moves[1..]
        .iter()
        .map(|e| e["payload"]["event"].as_str().unwrap())
        .collect();
    events.sort();
    assert_eq!(events, ["e1", "e2", "e3", "e4", "e5"]);
    for e in &moves {
        assert_eq!(e["payload"]["seq"], e["seq"]);
    }

    // Racing to finish: one completes it, the others find it completed.
    let answers = join_all((0..4).map(|_| async {
        event(app, admin, i, json!({ "event": "finish" }))
            .await
            .status()
    }))
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|s| s.as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409]);
    let past = history(app, admin, i).await;
    assert_eq!(count(&past, "workflow.instance.completed"), 1);
}

const TIMED: &str = "\
key: timed
triggers: { api: true }
states:
  waiting:
    timers: [{ after: PT1S, goto: expired }]
    on: { answer: answered }
  answered: { final: true }
  expired: { final: true }
";

const SLA: &str = "\
key: sla_case
triggers: { api: true }
states:
  open:
    sla: { within: PT2S, warn_before: PT1S }
    on: { close: closed, note: open }
  closed: { final: true }
";

async fn timers_and_slas_fire_exactly_once(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    published(app, admin, TIMED).await;
    published(app, admin, SLA).await;

    // A timer moves the instance when it comes due; one overtaken by an
    // event does nothing.
    let expiring = id(&start(app, admin, json!({ "definition": "timed" })).await);
    let answered = id(&start(app, admin, json!({ "definition": "timed" })).await);
    let got = expect(
        event(app, admin, &answered, json!({ "event": "answer" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["state"], "answered");
    // SLAs: one left alone, one closed before its warning.
    let breaching = start(app, admin, json!({ "definition": "sla_case" })).await;
    assert_eq!(breaching["sla_status"], "running");
    let due = OffsetDateTime::parse(breaching["sla_due_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let created =
        OffsetDateTime::parse(breaching["created_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!((due - created).whole_milliseconds(), 2000);
    let breaching = id(&breaching);
    assert_eq!(
        listed(app, admin, &format!("{INSTANCES}?sla_status=running")).await,
        [breaching.as_str()]
    );
    let closed = id(&start(app, admin, json!({ "definition": "sla_case" })).await);
    let got = expect(
        event(app, admin, &closed, json!({ "event": "close" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["sla_status"], "met");

    wait_until(Duration::from_secs(10), || async {
        instance(app, admin, &expiring).await["state"] == "expired"
    })
    .await;
    let got = instance(app, admin, &expiring).await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["seq"], 1);
    let past = history(app, admin, &expiring).await;
    assert_eq!(
        names(&past),
        [
            "workflow.instance.created",
            "workflow.timer.fired",
            "workflow.instance.transitioned",
            "workflow.instance.completed",
        ]
    );
    assert_eq!(past[1]["payload"]["index"], 0);
    assert_eq!(past[1]["actor"], "system");
    assert_eq!(past[2]["payload"]["event"], "timer");

    // The warning, then the breach, each once.
    wait_until(Duration::from_secs(10), || async {
        instance(app, admin, &breaching).await["sla_status"] == "breached"
    })
    .await;
    settled(app, Duration::from_secs(10)).await;
    let past = history(app, admin, &breaching).await;
    assert_eq!(
        names(&past),
        [
            "workflow.instance.created",
            "workflow.sla.warning",
            "workflow.sla.breached",
        ]
    );
    assert_eq!(
        past[2]["payload"]["breach_at_ms"],
        past[1]["payload"]["breach_at_ms"]
    );
    let got = instance(app, admin, &breaching).await;
    assert_eq!(got["sla_status"], "breached");
    assert_eq!(got["state"], "open");
    assert_eq!(got["status"], "active");
    assert_eq!(got["seq"], 0);
    // Listed by SLA status.
    assert_eq!(
        listed(app, admin, &format!("{INSTANCES}?sla_status=breached")).await,
        [breaching.as_str()]
    );
    // An event staying in the state keeps the breach, and so does leaving.
    let got = expect(
        event(app, admin, &breaching, json!({ "event": "note" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["sla_status"], "breached");
    let got = expect(
        event(app, admin, &breaching, json!({ "event": "close" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["sla_status"], "breached");

    // The timer and SLA checks overtaken by events did nothing.
    settled(app, Duration::from_secs(10)).await;
    let past = history(app, admin, &answered).await;
    assert_eq!(count(&past, "workflow.timer.fired"), 0, "{past:#?}");
    let got = instance(app, admin, &answered).await;
    assert_eq!(got["state"], "answered");
    assert_eq!(got["seq"], 1);
    let past = history(app, admin, &closed).await;
    assert_eq!(count(&past, "workflow.sla.warning"), 0, "{past:#?}");
    assert_eq!(count(&past, "workflow.sla.breached"), 0, "{past:#?}");
    let past = history(app, admin, &breaching).await;
    assert_eq!(count(&past, "workflow.sla.warning"), 1, "{past:#?}");
    assert_eq!(count(&past, "workflow.sla.breached"), 1, "{past:#?}");
    // Every timer job ended done, none dead.
    let dead: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'workflow_timer' AND state <> 'done'",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(dead, 0);
}

async fn simulate_runs_a_script_on_a_virtual_clock(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    let (_, viewer) = app.create_key(&t.id, "viewer").await;
    let definition = expect(
        yaml(app, admin, Method::POST, DEFINITIONS, LEAD_INTAKE).await,
        StatusCode::CREATED,
    )
    .await;
    let simulate = format!("{DEFINITIONS}/{}/simulate", id(&definition));

    // The form: re-asked after an invalid name, confirmed, then accepted.
    let script = json!({ "script": [
        { "message": "A" },
        { "message": "Ana" },
        { "message": "ana at example" },
        { "message": "ana@example.com" },
        { "message": "yes" },
        { "event": "reject" },
        { "event": "accept" },
    ] });
    let answer = expect(
        call(app, &viewer, Method::POST, &simulate, Some(script)).await,
        StatusCode::OK,
    )
    .await;
    let steps = answer["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8, "{answer:#}");
    assert_eq!(steps[0]["input"]["type"], "start");
    assert_eq!(steps[0]["step"]["state"]["state"], "collecting");
    let sent = |i: usize| -> Vec<String> {
        steps[i]["step"]["effects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "send")
            .map(|e| e["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sent(0), ["What's your name?"]);
    assert_eq!(steps[1]["input"], json!({ "type": "message", "text": "A" }));
    assert_eq!(sent(1), ["What's your name?"]);
    assert_eq!(sent(2), ["Your email?"]);
    assert_eq!(sent(3), ["That email doesn't look right, try again?"]);
    assert_eq!(sent(4), ["Ana, ana@example.com: correct?"]);
    for (i, step) in steps[..5].iter().enumerate() {
        assert_eq!(step["step"]["transitions"], json!([]), "step {i}");
    }
    assert_eq!(
        steps[5]["step"]["transitions"],
        json!([{ "from": "collecting", "to": "qualified", "event": "complete" }])
    );
    assert_eq!(
        steps[5]["step"]["state"]["fields"],
        json!({ "name": "Ana", "email": "ana@example.com" })
    );
    // A refused event is an error, and changes nothing.
    assert_eq!(steps[6]["step"], Value::Null);
    assert_eq!(steps[6]["error"], "event `reject` requires reason");
    assert_eq!(
        steps[7]["step"]["transitions"],
        json!([{ "from": "qualified", "to": "won", "event": "accept" }])
    );
    assert_eq!(steps[7]["step"]["state"]["status"], "completed");
    // The clock runs one millisecond per item.
    let at = |i: usize| steps[i]["at_ms"].as_i64().unwrap();
    assert_eq!(at(7) - at(0), 7);

    // Timers fire on the virtual clock: a reminder after 4 hours, then
    // abandoned after 24.
    let until = (OffsetDateTime::now_utc() + time::Duration::hours(25))
        .format(&Rfc3339)
        .unwrap();
    let answer = expect(
        call(
            app,
            admin,
            Method::POST,
            &simulate,
            Some(json!({ "script": [], "until": until })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let steps = answer["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{answer:#}");
    assert_eq!(steps[1]["input"]["type"], "timer");
    assert_eq!(steps[1]["input"]["index"], 0);
    assert_eq!(
        steps[1]["at_ms"].as_i64().unwrap() - steps[0]["at_ms"].as_i64().unwrap(),
        4 * 3_600_000
    );
    assert_eq!(sent(0).len(), 1);
    assert_eq!(steps[2]["input"]["index"], 1);
    assert_eq!(
        steps[2]["step"]["transitions"],
        json!([{ "from": "collecting", "to": "abandoned", "event": "timer" }])
    );
    // Times given, and start data.
    let start_at = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let answer = expect(
        call(
            app,
            admin,
            Method::POST,
            &simulate,
            Some(json!({
                "data": { "name": "Bea" },
                "script": [
                    { "at": start_at.format(&Rfc3339).unwrap(), "message": "bea@example.com" },
                    { "at": (start_at + time::Duration::minutes(1)).format(&Rfc3339).unwrap(), "message": "yes" },
                ],
            })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let steps = answer["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{answer:#}");
    assert_eq!(
        steps[0]["step"]["state"]["fields"],
        json!({ "name": "Bea" })
    );
    assert_eq!(
        steps[2]["step"]["transitions"][0]["to"], "qualified",
        "{answer:#}"
    );
    assert_eq!(
        steps[2]["at_ms"].as_i64().unwrap(),
        (start_at + time::Duration::minutes(1)).unix_timestamp() * 1000
            + i64::from(start_at.millisecond())
    );

    // Nothing was stored.
    assert!(listed(app, admin, INSTANCES).await.is_empty());

    // Items are a message or an event, not both or neither.
    for (script, field) in [
        (json!([{ "message": "hi", "event": "accept" }]), "script[0]"),
        (json!([{ "event": "accept" }, {}]), "script[1]"),
        (
            json!([{ "at": "tomorrow", "event": "accept" }]),
            "script[0].at",
        ),
    ] {
        let res = call(
            app,
            admin,
            Method::POST,
            &simulate,
            Some(json!({ "script": script })),
        )
        .await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let res = call(
        app,
        admin,
        Method::POST,
        &simulate,
        Some(json!({ "script": [{ "event": "accept", "shout": true }] })),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = call(
        app,
        admin,
        Method::POST,
        &simulate,
        Some(json!({ "script": vec![json!({ "event": "accept" }); 201] })),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "script");
}

/// A case assigned round robin among the tenant's agents.
const ASSIGNED: &str = "\
key: assigned
triggers: { api: true }
states:
  open:
    assign: { role: agent, strategy: round_robin }
    on: { accept: won, reject: { to: lost, require: [reason] } }
  won: { final: true }
  lost: { final: true }
";

async fn user_id(app: &TestApp, token: &str) -> String {
    let me = expect(
        call(app, token, Method::GET, "/api/v1/auth/me", None).await,
        StatusCode::OK,
    )
    .await;
    me["user"]["id"].as_str().unwrap().to_string()
}

async fn instances_are_assigned_to_members_and_listed_as_their_tasks(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    let ana = app.user_token(&t.id, "ana@example.com", "agent").await;
    let bob = app.user_token(&t.id, "bob@example.com", "agent").await;
    let (ana_id, bob_id) = (user_id(app, &ana).await, user_id(app, &bob).await);
    // Round robin goes by user id.
    let ana = (ana, ana_id, "ana@example.com");
    let bob = (bob, bob_id, "bob@example.com");
    let (first, second) = if ana.1 < bob.1 {
        (&ana, &bob)
    } else {
        (&bob, &ana)
    };
    published(app, admin, ASSIGNED).await;

    // API keys have no tasks.
    let tasks = "/api/v1/me/workflow-tasks";
    let page = expect(
        call(app, admin, Method::GET, tasks, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page, json!({ "items": [], "next_cursor": null }));

    // Round robin among the agents.
    let one = start(app, admin, json!({ "definition": "assigned" })).await;
    let two = start(app, admin, json!({ "definition": "assigned" })).await;
    let three = start(app, &first.0, json!({ "definition": "assigned" })).await;
    assert_eq!(one["assignee_id"], first.1.as_str());
    assert_eq!(two["assignee_id"], second.1.as_str());
    assert_eq!(three["assignee_id"], first.1.as_str());
    let past = history(app, admin, &id(&one)).await;
    assert_eq!(
        count(&past, "workflow.instance.assigned"),
        1,
        "one assignment, one event: {past:#?}"
    );
    let assigned = past
        .iter()
        .find(|e| e["name"] == "workflow.instance.assigned")
        .unwrap();
    assert_eq!(assigned["payload"]["assignee_id"], first.1.as_str());

    // Each agent's tasks: their open instances, newest first.
    assert_eq!(listed(app, &first.0, tasks).await, [id(&three), id(&one)]);
    assert_eq!(listed(app, &second.0, tasks).await, [id(&two)]);
    assert_eq!(
        listed(app, admin, &format!("{INSTANCES}?assignee_id={}", second.1)).await,
        [id(&two)]
    );
    // A finished instance is no longer a task.
    expect(
        event(app, &first.0, &id(&one), json!({ "event": "accept" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed(app, &first.0, tasks).await, [id(&three)]);

    // Assigned by hand: to a member, to nobody, not to a stranger.
    let path = format!("{INSTANCES}/{}/assign", id(&two));
    let got = expect(
        call(
            app,
            &second.0,
            Method::POST,
            &path,
            Some(json!({ "user_id": first.1 })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["assignee_id"], first.1.as_str());
    assert_eq!(got["seq"], 0);
    assert_eq!(listed(app, &first.0, tasks).await, [id(&three), id(&two)]);
    assert!(listed(app, &second.0, tasks).await.is_empty());
    let past = history(app, admin, &id(&two)).await;
    let last = past.last().unwrap();
    assert_eq!(last["name"], "workflow.instance.assigned");
    assert_eq!(last["payload"]["assignee_id"], first.1.as_str());
    assert_eq!(last["actor"], second.2);

    let other = app.create_tenant("Other").await;
    let stranger = app.user_token(&other, "carl@example.com", "agent").await;
    let stranger_id = user_id(app, &stranger).await;
    for user in [stranger_id.clone(), uuid::Uuid::new_v4().to_string()] {
        let res = call(
            app,
            admin,
            Method::POST,
            &path,
            Some(json!({ "user_id": user })),
        )
        .await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(problem["errors"][0]["field"], "user_id");
    }
    // The stranger's tasks are their own tenant's: none.
    let page = expect(
        call(app, &stranger, Method::GET, tasks, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"], json!([]));
    let (_, viewer) = app.create_key(&t.id, "viewer").await;
    let res = call(
        app,
        &viewer,
        Method::POST,
        &path,
        Some(json!({ "user_id": null })),
    )
    .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let got = expect(
        call(
            app,
            admin,
            Method::POST,
            &path,
            Some(json!({ "user_id": null })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["assignee_id"], Value::Null);
    assert_eq!(listed(app, &first.0, tasks).await, [id(&three)]);
}

/// Version 1: `waiting` expires after 3 seconds; `note` is a field.
const MOVING_V1: &str = "\
key: moving
triggers: { api: true }
fields:
  note: { type: string }
states:
  waiting:
    timers: [{ after: PT3S, goto: expired }]
    on: { next: b }
  b: { on: { done: end } }
  end: { final: true }
  expired: { final: true }
";

/// Version 2: `waiting` has no timer; `b` became `review`, which greets on
/// entry and is done by itself after a second; `note` is not declared.
const MOVING_V2: &str = "\
key: moving
triggers: { api: true }
states:
  waiting:
    on: { next: review }
  review:
    enter: [{ send: \"Under review.\" }]
    timers: [{ after: PT1S, goto: done }]
    on: { finish: end }
  end: { final: true }
  done: { final: true }
";

/// Publishes `text` as the definition's next version; the version.
async fn publish_next(app: &TestApp, key: &str, definition: &str, text: &str) -> Value {
    let one = format!("{DEFINITIONS}/{definition}");
    expect(
        yaml(app, key, Method::PUT, &one, text).await,
        StatusCode::OK,
    )
    .await;
    expect(
        call(app, key, Method::POST, &format!("{one}/versions"), None).await,
        StatusCode::CREATED,
    )
    .await
}

async fn migrate(app: &TestApp, key: &str, instance: &str, body: Value) -> Response {
    let path = format!("{INSTANCES}/{instance}/migrate");
    call(app, key, Method::POST, &path, Some(body)).await
}

/// Jobs in the table, whatever their state.
async fn jobs_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn migrate_moves_a_running_instance_to_another_version(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    let (_, agent) = app.create_key(&t.id, "agent").await;
    let definition = published(app, admin, MOVING_V1).await;
    let definition_id = id(&definition);
    // `waiting` on version 1, its 3-second timer armed; and one in `b`.
    let a = start(
        app,
        admin,
        json!({ "definition": "moving", "data": { "note": "kept", "customer": "ACME" } }),
    )
    .await;
    let a_id = id(&a);
    assert_eq!(a["fields"], json!({ "note": "kept" }));
    let v1 = a["version_id"].as_str().unwrap().to_string();
    let b_id = id(&start(app, admin, json!({ "definition": "moving" })).await);
    expect(
        event(app, admin, &b_id, json!({ "event": "next" })).await,
        StatusCode::OK,
    )
    .await;
    let v2 = publish_next(app, admin, &definition_id, MOVING_V2).await;
    assert_eq!(v2["version"], 2);
    let v2_id = v2["id"].as_str().unwrap();

    // A dry run answers the instance as it would be, and changes nothing.
    let jobs_before = jobs_count(app).await;
    let dry = expect(
        migrate(app, &agent, &a_id, json!({ "dry_run": true })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["instance"]["id"], a_id.as_str());
    assert_eq!(dry["instance"]["version_id"], v2_id);
    assert_eq!(dry["instance"]["state"], "waiting");
    assert_eq!(dry["instance"]["seq"], 1);
    assert_eq!(dry["events"], json!(["workflow.instance.migrated"]));
    assert_eq!(
        dry["effects"],
        json!([]),
        "version 2's `waiting` has no timer"
    );
    let got = instance(app, admin, &a_id).await;
    assert_eq!(got, a, "the dry run stored nothing");
    let created = ["workflow.instance.created", "workflow.field.set"];
    assert_eq!(names(&history(app, admin, &a_id).await), created);
    assert_eq!(jobs_count(app).await, jobs_before);

    // The migration, by an agent, expecting seq 0: the newest version, the
    // same state; values kept, fields version 2 does not declare included.
    assert_eq!(
        got["state"], "waiting",
        "version 1's timer has not fired yet"
    );
    let moved = expect(
        migrate(app, &agent, &a_id, json!({ "expected_seq": 0 })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["dry_run"], false);
    assert_eq!(moved["events"], json!(["workflow.instance.migrated"]));
    let got = instance(app, admin, &a_id).await;
    assert_eq!(moved["instance"], got);
    assert_eq!(got["version_id"], v2_id);
    assert_eq!(got["definition_id"], definition_id.as_str());
    assert_eq!(got["state"], "waiting");
    assert_eq!(got["status"], "active");
    assert_eq!(got["seq"], 1);
    assert_eq!(got["fields"], json!({ "note": "kept" }));
    assert_eq!(got["vars"], json!({ "customer": "ACME" }));
    let past = history(app, admin, &a_id).await;
    assert_eq!(
        names(&past),
        [created[0], created[1], "workflow.instance.migrated"]
    );
    let migrated = &past[2];
    assert_eq!(migrated["seq"], 1);
    assert_eq!(migrated["actor"], "api_key:agent key");
    for (key, value) in [
        ("from_version", json!(1)),
        ("to_version", json!(2)),
        ("from_state", json!("waiting")),
        ("to_state", json!("waiting")),
        ("state", json!("waiting")),
        ("seq", json!(1)),
        ("workflow", json!("moving")),
    ] {
        assert_eq!(migrated["payload"][key], value, "{key}: {migrated}");
    }

    // `b` is renamed `review`, by version number: its `enter` runs (the
    // instance has no conversation to send to) and its timer is armed.
    let dry = expect(
        migrate(
            app,
            admin,
            &b_id,
            json!({ "version": 2, "state_map": { "b": "review" }, "dry_run": true }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(dry["instance"]["state"], "review");
    assert_eq!(
        dry["events"],
        json!(["workflow.instance.migrated", "workflow.effect.skipped"])
    );
    let effects = dry["effects"].as_array().unwrap();
    assert_eq!(
        effects[0],
        json!({ "type": "send", "text": "Under review." })
    );
    assert_eq!(effects[1]["type"], "arm_timer");
    assert_eq!(effects[1]["seq"], 2);
    assert_eq!(instance(app, admin, &b_id).await["state"], "b");
    let moved = expect(
        migrate(
            app,
            admin,
            &b_id,
            json!({ "version": 2, "state_map": { "b": "review", "waiting": "waiting" } }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["instance"]["state"], "review");
    assert_eq!(moved["instance"]["seq"], 2);
    assert_eq!(moved["instance"]["version_id"], v2_id);

    // Version 2's timer fires; version 1's, armed before the migration,
    // comes due and does nothing.
    wait_until(Duration::from_secs(10), || async {
        instance(app, admin, &b_id).await["state"] == "done"
    })
    .await;
    settled(app, Duration::from_secs(10)).await;
    let got = instance(app, admin, &b_id).await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["seq"], 3);
    let past = history(app, admin, &b_id).await;
    assert_eq!(
        names(&past),
        [
            "workflow.instance.created",
            "workflow.instance.transitioned",
            "workflow.instance.migrated",
            "workflow.effect.skipped",
            "workflow.timer.fired",
            "workflow.instance.transitioned",
            "workflow.instance.completed",
        ]
    );
    assert_eq!(past[2]["payload"]["from_state"], "b");
    assert_eq!(past[2]["payload"]["to_state"], "review");
    assert_eq!(past[4]["actor"], "system");
    let got = instance(app, admin, &a_id).await;
    assert_eq!(got["state"], "waiting");
    assert_eq!(got["seq"], 1);
    assert_eq!(got["status"], "active");
    let past = history(app, admin, &a_id).await;
    assert_eq!(count(&past, "workflow.timer.fired"), 0, "{past:#?}");
    assert_eq!(past.len(), 3, "{past:#?}");
    // Every timer job ended done (version 1's too), none dead.
    let dead: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'workflow_timer' AND state <> 'done'",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(dead, 0);
    let stale: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'workflow_timer' AND payload LIKE $1",
    )
    .bind(format!("%{a_id}%"))
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(stale, 1, "version 1's timer ran, and nothing came of it");

    // It goes on as version 2 says.
    let res = event(app, admin, &a_id, json!({ "event": "next" })).await;
    let review = expect(res, StatusCode::OK).await;
    assert_eq!(review["state"], "review");
    assert_eq!(review["version_id"], v2_id);
    let res = event(app, admin, &a_id, json!({ "event": "finish" })).await;
    let end = expect(res, StatusCode::OK).await;
    assert_eq!(end["status"], "completed");
    assert_ne!(end["version_id"], v1.as_str());
}

async fn migrate_refuses_what_it_cannot_do(kind: DbKind) {
    let Some(t) = tenant(kind).await else {
        return;
    };
    let app = &t.app;
    let admin = t.admin.as_str();
    let (_, viewer) = app.create_key(&t.id, "viewer").await;
    let definition = published(app, admin, MOVING_V1).await;
    let definition_id = id(&definition);
    let in_b = id(&start(app, admin, json!({ "definition": "moving" })).await);
    expect(
        event(app, admin, &in_b, json!({ "event": "next" })).await,
        StatusCode::OK,
    )
    .await;
    let v2 = publish_next(app, admin, &definition_id, MOVING_V2).await;
    let v2_id = v2["id"].as_str().unwrap();
    let before = instance(app, admin, &in_b).await;

    // A state the target version lacks: mapped to, or left unmapped.
    let res = migrate(app, admin, &in_b, json!({ "state_map": { "b": "nope" } })).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "state_map.b");
    assert_eq!(
        problem["errors"][0]["message"],
        "state `nope` does not exist in version 2; its states: waiting, review, end, done"
    );
    let res = migrate(app, admin, &in_b, json!({})).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "state_map");
    assert_eq!(
        problem["errors"][0]["message"],
        "the instance's state `b` does not exist in version 2: map it to one of its states: \
         waiting, review, end, done"
    );
    let res = migrate(app, admin, &in_b, json!({ "state_map": { "B": "review" } })).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "state_map");

    // Versions: one that does not exist, another definition's, both ways.
    let res = migrate(app, admin, &in_b, json!({ "version": 9 })).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "version");
    assert_eq!(
        problem["errors"][0]["message"],
        "the definition has no published version 9"
    );
    published(app, admin, CASE).await;
    let other = start(app, admin, json!({ "definition": "case" })).await;
    let other_version = other["version_id"].as_str().unwrap();
    let res = migrate(
        app,
        admin,
        &in_b,
        json!({ "version_id": other_version, "state_map": { "b": "open" } }),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "version_id");
    assert_eq!(
        problem["errors"][0]["message"],
        "is a version of another workflow definition"
    );
    let res = migrate(
        app,
        admin,
        &in_b,
        json!({ "version_id": uuid::Uuid::new_v4() }),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "version_id");
    let res = migrate(
        app,
        admin,
        &in_b,
        json!({ "version": 2, "version_id": v2_id }),
    )
    .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    // A viewer may not; a moved seq is refused with the current one.
    let body = json!({ "version_id": v2_id, "state_map": { "b": "review" } });
    let res = migrate(app, &viewer, &in_b, body.clone()).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let mut stale = body.clone();
    stale["expected_seq"] = json!(0);
    let res = migrate(app, admin, &in_b, stale).await;
    let problem = assert_problem(res, StatusCode::CONFLICT, "seq_moved").await;
    assert_eq!(problem["errors"][0]["message"], "the instance is at seq 1");
    // Another tenant does not see it.
    let stranger_tenant = app.create_tenant("Other").await;
    let (_, stranger) = app.create_key(&stranger_tenant, "admin").await;
    let res = migrate(app, &stranger, &in_b, body.clone()).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // Nor its versions.
    let mine = start(app, admin, json!({ "definition": "moving" })).await;
    let theirs = id(&published(app, &stranger, MOVING_V2).await);
    let path = format!("{DEFINITIONS}/{theirs}/versions");
    let page = expect(
        call(app, &stranger, Method::GET, &path, None).await,
        StatusCode::OK,
    )
    .await;
    let their_version = &page["items"][0]["id"];
    let res = migrate(
        app,
        admin,
        &id(&mine),
        json!({ "version_id": their_version }),
    )
    .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(
        problem["errors"][0]["message"],
        "no published workflow version of the tenant has this id"
    );
    // Every refusal left it as it was.
    assert_eq!(instance(app, admin, &in_b).await, before);
    assert_eq!(history(app, admin, &in_b).await.len(), 2);

    // Nothing to migrate: the version it is on, in the same state; with a
    // map that changes the state, the same version is a move.
    let moved = expect(migrate(app, admin, &in_b, body).await, StatusCode::OK).await;
    assert_eq!(moved["instance"]["state"], "review");
    let res = migrate(app, admin, &in_b, json!({})).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(problem["errors"][0]["field"], "state_map");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with(
                "nothing to migrate: the instance is already on version 2, in state `review`"
            ),
        "{problem}"
    );
    let res = migrate(app, admin, &in_b, json!({ "version": 2, "dry_run": true })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let back = expect(
        migrate(
            app,
            admin,
            &in_b,
            json!({ "version": 2, "state_map": { "review": "waiting" } }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(back["instance"]["state"], "waiting");
    assert_eq!(back["instance"]["seq"], 3);

    // A finished instance stays where it ended, dry run or not.
    let done = expect(
        event(app, admin, &id(&other), json!({ "event": "accept" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["status"], "completed");
    let case_definition = other["definition_id"].as_str().unwrap();
    for dry_run in [true, false] {
        let res = migrate(
            app,
            admin,
            &id(&other),
            json!({ "state_map": { "won": "open" }, "dry_run": dry_run }),
        )
        .await;
        let problem = assert_problem(res, StatusCode::CONFLICT, "conflict").await;
        assert_eq!(problem["detail"], "the instance is completed");
    }
    let got = instance(app, admin, &id(&other)).await;
    assert_eq!(got["state"], "won");
    assert_eq!(got["definition_id"], case_definition);
}
