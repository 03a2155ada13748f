//! The Grafana dashboards and the Prometheus alert rules, evaluated by a real Prometheus
//! scraping a real latch.
//!
//! # What runs
//!
//! PostgreSQL (a database of its own, [`TestDb`]), a nats-server ([`NatsServer`]), the
//! simulated legacy system and webhook receiver ([`Simulator`], in process), `latch api`,
//! `latch relay` and `latch worker` as processes of the binary under test, and Prometheus:
//! the binary named by `LATCH_PROMETHEUS_BIN` (`deploy/local/test.sh` installs Debian's
//! package and sets it; without it this test fails, it does not skip). Prometheus gets the
//! shipped scrape configuration, `deploy/prometheus/prometheus.yml`, with its placeholder
//! targets replaced by the real addresses and its intervals by one second, and the shipped
//! rules, `deploy/prometheus/alerts.yml`.
//!
//! # What happens
//!
//! One scenario, in named phases (the methods of `Scenario`, called in order by the test).
//! So that every metric the dashboards and rules use exists and moves: NATS is stopped while
//! an action waits in the outbox (the relay counts an error) and started again; an
//! administrator (made in SQL, as `latch admins add` does) creates a door, its reader, two
//! holders and their grants through the API; the reader sends granted and denied unlocks,
//! check-ins and check-outs; the legacy sink rejects one holder, so one event is
//! dead-lettered.
//!
//! # What is checked
//!
//! - Every `expr` of every target of every panel of every dashboard in `grafana/dashboards`
//!   is a valid query and returns at least one series. Grafana's own variables
//!   (`$__rate_interval`, `$__interval`, `$__range`) are replaced by a window longer than the
//!   test, and no other variable may appear.
//! - Every alert rule, as Prometheus loaded it (`/api/v1/rules`), has a `severity` label and
//!   `summary` and `description` annotations, and Prometheus evaluates it without error
//!   (health `ok`). Its expression is a valid query, and every vector selector in it (the
//!   metric name with its label matchers, e.g.
//!   `latch_http_request_duration_seconds_bucket{route="/v1/unlock"}`) returns at least one
//!   series.
//! - What Prometheus shows agrees with what happened: every recorded action was acknowledged
//!   by the stream once (new or duplicate), one event was dead-lettered, the unlocks are
//!   counted by decision.
//! - The outbox-age alert's own expression (its threshold lowered to 3 s) fires on what
//!   Prometheus scrapes while NATS is down and an action waits in the outbox.
//!
//! Why selectors, for the rules: an alert's expression ends in a comparison (`> 600`,
//! `== 0`), so it rightly returns nothing while all is well, and asking it for series would
//! ask the alert to fire. What a healthy stack can prove is that nothing in the expression
//! names a metric, a label or a label value that does not exist — the mistake that makes a
//! rule silently never fire. That each rule fires on the right data, and only then, is
//! proved by its unit tests (`deploy/prometheus/alerts_test.yml`, `promtool test rules`,
//! run by `deploy/prometheus/check.sh`).
//!
//! - Span export (OpenTelemetry over OTLP/HTTP, to the [`OtlpCollector`] the roles are
//!   pointed at with `OTEL_EXPORTER_OTLP_ENDPOINT`): one check-in's trace holds the API's
//!   server span (child of the caller's), one delivery span per sink (children of the API's)
//!   and each sink was called with its delivery span as parent; a dead-lettered delivery's
//!   span has an error status.
//!
//! Waiting is polling with deadlines. Ports are picked by binding port 0; since the roles
//! and Prometheus bind them again themselves, a start that loses its port to another
//! process is retried on a new one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use latch_sim::{Endpoint, Faults, Reject, SimConfig, Simulator, SinkFaults};
use latch_testkit::process::{Server, get_text, start_listening};
use latch_testkit::{NatsServer, OtlpCollector, ReceivedSpan, TestDb, wait_until};
use serde_json::{Value, json};

use crate::harness::{Api, first_admin};

