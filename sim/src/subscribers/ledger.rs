//! A named subscriber's memory: the ids it applied (by the sinks' own once-per-key rule,
//! [`Keys`]), its counters, and the events in the order they took effect — and the
//! documents that show them, `GET /endpoints/{name}/stats` and the entries of
//! `GET /endpoints`.
//!
//! Each subscriber has its own ledger behind its own lock, held for one whole step (no
//! awaiting, no I/O), so "is this id new?" and "record its effect" never interleave.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::faults::SubscriberFaults;
use crate::ledger::{Applied, Delivery, Keys};
use crate::reply::Reply;
use crate::webhooks::Event;

/// What one subscriber received: `GET /endpoints/{name}/stats`, the counters and the
/// applied events side by side in one JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberStats {
    #[serde(flatten)]
    pub counters: SubscriberCounters,
    /// The events that took effect, in the order they did.
    pub events: Vec<AppliedEvent>,
}

/// A subscriber's counters. Every request that reached its handler adds one to
/// `received` and, once answered, one to `answered` under its status; `applied`,
/// `duplicates` and `rejected_signature` tell some of those answers apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberCounters {
    /// Requests that reached the handler (an unknown name reaches none).
    pub received: u64,
    /// Distinct events applied: the subscriber's real effects.
    pub applied: u64,
    /// Valid repeats of an applied id, answered with the first answer.
    pub duplicates: u64,
    /// Answers `401 invalid_signature`.
    pub rejected_signature: u64,
    /// Requests dropped before an answer (client timeout, connection cut): no effect.
    pub abandoned: u64,
    /// Applied events whose `sequence` was not greater than the last applied `sequence`
    /// of the same `holder_id` (events without either are not checked).
    pub order_violations: u64,
    /// Status code (`"200"`, `"401"`, ...) → answers with that status.
    pub answered: BTreeMap<String, u64>,
}

/// One applied event, as the subscriber read it from the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedEvent {
    pub id: String,
    pub kind: String,
    pub holder_id: Option<String>,
    pub sequence: Option<i64>,
}

/// One entry of `GET /endpoints`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriberSummary {
    pub name: String,
    /// How many secrets it verifies with (never the secrets themselves).
    pub secrets: usize,
    pub faults: SubscriberFaults,
    pub stats: SubscriberCounters,
}

#[derive(Debug, Default)]
pub(crate) struct SubscriberLedger {
    keys: Keys,
    counters: SubscriberCounters,
    events: Vec<AppliedEvent>,
    /// Holder id → the `sequence` of its last applied event.
    last_sequence: HashMap<String, i64>,
}

impl SubscriberLedger {
    pub fn receive(&mut self) {
        self.counters.received += 1;
    }

    pub fn answered(&mut self, status: StatusCode) {
        *self
            .counters
            .answered
            .entry(status.as_str().to_owned())
            .or_default() += 1;
        if status == StatusCode::UNAUTHORIZED {
            self.counters.rejected_signature += 1;
        }
    }

    pub fn abandoned(&mut self) {
        self.counters.abandoned += 1;
    }

    /// Applies `event` once under `delivery.key` (which the checks made its id).
    pub fn apply(
        &mut self,
        event: &Event<'_>,
        delivery: Delivery<'_>,
        answer: impl FnOnce(u64) -> Reply,
    ) -> Applied {
        let applied = self.keys.apply(delivery.key, delivery.fingerprint, answer);
        match &applied {
            Applied::Conflict => {}
            Applied::Duplicate(_) => self.counters.duplicates += 1,
            Applied::Effect(_) => {
                self.counters.applied += 1;
                if let (Some(holder), Some(sequence)) = (event.holder, event.sequence)
                    && let Some(last) = self.last_sequence.insert(holder.to_owned(), sequence)
                    && sequence <= last
                {
                    self.counters.order_violations += 1;
                }
                self.events.push(AppliedEvent {
                    id: event.id.to_owned(),
                    kind: event.kind.to_owned(),
                    holder_id: event.holder.map(str::to_owned),
                    sequence: event.sequence,
                });
            }
        }
        applied
    }

    pub fn counters(&self) -> SubscriberCounters {
        self.counters.clone()
    }

    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            counters: self.counters.clone(),
            events: self.events.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ok(n: u64) -> Reply {
        Reply::json(StatusCode::OK, &json!({ "n": n }))
    }

    fn deliver(ledger: &mut SubscriberLedger, id: &str, holder: &str, sequence: i64) -> Applied {
        let event = Event {
            id,
            kind: "check_in",
            holder: Some(holder),
            sequence: Some(sequence),
        };
        let delivery = Delivery {
            key: id,
            fingerprint: json!({ "id": id, "sequence": sequence }),
            holder: Some(holder),
            traceparent: None,
        };
        ledger.apply(&event, delivery, ok)
    }

    #[test]
    fn a_holders_sequence_going_back_is_a_violation_each_time() {
        let mut ledger = SubscriberLedger::default();
        for (id, holder, sequence) in [
            ("e1", "h", 1),
            ("e3", "h", 3),
            ("e2", "h", 2),
            ("e4", "h", 4),
            ("f1", "g", 1),
            ("e4b", "h", 4),
        ] {
            assert!(matches!(
                deliver(&mut ledger, id, holder, sequence),
                Applied::Effect(_)
            ));
        }
        // A duplicate is not applied again, so it is no violation.
        assert!(matches!(
            deliver(&mut ledger, "e1", "h", 1),
            Applied::Duplicate(_)
        ));
        let stats = ledger.stats();
        // 2 after 3, and 4 after 4.
        assert_eq!(stats.counters.order_violations, 2);
        assert_eq!((stats.counters.applied, stats.counters.duplicates), (6, 1));
        let ids: Vec<_> = stats.events.iter().map(|event| event.id.as_str()).collect();
        assert_eq!(ids, ["e1", "e3", "e2", "e4", "f1", "e4b"]);
    }

    #[test]
    fn answers_are_counted_by_status() {
        let mut ledger = SubscriberLedger::default();
        for status in [StatusCode::OK, StatusCode::OK, StatusCode::UNAUTHORIZED] {
            ledger.receive();
            ledger.answered(status);
        }
        let counters = ledger.counters();
        assert_eq!(counters.received, 3);
        assert_eq!(counters.rejected_signature, 1);
        assert_eq!(counters.answered["200"], 2);
        assert_eq!(
            serde_json::to_value(&counters).expect("serialises")["answered"],
            json!({"200": 2, "401": 1})
        );
    }
}
