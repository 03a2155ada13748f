//! [`PublishReport`]: what a publishing run measured, as one JSON object for scripts (its
//! `Serialize`) and a few lines for a person (its `Display`).
//!
//! Field meanings, which scripts rely on:
//! - `messages`: measured messages acknowledged (warm-up excluded); `acks`: the
//!   acknowledgements they came in (one per message, or one per atomic batch);
//! - `duration_s`: from the start of the measured part to the last measured
//!   acknowledgement; `msgs_per_s` = `messages / duration_s`, `acks_per_s` likewise;
//! - `payload_mb_per_s`: payload bytes (without headers) per second, in MB (10^6);
//! - `ack_latency_ms`: from sending a message (single) or a batch's first message (atomic)
//!   to its acknowledgement;
//! - `stored`: messages in the stream at the end (warm-up included), checked equal to
//!   everything acknowledged.

use std::fmt;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::config::PublishConfig;
use super::publish::Tally;

#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// `single` or `atomic`.
    pub mode: &'static str,
    /// Messages per acknowledgement (1 for single publishes).
    pub batch: usize,
    /// Publishes (single) or batches (atomic) outstanding at once.
    pub in_flight: usize,
    /// Payload bytes per message.
    pub size: usize,
    pub stream: String,
    pub messages: u64,
    pub acks: u64,
    pub duration_s: f64,
    pub msgs_per_s: f64,
    pub acks_per_s: f64,
    pub payload_mb_per_s: f64,
    pub ack_latency_ms: AckLatency,
    pub warmup_messages: u64,
    pub duplicates: u64,
    pub stored: u64,
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// Acknowledgement latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AckLatency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl AckLatency {
    fn of(histogram: &Histogram<u64>) -> AckLatency {
        if histogram.is_empty() {
            return AckLatency::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        AckLatency {
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean().round() / 1000.0,
        }
    }
}

impl PublishReport {
    pub(crate) fn new(
        config: &PublishConfig,
        measured_start: Instant,
        tally: Tally,
        stored: u64,
    ) -> PublishReport {
        let duration_s = tally.last_done.map_or(0.0, |done| {
            done.saturating_duration_since(measured_start).as_secs_f64()
        });
        let per_second = |n: u64| {
            if duration_s > 0.0 {
                n as f64 / duration_s
            } else {
                0.0
            }
        };
        let msgs_per_s = per_second(tally.messages);
        PublishReport {
            mode: config.mode.name(),
            batch: config.mode.batch(),
            in_flight: config.mode.in_flight(),
            size: config.size,
            stream: config.stream.clone(),
            messages: tally.messages,
            acks: tally.acks,
            duration_s,
            msgs_per_s,
            acks_per_s: per_second(tally.acks),
            payload_mb_per_s: msgs_per_s * config.size as f64 / 1e6,
            ack_latency_ms: AckLatency::of(&tally.histogram),
            warmup_messages: tally.warmup_messages,
            duplicates: tally.duplicates,
            stored,
            histogram: tally.histogram,
        }
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        // Plain numbers and strings: serializing cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for PublishReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.mode == "atomic" {
            format!(
                "atomic batches of {}, {} in flight",
                self.batch, self.in_flight
            )
        } else {
            format!("single publishes, {} in flight", self.in_flight)
        };
        writeln!(
            f,
            "latch-load jetstream: {how}, {}-byte payloads, stream {}",
            self.size, self.stream
        )?;
        writeln!(
            f,
            "  messages    {} in {:.3} s: {:.1} msg/s, {:.1} acks/s, {:.2} MB/s of payload ({} warm-up discarded)",
            self.messages,
            self.duration_s,
            self.msgs_per_s,
            self.acks_per_s,
            self.payload_mb_per_s,
            self.warmup_messages
        )?;
        let l = &self.ack_latency_ms;
        writeln!(
            f,
            "  ack ms      p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        write!(
            f,
            "  stream      {} stored (all acknowledged), {} duplicate(s)",
            self.stored, self.duplicates
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::jetstream::config::PublishMode;

    #[test]
    fn rates_come_from_the_measured_part_only() {
        let config = PublishConfig::new(
            "nats://127.0.0.1:1",
            PublishMode::Atomic {
                batch: 100,
                in_flight: 1,
            },
            Duration::from_secs(2),
        );
        let start = Instant::now();
        let mut histogram = Histogram::new_with_bounds(1, 1_000_000, 3).expect("a histogram");
        for micros in [1000, 2000, 3000, 4000] {
            histogram.record(micros).expect("recorded");
        }
        let tally = Tally {
            histogram,
            messages: 400,
            acks: 4,
            warmup_messages: 100,
            duplicates: 0,
            last_done: Some(start + Duration::from_secs(2)),
        };
        let report = PublishReport::new(&config, start, tally, 500);
        let json = report.to_json();
        assert_eq!(json["mode"], "atomic");
        assert_eq!(json["batch"], 100);
        assert_eq!(json["msgs_per_s"], 200.0);
        assert_eq!(json["acks_per_s"], 2.0);
        assert_eq!(json["stored"], 500);
        assert!((json["ack_latency_ms"]["p50"].as_f64().expect("a number") - 2.0).abs() < 0.01);
        let text = report.to_string();
        assert!(text.contains("atomic batches of 100"), "{text}");
        assert!(text.contains("200.0 msg/s"), "{text}");
    }
}
