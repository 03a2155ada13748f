//! The legacy punch endpoint: its key, its form, its XML, and applying each key once.

use latch_sim::{DEFAULT_TNA_KEY, fields};
use reqwest::StatusCode;

use crate::helpers::{TestSim, expect, punch};

#[tokio::test]
async fn a_punch_is_applied_once_and_a_repeat_gets_the_same_answer() {
    let app = TestSim::spawn().await;
    let first = expect(
        app.punch("event-1", &punch("h1", "event-1")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        first,
        "<PunchResponse><Status>OK</Status><PunchId>1</PunchId></PunchResponse>"
    );

    let again = expect(
        app.punch("event-1", &punch("h1", "event-1")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again, first);

    let stats = app.stats().await.legacy;
    assert_eq!((stats.requests, stats.effects, stats.duplicates), (2, 1, 1));
    assert_eq!(stats.events["event-1"].count, 2);
    assert!(stats.events["event-1"].applied);
}

#[tokio::test]
async fn a_new_key_gets_the_next_punch_id() {
    let app = TestSim::spawn().await;
    app.punch("e1", &punch("h1", "e1")).await;
    let second = expect(app.punch("e2", &punch("h1", "e2")).await, StatusCode::OK).await;
    assert!(second.contains("<PunchId>2</PunchId>"), "{second}");
}

#[tokio::test]
async fn a_wrong_or_missing_api_key_is_401() {
    let app = TestSim::spawn().await;
    let form = punch("h1", "e1").to_form();
    for tna_key in [Some("wrong"), None] {
        let response = app
            .post_punch(&app.client, Some("e1"), tna_key, form.clone(), None)
            .await
            .expect("completes");
        let body = expect(response, StatusCode::UNAUTHORIZED).await;
        assert!(body.contains("<Code>UNAUTHORIZED</Code>"), "{body}");
    }
    let stats = app.stats().await.legacy;
    assert_eq!((stats.rejected, stats.effects), (2, 0));
}

#[tokio::test]
async fn a_missing_field_is_400_with_an_xml_error() {
    let app = TestSim::spawn().await;
    let form = punch("h1", "e1")
        .to_form()
        .split('&')
        .filter(|pair| !pair.starts_with(fields::PUNCH_TS))
        .collect::<Vec<_>>()
        .join("&");
    let response = app
        .post_punch(&app.client, Some("e1"), Some(DEFAULT_TNA_KEY), form, None)
        .await
        .expect("completes");
    assert_eq!(
        response.headers()["content-type"],
        "application/xml; charset=utf-8"
    );
    let body = expect(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        body,
        "<PunchResponse><Status>ERROR</Status><Code>MISSING_FIELD</Code>\
         <Message>field PUNCH_TS is required</Message></PunchResponse>"
    );
    assert_eq!(app.stats().await.legacy.effects, 0);
}

#[tokio::test]
async fn a_missing_idempotency_key_is_400() {
    let app = TestSim::spawn().await;
    let response = app
        .post_punch(
            &app.client,
            None,
            Some(DEFAULT_TNA_KEY),
            punch("h1", "e1").to_form(),
            None,
        )
        .await
        .expect("completes");
    let body = expect(response, StatusCode::BAD_REQUEST).await;
    assert!(body.contains("MISSING_IDEMPOTENCY_KEY"), "{body}");
}

#[tokio::test]
async fn a_form_under_another_content_type_is_415() {
    let app = TestSim::spawn().await;
    let response = app
        .client
        .post(app.sim.punch_url())
        .header("content-type", "text/plain")
        .header("Idempotency-Key", "e1")
        .header("X-TNA-Key", DEFAULT_TNA_KEY)
        .body(punch("h1", "e1").to_form())
        .send()
        .await
        .expect("completes");
    expect(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

#[tokio::test]
async fn the_same_key_for_another_punch_is_422_and_applies_nothing() {
    let app = TestSim::spawn().await;
    app.punch("e1", &punch("h1", "e1")).await;
    let body = expect(
        app.punch("e1", &punch("h2", "e1")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(body.contains("IDEMPOTENCY_KEY_REUSED"), "{body}");
    let stats = app.stats().await.legacy;
    assert_eq!((stats.effects, stats.rejected), (1, 1));
    assert!(stats.order_of("h2").is_empty());
}

#[tokio::test]
async fn each_holders_order_and_traceparents_are_recorded() {
    let app = TestSim::spawn().await;
    let sent = [
        ("a", "e1"),
        ("b", "e2"),
        ("a", "e3"),
        ("b", "e4"),
        ("a", "e5"),
    ];
    for (holder, event) in sent {
        let traceparent = format!("00-{:0>32}-{:0>16}-01", event, holder);
        let response = app
            .post_punch(
                &app.client,
                Some(event),
                Some(DEFAULT_TNA_KEY),
                punch(holder, event).to_form(),
                Some(&traceparent),
            )
            .await
            .expect("completes");
        expect(response, StatusCode::OK).await;
    }
    let stats = app.stats().await.legacy;
    assert_eq!(stats.order_of("a"), ["e1", "e3", "e5"]);
    assert_eq!(stats.order_of("b"), ["e2", "e4"]);
    let record = &stats.events["e3"];
    assert_eq!(
        record.traceparent.as_deref(),
        Some("00-000000000000000000000000000000e3-000000000000000a-01")
    );
    assert_eq!(record.holder.as_deref(), Some("a"));
}
