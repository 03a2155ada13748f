//! The event feed: `LATCH_EVENTS` read from a position (`GET /v1/events`) and followed live
//! (`GET /v1/events/stream`, Server-Sent Events).
//!
//! # Cursors
//!
//! A cursor is a position in the stream (its sequence number, opaque to clients): "every
//! event up to here that the request's filters match has been read". Pages and streams
//! continue after it, so a client that stores the last cursor it handled resumes with no
//! gap and no duplicate, on any API process. A cursor older than the stream's retention is
//! answered `410 cursor_expired` with the oldest cursor still readable.
//!
//! # How one process serves many streams
//!
//! Reading from a position goes to JetStream: an ordered consumer from that position, with
//! the request's kinds as its subject filter, read for one page and dropped ([`Feed::page`]).
//! Following live does not: one task per process ([`tail`]) follows the stream's new events
//! and hands each, parsed and serialised once, to every connected stream through a ring of
//! fixed size (a `tokio::sync::broadcast` channel). Each event carries the position of the
//! event before it (`prev`), so a stream that switches from reading pages to the ring knows
//! whether it missed anything in between, and reads the gap from JetStream if so. A stream
//! whose client reads too slowly to keep its place in the ring is told so and closed; it
//! resumes from its last event id. See [`sse`].

pub mod pull;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use latch_core::event::EventKind;
use latch_core::nats::EVENTS_SUBJECTS;
use latch_core::shutdown::CancellationToken;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::metrics::ApiMetrics;

pub use crate::config::FeedConfig;

/// One event of the stream, parsed once and shared by every reader.
#[derive(Debug)]
pub struct FeedEvent {
    /// Its position (the stream sequence): its cursor.
    pub seq: u64,
    /// The position of the event before it in the stream (no event lies between): how a
    /// live stream knows it has missed nothing.
    pub prev: u64,
    pub kind: EventKind,
    pub site: Option<String>,
    pub door_id: Option<Uuid>,
    pub holder_id: Option<Uuid>,
    /// The envelope with its `cursor`, as JSON.
    pub json: Bytes,
}

/// The fields of an envelope the filters look at; the rest is passed on as it is.
#[derive(serde::Deserialize)]
struct Routing<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    site: Option<std::borrow::Cow<'a, str>>,
    door_id: Option<Uuid>,
    holder_id: Option<Uuid>,
}

impl FeedEvent {
    /// `None` (logged) for a message that is not an event envelope: it is skipped, but its
    /// position still counts as read. The envelope is not rebuilt: its `cursor` is written
    /// in front of the object's first member.
    fn parse(prev: u64, seq: u64, subject: &str, payload: &[u8]) -> Option<FeedEvent> {
        let parsed = serde_json::from_slice::<Routing<'_>>(payload)
            .ok()
            .and_then(|routing| {
                let kind: EventKind = routing.kind.parse().ok()?;
                let body = payload.trim_ascii_start().strip_prefix(b"{")?;
                let cursor = format!("{{\"cursor\":\"{seq}\",");
                let mut json = Vec::with_capacity(cursor.len() + body.len());
                json.extend_from_slice(cursor.as_bytes());
                json.extend_from_slice(body);
                Some(FeedEvent {
                    seq,
                    prev,
                    kind,
                    site: routing.site.map(|s| s.into_owned()),
                    door_id: routing.door_id,
                    holder_id: routing.holder_id,
                    json: Bytes::from(json),
                })
            });
        if parsed.is_none() {
            tracing::warn!(
                seq,
                subject,
                "skipping a stream message that is not an event"
            );
        }
        parsed
    }
}

/// What one request may and wants to see.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Kinds asked for (`None`: all); applied by JetStream itself.
    pub kinds: Option<Vec<EventKind>>,
    pub sites: Option<Vec<String>>,
    pub doors: Option<Vec<Uuid>>,
    pub holders: Option<Vec<Uuid>>,
    /// The token's sites (`None`: every site). A token limited to sites sees only events
    /// of those sites: never one without a site.
    pub allowed_sites: Option<Vec<String>>,
}

