use reqwest::StatusCode;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

async fn roll_call(app: &TestApp, site: &str) -> Vec<String> {
    let presence = app.admin_get(&format!("/v1/sites/{site}/presence")).await;
    assert_eq!(
        presence["count"].as_u64().unwrap() as usize,
        presence["people"].as_array().unwrap().len()
    );
    presence["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["card_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn presence_follows_check_ins_and_check_outs() {
    let app = spawn_app().await;
    let main = app.create_door("hq", "Main").await;
    let annex = app.create_door("annex", "Front").await;
    app.create_holder("ADA").await;
    app.create_holder("GRACE").await;
    assert!(roll_call(&app, "hq").await.is_empty());

    for card in ["ADA", "GRACE"] {
        let body = expect_status(
            app.post("/v1/check-ins", &main.reader_key, &json!({"card_id": card}))
                .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(body["kind"], "check_in");
        assert_eq!(body["site"], "hq");
        assert_eq!(uuid(&body["door_id"]), main.id);
    }
    assert_eq!(roll_call(&app, "hq").await, ["ADA", "GRACE"]);
    assert!(
        roll_call(&app, "annex").await.is_empty(),
        "sites are separate"
    );

    let body = expect_status(
        app.post(
            "/v1/check-outs",
            &main.reader_key,
            &json!({"card_id": "ADA"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(body["kind"], "check_out");
    assert_eq!(roll_call(&app, "hq").await, ["GRACE"]);

    expect_status(
        app.post(
            "/v1/check-ins",
            &annex.reader_key,
            &json!({"card_id": "ADA"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(roll_call(&app, "annex").await, ["ADA"]);
}

#[tokio::test]
async fn a_late_check_in_does_not_override_a_later_check_out() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    let post = async |path: &str, at: &str| {
        expect_status(
            app.post(
                path,
                &door.reader_key,
                &json!({"card_id": "ADA", "occurred_at": at}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await
    };
    // Yesterday, by the reader's clock (well within the accepted skew).
    let day = (OffsetDateTime::now_utc() - Duration::days(1)).date();
    let at = |hour: u8| {
        day.with_hms(hour, 0, 0)
            .unwrap()
            .assume_utc()
            .format(&Rfc3339)
            .unwrap()
    };
    post("/v1/check-ins", &at(8)).await;
    post("/v1/check-outs", &at(17)).await;
    // Sent late, happened before the check-out: recorded, but presence stays "out".
    let late = post("/v1/check-ins", &at(12)).await;
    assert_eq!(late["occurred_at"], at(12));
    assert!(roll_call(&app, "hq").await.is_empty());
    post("/v1/check-ins", &at(18)).await;
    assert_eq!(roll_call(&app, "hq").await, ["ADA"]);
}

#[tokio::test]
async fn unknown_and_inactive_holders_cannot_check_in() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    app.request(
        reqwest::Method::PATCH,
        &format!("/v1/holders/{holder}"),
        &app.admin_token,
    )
    .json(&json!({"active": false}))
    .send()
    .await
    .unwrap();
    let (actions, outbox) = app.counts().await;
    expect_error(
        app.post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "NOBODY"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown_card",
    )
    .await;
    expect_error(
        app.post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "ADA"}),
        )
        .await,
        StatusCode::CONFLICT,
        "holder_inactive",
    )
    .await;
    assert_eq!(app.counts().await, (actions, outbox));
    assert!(roll_call(&app, "hq").await.is_empty());
}

#[tokio::test]
async fn a_reader_clock_in_the_future_never_decides_the_roll_call() {
    let app = spawn_app().await;
    let main = app.create_door("hq", "Main").await;
    let side = app.create_door("hq", "Side").await;
    app.create_holder("ADA").await;
    let post = async |door: &TestDoor, path: &str, at: Option<String>| {
        let mut body = json!({"card_id": "ADA"});
        if let Some(at) = at {
            body["occurred_at"] = json!(at);
        }
        expect_status(
            app.post(path, &door.reader_key, &body).await,
            StatusCode::CREATED,
        )
        .await
    };
    let in_future = |d: Duration| (OffsetDateTime::now_utc() + d).format(&Rfc3339).unwrap();

    // A check-out dated 9999 (flagged skewed) does not hide the next check-in...
    let out = post(&main, "/v1/check-outs", Some("9999-12-31T00:00:00Z".into())).await;
    assert_eq!(out["clock_skewed"], true);
    post(&side, "/v1/check-ins", None).await;
    assert_eq!(roll_call(&app, "hq").await, ["ADA"]);
    // ...and a check-in dated 9999 does not keep someone present after they leave.
    post(&main, "/v1/check-ins", Some("9999-12-31T00:00:00Z".into())).await;
    post(&side, "/v1/check-outs", None).await;
    assert!(roll_call(&app, "hq").await.is_empty());

    // A reader running four minutes fast (within the accepted skew, not flagged) checks
    // the holder out; a minute later a reader with a correct clock checks them back in.
    let fast = post(
        &main,
        "/v1/check-outs",
        Some(in_future(Duration::minutes(4))),
    )
    .await;
    assert_eq!(fast["clock_skewed"], false);
    post(
        &side,
        "/v1/check-ins",
        Some(in_future(Duration::seconds(1))),
    )
    .await;
    assert_eq!(roll_call(&app, "hq").await, ["ADA"]);
}
