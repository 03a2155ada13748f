//! Door alarms: `POST /v1/doors/alarm`, and the same alarms uploaded in an offline batch.
//!
//! A door controller reports a door forced open, held open too long, or its reader being
//! tampered with, and later that the condition ended (`restored`). Each is an action of its
//! own kind (`door_forced_open`, `door_held_open_restored`, ...) on the reader's door,
//! recorded and published like any other; webhooks get every kind by default.

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
use crate::readers::{attach_trace, canonical_time, validate_seq};
use crate::timestamp::Timestamp;

/// What the door controller noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// The door opened without a granted unlock.
    ForcedOpen,
    /// The door stayed open longer than allowed.
    HeldOpen,
    /// The reader's case was opened or it was taken off the wall.
    Tamper,
}

impl AlarmKind {
    /// The event kind of the alarm, or of its end.
    pub fn event_kind(self, restored: bool) -> EventKind {
        match (self, restored) {
            (AlarmKind::ForcedOpen, false) => EventKind::DoorForcedOpen,
            (AlarmKind::ForcedOpen, true) => EventKind::DoorForcedOpenRestored,
            (AlarmKind::HeldOpen, false) => EventKind::DoorHeldOpen,
            (AlarmKind::HeldOpen, true) => EventKind::DoorHeldOpenRestored,
            (AlarmKind::Tamper, false) => EventKind::ReaderTamper,
            (AlarmKind::Tamper, true) => EventKind::ReaderTamperRestored,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmRequest {
    pub alarm: AlarmKind,
    /// `true` when the condition ended (the door closed, the case was shut).
    #[serde(default)]
    pub restored: bool,
    /// The reader's own event number (monotonic per reader, 0 or more).
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub seq: Option<i64>,
    /// When it happened by the reader's clock (RFC 3339); the server's time when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub occurred_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlarmResponse {
    pub action_id: Uuid,
    /// `door_forced_open`, `door_held_open`, `reader_tamper`, or one of them + `_restored`.
    #[schema(value_type = String, example = "door_forced_open")]
    pub kind: EventKind,
    pub site: String,
    pub door_id: Uuid,
    pub reader_id: Uuid,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
    /// The reader's `occurred_at` was too far from server time (recorded, but flagged).
    pub clock_skewed: bool,
}

const ALARM_SQL: &str = concat!(
    "
WITH reader AS (
    SELECT r.id, r.door_id, d.site
    FROM readers r JOIN doors d ON d.id = r.door_id
    WHERE ",
    crate::auth::key_matches!(),
    " AND r.enabled
)
INSERT INTO actions (id, kind, site, door_id, reader_id, reader_seq, occurred_at,
                     clock_skewed, decided_offline, trace_parent)
SELECT $2, $3, site, door_id, id, $4, COALESCE($5, now()), $6, $8, $7
FROM reader
RETURNING site, door_id, reader_id, occurred_at, recorded_at"
);

/// What an alarm statement records.
pub(crate) struct AlarmEvent<'a> {
    pub kind: EventKind,
    pub action_id: Uuid,
    pub trace: &'a str,
    pub seq: Option<i64>,
    pub occurred_at: Option<OffsetDateTime>,
    pub clock_skewed: bool,
    /// Captured while the reader was offline, uploaded later.
    pub offline: bool,
}

impl ReaderStatement for AlarmEvent<'_> {
    type Answer = AlarmResponse;
    const STATUS: StatusCode = StatusCode::CREATED;

    async fn run(
        &self,
        db: &impl GenericClient,
        key: &ReaderKey,
    ) -> Result<Statement<AlarmResponse>, ApiError> {
        Ok(match alarm_statement(db, key, self).await? {
            Some(answer) => Statement::Recorded {
                reader_id: answer.reader_id,
                action_id: answer.action_id,
                answer,
            },
            None => Statement::UnknownReader,
        })
    }
}

/// Records the alarm; `None` when the key matches no enabled reader.
pub(crate) async fn alarm_statement(
    db: &impl GenericClient,
    key: &ReaderKey,
    event: &AlarmEvent<'_>,
) -> Result<Option<AlarmResponse>, ApiError> {
    let statement = db.prepare_cached(ALARM_SQL).await?;
    let row = db
        .query_opt(
            &statement,
            &[
                &key.presented,
                &event.action_id,
                &event.kind.as_str(),
                &event.seq,
                &event.occurred_at,
                &event.clock_skewed,
                &event.trace,
                &event.offline,
            ],
        )
        .await?;
    Ok(row.map(|row| AlarmResponse {
        action_id: event.action_id,
        kind: event.kind,
        site: row.get("site"),
        door_id: row.get("door_id"),
        reader_id: row.get("reader_id"),
        occurred_at: row.get("occurred_at"),
        recorded_at: row.get("recorded_at"),
        clock_skewed: event.clock_skewed,
    }))
}

/// The fingerprint of an alarm, live or uploaded (see [`seq`]).
pub(crate) fn fingerprint(
    kind: AlarmKind,
    restored: bool,
    occurred_at: Option<OffsetDateTime>,
) -> EventFingerprint<'static> {
    EventFingerprint {
        kind: "alarm",
        card_id: None,
        occurred_at: canonical_time(occurred_at),
        decision: None,
        alarm: Some(kind),
        restored,
    }
}

/// Report a door alarm, or its end, at this reader's door.
#[utoipa::path(
    tag = "card readers",
    request_body = AlarmRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 201, description = "Recorded (`Idempotent-Replayed: true` when it answers a seq or key sent before)", body = AlarmResponse),
        (status = 400, description = "Malformed body or unknown alarm", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 409, description = "`seq_reused`: this seq numbered another event", body = ErrorBody),
        (status = 422, description = "Invalid seq, or Idempotency-Key reused", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
#[post("/v1/doors/alarm")]
pub async fn alarm(
    post: ReaderPost,
    body: crate::body::Json<AlarmRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    validate_seq(body.seq)?;
    let occurred_at = Timestamp::checked_opt(body.occurred_at, "occurred_at")?;
    let trace = post.trace();
    let event = AlarmEvent {
        kind: body.alarm.event_kind(body.restored),
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
        .map(|seq| SeqClaim::new(seq, &fingerprint(body.alarm, body.restored, occurred_at)))
        .transpose()?;
    let (mut response, recorded) = post.record(&event, &body, seq).await?;
    if recorded.is_some() && event.clock_skewed {
        post.metrics.reader_clock_skew.inc();
    }
    attach_trace(&mut response, &trace);
    Ok(response)
}
