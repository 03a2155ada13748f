//! Workers that die: real `latch worker` processes killed outright (SIGKILL) while events
//! flow, a real nats-server, the simulated sinks answering slowly enough that events are
//! in flight at every kill. Each holder's events must reach both sinks in stream order,
//! each take effect once, and what a dead worker had in flight must be delivered soon
//! after another worker takes over — not when `ack_wait` (30 s here) runs out. The same
//! with partitioned workers sharing the stream's partitions, and the move of a running
//! deployment from one consumer per sink to partitions.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures::StreamExt;
use latch_core::event::EventKind;
use latch_core::nats::NatsConfig;
use latch_sim::{Faults, Latency, SimConfig, Simulator, SinkFaults};
use latch_testkit::process::{Proc, Server, get_text, start_listening};
use latch_testkit::{NatsServer, wait_until};
use serde_json::json;
use uuid::Uuid;

/// The consumers' ack wait: a redelivery that waited for it would take this long.
const ACK_WAIT: &str = "30s";
/// How long a standby waits before it takes over from a worker that stopped pulling.
const TAKEOVER_AFTER: Duration = Duration::from_secs(2);
/// The bound this test holds the drain after a takeover to: well under `ACK_WAIT`.
const DRAIN_BOUND: Duration = Duration::from_secs(12);
const DEADLINE: Duration = Duration::from_secs(90);
const HOLDERS: usize = 40;
/// Workers sharing partitions.
const PARTITIONED: [(&str, &str); 2] = [
    ("LATCH_WORKER_PARTITIONED", "true"),
    ("LATCH_WORKER_LEASE", "2s"),
];
/// Events published per second: well within what the slow sinks take, so that a drain is
/// the in-flight events, not a backlog.
const TRAFFIC: u32 = 50;

/// Per holder, the event ids published, in order: (legacy's share, all).
type Published = HashMap<Uuid, (Vec<String>, Vec<String>)>;

struct Stack {
    nats: NatsServer,
    sim: Simulator,
    js: jetstream::Context,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    published: Arc<Mutex<Published>>,
}

