//! One endpoint's delivery: its inbox and cursor, its lanes, breaker, rate and retries.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use latch_core::event::EventKind;
use latch_core::nats::EVENTS_SUBJECTS;
use latch_core::shutdown::CancellationToken;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::call::{self, Called};
use super::store::{Attempt, EndpointRow, Progress};
use super::{INBOX, METRICS_SINK, Shared};
use crate::breaker::{Breaker, BreakerState};
use crate::dlq::{self, Class, DeadLetter};
use crate::sink::Outcome;

/// Events one page of catching up reads at most.
const PAGE: usize = 256;
/// How long a page waits for its next message before it gives up.
const MESSAGE_WAIT: Duration = Duration::from_secs(5);
/// Events waiting for one lane.
const LANE_QUEUE: usize = 32;
/// A lane without work this long ends (it starts again with the next event for it).
const LANE_IDLE: Duration = Duration::from_secs(30);
/// How often an idle endpoint's position, following the tail, is saved at most.
const IDLE_SAVE: Duration = Duration::from_secs(30);
/// Events stored up to this long before an endpoint's start are read too (and skipped by
/// their `recorded_at`): the stream's clock may be behind the database's.
const CLOCK_MARGIN: Duration = Duration::from_secs(300);
/// How often a lane waiting for the breaker looks again.
const BREAKER_POLL: Duration = Duration::from_millis(50);

/// Where dead letters replayed to an endpoint go: `latch.replay.endpoint.<id>`.
pub const REPLAY_PREFIX: &str = "latch.replay.endpoint.";

/// The dead-letter "sink" of an endpoint: its letters are on `latch.dlq.endpoint.<id>`,
/// and `latch dlq replay` sends them to `latch.replay.endpoint.<id>`.
pub fn dlq_sink(id: Uuid) -> String {
    format!("endpoint.{id}")
}

/// An event as the endpoints need it: parsed once, shared by every endpoint it goes to.
#[derive(Debug)]
pub struct Routed {
    pub seq: u64,
    pub kind: EventKind,
    pub site: Option<String>,
    pub id: Uuid,
    /// The holder, else the door: one lane per key keeps its events in order.
    pub lane_key: Option<Uuid>,
    pub recorded_at: Option<OffsetDateTime>,
    pub subject: String,
    /// A dead letter replayed to one endpoint (`latch.replay.endpoint.<id>`): for it alone,
    /// whatever its filter.
    pub replay_for: Option<Uuid>,
    /// The envelope exactly as published (what is signed and sent).
    pub payload: Bytes,
    pub headers: Option<async_nats::HeaderMap>,
}

impl Routed {
    /// `None` for a message that is not an event envelope (logged).
    pub fn parse(seq: u64, message: &jetstream::Message) -> Option<Routed> {
        #[derive(serde::Deserialize)]
        struct Fields {
            id: Uuid,
            kind: EventKind,
            site: Option<String>,
            holder_id: Option<Uuid>,
            door_id: Option<Uuid>,
            #[serde(default, with = "time::serde::rfc3339::option")]
            recorded_at: Option<OffsetDateTime>,
        }
        let replay_for = message
            .subject
            .strip_prefix(REPLAY_PREFIX)
            .and_then(|id| id.parse::<Uuid>().ok());
        let fields = serde_json::from_slice::<Fields>(&message.payload);
        match fields {
            Ok(fields) => Some(Routed {
                seq,
                kind: fields.kind,
                replay_for,
                site: fields.site,
                id: fields.id,
                lane_key: fields.holder_id.or(fields.door_id),
                recorded_at: fields.recorded_at,
                subject: message.subject.to_string(),
                payload: message.payload.clone(),
                headers: message.headers.clone(),
            }),
            Err(error) => {
                tracing::warn!(
                    seq,
                    subject = %message.subject,
                    %error,
                    "not an event envelope; no endpoint receives it"
                );
                None
            }
        }
    }

    fn traceparent(&self) -> Option<&str> {
        self.headers
            .as_ref()
            .and_then(|h| h.get("traceparent"))
            .map(|v| v.as_str())
    }
}

