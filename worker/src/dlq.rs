//! Writing dead letters to `LATCH_DLQ`.
//!
//! A dead letter is the original message — payload and headers (`traceparent`,
//! `Latch-Event-Id`) — on `latch.dlq.<sink>`, plus headers saying why: `Latch-Dlq-Sink`,
//! `-Reason`, `-Class` (`permanent`, `exhausted`, `malformed`), `-Attempts`, `-Status`
//! (the sink's HTTP status, when there was one), `-Subject` and `-Stream-Seq` (where the
//! original lives in `LATCH_EVENTS`) and `-At`.
//!
//! The worker waits for the dead letter's acknowledgement before it terminates the
//! original, so a crash in between cannot lose the event: the original is redelivered
//! and dead-lettered again with the same `Nats-Msg-Id` (`<sink>:<original stream
//! sequence>`), which the DLQ's duplicate window stores once. A replayed event that fails
//! again has a new stream sequence, so it becomes a new dead letter.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, Message};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// Why an event is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The sink refused it for good (a 4xx other than 408/429).
    Permanent,
    /// Every allowed attempt failed.
    Exhausted,
    /// Not an envelope this worker can read.
    Malformed,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Permanent => "permanent",
            Class::Exhausted => "exhausted",
            Class::Malformed => "malformed",
        }
    }
}

pub struct DeadLetter<'a> {
    pub sink: &'a str,
    pub class: Class,
    pub reason: &'a str,
    pub attempts: u32,
    pub status: Option<u16>,
}

/// Where the original of a dead letter lives, and what it carried.
pub struct Original<'a> {
    pub subject: &'a str,
    /// Its sequence in `LATCH_EVENTS`.
    pub stream_seq: u64,
    pub headers: Option<&'a HeaderMap>,
    pub payload: bytes::Bytes,
}

/// Publishes the dead letter and waits for the stream to acknowledge it.
pub async fn publish(
    js: &jetstream::Context,
    message: &Message,
    letter: DeadLetter<'_>,
) -> anyhow::Result<()> {
    let original = Original {
        subject: message.subject.as_str(),
        stream_seq: message.info().map(|i| i.stream_sequence).unwrap_or(0),
        headers: message.headers.as_ref(),
        payload: message.payload.clone(),
    };
    publish_original(js, original, letter).await
}

/// [`publish`], for an original read some other way than as a consumer's message.
pub async fn publish_original(
    js: &jetstream::Context,
    original: Original<'_>,
    letter: DeadLetter<'_>,
) -> anyhow::Result<()> {
    let sequence = original.stream_seq;
    let mut headers = HeaderMap::new();
    if let Some(headers_in) = original.headers {
        for (name, values) in headers_in.iter() {
            let name: &str = name.as_ref();
            if name.starts_with("Nats-") {
                continue;
            }
            for value in values {
                headers.append(name, value.as_str());
            }
        }
    }
    headers.insert("Nats-Msg-Id", format!("{}:{sequence}", letter.sink));
    headers.insert(headers::SINK, letter.sink);
    headers.insert(headers::REASON, letter.reason);
    headers.insert(headers::CLASS, letter.class.as_str());
    headers.insert(headers::ATTEMPTS, letter.attempts.to_string());
    if let Some(status) = letter.status {
        headers.insert(headers::STATUS, status.to_string());
    }
    headers.insert(headers::SUBJECT, original.subject);
    headers.insert(headers::STREAM_SEQ, sequence.to_string());
    headers.insert(
        headers::AT,
        OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
    );
    js.publish_with_headers(
        latch_core::nats::dlq_subject(letter.sink),
        headers,
        original.payload,
    )
    .await?
    .await?;
    Ok(())
}

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
    fn from_message(message: jetstream::message::StreamMessage) -> Entry {
        let header = |name: &str| {
            message
                .headers
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
        let originals = message
            .headers
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
            dlq_seq: message.sequence,
            sink: header(headers::SINK),
            class: header(headers::CLASS),
            reason: header(headers::REASON),
            attempts: header(headers::ATTEMPTS).parse().unwrap_or(0),
            status: header(headers::STATUS).parse().ok(),
            original_subject: header(headers::SUBJECT),
            original_seq: header(headers::STREAM_SEQ).parse().unwrap_or(0),
            at: OffsetDateTime::parse(&header(headers::AT), &Rfc3339).unwrap_or(message.time),
            event_id,
            kind: envelope["kind"].as_str().map(str::to_owned),
            envelope,
            headers: originals,
            payload: message.payload,
        }
    }
}

/// Every dead letter, oldest first.
pub async fn entries(js: &jetstream::Context) -> anyhow::Result<Vec<Entry>> {
    let stream = match js.get_stream(latch_core::nats::DLQ_STREAM).await {
        Ok(stream) => stream,
        // No dead letter was ever written: the stream does not exist yet.
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref err)
                if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    let state = stream.get_info().await?.state;
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        // Deleted sequences (replayed or purged entries) leave holes.
        if let Ok(message) = stream.get_raw_message(seq).await {
            out.push(Entry::from_message(message));
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
            latch_core::nats::replay_subject(&entry.sink),
            headers,
            entry.payload.clone(),
        )
        .await?
        .await?;
    Ok(ack.sequence)
}

/// Removes dead letters by DLQ sequence (already removed ones are fine).
pub async fn remove(js: &jetstream::Context, seqs: &[u64]) -> anyhow::Result<()> {
    let stream = js.get_stream(latch_core::nats::DLQ_STREAM).await?;
    for seq in seqs {
        match stream.delete_message(*seq).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("no message found") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
