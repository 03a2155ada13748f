//! The API's own settings, beyond the listener (`latch_core::config::HttpConfig`): how
//! large an offline upload may be, how readers are watched, and the rate limits.
//!
//! Read once at start from the same `LATCH_*` / TOML source as everything else; a bad value
//! is an error naming its variable.

use std::path::PathBuf;
use std::time::Duration;

use latch_core::config::{ConfigError, Setting, Source};

use crate::limits::{Rate, RateLimits};
use crate::tls::TlsFiles;

use time::OffsetDateTime;

/// Settings of the API role that are not about the HTTP listener.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Most events in one `POST /v1/readers/events:batch` (`LATCH_HTTP_BATCH_MAX_EVENTS`).
    pub batch_max_events: usize,
    pub readers: ReadersConfig,
    /// Requests per reader key and per token, failed authentications per address
    /// (`LATCH_RATE_*`).
    pub rate_limits: RateLimits,
    /// HTTPS: the certificate, key and client CA files (`LATCH_HTTP_TLS_*`); plain HTTP
    /// when absent.
    pub tls: Option<TlsFiles>,
    /// The event feed's settings (`LATCH_FEED_*`).
    pub feed: FeedConfig,
    /// How long a session cookie (`POST /v1/sessions`) lasts (`LATCH_SESSION_TTL`).
    pub session_ttl: Duration,
    /// Where the event feed reads `LATCH_EVENTS` (the `LATCH_NATS_*` settings). `latch api`
    /// always sets it; without it, the feed's endpoints answer 503.
    pub nats: Option<latch_core::nats::NatsConfig>,
    /// What webhook endpoint URLs may be (`LATCH_WEBHOOKS_ALLOW_*`), checked at creation.
    pub outbound: latch_core::outbound::Policy,
}

/// How the event feed serves live streams.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Events the process's live ring holds: a stream whose client falls further behind is
    /// closed (`LATCH_FEED_RING_SIZE`).
    pub ring_size: usize,
    /// Idle time before a keep-alive comment (`LATCH_FEED_KEEPALIVE`).
    pub keepalive: Duration,
    /// The reconnection delay suggested to clients (`retry:`, `LATCH_FEED_RETRY`).
    pub retry: Duration,
    /// Streams one process serves at once (`LATCH_FEED_MAX_STREAMS`).
    pub max_streams: usize,
    /// Streams one token (with its sessions) holds open on one process at once
    /// (`LATCH_FEED_MAX_STREAMS_PER_TOKEN`).
    pub max_streams_per_token: usize,
    /// Pages read from JetStream at once by one process, for `GET /v1/events` and for
    /// streams catching up (`LATCH_FEED_MAX_READS`); more wait their turn.
    pub max_reads: usize,
}

/// How reader clocks are judged and reader health is tracked.
#[derive(Debug, Clone)]
pub struct ReadersConfig {
    /// How often each API process looks for readers silent past their `offline_after`
    /// (`LATCH_READERS_CHECK_INTERVAL`).
    pub check_interval: Duration,
    /// How often each API process writes the last-seen times it gathered in memory
    /// (`LATCH_READERS_FLUSH_INTERVAL`).
    pub flush_interval: Duration,
    /// A reader's `occurred_at` later than server time plus this is flagged
    /// (`LATCH_READERS_MAX_FUTURE_SKEW`).
    pub max_future_skew: Duration,
    /// A reader's `occurred_at` earlier than server time minus this is flagged
    /// (`LATCH_READERS_MAX_PAST_SKEW`).
    pub max_past_skew: Duration,
    /// How long an accepted seq is remembered (`LATCH_READERS_SEQ_RETENTION`): within it, a
    /// replay is recognised; the latest seq of each reader is kept regardless.
    pub seq_retention: Duration,
}

// The defaults are the declared ones (see the settings below).
impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig::from_source(&Source::default()).expect("the declared defaults are valid")
    }
}

impl Default for ReadersConfig {
    fn default() -> Self {
        ApiConfig::default().readers
    }
}

