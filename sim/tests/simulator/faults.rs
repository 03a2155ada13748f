//! The fault knobs, each against real HTTP.

use std::time::{Duration, Instant};

use latch_sim::{DEFAULT_TNA_KEY, Endpoint, Faults, Latency, Reject, SimConfig, SinkFaults};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestSim, envelope, expect, fresh_client, punch, wait_until};

#[tokio::test]
async fn an_error_rate_of_one_answers_503_and_applies_nothing() {
    let app = TestSim::spawn().await;
    app.set_faults(Faults::both(SinkFaults::failing(1.0))).await;

    let body = expect(
        app.punch("e1", &punch("h1", "e1")).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(body.contains("<Code>UNAVAILABLE</Code>"), "{body}");
    let event = envelope(Uuid::now_v7(), "check_in");
    expect(app.deliver(&event).await, StatusCode::SERVICE_UNAVAILABLE).await;

    let stats = app.stats().await;
    for endpoint in Endpoint::ALL {
        let stats = stats.endpoint(endpoint);
        assert_eq!((stats.failed, stats.effects), (1, 0), "{endpoint}");
    }

    // Once the sink recovers, the same key takes effect: a 503 applied nothing.
    app.set_faults(Faults::none()).await;
    expect(app.punch("e1", &punch("h1", "e1")).await, StatusCode::OK).await;
    assert_eq!(app.stats().await.legacy.effects, 1);
}

#[tokio::test]
async fn rejected_inputs_are_422_and_apply_nothing() {
    let app = TestSim::spawn().await;
    let poison = Uuid::now_v7();
    let faults = Faults {
        legacy: SinkFaults::rejecting(Reject {
            holders: vec!["h-bad".into()],
            ..Reject::default()
        }),
        webhooks: SinkFaults::rejecting(Reject {
            kinds: vec!["grant_revoked".into()],
            ..Reject::default()
        }),
        down: false,
    };
    app.set_faults(faults).await;

    let body = expect(
        app.punch("e1", &punch("h-bad", "e1")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(body.contains("<Code>REJECTED</Code>"), "{body}");
    expect(
        app.punch("e2", &punch("h-good", "e2")).await,
        StatusCode::OK,
    )
    .await;

    let refused = envelope(poison, "grant_revoked");
    let body = expect(
        app.deliver(&refused).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["error"]["code"], "rejected");
    expect(
        app.deliver(&envelope(poison, "check_in")).await,
        StatusCode::OK,
    )
    .await;

    let stats = app.stats().await;
    assert_eq!((stats.legacy.rejected, stats.legacy.effects), (1, 1));
    assert_eq!((stats.webhooks.rejected, stats.webhooks.effects), (1, 1));
    assert!(stats.legacy.order_of("h-bad").is_empty());
}

#[tokio::test]
async fn a_rate_limit_of_zero_answers_429_with_retry_after() {
    let app = TestSim::spawn().await;
    app.set_faults(Faults::both(SinkFaults::rate_limited(0, 7)))
        .await;
    let response = app.punch("e1", &punch("h1", "e1")).await;
    assert_eq!(response.headers()["retry-after"], "7");
    expect(response, StatusCode::TOO_MANY_REQUESTS).await;
    let response = app.deliver(&envelope(Uuid::now_v7(), "check_in")).await;
    assert_eq!(response.headers()["retry-after"], "7");
    expect(response, StatusCode::TOO_MANY_REQUESTS).await;
    let stats = app.stats().await;
    assert_eq!((stats.legacy.failed, stats.legacy.effects), (1, 0));
    assert_eq!((stats.webhooks.failed, stats.webhooks.effects), (1, 0));
}

#[tokio::test]
async fn a_rate_limit_admits_its_quota_per_second() {
    let app = TestSim::spawn().await;
    app.set_faults(Faults::only(
        Endpoint::Legacy,
        SinkFaults::rate_limited(2, 1),
    ))
    .await;
    let mut statuses = Vec::new();
    for event in ["e1", "e2", "e3"] {
        statuses.push(app.punch(event, &punch("h1", event)).await.status());
    }
    // Three quick requests fall in one window (started by the first) unless this machine
    // stalled for a second between them; then the third is admitted too.
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK]);
    assert!(
        [StatusCode::TOO_MANY_REQUESTS, StatusCode::OK].contains(&statuses[2]),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn down_refuses_connections_and_up_listens_on_the_same_port() {
    let app = TestSim::spawn().await;
    let client = fresh_client(Duration::from_secs(5));
    let url = app.sim.punch_url();
    expect(app.punch("e1", &punch("h1", "e1")).await, StatusCode::OK).await;

    app.set_faults(Faults::down()).await;
    let refused = app
        .post_punch(
            &client,
            Some("e2"),
            Some(DEFAULT_TNA_KEY),
            punch("h1", "e2").to_form(),
            None,
        )
        .await
        .expect_err("the port is closed");
    assert!(
        refused.is_connect(),
        "expected a refused connection, got {refused:?}"
    );
    // The admin listener still answers while the main one is down.
    let faults = app
        .client
        .get(format!("{}/faults", app.sim.admin_url()))
        .send()
        .await
        .expect("the admin listener answers");
    let faults: Faults = faults.json().await.expect("faults JSON");
    assert!(faults.down);

    app.set_faults(Faults::none()).await;
    assert_eq!(app.sim.punch_url(), url);
    let response = app
        .post_punch(
            &client,
            Some("e2"),
            Some(DEFAULT_TNA_KEY),
            punch("h1", "e2").to_form(),
            None,
        )
        .await
        .expect("the same port listens again");
    expect(response, StatusCode::OK).await;
    assert_eq!(app.stats().await.legacy.effects, 2);
}

#[tokio::test]
async fn down_cuts_connections_already_open() {
    let app = TestSim::spawn().await;
    // The shared client keeps its connection alive between requests.
    expect(app.punch("e1", &punch("h1", "e1")).await, StatusCode::OK).await;
    app.set_faults(Faults::down()).await;
    let reused = app
        .post_punch(
            &app.client,
            Some("e2"),
            Some(DEFAULT_TNA_KEY),
            punch("h1", "e2").to_form(),
            None,
        )
        .await;
    assert!(
        reused.is_err(),
        "a kept-alive connection must not outlive down: {reused:?}"
    );
}

#[tokio::test]
async fn starting_down_refuses_until_up() {
    let config = SimConfig {
        faults: Faults::down(),
        ..SimConfig::default()
    };
    let app = TestSim::spawn_with(config).await;
    let client = fresh_client(Duration::from_secs(5));
    let refused = client
        .get(format!("{}/healthz", app.sim.legacy_url()))
        .send()
        .await;
    assert!(refused.is_err_and(|error| error.is_connect()));
    app.set_faults(Faults::none()).await;
    let healthy = client
        .get(format!("{}/healthz", app.sim.legacy_url()))
        .send()
        .await
        .expect("listening after up");
    expect(healthy, StatusCode::OK).await;
}

#[tokio::test]
async fn hang_holds_the_answer_until_the_client_gives_up() {
    let app = TestSim::spawn().await;
    app.set_faults(Faults::only(Endpoint::Legacy, SinkFaults::hanging()))
        .await;
    let impatient = fresh_client(Duration::from_millis(300));
    let started = Instant::now();
    let outcome = app
        .post_punch(
            &impatient,
            Some("e1"),
            Some(DEFAULT_TNA_KEY),
            punch("h1", "e1").to_form(),
            None,
        )
        .await;
    assert!(outcome.is_err_and(|error| error.is_timeout()));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The client hung up; the server drops the request unanswered, and without effect.
    wait_until(
        "the request to be abandoned",
        Duration::from_secs(5),
        || async { (app.stats().await.legacy.abandoned == 1).then_some(()) },
    )
    .await;
    let stats = app.stats().await.legacy;
    assert_eq!((stats.requests, stats.answered(), stats.effects), (1, 0, 0));

    // The other sink is unaffected.
    expect(
        app.deliver(&envelope(Uuid::now_v7(), "check_in")).await,
        StatusCode::OK,
    )
    .await;

    // Cleared, the sink answers again; the same key takes its first effect now.
    app.set_faults(Faults::none()).await;
    expect(app.punch("e1", &punch("h1", "e1")).await, StatusCode::OK).await;
    let stats = app.stats().await.legacy;
    assert_eq!(
        (stats.effects, stats.duplicates, stats.abandoned),
        (1, 0, 1)
    );
}

#[tokio::test]
async fn down_cuts_a_hung_request() {
    let app = TestSim::spawn().await;
    app.set_faults(Faults::only(Endpoint::Legacy, SinkFaults::hanging()))
        .await;
    let waiting = {
        let client = fresh_client(Duration::from_secs(10));
        let form = punch("h1", "e1").to_form();
        let url = app.sim.punch_url();
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", crate::helpers::FORM)
                .header("Idempotency-Key", "e1")
                .header("X-TNA-Key", DEFAULT_TNA_KEY)
                .body(form)
                .send()
                .await
        })
    };
    wait_until(
        "the hung request to arrive",
        Duration::from_secs(5),
        || async { (app.stats().await.legacy.requests == 1).then_some(()) },
    )
    .await;
    app.set_faults(Faults::down()).await;
    let cut = waiting.await.expect("joins");
    assert!(
        cut.is_err(),
        "the connection was cut, not answered: {cut:?}"
    );
    let stats = app.stats().await.legacy;
    assert_eq!((stats.abandoned, stats.effects), (1, 0));
}

#[tokio::test]
async fn a_hung_request_carries_on_when_the_knob_is_cleared() {
    let app = TestSim::spawn().await;
    app.set_faults(Faults::only(Endpoint::Legacy, SinkFaults::hanging()))
        .await;
    let waiting = {
        let client = app.client.clone();
        let form = punch("h1", "e1").to_form();
        let url = app.sim.punch_url();
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", crate::helpers::FORM)
                .header("Idempotency-Key", "e1")
                .header("X-TNA-Key", DEFAULT_TNA_KEY)
                .body(form)
                .send()
                .await
        })
    };
    wait_until(
        "the hung request to arrive",
        Duration::from_secs(5),
        || async { (app.stats().await.legacy.requests == 1).then_some(()) },
    )
    .await;
    app.set_faults(Faults::none()).await;
    let response = waiting
        .await
        .expect("joins")
        .expect("answered once cleared");
    expect(response, StatusCode::OK).await;
    assert_eq!(app.stats().await.legacy.effects, 1);
}

#[tokio::test]
async fn a_fixed_latency_delays_every_answer() {
    let app = TestSim::spawn().await;
    app.set_faults(Faults::both(SinkFaults::slow(Latency::Fixed { ms: 200 })))
        .await;
    let started = Instant::now();
    expect(app.punch("e1", &punch("h1", "e1")).await, StatusCode::OK).await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let bad_key = app
        .post_punch(
            &app.client,
            Some("e2"),
            Some("wrong"),
            punch("h1", "e2").to_form(),
            None,
        )
        .await
        .expect("completes");
    expect(bad_key, StatusCode::UNAUTHORIZED).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
}
