//! [`Tally`]: what the measured requests came to — their latencies in an HDR histogram
//! (microseconds) and their outcomes counted by status, decision and failure.
//!
//! Each worker (closed loop) or the dispatcher (open loop) owns one and records without
//! any lock; the tallies are merged once at the end. Only requests that got an HTTP
//! answer, whatever its status, have a latency: a refused connection would pull the
//! percentiles down and a timeout would only say "at least the timeout", so failures are
//! counted apart, and a report with failures says so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::send::Outcome;

/// Latencies are recorded in microseconds, from 1 µs to an hour, to 3 significant
/// digits (values above an hour are recorded as an hour).
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

#[derive(Clone)]
pub(crate) struct Tally {
    pub histogram: Histogram<u64>,
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
    /// An empty tally. Make one per run and clone it for each worker.
    pub fn new() -> anyhow::Result<Tally> {
        let histogram = Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
            .context("cannot create the latency histogram")?;
        Ok(Tally {
            histogram,
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
            decisions: BTreeMap::new(),
            late: 0,
            warmup: 0,
            last_done: None,
        })
    }

    /// Records a measured request that took `latency` and finished at `done`.
    pub fn record(&mut self, latency: Duration, outcome: Outcome, done: Instant) {
        self.last_done = self.last_done.max(Some(done));
        match outcome {
            Outcome::Answered { status, decision } => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.histogram.saturating_record(micros.max(LOWEST_US));
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

    /// Adds `other` into this tally.
    pub fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .context("cannot merge latency histograms")?;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (label, n) in other.failures {
            *self.failures.entry(label).or_default() += n;
        }
        for (label, n) in other.decisions {
            *self.decisions.entry(label).or_default() += n;
        }
        self.late += other.late;
        self.warmup += other.warmup;
        self.last_done = self.last_done.max(other.last_done);
        Ok(())
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

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;
    use crate::readers::send::{Decision, Failure};

    fn answered(status: StatusCode) -> Outcome {
        Outcome::Answered {
            status,
            decision: (status == StatusCode::OK).then_some(Decision::Granted),
        }
    }

    #[test]
    fn merging_adds_everything_up() {
        let now = Instant::now();
        let mut a = Tally::new().expect("a tally");
        let mut b = a.clone();
        a.record(Duration::from_millis(2), answered(StatusCode::OK), now);
        b.record(Duration::from_millis(4), answered(StatusCode::UNAUTHORIZED), now);
        b.record(
            Duration::from_secs(10),
            Outcome::Failed {
                kind: Failure::Timeout,
                message: "timed out".to_owned(),
            },
            now + Duration::from_secs(1),
        );
        a.merge(b).expect("merges");
        assert_eq!((a.answered(), a.errors()), (2, 1));
        assert_eq!(a.histogram.len(), 2, "a failure has no latency");
        assert_eq!(a.decisions.get("granted"), Some(&1));
        assert_eq!(a.statuses.get(&401), Some(&1));
        assert_eq!(a.last_done, Some(now + Duration::from_secs(1)));
    }
}
