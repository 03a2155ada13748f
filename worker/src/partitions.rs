//! Partitioned delivery: several workers share a sink's work, each holder's events in order.
//!
//! The event stream partitions events by ordering key as it stores them (NATS subject
//! partitioning, see `latch_core::nats`): all of one holder's events are in one of `P`
//! partitions. Each sink has one durable consumer per partition (`latch-<sink>-p<i>`),
//! each a priority group with a pinned client as in [`crate::deliver`]: whatever happens,
//! at most one worker delivers a partition at a time, and the one that takes it over
//! rewinds it to its ack floor first — so each holder's events reach the sink in order.
//!
//! **Who takes which partition.** Workers announce themselves in a NATS key-value bucket
//! (`<stream>_WORKERS`, one key per running worker and sink it delivers to, renewed every
//! second, expiring after `worker.lease`). Every worker reads the same list, sorts a
//! sink's workers, and pulls the sink's partition `i` if it is the `i mod W`-th: `P`
//! partitions spread over the `W` workers of the sink within one. A worker
//! pulls only the partitions it is given; a partition it is no longer given (a worker
//! joined) it stops pulling: its lanes finish what they hold and it releases the pin at
//! once, so the new owner takes over without waiting. A worker that dies (SIGKILL, lost
//! machine) stops renewing: its key expires after the lease, the others share its
//! partitions, and its pins expire after the sink's `takeover_after` (the shorter wait
//! runs at the same time). While the list is changing two workers may both pull a
//! partition for a moment; the pin lets only one of them deliver.
//!
//! **Moving from one consumer per sink.** A deployment whose workers used one consumer
//! per sink (`latch-<sink>`) moves by stopping those workers (SIGTERM) and starting
//! partitioned ones. The first of them cuts the stream at its last event: the partition
//! consumers start after the cut, and the old consumer is drained up to it — by the
//! partitioned workers, one at a time through its pin as before, each holder's events
//! in order, the events after the cut acknowledged there without a call. Once the old
//! consumer has acknowledged everything up to the cut it is deleted and the partitions
//! start: what it delivered is not delivered again (but for what a killed worker had in
//! flight, as at any takeover), nothing is skipped, and no holder's later events overtake
//! its earlier ones. A partitioned worker refuses to start (and says why) while the old
//! consumer still has an active worker, which would deliver past the cut.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use latch_core::shutdown::CancellationToken;

use crate::config::SinkConfig;
use crate::deliver::SinkWorker;

/// How often a worker renews its presence and reads the others'.
const RENEW: Duration = Duration::from_secs(1);

/// The name of partition `partition`'s consumer for `sink`.
pub fn consumer_name(sink: &str, partition: u32) -> String {
    format!("latch-{sink}-p{partition}")
}

/// The partitions `me` delivers when `members` are present: the `i mod W`-th member of
/// the sorted list takes partition `i`. Empty when `me` is not in the list.
pub fn assigned(members: &[String], me: &str, partitions: u32) -> Vec<u32> {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let Some(index) = sorted.iter().position(|m| *m == me) else {
        return Vec::new();
    };
    (0..partitions)
        .filter(|p| *p as usize % sorted.len() == index)
        .collect()
}

/// This worker's presence in the bucket of workers: one key per sink it delivers to
/// (`<sink>.<id>`), so that the partitions of a sink are shared among the workers that
/// deliver to that sink.
pub struct Membership {
    bucket: kv::Store,
    /// This worker's id: unique per process.
    pub id: String,
    sinks: Vec<&'static str>,
}

impl Membership {
    /// Creates the bucket if needed (entries expire after `lease`) and announces `id`.
    pub async fn join(
        js: &jetstream::Context,
        stream: &str,
        sinks: Vec<&'static str>,
        replicas: usize,
        lease: Duration,
    ) -> anyhow::Result<Membership> {
        let name = format!("{stream}_WORKERS");
        let config = kv::Config {
            bucket: name.clone(),
            description: "latch workers present (partitioned delivery)".into(),
            history: 1,
            max_age: lease,
            storage: jetstream::stream::StorageType::Memory,
            num_replicas: replicas,
            ..Default::default()
        };
        let bucket = match js.create_key_value(config.clone()).await {
            Ok(bucket) => bucket,
            // Exists with another lease: bring it to this one.
            Err(_) => js
                .update_key_value(config)
                .await
                .with_context(|| format!("cannot create or update the bucket {name}"))?,
        };
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        let id = format!("{host}-{}", uuid::Uuid::new_v4().simple());
        let membership = Membership { bucket, id, sinks };
        membership.renew().await?;
        Ok(membership)
    }

    pub async fn renew(&self) -> anyhow::Result<()> {
        for sink in &self.sinks {
            self.bucket
                .put(format!("{sink}.{}", self.id), bytes::Bytes::new())
                .await
                .context("cannot renew this worker's presence")?;
        }
        Ok(())
    }

