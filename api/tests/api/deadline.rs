//! A database that stops answering (frozen, or cut off by a silent partition) gets readers
//! a `503` within the configured bound, not a hang; the server-side statement timeout
//! cancels what runs too long.

use std::time::{Duration, Instant};

use latch_testkit::wait_until;
use reqwest::StatusCode;

use crate::helpers::*;

/// The API's own server processes of this test's database, stopped (`SIGSTOP`) until
/// dropped: PostgreSQL frozen for this API, and for nobody else.
struct Frozen(Vec<i32>);

impl Frozen {
    async fn api_backends(app: &TestApp) -> Frozen {
        let pids = app.api_sessions().await;
        assert!(!pids.is_empty(), "the API has no connection yet");
        signal(&pids, "STOP");
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(&self.0, "CONT");
    }
}

fn signal(pids: &[i32], signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(i32::to_string))
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pids:?}");
}

#[tokio::test]
async fn a_frozen_database_answers_503_within_the_request_timeout() {
    let app = spawn_app_with_timeouts(Duration::from_millis(1500), Duration::from_secs(5)).await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    // Pooled connections exist, idle: the next requests get them.
    expect_status(app.unlock(&door.reader_key, "ADA").await, StatusCode::OK).await;

    let frozen = Frozen::api_backends(&app).await;
    for _ in 0..3 {
        let started = Instant::now();
        let answer = app.unlock(&door.reader_key, "ADA").await;
        let waited = started.elapsed();
        let body = expect_error(answer, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
        assert!(
            waited < Duration::from_secs(5),
            "answered after {waited:?}: {body}"
        );
    }
    drop(frozen);

    // Thawed, the API answers again.
    wait_until("the API answers again", Duration::from_secs(30), || async {
        (app.unlock(&door.reader_key, "ADA").await.status() == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_statement_that_waits_too_long_is_cancelled_by_the_server() {
    // The request may take long; its statement may not.
    let app = spawn_app_with_timeouts(Duration::from_secs(30), Duration::from_secs(1)).await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    // A transaction elsewhere holds the holder's ordering lock (as the outbox trigger takes
    // it): an unlock of that holder waits on it until its statement_timeout.
    let owner = app.db.owner().await;
    owner.batch_execute("BEGIN").await.unwrap();
    owner
        .execute(
            "SELECT pg_advisory_xact_lock(7414, hashtext($1::uuid::text))",
            &[&holder],
        )
        .await
        .unwrap();
    let started = Instant::now();
    let answer = app.unlock(&door.reader_key, "ADA").await;
    let waited = started.elapsed();
    expect_error(answer, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    owner.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(app.count_kind("unlock_denied").await, 0);
}
