//! PostgreSQL failing over under traffic: a primary with a synchronous standby of this
//! test's own, every role connecting with a multi-host URL that finds the writable server
//! (`target_session_attrs=read-write`). The primary is stopped outright while readers
//! post check-ins, check-outs and unlocks, and the standby is promoted. The API, relay and
//! worker must reconnect by themselves; no action the API acknowledged may be missing;
//! while it happened clients must get prompt 503s, not hang.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use latch_sim::{SimConfig, Simulator};
use latch_testkit::pgpair::{PgPair, SUPERUSER};
use latch_testkit::{NatsServer, TestDb, wait_until};

use crate::harness::{Readers, Stack, first_admin};

const DEADLINE: Duration = Duration::from_secs(90);
/// Longer than any answer may take: the API answers 503 within its request timeout (5 s).
const NO_HANG: Duration = Duration::from_secs(8);

#[tokio::test]
async fn the_roles_reconnect_to_a_promoted_standby_and_no_acknowledged_action_is_lost() {
    let pair = PgPair::start();
    let db = TestDb::migrated_on(&pair.hosts(), SUPERUSER).await;
    wait_until("the standby to stream synchronously", DEADLINE, || async {
        pair.synchronous().await.then_some(())
    })
    .await;
    let stack = Stack::on(db);
    let nats = NatsServer::start();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let api = stack.pipeline(&nats, &sim).await;
    let admin = first_admin(&stack.db, "failover test").await;
    let (door, key) = api.door_with_reader(&admin, "hq", "Main").await;
    let cards = api.granted_holders(&admin, &door, 8).await;

    let readers = Readers::start(&api, &key, &cards, Duration::from_millis(40));
    let before = readers.progressed(0, 100).await;
    // The primary goes. Until the standby is promoted (by an operator or the cluster
    // manager) there is nowhere to write: readers must be refused, promptly.
    pair.kill_primary();
    let killed = Instant::now();
    wait_until(
        "readers to be refused while there is no primary",
        DEADLINE,
        || async { (readers.seen().refused.len() >= 100).then_some(()) },
    )
    .await;
    pair.promote();
    let promoted = killed.elapsed();
    readers.progressed(before, 100).await;
    let recovered = killed.elapsed();
    let seen = readers.stop().await;

    // Every action the API acknowledged is in the promoted server, and everything committed
    // there reaches both sinks once, each holder's acknowledged events in order.
    let committed: HashSet<String> = stack
        .db
        .owner()
        .await
        .query("SELECT id::text FROM actions", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    let missing: Vec<&String> = seen
        .acknowledged
        .values()
        .flat_map(|(_, all)| all.iter())
        .filter(|id| !committed.contains(*id))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let punches = stack
        .count("SELECT count(*) FROM actions WHERE kind IN ('check_in', 'check_out')")
        .await as u64;
    wait_until("every committed event at both sinks", DEADLINE, || async {
        let stats = sim.stats().await;
        (stats.webhooks.effects == committed.len() as u64 && stats.legacy.effects == punches)
            .then_some(())
    })
    .await;
    seen.assert_holder_order(&sim.stats().await);
    let window = match (seen.refused.first(), seen.refused.last()) {
        (Some((_, first)), Some((_, last))) => *last - *first,
        _ => Duration::ZERO,
    };
    let statuses: BTreeMap<u16, usize> =
        seen.refused
            .iter()
            .fold(BTreeMap::new(), |mut counts, (status, _)| {
                *counts.entry(*status).or_default() += 1;
                counts
            });
    eprintln!(
        "{} actions acknowledged, {} committed; primary killed, standby promoted {promoted:?} \
         later; 100 more acknowledged {recovered:?} after the kill; refusals {statuses:?} \
         over {window:?}; slowest answer {:?}",
        seen.count(),
        committed.len(),
        seen.slowest
    );
    assert!(
        seen.refused.iter().all(|(status, _)| *status == 503),
        "refusals other than 503: {statuses:?}"
    );
    assert!(seen.slowest < NO_HANG, "an answer took {:?}", seen.slowest);
}

#[tokio::test]
async fn a_silent_first_server_in_the_url_leaves_time_to_reach_the_next() {
    // A server that vanished from the network: connecting to it is neither refused nor
    // answered. Made here by a listener that never accepts, whose accept queue is full, so
    // that the kernel drops further connection attempts unanswered.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let silent = socket.listen(1).unwrap();
    let mut queued = Vec::new();
    while let Ok(Ok(stream)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(silent.local_addr().unwrap()),
    )
    .await
    {
        queued.push(stream);
        assert!(queued.len() < 100, "the accept queue never filled");
    }
    let db = TestDb::new().await;
    let url = format!(
        "postgres://{}@{},{}/{}?target_session_attrs=read-write",
        latch_testkit::APP_LOGIN,
        silent.local_addr().unwrap(),
        db.hosts(),
        db.name
    );
    let pool = latch_core::db::pool(&latch_core::config::DatabaseConfig {
        connect_timeout: Duration::from_secs(4),
        ..latch_core::config::DatabaseConfig::with_url(latch_core::config::Secret::new(url))
    })
    .unwrap();
    let started = Instant::now();
    let client = pool
        .get()
        .await
        .expect("a connection through the second server");
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
