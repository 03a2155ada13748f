//! The admin listener: faults, stats and reset over HTTP, as an operator uses them.

use latch_sim::{Faults, Stats};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestSim, expect, punch};

#[tokio::test]
async fn put_faults_replaces_the_knobs_and_get_shows_them() {
    let app = TestSim::spawn().await;
    let body = json!({"legacy": {"error_rate": 1.0, "latency": {"kind": "fixed", "ms": 5}}});
    expect(app.put_faults(&body).await, StatusCode::OK).await;
    let shown: Faults = app
        .client
        .get(format!("{}/faults", app.sim.admin_url()))
        .send()
        .await
        .expect("completes")
        .json()
        .await
        .expect("faults JSON");
    assert_eq!(shown.legacy.error_rate, 1.0);
    assert_eq!(shown, app.sim.faults());
    expect(
        app.punch("e1", &punch("h1", "e1")).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;

    // `{}` clears everything.
    expect(app.put_faults(&json!({})).await, StatusCode::OK).await;
    expect(app.punch("e1", &punch("h1", "e1")).await, StatusCode::OK).await;
}

#[tokio::test]
async fn nonsense_faults_are_400_and_change_nothing() {
    let app = TestSim::spawn().await;
    for body in [
        json!({"legacy": {"error_rate": 2.0}}),
        json!({"typo": true}),
    ] {
        let error = expect(app.put_faults(&body).await, StatusCode::BAD_REQUEST).await;
        let error: Value = serde_json::from_str(&error).expect("JSON");
        assert_eq!(error["error"]["code"], "invalid_faults");
    }
    assert_eq!(app.sim.faults(), Faults::none());
}

#[tokio::test]
async fn down_and_up_through_the_admin_endpoint() {
    let app = TestSim::spawn().await;
    expect(app.put_faults(&json!({"down": true})).await, StatusCode::OK).await;
    let client = crate::helpers::fresh_client(std::time::Duration::from_secs(5));
    let refused = client
        .get(format!("{}/healthz", app.sim.legacy_url()))
        .send()
        .await;
    assert!(refused.is_err_and(|error| error.is_connect()));
    expect(
        app.put_faults(&json!({"down": false})).await,
        StatusCode::OK,
    )
    .await;
    let up = client
        .get(format!("{}/healthz", app.sim.legacy_url()))
        .send()
        .await
        .expect("listening again");
    expect(up, StatusCode::OK).await;
}

#[tokio::test]
async fn stats_are_served_on_both_listeners_in_the_documented_shape() {
    let app = TestSim::spawn().await;
    app.punch("e1", &punch("h1", "e1")).await;
    for base in [app.sim.legacy_url(), app.sim.admin_url()] {
        let raw: Value = app
            .client
            .get(format!("{base}/stats"))
            .send()
            .await
            .expect("completes")
            .json()
            .await
            .expect("JSON");
        let legacy = &raw["legacy"];
        for counter in ["requests", "effects", "duplicates", "rejected", "failed"] {
            assert!(legacy[counter].is_u64(), "{counter} in {raw}");
        }
        assert_eq!(legacy["order"]["h1"], json!(["e1"]));
        let event = &legacy["events"]["e1"];
        assert_eq!(event["endpoint"], "legacy");
        assert_eq!(event["count"], 1);
        assert!(
            event["first_at"]
                .as_str()
                .is_some_and(|at| at.contains('T'))
        );
        let typed: Stats = serde_json::from_value(raw).expect("the typed Stats reads it");
        assert_eq!(typed, app.stats().await);
    }
}

#[tokio::test]
async fn reset_forgets_effects_keys_and_counters() {
    let app = TestSim::spawn().await;
    app.punch("e1", &punch("h1", "e1")).await;
    let reset = app
        .client
        .post(format!("{}/admin/reset", app.sim.admin_url()))
        .send()
        .await
        .expect("completes");
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.stats().await, Stats::default());

    // The sink lost its data: the same key takes effect again, numbered from 1.
    let body = expect(app.punch("e1", &punch("h1", "e1")).await, StatusCode::OK).await;
    assert!(body.contains("<PunchId>1</PunchId>"), "{body}");
    assert_eq!(app.stats().await.legacy.effects, 1);

    // The library call does the same, and so does the main listener's endpoint.
    app.sim.reset().await;
    assert_eq!(app.stats().await, Stats::default());
    let reset = app
        .client
        .post(format!("{}/admin/reset", app.sim.legacy_url()))
        .send()
        .await
        .expect("completes");
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn shutdown_closes_both_ports() {
    let app = TestSim::spawn().await;
    let (main, admin) = (app.sim.legacy_url(), app.sim.admin_url());
    app.sim.shutdown().await;
    let client = crate::helpers::fresh_client(std::time::Duration::from_secs(5));
    for base in [main, admin] {
        let refused = client.get(format!("{base}/healthz")).send().await;
        assert!(refused.is_err_and(|error| error.is_connect()), "{base}");
    }
}
