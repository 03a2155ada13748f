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
//! costs milliseconds whatever the batch's size (measured on nats-server 2.15.1: ~7 ms for
//! a batch of one message against ~0.5–1 ms for a plain publish, fsync included). At low
//! and moderate load the relay's batches hold a few rows, so a small batch is sent one
//! message at a time instead, each acknowledged before the next is sent: the stream stores
//! them in order, and a failure stops the batch with the rows before it stored and the
//! rest still pending. Which way is cheaper depends on the disk, so the publisher keeps
//! running estimates of both costs ([`Costs`]) and sends a batch one message at a time
//! when that is expected to be no slower than one atomic batch.
//!
//! Each message keeps its own `Nats-Msg-Id` (the outbox row id) so that republishing a
//! row is deduplicated. The server refuses a whole atomic batch if any of its ids is
//! already stored (err_code 10201) — exactly what happens when a relay restarts after a
//! publish it could not record. Then the batch's rows are sent again as pipelined single
//! publishes, in order, with the same ids: each is either stored or answered
//! `duplicate`, and the relay moves on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
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

impl PublishError {
    /// A short, stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PublishError::Unacknowledged(_) => "unacknowledged",
            PublishError::Refused { .. } => "refused",
        }
    }
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
    /// The first failure in the single-publish fallback, if any; rows after it that were
    /// not acknowledged stay pending.
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
#[derive(Debug, Clone, Copy)]
pub struct Costs {
    /// Seconds per message sent one at a time (each acknowledged before the next).
    pub single: f64,
    /// Seconds per atomic batch.
    pub atomic: f64,
}

impl Costs {
    /// The largest batch ever sent one message at a time.
    pub const MAX_ONE_BY_ONE: usize = 32;
    /// Weight of the newest observation in the running averages.
    const WEIGHT: f64 = 0.1;

    /// Starting points, measured on nats-server 2.15.1 with `sync_interval: always` (a
    /// slower disk raises both; the estimates follow within a few dozen batches).
    pub const INITIAL: Costs = Costs {
        single: 0.001,
        atomic: 0.008,
    };

    /// True when `rows` should go one message at a time. A single row always does (an
    /// atomic batch of one costs the same and more), which also keeps `single` current.
    pub fn one_by_one(&self, rows: usize) -> bool {
        rows <= 1 || (rows <= Self::MAX_ONE_BY_ONE && rows as f64 * self.single <= self.atomic)
    }

    fn observe_single(&mut self, elapsed: Duration, rows: usize) {
        let per_message = elapsed.as_secs_f64() / rows.max(1) as f64;
        self.single += Self::WEIGHT * (per_message - self.single);
    }

    fn observe_atomic(&mut self, elapsed: Duration) {
        self.atomic += Self::WEIGHT * (elapsed.as_secs_f64() - self.atomic);
    }
}

