//! The relay against a real PostgreSQL database and a private nats-server per test.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use latch_core::config::DatabaseConfig;
use latch_core::nats::NatsConfig;
use latch_core::shutdown::CancellationToken;
use latch_relay::metrics::RelayMetrics;
use latch_relay::{Relay, RelayConfig};
use latch_testkit::{NatsServer, TestDb, wait_until};
use serde_json::Value;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);

struct Setup {
    db: TestDb,
    nats: NatsServer,
}

impl Setup {
    async fn new() -> Setup {
        Setup {
            db: TestDb::new().await,
            nats: NatsServer::start(),
        }
    }

    async fn relay(&self, batch_size: usize) -> Relay {
        self.relay_polling(batch_size, Duration::from_millis(200))
            .await
    }

    /// A relay that polls only every `poll_interval`.
    async fn relay_polling(&self, batch_size: usize, poll_interval: Duration) -> Relay {
        self.relay_as(self.db.relay_url(), batch_size, poll_interval)
            .await
    }

    /// A relay that logs in with `url`.
    async fn relay_as(
        &self,
        url: latch_core::config::Secret<String>,
        batch_size: usize,
        poll_interval: Duration,
    ) -> Relay {
        let pool = latch_core::db::pool(&DatabaseConfig {
            pool_size: 4,
            ..DatabaseConfig::with_url(url.clone())
        })
        .unwrap();
        let config = RelayConfig {
            batch_size,
            poll_interval,
            max_backoff: Duration::from_millis(500),
        };
        let mut nats = NatsConfig::for_url(self.nats.url());
        nats.request_timeout = Duration::from_secs(2);
        Relay::build(
            config,
            &nats,
            url,
            pool,
            &prometheus::Registry::new(),
            &CancellationToken::new(),
        )
        .await
        .unwrap()
    }

    fn spawn(&self, relay: Relay) -> CancellationToken {
        let token = CancellationToken::new();
        tokio::spawn(relay.run(token.clone()));
        token
    }

    async fn stream(&self) -> jetstream::stream::Stream {
        let client = async_nats::connect(self.nats.url()).await.unwrap();
        jetstream::new(client)
            .get_stream(latch_core::nats::EVENTS_STREAM)
            .await
            .unwrap()
    }

    /// One value read with the owner's rights.
    async fn value<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.db
            .owner()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn pending(&self) -> i64 {
        self.value("SELECT count(*) FROM outbox").await
    }

    /// Waits until the stream holds `n` messages and the outbox is empty.
    async fn wait_for_messages(&self, n: u64) {
        self.wait_for_messages_within(n, DEADLINE).await;
    }

    /// The same, for at most `deadline`.
    async fn wait_for_messages_within(&self, n: u64, deadline: Duration) {
        let stream = self.stream().await;
        wait_until("the stream to hold every event", deadline, || async {
            let count = stream.get_info().await.ok()?.state.messages;
            assert!(
                count <= n,
                "the stream holds {count} messages, expected {n}"
            );
            (count == n && self.pending().await == 0).then_some(())
        })
        .await;
    }

    /// Every message in the stream, in stream order.
    async fn messages(&self) -> Vec<Message> {
        let stream = self.stream().await;
        let last = stream.get_info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            let raw = stream.get_raw_message(seq).await.unwrap();
            let header = |name: &str| {
                raw.headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            out.push(Message {
                msg_id: header("Nats-Msg-Id"),
                event_id: header("Latch-Event-Id"),
                traceparent: header("traceparent"),
                subject: raw.subject.to_string(),
                payload: serde_json::from_slice(&raw.payload).unwrap(),
            });
        }
        out
    }
}

struct Message {
    msg_id: String,
    event_id: String,
    traceparent: String,
    subject: String,
    payload: Value,
}

/// Records one action the way the API does (as the application role); its trigger writes
/// the outbox row.
async fn record(client: &tokio_postgres::Client, holder: Uuid, seq: i64) -> Uuid {
    let id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO actions (id, kind, site, holder_id, reader_id, reader_seq, occurred_at,
                                  trace_parent)
             VALUES ($1, 'check_in', 'hq', $2, $2, $3, now(),
                     '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')",
            &[&id, &holder, &seq],
        )
        .await
        .unwrap();
    id
}

