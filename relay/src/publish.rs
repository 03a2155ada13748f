//! Publishing a claimed batch into JetStream.
//!
//! With `sync_interval: always` the server fsyncs every write, so one message per round
//! trip is slow (~6k/s on a small machine). An atomic batch shares one fsync between all
//! its messages (measured: batches of 500 → ~50k msg/s), is stored in order and
//! contiguously, and is all-or-nothing, so a batch is published with ONE request: every
//! message but the last is sent without waiting, the last carries `Nats-Batch-Commit` and
//! its answer acknowledges the whole batch.
//!
//! An atomic batch has a fixed cost, though: on a single-replica file stream the server
//! stages every batch in a file store of its own, created and deleted per batch, which
//! costs milliseconds whatever the batch's size (measured on nats-server 2.15.1: ~6 ms for
//! a batch of one message against ~0.3 ms for a plain publish, fsync included). At low
//! and moderate load the relay's batches hold a few rows, so a small batch is sent as
//! plain publishes instead ([`Publisher::singles`]), pipelined in *segments*: a segment is
//! a run of rows whose ordering keys (holder, or door) are all different; its messages go
//! out without waiting and its acknowledgements are awaited before the next segment is
//! sent. Pipelining lets the server take the next message while it syncs the last (ten in
//! flight publish ~1.7× as fast as one at a time), and because two rows of one key are
//! never in flight together, a row that fails can never be overtaken by a later row of its
//! key: the stream keeps per-holder order whatever fails. A failure ends the batch after
//! its segment; the rows the stream acknowledged are deleted and the rest stay pending.
//! Which way is cheaper depends on the disk, so the publisher keeps running estimates of
//! both costs ([`Costs`]) and sends a batch as plain publishes when that is expected to be
//! no slower than one atomic batch.
//!
//! Each message keeps its own `Nats-Msg-Id` (the outbox row id) so that republishing a
//! row is deduplicated. The server refuses a whole atomic batch if any of its ids is
//! already stored (err_code 10201) — exactly what happens when a relay restarts after a
//! publish it could not record. Then the batch's rows are sent again as plain publishes,
//! in segments, with the same ids: each is either stored or answered `duplicate`, and the
//! relay moves on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

use crate::outbox::OutboxRow;

/// The server's cap on an atomic batch.
pub const MAX_BATCH: usize = 1000;

/// err_code of "atomic publish batch contains duplicate message id".
const DUPLICATE_IN_BATCH: u64 = 10201;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No answer in time, or the connection is down: the rows stay pending.
    #[error("no acknowledgement from NATS: {0}")]
    Unacknowledged(String),
    /// The server answered with an error (stream missing, full, misconfigured...).
    #[error("NATS refused the batch: {description} (err_code {err_code})")]
    Refused { err_code: u64, description: String },
}

/// What came back for a batch.
#[derive(Debug, Default)]
pub struct Published {
    /// Rows the stream now holds (stored now or earlier), in claim order.
    pub acked: Vec<i64>,
    /// Of those, rows the stream already had.
    pub duplicates: usize,
    /// Stream sequence of the last stored message, when known.
    pub last_sequence: Option<u64>,
    /// The first failure among plain publishes, if any; the rows not acknowledged stay
    /// pending.
    pub failure: Option<PublishError>,
}

impl Published {
    fn record(&mut self, id: i64, ack: &jetstream::publish::PublishAck) {
        self.acked.push(id);
        if ack.duplicate {
            self.duplicates += 1;
        } else {
            self.last_sequence = Some(ack.sequence);
        }
    }
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
    Ack { seq: u64, count: u64 },
}

/// A single publish's failure: no answer, or the server's refusal.
fn single_failure(e: &jetstream::context::PublishError) -> PublishError {
    use jetstream::context::PublishErrorKind as Kind;
    match e.kind() {
        Kind::TimedOut | Kind::BrokenPipe | Kind::MaxAckPending => {
            PublishError::Unacknowledged(e.to_string())
        }
        _ => PublishError::Refused {
            err_code: 0,
            description: e.to_string(),
        },
    }
}

