//! Reader clocks too far from the server's: recorded, flagged, counted.

use reqwest::StatusCode;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

fn at(offset: Duration) -> String {
    (OffsetDateTime::now_utc() + offset)
        .format(&Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn events_from_a_skewed_clock_are_recorded_and_flagged() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;

    let future = expect_status(
        app.post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "ADA", "occurred_at": at(Duration::hours(1))}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(future["clock_skewed"], true);
    let past = expect_status(
        app.post(
            "/v1/unlock",
            &door.reader_key,
            &json!({"card_id": "ADA", "occurred_at": at(-Duration::days(60))}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(past["clock_skewed"], true);
    let fine = expect_status(
        app.post(
            "/v1/check-outs",
            &door.reader_key,
            &json!({"card_id": "ADA", "occurred_at": at(Duration::minutes(2))}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(fine["clock_skewed"], false);
    let batch = expect_status(
        app.upload(
            &door.reader_key,
            &json!([{"seq": 1, "type": "alarm", "alarm": "held_open",
                     "occurred_at": at(-Duration::days(400))}]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(batch["results"][0]["status"], "accepted");

    // The registry shows the flag on each.
    let page = app.admin_get("/v1/actions?limit=10").await;
    let flagged = |id: &serde_json::Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["id"] == *id)
            .map(|item| item["clock_skewed"].clone())
            .unwrap()
    };
    assert_eq!(flagged(&future["action_id"]), true);
    assert_eq!(flagged(&past["action_id"]), true);
    assert_eq!(flagged(&fine["action_id"]), false);
    assert_eq!(flagged(&batch["results"][0]["action_id"]), true);
    assert_eq!(app.metric("latch_reader_clock_skew_total").await, 3.0);
}