/// What the endpoint's task knows of its progress.
#[derive(Default)]
struct State {
    /// Every event routed to the endpoint up to here has been handed to a lane.
    read_through: Option<u64>,
    /// Handed to a lane, not yet delivered or dead-lettered.
    in_flight: BTreeSet<u64>,
    /// The task found its inbox empty and has taken nothing since.
    idle: bool,
    catching_up: bool,
    last_success_at: Option<OffsetDateTime>,
    failing_since: Option<OffsetDateTime>,
    /// Not yet saved: calls delivered, calls failed, events dead-lettered.
    delivered: i64,
    failed: i64,
    dead_lettered: i64,
    saved: Option<Progress>,
    saved_at: Option<Instant>,
    /// A recovery to apply at the first page: move the cursor back to the first event
    /// stored at or after this time, if that is before it.
    rewind: Option<OffsetDateTime>,
    /// While reading again after a recovery: (the position before it, its `since`).
    rewound: Option<(u64, OffsetDateTime)>,
}

pub struct Runtime {
    shared: Arc<Shared>,
    row: RwLock<Arc<EndpointRow>>,
    inbox: Mutex<VecDeque<Arc<Routed>>>,
    overflowed: AtomicBool,
    ready: Notify,
    state: Mutex<State>,
    stop: CancellationToken,
    tasks: TaskTracker,
    breaker: Breaker,
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
    /// The endpoint asked for a pause (`Retry-After`) until then: no lane calls it.
    pause_until: Mutex<Option<Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn limiter(rate: u32) -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_second(rate)))
}

impl Runtime {
    /// Prepares delivery to the endpoint of `row`; [`Runtime::launch`] starts it, once the
    /// tail offers events to it (else the events between its first page and the tail's
    /// first offer would be missed).
    pub fn new(shared: Arc<Shared>, row: EndpointRow, shutdown: &CancellationToken) -> Arc<Self> {
        let config = &shared.config;
        Arc::new(Runtime {
            breaker: Breaker::new(config.breaker_failures, config.breaker_open, 1),
            limiter: RwLock::new(limiter(row.rate_per_second)),
            state: Mutex::new(State {
                read_through: row.position,
                last_success_at: row.last_success_at,
                failing_since: row.failing_since,
                catching_up: true,
                rewind: row.pending_recovery(),
                ..State::default()
            }),
            row: RwLock::new(Arc::new(row)),
            inbox: Mutex::default(),
            // It starts by reading what it missed from the stream.
            overflowed: AtomicBool::new(true),
            ready: Notify::new(),
            stop: shutdown.child_token(),
            tasks: TaskTracker::new(),
            pause_until: Mutex::new(None),
            shared,
        })
    }

    /// Starts delivering; after `previous` (the same endpoint's runtime before a restart)
    /// has let go, so that its last calls cannot overtake this one's first.
    pub fn launch(self: &Arc<Self>, previous: Option<Arc<Runtime>>) {
        let runtime = self.clone();
        self.tasks.spawn(async move {
            if let Some(previous) = previous {
                tokio::select! {
                    _ = runtime.stop.cancelled() => return,
                    _ = previous.stopped() => {}
                }
            }
            runtime.run().await;
        });
        self.tasks.close();
    }

    pub fn id(&self) -> Uuid {
        self.row().id
    }

