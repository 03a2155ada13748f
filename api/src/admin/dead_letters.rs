//! Dead letters over HTTP: what `latch dlq` does, for the operator console and scripts.
//!
//! They are read from `LATCH_DLQ` and grouped by (sink, event) as `latch_core::dlq` does
//! for the command line: an event dead-lettered twice at one sink is one entry with two
//! failures. A replay sends each event again to the sink that failed it alone, with its id
//! unchanged, under the stale-replay guard (a refusal says why; `force` overrides it); it
//! is recorded in the registry with its author before the dead letter is removed. Dead
//! letters hold events of every site: only an `admin` token for every site reads or acts
//! on them.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use deadpool_postgres::Pool;
use latch_core::dlq::{self, Entry, Group};
use latch_core::event::EventKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::webhooks::require_endpoint_admin;
use super::{Outcome, change, unexpected};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::feed::Feed;
use crate::timestamp::Timestamp;
use crate::trace::TraceParent;

/// The most dead letters one list answers, and one replay or purge takes.
pub const MAX_DEAD_LETTERS: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterFilter {
    /// `legacy`, `webhooks`, or a webhook endpoint's `endpoint.<id>`.
    pub sink: Option<String>,
    /// An event kind, e.g. `check_in`.
    pub kind: Option<String>,
    /// `permanent` (the sink refused it), `exhausted` (every attempt failed) or
    /// `malformed`.
    pub reason_class: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// Dead-lettered before (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
    /// At most this many, oldest first: 1 to 1000 (default 1000).
    pub limit: Option<i64>,
}

/// One event dead-lettered at one sink.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// The event's id; absent for a message that was not an event (`malformed`).
    pub event_id: Option<Uuid>,
    pub sink: String,
    pub kind: Option<String>,
    pub site: Option<String>,
    /// The last failure's class: `permanent`, `exhausted` or `malformed`.
    pub reason_class: String,
    /// The first failure's reason.
    pub reason: String,
    pub attempts: u32,
    /// The sink's HTTP status, when it answered.
    pub status: Option<u16>,
    /// When it was first dead-lettered.
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// How many times it was dead-lettered at this sink.
    pub failures: usize,
}

/// One recorded failure of a dead letter.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterFailure {
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub reason_class: String,
    pub reason: String,
    pub attempts: u32,
    pub status: Option<u16>,
}

/// A header of the original message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterHeader {
    pub name: String,
    pub value: String,
}

/// A dead letter with what it carried and every failure.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterDetail {
    #[serde(flatten)]
    pub dead_letter: DeadLetter,
    /// The event as the sink would have received it.
    #[schema(value_type = Object)]
    pub envelope: serde_json::Value,
    /// The original message's headers (`traceparent`, `Latch-Event-Id`).
    pub headers: Vec<DeadLetterHeader>,
    /// Every failure, oldest first.
    pub failures_recorded: Vec<DeadLetterFailure>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterList {
    /// Oldest first.
    pub items: Vec<DeadLetter>,
    /// Dead letters that matched beyond `limit`.
    pub more: usize,
}

/// What to replay or purge: event ids, or `all` with the filters. At most 1,000 dead
/// letters at a time (the oldest); `remaining` in the answer says what is left.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSelection {
    /// These events (at every sink, unless `sink` says one).
    #[serde(default)]
    pub ids: Vec<Uuid>,
    /// Every dead letter the filters match (required when no id is given).
    #[serde(default)]
    pub all: bool,
    pub sink: Option<String>,
    pub kind: Option<String>,
    pub reason_class: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// Dead-lettered before (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(flatten)]
    pub selection: DeadLetterSelection,
    /// Say what would be replayed and refused, and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Replay even what the stale-replay guard refuses.
    #[serde(default)]
    pub force: bool,
}

/// A dead letter named in an answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterRef {
    pub event_id: Option<Uuid>,
    pub sink: String,
    pub kind: Option<String>,
}

