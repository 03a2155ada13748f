use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_retried_request_returns_the_first_response_and_writes_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("CARD-1").await;
    app.grant(holder, door.id).await;

    for path in ["/v1/unlock", "/v1/check-ins"] {
        let send = |body: serde_json::Value| {
            app.request(Method::POST, path, &door.reader_key)
                .header("Idempotency-Key", format!("key-for-{path}"))
                .json(&body)
                .send()
        };
        let first = send(json!({"card_id": "CARD-1"})).await.unwrap();
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first_status = first.status();
        let first: serde_json::Value = first.json().await.unwrap();
        let (actions, outbox) = app.counts().await;

        let retry = send(json!({"card_id": "CARD-1"})).await.unwrap();
        assert_eq!(retry.status(), first_status);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        let retry: serde_json::Value = retry.json().await.unwrap();
        assert_eq!(retry, first);
        assert_eq!(
            app.counts().await,
            (actions, outbox),
            "{path}: the retry wrote something"
        );

        let other_body = send(json!({"card_id": "CARD-2"})).await.unwrap();
        expect_error(
            other_body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        )
        .await;
        assert_eq!(app.counts().await, (actions, outbox));
    }
}

#[tokio::test]
async fn keys_are_scoped_per_client_and_failed_requests_do_not_use_them_up() {
    let app = spawn_app().await;
    let a = app.create_door("hq", "A").await;
    let b = app.create_door("hq", "B").await;
    app.create_holder("CARD-1").await;

    let unlock = |key: &str| {
        app.request(Method::POST, "/v1/unlock", key)
            .header("Idempotency-Key", "same-key")
            .json(&json!({"card_id": "CARD-1"}))
            .send()
    };
    let from_a = expect_status(unlock(&a.reader_key).await.unwrap(), StatusCode::OK).await;
    let from_b = expect_status(unlock(&b.reader_key).await.unwrap(), StatusCode::OK).await;
    assert_ne!(from_a["action_id"], from_b["action_id"]);

    // A request that failed (unknown card on check-in) leaves the key free.
    let check_in = |card: &str| {
        app.request(Method::POST, "/v1/check-ins", &a.reader_key)
            .header("Idempotency-Key", "check-in-key")
            .json(&json!({"card_id": card}))
            .send()
    };
    expect_error(
        check_in("NOPE").await.unwrap(),
        StatusCode::NOT_FOUND,
        "unknown_card",
    )
    .await;
    expect_status(check_in("CARD-1").await.unwrap(), StatusCode::CREATED).await;

    // A wrong key with an Idempotency-Key is still 401 and claims nothing.
    let bad = app
        .request(Method::POST, "/v1/unlock", "lrk_wrong")
        .header("Idempotency-Key", "k")
        .json(&json!({"card_id": "CARD-1"}))
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let invalid = app
        .request(Method::POST, "/v1/unlock", &a.reader_key)
        .header("Idempotency-Key", "")
        .json(&json!({"card_id": "CARD-1"}))
        .send()
        .await
        .unwrap();
    expect_error(invalid, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    let stored: i64 = app
        .db
        .owner()
        .await
        .query_one("SELECT count(*) FROM idempotency", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 3, "two unlocks and one check-in hold keys");
}

#[tokio::test]
async fn concurrent_retries_apply_once() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("CARD-1").await;
    let (actions, _) = app.counts().await;
    let attempts = (0..8).map(|_| {
        app.request(Method::POST, "/v1/check-ins", &door.reader_key)
            .header("Idempotency-Key", "racing")
            .json(&json!({"card_id": "CARD-1"}))
            .send()
    });
    let responses = futures::future::join_all(attempts).await;
    let mut ids = std::collections::HashSet::new();
    for response in responses {
        let body = expect_status(response.unwrap(), StatusCode::CREATED).await;
        ids.insert(body["action_id"].to_string());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.counts().await.0, actions + 1);
}

#[tokio::test]
async fn admin_posts_honour_idempotency_keys_too() {
    let app = spawn_app().await;
    let create = || {
        app.request(Method::POST, "/v1/doors", &app.admin_token)
            .header("Idempotency-Key", "door-1")
            .json(&json!({"site": "hq", "name": "Main"}))
            .send()
    };
    let first = expect_status(create().await.unwrap(), StatusCode::CREATED).await;
    let second = expect_status(create().await.unwrap(), StatusCode::CREATED).await;
    assert_eq!(first, second);
    let doors = app.admin_get("/v1/doors").await;
    assert_eq!(doors.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_new_readers_key_is_never_stored_and_a_replay_does_not_show_it() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let enrol = || {
        app.request(Method::POST, "/v1/readers", &app.admin_token)
            .header("Idempotency-Key", "enrol-side-reader")
            .json(&json!({"door_id": door.id, "name": "Side reader"}))
            .send()
    };
    let first = expect_status(enrol().await.unwrap(), StatusCode::CREATED).await;
    let key = first["key"].as_str().expect("the key, once").to_owned();

    // Nothing in the database holds the key in clear.
    let stored: i64 = app
        .db
        .owner()
        .await
        .query_one(
            "SELECT count(*) FROM idempotency WHERE response::text LIKE '%' || $1 || '%'",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);

    let retry = enrol().await.unwrap();
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry = expect_status(retry, StatusCode::CREATED).await;
    assert!(retry.get("key").is_none(), "{retry}");
    assert_eq!(retry["id"], first["id"]);

    // The key shown once works.
    app.create_holder("ADA").await;
    let unlock = expect_status(app.unlock(&key, "ADA").await, StatusCode::OK).await;
    assert_eq!(unlock["reason"], "no_grant");
}
