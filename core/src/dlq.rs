//! Dead letters in `LATCH_DLQ`: reading, grouping, filtering, replaying and removing them,
//! for the operator's command line (`latch dlq`) and the API (`/v1/dead-letters`). The
//! worker writes them (`latch_worker::dlq`).
//!
//! A dead letter is the original message — payload and headers (`traceparent`,
//! `Latch-Event-Id`) — on `latch.dlq.<sink>`, plus headers saying why: `Latch-Dlq-Sink`,
//! `-Reason`, `-Class` (`permanent`, `exhausted`, `malformed`), `-Attempts`, `-Status`
//! (the sink's HTTP status, when there was one), `-Subject` and `-Stream-Seq` (where the
//! original lives in `LATCH_EVENTS`) and `-At`.
//!
//! Dead letters are grouped by (sink, event): an event dead-lettered twice is shown and
//! replayed once. A replay publishes the event to `latch.replay.<sink>` — that sink only —
//! with its event id unchanged, is recorded in the actions registry, and only then is the
//! dead letter removed. A dead letter whose replay was published but not yet removed is not
//! replayed twice (its replay message id is fixed, and the stream deduplicates it).

use async_nats::HeaderMap;
use async_nats::jetstream;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::event::EventKind;

pub mod headers {
    pub const SINK: &str = "Latch-Dlq-Sink";
    pub const REASON: &str = "Latch-Dlq-Reason";
    pub const CLASS: &str = "Latch-Dlq-Class";
    pub const ATTEMPTS: &str = "Latch-Dlq-Attempts";
    pub const STATUS: &str = "Latch-Dlq-Status";
    pub const SUBJECT: &str = "Latch-Dlq-Subject";
    pub const STREAM_SEQ: &str = "Latch-Dlq-Stream-Seq";
    pub const AT: &str = "Latch-Dlq-At";
}

/// The failure classes a dead letter may have.
pub const CLASSES: [&str; 3] = ["permanent", "exhausted", "malformed"];

/// A dead letter as read back from `LATCH_DLQ`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Its sequence in `LATCH_DLQ`.
    pub dlq_seq: u64,
    pub sink: String,
    pub class: String,
    pub reason: String,
    pub attempts: u32,
    pub status: Option<u16>,
    /// Where the original lives in `LATCH_EVENTS`.
    pub original_subject: String,
    pub original_seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub event_id: Option<uuid::Uuid>,
    pub kind: Option<String>,
    pub envelope: serde_json::Value,
    /// The original headers (`traceparent`, `Latch-Event-Id`).
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub payload: bytes::Bytes,
}

impl Entry {
    /// A dead letter read at `dlq_seq`, stored at `stored` (its time when it has no
    /// `Latch-Dlq-At`).
    fn read(dlq_seq: u64, stored: OffsetDateTime, message: &async_nats::Message) -> Entry {
        let empty = HeaderMap::new();
        let message_headers = message.headers.as_ref().unwrap_or(&empty);
        let header = |name: &str| {
            message_headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let envelope: serde_json::Value =
            serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null);
        let event_id = header("Latch-Event-Id")
            .parse()
            .ok()
            .or_else(|| envelope["id"].as_str().and_then(|s| s.parse().ok()));
        let originals = message_headers
            .iter()
            .filter(|(name, _)| {
                let name: &str = name.as_ref();
                !name.starts_with("Latch-Dlq-") && !name.starts_with("Nats-")
            })
            .flat_map(|(name, values)| {
                let name: &str = name.as_ref();
                values
                    .iter()
                    .map(move |v| (name.to_owned(), v.as_str().to_owned()))
            })
            .collect();
        Entry {
            dlq_seq,
            sink: header(headers::SINK),
            class: header(headers::CLASS),
            reason: header(headers::REASON),
            attempts: header(headers::ATTEMPTS).parse().unwrap_or(0),
            status: header(headers::STATUS).parse().ok(),
            original_subject: header(headers::SUBJECT),
            original_seq: header(headers::STREAM_SEQ).parse().unwrap_or(0),
            at: OffsetDateTime::parse(&header(headers::AT), &Rfc3339).unwrap_or(stored),
            event_id,
            kind: envelope["kind"].as_str().map(str::to_owned),
            envelope,
            headers: originals,
            payload: message.payload.clone(),
        }
    }
}

