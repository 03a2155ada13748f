//! The operator verbs against a real PostgreSQL, nats-server, relay, worker and the
//! simulator: `latch dlq`, `latch events republish`, `latch outbox status`, run as the
//! real binary.

use std::process::Output;
use std::time::Duration;

use latch_sim::{Endpoint, Faults, Reject, SimConfig, Simulator, SinkFaults};
use latch_testkit::{NatsServer, wait_until};
use latch_worker::config::RetryConfig;
use uuid::Uuid;

use crate::harness::{self, stream_messages};

const DEADLINE: Duration = Duration::from_secs(30);

/// Relay and worker in this process (sinks: 3 attempts, 2 lanes, retries 20–100 ms), no
/// API: events are recorded straight into the registry.
struct Stack {
    base: harness::Stack,
    nats: NatsServer,
    sim: Simulator,
}

impl Stack {
    async fn start(faults: Faults) -> Stack {
        let base = harness::Stack::new().await;
        let nats = NatsServer::start();
        let sim = Simulator::start(SimConfig {
            faults,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        base.relay(&nats).await;
        base.worker(
            &nats,
            &sim,
            |sink| {
                sink.max_attempts = 3;
                sink.concurrency = 2;
            },
            RetryConfig {
                base: Duration::from_millis(20),
                max: Duration::from_millis(100),
            },
        )
        .await;
        Stack { base, nats, sim }
    }

    async fn latch(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_latch"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("USER", "test-operator")
            .env("LATCH_DATABASE_URL", self.base.db.operator_url().expose())
            .env("LATCH_NATS_URL", self.nats.url())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap()
    }

    /// Records an action; the trigger queues its event. Reader events go in as the API's
    /// login would write them, administrative ones as the database functions that make them
    /// (with the owner's rights).
    async fn record(&self, kind: &str, holder: Uuid, grant: Option<Uuid>) -> Uuid {
        let id = Uuid::now_v7();
        let client = if grant.is_some() {
            self.base.db.owner().await
        } else {
            self.base.db.app().await
        };
        client
            .execute(
                "INSERT INTO actions (id, kind, site, door_id, holder_id, reader_id, grant_id, occurred_at)
                 VALUES ($1, $2, 'hq', $3, $4, $3, $5, clock_timestamp())",
                &[&id, &kind, &Uuid::nil(), &holder, &grant],
            )
            .await
            .unwrap();
        id
    }

    async fn dead_letters(&self) -> u64 {
        stream_messages(&self.nats, latch_core::nats::DLQ_STREAM).await
    }

    async fn wait_for_dead_letters(&self, n: u64) {
        wait_until("dead letters", DEADLINE, || async {
            (self.dead_letters().await == n).then_some(())
        })
        .await;
    }

    async fn replays_recorded(&self) -> i64 {
        self.base
            .count("SELECT count(*) FROM actions WHERE kind = 'dlq_replayed'")
            .await
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn rejecting_holder(holder: Uuid) -> Faults {
    Faults::only(
        Endpoint::Legacy,
        SinkFaults::rejecting(Reject {
            holders: vec![holder.to_string()],
            ..Reject::default()
        }),
    )
}

/// The webhook sink refusing every `grant_created`.
fn rejecting_grant_creations() -> Faults {
    Faults::only(
        Endpoint::Webhooks,
        SinkFaults::rejecting(Reject {
            kinds: vec!["grant_created".into()],
            ..Reject::default()
        }),
    )
}

#[tokio::test]
async fn a_dead_lettered_batch_is_replayed_once_after_the_sink_is_fixed() {
    let holder = Uuid::now_v7();
    let stack = Stack::start(rejecting_holder(holder)).await;
    let mut ids = Vec::new();
    for kind in ["check_in", "check_out", "check_in"] {
        ids.push(stack.record(kind, holder, None).await);
    }
    stack.wait_for_dead_letters(3).await;

    let list = stack.latch(&["dlq", "list", "--sink", "legacy"]).await;
    assert!(list.status.success(), "{}", text(&list));
    let table = String::from_utf8_lossy(&list.stdout);
    for id in &ids {
        assert!(table.contains(&id.to_string()), "{table}");
    }
    assert!(table.contains("3 dead letter(s)"), "{table}");
    let json = stack.latch(&["dlq", "list", "--json"]).await;
    let entries: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 3);
    assert_eq!(entries[0]["class"], "permanent");
    let show = stack.latch(&["dlq", "show", &ids[0].to_string()]).await;
    assert!(show.status.success(), "{}", text(&show));
    assert!(String::from_utf8_lossy(&show.stdout).contains("HTTP 422"));

    // A dry run changes nothing.
    let dry = stack.latch(&["dlq", "replay", "--all", "--dry-run"]).await;
    assert!(dry.status.success(), "{}", text(&dry));
    assert_eq!(stack.dead_letters().await, 3);
    assert_eq!(stack.replays_recorded().await, 0);

    // Without --yes and without a terminal, nothing happens either.
    let unconfirmed = stack.latch(&["dlq", "replay", "--all"]).await;
    assert!(!unconfirmed.status.success());
    assert_eq!(stack.dead_letters().await, 3);

    stack.sim.set_faults(Faults::none()).await.unwrap();
    let replay = stack.latch(&["dlq", "replay", "--all", "--yes"]).await;
    assert!(replay.status.success(), "{}", text(&replay));
    wait_until("the replays to take effect", DEADLINE, || async {
        (stack.sim.stats().await.legacy.effects == 3).then_some(())
    })
    .await;
    assert_eq!(stack.dead_letters().await, 0);
    assert_eq!(
        stack.replays_recorded().await,
        3,
        "every replay is in the registry"
    );
    let stats = stack.sim.stats().await;
    assert_eq!(stats.legacy.order_of(&holder.to_string()).len(), 3);
    for id in &ids {
        assert!(stats.legacy.events[&id.to_string()].applied);
    }

    // Again: nothing left to do, nothing changes.
    let again = stack.latch(&["dlq", "replay", "--all", "--yes"]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to replay"));
    assert_eq!(stack.sim.stats().await.legacy.effects, 3);
    assert_eq!(stack.replays_recorded().await, 3);
}

#[tokio::test]
async fn an_interrupted_replay_finishes_without_duplicates() {
    let holder = Uuid::now_v7();
    let stack = Stack::start(rejecting_holder(holder)).await;
    for _ in 0..6 {
        stack.record("check_in", holder, None).await;
    }
    stack.wait_for_dead_letters(6).await;
    stack.sim.set_faults(Faults::none()).await.unwrap();

    // Slow replay, interrupted (SIGINT) once some went through.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["dlq", "replay", "--all", "--yes", "--rate", "4"])
        .env("LATCH_DATABASE_URL", stack.base.db.operator_url().expose())
        .env("LATCH_NATS_URL", stack.nats.url())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("a first replay", DEADLINE, || async {
        (stack.sim.stats().await.legacy.effects >= 2).then_some(())
    })
    .await;
    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130), "an interrupted replay says so");
    assert!(stack.dead_letters().await > 0, "it stopped before the end");

    let rest = stack.latch(&["dlq", "replay", "--all", "--yes"]).await;
    assert!(rest.status.success(), "{}", text(&rest));
    wait_until("every replay", DEADLINE, || async {
        (stack.sim.stats().await.legacy.effects == 6).then_some(())
    })
    .await;
    assert_eq!(stack.dead_letters().await, 0);
    let stats = stack.sim.stats().await;
    assert_eq!(stats.legacy.duplicates, 0, "no entry was replayed twice");
    assert_eq!(stack.replays_recorded().await, 6);
}

#[tokio::test]
async fn the_stale_replay_guard_refuses_a_revoked_grant_unless_forced() {
    let stack = Stack::start(rejecting_grant_creations()).await;
    let holder = Uuid::now_v7();
    let grant = Uuid::now_v7();
    let created = stack.record("grant_created", holder, Some(grant)).await;
    stack.wait_for_dead_letters(1).await;
    stack.record("grant_revoked", holder, Some(grant)).await;
    stack.sim.set_faults(Faults::none()).await.unwrap();

    let refused = stack.latch(&["dlq", "replay", "--all", "--yes"]).await;
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("revoked") && why.contains("--force"), "{why}");
    assert_eq!(stack.dead_letters().await, 1);
    assert!(
        !stack
            .sim
            .stats()
            .await
            .webhooks
            .events
            .contains_key(&created.to_string())
            || !stack.sim.stats().await.webhooks.events[&created.to_string()].applied
    );

    let forced = stack
        .latch(&["dlq", "replay", "--all", "--yes", "--force"])
        .await;
    assert!(forced.status.success(), "{}", text(&forced));
    wait_until("the forced replay", DEADLINE, || async {
        let stats = stack.sim.stats().await;
        stats
            .webhooks
            .events
            .get(&created.to_string())
            .is_some_and(|e| e.applied)
            .then_some(())
    })
    .await;
    assert_eq!(stack.dead_letters().await, 0);
}

#[tokio::test]
async fn republishing_from_the_registry_rebuilds_a_sink_with_the_same_ids() {
    let stack = Stack::start(Faults::none()).await;
    let holder = Uuid::now_v7();
    let mut ids = Vec::new();
    for kind in ["check_in", "check_out", "check_in", "check_out"] {
        ids.push(stack.record(kind, holder, None).await.to_string());
    }
    // Both sinks first: a webhook delivery still under way after the reset below would
    // count as one sent by the republish.
    wait_until("delivery", DEADLINE, || async {
        let stats = stack.sim.stats().await;
        (stats.legacy.effects == 4 && stats.webhooks.effects == 4).then_some(())
    })
    .await;

    stack.sim.reset().await; // the legacy system lost its data
    let republish = stack
        .latch(&["events", "republish", "--since", "1h", "--sink", "legacy"])
        .await;
    assert!(republish.status.success(), "{}", text(&republish));
    assert!(String::from_utf8_lossy(&republish.stdout).contains("queued 4 event(s)"));
    wait_until("the rebuild", DEADLINE, || async {
        (stack.sim.stats().await.legacy.effects == 4).then_some(())
    })
    .await;
    let stats = stack.sim.stats().await;
    assert_eq!(
        stats.legacy.order_of(&holder.to_string()),
        ids.as_slice(),
        "same ids, same order"
    );
    assert_eq!(
        stats.webhooks.requests, 0,
        "webhooks were not sent the republish"
    );
}

#[tokio::test]
async fn outbox_status_exits_non_zero_when_lagging() {
    let stack = Stack::start(Faults::none()).await;
    let ok = stack.latch(&["outbox", "status"]).await;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("LATCH_EVENTS"));

