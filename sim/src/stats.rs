//! What the simulator tells about what it received: the `GET /stats` document, typed.
//!
//! Counters are per sink endpoint. Every request to a sink endpoint adds one to
//! `requests` and, once answered, exactly one of `effects`, `duplicates`, `rejected`
//! (permanent 4xx: authentication, validation, the reject list, a reused key) or `failed`
//! (retryable answers: an injected 503, a 429) or `abandoned` (dropped unanswered: its
//! client gave up, or `down` cut its connection). A request still waiting (latency, hang)
//! is counted only in `requests` until then.
//!
//! `order` and `events` are per endpoint too, because the worker delivers the same event
//! (same id, same `Idempotency-Key`) to both sinks. This module only holds the shapes;
//! the ledger fills them in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::endpoint::Endpoint;

/// The whole `GET /stats` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub legacy: EndpointStats,
    pub webhooks: EndpointStats,
}

/// What one sink endpoint received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    pub requests: u64,
    /// Keys applied for the first time: the sink's real effects.
    pub effects: u64,
    /// Requests with an already applied key, answered with the stored response.
    pub duplicates: u64,
    /// Permanent 4xx answers.
    pub rejected: u64,
    /// Retryable answers: 503 (injected) and 429.
    pub failed: u64,
    /// Requests dropped before an answer (client timeout, connection cut): no effect.
    pub abandoned: u64,
    /// Holder id → event ids (the `Idempotency-Key`s) in the order they took effect.
    pub order: BTreeMap<String, Vec<String>>,
    /// Event id (the `Idempotency-Key`) → what was received under it.
    pub events: BTreeMap<String, EventRecord>,
}

/// Everything received under one `Idempotency-Key` at one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub endpoint: Endpoint,
    /// Requests that carried this key, whatever their answer.
    pub count: u64,
    /// Whether the key took effect (once, by definition).
    pub applied: bool,
    /// The holder of the applied event, when it has one.
    pub holder: Option<String>,
    /// The `traceparent` of the request that took effect; before that, of the latest
    /// request that carried the key.
    pub traceparent: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_at: OffsetDateTime,
}

impl Stats {
    pub fn endpoint(&self, endpoint: Endpoint) -> &EndpointStats {
        match endpoint {
            Endpoint::Legacy => &self.legacy,
            Endpoint::Webhooks => &self.webhooks,
        }
    }

    pub(crate) fn endpoint_mut(&mut self, endpoint: Endpoint) -> &mut EndpointStats {
        match endpoint {
            Endpoint::Legacy => &mut self.legacy,
            Endpoint::Webhooks => &mut self.webhooks,
        }
    }
}

impl EndpointStats {
    /// The event ids of `holder` in the order they took effect (empty if none).
    pub fn order_of(&self, holder: &str) -> &[String] {
        self.order.get(holder).map_or(&[], Vec::as_slice)
    }

    /// Requests answered so far (the rest are waiting or were abandoned).
    pub fn answered(&self) -> u64 {
        self.effects + self.duplicates + self.rejected + self.failed
    }
}
