//! The fault knobs: what can go wrong with the simulated sinks, as plain data.
//!
//! [`Faults`] is what `PUT /faults` takes and `GET /faults` shows, and what the CLI flags
//! build at start. `down` concerns the whole main listener; every other knob is set per
//! sink endpoint (`legacy`, `webhooks`), so a test can break one sink and keep the other
//! healthy. A JSON document replaces the knobs as a whole; a field left out is "no
//! fault", so `{}` clears everything. [`SubscriberFaults`] are a named subscriber's own
//! knobs (`PUT /endpoints/{name}/faults`, see [`crate::subscribers`]): one sink's knobs in
//! the same JSON shape, plus `gone`.
//!
//! This module owns the shapes, their validation and the random draws (latency, error
//! rate); applying them to a request is the gate's job ([`crate::gate`]).

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::endpoint::Endpoint;

/// All fault knobs. `Default` is a healthy sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The main listener is closed, so connections are refused; `false` listens again on
    /// the same port. The admin listener keeps answering.
    pub down: bool,
    pub legacy: SinkFaults,
    pub webhooks: SinkFaults,
}

/// The knobs of one sink endpoint, applied in this order to each request: latency, hang,
/// rate limit, error rate; then, once the request is understood, the reject list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkFaults {
    /// Share of requests (0.0–1.0) answered 503 with no effect.
    pub error_rate: f64,
    /// Delay before answering (every answer, success or not).
    pub latency: Option<Latency>,
    /// Accept requests and never answer while set; a waiting request carries on normally
    /// once the knob is cleared, if its client is still there (and `down` is not set:
    /// then its connection is cut instead).
    pub hang: bool,
    /// Inputs answered 422 (permanent) with no effect.
    pub reject: Reject,
    /// Requests beyond a rate are answered 429 with `Retry-After`.
    pub rate_limit: Option<RateLimit>,
}

/// A latency distribution, in milliseconds. JSON: `{"kind":"fixed","ms":200}`,
/// `{"kind":"uniform","min_ms":50,"max_ms":300}`, `{"kind":"exponential","mean_ms":100}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    Fixed { ms: u64 },
    Uniform { min_ms: u64, max_ms: u64 },
    Exponential { mean_ms: u64 },
}

/// Longest exponential draw: the tail is cut so that one unlucky request cannot stall a
/// test for minutes.
const EXPONENTIAL_CAP_FACTOR: f64 = 10.0;

/// Permanent refusals (422) for chosen inputs. An entry matches exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reject {
    /// Holder ids: the legacy `EMP_ID`, the webhook envelope's `holder_id`.
    pub holders: Vec<String>,
    /// Webhooks: envelope `kind`s (`check_in`, ...). Legacy: `PUNCH_TYPE`s (`IN`, `OUT`),
    /// the only "kind" a punch has.
    pub kinds: Vec<String>,
    /// Event ids: the legacy `REF`, the webhook envelope's `id`.
    pub events: Vec<String>,
}

/// Rate limiting, answered `429 Too Many Requests` with `Retry-After: <retry_after_secs>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests accepted per wall-clock second (a fixed one-second window per endpoint);
    /// the rest of that second gets 429. `0` answers 429 to every request.
    #[serde(default)]
    pub per_second: u32,
    #[serde(default = "RateLimit::default_retry_after")]
    pub retry_after_secs: u64,
}

/// The knobs of one named subscriber: one sink's knobs, flattened into the same JSON
/// object, plus `gone`. `{}` is a healthy subscriber; a field left out is "no fault".
///
/// JSON: `{"error_rate": 0.5, "latency": {"kind": "fixed", "ms": 20}, "hang": false,
/// "reject": {"holders": [], "kinds": [], "events": []}, "rate_limit": {"per_second": 5,
/// "retry_after_secs": 1}, "gone": false}`. Unknown fields are refused, as in `PUT /faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SubscriberFaults {
    /// Applied by the gate exactly as for a sink: latency, hang, rate limit, error rate;
    /// then the reject list once the request is understood.
    #[serde(flatten)]
    pub sink: SinkFaults,
    /// The subscriber has gone away (unsubscribed, endpoint removed): every request that
    /// passes the gate is answered `410 Gone` (code `gone`) with no effect, before its
    /// signature is looked at.
    pub gone: bool,
}

