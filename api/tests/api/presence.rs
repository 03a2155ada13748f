use reqwest::StatusCode;
use serde_json::json;

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
    post("/v1/check-ins", "2026-01-01T08:00:00Z").await;
    post("/v1/check-outs", "2026-01-01T17:00:00Z").await;
    // Uploaded late, happened before the check-out: recorded, but presence stays "out".
    let late = post("/v1/check-ins", "2026-01-01T12:00:00Z").await;
    assert_eq!(late["occurred_at"], "2026-01-01T12:00:00Z");
    assert!(roll_call(&app, "hq").await.is_empty());
    post("/v1/check-ins", "2026-01-02T08:00:00Z").await;
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
