use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn all_pages(app: &TestApp, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/actions?{query}&cursor={c}"),
            None => format!("/v1/actions?{query}"),
        };
        let page = app.admin_get(&path).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

#[tokio::test]
async fn the_registry_filters_newest_first() {
    let app = spawn_app().await;
    let main = app.create_door("hq", "Main").await;
    let side = app.create_door("hq", "Side").await;
    let ada = app.create_holder("ADA").await;
    app.grant(ada, main.id).await;
    for _ in 0..3 {
        app.unlock(&main.reader_key, "ADA").await;
    }
    app.unlock(&side.reader_key, "ADA").await;

    let granted = all_pages(
        &app,
        &format!("kind=unlock_granted&door_id={}&limit=2", main.id),
    )
    .await;
    assert_eq!(granted.len(), 3);
    let denied = all_pages(&app, &format!("kind=unlock_denied&holder_id={ada}")).await;
    assert_eq!(denied.len(), 1);
    assert_eq!(uuid(&denied[0]["door_id"]), side.id);
    assert_eq!(denied[0]["reason"], "no_grant");

    let everything = all_pages(&app, "limit=500").await;
    let times: Vec<&str> = everything
        .iter()
        .map(|a| a["recorded_at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    // Administrative actions are in the registry too.
    assert!(
        everything
            .iter()
            .any(|a| a["kind"] == "grant_created" && a["actor_id"].is_string())
    );

    let future = all_pages(&app, "since=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());
    expect_error(
        app.get("/v1/actions?kind=explosion", &app.admin_token)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_kind",
    )
    .await;
    expect_error(
        app.get("/v1/actions?limit=0", &app.admin_token).await,
        StatusCode::BAD_REQUEST,
        "invalid_limit",
    )
    .await;
    expect_error(
        app.get("/v1/actions?cursor=garbage", &app.admin_token)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    )
    .await;
}

#[tokio::test]
async fn pagination_is_stable_under_concurrent_inserts() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    for _ in 0..40 {
        app.unlock(&door.reader_key, "ADA").await;
    }
    let filter = format!("door_id={}&kind=unlock_denied", door.id);
    let query = format!("{filter}&limit=7");
    let before: HashSet<String> = all_pages(&app, &format!("{filter}&limit=500"))
        .await
        .iter()
        .map(|a| a["id"].to_string())
        .collect();
    assert_eq!(before.len(), 40);

    // Page through while a writer keeps adding newer actions.
    let writer = async {
        for _ in 0..40 {
            app.post("/v1/unlock", &door.reader_key, &json!({"card_id": "ADA"}))
                .await;
        }
    };
    let (paged, ()) = tokio::join!(all_pages(&app, &query), writer);
    let ids: Vec<String> = paged.iter().map(|a| a["id"].to_string()).collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no action appears twice");
    assert!(
        before.is_subset(&unique),
        "every action that existed is seen"
    );
}
