//! Check-ins and check-outs: `POST /v1/check-ins`, `POST /v1/check-outs`, and the same
//! events uploaded in an offline batch.
//!
//! One statement records the action and moves the presence roll-call — unless presence
//! already reflects something that happened later, so a late upload never overrides a
//! newer state.
//!
//! "Later" is judged by the reader's clock capped at the server's, so that a reader clock
//! never decides the roll-call: a check-out dated 9999 would otherwise hide every later
//! check-in of that person (someone on site, missing from the evacuation list), and a
//! reader running a few minutes fast would hide the next event from a reader with a
//! correct clock. A live post whose clock was flagged skewed is placed at the server's
//! time alone: it is happening now, whatever the reader's clock says (one stuck in the past
//! would otherwise never move the roll-call again). An offline upload keeps its own
//! (capped) time even when flagged: it happened before the upload, and must not override
//! what the server has seen since.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, post};
use deadpool_postgres::GenericClient;
use latch_core::event::EventKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::ReaderKey;
use crate::error::{ApiError, ErrorBody};
use crate::readers::post::{ReaderPost, ReaderStatement, Statement};
use crate::readers::seq::{EventFingerprint, SeqClaim};
use crate::readers::{attach_trace, canonical_time, validate_card, validate_seq};
use crate::timestamp::Timestamp;

/// A check-in or check-out.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    #[schema(example = "04A2B9C1D2")]
    pub card_id: String,
    /// When it happened by the reader's clock (RFC 3339); the server's time when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub occurred_at: Option<Timestamp>,
    /// The reader's own event number (monotonic per reader, 0 or more). The same seq sent
    /// again answers the first response and writes nothing.
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub seq: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceResponse {
    pub action_id: Uuid,
    /// `check_in` or `check_out`.
    #[schema(value_type = String)]
    pub kind: EventKind,
    pub site: String,
    pub door_id: Uuid,
    pub holder_id: Uuid,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
    /// The reader's `occurred_at` was too far from server time (recorded, but flagged).
    #[serde(default)]
    pub clock_skewed: bool,
}

/// Check-in / check-out in one statement: authenticate the reader, find the holder,
/// record the action and move the presence roll-call. Answers one row: the reader's id
/// (NULL: no such reader), whether the holder is active (NULL: unknown card), and what
/// was recorded.
const PRESENCE_SQL: &str = concat!(
    "
WITH reader AS (
    SELECT r.id, r.door_id, d.site
    FROM readers r JOIN doors d ON d.id = r.door_id
    WHERE ",
    crate::auth::key_matches!(),
    " AND r.enabled
), holder AS (
    SELECT id, active FROM holders WHERE card_id = $2
), recorded AS (
    INSERT INTO actions (id, kind, site, door_id, holder_id, card_id, reader_id, reader_seq,
                         occurred_at, clock_skewed, decided_offline, trace_parent)
    SELECT $3, $4, reader.site, reader.door_id, holder.id, $2, reader.id, $8,
           COALESCE($5, now()), $9, $10, $6
    FROM reader JOIN holder ON holder.active
    RETURNING id, site, door_id, holder_id, occurred_at, recorded_at, clock_skewed
), moved AS (
    INSERT INTO presence (site, holder_id, present, door_id, as_of, action_id)
    SELECT site, holder_id, $7, door_id,
           CASE WHEN clock_skewed AND NOT $10 THEN recorded_at
                ELSE LEAST(occurred_at, recorded_at) END,
           id
    FROM recorded
    ON CONFLICT (site, holder_id) DO UPDATE
        SET present = EXCLUDED.present, door_id = EXCLUDED.door_id,
            as_of = EXCLUDED.as_of, action_id = EXCLUDED.action_id
        WHERE presence.as_of <= EXCLUDED.as_of
)
SELECT (SELECT id FROM reader) AS reader_id, (SELECT active FROM holder) AS holder_active,
       recorded.site, recorded.door_id, recorded.holder_id, recorded.occurred_at,
       recorded.recorded_at
FROM (VALUES (1)) AS one LEFT JOIN recorded ON true"
);

/// What a presence statement records.
pub(crate) struct PresenceEvent<'a> {
    pub kind: EventKind,
    pub card_id: &'a str,
    pub action_id: Uuid,
    pub trace: &'a str,
    pub seq: Option<i64>,
    pub occurred_at: Option<OffsetDateTime>,
    pub clock_skewed: bool,
    /// Captured while the reader was offline, uploaded later (the `decided_offline` flag,
    /// which the legacy sink reports as a late punch).
    pub offline: bool,
}

impl ReaderStatement for PresenceEvent<'_> {
    type Answer = PresenceResponse;
    const STATUS: StatusCode = StatusCode::CREATED;

    async fn run(
        &self,
        db: &impl GenericClient,
        key: &ReaderKey,
    ) -> Result<Statement<PresenceResponse>, ApiError> {
        presence_statement(db, key, self).await
    }
}

