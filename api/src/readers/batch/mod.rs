//! Offline upload: `POST /v1/readers/events:batch`.
//!
//! A reader that lost its network keeps deciding at the door and buffers what happened;
//! when it is back it uploads the buffer, up to `LATCH_HTTP_BATCH_MAX_EVENTS` events at a
//! time, each numbered with its `seq`. The answer is one result per event, in request order:
//! `accepted` (recorded now, with its action id), `duplicate` (this seq was accepted before
//! for the same event — nothing written), or `rejected` (with a code: malformed, invalid,
//! `seq_reused`, unknown card, ...).
//!
//! How the items are applied:
//!
//! - Each item is parsed and validated on its own, so one bad item is one `rejected`
//!   result, never a failed upload.
//! - Each item runs the same statements as its live endpoint (one decision SQL for unlocks,
//!   one presence SQL, one alarm SQL) plus the seq claim of [`crate::readers::seq`], all in
//!   the current transaction. Check-ins/outs keep following `occurred_at` order, so a late
//!   upload never overrides a newer presence state.
//! - Every uploaded event is recorded with `decided_offline = true`: it was captured while
//!   the reader was offline (downstream, the legacy sink reports such punches as late). For
//!   an unlock it also means the reader decided alone; see [`crate::readers::unlock`].
//! - A rejection found by the database (unknown card, holder deactivated) gives the item's
//!   seq claim back with a `DELETE` of that one row. No SAVEPOINTs: each would be a
//!   subtransaction, and a transaction with more than 64 of them overflows its
//!   subtransaction cache, after which every other session's visibility checks must read
//!   `pg_subtrans` — a known performance cliff, and the unlock path would pay for it.
//! - Items are committed in transactions of [`COMMIT_EVERY`] items: few commits (each is a
//!   WAL flush), and the per-holder advisory locks the outbox trigger takes are held only
//!   briefly, so a live unlock of a holder in the upload waits milliseconds, not for the
//!   whole upload.
//! - A database failure (not a bad item) fails the request with 500/503. Chunks committed
//!   before it stay committed: the reader re-sends the whole batch, and they answer
//!   `duplicate`. So a batch is safe to retry as it is; an `Idempotency-Key` adds nothing
//!   and is not used here.

mod item;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use deadpool_postgres::Transaction;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

pub use item::{BatchEvent, BatchEventType, ItemResult, ItemStatus};
use item::{Checked, check};

use crate::auth::{KEY_MATCHES, ReaderKey, reader_rejection};
use crate::config::ApiConfig;
use crate::error::{ApiError, ErrorBody, Kind};
use crate::idempotency::StoredResponse;
use crate::metrics::ApiMetrics;
use crate::readers::alarm::{AlarmEvent, alarm_statement};
use crate::readers::post::{ReaderPost, Statement};
use crate::readers::presence::{PresenceEvent, presence_statement};
use crate::readers::seq::{self, Claim, SeqClaim};
use crate::readers::unlock::{UnlockEvent, offline_unlock_statement};

/// Items per transaction.
pub const COMMIT_EVERY: usize = 32;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The buffered events, oldest first. Each is checked on its own.
    /// Each a `BatchEvent`. Kept as raw JSON so that each is parsed on its own, with the
    /// same checks as a live post (a duplicated key is refused, not silently resolved); an
    /// event that is not a valid `BatchEvent` is one `rejected` result, not a failed upload.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub events: Vec<Box<serde_json::value::RawValue>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One per event, in request order.
    pub results: Vec<ItemResult>,
}

/// What an upload did, for the metrics once it is committed.
#[derive(Default)]
struct Tally {
    accepted: u64,
    duplicate: u64,
    rejected: u64,
    seq_gaps: u64,
    clock_skewed: u64,
    disputed: u64,
}

impl Tally {
    fn count(&mut self, result: &ItemResult) {
        match result.status {
            ItemStatus::Accepted => self.accepted += 1,
            ItemStatus::Duplicate => self.duplicate += 1,
            ItemStatus::Rejected => self.rejected += 1,
        }
    }

    fn publish(&self, metrics: &ApiMetrics) {
        for (status, n) in [
            (ItemStatus::Accepted, self.accepted),
            (ItemStatus::Duplicate, self.duplicate),
            (ItemStatus::Rejected, self.rejected),
        ] {
            metrics
                .batch_events
                .with_label_values(&[status.as_str()])
                .inc_by(n);
        }
        metrics.reader_seq_gaps.inc_by(self.seq_gaps);
        metrics.reader_clock_skew.inc_by(self.clock_skewed);
        metrics.offline_disputes.inc_by(self.disputed);
    }
}

/// What every item of one upload shares.
struct Upload<'a> {
    key: &'a ReaderKey,
    trace: &'a str,
    config: &'a ApiConfig,
}

