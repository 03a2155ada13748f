//! NATS: the connection and the streams latch owns.
//!
//! `LATCH_EVENTS` holds every event, file-backed, with a duplicate window so that a
//! republish of the same outbox row (`Nats-Msg-Id`) after a relay crash is stored once,
//! and atomic batch publishing enabled for the relay. Whoever starts first (relay or
//! worker) creates or updates it with the same configuration.
//!
//! **Partitions.** The relay publishes each event on `latch.events.<kind>.<key>`, `<key>`
//! being its ordering key (the holder, or the door). The stream maps that subject with
//! NATS's own deterministic subject partitioning as it stores it:
//! `latch.events.<kind>.<partition>.<key>`, `<partition>` = `partition(P, key)`. One
//! holder's events are all in one partition, so a consumer per partition sees each holder's
//! events in stream order, and workers can share the partitions (see `latch_worker`).
//! Events stored before partitioning (`latch.events.<kind>`) keep their subject.

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

/// True when a stream lookup failed because the stream does not exist (nothing created it
/// yet), as opposed to NATS failing to answer.
pub fn stream_missing(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// `latch.replay.<sink>`: consumed only by that sink.
pub fn replay_subject(sink: &str) -> String {
    format!("latch.replay.{sink}")
}

/// The subject the relay publishes an outbox row on. An event's (`latch.events.<kind>`)
/// gets its ordering key as one more token, which the stream's partitioning reads; a key is
/// a UUID, and anything outside `[A-Za-z0-9_-]` is replaced so that it stays one token (the
/// same key always gives the same token, so the same partition). Other subjects (a
/// republish to one sink, `latch.replay.<sink>`) are kept as they are: replays are not
/// partitioned.
pub fn publish_subject(kind_subject: &str, ordering_key: &str) -> String {
    if !kind_subject.starts_with(crate::event::SUBJECT_PREFIX) {
        return kind_subject.to_owned();
    }
    let token: String = ordering_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let token = if token.is_empty() {
        "_".to_owned()
    } else {
        token
    };
    format!("{kind_subject}.{token}")
}

/// What a consumer of these kinds' events (`latch.events.<kind>`) filters on: the events
/// stored before partitioning and those stored after (`latch.events.<kind>.<partition>.<key>`).
pub fn kind_filters(kind_subject: &str) -> [String; 2] {
    [kind_subject.to_owned(), format!("{kind_subject}.>")]
}

/// What partition `partition`'s consumer filters on for a kind subject
/// (`latch.events.<kind>`, or `latch.events.*` for every kind).
pub fn partition_filter(kind_subject: &str, partition: u32) -> String {
    format!("{kind_subject}.{partition}.*")
}

/// The partition count the stream's subject mapping uses, if it partitions.
pub fn stream_partitions(config: &stream::Config) -> Option<u32> {
    let transform = config.subject_transform.as_ref()?;
    let rest = transform.destination.split("partition(").nth(1)?;
    rest.split(',').next()?.trim().parse().ok()
}

/// `latch.dlq.<sink>`.
pub fn dlq_subject(sink: &str) -> String {
    format!("latch.dlq.{sink}")
}

/// How latch reaches NATS and what its event stream keeps.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// One server, or several separated by commas (the seed servers of a cluster; the
    /// client learns the others from them and reconnects to any).
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
    /// Partitions of the event stream by ordering key; fixed once the stream exists.
    pub partitions: u32,
    /// Copies of each stream kept by a JetStream cluster (1 on a single server; 3 on a
    /// cluster of three or more survives the loss of one server).
    pub replicas: usize,
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
        let partitions = source.value::<u32>(&PARTITIONS)?;
        if !(1..=1024).contains(&partitions) {
            return Err(Source::invalid_setting(&PARTITIONS, "must be 1 to 1024"));
        }
        let replicas = source.value::<usize>(&REPLICAS)?;
        if !(1..=5).contains(&replicas) {
            return Err(Source::invalid_setting(&REPLICAS, "must be 1 to 5"));
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
            partitions,
            replicas,
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
            partitions: 8,
            replicas: 1,
        }
    }

    /// The servers of `url`, in order.
    pub fn servers(&self) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
        let servers = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<async_nats::ServerAddr>()
                    .with_context(|| format!("not a NATS server URL: {s} (LATCH_NATS_URL)"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!servers.is_empty(), "LATCH_NATS_URL names no server");
        Ok(servers)
    }
}

