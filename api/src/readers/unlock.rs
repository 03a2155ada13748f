//! Unlock decisions: `POST /v1/unlock` (the server decides, live) and unlocks a reader
//! decided on its own while offline (uploaded later through [`crate::readers::batch`]).
//!
//! Both use ONE definition of the decision ([`unlock_verdict_sql!`]): the holder's grants
//! for the reader's door, at the time the statement runs. A live unlock records that
//! verdict. An offline unlock records what the reader decided (`decision`, with
//! `decided_offline`) beside the server's verdict at upload time (`server_decision`, with
//! its `reason`); when the two disagree — a revoked card the reader still let in — the
//! same statement also records an `offline_decision_disputed` action, so the event stream
//! tells security who passed on a stale credential.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, post};
use deadpool_postgres::GenericClient;
use latch_core::event::Decision;
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

/// The card presented at the reader.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    /// The card's identifier as the reader read it.
    #[schema(example = "04A2B9C1D2")]
    pub card_id: String,
    /// The reader's own event number (monotonic per reader, 0 or more). The same seq sent
    /// again answers the first response and writes nothing.
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub seq: Option<i64>,
    /// When the card was presented, by the reader's clock (RFC 3339); the server's time
    /// when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub occurred_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnlockResponse {
    #[schema(value_type = String, example = "granted")]
    pub decision: Decision,
    /// `valid_grant` when granted; otherwise `unknown_card`, `holder_inactive`,
    /// `no_grant`, `grant_revoked`, `grant_expired` or `grant_not_yet_valid`.
    pub reason: String,
    /// The registry entry that records this decision.
    pub action_id: Uuid,
    /// The reader's `occurred_at` was too far from server time (recorded, but flagged).
    #[serde(default)]
    pub clock_skewed: bool,
}

pub(crate) fn decision_str(decision: Decision) -> &'static str {
    match decision {
        Decision::Granted => "granted",
        Decision::Denied => "denied",
    }
}

fn parse_decision(text: &str) -> Decision {
    if text == "granted" {
        Decision::Granted
    } else {
        Decision::Denied
    }
}

/// The decision, as SQL: CTEs `reader` (the enabled reader with key hash `$1`, its door and
/// site), `holder` (card `$2`) and `verdict` (`reader_id, door_id, site, holder_id,
/// reason`; one row when the reader exists). Among several grants for the door, an active
/// one wins; otherwise the most recent grant explains the denial. `valid_grant` is the
/// only reason that grants.
macro_rules! unlock_verdict_sql {
    () => {
        concat!(
            "
WITH reader AS (
    SELECT r.id, r.door_id, d.site
    FROM readers r JOIN doors d ON d.id = r.door_id
    WHERE ",
            crate::auth::key_matches!(),
            " AND r.enabled
), holder AS (
    SELECT id, active FROM holders WHERE card_id = $2
), verdict AS (
    SELECT reader.id AS reader_id, reader.door_id, reader.site, holder.id AS holder_id,
        CASE
            WHEN holder.id IS NULL THEN 'unknown_card'
            WHEN NOT holder.active THEN 'holder_inactive'
            ELSE COALESCE((
                SELECT CASE
                    WHEN g.revoked_at IS NOT NULL THEN 'grant_revoked'
                    WHEN g.valid_from > now() THEN 'grant_not_yet_valid'
                    WHEN g.valid_until <= now() THEN 'grant_expired'
                    ELSE 'valid_grant'
                END
                FROM grants g
                WHERE g.holder_id = holder.id AND g.door_id = reader.door_id
                ORDER BY (g.revoked_at IS NULL AND g.valid_from <= now()
                          AND (g.valid_until IS NULL OR g.valid_until > now())) DESC,
                         g.created_at DESC
                LIMIT 1
            ), 'no_grant')
        END AS reason
    FROM reader LEFT JOIN holder ON true
)"
        )
    };
}