impl Filter {
    /// The filter of a request by `admin` with these query parameters (comma-separated
    /// lists). A site outside the token's list is refused rather than silently dropped.
    pub fn from_query(
        admin: &Admin,
        kinds: Option<&str>,
        sites: Option<&str>,
        doors: Option<&str>,
        holders: Option<&str>,
    ) -> Result<Filter, ApiError> {
        fn list<T>(
            value: Option<&str>,
            code: &'static str,
            parse: impl Fn(&str) -> Result<T, String>,
        ) -> Result<Option<Vec<T>>, ApiError> {
            let Some(value) = value else { return Ok(None) };
            let items = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| parse(s).map_err(|message| ApiError::bad_request(code, message)))
                .collect::<Result<Vec<T>, ApiError>>()?;
            if items.is_empty() {
                return Err(ApiError::bad_request(
                    code,
                    "an empty list matches nothing; leave the parameter out instead",
                ));
            }
            if items.len() > 100 {
                return Err(ApiError::bad_request(code, "at most 100 values"));
            }
            Ok(Some(items))
        }
        let uuid = |s: &str| {
            s.parse::<Uuid>()
                .map_err(|_| format!("{s:?} is not a UUID"))
        };
        let filter = Filter {
            kinds: list(kinds, "invalid_kind", |s| s.parse::<EventKind>())?,
            sites: list(sites, "invalid_site", |s| {
                if latch_core::event::valid_site(s) {
                    Ok(s.to_owned())
                } else {
                    Err(format!("{s:?} is not a site name"))
                }
            })?,
            doors: list(doors, "invalid_door", uuid)?,
            holders: list(holders, "invalid_holder", uuid)?,
            allowed_sites: admin.site_filter().clone(),
        };
        if let Some(sites) = &filter.sites {
            for site in sites {
                admin.require_site(site)?;
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, event: &FeedEvent) -> bool {
        fn within<T: PartialEq>(list: &Option<Vec<T>>, value: Option<&T>) -> bool {
            match list {
                None => true,
                Some(list) => value.is_some_and(|v| list.contains(v)),
            }
        }
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&event.kind))
            && within(&self.allowed_sites, event.site.as_ref())
            && within(&self.sites, event.site.as_ref())
            && within(&self.doors, event.door_id.as_ref())
            && within(&self.holders, event.holder_id.as_ref())
    }

    /// The subjects JetStream filters on.
    fn subjects(&self) -> Vec<String> {
        match &self.kinds {
            None => vec![EVENTS_SUBJECTS.to_owned()],
            Some(kinds) => kinds.iter().flat_map(|k| k.filters()).collect(),
        }
    }
}

/// One read from a position.
#[derive(Debug)]
pub struct Page {
    /// The events the filter matched, in stream order.
    pub events: Vec<Arc<FeedEvent>>,
    /// Where the next read continues: every matching event up to here is in `events` or
    /// in an earlier page.
    pub position: u64,
    /// No matching event after `position` existed when the page was read.
    pub caught_up: bool,
}

/// Why a read from a position failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("the cursor is older than the stream's retention")]
    Expired { oldest: u64 },
    #[error("the cursor is ahead of the stream: the stream was reset since it was issued")]
    Ahead { oldest: u64 },
    #[error("the event stream cannot be read")]
    Unavailable(#[source] anyhow::Error),
}

impl From<FeedError> for ApiError {
    fn from(error: FeedError) -> Self {
        match error {
            FeedError::Expired { oldest } => ApiError::cursor_expired(
                format!(
                    "events after this cursor are no longer kept; the oldest readable cursor is {oldest:?}, \
                     or leave `after` out to start from the oldest event"
                ),
                oldest,
            ),
            FeedError::Ahead { oldest } => ApiError::cursor_expired(
                "this cursor is ahead of the event stream, which was reset since it was issued; \
                 start again from the oldest cursor",
                oldest,
            ),
            FeedError::Unavailable(cause) => ApiError::unavailable(cause),
        }
    }
}

/// Parses a client's cursor.
pub fn parse_cursor(cursor: &str) -> Result<u64, ApiError> {
    cursor
        .trim()
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("invalid_cursor", "not a cursor this API issued"))
}

/// The feed of one API process: its NATS connection, the live ring, its settings.
/// Events waiting after a position.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backlog {
    pub pending: u64,
    /// When the first of them was stored.
    pub oldest: Option<time::OffsetDateTime>,
}

pub struct Feed {
    js: jetstream::Context,
    stream: String,
    ring: broadcast::Sender<Arc<FeedEvent>>,
    pub config: FeedConfig,
    pub metrics: ApiMetrics,
    /// Cancelled when the API stops: open streams end (clients reconnect elsewhere).
    pub stopping: CancellationToken,
    pub open_streams: sse::OpenStreams,
    /// Permits to read a page from JetStream (`LATCH_FEED_MAX_READS`).
    reads: tokio::sync::Semaphore,
    /// Times the stream was found reset (deleted and made again): open streams end.
    pub resets: std::sync::atomic::AtomicU64,
}

