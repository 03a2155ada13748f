//! Per-reader sequence numbers on live posts: replays, reuse and gaps.

use latch_core::config::DatabaseConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_replayed_seq_gets_the_first_response_and_writes_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let ada = app.create_holder("ADA").await;
    app.grant(ada, door.id).await;

    let cases = [
        (
            "/v1/unlock",
            json!({"card_id": "ADA", "seq": 1, "occurred_at": "2026-03-01T08:00:00Z"}),
            json!({"card_id": "ADA", "seq": 1, "occurred_at": "2026-03-01T08:00:01Z"}),
        ),
        (
            "/v1/check-ins",
            json!({"card_id": "ADA", "seq": 2}),
            json!({"card_id": "BOB", "seq": 2}),
        ),
        (
            "/v1/doors/alarm",
            json!({"alarm": "forced_open", "seq": 3}),
            json!({"alarm": "forced_open", "seq": 3, "restored": true}),
        ),
    ];
    for (path, body, other) in cases {
        let first = app.post(path, &door.reader_key, &body).await;
        let status = first.status();
        assert!(status.is_success(), "{path}: {status}");
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first: Value = first.json().await.unwrap();
        let (actions, outbox) = app.counts().await;

        let replay = app.post(path, &door.reader_key, &body).await;
        assert_eq!(replay.status(), status, "{path}");
        assert_eq!(replay.headers()["idempotent-replayed"], "true", "{path}");
        assert_eq!(replay.json::<Value>().await.unwrap(), first, "{path}");
        assert_eq!(
            app.counts().await,
            (actions, outbox),
            "{path}: replay wrote"
        );

        expect_error(
            app.post(path, &door.reader_key, &other).await,
            StatusCode::CONFLICT,
            "seq_reused",
        )
        .await;
        assert_eq!(app.counts().await, (actions, outbox), "{path}: reuse wrote");
    }

    // Seqs belong to their reader: another reader's seq 1 is its own.
    let (_, other_key) = app.enrol_reader(door.id, None).await;
    let other = expect_status(
        app.post(
            "/v1/unlock",
            &other_key,
            &json!({"card_id": "ADA", "seq": 1, "occurred_at": "2026-03-01T08:00:00Z"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(other["decision"], "granted");

    // The recorded unlock carries the reader's seq and clock beside the server's.
    let row = app
        .db
        .owner()
        .await
        .query_one(
            "SELECT reader_seq, occurred_at = '2026-03-01T08:00:00Z', recorded_at > occurred_at
             FROM actions WHERE kind = 'unlock_granted' AND reader_id = $1",
            &[&door.reader_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i64>>(0), Some(1));
    assert!(row.get::<_, bool>(1));
    assert!(row.get::<_, bool>(2));
}

#[tokio::test]
async fn a_failed_post_leaves_its_seq_free_and_bad_seqs_are_refused() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let check_in = async |card: &str| {
        app.post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": card, "seq": 5}),
        )
        .await
    };
    expect_error(check_in("ADA").await, StatusCode::NOT_FOUND, "unknown_card").await;
    app.create_holder("ADA").await;
    expect_status(check_in("ADA").await, StatusCode::CREATED).await;

    let (actions, outbox) = app.counts().await;
    expect_error(
        app.post(
            "/v1/unlock",
            &door.reader_key,
            &json!({"card_id": "ADA", "seq": -4}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_seq",
    )
    .await;
    expect_error(
        app.post(
            "/v1/unlock",
            "lrk_unknown",
            &json!({"card_id": "ADA", "seq": 6}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        app.post(
            "/v1/unlock",
            &app.admin_token,
            &json!({"card_id": "ADA", "seq": 6}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(app.counts().await, (actions, outbox));
}

#[tokio::test]
async fn gaps_in_a_readers_sequence_are_listed_and_counted() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    let unlock = async |seq: i64| {
        expect_status(
            app.post(
                "/v1/unlock",
                &door.reader_key,
                &json!({"card_id": "ADA", "seq": seq}),
            )
            .await,
            StatusCode::OK,
        )
        .await
    };
    let nothing = app.gaps(door.reader_id).await;
    assert_eq!(nothing["accepted"], 0);
    assert_eq!(nothing["gaps"], json!([]));

    for seq in [1, 2, 5] {
        unlock(seq).await;
    }
    let body = expect_status(
        app.upload(
            &door.reader_key,
            &json!([{"seq": 9, "type": "check_in", "card_id": "ADA",
                     "occurred_at": "2026-03-01T08:00:00Z"}]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["results"][0]["status"], "accepted");
    let gaps = app.gaps(door.reader_id).await;
    assert_eq!(
        gaps["gaps"],
        json!([{"from": 3, "to": 4}, {"from": 6, "to": 8}])
    );
    assert_eq!(gaps["first_seq"], 1);
    assert_eq!(gaps["last_seq"], 9);
    assert_eq!(gaps["accepted"], 4);
    assert_eq!(gaps["missing"], 5);
    assert_eq!(gaps["truncated"], false);
    assert_eq!(app.metric("latch_reader_seq_gaps_total").await, 2.0);

    // A late event filling a gap does not open one.
    unlock(3).await;
    let gaps = app.gaps(door.reader_id).await;
    assert_eq!(
        gaps["gaps"],
        json!([{"from": 4, "to": 4}, {"from": 6, "to": 8}])
    );
    assert_eq!(app.metric("latch_reader_seq_gaps_total").await, 2.0);
    let limited = app
        .admin_get(&format!("/v1/readers/{}/gaps?limit=1", door.reader_id))
        .await;
    assert_eq!(limited["gaps"], json!([{"from": 4, "to": 4}]));
    assert_eq!(limited["truncated"], true);

    expect_error(
        app.get(
            &format!("/v1/readers/{}/gaps", uuid::Uuid::now_v7()),
            &app.admin_token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "reader_not_found",
    )
    .await;
    expect_error(
        app.get(
            &format!("/v1/readers/{}/gaps", door.reader_id),
            &door.reader_key,
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn old_seqs_are_forgotten_but_each_readers_latest_is_kept() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    for seq in [1, 2, 3] {
        expect_status(
            app.post(
                "/v1/unlock",
                &door.reader_key,
                &json!({"card_id": "ADA", "seq": seq}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
    }
    app.db
        .owner()
        .await
        .execute(
            "UPDATE reader_seqs SET created_at = now() - interval '100 days' WHERE seq IN (1, 3)",
            &[],
        )
        .await
        .unwrap();
    let pool = latch_core::db::pool(&DatabaseConfig {
        pool_size: 1,
        ..DatabaseConfig::with_url(app.db.app_url())
    })
    .unwrap();
    let client = pool.get().await.unwrap();
    let retention = std::time::Duration::from_secs(90 * 86_400);
    let deleted = latch_api::readers::seq::prune(&client, retention)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "seq 1 only: 2 is recent, 3 is the latest");
    let gaps = app.gaps(door.reader_id).await;
    assert_eq!(gaps["first_seq"], 2);
    assert_eq!(gaps["last_seq"], 3);
    let replay = app
        .post(
            "/v1/unlock",
            &door.reader_key,
            &json!({"card_id": "ADA", "seq": 3}),
        )
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
}
