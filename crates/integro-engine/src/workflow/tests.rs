//! The state machine through the documented examples: the lead form
//! (re-ask, give up, confirm, complete), events with requirements and
//! guards, triggers, and inputs an unvalidated definition could crash on.
//! Shared helpers for `timer_tests` live here.

use super::validate::tests::{APPOINTMENT, LEAD_INTAKE, SUPPORT_CASE};
use super::*;
use crate::template::Vars;
use serde_json::{Map, Value, json};

pub(super) const MINUTE: i64 = 60_000;
pub(super) const HOUR: i64 = 60 * MINUTE;
/// Wednesday 2026-03-04 10:00 in Lisbon (UTC+0 in March).
pub(super) const T0: i64 = 1_772_618_400_000;

pub(super) fn def(text: &str) -> Definition {
    Definition::load_yaml(text).unwrap_or_else(|p| panic!("{p:#?}"))
}

pub(super) fn office() -> BusinessCalendar {
    let day = || {
        vec![Interval {
            start: "09:00".into(),
            end: "17:30".into(),
        }]
    };
    BusinessCalendar {
        time_zone: "Europe/Lisbon".into(),
        weekly: Weekly {
            monday: day(),
            tuesday: day(),
            wednesday: day(),
            thursday: day(),
            friday: day(),
            ..Weekly::default()
        },
        holidays: vec![],
    }
}

pub(super) fn ctx() -> StepContext {
    let mut ctx = StepContext::default();
    ctx.vars.set("contact.name", "Ana");
    ctx.calendars.insert("office".into(), office());
    ctx.calendars.insert("support_hours".into(), office());
    ctx
}

/// Drives one instance and keeps the latest step.
pub(super) struct Driver {
    pub(super) def: Definition,
    pub(super) ctx: StepContext,
    pub(super) state: InstanceState,
    pub(super) now: i64,
}

impl Driver {
    pub(super) fn new(text: &str) -> Driver {
        Driver {
            def: def(text),
            ctx: ctx(),
            state: InstanceState::default(),
            now: T0,
        }
    }

    pub(super) fn try_input(&mut self, input: Input) -> Result<Step, StepError> {
        let step = step(&self.def, &self.state, &input, self.now, &self.ctx)?;
        self.state = step.state.clone();
        Ok(step)
    }

    pub(super) fn input(&mut self, input: Input) -> Step {
        self.try_input(input).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) fn start(&mut self, data: Value) -> Step {
        let Value::Object(data) = data else { panic!() };
        self.input(Input::Start { data })
    }

    pub(super) fn say(&mut self, text: &str) -> Step {
        self.input(Input::Message { text: text.into() })
    }

    pub(super) fn event(&mut self, name: &str, data: Value) -> Result<Step, StepError> {
        let Value::Object(data) = data else { panic!() };
        self.try_input(Input::Event {
            name: name.into(),
            data,
        })
    }
}

pub(super) fn sent(step: &Step) -> Vec<&str> {
    step.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

pub(super) fn names(step: &Step) -> Vec<&'static str> {
    step.events.iter().map(|e| e.name.as_str()).collect()
}

pub(super) fn timers(step: &Step) -> Vec<(usize, i64, i64)> {
    step.effects
        .iter()
        .filter_map(|e| match e {
            Effect::ArmTimer {
                index,
                due_at_ms,
                seq,
            } => Some((*index, *due_at_ms, *seq)),
            _ => None,
        })
        .collect()
}

