//! [`PublishConfig`]: one publishing run, as data — which server and stream, how messages
//! are sent ([`PublishMode`]), how big they are, and when to stop.
//!
//! `validate` is the one place that refuses a run that cannot mean anything (a batch the
//! server would refuse, a run with no end, latch's own streams as the target), so the
//! loops never have to.

use std::fmt;
use std::time::Duration;

use anyhow::ensure;

/// The server's cap on the messages of one atomic batch.
pub const MAX_ATOMIC_BATCH: usize = 1000;
/// The default stream: latch's name with a suffix, never one of latch's own streams.
pub const DEFAULT_STREAM: &str = "LATCH_BENCH";
/// The default subject; the stream takes `<first token>.>`.
pub const DEFAULT_SUBJECT: &str = "latch-bench.events.unlock_granted";
/// The default payload size: about what latch's envelopes weigh (400–600 bytes).
pub const DEFAULT_SIZE: usize = 520;
/// The default pipelined publishes in flight for `single`.
pub const DEFAULT_SINGLE_IN_FLIGHT: usize = 1000;
/// The largest payload a run accepts (the server's default max_payload is 1 MiB).
pub const MAX_SIZE: usize = 1 << 20;
/// The most publishes (single) or batches (atomic) in flight a run accepts.
pub const MAX_IN_FLIGHT: usize = 65_536;

/// Streams the benchmark must never delete or write into.
const LATCH_STREAMS: [&str; 2] = [
    latch_core::nats::EVENTS_STREAM,
    latch_core::nats::DLQ_STREAM,
];

/// How messages are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// JetStream publishes, each with its own `Nats-Msg-Id`, `in_flight` of them
    /// outstanding (sent without waiting; a new one leaves as an acknowledgement comes back).
    Single { in_flight: usize },
    /// Atomic batches of `batch` messages (each with its own `Nats-Msg-Id`): all but the
    /// last sent without waiting, the last carrying `Nats-Batch-Commit` and answered with
    /// one acknowledgement for the batch — exactly what the relay does. `in_flight` batches
    /// are outstanding at once (the relay: 1).
    Atomic { batch: usize, in_flight: usize },
}

impl PublishMode {
    pub fn name(&self) -> &'static str {
        match self {
            PublishMode::Single { .. } => "single",
            PublishMode::Atomic { .. } => "atomic",
        }
    }

    /// Messages per acknowledgement.
    pub fn batch(&self) -> usize {
        match *self {
            PublishMode::Single { .. } => 1,
            PublishMode::Atomic { batch, .. } => batch,
        }
    }

    /// Acknowledgements awaited at once.
    pub fn in_flight(&self) -> usize {
        match *self {
            PublishMode::Single { in_flight } | PublishMode::Atomic { in_flight, .. } => in_flight,
        }
    }
}

impl fmt::Display for PublishMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PublishMode::Single { in_flight } => {
                write!(f, "single publishes, {in_flight} in flight")
            }
            PublishMode::Atomic { batch, in_flight } => write!(
                f,
                "atomic batches of {batch}, {in_flight} batch(es) in flight"
            ),
        }
    }
}

/// One publishing run.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The stream to (re)create and publish into; deleted first, and at the end unless
    /// `keep_stream`.
    pub stream: String,
    /// The subject every message is published on.
    pub subject: String,
    pub mode: PublishMode,
    /// Payload bytes per message.
    pub size: usize,
    /// Published first and discarded (connections, the store's files warm up).
    pub warmup: Duration,
    /// The measured part ends after this long…
    pub duration: Option<Duration>,
    /// …or after this many measured messages, whichever is first.
    pub messages: Option<u64>,
    /// Bounds every acknowledgement.
    pub timeout: Duration,
    /// Leave the stream (and its messages) in place at the end.
    pub keep_stream: bool,
}

impl PublishConfig {
    /// A run of `mode` against `url` for `duration`, on the default stream and subject,
    /// with default-sized messages, no warm-up and a 10 s acknowledgement timeout.
    pub fn new(url: impl Into<String>, mode: PublishMode, duration: Duration) -> PublishConfig {
        PublishConfig {
            url: url.into(),
            stream: DEFAULT_STREAM.to_owned(),
            subject: DEFAULT_SUBJECT.to_owned(),
            mode,
            size: DEFAULT_SIZE,
            warmup: Duration::ZERO,
            duration: Some(duration),
            messages: None,
            timeout: Duration::from_secs(10),
            keep_stream: false,
        }
    }

    /// The subjects the stream captures: everything under the subject's first token.
    pub fn stream_subjects(&self) -> String {
        let first = self.subject.split('.').next().unwrap_or(&self.subject);
        format!("{first}.>")
    }