pub(crate) async fn presence_statement(
    db: &impl GenericClient,
    key: &ReaderKey,
    event: &PresenceEvent<'_>,
) -> Result<Statement<PresenceResponse>, ApiError> {
    let statement = db.prepare_cached(PRESENCE_SQL).await?;
    let present = event.kind == EventKind::CheckIn;
    let row = db
        .query_one(
            &statement,
            &[
                &key.presented,
                &event.card_id,
                &event.action_id,
                &event.kind.as_str(),
                &event.occurred_at,
                &event.trace,
                &present,
                &event.seq,
                &event.clock_skewed,
                &event.offline,
            ],
        )
        .await?;
    let reader_id: Option<Uuid> = row.get("reader_id");
    let holder_active: Option<bool> = row.get("holder_active");
    Ok(match (reader_id, holder_active) {
        (None, _) => Statement::UnknownReader,
        (Some(reader_id), None) => Statement::Refused {
            reader_id,
            error: ApiError::not_found("unknown_card", "no holder has this card"),
        },
        (Some(reader_id), Some(false)) => Statement::Refused {
            reader_id,
            error: ApiError::conflict("holder_inactive", "this card's holder is deactivated"),
        },
        (Some(reader_id), Some(true)) => Statement::Recorded {
            reader_id,
            action_id: event.action_id,
            answer: PresenceResponse {
                action_id: event.action_id,
                kind: event.kind,
                site: row.get("site"),
                door_id: row.get("door_id"),
                holder_id: row.get("holder_id"),
                occurred_at: row.get("occurred_at"),
                recorded_at: row.get("recorded_at"),
                clock_skewed: event.clock_skewed,
            },
        },
    })
}

/// The fingerprint of a check-in/out, live or uploaded (see [`seq`]).
pub(crate) fn fingerprint<'a>(
    kind: EventKind,
    card_id: &'a str,
    occurred_at: Option<OffsetDateTime>,
) -> EventFingerprint<'a> {
    EventFingerprint {
        kind: kind.as_str(),
        card_id: Some(card_id),
        occurred_at: canonical_time(occurred_at),
        decision: None,
        alarm: None,
        restored: false,
    }
}

/// A live check-in or check-out (one handler for both: only the kind differs).
async fn record_presence(
    post: ReaderPost,
    body: PresenceRequest,
    kind: EventKind,
) -> Result<HttpResponse, ApiError> {
    validate_card(&body.card_id)?;
    validate_seq(body.seq)?;
    let occurred_at = Timestamp::checked_opt(body.occurred_at, "occurred_at")?;
    let trace = post.trace();
    let event = PresenceEvent {
        kind,
        card_id: &body.card_id,
        action_id: Uuid::now_v7(),
        trace: &trace,
        seq: body.seq,
        occurred_at,
        clock_skewed: post
            .config
            .readers
            .is_skewed(occurred_at, OffsetDateTime::now_utc()),
        offline: false,
    };
    let seq = body
        .seq
        .map(|seq| SeqClaim::new(seq, &fingerprint(kind, &body.card_id, occurred_at)))
        .transpose()?;
    let (mut response, recorded) = post.record(&event, &body, seq).await?;
    if recorded.is_some() && event.clock_skewed {
        post.metrics.reader_clock_skew.inc();
    }
    attach_trace(&mut response, &trace);
    Ok(response)
}

/// Record that a card holder entered the site through this reader's door.
#[utoipa::path(
    tag = "card readers",
    request_body = PresenceRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 201, description = "Recorded (`Idempotent-Replayed: true` when it answers a seq or key sent before)", body = PresenceResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 404, description = "Unknown card", body = ErrorBody),
        (status = 409, description = "Holder deactivated, or `seq_reused`", body = ErrorBody),
        (status = 422, description = "Invalid card id or seq, or Idempotency-Key reused", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
#[post("/v1/check-ins")]
pub async fn check_in(
    post: ReaderPost,
    body: crate::body::Json<PresenceRequest>,
) -> Result<HttpResponse, ApiError> {
    record_presence(post, body.into_inner(), EventKind::CheckIn).await
}

/// Record that a card holder left the site through this reader's door.
#[utoipa::path(
    tag = "card readers",
    request_body = PresenceRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 201, description = "Recorded (`Idempotent-Replayed: true` when it answers a seq or key sent before)", body = PresenceResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 404, description = "Unknown card", body = ErrorBody),
        (status = 409, description = "Holder deactivated, or `seq_reused`", body = ErrorBody),
        (status = 422, description = "Invalid card id or seq, or Idempotency-Key reused", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
#[post("/v1/check-outs")]
pub async fn check_out(
    post: ReaderPost,
    body: crate::body::Json<PresenceRequest>,
) -> Result<HttpResponse, ApiError> {
    record_presence(post, body.into_inner(), EventKind::CheckOut).await
}
