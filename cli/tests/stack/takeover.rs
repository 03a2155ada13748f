//! Workers that die: real `latch worker` processes killed outright (SIGKILL) while events
//! flow, a real nats-server, the simulated sinks answering slowly enough that events are
//! in flight at every kill. Each holder's events must reach both sinks in stream order,
//! each take effect once, and what a dead worker had in flight must be delivered soon
//! after another worker takes over — not when `ack_wait` (30 s here) runs out.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use latch_core::event::EventKind;
use latch_core::nats::NatsConfig;
use latch_sim::{Faults, Latency, SimConfig, Simulator, SinkFaults};
use latch_testkit::process::{Server, get_text, start_listening};
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
        start_listening(&self.http, name, self.dir.path(), "/healthz", |port| {
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
            command
        })
        .await
    }

    /// Publishes events for `HOLDERS` holders, round robin, the way the relay does, at
    /// about `per_second`, until `stop`; remembers each holder's order.
    fn traffic(
        &self,
        per_second: u32,
        stop: latch_core::shutdown::CancellationToken,
    ) -> tokio::task::JoinHandle<usize> {
        let (js, published) = (self.js.clone(), self.published.clone());
        let holders: Vec<Uuid> = (0..HOLDERS).map(|_| Uuid::now_v7()).collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
            let mut n = 0usize;
            while !stop.is_cancelled() {
                tick.tick().await;
                let holder = holders[n % HOLDERS];
                let kind = match (n / HOLDERS) % 3 {
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
        let url = format!("http://127.0.0.1:{port}/metrics");
        let Some(metrics) = get_text(&self.http, &url).await else {
            return false;
        };
        ["legacy", "webhooks"].iter().all(|sink| {
            metrics
                .lines()
                .any(|l| l == format!("latch_worker_active{{sink=\"{sink}\"}} 1"))
        })
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
    js.publish_with_headers(kind.subject(), headers, envelope.to_string().into())
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
    let traffic = stack.traffic(TRAFFIC, stop.clone());
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
    let traffic = stack.traffic(TRAFFIC, stop.clone());
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
