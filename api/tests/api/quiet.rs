//! Refusals on the common paths are checked, not provoked: no request a reader or an
//! administrator makes every day raises an error inside PostgreSQL, whose log would
//! otherwise fill with them (card numbers included, in a unique violation's detail).

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

/// The test cluster's server log (`deploy/local/test.sh` starts it with `pg_ctl -l`).
fn server_log() -> PathBuf {
    let data = std::env::var("LATCH_PG_DATA")
        .expect("LATCH_PG_DATA names the test cluster (deploy/local/test.sh sets it)");
    PathBuf::from(data).join("log")
}

/// The ERROR lines the server logged after byte `from` for the sessions `pids`.
fn errors_of(pids: &[i32], from: u64) -> Vec<String> {
    let log = std::fs::read(server_log()).expect("read the server log");
    let text = String::from_utf8_lossy(&log[from as usize..]);
    text.lines()
        .filter(|line| line.contains("ERROR:"))
        .filter(|line| pids.iter().any(|pid| line.contains(&format!("[{pid}]"))))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn everyday_refusals_raise_no_error_in_the_database() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    let grant = app.grant(holder, door.id).await;
    let from = std::fs::metadata(server_log()).unwrap().len();

    let admin = async |method: Method, path: String, body: serde_json::Value| {
        app.request(method, &path, &app.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap()
    };
    let refusals = [
        (
            admin(
                Method::POST,
                "/v1/doors".into(),
                json!({"site": "hq", "name": "Main"}),
            )
            .await,
            409,
        ),
        (
            admin(
                Method::POST,
                "/v1/holders".into(),
                json!({"card_id": "ADA", "name": "Eve"}),
            )
            .await,
            409,
        ),
        (
            admin(
                Method::POST,
                "/v1/grants".into(),
                json!({"holder_id": Uuid::now_v7(), "door_id": door.id}),
            )
            .await,
            404,
        ),
        (
            admin(
                Method::POST,
                "/v1/grants".into(),
                json!({"holder_id": holder, "door_id": Uuid::now_v7()}),
            )
            .await,
            404,
        ),
        (
            admin(
                Method::POST,
                "/v1/readers".into(),
                json!({"door_id": Uuid::now_v7(), "name": "x"}),
            )
            .await,
            404,
        ),
        (
            admin(
                Method::PATCH,
                format!("/v1/holders/{}", Uuid::now_v7()),
                json!({"active": false}),
            )
            .await,
            404,
        ),
        (
            admin(
                Method::DELETE,
                format!("/v1/grants/{}", Uuid::now_v7()),
                json!(null),
            )
            .await,
            404,
        ),
        (
            admin(Method::DELETE, format!("/v1/grants/{grant}"), json!(null)).await,
            200,
        ),
        (
            admin(Method::DELETE, format!("/v1/grants/{grant}"), json!(null)).await,
            409,
        ),
        (
            admin(
                Method::POST,
                format!("/v1/readers/{}/disable", Uuid::now_v7()),
                json!(null),
            )
            .await,
            404,
        ),
        (
            app.post(
                "/v1/check-ins",
                &door.reader_key,
                &json!({"card_id": "NOBODY"}),
            )
            .await,
            404,
        ),
        (
            app.post("/v1/unlock", "lrk_unknown", &json!({"card_id": "ADA"}))
                .await,
            401,
        ),
        (
            app.post(
                "/v1/unlock",
                &door.reader_key,
                &json!({"card_id": "ADA", "seq": 1}),
            )
            .await,
            200,
        ),
        (
            app.post(
                "/v1/unlock",
                &door.reader_key,
                &json!({"card_id": "ADA", "seq": 1}),
            )
            .await,
            200,
        ),
        (
            app.post(
                "/v1/unlock",
                &door.reader_key,
                &json!({"card_id": "EVE", "seq": 1}),
            )
            .await,
            409,
        ),
    ];
    for (i, (response, status)) in refusals.into_iter().enumerate() {
        assert_eq!(response.status().as_u16(), status, "request {i}");
    }
    for card in ["ADA", "OTHER"] {
        let keyed = app
            .request(Method::POST, "/v1/check-ins", &door.reader_key)
            .header("Idempotency-Key", "same-key")
            .json(&json!({"card_id": card}))
            .send()
            .await
            .unwrap();
        assert_ne!(keyed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let upload = app
        .upload(
            &door.reader_key,
            &json!([{"seq": 2, "type": "check_in", "card_id": "NOBODY",
                     "occurred_at": "2026-12-01T08:00:00Z"}]),
        )
        .await;
    expect_status(upload, StatusCode::OK).await;

    // The API's sessions (its pools keep them open).
    let pids = app.api_sessions().await;
    assert!(!pids.is_empty());
    let errors = errors_of(&pids, from);
    assert!(errors.is_empty(), "{errors:#?}");

    // The check itself sees an error when there is one.
    let api = app.db.app().await;
    let pid: i32 = api
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(api.batch_execute("SELECT 1 / 0").await.is_err());
    latch_testkit::wait_until(
        "the error is logged",
        std::time::Duration::from_secs(10),
        || async { (!errors_of(&[pid], from).is_empty()).then_some(()) },
    )
    .await;
}
