//! Where the pipeline stands on the NATS side: the event stream, each sink's backlog, the
//! dead letters — what `latch outbox status` prints and `GET /v1/pipeline` answers.

use async_nats::jetstream;
use futures::TryStreamExt;

use crate::nats::{DLQ_STREAM, stream_missing};

/// The sinks with a durable consumer of their own (`latch-<sink>`, or one per partition,
/// `latch-<sink>-p<i>`).
pub const SINKS: [&str; 2] = ["legacy", "webhooks"];

/// What NATS holds: the event stream, each sink's backlog, the dead letters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub messages: u64,
    pub last_sequence: u64,
    /// The sinks whose consumer exists (a worker created it).
    pub consumers: Vec<ConsumerStatus>,
    pub dead_letters: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsumerStatus {
    pub sink: &'static str,
    /// Not yet delivered to a worker.
    pub waiting: u64,
    /// Delivered, not yet acknowledged.
    pub in_flight: u64,
}

impl ConsumerStatus {
    /// Events this sink has still to take.
    pub fn to_go(&self) -> u64 {
        self.waiting + self.in_flight
    }
}

/// Reads the stream `events_stream`, its sinks' consumers and the dead letters' count.
pub async fn stream_status(
    js: &jetstream::Context,
    events_stream: &str,
) -> anyhow::Result<StreamStatus> {
    let stream = match js.get_stream(events_stream).await {
        Ok(stream) => stream,
        Err(error) if stream_missing(&error) => {
            // Nothing was ever published: the relay or a worker creates it at start.
            return Ok(StreamStatus {
                name: events_stream.to_owned(),
                messages: 0,
                last_sequence: 0,
                consumers: Vec::new(),
                dead_letters: 0,
            });
        }
        Err(error) => return Err(error.into()),
    };
    let info = stream.get_info().await?;
    // A sink's consumer (`latch-<sink>`), or its partitions' (`latch-<sink>-p<i>`), summed.
    let names: Vec<String> = stream.consumer_names().try_collect().await?;
    let mut consumers = Vec::new();
    for sink in SINKS {
        let single = format!("latch-{sink}");
        let partition = format!("{single}-p");
        let mut status: Option<ConsumerStatus> = None;
        for name in &names {
            let of_sink = *name == single
                || name
                    .strip_prefix(partition.as_str())
                    .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
            if !of_sink {
                continue;
            }
            if let Ok(consumer) = stream.consumer_info(name).await {
                let total = status.get_or_insert(ConsumerStatus {
                    sink,
                    waiting: 0,
                    in_flight: 0,
                });
                total.waiting += consumer.num_pending;
                total.in_flight += consumer.num_ack_pending as u64;
            }
        }
        consumers.extend(status);
    }
    let dead_letters = match js.get_stream(DLQ_STREAM).await {
        Ok(dlq) => dlq.get_info().await?.state.messages,
        Err(error) if stream_missing(&error) => 0,
        Err(error) => return Err(error.into()),
    };
    Ok(StreamStatus {
        name: info.config.name,
        messages: info.state.messages,
        last_sequence: info.state.last_sequence,
        consumers,
        dead_letters,
    })
}
