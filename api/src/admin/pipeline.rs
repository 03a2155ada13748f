//! `GET /v1/pipeline`: where events stand between the registry and the sinks — the
//! numbers of `latch outbox status`, and the webhook endpoints' states — for the operator
//! console and monitoring scripts.

use actix_web::{HttpResponse, get, web};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::webhooks::require_endpoint_admin;
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::feed::Feed;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OutboxBacklog {
    /// Events recorded and not yet published.
    pub pending_rows: i64,
    /// Age of the oldest of them (0 when none).
    pub oldest_pending_age_seconds: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamState {
    pub name: String,
    pub messages: u64,
    pub last_sequence: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SinkBacklog {
    /// `legacy` or `webhooks`.
    pub sink: String,
    /// Events not yet handed to a worker.
    pub pending: u64,
    /// Handed to a worker, not yet delivered or dead-lettered.
    pub in_flight: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointsSummary {
    pub enabled: i64,
    pub disabled: i64,
    /// Enabled and failing (no success since their first failure).
    pub failing: i64,
    /// Enabled with their breaker open or half-open.
    pub breaker_open: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Pipeline {
    pub outbox: OutboxBacklog,
    /// `null` when NATS cannot be read (see `nats_error`).
    pub stream: Option<StreamState>,
    /// One per sink whose consumer exists.
    pub sinks: Vec<SinkBacklog>,
    /// Dead letters in `LATCH_DLQ` (every sink and endpoint).
    pub dead_letters: Option<u64>,
    pub webhook_endpoints: EndpointsSummary,
    /// Why the NATS side is missing: not configured for this API, or unreachable.
    pub nats_error: Option<String>,
}

/// The pipeline's backlogs: the outbox (from PostgreSQL, whatever NATS does), the stream,
/// each sink's consumer, the dead letters and the webhook endpoints' states.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, body = Pipeline),
        (status = 403, description = "Not an `admin` token for every site", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/pipeline")]
pub async fn pipeline_status(
    pool: web::Data<Pool>,
    feed: Option<web::Data<Feed>>,
    admin: Admin,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let client = pool.get().await?;
    let outbox = client
        .query_one("SELECT * FROM latch_outbox_backlog()", &[])
        .await?;
    let endpoints = client
        .query_one(
            "SELECT count(*) FILTER (WHERE disabled_at IS NULL),
                    count(*) FILTER (WHERE disabled_at IS NOT NULL),
                    count(*) FILTER (WHERE disabled_at IS NULL AND failing_since IS NOT NULL),
                    count(*) FILTER (WHERE disabled_at IS NULL AND breaker <> 'closed')
             FROM webhook_endpoints",
            &[],
        )
        .await?;
    drop(client);
    let nats = match &feed {
        Some(feed) => latch_core::pipeline::stream_status(feed.jetstream(), feed.stream_name())
            .await
            .map_err(|error| format!("cannot read NATS: {error:#}")),
        None => Err("NATS is not configured for this API (LATCH_NATS_URL)".to_owned()),
    };
    let (stream, sinks, dead_letters, nats_error) = match nats {
        Ok(status) => (
            Some(StreamState {
                name: status.name,
                messages: status.messages,
                last_sequence: status.last_sequence,
            }),
            status
                .consumers
                .into_iter()
                .map(|c| SinkBacklog {
                    sink: c.sink.to_owned(),
                    pending: c.waiting,
                    in_flight: c.in_flight,
                })
                .collect(),
            Some(status.dead_letters),
            None,
        ),
        Err(error) => (None, Vec::new(), None, Some(error)),
    };
    Ok(HttpResponse::Ok().json(Pipeline {
        outbox: OutboxBacklog {
            pending_rows: outbox.get("pending_rows"),
            oldest_pending_age_seconds: outbox.get("oldest_age_seconds"),
        },
        stream,
        sinks,
        dead_letters,
        webhook_endpoints: EndpointsSummary {
            enabled: endpoints.get(0),
            disabled: endpoints.get(1),
            failing: endpoints.get(2),
            breaker_open: endpoints.get(3),
        },
        nats_error,
    }))
}
