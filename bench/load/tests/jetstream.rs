//! `latch-load jetstream` against a real nats-server (fsync on every write, like
//! production): both modes publish what they report, the stream holds exactly that, and
//! the stream is gone afterwards unless kept.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use latch_load::jetstream::{PublishConfig, PublishMode, run};
use latch_testkit::NatsServer;

fn config(url: &str, mode: PublishMode, messages: u64) -> PublishConfig {
    PublishConfig {
        messages: Some(messages),
        duration: Some(Duration::from_secs(30)),
        ..PublishConfig::new(url, mode, Duration::from_secs(30))
    }
}

async fn stream_exists(url: &str, name: &str) -> bool {
    let client = async_nats::connect(url).await.unwrap();
    async_nats::jetstream::new(client)
        .get_stream(name)
        .await
        .is_ok()
}

#[tokio::test]
async fn atomic_batches_are_stored_whole_and_counted() {
    let nats = NatsServer::start();
    let mut config = config(
        &nats.url(),
        PublishMode::Atomic {
            batch: 100,
            in_flight: 2,
        },
        1000,
    );
    config.warmup = Duration::from_millis(100);
    config.keep_stream = true;
    let report = run(config).await.unwrap();
    assert_eq!(report.mode, "atomic");
    assert!(report.messages >= 1000, "{report}");
    assert_eq!(report.messages % 100, 0, "whole batches only: {report}");
    assert_eq!(report.acks * 100, report.messages);
    assert_eq!(report.stored, report.messages + report.warmup_messages);
    assert!(report.msgs_per_s > 0.0 && report.ack_latency_ms.p50 > 0.0);
    assert!(stream_exists(&nats.url(), "LATCH_BENCH").await, "kept");
}

#[tokio::test]
async fn single_publishes_are_pipelined_and_the_stream_is_removed() {
    let nats = NatsServer::start();
    let report = run(config(
        &nats.url(),
        PublishMode::Single { in_flight: 64 },
        500,
    ))
    .await
    .unwrap();
    assert_eq!(report.mode, "single");
    assert!(report.messages >= 500, "{report}");
    assert_eq!(report.acks, report.messages);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.stored, report.messages + report.warmup_messages);
    assert!(!stream_exists(&nats.url(), "LATCH_BENCH").await, "deleted");
}

#[tokio::test]
async fn latch_streams_are_never_the_target() {
    let nats = NatsServer::start();
    let mut config = config(&nats.url(), PublishMode::Single { in_flight: 1 }, 1);
    config.stream = "LATCH_EVENTS".into();
    let error = run(config).await.unwrap_err().to_string();
    assert!(error.contains("latch's own stream"), "{error}");
}

#[test]
fn the_binary_prints_one_json_report() {
    let nats = NatsServer::start();
    let output = Command::new(env!("CARGO_BIN_EXE_latch-load"))
        .args(["jetstream", "atomic", "--batch", "50", "--messages", "200"])
        .args(["--size", "530", "--json", "--url", &nats.url()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["batch"], 50);
    assert_eq!(json["size"], 530);
    assert!(json["messages"].as_u64().unwrap() >= 200);
    assert!(json["msgs_per_s"].as_f64().unwrap() > 0.0);
}
