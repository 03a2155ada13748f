use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_reader_key_cannot_call_admin_endpoints() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let (actions, outbox) = app.counts().await;
    for (method, path) in [
        (Method::GET, "/v1/actions"),
        (Method::GET, "/v1/sites/hq/presence"),
        (Method::GET, "/v1/doors"),
    ] {
        let response = app
            .request(method, path, &door.reader_key)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let grant = app
        .post(
            "/v1/grants",
            &door.reader_key,
            &json!({"holder_id": door.id, "door_id": door.id}),
        )
        .await;
    expect_error(grant, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(
        app.get("/v1/doors", "lat_unknown").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(app.counts().await, (actions, outbox));
}

#[tokio::test]
async fn revoked_admin_tokens_stop_working() {
    let app = spawn_app().await;
    app.db
        .owner()
        .await
        .execute("UPDATE admins SET revoked_at = now()", &[])
        .await
        .unwrap();
    expect_error(
        app.get("/v1/doors", &app.admin_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn administration_errors_are_clear_and_change_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    let (actions, outbox) = app.counts().await;
    let admin = |method: Method, path: &str, body: serde_json::Value| {
        app.request(method, path, &app.admin_token)
            .json(&body)
            .send()
    };

    let cases = [
        (
            Method::POST,
            "/v1/doors".to_owned(),
            json!({"site": "hq", "name": "Main"}),
            StatusCode::CONFLICT,
            "door_exists",
        ),
        (
            Method::POST,
            "/v1/doors".to_owned(),
            json!({"site": "Bad Site", "name": "X"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            Method::POST,
            "/v1/holders".to_owned(),
            json!({"card_id": "ADA", "name": "Other"}),
            StatusCode::CONFLICT,
            "card_taken",
        ),
        (
            Method::POST,
            "/v1/grants".to_owned(),
            json!({"holder_id": uuid::Uuid::now_v7(), "door_id": door.id}),
            StatusCode::NOT_FOUND,
            "holder_not_found",
        ),
        (
            Method::POST,
            "/v1/grants".to_owned(),
            json!({"holder_id": holder, "door_id": uuid::Uuid::now_v7()}),
            StatusCode::NOT_FOUND,
            "door_not_found",
        ),
        (
            Method::POST,
            "/v1/grants".to_owned(),
            json!({"holder_id": holder, "door_id": door.id, "valid_from": "2026-02-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_period",
        ),
        (
            Method::POST,
            "/v1/readers".to_owned(),
            json!({"door_id": uuid::Uuid::now_v7(), "name": "R"}),
            StatusCode::NOT_FOUND,
            "door_not_found",
        ),
        (
            Method::DELETE,
            format!("/v1/grants/{}", uuid::Uuid::now_v7()),
            json!(null),
            StatusCode::NOT_FOUND,
            "grant_not_found",
        ),
        (
            Method::POST,
            format!("/v1/readers/{}/disable", uuid::Uuid::now_v7()),
            json!(null),
            StatusCode::NOT_FOUND,
            "reader_not_found",
        ),
        (
            Method::PATCH,
            format!("/v1/holders/{}", uuid::Uuid::now_v7()),
            json!({"active": false}),
            StatusCode::NOT_FOUND,
            "holder_not_found",
        ),
        (
            Method::PATCH,
            format!("/v1/holders/{holder}"),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing_to_change",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let response = admin(method.clone(), &path, body).await.unwrap();
        let got = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(text.contains(code), "{method} {path}: {text}");
    }
    assert_eq!(app.counts().await, (actions, outbox));

    let grant = app.grant(holder, door.id).await;
    let revoke = || {
        app.request(
            Method::DELETE,
            &format!("/v1/grants/{grant}"),
            &app.admin_token,
        )
        .send()
    };
    let revoked = expect_status(revoke().await.unwrap(), StatusCode::OK).await;
    assert!(revoked["revoked_at"].is_string());
    expect_error(
        revoke().await.unwrap(),
        StatusCode::CONFLICT,
        "grant_revoked",
    )
    .await;
}

#[tokio::test]
async fn grants_and_revocations_are_recorded_as_events() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    let grant = app.grant(holder, door.id).await;
    app.request(
        Method::DELETE,
        &format!("/v1/grants/{grant}"),
        &app.admin_token,
    )
    .send()
    .await
    .unwrap();
    let rows = app
        .db
        .owner()
        .await
        .query(
            "SELECT subject, payload FROM outbox WHERE payload->>'grant_id' = $1 ORDER BY id",
            &[&grant.to_string()],
        )
        .await
        .unwrap();
    let subjects: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        subjects,
        ["latch.events.grant_created", "latch.events.grant_revoked"]
    );
    for row in rows {
        let envelope: latch_core::event::Envelope = serde_json::from_value(row.get(1)).unwrap();
        assert_eq!(envelope.holder_id, Some(holder));
        assert_eq!(envelope.door_id, Some(door.id));
        assert_eq!(envelope.site.as_deref(), Some("hq"));
        assert!(envelope.actor_id.is_some());
    }
    let grants = app
        .admin_get(&format!("/v1/grants?holder_id={holder}"))
        .await;
    assert_eq!(grants.as_array().unwrap().len(), 1);
    let readers = app
        .admin_get(&format!("/v1/readers?door_id={}", door.id))
        .await;
    assert_eq!(readers[0]["enabled"], true);
    assert!(
        readers[0].get("key").is_none(),
        "keys are shown only at enrolment"
    );
    let holders = app.admin_get("/v1/holders").await;
    assert_eq!(holders[0]["card_id"], "ADA");
}

#[tokio::test]
async fn health_readiness_and_the_api_description_are_served() {
    let app = spawn_app().await;
    let get = |path: &str| app.http.get(format!("{}{path}", app.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    let spec: serde_json::Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    for path in [
        "/v1/unlock",
        "/v1/check-ins",
        "/v1/check-outs",
        "/v1/grants",
        "/v1/grants/{id}",
        "/v1/actions",
        "/v1/sites/{site}/presence",
        "/v1/doors/alarm",
        "/v1/readers/events:batch",
        "/v1/readers/heartbeat",
        "/v1/readers/{id}/gaps",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the spec"
        );
    }
    let door = app.create_door("hq", "Main").await;
    app.unlock(&door.reader_key, "NOBODY").await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .contains(r#"latch_unlock_decisions_total{decision="denied",reason="unknown_card"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"latch_http_requests_total{method="POST",route="/v1/unlock",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("NOBODY"), "labels never carry card ids");
    let docs = get("/docs/").await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
}
