//! The simulated webhook subscriber: `POST /webhooks/latch`.
//!
//! It takes the event envelope as JSON, signed as [`crate::signature`] describes. A
//! request passes the fault gate, then the signature check (401), the `Idempotency-Key`
//! (400; it must be the signed `webhook-id`), the content type (415), the body (400: a JSON
//! object with a string `id`, the `webhook-id` again, and `kind`), the reject list (422);
//! only then does the ledger apply it once, keyed by the signed id: a captured call sent
//! again under another key is refused, and under another id fails the signature. Errors are
//! JSON `{"error": {"code", "message"}}`. The body is not checked against the whole
//! published event envelope beyond that: a subscriber reads what it needs and ignores the
//! rest, which leaves room for new envelope versions.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::endpoint::Endpoint;
use crate::gate::{self, Blocked};
use crate::headers;
use crate::ledger::{Applied, Delivery};
use crate::reply::Reply;
use crate::request;
use crate::signature::{self, ID_HEADER};
use crate::state::SimState;

/// The webhook endpoint's path.
pub const WEBHOOK_PATH: &str = "/webhooks/latch";

const ENDPOINT: Endpoint = Endpoint::Webhooks;

/// The webhook endpoint's handler.
pub(crate) async fn receive_event(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    request::counted(&state, ENDPOINT, &headers, |key, traceparent| {
        answer(&state, &headers, &body, key, traceparent)
    })
    .await
}

/// The parts of an envelope the subscriber reads.
struct Event<'a> {
    id: &'a str,
    kind: &'a str,
    holder: Option<&'a str>,
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
            return error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
                .with_retry_after(retry_after_secs);
        }
        Err(Blocked::Unavailable) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the subscriber is temporarily unavailable",
            );
        }
    };
    if let Err(refused) = signature::verify(state.webhook_secret.expose(), headers, body) {
        return error(StatusCode::UNAUTHORIZED, "invalid_signature", &refused);
    }
    let Some(key) = key else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            "an Idempotency-Key header (at most 255 characters) is required",
        );
    };
    // Verified above: the id is signed, the key is not.
    if headers::text(headers, ID_HEADER) != Some(key) {
        return error(
            StatusCode::BAD_REQUEST,
            "idempotency_key_mismatch",
            "the Idempotency-Key must be the signed webhook-id",
        );
    }
    if !headers::content_type_is(headers, "application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        );
    }
    let Ok(envelope) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body is not JSON",
        );
    };
    let event = match read_event(&envelope) {
        Ok(event) => event,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_body", message),
    };
    if event.id != key {
        return error(
            StatusCode::BAD_REQUEST,
            "webhook_id_mismatch",
            "the webhook-id must be the event's id",
        );
    }
    if let Some(reason) = faults
        .reject
        .refusal(event.holder, Some(event.kind), Some(event.id))
    {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "rejected", &reason);
    }
    let id = event.id.to_owned();
    let delivery = Delivery {
        key,
        holder: event.holder,
        traceparent,
        fingerprint: envelope.clone(),
    };
    let accepted = |delivery_number: u64| {
        Reply::json(
            StatusCode::OK,
            &json!({ "status": "accepted", "id": id, "delivery": delivery_number }),
        )
    };
    match state.ledger().apply(ENDPOINT, delivery, accepted) {
        Applied::Effect(reply) | Applied::Duplicate(reply) => reply,
        Applied::Conflict => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for another event",
        ),
    }
}

fn read_event(envelope: &Value) -> Result<Event<'_>, &'static str> {
    let text = |name: &str| {
        envelope
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
    };
    if !envelope.is_object() {
        return Err("the body must be a JSON object");
    }
    let holder = match envelope.get("holder_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(holder)) => Some(holder.as_str()),
        Some(_) => return Err("holder_id must be a string or null"),
    };
    Ok(Event {
        id: text("id").ok_or("the envelope needs a string id")?,
        kind: text("kind").ok_or("the envelope needs a string kind")?,
        holder,
    })
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_needs_an_id_and_a_kind() {
        let ok = json!({"id": "e", "kind": "check_in", "holder_id": null});
        let event = read_event(&ok).expect("readable");
        assert_eq!(
            (event.id, event.kind, event.holder),
            ("e", "check_in", None)
        );
        assert!(read_event(&json!({"kind": "check_in"})).is_err());
        assert!(read_event(&json!({"id": "e", "kind": 3})).is_err());
        assert!(read_event(&json!({"id": "e", "kind": "k", "holder_id": 1})).is_err());
        assert!(read_event(&json!(["id", "kind"])).is_err());
    }
}