#[test]
fn lead_intake_reasks_confirms_and_completes() {
    let mut d = Driver::new(LEAD_INTAKE);
    let s = d.start(json!({}));
    assert_eq!(names(&s), ["workflow.instance.created"]);
    assert_eq!(sent(&s), ["What's your name?"]);
    assert_eq!(timers(&s), [(0, T0 + 4 * HOUR, 0), (1, T0 + 24 * HOUR, 0)]);
    assert_eq!(s.state.state, "collecting");
    assert_eq!(s.state.seq, 0);

    let s = d.say("A");
    assert!(s.consumed);
    assert_eq!(names(&s), ["workflow.field.rejected"]);
    assert_eq!(
        s.events[0].payload["reason"],
        "must be at least 2 characters"
    );
    assert_eq!(sent(&s), ["What's your name?"]);
    let s = d.say("  Ana  ");
    assert_eq!(names(&s), ["workflow.field.set"]);
    assert_eq!(s.events[0].payload["value"], "Ana");
    assert_eq!(sent(&s), ["Your email?"]);

    let s = d.say("ana at example");
    assert_eq!(names(&s), ["workflow.field.rejected"]);
    assert_eq!(s.events[0].payload["attempts"], 1);
    assert_eq!(sent(&s), ["That email doesn't look right, try again?"]);
    assert_eq!(s.state.form.as_ref().unwrap().attempts, 1);

    let s = d.say("ana@example.com");
    assert_eq!(sent(&s), ["Ana, ana@example.com: correct?"]);
    assert!(s.state.form.as_ref().unwrap().confirming);
    assert!(s.transitions.is_empty());

    let s = d.say("maybe");
    assert_eq!(sent(&s), ["Ana, ana@example.com: correct?"]);

    d.now += 10 * MINUTE;
    let s = d.say("Yes");
    assert!(s.consumed);
    assert_eq!(
        s.transitions,
        [Transition {
            from: "collecting".into(),
            to: "qualified".into(),
            event: "complete".into()
        }]
    );
    assert_eq!(s.state.seq, 1);
    assert_eq!(s.state.form, None);
    assert_eq!(
        names(&s),
        [
            "workflow.instance.transitioned",
            "workflow.instance.assigned"
        ]
    );
    assert!(matches!(
        &s.effects[0],
        Effect::Assign {
            assignee: Assignee::Role {
                role: Role::Agent,
                strategy: Strategy::RoundRobin
            }
        }
    ));
    let Effect::Webhook {
        url,
        payload,
        event,
        ..
    } = &s.effects[1]
    else {
        panic!("{:?}", s.effects)
    };
    assert_eq!(url, "https://crm.example.com/leads");
    assert_eq!(event, "enter");
    assert_eq!(
        payload["fields"],
        json!({"name": "Ana", "email": "ana@example.com"})
    );

    // A message with no form waiting is not the workflow's.
    let s = d.say("thanks!");
    assert!(!s.consumed);
    assert!(s.effects.is_empty() && s.events.is_empty());

    let s = d.event("accept", json!({})).unwrap();
    assert_eq!(s.state.state, "won");
    assert_eq!(s.state.status, Status::Completed);
    assert_eq!(
        names(&s),
        [
            "workflow.instance.transitioned",
            "workflow.instance.completed"
        ]
    );
    assert_eq!(d.event("accept", json!({})), Err(StepError::Completed));
}

#[test]
fn giving_up_hands_off_and_cancels() {
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({"name": "Ana"}));
    d.say("nope");
    d.say("still nope");
    let s = d.say("no@");
    assert_eq!(
        names(&s),
        ["workflow.field.rejected", "workflow.instance.cancelled"]
    );
    assert_eq!(
        s.effects,
        [Effect::Handoff {
            reason: Some("the form gave up at `email`".into())
        }]
    );
    assert_eq!(s.state.status, Status::Cancelled);
    assert_eq!(s.events[1].payload["reason"], "gave_up");
    assert_eq!(s.state.seq, 1);
    assert!(!d.say("ana@example.com").consumed);
    assert_eq!(d.event("accept", json!({})), Err(StepError::Cancelled));
}

#[test]
fn giving_up_to_a_state() {
    let text = LEAD_INTAKE.replace("on_give_up: handoff", "on_give_up: abandoned");
    let mut d = Driver::new(&text);
    d.start(json!({"name": "Ana"}));
    d.say("x");
    d.say("y");
    let s = d.say("z");
    assert_eq!(s.transitions[0].event, "give_up");
    assert_eq!(s.state.state, "abandoned");
    assert_eq!(s.state.status, Status::Completed);
}

