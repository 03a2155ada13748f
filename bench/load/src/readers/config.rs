//! [`LoadConfig`]: one load run, as data — where to send, what, how hard and for how long.
//!
//! The CLI builds one from flags; tests and benchmarks build one directly. `validate`
//! is the single place that refuses a run that cannot mean anything (no key, no card, no
//! way to stop), so the driver never has to.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, ensure};
use latch_core::config::Secret;
use reqwest::Url;
use serde::{Serialize, Serializer};

/// The largest `--max-in-flight` a run accepts (each in-flight request is a task and,
/// possibly, a connection).
pub const MAX_IN_FLIGHT_LIMIT: usize = 65_536;

/// Which card-reader request every simulated reader sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReaderEndpoint {
    /// `POST /v1/unlock`: a decision, granted or denied (200).
    #[default]
    Unlock,
    /// `POST /v1/check-ins` (201).
    CheckIn,
    /// `POST /v1/check-outs` (201).
    CheckOut,
    /// Check-ins and check-outs alternating per card (in, out, in, …), so every card's
    /// presence stays sane however long the run.
    PresenceMix,
}

impl ReaderEndpoint {
    pub const ALL: [ReaderEndpoint; 4] = [
        ReaderEndpoint::Unlock,
        ReaderEndpoint::CheckIn,
        ReaderEndpoint::CheckOut,
        ReaderEndpoint::PresenceMix,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReaderEndpoint::Unlock => "unlock",
            ReaderEndpoint::CheckIn => "check-in",
            ReaderEndpoint::CheckOut => "check-out",
            ReaderEndpoint::PresenceMix => "presence-mix",
        }
    }
}

impl fmt::Display for ReaderEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReaderEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReaderEndpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.as_str() == s)
            .ok_or_else(|| {
                format!("unknown endpoint {s:?} (use unlock, check-in, check-out or presence-mix)")
            })
    }
}

impl Serialize for ReaderEndpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// `concurrency` simulated readers, each sending its next request as soon as the
    /// previous one is answered. Measures what the server sustains; latency is from send
    /// to answer.
    Closed { concurrency: usize },
    /// Requests started on a fixed timetable, `rate` per second, whatever the answers.
    /// Latency is measured from each request's *intended* start, so a stalled server
    /// shows in the percentiles (no coordinated omission). At most `max_in_flight` wait
    /// for an answer; a request due while that many wait is not sent and counts as late.
    Open { rate: f64, max_in_flight: usize },
}

impl Mode {
    /// Connections worth keeping open: one per request that may be in flight.
    pub(crate) fn connections(&self) -> usize {
        match *self {
            Mode::Closed { concurrency } => concurrency,
            Mode::Open { max_in_flight, .. } => max_in_flight,
        }
    }
}

/// When the measured part of a run ends: after `duration`, after `requests`, or at
/// whichever comes first when both are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stop {
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
}

impl Stop {
    pub fn after(duration: Duration) -> Stop {
        Stop {
            duration: Some(duration),
            requests: None,
        }
    }

