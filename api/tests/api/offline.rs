//! Offline uploads: `POST /v1/readers/events:batch`.

use latch_api::ApiConfig;
use latch_core::event::{Decision, Envelope, EventKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::*;

/// `(seq, status, code)` of each result, in order.
fn outcomes(body: &Value) -> Vec<(Value, String, Option<String>)> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["seq"].clone(),
                r["status"].as_str().unwrap().to_owned(),
                r["code"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn check(seq: i64, card: &str, at: &str) -> Value {
    json!({"seq": seq, "type": "check_in", "card_id": card, "occurred_at": at})
}

#[tokio::test]
async fn a_batch_answers_each_event_and_commits_only_the_good_ones() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let ada = app.create_holder("ADA").await;
    app.grant(ada, door.id).await;
    // Seq 1 went through live; the reader never saw the answer and uploads it again.
    expect_status(
        app.post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "ADA", "seq": 1, "occurred_at": "2026-03-01T08:00:00Z"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let (actions, outbox) = app.counts().await;

    let events = json!([
        check(1, "ADA", "2026-03-01T08:00:00Z"),
        {"seq": 2, "type": "check_out", "card_id": "ADA", "occurred_at": "2026-03-01T12:00:00Z"},
        check(3, "NOBODY", "2026-03-01T12:01:00Z"),
        {"seq": 4, "type": "unlock", "card_id": "ADA", "decision": "granted",
         "occurred_at": "2026-03-01T12:02:00Z"},
        {"seq": 5, "type": "teleport", "occurred_at": "2026-03-01T12:03:00Z"},
        {"seq": 6, "type": "alarm", "alarm": "held_open", "occurred_at": "2026-03-01T12:04:00Z"},
        check(-1, "ADA", "2026-03-01T12:05:00Z"),
        {"seq": 7, "type": "unlock", "card_id": "ADA", "occurred_at": "2026-03-01T12:06:00Z"},
        {"seq": 8, "type": "check_in", "card_id": "ADA", "occurred_at": "2026-03-01T12:07:00Z",
         "door_id": door.id},
        check(2, "ADA", "2026-03-01T12:08:00Z"),
        "not an event",
    ]);
    let body = expect_status(app.upload(&door.reader_key, &events).await, StatusCode::OK).await;
    let accepted = |seq: i64| (json!(seq), "accepted".to_owned(), None);
    let rejected = |seq: Value, code: &str| (seq, "rejected".to_owned(), Some(code.to_owned()));
    assert_eq!(
        outcomes(&body),
        vec![
            (json!(1), "duplicate".to_owned(), None),
            accepted(2),
            rejected(json!(3), "unknown_card"),
            accepted(4),
            rejected(json!(5), "malformed_event"),
            accepted(6),
            rejected(json!(-1), "invalid_seq"),
            rejected(json!(7), "invalid_event"),
            rejected(json!(8), "malformed_event"),
            rejected(json!(2), "seq_reused"),
            rejected(Value::Null, "malformed_event"),
        ],
        "{body:#}"
    );
    for result in body["results"].as_array().unwrap() {
        if result["status"] == "rejected" {
            assert!(result["message"].is_string(), "{result}");
            assert!(result.get("action_id").is_none(), "{result}");
        } else {
            assert!(result["action_id"].is_string(), "{result}");
        }
    }

    // Exactly the three accepted events were committed, each with its outbox row.
    assert_eq!(app.counts().await, (actions + 3, outbox + 3));
    let results = body["results"].as_array().unwrap();
    for (index, kind) in [
        (1, EventKind::CheckOut),
        (3, EventKind::UnlockGranted),
        (5, EventKind::DoorHeldOpen),
    ] {
        let action_id = uuid(&results[index]["action_id"]);
        let rows = app.outbox_of(action_id).await;
        assert_eq!(rows.len(), 1, "{kind}");
        assert_eq!(rows[0].0, kind.subject());
        let envelope: Envelope = serde_json::from_value(rows[0].1.clone()).unwrap();
        assert_eq!(envelope.kind, kind);
        assert_eq!(envelope.door_id, Some(door.id));
        assert_eq!(envelope.reader_id, Some(door.reader_id));
        assert_eq!(envelope.reader_seq, results[index]["seq"].as_i64());
        // Captured offline, uploaded late: downstream can tell (legacy punches are LATE).
        assert!(envelope.decided_offline, "{kind}");
    }
    let unlock: Envelope = serde_json::from_value(
        app.outbox_of(uuid(&results[3]["action_id"])).await[0]
            .1
            .clone(),
    )
    .unwrap();
    assert!(unlock.decided_offline);
    assert_eq!(unlock.decision, Some(Decision::Granted));
    assert_eq!(unlock.reason.as_deref(), Some("valid_grant"));
    assert_eq!(
        unlock.occurred_at,
        time::macros::datetime!(2026-03-01 12:02:00 UTC)
    );
    // The duplicate names the event recorded the first time.
    let first: Option<uuid::Uuid> = app
        .db
        .owner()
        .await
        .query_one("SELECT id FROM actions WHERE reader_seq = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(Some(uuid(&results[0]["action_id"])), first);
    assert_eq!(app.count_kind("offline_decision_disputed").await, 0);
    assert_eq!(app.metric("latch_reader_batch_events_total").await, 11.0);
}

#[tokio::test]
async fn the_same_batch_uploaded_twice_writes_nothing_new() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    let events = json!([
        check(10, "ADA", "2026-03-01T08:00:00Z"),
        {"seq": 11, "type": "unlock", "card_id": "ADA", "decision": "denied",
         "occurred_at": "2026-03-01T08:01:00Z"},
        {"seq": 12, "type": "alarm", "alarm": "tamper", "restored": true,
         "occurred_at": "2026-03-01T08:02:00+02:00"},
    ]);
    let first = expect_status(app.upload(&door.reader_key, &events).await, StatusCode::OK).await;
    assert!(
        outcomes(&first)
            .iter()
            .all(|(_, status, _)| status == "accepted"),
        "{first:#}"
    );
    let (actions, outbox) = app.counts().await;
    let presence_before = app.admin_get("/v1/sites/hq/presence").await;

    let again = expect_status(app.upload(&door.reader_key, &events).await, StatusCode::OK).await;
    for (first, again) in first["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["results"].as_array().unwrap())
    {
        assert_eq!(again["status"], "duplicate", "{again}");
        assert_eq!(again["seq"], first["seq"]);
        assert_eq!(again["action_id"], first["action_id"]);
    }
    assert_eq!(app.counts().await, (actions, outbox));
    assert_eq!(
        app.admin_get("/v1/sites/hq/presence").await,
        presence_before
    );
}

#[tokio::test]
async fn an_unlock_granted_offline_on_a_revoked_grant_is_recorded_and_disputed() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Vault").await;
    let mallory = app.create_holder("MALLORY").await;
    let grant = app.grant(mallory, door.id).await;
    // The reader cached the grant, lost its network, and the grant was revoked meanwhile.
    app.revoke(grant).await;
    let (actions, outbox) = app.counts().await;

    let body = expect_status(
        app.upload(
            &door.reader_key,
            &json!([{"seq": 1, "type": "unlock", "card_id": "MALLORY", "decision": "granted",
                     "occurred_at": "2026-03-01T22:15:00Z"}]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    let unlock_id = uuid(&body["results"][0]["action_id"]);
    // The unlock as the reader decided it, and the dispute.
    assert_eq!(app.counts().await, (actions + 2, outbox + 2));

    let owner = app.db.owner().await;
    let row = owner
        .query_one(
            "SELECT kind, decision, server_decision, reason, decided_offline FROM actions
             WHERE id = $1",
            &[&unlock_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "unlock_granted");
    assert_eq!(row.get::<_, String>(1), "granted");
    assert_eq!(row.get::<_, String>(2), "denied");
    assert_eq!(row.get::<_, String>(3), "grant_revoked");
    assert!(row.get::<_, bool>(4));

    let dispute = owner
        .query_one(
            "SELECT payload FROM outbox WHERE subject = 'latch.events.offline_decision_disputed'",
            &[],
        )
        .await
        .unwrap();
    let dispute: Envelope = serde_json::from_value(dispute.get(0)).unwrap();
    assert_eq!(dispute.kind, EventKind::OfflineDecisionDisputed);
    assert_eq!(dispute.holder_id, Some(mallory));
    assert_eq!(dispute.door_id, Some(door.id));
    assert_eq!(dispute.reader_id, Some(door.reader_id));
    assert_eq!(dispute.reader_seq, Some(1));
    assert!(dispute.decided_offline);
    // The reader let them in; the server says why it would not have.
    assert_eq!(dispute.decision, Some(Decision::Granted));
    assert_eq!(dispute.reason.as_deref(), Some("grant_revoked"));
    // The dispute is published after the unlock it is about.
    let order: Vec<String> = owner
        .query("SELECT subject FROM outbox ORDER BY id DESC LIMIT 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        order,
        [
            "latch.events.offline_decision_disputed",
            "latch.events.unlock_granted"
        ]
    );

    // The registry shows both decisions.
    let page = app
        .admin_get("/v1/actions?kind=offline_decision_disputed")
        .await;
    let item = &page["items"][0];
    assert_eq!(item["decision"], "granted");
    assert_eq!(item["server_decision"], "denied");
    assert_eq!(item["decided_offline"], true);
    assert_eq!(
        app.metric("latch_offline_decisions_disputed_total").await,
        1.0
    );
}

#[tokio::test]
async fn a_late_uploaded_check_in_does_not_override_a_later_live_check_out() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    // Two days ago and yesterday, by the readers' clocks (well within the accepted skew).
    let at = |days: i64, hour: u8| {
        (OffsetDateTime::now_utc() - time::Duration::days(days))
            .date()
            .with_hms(hour, 0, 0)
            .unwrap()
            .assume_utc()
            .format(&Rfc3339)
            .unwrap()
    };
    for (path, at) in [("/v1/check-ins", at(2, 8)), ("/v1/check-outs", at(2, 17))] {
        expect_status(
            app.post(
                path,
                &door.reader_key,
                &json!({"card_id": "ADA", "occurred_at": at}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
    }
    let present = async || app.admin_get("/v1/sites/hq/presence").await["count"].clone();

    // Buffered by another reader of the site while it was offline, uploaded now.
    let (_, offline_key) = app.enrol_reader(door.id, None).await;
    let body = expect_status(
        app.upload(&offline_key, &json!([check(1, "ADA", &at(2, 12))]))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(present().await, 0, "the later check-out still stands");

    let body = expect_status(
        app.upload(&offline_key, &json!([check(2, "ADA", &at(1, 8))]))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(present().await, 1);
}

#[tokio::test]
async fn oversized_batches_and_wrong_credentials_are_refused() {
    let api = ApiConfig {
        batch_max_events: 2,
        ..unlimited()
    };
    let app = spawn_app_configured(64 * 1024, api).await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    let (actions, outbox) = app.counts().await;
    let three = json!([
        check(1, "ADA", "2026-01-01T08:00:00Z"),
        check(2, "ADA", "2026-01-01T08:01:00Z"),
        check(3, "ADA", "2026-01-01T08:02:00Z"),
    ]);
    expect_error(
        app.upload(&door.reader_key, &three).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_events",
    )
    .await;
    expect_error(
        app.upload(&app.admin_token, &json!([])).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_error(
        app.upload("lrk_nope", &json!([])).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        app.post(
            "/v1/readers/events:batch",
            &door.reader_key,
            &json!({"events": [], "door_id": door.id}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
    )
    .await;
    assert_eq!(app.counts().await, (actions, outbox));
    let empty = expect_status(
        app.upload(&door.reader_key, &json!([])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(empty, json!({"results": []}));
}