/// Every dead letter, oldest first.
pub async fn entries(js: &jetstream::Context) -> anyhow::Result<Vec<Entry>> {
    let stream = match js.get_stream(crate::nats::DLQ_STREAM).await {
        Ok(stream) => stream,
        // No dead letter was ever written: the stream does not exist yet.
        Err(e) if crate::nats::stream_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if stream.get_info().await?.state.messages == 0 {
        return Ok(Vec::new());
    }
    // One ordered read of the whole stream (pulled in batches), rather than a request per
    // sequence: replayed and purged entries leave holes the read skips by itself.
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let name = consumer.cached_info().name.clone();
    let pending = consumer.cached_info().num_pending;
    let read = read_all(consumer, pending).await;
    // The server would drop it once idle; it goes now.
    let _ = stream.delete_consumer(&name).await;
    read
}

/// Every message an ordered consumer with `pending` messages to go delivers, as entries.
async fn read_all(
    consumer: jetstream::consumer::Consumer<jetstream::consumer::pull::OrderedConfig>,
    pending: u64,
) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut read = consumer.messages().await?;
    while let Some(message) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures::StreamExt::next(&mut read),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the dead-letter stream stopped answering"))?
    {
        let message = message?;
        let info = message
            .info()
            .map_err(|e| anyhow::anyhow!("a dead letter without its position: {e}"))?;
        let (seq, stored, left) = (info.stream_sequence, info.published, info.pending);
        out.push(Entry::read(seq, stored, &message.message));
        if left == 0 {
            break;
        }
    }
    Ok(out)
}

/// Dead letters of one event at one sink: the first, and any duplicates written by a
/// worker that crashed between writing it and settling the original.
#[derive(Debug, Clone)]
pub struct Group {
    pub entry: Entry,
    /// Every DLQ sequence of this event at this sink, the first included.
    pub dlq_seqs: Vec<u64>,
    /// Every failure recorded for it, oldest first.
    pub history: Vec<Entry>,
}

/// Groups entries by (sink, event), keeping the oldest as the representative.
pub fn group(entries: Vec<Entry>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for entry in entries {
        let existing = groups.iter_mut().find(|g| {
            g.entry.sink == entry.sink
                && g.entry.event_id.is_some()
                && g.entry.event_id == entry.event_id
        });
        match existing {
            Some(group) => {
                group.dlq_seqs.push(entry.dlq_seq);
                group.history.push(entry);
            }
            None => groups.push(Group {
                dlq_seqs: vec![entry.dlq_seq],
                history: vec![entry.clone()],
                entry,
            }),
        }
    }
    groups
}

/// Publishes a dead letter's event again, to its sink only (`latch.replay.<sink>`), and
/// waits for the stream's acknowledgement. The event id (and so the sink's
/// `Idempotency-Key`) is unchanged; the message id is new per dead letter
/// (`replay:<dlq sequence>`), so the events stream does not swallow it as a duplicate of
/// the original — but does swallow a second replay of the same dead letter, which is what
/// makes an interrupted replay safe to run again.
pub async fn replay(js: &jetstream::Context, entry: &Entry) -> anyhow::Result<u64> {
    let mut headers = HeaderMap::new();
    for (name, value) in &entry.headers {
        headers.append(name.as_str(), value.as_str());
    }
    headers.insert("Nats-Msg-Id", format!("replay:{}", entry.dlq_seq));
    let ack = js
        .publish_with_headers(
            crate::nats::replay_subject(&entry.sink),
            headers,
            entry.payload.clone(),
        )
        .await?
        .await?;
    Ok(ack.sequence)
}

