//! Running a script of inputs on a virtual clock, for `/simulate`.
//!
//! Nothing is stored or sent: the timers and SLA checks each step arms are
//! kept in a list and fired, in due order, when the clock passes them
//! between script items, exactly as the job queue would fire them.

use super::definition::Definition;
use super::instance::{Effect, Input, InstanceState, SlaKind, Step, StepContext};
use super::machine::step;
use serde::{Deserialize, Serialize};

/// Most steps one simulation runs (a timer that re-arms itself forever
/// stops here).
pub const MAX_SIMULATED_STEPS: usize = 1000;

/// An input at a time on the virtual clock (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptItem {
    pub at_ms: i64,
    pub input: Input,
}

/// One step of a simulation: a script item or a timer / SLA check that
/// came due, with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatedStep {
    pub at_ms: i64,
    pub input: Input,
    /// `None` when the input was refused.
    pub step: Option<Step>,
    pub error: Option<String>,
}

/// Runs `script` from a blank instance (the first item is normally
/// [`Input::Start`]). Items are taken in order; one dated before the clock
/// runs at the clock's time. Due timers and SLA checks fire before each
/// item and, after the last, up to `until_ms` (if later). Stale jobs are
/// left out, as the caller would drop them.
pub fn simulate(
    def: &Definition,
    ctx: &StepContext,
    script: &[ScriptItem],
    until_ms: Option<i64>,
) -> Vec<SimulatedStep> {
    let mut sim = Simulation {
        def,
        ctx,
        state: InstanceState::default(),
        clock: i64::MIN,
        pending: Vec::new(),
        armed: 0,
        out: Vec::new(),
    };
    for item in script {
        sim.fire_due(item.at_ms);
        let at = item.at_ms.max(sim.clock);
        sim.run(at, item.input.clone());
    }
    if let Some(until) = until_ms {
        sim.fire_due(until);
    }
    sim.out
}

struct Simulation<'a> {
    def: &'a Definition,
    ctx: &'a StepContext,
    state: InstanceState,
    clock: i64,
    /// Armed jobs: due time, arming order (ties fire in arming order), input.
    pending: Vec<(i64, u64, Input)>,
    armed: u64,
    out: Vec<SimulatedStep>,
}

impl Simulation<'_> {
    fn fire_due(&mut self, until: i64) {
        while self.out.len() < MAX_SIMULATED_STEPS {
            let next = self
                .pending
                .iter()
                .enumerate()
                .filter(|(_, (due, _, _))| *due <= until)
                .min_by_key(|(_, (due, order, _))| (*due, *order))
                .map(|(i, _)| i);
            let Some(i) = next else {
                return;
            };
            let (due, _, input) = self.pending.swap_remove(i);
            self.run(due.max(self.clock), input);
        }
    }

    fn run(&mut self, at: i64, input: Input) {
        if self.out.len() >= MAX_SIMULATED_STEPS {
            return;
        }
        self.clock = at;
        match step(self.def, &self.state, &input, at, self.ctx) {
            Ok(s) if s.stale => {}
            Ok(s) => {
                for effect in &s.effects {
                    self.arm(effect);
                }
                self.state = s.state.clone();
                self.out.push(SimulatedStep {
                    at_ms: at,
                    input,
                    step: Some(s),
                    error: None,
                });
            }
            Err(e) => self.out.push(SimulatedStep {
                at_ms: at,
                input,
                step: None,
                error: Some(e.to_string()),
            }),
        }
    }

    fn arm(&mut self, effect: &Effect) {
        let mut push = |due: i64, input: Input| {
            self.armed += 1;
            self.pending.push((due, self.armed, input));
        };
        match effect {
            Effect::ArmTimer {
                index,
                due_at_ms,
                seq,
            } => push(
                *due_at_ms,
                Input::Timer {
                    index: *index,
                    armed_seq: *seq,
                },
            ),
            Effect::ArmSla {
                warn_at_ms,
                breach_at_ms,
                seq,
                ..
            } => {
                if let Some(warn) = warn_at_ms {
                    push(
                        *warn,
                        Input::Sla {
                            kind: SlaKind::Warning,
                            armed_seq: *seq,
                        },
                    );
                }
                push(
                    *breach_at_ms,
                    Input::Sla {
                        kind: SlaKind::Breach,
                        armed_seq: *seq,
                    },
                );
            }
            _ => {}
        }
    }
}
