//! The webhook receiver: signatures, the envelope, and applying each key once.

use latch_sim::DEFAULT_WEBHOOK_SECRET;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Signed, TestSim, envelope, expect, now};

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

/// Another valid secret (32 bytes of "x").
const OTHER_SECRET: &str = "whsec_eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=";

#[tokio::test]
async fn a_bad_or_missing_signature_is_401() {
    let app = TestSim::spawn().await;
    let body = br#"{"id":"e1","kind":"check_in"}"#.to_vec();
    let wrong_secret = Signed::new(OTHER_SECRET, "e1", now(), &body);
    let other_body = Signed::new(
        DEFAULT_WEBHOOK_SECRET,
        "e1",
        now(),
        br#"{"id":"e2","kind":"check_in"}"#,
    );
    let garbled = Signed {
        signature: "v1,AAAA".into(),
        ..Signed::new(DEFAULT_WEBHOOK_SECRET, "e1", now(), &body)
    };
    let old_scheme = Signed {
        signature: "t=1,v1=00".into(),
        ..garbled.clone()
    };
    for signed in [
        Some(&wrong_secret),
        Some(&other_body),
        Some(&garbled),
        Some(&old_scheme),
        None,
    ] {
        let response = app.post_webhook("e1", body.clone(), signed).await;
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
    // A minute past the reference's 300 s tolerance, so that a second ticking between the
    // two clocks reads cannot bring it back inside.
    for timestamp in [now() - 360, now() + 360] {
        let signed = Signed::new(DEFAULT_WEBHOOK_SECRET, "e1", timestamp, &body);
        let response = app.post_webhook("e1", body.clone(), Some(&signed)).await;
        let error = expect(response, StatusCode::UNAUTHORIZED).await;
        assert!(error.contains("timestamp"), "{error}");
    }
}

#[tokio::test]
async fn a_captured_call_sent_again_takes_effect_once() {
    let app = TestSim::spawn().await;
    let event = envelope(Uuid::now_v7(), "check_in");
    let id = event.id.to_string();
    let body = serde_json::to_vec(&event.body).expect("serialises");
    let captured = Signed::new(DEFAULT_WEBHOOK_SECRET, &id, now(), &body);
    expect(
        app.post_webhook(&id, body.clone(), Some(&captured)).await,
        StatusCode::OK,
    )
    .await;
    // The same call again: a duplicate, no second effect.
    expect(
        app.post_webhook(&id, body.clone(), Some(&captured)).await,
        StatusCode::OK,
    )
    .await;
    // Under a new Idempotency-Key: the signed id is still the old one.
    let fresh = Uuid::now_v7().to_string();
    let error = expect(
        app.post_webhook(&fresh, body.clone(), Some(&captured))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(error.contains("idempotency_key_mismatch"), "{error}");
    // Under a new webhook-id too: the signature covers the id, so it fails.
    let renamed = Signed {
        id: fresh.clone(),
        ..captured.clone()
    };
    expect(
        app.post_webhook(&fresh, body.clone(), Some(&renamed)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let stats = app.stats().await.webhooks;
    assert_eq!((stats.effects, stats.duplicates), (1, 1));
}

#[tokio::test]
async fn the_webhook_id_must_be_the_events_id() {
    let app = TestSim::spawn().await;
    let body = br#"{"id":"e1","kind":"check_in"}"#.to_vec();
    let signed = Signed::new(DEFAULT_WEBHOOK_SECRET, "e2", now(), &body);
    let error = expect(
        app.post_webhook("e2", body, Some(&signed)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(error.contains("webhook_id_mismatch"), "{error}");
    assert_eq!(app.stats().await.webhooks.effects, 0);
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
        let signed = Signed::new(DEFAULT_WEBHOOK_SECRET, "e1", now(), &body);
        let response = app.post_webhook("e1", body, Some(&signed)).await;
        expect(response, StatusCode::BAD_REQUEST).await;
    }
    let not_json = b"id=e1".to_vec();
    let signed = Signed::new(DEFAULT_WEBHOOK_SECRET, "e1", now(), &not_json);
    expect(
        app.post_webhook("e1", not_json, Some(&signed)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(app.stats().await.webhooks.rejected, 4);
}

#[tokio::test]
async fn a_missing_idempotency_key_is_400() {
    let app = TestSim::spawn().await;
    let body = br#"{"id":"e1","kind":"check_in"}"#.to_vec();
    let signed = Signed::new(DEFAULT_WEBHOOK_SECRET, "e1", now(), &body);
    let request = app
        .client
        .post(app.sim.webhook_url())
        .header("content-type", "application/json")
        .body(body);
    let response = signed.on(request).send().await.expect("completes");
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