/// The largest gap between two events the ordered consumer leaves before a page gives up
/// waiting for the next message (a server that stops answering mid-page).
const MESSAGE_WAIT: Duration = Duration::from_secs(5);

impl Feed {
    pub fn new(
        client: async_nats::Client,
        stream: String,
        config: FeedConfig,
        metrics: ApiMetrics,
        stopping: CancellationToken,
    ) -> Arc<Feed> {
        let (ring, _) = broadcast::channel(config.ring_size);
        let reads = config.max_reads;
        Arc::new(Feed {
            js: jetstream::new(client),
            stream,
            ring,
            config,
            metrics,
            stopping,
            open_streams: Default::default(),
            reads: tokio::sync::Semaphore::new(reads),
            resets: Default::default(),
        })
    }

    /// The JetStream client the feed reads through (the dead letters are read with it too).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The event stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.ring.subscribe()
    }

    async fn stream_state(&self) -> Result<(jetstream::stream::Stream, u64, u64), FeedError> {
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| {
            FeedError::Unavailable(
                anyhow::Error::new(e).context(format!("cannot read stream {}", self.stream)),
            )
        })?;
        let state = &stream.cached_info().state;
        let (first, last) = (state.first_sequence, state.last_sequence);
        Ok((stream, first, last))
    }

    /// What waits after a position (`None`: from `start`): how many events on `subjects`,
    /// and when the first of them was stored. For a webhook endpoint's backlog.
    pub async fn backlog(
        &self,
        subjects: Vec<String>,
        after: Option<u64>,
        start: time::OffsetDateTime,
    ) -> Result<Backlog, FeedError> {
        let _permit =
            self.reads.acquire().await.map_err(|_| {
                FeedError::Unavailable(anyhow::anyhow!("the feed is shutting down"))
            })?;
        let (stream, _, last) = self.stream_state().await?;
        if after.is_some_and(|after| after >= last) {
            return Ok(Backlog::default());
        }
        let unavailable =
            |e: anyhow::Error| FeedError::Unavailable(e.context("cannot read the backlog"));
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subjects: subjects,
                deliver_policy: match after {
                    Some(after) => consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: after + 1,
                    },
                    None => consumer::DeliverPolicy::ByStartTime { start_time: start },
                },
                max_batch: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(e.into()))?;
        let name = consumer.cached_info().name.clone();
        let pending = consumer.cached_info().num_pending;
        let oldest = if pending == 0 {
            Ok(None)
        } else {
            async {
                let mut messages = consumer.messages().await?;
                let first = tokio::time::timeout(MESSAGE_WAIT, messages.next())
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the stream ended"))??;
                let info = first.info().map_err(|e| anyhow::anyhow!("{e}"))?;
                anyhow::Ok(Some(info.published))
            }
            .await
            .map_err(unavailable)
        };
        self.forget_consumer(stream, name);
        Ok(Backlog {
            pending,
            oldest: oldest?,
        })
    }

    /// Messages on `subject` in `stream` (the dead-letter stream, say).
    pub async fn count_on(&self, stream: &str, subject: &str) -> Result<u64, FeedError> {
        let stream = self.js.get_stream(stream).await.map_err(|e| {
            FeedError::Unavailable(anyhow::Error::new(e).context("cannot read the stream"))
        })?;
        let unavailable =
            |e: anyhow::Error| FeedError::Unavailable(e.context("cannot read the stream"));
        let mut subjects = stream
            .info_with_subjects(subject)
            .await
            .map_err(|e| unavailable(e.into()))?;
        let mut total = 0;
        while let Some(entry) = subjects.next().await {
            total += entry.map_err(|e| unavailable(e.into()))?.1 as u64;
        }
        Ok(total)
    }

    /// The position of the newest event: where a stream that wants only new events starts.
    pub async fn head(&self) -> Result<u64, FeedError> {
        Ok(self.stream_state().await?.2)
    }

    /// `Ok` if reading after `after` is possible (see [`FeedError`]).
    pub async fn check(&self, after: u64) -> Result<(), FeedError> {
        let (_, first, last) = self.stream_state().await?;
        readable(Some(after), first, last).map(drop)
    }

    /// Reads after `after` (`None`: from the oldest event kept): up to `limit` matching
    /// events, looking at no more than `max_scan` events of the requested kinds.
    pub async fn page(
        &self,
        after: Option<u64>,
        filter: &Filter,
        limit: usize,
        max_scan: usize,
    ) -> Result<Page, FeedError> {
        // At most `max_reads` pages in memory at once, however many readers.
        let _permit =
            self.reads.acquire().await.map_err(|_| {
                FeedError::Unavailable(anyhow::anyhow!("the feed is shutting down"))
            })?;
        let (stream, first, last) = self.stream_state().await?;
        let after = readable(after, first, last)?;
        let caught_up = |position| Page {
            events: Vec::new(),
            position,
            caught_up: true,
        };
        if after >= last {
            return Ok(caught_up(after));
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subjects: filter.subjects(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                // Pull about a page at a time (the client's default is 500 whatever the page).
                max_batch: i64::try_from(limit.clamp(50, 500)).unwrap_or(500),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                FeedError::Unavailable(anyhow::Error::new(e).context("cannot read from the cursor"))
            })?;
        let name = consumer.cached_info().name.clone();
        let page = if consumer.cached_info().num_pending == 0 {
            // Nothing of these kinds after `after` existed when the consumer was made, so
            // none up to `last` (read before it) either.
            Ok(caught_up(last))
        } else {
            read(consumer, after, filter, limit, max_scan).await
        };
        // Failed or not.
        self.forget_consumer(stream, name);
        page
    }

    /// Deletes a page's consumer in the background (JetStream would drop it after a few
    /// idle seconds anyway; this keeps many readers from piling them up).
    fn forget_consumer(&self, stream: jetstream::stream::Stream, name: String) {
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
    }
}

