//! Card reader endpoints: unlock decisions, check-ins and check-outs.
//!
//! Each request is ONE SQL statement: it authenticates the reader by its key hash, takes
//! the door and site from the reader record (never from the body), decides, and inserts
//! the action; the `actions` trigger writes the outbox row and NOTIFYs the relay in the
//! same transaction. Without an `Idempotency-Key` the statement runs on its own
//! (autocommit: one round trip); with one it runs inside the idempotency transaction.
//! Nothing here calls anything but PostgreSQL.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use deadpool_postgres::{GenericClient, Pool};
use latch_core::event::{Decision, EventKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{ReaderKey, reader_rejection};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Keyed, StoredResponse};
use crate::trace::TraceParent;

/// The card presented at the reader.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    /// The card's identifier as the reader read it.
    #[schema(example = "04A2B9C1D2")]
    pub card_id: String,
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
}

/// A check-in or check-out.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    #[schema(example = "04A2B9C1D2")]
    pub card_id: String,
    /// When it happened by the reader's clock (RFC 3339); the server's time when absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub occurred_at: Option<OffsetDateTime>,
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
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
}

fn validate_card(card_id: &str) -> Result<(), ApiError> {
    if card_id.is_empty() || card_id.len() > 128 || card_id.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_card_id",
            "card_id must be 1 to 128 printable characters",
        ));
    }
    Ok(())
}

/// The whole unlock: authenticate, decide, record. Returns no row when the key matches no
/// enabled reader. Among several grants for the door, an active one wins; otherwise the
/// most recent grant explains the denial.
const UNLOCK_SQL: &str = "
WITH reader AS (
    SELECT r.id, r.door_id, d.site
    FROM readers r JOIN doors d ON d.id = r.door_id
    WHERE r.key_hash = $1 AND r.enabled
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
)
INSERT INTO actions (id, kind, site, door_id, holder_id, card_id, reader_id, decision, reason,
                     occurred_at, trace_parent)
SELECT $3,
       CASE WHEN reason = 'valid_grant' THEN 'unlock_granted' ELSE 'unlock_denied' END,
       site, door_id, holder_id, $2, reader_id,
       CASE WHEN reason = 'valid_grant' THEN 'granted' ELSE 'denied' END,
       reason, now(), $4
FROM verdict
RETURNING decision, reason";

async fn unlock_statement(
    db: &impl GenericClient,
    key: &ReaderKey,
    card_id: &str,
    action_id: Uuid,
    trace: &str,
) -> Result<Option<UnlockResponse>, ApiError> {
    let statement = db.prepare_cached(UNLOCK_SQL).await?;
    let row = db
        .query_opt(&statement, &[&key.hash, &card_id, &action_id, &trace])
        .await?;
    Ok(row.map(|row| UnlockResponse {
        decision: if row.get::<_, &str>(0) == "granted" {
            Decision::Granted
        } else {
            Decision::Denied
        },
        reason: row.get(1),
        action_id,
    }))
}

