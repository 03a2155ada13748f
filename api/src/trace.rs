//! W3C trace context for requests.
//!
//! A request's `traceparent` (if valid) is continued: same trace id, a new span id for
//! this server's work. Without one, a new trace starts. The resulting `traceparent` is
//! stored with the action (and so in its outbox row and NATS headers) and returned in the
//! response's `traceparent` header, so a caller can find its request downstream.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use latch_core::otel;
use rand::RngCore;
use tracing::Instrument;

pub const HEADER: &str = "traceparent";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub span_id: String,
    pub flags: String,
}

impl TraceParent {
    /// Parses `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; rejects all-zero ids.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let (trace_id, span_id, flags) = otel::parse_traceparent(value)?;
        Some(TraceParent {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: flags.to_owned(),
        })
    }

    /// This server's span for the request: a child of the caller's trace, or the root of
    /// a new one. Computed once per request (the logging middleware asks first) and kept in
    /// the request, so the logs, the stored action and the response header agree.
    pub fn for_request(req: &HttpRequest) -> TraceParent {
        if let Some(known) = req.extensions().get::<TraceParent>() {
            return known.clone();
        }
        let fresh = Self::derive(req);
        req.extensions_mut().insert(fresh.clone());
        fresh
    }

    fn derive(req: &HttpRequest) -> TraceParent {
        let incoming = req
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        match incoming {
            Some(parent) => TraceParent {
                span_id: random_hex::<8>(),
                ..parent
            },
            None => TraceParent {
                trace_id: random_hex::<16>(),
                span_id: random_hex::<8>(),
                flags: "01".to_owned(),
            },
        }
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// Runs each request inside a span that carries its trace and span ids, so every log line
/// of the request can be matched with the action it recorded and the sink calls it caused.
/// When spans are exported (OpenTelemetry), the request's server span is started here and
/// its ids become the request's [`TraceParent`], so the exported span is the parent of the
/// worker's delivery spans.
pub async fn span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Nothing is computed for export unless it is on.
    let export = otel::enabled();
    let route = if export { req.match_pattern() } else { None };
    let mut exported = if export {
        otel::start(
            format!(
                "{} {}",
                req.method(),
                route.as_deref().unwrap_or("unmatched")
            ),
            otel::Kind::Server,
            req.headers().get(HEADER).and_then(|v| v.to_str().ok()),
        )
    } else {
        None
    };
    if let Some(span) = &exported {
        req.extensions_mut().insert(TraceParent {
            trace_id: span.trace_id(),
            span_id: span.span_id(),
            flags: span.flags(),
        });
    }
    let trace = TraceParent::for_request(req.request());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.path(),
        trace_id = %trace.trace_id,
        span_id = %trace.span_id
    );
    if let Some(exported) = &mut exported {
        exported.set("http.request.method", req.method().as_str().to_owned());
        exported.set("http.route", route.unwrap_or_default());
    }
    let response = next.call(req).instrument(span).await;
    if let Some(exported) = &mut exported {
        match &response {
            Ok(response) => {
                let status = response.status();
                exported.set("http.response.status_code", i64::from(status.as_u16()));
                if status.is_server_error() {
                    exported.fail(status.to_string());
                }
            }
            Err(error) => exported.fail(error.to_string()),
        }
    }
    response
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            tp.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