/// Reads a page from `consumer`, which starts after `after` and has something pending.
async fn read(
    consumer: jetstream::consumer::Consumer<consumer::pull::OrderedConfig>,
    after: u64,
    filter: &Filter,
    limit: usize,
    max_scan: usize,
) -> Result<Page, FeedError> {
    let unavailable = |e: anyhow::Error| FeedError::Unavailable(e);
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable(anyhow::Error::new(e).context("cannot read from the cursor")))?;
    let mut page = Page {
        events: Vec::new(),
        position: after,
        caught_up: false,
    };
    let mut scanned = 0;
    while page.events.len() < limit && scanned < max_scan {
        let message = match tokio::time::timeout(MESSAGE_WAIT, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => {
                return Err(unavailable(
                    anyhow::Error::new(e).context("reading the stream failed"),
                ));
            }
            Ok(None) | Err(_) => {
                return Err(unavailable(anyhow::anyhow!(
                    "the stream stopped answering in the middle of a page"
                )));
            }
        };
        let info = message
            .info()
            .map_err(|e| unavailable(anyhow::anyhow!("a message without its position: {e}")))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        scanned += 1;
        if let Some(event) =
            FeedEvent::parse(page.position, seq, &message.subject, &message.payload)
            && filter.matches(&event)
        {
            page.events.push(Arc::new(event));
        }
        page.position = seq;
        if pending == 0 {
            page.caught_up = true;
            break;
        }
    }
    Ok(page)
}

/// Where a read after `after` starts (`None`: the oldest event kept), in a stream that
/// holds `first..=last`.
fn readable(after: Option<u64>, first: u64, last: u64) -> Result<u64, FeedError> {
    // An empty stream has first = last + 1: its oldest cursor is `last` either way.
    let oldest = first.saturating_sub(1);
    match after {
        None => Ok(oldest),
        Some(after) if after < oldest => Err(FeedError::Expired { oldest }),
        Some(after) if after > last => Err(FeedError::Ahead { oldest }),
        Some(after) => Ok(after),
    }
}

/// Where the process's tail stands.
#[derive(Debug, Default)]
struct Tail {
    /// The last position read: where it continues after an error.
    head: Option<u64>,
    /// The last position the ring has linked to: the `prev` of the next event put into it.
    /// Messages that are not events move `head` but not this, so they break no link (pages
    /// skip them as well).
    linked: Option<u64>,
}

