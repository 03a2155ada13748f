//! `latch outbox status` and `latch events republish`.

use clap::Subcommand;
use latch_core::config::{DatabaseConfig, Source};
use latch_core::event::EventKind;
use latch_core::nats::NatsConfig;
use latch_core::pipeline::{self, ConsumerStatus};
use time::OffsetDateTime;

use crate::exit::{Failure, LAGGING};
use crate::when::parse_when;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Pending outbox rows, the stream, consumers' backlogs and dead letters; exits 3 when
    /// a threshold is exceeded (for cron and monitoring).
    ///
    /// Example: latch outbox status --max-age 60s --max-pending 10000
    Status {
        /// Exit 3 when the oldest pending outbox row is older than this.
        #[arg(long, default_value = "60s")]
        max_age: String,
        /// Exit 3 when a sink's consumer has more than this many events to go.
        #[arg(long, default_value_t = 10_000)]
        max_pending: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Rebuild events from the actions registry into the outbox, with their original event
    /// ids (sinks apply each once).
    ///
    /// Example: latch events republish --since 2026-11-01T00:00:00Z --kind check_in --sink legacy
    Republish {
        /// Recorded at or after (RFC 3339, or a duration ago such as 24h).
        #[arg(long, value_name = "TIME")]
        since: String,
        /// Recorded before.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only to this sink (via latch.replay.<sink>); every routed sink otherwise.
        #[arg(long)]
        sink: Option<String>,
    },
}

pub async fn status(
    source: &Source,
    max_age: &str,
    max_pending: u64,
    json: bool,
) -> anyhow::Result<()> {
    let max_age = latch_core::config::parse_duration(max_age).map_err(anyhow::Error::msg)?;
    let db = latch_core::db::connect(&DatabaseConfig::from_source(source)?.url).await?;
    let row = db
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
             FROM outbox",
            &[],
        )
        .await?;
    let (pending, oldest): (i64, f64) = (row.get(0), row.get(1));
    let nats = NatsConfig::from_source(source)?;
    // PostgreSQL's side is reported whatever NATS does: a NATS outage is when it matters.
    let stream = stream_status(source, &nats).await;

    let mut problems = Vec::new();
    if oldest > max_age.as_secs_f64() {
        problems.push(format!(
            "oldest pending outbox row is {oldest:.0}s old (> {max_age:?})"
        ));
    }
    if let Ok(StreamStatus { stream, .. }) = &stream {
        for consumer in &stream.consumers {
            if consumer.to_go() > max_pending {
                problems.push(format!(
                    "{} has {} events to go (> {max_pending})",
                    consumer.sink,
                    consumer.to_go()
                ));
            }
        }
    }
    let unreachable = stream.as_ref().err().map(|error| {
        format!(
            "cannot reach NATS at {} (LATCH_NATS_URL): {error:#}",
            nats.url
        )
    });
    if json {
        let mut report = serde_json::json!({
            "outbox": {"pending_rows": pending, "oldest_pending_age_seconds": oldest},
            "problems": problems,
        });
        match &stream {
            Ok(StreamStatus { stream, rates }) => {
                report["stream"] = serde_json::json!({
                    "name": stream.name, "messages": stream.messages,
                    "last_sequence": stream.last_sequence,
                });
                report["consumers"] = stream
                    .consumers
                    .iter()
                    .zip(rates)
                    .map(|(c, &rate)| {
                        serde_json::json!({
                            "sink": c.sink, "pending": c.waiting, "in_flight": c.in_flight,
                            "rate_per_second": rate,
                            "drain_seconds_at_least": drain_seconds(c, rate),
                        })
                    })
                    .collect();
                report["dead_letters"] = stream.dead_letters.into();
            }
            Err(_) => report["nats_error"] = unreachable.clone().into(),
        }
        println!("{report}");
    } else {
        println!("outbox     {pending} pending row(s), oldest {oldest:.1}s");
        match &stream {
            Ok(StreamStatus { stream, rates }) => {
                println!(
                    "stream     {}: {} message(s), last sequence {}",
                    stream.name, stream.messages, stream.last_sequence
                );
                for (c, &rate) in stream.consumers.iter().zip(rates) {
                    println!(
                        "{:<10} {} to deliver, {} in flight; at {}/s (LATCH_SINKS_{}_RATE) at least {:.0}s to drain",
                        c.sink,
                        c.waiting,
                        c.in_flight,
                        rate,
                        c.sink.to_uppercase(),
                        drain_seconds(c, rate)
                    );
                }
                println!("dlq        {} dead letter(s)", stream.dead_letters);
            }
            Err(_) => {
                if let Some(unreachable) = &unreachable {
                    println!("nats       UNREACHABLE: {unreachable}");
                }
            }
        }
        for problem in &problems {
            println!("LAGGING: {problem}");
        }
    }
    if !problems.is_empty() {
        return Err(Failure::new(LAGGING, problems.join("; ")).into());
    }
    match unreachable {
        Some(unreachable) => Err(anyhow::anyhow!(unreachable)),
        None => Ok(()),
    }
}

/// The NATS side, with each sink's call rate as these settings give it.
struct StreamStatus {
    stream: pipeline::StreamStatus,
    /// Per consumer, the sink's call rate limit (the worker's own settings may differ).
    rates: Vec<u64>,
}

/// The shortest time a backlog can take, calls being limited to `rate` per second (a
/// failing sink, retries and breaker pauses make it longer).
fn drain_seconds(consumer: &ConsumerStatus, rate: u64) -> f64 {
    consumer.to_go() as f64 / rate.max(1) as f64
}

async fn stream_status(source: &Source, nats: &NatsConfig) -> anyhow::Result<StreamStatus> {
    let client = latch_core::nats::connect_once(nats, "latch-cli").await?;
    let js = async_nats::jetstream::new(client);
    let stream = pipeline::stream_status(&js, &nats.events_stream).await?;
    let rates = stream
        .consumers
        .iter()
        .map(|c| {
            source
                .for_sink(c.sink)
                .count(&latch_worker::config::RATE)
                .map(|rate| rate as u64)
        })
        .collect::<Result<_, _>>()?;
    Ok(StreamStatus { stream, rates })
}

pub async fn republish(
    source: &Source,
    since: &str,
    until: Option<&str>,
    kind: Option<&str>,
    sink: Option<&str>,
) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let since = parse_when(since, now)?;
    let until = until.map(|u| parse_when(u, now)).transpose()?;
    if let Some(kind) = kind {
        kind.parse::<EventKind>().map_err(anyhow::Error::msg)?;
    }
    if let Some(sink) = sink {
        anyhow::ensure!(
            ["legacy", "webhooks"].contains(&sink),
            "--sink must be legacy or webhooks"
        );
    }
    let db = latch_core::db::connect(&DatabaseConfig::from_source(source)?.url).await?;
    // One database function (migration V5): the rows keep registry order (and so
    // per-holder order), get new outbox ids (new message ids: the stream will not mistake
    // them for the originals) and keep their event ids (sinks apply each once).
    let row = db
        .query_one(
            "SELECT latch_republish($1, $2, $3, $4)",
            &[&since, &until, &kind, &sink],
        )
        .await?;
    let queued: i64 = row.get(0);
    println!("queued {queued} event(s) for republishing; the relay publishes them");
    Ok(())
}