const DEADLINE: Duration = Duration::from_secs(60);
/// Stands in for Grafana's interval variables: longer than the whole test.
const WINDOW: &str = "10m";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_alert_rule_works_against_a_live_stack() {
    let mut live = Scenario::start().await;
    live.the_relay_counts_an_error_while_nats_is_down().await;
    live.start_worker().await;
    live.start_prometheus().await;
    live.traffic().await;
    check_exported_trace(
        &live.api_client,
        &live.reader_key,
        &live.sim,
        &live.collector,
    )
    .await;
    live.prometheus_agrees_with_what_happened().await;
    let rules = live.every_alert_rule_is_well_formed_and_evaluates().await;
    live.every_dashboard_query_and_rule_selector_returns_series(&rules)
        .await;
    live.the_outbox_age_alert_fires_during_a_nats_outage(&rules)
        .await;
}

/// The live stack, built and driven phase by phase.
struct Scenario {
    http: reqwest::Client,
    dir: tempfile::TempDir,
    db: TestDb,
    nats: NatsServer,
    sim: Simulator,
    collector: OtlpCollector,
    api: Server,
    relay: Server,
    worker: Option<Server>,
    prometheus: Option<(Server, Prom)>,
    api_client: Api,
    reader_key: String,
    /// Holder A may enter; holder B too, but the legacy system refuses B's punches.
    holders: Vec<String>,
    granted: u32,
    denied: u32,
}

