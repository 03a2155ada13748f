//! Prometheus metrics: one registry per process, served at `/metrics`.
//!
//! Each role declares its metrics in one place (a struct in its own crate) and registers
//! them here; names start with `latch_`, carry their unit, and have a help text that says
//! what they count. Labels are bounded sets (route templates, sink names, outcomes),
//! never ids or card numbers. The registry also carries the process metrics (CPU, memory,
//! file descriptors) and `latch_build_info`.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// A registry with the process collector and `latch_build_info{role,version}`.
pub fn registry(role: &str) -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    if let Ok(info) = IntGaugeVec::new(
        Opts::new(
            "latch_build_info",
            "Always 1; labels say which latch this is.",
        ),
        &["role", "version"],
    ) {
        info.with_label_values(&[role, env!("CARGO_PKG_VERSION")])
            .set(1);
        let _ = registry.register(Box::new(info));
    }
    registry
}

/// The registry in Prometheus' text format.
pub fn encode(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::warn!(%error, "cannot encode metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Registers a collector, which must not fail for a fresh registry and a static name.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: C,
) -> C {
    if let Err(error) = registry.register(Box::new(metric.clone())) {
        tracing::error!(%error, "metric registered twice");
    }
    metric
}

/// Latency buckets in seconds, from 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Pipeline lag buckets in seconds, from 1 ms to 10 minutes.
pub const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0,
];
