//! Calling a sink and classifying the answer.
//!
//! - **legacy**: the time-and-attendance system takes form-encoded punches
//!   (`EMP_ID`, `PUNCH_TYPE` IN/OUT, `PUNCH_TS` as `YYYYMMDDhhmmss` UTC, `TERMINAL`,
//!   `SITE`, `LATE`, `REF`) with its key in `X-TNA-Key`.
//! - **webhooks**: the envelope as published, JSON, signed as Standard Webhooks specifies
//!   (`webhook-id` = the event id, `webhook-timestamp`, `webhook-signature`; see
//!   `latch_core::signature`).
//!
//! Every call carries `Idempotency-Key: <event id>` (so retries and replays apply once)
//! and the event's `traceparent`, and is bounded by the sink's timeout.
//!
//! Classification: a 2xx is delivered; transport errors, timeouts, 5xx, 408 and 429 are
//! worth retrying (429 and 503 may say when, in `Retry-After`); any other answer is
//! permanent and the event goes straight to the dead-letter stream.

use std::time::Duration;

use latch_core::event::{Envelope, EventKind};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::config::{SinkConfig, SinkKind};

/// What a call came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again later; `after` is the sink's own `Retry-After`, if it gave one.
    Retry {
        reason: String,
        after: Option<Duration>,
        /// The sink is overloaded but alive (429): not a breaker failure.
        throttled: bool,
    },
    /// Will never succeed as it is.
    Permanent {
        reason: String,
        status: Option<u16>,
    },
}

/// A sink ready to take calls.
pub struct Sink {
    pub config: SinkConfig,
    http: reqwest::Client,
}

/// The fields of the legacy punch form.
pub mod legacy_fields {
    pub const EMP_ID: &str = "EMP_ID";
    pub const PUNCH_TYPE: &str = "PUNCH_TYPE";
    pub const PUNCH_TS: &str = "PUNCH_TS";
    pub const TERMINAL: &str = "TERMINAL";
    pub const SITE: &str = "SITE";
    pub const LATE: &str = "LATE";
    pub const REF: &str = "REF";
}

pub const TNA_KEY_HEADER: &str = "X-TNA-Key";

impl Sink {
    pub fn new(config: SinkConfig) -> anyhow::Result<Sink> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(config.concurrency)
            .user_agent(concat!("latch/", env!("CARGO_PKG_VERSION")))
            // A sink that answers with a redirect does not get to send latch elsewhere
            // (another host, an internal address): 3xx is a permanent failure.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Sink { config, http })
    }

    pub fn name(&self) -> &'static str {
        self.config.kind.name()
    }

    /// Calls the sink once with this event.
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        traceparent: Option<&str>,
    ) -> Outcome {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&envelope.id.to_string()) {
            headers.insert("Idempotency-Key", value);
        }
        if let Some(value) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert("traceparent", value);
        }
        let request = match self.config.kind {
            SinkKind::Legacy => {
                let form = match legacy_punch(envelope) {
                    Ok(form) => form,
                    Err(reason) => {
                        return Outcome::Permanent {
                            reason,
                            status: None,
                        };
                    }
                };
                if let Ok(key) = HeaderValue::from_str(self.config.secret.expose()) {
                    headers.insert(TNA_KEY_HEADER, key);
                }
                self.http
                    .post(&self.config.url)
                    .headers(headers)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form)
            }
            SinkKind::Webhooks => {
                use latch_core::signature::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
                let now = OffsetDateTime::now_utc().unix_timestamp();
                let id = envelope.id.to_string();
                let Some(key) = &self.config.signing_key else {
                    // Never sent unsigned (the settings check makes this unreachable).
                    return Outcome::Permanent {
                        reason: "the webhook sink has no signing key".into(),
                        status: None,
                    };
                };
                let signature = latch_core::signature::sign(&[key], &id, now, raw);
                for (name, value) in [
                    (ID_HEADER, id),
                    (TIMESTAMP_HEADER, now.to_string()),
                    (SIGNATURE_HEADER, signature),
                ] {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(name, value);
                    }
                }
                self.http
                    .post(&self.config.url)
                    .headers(headers)
                    .header(CONTENT_TYPE, "application/json")
                    .body(raw.to_vec())
            }
        };
        match request.send().await {
            Ok(response) => classify(response.status(), response.headers()),
            Err(error) => Outcome::Retry {
                reason: if error.is_timeout() {
                    format!("no answer within {:?}", self.config.timeout)
                } else if error.is_connect() {
                    "connection failed".to_owned()
                } else {
                    format!("transport error: {error}")
                },
                after: None,
                throttled: false,
            },
        }
    }
}