impl Scenario {
    /// PostgreSQL, NATS, the simulator, an OTLP receiver, `latch api` and `latch relay`;
    /// a door with its reader and two holders.
    async fn start() -> Scenario {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let dir = tempfile::Builder::new()
            .prefix("latch-observability-")
            .tempdir()
            .unwrap();
        let db = TestDb::new().await;
        let nats = NatsServer::start();
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let collector = OtlpCollector::start().await;
        let app_url = db.app_url().expose().clone();
        let relay_url = db.relay_url().expose().clone();
        let otel = otel_settings(&collector);

        let api = start_listening(&http, "api", dir.path(), "/readyz", |port| {
            let mut settings = vec![
                ("LATCH_DATABASE_URL", app_url.clone()),
                ("LATCH_HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("LATCH_NATS_URL", nats.url()),
                ("LATCH_HTTP_WORKERS", "2".into()),
                ("LATCH_DATABASE_POOL_SIZE", "4".into()),
            ];
            settings.extend(otel.iter().cloned());
            latch("api", &settings)
        })
        .await;
        let relay = start_listening(&http, "relay", dir.path(), "/readyz", |port| {
            latch(
                "relay",
                &[
                    ("LATCH_DATABASE_URL", relay_url.clone()),
                    ("LATCH_DATABASE_POOL_SIZE", "2".into()),
                    ("LATCH_NATS_URL", nats.url()),
                    ("LATCH_NATS_REQUEST_TIMEOUT", "1s".into()),
                    ("LATCH_ADMIN_ADDR", format!("127.0.0.1:{port}")),
                    ("LATCH_RELAY_POLL_INTERVAL", "100ms".into()),
                    ("LATCH_RELAY_MAX_BACKOFF", "500ms".into()),
                ],
            )
        })
        .await;
        let api_client = Api::new(format!("http://127.0.0.1:{}", api.port));

        let admin = first_admin(&db, "observability test").await;
        let door = api_client
            .created(
                &admin,
                "/v1/doors",
                json!({"site": "hq", "name": "Main entrance"}),
            )
            .await;
        let reader = api_client
            .created(
                &admin,
                "/v1/readers",
                json!({"door_id": door["id"], "name": "Main entrance reader"}),
            )
            .await;
        let reader_key = reader["key"].as_str().unwrap().to_owned();
        let mut holders = Vec::new();
        for card in ["CARD-OBS-A", "CARD-OBS-B"] {
            let holder = api_client
                .created(
                    &admin,
                    "/v1/holders",
                    json!({"card_id": card, "name": format!("Holder {card}")}),
                )
                .await;
            api_client
                .created(
                    &admin,
                    "/v1/grants",
                    json!({"holder_id": holder["id"], "door_id": door["id"]}),
                )
                .await;
            holders.push(holder["id"].as_str().unwrap().to_owned());
        }
        Scenario {
            http,
            dir,
            db,
            nats,
            sim,
            collector,
            api,
            relay,
            worker: None,
            prometheus: None,
            api_client,
            reader_key,
            holders,
            granted: 0,
            denied: 0,
        }
    }

    /// NATS goes away while an event waits in the outbox, then comes back. Everything
    /// before is in the stream first, so that no publish is cut in the middle.
    async fn the_relay_counts_an_error_while_nats_is_down(&mut self) {
        outbox_drained(&self.db).await;
        self.nats.kill();
        self.unlock("CARD-OBS-A", "granted").await;
        let (http, url) = (
            &self.http,
            &format!("http://127.0.0.1:{}/metrics", self.relay.port),
        );
        wait_until(
            "the relay to count a publishing error",
            DEADLINE,
            || async move {
                let text = get_text(http, url).await?;
                text.contains("latch_relay_errors_total{").then_some(())
            },
        )
        .await;
        self.nats.restart();
        outbox_drained(&self.db).await;
    }

    /// `latch worker`, delivering to both simulated sinks (3 attempts for legacy).
    async fn start_worker(&mut self) {
        let (nats, sim) = (&self.nats, &self.sim);
        let otel = otel_settings(&self.collector);
        let worker = start_listening(&self.http, "worker", self.dir.path(), "/readyz", |port| {
            let mut settings = vec![
                ("LATCH_NATS_URL", nats.url()),
                ("LATCH_ADMIN_ADDR", format!("127.0.0.1:{port}")),
                ("LATCH_SINKS_LEGACY_URL", sim.punch_url()),
                (
                    "LATCH_SINKS_LEGACY_SECRET",
                    latch_sim::DEFAULT_TNA_KEY.into(),
                ),
                ("LATCH_SINKS_WEBHOOKS_URL", sim.webhook_url()),
                (
                    "LATCH_SINKS_WEBHOOKS_SECRET",
                    latch_sim::DEFAULT_WEBHOOK_SECRET.into(),
                ),
                ("LATCH_SINKS_LEGACY_MAX_ATTEMPTS", "3".into()),
                ("LATCH_RETRY_BASE", "20ms".into()),
                ("LATCH_RETRY_MAX", "100ms".into()),
            ];
            settings.extend(otel.iter().cloned());
            latch("worker", &settings)
        })
        .await;
        self.worker = Some(worker);
    }

    /// Prometheus with deploy/prometheus's rules, scraping the api, the relay and the
    /// worker; ready once all three are up.
    async fn start_prometheus(&mut self) {
        let bin = prometheus_bin();
        let worker = self.worker.as_ref().expect("the worker runs");
        let config = prometheus_config(self.api.port, self.relay.port, worker.port);
        let dir = self.dir.path();
        std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
        let server = start_listening(&self.http, "prometheus", dir, "/-/ready", |port| {
            let mut command = Command::new(&bin);
            command
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("data-{port}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn");
            command
        })
        .await;
        let prom = Prom {
            http: self.http.clone(),
            base: format!("http://127.0.0.1:{}", server.port),
        };
        wait_until(
            "Prometheus to scrape the api, the relay and the worker",
            DEADLINE,
            || async {
                let targets = prom.get("/api/v1/targets").await?;
                let active = targets["data"]["activeTargets"].as_array()?;
                let up: Vec<&str> = active
                    .iter()
                    .filter(|t| t["health"] == "up")
                    .filter_map(|t| t["labels"]["job"].as_str())
                    .collect();
                ["latch-api", "latch-relay", "latch-worker"]
                    .iter()
                    .all(|job| up.contains(job))
                    .then_some(())
            },
        )
        .await;
        self.prometheus = Some((server, prom));
    }

    fn prom(&self) -> &Prom {
        &self.prometheus.as_ref().expect("Prometheus runs").1
    }

    /// An unlock that must be decided `expected`, counted for the metrics check.
    async fn unlock(&mut self, card: &str, expected: &str) {
        let answer = self.api_client.unlock(&self.reader_key, card).await;
        assert_eq!(answer["decision"], expected, "unlock {card}: {answer}");
        if expected == "granted" {
            self.granted += 1;
        } else {
            self.denied += 1;
        }
    }

    /// Unlocks granted and denied, check-ins and check-outs; the legacy system refuses
    /// holder B's punch, which is dead-lettered.
    async fn traffic(&mut self) {
        self.sim
            .set_faults(Faults::only(
                Endpoint::Legacy,
                SinkFaults::rejecting(Reject {
                    holders: vec![self.holders[1].clone()],
                    ..Reject::default()
                }),
            ))
            .await
            .unwrap();
        for _ in 0..5 {
            self.unlock("CARD-OBS-A", "granted").await;
            self.unlock("CARD-UNKNOWN", "denied").await;
            for path in ["/v1/check-ins", "/v1/check-outs"] {
                self.api_client
                    .created(&self.reader_key, path, json!({"card_id": "CARD-OBS-A"}))
                    .await;
            }
        }
        self.api_client
            .created(
                &self.reader_key,
                "/v1/check-ins",
                json!({"card_id": "CARD-OBS-B"}),
            )
            .await;
    }

    /// The counters Prometheus scraped match what the registry and the requests say.
    async fn prometheus_agrees_with_what_happened(&self) {
        let actions: i64 = self
            .db
            .owner()
            .await
            .query_one("SELECT count(*) FROM actions", &[])
            .await
            .unwrap()
            .get(0);
        let expectations = [
            // Each outbox row is deleted once acknowledged, as new or as a duplicate (a
            // publish sent while NATS was down may be stored when the client reconnects,
            // and the relay, which timed out, sends it again).
            (
                "sum(latch_relay_published_total) + sum(latch_relay_duplicates_total)".to_owned(),
                actions as f64,
            ),
            ("max(latch_dlq_depth_messages)".to_owned(), 1.0),
            (
                r#"sum(latch_worker_deliveries_total{outcome="dead"})"#.to_owned(),
                1.0,
            ),
            (
                r#"sum(latch_unlock_decisions_total{decision="granted"})"#.to_owned(),
                f64::from(self.granted),
            ),
            (
                r#"sum(latch_unlock_decisions_total{decision="denied"})"#.to_owned(),
                f64::from(self.denied),
            ),
        ];
        for (query, want) in &expectations {
            until_value(self.prom(), query, *want).await;
        }
    }

    /// Every alert rule Prometheus loaded: a severity, a summary and a description,
    /// healthy, a valid expression with selectors. Answers the rules.
    async fn every_alert_rule_is_well_formed_and_evaluates(&self) -> Vec<Value> {
        let prom = self.prom();
        let rules = wait_until(
            "Prometheus to evaluate every alert rule",
            DEADLINE,
            || async move {
                let body = prom.get("/api/v1/rules?type=alert").await?;
                let rules: Vec<Value> = body["data"]["groups"]
                    .as_array()?
                    .iter()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .collect();
                (!rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown"))
                    .then_some(rules)
            },
        )
        .await;
        let mut problems = Vec::new();
        for rule in &rules {
            let name = rule["name"].as_str().unwrap_or("?");
            let severity = &rule["labels"]["severity"];
            if severity != "warning" && severity != "critical" {
                problems.push(format!(
                    "alert {name}: severity must be warning or critical, is {severity}"
                ));
            }
            for annotation in ["summary", "description"] {
                if rule["annotations"][annotation]
                    .as_str()
                    .is_none_or(str::is_empty)
                {
                    problems.push(format!("alert {name}: no {annotation} annotation"));
                }
            }
            if rule["health"] != "ok" {
                problems.push(format!(
                    "alert {name}: health {} ({})",
                    rule["health"], rule["lastError"]
                ));
            }
            let expr = rule["query"].as_str().unwrap();
            if let Err(error) = prom.query(expr).await {
                problems.push(format!(
                    "alert {name}: invalid expression: {error}\n  {expr}"
                ));
            }
            if selectors(expr).is_empty() {
                problems.push(format!("alert {name}: no selector found in {expr}"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        rules
    }

    /// Every dashboard query, and every selector of every alert rule, returns series:
    /// nothing on a dashboard or in a rule names a metric latch does not export.
    async fn every_dashboard_query_and_rule_selector_returns_series(&self, rules: &[Value]) {
        let mut queries = dashboard_queries();
        assert!(!queries.is_empty(), "no dashboard queries found");
        for rule in rules {
            let name = rule["name"].as_str().unwrap_or("?");
            let expr = rule["query"].as_str().unwrap_or_default();
            for selector in selectors(expr) {
                queries.push((format!("alert {name}: selector"), selector));
            }
        }
        let failures = until_all_return_series(self.prom(), queries).await;
        if !failures.is_empty() {
            let (prometheus, _) = self.prometheus.as_ref().expect("Prometheus runs");
            let worker = self.worker.as_ref().expect("the worker runs");
            panic!(
                "{}\n\n{}",
                failures.join("\n"),
                [&self.api, &self.relay, worker, prometheus]
                    .iter()
                    .map(|s| s.proc.tail())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    /// The alert that guards the stream's duplicate window must see the outbox age grow
    /// while NATS is down: its own expression, as Prometheus loaded it, with the threshold
    /// lowered from minutes to seconds, fires on what Prometheus scrapes from the relay.
    async fn the_outbox_age_alert_fires_during_a_nats_outage(&mut self, rules: &[Value]) {
        let aging = rules
            .iter()
            .find(|r| r["name"] == "LatchOutboxOldestRowAging")
            .and_then(|r| r["query"].as_str())
            .expect("the LatchOutboxOldestRowAging rule");
        let (condition, _threshold) = aging.rsplit_once('>').expect("a `> threshold` comparison");
        let firing = format!("{condition}> 3");
        self.nats.kill();
        self.unlock("CARD-OBS-A", "granted").await;
        let prom = self.prom();
        wait_until(
            &format!("Prometheus to see the outbox age pass 3 s: {firing}"),
            DEADLINE,
            || async { prom.scalar(&firing).await.filter(|age| *age > 3.0) },
        )
        .await;
        self.nats.restart();
        outbox_drained(&self.db).await;
    }
}

fn prometheus_bin() -> String {
    let bin = std::env::var("LATCH_PROMETHEUS_BIN").unwrap_or_else(|_| {
        panic!(
            "LATCH_PROMETHEUS_BIN is not set: this test needs a Prometheus server binary. Run \
             the tests with ./deploy/local/test.sh, which installs Debian's prometheus package \
             and sets it, or set it yourself (e.g. LATCH_PROMETHEUS_BIN=/usr/bin/prometheus)"
        )
    });
    assert!(
        Path::new(&bin).is_file(),
        "LATCH_PROMETHEUS_BIN={bin} is not a file"
    );
    bin
}

/// The API and the worker export their spans to the collector, in small, quick batches.
fn otel_settings(collector: &OtlpCollector) -> [(&'static str, String); 2] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]
}

/// A check-in sent with a `traceparent` is exported as the API's server span, a child of
/// the caller's span and the span named in the response's `traceparent`; each sink's
/// delivery is the worker's consumer span, a child of the API's; each sink call names its
/// delivery span as parent. The dead-lettered delivery is exported as failed.
async fn check_exported_trace(
    api: &Api,
    reader_key: &str,
    sim: &Simulator,
    collector: &OtlpCollector,
) {
    let caller = "00-5b8aa5a2d2c872e8321cf37308d69df2-051581bf3cb55c13-01";
    let response = api
        .http
        .post(format!("{}/v1/check-ins", api.base))
        .bearer_auth(reader_key)
        .header("traceparent", caller)
        .json(&json!({"card_id": "CARD-OBS-A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let returned = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let event = response.json::<Value>().await.unwrap()["action_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let trace_id = "5b8aa5a2d2c872e8321cf37308d69df2";
    let api_span_id = returned.split('-').nth(2).unwrap().to_owned();
    assert_eq!(returned.split('-').nth(1), Some(trace_id), "{returned}");

    let (server, deliveries) = wait_until(
        "the API's span and both deliveries' spans at the collector",
        DEADLINE,
        || async {
            let spans: Vec<ReceivedSpan> = collector
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            let server = spans.iter().find(|s| s.service == "latch-api")?.clone();
            let deliveries: Vec<ReceivedSpan> = spans
                .into_iter()
                .filter(|s| s.service == "latch-worker")
                .collect();
            (deliveries.len() == 2).then_some((server, deliveries))
        },
    )
    .await;
    assert_eq!(server.name, "POST /v1/check-ins");
    assert_eq!(server.kind, 2, "a server span");
    assert_eq!(server.span_id, api_span_id, "the span the response names");
    assert_eq!(
        server.parent_span_id, "051581bf3cb55c13",
        "the caller's span"
    );
    assert_eq!(server.attributes["http.route"], "/v1/check-ins");
    assert_eq!(server.attributes["http.response.status_code"], "201");

    let stats = sim.stats().await;
    for delivery in &deliveries {
        assert_eq!(delivery.kind, 5, "a consumer span: {delivery:?}");
        assert_eq!(delivery.parent_span_id, api_span_id, "{delivery:?}");
        assert_eq!(delivery.attributes["latch.event_id"], event);
        assert_eq!(delivery.attributes["latch.outcome"], "delivered");
        let sink = delivery.attributes["latch.sink"].as_str();
        let received = match sink {
            "legacy" => &stats.legacy,
            "webhooks" => &stats.webhooks,
            other => panic!("unknown sink {other}"),
        };
        let sent = received.events[&event].traceparent.clone().unwrap();
        assert_eq!(
            sent,
            format!("00-{trace_id}-{}-01", delivery.span_id),
            "{sink} was called as a child of its delivery span"
        );
    }

    // Holder B's punch was refused and dead-lettered: its delivery span says so.
    let failed = wait_until("the dead-lettered delivery's span", DEADLINE, || async {
        collector.spans().into_iter().find(|s| {
            s.attributes.get("latch.outcome").map(String::as_str) == Some("dead_lettered")
        })
    })
    .await;
    assert_eq!(failed.status, 2, "an error status: {failed:?}");
    assert_eq!(failed.attributes["latch.sink"], "legacy");
}

/// Waits until the relay has published every outbox row.
async fn outbox_drained(db: &TestDb) {
    wait_until("the relay to empty the outbox", DEADLINE, || async move {
        let row = db
            .owner()
            .await
            .query_one("SELECT count(*) FROM outbox", &[])
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 0).then_some(())
    })
    .await;
}

/// Polls `query` until Prometheus answers one series of value `want`; fails with the last
/// answer when the deadline passes.
async fn until_value(prom: &Prom, query: &str, want: f64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = prom.scalar(query).await;
        if got.is_some_and(|value| (value - want).abs() < 1e-9) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus shows {query} = {got:?} after {DEADLINE:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls every query until each has returned at least one series, or the deadline
/// passes; an invalid query fails at once. Answers what is wrong.
async fn until_all_return_series(prom: &Prom, queries: Vec<(String, String)>) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut waiting = queries;
    loop {
        let mut empty = Vec::new();
        let mut invalid = Vec::new();
        for (what, query) in waiting {
            match prom.query(&query).await {
                Ok(0) => empty.push((what, query)),
                Ok(_) => {}
                Err(error) => invalid.push(format!("{what}: invalid: {error}\n  {query}")),
            }
        }
        if !invalid.is_empty() {
            return invalid;
        }
        if empty.is_empty() {
            return Vec::new();
        }
        if Instant::now() > deadline {
            return empty
                .into_iter()
                .map(|(what, query)| format!("{what}: no series after {DEADLINE:?}\n  {query}"))
                .collect();
        }
        waiting = empty;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every panel query of every dashboard: (where it is, the expression with Grafana's
/// interval variables replaced).
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    let mut queries = Vec::new();
    for file in files {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let title = board["title"].as_str().unwrap_or("?").to_owned();
        let mut panels: Vec<Value> = board["panels"].as_array().cloned().unwrap_or_default();
        let mut count = 0;
        while let Some(panel) = panels.pop() {
            if let Some(nested) = panel["panels"].as_array() {
                panels.extend(nested.iter().cloned());
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                let expr = expr
                    .replace("$__rate_interval", WINDOW)
                    .replace("$__interval", WINDOW)
                    .replace("$__range", WINDOW);
                let what = format!(
                    "dashboard {title:?}, panel {:?}, target {}",
                    panel["title"].as_str().unwrap_or("?"),
                    target["refId"]
                );
                assert!(
                    !expr.contains('$'),
                    "{what}: a template variable this test does not know: {expr}"
                );
                queries.push((what, expr));
                count += 1;
            }
        }
        assert!(count > 0, "{}: no queries", file.display());
    }
    queries
}

/// The shipped scrape configuration with the real addresses, one-second intervals and the
/// rules' absolute path. Each placeholder must be there exactly once, so that a change to
/// the file is noticed here.
fn prometheus_config(api: u16, relay: u16, worker: u16) -> String {
    let path = repo().join("deploy/prometheus/prometheus.yml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let rules = repo().join("deploy/prometheus/alerts.yml");
    for (from, to) in [
        ("\"127.0.0.1:8080\"", format!("\"127.0.0.1:{api}\"")),
        ("\"127.0.0.1:9101\"", format!("\"127.0.0.1:{relay}\"")),
        ("\"127.0.0.1:9102\"", format!("\"127.0.0.1:{worker}\"")),
        ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
        ("scrape_timeout: 10s", "scrape_timeout: 1s".to_owned()),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_owned(),
        ),
        ("  - alerts.yml\n", format!("  - {}\n", rules.display())),
    ] {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{} should hold {from:?} once",
            path.display()
        );
        text = text.replace(from, &to);
    }
    text
}

/// The vector selectors of a PromQL expression: each metric name with its label matchers
/// as written. A small scanner, enough for rules: it skips strings, comments, numbers and
/// durations, `[...]` ranges, function and aggregation names, keywords, and the label lists
/// of `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`.
fn selectors(expr: &str) -> Vec<String> {
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = after_string(&chars, i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '[' {
            i = after_closing(&chars, i, '[', ']');
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c == '{' {
            let end = after_closing(&chars, i, '{', '}');
            found.push(chars[i..end].iter().collect());
            i = end;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let next_char = chars.get(next).copied();
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if next_char == Some('(') {
                    i = after_closing(&chars, next, '(', ')');
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || next_char == Some('(')
                || (AGGREGATIONS.contains(&lower.as_str()) && next_char != Some('{'))
            {
                // A keyword, or a function or aggregation applied to what follows.
            } else if next_char == Some('{') {
                let end = after_closing(&chars, next, '{', '}');
                let matchers: String = chars[next..end].iter().collect();
                found.push(format!("{word}{matchers}"));
                i = end;
            } else {
                found.push(word);
            }
        } else {
            i += 1;
        }
    }
    found
}

/// The index after the string literal that starts at `start`.
fn after_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The index after the bracket that closes the one at `start`, skipping strings.
fn after_closing(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = after_string(chars, i);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    chars.len()
}

#[test]
fn selectors_are_found_in_promql() {
    assert_eq!(
        selectors(
            "histogram_quantile(0.99,\n  sum by (le) (rate(latch_http_request_duration_seconds_bucket{route=\"/v1/unlock\"}[5m]))\n) > 0.05"
        ),
        vec!["latch_http_request_duration_seconds_bucket{route=\"/v1/unlock\"}"]
    );
    assert_eq!(
        selectors(
            "sum(latch_outbox_pending_rows * on(job, instance) latch_relay_leader) > 0\nand\nsum(rate(latch_relay_published_total[5m])) == 0"
        ),
        vec![
            "latch_outbox_pending_rows",
            "latch_relay_leader",
            "latch_relay_published_total"
        ]
    );
    assert_eq!(
        selectors("(max(latch_relay_leader) or vector(0)) == 0"),
        vec!["latch_relay_leader"]
    );
    assert_eq!(
        selectors("up{job=~\"latch-api|latch-relay\"} == 0"),
        vec!["up{job=~\"latch-api|latch-relay\"}"]
    );
    assert_eq!(
        selectors("max by (sink) (min_over_time(latch_worker_breaker_state[5m] offset 1m)) > 0"),
        vec!["latch_worker_breaker_state"]
    );
    assert_eq!(
        selectors("sum(x{a=\"}{\"}) by (b) / ignoring(c) group_left(d) y"),
        vec!["x{a=\"}{\"}", "y"]
    );
}

/// A `latch ROLE` process of the binary under test, with only these settings.
fn latch(role: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latch"));
    command
        .arg(role)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LATCH_LOG", "info")
        .env("LATCH_LOG_FORMAT", "json");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Prometheus' HTTP API.
struct Prom {
    http: reqwest::Client,
    base: String,
}

impl Prom {
    async fn get(&self, path: &str) -> Option<Value> {
        let text = get_text(&self.http, &format!("{}{path}", self.base)).await?;
        serde_json::from_str(&text).ok()
    }

    /// Evaluates `query` now: Prometheus' answer, or its error for an invalid query.
    async fn evaluate(&self, query: &str) -> Result<Value, String> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .finish();
        let response = self
            .http
            .post(format!("{}/api/v1/query", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("Prometheus did not answer: {e}"))?;
        let answer: Value = response
            .json()
            .await
            .map_err(|e| format!("not JSON: {e}"))?;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer)
    }

    /// The number of series `query` yields now (or 1 for a scalar).
    async fn query(&self, query: &str) -> Result<usize, String> {
        let answer = self.evaluate(query).await?;
        match answer["data"]["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
            }
            _ => Ok(1),
        }
    }

    /// The value of a query that yields one series, if it does.
    async fn scalar(&self, query: &str) -> Option<f64> {
        let answer = self.evaluate(query).await.ok()?;
        let result = answer["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }
}
