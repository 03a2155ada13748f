//! `latch-load readers` as a script runs it: flags, JSON on stdout, exit codes.

use std::io::Write;
use std::process::Output;

use serde_json::Value;
use tokio::process::Command;

use crate::api::{FakeApi, GRANTED, KEY};

const BIN: &str = env!("CARGO_BIN_EXE_latch-load");

async fn readers(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("readers")
        .args(args)
        .env("LATCH_LOG", "warn")
        .output()
        .await
        .expect("the binary runs")
}

#[tokio::test]
async fn help_explains_each_flag_with_an_example() {
    let help = readers(&["--help"]).await;
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let flags = [
        "--url",
        "--endpoint",
        "--concurrency",
        "--rate",
        "--max-in-flight",
        "--duration",
        "--requests",
        "--warmup",
        "--reader-key",
        "--keys-file",
        "--card",
        "--seed",
        "--idempotency",
        "--timeout",
        "--json",
        "--histogram-out",
    ];
    for flag in flags {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(help.matches("Example: --").count() >= flags.len(), "{help}");
    assert!(help.contains("latch-load readers --keys-file"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_one_json_object_and_writes_the_distribution() {
    let api = FakeApi::start().await;
    let mut keys = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        keys,
        "LATCH_DEMO_ADMIN_TOKEN=lat_x\nLATCH_DEMO_READER_KEY={KEY}\nLATCH_DEMO_CARD_GRANTED={GRANTED}"
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("latency.csv");
    let output = readers(&[
        "--url",
        &api.url,
        "--keys-file",
        keys.path().to_str().unwrap(),
        "--requests",
        "25",
        "--concurrency",
        "2",
        "--json",
        "--histogram-out",
        csv.to_str().unwrap(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["endpoint"], "unlock");
    assert_eq!(report["concurrency"], 2);
    assert_eq!(report["requests"], 25);
    assert_eq!(report["statuses"]["200"], 25);
    assert_eq!(report["decisions"]["granted"], 25);
    assert_eq!(report["errors"], 0);
    for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(report["latency_ms"][key].is_number(), "{key}");
    }
    assert!(stderr.contains("latency ms"), "the summary goes to stderr");
    assert!(!stderr.contains(KEY), "the reader key is never printed");
    let csv = std::fs::read_to_string(csv).unwrap();
    assert!(
        csv.starts_with("value_ms,percentile,total_count\n"),
        "{csv}"
    );
    assert!(csv.trim_end().ends_with(",25"), "{csv}");
}

#[tokio::test]
async fn exit_codes_tell_bad_flags_from_an_unreachable_target() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let unreachable = readers(&[
        "--url",
        &url,
        "--reader-key",
        KEY,
        "--card",
        "C",
        "--requests",
        "3",
    ])
    .await;
    assert_eq!(unreachable.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("unreachable") && stderr.contains(&url),
        "{stderr}"
    );

    let no_stop = readers(&["--url", &url, "--reader-key", KEY, "--card", "C"]).await;
    assert_eq!(no_stop.status.code(), Some(2));
    let no_keys = readers(&["--url", &url, "--requests", "3"]).await;
    assert_eq!(no_keys.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_keys.stderr).contains("no reader key"));
}
