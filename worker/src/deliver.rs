//! One sink's delivery loop: pull, spread over lanes, call, settle.
//!
//! **Order.** A durable pull consumer hands over the sink's messages in stream order.
//! Each message goes to a lane chosen by its holder (door, for events without one), and
//! a lane handles one message at a time, to the end: so one holder's events reach the
//! sink in stream order, which the relay keeps equal to commit order. The number of lanes
//! bounds the calls in flight.
//!
//! **One active worker.** Every worker pulls in the consumer's priority group
//! ([`GROUP`]), which pins one of them (NATS 2.11+ `pinned_client`): only the pinned
//! worker receives messages, the others stand by. The active worker pulls every second,
//! whatever its lanes are doing, so it keeps the pin for as long as it lives and reaches
//! NATS; when it has not pulled for `takeover_after` (it died, froze or lost its
//! connection) the server pins a standby. A worker that stops cleanly releases the pin at
//! once.
//!
//! **Taking over keeps order.** The events a dead worker had received and not
//! acknowledged would be redelivered only after `ack_wait` — after later events of the
//! same holders, which the new worker receives at once. So a worker that becomes active
//! first rewinds the consumer to its ack floor (`CONSUMER.RESET`, nats-server 2.14+):
//! everything unacknowledged is delivered again at once and in stream order, before
//! anything newer; deliveries that were already on their way before the rewind are
//! skipped (they come again after it). Events the old worker had delivered but not yet
//! acknowledged reach the sink a second time, with the same `Idempotency-Key`, and are
//! applied once. A worker that finds the pin taken from it (it stalled past
//! `takeover_after`) leaves what it had queued to the new one. Pinning steers deliveries;
//! it cannot stop a worker that is frozen mid-call and later wakes up: keep
//! `takeover_after` above the sink's `timeout`, so that a call in flight has ended by the
//! time another worker takes over.
//!
//! **Retries.** A retryable failure keeps the message in its lane and tries again after a
//! capped, jittered exponential backoff (or the sink's `Retry-After`, if longer), telling
//! the server the work is in progress so it is not redelivered meanwhile. Retrying in
//! place rather than NAKing is what keeps per-holder order: a NAKed event would be
//! overtaken by the holder's next one. A message is NAKed with its remaining delay only
//! when the worker shuts down in the middle of a wait. After `max_attempts` calls (counted
//! across redeliveries) the event is dead-lettered. A rewind starts the server's delivery
//! counts afresh: a worker's death does not use up an event's attempts.
//!
//! **Breaker.** While the sink's breaker is open lanes wait before calling: no calls, no
//! attempts used, nothing lost. The worker keeps pulling (to keep its pin) up to the
//! consumer's limit of unacknowledged messages, and keeps what waits in the lanes' queues
//! from being redelivered (`+WPI`, every third of `ack_wait`). Half-open lets a bounded
//! number of probes through.

use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, Message};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use latch_core::event::Envelope;
use latch_core::otel;
use latch_core::shutdown::CancellationToken;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::breaker::Breaker;
use crate::config::RetryConfig;
use crate::dlq::{self, Class, DeadLetter};
use crate::metrics::WorkerMetrics;
use crate::sink::{Outcome, Sink};

/// How often a waiting lane looks at the breaker again.
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
    /// The event stream, for the consumer's rewind and unpin.
    events: jetstream::stream::Stream,
    consumer: PullConsumer,
    metrics: WorkerMetrics,
    /// Draining a consumer that is being retired: events stored after this stream
    /// sequence are acknowledged without a call (their new consumers deliver them).
    until: Option<u64>,
}

/// The priority group every worker of a sink pulls in; the consumer pins one of them.
pub const GROUP: &str = "workers";

/// How often a standby worker looks at who holds the pin.
const STANDBY_CHECK: Duration = Duration::from_secs(1);

/// How long one pull request waits for messages. The active worker sends one at least
/// this often, which keeps its pin (`takeover_after` must be well above it).
const PULL_EXPIRY: Duration = Duration::from_secs(1);

/// Messages a lane has been given and not yet taken, in the order they arrived.
#[derive(Default)]
struct Queue {
    messages: std::sync::Mutex<VecDeque<Message>>,
    ready: Notify,
}

