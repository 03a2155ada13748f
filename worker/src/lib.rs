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
//! fail and recover independently. Several workers can run: the consumer pins one of them
//! (a NATS priority group with a pinned client) and the others stand by, taking over
//! when the active one stops pulling (see [`deliver`]). Partitioned workers
//! (`LATCH_WORKER_PARTITIONED`) share a consumer per sink and partition instead, so that
//! several deliver at once, each holder's events still in order (see [`partitions`]).

pub mod breaker;
pub mod config;
pub mod deliver;
pub mod dlq;
pub mod endpoints;
pub mod metrics;
pub mod partitions;
pub mod sink;

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use latch_core::config::Source;
use latch_core::nats::NatsConfig;
use latch_core::shutdown::CancellationToken;

use crate::config::{Layout, RetryConfig, SinkConfig, SinkKind};
use crate::deliver::SinkWorker;
use crate::metrics::WorkerMetrics;
use crate::sink::Sink;
use latch_core::admin::Readiness;

/// Events a sink's worker may hold unacknowledged (calling, retrying, or waiting for their
/// lane or the breaker).
const MAX_IN_HAND: i64 = 1000;

/// The durable consumer name of a sink.
pub fn consumer_name(sink: SinkKind) -> String {
    format!("latch-{}", sink.name())
}

pub struct Worker {
    /// One consumer per sink (the single layout); empty when partitioned.
    pub sinks: Vec<SinkWorker>,
    /// Partitioned: each sink's partition consumers, this worker's presence, the count.
    pub partitioned: Option<(
        Vec<partitions::PartitionedSink>,
        partitions::Membership,
        u32,
    )>,
    /// Delivery to the webhook endpoints (when the worker has a database).
    pub endpoints: Option<endpoints::Endpoints>,
    pub metrics: WorkerMetrics,
    pub readiness: Readiness,
    js: jetstream::Context,
}

