//! The closed loop: exact request counts, warm-up, presence-mix, idempotency keys and
//! stopping on the shutdown token.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use latch_load::readers::{self, CHECK_IN_PATH, CHECK_OUT_PATH, LoadConfig, ReaderEndpoint, Stop};

use crate::api::{Behaviour, FakeApi};
use crate::helpers::{assert_ordered, closed, config, status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_exactly_the_requests_asked_for_and_counts_every_answer() {
    let api = FakeApi::start().await;
    let report = readers::run(config(&api.url, closed(4), Stop::after_requests(200)))
        .await
        .unwrap();
    assert_eq!(api.arrived(), 200);
    assert_eq!(report.requests, 200);
    assert_eq!(report.answered, 200);
    assert_eq!(status(&report, "200"), 200);
    assert_eq!(
        (report.errors, report.late, report.warmup_requests),
        (0, 0, 0)
    );
    let granted = report.decisions.get("granted").copied().unwrap_or(0);
    let denied = report.decisions.get("denied").copied().unwrap_or(0);
    assert_eq!(granted + denied, 200);
    assert!(granted > 0 && denied > 0, "both cards are used");
    assert_eq!(report.histogram.len(), 200);
    assert_ordered(&report);
    assert!(report.duration_s > 0.0 && report.throughput_rps > 0.0);
    assert_eq!((report.mode, report.concurrency), ("closed", Some(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_requests_are_sent_and_discarded() {
    let api = FakeApi::start().await;
    let report = readers::run(LoadConfig {
        warmup: Duration::from_millis(100),
        ..config(&api.url, closed(2), Stop::after_requests(30))
    })
    .await
    .unwrap();
    assert!(report.warmup_requests > 0);
    assert_eq!(report.requests, 30);
    assert_eq!(api.arrived(), 30 + report.warmup_requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_mix_alternates_per_card_and_idempotency_keys_are_fresh() {
    let api = FakeApi::start().await;
    let report = readers::run(LoadConfig {
        endpoint: ReaderEndpoint::PresenceMix,
        idempotency: true,
        ..config(&api.url, closed(1), Stop::after_requests(40))
    })
    .await
    .unwrap();
    assert_eq!(status(&report, "201"), 40);
    assert!(report.decisions.is_empty(), "only unlocks have decisions");

    let seen = api.seen();
    let mut last: HashMap<&str, &str> = HashMap::new();
    for request in &seen {
        let expected = match last.get(request.card.as_str()) {
            None | Some(&CHECK_OUT_PATH) => CHECK_IN_PATH,
            Some(_) => CHECK_OUT_PATH,
        };
        assert_eq!(request.path, expected, "card {}", request.card);
        last.insert(&request.card, request.path);
    }
    let keys: HashSet<_> = seen.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 40, "one fresh key per request");
    assert!(!keys.contains(&None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_token_ends_the_run_and_the_report_covers_what_was_sent() {
    let api = FakeApi::start_with(Behaviour {
        stop_after: Some(10),
        ..Behaviour::default()
    })
    .await;
    let run = readers::run_until(
        config(&api.url, closed(2), Stop::after(Duration::from_secs(60))),
        api.stop_token(),
    );
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run stops on its token, long before its duration")
        .unwrap();
    // The requests in flight when the token was cancelled are finished and counted.
    assert!((10..=12).contains(&report.requests), "{}", report.requests);
    assert_eq!(report.requests, api.arrived());
}
