//! latch-worker: delivers events from `LATCH_EVENTS` to the sinks.
//!
//! # Layout
//!
//! - [`config`]: which sinks exist, what each receives, retry and breaker settings.
//! - [`sink`]: one call to a sink (legacy punch form or signed webhook) and what its
//!   answer means.
//! - [`breaker`]: the per-sink circuit breaker, with bounded half-open probes.
//! - [`deliver`]: the per-sink loop — pull, lanes by holder, retries, settle.
//! - [`dlq`]: dead letters in `LATCH_DLQ`.
//!
//! Each sink has its own durable pull consumer (`latch-<sink>`) reading the event kinds
//! routed to it plus its replay subject (`latch.replay.<sink>`), so sinks progress,
//! fail and recover independently.

pub mod breaker;
pub mod config;
pub mod deliver;
pub mod dlq;
pub mod sink;

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use latch_core::config::Source;
use latch_core::nats::NatsConfig;
use latch_core::shutdown::CancellationToken;

use crate::config::{RetryConfig, SinkConfig, SinkKind};
use crate::deliver::SinkWorker;
use crate::sink::Sink;

/// The durable consumer name of a sink.
pub fn consumer_name(sink: SinkKind) -> String {
    format!("latch-{}", sink.name())
}

pub struct Worker {
    pub sinks: Vec<SinkWorker>,
}

impl Worker {
    /// Connects, makes sure the streams and the sinks' consumers exist, and prepares one
    /// delivery loop per configured sink.
    pub async fn build(
        nats: &NatsConfig,
        sinks: Vec<SinkConfig>,
        retry: RetryConfig,
    ) -> anyhow::Result<Worker> {
        anyhow::ensure!(
            !sinks.is_empty(),
            "no sink is configured: set LATCH_SINKS_LEGACY_URL and/or LATCH_SINKS_WEBHOOKS_URL"
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = latch_core::nats::connect(nats, "latch-worker").await?;
        let js = jetstream::new(client);
        let events = latch_core::nats::ensure_events_stream(&js, nats).await?;
        js.create_or_update_stream(latch_core::nats::dlq_stream_config(nats))
            .await
            .context("cannot create or update the dead-letter stream")?;
        let stream = js
            .get_stream(&events.config.name)
            .await
            .context("cannot open the event stream")?;
        let mut workers = Vec::with_capacity(sinks.len());
        for config in sinks {
            let name = consumer_name(config.kind);
            let consumer: consumer::PullConsumer = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(format!("latch deliveries to {}", config.kind.name())),
                    filter_subjects: config.subjects(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: 1000,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("cannot create or update consumer {name}"))?;
            let sink = Sink::new(config)?;
            workers.push(SinkWorker::new(sink, retry, js.clone(), consumer));
        }
        Ok(Worker { sinks: workers })
    }

    /// Delivers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tasks: Vec<_> = self
            .sinks
            .into_iter()
            .map(|worker| {
                tracing::info!(sink = worker.sink.name(), url = %worker.sink.config.url, "delivering");
                tokio::spawn(worker.run(shutdown.clone()))
            })
            .collect();
        for task in tasks {
            task.await.context("a sink worker panicked")?;
        }
        Ok(())
    }
}

/// Builds the worker from settings, for `latch worker`.
pub async fn from_source(source: &Source) -> anyhow::Result<Worker> {
    let nats = NatsConfig::from_source(source)?;
    let mut sinks = Vec::new();
    for kind in SinkKind::ALL {
        if let Some(config) = SinkConfig::from_source(source, kind)? {
            sinks.push(config);
        }
    }
    Worker::build(&nats, sinks, RetryConfig::from_source(source)?).await
}
