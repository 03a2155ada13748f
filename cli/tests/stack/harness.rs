//! What the scenarios start, one piece at a time, and how they talk to it.
//!
//! A [`Stack`] is a database of its own and a stop token; a test adds what it needs —
//! the API ([`Stack::api`]), the relay ([`Stack::relay`]), the worker ([`Stack::worker`]),
//! the first administrator ([`first_admin`]) — and everything it started stops when the
//! stack is dropped. Tests that run `latch` as separate processes (observability,
//! takeover) share [`first_admin`] and the [`Api`] client with those that run it in
//! process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latch_core::config::{DatabaseConfig, HttpConfig};
use latch_core::credentials::{self, CredentialKind};
use latch_core::nats::NatsConfig;
use latch_core::shutdown::CancellationToken;
use latch_relay::{Relay, RelayConfig};
use latch_sim::Simulator;
use latch_testkit::{NatsServer, TestDb, wait_until};
use latch_worker::Worker;
use latch_worker::config::{RetryConfig, SinkConfig, SinkKind};
use serde_json::{Value, json};
use uuid::Uuid;

/// A database of this test's own, and what the test started on it.
pub struct Stack {
    pub db: TestDb,
    stop: CancellationToken,
    registry: prometheus::Registry,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Stack {
    pub async fn new() -> Stack {
        Stack::on(TestDb::new().await)
    }

    /// A stack on this database.
    pub fn on(db: TestDb) -> Stack {
        // reqwest is built without a default TLS provider; another test may have
        // installed it already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Stack {
            db,
            stop: CancellationToken::new(),
            registry: prometheus::Registry::new(),
        }
    }

    /// The API in this process on a port of its own, with `workers` HTTP workers.
    pub fn api(&self, workers: usize) -> Api {
        self.api_with(workers, |_| {})
    }

    /// The API with its event feed reading `nats`'s stream.
    pub fn api_with_feed(&self, nats: &NatsServer) -> Api {
        self.api_with(2, |config| {
            config.nats = Some(NatsConfig::for_url(nats.url()))
        })
    }

    /// The API, with its settings changed by `adjust`; [`Api::stop`] stops this one alone.
    pub fn api_with(&self, workers: usize, adjust: impl FnOnce(&mut latch_api::ApiConfig)) -> Api {
        // These scenarios drive load through a few readers; the limits have tests of
        // their own (api/tests/api/limits.rs).
        let mut config = latch_api::ApiConfig {
            rate_limits: latch_api::RateLimits::OFF,
            ..latch_api::ApiConfig::default()
        };
        adjust(&mut config);
        let api = latch_api::Application::build(
            HttpConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                body_limit_bytes: 64 * 1024,
                workers,
                request_timeout: Duration::from_secs(5),
            },
            &DatabaseConfig {
                pool_size: 4,
                ..DatabaseConfig::with_url(self.db.app_url())
            },
            prometheus::Registry::new(),
            config,
        )
        .unwrap();
        let base = format!("http://127.0.0.1:{}", api.port());
        let stop = self.stop.child_token();
        let running = tokio::spawn(api.run_until(stop.clone()));
        Api {
            stop: Some((stop, running)),
            ..Api::new(base)
        }
    }

    /// The relay in this process, polling every 200 ms.
    pub async fn relay(&self, nats: &impl Nats) {
        let pool = latch_core::db::pool(&DatabaseConfig {
            pool_size: 2,
            ..DatabaseConfig::with_url(self.db.relay_url())
        })
        .unwrap();
        let relay = Relay::build(
            RelayConfig {
                poll_interval: Duration::from_millis(200),
                ..RelayConfig::default()
            },
            &nats.config(),
            self.db.relay_url(),
            pool,
            &self.registry,
            &self.stop,
        )
        .await
        .unwrap();
        tokio::spawn(relay.run(self.stop.clone()));
    }

    /// The whole pipeline in this process: the API (2 HTTP workers), the relay, and a worker
    /// delivering to both of `sim`'s sinks with the default settings.
    pub async fn pipeline(&self, nats: &impl Nats, sim: &Simulator) -> Api {
        let api = self.api(2);
        self.relay(nats).await;
        self.worker(nats, sim, |_| {}, RetryConfig::default()).await;
        api
    }

    /// The worker in this process, delivering to both of `sim`'s sinks; `adjust` changes
    /// each sink's settings from their defaults.
    pub async fn worker(
        &self,
        nats: &impl Nats,
        sim: &Simulator,
        adjust: impl Fn(&mut SinkConfig),
        retry: RetryConfig,
    ) {
        let sink = |kind, url: String, secret: &str| {
            let mut config = SinkConfig::new(kind, url, secret);
            adjust(&mut config);
            config
        };
        let worker = Worker::build(
            &nats.config(),
            vec![
                sink(
                    SinkKind::Legacy,
                    sim.punch_url(),
                    latch_sim::DEFAULT_TNA_KEY,
                ),
                sink(
                    SinkKind::Webhooks,
                    sim.webhook_url(),
                    latch_sim::DEFAULT_WEBHOOK_SECRET,
                ),
            ],
            retry,
            &self.registry,
        )
        .await
        .unwrap();
        tokio::spawn(worker.run(self.stop.clone()));
    }

    /// A worker in this process that delivers to the webhook endpoints only (from the
    /// database, as the worker's login), with `config`.
    /// Answers what stops it and its metrics.
    pub async fn endpoint_worker(
        &self,
        nats: &NatsServer,
        config: latch_worker::endpoints::EndpointsConfig,
    ) -> (CancellationToken, prometheus::Registry) {
        let nats = NatsConfig::for_url(nats.url());
        // A registry of its own: a test may run two of them, as two processes would.
        let registry = prometheus::Registry::new();
        let worker = Worker::build(&nats, Vec::new(), config.retry, &registry)
            .await
            .unwrap()
            .with_endpoints(
                &nats,
                &DatabaseConfig {
                    pool_size: 4,
                    ..DatabaseConfig::with_url(self.db.worker_url())
                },
                config,
                &registry,
            )
            .await
            .unwrap();
        // Its own token, so that a test can stop this worker alone (the stack's stops it too).
        let stop = self.stop.child_token();
        tokio::spawn(worker.run(stop.clone()));
        (stop, registry)
    }

    /// Stops what this stack started (API, relay, worker), as a shutdown would.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// `SELECT count(*) ...` as the owner.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .owner()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// The first administrator, made the way `latch admins add` makes one; answers its token.
