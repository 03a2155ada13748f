//! Bad input gets a clear error and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn malformed_bodies_are_rejected_with_codes_and_write_nothing() {
    let app = spawn_app_with(1024).await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("CARD-1").await;
    app.grant(holder, door.id).await;
    let (actions, outbox) = app.counts().await;

    for path in ["/v1/unlock", "/v1/check-ins", "/v1/check-outs"] {
        let send = |body: &'static str, content_type: &'static str| {
            app.request(Method::POST, path, &door.reader_key)
                .header("Content-Type", content_type)
                .body(body)
                .send()
        };
        expect_error(
            send("{\"card_id\":", "application/json").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        )
        .await;
        expect_error(
            send("{}", "application/json").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        )
        .await;
        expect_error(
            send("{\"card_id\": 42}", "application/json").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        )
        .await;
        expect_error(
            send("{\"card_id\":\"CARD-1\",\"x\":1}", "application/json")
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        )
        .await;
        expect_error(
            send("card_id=CARD-1", "application/x-www-form-urlencoded")
                .await
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        expect_error(
            send("{\"card_id\":\"\"}", "application/json")
                .await
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_card_id",
        )
        .await;
        let huge = format!("{{\"card_id\":\"{}\"}}", "A".repeat(4096));
        let response = app
            .request(Method::POST, path, &door.reader_key)
            .header("Content-Type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    }
    let bad_time = app
        .post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "CARD-1", "occurred_at": "yesterday"}),
        )
        .await;
    expect_error(bad_time, StatusCode::BAD_REQUEST, "malformed_body").await;
    assert_eq!(app.counts().await, (actions, outbox));
}

#[tokio::test]
async fn unknown_routes_and_bad_paths_get_json_errors() {
    let app = spawn_app().await;
    expect_error(
        app.get("/v1/nowhere", &app.admin_token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let bad = app
        .request(Method::DELETE, "/v1/grants/not-a-uuid", &app.admin_token)
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::BAD_REQUEST, "invalid_path").await;
    expect_error(
        app.get("/v1/actions?limit=many", &app.admin_token).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    expect_error(
        app.get("/v1/actions?surprise=1", &app.admin_token).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn internal_failures_roll_back_everything_and_reveal_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("CARD-1").await;
    let (actions, outbox) = app.counts().await;

    // Inject a failure after the action insert: the outbox insert (made by the action's
    // trigger, in the same transaction) raises.
    app.db
        .owner()
        .await
        .batch_execute(
            "CREATE FUNCTION fail_outbox() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'injected failure: secret detail'; END $$;
             CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox
                 FOR EACH ROW EXECUTE FUNCTION fail_outbox();",
        )
        .await
        .unwrap();

    let response = app
        .post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "CARD-1"}),
        )
        .await;
    let body = expect_error(response, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
    assert!(!body.to_string().contains("secret detail"), "{body}");
    expect_error(
        app.unlock(&door.reader_key, "CARD-1").await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
    )
    .await;

    // Neither the action, nor its outbox row, nor the presence change was committed.
    assert_eq!(app.counts().await, (actions, outbox));
    let presence: i64 = app
        .db
        .owner()
        .await
        .query_one("SELECT count(*) FROM presence", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(presence, 0);
}

#[tokio::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    let metrics = || async {
        app.http
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    for i in 0..50 {
        let method = Method::from_bytes(format!("FROB{i}").as_bytes()).unwrap();
        app.request(method, "/v1/unlock", "lrk_x")
            .send()
            .await
            .unwrap();
    }
    let text = metrics().await;
    assert!(
        !text.contains("FROB"),
        "a client-made method became a label"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("latch_http_requests_total{") && l.contains("method=\"other\"")),
        "{text}"
    );
}

#[tokio::test]
async fn a_served_path_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    for (method, path, allow) in [
        ("TRACE", "/v1/unlock".to_owned(), "POST"),
        ("GET", "/v1/unlock".to_owned(), "POST"),
        ("PUT", "/v1/doors".to_owned(), "GET, POST"),
        (
            "TRACE",
            format!("/v1/readers/{}/disable", door.reader_id),
            "POST",
        ),
        ("DELETE", "/v1/readers/events:batch".to_owned(), "POST"),
    ] {
        let response = app
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                &path,
                &app.admin_token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{method} {path}: {body}"
        );
    }
    let nowhere = app
        .request(Method::TRACE, "/v1/nowhere", &app.admin_token)
        .send()
        .await
        .unwrap();
    expect_error(nowhere, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    let (actions, outbox) = app.counts().await;
    for (first, second) in [
        (door.reader_key.as_str(), "lrk_x"),
        ("lrk_x", door.reader_key.as_str()),
        (door.reader_key.as_str(), door.reader_key.as_str()),
    ] {
        let response = app
            .http
            .post(format!("{}/v1/unlock", app.base))
            .header("Authorization", format!("Bearer {first}"))
            .header("Authorization", format!("Bearer {second}"))
            .json(&json!({"card_id": "ADA"}))
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let admin = app
        .http
        .get(format!("{}/v1/doors", app.base))
        .header("Authorization", format!("Bearer {}", app.admin_token))
        .header("Authorization", format!("Bearer {}", app.admin_token))
        .send()
        .await
        .unwrap();
    expect_error(admin, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.counts().await, (actions, outbox));
}

#[tokio::test]
async fn an_offline_event_with_a_duplicated_key_is_rejected_like_a_live_post() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    app.create_holder("EVE").await;
    let (actions, outbox) = app.counts().await;
    // Live: refused.
    let live = app
        .request(Method::POST, "/v1/check-ins", &door.reader_key)
        .header("Content-Type", "application/json")
        .body(r#"{"card_id": "ADA", "card_id": "EVE"}"#)
        .send()
        .await
        .unwrap();
    expect_error(live, StatusCode::BAD_REQUEST, "malformed_body").await;
    // Uploaded: that one event is rejected, the other accepted.
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = format!(
        r#"{{"events": [
            {{"seq": 1, "type": "check_in", "card_id": "ADA", "card_id": "EVE", "occurred_at": "{at}"}},
            {{"seq": 2, "type": "check_in", "card_id": "ADA", "occurred_at": "{at}"}}
        ]}}"#
    );
    let upload = app
        .request(Method::POST, "/v1/readers/events:batch", &door.reader_key)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let upload = expect_status(upload, StatusCode::OK).await;
    assert_eq!(upload["results"][0]["status"], "rejected", "{upload}");
    assert_eq!(upload["results"][0]["code"], "malformed_event", "{upload}");
    assert_eq!(upload["results"][0]["seq"], 1, "{upload}");
    assert_eq!(upload["results"][1]["status"], "accepted", "{upload}");
    assert_eq!(app.counts().await, (actions + 1, outbox + 1));
    // A duplicated key around the events is refused whole.
    let whole = app
        .request(Method::POST, "/v1/readers/events:batch", &door.reader_key)
        .header("Content-Type", "application/json")
        .body(r#"{"events": [], "events": []}"#)
        .send()
        .await
        .unwrap();
    expect_error(whole, StatusCode::BAD_REQUEST, "malformed_body").await;
}