/// The whole live unlock: authenticate, decide, record. No row when the key matches no
/// enabled reader. Params: `$3` action id, `$4` traceparent, `$5` seq, `$6` reader clock,
/// `$7` clock skewed.
const UNLOCK_SQL: &str = concat!(
    unlock_verdict_sql!(),
    "
INSERT INTO actions (id, kind, site, door_id, holder_id, card_id, reader_id, reader_seq, decision,
                     reason, occurred_at, clock_skewed, trace_parent)
SELECT $3,
       CASE WHEN reason = 'valid_grant' THEN 'unlock_granted' ELSE 'unlock_denied' END,
       site, door_id, holder_id, $2, reader_id, $5,
       CASE WHEN reason = 'valid_grant' THEN 'granted' ELSE 'denied' END,
       reason, COALESCE($6, now()), $7, $4
FROM verdict
RETURNING reader_id, decision, reason"
);

/// An unlock the reader decided offline: record its decision beside the server's verdict
/// now, and a dispute when they differ (selected from the recorded row, so it is inserted
/// — and published — after it). Params as [`UNLOCK_SQL`], plus `$8` the reader's decision
/// and `$9` the dispute's action id.
const OFFLINE_UNLOCK_SQL: &str = concat!(
    unlock_verdict_sql!(),
    ", recorded AS (
    INSERT INTO actions (id, kind, site, door_id, holder_id, card_id, reader_id, reader_seq,
                         decision, server_decision, reason, decided_offline, occurred_at,
                         clock_skewed, trace_parent)
    SELECT $3,
           CASE WHEN $8::text = 'granted' THEN 'unlock_granted' ELSE 'unlock_denied' END,
           site, door_id, holder_id, $2, reader_id, $5, $8::text,
           CASE WHEN reason = 'valid_grant' THEN 'granted' ELSE 'denied' END,
           reason, true, $6, $7, $4
    FROM verdict
    RETURNING site, door_id, holder_id, card_id, reader_id, reader_seq, decision,
              server_decision, reason, occurred_at, clock_skewed, trace_parent
), disputed AS (
    INSERT INTO actions (id, kind, site, door_id, holder_id, card_id, reader_id, reader_seq,
                         decision, server_decision, reason, decided_offline, occurred_at,
                         clock_skewed, trace_parent)
    SELECT $9, 'offline_decision_disputed', site, door_id, holder_id, card_id, reader_id,
           reader_seq, decision, server_decision, reason, true, occurred_at, clock_skewed,
           trace_parent
    FROM recorded
    WHERE decision <> server_decision
    RETURNING id
)
SELECT reason, EXISTS (SELECT FROM disputed) FROM recorded"
);

/// What an unlock statement records, apart from its verdict.
pub(crate) struct UnlockEvent<'a> {
    pub card_id: &'a str,
    pub action_id: Uuid,
    pub trace: &'a str,
    pub seq: Option<i64>,
    pub occurred_at: Option<OffsetDateTime>,
    pub clock_skewed: bool,
}

impl ReaderStatement for UnlockEvent<'_> {
    type Answer = UnlockResponse;
    const STATUS: StatusCode = StatusCode::OK;

    async fn run(
        &self,
        db: &impl GenericClient,
        key: &ReaderKey,
    ) -> Result<Statement<UnlockResponse>, ApiError> {
        Ok(match unlock_statement(db, key, self).await? {
            Some((reader_id, answer)) => Statement::Recorded {
                reader_id,
                action_id: self.action_id,
                answer,
            },
            None => Statement::UnknownReader,
        })
    }
}

async fn unlock_statement(
    db: &impl GenericClient,
    key: &ReaderKey,
    event: &UnlockEvent<'_>,
) -> Result<Option<(Uuid, UnlockResponse)>, ApiError> {
    let statement = db.prepare_cached(UNLOCK_SQL).await?;
    let row = db
        .query_opt(
            &statement,
            &[
                &key.presented,
                &event.card_id,
                &event.action_id,
                &event.trace,
                &event.seq,
                &event.occurred_at,
                &event.clock_skewed,
            ],
        )
        .await?;
    Ok(row.map(|row| {
        (
            row.get("reader_id"),
            UnlockResponse {
                decision: parse_decision(row.get("decision")),
                reason: row.get("reason"),
                action_id: event.action_id,
                clock_skewed: event.clock_skewed,
            },
        )
    }))
}

