//! Migration onto another version: a new `seq` (the old timers go stale),
//! timers, SLA and form started again from now, `enter` actions only under
//! a new state name, values kept, unknown states refused.

use super::tests::{Driver, HOUR, MINUTE, T0, ctx, def, names, sent, timers};
use super::validate::tests::LEAD_INTAKE;
use super::*;
use serde_json::json;

/// Version 1: `waiting` expires after an hour.
const V1: &str = "\
key: ticket
triggers: { api: true }
fields:
  legacy: { type: string }
states:
  waiting:
    timers: [{ after: PT1H, goto: expired }]
    on: { answer: answered, next: b }
  b:
    enter: [{ send: \"In b.\" }]
    on: { done: answered }
  answered: { final: true }
  expired: { final: true }
";

/// Version 2: `waiting` only reminds, after two hours, and greets on
/// entry; `b` is renamed `review`, assigned, with an SLA.
const V2: &str = "\
key: ticket
triggers: { api: true }
states:
  waiting:
    enter: [{ send: \"Welcome.\" }]
    timers: [{ after: PT2H, remind: \"Still waiting.\" }]
    on: { answer: answered, next: review }
  review:
    enter: [{ send: \"Under review.\" }]
    assign: { role: agent }
    sla: { within: PT4H, warn_before: PT1H }
    on: { done: answered }
  answered: { final: true }
";

fn on_v1() -> Driver {
    let mut d = Driver::new(V1);
    let s = d.start(json!({ "legacy": "kept", "note": "a var" }));
    assert_eq!(timers(&s), [(0, T0 + HOUR, 0)]);
    d
}

#[test]
fn same_state_restarts_timers_with_the_new_seq_without_enter_actions() {
    let mut d = on_v1();
    let v2 = def(V2);
    let now = T0 + 30 * MINUTE;
    let s = migrate(&v2, &d.state, "waiting", now, &ctx()).unwrap();
    assert_eq!(names(&s), ["workflow.instance.migrated"]);
    let payload = &s.events[0].payload;
    assert_eq!(payload["from_state"], "waiting");
    assert_eq!(payload["to_state"], "waiting");
    assert_eq!(payload["state"], "waiting");
    assert_eq!(payload["seq"], 1);
    assert_eq!(payload["workflow"], "ticket");
    // Version 2's timer, counted from now, for seq 1; no `enter` actions
    // under the same name.
    assert_eq!(timers(&s), [(0, now + 2 * HOUR, 1)]);
    assert!(sent(&s).is_empty());
    assert!(s.transitions.is_empty());
    assert_eq!(s.state.seq, 1);
    assert_eq!(s.state.entered_at_ms, now);
    assert_eq!(s.state.status, Status::Active);
    // Values stay, a field version 2 does not declare included.
    assert_eq!(s.state.fields, d.state.fields);
    assert_eq!(s.state.fields["legacy"], "kept");
    assert_eq!(s.state.vars["note"], "a var");

    // Version 1's timer (armed at seq 0) is stale on version 2; version
    // 2's own fires.
    d.def = v2;
    d.state = s.state;
    d.now = T0 + HOUR;
    let stale = d.input(Input::Timer {
        index: 0,
        armed_seq: 0,
    });
    assert!(stale.stale);
    assert_eq!(d.state.state, "waiting");
    d.now = now + 2 * HOUR;
    let fired = d.input(Input::Timer {
        index: 0,
        armed_seq: 1,
    });
    assert_eq!(names(&fired), ["workflow.timer.fired"]);
    assert_eq!(sent(&fired), ["Still waiting."]);
}

#[test]
fn a_new_state_name_is_entered_with_its_actions_assignment_and_sla() {
    let mut d = on_v1();
    d.event("next", json!({})).unwrap();
    assert_eq!(d.state.state, "b");
    assert_eq!(d.state.seq, 1);
    let now = T0 + HOUR;
    let s = migrate(&def(V2), &d.state, "review", now, &ctx()).unwrap();
    assert_eq!(
        names(&s),
        ["workflow.instance.migrated", "workflow.instance.assigned"]
    );
    assert_eq!(s.events[0].payload["from_state"], "b");
    assert_eq!(s.events[0].payload["to_state"], "review");
    assert_eq!(sent(&s), ["Under review."]);
    assert!(s.effects.iter().any(|e| matches!(
        e,
        Effect::Assign {
            assignee: Assignee::Role { .. }
        }
    )));
    // The SLA starts now, armed for the new seq.
    assert_eq!(s.state.sla.as_ref().unwrap().started_at_ms, now);
    assert!(s.effects.contains(&Effect::ArmSla {
        warn_at_ms: Some(now + 3 * HOUR),
        breach_at_ms: now + 4 * HOUR,
        seq: 2,
        calendar: None,
    }));
    assert_eq!(s.state.state, "review");
    assert_eq!(s.state.seq, 2);
    // It goes on as on version 2.
    d.def = def(V2);
    d.state = s.state;
    let done = d.event("done", json!({})).unwrap();
    assert_eq!(done.state.status, Status::Completed);
}

#[test]
fn a_form_asks_again_from_its_first_empty_field() {
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({}));
    d.say("Ana");
    d.say("not an email");
    assert_eq!(
        d.state.form,
        Some(FormProgress {
            field: 1,
            attempts: 1,
            confirming: false
        })
    );
    let v2 = LEAD_INTAKE.replace("Your email?", "Your email address, please?");
    let now = T0 + 10 * MINUTE;
    let s = migrate(&def(&v2), &d.state, "collecting", now, &ctx()).unwrap();
    assert_eq!(sent(&s), ["Your email address, please?"]);
    assert_eq!(
        s.state.form,
        Some(FormProgress {
            field: 1,
            attempts: 0,
            confirming: false
        })
    );
    assert_eq!(s.state.fields["name"], "Ana");
    assert_eq!(
        timers(&s),
        [(0, now + 4 * HOUR, 1), (1, now + 24 * HOUR, 1)]
    );
    // The next message answers version 2's question.
    d.def = def(&v2);
    d.state = s.state;
    let s = d.say("ana@example.com");
    assert_eq!(sent(&s), ["Ana, ana@example.com: correct?"]);
}

#[test]
fn a_filled_form_completes_and_a_final_state_completes_the_instance() {
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({}));
    d.say("Ana");
    // Version 2 asks no confirmation: the filled form completes at once.
    let v2 = LEAD_INTAKE.replace(
        ", confirm: \"{{fields.name}}, {{fields.email}}: correct?\"",
        "",
    );
    let mut state = d.state.clone();
    state
        .fields
        .insert("email".into(), json!("ana@example.com"));
    let s = migrate(&def(&v2), &state, "collecting", T0, &ctx()).unwrap();
    assert_eq!(
        s.transitions,
        [Transition {
            from: "collecting".into(),
            to: "qualified".into(),
            event: "complete".into()
        }]
    );
    assert_eq!(s.state.state, "qualified");
    assert_eq!(s.state.seq, 2);
    assert_eq!(names(&s)[0], "workflow.instance.migrated");

    // Into a final state: completed, nothing armed.
    let s = migrate(&def(LEAD_INTAKE), &d.state, "abandoned", T0, &ctx()).unwrap();
    assert_eq!(s.state.status, Status::Completed);
    assert_eq!(
        names(&s),
        ["workflow.instance.migrated", "workflow.instance.completed"]
    );
    assert!(timers(&s).is_empty());
    assert_eq!(s.state.form, None);
}

#[test]
fn unknown_states_and_finished_instances_are_refused() {
    let mut d = on_v1();
    let v2 = def(V2);
    let e = migrate(&v2, &d.state, "expired", T0, &ctx()).unwrap_err();
    assert_eq!(
        e,
        StepError::UnknownState {
            state: "expired".into(),
            states: vec!["waiting".into(), "review".into(), "answered".into()],
        }
    );
    assert_eq!(
        e.to_string(),
        "state `expired` does not exist; states: waiting, review, answered"
    );
    let e = migrate(&v2, &InstanceState::default(), "waiting", T0, &ctx()).unwrap_err();
    assert_eq!(e, StepError::NotStarted);
    d.event("answer", json!({})).unwrap();
    let e = migrate(&v2, &d.state, "waiting", T0, &ctx()).unwrap_err();
    assert_eq!(e, StepError::Completed);
    d.state.status = Status::Cancelled;
    let e = migrate(&v2, &d.state, "waiting", T0, &ctx()).unwrap_err();
    assert_eq!(e, StepError::Cancelled);
}
