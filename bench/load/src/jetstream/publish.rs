//! The two publishing loops, the stream they fill, and the run that ties them together.
//!
//! - `single`: JetStream publishes, `in_flight` acknowledgements outstanding. Each
//!   acknowledgement is awaited by its own task, so its latency is taken when it arrives,
//!   not when the sender next looks.
//! - `atomic`: `in_flight` tasks, each sending one atomic batch at a time the way the
//!   relay does (core publishes with the batch headers, the last one a request carrying
//!   `Nats-Batch-Commit`, whose answer acknowledges the batch).
//!
//! A message belongs to the phase (warm-up or measured) in which it was sent; a batch to
//! the phase of its first message. Any refused or unanswered publish ends the run with an
//! error: a benchmark that lost messages measured nothing. At the end the stream's stored
//! count must equal what was acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use latch_core::shutdown::CancellationToken;
use serde::Deserialize;

use super::config::{PublishConfig, PublishMode};
use super::message;
use super::report::PublishReport;

/// Acknowledgement latencies in microseconds, 1 µs to 10 minutes, 3 significant digits.
const HIGHEST_US: u64 = 600_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measured,
}

/// When the run's phases begin and end, fixed at its start.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    measured_start: Instant,
    measured_end: Option<Instant>,
}

impl Timeline {
    fn phase(&self, at: Instant) -> Phase {
        if at < self.measured_start {
            Phase::Warmup
        } else {
            Phase::Measured
        }
    }
}

/// What every sender shares.
struct Shared {
    config: PublishConfig,
    timeline: Timeline,
    payload: Bytes,
    /// The number of the last message handed out (messages are numbered from 1).
    numbered: AtomicU64,
    /// Measured messages sent so far (for `--messages`).
    measured_sent: AtomicU64,
    shutdown: CancellationToken,
}

impl Shared {
    /// Whether a sender may start another message (or batch of `n`) at `now`; counts it
    /// as measured when it is.
    fn may_send(&self, now: Instant, n: u64) -> Option<Phase> {
        if self.shutdown.is_cancelled() || self.timeline.measured_end.is_some_and(|e| now >= e) {
            return None;
        }
        let phase = self.timeline.phase(now);
        if phase == Phase::Measured {
            let before = self.measured_sent.fetch_add(n, Ordering::Relaxed);
            if self.config.messages.is_some_and(|cap| before >= cap) {
                return None;
            }
        }
        Some(phase)
    }

    /// Numbers for the next `n` messages: the first of them.
    fn take_numbers(&self, n: u64) -> u64 {
        self.numbered.fetch_add(n, Ordering::Relaxed) + 1
    }
}

/// What one sender measured.
pub(crate) struct Tally {
    /// Latency of each measured acknowledgement (a message, or a whole batch), in µs.
    pub histogram: Histogram<u64>,
    /// Measured messages acknowledged.
    pub messages: u64,
    /// Measured acknowledgements (= messages for single publishes, batches for atomic).
    pub acks: u64,
    /// Warm-up messages acknowledged (discarded).
    pub warmup_messages: u64,
    /// Acknowledgements that said `duplicate` (never expected: every id is new).
    pub duplicates: u64,
    /// When the last measured acknowledgement arrived.
    pub last_done: Option<Instant>,
}

impl Tally {
    fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            histogram: Histogram::new_with_bounds(1, HIGHEST_US, 3)
                .context("cannot create a latency histogram")?,
            messages: 0,
            acks: 0,
            warmup_messages: 0,
            duplicates: 0,
            last_done: None,
        })
    }

    fn record(&mut self, phase: Phase, messages: u64, sent: Instant, done: Instant) {
        match phase {
            Phase::Warmup => self.warmup_messages += messages,
            Phase::Measured => {
                let micros = done.saturating_duration_since(sent).as_micros() as u64;
                self.histogram
                    .saturating_record(micros.clamp(1, HIGHEST_US));
                self.messages += messages;
                self.acks += 1;
                self.last_done = Some(self.last_done.map_or(done, |last| last.max(done)));
            }
        }
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .context("cannot merge latency histograms")?;
        self.messages += other.messages;
        self.acks += other.acks;
        self.warmup_messages += other.warmup_messages;
        self.duplicates += other.duplicates;
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }
}

