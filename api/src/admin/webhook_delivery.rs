//! What happened to a webhook endpoint's deliveries: its attempts, its stats, and a
//! recovery that delivers again everything routed to it since a time.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deadpool_postgres::Pool;
use latch_core::event::EventKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::webhooks::{endpoint_by_id, endpoint_not_found, require_endpoint_admin};
use super::{Outcome, change, unexpected};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::feed::Feed;
use crate::idempotency::{self, Keyed, StoredResponse};
use crate::timestamp::Timestamp;
use crate::trace::TraceParent;

/// The largest page of attempts.
pub const MAX_ATTEMPTS_PAGE: i64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AttemptFilter {
    /// `delivered`, `retry` or `failed` (refused for good, or 410), or an HTTP status.
    pub status: Option<String>,
    /// Attempted at or after (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempt {
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub attempted_at: OffsetDateTime,
    pub event_id: Uuid,
    /// `delivered`, `retry` (it is tried again) or `failed` (refused for good: dead-lettered,
    /// or 410 Gone).
    pub outcome: String,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<i16>,
    /// Without an answer: `connection_failed`, `timeout`, `transport`, `address_refused`,
    /// `dns_failed`, `url_refused`.
    pub error: Option<String>,
    pub latency_ms: i32,
    /// The first KiB of the answer.
    pub response: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptPage {
    pub items: Vec<DeliveryAttempt>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request("invalid_cursor", "cursor is not one this API issued")
}

/// Every call made to an endpoint, newest first (kept for
/// `LATCH_WEBHOOKS_ATTEMPTS_RETENTION`).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id"), AttemptFilter),
    responses(
        (status = 200, body = AttemptPage),
        (status = 400, description = "Invalid filter or cursor", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/webhooks/endpoints/{id}/attempts")]
pub async fn list_attempts(
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
    filter: web::Query<AttemptFilter>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let id = id.into_inner();
    let filter = filter.into_inner();
    let limit = filter.limit.unwrap_or(50);
    if !(1..=MAX_ATTEMPTS_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {MAX_ATTEMPTS_PAGE}"),
        ));
    }
    let since = Timestamp::checked_opt(filter.since, "since")?;
    let (outcome, status): (Option<&str>, Option<i16>) = match filter.status.as_deref() {
        None => (None, None),
        Some(outcome @ ("delivered" | "retry" | "failed")) => (Some(outcome), None),
        Some(code) => match code.parse::<i16>() {
            Ok(code) if (100..=599).contains(&code) => (None, Some(code)),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_status",
                    "status must be delivered, retry, failed or an HTTP status (100 to 599)",
                ));
            }
        },
    };
    let before: Option<i64> = filter
        .cursor
        .as_deref()
        .map(|cursor| {
            URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| text.strip_prefix("attempt:")?.parse().ok())
                .ok_or_else(invalid_cursor)
        })
        .transpose()?;
    let client = pool.get().await?;
    endpoint_by_id(&client, id).await?;
    let rows = client
        .query(
            "SELECT id, attempted_at, event_id, outcome, status, error, latency_ms, response
             FROM webhook_attempts
             WHERE endpoint_id = $1
               AND ($2::text IS NULL OR outcome = $2)
               AND ($3::smallint IS NULL OR status = $3)
               AND ($4::timestamptz IS NULL OR attempted_at >= $4)
               AND ($5::bigint IS NULL OR id < $5)
             ORDER BY id DESC
             LIMIT $6",
            &[&id, &outcome, &status, &since, &before, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => {
            Some(URL_SAFE_NO_PAD.encode(format!("attempt:{}", last.get::<_, i64>("id"))))
        }
        _ => None,
    };
    let items = rows
        .iter()
        .map(|row| DeliveryAttempt {
            attempted_at: row.get("attempted_at"),
            event_id: row.get("event_id"),
            outcome: row.get("outcome"),
            status: row.get("status"),
            error: row.get("error"),
            latency_ms: row.get("latency_ms"),
            response: row.get("response"),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AttemptPage { items, next_cursor }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointStats {
    pub endpoint_id: Uuid,
    /// Calls the endpoint answered with a 2xx.
    pub delivered: i64,
    /// Calls that failed (no answer, or an answer other than 2xx).
    pub failed: i64,
    /// Events given up on (the endpoint refused them for good, or every attempt failed).
    pub dead_lettered: i64,
    /// Failing without a success since then (`null`: not failing).
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<OffsetDateTime>,
    /// `closed`, `open` (no calls for now) or `half_open` (a probe is let through), as the
    /// worker last saved it.
    pub breaker: String,
    /// The stream position up to which everything routed to it is delivered or
    /// dead-lettered (`null`: not started).
    pub position: Option<i64>,
    /// Events of its kinds in the stream after its position: what it still has to
    /// receive (its sites filter applies at delivery, so this counts at most as many).
    /// `null` when the stream cannot be read.
    pub pending: Option<u64>,
    /// When the oldest of those was stored, and how old it is in seconds.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub oldest_pending_at: Option<OffsetDateTime>,
    pub oldest_pending_age_secs: Option<f64>,
    /// Its dead letters in `LATCH_DLQ` now (`null` when the stream cannot be read).
    pub dead_letters: Option<u64>,
    /// The last recovery asked for: delivering again from `recover_since`.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub recover_since: Option<OffsetDateTime>,
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<OffsetDateTime>,
}

/// An endpoint's delivery figures: delivered, failing, pending, dead letters, the age of
/// the oldest undelivered event, the breaker.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, body = EndpointStats),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/webhooks/endpoints/{id}/stats")]
pub async fn endpoint_stats(
    pool: web::Data<Pool>,
    feed: Option<web::Data<Feed>>,
    admin: Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let id = id.into_inner();
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT kinds, start_at, position, delivered_count, failed_count,
                    dead_lettered_count, failing_since, last_success_at, breaker,
                    recover_since, disabled_at
             FROM webhook_endpoints WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(endpoint_not_found)?;
    let position: Option<i64> = row.get("position");
    let kinds: Option<Vec<String>> = row.get("kinds");
    let subjects = match kinds {
        Some(kinds) => kinds
            .iter()
            .filter_map(|k| k.parse::<EventKind>().ok())
            .flat_map(EventKind::filters)
            .collect(),
        None => vec![latch_core::nats::EVENTS_SUBJECTS.to_owned()],
    };
    let (backlog, dead_letters) = match &feed {
        Some(feed) => {
            let backlog = feed
                .backlog(subjects, position.map(|p| p as u64), row.get("start_at"))
                .await;
            let dead = feed
                .count_on(
                    latch_core::nats::DLQ_STREAM,
                    &latch_core::nats::dlq_subject(&format!("endpoint.{id}")),
                )
                .await;
            (backlog.ok(), dead.ok())
        }
        None => (None, None),
    };
    let now = OffsetDateTime::now_utc();
    let oldest = backlog.and_then(|b| b.oldest);
    Ok(HttpResponse::Ok().json(EndpointStats {
        endpoint_id: id,
        delivered: row.get("delivered_count"),
        failed: row.get("failed_count"),
        dead_lettered: row.get("dead_lettered_count"),
        failing_since: row.get("failing_since"),
        last_success_at: row.get("last_success_at"),
        breaker: row.get("breaker"),
        position,
        pending: backlog.map(|b| b.pending),
        oldest_pending_at: oldest,
        oldest_pending_age_secs: oldest.map(|at| (now - at).as_seconds_f64().max(0.0)),
        dead_letters,
        recover_since: row.get("recover_since"),
        disabled_at: row.get("disabled_at"),
    }))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// Deliver again every event routed to the endpoint that was stored at or after this
    /// time (RFC 3339, not in the future).
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
}

/// Deliver again, in order and with their original ids, every event routed to the
/// endpoint since a time.
///
/// The endpoint reads the stream again from the first event stored at `since`: what it
/// receives from now on is every event since then, oldest first, before anything newer.
/// A cursor never moves forward, so nothing still pending is skipped. Receivers that
/// applied an event already recognise its `webhook-id`. The cursor is saved as it advances,
/// so a recovery survives a restart; `GET .../stats` shows its `position` and what is still
/// `pending`.
/// Recorded as `webhook_recovery_started`. Events older than the stream keeps
/// (`LATCH_NATS_MAX_AGE`) cannot be delivered again.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    request_body = Recovery,
    responses(
        (status = 202, description = "The recovery is under way", body = super::webhooks::Endpoint),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "since is in the future", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/webhooks/endpoints/{id}/recover")]
pub async fn recover_endpoint(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
    body: crate::body::Json<Recovery>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let id = id.into_inner();
    let body = body.into_inner();
    let since = body.since.checked("since")?;
    if since > OffsetDateTime::now_utc() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "since must not be in the future",
        ));
    }
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &(id, since))?;
    idempotency::run(&pool, keyed, async |tx| {
        const RECOVER: &str = "latch_recover_webhook_endpoint";
        match change(tx, RECOVER, &admin, &trace, &[&id, &since]).await? {
            Outcome::Done => {}
            Outcome::NotFound => return Err(endpoint_not_found()),
            other => return Err(unexpected(RECOVER, other)),
        }
        StoredResponse::new(StatusCode::ACCEPTED, &endpoint_by_id(tx, id).await?)
    })
    .await
}