/// Follows the stream's new events for the whole process and puts each into the ring,
/// from the stream's end when it starts; after an error it continues where it stopped, so
/// the ring never skips an event.
pub async fn tail(feed: Arc<Feed>) {
    let mut tail = Tail::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let before = tail.head;
        let result = tokio::select! {
            _ = feed.stopping.cancelled() => return,
            result = follow(&feed, &mut tail) => result,
        };
        if let Err(error) = result {
            tracing::warn!(
                error = format!("{error:#}"),
                "the live event feed lost the stream; retrying"
            );
        }
        if tail.head != before {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = feed.stopping.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow(feed: &Feed, tail: &mut Tail) -> anyhow::Result<()> {
    let (stream, _, last) = feed.stream_state().await?;
    if tail.head.is_some_and(|head| head > last) {
        // The stream was deleted and made again: its positions start over. Streams that
        // are open hold positions of the old one; they are ended (see `resets`).
        tracing::warn!(
            head = tail.head,
            last,
            "the event stream was reset; following the new one from its end"
        );
        *tail = Tail::default();
        feed.resets
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
    let from = *tail.head.get_or_insert(last);
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: EVENTS_SUBJECTS.to_owned(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from + 1,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    tracing::info!(from, "the live event feed follows the stream");
    while let Some(message) = messages.next().await {
        let message = message?;
        let seq = message
            .info()
            .map_err(|e| anyhow::anyhow!("a message without its position: {e}"))?
            .stream_sequence;
        if tail.head.is_some_and(|head| seq <= head) {
            continue;
        }
        tail.head = Some(seq);
        let prev = *tail.linked.get_or_insert(from);
        if let Some(event) = FeedEvent::parse(prev, seq, &message.subject, &message.payload) {
            tail.linked = Some(seq);
            // No receiver is not an error: nobody is watching right now.
            let _ = feed.ring.send(Arc::new(event));
        }
    }
    anyhow::bail!("the stream's consumer ended")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn event(site: Option<&str>, kind: EventKind) -> FeedEvent {
        FeedEvent {
            seq: 2,
            prev: 1,
            kind,
            site: site.map(str::to_owned),
            door_id: None,
            holder_id: None,
            json: Bytes::new(),
        }
    }

    #[test]
    fn a_cursor_is_readable_from_the_oldest_kept_event_to_the_newest() {
        // The stream keeps 11..=20.
        assert_eq!(readable(None, 11, 20).ok(), Some(10));
        assert_eq!(readable(Some(10), 11, 20).ok(), Some(10));
        assert_eq!(readable(Some(20), 11, 20).ok(), Some(20));
        assert!(matches!(
            readable(Some(9), 11, 20),
            Err(FeedError::Expired { oldest: 10 })
        ));
        assert!(matches!(
            readable(Some(21), 11, 20),
            Err(FeedError::Ahead { oldest: 10 })
        ));
        // Empty, after 20 events expired.
        assert_eq!(readable(None, 21, 20).ok(), Some(20));
        assert_eq!(readable(Some(20), 21, 20).ok(), Some(20));
        // Empty and new.
        assert_eq!(readable(Some(0), 1, 0).ok(), Some(0));
    }

    #[test]
    fn a_token_limited_to_sites_sees_only_their_events() {
        let filter = Filter {
            allowed_sites: Some(vec!["north".into()]),
            ..Filter::default()
        };
        assert!(filter.matches(&event(Some("north"), EventKind::CheckIn)));
        assert!(!filter.matches(&event(Some("hq"), EventKind::CheckIn)));
        assert!(!filter.matches(&event(None, EventKind::HolderCreated)));
        let every = Filter::default();
        assert!(every.matches(&event(None, EventKind::HolderCreated)));
    }

    #[test]
    fn an_envelope_gets_its_cursor_and_a_foreign_message_is_skipped() {
        let payload = br#"{"id":"0190f3c2-0000-7000-8000-000000000001","kind":"check_in","site":"hq","door_id":null,"holder_id":"0190f3c2-0000-7000-8000-000000000002"}"#;
        let event = FeedEvent::parse(4, 7, "latch.events.check_in", payload).expect("parses");
        assert_eq!(
            (event.prev, event.seq, event.kind),
            (4, 7, EventKind::CheckIn)
        );
        let json: Value = serde_json::from_slice(&event.json).expect("json");
        assert_eq!(json["cursor"], "7");
        assert_eq!(json["site"], "hq");
        assert!(FeedEvent::parse(4, 7, "latch.events.check_in", b"not json").is_none());
        assert!(FeedEvent::parse(4, 7, "latch.events.x", br#"{"kind":"nope"}"#).is_none());
        // As PostgreSQL writes it, with spaces.
        let spaced = br#" { "kind": "door_forced_open", "site": "hq", "door_id": "0190f3c2-0000-7000-8000-000000000003", "holder_id": null}"#;
        let event =
            FeedEvent::parse(7, 9, "latch.events.door_forced_open", spaced).expect("parses");
        let json: Value = serde_json::from_slice(&event.json).expect("json");
        assert_eq!(
            (json["cursor"].as_str(), json["kind"].as_str()),
            (Some("9"), Some("door_forced_open"))
        );
        assert_eq!(
            event.door_id.map(|d| d.to_string()).as_deref(),
            Some("0190f3c2-0000-7000-8000-000000000003")
        );
        // An empty object is no event, nor is an array.
        assert!(FeedEvent::parse(4, 7, "latch.events.x", b"{}").is_none());
        assert!(FeedEvent::parse(4, 7, "latch.events.x", b"[1]").is_none());
    }
}
