//! The circuit breaker in front of each sink.
//!
//! failsafe's state machine decides when to open (consecutive failures) and for how long
//! (exponential, doubling from the configured period up to a minute). Two things are
//! added here:
//!
//! - **Bounded probes.** failsafe lets every call through once it is half-open; a sink
//!   that just came back would take the whole backlog at once. [`Breaker::permit`] lets at
//!   most `probes` calls through while half-open and answers "wait" to the rest.
//! - **The state is observable** ([`Breaker::state`]) so the worker stops pulling while
//!   the breaker is open, and metrics can show it.
//!
//! A call's outcome must be reported with [`Permit::success`] or [`Permit::failure`];
//! dropping a permit without reporting (the call was cancelled) records nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use failsafe::backoff::{self, Exponential};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::{Instrument, StateMachine};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Records failsafe's transitions.
#[derive(Clone, Default)]
struct Observer {
    state: Arc<AtomicU8>,
    transitions: Arc<AtomicU64>,
}

impl Observer {
    fn set(&self, state: BreakerState) {
        let previous = self.state.swap(state as u8, Ordering::SeqCst);
        if previous != state as u8 {
            self.transitions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Instrument for Observer {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        self.set(BreakerState::Open);
    }
    fn on_half_open(&self) {
        self.set(BreakerState::HalfOpen);
    }
    fn on_closed(&self) {
        self.set(BreakerState::Closed);
    }
}

type Machine = StateMachine<ConsecutiveFailures<Exponential>, Observer>;

#[derive(Clone)]
pub struct Breaker {
    machine: Machine,
    observer: Observer,
    probes_in_flight: Arc<AtomicUsize>,
    probe_limit: usize,
}

/// Leave to call the sink once.
pub struct Permit {
    breaker: Breaker,
    probe: bool,
}

impl Breaker {
    /// `open_for` is the first open period (failsafe counts it in whole seconds, at
    /// least one); each reopening doubles it, up to a minute.
    pub fn new(failures: u32, open_for: Duration, probe_limit: usize) -> Breaker {
        let open_for = open_for.max(Duration::from_secs(1));
        let policy = failure_policy::consecutive_failures(
            failures,
            backoff::exponential(open_for, open_for.max(Duration::from_secs(60))),
        );
        let observer = Observer::default();
        Breaker {
            machine: StateMachine::new(policy, observer.clone()),
            observer,
            probes_in_flight: Arc::new(AtomicUsize::new(0)),
            probe_limit: probe_limit.max(1),
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.observer.state.load(Ordering::SeqCst) {
            s if s == BreakerState::Open as u8 => BreakerState::Open,
            s if s == BreakerState::HalfOpen as u8 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// How many times the state changed.
    pub fn transitions(&self) -> u64 {
        self.observer.transitions.load(Ordering::Relaxed)
    }

    /// A permit to call now, or `None` to wait: the breaker is open, or half-open with
    /// every probe slot taken.
    pub fn permit(&self) -> Option<Permit> {
        if !self.machine.is_call_permitted() {
            return None;
        }
        if self.state() == BreakerState::HalfOpen {
            let taken = self.probes_in_flight.fetch_add(1, Ordering::SeqCst);
            if taken >= self.probe_limit {
                self.probes_in_flight.fetch_sub(1, Ordering::SeqCst);
                return None;
            }
            return Some(Permit {
                breaker: self.clone(),
                probe: true,
            });
        }
        Some(Permit {
            breaker: self.clone(),
            probe: false,
        })
    }
}

impl Permit {
    pub fn success(self) {
        self.breaker.machine.on_success();
    }

    pub fn failure(self) {
        self.breaker.machine.on_error();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probes_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_consecutive_failures_and_closes_through_bounded_probes() {
        failsafe::clock::freeze(|clock| {
            let breaker = Breaker::new(3, Duration::from_secs(5), 2);
            for _ in 0..2 {
                breaker.permit().expect("closed").failure();
            }
            assert_eq!(breaker.state(), BreakerState::Closed);
            breaker.permit().expect("closed").failure();
            assert_eq!(breaker.state(), BreakerState::Open);
            assert!(breaker.permit().is_none(), "no calls while open");

            clock.advance(Duration::from_secs(4));
            assert!(
                breaker.permit().is_none(),
                "still open before the period ends"
            );
            clock.advance(Duration::from_secs(2));

            // Half-open: two probes at most, whatever the demand.
            let first = breaker.permit().expect("probe 1");
            assert_eq!(breaker.state(), BreakerState::HalfOpen);
            let second = breaker.permit().expect("probe 2");
            assert!(breaker.permit().is_none(), "a third probe is refused");
            drop(second); // cancelled: frees its slot, records nothing
            let third = breaker.permit().expect("slot freed");
            third.failure();
            assert_eq!(
                breaker.state(),
                BreakerState::Open,
                "a failed probe reopens"
            );
            drop(first);

            // The next open period is longer (exponential).
            clock.advance(Duration::from_secs(6));
            assert!(
                breaker.permit().is_none(),
                "second open period is longer than 5 s"
            );
            clock.advance(Duration::from_secs(10));
            breaker.permit().expect("probe").success();
            assert_eq!(breaker.state(), BreakerState::Closed);
            for _ in 0..10 {
                breaker.permit().expect("closed again");
            }
            assert!(breaker.transitions() >= 5);
        });
    }

    #[test]
    fn successes_reset_the_failure_count() {
        failsafe::clock::freeze(|_| {
            let breaker = Breaker::new(3, Duration::from_secs(5), 1);
            for _ in 0..10 {
                breaker.permit().expect("closed").failure();
                breaker.permit().expect("closed").failure();
                breaker.permit().expect("closed").success();
            }
            assert_eq!(breaker.state(), BreakerState::Closed);
        });
    }
}