/// Upload events a reader buffered while offline.
#[utoipa::path(
    post,
    path = "/v1/readers/events:batch",
    tag = "card readers",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per event, in request order", body = BatchResponse),
        (status = 400, description = "The body is not `{\"events\": [...]}`", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 403, description = "Not a reader key", body = ErrorBody),
        (status = 413, description = "`too_many_events`, or `body_too_large`", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
pub async fn upload(
    post: ReaderPost,
    body: crate::body::Json<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let ReaderPost {
        pool,
        metrics,
        config,
        last_seen,
        key,
        ..
    } = &post;
    let events = body.into_inner().events;
    if events.len() > config.batch_max_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "at most {} events per upload; send the rest in another",
                config.batch_max_events
            ),
        ));
    }
    let trace = post.trace();
    let mut client = pool.get().await?;
    let reader = client
        .query_opt(
            &format!("SELECT id FROM readers r WHERE {KEY_MATCHES} AND enabled"),
            &[&key.presented],
        )
        .await?;
    let Some(reader) = reader else {
        return Err(reader_rejection(pool, key).await);
    };
    let upload = Upload {
        key,
        trace: &trace,
        config,
    };
    let mut results = Vec::with_capacity(events.len());
    for chunk in events.chunks(COMMIT_EVERY) {
        let tx = client.transaction().await?;
        let mut tally = Tally::default();
        for raw in chunk {
            let result = match upload_one(&tx, &upload, raw, &mut tally).await {
                Err(e) if e.kind() == Kind::UnknownReader => {
                    return Err(reader_rejection(pool, key).await);
                }
                other => other?,
            };
            tally.count(&result);
            results.push(result);
        }
        tx.commit().await?;
        tally.publish(metrics);
    }
    last_seen.mark(reader.get(0));
    Ok(HttpResponse::Ok().json(BatchResponse { results }))
}

/// Applies one buffered event. `Err` only for what fails the whole upload (the database,
/// the reader's key); everything about the event itself is a result.
async fn upload_one(
    tx: &Transaction<'_>,
    upload: &Upload<'_>,
    raw: &serde_json::value::RawValue,
    tally: &mut Tally,
) -> Result<ItemResult, ApiError> {
    let event = match crate::body::object::<BatchEvent>(raw.get()) {
        Ok(event) => event,
        Err(e) => {
            let seq = serde_json::from_str::<serde_json::Value>(raw.get())
                .ok()
                .and_then(|v| v.get("seq").and_then(serde_json::Value::as_i64));
            let error = ApiError::bad_request("malformed_event", e.message());
            return Ok(ItemResult::rejected(seq, &error));
        }
    };
    let seq = event.seq;
    let (checked, occurred_at) = match check(&event) {
        Ok(checked) => checked,
        Err(error) => return Ok(ItemResult::rejected(Some(seq), &error)),
    };
    let claim = SeqClaim::new(seq, &checked.fingerprint(occurred_at))?;
    let (reader_id, jumped) = match seq::claim(tx, upload.key, &claim).await? {
        Claim::UnknownReader => return Err(ApiError::unknown_reader()),
        Claim::Duplicate(stored) => return Ok(ItemResult::duplicate(seq, stored.action_id)),
        Claim::Reused => return Ok(ItemResult::rejected(Some(seq), &seq::seq_reused(seq))),
        Claim::Fresh { reader_id, jumped } => (reader_id, jumped),
    };
    let action_id = Uuid::now_v7();
    let clock_skewed = upload
        .config
        .readers
        .is_skewed(Some(occurred_at), OffsetDateTime::now_utc());
    let recorded: Result<StoredResponse, ApiError> = match checked {
        Checked::Presence { kind, card_id } => {
            let event = PresenceEvent {
                kind,
                card_id,
                action_id,
                trace: upload.trace,
                seq: Some(seq),
                occurred_at: Some(occurred_at),
                clock_skewed,
                offline: true,
            };
            match presence_statement(tx, upload.key, &event).await? {
                Statement::Recorded { answer, .. } => {
                    Ok(StoredResponse::new(StatusCode::CREATED, &answer)?)
                }
                Statement::UnknownReader => return Err(ApiError::unknown_reader()),
                Statement::Refused { error, .. } => Err(error),
            }
        }
        Checked::Unlock { card_id, decision } => {
            let event = UnlockEvent {
                card_id,
                action_id,
                trace: upload.trace,
                seq: Some(seq),
                occurred_at: Some(occurred_at),
                clock_skewed,
            };
            let verdict = offline_unlock_statement(tx, upload.key, &event, decision)
                .await?
                .ok_or_else(ApiError::unknown_reader)?;
            if verdict.disputed {
                tally.disputed += 1;
            }
            Ok(StoredResponse::new(StatusCode::OK, &verdict.response)?)
        }
        Checked::Alarm { alarm, restored } => {
            let event = AlarmEvent {
                kind: alarm.event_kind(restored),
                action_id,
                trace: upload.trace,
                seq: Some(seq),
                occurred_at: Some(occurred_at),
                clock_skewed,
                offline: true,
            };
            let done = alarm_statement(tx, upload.key, &event)
                .await?
                .ok_or_else(ApiError::unknown_reader)?;
            Ok(StoredResponse::new(StatusCode::CREATED, &done)?)
        }
    };
    match recorded {
        Ok(response) => {
            seq::store(tx, reader_id, seq, &response, Some(action_id)).await?;
            tally.seq_gaps += u64::from(jumped);
            tally.clock_skewed += u64::from(clock_skewed);
            Ok(ItemResult::accepted(seq, Some(action_id)))
        }
        Err(rejection) => {
            seq::release(tx, reader_id, seq).await?;
            Ok(ItemResult::rejected(Some(seq), &rejection))
        }
    }
}
