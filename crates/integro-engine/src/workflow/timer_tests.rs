//! Timers, SLAs and simulation: stale and repeated jobs, business-time
//! deadlines, pauses, and scripts on a virtual clock.

use super::tests::{Driver, HOUR, MINUTE, T0, ctx, def, names, sent, timers};
use super::validate::tests::{LEAD_INTAKE, SUPPORT_CASE};
use super::*;
use serde_json::{Map, json};

#[test]
fn sla_is_armed_on_entering_qualified_in_business_time() {
    let mut d = Driver::new(LEAD_INTAKE);
    // Friday 2026-03-06 16:00 Lisbon: 1.5 open hours left that day.
    d.now = T0 + 2 * 24 * HOUR + 6 * HOUR;
    d.start(json!({"name": "Ana", "email": "ana@example.com"}));
    let s = d.say("yes");
    let arm = s
        .effects
        .iter()
        .find(|e| matches!(e, Effect::ArmSla { .. }))
        .unwrap();
    let monday = T0 + 5 * 24 * HOUR;
    assert_eq!(
        arm,
        &Effect::ArmSla {
            // 3.5 business hours: 1.5 on Friday, 2 on Monday from 09:00.
            warn_at_ms: Some(monday + HOUR),
            breach_at_ms: monday + HOUR + HOUR / 2,
            seq: 1,
            calendar: Some("office".into()),
        }
    );
    assert_eq!(s.state.sla.as_ref().unwrap().started_at_ms, d.now);
    // The timers of `collecting` are not armed again; `qualified` has none.
    assert!(timers(&s).is_empty());

    // Too early (a superseded job): nothing.
    let sla = |kind, seq| Input::Sla {
        kind,
        armed_seq: seq,
    };
    d.now = monday - 2 * HOUR;
    assert!(d.input(sla(SlaKind::Warning, 1)).stale);
    d.now = monday + HOUR;
    let s = d.input(sla(SlaKind::Warning, 1));
    assert_eq!(names(&s), ["workflow.sla.warning"]);
    assert!(d.input(sla(SlaKind::Warning, 1)).stale);
    d.now = monday + HOUR + HOUR / 2;
    let s = d.input(sla(SlaKind::Breach, 1));
    assert_eq!(names(&s), ["workflow.sla.breached"]);
    assert_eq!(
        s.effects,
        [Effect::Alert {
            state: "qualified".into()
        }]
    );
    assert_eq!(
        s.events[0].payload["breach_at_ms"],
        monday + HOUR + HOUR / 2
    );
    // Breaches once, however often the job runs.
    assert!(d.input(sla(SlaKind::Breach, 1)).stale);
    assert!(d.input(sla(SlaKind::Breach, 0)).stale);

    // The calendar must exist.
    let mut d = Driver::new(LEAD_INTAKE);
    d.ctx.calendars.clear();
    d.start(json!({"name": "Ana", "email": "ana@example.com"}));
    assert_eq!(
        d.try_input(Input::Message { text: "yes".into() }),
        Err(StepError::UnknownCalendar {
            name: "office".into()
        })
    );
    assert_eq!(d.state.state, "collecting");
}

#[test]
fn stale_and_repeated_timers_are_ignored() {
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({}));
    d.now += 4 * HOUR;
    let s = d.input(Input::Timer {
        index: 0,
        armed_seq: 0,
    });
    assert_eq!(names(&s), ["workflow.timer.fired"]);
    assert_eq!(sent(&s), ["Still there?"]);
    assert_eq!(s.state.seq, 0);
    // The same job again, or one for a timer that does not exist.
    for input in [
        Input::Timer {
            index: 0,
            armed_seq: 0,
        },
        Input::Timer {
            index: 7,
            armed_seq: 0,
        },
    ] {
        let s = d.input(input);
        assert!(s.stale);
        assert_eq!(s.state, d.state);
    }
    // The form moves on: timers armed at seq 0 are stale.
    d.start_form_answers();
    assert_eq!(d.state.seq, 1);
    let s = d.input(Input::Timer {
        index: 1,
        armed_seq: 0,
    });
    assert!(s.stale && s.effects.is_empty() && s.events.is_empty());
    assert_eq!(s.state.state, "qualified");
}

impl Driver {
    fn start_form_answers(&mut self) {
        self.say("Ana");
        self.say("ana@example.com");
        self.say("yes");
    }
}