impl Stack {
    async fn start() -> Stack {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let nats = NatsServer::start();
        // Slow enough answers that every kill finds events in flight.
        let slow = SinkFaults {
            latency: Some(Latency::Uniform {
                min_ms: 20,
                max_ms: 120,
            }),
            ..SinkFaults::default()
        };
        let sim = Simulator::start(SimConfig {
            faults: Faults::both(slow),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        latch_core::nats::ensure_events_stream(&js, &NatsConfig::for_url(nats.url()))
            .await
            .unwrap();
        Stack {
            nats,
            sim,
            js,
            http: reqwest::Client::new(),
            dir: tempfile::Builder::new()
                .prefix("latch-takeover-")
                .tempdir()
                .unwrap(),
            published: Arc::default(),
        }
    }

    /// Starts `latch worker` NAME, delivering to both simulated sinks.
    async fn worker(&self, name: &str) -> Server {
        self.worker_with(name, &[]).await
    }

    /// Starts `latch worker` NAME with these settings too.
    async fn worker_with(&self, name: &str, extra: &[(&str, &str)]) -> Server {
        start_listening(&self.http, name, self.dir.path(), "/healthz", |port| {
            self.command(port, extra)
        })
        .await
    }

    /// `latch worker` with its admin endpoint on `port`, delivering to both sinks.
    fn command(&self, port: u16, extra: &[(&str, &str)]) -> Command {
        let env = [
            ("LATCH_NATS_URL", self.nats.url()),
            ("LATCH_SINKS_LEGACY_URL", self.sim.punch_url()),
            (
                "LATCH_SINKS_LEGACY_SECRET",
                latch_sim::DEFAULT_TNA_KEY.into(),
            ),
            ("LATCH_SINKS_WEBHOOKS_URL", self.sim.webhook_url()),
            (
                "LATCH_SINKS_WEBHOOKS_SECRET",
                latch_sim::DEFAULT_WEBHOOK_SECRET.into(),
            ),
            ("LATCH_SINKS_LEGACY_ACK_WAIT", ACK_WAIT.into()),
            ("LATCH_SINKS_WEBHOOKS_ACK_WAIT", ACK_WAIT.into()),
            ("LATCH_SINKS_LEGACY_TAKEOVER_AFTER", "2s".into()),
            ("LATCH_SINKS_WEBHOOKS_TAKEOVER_AFTER", "2s".into()),
            ("LATCH_SINKS_LEGACY_CONCURRENCY", "8".into()),
            ("LATCH_SINKS_WEBHOOKS_CONCURRENCY", "8".into()),
        ];
        let mut command = Command::new(env!("CARGO_BIN_EXE_latch"));
        command
            .arg("worker")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LATCH_LOG", "info")
            .env("LATCH_ADMIN_ADDR", format!("127.0.0.1:{port}"));
        for (key, value) in &env {
            command.env(key, value);
        }
        // An empty value removes the setting (a worker without that sink).
        for (key, value) in extra {
            if value.is_empty() {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        command
    }

    /// Publishes events for `holders` holders, round robin, the way the relay does, at
    /// about `per_second`, until `stop`; remembers each holder's order.
    fn traffic(
        &self,
        per_second: u32,
        holders: usize,
        stop: latch_core::shutdown::CancellationToken,
    ) -> tokio::task::JoinHandle<usize> {
        let (js, published) = (self.js.clone(), self.published.clone());
        let count = holders;
        let holders: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
            let mut n = 0usize;
            while !stop.is_cancelled() {
                tick.tick().await;
                let holder = holders[n % count];
                let kind = match (n / count) % 3 {
                    0 => EventKind::CheckIn,
                    1 => EventKind::UnlockGranted,
                    _ => EventKind::CheckOut,
                };
                let id = publish(&js, kind, holder, n as i64).await;
                let mut published = published.lock().unwrap();
                let (punches, all) = published.entry(holder).or_default();
                if kind != EventKind::UnlockGranted {
                    punches.push(id.clone());
                }
                all.push(id);
                n += 1;
            }
            n
        })
    }

    fn expected(&self) -> (u64, u64) {
        let published = self.published.lock().unwrap();
        (
            published.values().map(|(p, _)| p.len() as u64).sum(),
            published.values().map(|(_, a)| a.len() as u64).sum(),
        )
    }

    async fn effects(&self) -> (u64, u64) {
        let stats = self.sim.stats().await;
        (stats.legacy.effects, stats.webhooks.effects)
    }

    /// Waits until every published event took effect at both sinks; answers how long.
    async fn drained(&self) -> Duration {
        let started = Instant::now();
        let expected = self.expected();
        wait_until(
            "every event to take effect at both sinks",
            DEADLINE,
            || async { (self.effects().await == expected).then_some(()) },
        )
        .await;
        started.elapsed()
    }

    /// Per sink, the holders' events that took effect after a later event of theirs:
    /// the number of adjacent pairs out of publishing order.
    async fn inversions(&self) -> (usize, usize) {
        let stats = self.sim.stats().await;
        let published = self.published.lock().unwrap();
        let count = |applied: &[String], order: &[String]| {
            let position: HashMap<&str, usize> = order
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            applied
                .windows(2)
                .filter(|pair| position[pair[0].as_str()] > position[pair[1].as_str()])
                .count()
        };
        published
            .iter()
            .fold((0, 0), |(legacy, webhooks), (holder, (punches, all))| {
                let holder = holder.to_string();
                (
                    legacy + count(stats.legacy.order_of(&holder), punches),
                    webhooks + count(stats.webhooks.order_of(&holder), all),
                )
            })
    }

    /// Whether the worker listening on `port` delivers to every sink (holds both pins).
    async fn active(&self, port: u16) -> bool {
        self.held(port).await == Some((1, 1))
    }

    /// The consumers (partitions) whose pin the worker on `port` holds: (legacy, webhooks);
    /// 0 for a sink it does not deliver to.
    async fn held(&self, port: u16) -> Option<(i64, i64)> {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let metrics = get_text(&self.http, &url).await?;
        let of = |sink: &str| {
            let prefix = format!("latch_worker_active{{sink=\"{sink}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Some((of("legacy"), of("webhooks")))
    }

    /// Waits until the workers on `ports` share all `partitions` of both sinks, none
    /// holding more than its share (within one); answers how long that took.
    async fn shared(&self, ports: &[u16], partitions: i64) -> Duration {
        let started = Instant::now();
        let most = (partitions + ports.len() as i64 - 1) / ports.len() as i64;
        wait_until(
            &format!("{} workers to share {partitions} partitions", ports.len()),
            DEADLINE,
            || async {
                let mut total = (0, 0);
                for port in ports {
                    let (legacy, webhooks) = self.held(*port).await?;
                    if legacy > most || webhooks > most {
                        return None;
                    }
                    total = (total.0 + legacy, total.1 + webhooks);
                }
                (total == (partitions, partitions)).then_some(())
            },
        )
        .await;
        started.elapsed()
    }

    /// Waits until the sinks have taken `more` effects beyond `from` in all.
    async fn progressed(&self, from: u64, more: u64) -> u64 {
        wait_until("deliveries to progress", DEADLINE, || async {
            let (legacy, webhooks) = self.effects().await;
            (legacy + webhooks >= from + more).then_some(legacy + webhooks)
        })
        .await
    }
}

/// Publishes one event as the relay does (message id, event id, traceparent headers).
async fn publish(js: &jetstream::Context, kind: EventKind, holder: Uuid, seq: i64) -> String {
    let id = Uuid::now_v7();
    let envelope = json!({
        "id": id, "kind": kind, "schema_version": 1,
        "occurred_at": "2026-12-04T08:00:00Z", "recorded_at": "2026-12-04T08:00:01Z",
        "site": "hq", "door_id": Uuid::nil(), "holder_id": holder, "reader_id": Uuid::nil(),
        "reader_seq": seq, "decided_offline": false, "decision": null, "reason": null,
        "grant_id": null, "actor_id": null
    });
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id.to_string());
    headers.insert("Latch-Event-Id", id.to_string());
    let subject = latch_core::nats::publish_subject(&kind.subject(), &holder.to_string());
    js.publish_with_headers(subject, headers, envelope.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    id.to_string()
}

#[tokio::test]
async fn a_worker_killed_again_and_again_keeps_holder_order_and_delivers_its_in_flight_events_at_once()
 {
    let stack = Stack::start().await;
    let mut worker = stack.worker("worker-0").await;
    let stop = latch_core::shutdown::CancellationToken::new();
    let traffic = stack.traffic(TRAFFIC, HOLDERS, stop.clone());
    let mut seen = stack.progressed(0, 50).await;
    for round in 1..=4 {
        worker.proc.kill();
        worker = stack.worker(&format!("worker-{round}")).await;
        seen = stack.progressed(seen, 100).await;
    }
    // The last kill: what was in flight must come soon after the next worker starts.
    worker.proc.kill();
    stop.cancel();
    let published = traffic.await.unwrap();
    let _worker = stack.worker("worker-last").await;
    let drain = stack.drained().await;
    let (legacy, webhooks) = stack.inversions().await;
    let stats = stack.sim.stats().await;
    eprintln!(
        "{published} events, 5 kills: drained {drain:?} after the last restart; \
         inversions legacy {legacy}, webhooks {webhooks}; duplicate calls legacy {}, webhooks {}",
        stats.legacy.duplicates, stats.webhooks.duplicates
    );
    assert_eq!((legacy, webhooks), (0, 0), "a holder's events out of order");
    assert_eq!(stack.effects().await, stack.expected(), "each event once");
    assert!(
        drain < DRAIN_BOUND,
        "the in-flight events waited {drain:?} (ack wait {ACK_WAIT})"
    );
}

#[tokio::test]
async fn a_standby_worker_takes_over_when_the_active_one_dies() {
    let stack = Stack::start().await;
    let first = stack.worker("worker-a").await;
    let stop = latch_core::shutdown::CancellationToken::new();
    let traffic = stack.traffic(TRAFFIC, HOLDERS, stop.clone());
    wait_until("worker a to be active", DEADLINE, || async {
        stack.active(first.port).await.then_some(())
    })
    .await;
    let standby = stack.worker("worker-b").await;
    stack.progressed(0, 200).await;
    // The standby delivered nothing while the other was alive.
    assert!(!stack.active(standby.port).await, "two active workers");

    first.proc.kill();
    let killed = Instant::now();
    wait_until("worker b to take over", DEADLINE, || async {
        stack.active(standby.port).await.then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    let (legacy, webhooks) = stack.effects().await;
    stack.progressed(legacy + webhooks, 200).await;
    stop.cancel();
    let published = traffic.await.unwrap();
    let drain = stack.drained().await;
    let (legacy, webhooks) = stack.inversions().await;
    eprintln!(
        "{published} events: the standby took over {takeover:?} after the kill \
         (takeover_after {TAKEOVER_AFTER:?}); drained {drain:?} after the traffic stopped; \
         inversions legacy {legacy}, webhooks {webhooks}"
    );
    assert_eq!((legacy, webhooks), (0, 0), "a holder's events out of order");
    assert_eq!(stack.effects().await, stack.expected(), "each event once");
    assert!(
        takeover < TAKEOVER_AFTER + Duration::from_secs(5),
        "{takeover:?}"
    );
}

#[tokio::test]
async fn partitioned_workers_share_the_partitions_and_keep_holder_order_when_two_are_killed() {
    const PARTITIONS: i64 = 8;
    let stack = Stack::start().await;
    let mut workers = Vec::new();
    for name in ["worker-a", "worker-b", "worker-c"] {
        workers.push(stack.worker_with(name, &PARTITIONED).await);
    }
    let ports: Vec<u16> = workers.iter().map(|w| w.port).collect();
    let stop = latch_core::shutdown::CancellationToken::new();
    // Several events per holder, so that order is at stake.
    let traffic = stack.traffic(8 * TRAFFIC, 1000, stop.clone());
    // A worker learns it holds a partition from the first event it is sent there.
    let spread = stack.shared(&ports, PARTITIONS).await;
    let mut seen = stack.progressed(0, 1500).await;
    let mut takeovers = Vec::new();
    for _ in 0..2 {
        let victim = workers.remove(0);
        victim.proc.kill();
        let killed = Instant::now();
        let ports: Vec<u16> = workers.iter().map(|w| w.port).collect();
        stack.shared(&ports, PARTITIONS).await;
        takeovers.push(killed.elapsed());
        seen = stack.progressed(seen, 1500).await;
    }
    stop.cancel();
    let published = traffic.await.unwrap();
    let drain = stack.drained().await;
    let (legacy, webhooks) = stack.inversions().await;
    let stats = stack.sim.stats().await;
    eprintln!(
        "{published} events of 1000 holders on {PARTITIONS} partitions: 3 workers shared them \
         {spread:?} after the traffic started; after each kill -9 the survivors held every partition \
         {takeovers:?} later (lease 2s, takeover_after {TAKEOVER_AFTER:?}); drained {drain:?}; \
         inversions legacy {legacy}, webhooks {webhooks}; duplicate calls legacy {}, webhooks {}",
        stats.legacy.duplicates, stats.webhooks.duplicates
    );
    assert_eq!((legacy, webhooks), (0, 0), "a holder's events out of order");
    assert_eq!(stack.effects().await, stack.expected(), "each event once");
    for takeover in takeovers {
        assert!(takeover < Duration::from_secs(15), "{takeover:?}");
    }
}

#[tokio::test]
async fn a_deployment_moves_from_one_consumer_per_sink_to_partitions_without_a_second_delivery() {
    let stack = Stack::start().await;
    let single = stack.worker("single").await;
    let stop = latch_core::shutdown::CancellationToken::new();
    let traffic = stack.traffic(TRAFFIC, 200, stop.clone());
    let seen = stack.progressed(0, 100).await;
    // A partitioned worker refuses to start while the single consumer has a worker.
    let early = Proc::spawn(
        "too-early",
        stack.command(0, &PARTITIONED),
        stack.dir.path().join("too-early.log"),
    );
    wait_until(
        "the early partitioned worker to give up",
        DEADLINE,
        || async { early.exited().then_some(()) },
    )
    .await;
    assert!(
        early.log_text().contains("still has an active worker"),
        "{}",
        early.tail()
    );
    single.proc.terminate();
    wait_until("the single-layout worker to stop", DEADLINE, || async {
        single.proc.exited().then_some(())
    })
    .await;
    let a = stack.worker_with("partitioned-a", &PARTITIONED).await;
    let b = stack.worker_with("partitioned-b", &PARTITIONED).await;
    stack.shared(&[a.port, b.port], 8).await;
    stack.progressed(seen, 100).await;
    stop.cancel();
    let published = traffic.await.unwrap();
    stack.drained().await;
    let (legacy, webhooks) = stack.inversions().await;
    let stats = stack.sim.stats().await;
    eprintln!(
        "{published} events: moved to partitions under traffic; duplicate calls legacy {}, \
         webhooks {}",
        stats.legacy.duplicates, stats.webhooks.duplicates
    );
    assert_eq!((legacy, webhooks), (0, 0), "a holder's events out of order");
    assert_eq!(stack.effects().await, stack.expected(), "each event once");
    assert_eq!(
        (stats.legacy.duplicates, stats.webhooks.duplicates),
        (0, 0),
        "an event the single consumer delivered was delivered again"
    );
    let consumers: Vec<String> = stack
        .js
        .get_stream(latch_core::nats::EVENTS_STREAM)
        .await
        .unwrap()
        .consumer_names()
        .map(|name| name.unwrap())
        .collect()
        .await;
    assert!(
        !consumers.contains(&"latch-legacy".to_owned()),
        "{consumers:?}"
    );
    assert!(
        consumers.contains(&"latch-legacy-p7".to_owned()),
        "{consumers:?}"
    );

    // A worker of one consumer per sink started by mistake now refuses: its consumer,
    // made anew, would deliver the whole stream again.
    let late = Proc::spawn(
        "too-late",
        stack.command(0, &[]),
        stack.dir.path().join("too-late.log"),
    );
    wait_until("the single-layout worker to refuse", DEADLINE, || async {
        late.exited().then_some(())
    })
    .await;
    assert!(
        late.log_text()
            .contains("start this worker with LATCH_WORKER_PARTITIONED=true"),
        "{}",
        late.tail()
    );
    assert_eq!(
        stack.effects().await,
        stack.expected(),
        "nothing delivered again"
    );
}

#[tokio::test]
async fn partitioned_workers_of_different_sinks_each_take_all_of_their_sinks_partitions() {
    let stack = Stack::start().await;
    let without = |sink: &'static str| {
        let mut env = PARTITIONED.to_vec();
        env.push((sink, ""));
        env
    };
    let legacy = stack
        .worker_with("legacy-only", &without("LATCH_SINKS_WEBHOOKS_URL"))
        .await;
    let webhooks = stack
        .worker_with("webhooks-only", &without("LATCH_SINKS_LEGACY_URL"))
        .await;
    let stop = latch_core::shutdown::CancellationToken::new();
    let traffic = stack.traffic(2 * TRAFFIC, 200, stop.clone());
    wait_until(
        "each worker to hold all of its sink's partitions",
        DEADLINE,
        || async {
            let both = (
                stack.held(legacy.port).await?,
                stack.held(webhooks.port).await?,
            );
            (both == ((8, 0), (0, 8))).then_some(())
        },
    )
    .await;
    stop.cancel();
    traffic.await.unwrap();
    stack.drained().await;
    assert_eq!(
        stack.inversions().await,
        (0, 0),
        "a holder's events out of order"
    );
    assert_eq!(stack.effects().await, stack.expected(), "each event once");
}
