//! [`LoadReport`]: what a run measured, in the three forms it is read in — a JSON object
//! for scripts (its `Serialize`), a few lines for a person (its `Display`), and the whole
//! percentile distribution for plotting ([`LoadReport::write_distribution`]).
//!
//! Field meanings, which scripts rely on:
//! - `requests`: measured requests that finished, answered or not (warm-up excluded);
//! - `duration_s`: from the start of the measured part to the last measured answer;
//! - `throughput_rps`: HTTP answers (any status) per second of `duration_s`;
//! - `latency_ms`: over answered requests only — closed loop from send, open loop from
//!   when the request was due; failures have no latency and are counted in `errors`;
//! - `statuses`: HTTP status code → count, plus `connect_error`, `timeout` and
//!   `transport_error` for requests without an answer (their sum is `errors`);
//! - `decisions`: unlock 200s by decision (`granted`, `denied`, `unreadable`);
//! - `send_lag_ms`: open loop only, how long after being due requests were sent;
//! - `late`: open loop only, requests due while `max_in_flight` waited, never sent.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::config::{LoadConfig, Mode, ReaderEndpoint};
use super::tally::Tally;
use super::timeline::Timeline;

/// Microseconds (the histogram's unit) per millisecond (the report's unit).
pub(crate) const US_PER_MS: f64 = 1000.0;

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `closed` or `open`.
    pub mode: &'static str,
    pub endpoint: ReaderEndpoint,
    /// Closed loop: the number of simulated readers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Open loop: the offered rate, requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Open loop: the most requests waiting for an answer at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    pub requests: u64,
    pub answered: u64,
    pub duration_s: f64,
    pub throughput_rps: f64,
    pub latency_ms: LatencySummary,
    /// Open loop: how long after being due requests were sent — the generator's own
    /// delay (timer precision, a busy machine), already included in `latency_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag_ms: Option<SendLag>,
    pub statuses: BTreeMap<String, u64>,
    pub decisions: BTreeMap<String, u64>,
    pub errors: u64,
    pub late: u64,
    /// Warm-up requests that finished, discarded.
    pub warmup_requests: u64,
    /// The first failure of the run (warm-up included), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Every measured latency, in microseconds.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// Latency percentiles in milliseconds (to the microsecond); all 0 when nothing was
/// answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Send-lag percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SendLag {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl SendLag {
    fn of(histogram: &Histogram<u64>) -> SendLag {
        if histogram.is_empty() {
            return SendLag::default();
        }
        SendLag {
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

impl LatencySummary {
    pub(crate) fn of(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        let at = |q: f64| ms(histogram.value_at_quantile(q));
        LatencySummary {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: ms(histogram.max()),
            mean: histogram.mean().round() / US_PER_MS,
        }
    }
}

pub(crate) fn ms(micros: u64) -> f64 {
    micros as f64 / US_PER_MS
}

impl LoadReport {
    pub(crate) fn new(
        config: &LoadConfig,
        timeline: &Timeline,
        tally: Tally,
        first_error: Option<&str>,
    ) -> LoadReport {
        let duration_s = tally.last_done.map_or(0.0, |done| {
            done.saturating_duration_since(timeline.measured_start)
                .as_secs_f64()
        });
        let answered = tally.answered();
        let errors = tally.errors();
        let (mode, concurrency, rate, max_in_flight) = match config.mode {
            Mode::Closed { concurrency } => ("closed", Some(concurrency), None, None),
            Mode::Open {
                rate,
                max_in_flight,
            } => ("open", None, Some(rate), Some(max_in_flight)),
        };
        let statuses = tally
            .statuses
            .iter()
            .map(|(status, n)| (status.to_string(), *n))
            .chain(
                tally
                    .failures
                    .iter()
                    .map(|(label, n)| ((*label).to_owned(), *n)),
            )
            .collect();
        LoadReport {
            mode,
            endpoint: config.endpoint,
            concurrency,
            rate,
            max_in_flight,
            requests: answered + errors,
            answered,
            duration_s,
            throughput_rps: if duration_s > 0.0 {
                answered as f64 / duration_s
            } else {
                0.0
            },
            latency_ms: LatencySummary::of(&tally.histogram),
            send_lag_ms: rate.map(|_| SendLag::of(&tally.send_lag)),
            statuses,
            decisions: tally
                .decisions
                .iter()
                .map(|(label, n)| ((*label).to_owned(), *n))
                .collect(),
            errors,
            late: tally.late,
            warmup_requests: tally.warmup,
            first_error: first_error.map(str::to_owned),
            histogram: tally.histogram,
        }
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing plain fields and maps of strings cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pacing = match (self.concurrency, self.rate, self.max_in_flight) {
            (Some(c), _, _) => format!("closed loop, {c} reader(s)"),
            (_, Some(rate), Some(max)) => {
                format!("open loop, {rate} req/s offered, at most {max} in flight")
            }
            _ => self.mode.to_owned(),
        };
        writeln!(f, "latch-load readers: {}, {pacing}", self.endpoint)?;
        writeln!(
            f,
            "  requests    {} in {:.3} s: {:.1} answers/s ({} warm-up discarded)",
            self.requests, self.duration_s, self.throughput_rps, self.warmup_requests
        )?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        if let Some(lag) = self.send_lag_ms {
            writeln!(
                f,
                "  send lag ms p50 {:.3}  p99 {:.3}  max {:.3}  (generator delay, included above)",
                lag.p50, lag.p99, lag.max
            )?;
        }
        writeln!(f, "  statuses    {}", counts(&self.statuses))?;
        if !self.decisions.is_empty() {
            writeln!(f, "  decisions   {}", counts(&self.decisions))?;
        }
        write!(f, "  errors      {} without an answer", self.errors)?;
        if self.mode == "open" {
            write!(f, ", {} late (not sent: too many in flight)", self.late)?;
        }
        if let Some(first) = self.first_error.as_deref().filter(|_| self.errors > 0) {
            write!(f, "\n  first error {first}")?;
        }
        Ok(())
    }
}

fn counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(label, n)| format!("{label}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, Instant};

    use http::StatusCode;

    use super::*;
    use crate::readers::config::Stop;
    use crate::readers::tally::tests::answered;

    pub(crate) fn report() -> LoadReport {
        let config = LoadConfig::new(
            "http://h",
            Mode::Open {
                rate: 100.0,
                max_in_flight: 8,
            },
            Stop::after_requests(100),
        );
        let start = Instant::now();
        let timeline = Timeline::new(start, Duration::ZERO, None);
        let mut tally = Tally::new().expect("a tally");
        for ms in 1..=100 {
            tally.record(answered(
                StatusCode::OK,
                ms,
                start + Duration::from_millis(ms * 10),
            ));
        }
        tally.late = 3;
        LoadReport::new(&config, &timeline, tally, None)
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let json = report().to_json();
        assert_eq!(json["mode"], "open");
        assert_eq!(json["endpoint"], "unlock");
        assert_eq!(json["rate"], 100.0);
        assert!(json.get("concurrency").is_none());
        assert_eq!(json["requests"], 100);
        assert_eq!(json["duration_s"], 1.0);
        assert_eq!(json["throughput_rps"], 100.0);
        assert_eq!(json["statuses"]["200"], 100);
        assert_eq!(json["decisions"]["granted"], 100);
        assert_eq!(json["late"], 3);
        let latency = &json["latency_ms"];
        assert!((latency["p50"].as_f64().expect("a number") - 50.0).abs() < 0.1);
        assert!((latency["max"].as_f64().expect("a number") - 100.0).abs() < 0.1);
        for key in ["p90", "p99", "p999", "mean"] {
            assert!(latency[key].is_f64(), "{key}");
        }
    }

    #[test]
    fn the_summary_names_the_pacing_and_the_late() {
        let text = report().to_string();
        assert!(text.contains("open loop, 100 req/s"), "{text}");
        assert!(text.contains("3 late"), "{text}");
        assert!(text.contains("granted: 100"), "{text}");
    }
}
