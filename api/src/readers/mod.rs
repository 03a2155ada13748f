//! The card reader protocol: what readers and door controllers post, and how the API
//! keeps track of the readers themselves.
//!
//! # Layout
//!
//! - [`post`]: what every live post shares — the extractor, and the one way a live event
//!   is recorded (alone on the hot path, or guarded by a seq or an idempotency key).
//! - [`unlock`]: `POST /v1/unlock`, and the one definition of the unlock decision, shared
//!   by live unlocks and by unlocks a reader decided offline.
//! - [`presence`]: `POST /v1/check-ins`, `POST /v1/check-outs`.
//! - [`alarm`]: `POST /v1/doors/alarm` — forced open, held open, tamper, and their ends.
//! - [`batch`]: `POST /v1/readers/events:batch` — what a reader buffered while offline.
//! - [`seq`]: per-reader sequence numbers (the `reader_seqs` registry) and the transaction
//!   that guards a live post carrying a `seq` or an `Idempotency-Key`.
//! - [`heartbeat`]: `POST /v1/readers/heartbeat`, and the in-memory table of when each
//!   reader was last seen.
//! - [`liveness`]: the background task that writes last-seen times in batches and records
//!   `reader_offline` / `reader_online` transitions.
//! - [`gaps`]: `GET /v1/readers/{id}/gaps` (admin) — seq numbers never accepted.
//!
//! # The hot path
//!
//! A live post without `seq` and without `Idempotency-Key` is ONE SQL statement: it
//! authenticates the reader by its key hash, takes the door and site from the reader record
//! (never from the body), decides, and inserts the action; the `actions` trigger writes
//! the outbox row in the same transaction, and notifies the relay only when the relay has
//! said it is waiting (migration V4: a NOTIFY per commit serialises commits). With a
//! `seq` or a key the same statement runs inside a short transaction that also claims the
//! seq and/or key.
//! Nothing here calls anything but PostgreSQL, and no reader request writes the reader's
//! own row: that the reader was seen is noted in memory ([`heartbeat::LastSeen`]) and
//! written later, for all readers at once, by [`liveness`].

pub mod alarm;
pub mod batch;
pub mod gaps;
pub mod heartbeat;
pub mod liveness;
pub mod post;
pub mod presence;
pub mod seq;
pub mod unlock;

use actix_web::HttpResponse;
use actix_web::http::header::HeaderName;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;

/// Card ids are 1 to 128 printable characters.
pub(crate) fn validate_card(card_id: &str) -> Result<(), ApiError> {
    if card_id.is_empty() || card_id.chars().count() > 128 || card_id.chars().any(char::is_control)
    {
        return Err(ApiError::unprocessable(
            "invalid_card_id",
            "card_id must be 1 to 128 printable characters",
        ));
    }
    Ok(())
}

/// Sequence numbers are non-negative.
pub(crate) fn validate_seq(seq: Option<i64>) -> Result<(), ApiError> {
    match seq {
        Some(seq) if seq < 0 => Err(ApiError::unprocessable(
            "invalid_seq",
            "seq must be a whole number of 0 or more",
        )),
        _ => Ok(()),
    }
}

pub(crate) fn attach_trace(response: &mut HttpResponse, trace: &str) {
    if let Ok(value) = trace.parse() {
        response
            .headers_mut()
            .insert(HeaderName::from_static("traceparent"), value);
    }
}

/// A reader's clock reading in one canonical form (UTC, RFC 3339), so that the same
/// instant written with another offset is the same event.
pub(crate) fn canonical_time(at: Option<OffsetDateTime>) -> Option<String> {
    at.and_then(|at| at.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok())
}
