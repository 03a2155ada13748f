//! latch on a 3-node JetStream cluster (three nats-server processes routed over loopback,
//! streams and consumers with 3 replicas): reader requests through the API, the relay
//! and a worker while one node is killed (SIGKILL), then the stream's leader. The relay
//! and the worker must carry on by themselves; every committed action is in the stream
//! once and takes effect once at each sink, each holder's in order; a restarted node
//! catches up with the others.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use latch_core::nats::EVENTS_STREAM;
use latch_sim::{SimConfig, Simulator};
use latch_testkit::{NatsCluster, wait_until};
use latch_worker::config::RetryConfig;

use crate::harness::{Nats, Readers, Stack, first_admin};

const DEADLINE: Duration = Duration::from_secs(90);

/// The stream as the cluster reports it: its leader, and whether every replica has
/// caught up with it.
async fn stream_state(js: &jetstream::Context) -> Option<(String, bool, u64)> {
    let mut stream = js.get_stream(EVENTS_STREAM).await.ok()?;
    let info = stream.info().await.ok()?;
    let cluster = info.cluster.clone()?;
    let current = cluster.replicas.len() == 2
        && cluster
            .replicas
            .iter()
            .all(|r| r.current && r.lag.unwrap_or(0) == 0 && !r.offline);
    Some((cluster.leader?, current, info.state.messages))
}

#[tokio::test]
async fn the_relay_and_worker_carry_on_when_a_node_and_then_the_stream_leader_are_killed() {
    let stack = Stack::new().await;
    let mut cluster = NatsCluster::start(3);
    let client = latch_core::nats::connect(&cluster.config(), "cluster-test")
        .await
        .unwrap();
    let js = jetstream::new(client);
    wait_until(
        "the cluster to elect a JetStream leader",
        DEADLINE,
        || async { js.query_account().await.ok() },
    )
    .await;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let api = stack.pipeline(&cluster, &sim).await;
    let (leader, _, _) = wait_until("the stream to have a leader", DEADLINE, || {
        stream_state(&js)
    })
    .await;
    let info = js
        .get_stream(EVENTS_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);

    let admin = first_admin(&stack.db, "cluster test").await;
    let (door, key) = api.door_with_reader(&admin, "hq", "Main").await;
    let cards = api.granted_holders(&admin, &door, 10).await;
    // Every request must be answered whatever NATS is doing: the API commits to
    // PostgreSQL only.
    let readers = Readers::start(&api, &key, &cards, Duration::from_millis(50));
    let effects = || async {
        let stats = sim.stats().await;
        stats.legacy.effects + stats.webhooks.effects
    };
    let progressed = |from: u64| async move {
        wait_until("deliveries to go on", DEADLINE, || async {
            let now = effects().await;
            (now >= from + 200).then_some(now)
        })
        .await
    };
    let mut seen = progressed(0).await;

    // A node that does not lead the stream, then the one that does: each killed, the
    // deliveries going on without it, then started again.
    let follower = ["n0", "n1", "n2"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    let mut outages = Vec::new();
    for victim in [follower.to_owned(), String::new()] {
        let victim = if victim.is_empty() {
            wait_until("the stream to have a leader", DEADLINE, || {
                stream_state(&js)
            })
            .await
            .0
        } else {
            victim
        };
        cluster.node(&victim).kill();
        let killed = Instant::now();
        seen = progressed(seen).await;
        outages.push((victim.clone(), killed.elapsed()));
        cluster.node(&victim).restart();
        seen = progressed(seen).await;
    }
    let readers = readers.stop().await;

    // Everything committed reaches the stream once and each sink once, in holder order.
    let committed = stack.count("SELECT count(*) FROM actions").await as u64;
    let punches = stack
        .count("SELECT count(*) FROM actions WHERE kind IN ('check_in', 'check_out')")
        .await as u64;
    wait_until(
        "every event to take effect at both sinks",
        DEADLINE,
        || async {
            let stats = sim.stats().await;
            (stats.webhooks.effects == committed && stats.legacy.effects == punches).then_some(())
        },
    )
    .await;
    let started = Instant::now();
    let (_, _, stored) = wait_until("every replica to catch up", DEADLINE, || async {
        stream_state(&js).await.filter(|(_, current, _)| *current)
    })
    .await;
    let caught_up = started.elapsed();
    assert_eq!(
        stored, committed,
        "each committed action once in the stream"
    );
    assert_eq!(stack.count("SELECT count(*) FROM outbox").await, 0);
    let stats = sim.stats().await;
    readers.assert_holder_order(&stats);
    let failures = &readers.refused;
    eprintln!(
        "{committed} actions; killed {outages:?} (each: the deliveries went on by 200 more \
         effects in that time); replicas current {caught_up:?} after the traffic stopped; \
         duplicate calls legacy {}, webhooks {}; reader requests refused: {}",
        stats.legacy.duplicates,
        stats.webhooks.duplicates,
        failures.len()
    );
    assert!(failures.is_empty(), "reader requests refused: {failures:?}");
}

#[tokio::test]
async fn a_worker_started_while_the_cluster_has_no_quorum_waits_for_it() {
    let mut cluster = NatsCluster::start(3);
    cluster.node("n1").kill();
    cluster.node("n2").kill();
    let config = latch_core::nats::NatsConfig {
        request_timeout: Duration::from_secs(1),
        ..cluster.config()
    };
    let mut building = tokio::spawn(async move {
        latch_worker::Worker::build(
            &config,
            Vec::new(),
            RetryConfig::default(),
            &prometheus::Registry::new(),
        )
        .await
        .map(|_| ())
    });
    // One server of three: JetStream cannot answer. The worker keeps trying, it does not
    // give up (nor pretend to be ready).
    assert!(
        tokio::time::timeout(Duration::from_secs(3), &mut building)
            .await
            .is_err(),
        "the worker finished starting without a JetStream quorum"
    );
    cluster.node("n1").restart();
    cluster.node("n2").restart();
    tokio::time::timeout(DEADLINE, building)
        .await
        .expect("the worker to start once the cluster has a quorum")
        .unwrap()
        .expect("started");
}
