//! `GET /v1/events/stream`: the feed as Server-Sent Events.
//!
//! Every event is one SSE message whose `id` is its cursor and whose `data` is the event as
//! `GET /v1/events` gives it, so a browser's `EventSource` resumes by itself after a dropped
//! connection (it sends `Last-Event-ID`) with no gap and no duplicate, on this or any other
//! API process. A stream starts from `Last-Event-ID`, else from `after`, else from now.
//!
//! It reads pages from JetStream until it has caught up, then takes events from the
//! process's ring (see the module above). Each event in the ring names the position of the
//! one before it: one that does not follow on from what the stream has sent sends it back
//! to reading pages, so switching never loses an event. A client that reads too slowly to
//! hold its place in the ring gets a `lagged` message and the connection is closed; its
//! `EventSource` reconnects and carries on from its last id (reading pages again). Memory
//! per client stays bounded: one page while catching up, the connection's own buffer, and
//! a place in the shared ring.
//!
//! Comments (`: keep-alive`) keep idle connections open through proxies; when events the
//! client's filters skip have passed, the keep-alive also moves its last event id on
//! (an `id:` line without data), so a reconnect does not read them again.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, web};
use latch_core::credentials::Scope;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{Feed, FeedError, FeedEvent, Filter, parse_cursor};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};

/// Events one page read takes while a stream catches up.
const CATCH_UP_PAGE: usize = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Start after this cursor when the request has no `Last-Event-ID` (which wins); without
    /// either, the stream starts with the next new event.
    pub after: Option<String>,
    /// Comma-separated event kinds, e.g. `check_in,door_forced_open`.
    pub kinds: Option<String>,
    /// Comma-separated sites (within the token's).
    pub sites: Option<String>,
    /// Comma-separated door ids.
    pub doors: Option<String>,
    /// Comma-separated holder ids.
    pub holders: Option<String>,
}

/// Follow events live (Server-Sent Events).
///
/// `text/event-stream`: each event is a message with `id: <cursor>` and `data: <event>`
/// (the same JSON as in `GET /v1/events`). A `retry:` hint comes first, `: keep-alive`
/// comments while idle. `event: lagged` (the client read too slowly), `event: unavailable`
/// (the event stream cannot be read now) and `event: too_many_streams` (this process serves
/// its most) end the connection, with the cursor to resume from; reconnect with
/// `Last-Event-ID` (browsers do this themselves) to resume. A cursor older than the
/// retention is refused before the stream starts (410).
#[utoipa::path(
    tag = "events",
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "The last cursor received; resumes after it")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid filter or cursor", body = ErrorBody),
        (status = 401, description = "No or unknown token or session", body = ErrorBody),
        (status = 403, description = "A reader key, a token without `events:read`, or a site outside the token's", body = ErrorBody),
        (status = 410, description = "The cursor is older than the stream's retention, or ahead of a stream that was reset since it was issued (`cursor_expired`, with `oldest_cursor`)", body = ErrorBody),
    ),
    security(("admin_token" = []), ("session" = []))
)]
#[get("/v1/events/stream")]
pub async fn stream(
    req: HttpRequest,
    feed: Option<web::Data<Feed>>,
    admin: Admin,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::EventsRead)?;
    let feed = super::pull::configured(feed)?;
    let query = query.into_inner();
    let filter = Filter::from_query(
        &admin,
        query.kinds.as_deref(),
        query.sites.as_deref(),
        query.doors.as_deref(),
        query.holders.as_deref(),
    )?;
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "Last-Event-ID is not text"))
        })
        .transpose()?;
    let cursor = last_event_id
        .or(query.after.as_deref())
        .map(parse_cursor)
        .transpose()?;
    // Taken first, so that a process at its most streams refuses without asking JetStream.
    let slot = Slot::take(&feed, admin.id);
    let start = match (&slot, cursor) {
        (Err(_), _) => Ok(cursor),
        // An expired cursor is refused now, with a status, rather than inside the stream:
        // it needs the client's decision, not an automatic reconnect.
        (Ok(_), Some(cursor)) => feed.check(cursor).await.map(|()| Some(cursor)),
        (Ok(_), None) => feed.head().await.map(Some),
    };
    let readable = start.is_ok();
    let known = match start {
        Ok(position) => position,
        // Passing trouble is told inside a stream that then ends, not with a 503: a
        // browser's EventSource gives up for good on an error status, but reconnects
        // after a stream that ends.
        Err(FeedError::Unavailable(cause)) => {
            tracing::warn!(error = format!("{cause:#}"), "an event stream cannot start");
            cursor
        }
        Err(refused) => return Err(refused.into()),
    };
    // The first message tells the client where it stands (an `id:` without data moves an
    // EventSource's last event id), so that even a stream that started "from now" and saw
    // nothing resumes from there.
    let mut first = format!("retry: {}\n", feed.config.retry.as_millis());
    if let Some(position) = known {
        first.push_str(&format!("id: {position}\n"));
    }
    first.push('\n');
    let mut state = State {
        rx: feed.subscribe(),
        feed: feed.clone().into_inner(),
        epoch: feed.resets.load(Ordering::Acquire),
        filter,
        position: known.unwrap_or(0),
        sent_id: known,
        mode: Mode::CatchUp,
        out: VecDeque::from([Bytes::from(first)]),
        keepalive: None,
        done: false,
        _slot: None,
    };
    match &slot {
        Err(Full::Process) => state.end(
            "too_many_streams",
            "this API process serves as many event streams as it may; reconnect later",
        ),
        Err(Full::Token) => state.end(
            "too_many_streams",
            "this token holds as many event streams open as it may; close one, or reconnect later",
        ),
        Ok(_) if !readable => state.end(
            "unavailable",
            "the event stream cannot be read right now; reconnect to resume",
        ),
        Ok(_) => {}
    }
    state._slot = slot.ok();
    let body = futures::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), state))
    });
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header(("X-Accel-Buffering", HeaderValue::from_static("no")))
        .streaming(body))
}