    // Stop the pipeline and leave a row pending.
    stack.base.stop();
    stack.record("check_in", Uuid::now_v7(), None).await;
    let lagging = stack
        .latch(&["outbox", "status", "--max-age", "0s", "--json"])
        .await;
    assert_eq!(lagging.status.code(), Some(3), "{}", text(&lagging));
    let report: serde_json::Value = serde_json::from_slice(&lagging.stdout).unwrap();
    assert_eq!(report["outbox"]["pending_rows"], 1);

    let unreachable = tokio::process::Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["outbox", "status"])
        .env("LATCH_DATABASE_URL", stack.base.db.operator_url().expose())
        .env("LATCH_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .await
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    let message = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        message.contains("LATCH_NATS_URL") && !message.contains("panicked"),
        "{message}"
    );
    // What PostgreSQL holds is reported all the same, and the server is named.
    let printed = String::from_utf8_lossy(&unreachable.stdout);
    assert!(printed.contains("outbox     1 pending row(s)"), "{printed}");
    assert!(
        printed.contains("UNREACHABLE") && printed.contains("nats://127.0.0.1:1"),
        "{printed}"
    );
    // And a lagging outbox during a NATS outage exits 3, for the cron check that pages.
    let lagging = tokio::process::Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["outbox", "status", "--max-age", "0s", "--json"])
        .env("LATCH_DATABASE_URL", stack.base.db.operator_url().expose())
        .env("LATCH_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .await
        .unwrap();
    assert_eq!(lagging.status.code(), Some(3), "{}", text(&lagging));
    let report: serde_json::Value = serde_json::from_slice(&lagging.stdout).unwrap();
    assert_eq!(report["outbox"]["pending_rows"], 1);
    assert!(
        report["nats_error"]
            .as_str()
            .unwrap()
            .contains("nats://127.0.0.1:1"),
        "{report}"
    );
}