/// What is wrong with one sink's (or subscriber's) knobs, wherever they are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KnobError {
    #[error("error_rate must be between 0.0 and 1.0")]
    ErrorRate,
    #[error("latency: {0}")]
    Latency(&'static str),
}

/// A fault setting that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultsError {
    #[error("{endpoint}.error_rate must be between 0.0 and 1.0")]
    ErrorRate { endpoint: Endpoint },
    #[error("{endpoint}.latency: {message}")]
    Latency {
        endpoint: Endpoint,
        message: &'static str,
    },
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Faults::default()
    }

    /// The same knobs on both sink endpoints.
    pub fn both(sink: SinkFaults) -> Self {
        Faults {
            down: false,
            legacy: sink.clone(),
            webhooks: sink,
        }
    }

    /// Knobs on one endpoint, the other healthy.
    pub fn only(endpoint: Endpoint, sink: SinkFaults) -> Self {
        let mut faults = Faults::default();
        *faults.sink_mut(endpoint) = sink;
        faults
    }

    /// The main listener closed.
    pub fn down() -> Self {
        Faults {
            down: true,
            ..Faults::default()
        }
    }

    pub fn sink(&self, endpoint: Endpoint) -> &SinkFaults {
        match endpoint {
            Endpoint::Legacy => &self.legacy,
            Endpoint::Webhooks => &self.webhooks,
        }
    }

    pub fn sink_mut(&mut self, endpoint: Endpoint) -> &mut SinkFaults {
        match endpoint {
            Endpoint::Legacy => &mut self.legacy,
            Endpoint::Webhooks => &mut self.webhooks,
        }
    }

    pub fn validate(&self) -> Result<(), FaultsError> {
        for endpoint in Endpoint::ALL {
            self.sink(endpoint).validate(endpoint)?;
        }
        Ok(())
    }
}

impl SinkFaults {
    /// `rate` of the requests answer 503.
    pub fn failing(rate: f64) -> Self {
        SinkFaults {
            error_rate: rate,
            ..SinkFaults::default()
        }
    }

    /// Every answer is delayed by a draw from `latency`.
    pub fn slow(latency: Latency) -> Self {
        SinkFaults {
            latency: Some(latency),
            ..SinkFaults::default()
        }
    }

    /// No request is answered.
    pub fn hanging() -> Self {
        SinkFaults {
            hang: true,
            ..SinkFaults::default()
        }
    }

    /// The inputs in `reject` are refused with 422.
    pub fn rejecting(reject: Reject) -> Self {
        SinkFaults {
            reject,
            ..SinkFaults::default()
        }
    }

    /// At most `per_second` requests a second (0: none), the rest 429.
    pub fn rate_limited(per_second: u32, retry_after_secs: u64) -> Self {
        SinkFaults {
            rate_limit: Some(RateLimit {
                per_second,
                retry_after_secs,
            }),
            ..SinkFaults::default()
        }
    }

    fn validate(&self, endpoint: Endpoint) -> Result<(), FaultsError> {
        self.check().map_err(|problem| match problem {
            KnobError::ErrorRate => FaultsError::ErrorRate { endpoint },
            KnobError::Latency(message) => FaultsError::Latency { endpoint, message },
        })
    }

    /// Whether the knobs make sense, wherever they are set.
    pub fn check(&self) -> Result<(), KnobError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(KnobError::ErrorRate);
        }
        if let Some(latency) = self.latency {
            latency.validate().map_err(KnobError::Latency)?;
        }
        Ok(())
    }

    /// Draws whether this request is one of the `error_rate` that fail.
    pub(crate) fn draw_error(&self) -> bool {
        self.error_rate >= 1.0
            || (self.error_rate > 0.0 && rand::rng().random_bool(self.error_rate))
    }
}

impl SubscriberFaults {
    /// A subscriber that answers every request `410 Gone`.
    pub fn gone() -> Self {
        SubscriberFaults {
            gone: true,
            ..SubscriberFaults::default()
        }
    }