#[test]
fn saying_no_at_the_confirmation_asks_again() {
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({}));
    d.say("Ana");
    d.say("ana@example.com");
    let s = d.say("no");
    assert_eq!(sent(&s), ["What's your name?"]);
    assert!(s.state.fields.is_empty());
    d.say("Bea");
    let s = d.say("bea@example.com");
    assert_eq!(sent(&s), ["Bea, bea@example.com: correct?"]);
    // Three answers that are neither yes nor no give up.
    d.say("hmm");
    d.say("what");
    let s = d.say("?");
    assert_eq!(s.state.status, Status::Cancelled);
}

#[test]
fn cancel_words_cancel_a_waiting_form() {
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({}));
    let s = d.say("  STOP! ");
    assert!(s.consumed);
    assert_eq!(names(&s), ["workflow.instance.cancelled"]);
    assert_eq!(s.events[0].payload["reason"], "cancel_word");
    let mut d = Driver::new(APPOINTMENT);
    d.start(json!({}));
    assert_eq!(d.say("Never  mind").state.status, Status::Cancelled);
    // Through the API.
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({}));
    let s = d.input(Input::Cancel { reason: None });
    assert_eq!(s.events[0].payload["reason"], "cancelled");
    assert_eq!(
        d.try_input(Input::Cancel { reason: None }),
        Err(StepError::Cancelled)
    );
}

#[test]
fn start_data_fills_fields_and_vars() {
    let mut d = Driver::new(LEAD_INTAKE);
    let s = d.start(json!({"email": " ana@Example.com ", "source": "web"}));
    assert_eq!(
        s.state.fields,
        *json!({"email": "ana@example.com"}).as_object().unwrap()
    );
    assert_eq!(s.state.vars["source"], "web");
    assert_eq!(
        names(&s),
        ["workflow.instance.created", "workflow.field.set"]
    );
    assert_eq!(sent(&s), ["What's your name?"]);
    let s = d.say("Ana");
    assert_eq!(sent(&s), ["Ana, ana@example.com: correct?"]);

    let mut d = Driver::new(LEAD_INTAKE);
    let Value::Object(data) = json!({"email": "nope"}) else {
        panic!()
    };
    assert_eq!(
        d.try_input(Input::Start { data }),
        Err(StepError::InvalidData {
            field: "email".into(),
            reason: "must be an email address, such as name@example.com".into()
        })
    );
    d.start(json!({}));
    assert_eq!(
        d.try_input(Input::Start { data: Map::new() }),
        Err(StepError::AlreadyStarted)
    );
    let fresh = InstanceState::default();
    assert_eq!(
        step(
            &d.def,
            &fresh,
            &Input::Message { text: "hi".into() },
            T0,
            &d.ctx
        ),
        Err(StepError::NotStarted)
    );
}

#[test]
fn a_filled_form_without_confirmation_completes_at_once() {
    let text = LEAD_INTAKE.replace(
        ", confirm: \"{{fields.name}}, {{fields.email}}: correct?\"",
        "",
    );
    let mut d = Driver::new(&text);
    let s = d.start(json!({"name": "Ana", "email": "ana@example.com"}));
    assert_eq!(s.state.state, "qualified");
    assert_eq!(s.state.seq, 1);
    assert_eq!(s.transitions.len(), 1);
    assert!(sent(&s).is_empty());
    // Only the final state's SLA is armed; collecting's timers are not.
    assert!(timers(&s).is_empty());
    assert_eq!(
        s.effects
            .iter()
            .filter(|e| matches!(e, Effect::ArmSla { seq: 1, .. }))
            .count(),
        1
    );
}

#[test]
fn transition_loops_stop() {
    let text = "key: l\ntriggers: { api: true }\nfields:\n  n: { type: string, ask: N? }\nstates:\n  a: { form: { fields: [n] }, on: { complete: b } }\n  b: { form: { fields: [n] }, on: { complete: a } }\n";
    let d = def(text);
    let Value::Object(data) = json!({"n": "x"}) else {
        panic!()
    };
    assert_eq!(
        start(&d, data, T0, &ctx()),
        Err(StepError::TooManyTransitions { limit: 20 })
    );
}