/// `writers` tasks each record `per_writer` actions for their own holder, in sequence.
async fn write_concurrently(db: &TestDb, writers: usize, per_writer: i64) -> Vec<Uuid> {
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let client = db.app().await;
        tasks.push(tokio::spawn(async move {
            let holder = Uuid::now_v7();
            for seq in 0..per_writer {
                record(&client, holder, seq).await;
            }
            holder
        }));
    }
    let mut holders = Vec::new();
    for task in tasks {
        holders.push(task.await.unwrap());
    }
    holders
}

fn assert_once_and_in_holder_order(messages: &[Message]) {
    let ids: HashSet<&str> = messages.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(ids.len(), messages.len(), "a Nats-Msg-Id appears twice");
    let events: HashSet<&str> = messages.iter().map(|m| m.event_id.as_str()).collect();
    assert_eq!(events.len(), messages.len(), "an event appears twice");
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for message in messages {
        let holder = message.payload["holder_id"].as_str().unwrap().to_owned();
        let seq = message.payload["reader_seq"].as_i64().unwrap();
        if let Some(previous) = last_seq.insert(holder.clone(), seq) {
            assert!(
                seq > previous,
                "holder {holder}: event {seq} after {previous}"
            );
        }
    }
}

#[tokio::test]
async fn a_relay_with_a_login_that_may_not_delete_outbox_rows_refuses_to_lead() {
    let setup = Setup::new().await;
    record(&setup.db.app().await, Uuid::now_v7(), 0).await;
    let relay = setup
        .relay_as(setup.db.app_url(), 500, Duration::from_millis(100))
        .await;
    let error = relay
        .run(CancellationToken::new())
        .await
        .expect_err("the API's login cannot relay");
    let message = format!("{error:#}");
    assert!(
        message.contains("latch_api") && message.contains("latch_relayer"),
        "{message}"
    );
    assert_eq!(setup.value::<i64>("SELECT count(*) FROM outbox").await, 1);
}