pub const HTTP_BATCH_MAX_EVENTS: Setting = Setting {
    key: "http.batch_max_events",
    default: Some("500"),
    meaning: "events per offline upload (more: 413 too_many_events)",
};
pub const READERS_CHECK_INTERVAL: Setting = Setting {
    key: "readers.check_interval",
    default: Some("15s"),
    meaning: "how often each API process looks for readers silent past their offline_after",
};
pub const READERS_FLUSH_INTERVAL: Setting = Setting {
    key: "readers.flush_interval",
    default: Some("5s"),
    meaning: "how often each API process writes the last-seen times it gathered",
};
pub const READERS_MAX_FUTURE_SKEW: Setting = Setting {
    key: "readers.max_future_skew",
    default: Some("5m"),
    meaning: "a reader occurred_at further ahead of server time is flagged clock_skewed",
};
pub const READERS_MAX_PAST_SKEW: Setting = Setting {
    key: "readers.max_past_skew",
    default: Some("30d"),
    meaning: "a reader occurred_at further behind server time is flagged clock_skewed",
};
pub const READERS_SEQ_RETENTION: Setting = Setting {
    key: "readers.seq_retention",
    default: Some("90d"),
    meaning: "how long an accepted reader seq is remembered",
};

pub const HTTP_TLS_CERT_FILE: Setting = Setting {
    key: "http.tls_cert_file",
    default: None,
    meaning: "PEM certificate chain (leaf first): serve HTTPS (TLS 1.2/1.3) instead of HTTP; the files are read again when they change",
};
pub const HTTP_TLS_KEY_FILE: Setting = Setting {
    key: "http.tls_key_file",
    default: None,
    meaning: "PEM private key of that certificate (required with it)",
};
pub const HTTP_TLS_CLIENT_CA_FILE: Setting = Setting {
    key: "http.tls_client_ca_file",
    default: None,
    meaning: "PEM CA certificate(s) client certificates may come from: enables mutual TLS for readers enrolled with client_cert_sha256",
};
pub const RATE_READER_PER_MINUTE: Setting = Setting {
    key: "rate.reader_per_minute",
    default: Some("600"),
    meaning: "requests per minute of one reader key, per API process (0: no limit; more: 429)",
};
pub const RATE_READER_BURST: Setting = Setting {
    key: "rate.reader_burst",
    default: Some("60"),
    meaning: "requests one reader key may make at once above its rate",
};
pub const RATE_TOKEN_PER_MINUTE: Setting = Setting {
    key: "rate.token_per_minute",
    default: Some("3000"),
    meaning: "requests per minute of one admin or integrator token, per API process (0: no limit)",
};
pub const RATE_TOKEN_BURST: Setting = Setting {
    key: "rate.token_burst",
    default: Some("300"),
    meaning: "requests one token may make at once above its rate",
};
pub const RATE_FAILED_AUTH_PER_MINUTE: Setting = Setting {
    key: "rate.failed_auth_per_minute",
    default: Some("60"),
    meaning: "failed authentications (401) per minute from one client address before it gets 429 (0: no limit)",
};
pub const RATE_FAILED_AUTH_BURST: Setting = Setting {
    key: "rate.failed_auth_burst",
    default: Some("30"),
    meaning: "failed authentications one client address may make at once above that rate",
};

pub const FEED_RING_SIZE: Setting = Setting {
    key: "feed.ring_size",
    default: Some("4096"),
    meaning: "events each API process keeps for its live streams; a client further behind is disconnected (lagged) and resumes from its last event id",
};
pub const FEED_KEEPALIVE: Setting = Setting {
    key: "feed.keepalive",
    default: Some("15s"),
    meaning: "idle time before an event stream sends a keep-alive comment",
};
pub const FEED_RETRY: Setting = Setting {
    key: "feed.retry",
    default: Some("2s"),
    meaning: "the reconnection delay an event stream suggests to its client (retry:)",
};
pub const FEED_MAX_STREAMS: Setting = Setting {
    key: "feed.max_streams",
    default: Some("10000"),
    meaning: "event streams one API process serves at once (more: 503 too_many_streams)",
};
pub const FEED_MAX_STREAMS_PER_TOKEN: Setting = Setting {
    key: "feed.max_streams_per_token",
    default: Some("100"),
    meaning: "event streams one token (with its sessions) holds open on one API process (more: too_many_streams)",
};
pub const FEED_MAX_READS: Setting = Setting {
    key: "feed.max_reads",
    default: Some("32"),
    meaning: "pages one API process reads from JetStream at once (GET /v1/events, streams catching up); more wait their turn",
};
pub const SESSION_TTL: Setting = Setting {
    key: "session.ttl",
    default: Some("8h"),
    meaning: "how long a session cookie from POST /v1/sessions lasts",
};