    pub fn validate(&self) -> Result<(), KnobError> {
        self.sink.check()
    }
}

impl From<SinkFaults> for SubscriberFaults {
    fn from(sink: SinkFaults) -> Self {
        SubscriberFaults { sink, gone: false }
    }
}

/// By hand rather than with `#[serde(flatten)]`, which cannot refuse unknown fields: `gone`
/// is taken out, and the rest must be one sink's knobs exactly.
impl<'de> Deserialize<'de> for SubscriberFaults {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde_json::Value;
        let mut knobs = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        let gone = match knobs.remove("gone") {
            None => false,
            Some(Value::Bool(gone)) => gone,
            Some(_) => return Err(D::Error::custom("gone must be true or false")),
        };
        let sink = SinkFaults::deserialize(Value::Object(knobs)).map_err(D::Error::custom)?;
        Ok(SubscriberFaults { sink, gone })
    }
}

impl Latency {
    /// One draw from the distribution.
    pub fn sample(&self) -> Duration {
        let ms = match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => rand::rng().random_range(min_ms..=max_ms),
            Latency::Exponential { mean_ms } => {
                let u: f64 = rand::rng().random();
                // Inverse transform: -mean * ln(1 - u), with u in [0, 1).
                let draw = -(mean_ms as f64) * (1.0 - u).ln();
                draw.min(mean_ms as f64 * EXPONENTIAL_CAP_FACTOR) as u64
            }
        };
        Duration::from_millis(ms)
    }

    fn validate(&self) -> Result<(), &'static str> {
        match *self {
            Latency::Uniform { min_ms, max_ms } if min_ms > max_ms => {
                Err("uniform min_ms is greater than max_ms")
            }
            _ => Ok(()),
        }
    }
}

/// The command-line form: `200` or `fixed:200`, `uniform:50-300`, `exp:100`.
impl FromStr for Latency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |v: &str| {
            v.trim()
                .trim_end_matches("ms")
                .parse::<u64>()
                .map_err(|_| format!("{v:?} is not a number of milliseconds"))
        };
        let (kind, value) = s.split_once(':').unwrap_or(("fixed", s));
        let latency = match kind {
            "fixed" => Latency::Fixed { ms: ms(value)? },
            "uniform" => {
                let (min, max) = value
                    .split_once('-')
                    .ok_or_else(|| format!("uniform latency is MIN-MAX, got {value:?}"))?;
                Latency::Uniform {
                    min_ms: ms(min)?,
                    max_ms: ms(max)?,
                }
            }
            "exp" | "exponential" => Latency::Exponential {
                mean_ms: ms(value)?,
            },
            other => {
                return Err(format!(
                    "unknown latency kind {other:?} (use fixed:MS, uniform:MIN-MAX or exp:MEAN)"
                ));
            }
        };
        latency.validate()?;
        Ok(latency)
    }
}

impl Reject {
    /// Why this input is refused, if it is. Absent values match nothing.
    pub(crate) fn refusal(
        &self,
        holder: Option<&str>,
        kind: Option<&str>,
        event: Option<&str>,
    ) -> Option<String> {
        fn listed<'a>(list: &[String], value: Option<&'a str>) -> Option<&'a str> {
            value.filter(|v| list.iter().any(|entry| entry == v))
        }
        if let Some(holder) = listed(&self.holders, holder) {
            return Some(format!("holder {holder} is not accepted by this system"));
        }
        if let Some(kind) = listed(&self.kinds, kind) {
            return Some(format!("{kind} is not accepted by this system"));
        }
        if let Some(event) = listed(&self.events, event) {
            return Some(format!("event {event} is not accepted by this system"));
        }
        None
    }
}

impl RateLimit {
    fn default_retry_after() -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_document_is_no_fault() {
        let faults: Faults = serde_json::from_str("{}").expect("parses");
        assert_eq!(faults, Faults::none());
    }

