//! The run's clock and its one shared verdict on the target.
//!
//! [`Timeline`] fixes every instant of a run at its start: warm-up from `start` to
//! `measured_start`, then the measured part until `measured_end` (when a duration is
//! given). A request belongs to the phase in which it was *due* (open loop) or sent
//! (closed loop), so one straddling the end of the warm-up is discarded, not measured.
//!
//! [`Probe`] sees every outcome, warm-up included, so a run can tell "the target answered
//! nothing" from "the target answered errors", and gives up early on a target that
//! refuses every connection instead of hammering a closed port for the whole duration.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::send::{Failure, Outcome};

/// Refused connections, before any answer, after which a run stops: the target is not
/// there, and more attempts would say nothing new.
pub const GIVE_UP_AFTER_REFUSALS: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Warmup,
    Measured,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    pub start: Instant,
    pub measured_start: Instant,
    /// `None`: the run stops on its request count (or its shutdown token) only.
    pub measured_end: Option<Instant>,
}

impl Timeline {
    pub fn new(start: Instant, warmup: Duration, duration: Option<Duration>) -> Timeline {
        // An absurd warm-up or duration (past what `Instant` can hold) means "never".
        let measured_start = start.checked_add(warmup).unwrap_or(start);
        Timeline {
            start,
            measured_start,
            measured_end: duration.and_then(|d| measured_start.checked_add(d)),
        }
    }

    pub fn phase(&self, at: Instant) -> Phase {
        if at < self.measured_start {
            Phase::Warmup
        } else {
            Phase::Measured
        }
    }

    /// Whether nothing may start at `at` any more.
    pub fn is_over(&self, at: Instant) -> bool {
        self.measured_end.is_some_and(|end| at >= end)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Probe {
    answered: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    first_failure: OnceLock<String>,
}

impl Probe {
    pub fn observe(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Answered { .. } => {
                self.answered.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed { kind, message } => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if *kind == Failure::Connect {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
                if self.first_failure.get().is_none() {
                    let _ = self.first_failure.set(message.clone());
                }
            }
        }
    }

    /// True once [`GIVE_UP_AFTER_REFUSALS`] connections were refused and nothing answered.
    pub fn gave_up(&self) -> bool {
        self.answered.load(Ordering::Relaxed) == 0
            && self.refused.load(Ordering::Relaxed) >= GIVE_UP_AFTER_REFUSALS
    }

    /// True when requests failed and not one got an HTTP answer, warm-up included.
    pub fn nothing_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed) == 0 && self.failed.load(Ordering::Relaxed) > 0
    }

    pub fn first_failure(&self) -> Option<&str> {
        self.first_failure.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn phases_follow_the_warmup_and_the_end() {
        let start = Instant::now();
        let timeline = Timeline::new(start, Duration::from_secs(1), Some(Duration::from_secs(2)));
        assert_eq!(timeline.phase(start), Phase::Warmup);
        assert_eq!(
            timeline.phase(start + Duration::from_secs(1)),
            Phase::Measured
        );
        assert!(!timeline.is_over(start + Duration::from_millis(2999)));
        assert!(timeline.is_over(start + Duration::from_secs(3)));
        assert!(
            !Timeline::new(start, Duration::ZERO, None).is_over(start + Duration::from_secs(9))
        );
    }

    #[test]
    fn the_probe_gives_up_only_on_a_target_that_never_answered() {
        let refused = || Outcome::Failed {
            kind: Failure::Connect,
            message: "refused".to_owned(),
        };
        let probe = Probe::default();
        for _ in 0..GIVE_UP_AFTER_REFUSALS {
            assert!(!probe.gave_up());
            probe.observe(&refused());
        }
        assert!(probe.gave_up() && probe.nothing_answered());
        assert_eq!(probe.first_failure(), Some("refused"));
        probe.observe(&Outcome::Answered {
            status: StatusCode::UNAUTHORIZED,
            decision: None,
        });
        assert!(!probe.gave_up() && !probe.nothing_answered());
    }
}
