//! One sink's delivery loop: pull, spread over lanes, call, settle.
//!
//! **Order.** A durable pull consumer hands over the sink's messages in stream order.
//! Each message goes to a lane chosen by its holder (door, for events without one), and
//! a lane handles one message at a time, to the end: so one holder's events reach the
//! sink in stream order, which the relay keeps equal to commit order. The number of lanes
//! bounds the calls in flight.
//!
//! **Retries.** A retryable failure keeps the message in its lane and tries again after a
//! capped, jittered exponential backoff (or the sink's `Retry-After`, if longer), telling
//! the server the work is in progress so it is not redelivered meanwhile. Retrying in
//! place rather than NAKing is what keeps per-holder order: a NAKed event would be
//! overtaken by the holder's next one. A message is NAKed with its remaining delay only
//! when the worker shuts down in the middle of a wait. After `max_attempts` calls (counted
//! across redeliveries) the event is dead-lettered.
//!
//! **Breaker.** While the sink's breaker is open nothing is pulled and lanes wait before
//! calling: no calls, no attempts used, nothing lost. Half-open lets a bounded number of
//! probes through.

use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, Message, consumer::PullConsumer};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use latch_core::event::Envelope;
use latch_core::otel;
use latch_core::shutdown::CancellationToken;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::breaker::{Breaker, BreakerState};
use crate::config::RetryConfig;
use crate::dlq::{self, Class, DeadLetter};
use crate::metrics::WorkerMetrics;
use crate::sink::{Outcome, Sink};

/// How often a waiting lane or the puller looks at the breaker again.
const BREAKER_POLL: Duration = Duration::from_millis(50);

/// What the sink's lanes did (for logs, metrics and tests).
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
}

pub struct SinkWorker {
    pub sink: Arc<Sink>,
    pub breaker: Breaker,
    pub counters: Arc<SinkCounters>,
    limiter: Arc<DefaultDirectRateLimiter>,
    retry: RetryConfig,
    js: jetstream::Context,
    consumer: PullConsumer,
    metrics: WorkerMetrics,
}

impl SinkWorker {
    pub fn new(
        sink: Sink,
        retry: RetryConfig,
        js: jetstream::Context,
        consumer: PullConsumer,
        metrics: WorkerMetrics,
    ) -> SinkWorker {
        let config = &sink.config;
        let rate = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
        SinkWorker {
            breaker: Breaker::new(
                config.breaker_failures,
                config.breaker_open,
                config.breaker_probes,
            ),
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            counters: Arc::new(SinkCounters::default()),
            sink: Arc::new(sink),
            retry,
            js,
            consumer,
            metrics,
        }
    }

    /// Pulls and delivers until `shutdown`; lanes finish (or hand back) what they hold.
    pub async fn run(self, shutdown: CancellationToken) {
        let lanes = self.sink.config.concurrency;
        let mut senders = Vec::with_capacity(lanes);
        let mut tasks = Vec::with_capacity(lanes);
        let lane = Arc::new(Lane {
            sink: self.sink.clone(),
            breaker: self.breaker.clone(),
            limiter: self.limiter.clone(),
            retry: self.retry,
            js: self.js.clone(),
            counters: self.counters.clone(),
            metrics: self.metrics.clone(),
            shutdown: shutdown.clone(),
        });
        for _ in 0..lanes {
            let (tx, mut rx) = mpsc::channel::<Message>(2);
            senders.push(tx);
            let lane = lane.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(message) = rx.recv().await {
                    lane.traced(message).await;
                }
            }));
        }
        let sink = self.sink.name();
        let mut failing = false;
        while !shutdown.is_cancelled() {
            if self.breaker.state() == BreakerState::Open {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(BREAKER_POLL) => continue,
                }
            }
            let batch = self
                .consumer
                .fetch()
                .max_messages(lanes * 2)
                .expires(Duration::from_secs(1))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(sink, "pulling again");
                    }
                    batch
                }
                Err(error) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(sink, %error, "cannot pull from NATS; retrying");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            while let Some(message) = batch.next().await {
                let Ok(message) = message else { break };
                let index = lane_of(&message, lanes);
                if senders[index].send(message).await.is_err() {
                    break;
                }
            }
        }
        drop(senders);
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!(sink, "sink worker stopped");
    }
}

