//! The worker's settings: which sinks exist, what is routed to each, and how hard to try.
//!
//! A sink is configured when its URL is set (`LATCH_SINKS_LEGACY_URL`,
//! `LATCH_SINKS_WEBHOOKS_URL`); every other setting has a default. Keys per sink, with
//! `<sink>` = `legacy` or `webhooks`:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `sinks.<sink>.url` | — | where to deliver (the punch endpoint / the webhook URL) |
//! | `sinks.<sink>.secret` | — | legacy: the `X-TNA-Key`; webhooks: the signing secret (`whsec_…`, Standard Webhooks) |
//! | `sinks.<sink>.kinds` | legacy: `check_in,check_out`; webhooks: `*` | event kinds routed here |
//! | `sinks.<sink>.timeout` | `5s` | bounds each call |
//! | `sinks.<sink>.max_attempts` | `8` | calls before an event is dead-lettered |
//! | `sinks.<sink>.rate` | `200` | calls per second at most |
//! | `sinks.<sink>.concurrency` | `16` | lanes: calls in flight at most |
//! | `sinks.<sink>.breaker_failures` | `5` | consecutive failures that open the breaker |
//! | `sinks.<sink>.breaker_open` | `5s` | first open period, at least 1 s (doubles, up to 60 s) |
//! | `sinks.<sink>.breaker_probes` | `1` | calls let through while half-open |
//! | `sinks.<sink>.ack_wait` | `30s` | unacknowledged this long, a message is redelivered |
//! | `sinks.<sink>.takeover_after` | `5s` | a standby worker takes the sink over when the active one has not pulled for this long (at least 2 s) |
//!
//! And for all sinks: `retry.base` (`200ms`), `retry.max` (`30s`) — the capped
//! exponential backoff between attempts, with full jitter.

use std::time::Duration;

use latch_core::config::{ConfigError, Secret, Setting, Source};
use latch_core::event::EventKind;

/// The sinks latch knows how to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkKind {
    /// The legacy time-and-attendance system: form-encoded punches.
    Legacy,
    /// Third-party subscribers: signed JSON.
    Webhooks,
}

impl SinkKind {
    pub const ALL: [SinkKind; 2] = [SinkKind::Legacy, SinkKind::Webhooks];

    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Legacy => "legacy",
            SinkKind::Webhooks => "webhooks",
        }
    }

    fn default_kinds(self) -> &'static str {
        match self {
            SinkKind::Legacy => "check_in,check_out",
            SinkKind::Webhooks => "*",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub kind: SinkKind,
    pub url: String,
    pub secret: Secret<String>,
    /// Webhooks: the key `secret` stands for (`whsec_…`), which signs every call.
    pub signing_key: Option<latch_core::signature::SigningKey>,
    /// `None` means every kind.
    pub kinds: Option<Vec<EventKind>>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub rate_per_second: u32,
    pub concurrency: usize,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub breaker_probes: usize,
    /// How long the server waits for an ack before it redelivers to another worker; a
    /// message held longer is reported in progress every third of it.
    pub ack_wait: Duration,
    /// NATS `priority_timeout` of the sink's consumer: how long the active (pinned) worker
    /// may go without pulling before a standby worker takes over.
    pub takeover_after: Duration,
}

const MIN_TAKEOVER: Duration = Duration::from_secs(2);

/// A sink's setting (`<sink>` is `legacy` or `webhooks`).
const fn sink(key: &'static str, default: Option<&'static str>, meaning: &'static str) -> Setting {
    Setting {
        key,
        default,
        meaning,
    }
}

