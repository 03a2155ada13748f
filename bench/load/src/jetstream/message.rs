//! What the benchmark publishes: messages shaped like latch's events — a JSON envelope of
//! the requested size and the headers the relay sets (`Nats-Msg-Id`, `Latch-Event-Id`,
//! `traceparent`), plus the atomic batch headers the relay adds.
//!
//! Every message carries the same payload (the server does not look inside it); only the
//! headers differ, and they are cheap to make, so the publisher spends its time sending.

use async_nats::HeaderMap;
use bytes::Bytes;

/// The message-id header: the server's deduplication key.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// Atomic batch headers (ADR-50), as the relay sets them.
pub const BATCH_ID: &str = "Nats-Batch-Id";
pub const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
pub const BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// One latch envelope as the outbox trigger builds it (`latch_event_envelope`), for size
/// and shape.
const ENVELOPE: &str = r#"{"id": "0190c0de-7a1b-7c2d-8e3f-4a5b6c7d8e9f", "kind": "unlock_granted", "site": "bench", "reason": "valid_grant", "door_id": "0190c0de-0000-7000-8000-000000000001", "actor_id": null, "decision": "granted", "grant_id": null, "holder_id": "0190c0de-0000-7000-8000-000000001001", "reader_id": "0190c0de-0000-7000-8000-000000000101", "reader_seq": null, "occurred_at": "2026-11-22T02:00:00.000000Z", "recorded_at": "2026-11-22T02:00:00.000123Z", "schema_version": 1, "decided_offline": false}"#;

/// A payload of exactly `size` bytes: latch's envelope, padded with a `pad` field (or cut
/// down to a JSON string when `size` is smaller than the envelope).
pub fn payload(size: usize) -> Bytes {
    let mut out = String::with_capacity(size);
    const PAD_FIELD: &str = r#", "pad": ""#;
    if size > ENVELOPE.len() + PAD_FIELD.len() {
        out.push_str(&ENVELOPE[..ENVELOPE.len() - 1]);
        out.push_str(PAD_FIELD);
        while out.len() < size - 2 {
            out.push('x');
        }
        out.push_str("\"}");
    } else if size >= ENVELOPE.len() {
        out.push_str(ENVELOPE);
        while out.len() < size {
            out.push(' ');
        }
    } else if size >= 2 {
        out.push('"');
        while out.len() < size - 1 {
            out.push('x');
        }
        out.push('"');
    } else {
        out.push('0');
    }
    debug_assert_eq!(out.len(), size);
    Bytes::from(out)
}

/// The headers of message number `n` (1, 2, … in a run): its own id, an event id and a
/// trace context, like the relay's.
pub fn headers(n: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, n.to_string());
    headers.insert(
        "Latch-Event-Id",
        format!("0190c0de-0000-7000-8000-{:012x}", n & 0xffff_ffff_ffff),
    );
    headers.insert(
        "traceparent",
        format!(
            "00-4bf92f3577b34da6a3ce929d{:08x}-00f067aa0ba902b7-01",
            n & 0xffff_ffff
        ),
    );
    headers
}

/// The headers of message number `n`, the `index`-th (1-based) of atomic batch `batch_id`;
/// the last of the batch also commits it.
pub fn batch_headers(n: u64, batch_id: &str, index: usize, last: bool) -> HeaderMap {
    let mut headers = headers(n);
    headers.insert(BATCH_ID, batch_id);
    headers.insert(BATCH_SEQUENCE, index.to_string());
    if last {
        headers.insert(BATCH_COMMIT, "1");
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_exactly_the_size_asked_for() {
        for size in [
            1,
            2,
            3,
            100,
            ENVELOPE.len(),
            ENVELOPE.len() + 5,
            480,
            600,
            4096,
        ] {
            assert_eq!(payload(size).len(), size, "{size}");
        }
    }

    #[test]
    fn envelope_sized_payloads_are_json() {
        for size in [520, 600] {
            let value: serde_json::Value =
                serde_json::from_slice(&payload(size)).expect("valid JSON");
            assert_eq!(value["kind"], "unlock_granted");
        }
    }

    #[test]
    fn every_message_has_its_own_ids_and_batches_are_marked() {
        let a = headers(1);
        let b = headers(2);
        assert_eq!(a.get(MSG_ID).map(|v| v.as_str()), Some("1"));
        assert_ne!(a.get("Latch-Event-Id"), b.get("Latch-Event-Id"));
        let traceparent = a.get("traceparent").expect("a trace").as_str().to_owned();
        assert_eq!(traceparent.len(), 55, "{traceparent}");
        let middle = batch_headers(7, "b1", 3, false);
        assert_eq!(middle.get(BATCH_SEQUENCE).map(|v| v.as_str()), Some("3"));
        assert!(middle.get(BATCH_COMMIT).is_none());
        let last = batch_headers(8, "b1", 4, true);
        assert_eq!(last.get(BATCH_COMMIT).map(|v| v.as_str()), Some("1"));
        assert_eq!(last.get(BATCH_ID).map(|v| v.as_str()), Some("b1"));
    }
}
