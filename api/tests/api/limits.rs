//! Rate limits: a reader key's flood gets 429 with `Retry-After` and leaves other readers
//! alone; a token has its own budget; an address guessing keys is throttled; limits reset.
//! (Each refusal is held for up to a second before it is answered; see `latch_api::limits`.)

use std::time::{Duration, Instant};

use latch_api::{ApiConfig, Rate, RateLimits};
use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::*;

fn limited(reader: Rate, token: Rate, failed_auth: Rate) -> ApiConfig {
    ApiConfig {
        rate_limits: RateLimits {
            reader,
            token,
            failed_auth,
        },
        ..ApiConfig::default()
    }
}

/// The `Retry-After` of a 429, in seconds.
async fn retry_after(response: Response) -> u64 {
    let seconds = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("429 carries Retry-After in seconds: {response:?}"));
    expect_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    seconds
}

/// Repeats `send` until it answers something other than 429, within `deadline`.
async fn until_admitted<F, Fut>(deadline: Duration, mut send: F) -> StatusCode
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let end = Instant::now() + deadline;
    loop {
        let status = send().await.status();
        if status != StatusCode::TOO_MANY_REQUESTS {
            return status;
        }
        assert!(Instant::now() < end, "still 429 after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_flooding_reader_gets_429_and_other_readers_do_not() {
    // One request every 2 s after the burst: a refusal (held for 1 s) is followed by
    // another refusal, not by a request let in.
    let reader = Rate {
        per_minute: 30,
        burst: 5,
    };
    let app = spawn_app_configured(64 * 1024, limited(reader, Rate::OFF, Rate::OFF)).await;
    let door = app.create_door("hq", "Main").await;
    let (_, other_key) = app.enrol_reader(door.id, None).await;
    let holder = app.create_holder("ADA").await;
    app.grant(holder, door.id).await;

    for _ in 0..5 {
        expect_status(app.unlock(&door.reader_key, "ADA").await, StatusCode::OK).await;
    }
    let before = app.counts().await;
    let wait = retry_after(app.unlock(&door.reader_key, "ADA").await).await;
    assert_eq!(wait, 2, "Retry-After");
    // Refused before anything is written; other endpoints of the same key too.
    assert_eq!(app.counts().await, before);
    retry_after(
        app.post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "ADA"}),
        )
        .await,
    )
    .await;
    // Another reader at the same door has its own budget.
    for _ in 0..5 {
        expect_status(app.unlock(&other_key, "ADA").await, StatusCode::OK).await;
    }
    assert!(app.metric("latch_http_rate_limited_total").await >= 2.0);
    // The flooding reader is let in again once it waits.
    let status = until_admitted(Duration::from_secs(10), || {
        app.unlock(&door.reader_key, "ADA")
    })
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_has_its_own_budget() {
    let token = Rate {
        per_minute: 60,
        burst: 3,
    };
    let app = spawn_app_configured(64 * 1024, limited(Rate::OFF, token, Rate::OFF)).await;
    let (_, second) = app.token(&["sites:read"], None).await;
    for _ in 0..3 {
        expect_status(app.get("/v1/doors", &app.admin_token).await, StatusCode::OK).await;
    }
    retry_after(app.get("/v1/doors", &app.admin_token).await).await;
    expect_status(app.get("/v1/doors", &second).await, StatusCode::OK).await;
    let status = until_admitted(Duration::from_secs(10), || {
        app.get("/v1/doors", &app.admin_token)
    })
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_address_guessing_keys_is_throttled_then_let_in_again() {
    // One failure every 5 s after the burst: the three refusals below (each held for 1 s)
    // all fall inside one wait.
    let failed_auth = Rate {
        per_minute: 12,
        burst: 3,
    };
    let app = spawn_app_configured(64 * 1024, limited(Rate::OFF, Rate::OFF, failed_auth)).await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    for n in 0..3 {
        expect_error(
            app.unlock(&format!("lrk_guess{n}"), "ADA").await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // The fourth failure spends the last of the budget; from then on the address is
    // refused before its key is even looked at.
    app.unlock("lrk_guess3", "ADA").await;
    let before = app.counts().await;
    retry_after(app.unlock("lrk_guess4", "ADA").await).await;
    retry_after(app.unlock(&door.reader_key, "ADA").await).await;
    retry_after(app.get("/v1/doors", "lat_guess").await).await;
    assert_eq!(app.counts().await, before);
    let status = until_admitted(Duration::from_secs(10), || {
        app.unlock(&door.reader_key, "ADA")
    })
    .await;
    assert_eq!(status, StatusCode::OK);
}