pub const URL: Setting = sink(
    "sinks.<sink>.url",
    None,
    "where to deliver; the sink is enabled when set",
);
pub const SECRET: Setting = sink(
    "sinks.<sink>.secret",
    None,
    "legacy: the X-TNA-Key; webhooks: the signing secret, whsec_ and a 24 to 64-byte key in base64 (Standard Webhooks)",
);
pub const KINDS: Setting = sink(
    "sinks.<sink>.kinds",
    None,
    "event kinds routed to the sink (legacy check_in,check_out; webhooks *)",
);
pub const TIMEOUT: Setting = sink("sinks.<sink>.timeout", Some("5s"), "bounds each call");
pub const MAX_ATTEMPTS: Setting = sink(
    "sinks.<sink>.max_attempts",
    Some("8"),
    "calls before an event is dead-lettered",
);
pub const RATE: Setting = sink("sinks.<sink>.rate", Some("200"), "calls per second at most");
pub const CONCURRENCY: Setting = sink(
    "sinks.<sink>.concurrency",
    Some("16"),
    "lanes: calls in flight at most",
);
pub const BREAKER_FAILURES: Setting = sink(
    "sinks.<sink>.breaker_failures",
    Some("5"),
    "consecutive failures that open the breaker",
);
pub const BREAKER_OPEN: Setting = sink(
    "sinks.<sink>.breaker_open",
    Some("5s"),
    "first open period (at least 1 s, doubling up to 60 s)",
);
pub const BREAKER_PROBES: Setting = sink(
    "sinks.<sink>.breaker_probes",
    Some("1"),
    "calls let through while half-open",
);
pub const ACK_WAIT: Setting = sink(
    "sinks.<sink>.ack_wait",
    Some("30s"),
    "redelivery timeout of an unacknowledged message",
);
pub const TAKEOVER_AFTER: Setting = sink(
    "sinks.<sink>.takeover_after",
    Some("5s"),
    "a standby worker takes the sink over after the active one has not pulled this long",
);
pub const RETRY_BASE: Setting = Setting {
    key: "retry.base",
    default: Some("200ms"),
    meaning: "the first backoff between attempts",
};
pub const RETRY_MAX: Setting = Setting {
    key: "retry.max",
    default: Some("30s"),
    meaning: "the longest backoff between attempts",
};

pub const PARTITIONED: Setting = Setting {
    key: "worker.partitioned",
    default: Some("false"),
    meaning: "share the stream's partitions with the other partitioned workers (a consumer per sink and partition) instead of one consumer per sink with one active worker",
};
pub const LEASE: Setting = Setting {
    key: "worker.lease",
    default: Some("5s"),
    meaning: "partitioned: a worker that has not renewed its presence for this long is taken for gone and its partitions are shared out (at least 2s)",
};

/// How a worker shares the sinks' work with other workers.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// `None`: one consumer per sink, one active worker. `Some(lease)`: a consumer per
    /// sink and partition, the partitions shared among the workers present.
    pub partitioned: Option<Duration>,
}

impl Layout {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let partitioned: bool = source.value(&PARTITIONED)?;
        let lease = source.duration(&LEASE)?;
        if lease < MIN_TAKEOVER {
            return Err(Source::invalid_setting(&LEASE, "must be at least 2s"));
        }
        Ok(Layout {
            partitioned: partitioned.then_some(lease),
        })
    }
}

/// The settings this crate reads.
pub const SETTINGS: &[Setting] = &[
    PARTITIONED,
    LEASE,
    URL,
    SECRET,
    KINDS,
    TIMEOUT,
    MAX_ATTEMPTS,
    RATE,
    CONCURRENCY,
    BREAKER_FAILURES,
    BREAKER_OPEN,
    BREAKER_PROBES,
    ACK_WAIT,
    TAKEOVER_AFTER,
    RETRY_BASE,
    RETRY_MAX,
];