pub const URL: Setting = Setting {
    key: "nats.url",
    default: None,
    meaning: "the NATS server, or a cluster's servers separated by commas (default nats://127.0.0.1:4222, with a warning)",
};
pub const PARTITIONS: Setting = Setting {
    key: "nats.partitions",
    default: Some("8"),
    meaning: "partitions of the event stream by ordering key (NATS subject partitioning), 1 to 1024; fixed when the stream is created",
};
pub const REPLICAS: Setting = Setting {
    key: "nats.replicas",
    default: Some("1"),
    meaning: "copies a JetStream cluster keeps of each stream (3 on a cluster of three)",
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
    let servers = config.servers()?;
    if servers.iter().any(|s| s.as_url_str().starts_with("tls://")) {
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
        .connect(servers)
        .await
        .with_context(|| format!("cannot connect to NATS at {} (LATCH_NATS_URL)", config.url))
}

/// Connects once, for an operator command: fails within 5 s rather than retrying.
pub async fn connect_once(config: &NatsConfig, name: &str) -> anyhow::Result<async_nats::Client> {
    let servers = config.servers()?;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(config.request_timeout));
    if let Some(ca) = &config.ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if servers.iter().any(|s| s.as_url_str().starts_with("tls://")) {
        options = options.require_tls(true);
    }
    options
        .connect(servers)
        .await
        .with_context(|| format!("cannot reach NATS at {} (LATCH_NATS_URL)", config.url))
}

/// Whether `error` says JetStream is not answering yet (a cluster electing its leaders, a
/// server starting or recovering its streams) rather than refusing.
pub fn unavailable(error: &anyhow::Error) -> bool {
    use jetstream::context::{CreateStreamError, CreateStreamErrorKind, GetStreamError};
    use jetstream::stream::{ConsumerError, ConsumerErrorKind};
    let temporary = |e: &jetstream::Error| {
        e.code() == 503
            || [
                jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE,
                jetstream::ErrorCode::CLUSTER_NOT_ACTIVE,
                jetstream::ErrorCode::CLUSTER_NOT_LEADER,
            ]
            .contains(&e.error_code())
    };
    error.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<CreateStreamError>() {
            return match e.kind() {
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                    true
                }
                CreateStreamErrorKind::JetStream(e) => temporary(&e),
                _ => false,
            };
        }
        if let Some(e) = cause.downcast_ref::<GetStreamError>() {
            return match e.kind() {
                jetstream::context::GetStreamErrorKind::Request => true,
                jetstream::context::GetStreamErrorKind::JetStream(e) => temporary(&e),
                _ => false,
            };
        }
        if let Some(e) = cause.downcast_ref::<ConsumerError>() {
            return match e.kind() {
                ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request => true,
                ConsumerErrorKind::JetStream(e) => temporary(&e),
                _ => false,
            };
        }
        false
    })
}

/// Runs `attempt` until it succeeds or fails otherwise than by JetStream not answering yet
/// (see [`unavailable`]), waiting a little longer each time (up to 5 s): a role started
/// while its NATS cluster is still electing leaders waits for it instead of exiting.
pub async fn until_available<T, F, Fut>(what: &str, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut wait = Duration::from_millis(200);
    let mut said = false;
    loop {
        match attempt().await {
            Err(error) if unavailable(&error) => {
                if !std::mem::replace(&mut said, true) {
                    tracing::warn!(
                        what,
                        error = format!("{error:#}"),
                        "JetStream is not answering yet; retrying"
                    );
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
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
        subject_transform: Some(stream::SubjectTransform {
            source: format!("{}*.*", crate::event::SUBJECT_PREFIX),
            destination: format!(
                "{}{{{{wildcard(1)}}}}.{{{{partition({},2)}}}}.{{{{wildcard(2)}}}}",
                crate::event::SUBJECT_PREFIX,
                config.partitions
            ),
        }),
        num_replicas: config.replicas,
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
        num_replicas: config.replicas,
        ..Default::default()
    }
}

/// Creates the events stream, or brings an existing one to this configuration. An
/// existing stream that partitions differently is refused: changing the count would
/// move holders to other partitions while their earlier events wait in the old ones.
pub async fn ensure_events_stream(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> anyhow::Result<stream::Info> {
    match js.get_stream(&config.events_stream).await {
        Ok(existing) => {
            // The lookup answers the stream's configuration: no second request.
            if let Some(partitions) = stream_partitions(&existing.cached_info().config) {
                anyhow::ensure!(
                    partitions == config.partitions,
                    "stream {} has {partitions} partitions but LATCH_NATS_PARTITIONS is {}: \
                     the count cannot change in place (set it to {partitions})",
                    config.events_stream,
                    config.partitions
                );
            }
        }
        Err(error) if stream_missing(&error) => {}
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context(format!("cannot look up stream {}", config.events_stream)));
        }
    }
    js.create_or_update_stream(events_stream_config(config))
        .await
        .with_context(|| format!("cannot create or update stream {}", config.events_stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_published_with_their_key_and_replays_as_they_are() {
        assert_eq!(
            publish_subject("latch.events.check_in", "0190-ab"),
            "latch.events.check_in.0190-ab"
        );
        assert_eq!(
            publish_subject("latch.events.check_in", "a.b c*>"),
            "latch.events.check_in.a_b_c__"
        );
        assert_eq!(
            publish_subject("latch.events.check_in", ""),
            "latch.events.check_in._"
        );
        assert_eq!(
            publish_subject("latch.replay.legacy", "0190-ab"),
            "latch.replay.legacy"
        );
    }
}