#[test]
fn a_timer_goes_to_a_state() {
    let mut d = Driver::new(LEAD_INTAKE);
    d.start(json!({}));
    d.now += 24 * HOUR;
    let s = d.input(Input::Timer {
        index: 1,
        armed_seq: 0,
    });
    assert_eq!(s.transitions[0].event, "timer");
    assert_eq!(s.state.state, "abandoned");
    assert_eq!(s.state.status, Status::Completed);
    assert!(
        d.input(Input::Timer {
            index: 0,
            armed_seq: 0
        })
        .stale
    );
}

#[test]
fn support_case_sla_pauses_while_waiting_for_the_customer() {
    let mut d = Driver::new(SUPPORT_CASE);
    let s = d.start(json!({}));
    assert_eq!(sent(&s), ["Sorry to hear that. What happened?"]);
    d.say("The parcel arrived broken.");
    let s = d.say("a-1");
    assert_eq!(
        sent(&s),
        ["Order numbers look like A-12345: could you check it?"]
    );
    let s = d.say("A-12345");
    assert_eq!(
        sent(&s),
        ["How urgent is it?\n1. low\n2. normal\n3. urgent"]
    );
    let s = d.say("2");
    assert_eq!(s.state.state, "triage");
    assert_eq!(
        sent(&s),
        ["Thanks Ana. Your case is open: an agent will pick it up during office hours."]
    );
    assert_eq!(s.state.vars["waiting_on"], "agent");
    assert!(s.effects.iter().any(|e| matches!(
        e,
        Effect::Assign {
            assignee: Assignee::Role {
                strategy: Strategy::LeastBusy,
                ..
            }
        }
    )));

    let s = d.event("start", json!({})).unwrap();
    let breach = |s: &Step| {
        s.effects.iter().find_map(|e| match e {
            Effect::ArmSla { breach_at_ms, .. } => Some(*breach_at_ms),
            _ => None,
        })
    };
    // Wednesday 10:00 + 8 business hours = Thursday 09:30.
    let thursday_0930 = T0 + 23 * HOUR + 30 * MINUTE;
    assert_eq!(breach(&s), Some(thursday_0930));
    let seq = s.state.seq;

    d.now += HOUR;
    let s = d
        .event(
            "ask_customer",
            json!({"question": "Could you send a photo?"}),
        )
        .unwrap();
    assert_eq!(sent(&s), ["Could you send a photo?"]);
    assert_eq!(s.state.state, "in_progress");
    assert_eq!(
        s.state.seq,
        seq + 1,
        "a transition to the same state moves seq"
    );
    assert_eq!(s.state.sla.as_ref().unwrap().paused_since_ms, Some(d.now));
    assert_eq!(breach(&s), None, "paused: nothing armed");
    // A check armed before the pause does nothing.
    d.now = thursday_0930;
    assert!(
        d.input(Input::Sla {
            kind: SlaKind::Breach,
            armed_seq: seq
        })
        .stale
    );

    // The customer answers on Thursday at 09:30: paused for 6.5 business
    // hours on Wednesday and 0.5 on Thursday.
    let s = d.event("customer_replied", json!({})).unwrap();
    assert_eq!(s.state.sla.as_ref().unwrap().paused_ms, 7 * HOUR);
    assert_eq!(breach(&s), Some(thursday_0930 + 7 * HOUR));
    let resolved = d.event("resolve", json!({"resolution": "A new one is on its way."}));
    let s = resolved.unwrap();
    assert_eq!(s.state.status, Status::Completed);
    assert_eq!(sent(&s), ["Your case is solved: A new one is on its way."]);
    assert!(matches!(
        &s.effects[1],
        Effect::Webhook { secret_ref: Some(r), .. } if r == "helpdesk_hook"
    ));
}

#[test]
fn timer_events_follow_the_state_transitions() {
    let text = "key: t\ntriggers: { api: true }\nstates:\n  a:\n    timers: [{ after: PT1H, event: late }, { after: PT2H, event: later }]\n    on:\n      late: { to: b, when: \"vars.ok == 'yes'\" }\n      later: b\n  b: { final: true }\n";
    let mut d = Driver::new(text);
    d.start(json!({}));
    let s = d.input(Input::Timer {
        index: 0,
        armed_seq: 0,
    });
    assert_eq!(names(&s), ["workflow.timer.fired"]);
    assert_eq!(
        s.state.state, "a",
        "the guard is false: the timer only fires"
    );
    let s = d.input(Input::Timer {
        index: 1,
        armed_seq: 0,
    });
    assert_eq!(s.state.state, "b");
    assert_eq!(s.transitions[0].event, "later");
}