/// Running estimates of what publishing costs, from the relay's own publishes.
///
/// Plain publishes cost one round trip (with its fsync) for the first message and less for
/// each further one, which rides along while the server syncs the one before: `n` rows
/// cost about `round + (n - 1) * next`. A per-message average taken from the mostly single
/// rows of a quiet hour would price a burst of twenty at twenty round trips, and send it
/// as an atomic batch that costs several times more.
#[derive(Debug, Clone, Copy)]
pub struct Costs {
    /// Seconds for one plain publish on its own (a batch of one row).
    pub round: f64,
    /// Seconds each further row of a batch of plain publishes adds.
    pub next: f64,
    /// Seconds per atomic batch.
    pub atomic: f64,
}

impl Costs {
    /// The largest batch ever sent as plain publishes.
    pub const MAX_SINGLES: usize = 32;
    /// Weight of the newest observation in the running averages.
    const WEIGHT: f64 = 0.1;

    /// Starting points, measured on nats-server 2.15.1 with `sync_interval: always` (a
    /// slower disk raises them all; the estimates follow within a few dozen batches).
    pub const INITIAL: Costs = Costs {
        round: 0.001,
        next: 0.0005,
        atomic: 0.008,
    };

    /// What `rows` plain publishes are expected to take, in seconds.
    pub fn singles_cost(&self, rows: usize) -> f64 {
        self.round + rows.saturating_sub(1) as f64 * self.next
    }

    /// True when `rows` should go as plain publishes. A single row always does (an atomic
    /// batch of one costs the same and more), which also keeps `round` current.
    pub fn singles(&self, rows: usize) -> bool {
        rows <= 1 || (rows <= Self::MAX_SINGLES && self.singles_cost(rows) <= self.atomic)
    }

    fn observe_singles(&mut self, elapsed: Duration, rows: usize) {
        let elapsed = elapsed.as_secs_f64();
        if rows <= 1 {
            self.round += Self::WEIGHT * (elapsed - self.round);
        } else {
            let next = ((elapsed - self.round) / (rows - 1) as f64).max(0.0);
            self.next += Self::WEIGHT * (next - self.next);
        }
    }

    fn observe_atomic(&mut self, elapsed: Duration) {
        self.atomic += Self::WEIGHT * (elapsed.as_secs_f64() - self.atomic);
    }
}

/// The length of the segment `rows` starts with: the longest prefix whose ordering keys
/// are all different (at least one row).
fn segment_len(rows: &[OutboxRow]) -> usize {
    (1..rows.len())
        .find(|&end| {
            rows[..end]
                .iter()
                .any(|row| row.ordering_key == rows[end].ordering_key)
        })
        .unwrap_or(rows.len())
}

#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    timeout: Duration,
    costs: Arc<Mutex<Costs>>,
}

/// An atomic batch's messages, built before it is sent: the relay builds the next batch
/// while the server is still committing the last one, so that sending it is only a matter
/// of handing the messages over.
pub struct AtomicBatch {
    messages: Vec<Outgoing>,
}

struct Outgoing {
    subject: Subject,
    headers: HeaderMap,
    payload: Bytes,
}

impl AtomicBatch {
    /// The batch of `rows`: each message with its own id, the batch's id and its place in
    /// it, the last one carrying the commit.
    pub fn build(rows: &[OutboxRow]) -> AtomicBatch {
        let batch_id = Uuid::new_v4().simple().to_string();
        let messages = rows
            .iter()
            .enumerate()
            .map(|(index, row)| {
                let mut headers = message_headers(row);
                headers.insert("Nats-Batch-Id", batch_id.as_str());
                headers.insert("Nats-Batch-Sequence", (index + 1).to_string());
                if index + 1 == rows.len() {
                    headers.insert("Nats-Batch-Commit", "1");
                }
                Outgoing {
                    subject: Subject::from(latch_core::nats::publish_subject(
                        &row.subject,
                        &row.ordering_key,
                    )),
                    headers,
                    payload: Bytes::from(row.payload.clone()),
                }
            })
            .collect();
        AtomicBatch { messages }
    }

    /// The batch of `rows` when they can only go as one (more than plain publishes ever
    /// carry), built ahead; `None` when the choice is made at publish time.
    pub fn ahead_of_publish(rows: &[OutboxRow]) -> Option<AtomicBatch> {
        (rows.len() > Costs::MAX_SINGLES).then(|| AtomicBatch::build(rows))
    }
}

