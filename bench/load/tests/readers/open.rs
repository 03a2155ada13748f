//! The open loop: a timetable kept whatever the answers, latency from the intended
//! start (so queueing shows), and requests beyond `max_in_flight` counted as late.

use std::time::Duration;

use latch_load::readers::{self, Mode, Stop};

use crate::api::{Behaviour, FakeApi};
use crate::helpers::{assert_ordered, closed, config, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_its_timetable() {
    let api = FakeApi::start().await;
    let report = readers::run(config(
        &api.url,
        open(200.0),
        Stop::after(Duration::from_millis(500)),
    ))
    .await
    .unwrap();
    // 200/s for 0.5 s is 100 requests due; allow for a slow machine at the edges.
    assert!((95..=101).contains(&report.requests), "{}", report.requests);
    assert_eq!(api.arrived(), report.requests);
    assert_eq!(report.late, 0);
    assert!(
        (0.45..1.5).contains(&report.duration_s),
        "{}",
        report.duration_s
    );
    assert!(
        (60.0..230.0).contains(&report.throughput_rps),
        "{}",
        report.throughput_rps
    );
    let lag = report
        .send_lag_ms
        .expect("an open loop reports its send lag");
    assert!(
        lag.p50 <= lag.max && lag.max <= report.latency_ms.max,
        "{lag:?}"
    );
    assert_ordered(&report);
    assert_eq!((report.mode, report.rate), ("open", Some(200.0)));
}

/// The coordinated-omission property. The API answers one request at a time, 50 ms
/// each (20/s), and is offered 40/s: requests queue, and the n-th waits about
/// 50 + 25·n ms. A closed loop would only ever see the 50 ms service time; the open loop
/// must report the queueing the offered load causes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_includes_the_queueing_a_stalled_api_causes() {
    let queue = Behaviour {
        delay: Duration::from_millis(50),
        one_at_a_time: true,
        ..Behaviour::default()
    };
    let api = FakeApi::start_with(queue).await;
    let offered = readers::run(config(&api.url, open(40.0), Stop::after_requests(20)))
        .await
        .unwrap();
    assert_eq!(offered.requests, 20);
    assert!(offered.latency_ms.p50 >= 200.0, "{:?}", offered.latency_ms);
    assert!(offered.latency_ms.max >= 450.0, "{:?}", offered.latency_ms);

    let api = FakeApi::start_with(queue).await;
    let sequential = readers::run(config(&api.url, closed(1), Stop::after_requests(10)))
        .await
        .unwrap();
    assert!(
        sequential.latency_ms.p50 >= 50.0,
        "{:?}",
        sequential.latency_ms
    );
    assert!(
        sequential.latency_ms.p50 < offered.latency_ms.p50,
        "closed {:?} vs open {:?}",
        sequential.latency_ms,
        offered.latency_ms
    );
}

/// 100/s for 200 ms is 20 requests due; the API holds each for 300 ms, so once 5 are in
/// flight the other 15 cannot start on time and are counted late, not queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_in_flight_are_late_not_queued() {
    let api = FakeApi::start_with(Behaviour {
        delay: Duration::from_millis(300),
        ..Behaviour::default()
    })
    .await;
    let report = readers::run(config(
        &api.url,
        Mode::Open {
            rate: 100.0,
            max_in_flight: 5,
        },
        Stop::after(Duration::from_millis(200)),
    ))
    .await
    .unwrap();
    assert_eq!(report.requests + report.late, 20);
    assert!(report.late >= 10, "{}", report.late);
    assert_eq!(api.arrived(), report.requests);
    assert!(report.to_string().contains("late"));
}