    pub fn row(&self) -> Arc<EndpointRow> {
        self.row
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Applies a change made through the API (URL, filter, rate, secrets).
    pub fn update(&self, row: EndpointRow) {
        if row.rate_per_second != self.row().rate_per_second
            && let Ok(mut current) = self.limiter.write()
        {
            *current = limiter(row.rate_per_second);
        }
        if let Ok(mut current) = self.row.write() {
            *current = Arc::new(row);
        }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// True once the task and its lanes have ended.
    pub fn finished(&self) -> bool {
        self.tasks.is_closed() && self.tasks.is_empty()
    }

    /// Waits until the task and its lanes have ended.
    pub async fn stopped(&self) {
        self.tasks.wait().await;
    }

    pub fn catching_up(&self) -> bool {
        lock(&self.state).catching_up
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.state() != BreakerState::Closed
    }

    /// Called by the tail for every new event: kept if routed here; never waits.
    pub fn offer(&self, event: &Arc<Routed>) {
        if self.is_stopped() || !self.row().routes(event) {
            return;
        }
        {
            let mut inbox = lock(&self.inbox);
            if inbox.len() >= INBOX {
                self.overflowed.store(true, Ordering::SeqCst);
            } else {
                inbox.push_back(event.clone());
            }
        }
        self.ready.notify_one();
    }

    /// The progress to save, if it changed since the last save. `tail`: every event up to
    /// there has been offered to the inboxes.
    pub fn progress(&self, tail: u64) -> Option<Progress> {
        let row = self.row();
        let state = lock(&self.state);
        let read_through = state.read_through?;
        let mut idle_advance = false;
        let position = match state.in_flight.first() {
            Some(first) => first.saturating_sub(1).min(read_through),
            // Nothing in hand and nothing waiting: every event the tail offered was
            // delivered (the inbox is taken from under this lock). Not once stopped: the
            // tail offers a stopped endpoint nothing.
            None if state.idle
                && !self.is_stopped()
                && !self.overflowed.load(Ordering::SeqCst)
                && lock(&self.inbox).is_empty() =>
            {
                idle_advance = tail > read_through;
                read_through.max(tail)
            }
            None => read_through,
        };
        let progress = Progress {
            id: row.id,
            start_at: row.start_at,
            recover_requested_at: row.recover_requested_at,
            recover_applied: state.rewind.is_none() && row.pending_recovery().is_some(),
            position,
            last_success_at: state.last_success_at,
            failing_since: state.failing_since,
            delivered: state.delivered,
            failed: state.failed,
            dead_lettered: state.dead_lettered,
            breaker: self.breaker.state().as_str(),
        };
        if let Some(saved) = state.saved.as_ref() {
            if *saved == progress {
                return None;
            }
            // An idle endpoint following the tail is saved now and then, not at every
            // event: a stale position only means more to read after a restart.
            let only_followed = idle_advance
                && Progress {
                    position: saved.position,
                    ..progress.clone()
                } == *saved;
            if only_followed && state.saved_at.is_some_and(|at| at.elapsed() < IDLE_SAVE) {
                return None;
            }
        }
        Some(progress)
    }

    /// `progress` is saved: its counts are no longer pending.
    pub fn saved(&self, progress: Progress) {
        let mut state = lock(&self.state);
        state.saved_at = Some(Instant::now());
        state.delivered -= progress.delivered;
        state.failed -= progress.failed;
        state.dead_lettered -= progress.dead_lettered;
        state.saved = Some(Progress {
            delivered: state.delivered,
            failed: state.failed,
            dead_lettered: state.dead_lettered,
            ..progress
        });
    }

    /// Reads, pages or inbox, and hands events to the lanes, until stopped.
    async fn run(self: Arc<Self>) {
        let lanes = self.shared.config.concurrency.max(1);
        let mut senders: Vec<Option<Lane>> = (0..lanes).map(|_| None).collect();
        while !self.is_stopped() {
            if self.overflowed.swap(false, Ordering::SeqCst) {
                lock(&self.state).catching_up = true;
                let page = tokio::select! {
                    _ = self.stop.cancelled() => return,
                    page = self.read_page() => page,
                };
                match page {
                    Ok(page) => {
                        for event in page.events {
                            if !self.dispatch(&mut senders, event).await {
                                return;
                            }
                        }
                        let mut state = lock(&self.state);
                        state.read_through =
                            Some(state.read_through.unwrap_or(0).max(page.through));
                        if state.rewound.is_some_and(|(old, _)| page.through >= old) {
                            state.rewound = None;
                        }
                        if !page.caught_up {
                            self.overflowed.store(true, Ordering::SeqCst);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            endpoint = %self.id(),
                            error = format!("{error:#}"),
                            "cannot read the stream for the endpoint; retrying"
                        );
                        self.overflowed.store(true, Ordering::SeqCst);
                        tokio::select! {
                            _ = self.stop.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
                continue;
            }
            let next = {
                let mut state = lock(&self.state);
                state.catching_up = false;
                let next = lock(&self.inbox).pop_front();
                state.idle = next.is_none();
                next
            };
            match next {
                Some(event) => {
                    let behind = lock(&self.state)
                        .read_through
                        .is_some_and(|through| event.seq <= through);
                    if !behind && !self.dispatch(&mut senders, event).await {
                        return;
                    }
                }
                None => tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = self.ready.notified() => {}
                },
            }
        }
    }

    /// Hands an event to its lane (waiting for room); `false` when stopped.
    async fn dispatch(self: &Arc<Self>, senders: &mut [Option<Lane>], event: Arc<Routed>) -> bool {
        {
            let mut state = lock(&self.state);
            state.in_flight.insert(event.seq);
            state.read_through = Some(state.read_through.unwrap_or(0).max(event.seq));
        }
        let lane = lane_of(&event, senders.len());
        let mut event = event;
        let mut previous = None;
        loop {
            let sender = match &senders[lane] {
                Some(current) => current.sender.clone(),
                None => {
                    let (sender, receiver) = mpsc::channel(LANE_QUEUE);
                    self.tasks.reopen();
                    let task = self
                        .tasks
                        .spawn(self.clone().lane(receiver, previous.take()));
                    self.tasks.close();
                    senders[lane] = Some(Lane {
                        sender: sender.clone(),
                        task,
                    });
                    sender
                }
            };
            tokio::select! {
                sent = sender.send(event) => match sent {
                    Ok(()) => return true,
                    // The lane is ending (idle): another takes this event, once the
                    // ending one has delivered what it still holds.
                    Err(mpsc::error::SendError(back)) => {
                        event = back;
                        previous = senders[lane].take().map(|ending| ending.task);
                    }
                },
                _ = self.stop.cancelled() => return false,
            }
        }
    }

    /// One lane: its events one at a time, in order.
    async fn lane(
        self: Arc<Self>,
        mut events: mpsc::Receiver<Arc<Routed>>,
        previous: Option<tokio::task::JoinHandle<()>>,
    ) {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        loop {
            let next = tokio::select! {
                next = events.recv() => next,
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(LANE_IDLE) => {
                    // No new event is accepted from here; what was sent meanwhile is
                    // delivered before the lane ends.
                    events.close();
                    while let Ok(event) = events.try_recv() {
                        self.deliver(&event).await;
                    }
                    return;
                }
            };
            match next {
                Some(event) => self.deliver(&event).await,
                None => return,
            }
        }
    }

    /// Waits `delay`; `false` if stopped meanwhile.
    async fn wait(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Delivers one event: retried in place until delivered, dead-lettered, or the
    /// endpoint stops (then it stays in hand, and is delivered again after a restart).
    async fn deliver(&self, event: &Routed) {
        let config = &self.shared.config;
        let metrics = &self.shared.metrics;
        let event_id = event.id.to_string();
        let mut attempts = 0u32;
        loop {
            let permit = loop {
                if let Some(permit) = self.breaker.permit() {
                    break permit;
                }
                if !self.wait(BREAKER_POLL).await {
                    return;
                }
            };
            let paused = *lock(&self.pause_until);
            if let Some(until) = paused
                && !self
                    .wait(until.saturating_duration_since(Instant::now()))
                    .await
            {
                return;
            }
            let limiter = self
                .limiter
                .read()
                .map(|l| l.clone())
                .unwrap_or_else(|e| e.into_inner().clone());
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = limiter.until_ready() => {}
            }
            attempts += 1;
            let row = self.row();
            let now = OffsetDateTime::now_utc();
            let called = call::call(
                &self.shared.http,
                &self.shared.policy,
                call::Request {
                    url: &row.url,
                    keys: row.signing_keys(now),
                    event_id: &event_id,
                    body: &event.payload,
                    traceparent: event.traceparent(),
                },
            )
            .await;
            metrics
                .delivery_duration
                .with_label_values(&[METRICS_SINK])
                .observe(called.latency.as_secs_f64());
            if called.gone() {
                permit.failure();
                self.record(event, &called, now, "failed");
                self.disable("the endpoint answered 410 Gone").await;
                return;
            }
            match &called.outcome {
                Outcome::Delivered => {
                    permit.success();
                    self.record(event, &called, now, "delivered");
                    {
                        let mut state = lock(&self.state);
                        state.last_success_at = Some(OffsetDateTime::now_utc());
                        state.failing_since = None;
                        state.delivered += 1;
                    }
                    metrics
                        .deliveries
                        .with_label_values(&[METRICS_SINK, "ok"])
                        .inc();
                    if let Some(recorded) = event.recorded_at {
                        metrics
                            .commit_to_delivered
                            .with_label_values(&[METRICS_SINK])
                            .observe(
                                (OffsetDateTime::now_utc() - recorded)
                                    .as_seconds_f64()
                                    .max(0.0),
                            );
                    }
                    self.settled(event.seq);
                    return;
                }
                Outcome::Permanent { reason, status } => {
                    permit.success();
                    self.record(event, &called, now, "failed");
                    if self.failed().await {
                        return;
                    }
                    self.dead_letter(event, Class::Permanent, reason, attempts, *status)
                        .await;
                    return;
                }
                Outcome::Retry {
                    reason,
                    after,
                    throttled,
                } => {
                    if *throttled {
                        drop(permit);
                    } else {
                        permit.failure();
                    }
                    self.record(event, &called, now, "retry");
                    if self.failed().await {
                        return;
                    }
                    if attempts >= config.max_attempts {
                        let reason = format!("{reason} (after {attempts} attempts)");
                        self.dead_letter(event, Class::Exhausted, &reason, attempts, None)
                            .await;
                        return;
                    }
                    metrics
                        .deliveries
                        .with_label_values(&[METRICS_SINK, "retry"])
                        .inc();
                    if let Some(after) = after {
                        *lock(&self.pause_until) = Some(Instant::now() + *after);
                    }
                    let delay = config.retry.delay(attempts).max(after.unwrap_or_default());
                    if !self.wait(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// An event is delivered or dead-lettered: no longer in hand.
    fn settled(&self, seq: u64) {
        lock(&self.state).in_flight.remove(&seq);
    }

    /// A call failed: true if the endpoint has now failed long enough to be disabled (it
    /// is, and stops).
    async fn failed(&self) -> bool {
        let now = OffsetDateTime::now_utc();
        let since = {
            let mut state = lock(&self.state);
            state.failed += 1;
            *state.failing_since.get_or_insert(now)
        };
        let limit = self.shared.config.disable_after;
        if (now - since).unsigned_abs() < limit || now < since {
            return false;
        }
        let since = since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        self.disable(&format!(
            "no successful delivery since {since} (LATCH_WEBHOOKS_DISABLE_AFTER is {limit:?})"
        ))
        .await;
        true
    }

    /// Disables the endpoint (recorded, published) and stops delivering to it.
    async fn disable(&self, reason: &str) {
        let id = self.id();
        if !self.stop.is_cancelled() {
            self.stop.cancel();
            match super::store::disable(&self.shared.pool, id, reason).await {
                Ok(_) => tracing::warn!(endpoint = %id, reason, "endpoint disabled"),
                Err(error) => tracing::error!(
                    endpoint = %id,
                    reason,
                    error = format!("{error:#}"),
                    "cannot disable the endpoint; it stops on this worker only"
                ),
            }
        }
    }

    fn record(&self, event: &Routed, called: &Called, at: OffsetDateTime, outcome: &'static str) {
        let attempt = Attempt {
            endpoint_id: self.id(),
            at,
            event_id: event.id,
            outcome,
            status: called.status.map(|s| s as i16),
            error: called.error.map(str::to_owned),
            latency_ms: called.latency.as_millis().min(i32::MAX as u128) as i32,
            response: called.response.clone(),
        };
        if self.shared.attempts.try_send(attempt).is_err() {
            self.shared.attempts_dropped.inc();
            tracing::debug!("the attempt log is full; an attempt is not recorded");
        }
    }

    async fn dead_letter(
        &self,
        event: &Routed,
        class: Class,
        reason: &str,
        attempts: u32,
        status: Option<u16>,
    ) {
        let sink = dlq_sink(self.id());
        loop {
            let letter = DeadLetter {
                sink: &sink,
                class,
                reason,
                attempts,
                status,
            };
            let original = dlq::Original {
                subject: &event.subject,
                stream_seq: event.seq,
                headers: event.headers.as_ref(),
                payload: event.payload.clone(),
            };
            match dlq::publish_original(&self.shared.js, original, letter).await {
                Ok(()) => {
                    tracing::warn!(endpoint = %self.id(), event = %event.id, class = class.as_str(), reason, "event dead-lettered");
                    self.shared
                        .metrics
                        .deliveries
                        .with_label_values(&[METRICS_SINK, "dead"])
                        .inc();
                    lock(&self.state).dead_lettered += 1;
                    self.settled(event.seq);
                    return;
                }
                Err(error) => {
                    tracing::error!(endpoint = %self.id(), error = format!("{error:#}"), "cannot write the dead letter; trying again");
                    if !self.wait(Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        }
    }

    /// Reads the next page of what the endpoint missed, from its position.
    async fn read_page(&self) -> anyhow::Result<Page> {
        let shared = &self.shared;
        let _permit = shared.reads.acquire().await?;
        let row = self.row();
        let rewind = lock(&self.state).rewind;
        if let Some(since) = rewind {
            // A recovery: back to the first event stored since then, if that is before
            // where the cursor is (what it has not delivered yet stays to deliver).
            let first = self.first_stored_since(since - CLOCK_MARGIN).await?;
            let mut state = lock(&self.state);
            if let (Some(through), Some(first)) = (state.read_through, first)
                && first <= through
            {
                state.read_through = Some(first.saturating_sub(1));
                // Read again from a little before `since` (clocks): what was delivered
                // and recorded before `since` is not sent again.
                state.rewound = Some((through, since));
            }
            state.rewind = None;
            tracing::info!(endpoint = %row.id, position = state.read_through, "recovery: delivering again from here");
        }
        let mut stream = shared.stream.clone();
        let info = stream.info().await?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let after = lock(&self.state).read_through;
        if let Some(after) = after {
            if after >= last {
                return Ok(Page::caught_up(after));
            }
            if after + 1 < first {
                tracing::error!(
                    endpoint = %row.id,
                    position = after,
                    oldest = first,
                    "events routed to the endpoint left the stream (LATCH_NATS_MAX_AGE) before they were delivered"
                );
            }
        }
        let deliver_policy = match after {
            Some(after) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            None => consumer::DeliverPolicy::ByStartTime {
                start_time: row.start_at - CLOCK_MARGIN,
            },
        };
        let mut filter_subjects: Vec<String> = match &row.kinds {
            Some(kinds) => kinds.iter().flat_map(|k| k.filters()).collect(),
            None => vec![EVENTS_SUBJECTS.to_owned()],
        };
        filter_subjects.push(format!("{REPLAY_PREFIX}{}", row.id));
        let consumer = shared
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subjects,
                deliver_policy,
                max_batch: PAGE as i64,
                ..Default::default()
            })
            .await?;
        let name = consumer.cached_info().name.clone();
        let rewound = lock(&self.state).rewound;
        let read = async {
            let mut page = Page {
                events: Vec::new(),
                through: after.unwrap_or(0),
                caught_up: false,
            };
            if consumer.cached_info().num_pending == 0 {
                page.caught_up = true;
            } else {
                let mut messages = consumer.messages().await?;
                for _ in 0..PAGE {
                    let (message, seq, pending) = next_message(&mut messages).await?;
                    if let Some(event) = Routed::parse(seq, &message) {
                        // Read again for a recovery, delivered and recorded before `since`.
                        let again = rewound.is_some_and(|(old, since)| {
                            seq <= old && event.recorded_at.is_some_and(|at| at < since)
                        });
                        if row.routes(&event) && !again {
                            page.events.push(Arc::new(event));
                        }
                    }
                    page.through = seq;
                    if pending == 0 {
                        page.caught_up = true;
                        break;
                    }
                }
            }
            if page.caught_up {
                page.through = page.through.max(last);
            }
            anyhow::Ok(page)
        }
        .await;
        let stream = shared.stream.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        read
    }
}

/// The next message of an ordered read, with its stream sequence and how many are pending
/// after it; an error when the stream stops answering within [`MESSAGE_WAIT`].
async fn next_message(
    messages: &mut consumer::pull::Ordered,
) -> anyhow::Result<(jetstream::Message, u64, u64)> {
    let message = tokio::time::timeout(MESSAGE_WAIT, messages.next())
        .await
        .map_err(|_| anyhow::anyhow!("the stream stopped answering"))?
        .ok_or_else(|| anyhow::anyhow!("the stream ended"))??;
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!("a message without its position: {e}"))?;
    let (seq, pending) = (info.stream_sequence, info.pending);
    Ok((message, seq, pending))
}

impl Runtime {
    /// The sequence of the first event stored at or after `since`, if any.
    async fn first_stored_since(&self, since: OffsetDateTime) -> anyhow::Result<Option<u64>> {
        let shared = &self.shared;
        let consumer = shared
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: since },
                max_batch: 1,
                ..Default::default()
            })
            .await?;
        let name = consumer.cached_info().name.clone();
        let first = if consumer.cached_info().num_pending == 0 {
            Ok(None)
        } else {
            async {
                let mut messages = consumer.messages().await?;
                let (_, seq, _) = next_message(&mut messages).await?;
                anyhow::Ok(Some(seq))
            }
            .await
        };
        let stream = shared.stream.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        first
    }
}

/// A lane's queue and task.
struct Lane {
    sender: mpsc::Sender<Arc<Routed>>,
    task: tokio::task::JoinHandle<()>,
}

/// What one page read.
struct Page {
    events: Vec<Arc<Routed>>,
    /// Every event up to here was looked at.
    through: u64,
    caught_up: bool,
}

impl Page {
    fn caught_up(through: u64) -> Page {
        Page {
            events: Vec::new(),
            through,
            caught_up: true,
        }
    }
}

fn lane_of(event: &Routed, lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match event.lane_key {
        Some(key) => key.hash(&mut hasher),
        None => event.subject.hash(&mut hasher),
    }
    (hasher.finish() % lanes.max(1) as u64) as usize
}