/// A dead letter the stale-replay guard kept back, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayRefusal {
    #[serde(flatten)]
    pub dead_letter: DeadLetterRef,
    /// Why replaying it would tell the sink something no longer true.
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayOutcome {
    pub dry_run: bool,
    /// Sent again to their sinks (with `dry_run`: would be).
    pub replayed: Vec<DeadLetterRef>,
    /// Kept back by the stale-replay guard (`force` replays them).
    pub refused: Vec<ReplayRefusal>,
    /// Matching dead letters beyond this request's 1,000: ask again for them.
    pub remaining: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurgeOutcome {
    /// Deleted for good.
    pub purged: Vec<DeadLetterRef>,
    /// Matching dead letters beyond this request's 1,000.
    pub remaining: usize,
}

/// The event stream's client, which the dead letters are read through.
fn stream(feed: &Option<web::Data<Feed>>) -> Result<&Feed, ApiError> {
    feed.as_ref().map(|feed| feed.get_ref()).ok_or_else(|| {
        ApiError::unavailable(anyhow::anyhow!(
            "dead letters need NATS: LATCH_NATS_URL is not set for this API"
        ))
    })
}

fn invalid_filter(message: String) -> ApiError {
    ApiError::bad_request("invalid_filter", message)
}

async fn select(feed: &Feed, filter: &dlq::Filter) -> Result<Vec<Group>, ApiError> {
    filter.validate().map_err(invalid_filter)?;
    dlq::select(feed.jetstream(), filter)
        .await
        .map_err(ApiError::unavailable)
}

fn summary(group: &Group) -> DeadLetter {
    let entry = &group.entry;
    let last = group.history.last().unwrap_or(entry);
    DeadLetter {
        event_id: entry.event_id,
        sink: entry.sink.clone(),
        kind: entry.kind.clone(),
        site: entry.envelope["site"].as_str().map(str::to_owned),
        reason_class: last.class.clone(),
        reason: entry.reason.clone(),
        attempts: entry.attempts,
        status: entry.status,
        at: entry.at,
        failures: group.history.len(),
    }
}

fn reference(entry: &Entry) -> DeadLetterRef {
    DeadLetterRef {
        event_id: entry.event_id,
        sink: entry.sink.clone(),
        kind: entry.kind.clone(),
    }
}

/// Dead letters, oldest first, one per event and sink.
#[utoipa::path(
    tag = "dead letters",
    params(DeadLetterFilter),
    responses(
        (status = 200, body = DeadLetterList),
        (status = 400, description = "Unknown kind or reason class, bad time or limit", body = ErrorBody),
        (status = 403, description = "Not an `admin` token for every site", body = ErrorBody),
        (status = 503, description = "NATS is not configured or cannot be reached", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/dead-letters")]
pub async fn list_dead_letters(
    feed: Option<web::Data<Feed>>,
    admin: Admin,
    filter: web::Query<DeadLetterFilter>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let filter = filter.into_inner();
    let limit = match filter.limit {
        None => MAX_DEAD_LETTERS,
        Some(n) if (1..=MAX_DEAD_LETTERS as i64).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be 1 to {MAX_DEAD_LETTERS}"),
            ));
        }
    };
    let wanted = dlq::Filter {
        sink: filter.sink,
        kind: filter.kind,
        reason_class: filter.reason_class,
        since: Timestamp::checked_opt(filter.since, "since")?,
        until: Timestamp::checked_opt(filter.until, "until")?,
        ids: Vec::new(),
        limit: None,
    };
    let groups = select(stream(&feed)?, &wanted).await?;
    let more = groups.len().saturating_sub(limit);
    Ok(HttpResponse::Ok().json(DeadLetterList {
        items: groups.iter().take(limit).map(summary).collect(),
        more,
    }))
}

