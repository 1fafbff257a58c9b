//! A circuit breaker per provider and account: after repeated failures it
//! opens and sends are postponed instead of hammering a provider that is down;
//! after a cool-down one trial call decides whether it closes again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is under way since `since`. A trial that never
    /// reports (its caller stopped early) must not hold the circuit forever:
    /// past a cool-down, another call may try.
    HalfOpen {
        since: Instant,
    },
}

pub struct CircuitBreakers {
    threshold: u32,
    cool_down: Duration,
    circuits: Mutex<HashMap<String, State>>,
}

/// May a call go ahead?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Go,
    /// Open: try again after this long.
    Wait(Duration),
}

impl CircuitBreakers {
    pub fn new(threshold: u32, cool_down: Duration) -> CircuitBreakers {
        CircuitBreakers {
            threshold: threshold.max(1),
            cool_down,
            circuits: Mutex::new(HashMap::new()),
        }
    }

    pub fn permit(&self, key: &str) -> Permit {
        let mut circuits = self.circuits.lock().expect("breaker lock");
        let state = circuits
            .entry(key.to_string())
            .or_insert(State::Closed { failures: 0 });
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Permit::Go,
            State::HalfOpen { since } if now < since + self.cool_down => {
                Permit::Wait(self.cool_down / 4)
            }
            State::Open { until } if now < until => Permit::Wait(until - now),
            State::HalfOpen { .. } | State::Open { .. } => {
                *state = State::HalfOpen { since: now };
                Permit::Go
            }
        }
    }

    pub fn success(&self, key: &str) {
        let mut circuits = self.circuits.lock().expect("breaker lock");
        if let Some(State::HalfOpen { .. } | State::Open { .. }) = circuits.get(key) {
            tracing::info!(circuit = key, "circuit closed");
            metrics::gauge!("integro_circuit_open", "circuit" => key.to_string()).set(0.0);
        }
        circuits.insert(key.to_string(), State::Closed { failures: 0 });
    }

    /// A failure that says the provider is unwell (5xx, 429, timeouts); a
    /// permanent error about one message does not count.
    pub fn failure(&self, key: &str) {
        let mut circuits = self.circuits.lock().expect("breaker lock");
        let state = circuits
            .entry(key.to_string())
            .or_insert(State::Closed { failures: 0 });
        let next = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: Instant::now() + self.cool_down,
            },
        };
        if matches!(next, State::Open { .. }) && !matches!(*state, State::Open { .. }) {
            tracing::warn!(
                circuit = key,
                cool_down_s = self.cool_down.as_secs_f64(),
                "circuit opened"
            );
            metrics::counter!("integro_circuit_opened_total", "circuit" => key.to_string())
                .increment(1);
            metrics::gauge!("integro_circuit_open", "circuit" => key.to_string()).set(1.0);
        }
        *state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_closes_after_a_good_trial() {
        let b = CircuitBreakers::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            b.failure("k");
            assert_eq!(b.permit("k"), Permit::Go);
        }
        b.failure("k");
        assert!(matches!(b.permit("k"), Permit::Wait(_)));
        assert_eq!(b.permit("other"), Permit::Go, "circuits are separate");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.permit("k"), Permit::Go, "one trial after the cool-down");
        assert!(
            matches!(b.permit("k"), Permit::Wait(_)),
            "only one trial at a time"
        );
        b.success("k");
        assert_eq!(b.permit("k"), Permit::Go);
    }

    #[test]
    fn a_failed_trial_opens_again() {
        let b = CircuitBreakers::new(1, Duration::from_millis(20));
        b.failure("k");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.permit("k"), Permit::Go);
        b.failure("k");
        assert!(matches!(b.permit("k"), Permit::Wait(_)));
    }

    #[test]
    fn a_trial_that_never_reports_does_not_hold_the_circuit() {
        let b = CircuitBreakers::new(1, Duration::from_millis(20));
        b.failure("k");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.permit("k"), Permit::Go, "the trial");
        assert!(matches!(b.permit("k"), Permit::Wait(_)));
        // Its caller stopped without a success or a failure.
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.permit("k"), Permit::Go, "another trial");
    }
}