fn message_headers(row: &OutboxRow) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", row.id.to_string());
    for (name, value) in &row.headers {
        if let Some(value) = value.as_str() {
            headers.insert(name.as_str(), value);
        }
    }
    headers
}

impl Publisher {
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        Publisher {
            client,
            js,
            timeout,
            costs: Arc::new(Mutex::new(Costs::INITIAL)),
        }
    }

    /// The current cost estimates.
    /// How long one acknowledgement may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn costs(&self) -> Costs {
        *self.costs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_costs(&self, update: impl FnOnce(&mut Costs)) {
        update(&mut self.costs.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Publishes `rows` (at most [`MAX_BATCH`]) and says which the stream holds.
    pub async fn publish(&self, rows: &[OutboxRow]) -> Result<Published, PublishError> {
        self.publish_prepared(rows, None).await
    }

    /// The same, with the atomic batch of `rows` already built, if it was.
    pub async fn publish_prepared(
        &self,
        rows: &[OutboxRow],
        prepared: Option<AtomicBatch>,
    ) -> Result<Published, PublishError> {
        debug_assert!(rows.len() <= MAX_BATCH);
        let started = Instant::now();
        if self.costs().singles(rows.len()) {
            let mut published = self.singles(rows).await;
            return match published.failure.take() {
                Some(failure) if published.acked.is_empty() => Err(failure),
                None => {
                    self.update_costs(|c| c.observe_singles(started.elapsed(), rows.len()));
                    Ok(published)
                }
                failure => Ok(Published {
                    failure,
                    ..published
                }),
            };
        }
        let batch = prepared.unwrap_or_else(|| AtomicBatch::build(rows));
        debug_assert_eq!(batch.messages.len(), rows.len());
        match self.atomic(batch).await {
            Ok(last_sequence) => {
                self.update_costs(|c| c.observe_atomic(started.elapsed()));
                Ok(Published {
                    acked: rows.iter().map(|r| r.id).collect(),
                    duplicates: 0,
                    last_sequence: Some(last_sequence),
                    failure: None,
                })
            }
            Err(PublishError::Refused { err_code, .. }) if err_code == DUPLICATE_IN_BATCH => {
                tracing::info!(
                    rows = rows.len(),
                    "batch holds rows the stream already has (a republish after a restart); \
                     sending them as plain publishes"
                );
                Ok(self.singles(rows).await)
            }
            Err(other) => Err(other),
        }
    }

    async fn atomic(&self, batch: AtomicBatch) -> Result<u64, PublishError> {
        let count = batch.messages.len();
        let mut messages = batch.messages.into_iter();
        let Some(last) = messages.next_back() else {
            return Err(PublishError::Unacknowledged("empty batch".into()));
        };
        let unacknowledged =
            |e: &dyn std::fmt::Display| PublishError::Unacknowledged(e.to_string());
        for message in messages {
            self.client
                .publish_with_headers(message.subject, message.headers, message.payload)
                .await
                .map_err(|e| unacknowledged(&e))?;
        }
        let request = async_nats::Request::new()
            .headers(last.headers)
            .payload(last.payload)
            .timeout(Some(self.timeout));
        let answer = self
            .client
            .send_request(last.subject, request)
            .await
            .map_err(|e| unacknowledged(&e))?;
        match serde_json::from_slice::<CommitAnswer>(&answer.payload) {
            Ok(CommitAnswer::Ack { seq, count: acked }) if acked as usize == count => Ok(seq),
            Ok(CommitAnswer::Ack { count: acked, .. }) => Err(PublishError::Refused {
                err_code: 0,
                description: format!("batch of {count} acknowledged as {acked}"),
            }),
            Ok(CommitAnswer::Err { error }) => Err(PublishError::Refused {
                err_code: error.err_code,
                description: error.description,
            }),
            Err(e) => Err(PublishError::Unacknowledged(format!(
                "unreadable acknowledgement: {e}"
            ))),
        }
    }

    /// Plain publishes in segments of distinct ordering keys, each segment acknowledged
    /// before the next is sent (see the module doc); stops after the segment of the first
    /// failure.
    async fn singles(&self, rows: &[OutboxRow]) -> Published {
        let mut published = Published::default();
        let mut rest = rows;
        while !rest.is_empty() && published.failure.is_none() {
            let (segment, after) = rest.split_at(segment_len(rest));
            rest = after;
            let mut pending = Vec::with_capacity(segment.len());
            for row in segment {
                match self.send(row).await {
                    Ok(ack) => pending.push((row.id, ack)),
                    Err(e) => {
                        published.failure = Some(single_failure(&e));
                        break;
                    }
                }
            }
            // Every acknowledgement of the segment is awaited, so that each row the stream
            // stored is known (and deleted) even after a failure.
            for (id, ack) in pending {
                match ack.await {
                    Ok(ack) => published.record(id, &ack),
                    Err(e) => {
                        published.failure.get_or_insert(single_failure(&e));
                    }
                }
            }
        }
        published
    }

    /// Sends one row as a plain JetStream publish; the future resolves to its ack.
    async fn send(
        &self,
        row: &OutboxRow,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        self.js
            .publish_with_headers(
                latch_core::nats::publish_subject(&row.subject, &row.ordering_key),
                message_headers(row),
                Bytes::from(row.payload.clone()),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_go_as_plain_publishes_while_that_is_no_slower() {
        let costs = Costs {
            round: 0.001,
            next: 0.0005,
            atomic: 0.008,
        };
        assert!(costs.singles(1));
        assert!(costs.singles(15));
        assert!(!costs.singles(16));
        // However slow plain publishes look, a single row goes alone.
        let slow_disk = Costs {
            round: 0.020,
            next: 0.010,
            atomic: 0.008,
        };
        assert!(slow_disk.singles(1));
        assert!(!slow_disk.singles(2));
        // However slow atomic batches look, large batches stay atomic.
        let stalled = Costs {
            round: 0.0001,
            next: 0.0001,
            atomic: 1.0,
        };
        assert!(stalled.singles(Costs::MAX_SINGLES));
        assert!(!stalled.singles(Costs::MAX_SINGLES + 1));
    }

    #[test]
    fn the_estimates_follow_what_is_measured() {
        let mut costs = Costs::INITIAL;
        for _ in 0..200 {
            // One row alone: a round trip; six rows: a round trip and five more at 0.2 ms.
            costs.observe_singles(Duration::from_micros(400), 1);
            costs.observe_singles(Duration::from_micros(1400), 6);
            costs.observe_atomic(Duration::from_millis(6));
        }
        assert!((costs.round - 0.0004).abs() < 1e-5, "{costs:?}");
        assert!((costs.next - 0.0002).abs() < 1e-5, "{costs:?}");
        assert!((costs.atomic - 0.006).abs() < 1e-5, "{costs:?}");
        // 28 rows: 0.4 ms + 27 × 0.2 ms = 5.8 ms, cheaper than one atomic batch; 30 rows:
        // 6.2 ms, dearer.
        assert!(costs.singles(28));
        assert!(!costs.singles(30));
    }

    fn rows(keys: &[&str]) -> Vec<OutboxRow> {
        keys.iter()
            .zip(1..)
            .map(|(key, id)| OutboxRow {
                id,
                event_id: Uuid::now_v7(),
                subject: "latch.events.check_in".into(),
                ordering_key: (*key).into(),
                payload: "{}".into(),
                headers: Default::default(),
                created_at: time::OffsetDateTime::UNIX_EPOCH,
            })
            .collect()
    }

    #[test]
    fn a_segment_ends_before_the_second_row_of_a_key() {
        let segments = |keys: &[&str]| {
            let rows = rows(keys);
            let mut rest = &rows[..];
            let mut lens = Vec::new();
            while !rest.is_empty() {
                let len = segment_len(rest);
                lens.push(len);
                rest = &rest[len..];
            }
            lens
        };
        assert_eq!(segments(&["a", "b", "c"]), [3]);
        assert_eq!(segments(&["a", "b", "a", "c", "b"]), [2, 3]);
        assert_eq!(segments(&["a", "b", "c", "b", "a"]), [3, 2]);
        assert_eq!(segments(&["a", "a", "a"]), [1, 1, 1]);
        assert_eq!(segments(&["a"]), [1]);
    }
}
