//! The simulated legacy time-and-attendance system: `POST /tna/v2/punches`.
//!
//! It answers like the real one would: XML bodies, its own error codes, an API key
//! header. A request passes the fault gate, then the key check (401), the
//! `Idempotency-Key` (400), the content type (415), the form (400), the reject list
//! (422); only then does the ledger apply it once. Every refusal is permanent except the
//! gate's 429 and 503.

pub mod punch;
mod xml;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use crate::endpoint::Endpoint;
use crate::gate::{self, Blocked};
use crate::headers;
use crate::ledger::{Applied, Delivery};
use crate::reply::Reply;
use crate::request;
use crate::state::SimState;
use punch::{Punch, TNA_KEY_HEADER};

const ENDPOINT: Endpoint = Endpoint::Legacy;
const FORM: &str = "application/x-www-form-urlencoded";

/// The punch endpoint's handler.
pub(crate) async fn receive_punch(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    request::counted(&state, ENDPOINT, &headers, |key, traceparent| {
        answer(&state, &headers, &body, key, traceparent)
    })
    .await
}

async fn answer(
    state: &SimState,
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&str>,
    traceparent: Option<&str>,
) -> Reply {
    let faults = match gate::pass(state, ENDPOINT).await {
        Ok(faults) => faults,
        Err(Blocked::Throttled { retry_after_secs }) => {
            return xml::error(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many punches, retry later",
            )
            .with_retry_after(retry_after_secs);
        }
        Err(Blocked::Unavailable) => {
            return xml::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the attendance service is temporarily unavailable",
            );
        }
    };
    if headers::text(headers, TNA_KEY_HEADER) != Some(state.tna_key.expose()) {
        return xml::error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or wrong X-TNA-Key",
        );
    }
    let Some(key) = key else {
        return xml::error(
            StatusCode::BAD_REQUEST,
            "MISSING_IDEMPOTENCY_KEY",
            "an Idempotency-Key header (at most 255 characters) is required",
        );
    };
    if !headers::content_type_is(headers, FORM) {
        return xml::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let punch = match Punch::parse(body) {
        Ok(punch) => punch,
        Err(error) => {
            return xml::error(StatusCode::BAD_REQUEST, error.code(), &error.to_string());
        }
    };
    if let Some(reason) = faults.reject.refusal(
        Some(&punch.emp_id),
        Some(punch.punch_type.as_str()),
        Some(&punch.reference),
    ) {
        return xml::error(StatusCode::UNPROCESSABLE_ENTITY, "REJECTED", &reason);
    }
    let delivery = Delivery {
        key,
        fingerprint: punch.fingerprint(),
        holder: Some(&punch.emp_id),
        traceparent,
    };
    match state.ledger().apply(ENDPOINT, delivery, xml::accepted) {
        Applied::Effect(reply) | Applied::Duplicate(reply) => reply,
        Applied::Conflict => xml::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used for another punch",
        ),
    }
}