    /// Per sink, the workers present (whose presence has not expired).
    pub async fn members(&self) -> anyhow::Result<Vec<Vec<String>>> {
        let mut keys = self
            .bucket
            .keys()
            .await
            .context("cannot list the workers")?;
        let mut members = vec![Vec::new(); self.sinks.len()];
        while let Some(key) = keys.next().await {
            let key = key.context("cannot list the workers")?;
            if let Some((sink, id)) = key.split_once('.')
                && let Some(index) = self.sinks.iter().position(|s| *s == sink)
            {
                members[index].push(id.to_owned());
            }
        }
        Ok(members)
    }

    /// Leaves at once (the others need not wait for the lease).
    pub async fn leave(&self) {
        for sink in &self.sinks {
            if let Err(error) = self.bucket.purge(format!("{sink}.{}", self.id)).await {
                tracing::warn!(%error, "cannot withdraw this worker's presence; it expires with its lease");
            }
        }
    }
}

/// A sink's consumers, one per partition, and the sink's shared parts.
pub struct PartitionedSink {
    /// The sink with its breaker, rate limit and counters, shared by its partitions.
    pub template: SinkWorker,
    pub consumers: Vec<PullConsumer>,
    /// The single consumer being retired and the cut it is drained to, if any.
    pub retiring: Option<(PullConsumer, u64)>,
}

/// A sink's partition consumers, and its single consumer being retired.
pub struct Consumers {
    pub partitions: Vec<PullConsumer>,
    pub retiring: Option<(PullConsumer, u64)>,
}

/// Creates (or updates) the sink's partition consumers, moving from its single consumer
/// if there is one (see the module's documentation).
pub async fn consumers(
    stream: &jetstream::stream::Stream,
    config: &SinkConfig,
    partitions: u32,
    settings: impl Fn(String, Vec<String>, consumer::DeliverPolicy) -> consumer::pull::Config,
) -> anyhow::Result<Consumers> {
    let sink = config.kind.name();
    let single = crate::consumer_name(config.kind);
    // Where partition 0's consumer started, if it exists (all of them start alike).
    let first = consumer_state(stream, &consumer_name(sink, 0))
        .await?
        .map(|info| info.config.deliver_policy);
    let (start, retiring) = match consumer_state(stream, &single).await? {
        None => (consumer::DeliverPolicy::All, None),
        Some(info) => {
            let pinned = info
                .priority_groups
                .iter()
                .any(|g| g.pinned_client_id.is_some());
            // Once the partition consumers exist, the pin is a partitioned worker draining.
            let moving = first.is_some();
            anyhow::ensure!(
                moving || !pinned,
                "consumer {single} (one consumer per sink) still has an active worker, which \
                 would deliver what the partitions deliver: stop the workers that are not \
                 partitioned (SIGTERM), then start the partitioned ones"
            );
            // The cut: where another partitioned worker put it, or the stream's end now.
            let cut = match first {
                Some(consumer::DeliverPolicy::ByStartSequence { start_sequence }) => {
                    start_sequence - 1
                }
                _ => {
                    let mut stream = stream.clone();
                    stream
                        .info()
                        .await
                        .context("cannot read the event stream")?
                        .state
                        .last_sequence
                }
            };
            let old: PullConsumer = stream
                .get_consumer(&single)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open consumer {single}: {e}"))?;
            tracing::info!(
                sink,
                consumer = single,
                cut,
                "moving the sink to partitioned consumers: draining the single one up to the cut first"
            );
            (
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: cut + 1,
                },
                Some((old, cut)),
            )
        }
    };
    let mut made = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        let name = consumer_name(sink, partition);
        // An existing partition consumer keeps where it started (that cannot change).
        let existing = match partition {
            0 => first,
            _ => consumer_state(stream, &name)
                .await?
                .map(|info| info.config.deliver_policy),
        };
        let policy = existing.unwrap_or(start);
        let consumer: PullConsumer = stream
            .create_consumer(settings(
                name.clone(),
                config.partition_subjects(partition),
                policy,
            ))
            .await
            .with_context(|| format!("cannot create or update consumer {name}"))?;
        made.push(consumer);
    }
    Ok(Consumers {
        partitions: made,
        retiring,
    })
}

/// How often a drain looks at the retiring consumer's progress.
const DRAIN_CHECK: Duration = Duration::from_secs(1);

/// Drains the single consumer being retired up to `cut` (this worker delivers it while it
/// holds its pin, like any consumer), then deletes it. Returns at shutdown too.
async fn retire(
    template: &SinkWorker,
    stream: &jetstream::stream::Stream,
    old: PullConsumer,
    cut: u64,
    shutdown: &CancellationToken,
) {
    let name = old.cached_info().name.clone();
    let sink = template.sink.name();
    let stop = shutdown.child_token();
    let drain = tokio::spawn(template.on_consumer(old).draining(cut).run(stop.clone()));
    let mut check = tokio::time::interval(DRAIN_CHECK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = check.tick() => {}
        }
        match consumer_state(stream, &name).await {
            // Another worker finished it.
            Ok(None) => break,
            Ok(Some(info)) => {
                let done = info.ack_floor.stream_sequence >= cut
                    || (info.num_pending == 0 && info.num_ack_pending == 0);
                if done {
                    match stream.delete_consumer(&name).await {
                        Ok(_) => tracing::info!(
                            sink,
                            consumer = name,
                            cut,
                            "drained up to the cut and deleted: the partitions deliver now"
                        ),
                        Err(error) => {
                            tracing::info!(sink, %error, "the single consumer is already gone")
                        }
                    }
                    break;
                }
            }
            Err(error) => tracing::warn!(sink, %error, "cannot read the retiring consumer"),
        }
    }
    stop.cancel();
    let _ = drain.await;
}