/// Runs `config` to its end and reports what was measured.
pub async fn run(config: PublishConfig) -> anyhow::Result<PublishReport> {
    run_until(config, CancellationToken::new()).await
}

/// Runs `config` until its end or until `shutdown` is cancelled (then what is in flight
/// is acknowledged and the report covers it).
pub async fn run_until(
    config: PublishConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<PublishReport> {
    config.validate()?;
    let client = async_nats::ConnectOptions::new()
        .name("latch-load jetstream")
        .request_timeout(Some(config.timeout))
        .connection_timeout(Duration::from_secs(5))
        .connect(&config.url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.url))?;
    let js = jetstream::ContextBuilder::new()
        .timeout(config.timeout)
        .max_ack_inflight(config.mode.in_flight().max(1))
        .backpressure_on_inflight(true)
        .build(client.clone());
    recreate_stream(&js, &config).await?;

    let start = Instant::now();
    let measured_start = start + config.warmup;
    let shared = Arc::new(Shared {
        timeline: Timeline {
            measured_start,
            measured_end: config.duration.map(|d| measured_start + d),
        },
        payload: message::payload(config.size),
        numbered: AtomicU64::new(0),
        measured_sent: AtomicU64::new(0),
        shutdown,
        config: config.clone(),
    });
    tracing::debug!(mode = %config.mode, stream = %config.stream, "publishing run starting");
    let outcome = match config.mode {
        PublishMode::Single { in_flight } => single(&js, &shared, in_flight).await,
        PublishMode::Atomic { in_flight, .. } => atomic(&client, &shared, in_flight).await,
    };
    let checked = match outcome {
        Ok(tally) => check_stored(&js, &config, tally).await,
        Err(error) => Err(error),
    };
    if !config.keep_stream
        && let Err(error) = js.delete_stream(&config.stream).await
    {
        tracing::warn!(%error, stream = %config.stream, "cannot delete the benchmark stream");
    }
    let _ = client.flush().await;
    let (tally, stored) = checked?;
    ensure!(
        tally.messages > 0,
        "no measured message was acknowledged (is the duration shorter than one acknowledgement?)"
    );
    Ok(PublishReport::new(&config, measured_start, tally, stored))
}

