//! The relay's metrics, declared in one place.

use latch_core::metrics::{LAG_BUCKETS, LATENCY_BUCKETS, register};
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Clone)]
pub struct RelayMetrics {
    pub pending_rows: IntGauge,
    pub oldest_pending_age: Gauge,
    pub published: IntCounter,
    pub duplicates: IntCounter,
    pub batch_size: Histogram,
    pub publish_duration: Histogram,
    pub commit_to_stream: Histogram,
    pub errors: IntCounterVec,
    pub wakeups: IntCounterVec,
    pub leader: IntGauge,
}

impl RelayMetrics {
    pub fn new(registry: &Registry) -> RelayMetrics {
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            register(
                registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                    .expect("valid histogram"),
            )
        };
        RelayMetrics {
            pending_rows: register(
                registry,
                IntGauge::new(
                    "latch_outbox_pending_rows",
                    "Outbox rows committed and not yet in the stream (read by the leading relay).",
                )
                .expect("valid gauge"),
            ),
            oldest_pending_age: register(
                registry,
                Gauge::new(
                    "latch_outbox_oldest_pending_age_seconds",
                    "Age in seconds of the oldest outbox row not yet in the stream; 0 when none.",
                )
                .expect("valid gauge"),
            ),
            published: register(
                registry,
                IntCounter::new(
                    "latch_relay_published_total",
                    "Events newly stored in the stream by this relay.",
                )
                .expect("valid counter"),
            ),
            duplicates: register(
                registry,
                IntCounter::new(
                    "latch_relay_duplicates_total",
                    "Republished events the stream already had (after a crash or failed ack).",
                )
                .expect("valid counter"),
            ),
            batch_size: histogram(
                "latch_relay_batch_size_rows",
                "Rows per published batch.",
                &[1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
            ),
            publish_duration: histogram(
                "latch_relay_publish_duration_seconds",
                "Seconds from sending a batch to its acknowledgement.",
                LATENCY_BUCKETS,
            ),
            commit_to_stream: histogram(
                "latch_relay_commit_to_stream_seconds",
                "Seconds from an action's transaction to its event being acknowledged by the stream.",
                LAG_BUCKETS,
            ),
            errors: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_relay_errors_total",
                        "Failed relay rounds by kind (postgres, nats_unavailable, nats_refused).",
                    ),
                    &["kind"],
                )
                .expect("valid counter"),
            ),
            wakeups: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_relay_wakeups_total",
                        "Times the leading relay stopped waiting for new rows, by cause (notify: a writer's NOTIFY, poll: the poll interval passed).",
                    ),
                    &["cause"],
                )
                .expect("valid counter"),
            ),
            leader: register(
                registry,
                IntGauge::new(
                    "latch_relay_leader",
                    "1 while this relay leads (publishes), 0 while it stands by.",
                )
                .expect("valid gauge"),
            ),
        }
    }
}