/// One of the process's stream slots (`LATCH_FEED_MAX_STREAMS`, and
/// `LATCH_FEED_MAX_STREAMS_PER_TOKEN` of them per token), counted in the
/// `latch_feed_streams` gauge while held.
struct Slot {
    feed: Arc<Feed>,
    token: Uuid,
}

/// Why no slot was free.
enum Full {
    Process,
    Token,
}

impl Slot {
    fn take(feed: &web::Data<Feed>, token: Uuid) -> Result<Slot, Full> {
        let mut open = feed.open_streams.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= feed.config.max_streams {
            return Err(Full::Process);
        }
        let held = open.per_token.entry(token).or_default();
        if *held >= feed.config.max_streams_per_token {
            return Err(Full::Token);
        }
        *held += 1;
        open.total += 1;
        feed.metrics.feed_streams.inc();
        Ok(Slot {
            feed: feed.clone().into_inner(),
            token,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .feed
            .open_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(held) = open.per_token.get_mut(&self.token) {
            *held -= 1;
            if *held == 0 {
                open.per_token.remove(&self.token);
            }
        }
        self.feed.metrics.feed_streams.dec();
    }
}

/// A process's open streams, in all and per token.
#[derive(Debug, Default)]
pub struct Open {
    total: usize,
    per_token: HashMap<Uuid, usize>,
}

/// Counts a process's open streams.
pub type OpenStreams = Mutex<Open>;

enum Mode {
    /// Reading pages from JetStream.
    CatchUp,
    /// Taking events from the ring; `fresh`: just switched, so the ring may hold events
    /// from before (and may have overflowed while pages were read), which is no lag.
    Live { fresh: bool },
}

struct State {
    feed: Arc<Feed>,
    /// `Feed::resets` when the stream started: a reset stream's positions start over.
    epoch: u64,
    rx: tokio::sync::broadcast::Receiver<Arc<FeedEvent>>,
    filter: Filter,
    /// Every matching event up to here has been queued.
    position: u64,
    /// The last `id:` the client was sent (or the cursor it came with).
    sent_id: Option<u64>,
    mode: Mode,
    out: VecDeque<Bytes>,
    keepalive: Option<tokio::time::Interval>,
    done: bool,
    _slot: Option<Slot>,
}

impl State {
    /// The next bytes to send; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            match self.mode {
                Mode::CatchUp => self.catch_up().await,
                Mode::Live { fresh } => self.live(fresh).await,
            }
        }
    }

    async fn catch_up(&mut self) {
        let page = tokio::select! {
            _ = self.feed.stopping.cancelled() => { self.done = true; return; }
            page = self.feed.page(Some(self.position), &self.filter, CATCH_UP_PAGE, CATCH_UP_PAGE * 10) => page,
        };
        match page {
            Ok(page) => {
                for event in &page.events {
                    self.send(event);
                }
                self.position = page.position;
                // Past events the filters skipped: say so, so that a reconnect does not
                // read them again (and a long catch-up is not silent).
                if self.sent_id.is_none_or(|sent| self.position > sent) {
                    self.out
                        .push_back(Bytes::from(format!("id: {}\n\n", self.position)));
                    self.sent_id = Some(self.position);
                }
                if page.caught_up {
                    self.mode = Mode::Live { fresh: true };
                }
            }
            Err(error) => {
                let reason = match &error {
                    FeedError::Unavailable(cause) => {
                        tracing::warn!(
                            error = format!("{cause:#}"),
                            "an event stream cannot read JetStream"
                        );
                        "the event stream cannot be read right now; reconnect to resume"
                    }
                    // Retention passed the client by while it was catching up.
                    FeedError::Expired { .. } | FeedError::Ahead { .. } => {
                        "events after your last event id are no longer kept; start again without Last-Event-ID"
                    }
                };
                self.end("unavailable", reason);
            }
        }
    }

    async fn live(&mut self, fresh: bool) {
        if self.feed.resets.load(Ordering::Acquire) != self.epoch {
            self.end(
                "reset",
                "the event stream was reset and its positions start over; reconnect without Last-Event-ID",
            );
            return;
        }
        let every = self.feed.config.keepalive;
        let keepalive = self.keepalive.get_or_insert_with(|| {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        tokio::select! {
            _ = self.feed.stopping.cancelled() => self.done = true,
            _ = keepalive.tick() => {
                let mut chunk = String::from(": keep-alive\n");
                if self.sent_id.is_none_or(|sent| self.position > sent) {
                    chunk.push_str(&format!("id: {}\n", self.position));
                    self.sent_id = Some(self.position);
                }
                chunk.push('\n');
                self.out.push_back(Bytes::from(chunk));
            }
            received = self.rx.recv() => match received {
                Ok(event) => {
                    self.mode = Mode::Live { fresh: false };
                    if event.seq <= self.position {
                        // Already sent while catching up.
                    } else if event.prev <= self.position {
                        if self.filter.matches(&event) {
                            self.send(&event);
                        }
                        self.position = event.seq;
                    } else {
                        // Events came between the last page and this one: read them first.
                        self.mode = Mode::CatchUp;
                    }
                }
                Err(RecvError::Lagged(_)) if fresh => self.mode = Mode::CatchUp,
                Err(RecvError::Lagged(missed)) => {
                    self.feed.metrics.feed_lagged.inc();
                    tracing::info!(missed, position = self.position, "closing an event stream whose client reads too slowly");
                    self.end(
                        "lagged",
                        "you read events more slowly than they come; reconnect with Last-Event-ID to resume from your last event",
                    );
                }
                Err(RecvError::Closed) => self.done = true,
            },
        }
    }

    fn send(&mut self, event: &FeedEvent) {
        let mut chunk = Vec::with_capacity(event.json.len() + 32);
        chunk.extend_from_slice(format!("id: {}\ndata: ", event.seq).as_bytes());
        chunk.extend_from_slice(&event.json);
        chunk.extend_from_slice(b"\n\n");
        self.out.push_back(Bytes::from(chunk));
        self.sent_id = Some(event.seq);
        self.feed.metrics.feed_events_sent.inc();
    }

    /// A last message, then the end of the stream.
    fn end(&mut self, event: &str, message: &str) {
        let data = serde_json::json!({
            "code": event,
            "message": message,
            "cursor": self.sent_id.map(|id| id.to_string()),
        });
        let id = self
            .sent_id
            .map(|id| format!("id: {id}\n"))
            .unwrap_or_default();
        self.out
            .push_back(Bytes::from(format!("event: {event}\n{id}data: {data}\n\n")));
        self.done = true;
    }
}