#[test]
fn events_check_requirements_and_guards() {
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({"name": "Ana", "email": "ana@example.com"}));
    d.say("yes");
    let err = d.event("reject", json!({})).unwrap_err();
    assert_eq!(
        err,
        StepError::MissingRequired {
            event: "reject".into(),
            missing: vec!["reason".into()]
        }
    );
    assert_eq!(err.to_string(), "event `reject` requires reason");
    assert!(d.event("reject", json!({"reason": "  "})).is_err());
    let err = d.event("archive", json!({})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "state `qualified` has no transition for event `archive`; allowed: accept, reject"
    );
    assert_eq!(
        d.event("reject", json!({"email": "bad"})),
        Err(StepError::InvalidData {
            field: "email".into(),
            reason: "must be an email address, such as name@example.com".into()
        })
    );
    assert_eq!(d.state.state, "qualified");
    let s = d
        .event("reject", json!({"reason": "too expensive", "note": "x"}))
        .unwrap();
    assert_eq!(s.state.state, "lost");
    assert_eq!(s.state.fields["reason"], "too expensive");
    assert!(!s.state.fields.contains_key("note"));
    assert_eq!(names(&s)[0], "workflow.field.set");

    let mut d = Driver::new(SUPPORT_CASE);
    d.start(json!({"summary": "The parcel arrived broken.", "order_number": "A-12345", "priority": "normal"}));
    assert_eq!(d.state.state, "triage");
    assert_eq!(
        d.event("escalate", json!({})),
        Err(StepError::GuardFailed {
            event: "escalate".into(),
            condition: "fields.priority == 'urgent'".into()
        })
    );
    let s = d.event("escalate", json!({"priority": "3"})).unwrap();
    assert_eq!(s.state.state, "escalated");
    assert_eq!(s.state.fields["priority"], "urgent");
}

#[test]
fn appointment_booking_flow() {
    let mut d = Driver::new(APPOINTMENT);
    let s = d.start(json!({}));
    assert_eq!(
        sent(&s),
        ["Which service would you like?\n1. Haircut\n2. Colour\n3. Manicure"]
    );
    d.say("colour");
    let s = d.say("24/12/2026");
    assert_eq!(
        sent(&s),
        ["Please write the day as YYYY-MM-DD, for example 2026-12-24."]
    );
    d.say("2026-12-24");
    let s = d.say("9");
    assert_eq!(s.events[0].payload["reason"], "must be at most 6");
    d.say("2");
    d.say("+351 912 345 678");
    let s = d.say("skip");
    assert_eq!(s.state.fields["notes"], Value::Null);
    assert_eq!(
        sent(&s),
        ["Colour for 2 on 2026-12-24. Shall I request it?"]
    );
    let s = d.say("sim");
    assert_eq!(s.state.state, "requested");
    assert_eq!(s.state.fields["phone"], "+351912345678");
    let s = d.event("confirmed", json!({"time": "15:30"})).unwrap();
    assert_eq!(
        sent(&s),
        ["Booked: Colour on 2026-12-24 at 15:30. See you then!"]
    );
    assert_eq!(s.state.status, Status::Completed);
    // A bad time is refused by the field's pattern.
    let mut d = Driver::new(APPOINTMENT);
    d.start(json!({"service": "Haircut", "date": "2026-12-24", "party_size": 1, "phone": "+15550109999", "notes": null}));
    d.say("yes");
    assert!(matches!(
        d.event("confirmed", json!({"time": "3pm"})),
        Err(StepError::InvalidData { .. })
    ));
    let s = d.event("unavailable", json!({})).unwrap();
    assert_eq!(
        s.effects.last(),
        Some(&Effect::Handoff {
            reason: Some("no availability on the requested day".into())
        })
    );
}

