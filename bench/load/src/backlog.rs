//! `latch-load backlog`: a fresh event stream holding a backlog of events, for measuring
//! how fast workers deliver it. The stream (and with it every consumer) is deleted and
//! made again with latch's own configuration (`latch_core::nats`, its partitions
//! included); then `events` check-ins and check-outs of `holders` holders are published
//! the way the relay publishes them (subject with the ordering key, `Nats-Msg-Id`,
//! `Latch-Event-Id`), in order per holder. Prints one JSON line: events and seconds.

use std::future::IntoFuture;
use std::time::Instant;

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream;
use clap::Args;
use latch_core::event::EventKind;
use latch_core::nats::NatsConfig;

#[derive(Debug, Args)]
pub struct BacklogArgs {
    /// The NATS server(s), comma-separated.
    #[arg(long, env = "LATCH_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,

    /// Events to publish.
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,

    /// Holders the events are spread over, round robin.
    #[arg(long, default_value_t = 1_000)]
    pub holders: usize,

    /// Partitions of the stream (LATCH_NATS_PARTITIONS).
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,

    /// Copies of the stream (LATCH_NATS_REPLICAS).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
}

/// Publishes outstanding at most.
const IN_FLIGHT: usize = 512;

pub async fn run(args: BacklogArgs) -> anyhow::Result<()> {
    let config = NatsConfig {
        partitions: args.partitions,
        replicas: args.replicas,
        ..NatsConfig::for_url(args.url.clone())
    };
    let js = jetstream::new(latch_core::nats::connect_once(&config, "latch-load").await?);
    match js.delete_stream(&config.events_stream).await {
        Ok(_) => {}
        Err(error) if error.to_string().contains("not found") => {}
        Err(error) => return Err(error).context("cannot delete the event stream"),
    }
    latch_core::nats::ensure_events_stream(&js, &config).await?;
    let holders: Vec<String> = (0..args.holders.max(1))
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let started = Instant::now();
    let mut acks = futures::stream::FuturesOrdered::new();
    for n in 0..args.events {
        let holder = &holders[n % holders.len()];
        let kind = if (n / holders.len()).is_multiple_of(2) {
            EventKind::CheckIn
        } else {
            EventKind::CheckOut
        };
        let id = uuid::Uuid::now_v7();
        let envelope = serde_json::json!({
            "id": id, "kind": kind, "schema_version": 1,
            "occurred_at": "2026-12-05T08:00:00Z", "recorded_at": "2026-12-05T08:00:01Z",
            "site": "hq", "door_id": uuid::Uuid::nil(), "holder_id": holder,
            "reader_id": uuid::Uuid::nil(), "reader_seq": n, "decided_offline": false,
            "decision": null, "reason": null, "grant_id": null, "actor_id": null,
            "sequence": n / holders.len() + 1
        });
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.to_string());
        headers.insert("Latch-Event-Id", id.to_string());
        let subject = latch_core::nats::publish_subject(&kind.subject(), holder);
        acks.push_back(
            js.publish_with_headers(subject, headers, envelope.to_string().into())
                .await
                .context("cannot publish")?
                .into_future(),
        );
        if acks.len() >= IN_FLIGHT {
            use futures::StreamExt;
            acks.next().await.transpose().context("a publish failed")?;
        }
    }
    {
        use futures::StreamExt;
        while let Some(ack) = acks.next().await {
            ack.context("a publish failed")?;
        }
    }
    println!(
        "{}",
        serde_json::json!({"events": args.events, "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}
