//! `latch outbox status` and `latch events republish`.

use std::time::Duration;

use clap::Subcommand;
use latch_core::config::{DatabaseConfig, Source};
use latch_core::event::EventKind;
use latch_core::nats::NatsConfig;
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
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&nats.url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach NATS at {} (LATCH_NATS_URL): {e}", nats.url))?;
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(&nats.events_stream).await?;
    let info = stream.get_info().await?;
    let mut consumers = Vec::new();
    for sink in ["legacy", "webhooks"] {
        if let Ok(consumer) = stream.consumer_info(format!("latch-{sink}")).await {
            consumers.push((sink, consumer.num_pending, consumer.num_ack_pending as u64));
        }
    }
    let dead = match js.get_stream(latch_core::nats::DLQ_STREAM).await {
        Ok(dlq) => dlq.get_info().await?.state.messages,
        Err(_) => 0,
    };

    let mut problems = Vec::new();
    if oldest > max_age.as_secs_f64() {
        problems.push(format!(
            "oldest pending outbox row is {oldest:.0}s old (> {max_age:?})"
        ));
    }
    for (sink, waiting, in_flight) in &consumers {
        if waiting + in_flight > max_pending {
            problems.push(format!(
                "{sink} has {} events to go (> {max_pending})",
                waiting + in_flight
            ));
        }
    }
    if json {
        let consumers: Vec<_> = consumers
            .iter()
            .map(|(sink, waiting, in_flight)| serde_json::json!({"sink": sink, "pending": waiting, "in_flight": in_flight}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "outbox": {"pending_rows": pending, "oldest_pending_age_seconds": oldest},
                "stream": {"name": info.config.name, "messages": info.state.messages, "last_sequence": info.state.last_sequence},
                "consumers": consumers,
                "dead_letters": dead,
                "problems": problems,
            })
        );
    } else {
        println!("outbox     {pending} pending row(s), oldest {oldest:.1}s");
        println!(
            "stream     {}: {} message(s), last sequence {}",
            info.config.name, info.state.messages, info.state.last_sequence
        );
        for (sink, waiting, in_flight) in &consumers {
            println!(
                "{:<10} {waiting} to deliver, {in_flight} in flight",
                format!("{sink}")
            );
        }
        println!("dlq        {dead} dead letter(s)");
        for problem in &problems {
            println!("LAGGING: {problem}");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(LAGGING, problems.join("; ")).into())
    }
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