/// The `traceparent` a message carries (the request that caused the event), if any.
fn traceparent_of(message: &Message) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_owned())
}

/// How a delivery ended, for the delivery's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Delivered,
    DeadLettered,
    /// Shutting down: the message goes back to the stream for the next worker.
    HandedBack,
}

impl Handled {
    fn as_str(self) -> &'static str {
        match self {
            Handled::Delivered => "delivered",
            Handled::DeadLettered => "dead_lettered",
            Handled::HandedBack => "handed_back",
        }
    }
}

/// The lane of a message: by holder, so one holder's events stay in order.
fn lane_of(message: &Message, lanes: usize) -> usize {
    #[derive(serde::Deserialize)]
    struct Key {
        holder_id: Option<uuid::Uuid>,
        door_id: Option<uuid::Uuid>,
    }
    let key = serde_json::from_slice::<Key>(&message.payload)
        .ok()
        .and_then(|k| k.holder_id.or(k.door_id));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match key {
        Some(key) => key.hash(&mut hasher),
        None => message.subject.as_str().hash(&mut hasher),
    }
    (hasher.finish() % lanes as u64) as usize
}

struct Lane {
    sink: Arc<Sink>,
    breaker: Breaker,
    limiter: Arc<DefaultDirectRateLimiter>,
    retry: RetryConfig,
    js: jetstream::Context,
    counters: Arc<SinkCounters>,
    metrics: WorkerMetrics,
    shutdown: CancellationToken,
}

impl Lane {
    /// Handles one message inside a span per delivery that carries the event id and the
    /// trace id of the request that caused it, so every log line about it can be found
    /// from the reader's request. With span export on, the delivery is also an exported
    /// consumer span, a child of the request's span, and the sink call names it as its
    /// parent; otherwise the sink receives the request's `traceparent` unchanged.
    async fn traced(&self, message: Message) {
        let sink = self.sink.name();
        let incoming = traceparent_of(&message);
        let mut exported = otel::enabled()
            .then(|| {
                otel::start(
                    format!("deliver {sink}"),
                    otel::Kind::Consumer,
                    incoming.as_deref(),
                )
            })
            .flatten();
        let outgoing = exported.as_ref().map(otel::Span::traceparent).or(incoming);
        let (trace_id, span_id, _) = outgoing
            .as_deref()
            .and_then(otel::parse_traceparent)
            .unwrap_or_default();
        let event_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Latch-Event-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "delivery",
            sink,
            event_id = %event_id,
            trace_id = %trace_id,
            span_id = %span_id
        );
        if let Some(exported) = &mut exported {
            exported.set("latch.sink", sink);
            exported.set("latch.event_id", event_id);
            exported.set("messaging.destination.name", message.subject.to_string());
        }
        let handled = self.handle(message, outgoing).instrument(span).await;
        if let Some(exported) = &mut exported {
            exported.set("latch.outcome", handled.as_str());
            if handled == Handled::DeadLettered {
                exported.fail("dead-lettered");
            }
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .deliveries
            .with_label_values(&[self.sink.name(), outcome])
            .inc();
    }