#[test]
fn store_and_ask_llm() {
    let text = "key: s\ntriggers: { api: true }\nstates:\n  a:\n    enter: [{ ask_llm: { prompt: \"Summarise for {{contact.name}}\", store_as: summary } }]\n    on: { next: b }\n  b:\n    final: true\n    enter: [{ send: \"{{vars.summary}}\" }]\n";
    let mut d = Driver::new(text);
    let s = d.start(json!({}));
    assert_eq!(
        s.effects,
        [Effect::AskLlm {
            prompt: "Summarise for Ana".into(),
            store_as: "summary".into()
        }]
    );
    d.input(Input::Store {
        var: "summary".into(),
        value: json!("All good."),
    });
    let s = d.event("next", json!({})).unwrap();
    assert_eq!(sent(&s), ["All good."]);
    assert!(
        d.try_input(Input::Store {
            var: "Bad".into(),
            value: json!(1)
        })
        .is_err()
    );
}

#[test]
fn conversation_triggers() {
    let d = def(LEAD_INTAKE);
    let mut vars = Vars::new();
    vars.set("contact.name", "Ana");
    assert!(triggered_by(&d, "What's the PRICE?", &vars));
    assert!(triggered_by(&d, "a quote, please", &vars));
    assert!(!triggered_by(&d, "priceless", &vars));
    assert!(!triggered_by(&d, "hello", &vars));
    vars.set("vars.lead_id", "L-1");
    assert!(!triggered_by(&d, "price", &vars));
    let support = def(SUPPORT_CASE);
    assert!(triggered_by(&support, "It is NOT   working!", &Vars::new()));
    let api_only = def("key: a\ntriggers: { api: true }\nstates: { s: { final: true } }\n");
    assert!(!triggered_by(&api_only, "anything", &Vars::new()));
}

#[test]
fn unvalidated_definitions_fail_without_panicking() {
    let d = Definition::parse_yaml(
        "key: x\nstates:\n  a: { on: { go: nowhere, loop: a }, timers: [{ after: soon, goto: a }], sla: { within: never, calendar: c } }\n",
    )
    .unwrap();
    assert!(matches!(
        start(&d, Map::new(), T0, &ctx()),
        Err(StepError::Definition { path, .. }) if path == "states.a.timers[0].after"
    ));
    let state = InstanceState {
        state: "a".into(),
        ..InstanceState::default()
    };
    let go = Input::Event {
        name: "go".into(),
        data: Map::new(),
    };
    assert!(matches!(
        step(&d, &state, &go, T0, &ctx()),
        Err(StepError::Definition { .. })
    ));
    let ghost = InstanceState {
        state: "ghost".into(),
        ..InstanceState::default()
    };
    for input in [
        go,
        Input::Message { text: "hi".into() },
        Input::Timer {
            index: 0,
            armed_seq: 0,
        },
        Input::Sla {
            kind: SlaKind::Breach,
            armed_seq: 0,
        },
    ] {
        let _ = step(&d, &ghost, &input, T0, &ctx());
    }
}

#[test]
fn random_messages_never_panic() {
    let d = def(APPOINTMENT);
    let words = [
        "",
        " ",
        "yes",
        "no",
        "2",
        "0",
        "-",
        "skip",
        "Haircut",
        "2026-02-30",
        "2026-12-24",
        "+351 912 345 678",
        "7",
        "{{fields.date}}",
        "cancel",
        "\u{0}",
        "ção",
        "999999999999999999999",
    ];
    let mut seed: u64 = 7;
    for _ in 0..200 {
        let mut state = start(&d, Map::new(), T0, &ctx()).unwrap().state;
        for _ in 0..12 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let text = words[(seed >> 33) as usize % words.len()];
            match step(
                &d,
                &state,
                &Input::Message { text: text.into() },
                T0,
                &ctx(),
            ) {
                Ok(s) => state = s.state,
                Err(e) => panic!("{text:?}: {e}"),
            }
        }
    }
}

#[test]
fn state_and_steps_serialise() {
    let mut d = Driver::new(LEAD_INTAKE);
    let s = d.start(json!({}));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["events"][0]["name"], "workflow.instance.created");
    assert_eq!(json["effects"][0]["type"], "send");
    let back: Step = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
    let input: Input =
        serde_json::from_value(json!({"type": "timer", "index": 1, "armed_seq": 3})).unwrap();
    assert_eq!(
        input,
        Input::Timer {
            index: 1,
            armed_seq: 3
        }
    );
}
