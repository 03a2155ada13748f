//! The webhook receiver: signatures, the envelope, and applying each key once.

use latch_sim::{DEFAULT_WEBHOOK_SECRET, sign};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestSim, envelope, expect, now};

#[tokio::test]
async fn a_signed_envelope_is_accepted_once() {
    let app = TestSim::spawn().await;
    let event = envelope(Uuid::now_v7(), "check_in");
    let first = expect(app.deliver(&event).await, StatusCode::OK).await;
    let first: Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!(first["status"], "accepted");
    assert_eq!(first["id"], event.id.to_string());

    // A retry is signed anew (a fresh timestamp) but carries the same body and key.
    let again = expect(app.deliver(&event).await, StatusCode::OK).await;
    assert_eq!(serde_json::from_str::<Value>(&again).expect("JSON"), first);

    let stats = app.stats().await.webhooks;
    assert_eq!((stats.effects, stats.duplicates), (1, 1));
    let holder = event.holder_id.expect("has a holder").to_string();
    assert_eq!(stats.order_of(&holder), [event.id.to_string()]);
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_401() {
    let app = TestSim::spawn().await;
    let body = br#"{"id":"e1","kind":"check_in"}"#.to_vec();
    let wrong_secret = sign("not-the-secret", now(), &body);
    let other_body = sign(
        DEFAULT_WEBHOOK_SECRET,
        now(),
        br#"{"id":"e2","kind":"check_in"}"#,
    );
    for signature in [
        Some(wrong_secret.as_str()),
        Some(other_body.as_str()),
        Some("t=1"),
        None,
    ] {
        let response = app.post_webhook("e1", body.clone(), signature).await;
        let error = expect(response, StatusCode::UNAUTHORIZED).await;
        let error: Value = serde_json::from_str(&error).expect("JSON");
        assert_eq!(error["error"]["code"], "invalid_signature");
    }
    assert_eq!(app.stats().await.webhooks.effects, 0);
}

#[tokio::test]
async fn a_stale_or_future_timestamp_is_401() {
    let app = TestSim::spawn().await;
    let body = br#"{"id":"e1","kind":"check_in"}"#.to_vec();
    // A minute past the 300 s tolerance, so that a second ticking between the two clocks
    // reads cannot bring it back inside.
    for timestamp in [now() - 360, now() + 360] {
        let signature = sign(DEFAULT_WEBHOOK_SECRET, timestamp, &body);
        let response = app.post_webhook("e1", body.clone(), Some(&signature)).await;
        let error = expect(response, StatusCode::UNAUTHORIZED).await;
        assert!(error.contains("tolerance"), "{error}");
    }
}

#[tokio::test]
async fn a_body_without_id_or_kind_is_400() {
    let app = TestSim::spawn().await;
    for body in [
        json!({"kind": "check_in"}),
        json!({"id": "e1"}),
        json!([1, 2]),
    ] {
        let body = body.to_string().into_bytes();
        let signature = sign(DEFAULT_WEBHOOK_SECRET, now(), &body);
        let response = app.post_webhook("e1", body, Some(&signature)).await;
        expect(response, StatusCode::BAD_REQUEST).await;
    }
    let not_json = b"id=e1".to_vec();
    let signature = sign(DEFAULT_WEBHOOK_SECRET, now(), &not_json);
    expect(
        app.post_webhook("e1", not_json, Some(&signature)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(app.stats().await.webhooks.rejected, 4);
}

#[tokio::test]
async fn a_missing_idempotency_key_is_400() {
    let app = TestSim::spawn().await;
    let body = br#"{"id":"e1","kind":"check_in"}"#.to_vec();
    let response = app
        .client
        .post(app.sim.webhook_url())
        .header("content-type", "application/json")
        .header(
            "Latch-Signature",
            sign(DEFAULT_WEBHOOK_SECRET, now(), &body),
        )
        .body(body)
        .send()
        .await
        .expect("completes");
    let error = expect(response, StatusCode::BAD_REQUEST).await;
    assert!(error.contains("missing_idempotency_key"), "{error}");
}

#[tokio::test]
async fn legacy_and_webhooks_apply_the_same_event_id_separately() {
    let app = TestSim::spawn().await;
    let event = envelope(Uuid::now_v7(), "check_out");
    let key = event.id.to_string();
    let holder = event.holder_id.expect("has a holder").to_string();
    expect(app.deliver(&event).await, StatusCode::OK).await;
    let punch = crate::helpers::punch(&holder, &key);
    expect(app.punch(&key, &punch).await, StatusCode::OK).await;
    let stats = app.stats().await;
    assert_eq!((stats.legacy.effects, stats.webhooks.effects), (1, 1));
    assert_eq!(
        stats.legacy.events[&key].endpoint,
        latch_sim::Endpoint::Legacy
    );
    assert_eq!(
        stats.webhooks.events[&key].endpoint,
        latch_sim::Endpoint::Webhooks
    );
}
