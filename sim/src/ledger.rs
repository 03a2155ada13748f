//! The sinks' memory: which idempotency keys took effect, with their first answer, and
//! the statistics of everything received.
//!
//! One `Ledger` sits behind one mutex in the simulator's state. Every method does its
//! whole job under that lock and nothing else (no awaiting, no I/O), so "is this key
//! new?" and "record its effect" can never interleave with another request carrying the
//! same key: each key takes effect exactly once per endpoint.
//!
//! [`Keys`] is the once-per-key rule itself; a named subscriber's ledger
//! ([`crate::subscribers`]) keeps its own `Keys` under its own lock, by the same rule.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::endpoint::Endpoint;
use crate::reply::{Reply, Verdict};
use crate::stats::{EventRecord, Stats};

/// What applying a key did.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The key was new: this is its effect, and this its answer.
    Effect(Reply),
    /// The key took effect before with the same content: the stored answer.
    Duplicate(Reply),
    /// The key took effect before with other content; nothing was applied.
    Conflict,
}

/// A request's content, compared when its key comes again. JSON values compare
/// objects regardless of key order, which is what "the same request" means here.
pub(crate) type Fingerprint = serde_json::Value;

/// The request that wants to take effect.
pub(crate) struct Delivery<'a> {
    pub key: &'a str,
    pub fingerprint: Fingerprint,
    pub holder: Option<&'a str>,
    pub traceparent: Option<&'a str>,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    stats: Stats,
    legacy: Keys,
    webhooks: Keys,
}

/// The keys one sink applied, each with its content and first answer.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    applied: HashMap<String, (Fingerprint, Reply)>,
    /// The number the sink gives its last effect (the legacy system's `PunchId`).
    last_number: u64,
}

impl Keys {
    /// Applies `key` once: new, it takes effect and `answer` builds its answer from the
    /// effect's number; seen with the same content, the stored answer; seen with other
    /// content, a conflict. Counting is the caller's.
    pub fn apply(
        &mut self,
        key: &str,
        fingerprint: Fingerprint,
        answer: impl FnOnce(u64) -> Reply,
    ) -> Applied {
        if let Some((stored, reply)) = self.applied.get(key) {
            if *stored != fingerprint {
                return Applied::Conflict;
            }
            return Applied::Duplicate(reply.clone());
        }
        self.last_number += 1;
        let reply = answer(self.last_number);
        self.applied
            .insert(key.to_owned(), (fingerprint, reply.clone()));
        Applied::Effect(reply)
    }
}

impl Ledger {
    /// Counts a request as received, and the key it carries if any.
    pub fn receive(&mut self, endpoint: Endpoint, key: Option<&str>, traceparent: Option<&str>) {
        let stats = self.stats.endpoint_mut(endpoint);
        stats.requests += 1;
        let Some(key) = key else { return };
        let record = stats
            .events
            .entry(key.to_owned())
            .or_insert_with(|| EventRecord {
                endpoint,
                count: 0,
                applied: false,
                holder: None,
                traceparent: None,
                first_at: OffsetDateTime::now_utc(),
            });
        record.count += 1;
        if !record.applied {
            record.traceparent = traceparent.map(str::to_owned);
        }
    }

    /// Applies `delivery` once: `answer` builds the answer from the effect's number and
    /// is called only when the key is new.
    pub fn apply(
        &mut self,
        endpoint: Endpoint,
        delivery: Delivery<'_>,
        answer: impl FnOnce(u64) -> Reply,
    ) -> Applied {
        let keys = match endpoint {
            Endpoint::Legacy => &mut self.legacy,
            Endpoint::Webhooks => &mut self.webhooks,
        };
        let applied = keys.apply(delivery.key, delivery.fingerprint, answer);
        let stats = self.stats.endpoint_mut(endpoint);
        match &applied {
            Applied::Conflict => {}
            Applied::Duplicate(_) => stats.duplicates += 1,
            Applied::Effect(_) => {
                stats.effects += 1;
                if let Some(holder) = delivery.holder {
                    stats
                        .order
                        .entry(holder.to_owned())
                        .or_default()
                        .push(delivery.key.to_owned());
                }
                if let Some(record) = stats.events.get_mut(delivery.key) {
                    record.applied = true;
                    record.holder = delivery.holder.map(str::to_owned);
                    record.traceparent = delivery.traceparent.map(str::to_owned);
                }
            }
        }
        applied
    }