/// Sorts an HTTP answer into delivered / retry / permanent.
pub fn classify(status: StatusCode, headers: &HeaderMap) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let retryable = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if retryable {
        return Outcome::Retry {
            reason: format!("HTTP {}", status.as_u16()),
            after: retry_after(headers),
            throttled: status == StatusCode::TOO_MANY_REQUESTS,
        };
    }
    Outcome::Permanent {
        reason: format!("HTTP {}", status.as_u16()),
        status: Some(status.as_u16()),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// Maps an event to the legacy system's punch form.
pub fn legacy_punch(envelope: &Envelope) -> Result<String, String> {
    let punch_type = match envelope.kind {
        EventKind::CheckIn => "IN",
        EventKind::CheckOut => "OUT",
        other => return Err(format!("the legacy system takes no {other} events")),
    };
    let holder = envelope
        .holder_id
        .ok_or("a punch needs a holder")?
        .to_string();
    let terminal = envelope
        .reader_id
        .or(envelope.door_id)
        .map(|id| id.to_string())
        .unwrap_or_default();
    let at = envelope
        .occurred_at
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .map_err(|e| format!("cannot format the punch time: {e}"))?;
    let late = if envelope.decided_offline { "Y" } else { "N" };
    let reference = envelope.id.to_string();
    let site = envelope.site.clone().unwrap_or_default();
    Ok(form_urlencoded::Serializer::new(String::new())
        .append_pair(legacy_fields::EMP_ID, &holder)
        .append_pair(legacy_fields::PUNCH_TYPE, punch_type)
        .append_pair(legacy_fields::PUNCH_TS, &at)
        .append_pair(legacy_fields::TERMINAL, &terminal)
        .append_pair(legacy_fields::SITE, &site)
        .append_pair(legacy_fields::LATE, late)
        .append_pair(legacy_fields::REF, &reference)
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let none = HeaderMap::new();
        assert_eq!(classify(StatusCode::OK, &none), Outcome::Delivered);
        assert_eq!(classify(StatusCode::CREATED, &none), Outcome::Delivered);
        for status in [500, 502, 503, 504, 408] {
            let outcome = classify(StatusCode::from_u16(status).expect("status"), &none);
            assert!(
                matches!(
                    outcome,
                    Outcome::Retry {
                        throttled: false,
                        ..
                    }
                ),
                "{status}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers),
            Outcome::Retry {
                reason: "HTTP 429".into(),
                after: Some(Duration::from_secs(7)),
                throttled: true
            }
        );
        for status in [400, 401, 403, 404, 409, 422] {
            let outcome = classify(StatusCode::from_u16(status).expect("status"), &none);
            assert!(matches!(outcome, Outcome::Permanent { .. }), "{status}");
        }
    }

    #[test]
    fn check_ins_map_to_legacy_punches() {
        let envelope: Envelope = serde_json::from_value(serde_json::json!({
            "id": "0190f3c2-0000-7000-8000-000000000001", "kind": "check_in", "schema_version": 1,
            "occurred_at": "2026-03-04T05:06:07.123Z", "recorded_at": "2026-03-04T05:06:08Z",
            "site": "hq", "door_id": "0190f3c2-0000-7000-8000-000000000002",
            "holder_id": "0190f3c2-0000-7000-8000-000000000003",
            "reader_id": "0190f3c2-0000-7000-8000-000000000004", "reader_seq": null,
            "decided_offline": false, "decision": null, "reason": null, "grant_id": null,
            "actor_id": null
        }))
        .expect("envelope");
        let form = legacy_punch(&envelope).expect("maps");
        assert_eq!(
            form,
            "EMP_ID=0190f3c2-0000-7000-8000-000000000003&PUNCH_TYPE=IN&PUNCH_TS=20260304050607\
             &TERMINAL=0190f3c2-0000-7000-8000-000000000004&SITE=hq&LATE=N\
             &REF=0190f3c2-0000-7000-8000-000000000001"
        );
        let mut unlock = envelope;
        unlock.kind = EventKind::UnlockGranted;
        assert!(legacy_punch(&unlock).is_err());
    }
}
