//! [`Tally`]: what the measured requests came to — their latencies in an HDR histogram
//! (microseconds) and their outcomes counted by status, decision and failure.
//!
//! Every request, in either loop, ends as one [`Finished`] sent over a bounded channel to
//! one collector, which owns the run's only tally: no lock, and one histogram per run
//! rather than one per simulated reader (each is a few hundred kilobytes, which a
//! thousand readers would multiply).
//!
//! Only requests that got an HTTP answer, whatever its status, have a latency: a refused
//! connection would pull the percentiles down and a timeout would only say "at least the
//! timeout", so failures are counted apart, and a report with failures says so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use super::send::Outcome;
use super::timeline::Phase;

/// Latencies are recorded in microseconds, from 1 µs to an hour, to 3 significant
/// digits (values above an hour are recorded as an hour).
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// A request that finished, as a worker hands it to the collector.
pub(crate) struct Finished {
    pub phase: Phase,
    /// Where its latency counts from: when it was sent (closed loop) or due (open loop).
    pub origin: Instant,
    /// Open loop: how long after being due it was sent.
    pub send_lag: Option<Duration>,
    pub outcome: Outcome,
    pub done: Instant,
}

pub(crate) struct Tally {
    pub histogram: Histogram<u64>,
    /// Open loop: how long after being due each measured request was sent (µs).
    pub send_lag: Histogram<u64>,
    /// HTTP answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer, by [`super::send::Failure::label`].
    pub failures: BTreeMap<&'static str, u64>,
    /// Unlock decisions, by [`super::send::Decision::label`].
    pub decisions: BTreeMap<&'static str, u64>,
    /// Open loop: measured requests due while `max_in_flight` were waiting, not sent.
    pub late: u64,
    /// Warm-up requests that finished (discarded: counted, not measured).
    pub warmup: u64,
    /// When the last measured request finished.
    pub last_done: Option<Instant>,
}

impl Tally {
    pub fn new() -> anyhow::Result<Tally> {
        let histogram = Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
            .context("cannot create the latency histogram")?;
        Ok(Tally {
            send_lag: histogram.clone(),
            histogram,
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
            decisions: BTreeMap::new(),
            late: 0,
            warmup: 0,
            last_done: None,
        })
    }

    /// Tallies every request that comes over `finished`, until all its senders are gone.
    pub async fn collect(mut self, mut finished: mpsc::Receiver<Finished>) -> Tally {
        while let Some(request) = finished.recv().await {
            self.record(request);
        }
        self
    }

    /// Records one finished request: a warm-up one is only counted.
    pub fn record(&mut self, request: Finished) {
        if request.phase == Phase::Warmup {
            self.warmup += 1;
            return;
        }
        self.last_done = self.last_done.max(Some(request.done));
        if let Some(lag) = request.send_lag {
            self.send_lag.saturating_record(micros(lag));
        }
        match request.outcome {
            Outcome::Answered { status, decision } => {
                let latency = request.done.saturating_duration_since(request.origin);
                self.histogram.saturating_record(micros(latency));
                *self.statuses.entry(status.as_u16()).or_default() += 1;
                if let Some(decision) = decision {
                    *self.decisions.entry(decision.label()).or_default() += 1;
                }
            }
            Outcome::Failed { kind, .. } => {
                *self.failures.entry(kind.label()).or_default() += 1;
            }
        }
    }

    /// Measured requests that got an HTTP answer.
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Measured requests that got no HTTP answer.
    pub fn errors(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// A duration in whole microseconds, at least the histogram's lowest value.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(LOWEST_US)
}

#[cfg(test)]
pub(crate) mod tests {
    use http::StatusCode;

    use super::*;
    use crate::readers::send::{Decision, Failure};

    /// A measured request answered `status` that took `ms` and finished at `done`.
    pub(crate) fn answered(status: StatusCode, ms: u64, done: Instant) -> Finished {
        Finished {
            phase: Phase::Measured,
            origin: done - Duration::from_millis(ms),
            send_lag: None,
            outcome: Outcome::Answered {
                status,
                decision: (status == StatusCode::OK).then_some(Decision::Granted),
            },
            done,
        }
    }

    #[test]
    fn answers_have_a_latency_failures_a_count_and_warmup_neither() {
        let now = Instant::now();
        let mut tally = Tally::new().expect("a tally");
        tally.record(answered(StatusCode::OK, 2, now));
        tally.record(answered(StatusCode::UNAUTHORIZED, 4, now));
        tally.record(Finished {
            phase: Phase::Warmup,
            ..answered(StatusCode::OK, 1, now + Duration::from_secs(5))
        });
        tally.record(Finished {
            outcome: Outcome::Failed {
                kind: Failure::Timeout,
                message: "timed out".to_owned(),
            },
            send_lag: Some(Duration::from_millis(3)),
            ..answered(StatusCode::OK, 10_000, now + Duration::from_secs(1))
        });
        assert_eq!((tally.answered(), tally.errors(), tally.warmup), (2, 1, 1));
        assert_eq!(tally.histogram.len(), 2, "a failure has no latency");
        assert!(tally.histogram.equivalent(tally.histogram.max(), 4000));
        assert_eq!(tally.send_lag.len(), 1);
        assert_eq!(tally.decisions.get("granted"), Some(&1));
        assert_eq!(tally.statuses.get(&401), Some(&1));
        assert_eq!(tally.last_done, Some(now + Duration::from_secs(1)));
    }
}
