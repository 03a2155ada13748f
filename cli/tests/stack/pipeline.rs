//! The whole pipeline, end to end: reader requests through the real API, relay and worker
//! to the simulated sinks, counting at every stage.

use std::collections::HashMap;
use std::time::Duration;

use latch_sim::{SimConfig, Simulator};
use latch_testkit::{NatsServer, wait_until};
use serde_json::{Value, json};

use crate::harness::{Api, Stack, first_admin, stream_messages};

const DEADLINE: Duration = Duration::from_secs(60);

/// API, relay and worker in this process; the worker delivers to both simulated sinks.
struct Pipeline {
    stack: Stack,
    nats: NatsServer,
    sim: Simulator,
    api: Api,
    admin_token: String,
}

impl Pipeline {
    async fn start() -> Pipeline {
        let stack = Stack::new().await;
        let nats = NatsServer::start();
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let api = stack.pipeline(&nats, &sim).await;
        let admin_token = first_admin(&stack.db, "pipeline test").await;
        Pipeline {
            stack,
            nats,
            sim,
            api,
            admin_token,
        }
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.api.post(token, path, body).await
    }

    async fn admin(&self, path: &str, body: Value) -> Value {
        self.api.created(&self.admin_token, path, body).await
    }

    async fn count(&self, sql: &str) -> i64 {
        self.stack.count(sql).await
    }

    async fn stream_messages(&self) -> u64 {
        stream_messages(&self.nats, latch_core::nats::EVENTS_STREAM).await
    }
}

#[tokio::test]
async fn reader_requests_reach_every_routed_sink_once_in_holder_order() {
    let p = Pipeline::start().await;
    let door = p
        .admin("/v1/doors", json!({"site": "hq", "name": "Main"}))
        .await;
    let reader = p
        .admin(
            "/v1/readers",
            json!({"door_id": door["id"], "name": "Main reader"}),
        )
        .await;
    let key = reader["key"].as_str().unwrap().to_owned();
    let mut cards = Vec::new();
    for n in 0..5 {
        let card = format!("CARD-{n}");
        let holder = p
            .admin(
                "/v1/holders",
                json!({"card_id": card, "name": format!("Holder {n}")}),
            )
            .await;
        p.admin(
            "/v1/grants",
            json!({"holder_id": holder["id"], "door_id": door["id"]}),
        )
        .await;
        cards.push((card, holder["id"].as_str().unwrap().to_owned()));
    }
    let actions_before = p.count("SELECT count(*) FROM actions").await;

    // Readers: per card in sequence (check-in, unlock, check-out, ...), cards concurrently.
    let per_card = 6;
    let sends = cards.iter().map(|(card, _)| {
        let (p, key) = (&p, &key);
        async move {
            let mut ids = Vec::new();
            for step in 0..per_card {
                let path = ["/v1/check-ins", "/v1/unlock", "/v1/check-outs"][step % 3];
                let response = p.post(path, key, json!({"card_id": card})).await;
                assert!(response.status().is_success());
                let body: Value = response.json().await.unwrap();
                ids.push((path, body["action_id"].as_str().unwrap().to_owned()));
            }
            ids
        }
    });
    let sent: Vec<Vec<(&str, String)>> = futures::future::join_all(sends).await;
    let requests = (cards.len() * per_card) as i64;
    assert_eq!(
        p.count("SELECT count(*) FROM actions").await - actions_before,
        requests
    );

    let total_events = p.count("SELECT count(*) FROM actions").await as u64;
    let punches = sent
        .iter()
        .flatten()
        .filter(|(path, _)| *path != "/v1/unlock")
        .count() as u64;
    wait_until("every event delivered", DEADLINE, || async {
        let stats = p.sim.stats().await;
        (stats.webhooks.effects == total_events && stats.legacy.effects == punches).then_some(())
    })
    .await;
    // committed = in the stream = delivered + dead-lettered (none here), no duplicate effect
    assert_eq!(p.stream_messages().await, total_events);
    assert_eq!(p.count("SELECT count(*) FROM outbox").await, 0);
    let stats = p.sim.stats().await;
    assert_eq!(stats.legacy.duplicates + stats.webhooks.duplicates, 0);
    for ((_, holder), ids) in cards.iter().zip(&sent) {
        let punches: Vec<String> = ids
            .iter()
            .filter(|(path, _)| *path != "/v1/unlock")
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(
            stats.legacy.order_of(holder),
            punches.as_slice(),
            "legacy order"
        );
        let reader_events: Vec<&String> = stats
            .webhooks
            .order_of(holder)
            .iter()
            .filter(|id| ids.iter().any(|(_, sent)| sent == *id))
            .collect();
        let expected: Vec<&String> = ids.iter().map(|(_, id)| id).collect();
        assert_eq!(reader_events, expected, "webhook order");
    }
}

#[tokio::test]
async fn one_trace_runs_from_the_reader_to_the_sinks() {
    let p = Pipeline::start().await;
    let door = p
        .admin("/v1/doors", json!({"site": "hq", "name": "Main"}))
        .await;
    let reader = p
        .admin("/v1/readers", json!({"door_id": door["id"], "name": "R"}))
        .await;
    p.admin("/v1/holders", json!({"card_id": "ADA", "name": "Ada"}))
        .await;
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = p
        .api
        .http
        .post(format!("{}/v1/check-ins", p.api.base))
        .bearer_auth(reader["key"].as_str().unwrap())
        .header("traceparent", incoming)
        .json(&json!({"card_id": "ADA"}))
        .send()
        .await
        .unwrap();
    let traceparent = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    assert_eq!(
        trace_id, "0af7651916cd43dd8448eb211c80319c",
        "the caller's trace continues"
    );
    let body: Value = response.json().await.unwrap();
    let event = body["action_id"].as_str().unwrap().to_owned();

    let received: HashMap<&str, String> = wait_until("both sinks", DEADLINE, || async {
        let stats = p.sim.stats().await;
        let legacy = stats.legacy.events.get(&event)?.traceparent.clone()?;
        let webhooks = stats.webhooks.events.get(&event)?.traceparent.clone()?;
        Some(HashMap::from([("legacy", legacy), ("webhooks", webhooks)]))
    })
    .await;
    for (sink, header) in received {
        assert_eq!(
            header.split('-').nth(1),
            Some(trace_id.as_str()),
            "{sink} got another trace: {header}"
        );
    }
}
