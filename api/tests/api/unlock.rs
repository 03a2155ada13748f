use latch_core::event::{Decision, Envelope, EventKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

#[tokio::test]
async fn granted_unlock_commits_the_action_and_its_outbox_row() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("CARD-1").await;
    let grant = app.grant(holder, door.id).await;
    let (actions_before, outbox_before) = app.counts().await;

    let response = app
        .request(reqwest::Method::POST, "/v1/unlock", &door.reader_key)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&json!({"card_id": "CARD-1"}))
        .send()
        .await
        .unwrap();
    let traceparent = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["decision"], "granted");
    assert_eq!(body["reason"], "valid_grant");
    let action_id = uuid(&body["action_id"]);

    assert_eq!(app.counts().await, (actions_before + 1, outbox_before + 1));
    let owner = app.db.owner().await;
    let row = owner
        .query_one(
            "SELECT subject, payload, headers, event_id FROM outbox WHERE event_id = $1",
            &[&action_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "latch.events.unlock_granted");
    let envelope: Envelope = serde_json::from_value(row.get::<_, Value>(1)).unwrap();
    assert_eq!(envelope.id, action_id);
    assert_eq!(envelope.kind, EventKind::UnlockGranted);
    assert_eq!(envelope.schema_version, latch_core::event::SCHEMA_VERSION);
    assert_eq!(envelope.door_id, Some(door.id));
    assert_eq!(envelope.holder_id, Some(holder));
    assert_eq!(envelope.reader_id, Some(door.reader_id));
    assert_eq!(envelope.site.as_deref(), Some("hq"));
    assert_eq!(envelope.decision, Some(Decision::Granted));
    assert!(!envelope.decided_offline);
    let headers: Value = row.get(2);
    assert_eq!(headers["traceparent"], traceparent);
    assert_eq!(headers["Latch-Event-Id"], action_id.to_string());
    let _ = grant;
}

async fn expect_denied(app: &TestApp, key: &str, card: &str, reason: &str) {
    let (actions_before, outbox_before) = app.counts().await;
    let body = expect_status(app.unlock(key, card).await, StatusCode::OK).await;
    assert_eq!(body["decision"], "denied", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    // Denials are recorded and published too.
    assert_eq!(app.counts().await, (actions_before + 1, outbox_before + 1));
    let kind: String = app
        .db
        .owner()
        .await
        .query_one(
            "SELECT kind FROM actions WHERE id = $1",
            &[&uuid(&body["action_id"])],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "unlock_denied");
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

#[tokio::test]
async fn each_denial_reason_is_decided_and_recorded() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let key = door.reader_key.as_str();

    expect_denied(&app, key, "NO-SUCH-CARD", "unknown_card").await;

    app.create_holder("NO-GRANT").await;
    expect_denied(&app, key, "NO-GRANT", "no_grant").await;

    let revoked = app.create_holder("REVOKED").await;
    let grant = app.grant(revoked, door.id).await;
    expect_status(
        app.request(
            reqwest::Method::DELETE,
            &format!("/v1/grants/{grant}"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    expect_denied(&app, key, "REVOKED", "grant_revoked").await;

    let now = OffsetDateTime::now_utc();
    let expired = app.create_holder("EXPIRED").await;
    app.admin_post(
        "/v1/grants",
        &json!({"holder_id": expired, "door_id": door.id,
                "valid_from": rfc3339(now - Duration::days(2)),
                "valid_until": rfc3339(now - Duration::days(1))}),
    )
    .await;
    expect_denied(&app, key, "EXPIRED", "grant_expired").await;

    let future = app.create_holder("FUTURE").await;
    app.admin_post(
        "/v1/grants",
        &json!({"holder_id": future, "door_id": door.id,
                "valid_from": rfc3339(now + Duration::days(1))}),
    )
    .await;
    expect_denied(&app, key, "FUTURE", "grant_not_yet_valid").await;

    let inactive = app.create_holder("INACTIVE").await;
    app.grant(inactive, door.id).await;
    expect_status(
        app.request(
            reqwest::Method::PATCH,
            &format!("/v1/holders/{inactive}"),
            &app.admin_token,
        )
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    expect_denied(&app, key, "INACTIVE", "holder_inactive").await;
}

#[tokio::test]
async fn an_active_grant_wins_over_an_older_revoked_one() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("CARD-1").await;
    let old = app.grant(holder, door.id).await;
    app.request(
        reqwest::Method::DELETE,
        &format!("/v1/grants/{old}"),
        &app.admin_token,
    )
    .send()
    .await
    .unwrap();
    app.grant(holder, door.id).await;
    let body = expect_status(app.unlock(&door.reader_key, "CARD-1").await, StatusCode::OK).await;
    assert_eq!(body["decision"], "granted");
}

#[tokio::test]
async fn a_reader_acts_only_for_its_own_door() {
    let app = spawn_app().await;
    let lobby = app.create_door("hq", "Lobby").await;
    let vault = app.create_door("hq", "Vault").await;
    let holder = app.create_holder("CARD-1").await;
    app.grant(holder, vault.id).await;

    // The lobby reader cannot open the vault for a vault-only card...
    let body = expect_status(
        app.unlock(&lobby.reader_key, "CARD-1").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["decision"], "denied");
    assert_eq!(body["reason"], "no_grant");
    let recorded_door: uuid::Uuid = app
        .db
        .owner()
        .await
        .query_one(
            "SELECT door_id FROM actions WHERE id = $1",
            &[&uuid(&body["action_id"])],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded_door, lobby.id);

    // ...and cannot name another door in the body.
    let (actions, outbox) = app.counts().await;
    let response = app
        .post(
            "/v1/unlock",
            &lobby.reader_key,
            &json!({"card_id": "CARD-1", "door_id": vault.id}),
        )
        .await;
    expect_error(response, StatusCode::BAD_REQUEST, "unknown_field").await;
    assert_eq!(app.counts().await, (actions, outbox));

    let body = expect_status(
        app.unlock(&vault.reader_key, "CARD-1").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["decision"], "granted");
}

#[tokio::test]
async fn bad_credentials_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("CARD-1").await;
    app.grant(holder, door.id).await;
    let (actions, outbox) = app.counts().await;

    expect_error(
        app.unlock("lrk_not-a-real-key", "CARD-1").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let missing = app
        .http
        .post(format!("{}/v1/unlock", app.base))
        .json(&json!({"card_id": "CARD-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    expect_error(missing, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let basic = app
        .http
        .post(format!("{}/v1/check-ins", app.base))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({"card_id": "CARD-1"}))
        .send()
        .await
        .unwrap();
    expect_error(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // An admin token is not a reader key.
    expect_error(
        app.unlock(&app.admin_token, "CARD-1").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(app.counts().await, (actions, outbox));

    // A disabled reader's key stops working at once.
    let disabled = app
        .post(
            &format!("/v1/readers/{}/disable", door.reader_id),
            &app.admin_token,
            &json!(null),
        )
        .await;
    expect_status(disabled, StatusCode::OK).await;
    let (actions, outbox) = app.counts().await;
    expect_error(
        app.unlock(&door.reader_key, "CARD-1").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let check_in = app
        .post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "CARD-1"}),
        )
        .await;
    expect_error(check_in, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Nor does it tell an admin endpoint that it ever was a key: 401, as for any string.
    expect_error(
        app.get("/v1/doors", &door.reader_key).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(app.counts().await, (actions, outbox));
}
