//! Publishing a claimed batch into JetStream.
//!
//! With `sync_interval: always` the server fsyncs every write, so one message per round
//! trip is slow (~6k/s on a small machine). An atomic batch shares one fsync between all
//! its messages (measured: batches of 500 → ~50k msg/s), is stored in order and
//! contiguously, and is all-or-nothing, so a batch is published with ONE request: every
//! message but the last is sent without waiting, the last carries `Nats-Batch-Commit` and
//! its answer acknowledges the whole batch.
//!
//! Each message keeps its own `Nats-Msg-Id` (the outbox row id) so that republishing a
//! row is deduplicated. The server refuses a whole atomic batch if any of its ids is
//! already stored (err_code 10201) — exactly what happens when a relay restarts after a
//! publish it could not record. Then the batch's rows are sent again as pipelined single
//! publishes, in order, with the same ids: each is either stored or answered
//! `duplicate`, and the relay moves on.

use std::time::Duration;

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

#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    timeout: Duration,
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
        }
    }

    /// Publishes `rows` (at most [`MAX_BATCH`]) and says which the stream holds.
    pub async fn publish(&self, rows: &[OutboxRow]) -> Result<Published, PublishError> {
        debug_assert!(rows.len() <= MAX_BATCH);
        match self.atomic(rows).await {
            Ok(last_sequence) => Ok(Published {
                acked: rows.iter().map(|r| r.id).collect(),
                duplicates: 0,
                last_sequence: Some(last_sequence),
                failure: None,
            }),
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

    /// Pipelined single publishes with the same ids, in order; every ack is awaited.
    async fn singly(&self, rows: &[OutboxRow]) -> Published {
        let mut pending = Vec::with_capacity(rows.len());
        let mut published = Published::default();
        for row in rows {
            let sent = self
                .js
                .publish_with_headers(
                    row.subject.clone(),
                    message_headers(row),
                    Bytes::from(row.payload.clone()),
                )
                .await;
            match sent {
                Ok(ack) => pending.push((row.id, ack)),
                Err(e) => {
                    published.failure = Some(PublishError::Unacknowledged(e.to_string()));
                    break;
                }
            }
        }
        for (id, ack) in pending {
            match ack.await {
                Ok(ack) => {
                    published.acked.push(id);
                    if ack.duplicate {
                        published.duplicates += 1;
                    } else {
                        published.last_sequence = Some(ack.sequence);
                    }
                }
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