    async fn handle(&self, message: Message, traceparent: Option<String>) -> Handled {
        let sink = self.sink.name();
        let envelope = match serde_json::from_slice::<Envelope>(&message.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = format!("not a readable event envelope: {error}");
                return self
                    .dead_letter(&message, Class::Malformed, &reason, 0, None)
                    .await;
            }
        };
        let mut attempts = message
            .info()
            .map(|i| i.delivered.max(1) as u32)
            .unwrap_or(1)
            .saturating_sub(1);
        if let Ok(info) = message.info() {
            let stored = info.published;
            let lag = (time::OffsetDateTime::now_utc() - stored).as_seconds_f64();
            self.metrics
                .published_to_consumed
                .with_label_values(&[sink])
                .observe(lag.max(0.0));
        }
        let mut last_progress = Instant::now();
        loop {
            // Wait for the breaker without calling (and without using an attempt).
            let permit = loop {
                if let Some(permit) = self.breaker.permit() {
                    break permit;
                }
                if !self.hold(&message, BREAKER_POLL, &mut last_progress).await {
                    return Handled::HandedBack;
                }
            };
            self.limiter.until_ready().await;
            attempts += 1;
            let called = Instant::now();
            let outcome = self
                .sink
                .deliver(&envelope, &message.payload, traceparent.as_deref())
                .await;
            self.metrics
                .delivery_duration
                .with_label_values(&[sink])
                .observe(called.elapsed().as_secs_f64());
            match outcome {
                Outcome::Delivered => {
                    permit.success();
                    if let Err(error) = message.ack().await {
                        tracing::warn!(sink, %error, event = %envelope.id, "delivered but the ack was lost; the event will be redelivered and applied once");
                    }
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    self.count("ok");
                    let lag = time::OffsetDateTime::now_utc() - envelope.recorded_at;
                    self.metrics
                        .commit_to_delivered
                        .with_label_values(&[sink])
                        .observe(lag.as_seconds_f64().max(0.0));
                    return Handled::Delivered;
                }
                Outcome::Permanent { reason, status } => {
                    permit.success();
                    return self
                        .dead_letter(&message, Class::Permanent, &reason, attempts, status)
                        .await;
                }
                Outcome::Retry {
                    reason,
                    after,
                    throttled,
                } => {
                    if throttled {
                        drop(permit);
                    } else {
                        permit.failure();
                    }
                    if attempts >= self.sink.config.max_attempts {
                        let reason = format!("{reason} (after {attempts} attempts)");
                        return self
                            .dead_letter(&message, Class::Exhausted, &reason, attempts, None)
                            .await;
                    }
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    self.count("retry");
                    let delay = self.retry.delay(attempts).max(after.unwrap_or_default());
                    tracing::debug!(sink, event = %envelope.id, attempts, ?delay, %reason, "retrying");
                    if !self.hold(&message, delay, &mut last_progress).await {
                        return Handled::HandedBack;
                    }
                }
            }
        }
    }

    /// Waits `delay` while keeping the message ours. On shutdown, hands the message back
    /// with the rest of the delay and answers `false`.
    async fn hold(&self, message: &Message, delay: Duration, last_progress: &mut Instant) -> bool {
        let until = Instant::now() + delay;
        loop {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            let keepalive = self.sink.config.ack_wait / 3;
            if now.duration_since(*last_progress) >= keepalive {
                let _ = message.ack_with(AckKind::Progress).await;
                *last_progress = now;
            }
            let step = (until - now).min(keepalive);
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = message.ack_with(AckKind::Nak(Some(until - Instant::now()))).await;
                    return false;
                }
                _ = tokio::time::sleep(step) => {}
            }
        }
    }

    async fn dead_letter(
        &self,
        message: &Message,
        class: Class,
        reason: &str,
        attempts: u32,
        status: Option<u16>,
    ) -> Handled {
        let sink = self.sink.name();
        let letter = DeadLetter {
            sink,
            class,
            reason,
            attempts,
            status,
        };
        match dlq::publish(&self.js, message, letter).await {
            Ok(()) => {
                tracing::warn!(
                    sink,
                    class = class.as_str(),
                    reason,
                    attempts,
                    "event dead-lettered"
                );
                let _ = message.ack_with(AckKind::Term).await;
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.count("dead");
                Handled::DeadLettered
            }
            Err(error) => {
                // Not terminated: the server redelivers it after ACK_WAIT and we try again.
                tracing::error!(
                    sink,
                    error = format!("{error:#}"),
                    "cannot write the dead letter; the event stays in the stream"
                );
                Handled::HandedBack
            }
        }
    }
}
