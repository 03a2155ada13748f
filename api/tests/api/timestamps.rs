//! Times latch cannot store and show again are refused at the boundary, before anything is
//! written, on every endpoint that takes one; the roll-call and the registry stay readable.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// Past year 9999 in UTC, and year -1 in UTC.
const UNKEEPABLE: [&str; 3] = [
    "9999-12-31T23:59:59-01:00",
    "0000-01-01T00:00:00+01:00",
    "0000-12-31T23:59:59.999999Z",
];

#[tokio::test]
async fn reader_posts_with_an_unkeepable_time_are_422_and_write_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    app.grant(holder, door.id).await;
    let before = app.counts().await;

    for at in UNKEEPABLE {
        for (path, body) in [
            ("/v1/unlock", json!({"card_id": "ADA", "occurred_at": at})),
            (
                "/v1/check-ins",
                json!({"card_id": "ADA", "occurred_at": at, "seq": 1}),
            ),
            (
                "/v1/check-outs",
                json!({"card_id": "ADA", "occurred_at": at}),
            ),
            (
                "/v1/doors/alarm",
                json!({"alarm": "forced_open", "occurred_at": at}),
            ),
        ] {
            // With a valid key, and with a key that exists nowhere: neither reaches the database.
            for key in [door.reader_key.as_str(), "lrk_x"] {
                let body = expect_error(
                    app.post(path, key, &body).await,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_timestamp",
                )
                .await;
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("occurred_at"),
                    "{body}"
                );
            }
        }
        let upload = expect_status(
            app.upload(
                &door.reader_key,
                &json!([{"seq": 7, "type": "check_in", "card_id": "ADA", "occurred_at": at}]),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(upload["results"][0]["status"], "rejected", "{upload}");
        assert_eq!(
            upload["results"][0]["code"], "invalid_timestamp",
            "{upload}"
        );
    }
    assert_eq!(app.counts().await, before, "nothing was written");
    // The seq the rejected upload carried is still free.
    assert_eq!(app.gaps(door.reader_id).await["last_seq"], Value::Null);

    // The reader, and the API, are fine.
    let unlock = expect_status(app.unlock(&door.reader_key, "ADA").await, StatusCode::OK).await;
    assert_eq!(unlock["decision"], "granted");
}

#[tokio::test]
async fn admin_inputs_with_an_unkeepable_time_are_422_and_write_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    let before = app.counts().await;
    for at in UNKEEPABLE {
        for field in ["valid_from", "valid_until"] {
            let mut body = json!({"holder_id": holder, "door_id": door.id});
            body[field] = json!(at);
            expect_error(
                app.post("/v1/grants", &app.admin_token, &body).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_timestamp",
            )
            .await;
        }
        for param in ["since", "until"] {
            let at: String = form_urlencoded::byte_serialize(at.as_bytes()).collect();
            let response = app
                .request(
                    Method::GET,
                    &format!("/v1/actions?{param}={at}"),
                    &app.admin_token,
                )
                .send()
                .await
                .unwrap();
            expect_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_timestamp",
            )
            .await;
        }
    }
    assert_eq!(app.counts().await, before, "nothing was written");
}

#[tokio::test]
async fn the_edges_of_what_latch_keeps_are_accepted_and_shown_again() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    for (sent, shown) in [
        ("0001-01-01T00:59:00+00:59", "0001-01-01T00:00:00Z"),
        (
            "9999-12-31T23:59:59.9999999Z",
            "9999-12-31T23:59:59.999999Z",
        ),
    ] {
        let recorded = expect_status(
            app.post(
                "/v1/check-ins",
                &door.reader_key,
                &json!({"card_id": "ADA", "occurred_at": sent}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(recorded["occurred_at"], shown);
        assert_eq!(recorded["clock_skewed"], true);
        let page = app.admin_get("/v1/actions?limit=1").await;
        assert_eq!(page["items"][0]["occurred_at"], shown);
        // The roll-call is readable, and shows the holder.
        let presence = app.admin_get("/v1/sites/hq/presence").await;
        assert_eq!(presence["count"], 1, "{presence}");
    }
}
