//! Reader key rotation: the old and the new key both work inside the grace period, only
//! the new one after it; each rotation is in the registry with both keys named.

use std::time::{Duration, Instant};

use latch_core::credentials;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn rotate(app: &TestApp, reader: uuid::Uuid, body: serde_json::Value) -> serde_json::Value {
    expect_status(
        app.post(
            &format!("/v1/readers/{reader}/keys:rotate"),
            &app.admin_token,
            &body,
        )
        .await,
        StatusCode::OK,
    )
    .await
}

async fn unlock_status(app: &TestApp, key: &str) -> StatusCode {
    app.unlock(key, "ADA").await.status()
}

#[tokio::test]
async fn old_and_new_keys_work_inside_the_grace_period_and_only_the_new_one_after() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    app.grant(holder, door.id).await;
    let first = door.reader_key.clone();
    assert_eq!(unlock_status(&app, &first).await, StatusCode::OK);

    let rotated = rotate(&app, door.reader_id, json!({"grace_secs": 3600})).await;
    let second = rotated["key"].as_str().expect("the new key").to_owned();
    assert!(second.starts_with("lrk_") && second != first);
    assert!(rotated["previous_key_until"].is_string(), "{rotated}");
    // Both keys open the door, as the same reader; every reader endpoint takes either.
    for key in [&first, &second] {
        let body = expect_status(app.unlock(key, "ADA").await, StatusCode::OK).await;
        assert_eq!(body["decision"], "granted", "{body}");
        expect_status(
            app.post("/v1/readers/heartbeat", key, &json!({})).await,
            StatusCode::OK,
        )
        .await;
        expect_status(
            app.post("/v1/check-ins", key, &json!({"card_id": "ADA"}))
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
    let readers = app.admin_get("/v1/readers").await;
    assert!(readers[0]["previous_key_until"].is_string(), "{readers}");

    // The registry names both keys by the start of their hashes.
    let actions = app.admin_get("/v1/actions?kind=reader_key_rotated").await;
    let reason = actions["items"][0]["reason"].as_str().expect("reason");
    let prefix = |key: &str| hex::encode(&credentials::hash(key)[..8]);
    assert!(
        reason.contains(&prefix(&first)) && reason.contains(&prefix(&second)),
        "{reason}"
    );
    assert_eq!(uuid(&actions["items"][0]["reader_id"]), door.reader_id);
    assert!(actions["items"][0]["actor_id"].is_string());

    // Rotating with no grace (a stolen key): only the newest key works, at once.
    let third = rotate(&app, door.reader_id, json!({"grace_secs": 0})).await;
    let third = third["key"].as_str().expect("key").to_owned();
    assert_eq!(unlock_status(&app, &first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(unlock_status(&app, &second).await, StatusCode::UNAUTHORIZED);
    assert_eq!(unlock_status(&app, &third).await, StatusCode::OK);
    let readers = app.admin_get("/v1/readers").await;
    assert!(readers[0]["previous_key_until"].is_null(), "{readers}");
}

#[tokio::test]
async fn the_old_key_stops_when_its_grace_period_ends() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    let rotated = rotate(&app, door.reader_id, json!({"grace_secs": 1})).await;
    let new = rotated["key"].as_str().expect("key").to_owned();
    // Wait on the condition itself (the old key refused), with a deadline.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match unlock_status(&app, &door.reader_key).await {
            StatusCode::UNAUTHORIZED => break,
            StatusCode::OK => {}
            other => panic!("the old key got {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "the old key still works 15 s after a 1 s grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unlock_status(&app, &new).await, StatusCode::OK);
}

#[tokio::test]
async fn a_rotation_refused_changes_nothing_and_a_retry_shows_no_key() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    let before = app.counts().await;
    for (body, code) in [
        (json!({"grace_secs": -1}), "invalid_field"),
        (json!({"grace_secs": 30 * 86_400 + 1}), "invalid_field"),
    ] {
        expect_error(
            app.post(
                &format!("/v1/readers/{}/keys:rotate", door.reader_id),
                &app.admin_token,
                &body,
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
    }
    expect_error(
        app.post(
            &format!("/v1/readers/{}/keys:rotate", door.reader_id),
            &app.admin_token,
            &json!({"grace": 5}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
    )
    .await;
    expect_error(
        app.post(
            &format!("/v1/readers/{}/keys:rotate", uuid::Uuid::now_v7()),
            &app.admin_token,
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "reader_not_found",
    )
    .await;
    // A reader key cannot rotate keys, not even its own.
    expect_error(
        app.post(
            &format!("/v1/readers/{}/keys:rotate", door.reader_id),
            &door.reader_key,
            &json!({}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(app.counts().await, before);
    assert_eq!(unlock_status(&app, &door.reader_key).await, StatusCode::OK);

    // A retried rotation (same Idempotency-Key) answers the first result without the key
    // and does not rotate again.
    let send = || {
        app.request(
            reqwest::Method::POST,
            &format!("/v1/readers/{}/keys:rotate", door.reader_id),
            &app.admin_token,
        )
        .header("Idempotency-Key", "rotate-1")
        .json(&json!({"grace_secs": 600}))
        .send()
    };
    let first = expect_status(send().await.expect("request"), StatusCode::OK).await;
    let new = first["key"].as_str().expect("key").to_owned();
    let again = send().await.expect("request");
    assert_eq!(
        again
            .headers()
            .get("Idempotent-Replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let again = expect_status(again, StatusCode::OK).await;
    assert!(again.get("key").is_none(), "{again}");
    assert_eq!(app.count_kind("reader_key_rotated").await, 1);
    assert_eq!(unlock_status(&app, &new).await, StatusCode::OK);
    assert_eq!(unlock_status(&app, &door.reader_key).await, StatusCode::OK);

    // A disabled reader gets no new key.
    expect_status(
        app.post(
            &format!("/v1/readers/{}/disable", door.reader_id),
            &app.admin_token,
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    expect_error(
        app.post(
            &format!("/v1/readers/{}/keys:rotate", door.reader_id),
            &app.admin_token,
            &json!({}),
        )
        .await,
        StatusCode::CONFLICT,
        "reader_disabled",
    )
    .await;
    assert_eq!(unlock_status(&app, &new).await, StatusCode::UNAUTHORIZED);
}