/// Deletes the stream if it exists and creates it anew: file storage, latch's duplicate
/// window, atomic publishing allowed — the event stream's settings under another name.
async fn recreate_stream(js: &jetstream::Context, config: &PublishConfig) -> anyhow::Result<()> {
    if js.get_stream(&config.stream).await.is_ok() {
        js.delete_stream(&config.stream)
            .await
            .with_context(|| format!("cannot delete the old stream {}", config.stream))?;
    }
    let events = latch_core::nats::events_stream_config(&latch_core::nats::NatsConfig::for_url(
        config.url.clone(),
    ));
    js.create_stream(stream::Config {
        name: config.stream.clone(),
        subjects: vec![config.stream_subjects()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: events.duplicate_window,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .with_context(|| {
        format!(
            "cannot create stream {} for {} (does another stream take these subjects?)",
            config.stream,
            config.stream_subjects()
        )
    })?;
    Ok(())
}

/// The stream must hold exactly what was acknowledged.
async fn check_stored(
    js: &jetstream::Context,
    config: &PublishConfig,
    tally: Tally,
) -> anyhow::Result<(Tally, u64)> {
    let mut stream = js
        .get_stream(&config.stream)
        .await
        .with_context(|| format!("cannot read stream {}", config.stream))?;
    let stored = stream.info().await?.state.messages;
    let acknowledged = tally.messages + tally.warmup_messages;
    ensure!(
        stored == acknowledged,
        "stream {} holds {stored} message(s) but {acknowledged} were acknowledged",
        config.stream
    );
    Ok((tally, stored))
}

async fn single(
    js: &jetstream::Context,
    shared: &Arc<Shared>,
    in_flight: usize,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut pending = FuturesUnordered::new();
    let subject = async_nats::Subject::from(shared.config.subject.as_str());
    loop {
        while pending.len() >= in_flight {
            if let Some(done) = pending.next().await {
                record_single(&mut tally, done)?;
            }
        }
        let now = Instant::now();
        let Some(phase) = shared.may_send(now, 1) else {
            break;
        };
        let n = shared.take_numbers(1);
        let ack = js
            .publish_with_headers(subject.clone(), message::headers(n), shared.payload.clone())
            .await
            .with_context(|| format!("cannot publish message {n}"))?;
        // Awaited by its own task, so the latency is taken when the answer arrives.
        pending.push(tokio::spawn(async move {
            let result = ack.await;
            (phase, now, Instant::now(), result)
        }));
    }
    while let Some(done) = pending.next().await {
        record_single(&mut tally, done)?;
    }
    Ok(tally)
}

type SingleDone = (
    Phase,
    Instant,
    Instant,
    Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
);

fn record_single(
    tally: &mut Tally,
    done: Result<SingleDone, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    let (phase, sent, at, result) = done.context("an acknowledgement task failed")?;
    let ack = result.context("a publish was not acknowledged")?;
    if ack.duplicate {
        tally.duplicates += 1;
    }
    tally.record(phase, 1, sent, at);
    Ok(())
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CommitAnswer {
    Err { error: ApiError },
    Ack { count: u64 },
}

async fn atomic(
    client: &async_nats::Client,
    shared: &Arc<Shared>,
    in_flight: usize,
) -> anyhow::Result<Tally> {
    let run_nonce: u64 = rand::random();
    let mut senders = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let client = client.clone();
        let shared = Arc::clone(shared);
        senders.push(tokio::spawn(async move {
            batch_sender(&client, &shared, run_nonce).await
        }));
    }
    let mut tally = Tally::new()?;
    let mut first_error = None;
    for sender in senders {
        match sender.await.context("a batch sender failed") {
            Ok(Ok(part)) => tally.merge(part)?,
            Ok(Err(error)) | Err(error) => {
                // One failure stops the others soon: they see the same server.
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(tally),
    }
}

/// Sends one atomic batch at a time until the run ends.
async fn batch_sender(
    client: &async_nats::Client,
    shared: &Shared,
    run_nonce: u64,
) -> anyhow::Result<Tally> {
    let batch = shared.config.mode.batch();
    let subject = async_nats::Subject::from(shared.config.subject.as_str());
    let mut tally = Tally::new()?;
    loop {
        let started = Instant::now();
        let Some(phase) = shared.may_send(started, batch as u64) else {
            break;
        };
        let first = shared.take_numbers(batch as u64);
        let batch_id = format!("{run_nonce:016x}-{first}");
        for index in 1..batch {
            let n = first + index as u64 - 1;
            client
                .publish_with_headers(
                    subject.clone(),
                    message::batch_headers(n, &batch_id, index, false),
                    shared.payload.clone(),
                )
                .await
                .with_context(|| format!("cannot send message {index} of batch {batch_id}"))?;
        }
        let last = first + batch as u64 - 1;
        let request = async_nats::Request::new()
            .headers(message::batch_headers(last, &batch_id, batch, true))
            .payload(shared.payload.clone())
            .timeout(Some(shared.config.timeout));
        let answer = client
            .send_request(subject.clone(), request)
            .await
            .with_context(|| format!("batch {batch_id} was not acknowledged"))?;
        let done = Instant::now();
        match serde_json::from_slice::<CommitAnswer>(&answer.payload) {
            Ok(CommitAnswer::Ack { count }) if count == batch as u64 => {}
            Ok(CommitAnswer::Ack { count }) => {
                bail!("batch {batch_id} of {batch} was acknowledged as {count} message(s)")
            }
            Ok(CommitAnswer::Err { error }) => bail!(
                "the server refused batch {batch_id}: {} (err_code {}){}",
                error.description,
                error.err_code,
                if error.description.contains("not enabled")
                    || error.description.contains("disabled")
                {
                    " — the stream needs allow_atomic_publish (nats-server 2.12 or later)"
                } else {
                    ""
                }
            ),
            Err(error) => bail!(
                "unreadable acknowledgement of batch {batch_id}: {error}: {}",
                String::from_utf8_lossy(&answer.payload)
            ),
        }
        tally.record(phase, batch as u64, started, done);
    }
    Ok(tally)
}