#[test]
fn simulate_runs_timers_on_a_virtual_clock() {
    let d = def(LEAD_INTAKE);
    let script = [
        ScriptItem {
            at_ms: T0,
            input: Input::Start { data: Map::new() },
        },
        ScriptItem {
            at_ms: T0 + MINUTE,
            input: Input::Message { text: "Ana".into() },
        },
        ScriptItem {
            at_ms: T0 + 5 * HOUR,
            input: Input::Event {
                name: "nope".into(),
                data: Map::new(),
            },
        },
    ];
    let steps = simulate(&d, &ctx(), &script, Some(T0 + 48 * HOUR));
    let timeline: Vec<(i64, &str)> = steps
        .iter()
        .map(|s| {
            let what = match &s.input {
                Input::Start { .. } => "start",
                Input::Message { .. } => "message",
                Input::Timer { .. } => "timer",
                Input::Event { .. } => "event",
                _ => "other",
            };
            (s.at_ms - T0, what)
        })
        .collect();
    assert_eq!(
        timeline,
        [
            (0, "start"),
            (MINUTE, "message"),
            (4 * HOUR, "timer"),
            (5 * HOUR, "event"),
            (24 * HOUR, "timer"),
        ]
    );
    assert_eq!(sent(steps[2].step.as_ref().unwrap()), ["Still there?"]);
    assert!(
        steps[3]
            .error
            .as_deref()
            .unwrap()
            .contains("no transition for event `nope`")
    );
    let last = steps[4].step.as_ref().unwrap();
    assert_eq!(last.state.state, "abandoned");

    // SLA checks fire in business time, once each.
    let script = [
        ScriptItem {
            at_ms: T0,
            input: Input::Start {
                data: json!({"name": "Ana", "email": "a@example.com"})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
        },
        ScriptItem {
            at_ms: T0,
            input: Input::Message { text: "yes".into() },
        },
    ];
    let steps = simulate(&d, &ctx(), &script, Some(T0 + 7 * 24 * HOUR));
    let events: Vec<(i64, &str)> = steps
        .iter()
        .flat_map(|s| {
            s.step
                .iter()
                .flat_map(|st| st.events.iter().map(|e| (s.at_ms - T0, e.name.as_str())))
        })
        .filter(|(_, n)| n.starts_with("workflow.sla"))
        .collect();
    assert_eq!(
        events,
        [
            (3 * HOUR + 30 * MINUTE, "workflow.sla.warning"),
            (4 * HOUR, "workflow.sla.breached")
        ]
    );
}

/// A state left after its SLA's deadline, whose checks had not run yet (a
/// worker down, a busy queue), records the warning and the breach first:
/// the breach is not lost because the timer's job ran before the SLA's.
#[test]
fn an_overdue_sla_is_breached_when_its_state_is_left() {
    let mut d = Driver::new(
        r#"
key: case
triggers: { api: true }
initial: waiting
states:
  waiting:
    sla: { within: PT2S, warn_before: PT1S }
    timers: [{ after: PT3S, goto: expired }]
  expired: { final: true }
"#,
    );
    d.start(json!({}));
    d.now += 3_000;
    let s = d.input(Input::Timer {
        index: 0,
        armed_seq: 0,
    });
    assert_eq!(
        names(&s),
        [
            "workflow.timer.fired",
            "workflow.sla.warning",
            "workflow.sla.breached",
            "workflow.instance.transitioned",
            "workflow.instance.completed"
        ]
    );
    // The late checks then find nothing to do.
    for kind in [SlaKind::Warning, SlaKind::Breach] {
        assert!(d.input(Input::Sla { kind, armed_seq: 0 }).stale);
    }
}

/// A breach check that runs before a late warning check says the warning
/// first, once.
#[test]
fn a_breach_found_before_its_warning_says_the_warning_first() {
    let mut d = Driver::new(
        r#"
key: case
triggers: { api: true }
states:
  waiting:
    sla: { within: PT2S, warn_before: PT1S }
    on: { close: closed }
  closed: { final: true }
"#,
    );
    d.start(json!({}));
    d.now += 2_500;
    let s = d.input(Input::Sla {
        kind: SlaKind::Breach,
        armed_seq: 0,
    });
    assert_eq!(names(&s), ["workflow.sla.warning", "workflow.sla.breached"]);
    assert!(
        d.input(Input::Sla {
            kind: SlaKind::Warning,
            armed_seq: 0
        })
        .stale
    );
}
