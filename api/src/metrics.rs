//! The API's metrics, declared in one place, and the middleware that records every
//! request by route template (never the raw path) and status.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, get, web};
use latch_core::metrics::{LATENCY_BUCKETS, register};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Clone)]
pub struct ApiMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub panics: IntCounter,
    pub unlock_decisions: IntCounterVec,
    pub reader_seq_gaps: IntCounter,
    pub reader_clock_skew: IntCounter,
    pub offline_disputes: IntCounter,
    pub batch_events: IntCounterVec,
    pub reader_liveness_checks: IntCounter,
    pub readers_offline: IntGauge,
    pub rate_limited: IntCounterVec,
    pub feed_streams: IntGauge,
    pub feed_events_sent: IntCounter,
    pub feed_lagged: IntCounter,
    pub feed_requests: IntCounterVec,
}

impl ApiMetrics {
    pub fn new(registry: Registry) -> ApiMetrics {
        ApiMetrics {
            requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_http_requests_total",
                        "HTTP requests by route template, method and status code.",
                    ),
                    &["route", "method", "status"],
                )
                .expect("valid counter"),
            ),
            duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "latch_http_request_duration_seconds",
                        "Seconds from receiving a request to its response, by route template.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route", "method"],
                )
                .expect("valid histogram"),
            ),
            panics: register(
                &registry,
                IntCounter::new(
                    "latch_http_panics_total",
                    "Requests whose handler panicked (each answered 500 and logged).",
                )
                .expect("valid counter"),
            ),
            unlock_decisions: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_unlock_decisions_total",
                        "Unlock decisions recorded, by decision and reason.",
                    ),
                    &["decision", "reason"],
                )
                .expect("valid counter"),
            ),
            reader_seq_gaps: register(
                &registry,
                IntCounter::new(
                    "latch_reader_seq_gaps_total",
                    "Accepted reader events whose seq skipped past the reader's last seq + 1 \
                     (a gap opened; see GET /v1/readers/{id}/gaps).",
                )
                .expect("valid counter"),
            ),
            reader_clock_skew: register(
                &registry,
                IntCounter::new(
                    "latch_reader_clock_skew_total",
                    "Reader events recorded with an occurred_at outside the accepted skew \
                     from server time (flagged clock_skewed).",
                )
                .expect("valid counter"),
            ),
            offline_disputes: register(
                &registry,
                IntCounter::new(
                    "latch_offline_decisions_disputed_total",
                    "Unlocks a reader decided offline that the server decided otherwise at \
                     upload.",
                )
                .expect("valid counter"),
            ),
            batch_events: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_reader_batch_events_total",
                        "Events in offline uploads, by result (accepted, duplicate, rejected).",
                    ),
                    &["status"],
                )
                .expect("valid counter"),
            ),
            reader_liveness_checks: register(
                &registry,
                IntCounter::new(
                    "latch_reader_liveness_checks_total",
                    "Completed rounds of this process's check for silent readers.",
                )
                .expect("valid counter"),
            ),
            readers_offline: register(
                &registry,
                IntGauge::new(
                    "latch_readers_offline",
                    "Enabled readers currently offline, as of this process's last check.",
                )
                .expect("valid gauge"),
            ),
            rate_limited: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_http_rate_limited_total",
                        "Requests answered 429 by the limit that refused them: reader (a reader key's rate), token (a token's rate), address (an address past its failed authentications).",
                    ),
                    &["limit"],
                )
                .expect("valid counter"),
            ),
            feed_streams: register(
                &registry,
                IntGauge::new(
                    "latch_feed_streams",
                    "Event streams (GET /v1/events/stream) open on this process.",
                )
                .expect("valid gauge"),
            ),
            feed_events_sent: register(
                &registry,
                IntCounter::new(
                    "latch_feed_events_sent_total",
                    "Events sent to event-stream clients (one per event per client).",
                )
                .expect("valid counter"),
            ),
            feed_lagged: register(
                &registry,
                IntCounter::new(
                    "latch_feed_lagged_total",
                    "Event streams closed because their client read too slowly to keep its place in the ring (it resumes from its last event id).",
                )
                .expect("valid counter"),
            ),
            feed_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "latch_feed_requests_total",
                        "Pages of GET /v1/events read, by outcome: served, or failed (cursor expired, stream unreadable).",
                    ),
                    &["outcome"],
                )
                .expect("valid counter"),
            ),
            registry,
        }
    }
}

/// Records the request's route template, method, status and duration. A request answered
/// with an error outside routing (see [`crate::contain`]) counts under the route
/// `unrouted`.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<ApiMetrics>>().cloned();
    let method = method_label(req.method());
    let answered = next.call(req).await;
    if let Some(metrics) = metrics {
        let (route, status) = match &answered {
            Ok(response) => (
                response
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned()),
                response.status(),
            ),
            Err(error) => (
                "unrouted".to_owned(),
                error.as_response_error().status_code(),
            ),
        };
        let status = status.as_u16().to_string();
        metrics
            .requests
            .with_label_values(&[route.as_str(), method, status.as_str()])
            .inc();
        metrics
            .duration
            .with_label_values(&[route.as_str(), method])
            .observe(started.elapsed().as_secs_f64());
    }
    answered
}

/// The method as a label: HTTP's own methods by name, anything a client invented as
/// `other`, so that no request can add a label value (and a time series) of its own.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Prometheus metrics of this API process.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Metrics in Prometheus text format")))]
#[get("/metrics")]
pub async fn serve(metrics: web::Data<ApiMetrics>) -> HttpResponse {
    latch_core::admin::metrics(&metrics.registry)
}
