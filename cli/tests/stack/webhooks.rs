//! Webhook endpoints, end to end: endpoints created through the API, events from readers
//! through the relay to the worker, delivered to named subscribers of the simulator, which
//! verifies every signature with the reference `standardwebhooks` crate.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use latch_core::outbound::Policy;
use latch_sim::{SimConfig, Simulator, SubscriberFaults};
use latch_testkit::{NatsServer, wait_until};
use latch_worker::endpoints::EndpointsConfig;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Api, Stack, first_admin};

const DEADLINE: Duration = Duration::from_secs(60);
const ENDPOINTS: &str = "/v1/webhooks/endpoints";

/// API (endpoints may be on loopback), relay and an endpoint worker in this process.
struct Hooks {
    stack: Stack,
    nats: NatsServer,
    sim: Simulator,
    api: Api,
    admin: String,
    /// Stops the endpoint worker alone.
    worker: latch_core::shutdown::CancellationToken,
    /// Reader keys by site.
    readers: HashMap<&'static str, String>,
    /// The first worker's metrics.
    worker_metrics: prometheus::Registry,
}

/// The endpoints a worker delivers to (delivering or catching up), from its metrics.
fn serving(metrics: &prometheus::Registry) -> i64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&metrics.gather())
        .unwrap();
    ["delivering", "catching_up"]
        .iter()
        .filter_map(|state| {
            let prefix = format!("latch_webhook_endpoints{{state=\"{state}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.parse::<i64>().ok())
        })
        .sum()
}

impl Hooks {
    async fn start(config: EndpointsConfig) -> Hooks {
        if std::env::var("LATCH_TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
        }
        let stack = Stack::new().await;
        let nats = NatsServer::start();
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let api = stack.api_with(2, |api| {
            api.outbound = Policy::local();
            api.nats = Some(latch_core::nats::NatsConfig::for_url(nats.url()));
        });
        stack.relay(&nats).await;
        let (worker, worker_metrics) = stack.endpoint_worker(&nats, config).await;
        let admin = first_admin(&stack.db, "webhooks test").await;
        let mut hooks = Hooks {
            stack,
            nats,
            sim,
            api,
            admin,
            worker,
            worker_metrics,
            readers: HashMap::new(),
        };
        for site in ["hq", "lab"] {
            let door = hooks
                .created("/v1/doors", json!({"site": site, "name": "Main"}))
                .await;
            let reader = hooks
                .created(
                    "/v1/readers",
                    json!({"door_id": door["id"], "name": "Main reader"}),
                )
                .await;
            hooks
                .readers
                .insert(site, reader["key"].as_str().unwrap().to_owned());
        }
        hooks
    }

    fn local() -> EndpointsConfig {
        EndpointsConfig {
            refresh: Duration::from_millis(200),
            ..EndpointsConfig::with_policy(Policy::local())
        }
    }

    async fn created(&self, path: &str, body: Value) -> Value {
        self.api.created(&self.admin, path, body).await
    }

    /// An endpoint delivering to the simulator's subscriber `name`, which verifies with
    /// the endpoint's secret; answers its id.
    async fn endpoint(&self, name: &str, filter: Value) -> Uuid {
        let mut body = json!({"url": self.sim.subscriber_url(name), "description": name});
        if let (Some(body), Some(filter)) = (body.as_object_mut(), filter.as_object()) {
            body.extend(filter.clone());
        }
        let created = self.created(ENDPOINTS, body).await;
        self.sim
            .put_subscriber(name, &[created["secret"].as_str().unwrap()])
            .unwrap();
        created["id"].as_str().unwrap().parse().unwrap()
    }

    /// A holder with a card, granted every door.
    async fn holder(&self, card: &str) -> Uuid {
        let holder = self
            .created("/v1/holders", json!({"card_id": card, "name": card}))
            .await;
        let (_, doors) = self.api.get(&self.admin, "/v1/doors").await;
        for door in doors.as_array().unwrap() {
            self.created(
                "/v1/grants",
                json!({"holder_id": holder["id"], "door_id": door["id"]}),
            )
            .await;
        }
        holder["id"].as_str().unwrap().parse().unwrap()
    }