/// Decide whether a card may open this reader's door.
///
/// Every decision, granted or denied, is recorded in the registry and published.
#[utoipa::path(
    tag = "card readers",
    request_body = UnlockRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 200, description = "The decision", body = UnlockResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 403, description = "Not a reader key", body = ErrorBody),
        (status = 422, description = "Invalid card id, or Idempotency-Key reused", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
#[post("/v1/unlock")]
pub async fn unlock(
    req: HttpRequest,
    pool: web::Data<Pool>,
    metrics: web::Data<crate::metrics::ApiMetrics>,
    key: ReaderKey,
    body: web::Json<UnlockRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    validate_card(&body.card_id)?;
    let trace = TraceParent::for_request(&req).to_string();
    let action_id = Uuid::now_v7();
    let keyed = Keyed::from_request(&req, key.client_scope(), &body)?;
    let mut response = match keyed {
        None => {
            let client = pool.get().await?;
            match unlock_statement(&client, &key, &body.card_id, action_id, &trace).await? {
                Some(decision) => {
                    let decided = match decision.decision {
                        Decision::Granted => "granted",
                        Decision::Denied => "denied",
                    };
                    metrics
                        .unlock_decisions
                        .with_label_values(&[decided, decision.reason.as_str()])
                        .inc();
                    StoredResponse::new(StatusCode::OK, &decision)?.into_http(false)
                }
                None => return Err(reader_rejection(&pool, &key).await),
            }
        }
        Some(keyed) => {
            let outcome =
                idempotency::run(&pool, Some(keyed), async |tx| {
                    match unlock_statement(tx, &key, &body.card_id, action_id, &trace).await? {
                        Some(decision) => StoredResponse::new(StatusCode::OK, &decision),
                        None => Err(ApiError::unauthorized("unknown or disabled reader key")),
                    }
                })
                .await;
            match outcome {
                Err(e) if e.code() == "unauthorized" => {
                    return Err(reader_rejection(&pool, &key).await);
                }
                other => other?,
            }
        }
    };
    attach_trace(&mut response, &trace);
    Ok(response)
}

/// Check-in / check-out in one statement: authenticate the reader, find the holder,
/// record the action and move the presence roll-call — unless presence already reflects
/// something that happened later (a late upload must not override a newer state).
const PRESENCE_SQL: &str = "
WITH reader AS (
    SELECT r.id, r.door_id, d.site
    FROM readers r JOIN doors d ON d.id = r.door_id
    WHERE r.key_hash = $1 AND r.enabled
), holder AS (
    SELECT id, active FROM holders WHERE card_id = $2
), recorded AS (
    INSERT INTO actions (id, kind, site, door_id, holder_id, card_id, reader_id, occurred_at,
                         trace_parent)
    SELECT $3, $4, reader.site, reader.door_id, holder.id, $2, reader.id,
           COALESCE($5, now()), $6
    FROM reader JOIN holder ON holder.active
    RETURNING id, site, door_id, holder_id, occurred_at, recorded_at
), moved AS (
    INSERT INTO presence (site, holder_id, present, door_id, as_of, action_id)
    SELECT site, holder_id, $7, door_id, occurred_at, id FROM recorded
    ON CONFLICT (site, holder_id) DO UPDATE
        SET present = EXCLUDED.present, door_id = EXCLUDED.door_id,
            as_of = EXCLUDED.as_of, action_id = EXCLUDED.action_id
        WHERE presence.as_of <= EXCLUDED.as_of
)
SELECT EXISTS (SELECT FROM reader), (SELECT active FROM holder),
       recorded.site, recorded.door_id, recorded.holder_id, recorded.occurred_at,
       recorded.recorded_at
FROM (VALUES (1)) AS one LEFT JOIN recorded ON true";

enum PresenceOutcome {
    Recorded(PresenceResponse),
    UnknownReader,
    Rejected(ApiError),
}

#[allow(clippy::too_many_arguments)]
async fn presence_statement(
    db: &impl GenericClient,
    key: &ReaderKey,
    body: &PresenceRequest,
    kind: EventKind,
    action_id: Uuid,
    trace: &str,
) -> Result<PresenceOutcome, ApiError> {
    let statement = db.prepare_cached(PRESENCE_SQL).await?;
    let present = kind == EventKind::CheckIn;
    let row = db
        .query_one(
            &statement,
            &[
                &key.hash,
                &body.card_id,
                &action_id,
                &kind.as_str(),
                &body.occurred_at,
                &trace,
                &present,
            ],
        )
        .await?;
    let reader_found: bool = row.get(0);
    let holder_active: Option<bool> = row.get(1);
    Ok(match (reader_found, holder_active) {
        (false, _) => PresenceOutcome::UnknownReader,
        (true, None) => PresenceOutcome::Rejected(ApiError::not_found(
            "unknown_card",
            "no holder has this card",
        )),
        (true, Some(false)) => PresenceOutcome::Rejected(ApiError::conflict(
            "holder_inactive",
            "this card's holder is deactivated",
        )),
        (true, Some(true)) => PresenceOutcome::Recorded(PresenceResponse {
            action_id,
            kind,
            site: row.get(2),
            door_id: row.get(3),
            holder_id: row.get(4),
            occurred_at: row.get(5),
            recorded_at: row.get(6),
        }),
    })
}

async fn record_presence(
    req: HttpRequest,
    pool: web::Data<Pool>,
    key: ReaderKey,
    body: PresenceRequest,
    kind: EventKind,
) -> Result<HttpResponse, ApiError> {
    validate_card(&body.card_id)?;
    let trace = TraceParent::for_request(&req).to_string();
    let action_id = Uuid::now_v7();
    let keyed = Keyed::from_request(&req, key.client_scope(), &body)?;
    let run = async |db: &deadpool_postgres::Transaction<'_>| match presence_statement(
        db, &key, &body, kind, action_id, &trace,
    )
    .await?
    {
        PresenceOutcome::Recorded(done) => StoredResponse::new(StatusCode::CREATED, &done),
        PresenceOutcome::UnknownReader => {
            Err(ApiError::unauthorized("unknown or disabled reader key"))
        }
        PresenceOutcome::Rejected(error) => Err(error),
    };
    let mut response = match keyed {
        // A single statement is atomic on its own: no explicit transaction needed.
        None => {
            let client = pool.get().await?;
            match presence_statement(&client, &key, &body, kind, action_id, &trace).await? {
                PresenceOutcome::Recorded(done) => {
                    StoredResponse::new(StatusCode::CREATED, &done)?.into_http(false)
                }
                PresenceOutcome::UnknownReader => return Err(reader_rejection(&pool, &key).await),
                PresenceOutcome::Rejected(error) => return Err(error),
            }
        }
        Some(keyed) => match idempotency::run(&pool, Some(keyed), run).await {
            Err(e) if e.code() == "unauthorized" => {
                return Err(reader_rejection(&pool, &key).await);
            }
            other => other?,
        },
    };
    attach_trace(&mut response, &trace);
    Ok(response)
}