impl SinkConfig {
    /// The sink's settings, or `None` when its URL is not set.
    pub fn from_source(source: &Source, kind: SinkKind) -> Result<Option<Self>, ConfigError> {
        let sink = source.for_sink(kind.name());
        let Some(url) = sink.optional::<String>(&URL)? else {
            return Ok(None);
        };
        let kinds_text = sink
            .optional::<String>(&KINDS)?
            .unwrap_or_else(|| kind.default_kinds().to_owned());
        let kinds = parse_kinds(&kinds_text).map_err(|message| sink.invalid(&KINDS, message))?;
        let takeover_after = sink.duration(&TAKEOVER_AFTER)?;
        if takeover_after < MIN_TAKEOVER {
            return Err(sink.invalid(
                &TAKEOVER_AFTER,
                "must be at least 2s: the active worker pulls every second",
            ));
        }
        let secret: String = sink.value(&SECRET)?;
        let signing_key = match kind {
            SinkKind::Webhooks => Some(
                latch_core::signature::SigningKey::parse(&secret)
                    .map_err(|e| sink.invalid(&SECRET, e))?,
            ),
            SinkKind::Legacy => None,
        };
        Ok(Some(SinkConfig {
            kind,
            url,
            secret: Secret::new(secret),
            signing_key,
            kinds,
            timeout: sink.duration(&TIMEOUT)?,
            max_attempts: sink.count(&MAX_ATTEMPTS)? as u32,
            rate_per_second: sink.count(&RATE)? as u32,
            concurrency: sink.count(&CONCURRENCY)?,
            breaker_failures: sink.count(&BREAKER_FAILURES)? as u32,
            breaker_open: sink.duration(&BREAKER_OPEN)?,
            breaker_probes: sink.count(&BREAKER_PROBES)?,
            ack_wait: sink.duration(&ACK_WAIT)?,
            takeover_after,
        }))
    }

    /// A sink with default settings (for tests and tools).
    pub fn new(kind: SinkKind, url: impl Into<String>, secret: impl Into<String>) -> Self {
        let var = |setting: &Setting| Source::var_name(&setting.key.replace("<sink>", kind.name()));
        let (url_var, secret_var, url, secret) =
            (var(&URL), var(&SECRET), url.into(), secret.into());
        let source = Source::from_pairs([
            (url_var.as_str(), url.as_str()),
            (secret_var.as_str(), secret.as_str()),
        ]);
        match SinkConfig::from_source(&source, kind) {
            Ok(Some(config)) => config,
            Ok(None) => unreachable!("a sink with a URL is configured"),
            Err(error) => panic!("invalid sink settings: {error}"),
        }
    }

    /// The subjects this sink's consumer reads: its routed events and its replays.
    pub fn subjects(&self) -> Vec<String> {
        let mut subjects: Vec<String> = match &self.kinds {
            None => vec![latch_core::nats::EVENTS_SUBJECTS.to_owned()],
            Some(kinds) => kinds.iter().flat_map(|k| k.filters()).collect(),
        };
        subjects.push(latch_core::nats::replay_subject(self.kind.name()));
        subjects
    }

    /// The subjects partition `partition`'s consumer reads: its routed events stored in
    /// that partition. Partition 0 also takes the sink's replays (replays are out of order
    /// by nature; the stale-replay guard covers them) and events stored before the stream
    /// partitioned them.
    pub fn partition_subjects(&self, partition: u32) -> Vec<String> {
        let kinds: Vec<String> = match &self.kinds {
            None => vec![format!("{}*", latch_core::event::SUBJECT_PREFIX)],
            Some(kinds) => kinds.iter().map(|k| k.subject()).collect(),
        };
        let mut subjects: Vec<String> = kinds
            .iter()
            .map(|k| latch_core::nats::partition_filter(k, partition))
            .collect();
        if partition == 0 {
            subjects.extend(kinds);
            subjects.push(latch_core::nats::replay_subject(self.kind.name()));
        }
        subjects
    }
}