/// The settings this crate reads.
pub const SETTINGS: &[Setting] = &[
    HTTP_BATCH_MAX_EVENTS,
    HTTP_TLS_CERT_FILE,
    HTTP_TLS_KEY_FILE,
    HTTP_TLS_CLIENT_CA_FILE,
    READERS_CHECK_INTERVAL,
    READERS_FLUSH_INTERVAL,
    READERS_MAX_FUTURE_SKEW,
    READERS_MAX_PAST_SKEW,
    READERS_SEQ_RETENTION,
    RATE_READER_PER_MINUTE,
    RATE_READER_BURST,
    RATE_TOKEN_PER_MINUTE,
    RATE_TOKEN_BURST,
    RATE_FAILED_AUTH_PER_MINUTE,
    RATE_FAILED_AUTH_BURST,
    FEED_RING_SIZE,
    FEED_KEEPALIVE,
    FEED_RETRY,
    FEED_MAX_STREAMS,
    FEED_MAX_STREAMS_PER_TOKEN,
    FEED_MAX_READS,
    SESSION_TTL,
];

/// Bytes an offline upload may take per event (the body limit of the batch endpoint is
/// this times `batch_max_events`, or the general body limit if larger).
pub const BATCH_BYTES_PER_EVENT: usize = 1024;

impl ApiConfig {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let positive = |setting: &Setting| -> Result<Duration, ConfigError> {
            let value = source.duration(setting)?;
            if value.is_zero() {
                return Err(Source::invalid_setting(setting, "must be longer than 0"));
            }
            Ok(value)
        };
        Ok(ApiConfig {
            batch_max_events: source.count(&HTTP_BATCH_MAX_EVENTS)?,
            readers: ReadersConfig {
                check_interval: positive(&READERS_CHECK_INTERVAL)?,
                flush_interval: positive(&READERS_FLUSH_INTERVAL)?,
                max_future_skew: source.duration(&READERS_MAX_FUTURE_SKEW)?,
                max_past_skew: source.duration(&READERS_MAX_PAST_SKEW)?,
                seq_retention: positive(&READERS_SEQ_RETENTION)?,
            },
            rate_limits: RateLimits {
                reader: rate(source, &RATE_READER_PER_MINUTE, &RATE_READER_BURST)?,
                token: rate(source, &RATE_TOKEN_PER_MINUTE, &RATE_TOKEN_BURST)?,
                failed_auth: rate(
                    source,
                    &RATE_FAILED_AUTH_PER_MINUTE,
                    &RATE_FAILED_AUTH_BURST,
                )?,
            },
            tls: tls_files(source)?,
            feed: FeedConfig {
                ring_size: source.count(&FEED_RING_SIZE)?,
                keepalive: positive(&FEED_KEEPALIVE)?,
                retry: positive(&FEED_RETRY)?,
                max_streams: source.count(&FEED_MAX_STREAMS)?,
                max_streams_per_token: source.count(&FEED_MAX_STREAMS_PER_TOKEN)?,
                max_reads: source.count(&FEED_MAX_READS)?,
            },
            session_ttl: positive(&SESSION_TTL)?,
            nats: None,
            outbound: latch_core::outbound::Policy::from_source(source)?,
        })
    }

    /// The body limit of the batch endpoint.
    pub fn batch_body_limit(&self, body_limit_bytes: usize) -> usize {
        body_limit_bytes.max(self.batch_max_events.saturating_mul(BATCH_BYTES_PER_EVENT))
    }
}

