//! The worker's metrics, declared in one place.

use latch_core::metrics::{LAG_BUCKETS, LATENCY_BUCKETS, register};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct WorkerMetrics {
    /// outcome: `ok`, `retry`, `dead`.
    pub deliveries: IntCounterVec,
    pub delivery_duration: HistogramVec,
    pub commit_to_delivered: HistogramVec,
    pub published_to_consumed: HistogramVec,
    /// 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGaugeVec,
    pub breaker_transitions: IntCounterVec,
    pub dlq_depth: IntGauge,
    /// 1 while this worker is the one delivering to the sink, 0 on standby.
    pub active: IntGaugeVec,
    pub takeovers: IntCounterVec,
    /// Rewinds after a delivery went missing (a NATS server failed over).
    pub rewinds: IntCounterVec,
}

impl WorkerMetrics {
    pub fn new(registry: &Registry) -> WorkerMetrics {
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    &["sink"],
                )
                .expect("valid histogram"),
            )
        };
        WorkerMetrics {
            deliveries: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_worker_deliveries_total",
                        "Sink calls by sink and outcome: ok (delivered), retry (failed, will retry), dead (dead-lettered).",
                    ),
                    &["sink", "outcome"],
                )
                .expect("valid counter"),
            ),
            delivery_duration: histogram(
                "latch_worker_delivery_duration_seconds",
                "Seconds one sink call took, whatever its outcome.",
                LATENCY_BUCKETS,
            ),
            commit_to_delivered: histogram(
                "latch_worker_commit_to_delivered_seconds",
                "Seconds from an action being recorded to the sink acknowledging its event (2xx).",
                LAG_BUCKETS,
            ),
            published_to_consumed: histogram(
                "latch_worker_published_to_consumed_seconds",
                "Seconds from an event being stored in the stream to the worker taking it.",
                LAG_BUCKETS,
            ),
            breaker_state: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "latch_worker_breaker_state",
                        "Circuit breaker state per sink: 0 closed, 1 half-open, 2 open.",
                    ),
                    &["sink"],
                )
                .expect("valid gauge"),
            ),
            breaker_transitions: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_worker_breaker_transitions_total",
                        "Circuit breaker state changes per sink.",
                    ),
                    &["sink"],
                )
                .expect("valid counter"),
            ),
            active: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "latch_worker_active",
                        "Consumers of the sink this worker delivers from (holds their pin): 1 or 0 with one consumer per sink, the partitions it holds when partitioned.",
                    ),
                    &["sink"],
                )
                .expect("valid gauge"),
            ),
            takeovers: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_worker_takeovers_total",
                        "Times this worker became the one delivering to the sink (at start, or from a worker that stopped pulling).",
                    ),
                    &["sink"],
                )
                .expect("valid counter"),
            ),
            rewinds: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_worker_rewinds_total",
                        "Rewinds of a sink's consumer because a delivery never arrived (a NATS server or the consumer's leader failed over): it is delivered again at once, in order.",
                    ),
                    &["sink"],
                )
                .expect("valid counter"),
            ),
            dlq_depth: register(
                registry,
                IntGauge::new(
                    "latch_dlq_depth_messages",
                    "Dead letters waiting in LATCH_DLQ (all sinks).",
                )
                .expect("valid gauge"),
            ),
        }
    }
}
