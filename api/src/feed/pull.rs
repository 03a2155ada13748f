//! `GET /v1/events`: the feed read a page at a time from a cursor.

use actix_web::{HttpResponse, get, web};
use latch_core::credentials::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Feed, Filter, parse_cursor};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};

/// The largest page.
pub const MAX_LIMIT: usize = 1000;

/// Events of other sites, doors or holders a page looks past, per event it may return,
/// before it answers with what it has (and a cursor past what it looked at).
const SCAN_PER_EVENT: usize = 20;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The `next_cursor` (or an event's `cursor`) to continue after; without it, the page
    /// starts at the oldest event the stream keeps.
    pub after: Option<String>,
    /// Comma-separated event kinds, e.g. `check_in,door_forced_open`.
    pub kinds: Option<String>,
    /// Comma-separated sites (within the token's).
    pub sites: Option<String>,
    /// Comma-separated door ids.
    pub doors: Option<String>,
    /// Comma-separated holder ids.
    pub holders: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    /// In stream order; each is the event's envelope (as the webhooks and the stream carry
    /// it) with its `cursor`.
    pub events: Vec<serde_json::Value>,
    /// Pass as `after` for the next page (also when `events` is empty).
    pub next_cursor: String,
    /// No later matching event existed when this page was read: poll again later with
    /// `next_cursor`. `false`: read on at once (a page stops at `limit` events, or after
    /// looking past many events the filters skip).
    pub caught_up: bool,
}

/// 503 when this process has no feed (the API runs without NATS).
pub fn configured(feed: Option<web::Data<Feed>>) -> Result<web::Data<Feed>, ApiError> {
    feed.ok_or_else(|| {
        ApiError::unavailable(anyhow::anyhow!(
            "this API process is not connected to NATS, so it serves no event feed"
        ))
    })
}

/// Read events from a cursor.
///
/// Events in stream order from `LATCH_EVENTS`, after `after` (from the oldest kept without
/// it), filtered by kind, site, door and holder, and by the token's sites. Each carries its
/// `cursor` and its `sequence` per holder (or door). The cursor is opaque; keep the last one
/// you handled and continue from it. A cursor older than the stream's retention answers
/// 410 `cursor_expired` with `oldest_cursor`.
#[utoipa::path(
    tag = "events",
    params(FeedQuery),
    responses(
        (status = 200, body = FeedPage),
        (status = 400, description = "Invalid filter, limit or cursor", body = ErrorBody),
        (status = 401, description = "No or unknown token or session", body = ErrorBody),
        (status = 403, description = "A reader key, a token without `events:read`, or a site outside the token's", body = ErrorBody),
        (status = 410, description = "The cursor is older than the stream's retention, or ahead of a stream that was reset since it was issued (`cursor_expired`, with `oldest_cursor`)", body = ErrorBody),
        (status = 503, description = "The event stream cannot be read now", body = ErrorBody),
    ),
    security(("admin_token" = []), ("session" = []))
)]
#[get("/v1/events")]
pub async fn list(
    feed: Option<web::Data<Feed>>,
    admin: Admin,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::EventsRead)?;
    let feed = configured(feed)?;
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    let filter = Filter::from_query(
        &admin,
        query.kinds.as_deref(),
        query.sites.as_deref(),
        query.doors.as_deref(),
        query.holders.as_deref(),
    )?;
    let after = query.after.as_deref().map(parse_cursor).transpose()?;
    let page = feed
        .page(after, &filter, limit, limit * SCAN_PER_EVENT)
        .await
        .inspect_err(|_| {
            feed.metrics
                .feed_requests
                .with_label_values(&["failed"])
                .inc()
        })?;
    feed.metrics
        .feed_requests
        .with_label_values(&["served"])
        .inc();
    // Written out rather than serialised: each event is JSON already, shared with the
    // live streams.
    let mut body =
        Vec::with_capacity(64 + page.events.iter().map(|e| e.json.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&event.json);
    }
    body.extend_from_slice(
        format!(
            "],\"next_cursor\":\"{}\",\"caught_up\":{}}}",
            page.position, page.caught_up
        )
        .as_bytes(),
    );
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
