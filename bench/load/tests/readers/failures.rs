//! What the generator does when the target refuses: 4xx are data, an unreachable target
//! is an error (found quickly), and so is a run that cannot mean anything.

use std::time::Duration;

use latch_core::config::Secret;
use latch_load::readers::{self, LoadConfig, Stop};

use crate::api::{Behaviour, FakeApi};
use crate::helpers::{closed, config, status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_reported_as_401s_not_as_a_failure() {
    let api = FakeApi::start().await;
    let report = readers::run(LoadConfig {
        reader_keys: vec![Secret::new("lrk_wrong".to_owned())],
        ..config(&api.url, closed(2), Stop::after_requests(20))
    })
    .await
    .unwrap();
    assert_eq!(status(&report, "401"), 20);
    assert_eq!(report.requests, 20);
    assert_eq!(report.errors, 0);
    assert!(report.decisions.is_empty());
    assert_eq!(report.to_json()["statuses"]["401"], 20);
}

/// A port nobody listens on: taken from the OS, then released.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_an_error_found_long_before_the_duration() {
    let url = dead_url().await;
    let run = readers::run(config(
        &url,
        closed(4),
        Stop::after(Duration::from_secs(60)),
    ));
    let error = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("gives up early")
        .expect_err("nothing answered");
    let message = format!("{error:#}");
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("gave up"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_in_time_is_an_error_too() {
    let api = FakeApi::start_with(Behaviour {
        delay: Duration::from_secs(5),
        ..Behaviour::default()
    })
    .await;
    let error = readers::run(LoadConfig {
        timeout: Duration::from_millis(100),
        ..config(&api.url, closed(3), Stop::after_requests(3))
    })
    .await
    .expect_err("nothing answered");
    assert!(format!("{error:#}").contains("unreachable"), "{error:#}");
    assert_eq!(api.arrived(), 3);
}

#[tokio::test]
async fn a_run_without_keys_is_refused_before_sending() {
    let api = FakeApi::start().await;
    let error = readers::run(LoadConfig {
        reader_keys: vec![],
        ..config(&api.url, closed(1), Stop::after_requests(1))
    })
    .await
    .expect_err("refused");
    assert!(error.to_string().contains("--reader-key"), "{error}");
    assert_eq!(api.arrived(), 0);
}
