//! The `latch-sim` binary: its help, and a real process serving until SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_latch-sim");

#[test]
fn help_explains_each_flag_with_an_example() {
    let top = Command::new(BIN).arg("--help").output().expect("runs");
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(top.contains("legacy"), "{top}");

    let legacy = Command::new(BIN)
        .args(["legacy", "--help"])
        .output()
        .expect("runs");
    assert!(legacy.status.success());
    let legacy = String::from_utf8_lossy(&legacy.stdout);
    for flag in [
        "--addr",
        "--admin-addr",
        "--tna-key",
        "--webhook-secret",
        "--only",
        "--error-rate",
        "--latency",
        "--hang",
        "--down",
        "--reject-holder",
        "--reject-kind",
        "--reject-event",
        "--rate-limit",
        "--retry-after",
    ] {
        assert!(legacy.contains(flag), "{flag} missing from:\n{legacy}");
    }
    assert!(legacy.matches("Example:").count() >= 15, "{legacy}");
}

/// A child process killed when the test ends, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_on_os_picked_ports_and_stops_on_sigterm() {
    let mut child = Child(
        Command::new(BIN)
            .args([
                "legacy",
                "--addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--error-rate",
                "1",
            ])
            .env("LATCH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    // The first line is printed once both listeners are bound.
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("joins")
    .expect("reads the address line");
    let urls: Value = serde_json::from_str(&line).expect("a JSON line");
    let admin = urls["admin_url"].as_str().expect("admin_url");

    let client = crate::helpers::fresh_client(std::time::Duration::from_secs(5));
    let faults: latch_sim::Faults = client
        .get(format!("{admin}/faults"))
        .send()
        .await
        .expect("the admin listener answers")
        .json()
        .await
        .expect("faults JSON");
    assert_eq!(faults.legacy.error_rate, 1.0);

    let terminated = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let status = tokio::task::spawn_blocking(move || {
        let status = child.0.wait();
        drop(child);
        status
    })
    .await
    .expect("joins")
    .expect("waits");
    assert!(status.success(), "{status:?}");
}