/// Removes dead letters by DLQ sequence (already removed ones are fine).
pub async fn remove(js: &jetstream::Context, seqs: &[u64]) -> anyhow::Result<()> {
    let stream = js.get_stream(crate::nats::DLQ_STREAM).await?;
    for seq in seqs {
        match stream.delete_message(*seq).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("no message found") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Which dead letters to take: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `legacy`, `webhooks`, or a webhook endpoint's `endpoint.<id>`.
    pub sink: Option<String>,
    pub kind: Option<String>,
    /// `permanent`, `exhausted` or `malformed`.
    pub reason_class: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<OffsetDateTime>,
    /// Dead-lettered before.
    pub until: Option<OffsetDateTime>,
    /// Only these events.
    pub ids: Vec<Uuid>,
    /// At most this many (the oldest).
    pub limit: Option<usize>,
}

impl Filter {
    /// Refuses an unknown kind or class, with a message naming it.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(kind) = &self.kind {
            kind.parse::<EventKind>()?;
        }
        if let Some(class) = &self.reason_class
            && !CLASSES.contains(&class.as_str())
        {
            return Err(format!(
                "unknown reason class {class:?}: permanent, exhausted or malformed"
            ));
        }
        Ok(())
    }

    pub fn matches(&self, entry: &Entry) -> bool {
        self.sink.as_ref().is_none_or(|s| &entry.sink == s)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| entry.kind.as_ref() == Some(k))
            && self.reason_class.as_ref().is_none_or(|c| &entry.class == c)
            && self.since.is_none_or(|t| entry.at >= t)
            && self.until.is_none_or(|t| entry.at < t)
            && (self.ids.is_empty() || entry.event_id.is_some_and(|id| self.ids.contains(&id)))
    }
}

/// Dead letters grouped and filtered, oldest first.
pub async fn select(js: &jetstream::Context, filter: &Filter) -> anyhow::Result<Vec<Group>> {
    filter.validate().map_err(anyhow::Error::msg)?;
    let mut groups: Vec<Group> = group(entries(js).await?)
        .into_iter()
        .filter(|g| filter.matches(&g.entry))
        .collect();
    if let Some(limit) = filter.limit {
        groups.truncate(limit);
    }
    Ok(groups)
}

/// The event id, or `dlq#<sequence>` for a dead letter without one (a malformed message).
pub fn display_id(entry: &Entry) -> String {
    entry
        .event_id
        .map_or_else(|| format!("dlq#{}", entry.dlq_seq), |id| id.to_string())
}

/// Why the stale-replay guard refuses an entry, if it does.
pub async fn stale_reason(
    db: &tokio_postgres::Client,
    entry: &Entry,
) -> anyhow::Result<Option<String>> {
    let envelope = &entry.envelope;
    let uuid = |field: &str| {
        envelope[field]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
    };
    match entry.kind.as_deref() {
        Some("grant_created") => {
            let Some(grant) = uuid("grant_id") else {
                return Ok(None);
            };
            let revoked = db
                .query_opt(
                    "SELECT recorded_at FROM actions WHERE kind = 'grant_revoked' AND grant_id = $1
                     ORDER BY recorded_at LIMIT 1",
                    &[&grant],
                )
                .await?;
            Ok(revoked.map(|row| {
                let at: OffsetDateTime = row.get(0);
                format!(
                    "grant {grant} was revoked at {}; replaying its creation would announce a grant that no longer exists",
                    at.format(&Rfc3339).unwrap_or_default()
                )
            }))
        }
        // Webhook subscribers (the webhook sink, the endpoints) track presence from the
        // latest event; the legacy system
        // takes timestamped punches, where a late check-in is still right.
        Some("check_in") if entry.sink == "webhooks" || entry.sink.starts_with("endpoint.") => {
            let (Some(holder), Some(occurred)) = (
                uuid("holder_id"),
                envelope["occurred_at"]
                    .as_str()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
            ) else {
                return Ok(None);
            };
            let later = db
                .query_opt(
                    "SELECT occurred_at FROM actions WHERE kind = 'check_out' AND holder_id = $1
                     AND occurred_at > $2 ORDER BY occurred_at LIMIT 1",
                    &[&holder, &occurred],
                )
                .await?;
            Ok(later.map(|row| {
                let at: OffsetDateTime = row.get(0);
                format!(
                    "holder {holder} checked out later ({}); replaying this check-in would show them inside",
                    at.format(&Rfc3339).unwrap_or_default()
                )
            }))
        }
        _ => Ok(None),
    }
}

/// The registry's reason for a replay: which event went to which sink, by whom.
pub fn replay_reason(entry: &Entry, by: &str) -> String {
    format!(
        "replayed event {} ({}) to {} by {by}",
        display_id(entry),
        entry.kind.as_deref().unwrap_or("unknown kind"),
        entry.sink
    )
}
