//! The worker against a private nats-server and the simulator, over real HTTP.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures::StreamExt;
use latch_core::event::{Envelope, EventKind};
use latch_core::nats::NatsConfig;
use latch_core::shutdown::CancellationToken;
use latch_sim::{Endpoint, Faults, Reject, SimConfig, Simulator, SinkFaults};
use latch_testkit::{NatsServer, wait_until};
use latch_worker::Worker;
use latch_worker::breaker::{Breaker, BreakerState};
use latch_worker::config::{RetryConfig, SinkConfig, SinkKind};
use latch_worker::sink::Sink;
use serde_json::json;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);

struct Setup {
    nats: NatsServer,
    sim: Simulator,
    js: jetstream::Context,
}

impl Setup {
    async fn new() -> Setup {
        let nats = NatsServer::start();
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client);
        latch_core::nats::ensure_events_stream(&js, &NatsConfig::for_url(nats.url()))
            .await
            .unwrap();
        Setup { nats, sim, js }
    }

    fn sink(&self, kind: SinkKind) -> SinkConfig {
        let (url, secret) = match kind {
            SinkKind::Legacy => (self.sim.punch_url(), latch_sim::DEFAULT_TNA_KEY),
            SinkKind::Webhooks => (self.sim.webhook_url(), latch_sim::DEFAULT_WEBHOOK_SECRET),
        };
        let mut config = SinkConfig::new(kind, url, secret);
        config.timeout = Duration::from_secs(2);
        config.concurrency = 4;
        config.max_attempts = 20;
        config.breaker_failures = 3;
        config.breaker_open = Duration::from_secs(1);
        config.ack_wait = Duration::from_secs(2);
        config.takeover_after = Duration::from_secs(2);
        config
    }

    /// Starts a worker; returns the breakers of its sinks and its stop token.
    async fn worker(&self, sinks: Vec<SinkConfig>) -> (Vec<Breaker>, CancellationToken) {
        let retry = RetryConfig {
            base: Duration::from_millis(50),
            max: Duration::from_millis(400),
        };
        let registry = prometheus::Registry::new();
        let worker = Worker::build(
            &NatsConfig::for_url(self.nats.url()),
            sinks,
            retry,
            &registry,
        )
        .await
        .unwrap();
        let breakers = worker.sinks.iter().map(|s| s.breaker.clone()).collect();
        let token = CancellationToken::new();
        tokio::spawn(worker.run(token.clone()));
        (breakers, token)
    }

    /// Publishes an event the way the relay does.
    async fn publish(&self, kind: EventKind, holder: Uuid, seq: i64) -> Uuid {
        let id = Uuid::now_v7();
        let envelope = json!({
            "id": id, "kind": kind, "schema_version": 1,
            "occurred_at": "2026-11-22T08:00:00Z", "recorded_at": "2026-11-22T08:00:01Z",
            "site": "hq", "door_id": Uuid::nil(), "holder_id": holder, "reader_id": Uuid::nil(),
            "reader_seq": seq, "decided_offline": false, "decision": null, "reason": null,
            "grant_id": null, "actor_id": null
        });
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.to_string());
        headers.insert("Latch-Event-Id", id.to_string());
        headers.insert(
            "traceparent",
            format!("00-{}-00f067aa0ba902b7-01", id.simple()),
        );
        self.js
            .publish_with_headers(kind.subject(), headers, envelope.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
        id
    }

    async fn dead_letters(&self) -> Vec<async_nats::jetstream::message::StreamMessage> {
        let Ok(stream) = self.js.get_stream(latch_core::nats::DLQ_STREAM).await else {
            return Vec::new();
        };
        let last = stream.get_info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            if let Ok(message) = stream.get_raw_message(seq).await {
                out.push(message);
            }
        }
        out
    }

    async fn wait_for_effects(&self, endpoint: Endpoint, n: u64) {
        wait_until("the sink's effects", DEADLINE, || async {
            let stats = self.sim.stats().await;
            (stats.endpoint(endpoint).effects >= n).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn every_routed_event_takes_effect_once_in_holder_order() {
    let setup = Setup::new().await;
    let (_, token) = setup
        .worker(vec![
            setup.sink(SinkKind::Legacy),
            setup.sink(SinkKind::Webhooks),
        ])
        .await;
    let mut expected: Vec<(Uuid, Vec<String>, Vec<String>)> = Vec::new();
    for _ in 0..6 {
        let holder = Uuid::now_v7();
        let (mut punches, mut all) = (Vec::new(), Vec::new());
        for seq in 0..10 {
            let kind = match seq % 3 {
                0 => EventKind::CheckIn,
                1 => EventKind::UnlockGranted,
                _ => EventKind::CheckOut,
            };
            let id = setup.publish(kind, holder, seq).await.to_string();
            if kind != EventKind::UnlockGranted {
                punches.push(id.clone());
            }
            all.push(id);
        }
        expected.push((holder, punches, all));
    }
    let punches: usize = expected.iter().map(|e| e.1.len()).sum();
    setup
        .wait_for_effects(Endpoint::Legacy, punches as u64)
        .await;
    setup.wait_for_effects(Endpoint::Webhooks, 60).await;
    let stats = setup.sim.stats().await;
    assert_eq!(
        stats.legacy.effects, punches as u64,
        "only check-ins/outs go to legacy"
    );
    assert_eq!(stats.webhooks.effects, 60, "everything goes to webhooks");
    assert_eq!(stats.legacy.duplicates + stats.webhooks.duplicates, 0);
    for (holder, punches, all) in &expected {
        assert_eq!(
            stats.legacy.order_of(&holder.to_string()),
            punches.as_slice()
        );
        assert_eq!(stats.webhooks.order_of(&holder.to_string()), all.as_slice());
    }
    // The trace context travels with each call.
    let (_, _, all) = &expected[0];
    let record = &stats.webhooks.events[&all[0]];
    assert!(
        record
            .traceparent
            .as_deref()
            .unwrap()
            .contains(&all[0].replace('-', ""))
    );
    assert!(setup.dead_letters().await.is_empty());
    token.cancel();
}

#[tokio::test]
async fn a_worker_that_dies_after_the_call_and_before_the_ack_applies_once() {
    let setup = Setup::new().await;
    let config = setup.sink(SinkKind::Legacy);
    // Create the consumer, then act as a worker that calls the sink and dies before acking.
    let (_, token) = setup.worker(vec![config.clone()]).await;
    token.cancel();
    let id = setup.publish(EventKind::CheckIn, Uuid::now_v7(), 0).await;
    let consumer: jetstream::consumer::PullConsumer = setup
        .js
        .get_stream(latch_core::nats::EVENTS_STREAM)
        .await
        .unwrap()
        .get_consumer("latch-legacy")
        .await
        .unwrap();
    let mut pulled = consumer
        .stream()
        .group(latch_worker::deliver::GROUP)
        .max_messages_per_batch(1)
        .messages()
        .await
        .unwrap();
    let message = pulled.next().await.unwrap().unwrap();
    let envelope: Envelope = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(envelope.id, id);
    let sink = Sink::new(config.clone()).unwrap();
    let outcome = sink.deliver(&envelope, &message.payload, None).await;
    assert_eq!(outcome, latch_worker::sink::Outcome::Delivered);
    drop(message); // never acknowledged
    drop(pulled); // and the worker is gone

    // A new worker gets it again after the ack wait and calls with the same key.
    let (_, token) = setup.worker(vec![config]).await;
    wait_until("the redelivery", DEADLINE, || async {
        let stats = setup.sim.stats().await;
        (stats.legacy.duplicates == 1).then_some(())
    })
    .await;
    let stats = setup.sim.stats().await;
    assert_eq!(stats.legacy.effects, 1);
    assert_eq!(stats.legacy.events[&id.to_string()].count, 2);
    token.cancel();
}

#[tokio::test]
async fn an_open_breaker_stops_calls_and_recovery_delivers_everything() {
    let setup = Setup::new().await;
    setup
        .sim
        .set_faults(Faults::only(Endpoint::Legacy, SinkFaults::failing(1.0)))
        .await
        .unwrap();
    // One lane, so no call is in flight when the breaker opens.
    let mut config = setup.sink(SinkKind::Legacy);
    config.concurrency = 1;
    let (breakers, token) = setup.worker(vec![config]).await;
    let breaker = breakers[0].clone();
    let mut ids = Vec::new();
    for seq in 0..20 {
        ids.push(setup.publish(EventKind::CheckIn, Uuid::now_v7(), seq).await);
    }
    wait_until("the breaker to open", DEADLINE, || async {
        (breaker.state() == BreakerState::Open).then_some(())
    })
    .await;

    // Watch the breaker cycle open -> half-open -> open twice. Calls happen only in
    // half-open periods, at most one (the probe limit) per period. A whole cycle can pass
    // between two samples, so periods are counted from the transition counter.
    let mut requests = setup.sim.stats().await.legacy.requests;
    let mut seen = breaker.transitions();
    let mut half_opens = 0;
    let started = Instant::now();
    while half_opens < 2 && started.elapsed() < DEADLINE {
        let now_requests = setup.sim.stats().await.legacy.requests;
        let transitions = breaker.transitions();
        if breaker.state() == BreakerState::Open && (transitions - seen) % 2 == 0 {
            let periods = (transitions - seen) / 2;
            assert!(
                now_requests - requests <= periods,
                "{} calls in {periods} half-open periods (probe limit 1); none while open",
                now_requests - requests
            );
            half_opens += periods;
            seen = transitions;
            requests = now_requests;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(half_opens >= 2, "the breaker never went half-open");

    setup.sim.set_faults(Faults::none()).await.unwrap();
    setup.wait_for_effects(Endpoint::Legacy, 20).await;
    assert_eq!(setup.sim.stats().await.legacy.effects, 20);
    assert!(
        setup.dead_letters().await.is_empty(),
        "nothing dead-lettered for lack of attempts"
    );
    wait_until("the breaker to close", DEADLINE, || async {
        (breaker.state() == BreakerState::Closed).then_some(())
    })
    .await;
    token.cancel();
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_lettered_at_once_with_its_reason() {
    let setup = Setup::new().await;
    let refused = Uuid::now_v7();
    setup
        .sim
        .set_faults(Faults::only(
            Endpoint::Legacy,
            SinkFaults::rejecting(Reject {
                holders: vec![refused.to_string()],
                ..Reject::default()
            }),
        ))
        .await
        .unwrap();
    let (_, token) = setup.worker(vec![setup.sink(SinkKind::Legacy)]).await;
    let bad = setup.publish(EventKind::CheckIn, refused, 0).await;
    let good = setup.publish(EventKind::CheckIn, Uuid::now_v7(), 0).await;
    setup.wait_for_effects(Endpoint::Legacy, 1).await;
    let letters = wait_until("the dead letter", DEADLINE, || async {
        let letters = setup.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    let header = |name: &str| letter.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(letter.subject.as_str(), "latch.dlq.legacy");
    assert_eq!(header("Latch-Event-Id"), Some(bad.to_string()));
    assert_eq!(header("Latch-Dlq-Class").as_deref(), Some("permanent"));
    assert_eq!(header("Latch-Dlq-Status").as_deref(), Some("422"));
    assert_eq!(header("Latch-Dlq-Attempts").as_deref(), Some("1"));
    assert_eq!(
        header("Latch-Dlq-Subject").as_deref(),
        Some("latch.events.check_in")
    );
    assert!(header("traceparent").is_some());
    let envelope: Envelope = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(envelope.id, bad);
    let stats = setup.sim.stats().await;
    assert_eq!(
        stats.legacy.events[&bad.to_string()].count,
        1,
        "not retried"
    );
    assert!(stats.legacy.events[&good.to_string()].applied);
    token.cancel();
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let setup = Setup::new().await;
    setup
        .sim
        .set_faults(Faults::only(
            Endpoint::Webhooks,
            SinkFaults::rate_limited(0, 3),
        ))
        .await
        .unwrap();
    let (_, token) = setup.worker(vec![setup.sink(SinkKind::Webhooks)]).await;
    setup
        .publish(EventKind::UnlockGranted, Uuid::now_v7(), 0)
        .await;
    wait_until("a 429", DEADLINE, || async {
        (setup.sim.stats().await.webhooks.failed >= 1).then_some(())
    })
    .await;
    let throttled_at = Instant::now();
    setup.sim.set_faults(Faults::none()).await.unwrap();
    setup.wait_for_effects(Endpoint::Webhooks, 1).await;
    // We saw the 429 after it happened, so the true wait is at least what we measured.
    assert!(
        throttled_at.elapsed() >= Duration::from_millis(2_800),
        "retried after {:?}, Retry-After said 3 s",
        throttled_at.elapsed()
    );
    assert_eq!(
        setup.sim.stats().await.webhooks.failed,
        1,
        "no call before Retry-After"
    );
    token.cancel();
}

#[tokio::test]
async fn a_replay_goes_to_its_sink_only() {
    let setup = Setup::new().await;
    let (_, token) = setup
        .worker(vec![
            setup.sink(SinkKind::Legacy),
            setup.sink(SinkKind::Webhooks),
        ])
        .await;
    let holder = Uuid::now_v7();
    let id = Uuid::now_v7();
    let envelope = json!({
        "id": id, "kind": "check_in", "schema_version": 1,
        "occurred_at": "2026-11-22T08:00:00Z", "recorded_at": "2026-11-22T08:00:01Z",
        "site": "hq", "door_id": Uuid::nil(), "holder_id": holder, "reader_id": Uuid::nil(),
        "reader_seq": null, "decided_offline": false, "decision": null, "reason": null,
        "grant_id": null, "actor_id": null
    });
    setup
        .js
        .publish(
            latch_core::nats::replay_subject("legacy"),
            envelope.to_string().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    setup.wait_for_effects(Endpoint::Legacy, 1).await;
    let stats = setup.sim.stats().await;
    assert!(stats.legacy.events[&id.to_string()].applied);
    assert_eq!(stats.webhooks.requests, 0, "the replay went to legacy only");
    token.cancel();
}

/// Delivers a sample envelope once through a sink made from `config`.
async fn deliver_once(config: SinkConfig) -> (Envelope, latch_worker::sink::Outcome) {
    let envelope = sample_envelope();
    let raw = serde_json::to_vec(&envelope).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = Sink::new(config)
        .unwrap()
        .deliver(&envelope, &raw, None)
        .await;
    (envelope, outcome)
}

/// A check-in envelope as the relay publishes it.
fn sample_envelope() -> Envelope {
    Envelope {
        id: Uuid::now_v7(),
        kind: EventKind::CheckIn,
        schema_version: latch_core::event::SCHEMA_VERSION,
        occurred_at: time::OffsetDateTime::now_utc(),
        recorded_at: time::OffsetDateTime::now_utc(),
        // Not ASCII: the signature covers the body's UTF-8 bytes.
        site: Some("Zürich".into()),
        door_id: Some(Uuid::now_v7()),
        holder_id: Some(Uuid::now_v7()),
        reader_id: Some(Uuid::now_v7()),
        reader_seq: None,
        sequence: None,
        decided_offline: false,
        decision: None,
        reason: None,
        grant_id: None,
        actor_id: None,
        endpoint_id: None,
    }
}

#[tokio::test]
async fn a_webhook_call_verifies_with_the_reference_python_package() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let python = std::env::var("LATCH_STANDARDWEBHOOKS_PY").unwrap_or_else(|_| {
        panic!(
            "LATCH_STANDARDWEBHOOKS_PY is not set: run the tests with ./deploy/local/test.sh, \
             which installs the standardwebhooks package from PyPI"
        )
    });
    // A receiver that keeps the raw request (head and body, as bytes) and answers 204.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the connection closed before the whole request came");
            request.extend_from_slice(&buffer[..n]);
            let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8(request[..end].to_vec()).expect("an ASCII head");
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .expect("a Content-Length");
            if request.len() >= end + 4 + length {
                socket
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                return (head, request[end + 4..end + 4 + length].to_vec());
            }
        }
    });
    let config = SinkConfig::new(SinkKind::Webhooks, url, latch_sim::DEFAULT_WEBHOOK_SECRET);
    let (envelope, outcome) = deliver_once(config).await;
    assert_eq!(outcome, latch_worker::sink::Outcome::Delivered);
    let (head, body) = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .expect("the call came")
        .unwrap();
    let mut headers = serde_json::Map::new();
    for (name, value) in head.lines().skip(1).filter_map(|l| l.split_once(':')) {
        let name = name.trim().to_ascii_lowercase();
        // Receivers read the first of repeated headers; latch must send each once.
        assert!(
            headers.insert(name.clone(), json!(value.trim())).is_none(),
            "{name} sent twice"
        );
    }
    assert_eq!(headers["webhook-id"], envelope.id.to_string());
    assert_eq!(headers["idempotency-key"], envelope.id.to_string());
    assert!(
        String::from_utf8_lossy(&body).contains("Zürich"),
        "a body that is not ASCII"
    );

    // The reference package, as an integrator calls it; then the same call under another id.
    // The body goes in on stdin, as the bytes that came over the wire.
    let verify = |headers: &serde_json::Map<String, serde_json::Value>| {
        use std::io::Write;
        let mut child = std::process::Command::new(&python)
            .args([
                "-c",
                "import json, sys\n\
                 from standardwebhooks.webhooks import Webhook\n\
                 secret, headers = sys.argv[1], json.loads(sys.argv[2])\n\
                 Webhook(secret).verify(sys.stdin.buffer.read(), headers)\n\
                 print('verified')",
                latch_sim::DEFAULT_WEBHOOK_SECRET,
                &serde_json::Value::Object(headers.clone()).to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run python");
        child.stdin.take().unwrap().write_all(&body).unwrap();
        child.wait_with_output().expect("python ends")
    };
    let verified = verify(&headers);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let mut renamed = headers.clone();
    renamed.insert("webhook-id".into(), json!(Uuid::now_v7().to_string()));
    let refused = verify(&renamed);
    assert!(!refused.status.success(), "a renamed call verified");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("WebhookVerificationError"));
}

#[tokio::test]
async fn a_redirect_from_a_sink_is_not_followed() {
    let setup = Setup::new().await;
    let mut config = setup.sink(SinkKind::Legacy);
    let target = config.url.clone();
    // A sink that answers every request with a redirect to the real one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.url = format!("http://{}/punches", listener.local_addr().unwrap());
    let redirector = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let (_, outcome) = deliver_once(config).await;
    assert_eq!(
        outcome,
        latch_worker::sink::Outcome::Permanent {
            reason: "HTTP 307".into(),
            status: Some(307)
        }
    );
    assert_eq!(
        setup.sim.stats().await.legacy.requests,
        0,
        "the redirect was followed"
    );
    redirector.abort();
}

#[tokio::test]
async fn the_worker_reaches_nats_over_tls_with_the_ca_it_is_given() {
    use latch_testkit::pki::{Ca, Purpose, write};
    let ca = Ca::new("latch test NATS CA");
    let cert = ca.issue("nats", Purpose::Server);
    let nats = NatsServer::start_tls(&cert.cert_pem, &cert.key_pem);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "nats-ca.crt", &ca.pem);
    let other_file = write(dir.path(), "other-ca.crt", &Ca::new("another CA").pem);

    // With the right CA: connected over TLS, and JetStream answers.
    let config = NatsConfig {
        ca_file: Some(ca_file),
        ..NatsConfig::for_url(nats.url())
    };
    let client = latch_core::nats::connect(&config, "test").await.unwrap();
    let stream = latch_core::nats::events_stream_config(&config);
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(stream).await.unwrap();
    assert!(client.server_info().tls_required, "the server requires TLS");

    // Another CA's, or none (the system's trust store does not know this CA): nothing
    // answers, whatever the retries.
    for ca_file in [Some(other_file), None] {
        let config = NatsConfig {
            ca_file,
            request_timeout: Duration::from_secs(1),
            ..NatsConfig::for_url(nats.url().replace("nats://", "tls://"))
        };
        let client = latch_core::nats::connect(&config, "test").await.unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            jetstream::new(client).get_stream(latch_core::nats::EVENTS_STREAM),
        )
        .await;
        assert!(
            !matches!(answer, Ok(Ok(_))),
            "reached NATS without trusting its certificate"
        );
    }
}
