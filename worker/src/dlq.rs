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

pub use latch_core::dlq::headers;

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
