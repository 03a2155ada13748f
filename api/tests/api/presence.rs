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

#[tokio::test]
async fn a_marshal_marks_people_safe_recorded_once_and_the_csv_matches_the_roll_call() {
    let app = spawn_app().await;
    let main = app.create_door("hq", "Main").await;
    let ada = app.create_holder("ADA").await;
    let grace = app.create_holder("=GRACE,\"HOPPER\"").await;
    let absent = app.create_holder("NOBODY").await;
    for card in ["ADA", "=GRACE,\"HOPPER\""] {
        expect_status(
            app.post("/v1/check-ins", &main.reader_key, &json!({"card_id": card}))
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
    let safe = |holder: uuid::Uuid| format!("/v1/sites/hq/presence/{holder}/safe");

    // Who may not, and whom: nothing recorded.
    let (_, reader) = app.token(&["registry:read"], None).await;
    expect_error(
        app.post(&safe(ada), &reader, &json!({})).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    let (_, annex) = app.token(&["sites:write"], Some(&["annex"])).await;
    expect_status(
        app.post(&safe(ada), &annex, &json!({})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect_error(
        app.post(&safe(absent), &app.admin_token, &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_present",
    )
    .await;
    expect_status(
        app.post(
            "/v1/sites/hq/presence/not-a-holder-id/safe",
            &app.admin_token,
            &json!({}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(app.count_kind("marked_safe").await, 0);

    // A marshal with sites:write for the site marks Ada safe; again changes nothing.
    let (_, marshal) = app
        .token(&["sites:write", "registry:read"], Some(&["hq"]))
        .await;
    let marked = expect_status(
        app.post(&safe(ada), &marshal, &json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert!(marked["marked_safe_at"].is_string(), "{marked}");
    let again = expect_status(
        app.post(&safe(ada), &marshal, &json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["marked_safe_at"], marked["marked_safe_at"]);
    assert_eq!(app.count_kind("marked_safe").await, 1, "recorded once");
    let roll = app.admin_get("/v1/sites/hq/presence").await;
    assert_eq!(
        (roll["count"].as_u64(), roll["safe"].as_u64()),
        (Some(2), Some(1))
    );

    // The CSV: the same people, the same marks; a field a spreadsheet would run is defused.
    let csv = app.get("/v1/sites/hq/presence.csv", &marshal).await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "holder_id,name,card_id,door,since,marked_safe_at");
    assert_eq!(lines.len(), 3, "{text}");
    let ada_line = lines
        .iter()
        .find(|l| l.starts_with(&ada.to_string()))
        .unwrap();
    assert!(
        ada_line.ends_with(marked["marked_safe_at"].as_str().unwrap()),
        "{ada_line}"
    );
    let grace_line = lines
        .iter()
        .find(|l| l.starts_with(&grace.to_string()))
        .unwrap();
    assert!(
        grace_line.contains("\"'=GRACE,\"\"HOPPER\"\"\""),
        "{grace_line}"
    );
    assert!(grace_line.ends_with(','), "not marked: {grace_line}");

    // Checking out and in again starts a new stay, unmarked.
    for path in ["/v1/check-outs", "/v1/check-ins"] {
        expect_status(
            app.post(path, &main.reader_key, &json!({"card_id": "ADA"}))
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
    let roll = app.admin_get("/v1/sites/hq/presence").await;
    assert_eq!(roll["safe"].as_u64(), Some(0), "{roll}");
}