/// The TLS files, if HTTPS is configured: a certificate needs its key and the other way
/// round, and a client CA needs both.
fn tls_files(source: &Source) -> Result<Option<TlsFiles>, ConfigError> {
    let cert: Option<PathBuf> = source.optional(&HTTP_TLS_CERT_FILE)?;
    let key: Option<PathBuf> = source.optional(&HTTP_TLS_KEY_FILE)?;
    let client_ca: Option<PathBuf> = source.optional(&HTTP_TLS_CLIENT_CA_FILE)?;
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, None) => Err(Source::invalid_setting(
            &HTTP_TLS_CLIENT_CA_FILE,
            "needs LATCH_HTTP_TLS_CERT_FILE and LATCH_HTTP_TLS_KEY_FILE",
        )),
        (Some(_), None) => Err(Source::invalid_setting(
            &HTTP_TLS_KEY_FILE,
            "must be set with LATCH_HTTP_TLS_CERT_FILE",
        )),
        (None, Some(_)) => Err(Source::invalid_setting(
            &HTTP_TLS_CERT_FILE,
            "must be set with LATCH_HTTP_TLS_KEY_FILE",
        )),
    }
}

/// A rate and its burst; a burst of 0 is refused while the rate is on.
fn rate(source: &Source, per_minute: &Setting, burst: &Setting) -> Result<Rate, ConfigError> {
    let rate = Rate {
        per_minute: source.value(per_minute)?,
        burst: source.value(burst)?,
    };
    if rate.per_minute > 0 && rate.burst == 0 {
        return Err(Source::invalid_setting(burst, "must be at least 1"));
    }
    Ok(rate)
}

impl ReadersConfig {
    /// Whether a reader's clock reading is too far from the server's to be trusted. An
    /// absent reading (the server's own time stands in) is never skewed.
    pub fn is_skewed(&self, occurred_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
        let Some(at) = occurred_at else {
            return false;
        };
        // Absurdly large bounds saturate to "no bound" instead of overflowing.
        let bound = |d: Duration| time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
        let too_late = now
            .checked_add(bound(self.max_future_skew))
            .is_some_and(|limit| at > limit);
        let too_early = now
            .checked_sub(bound(self.max_past_skew))
            .is_some_and(|limit| at < limit);
        too_late || too_early
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config = ApiConfig::from_source(&Source::default()).expect("defaults");
        assert_eq!(config.batch_max_events, 500);
        assert_eq!(config.readers.max_future_skew, Duration::from_secs(300));
        assert_eq!(
            config.readers.max_past_skew,
            Duration::from_secs(30 * 86_400)
        );

        let source = Source::from_pairs([
            ("LATCH_HTTP_BATCH_MAX_EVENTS", "20"),
            ("LATCH_READERS_CHECK_INTERVAL", "100ms"),
        ]);
        let config = ApiConfig::from_source(&source).expect("valid");
        assert_eq!(config.batch_max_events, 20);
        assert_eq!(config.readers.check_interval, Duration::from_millis(100));
        assert_eq!(config.batch_body_limit(64 * 1024), 64 * 1024);
        assert_eq!(config.batch_body_limit(1024), 20 * 1024);
        assert_eq!(
            config.rate_limits.reader,
            Rate {
                per_minute: 600,
                burst: 60
            }
        );
        let off = Source::from_pairs([("LATCH_RATE_READER_PER_MINUTE", "0")]);
        let config = ApiConfig::from_source(&off).expect("0 turns a limit off");
        assert_eq!(config.rate_limits.reader.per_minute, 0);
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("LATCH_HTTP_BATCH_MAX_EVENTS", "0"),
            ("LATCH_READERS_CHECK_INTERVAL", "0s"),
            ("LATCH_READERS_MAX_PAST_SKEW", "a month"),
            ("LATCH_RATE_READER_BURST", "0"),
            ("LATCH_RATE_TOKEN_PER_MINUTE", "-1"),
            ("LATCH_HTTP_TLS_CERT_FILE", "/etc/latch/cert.pem"),
            ("LATCH_HTTP_TLS_CLIENT_CA_FILE", "/etc/latch/ca.pem"),
        ] {
            let err =
                ApiConfig::from_source(&Source::from_pairs([(var, value)])).expect_err("invalid");
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn skew_has_bounds_on_both_sides() {
        let config = ReadersConfig::default();
        let now = OffsetDateTime::now_utc();
        assert!(!config.is_skewed(None, now));
        assert!(!config.is_skewed(Some(now - time::Duration::days(29)), now));
        assert!(config.is_skewed(Some(now - time::Duration::days(31)), now));
        assert!(!config.is_skewed(Some(now + time::Duration::minutes(4)), now));
        assert!(config.is_skewed(Some(now + time::Duration::minutes(6)), now));
    }
}
