//! `GET /v1/alarms`: what is in alarm now.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// (kind, door name) of every open alarm the token sees.
async fn open(app: &TestApp, token: &str, query: &str) -> Vec<(String, String)> {
    let body = expect_status(
        app.get(&format!("/v1/alarms{query}"), token).await,
        StatusCode::OK,
    )
    .await;
    body["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a: &Value| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["door_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn alarms_stay_listed_until_restored_within_the_tokens_sites() {
    let app = spawn_app().await;
    let main = app.create_door("hq", "Main").await;
    let back = app.create_door("hq", "Back").await;
    let lab = app.create_door("lab", "Lab").await;
    let admin = app.admin_token.clone();
    assert!(open(&app, &admin, "").await.is_empty());

    let alarm = async |door: &TestDoor, alarm: &str, restored: bool| {
        expect_status(
            app.alarm(
                &door.reader_key,
                &json!({"alarm": alarm, "restored": restored}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
    };
    alarm(&main, "forced_open", false).await;
    alarm(&back, "held_open", false).await;
    alarm(&back, "held_open", true).await;
    alarm(&lab, "tamper", false).await;
    let mut all = open(&app, &admin, "").await;
    all.sort();
    assert_eq!(
        all,
        [
            ("door_forced_open".to_owned(), "Main".to_owned()),
            ("reader_tamper".to_owned(), "Lab".to_owned()),
        ],
        "the restored one is gone"
    );
    // Raised again after its restore: open again. Restored: gone.
    alarm(&back, "held_open", false).await;
    alarm(&main, "forced_open", true).await;
    let mut hq = open(&app, &admin, "?site=hq").await;
    hq.sort();
    assert_eq!(hq, [("door_held_open".to_owned(), "Back".to_owned())]);

    // A reader that went silent is offline until heard from.
    app.db
        .owner()
        .await
        .execute(
            "UPDATE readers SET online = false WHERE id = $1",
            &[&lab.reader_id],
        )
        .await
        .unwrap();
    let lab_alarms = open(&app, &admin, "?site=lab").await;
    assert!(lab_alarms.contains(&("reader_offline".to_owned(), "Lab".to_owned())));

    // A token sees its own sites; others are refused.
    let (_, hq_only) = app.token(&["registry:read"], Some(&["hq"])).await;
    let seen = open(&app, &hq_only, "").await;
    assert!(seen.iter().all(|(_, door)| door != "Lab"), "{seen:?}");
    expect_status(
        app.get("/v1/alarms?site=lab", &hq_only).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let (_, no_scope) = app.token(&["sites:write"], None).await;
    expect_error(
        app.get("/v1/alarms", &no_scope).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    expect_error(
        app.get("/v1/alarms?site=Not%20A%20Site", &admin).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    expect_status(
        app.get("/v1/alarms?disputed_since=yesterday", &admin).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_status(
        app.get("/v1/alarms", &main.reader_key).await,
        StatusCode::FORBIDDEN,
    )
    .await;
}
