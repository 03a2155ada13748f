//! What every request is held to, whatever its handler does: a deadline, and a panic
//! contained.
//!
//! - [`deadline`]: a request not answered within `LATCH_HTTP_REQUEST_TIMEOUT` is answered
//!   `503 unavailable` (with `Retry-After`). PostgreSQL's own `statement_timeout` bounds a
//!   slow statement, and the pool's wait timeout a full pool, but neither helps when the
//!   database stops answering altogether (a frozen server or a silent network partition
//!   keeps the TCP connection open): only a deadline on the client's side does. Dropping
//!   the handler drops what it holds: an open transaction is rolled back, and a statement
//!   already sent may still commit once the server answers — like any lost answer, which
//!   a reader's `seq` or an `Idempotency-Key` makes safe to retry.
//! - [`contain_panics`]: a handler that panics is a bug, not an outage. Its request is
//!   answered `500 internal`, it is counted (`latch_http_panics_total`), and the HTTP
//!   worker keeps running; `latch_core::db::note_panic` has the pooled connections that
//!   were in use replaced, since a panic can leave one halfway through a message.
//!
//! Both run outside routing (actix-web routes a request only once nothing else holds it),
//! so they answer by returning the error rather than a response of their own; the HTTP
//! metrics count such answers under the route `unrouted`.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use futures::FutureExt;

use crate::error::ApiError;
use crate::metrics::ApiMetrics;

/// Answers 503 when the request is not answered within `limit`.
pub async fn deadline(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
    limit: Duration,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(answered) => answered,
        Err(_) => Err(ApiError::unavailable(anyhow::anyhow!(
            "the request was not answered within {limit:?} (LATCH_HTTP_REQUEST_TIMEOUT)"
        ))
        .into()),
    }
}

/// Answers 500 when the handler panics.
pub async fn contain_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<ApiMetrics>>().cloned();
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(answered) => answered,
        Err(_) => {
            latch_core::db::note_panic();
            if let Some(metrics) = metrics {
                metrics.panics.inc();
            }
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged",
            )
            .into())
        }
    }
}