/// `/v1/dead-letters` as an administrator sees it: the API reading this stack's stream.
struct Http {
    api: harness::Api,
    admin: String,
}

impl Http {
    async fn start(stack: &Stack) -> Http {
        Http {
            api: stack.base.api_with_feed(&stack.nats),
            admin: harness::first_admin(&stack.base.db, "dead letters").await,
        }
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.api.get(&self.admin, path).await
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self.api.post(&self.admin, path, body).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

#[tokio::test]
async fn dead_letters_over_http_are_listed_shown_and_replayed_after_a_dry_run_each_recorded() {
    let holder = Uuid::now_v7();
    let stack = Stack::start(rejecting_holder(holder)).await;
    let http = Http::start(&stack).await;
    let mut ids = Vec::new();
    for kind in ["check_in", "check_out", "check_in"] {
        ids.push(stack.record(kind, holder, None).await);
    }
    stack.wait_for_dead_letters(3).await;

    // The pipeline's numbers say so too.
    let (status, pipeline) = http.get("/v1/pipeline").await;
    assert_eq!(status, 200, "{pipeline}");
    assert_eq!(pipeline["dead_letters"], 3, "{pipeline}");
    assert!(pipeline["nats_error"].is_null(), "{pipeline}");
    assert!(pipeline["stream"]["messages"].as_u64().unwrap() >= 3);
    let sinks: Vec<&str> = pipeline["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sink"].as_str().unwrap())
        .collect();
    assert_eq!(sinks, ["legacy", "webhooks"]);
    assert!(pipeline["outbox"]["pending_rows"].is_i64());

    let (status, list) = http.get("/v1/dead-letters?sink=legacy").await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    let listed: Vec<String> = items
        .iter()
        .map(|d| d["event_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    assert_eq!(listed, expected, "oldest first, one per event");
    assert_eq!(items[0]["reason_class"], "permanent");
    assert_eq!(items[0]["status"], 422);
    assert_eq!(items[0]["site"], "hq");
    let (_, none) = http.get("/v1/dead-letters?sink=webhooks").await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let (_, one) = http.get("/v1/dead-letters?limit=1").await;
    assert_eq!(
        (one["items"].as_array().unwrap().len(), one["more"].as_u64()),
        (1, Some(2))
    );

    let (status, shown) = http.get(&format!("/v1/dead-letters/{}", ids[0])).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown[0]["envelope"]["id"], ids[0].to_string());
    assert_eq!(shown[0]["envelope"]["kind"], "check_in");
    assert_eq!(shown[0]["failures_recorded"].as_array().unwrap().len(), 1);
    assert!(
        shown[0]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "Latch-Event-Id" && h["value"] == ids[0].to_string()),
        "{shown}"
    );

    // Bad input: a clear error, nothing changed.
    let (status, body) = http.get("/v1/dead-letters?kind=teleport").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_filter"))
    );
    let (status, _) = http
        .get(&format!("/v1/dead-letters/{}", Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
    let (status, body) = http
        .post("/v1/dead-letters:replay", serde_json::json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("nothing_selected"))
    );
    let (status, body) = http
        .post(
            "/v1/dead-letters:replay",
            serde_json::json!({"all": true, "reason_class": "bad"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_filter"))
    );
    let (status, _) = http
        .post(
            "/v1/dead-letters:replay",
            serde_json::json!({"all": true, "surprise": 1}),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused");
    // Wrong scope, a token for one site, and no token: refused.
    for token in [
        harness::token(&stack.base.db, "reader of hq", &["registry:read"], None).await,
        harness::token(&stack.base.db, "admin of hq", &["admin"], Some(&["hq"])).await,
    ] {
        let (status, _) = http.api.get(&token, "/v1/dead-letters").await;
        assert_eq!(status, 403);
        let refused = http
            .api
            .post(
                &token,
                "/v1/dead-letters:replay",
                serde_json::json!({"all": true}),
            )
            .await;
        assert_eq!(refused.status(), 403);
    }
    let (status, _) = http.api.get("lat_not_a_token", "/v1/dead-letters").await;
    assert_eq!(status, 401);
    assert_eq!(stack.dead_letters().await, 3);

    // A dry run says what would happen and changes nothing.
    let (status, dry) = http
        .post(
            "/v1/dead-letters:replay",
            serde_json::json!({"all": true, "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["replayed"].as_array().unwrap().len(), 3);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(stack.dead_letters().await, 3);
    assert_eq!(stack.replays_recorded().await, 0);

    stack.sim.set_faults(Faults::none()).await.unwrap();
    let (status, done) = http
        .post(
            "/v1/dead-letters:replay",
            serde_json::json!({"ids": [ids[1], ids[0], ids[2]]}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["replayed"].as_array().unwrap().len(), 3);
    wait_until("the replays to take effect", DEADLINE, || async {
        (stack.sim.stats().await.legacy.effects == 3).then_some(())
    })
    .await;
    assert_eq!(stack.dead_letters().await, 0);
    let stats = stack.sim.stats().await;
    assert_eq!(
        stats.legacy.order_of(&holder.to_string()),
        expected.as_slice(),
        "replayed oldest first, whatever order the ids came in"
    );
    // Each replay is in the registry with the administrator who asked.
    assert_eq!(
        stack
            .base
            .count(
                "SELECT count(*) FROM actions a JOIN admins ad ON ad.id = a.actor_id
                 WHERE a.kind = 'dlq_replayed' AND ad.name = 'dead letters'"
            )
            .await,
        3
    );
    // Again: nothing left, nothing changes.
    let (_, again) = http
        .post("/v1/dead-letters:replay", serde_json::json!({"all": true}))
        .await;
    assert_eq!(again["replayed"].as_array().unwrap().len(), 0);
    assert_eq!(stack.sim.stats().await.legacy.effects, 3);
}

#[tokio::test]
async fn over_http_the_stale_replay_guard_gives_its_reason_and_a_purge_is_recorded() {
    let stack = Stack::start(rejecting_grant_creations()).await;
    let http = Http::start(&stack).await;
    let holder = Uuid::now_v7();
    let grant = Uuid::now_v7();
    let created = stack.record("grant_created", holder, Some(grant)).await;
    let other = stack
        .record("grant_created", holder, Some(Uuid::now_v7()))
        .await;
    stack.wait_for_dead_letters(2).await;
    stack.record("grant_revoked", holder, Some(grant)).await;
    stack.sim.set_faults(Faults::none()).await.unwrap();

    let (status, dry) = http
        .post(
            "/v1/dead-letters:replay",
            serde_json::json!({"ids": [created], "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["replayed"].as_array().unwrap().len(), 0);
    let refusal = &dry["refused"][0];
    assert_eq!(refusal["event_id"], created.to_string());
    assert!(
        refusal["reason"].as_str().unwrap().contains("revoked"),
        "{refusal}"
    );
    let (_, refused) = http
        .post(
            "/v1/dead-letters:replay",
            serde_json::json!({"ids": [created]}),
        )
        .await;
    assert_eq!(refused["refused"].as_array().unwrap().len(), 1);
    assert_eq!(stack.dead_letters().await, 2, "a refusal changes nothing");

    // Purged for good instead, and recorded.
    let (status, purged) = http
        .post(
            "/v1/dead-letters:purge",
            serde_json::json!({"ids": [created]}),
        )
        .await;
    assert_eq!(status, 200, "{purged}");
    assert_eq!(purged["purged"][0]["event_id"], created.to_string());
    assert_eq!(stack.dead_letters().await, 1);
    assert_eq!(
        stack
            .base
            .count(
                "SELECT count(*) FROM actions WHERE kind = 'dlq_purged' AND actor_id IS NOT NULL"
            )
            .await,
        1
    );
    let (status, _) = http.get(&format!("/v1/dead-letters/{created}")).await;
    assert_eq!(status, 404);
    let (_, left) = http.get("/v1/dead-letters").await;
    assert_eq!(left["items"][0]["event_id"], other.to_string());
}

#[tokio::test]
async fn without_nats_the_dead_letters_answer_503_and_the_pipeline_reports_the_outbox() {
    // No relay either: what is recorded stays in the outbox.
    let base = harness::Stack::new().await;
    let api = base.api(1);
    let admin = harness::first_admin(&base.db, "dead letters").await;
    let (status, body) = api.get(&admin, "/v1/dead-letters").await;
    assert_eq!(status, 503, "{body}");
    base.db
        .app()
        .await
        .execute(
            "INSERT INTO actions (id, kind, site, door_id, holder_id, reader_id, occurred_at)
             VALUES ($1, 'check_in', 'hq', $2, $3, $2, clock_timestamp())",
            &[&Uuid::now_v7(), &Uuid::nil(), &Uuid::now_v7()],
        )
        .await
        .unwrap();
    // The pipeline still reports PostgreSQL's side, and why NATS's is missing.
    let (status, pipeline) = api.get(&admin, "/v1/pipeline").await;
    assert_eq!(status, 200, "{pipeline}");
    assert_eq!(pipeline["outbox"]["pending_rows"], 1, "{pipeline}");
    assert!(pipeline["stream"].is_null());
    assert!(
        pipeline["nats_error"]
            .as_str()
            .unwrap()
            .contains("LATCH_NATS_URL")
    );
    let reader = harness::token(&base.db, "reader", &["registry:read"], None).await;
    let (status, _) = api.get(&reader, "/v1/pipeline").await;
    assert_eq!(status, 403);
}