    pub fn after_requests(requests: u64) -> Stop {
        Stop {
            duration: None,
            requests: Some(requests),
        }
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The API's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub endpoint: ReaderEndpoint,
    pub mode: Mode,
    pub stop: Stop,
    /// Sent before the measured part, and discarded (connections and caches warm up).
    pub warmup: Duration,
    /// The reader keys requests authenticate with, each request picking one.
    pub reader_keys: Vec<Secret<String>>,
    /// The cards presented, each request picking one.
    pub cards: Vec<String>,
    /// Seeds the choice of key and card: the same seed, the same sequence of choices.
    pub seed: u64,
    /// Send a fresh `Idempotency-Key` with every request.
    pub idempotency: bool,
    /// Longest wait for a whole answer; longer counts as a timeout.
    pub timeout: Duration,
    /// PEM CA an `https://` API's certificate comes from, when not a public one.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The default `--timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `--max-in-flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

impl LoadConfig {
    /// A run of unlocks against `url`, no warm-up, seed 0, no idempotency keys, the
    /// default timeout. Keys and cards still have to be given.
    pub fn new(url: impl Into<String>, mode: Mode, stop: Stop) -> LoadConfig {
        LoadConfig {
            url: url.into(),
            endpoint: ReaderEndpoint::Unlock,
            mode,
            stop,
            warmup: Duration::ZERO,
            reader_keys: Vec::new(),
            cards: Vec::new(),
            seed: 0,
            idempotency: false,
            timeout: DEFAULT_TIMEOUT,
            ca_file: None,
        }
    }

    /// Refuses a run that cannot mean anything; returns the parsed base URL.
    pub fn validate(&self) -> anyhow::Result<Url> {
        let base =
            Url::parse(&self.url).with_context(|| format!("--url {:?} is not a URL", self.url))?;
        ensure!(
            matches!(base.scheme(), "http" | "https"),
            "--url {:?} must be http:// or https://",
            self.url
        );
        match self.mode {
            Mode::Closed { concurrency } => {
                ensure!(concurrency >= 1, "--concurrency must be at least 1");
                ensure!(
                    concurrency <= MAX_IN_FLIGHT_LIMIT,
                    "--concurrency must be at most {MAX_IN_FLIGHT_LIMIT}"
                );
            }
            Mode::Open {
                rate,
                max_in_flight,
            } => {
                ensure!(
                    rate.is_finite() && rate > 0.0,
                    "--rate must be a positive number of requests per second, got {rate}"
                );
                ensure!(
                    (1..=MAX_IN_FLIGHT_LIMIT).contains(&max_in_flight),
                    "--max-in-flight must be between 1 and {MAX_IN_FLIGHT_LIMIT}"
                );
            }
        }
        ensure!(
            self.stop.duration.is_some() || self.stop.requests.is_some(),
            "say when to stop: --duration, --requests or both"
        );
        ensure!(
            self.stop.duration != Some(Duration::ZERO),
            "--duration must be longer than 0"
        );
        ensure!(
            self.stop.requests != Some(0),
            "--requests must be at least 1"
        );
        ensure!(
            self.timeout > Duration::ZERO,
            "--timeout must be longer than 0"
        );
        ensure!(
            !self.reader_keys.is_empty(),
            "no reader key: give --reader-key or a --keys-file with LATCH_DEMO_READER_KEY lines"
        );
        ensure!(
            !self.cards.is_empty(),
            "no card: give --card or a --keys-file with LATCH_DEMO_CARD_ lines"
        );
        Ok(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> LoadConfig {
        LoadConfig {
            reader_keys: vec![Secret::new("lrk_x".to_owned())],
            cards: vec!["CARD-1".to_owned()],
            ..LoadConfig::new(
                "http://127.0.0.1:1",
                Mode::Closed { concurrency: 1 },
                Stop::after_requests(1),
            )
        }
    }

    #[test]
    fn a_complete_config_is_valid() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn meaningless_runs_are_refused_with_the_flag_named() {
        let cases: [(LoadConfig, &str); 6] = [
            (
                LoadConfig {
                    reader_keys: vec![],
                    ..valid()
                },
                "--reader-key",
            ),
            (
                LoadConfig {
                    cards: vec![],
                    ..valid()
                },
                "--card",
            ),
            (
                LoadConfig {
                    stop: Stop::default(),
                    ..valid()
                },
                "--duration",
            ),
            (
                LoadConfig {
                    mode: Mode::Open {
                        rate: 0.0,
                        max_in_flight: 1,
                    },
                    ..valid()
                },
                "--rate",
            ),
            (
                LoadConfig {
                    mode: Mode::Closed { concurrency: 0 },
                    ..valid()
                },
                "--concurrency",
            ),
            (
                LoadConfig {
                    url: "localhost:8080".to_owned(),
                    ..valid()
                },
                "--url",
            ),
        ];
        for (config, flag) in cases {
            let error = config.validate().expect_err("refused").to_string();
            assert!(error.contains(flag), "{flag} not in {error:?}");
        }
    }

    #[test]
    fn endpoints_parse_from_their_names() {
        for endpoint in ReaderEndpoint::ALL {
            assert_eq!(endpoint.as_str().parse(), Ok(endpoint));
        }
        assert!("unlocks".parse::<ReaderEndpoint>().is_err());
    }
}