#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    timeout: Duration,
    costs: Arc<Mutex<Costs>>,
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
    pub fn costs(&self) -> Costs {
        *self.costs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_costs(&self, update: impl FnOnce(&mut Costs)) {
        update(&mut self.costs.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Publishes `rows` (at most [`MAX_BATCH`]) and says which the stream holds.
    pub async fn publish(&self, rows: &[OutboxRow]) -> Result<Published, PublishError> {
        debug_assert!(rows.len() <= MAX_BATCH);
        let started = Instant::now();
        if self.costs().one_by_one(rows.len()) {
            let mut published = self.one_by_one(rows).await;
            return match published.failure.take() {
                Some(failure) if published.acked.is_empty() => Err(failure),
                None => {
                    self.update_costs(|c| c.observe_single(started.elapsed(), rows.len()));
                    Ok(published)
                }
                failure => Ok(Published {
                    failure,
                    ..published
                }),
            };
        }
        match self.atomic(rows).await {
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
                     sending them one by one"
                );
                Ok(self.singly(rows).await)
            }
            Err(other) => Err(other),
        }
    }

    async fn atomic(&self, rows: &[OutboxRow]) -> Result<u64, PublishError> {
        let Some((last, first)) = rows.split_last() else {
            return Err(PublishError::Unacknowledged("empty batch".into()));
        };
        let batch_id = Uuid::new_v4().simple().to_string();
        let unacknowledged =
            |e: &dyn std::fmt::Display| PublishError::Unacknowledged(e.to_string());
        for (index, row) in first.iter().enumerate() {
            let mut headers = message_headers(row);
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (index + 1).to_string());
            self.client
                .publish_with_headers(
                    row.subject.clone(),
                    headers,
                    Bytes::from(row.payload.clone()),
                )
                .await
                .map_err(|e| unacknowledged(&e))?;
        }
        let mut headers = message_headers(last);
        headers.insert("Nats-Batch-Id", batch_id.as_str());
        headers.insert("Nats-Batch-Sequence", rows.len().to_string());
        headers.insert("Nats-Batch-Commit", "1");
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(Bytes::from(last.payload.clone()))
            .timeout(Some(self.timeout));
        let answer = self
            .client
            .send_request(last.subject.clone(), request)
            .await
            .map_err(|e| unacknowledged(&e))?;
        match serde_json::from_slice::<CommitAnswer>(&answer.payload) {
            Ok(CommitAnswer::Ack { seq, count }) if count as usize == rows.len() => Ok(seq),
            Ok(CommitAnswer::Ack { count, .. }) => Err(PublishError::Refused {
                err_code: 0,
                description: format!("batch of {} acknowledged as {count}", rows.len()),
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

    /// One message at a time, each acknowledged before the next is sent; stops at the
    /// first failure.
    async fn one_by_one(&self, rows: &[OutboxRow]) -> Published {
        let mut published = Published::default();
        for row in rows {
            let acked = match self.send(row).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(ack) => published.record(row.id, &ack),
                Err(e) => {
                    published.failure = Some(single_failure(&e));
                    break;
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
                row.subject.clone(),
                message_headers(row),
                Bytes::from(row.payload.clone()),
            )
            .await
    }

    /// Pipelined single publishes with the same ids, in order; every ack is awaited.
    async fn singly(&self, rows: &[OutboxRow]) -> Published {
        let mut pending = Vec::with_capacity(rows.len());
        let mut published = Published::default();
        for row in rows {
            match self.send(row).await {
                Ok(ack) => pending.push((row.id, ack)),
                Err(e) => {
                    published.failure = Some(PublishError::Unacknowledged(e.to_string()));
                    break;
                }
            }
        }
        for (id, ack) in pending {
            match ack.await {
                Ok(ack) => published.record(id, &ack),
                Err(e) => {
                    if published.failure.is_none() {
                        published.failure = Some(PublishError::Unacknowledged(e.to_string()));
                    }
                }
            }
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_go_one_by_one_while_that_is_no_slower() {
        let costs = Costs {
            single: 0.001,
            atomic: 0.008,
        };
        assert!(costs.one_by_one(1));
        assert!(costs.one_by_one(8));
        assert!(!costs.one_by_one(9));
        // However slow single publishes look, a single row goes alone.
        let slow_disk = Costs {
            single: 0.020,
            atomic: 0.008,
        };
        assert!(slow_disk.one_by_one(1));
        assert!(!slow_disk.one_by_one(2));
        // However slow atomic batches look, large batches stay atomic.
        let stalled = Costs {
            single: 0.0001,
            atomic: 1.0,
        };
        assert!(stalled.one_by_one(Costs::MAX_ONE_BY_ONE));
        assert!(!stalled.one_by_one(Costs::MAX_ONE_BY_ONE + 1));
    }

    #[test]
    fn the_estimates_follow_what_is_measured() {
        let mut costs = Costs::INITIAL;
        for _ in 0..100 {
            costs.observe_single(Duration::from_millis(12), 4);
            costs.observe_atomic(Duration::from_millis(6));
        }
        assert!((costs.single - 0.003).abs() < 1e-5, "{costs:?}");
        assert!((costs.atomic - 0.006).abs() < 1e-5, "{costs:?}");
        assert!(costs.one_by_one(2));
        assert!(!costs.one_by_one(3));
    }
}