/// Whether the sink already delivers through partition consumers: a worker of one consumer
/// per sink must not start then (its consumer, made anew, would deliver the whole stream
/// again).
pub async fn in_use(stream: &jetstream::stream::Stream, sink: &str) -> anyhow::Result<bool> {
    Ok(consumer_state(stream, &consumer_name(sink, 0))
        .await?
        .is_some())
}

async fn consumer_state(
    stream: &jetstream::stream::Stream,
    name: &str,
) -> anyhow::Result<Option<consumer::Info>> {
    use async_nats::jetstream::context::ConsumerInfoErrorKind;
    match stream.consumer_info(name).await {
        Ok(info) => Ok(Some(info)),
        Err(error) => match error.kind() {
            ConsumerInfoErrorKind::NotFound => Ok(None),
            ConsumerInfoErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(anyhow::Error::new(error).context(format!("cannot read consumer {name}"))),
        },
    }
}

/// Delivers the partitions this worker is given, following the workers present, until
/// `shutdown`; then releases them and leaves.
pub async fn run(
    sinks: Vec<PartitionedSink>,
    membership: Membership,
    partitions: u32,
    shutdown: CancellationToken,
) {
    // (sink index, partition) → the running delivery and what stops it.
    let mut running: BTreeMap<(usize, u32), (CancellationToken, tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    // Deliveries given up (their lanes finishing), awaited before leaving.
    let mut released: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    // Per sink, the partitions this worker is given.
    let mut mine: Vec<Vec<u32>> = vec![Vec::new(); sinks.len()];
    let mut failing = false;
    // Partitions start once the single consumers being retired are drained: a holder's
    // events up to the cut must reach the sink before its later ones.
    for sink in &sinks {
        if let Some((old, cut)) = &sink.retiring {
            let stream = sink.template.events();
            retire(&sink.template, &stream, old.clone(), *cut, &shutdown).await;
        }
    }
    let mut tick = tokio::time::interval(RENEW);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let members = match membership.renew().await {
            Ok(()) => membership.members().await,
            Err(error) => Err(error),
        };
        let members = match members {
            Ok(members) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("reading the workers present again");
                }
                members
            }
            Err(error) => {
                // Keep delivering what this worker has: the pins decide while NATS is away.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "cannot read the workers present; keeping this worker's partitions");
                }
                continue;
            }
        };
        for (index, present) in members.iter().enumerate() {
            let wanted = assigned(present, &membership.id, partitions);
            if wanted != mine[index] {
                tracing::info!(
                    sink = sinks[index].template.sink.name(),
                    workers = present.len(),
                    partitions = ?wanted,
                    "this worker's share of the sink's partitions"
                );
                mine[index] = wanted;
            }
        }
        // Stop what is no longer ours: its lanes finish, and the pin goes at once.
        let gone: Vec<(usize, u32)> = running
            .iter()
            .filter(|((index, partition), (_, task))| {
                !mine[*index].contains(partition) || task.is_finished()
            })
            .map(|(key, _)| *key)
            .collect();
        for key in gone {
            if let Some((stop, task)) = running.remove(&key) {
                stop.cancel();
                released.push(task);
            }
        }
        released.retain(|task| !task.is_finished());
        for (index, sink) in sinks.iter().enumerate() {
            for partition in &mine[index] {
                running.entry((index, *partition)).or_insert_with(|| {
                    let stop = shutdown.child_token();
                    let worker = sink
                        .template
                        .on_consumer(sink.consumers[*partition as usize].clone());
                    (stop.clone(), tokio::spawn(worker.run(stop)))
                });
            }
        }
    }
    for (stop, task) in std::mem::take(&mut running).into_values() {
        stop.cancel();
        released.push(task);
    }
    for task in released {
        let _ = task.await;
    }
    membership.leave().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn partitions_spread_over_the_workers_within_one() {
        let present = members(&["c", "a", "b"]);
        let shares: Vec<Vec<u32>> = ["a", "b", "c"]
            .iter()
            .map(|me| assigned(&present, me, 8))
            .collect();
        assert_eq!(shares, [vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        let mut all: Vec<u32> = shares.concat();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..8).collect::<Vec<_>>(),
            "each partition exactly once"
        );
        assert_eq!(assigned(&members(&["a"]), "a", 8).len(), 8);
        assert!(assigned(&present, "gone", 8).is_empty());
        // More workers than partitions: some stand by.
        let many = members(&["a", "b", "c", "d"]);
        assert_eq!(assigned(&many, "d", 2), Vec::<u32>::new());
    }
}
