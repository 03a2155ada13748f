//! The simulated webhook subscriber: `POST /webhooks/latch`.
//!
//! It takes the event envelope as JSON, signed as [`crate::signature`] describes. A
//! request passes the fault gate, then the signature check (401), the `Idempotency-Key`
//! (400; it must be the signed `webhook-id`), the content type (415), the body (400: a JSON
//! object with a string `id`, the `webhook-id` again, and `kind`; `holder_id` a string or
//! null, `sequence` an integer or null, when present), the reject list (422); only then does
//! the ledger apply it once, keyed by the signed id: a captured call sent again under another
//! key is refused, and under another id fails the signature. Errors are JSON
//! `{"error": {"code", "message"}}`. The body is not checked against the whole published
//! event envelope beyond that: a subscriber reads what it needs and ignores the rest, which
//! leaves room for new envelope versions.
//!
//! Named subscribers ([`crate::subscribers`], `POST /webhooks/endpoints/{name}`) make the
//! very same checks in the same order: `receive` is both, given a `Receiver` — which
//! secrets verify, which ledger applies.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::endpoint::Endpoint;
use crate::faults::Reject;
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
#[derive(Debug)]
pub(crate) struct Event<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub holder: Option<&'a str>,
    /// The event's number among its holder's (or door's) events, when it has one.
    pub sequence: Option<i64>,
}

/// A webhook receiver, as the shared checks ([`receive`]) need it: the default one of
/// `POST /webhooks/latch`, or a named subscriber.
pub(crate) trait Receiver {
    /// Checks the call's signature headers against its raw body; the error is the
    /// message the 401 carries.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String>;

    /// Applies `event` once under `delivery.key`; `answer` builds the first answer from
    /// the effect's number.
    fn apply(
        &self,
        event: &Event<'_>,
        delivery: Delivery<'_>,
        answer: impl FnOnce(u64) -> Reply,
    ) -> Applied;
}

/// The receiver of `POST /webhooks/latch`: the simulator's one secret, the ledger's
/// `webhooks` keys.
struct DefaultReceiver<'a>(&'a SimState);

impl Receiver for DefaultReceiver<'_> {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        signature::verify(self.0.webhook_secret.expose(), headers, body)
    }

    fn apply(
        &self,
        _event: &Event<'_>,
        delivery: Delivery<'_>,
        answer: impl FnOnce(u64) -> Reply,
    ) -> Applied {
        self.0.ledger().apply(ENDPOINT, delivery, answer)
    }
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
        Err(blocked) => return refusal(blocked),
    };
    receive(
        &DefaultReceiver(state),
        &faults.reject,
        headers,
        body,
        key,
        traceparent,
    )
}

/// The answer to a request the fault gate stopped.
pub(crate) fn refusal(blocked: Blocked) -> Reply {
    match blocked {
        Blocked::Throttled { retry_after_secs } => {
            error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
                .with_retry_after(retry_after_secs)
        }
        Blocked::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the subscriber is temporarily unavailable",
        ),
    }
}

/// Everything after the gate, for any receiver: the checks in order, then the receiver's
/// ledger applies the event once.
pub(crate) fn receive(
    receiver: &impl Receiver,
    reject: &Reject,
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&str>,
    traceparent: Option<&str>,
) -> Reply {
    if let Err(refused) = receiver.verify(headers, body) {
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
    if let Some(reason) = reject.refusal(event.holder, Some(event.kind), Some(event.id)) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "rejected", &reason);
    }
    let delivery = Delivery {
        key,
        holder: event.holder,
        traceparent,
        fingerprint: envelope.clone(),
    };
    let accepted = |delivery_number: u64| {
        Reply::json(
            StatusCode::OK,
            &json!({ "status": "accepted", "id": event.id, "delivery": delivery_number }),
        )
    };
    match receiver.apply(&event, delivery, accepted) {
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
    let sequence = match envelope.get("sequence") {
        None | Some(Value::Null) => None,
        Some(number) => Some(
            number
                .as_i64()
                .ok_or("sequence must be an integer or null")?,
        ),
    };
    Ok(Event {
        id: text("id").ok_or("the envelope needs a string id")?,
        kind: text("kind").ok_or("the envelope needs a string kind")?,
        holder,
        sequence,
    })
}

/// A JSON error answer, `{"error": {"code", "message"}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Reply {
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
        let numbered = json!({"id": "e", "kind": "k", "sequence": 7});
        assert_eq!(read_event(&numbered).expect("readable").sequence, Some(7));
        for sequence in [json!("7"), json!(1.5)] {
            let odd = json!({"id": "e", "kind": "k", "sequence": sequence});
            assert!(read_event(&odd).is_err(), "{odd}");
        }
    }
}