#[tokio::test]
async fn every_committed_row_reaches_the_stream_once_as_committed() {
    let setup = Setup::new().await;
    let token = setup.spawn(setup.relay(64).await);
    write_concurrently(&setup.db, 8, 40).await;
    setup.wait_for_messages(320).await;

    let messages = setup.messages().await;
    assert_once_and_in_holder_order(&messages);
    let committed: HashMap<String, Value> = setup
        .db
        .owner()
        .await
        .query(
            "SELECT id::text, latch_event_envelope(to_jsonb(a)) FROM actions a",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(committed.len(), 320);
    // Stored as latch.events.<kind>.<partition>.<holder>: one partition per holder.
    let mut partition_of: HashMap<String, u32> = HashMap::new();
    for message in &messages {
        let holder = message.payload["holder_id"].as_str().unwrap().to_owned();
        let tokens: Vec<&str> = message.subject.split('.').collect();
        assert_eq!(
            tokens[..3],
            ["latch", "events", "check_in"],
            "{}",
            message.subject
        );
        assert_eq!(tokens[4], holder, "{}", message.subject);
        let partition: u32 = tokens[3].parse().unwrap();
        assert!(partition < 8, "{}", message.subject);
        assert_eq!(
            *partition_of.entry(holder).or_insert(partition),
            partition,
            "a holder's events in two partitions"
        );
        assert_eq!(
            message.traceparent,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(
            message.payload["id"].as_str(),
            Some(message.event_id.as_str())
        );
        assert_eq!(Some(&message.payload), committed.get(&message.event_id));
        let envelope: latch_core::event::Envelope =
            serde_json::from_value(message.payload.clone()).unwrap();
        assert_eq!(envelope.kind, latch_core::event::EventKind::CheckIn);
    }
    let used: std::collections::HashSet<u32> = partition_of.values().copied().collect();
    assert!(
        partition_of.len() < 4 || used.len() > 1,
        "{} holders all in one partition",
        partition_of.len()
    );
    token.cancel();
}

#[tokio::test]
async fn a_crash_after_publishing_and_before_deleting_leaves_no_duplicate() {
    // 50 rows: one atomic batch.
    crash_after_publishing(5, 10, false).await;
}

#[tokio::test]
async fn a_crash_after_publishing_a_few_rows_as_plain_publishes_leaves_no_duplicate() {
    crash_after_publishing(3, 1, true).await;
}

/// A relay publishes `writers * per_writer` rows and dies before its DELETE commits; the
/// next relay publishes them again with new rows, and the stream holds each row once.
async fn crash_after_publishing(writers: usize, per_writer: i64, singles: bool) {
    let setup = Setup::new().await;
    write_concurrently(&setup.db, writers, per_writer).await;
    let n = writers * per_writer as usize;

    let relay = setup.relay(500).await;
    assert_eq!(relay.publisher().costs().singles(n), singles);
    let pool = latch_core::db::pool(&DatabaseConfig {
        pool_size: 1,
        ..DatabaseConfig::with_url(setup.db.relay_url())
    })
    .unwrap();
    {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let rows = latch_relay::outbox::claim(&tx, 500).await.unwrap();
        assert_eq!(rows.len(), n);
        let published = relay.publisher().publish(&rows).await.unwrap();
        assert_eq!(published.acked.len(), n);
        // Dropped without commit: the rows are unlocked and still pending.
    }
    assert_eq!(setup.pending().await, n as i64);

    // More events arrive; the next relay republishes the first rows (deduplicated) with
    // the new ones.
    write_concurrently(&setup.db, 2, 10).await;
    let token = setup.spawn(relay);
    setup.wait_for_messages(n as u64 + 20).await;
    let messages = setup.messages().await;
    assert_eq!(messages.len(), n + 20);
    assert_once_and_in_holder_order(&messages);
    token.cancel();
}

#[tokio::test]
async fn a_row_that_commits_late_is_still_published() {
    let setup = Setup::new().await;
    let token = setup.spawn(setup.relay(100).await);

    // A transaction takes an outbox id and stays open...
    let mut slow = setup.db.app().await;
    let slow_tx = slow.transaction().await.unwrap();
    let late = record_in(&slow_tx, Uuid::now_v7()).await;
    // ...while later rows (higher ids) commit and are relayed.
    write_concurrently(&setup.db, 3, 5).await;
    setup.wait_for_messages(15).await;

    slow_tx.commit().await.unwrap();
    setup.wait_for_messages(16).await;
    let messages = setup.messages().await;
    assert_eq!(messages.last().unwrap().event_id, late.to_string());
    token.cancel();
}

async fn record_in(tx: &tokio_postgres::Transaction<'_>, holder: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    tx.execute(
        "INSERT INTO actions (id, kind, site, holder_id, reader_id, reader_seq, occurred_at)
         VALUES ($1, 'check_in', 'hq', $2, $2, 0, now())",
        &[&id, &holder],
    )
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn several_relays_publish_each_row_once_in_holder_order() {
    let setup = Setup::new().await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(setup.spawn(setup.relay(50).await));
    }
    let writers = write_concurrently(&setup.db, 6, 30);
    let handover = async {
        // Stop relays one after the other while writes go on: leadership moves.
        for token in tokens.iter().take(2) {
            wait_until("some events to be relayed", DEADLINE, || async {
                let stream = setup.stream().await;
                (stream.get_info().await.ok()?.state.messages > 0).then_some(())
            })
            .await;
            token.cancel();
        }
    };
    tokio::join!(writers, handover);
    setup.wait_for_messages(180).await;
    assert_once_and_in_holder_order(&setup.messages().await);
    tokens[2].cancel();
}

#[tokio::test]
async fn events_written_while_nats_is_down_arrive_after_it_returns() {
    let mut setup = Setup::new().await;
    let token = setup.spawn(setup.relay(100).await);
    write_concurrently(&setup.db, 2, 10).await;
    setup.wait_for_messages(20).await;

    setup.nats.kill();
    // Writes keep succeeding: they only touch PostgreSQL.
    write_concurrently(&setup.db, 4, 10).await;
    assert!(setup.pending().await > 0);

    setup.nats.restart();
    setup.wait_for_messages(60).await;
    assert_once_and_in_holder_order(&setup.messages().await);
    token.cancel();
}

/// Records `n` actions in one statement, each for a holder of its own, as the API's login.
async fn record_many(db: &TestDb, n: i64) {
    db.app()
        .await
        .execute(
            "INSERT INTO actions (id, kind, site, holder_id, reader_id, reader_seq, occurred_at)
             SELECT h, 'check_in', 'hq', h, h, g, now()
             FROM (SELECT gen_random_uuid() AS h, g FROM generate_series(1, $1::bigint) AS g) AS x",
            &[&n],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn while_nats_is_down_the_relay_keeps_counting_and_its_gauges_keep_tracking_the_outbox() {
    let mut setup = Setup::new().await;
    let relay = setup.relay(500).await;
    let metrics = relay.metrics.clone();
    let token = setup.spawn(relay);
    record_many(&setup.db, 10).await;
    setup.wait_for_messages(10).await;

    // A long outage with a backlog: far more than the NATS client buffers, and longer than
    // the relay's longest backoff (500 ms here) many times over.
    setup.nats.kill();
    let errors = || {
        ["nats_unavailable", "nats_refused"]
            .iter()
            .map(|state| metrics.errors.with_label_values(&[*state]).get())
            .sum::<u64>()
    };
    let mut longest_claim = 0.0f64;
    for round in 1..=6 {
        record_many(&setup.db, 1500).await;
        let pending = setup.pending().await;
        // The gauges follow PostgreSQL, whatever publishing does.
        wait_until(
            "the pending-rows gauge to follow the outbox",
            DEADLINE,
            || async { (metrics.pending_rows.get() == pending).then_some(()) },
        )
        .await;
        // Failures keep being counted.
        let before = errors();
        wait_until("more failed attempts to be counted", DEADLINE, || async {
            (errors() > before).then_some(())
        })
        .await;
        // No claim stays open for the outage: a transaction holds rows only while one
        // bounded publish attempt lasts (2 x the 2 s request timeout here).
        let open: f64 = setup
            .value(
                "SELECT COALESCE(max(EXTRACT(EPOCH FROM now() - xact_start)), 0)::float8
                 FROM pg_stat_activity WHERE usename = 'latch_relay' AND xact_start IS NOT NULL",
            )
            .await;
        longest_claim = longest_claim.max(open);
        eprintln!(
            "round {round}: outbox {pending} rows, gauge {} rows, oldest {:.1}s; errors {}; longest open claim {open:.1}s",
            metrics.pending_rows.get(),
            metrics.oldest_pending_age.get(),
            errors()
        );
    }
    assert!(
        longest_claim < 6.0,
        "a claim stayed open {longest_claim:.1}s"
    );
    assert!(metrics.oldest_pending_age.get() > 1.0);

    setup.nats.restart();
    setup.wait_for_messages(10 + 6 * 1500).await;
    assert_eq!(setup.pending().await, 0);
    token.cancel();
}

#[tokio::test]
async fn a_batch_claimed_ahead_is_released_when_the_one_before_it_fails() {
    let mut setup = Setup::new().await;
    // Batches of 10 over a backlog of 120: every full batch has the next claimed ahead.
    let relay = setup.relay(10).await;
    let metrics = relay.metrics.clone();
    let token = setup.spawn(relay);
    setup.nats.kill();
    write_concurrently(&setup.db, 6, 20).await;

    // Publishing fails again and again; between attempts no row stays locked, neither the
    // failed batch's nor the one claimed ahead of it.
    wait_until("two failed drains", DEADLINE, || async {
        let failures: u64 = ["nats_unavailable", "nats_refused"]
            .iter()
            .map(|state| metrics.errors.with_label_values(&[*state]).get())
            .sum();
        (failures >= 2).then_some(())
    })
    .await;
    wait_until(
        "every row released while the relay backs off",
        DEADLINE,
        || async {
            let free: i64 = setup
                .value("SELECT count(*) FROM (SELECT FROM outbox FOR UPDATE SKIP LOCKED) AS free")
                .await;
            (free == 120).then_some(())
        },
    )
    .await;

    // Back: the failed batch goes before the one that had been claimed ahead of it.
    setup.nats.restart();
    setup.wait_for_messages(120).await;
    assert_once_and_in_holder_order(&setup.messages().await);
    token.cancel();
}

#[tokio::test]
async fn the_stream_is_created_with_the_durable_settings() {
    let setup = Setup::new().await;
    let _relay = setup.relay(10).await;
    let info = setup.stream().await.get_info().await.unwrap();
    assert_eq!(info.config.subjects, ["latch.events.>", "latch.replay.>"]);
    assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
    assert!(info.config.duplicate_window >= Duration::from_secs(600));
    assert!(info.config.allow_atomic_publish);
    let transform = info.config.subject_transform.expect("partitions by key");
    assert_eq!(transform.source, "latch.events.*.*");
    assert_eq!(
        transform.destination,
        "latch.events.{{wildcard(1)}}.{{partition(8,2)}}.{{wildcard(2)}}"
    );
}

// --- Waking the relay ----------------------------------------------------------------------

/// A poll interval longer than any test: what these tests see arrive was not polled for.
const NO_POLL: Duration = Duration::from_secs(600);
/// How soon a woken relay must have published (far below `NO_POLL`).
const PROMPTLY: Duration = Duration::from_secs(10);

impl Setup {
    async fn armed(&self) -> bool {
        self.value("SELECT armed FROM outbox_wake").await
    }

    async fn set_armed(&self, armed: bool) {
        self.db
            .owner()
            .await
            .execute("UPDATE outbox_wake SET armed = $1", &[&armed])
            .await
            .unwrap();
    }

    /// True while a session waits for the wake key exclusively (the relay arming).
    async fn arming_waits(&self) -> bool {
        let key = latch_relay::wake::WAKE_LOCK;
        self.db
            .owner()
            .await
            .query_one(
                "SELECT count(*) > 0 FROM pg_locks
                 WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND NOT granted
                   AND classid = ($1::int8 >> 32)::oid AND objid = ($1::int8 & 4294967295)::oid
                   AND objsubid = 1",
                &[&key],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Starts a relay that would poll only after `NO_POLL`: it can learn of new rows
    /// only from the wake-up handshake. Also returns its metrics.
    async fn spawn_unpolled(&self, batch_size: usize) -> (CancellationToken, RelayMetrics) {
        let relay = self.relay_polling(batch_size, NO_POLL).await;
        let metrics = relay.metrics.clone();
        (self.spawn(relay), metrics)
    }
}

fn poll_wakeups(metrics: &RelayMetrics) -> u64 {
    metrics.wakeups.with_label_values(&["poll"]).get()
}

#[tokio::test]
async fn a_row_committed_while_the_relay_waits_wakes_it() {
    let setup = Setup::new().await;
    let (token, metrics) = setup.spawn_unpolled(100).await;
    let client = setup.db.app().await;
    let holder = Uuid::now_v7();
    for n in 1..=3 {
        // The relay has found the outbox empty and armed; the writer that finds it armed
        // notifies.
        wait_until("the relay to arm", DEADLINE, || async {
            setup.armed().await.then_some(())
        })
        .await;
        record(&client, holder, n).await;
        setup.wait_for_messages_within(n as u64, PROMPTLY).await;
    }
    assert_eq!(poll_wakeups(&metrics), 0);
    token.cancel();
}

#[tokio::test]
async fn rows_committed_while_the_relay_is_busy_are_all_published_without_polling() {
    let setup = Setup::new().await;
    let (token, metrics) = setup.spawn_unpolled(16).await;
    write_concurrently(&setup.db, 8, 40).await;
    setup.wait_for_messages_within(320, DEADLINE).await;
    assert_once_and_in_holder_order(&setup.messages().await);
    assert_eq!(poll_wakeups(&metrics), 0);
    token.cancel();
}

#[tokio::test]
async fn a_writer_that_read_the_flag_before_the_relay_armed_is_waited_for() {
    let setup = Setup::new().await;
    // The flag as the writer that last woke a relay left it.
    setup.set_armed(false).await;
    // A writer reads it (so it will not notify) and stays open.
    let mut open = setup.db.app().await;
    let open_tx = open.transaction().await.unwrap();
    let late = record_in(&open_tx, Uuid::now_v7()).await;

    // The relay finds the outbox empty and arms: the arming waits for that writer.
    let (token, metrics) = setup.spawn_unpolled(100).await;
    wait_until(
        "the relay's arming to wait for the open writer",
        DEADLINE,
        || async { setup.arming_waits().await.then_some(()) },
    )
    .await;

    // Meanwhile other writers are not held up: they notify, and their rows go out.
    write_concurrently(&setup.db, 2, 3).await;
    setup.wait_for_messages_within(6, PROMPTLY).await;
    assert!(setup.arming_waits().await);

    // The open writer commits: the arming completes and the relay looks once more.
    open_tx.commit().await.unwrap();
    setup.wait_for_messages_within(7, PROMPTLY).await;
    let messages = setup.messages().await;
    assert_eq!(messages.last().unwrap().event_id, late.to_string());
    assert_eq!(poll_wakeups(&metrics), 0);
    token.cancel();
}

/// The notifications on the relay's channel, seen from a connection of its own.
struct Listener {
    notifications: tokio::sync::mpsc::UnboundedReceiver<String>,
    _client: tokio_postgres::Client,
}

impl Listener {
    async fn new(db: &TestDb) -> Listener {
        let (client, mut connection) =
            tokio_postgres::connect(db.app_url().expose(), tokio_postgres::NoTls)
                .await
                .unwrap();
        let (tx, notifications) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    let _ = tx.send(n.payload().to_owned());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", latch_core::event::OUTBOX_CHANNEL))
            .await
            .unwrap();
        Listener {
            notifications,
            _client: client,
        }
    }

    /// How many notifications arrived since the last call: a marker notification sent
    /// now arrives after every one committed before it.
    async fn count(&mut self, db: &TestDb) -> usize {
        db.owner()
            .await
            .execute(
                "SELECT pg_notify($1, 'marker')",
                &[&latch_core::event::OUTBOX_CHANNEL],
            )
            .await
            .unwrap();
        let mut count = 0;
        loop {
            let payload = tokio::time::timeout(DEADLINE, self.notifications.recv())
                .await
                .expect("the marker notification in time")
                .unwrap();
            if payload == "marker" {
                return count;
            }
            count += 1;
        }
    }
}

#[tokio::test]
async fn writers_notify_only_while_the_relay_is_armed_or_arming() {
    let setup = Setup::new().await;
    let mut listener = Listener::new(&setup.db).await;
    let client = setup.db.app().await;
    let holder = Uuid::now_v7();

    // Armed: the first writer notifies and clears the flag for the others.
    setup.set_armed(true).await;
    for seq in 0..3 {
        record(&client, holder, seq).await;
    }
    assert_eq!(listener.count(&setup.db).await, 1);
    assert!(!setup.armed().await);

    // Not armed (the relay is busy, or there is none): nobody notifies.
    write_concurrently(&setup.db, 4, 5).await;
    assert_eq!(listener.count(&setup.db).await, 0);

    // While the relay arms (holds or waits for the wake key), every writer notifies.
    let mut arming = setup.db.owner().await;
    let arming_tx = arming.transaction().await.unwrap();
    arming_tx
        .execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&latch_relay::wake::WAKE_LOCK],
        )
        .await
        .unwrap();
    for seq in 3..5 {
        record(&client, holder, seq).await;
    }
    arming_tx.rollback().await.unwrap();
    assert_eq!(listener.count(&setup.db).await, 2);

    // A transaction that is not READ COMMITTED cannot trust the flag: it notifies.
    let mut rr = setup.db.app().await;
    let rr_tx = rr
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    record_in(&rr_tx, holder).await;
    rr_tx.commit().await.unwrap();
    assert_eq!(listener.count(&setup.db).await, 1);
    assert!(!setup.armed().await);
}

#[tokio::test]
async fn a_relay_that_cannot_arm_falls_back_to_its_poll() {
    let setup = Setup::new().await;
    // As if the handshake were missing: the relay's role may not set the flag.
    setup.set_armed(false).await;
    setup
        .db
        .owner()
        .await
        .batch_execute("REVOKE UPDATE ON outbox_wake FROM latch_app")
        .await
        .unwrap();
    let token = setup.spawn(setup.relay(100).await);
    write_concurrently(&setup.db, 2, 5).await;
    setup.wait_for_messages(10).await;
    assert_once_and_in_holder_order(&setup.messages().await);
    token.cancel();
}

#[tokio::test]
async fn a_role_set_to_another_partition_count_refuses_the_stream_and_changes_nothing() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let config = NatsConfig::for_url(nats.url());
    latch_core::nats::ensure_events_stream(&js, &config)
        .await
        .unwrap();
    let other = NatsConfig {
        partitions: 16,
        ..config.clone()
    };
    let error = latch_core::nats::ensure_events_stream(&js, &other)
        .await
        .expect_err("another partition count");
    assert!(
        format!("{error:#}").contains("LATCH_NATS_PARTITIONS"),
        "{error:#}"
    );
    let stream = js.get_stream(&config.events_stream).await.unwrap();
    assert_eq!(
        latch_core::nats::stream_partitions(&stream.cached_info().config),
        Some(8)
    );
}
