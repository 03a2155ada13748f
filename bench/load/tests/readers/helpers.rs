//! Configs the tests start from: the fake API's key and its two cards.

use latch_core::config::Secret;
use latch_load::readers::{LoadConfig, LoadReport, Mode, Stop};

use crate::api::{DENIED, GRANTED, KEY};

/// A run against `url` with the right key and both cards.
pub fn config(url: &str, mode: Mode, stop: Stop) -> LoadConfig {
    LoadConfig {
        reader_keys: vec![Secret::new(KEY.to_owned())],
        cards: vec![GRANTED.to_owned(), DENIED.to_owned()],
        ..LoadConfig::new(url, mode, stop)
    }
}

pub fn closed(concurrency: usize) -> Mode {
    Mode::Closed { concurrency }
}

pub fn open(rate: f64) -> Mode {
    Mode::Open {
        rate,
        max_in_flight: 1024,
    }
}

/// The count of one status (or failure label) in a report.
pub fn status(report: &LoadReport, label: &str) -> u64 {
    report.statuses.get(label).copied().unwrap_or(0)
}

/// Percentiles never decrease along the distribution.
pub fn assert_ordered(report: &LoadReport) {
    let l = report.latency_ms;
    assert!(
        0.0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    assert!(l.mean <= l.max, "{l:?}");
}
