//! Door alarms: `POST /v1/doors/alarm`.

use latch_core::event::{Envelope, EventKind};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn an_alarm_is_recorded_and_published_on_its_subject() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Loading dock").await;
    for (body, kind) in [
        (json!({"alarm": "forced_open"}), EventKind::DoorForcedOpen),
        (
            json!({"alarm": "forced_open", "restored": true}),
            EventKind::DoorForcedOpenRestored,
        ),
        (json!({"alarm": "held_open"}), EventKind::DoorHeldOpen),
        (
            json!({"alarm": "held_open", "restored": true}),
            EventKind::DoorHeldOpenRestored,
        ),
        (
            json!({"alarm": "tamper", "occurred_at": "2026-11-22T03:00:00Z"}),
            EventKind::ReaderTamper,
        ),
        (
            json!({"alarm": "tamper", "restored": true}),
            EventKind::ReaderTamperRestored,
        ),
    ] {
        let (actions, outbox) = app.counts().await;
        let response = expect_status(
            app.alarm(&door.reader_key, &body).await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(response["kind"], kind.as_str());
        assert_eq!(response["site"], "hq");
        assert_eq!(uuid(&response["door_id"]), door.id);
        assert_eq!(uuid(&response["reader_id"]), door.reader_id);
        assert_eq!(app.counts().await, (actions + 1, outbox + 1));

        let rows = app.outbox_of(uuid(&response["action_id"])).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, format!("latch.events.{kind}"));
        let envelope: Envelope = serde_json::from_value(rows[0].1.clone()).unwrap();
        assert_eq!(envelope.kind, kind);
        assert_eq!(envelope.door_id, Some(door.id));
        assert_eq!(envelope.reader_id, Some(door.reader_id));
        assert_eq!(envelope.site.as_deref(), Some("hq"));
        assert_eq!(envelope.holder_id, None);
        assert!(!envelope.decided_offline);
    }
    let tamper = app.admin_get("/v1/actions?kind=reader_tamper").await;
    assert_eq!(
        tamper["items"][0]["occurred_at"], "2026-11-22T03:00:00Z",
        "the reader's clock is kept"
    );
}

#[tokio::test]
async fn bad_alarms_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let (actions, outbox) = app.counts().await;
    expect_error(
        app.alarm(&door.reader_key, &json!({"alarm": "on_fire"}))
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;
    expect_error(
        app.alarm(
            &door.reader_key,
            &json!({"alarm": "tamper", "door_id": door.id}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
    )
    .await;
    expect_error(
        app.alarm(&app.admin_token, &json!({"alarm": "tamper"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_error(
        app.alarm("lrk_unknown", &json!({"alarm": "tamper"})).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(app.counts().await, (actions, outbox));
}