/// One event's dead letters (one per sink that failed it): the envelope, its headers and
/// every failure.
#[utoipa::path(
    tag = "dead letters",
    params(("event_id" = Uuid, Path, description = "The event's id")),
    responses(
        (status = 200, body = [DeadLetterDetail]),
        (status = 404, description = "No dead letter for this event", body = ErrorBody),
        (status = 403, description = "Not an `admin` token for every site", body = ErrorBody),
        (status = 503, description = "NATS is not configured or cannot be reached", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/dead-letters/{event_id}")]
pub async fn show_dead_letter(
    feed: Option<web::Data<Feed>>,
    admin: Admin,
    event_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let wanted = dlq::Filter {
        ids: vec![event_id.into_inner()],
        ..dlq::Filter::default()
    };
    let groups = select(stream(&feed)?, &wanted).await?;
    if groups.is_empty() {
        return Err(ApiError::not_found(
            "not_found",
            "no dead letter for this event",
        ));
    }
    let details: Vec<DeadLetterDetail> = groups
        .iter()
        .map(|group| DeadLetterDetail {
            dead_letter: summary(group),
            envelope: group.entry.envelope.clone(),
            headers: group
                .entry
                .headers
                .iter()
                .map(|(name, value)| DeadLetterHeader {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            failures_recorded: group
                .history
                .iter()
                .map(|failure| DeadLetterFailure {
                    at: failure.at,
                    reason_class: failure.class.clone(),
                    reason: failure.reason.clone(),
                    attempts: failure.attempts,
                    status: failure.status,
                })
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(details))
}

/// The dead letters a replay or purge takes (at most [`MAX_DEAD_LETTERS`]), and how many
/// more matched.
async fn selected(
    feed: &Feed,
    selection: DeadLetterSelection,
) -> Result<(Vec<Group>, usize), ApiError> {
    if selection.ids.is_empty() && !selection.all {
        return Err(ApiError::unprocessable(
            "nothing_selected",
            "say which dead letters: `ids`, or `all` with the filters",
        ));
    }
    if !selection.ids.is_empty() && selection.all {
        return Err(ApiError::unprocessable(
            "invalid_selection",
            "give `ids` or `all`, not both",
        ));
    }
    if selection.ids.len() > MAX_DEAD_LETTERS {
        return Err(ApiError::unprocessable(
            "too_many_ids",
            format!("at most {MAX_DEAD_LETTERS} ids at a time"),
        ));
    }
    let wanted = dlq::Filter {
        sink: selection.sink,
        kind: selection.kind,
        reason_class: selection.reason_class,
        since: Timestamp::checked_opt(selection.since, "since")?,
        until: Timestamp::checked_opt(selection.until, "until")?,
        ids: selection.ids,
        limit: None,
    };
    wanted
        .validate()
        .map_err(|e| ApiError::unprocessable("invalid_filter", e))?;
    let mut groups = select(feed, &wanted).await?;
    let remaining = groups.len().saturating_sub(MAX_DEAD_LETTERS);
    groups.truncate(MAX_DEAD_LETTERS);
    Ok((groups, remaining))
}

/// Records a dead letter's replay or purge in the registry, as the administrator, then
/// removes it from the stream: a failure in between leaves it listed, to be done again.
async fn settle(
    (pool, admin, trace): (&Pool, &Admin, &TraceParent),
    kind: EventKind,
    feed: &Feed,
    group: &Group,
    reason: &str,
) -> Result<(), ApiError> {
    let entry = &group.entry;
    let envelope = &entry.envelope;
    let uuid = |field: &str| {
        envelope[field]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
    };
    let endpoint: Option<Uuid> = entry
        .sink
        .strip_prefix("endpoint.")
        .and_then(|id| id.parse().ok());
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    const RECORD: &str = "latch_record_dead_letter_action";
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &kind.as_str(),
        &envelope["site"].as_str(),
        &uuid("door_id"),
        &uuid("holder_id"),
        &uuid("grant_id"),
        &endpoint,
        &reason,
    ];
    match change(&tx, RECORD, admin, trace, &args).await? {
        Outcome::Done => {}
        other => return Err(unexpected(RECORD, other)),
    }
    tx.commit().await?;
    dlq::remove(feed.jetstream(), &group.dlq_seqs)
        .await
        .map_err(ApiError::unavailable)
}

/// Send dead letters again, each to the sink that failed it alone, with its event id
/// unchanged.
///
/// Each is checked by the stale-replay guard first — a grant's creation after the grant was
/// revoked, or a check-in to a webhook subscriber after the holder checked out, would tell
/// the sink something no longer true — and a refusal comes back with its reason (`force`
/// replays anyway). `dry_run` answers the same without changing anything. Each replay is
/// recorded in the registry (`dlq_replayed`, with its author) before its dead letter is
/// removed; asking again after an interruption replays what is left, and a dead letter
/// whose replay was sent but not yet removed is not sent twice.
#[utoipa::path(
    tag = "dead letters",
    request_body = ReplayRequest,
    responses(
        (status = 200, body = ReplayOutcome),
        (status = 403, description = "Not an `admin` token for every site", body = ErrorBody),
        (status = 422, description = "Nothing selected, both `ids` and `all`, unknown kind or reason class", body = ErrorBody),
        (status = 503, description = "NATS is not configured or cannot be reached", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/dead-letters:replay")]
pub async fn replay_dead_letters(
    req: HttpRequest,
    pool: web::Data<Pool>,
    feed: Option<web::Data<Feed>>,
    admin: Admin,
    body: crate::body::Json<ReplayRequest>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let body = body.into_inner();
    let feed = stream(&feed)?;
    let (groups, remaining) = selected(feed, body.selection).await?;
    let mut plan = Vec::new();
    let mut refused = Vec::new();
    {
        let client = pool.get().await?;
        for group in groups {
            match dlq::stale_reason(&client, &group.entry)
                .await
                .map_err(ApiError::internal)?
            {
                Some(reason) if !body.force => refused.push(ReplayRefusal {
                    dead_letter: reference(&group.entry),
                    reason,
                }),
                _ => plan.push(group),
            }
        }
    }
    let trace = TraceParent::for_request(&req);
    let by = format!("administrator {}", admin.id);
    let mut replayed = Vec::new();
    for group in &plan {
        if !body.dry_run {
            dlq::replay(feed.jetstream(), &group.entry)
                .await
                .map_err(ApiError::unavailable)?;
            let reason = dlq::replay_reason(&group.entry, &by);
            let by_admin = (pool.get_ref(), &admin, &trace);
            settle(by_admin, EventKind::DlqReplayed, feed, group, &reason).await?;
        }
        replayed.push(reference(&group.entry));
    }
    Ok(HttpResponse::Ok().json(ReplayOutcome {
        dry_run: body.dry_run,
        replayed,
        refused,
        remaining,
    }))
}

/// Delete dead letters for good, each recorded in the registry (`dlq_purged`, with its
/// author).
#[utoipa::path(
    tag = "dead letters",
    request_body = DeadLetterSelection,
    responses(
        (status = 200, body = PurgeOutcome),
        (status = 403, description = "Not an `admin` token for every site", body = ErrorBody),
        (status = 422, description = "Nothing selected, both `ids` and `all`, unknown kind or reason class", body = ErrorBody),
        (status = 503, description = "NATS is not configured or cannot be reached", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/dead-letters:purge")]
pub async fn purge_dead_letters(
    req: HttpRequest,
    pool: web::Data<Pool>,
    feed: Option<web::Data<Feed>>,
    admin: Admin,
    body: crate::body::Json<DeadLetterSelection>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let feed = stream(&feed)?;
    let (groups, remaining) = selected(feed, body.into_inner()).await?;
    let trace = TraceParent::for_request(&req);
    let mut purged = Vec::new();
    for group in &groups {
        let reason = format!(
            "purged the dead letter of event {} ({}) at {} by administrator {}",
            dlq::display_id(&group.entry),
            group.entry.kind.as_deref().unwrap_or("unknown kind"),
            group.entry.sink,
            admin.id
        );
        let by_admin = (pool.get_ref(), &admin, &trace);
        settle(by_admin, EventKind::DlqPurged, feed, group, &reason).await?;
        purged.push(reference(&group.entry));
    }
    Ok(HttpResponse::Ok().json(PurgeOutcome { purged, remaining }))
}