/// `*` for every kind, else a comma-separated list of kinds.
fn parse_kinds(text: &str) -> Result<Option<Vec<EventKind>>, String> {
    if text.trim() == "*" {
        return Ok(None);
    }
    let kinds = text
        .split(',')
        .map(|k| k.trim().parse::<EventKind>())
        .collect::<Result<Vec<_>, _>>()?;
    if kinds.is_empty() {
        return Err("name at least one event kind, or * for all".into());
    }
    Ok(Some(kinds))
}

/// Backoff between attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    pub base: Duration,
    pub max: Duration,
}

impl RetryConfig {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(RetryConfig {
            base: source.duration(&RETRY_BASE)?,
            max: source.duration(&RETRY_MAX)?,
        })
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1): a random duration up
    /// to `base * 2^(attempt-1)`, capped at `max` ("full jitter"), so that many events that
    /// failed together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::random_range(millis / 2..=millis.max(1)))
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_defaults_and_parsing() {
        let source = Source::from_pairs([
            ("LATCH_SINKS_LEGACY_URL", "http://t/tna"),
            ("LATCH_SINKS_LEGACY_SECRET", "k"),
        ]);
        let legacy = SinkConfig::from_source(&source, SinkKind::Legacy)
            .expect("valid")
            .expect("configured");
        assert_eq!(
            legacy.subjects(),
            [
                "latch.events.check_in",
                "latch.events.check_in.>",
                "latch.events.check_out",
                "latch.events.check_out.>",
                "latch.replay.legacy"
            ]
        );
        assert_eq!(
            legacy.partition_subjects(3),
            ["latch.events.check_in.3.*", "latch.events.check_out.3.*"]
        );
        assert_eq!(
            legacy.partition_subjects(0),
            [
                "latch.events.check_in.0.*",
                "latch.events.check_out.0.*",
                "latch.events.check_in",
                "latch.events.check_out",
                "latch.replay.legacy"
            ]
        );
        assert!(
            SinkConfig::from_source(&source, SinkKind::Webhooks)
                .expect("valid")
                .is_none()
        );
        let bad = Source::from_pairs([
            ("LATCH_SINKS_LEGACY_URL", "http://t/tna"),
            ("LATCH_SINKS_LEGACY_SECRET", "k"),
            ("LATCH_SINKS_LEGACY_KINDS", "check_in,teleport"),
        ]);
        let error = SinkConfig::from_source(&bad, SinkKind::Legacy).expect_err("invalid");
        assert!(error.to_string().contains("LATCH_SINKS_LEGACY_KINDS"));
    }

    #[test]
    fn a_webhook_secret_must_be_a_standard_webhooks_secret() {
        for (secret, ok) in [
            ("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", true),
            ("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", false),
            ("whsec_short", false),
            ("plain-secret", false),
        ] {
            let source = Source::from_pairs([
                ("LATCH_SINKS_WEBHOOKS_URL", "https://hooks.example/latch"),
                ("LATCH_SINKS_WEBHOOKS_SECRET", secret),
            ]);
            match SinkConfig::from_source(&source, SinkKind::Webhooks) {
                Ok(config) => {
                    assert!(ok, "{secret} was taken");
                    assert!(config.expect("configured").signing_key.is_some());
                }
                Err(error) => {
                    assert!(!ok, "{secret}: {error}");
                    assert!(error.to_string().contains("LATCH_SINKS_WEBHOOKS_SECRET"));
                    assert!(
                        !error.to_string().contains(secret),
                        "the secret is not echoed"
                    );
                }
            }
        }
        // The legacy key is any text.
        let legacy = Source::from_pairs([
            ("LATCH_SINKS_LEGACY_URL", "http://t/tna"),
            ("LATCH_SINKS_LEGACY_SECRET", "plain-secret"),
        ]);
        assert!(SinkConfig::from_source(&legacy, SinkKind::Legacy).is_ok());
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let retry = RetryConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = retry.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let fourth = retry.delay(4);
            assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(800));
            assert!(retry.delay(30) <= Duration::from_secs(1));
        }
    }
}