    #[test]
    fn the_json_shape_reads_as_documented() {
        let faults: Faults = serde_json::from_str(
            r#"{"down": false,
                "legacy": {"error_rate": 0.5, "latency": {"kind": "uniform", "min_ms": 1, "max_ms": 5},
                           "reject": {"holders": ["h1"]}, "rate_limit": {"per_second": 3}},
                "webhooks": {"hang": true}}"#,
        )
        .expect("parses");
        assert_eq!(faults.legacy.error_rate, 0.5);
        assert_eq!(
            faults.legacy.rate_limit,
            Some(RateLimit {
                per_second: 3,
                retry_after_secs: 1
            })
        );
        assert!(faults.webhooks.hang);
        assert!(faults.validate().is_ok());
    }

    #[test]
    fn unknown_knobs_are_refused() {
        assert!(serde_json::from_str::<Faults>(r#"{"eror_rate": 1}"#).is_err());
    }

    #[test]
    fn nonsense_values_fail_validation() {
        assert!(Faults::both(SinkFaults::failing(1.5)).validate().is_err());
        let backwards = SinkFaults::slow(Latency::Uniform {
            min_ms: 9,
            max_ms: 1,
        });
        assert!(
            Faults::only(Endpoint::Webhooks, backwards)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn latency_reads_its_command_line_forms() {
        assert_eq!("200".parse(), Ok(Latency::Fixed { ms: 200 }));
        assert_eq!("fixed:200ms".parse(), Ok(Latency::Fixed { ms: 200 }));
        assert_eq!(
            "uniform:50-300".parse(),
            Ok(Latency::Uniform {
                min_ms: 50,
                max_ms: 300
            })
        );
        assert_eq!("exp:100".parse(), Ok(Latency::Exponential { mean_ms: 100 }));
        assert!("uniform:300-50".parse::<Latency>().is_err());
        assert!("gauss:1".parse::<Latency>().is_err());
    }

    #[test]
    fn latency_draws_stay_in_range() {
        for _ in 0..200 {
            let d = Latency::Uniform {
                min_ms: 10,
                max_ms: 20,
            }
            .sample();
            assert!((10..=20).contains(&(d.as_millis() as u64)));
            let e = Latency::Exponential { mean_ms: 10 }.sample();
            assert!(e <= Duration::from_millis(100));
        }
    }

    #[test]
    fn reject_matches_exact_entries_only() {
        let reject = Reject {
            holders: vec!["h1".into()],
            kinds: vec!["OUT".into()],
            events: vec![],
        };
        assert!(reject.refusal(Some("h1"), Some("IN"), None).is_some());
        assert!(reject.refusal(Some("h2"), Some("OUT"), None).is_some());
        assert!(reject.refusal(Some("h10"), Some("IN"), Some("e")).is_none());
        assert!(reject.refusal(None, None, None).is_none());
    }

    #[test]
    fn subscriber_knobs_are_a_sinks_knobs_plus_gone() {
        let knobs: SubscriberFaults =
            serde_json::from_str(r#"{"error_rate": 0.25, "gone": true, "hang": true}"#)
                .expect("parses");
        assert_eq!(knobs.sink.error_rate, 0.25);
        assert!(knobs.gone && knobs.sink.hang);
        let shown = serde_json::to_value(&knobs).expect("serialises");
        assert_eq!(shown["gone"], true);
        assert_eq!(shown["error_rate"], 0.25);
        let again: SubscriberFaults = serde_json::from_value(shown).expect("reads its own form");
        assert_eq!(again, knobs);
        let cleared: SubscriberFaults = serde_json::from_str("{}").expect("parses");
        assert_eq!(cleared, SubscriberFaults::default());
        for bad in [
            r#"{"gon": true}"#,
            r#"{"gone": 1}"#,
            r#"{"down": true}"#,
            r#"[]"#,
        ] {
            assert!(
                serde_json::from_str::<SubscriberFaults>(bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            SubscriberFaults::from(SinkFaults::failing(2.0)).validate(),
            Err(KnobError::ErrorRate)
        );
    }

    #[test]
    fn error_rate_extremes_are_certain() {
        assert!(SinkFaults::failing(1.0).draw_error());
        assert!(!SinkFaults::failing(0.0).draw_error());
    }
}