    /// Refuses a run that cannot mean anything.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.url.starts_with("nats://") || self.url.starts_with("tls://"),
            "--url {:?} must be a nats:// URL",
            self.url
        );
        ensure!(
            !self.stream.is_empty()
                && self
                    .stream
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "--stream {:?} must be a plain name (letters, digits, _ and -)",
            self.stream
        );
        ensure!(
            !LATCH_STREAMS.contains(&self.stream.as_str()),
            "--stream {} is latch's own stream; the benchmark deletes and refills its stream, \
             so give it one of its own",
            self.stream
        );
        ensure!(
            !self.subject.is_empty()
                && !self.subject.contains(['*', '>', ' '])
                && self.subject.split('.').all(|token| !token.is_empty()),
            "--subject {:?} must be a plain subject such as {DEFAULT_SUBJECT}",
            self.subject
        );
        ensure!(
            !self.subject.starts_with("latch.") && !self.subject.starts_with("$"),
            "--subject {} would land in latch's streams or the server's own subjects",
            self.subject
        );
        ensure!(
            (1..=MAX_SIZE).contains(&self.size),
            "--size must be between 1 and {MAX_SIZE} bytes"
        );
        match self.mode {
            PublishMode::Single { in_flight } => {
                ensure!(
                    (1..=MAX_IN_FLIGHT).contains(&in_flight),
                    "--in-flight must be between 1 and {MAX_IN_FLIGHT}"
                );
            }
            PublishMode::Atomic { batch, in_flight } => {
                ensure!(
                    (1..=MAX_ATOMIC_BATCH).contains(&batch),
                    "--batch must be between 1 and {MAX_ATOMIC_BATCH} (the server's atomic batch limit)"
                );
                ensure!(
                    (1..=64).contains(&in_flight),
                    "--in-flight must be between 1 and 64 batches"
                );
            }
        }
        ensure!(
            self.duration.is_some() || self.messages.is_some(),
            "say when to stop: --duration, --messages or both"
        );
        ensure!(
            self.duration != Some(Duration::ZERO),
            "--duration must be longer than 0"
        );
        ensure!(self.messages != Some(0), "--messages must be at least 1");
        ensure!(
            self.timeout > Duration::ZERO,
            "--timeout must be longer than 0"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> PublishConfig {
        PublishConfig::new(
            "nats://127.0.0.1:4222",
            PublishMode::Atomic {
                batch: 500,
                in_flight: 1,
            },
            Duration::from_secs(1),
        )
    }

    #[test]
    fn a_complete_config_is_valid() {
        assert!(valid().validate().is_ok());
        assert_eq!(valid().stream_subjects(), "latch-bench.>");
    }

    #[test]
    fn meaningless_or_dangerous_runs_are_refused_with_the_flag_named() {
        let cases: Vec<(PublishConfig, &str)> = vec![
            (
                PublishConfig {
                    stream: "LATCH_EVENTS".into(),
                    ..valid()
                },
                "latch's own stream",
            ),
            (
                PublishConfig {
                    subject: "latch.events.x".into(),
                    ..valid()
                },
                "--subject",
            ),
            (
                PublishConfig {
                    subject: "a.>".into(),
                    ..valid()
                },
                "--subject",
            ),
            (
                PublishConfig {
                    mode: PublishMode::Atomic {
                        batch: 1001,
                        in_flight: 1,
                    },
                    ..valid()
                },
                "--batch",
            ),
            (
                PublishConfig {
                    mode: PublishMode::Single { in_flight: 0 },
                    ..valid()
                },
                "--in-flight",
            ),
            (
                PublishConfig {
                    duration: None,
                    ..valid()
                },
                "--duration",
            ),
            (PublishConfig { size: 0, ..valid() }, "--size"),
            (
                PublishConfig {
                    url: "127.0.0.1:4222".into(),
                    ..valid()
                },
                "--url",
            ),
        ];
        for (config, needle) in cases {
            let error = config.validate().expect_err("refused").to_string();
            assert!(error.contains(needle), "{needle} not in {error:?}");
        }
    }

    #[test]
    fn modes_say_what_they_send() {
        let atomic = PublishMode::Atomic {
            batch: 500,
            in_flight: 2,
        };
        assert_eq!((atomic.batch(), atomic.in_flight()), (500, 2));
        assert_eq!(atomic.name(), "atomic");
        let single = PublishMode::Single { in_flight: 1000 };
        assert_eq!((single.batch(), single.in_flight()), (1, 1000));
        assert!(single.to_string().contains("1000 in flight"));
    }
}
