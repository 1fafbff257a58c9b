//! Workflow timers and SLAs fire once across SIGKILLs (#37): instances
//! whose SLA warns after 1 s and breaches after 2 s and whose timer moves
//! them on after 3 s; `integro serve` is killed twice while those come due
//! and started again each time. Every instance then has exactly one warning,
//! one breach, one timer firing and one transition to its last state:
//! nothing lost, nothing twice.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{new_master_key, serve_with};

const INSTANCES: usize = 40;

fn call(addr: &str, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let (status, text) = support::http(addr, method, path, Some(token), &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn timers_and_slas_fire_once_across_sigkills_on_sqlite() {
    fire_once_across_sigkills(&[]);
}

#[test]
fn timers_and_slas_fire_once_across_sigkills_on_postgres() {
    let Some(database) = support::postgres_or_skip("workflow_crash") else {
        return;
    };
    fire_once_across_sigkills(&[("INTEGRO_DATABASE_URL", &database.url())]);
}

fn fire_once_across_sigkills(database: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let key = new_master_key();
    let env: Vec<(&str, &str)> = [
        ("INTEGRO_MASTER_KEY", key.as_str()),
        ("INTEGRO_ADMIN_EMAIL", "operator@integro.test"),
        // A killed worker's jobs are taken again this soon.
        ("INTEGRO_JOB_LEASE_SECS", "2"),
    ]
    .into_iter()
    .chain(database.iter().copied())
    .collect();
    let (server, addr) = serve_with(dir.path(), &env);
    let owner = support::owner_key(&addr, "Cases");
    let definition = json!({
        "key": "case",
        "triggers": { "api": true },
        // `json!` sorts keys: the first state is named.
        "initial": "waiting",
        "states": {
            "waiting": {
                "sla": { "within": "PT2S", "warn_before": "PT1S" },
                "timers": [{ "after": "PT3S", "goto": "expired" }],
                "on": { "close": "closed" }
            },
            "expired": { "final": true },
            "closed": { "final": true }
        }
    });
    let (status, made) = call(
        &addr,
        "POST",
        "/api/v1/workflow-definitions",
        &owner,
        definition,
    );
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let (status, version) = call(
        &addr,
        "POST",
        &format!("/api/v1/workflow-definitions/{id}/versions"),
        &owner,
        json!({}),
    );
    assert_eq!(status, 201, "{version}");
    let mut ids = Vec::new();
    for n in 0..INSTANCES {
        let (status, instance) = call(
            &addr,
            "POST",
            "/api/v1/workflow-instances",
            &owner,
            json!({ "definition": "case", "external_ref": format!("case-{n}") }),
        );
        assert_eq!(status, 201, "{instance}");
        ids.push(instance["id"].as_str().unwrap().to_string());
    }

    // Killed as the warnings come due, and again as the breaches do.
    std::thread::sleep(Duration::from_millis(1100));
    drop(server);
    let (server, addr) = serve_with(dir.path(), &env);
    std::thread::sleep(Duration::from_millis(900));
    drop(server);
    let (_server, addr2) = serve_with(dir.path(), &env);
    let _ = addr;

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, page) = call(
            &addr2,
            "GET",
            "/api/v1/workflow-instances?status=active&limit=100",
            &owner,
            Value::Null,
        );
        assert_eq!(status, 200, "{page}");
        if page["items"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instances still active: {}",
            page["items"].as_array().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for id in &ids {
        let (status, instance) = call(
            &addr2,
            "GET",
            &format!("/api/v1/workflow-instances/{id}"),
            &owner,
            Value::Null,
        );
        assert_eq!(status, 200, "{instance}");
        assert_eq!(instance["state"], "expired", "{instance}");
        assert_eq!(instance["sla_status"], "breached", "{instance}");
        let (status, history) = call(
            &addr2,
            "GET",
            &format!("/api/v1/workflow-instances/{id}/history?limit=100"),
            &owner,
            Value::Null,
        );
        assert_eq!(status, 200, "{history}");
        let mut counts: HashMap<String, usize> = HashMap::new();
        for event in history["items"].as_array().unwrap() {
            *counts
                .entry(event["name"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        for name in [
            "workflow.instance.created",
            "workflow.sla.warning",
            "workflow.sla.breached",
            "workflow.timer.fired",
            "workflow.instance.transitioned",
            "workflow.instance.completed",
        ] {
            assert_eq!(
                counts.get(name).copied().unwrap_or(0),
                1,
                "{name} in the history of {id}: {counts:?}"
            );
        }
    }
}