impl Worker {
    /// Connects, makes sure the streams and the sinks' consumers exist, and prepares one
    /// delivery loop per configured sink.
    pub async fn build(
        nats: &NatsConfig,
        sinks: Vec<SinkConfig>,
        retry: RetryConfig,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Worker> {
        let single = Layout { partitioned: None };
        Worker::build_with(nats, sinks, retry, single, registry).await
    }

    /// As [`Worker::build`], in the given layout.
    pub async fn build_with(
        nats: &NatsConfig,
        sinks: Vec<SinkConfig>,
        retry: RetryConfig,
        layout: Layout,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Worker> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = latch_core::nats::connect(nats, "latch-worker").await?;
        let js = jetstream::new(client);
        // A cluster still electing its leaders is waited for, not taken for a refusal.
        let stream = latch_core::nats::until_available("the worker's streams", || async {
            let events = latch_core::nats::ensure_events_stream(&js, nats).await?;
            js.create_or_update_stream(latch_core::nats::dlq_stream_config(nats))
                .await
                .context("cannot create or update the dead-letter stream")?;
            js.get_stream(&events.config.name)
                .await
                .context("cannot open the event stream")
        })
        .await?;
        let metrics = WorkerMetrics::new(registry);
        let mut workers = Vec::with_capacity(sinks.len());
        let mut partitioned = Vec::new();
        for config in sinks {
            let settings = |name: String, filter_subjects, deliver_policy| consumer::pull::Config {
                durable_name: Some(name),
                description: Some(format!("latch deliveries to {}", config.kind.name())),
                filter_subjects,
                deliver_policy,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_deliver: -1,
                max_ack_pending: MAX_IN_HAND,
                // One worker delivers; the others stand by (see `deliver`).
                priority_policy: consumer::PriorityPolicy::PinnedClient,
                priority_groups: vec![deliver::GROUP.to_owned()],
                priority_timeout: config.takeover_after,
                num_replicas: nats.replicas,
                ..Default::default()
            };
            let mut retiring = None;
            let consumers = match layout.partitioned {
                Some(_) => {
                    let made = latch_core::nats::until_available("the sink's consumers", || {
                        partitions::consumers(&stream, &config, nats.partitions, &settings)
                    })
                    .await?;
                    retiring = made.retiring;
                    made.partitions
                }
                None => {
                    let sink = config.kind.name();
                    anyhow::ensure!(
                        !partitions::in_use(&stream, sink).await?,
                        "sink {sink} is delivered through partition consumers \
                         ({}...): start this worker with LATCH_WORKER_PARTITIONED=true",
                        partitions::consumer_name(sink, 0)
                    );
                    let name = consumer_name(config.kind);
                    let single = settings(
                        name.clone(),
                        config.subjects(),
                        consumer::DeliverPolicy::All,
                    );
                    vec![
                        latch_core::nats::until_available("the sink's consumer", || async {
                            stream
                                .create_consumer(single.clone())
                                .await
                                .with_context(|| format!("cannot create or update consumer {name}"))
                        })
                        .await?,
                    ]
                }
            };
            let sink = Sink::new(config)?;
            let worker = SinkWorker::new(
                sink,
                retry,
                js.clone(),
                stream.clone(),
                consumers[0].clone(),
                metrics.clone(),
            );
            if layout.partitioned.is_some() {
                partitioned.push(partitions::PartitionedSink {
                    template: worker,
                    consumers,
                    retiring,
                });
            } else {
                workers.push(worker);
            }
        }
        let partitioned = match layout.partitioned {
            Some(lease) => {
                let names: Vec<&str> = partitioned
                    .iter()
                    .map(|s: &partitions::PartitionedSink| s.template.sink.name())
                    .collect();
                let membership =
                    latch_core::nats::until_available("the workers' bucket", || async {
                        partitions::Membership::join(
                            &js,
                            &nats.events_stream,
                            names.clone(),
                            nats.replicas,
                            lease,
                        )
                        .await
                    })
                    .await?;
                tracing::info!(
                    worker = membership.id,
                    partitions = nats.partitions,
                    "partitioned delivery: sharing the partitions with the workers present"
                );
                Some((partitioned, membership, nats.partitions))
            }
            None => None,
        };
        Ok(Worker {
            sinks: workers,
            partitioned,
            endpoints: None,
            metrics,
            readiness: Readiness::default(),
            js,
        })
    }

    /// Delivers to the webhook endpoints too, reading them from PostgreSQL.
    pub async fn with_endpoints(
        mut self,
        nats: &NatsConfig,
        database: &latch_core::config::DatabaseConfig,
        config: endpoints::EndpointsConfig,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Worker> {
        let stream = self
            .js
            .get_stream(&nats.events_stream)
            .await
            .context("cannot open the event stream")?;
        self.endpoints = Some(
            endpoints::Endpoints::build(
                database,
                config,
                self.js.clone(),
                stream,
                self.metrics.clone(),
                registry,
            )
            .await?,
        );
        Ok(self)
    }

    /// Delivers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let endpoints = self
            .endpoints
            .map(|endpoints| tokio::spawn(endpoints.run(shutdown.clone())));
        let mut breakers: Vec<_> = self
            .sinks
            .iter()
            .map(|s| (s.sink.name(), s.breaker.clone()))
            .collect();
        if let Some((sinks, _, _)) = &self.partitioned {
            breakers.extend(
                sinks
                    .iter()
                    .map(|s| (s.template.sink.name(), s.template.breaker.clone())),
            );
        }
        let watcher = tokio::spawn(watch(
            self.js.clone(),
            breakers,
            self.metrics.clone(),
            self.readiness.clone(),
            shutdown.clone(),
        ));
        let tasks: Vec<_> = self
            .sinks
            .into_iter()
            .map(|worker| {
                tracing::info!(sink = worker.sink.name(), url = %worker.sink.config.url, "delivering");
                tokio::spawn(worker.run(shutdown.clone()))
            })
            .collect();
        let partitioned = self.partitioned.map(|(sinks, membership, count)| {
            tokio::spawn(partitions::run(sinks, membership, count, shutdown.clone()))
        });
        for task in tasks {
            task.await.context("a sink worker panicked")?;
        }
        if let Some(partitioned) = partitioned {
            partitioned
                .await
                .context("the partitioned delivery panicked")?;
        }
        if let Some(endpoints) = endpoints {
            endpoints
                .await
                .context("the endpoints' delivery panicked")??;
        }
        let _ = watcher.await;
        Ok(())
    }
}

/// Every second: breaker states into metrics, the DLQ depth, and readiness (NATS answers).
async fn watch(
    js: jetstream::Context,
    breakers: Vec<(&'static str, breaker::Breaker)>,
    metrics: WorkerMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let mut transitions: Vec<u64> = vec![0; breakers.len()];
    loop {
        for (i, (sink, breaker)) in breakers.iter().enumerate() {
            let state = match breaker.state() {
                breaker::BreakerState::Closed => 0,
                breaker::BreakerState::HalfOpen => 1,
                breaker::BreakerState::Open => 2,
            };
            metrics.breaker_state.with_label_values(&[sink]).set(state);
            let now = breaker.transitions();
            metrics
                .breaker_transitions
                .with_label_values(&[sink])
                .inc_by(now.saturating_sub(transitions[i]));
            transitions[i] = now;
        }
        match js.get_stream(latch_core::nats::DLQ_STREAM).await {
            Ok(stream) => match stream.get_info().await {
                Ok(info) => {
                    metrics.dlq_depth.set(info.state.messages as i64);
                    readiness.set(true);
                }
                Err(_) => readiness.set(false),
            },
            Err(_) => readiness.set(false),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// Builds the worker from settings, for `latch worker`.
pub async fn from_source(
    source: &Source,
    registry: &prometheus::Registry,
) -> anyhow::Result<Worker> {
    let nats = NatsConfig::from_source(source)?;
    let mut sinks = Vec::new();
    for kind in SinkKind::ALL {
        if let Some(config) = SinkConfig::from_source(source, kind)? {
            sinks.push(config);
        }
    }
    let database = match source.optional::<String>(&latch_core::config::DATABASE_URL)? {
        Some(_) => Some(latch_core::config::DatabaseConfig::from_source(source)?),
        None => None,
    };
    anyhow::ensure!(
        !sinks.is_empty() || database.is_some(),
        "nothing to deliver to: set LATCH_SINKS_LEGACY_URL and/or LATCH_SINKS_WEBHOOKS_URL, \
         and/or LATCH_DATABASE_URL for the webhook endpoints"
    );
    let retry = RetryConfig::from_source(source)?;
    let layout = Layout::from_source(source)?;
    let worker = Worker::build_with(&nats, sinks, retry, layout, registry).await?;
    match database {
        Some(database) => {
            let config = endpoints::EndpointsConfig {
                sharding: layout.partitioned.map(|lease| endpoints::shards::Sharding {
                    shards: nats.partitions,
                    lease,
                    replicas: nats.replicas,
                }),
                ..endpoints::EndpointsConfig::from_source(source, retry)?
            };
            worker
                .with_endpoints(&nats, &database, config, registry)
                .await
        }
        None => Ok(worker),
    }
}