    /// Check-in, unlock, check-out at `site`, `rounds` times; answers the action ids.
    async fn traffic(&self, site: &str, card: &str, rounds: usize) -> Vec<Uuid> {
        let key = &self.readers[site];
        let mut ids = Vec::new();
        for _ in 0..rounds {
            for path in ["/v1/check-ins", "/v1/unlock", "/v1/check-outs"] {
                let response = self.api.post(key, path, json!({"card_id": card})).await;
                assert!(response.status().is_success(), "{path}");
                let body: Value = response.json().await.unwrap();
                ids.push(body["action_id"].as_str().unwrap().parse().unwrap());
            }
        }
        ids
    }

    /// (kind, site) of an action.
    async fn action(&self, id: Uuid) -> (String, Option<String>) {
        let row = self
            .stack
            .db
            .owner()
            .await
            .query_one("SELECT kind, site FROM actions WHERE id = $1", &[&id])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    fn applied(&self, name: &str) -> Vec<Uuid> {
        self.sim
            .subscriber_stats(name)
            .unwrap()
            .events
            .iter()
            .map(|e| e.id.parse().unwrap())
            .collect()
    }

    /// Waits until subscriber `name` has applied every one of `ids`.
    async fn delivered(&self, name: &str, ids: &[Uuid]) {
        wait_until(&format!("{name} receives its events"), DEADLINE, || async {
            let applied: HashSet<Uuid> = self.applied(name).into_iter().collect();
            ids.iter().all(|id| applied.contains(id)).then_some(())
        })
        .await;
    }

    async fn endpoint_state(&self, id: Uuid) -> Value {
        let (status, endpoint) = self
            .api
            .get(&self.admin, &format!("{ENDPOINTS}/{id}"))
            .await;
        assert_eq!(status, 200, "{endpoint}");
        endpoint
    }

    async fn patch(&self, id: Uuid, body: Value) -> Value {
        let response = self
            .api
            .http
            .patch(format!("{}{ENDPOINTS}/{id}", self.api.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn disabled(&self, id: Uuid) -> Value {
        wait_until("the endpoint is disabled", DEADLINE, || async {
            let endpoint = self.endpoint_state(id).await;
            endpoint["disabled_at"].is_string().then_some(endpoint)
        })
        .await
    }

    async fn count(&self, sql: &str) -> i64 {
        self.stack.count(sql).await
    }

    /// `latch args...` as an operator; answers (success, stdout, stderr).
    async fn latch(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_latch"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("USER", "test-operator")
            .env("LATCH_DATABASE_URL", self.stack.db.operator_url().expose())
            .env("LATCH_NATS_URL", self.nats.url())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

#[tokio::test]
async fn three_endpoints_get_exactly_their_events_once_in_holder_order_signed() {
    let h = Hooks::start(Hooks::local()).await;
    let ada = h.holder("ADA").await;
    let bob = h.holder("BOB").await;
    let all = h.endpoint("all", json!({})).await;
    let presence = h
        .endpoint("presence", json!({"kinds": ["check_in", "check_out"]}))
        .await;
    let lab = h.endpoint("lab", json!({"sites": ["lab"]})).await;
    let (ada_hq, bob_lab, ada_lab) = tokio::join!(
        h.traffic("hq", "ADA", 4),
        h.traffic("lab", "BOB", 4),
        h.traffic("lab", "ADA", 2),
    );
    let traffic: Vec<Uuid> = [&ada_hq, &bob_lab, &ada_lab]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let mut expected: HashMap<&str, Vec<Uuid>> = HashMap::new();
    for id in &traffic {
        let (kind, site) = h.action(*id).await;
        expected.entry("all").or_default().push(*id);
        if kind == "check_in" || kind == "check_out" {
            expected.entry("presence").or_default().push(*id);
        }
        if site.as_deref() == Some("lab") {
            expected.entry("lab").or_default().push(*id);
        }
    }
    // `all` also takes the creation of each endpoint (its own included: recorded as it
    // started).
    let created: Vec<Uuid> = h
        .stack
        .db
        .owner()
        .await
        .query(
            "SELECT id FROM actions WHERE kind = 'webhook_endpoint_created'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(created.len(), 3);
    expected.entry("all").or_default().extend(created);
    for (name, ids) in &expected {
        h.delivered(name, ids).await;
    }
    for (name, id) in [("all", all), ("presence", presence), ("lab", lab)] {
        let stats = h.sim.subscriber_stats(name).unwrap();
        let counters = &stats.counters;
        assert_eq!(counters.rejected_signature, 0, "{name}: {counters:?}");
        assert_eq!(counters.order_violations, 0, "{name}: {counters:?}");
        // Exactly its events, nothing recorded before it was created.
        let applied: HashSet<Uuid> = h.applied(name).into_iter().collect();
        let wanted: HashSet<Uuid> = expected[name].iter().copied().collect();
        if let Some(other) = applied.difference(&wanted).next() {
            let (kind, site) = h.action(*other).await;
            panic!("{name} received {kind} at {site:?}");
        }
        assert_eq!(counters.applied as usize, applied.len());

        // Every call is recorded (attempts are written in batches).
        let sql = format!(
            "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = '{id}' AND outcome = 'delivered'"
        );
        wait_until(&format!("{name}'s attempts recorded"), DEADLINE, || async {
            (h.count(&sql).await >= wanted.len() as i64).then_some(())
        })
        .await;
    }
    // One holder's events in commit order at every endpoint that gets them.
    for holder in [ada, bob] {
        let stats = h.sim.subscriber_stats("all").unwrap();
        let sequences: Vec<i64> = stats
            .events
            .iter()
            .filter(|e| e.holder_id.as_deref() == Some(holder.to_string().as_str()))
            .filter_map(|e| e.sequence)
            .collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    }
    // Progress is saved: the endpoint's position reaches the stream's end.
    wait_until("positions saved", DEADLINE, || async {
        (h.count("SELECT count(*) FROM webhook_endpoints WHERE position IS NULL")
            .await
            == 0)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_410_disables_the_endpoint_at_once_and_enabling_it_resumes_where_it_stopped() {
    let h = Hooks::start(Hooks::local()).await;
    h.holder("ADA").await;
    let id = h
        .endpoint(
            "crm",
            json!({"kinds": ["check_in", "check_out", "unlock_granted"]}),
        )
        .await;
    let first = h.traffic("hq", "ADA", 1).await;
    h.delivered("crm", &first).await;

    h.sim
        .set_subscriber_faults(
            "crm",
            SubscriberFaults {
                gone: true,
                ..SubscriberFaults::default()
            },
        )
        .unwrap();
    let while_gone = h.traffic("hq", "ADA", 2).await;
    let endpoint = h.disabled(id).await;
    let reason = endpoint["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("410"), "{reason}");
    // In the registry (and so on the stream), naming the endpoint, by no one.
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM actions WHERE kind = 'webhook_endpoint_disabled'
             AND endpoint_id = '{id}' AND actor_id IS NULL"
        ))
        .await,
        1
    );
    let gone_calls = h.sim.subscriber_stats("crm").unwrap().counters.answered["410"];
    assert_eq!(gone_calls, 1, "one 410 is enough");

    // Events go on while it is disabled; enabling delivers them, each once.
    let while_disabled = h.traffic("hq", "ADA", 2).await;
    h.sim
        .set_subscriber_faults("crm", SubscriberFaults::default())
        .unwrap();
    h.patch(id, json!({"disabled": false})).await;
    let all: Vec<Uuid> = [first, while_gone, while_disabled].concat();
    h.delivered("crm", &all).await;
    let stats = h.sim.subscriber_stats("crm").unwrap();
    assert_eq!(stats.counters.applied as usize, all.len());
    assert_eq!(stats.counters.order_violations, 0);
}

#[tokio::test]
async fn enabling_from_now_skips_what_was_routed_while_disabled() {
    let h = Hooks::start(Hooks::local()).await;
    h.holder("ADA").await;
    let id = h.endpoint("crm", json!({"kinds": ["check_in"]})).await;
    h.patch(id, json!({"disabled": true})).await;
    let skipped = h.traffic("hq", "ADA", 2).await;
    h.patch(id, json!({"disabled": false, "resume": "now"}))
        .await;
    let after = h.traffic("hq", "ADA", 2).await;
    let check_in = |ids: &[Uuid]| -> Vec<Uuid> { ids.iter().step_by(3).copied().collect() };
    h.delivered("crm", &check_in(&after)).await;
    let applied: HashSet<Uuid> = h.applied("crm").into_iter().collect();
    assert!(check_in(&skipped).iter().all(|id| !applied.contains(id)));
}

#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled() {
    let config = EndpointsConfig {
        disable_after: Duration::from_secs(2),
        ..Hooks::local()
    };
    let h = Hooks::start(config).await;
    h.holder("ADA").await;
    // Nothing listens there: every call is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let created = h
        .created(ENDPOINTS, json!({"url": url, "kinds": ["check_in"]}))
        .await;
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    h.traffic("hq", "ADA", 1).await;
    let endpoint = h.disabled(id).await;
    let reason = endpoint["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("no successful delivery since"), "{reason}");
    let failures = h
        .count(&format!(
            "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = '{id}'
             AND error = 'connection_failed'"
        ))
        .await;
    assert!(failures >= 1);
}

#[tokio::test]
async fn the_worker_refuses_at_delivery_an_address_its_policy_forbids() {
    // The API allowed loopback when the endpoint was made; the worker does not (its
    // policy is checked at every call, as for a name that resolves elsewhere today).
    let strict = EndpointsConfig {
        refresh: Duration::from_millis(200),
        ..EndpointsConfig::with_policy(Policy {
            allow_http: true,
            allowed: Vec::new(),
        })
    };
    let h = Hooks::start(strict).await;
    h.holder("ADA").await;
    let id = h.endpoint("inside", json!({"kinds": ["check_in"]})).await;
    // The same subscriber by a name that resolves to loopback: refused by the resolver.
    let by_name = h
        .created(
            ENDPOINTS,
            json!({
                "url": h.sim.subscriber_url("inside").replace("127.0.0.1", "localhost"),
                "kinds": ["check_in"],
            }),
        )
        .await;
    let by_name: Uuid = by_name["id"].as_str().unwrap().parse().unwrap();
    h.traffic("hq", "ADA", 1).await;
    for endpoint in [id, by_name] {
        wait_until("a refused attempt", DEADLINE, || async {
            (h.count(&format!(
                "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = '{endpoint}'
                 AND error = 'address_refused' AND status IS NULL"
            ))
            .await
                > 0)
            .then_some(())
        })
        .await;
    }
    assert_eq!(
        h.sim.subscriber_stats("inside").unwrap().counters.received,
        0
    );
}

#[tokio::test]
async fn a_recovery_delivers_again_with_the_original_ids_and_each_takes_effect_once() {
    let h = Hooks::start(Hooks::local()).await;
    h.holder("ADA").await;
    let id = h
        .endpoint("crm", json!({"kinds": ["check_in", "check_out"]}))
        .await;
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let sent = h.traffic("hq", "ADA", 3).await;
    let presence: Vec<Uuid> = sent
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 3 != 1)
        .map(|(_, id)| *id)
        .collect();
    h.delivered("crm", &presence).await;
    let response = h
        .api
        .post(
            &h.admin,
            &format!("{ENDPOINTS}/{id}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(response.status(), 202);
    wait_until("every event delivered again", DEADLINE, || async {
        let counters = h.sim.subscriber_stats("crm").unwrap().counters;
        (counters.duplicates == presence.len() as u64).then_some(counters)
    })
    .await;
    let counters = h.sim.subscriber_stats("crm").unwrap().counters;
    assert_eq!(counters.applied, presence.len() as u64, "one effect each");
    assert_eq!(counters.rejected_signature, 0);
    // The stats show it done: nothing pending, every call counted.
    let stats = wait_until("the recovery's progress saved", DEADLINE, || async {
        let (_, stats) = h
            .api
            .get(&h.admin, &format!("{ENDPOINTS}/{id}/stats"))
            .await;
        (stats["pending"] == 0 && stats["delivered"].as_i64() >= Some(2 * presence.len() as i64))
            .then_some(stats)
    })
    .await;
    assert_eq!(stats["breaker"], "closed", "{stats}");
    assert_eq!(stats["dead_letters"], 0, "{stats}");
    assert!(stats["position"].is_number() && stats["recover_since"].is_string());
    assert!(stats["oldest_pending_at"].is_null());
}

#[tokio::test]
async fn an_endpoints_dead_letters_are_its_own_and_replay_to_it_alone() {
    let h = Hooks::start(Hooks::local()).await;
    let ada = h.holder("ADA").await;
    let crm = h.endpoint("crm", json!({"kinds": ["check_in"]})).await;
    let hr = h.endpoint("hr", json!({"kinds": ["check_in"]})).await;
    // crm refuses ADA's events for good (422); hr takes them.
    h.sim
        .set_subscriber_faults(
            "crm",
            SubscriberFaults {
                sink: latch_sim::SinkFaults {
                    reject: latch_sim::Reject {
                        holders: vec![ada.to_string()],
                        ..latch_sim::Reject::default()
                    },
                    ..latch_sim::SinkFaults::default()
                },
                ..SubscriberFaults::default()
            },
        )
        .unwrap();
    let sent = h.traffic("hq", "ADA", 1).await;
    let check_in = sent[0];
    h.delivered("hr", &[check_in]).await;
    let sink = format!("endpoint.{crm}");
    let listed = wait_until("crm's dead letter", DEADLINE, || async {
        let (ok, out, _) = h.latch(&["dlq", "list", "--sink", &sink]).await;
        (ok && out.contains(&check_in.to_string())).then_some(out)
    })
    .await;
    assert!(listed.contains("422"), "{listed}");
    let (_, others, _) = h
        .latch(&["dlq", "list", "--sink", &format!("endpoint.{hr}")])
        .await;
    assert!(!others.contains(&check_in.to_string()), "{others}");

    h.sim
        .set_subscriber_faults("crm", SubscriberFaults::default())
        .unwrap();
    // ADA checked out since: the stale-replay guard refuses, as for the webhook sink.
    let (ok, _, err) = h
        .latch(&["dlq", "replay", "--all", "--sink", &sink, "--yes"])
        .await;
    assert!(!ok && err.contains("checked out later"), "{err}");
    let (ok, out, err) = h
        .latch(&[
            "dlq", "replay", "--all", "--sink", &sink, "--yes", "--force",
        ])
        .await;
    assert!(ok, "{out}\n{err}");
    h.delivered("crm", &[check_in]).await;
    // hr had it already and is not sent it again.
    let hr_stats = h.sim.subscriber_stats("hr").unwrap().counters;
    assert_eq!((hr_stats.applied, hr_stats.duplicates), (1, 0));
    assert_eq!(h.sim.subscriber_stats("crm").unwrap().counters.applied, 1);
    let (_, left, _) = h.latch(&["dlq", "list", "--sink", &sink]).await;
    assert!(!left.contains(&check_in.to_string()), "{left}");
}

#[tokio::test]
async fn a_secret_rotated_under_traffic_fails_no_verification_at_a_receiver_that_switches() {
    let h = Hooks::start(Hooks::local()).await;
    h.holder("ADA").await;
    let id = h.endpoint("rot", json!({})).await;
    let rotated = async {
        // Some traffic signed with the first secret alone.
        let before = h.traffic("hq", "ADA", 3).await;
        h.delivered("rot", &before).await;
        let response = h
            .api
            .post(
                &h.admin,
                &format!("{ENDPOINTS}/{id}/secret:rotate"),
                json!({"grace_secs": 600}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let at = time::OffsetDateTime::now_utc();
        let secret = body["secret"].as_str().unwrap().to_owned();
        // latch signs with both once the worker has read the endpoint again (within
        // LATCH_WEBHOOKS_REFRESH, 200 ms here): a call made a second later shows it.
        wait_until(
            "a call after the worker read the rotation",
            DEADLINE,
            || async {
                let calls = h
                    .stack
                    .db
                    .owner()
                    .await
                    .query_one(
                        "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $1
                     AND attempted_at > $2::timestamptz + interval '1 second'",
                        &[&id, &at],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0);
                (calls > 0).then_some(())
            },
        )
        .await;
        // The receiver switches to the new secret alone, in the middle of the traffic.
        h.sim.put_subscriber("rot", &[&secret]).unwrap();
    };
    let (_, during) = tokio::join!(rotated, async {
        // Paced by the requests themselves; it outlasts the rotation's second.
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.extend(h.traffic("hq", "ADA", 1).await);
        }
        ids
    });
    let after = h.traffic("hq", "ADA", 3).await;
    h.delivered("rot", &[during, after].concat()).await;
    let counters = h.sim.subscriber_stats("rot").unwrap().counters;
    assert_eq!(counters.rejected_signature, 0, "{counters:?}");
    assert_eq!(counters.order_violations, 0, "{counters:?}");
    // The registry says when, by whom.
    assert_eq!(
        h.count(&format!(
            "SELECT count(*) FROM actions WHERE kind = 'webhook_secret_rotated'
             AND endpoint_id = '{id}' AND actor_id IS NOT NULL"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn endpoints_down_hanging_or_throttling_do_not_hold_up_a_healthy_one() {
    let config = EndpointsConfig {
        timeout: Duration::from_secs(2),
        ..Hooks::local()
    };
    let h = Hooks::start(config).await;
    h.holder("ADA").await;
    let healthy = h.endpoint("healthy", json!({})).await;
    let hanging = h.endpoint("hanging", json!({})).await;
    let throttling = h.endpoint("throttling", json!({})).await;
    for (name, faults) in [
        (
            "hanging",
            latch_sim::SinkFaults {
                hang: true,
                ..latch_sim::SinkFaults::default()
            },
        ),
        (
            "throttling",
            latch_sim::SinkFaults {
                rate_limit: Some(latch_sim::RateLimit {
                    per_second: 0,
                    retry_after_secs: 30,
                }),
                ..latch_sim::SinkFaults::default()
            },
        ),
    ] {
        h.sim
            .set_subscriber_faults(
                name,
                SubscriberFaults {
                    sink: faults,
                    ..SubscriberFaults::default()
                },
            )
            .unwrap();
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let down: Uuid = h.created(ENDPOINTS, json!({"url": refused_url})).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let sent = h.traffic("hq", "ADA", 10).await;
    h.delivered("healthy", &sent).await;
    // The faulty ones got none of it, and were called (each is failing its own way).
    for name in ["hanging", "throttling"] {
        assert_eq!(h.sim.subscriber_stats(name).unwrap().counters.applied, 0);
    }
    wait_until("every faulty endpoint tried", DEADLINE, || async {
        let tried = h
            .count(&format!(
                "SELECT count(DISTINCT endpoint_id) FROM webhook_attempts
                 WHERE endpoint_id IN ('{down}', '{throttling}') AND outcome = 'retry'"
            ))
            .await;
        (tried == 2).then_some(())
    })
    .await;
    // The throttled endpoint honoured Retry-After (30 s): the calls that were already under
    // way when the first 429 came (one per lane at most), then a pause for the endpoint.
    let throttled = h
        .sim
        .subscriber_stats("throttling")
        .unwrap()
        .counters
        .answered
        .get("429")
        .copied()
        .unwrap_or(0);
    assert!(
        (1..=4).contains(&throttled),
        "{throttled} calls answered 429"
    );
    // The healthy endpoint's calls were answered at once: none waited on another's.
    let slowest = h
        .count(&format!(
            "SELECT COALESCE(max(latency_ms), 0)::bigint FROM webhook_attempts WHERE endpoint_id = '{healthy}'"
        ))
        .await;
    assert!(slowest < 1000, "{slowest} ms");
    let _ = hanging;
}

#[tokio::test]
async fn one_worker_delivers_to_the_endpoints_and_another_takes_over_when_it_stops() {
    let h = Hooks::start(Hooks::local()).await;
    h.holder("ADA").await;
    let _all = h
        .endpoint(
            "all",
            json!({"kinds": ["check_in", "unlock_granted", "check_out"]}),
        )
        .await;
    let first = h.traffic("hq", "ADA", 3).await;
    h.delivered("all", &first).await;
    // A second worker with the database: it stands by while the first delivers. Were it to
    // deliver too, every event from here on would reach the subscriber twice.
    let _second = h.stack.endpoint_worker(&h.nats, Hooks::local()).await;
    let standby = h.traffic("hq", "ADA", 5).await;
    h.delivered("all", &standby).await;
    let stats = h.sim.subscriber_stats("all").unwrap().counters;
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    assert_eq!(stats.applied, (first.len() + standby.len()) as u64);
    // The first stops (its lock goes with its connection): the second takes over, from the
    // cursor the first saved.
    h.worker.cancel();
    let after = h.traffic("hq", "ADA", 5).await;
    h.delivered("all", &after).await;
    let stats = h.sim.subscriber_stats("all").unwrap().counters;
    assert_eq!(
        stats.applied,
        (first.len() + standby.len() + after.len()) as u64
    );
    assert_eq!(stats.order_violations, 0, "{stats:?}");
    assert_eq!(stats.rejected_signature, 0, "{stats:?}");
}

#[tokio::test]
async fn partitioned_workers_share_the_endpoints_and_one_takes_them_all_when_the_other_stops() {
    const ENDPOINTS: i64 = 16;
    let sharded = || EndpointsConfig {
        sharding: Some(latch_worker::endpoints::shards::Sharding {
            shards: 8,
            lease: Duration::from_secs(2),
            replicas: 1,
        }),
        ..Hooks::local()
    };
    let h = Hooks::start(sharded()).await;
    h.holder("ADA").await;
    let names: Vec<String> = (0..ENDPOINTS).map(|i| format!("shard-{i}")).collect();
    for name in &names {
        h.endpoint(
            name,
            json!({"kinds": ["check_in", "unlock_granted", "check_out"]}),
        )
        .await;
    }
    let (_second, second) = h.stack.endpoint_worker(&h.nats, sharded()).await;
    // Both deliver, each to the endpoints of its shards, every endpoint by one of them.
    // (16 endpoints on 8 shards: that all of them fall in one worker's shards is a chance
    // of 2 in 65,536.)
    wait_until(
        "the two workers to share the endpoints",
        DEADLINE,
        || async {
            let (a, b) = (serving(&h.worker_metrics), serving(&second));
            (a > 0 && b > 0 && a + b == ENDPOINTS).then_some(())
        },
    )
    .await;
    let shared = h.traffic("hq", "ADA", 3).await;
    for name in &names {
        h.delivered(name, &shared).await;
    }
    // The first stops: the second takes its shards over, from the cursors it saved.
    h.worker.cancel();
    wait_until(
        "the second worker to take every endpoint",
        DEADLINE,
        || async { (serving(&second) == ENDPOINTS).then_some(()) },
    )
    .await;
    let after = h.traffic("hq", "ADA", 3).await;
    for name in &names {
        h.delivered(name, &after).await;
        let stats = h.sim.subscriber_stats(name).unwrap().counters;
        assert_eq!(
            stats.applied,
            (shared.len() + after.len()) as u64,
            "{name}: {stats:?}"
        );
        assert_eq!(stats.order_violations, 0, "{name}: {stats:?}");
        assert_eq!(stats.rejected_signature, 0, "{name}: {stats:?}");
        // One deliverer per endpoint at any time: nothing reached it twice.
        assert_eq!(stats.duplicates, 0, "{name}: {stats:?}");
    }
}
