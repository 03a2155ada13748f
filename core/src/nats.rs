//! NATS: the connection and the streams latch owns.
//!
//! `LATCH_EVENTS` holds every event (`latch.events.<kind>`), file-backed, with a duplicate
//! window so that a republish of the same outbox row (`Nats-Msg-Id`) after a relay crash
//! is stored once, and atomic batch publishing enabled for the relay. Whoever starts first
//! (relay or worker) creates or updates it with the same configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, stream};

use crate::config::{ConfigError, Setting, Source};

pub const EVENTS_STREAM: &str = "LATCH_EVENTS";
pub const EVENTS_SUBJECTS: &str = "latch.events.>";
/// Replays of dead letters, one subject per sink, in the events stream.
pub const REPLAY_SUBJECTS: &str = "latch.replay.>";
pub const DLQ_STREAM: &str = "LATCH_DLQ";
pub const DLQ_SUBJECTS: &str = "latch.dlq.>";

/// `latch.replay.<sink>`: consumed only by that sink.
/// True when a stream lookup failed because the stream does not exist (nothing created it
/// yet), as opposed to NATS failing to answer.
pub fn stream_missing(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

pub fn replay_subject(sink: &str) -> String {
    format!("latch.replay.{sink}")
}

/// `latch.dlq.<sink>`.
pub fn dlq_subject(sink: &str) -> String {
    format!("latch.dlq.{sink}")
}

/// How latch reaches NATS and what its event stream keeps.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub url: String,
    /// Stream name, `LATCH_EVENTS` unless several latch installations share one server.
    pub events_stream: String,
    /// How long the stream remembers a message id; a republish inside it is a no-op.
    pub duplicate_window: Duration,
    /// How long events stay in the stream (replay horizon for sinks).
    pub max_age: Duration,
    /// Bounds every request to the server (publish acks included).
    pub request_timeout: Duration,
    /// PEM CA the server's certificate must come from; with it the connection must be TLS.
    /// (`tls://` URLs require TLS too, verified against the system's trust store.)
    pub ca_file: Option<PathBuf>,
}

impl NatsConfig {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let duplicate_window = source.duration(&DUPLICATE_WINDOW)?;
        if duplicate_window < Duration::from_secs(10 * 60) {
            return Err(Source::invalid_setting(
                &DUPLICATE_WINDOW,
                "must be at least 10m: it is what makes a republish after a crash harmless",
            ));
        }
        let url = match source.optional::<String>(&URL)? {
            Some(url) => url,
            None => {
                // Whatever listens there would be taken for latch's NATS: say so.
                tracing::warn!(
                    url = DEFAULT_URL,
                    "LATCH_NATS_URL is not set: using the default"
                );
                DEFAULT_URL.to_owned()
            }
        };
        Ok(NatsConfig {
            url,
            events_stream: source.value(&EVENTS_STREAM_NAME)?,
            duplicate_window,
            max_age: source.duration(&MAX_AGE)?,
            request_timeout: source.duration(&REQUEST_TIMEOUT)?,
            ca_file: source.optional(&CA_FILE)?,
        })
    }

    /// A configuration for tests and tools: this URL, defaults for the rest.
    pub fn for_url(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            events_stream: EVENTS_STREAM.to_owned(),
            duplicate_window: Duration::from_secs(20 * 60),
            max_age: Duration::from_secs(7 * 86_400),
            request_timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }
}

pub const URL: Setting = Setting {
    key: "nats.url",
    default: None,
    meaning: "the NATS server (default nats://127.0.0.1:4222, with a warning)",
};
pub const EVENTS_STREAM_NAME: Setting = Setting {
    key: "nats.events_stream",
    default: Some(EVENTS_STREAM),
    meaning: "the event stream",
};
pub const DUPLICATE_WINDOW: Setting = Setting {
    key: "nats.duplicate_window",
    default: Some("20m"),
    meaning: "the stream's duplicate window, at least 10m",
};
pub const MAX_AGE: Setting = Setting {
    key: "nats.max_age",
    default: Some("7d"),
    meaning: "how long events stay in the stream",
};
pub const CA_FILE: Setting = Setting {
    key: "nats.ca_file",
    default: None,
    meaning: "PEM CA certificate(s) the NATS server's certificate must come from; with it the connection must be TLS",
};
pub const REQUEST_TIMEOUT: Setting = Setting {
    key: "nats.request_timeout",
    default: Some("5s"),
    meaning: "bounds every publish acknowledgement",
};

/// Where NATS is looked for when `LATCH_NATS_URL` is not set (a warning is logged).
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// Connects, retrying in the background if the server is not up yet: roles start and keep
/// running while NATS is down, and log when the connection changes state.
pub async fn connect(config: &NatsConfig, name: &str) -> anyhow::Result<async_nats::Client> {
    let role = name.to_owned();
    let url = config.url.clone();
    let mut options = async_nats::ConnectOptions::new();
    if let Some(ca) = &config.ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if config.url.starts_with("tls://") {
        options = options.require_tls(true);
    }
    options
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .request_timeout(Some(config.request_timeout))
        .event_callback(move |event| {
            let (role, url) = (role.clone(), url.clone());
            async move {
                match event {
                    async_nats::Event::Connected => tracing::info!(role, url, "connected to NATS"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!(role, "disconnected from NATS; reconnecting")
                    }
                    other => tracing::info!(role, event = %other, "NATS event"),
                }
            }
        })
        .connect(&config.url)
        .await
        .with_context(|| format!("cannot connect to NATS at {} (LATCH_NATS_URL)", config.url))
}

pub fn events_stream_config(config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: config.events_stream.clone(),
        subjects: vec![EVENTS_SUBJECTS.to_owned(), REPLAY_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: config.duplicate_window,
        max_age: config.max_age,
        allow_atomic_publish: true,
        ..Default::default()
    }
}

/// The dead-letter stream: what a sink could not take, kept until an operator replays or
/// purges it (30 days at most). Its duplicate window makes a dead letter written twice
/// (a worker crash between writing it and settling the original) one entry.
pub fn dlq_stream_config(config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: DLQ_STREAM.to_owned(),
        subjects: vec![DLQ_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: config.duplicate_window,
        max_age: Duration::from_secs(30 * 86_400),
        ..Default::default()
    }
}

/// Creates the events stream, or brings an existing one to this configuration.
pub async fn ensure_events_stream(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> anyhow::Result<stream::Info> {
    js.create_or_update_stream(events_stream_config(config))
        .await
        .with_context(|| format!("cannot create or update stream {}", config.events_stream))
}