    /// Counts an answer that was not an effect or a duplicate.
    pub fn answered(&mut self, endpoint: Endpoint, verdict: Verdict) {
        let stats = self.stats.endpoint_mut(endpoint);
        match verdict {
            // Counted by `apply`, which alone knows effect from duplicate.
            Verdict::Accepted => {}
            Verdict::Rejected => stats.rejected += 1,
            Verdict::Failed => stats.failed += 1,
        }
    }

    /// Counts a request dropped before it was answered.
    pub fn abandoned(&mut self, endpoint: Endpoint) {
        self.stats.endpoint_mut(endpoint).abandoned += 1;
    }

    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Forgets everything, as a sink that lost its data.
    pub fn reset(&mut self) {
        *self = Ledger::default();
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;

    fn ok(n: u64) -> Reply {
        Reply::json(StatusCode::OK, &json!({ "n": n }))
    }

    fn delivery<'a>(key: &'a str, holder: &'a str, body: serde_json::Value) -> Delivery<'a> {
        Delivery {
            key,
            fingerprint: body,
            holder: Some(holder),
            traceparent: Some("00-trace-span-01"),
        }
    }

    #[test]
    fn a_key_takes_effect_once_and_duplicates_get_the_first_answer() {
        let mut ledger = Ledger::default();
        ledger.receive(Endpoint::Legacy, Some("k1"), None);
        let first = ledger.apply(Endpoint::Legacy, delivery("k1", "h", json!({"a": 1})), ok);
        let Applied::Effect(first) = first else {
            panic!("expected an effect, got {first:?}")
        };
        let again = ledger.apply(Endpoint::Legacy, delivery("k1", "h", json!({"a": 1})), ok);
        let Applied::Duplicate(again) = again else {
            panic!("expected a duplicate, got {again:?}")
        };
        assert_eq!(first, again);
        let stats = ledger.stats();
        assert_eq!((stats.legacy.effects, stats.legacy.duplicates), (1, 1));
        assert_eq!(stats.legacy.order_of("h"), ["k1"]);
        assert_eq!(stats.webhooks.effects, 0);
    }

    #[test]
    fn the_same_key_with_other_content_is_a_conflict() {
        let mut ledger = Ledger::default();
        ledger.apply(Endpoint::Webhooks, delivery("k", "h", json!({"a": 1})), ok);
        let other = ledger.apply(Endpoint::Webhooks, delivery("k", "h", json!({"a": 2})), ok);
        assert!(matches!(other, Applied::Conflict));
        assert_eq!(ledger.stats().webhooks.effects, 1);
    }

    #[test]
    fn endpoints_keep_their_keys_apart() {
        let mut ledger = Ledger::default();
        ledger.apply(Endpoint::Legacy, delivery("k", "h", json!(1)), ok);
        let webhook = ledger.apply(Endpoint::Webhooks, delivery("k", "h", json!(1)), ok);
        assert!(matches!(webhook, Applied::Effect(_)));
    }

    #[test]
    fn reset_forgets_keys_and_numbers() {
        let mut ledger = Ledger::default();
        ledger.receive(Endpoint::Legacy, Some("k"), None);
        ledger.apply(Endpoint::Legacy, delivery("k", "h", json!(1)), ok);
        ledger.reset();
        assert_eq!(ledger.stats(), Stats::default());
        let again = ledger.apply(Endpoint::Legacy, delivery("k", "h", json!(1)), ok);
        let Applied::Effect(reply) = again else {
            panic!("expected an effect after reset")
        };
        assert_eq!(reply, ok(1));
    }

    #[test]
    fn receipts_count_every_request_under_a_key() {
        let mut ledger = Ledger::default();
        ledger.receive(Endpoint::Legacy, Some("k"), Some("00-a-b-01"));
        ledger.receive(Endpoint::Legacy, Some("k"), Some("00-c-d-01"));
        ledger.receive(Endpoint::Legacy, None, None);
        ledger.answered(Endpoint::Legacy, Verdict::Failed);
        let stats = ledger.stats();
        assert_eq!(stats.legacy.requests, 3);
        assert_eq!(stats.legacy.failed, 1);
        let record = &stats.legacy.events["k"];
        assert_eq!(record.count, 2);
        assert!(!record.applied);
        assert_eq!(record.traceparent.as_deref(), Some("00-c-d-01"));
    }
}