/// An offline unlock, as recorded.
pub(crate) struct OfflineVerdict {
    /// What a replay of this seq answers: the reader's decision, the server's reason.
    pub response: UnlockResponse,
    pub disputed: bool,
}

/// Records an unlock the reader decided offline (`unlock.occurred_at` is required there).
pub(crate) async fn offline_unlock_statement(
    db: &impl GenericClient,
    key: &ReaderKey,
    event: &UnlockEvent<'_>,
    reader_decision: Decision,
) -> Result<Option<OfflineVerdict>, ApiError> {
    let statement = db.prepare_cached(OFFLINE_UNLOCK_SQL).await?;
    let row = db
        .query_opt(
            &statement,
            &[
                &key.presented,
                &event.card_id,
                &event.action_id,
                &event.trace,
                &event.seq,
                &event.occurred_at,
                &event.clock_skewed,
                &decision_str(reader_decision),
                &Uuid::now_v7(),
            ],
        )
        .await?;
    Ok(row.map(|row| OfflineVerdict {
        response: UnlockResponse {
            decision: reader_decision,
            reason: row.get(0),
            action_id: event.action_id,
            clock_skewed: event.clock_skewed,
        },
        disputed: row.get(1),
    }))
}

/// The fingerprint of an unlock (see [`seq`]); `decision` is the reader's own, for an
/// unlock decided offline.
pub(crate) fn fingerprint(
    card_id: &str,
    occurred_at: Option<OffsetDateTime>,
    decision: Option<Decision>,
) -> EventFingerprint<'_> {
    EventFingerprint {
        kind: "unlock",
        card_id: Some(card_id),
        occurred_at: canonical_time(occurred_at),
        decision,
        alarm: None,
        restored: false,
    }
}

/// Decide whether a card may open this reader's door.
///
/// Every decision, granted or denied, is recorded in the registry and published.
#[utoipa::path(
    tag = "card readers",
    request_body = UnlockRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 200, description = "The decision (`Idempotent-Replayed: true` when it answers a seq or key sent before)", body = UnlockResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 403, description = "Not a reader key", body = ErrorBody),
        (status = 409, description = "`seq_reused`: this seq numbered another event", body = ErrorBody),
        (status = 422, description = "Invalid card id or seq, or Idempotency-Key reused", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
#[post("/v1/unlock")]
pub async fn unlock(
    post: ReaderPost,
    body: crate::body::Json<UnlockRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    validate_card(&body.card_id)?;
    validate_seq(body.seq)?;
    let occurred_at = Timestamp::checked_opt(body.occurred_at, "occurred_at")?;
    let trace = post.trace();
    let event = UnlockEvent {
        card_id: &body.card_id,
        action_id: Uuid::now_v7(),
        trace: &trace,
        seq: body.seq,
        occurred_at,
        clock_skewed: post
            .config
            .readers
            .is_skewed(occurred_at, OffsetDateTime::now_utc()),
    };
    let seq = body
        .seq
        .map(|seq| SeqClaim::new(seq, &fingerprint(&body.card_id, occurred_at, None)))
        .transpose()?;
    let (mut response, decided) = post.record(&event, &body, seq).await?;
    if let Some(decision) = decided {
        let metrics = &post.metrics;
        metrics
            .unlock_decisions
            .with_label_values(&[decision_str(decision.decision), decision.reason.as_str()])
            .inc();
        if decision.clock_skewed {
            metrics.reader_clock_skew.inc();
        }
    }
    attach_trace(&mut response, &trace);
    Ok(response)
}