fn attach_trace(response: &mut HttpResponse, trace: &str) {
    if let Ok(value) = trace.parse() {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("traceparent"),
            value,
        );
    }
}

/// Record that a card holder entered the site through this reader's door.
#[utoipa::path(
    tag = "card readers",
    request_body = PresenceRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 201, description = "Recorded", body = PresenceResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 404, description = "Unknown card", body = ErrorBody),
        (status = 409, description = "Holder deactivated", body = ErrorBody),
        (status = 422, description = "Invalid card id, or Idempotency-Key reused", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
#[post("/v1/check-ins")]
pub async fn check_in(
    req: HttpRequest,
    pool: web::Data<Pool>,
    key: ReaderKey,
    body: web::Json<PresenceRequest>,
) -> Result<HttpResponse, ApiError> {
    record_presence(req, pool, key, body.into_inner(), EventKind::CheckIn).await
}

/// Record that a card holder left the site through this reader's door.
#[utoipa::path(
    tag = "card readers",
    request_body = PresenceRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 201, description = "Recorded", body = PresenceResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 404, description = "Unknown card", body = ErrorBody),
        (status = 409, description = "Holder deactivated", body = ErrorBody),
        (status = 422, description = "Invalid card id, or Idempotency-Key reused", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
#[post("/v1/check-outs")]
pub async fn check_out(
    req: HttpRequest,
    pool: web::Data<Pool>,
    key: ReaderKey,
    body: web::Json<PresenceRequest>,
) -> Result<HttpResponse, ApiError> {
    record_presence(req, pool, key, body.into_inner(), EventKind::CheckOut).await
}
