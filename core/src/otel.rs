//! OpenTelemetry spans, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! Off by default: without an endpoint no tracer exists, [`start`] returns `None` after one
//! atomic load, and trace context is still propagated by hand (W3C `traceparent`), so the
//! ids in logs, the outbox, NATS headers and sink calls stay consistent either way.
//!
//! With an endpoint, each process exports its own spans (batched, on the SDK's own thread,
//! with the blocking HTTP client): the API a server span per request, the worker a span per
//! delivery. A span's ids *are* the ids written to the `traceparent` it hands on, so the
//! exported trace and the propagated one are the same trace. The standard `OTEL_*`
//! variables apply (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER`…).

use std::sync::OnceLock;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};

pub use opentelemetry::trace::SpanKind as Kind;

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// The variables that switch export on, in the order the OTLP exporter reads them.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Flushes and stops the exporter when dropped (at the end of `main`), so the spans of the
/// last requests are not lost on a clean shutdown.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the last spans to the OTLP endpoint");
        }
    }
}

/// Starts span export if an OTLP endpoint is configured. `service` names the process
/// (`latch-api`, …) unless `OTEL_SERVICE_NAME` says otherwise. Call once, after logging is
/// set up and the TLS provider installed.
pub fn init(service: &'static str) -> anyhow::Result<Guard> {
    let endpoint = ENDPOINT_VARS
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()));
    let Some(endpoint) = endpoint else {
        return Ok(Guard { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up OTLP export to {endpoint}: {e}"))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build();
    if TRACER.set(provider.tracer("latch")).is_err() {
        anyhow::bail!("OpenTelemetry is already set up in this process");
    }
    tracing::info!(endpoint, service, "exporting spans over OTLP");
    Ok(Guard {
        provider: Some(provider),
    })
}

/// Whether spans are being exported.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Starts a span, a child of `parent` (a W3C `traceparent` received from elsewhere) or the
/// root of a new trace. `None` when export is off.
pub fn start(
    name: impl Into<std::borrow::Cow<'static, str>>,
    kind: SpanKind,
    parent: Option<&str>,
) -> Option<Span> {
    let tracer = TRACER.get()?;
    let parent_cx = parent
        .and_then(remote_context)
        .map(|sc| Context::new().with_remote_span_context(sc))
        .unwrap_or_default();
    let inner = tracer
        .span_builder(name)
        .with_kind(kind)
        .start_with_context(tracer, &parent_cx);
    Some(Span { inner })
}

/// A span being recorded; ended (and queued for export) when dropped.
pub struct Span {
    inner: opentelemetry_sdk::trace::Span,
}

impl Span {
    pub fn trace_id(&self) -> String {
        self.inner.span_context().trace_id().to_string()
    }

    pub fn span_id(&self) -> String {
        self.inner.span_context().span_id().to_string()
    }

    /// The trace flags, as the two hex digits of a `traceparent`.
    pub fn flags(&self) -> String {
        format!("{:02x}", self.inner.span_context().trace_flags().to_u8())
    }

    /// The `traceparent` naming this span as the parent of whatever it calls.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id(), self.span_id(), self.flags())
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        self.inner.set_attribute(KeyValue::new(key, value));
    }

    /// Marks the span failed, with a short reason.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.inner.set_status(Status::error(reason.into()));
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.inner.end();
    }
}

/// The trace id, span id and flags of a W3C `traceparent`
/// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, lowercase, ids not all zero),
/// or `None` if it is not one. The one parser of the header in latch.
pub fn parse_traceparent(value: &str) -> Option<(&str, &str, &str)> {
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let not_zero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && version == "00"
        && lower_hex(trace, 32)
        && lower_hex(span, 16)
        && lower_hex(flags, 2)
        && not_zero(trace)
        && not_zero(span);
    valid.then_some((trace, span, flags))
}

/// A received `traceparent` as the remote parent of a span.
fn remote_context(traceparent: &str) -> Option<SpanContext> {
    let (trace, span, flags) = parse_traceparent(traceparent)?;
    Some(SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_contexts_are_parsed_strictly() {
        let cx = remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert!(cx.is_sampled() && cx.is_remote());
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(remote_context(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_endpoint_nothing_is_recorded() {
        // No test in this crate sets up export, so the tracer is absent.
        assert!(!enabled());
        assert!(start("x", Kind::Server, None).is_none());
    }
}