impl Queue {
    fn push(&self, message: Message) {
        if let Ok(mut messages) = self.messages.lock() {
            messages.push_back(message);
        }
        self.ready.notify_one();
    }

    /// The next message, or `None` at shutdown.
    async fn pop(&self, shutdown: &CancellationToken) -> Option<Message> {
        loop {
            if let Some(message) = self.messages.lock().ok()?.pop_front() {
                return Some(message);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = self.ready.notified() => {}
            }
        }
    }

    /// Forgets what is waiting (it is redelivered to whichever worker holds the pin).
    fn clear(&self) -> usize {
        self.messages.lock().map_or(0, |mut m| m.drain(..).count())
    }

    fn waiting(&self) -> Vec<Message> {
        self.messages
            .lock()
            .map_or_else(|_| Vec::new(), |m| m.iter().cloned().collect())
    }
}

impl SinkWorker {
    pub fn new(
        sink: Sink,
        retry: RetryConfig,
        js: jetstream::Context,
        events: jetstream::stream::Stream,
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
            events,
            consumer,
            metrics,
            until: None,
        }
    }

    /// The same sink, breaker, rate limit and counters on another consumer (another
    /// partition of the stream): a worker's partitions share the sink's limits.
    pub fn on_consumer(&self, consumer: PullConsumer) -> SinkWorker {
        SinkWorker {
            sink: self.sink.clone(),
            breaker: self.breaker.clone(),
            counters: self.counters.clone(),
            limiter: self.limiter.clone(),
            retry: self.retry,
            js: self.js.clone(),
            events: self.events.clone(),
            consumer,
            metrics: self.metrics.clone(),
            until: None,
        }
    }

    /// Delivers only the events stored up to stream sequence `cut`, and acknowledges the
    /// later ones without a call: for a consumer being retired in favour of others that
    /// start after `cut`.
    pub fn draining(mut self, cut: u64) -> SinkWorker {
        self.until = Some(cut);
        self
    }

    /// Pulls and delivers until `shutdown`; lanes finish (or hand back) what they hold.
    pub async fn run(self, shutdown: CancellationToken) {
        let lanes = self.sink.config.concurrency;
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
        let queues: Vec<Arc<Queue>> = (0..lanes).map(|_| Arc::default()).collect();
        let tasks: Vec<_> = queues
            .iter()
            .map(|queue| {
                let (queue, lane, shutdown) = (queue.clone(), lane.clone(), shutdown.clone());
                tokio::spawn(async move {
                    while let Some(message) = queue.pop(&shutdown).await {
                        lane.traced(message).await;
                    }
                })
            })
            .collect();
        let sink = self.sink.name();
        let mut pull = Pull::default();
        let mut keepalive = tokio::time::interval(self.sink.config.ack_wait / 3);
        let mut standby = tokio::time::interval(STANDBY_CHECK);
        while !shutdown.is_cancelled() {
            if pull.messages.is_none() {
                pull.messages = pull.open(&self.consumer, lanes, sink, &shutdown).await;
            }
            let Some(messages) = pull.messages.as_mut() else {
                break;
            };
            let standing_by = pull.pin.is_none();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = keepalive.tick() => {
                    self.keep(&queues).await;
                    self.check_pin(&mut pull, &queues).await;
                }
                _ = standby.tick(), if standing_by => self.watch_pin(&mut pull).await,
                next = messages.next() => match next {
                    None => {
                        if pull.pin.is_some() {
                            self.metrics.active.with_label_values(&[sink]).dec();
                        }
                        pull.ended(sink);
                    }
                    Some(Err(error)) => pull.failed(sink, &error),
                    Some(Ok(message)) => self.receive(&mut pull, &queues, message).await,
                },
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        if pull.pin.is_some() {
            self.metrics.active.with_label_values(&[sink]).dec();
            // Let a standby take over at once rather than after `takeover_after`.
            if let Err(error) = self
                .events
                .unpin_consumer(self.consumer_name(), GROUP)
                .await
            {
                tracing::warn!(sink, %error, "cannot release the sink to a standby worker");
            }
        }
        tracing::info!(sink, consumer = self.consumer_name(), "sink worker stopped");
    }

    /// The event stream.
    pub fn events(&self) -> jetstream::stream::Stream {
        self.events.clone()
    }

    fn consumer_name(&self) -> &str {
        &self.consumer.cached_info().name
    }

    /// Takes one message from the pull: the first one of a new pin makes this worker the
    /// sink's active one (see [`SinkWorker::take_over`]); after a rewind, deliveries from
    /// before it are skipped; the rest go to their lane.
    async fn receive(&self, pull: &mut Pull, queues: &[Arc<Queue>], message: Message) {
        let pin = message
            .headers
            .as_ref()
            .and_then(|h| h.get(PIN_HEADER))
            .map(|v| v.as_str().to_owned());
        if pin.is_some() && pin != pull.pin {
            if pull.pin.is_none() {
                self.metrics
                    .active
                    .with_label_values(&[self.sink.name()])
                    .inc();
            }
            pull.pin = pin;
            pull.expected = None;
            pull.rewound_to = self.take_over(queues).await;
            if pull.rewound_to.is_some() {
                // It comes again, in order, after the rewind.
                return;
            }
        }
        let sequence = message.info().ok().map(|info| info.consumer_sequence);
        if let Some(first) = pull.rewound_to {
            match sequence {
                Some(sequence) if sequence == first => pull.rewound_to = None,
                // Delivered before the rewind took effect: it comes again after it.
                _ => return,
            }
        }
        if let (Some(sequence), Some(expected)) = (sequence, pull.expected)
            && sequence > expected
        {
            // A delivery never arrived (the server that sent it failed, the consumer's
            // leader moved): it would come back only after `ack_wait`, after later events
            // of its holder. Rewind so that it comes again now, in order.
            let sink = self.sink.name();
            tracing::warn!(
                sink,
                expected,
                received = sequence,
                "a delivery went missing; rewinding to deliver it again in order"
            );
            self.metrics.rewinds.with_label_values(&[sink]).inc();
            let forgotten: usize = queues.iter().map(|q| q.clear()).sum();
            pull.expected = None;
            pull.rewound_to = self.rewind(sink, forgotten).await;
            if pull.rewound_to.is_some() {
                return;
            }
        }
        pull.expected = sequence.map(|s| s + 1);
        if let Some(cut) = self.until
            && message.info().is_ok_and(|info| info.stream_sequence > cut)
        {
            // Its new consumer delivers it.
            let _ = message.ack().await;
            return;
        }
        let lane = lane_of(&message, queues.len());
        queues[lane].push(message);
    }

    /// Becomes the sink's active worker. What the previous one (or this one, before it lost
    /// the pin) received and did not acknowledge would come back only after `ack_wait`,
    /// after later events of the same holders: so the consumer is rewound to its ack floor
    /// (`CONSUMER.RESET`, nats-server 2.14+), and everything unacknowledged is delivered
    /// again at once, in stream order, before anything newer. What waits in the lanes'
    /// queues comes again too, so it is forgotten here. Answers the consumer sequence of the
    /// first delivery after the rewind, or `None` when it could not be rewound (then the
    /// unacknowledged events come back after `ack_wait`, as before).
    async fn take_over(&self, queues: &[Arc<Queue>]) -> Option<u64> {
        let sink = self.sink.name();
        let forgotten: usize = queues.iter().map(|q| q.clear()).sum();
        self.metrics.takeovers.with_label_values(&[sink]).inc();
        self.rewind(sink, forgotten).await
    }

    /// Rewinds the consumer to its ack floor; answers the consumer sequence of the first
    /// delivery after the rewind (`None` if it could not be rewound).
    async fn rewind(&self, sink: &str, forgotten: usize) -> Option<u64> {
        match self.events.reset_consumer(self.consumer_name(), None).await {
            Ok(reset) => {
                tracing::info!(
                    sink,
                    from_stream_sequence = reset.reset_seq,
                    forgotten,
                    "this worker delivers to the sink now; unacknowledged events are delivered again first"
                );
                Some(reset.info.ack_floor.consumer_sequence + 1)
            }
            Err(error) => {
                tracing::warn!(
                    sink,
                    %error,
                    "this worker delivers to the sink now, but cannot rewind its consumer: events a previous worker left unacknowledged come back after ack_wait"
                );
                None
            }
        }
    }

    /// Notes whether this worker still holds the pin; if another one took it (this one
    /// stopped pulling for `takeover_after`: a stall, a partition), what waits in the
    /// queues is left to it.
    async fn check_pin(&self, pull: &mut Pull, queues: &[Arc<Queue>]) {
        let Some(ours) = pull.pin.clone() else {
            return;
        };
        let Ok(info) = self.events.consumer_info(self.consumer_name()).await else {
            return;
        };
        let pinned = info
            .priority_groups
            .iter()
            .find(|g| g.group == GROUP)
            .and_then(|g| g.pinned_client_id.clone());
        if pinned.as_deref() != Some(ours.as_str()) {
            let sink = self.sink.name();
            let left: usize = queues.iter().map(|q| q.clear()).sum();
            tracing::warn!(sink, left, "another worker took the sink over; standing by");
            self.metrics.active.with_label_values(&[sink]).dec();
            pull.pin = None;
            pull.rewound_to = None;
            pull.expected = None;
        }
    }

    /// While standing by: when the pin moves (the active worker stopped pulling) and the
    /// consumer has unacknowledged events but nothing new to deliver, no message would
    /// reach the newly pinned worker — so it would never learn that it is active, and the
    /// events would wait for `ack_wait`. Rewinding the consumer makes them deliverable
    /// now; whichever worker holds the pin receives them and takes over (rewinding once
    /// more, from what it then knows is its own place).
    async fn watch_pin(&self, pull: &mut Pull) {
        let Ok(info) = self.events.consumer_info(self.consumer_name()).await else {
            return;
        };
        let pinned = info
            .priority_groups
            .iter()
            .find(|g| g.group == GROUP)
            .and_then(|g| g.pinned_client_id.clone());
        let moved = pull
            .seen_pinned
            .as_ref()
            .is_some_and(|seen| *seen != pinned);
        pull.seen_pinned = Some(pinned);
        if moved && info.num_ack_pending > 0 && info.num_pending == 0 {
            let sink = self.sink.name();
            match self.events.reset_consumer(self.consumer_name(), None).await {
                Ok(_) => tracing::info!(
                    sink,
                    unacknowledged = info.num_ack_pending,
                    "the active worker changed; its unacknowledged events are delivered again now"
                ),
                Err(error) => tracing::warn!(sink, %error, "cannot rewind the consumer"),
            }
        }
    }

    /// Keeps the messages waiting in the queues ours (not redelivered meanwhile).
    async fn keep(&self, queues: &[Arc<Queue>]) {
        for queue in queues {
            for message in queue.waiting() {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

/// The header a pinned client's messages carry: the pin of the client they were sent to.
const PIN_HEADER: &str = "Nats-Pin-Id";

/// The sink's pull: its message stream, and this worker's place in the priority group.
#[derive(Default)]
struct Pull {
    messages: Option<pull::Stream>,
    /// The pin this worker holds (the `Nats-Pin-Id` of the messages it receives).
    pin: Option<String>,
    /// After a rewind: the consumer sequence of its first delivery.
    rewound_to: Option<u64>,
    /// The consumer sequence the next delivery should have: one past the last received.
    expected: Option<u64>,
    /// While standing by: the pinned client last seen in the consumer's state.
    seen_pinned: Option<Option<String>>,
    failing: bool,
}

impl Pull {
    /// Opens the message stream (retrying every second); `None` at shutdown.
    async fn open(
        &mut self,
        consumer: &PullConsumer,
        lanes: usize,
        sink: &str,
        shutdown: &CancellationToken,
    ) -> Option<pull::Stream> {
        loop {
            let opened = consumer
                .stream()
                .group(GROUP)
                .max_messages_per_batch(lanes * 2)
                .expires(PULL_EXPIRY)
                .messages()
                .await;
            match opened {
                Ok(messages) => {
                    if std::mem::take(&mut self.failing) {
                        tracing::info!(sink, "pulling again");
                    }
                    return Some(messages);
                }
                Err(error) => {
                    if !std::mem::replace(&mut self.failing, true) {
                        tracing::warn!(sink, %error, "cannot pull from NATS; retrying");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// The stream ended: a new one starts on standby (a new client of the group).
    fn ended(&mut self, sink: &str) {
        tracing::warn!(sink, "the pull ended; opening a new one");
        self.messages = None;
        self.pin = None;
        self.rewound_to = None;
        self.expected = None;
    }

    fn failed(&mut self, sink: &str, error: &pull::MessagesError) {
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(sink, %error, "pulling from NATS failed; retrying");
        }
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