pub async fn first_admin(db: &TestDb, name: &str) -> String {
    token(db, name, &["admin"], None).await
}

/// A token with these scopes and sites (`None`: every site), made as `latch tokens add`
/// makes one.
pub async fn token(db: &TestDb, name: &str, scopes: &[&str], sites: Option<&[&str]>) -> String {
    let token = credentials::generate(CredentialKind::AdminToken);
    let scopes: Vec<&str> = scopes.to_vec();
    let sites: Option<Vec<&str>> = sites.map(<[&str]>::to_vec);
    db.owner()
        .await
        .execute(
            "INSERT INTO admins (id, name, token_hash, scopes, sites) VALUES ($1, $2, $3, $4, $5)",
            &[&Uuid::now_v7(), &name, &token.hash, &scopes, &sites],
        )
        .await
        .unwrap();
    token.plain.expose().clone()
}

/// The messages in one of `nats`'s streams (0 when it does not exist).
pub async fn stream_messages(nats: &NatsServer, stream: &str) -> u64 {
    let client = async_nats::connect(nats.url()).await.unwrap();
    match async_nats::jetstream::new(client).get_stream(stream).await {
        Ok(stream) => stream.get_info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

/// The API's HTTP surface, as a reader or an administrator uses it.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    /// For an API this test started in process: what stops it, and its task.
    stop: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            http: reqwest::Client::new(),
            base,
            stop: None,
        }
    }

    /// Stops this API (started by [`Stack::api_with`]) as a shutdown would, and waits until
    /// it has.
    pub async fn stop(self) {
        let (stop, running) = self.stop.expect("an API this test started");
        stop.cancel();
        running.await.unwrap().unwrap();
    }

    /// GETs `path` with `token`; answers the status and the JSON body.
    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` with `token`.
    pub async fn post(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` and expects `201 Created`; answers the JSON body.
    pub async fn created(&self, token: &str, path: &str, body: Value) -> Value {
        self.answered(201, token, path, body).await
    }

    /// A door made through the API with a reader enrolled at it: (the door, the reader's key).
    pub async fn door_with_reader(&self, admin: &str, site: &str, name: &str) -> (Value, String) {
        let door = self
            .created(admin, "/v1/doors", json!({"site": site, "name": name}))
            .await;
        let reader = self
            .created(
                admin,
                "/v1/readers",
                json!({"door_id": door["id"], "name": format!("{name} reader")}),
            )
            .await;
        (door, reader["key"].as_str().unwrap().to_owned())
    }

    /// An unlock that must be answered (granted or denied).
    pub async fn unlock(&self, reader_key: &str, card: &str) -> Value {
        self.answered(200, reader_key, "/v1/unlock", json!({"card_id": card}))
            .await
    }

    async fn answered(&self, status: u16, token: &str, path: &str, body: Value) -> Value {
        let response = self.post(token, path, body).await;
        let actual = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(actual, status, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// A NATS server or cluster the roles connect to.
pub trait Nats {
    fn config(&self) -> NatsConfig;
}

impl Nats for NatsServer {
    fn config(&self) -> NatsConfig {
        NatsConfig::for_url(self.url())
    }
}

impl Nats for latch_testkit::NatsCluster {
    /// Every node's URL; streams with 3 replicas.
    fn config(&self) -> NatsConfig {
        NatsConfig {
            replicas: 3,
            ..NatsConfig::for_url(self.url())
        }
    }
}

impl Api {
    /// `n` holders with cards `CARD-0`, `CARD-1`, …, each granted `door`: (card, holder id).
    pub async fn granted_holders(
        &self,
        admin: &str,
        door: &Value,
        n: usize,
    ) -> Vec<(String, String)> {
        let mut cards = Vec::with_capacity(n);
        for i in 0..n {
            let card = format!("CARD-{i}");
            let holder = self
                .created(
                    admin,
                    "/v1/holders",
                    json!({"card_id": card, "name": format!("Holder {i}")}),
                )
                .await;
            self.created(
                admin,
                "/v1/grants",
                json!({"holder_id": holder["id"], "door_id": door["id"]}),
            )
            .await;
            cards.push((card, holder["id"].as_str().unwrap().to_owned()));
        }
        cards
    }
}

/// What simulated readers saw: per holder the action ids the API acknowledged, in order
/// (legacy's share, all); every refusal's status (0: no answer within 30 s) and when; the
/// slowest answer.
#[derive(Default, Clone)]
pub struct Seen {
    pub acknowledged: HashMap<String, (Vec<String>, Vec<String>)>,
    pub refused: Vec<(u16, Instant)>,
    pub slowest: Duration,
}

impl Seen {
    /// Actions acknowledged in all.
    pub fn count(&self) -> usize {
        self.acknowledged.values().map(|(_, all)| all.len()).sum()
    }

    /// Asserts that each holder's acknowledged events reached each sink in the order the
    /// API acknowledged them (other events of theirs, if any, left out).
    pub fn assert_holder_order(&self, stats: &latch_sim::Stats) {
        let only = |applied: &[String], wanted: &[String]| -> Vec<String> {
            applied
                .iter()
                .filter(|id| wanted.contains(id))
                .cloned()
                .collect()
        };
        for (holder, (punches, all)) in &self.acknowledged {
            assert_eq!(
                &only(stats.legacy.order_of(holder), punches),
                punches,
                "legacy order"
            );
            assert_eq!(
                &only(stats.webhooks.order_of(holder), all),
                all,
                "webhook order"
            );
        }
    }
}

/// Readers at one door: for each card in turn a check-in, an unlock and a check-out, one
/// request per `pace`, the cards at once, until [`Readers::stop`].
pub struct Readers {
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    pub fn start(api: &Api, key: &str, cards: &[(String, String)], pace: Duration) -> Readers {
        let stop = CancellationToken::new();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let tasks = cards
            .iter()
            .cloned()
            .map(|(card, holder)| {
                let (stop, seen) = (stop.clone(), seen.clone());
                let (base, key) = (api.base.clone(), key.to_owned());
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut step = 0;
                    while !stop.is_cancelled() {
                        let path = ["/v1/check-ins", "/v1/unlock", "/v1/check-outs"][step % 3];
                        let sent = Instant::now();
                        let response = http
                            .post(format!("{base}{path}"))
                            .bearer_auth(&key)
                            .json(&json!({"card_id": card}))
                            .timeout(Duration::from_secs(30))
                            .send()
                            .await;
                        let took = sent.elapsed();
                        let answer = match response {
                            Ok(response) if response.status().is_success() => {
                                let body: Value = response.json().await.unwrap();
                                Ok(body["action_id"].as_str().unwrap().to_owned())
                            }
                            Ok(response) => Err(response.status().as_u16()),
                            Err(_) => Err(0),
                        };
                        {
                            let mut seen = seen.lock().unwrap();
                            seen.slowest = seen.slowest.max(took);
                            match answer {
                                Ok(id) => {
                                    let (punches, all) =
                                        seen.acknowledged.entry(holder.clone()).or_default();
                                    if path != "/v1/unlock" {
                                        punches.push(id.clone());
                                    }
                                    all.push(id);
                                    step += 1;
                                }
                                Err(status) => seen.refused.push((status, Instant::now())),
                            }
                        }
                        tokio::time::sleep(pace).await;
                    }
                })
            })
            .collect();
        Readers { seen, stop, tasks }
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `more` actions beyond `from` were acknowledged; answers the count.
    pub async fn progressed(&self, from: usize, more: usize) -> usize {
        wait_until(
            "readers to be answered",
            Duration::from_secs(90),
            || async {
                let now = self.seen().count();
                (now >= from + more).then_some(now)
            },
        )
        .await
    }

    /// Stops the readers; answers what they saw.
    pub async fn stop(self) -> Seen {
        self.stop.cancel();
        let seen = self.seen.clone();
        for task in self.tasks {
            task.await.unwrap();
        }
        seen.lock().unwrap().clone()
    }
}
