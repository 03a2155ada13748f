//! Heartbeats, last-seen times, and reader offline/online transitions — once each, however
//! many API replicas watch.

use std::time::Duration;

use latch_api::{ApiConfig, ReadersConfig};
use latch_testkit::wait_until;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

const DEADLINE: Duration = Duration::from_secs(20);

/// Checks and flushes every 50 ms.
fn fast() -> ApiConfig {
    ApiConfig {
        readers: ReadersConfig {
            check_interval: Duration::from_millis(50),
            flush_interval: Duration::from_millis(50),
            ..ReadersConfig::default()
        },
        ..unlimited()
    }
}

async fn reader_state(app: &TestApp, reader: Uuid) -> Value {
    let readers = app.admin_get("/v1/readers").await;
    readers
        .as_array()
        .unwrap()
        .iter()
        .find(|r| uuid(&r["id"]) == reader)
        .cloned()
        .unwrap()
}

/// Waits until each of the two processes has completed `rounds` more liveness checks.
async fn more_checks(app: &TestApp, replica: &Replica, rounds: f64) {
    let name = "latch_reader_liveness_checks_total";
    let (a, b) = (
        app.metric(name).await,
        metric(&app.http, &replica.base, name).await,
    );
    wait_until(
        "more liveness checks on both replicas",
        DEADLINE,
        async || {
            let done = app.metric(name).await >= a + rounds
                && metric(&app.http, &replica.base, name).await >= b + rounds;
            done.then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_silent_reader_goes_offline_once_and_comes_back_once_with_two_replicas() {
    let app = spawn_app_configured(64 * 1024, fast()).await;
    let replica = app.spawn_replica(fast());
    let door = app.create_door("hq", "Main").await;
    let (reader, key) = app.enrol_reader(door.id, Some(1)).await;
    assert_eq!(reader_state(&app, reader).await["offline_after_secs"], 1);

    wait_until("reader_offline", DEADLINE, async || {
        (app.count_kind("reader_offline").await > 0).then_some(())
    })
    .await;
    more_checks(&app, &replica, 3.0).await;
    assert_eq!(app.count_kind("reader_offline").await, 1);
    let state = reader_state(&app, reader).await;
    assert_eq!(state["online"], false);
    assert!(state["last_seen_at"].is_null(), "never seen: {state}");
    let offline = app
        .db
        .owner()
        .await
        .query_one(
            "SELECT reader_id, door_id, site FROM actions WHERE kind = 'reader_offline'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(offline.get::<_, Uuid>(0), reader);
    assert_eq!(offline.get::<_, Uuid>(1), door.id);
    assert_eq!(offline.get::<_, String>(2), "hq");
    // The main door's reader (five minutes) is not silent yet.
    assert_eq!(reader_state(&app, door.reader_id).await["online"], true);

    // Keep it from going silent again right after it returns.
    app.db
        .owner()
        .await
        .execute(
            "UPDATE readers SET offline_after = interval '1 hour' WHERE id = $1",
            &[&reader],
        )
        .await
        .unwrap();
    // A heartbeat to the other replica brings it back.
    let beat = app
        .http
        .post(format!("{}/v1/readers/heartbeat", replica.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let beat = expect_status(beat, StatusCode::OK).await;
    assert_eq!(uuid(&beat["reader_id"]), reader);
    assert_eq!(beat["offline_after_secs"], 3600);
    wait_until("reader_online", DEADLINE, async || {
        (app.count_kind("reader_online").await > 0).then_some(())
    })
    .await;
    more_checks(&app, &replica, 3.0).await;
    assert_eq!(app.count_kind("reader_online").await, 1);
    assert_eq!(app.count_kind("reader_offline").await, 1);
    let state = reader_state(&app, reader).await;
    assert_eq!(state["online"], true);
    assert!(state["last_seen_at"].is_string(), "{state}");

    let subjects: Vec<String> = app
        .db
        .owner()
        .await
        .query(
            "SELECT subject FROM outbox WHERE subject LIKE 'latch.events.reader_o%' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        subjects,
        ["latch.events.reader_offline", "latch.events.reader_online"]
    );
    assert_eq!(app.metric("latch_readers_offline").await, 0.0);
}

#[tokio::test]
async fn every_reader_post_is_a_heartbeat_and_none_writes_the_reader_row() {
    let app = spawn_app_configured(64 * 1024, fast()).await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    let last_seen = async || reader_state(&app, door.reader_id).await["last_seen_at"].clone();
    assert!(last_seen().await.is_null());

    app.unlock(&door.reader_key, "ADA").await;
    let first = wait_until("a flushed last-seen time", DEADLINE, async || {
        last_seen().await.as_str().map(str::to_owned)
    })
    .await;
    // The explicit heartbeat: empty, `{}` or `null`, and writes no action.
    let (actions, outbox) = app.counts().await;
    for body in ["", "{}", " null\n"] {
        let response = app
            .request(
                reqwest::Method::POST,
                "/v1/readers/heartbeat",
                &door.reader_key,
            )
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::OK).await;
    }
    wait_until("a later last-seen time", DEADLINE, async || {
        last_seen()
            .await
            .as_str()
            .filter(|at| *at > first.as_str())
            .map(|_| ())
    })
    .await;
    assert_eq!(app.counts().await, (actions, outbox));

    let post = |key: &str, body: &'static str| {
        app.request(reqwest::Method::POST, "/v1/readers/heartbeat", key)
            .body(body)
            .send()
    };
    expect_error(
        post(&door.reader_key, "{\"battery\": 3}").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "unknown_field",
    )
    .await;
    // White space alone is not JSON (and not an empty body).
    for body in ["[", " ", "\r"] {
        expect_error(
            post(&door.reader_key, body).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        )
        .await;
    }
    expect_error(
        post(&app.admin_token, "{}").await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_error(
        post("lrk_unknown", "{}").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}
