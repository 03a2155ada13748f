//! [`Plan`]: what request number `n` of a run is — which URL, which reader key, which
//! card, which `Idempotency-Key`.
//!
//! The key and the card are drawn from a hash of the seed and `n`, not from a shared
//! random generator, so the choices do not depend on which worker takes which number or
//! in which order: the same seed gives the same sequence, whatever the concurrency.
//! Presence-mix is the one stateful choice: each card counts its uses, and its check-ins
//! and check-outs alternate in the order requests take it.
//!
//! Bodies and `Authorization` values are rendered once, at the start, so the generator
//! spends its time sending, not formatting.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::Bytes;
use http::Uri;
use http::header::HeaderValue;
use reqwest::Url;

use super::config::{LoadConfig, ReaderEndpoint};

/// The unlock endpoint's path.
pub const UNLOCK_PATH: &str = "/v1/unlock";
/// The check-in endpoint's path.
pub const CHECK_IN_PATH: &str = "/v1/check-ins";
/// The check-out endpoint's path.
pub const CHECK_OUT_PATH: &str = "/v1/check-outs";

/// Which request a shot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShotKind {
    Unlock,
    CheckIn,
    CheckOut,
}

/// One request, ready to send.
pub(crate) struct Shot {
    pub kind: ShotKind,
    /// The whole URL (cloning it only counts a reference).
    pub url: Uri,
    pub authorization: HeaderValue,
    pub body: Bytes,
    pub idempotency_key: Option<String>,
}

struct Card {
    /// `{"card_id": "..."}`, rendered once.
    body: Bytes,
    uses: AtomicU64,
}

pub(crate) struct Plan {
    endpoint: ReaderEndpoint,
    unlock: Uri,
    check_in: Uri,
    check_out: Uri,
    authorizations: Vec<HeaderValue>,
    cards: Vec<Card>,
    seed: u64,
    /// Set with `--idempotency`: a random number, different for every run, so that keys
    /// never collide with those of an earlier run (which the API would replay).
    run_nonce: Option<u64>,
}

impl Plan {
    /// The plan of a validated config, whose base URL is `base`.
    pub fn new(config: &LoadConfig, base: &Url) -> anyhow::Result<Plan> {
        // Url::join replaces the last segment of a path without a trailing slash.
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let join = |path: &str| -> anyhow::Result<Uri> {
            let url = base
                .join(path.trim_start_matches('/'))
                .with_context(|| format!("cannot join {path} to {base}"))?;
            Uri::try_from(url.as_str()).with_context(|| format!("{url} is not a request URI"))
        };
        let authorizations = config
            .reader_keys
            .iter()
            .map(|key| {
                let mut value = HeaderValue::try_from(format!("Bearer {}", key.expose()))
                    .context("a reader key holds characters a header cannot carry")?;
                value.set_sensitive(true);
                Ok(value)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cards = config
            .cards
            .iter()
            .map(|card| {
                Ok(Card {
                    body: serde_json::to_vec(&serde_json::json!({ "card_id": card }))?.into(),
                    uses: AtomicU64::new(0),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Plan {
            endpoint: config.endpoint,
            unlock: join(UNLOCK_PATH)?,
            check_in: join(CHECK_IN_PATH)?,
            check_out: join(CHECK_OUT_PATH)?,
            authorizations,
            cards,
            seed: config.seed,
            run_nonce: config.idempotency.then(rand::random),
        })
    }

    /// Request number `index` of the run.
    pub fn shot(&self, index: u64) -> Shot {
        let draw = mix(self.seed ^ mix(index));
        let authorization = pick(&self.authorizations, draw).clone();
        let card = pick(&self.cards, mix(draw));
        let kind = match self.endpoint {
            ReaderEndpoint::Unlock => ShotKind::Unlock,
            ReaderEndpoint::CheckIn => ShotKind::CheckIn,
            ReaderEndpoint::CheckOut => ShotKind::CheckOut,
            ReaderEndpoint::PresenceMix => {
                if card.uses.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                    ShotKind::CheckIn
                } else {
                    ShotKind::CheckOut
                }
            }
        };
        let url = match kind {
            ShotKind::Unlock => &self.unlock,
            ShotKind::CheckIn => &self.check_in,
            ShotKind::CheckOut => &self.check_out,
        };
        Shot {
            kind,
            url: url.clone(),
            authorization,
            body: card.body.clone(),
            idempotency_key: self
                .run_nonce
                .map(|nonce| format!("latch-load-{nonce:016x}-{index}")),
        }
    }
}

/// The element `draw` falls on. Lists are never empty (the config is validated).
fn pick<T>(items: &[T], draw: u64) -> &T {
    // Reduce in u64, then convert: the result is below `items.len()`, so it fits.
    let index = draw % items.len() as u64;
    &items[usize::try_from(index).unwrap_or_default()]
}

/// SplitMix64's finaliser: a cheap, well-spread hash of a counter.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use latch_core::config::Secret;

    use super::*;
    use crate::readers::config::{Mode, Stop};

    fn plan(endpoint: ReaderEndpoint, seed: u64, url: &str) -> Plan {
        let config = LoadConfig {
            endpoint,
            seed,
            reader_keys: vec![Secret::new("k1".to_owned()), Secret::new("k2".to_owned())],
            cards: vec!["A".to_owned(), "B".to_owned(), "C".to_owned()],
            ..LoadConfig::new(
                url,
                Mode::Closed { concurrency: 1 },
                Stop::after_requests(1),
            )
        };
        let base = config.validate().expect("valid");
        Plan::new(&config, &base).expect("a plan")
    }

    fn choices(plan: &Plan) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..50)
            .map(|n| {
                let shot = plan.shot(n);
                (shot.authorization.as_bytes().to_vec(), shot.body.to_vec())
            })
            .collect()
    }

    #[test]
    fn the_same_seed_draws_the_same_sequence_and_uses_every_key_and_card() {
        let one = choices(&plan(ReaderEndpoint::Unlock, 7, "http://h"));
        assert_eq!(one, choices(&plan(ReaderEndpoint::Unlock, 7, "http://h")));
        assert_ne!(one, choices(&plan(ReaderEndpoint::Unlock, 8, "http://h")));
        for key in [&b"Bearer k1"[..], b"Bearer k2"] {
            assert!(one.iter().any(|(k, _)| k == key));
        }
        for card in ["A", "B", "C"] {
            let body = format!(r#"{{"card_id":"{card}"}}"#).into_bytes();
            assert!(one.iter().any(|(_, b)| *b == body));
        }
    }

    #[test]
    fn paths_are_joined_below_the_base_url() {
        let shot = plan(ReaderEndpoint::CheckOut, 0, "http://h:1/api").shot(0);
        assert_eq!(shot.url.to_string(), "http://h:1/api/v1/check-outs");
        assert_eq!(shot.kind, ShotKind::CheckOut);
        let shot = plan(ReaderEndpoint::Unlock, 0, "http://h:1/").shot(0);
        assert_eq!(shot.url.to_string(), "http://h:1/v1/unlock");
        assert!(shot.idempotency_key.is_none());
    }

    #[test]
    fn presence_mix_alternates_per_card_starting_with_a_check_in() {
        let plan = plan(ReaderEndpoint::PresenceMix, 3, "http://h");
        let mut last: std::collections::HashMap<Bytes, ShotKind> = Default::default();
        for n in 0..60 {
            let shot = plan.shot(n);
            let expected = match last.get(&shot.body) {
                None | Some(ShotKind::CheckOut) => ShotKind::CheckIn,
                Some(_) => ShotKind::CheckOut,
            };
            assert_eq!(shot.kind, expected);
            last.insert(shot.body, shot.kind);
        }
    }

    #[test]
    fn idempotency_keys_are_fresh_per_request_and_per_run() {
        let mut config = LoadConfig {
            idempotency: true,
            reader_keys: vec![Secret::new("k".to_owned())],
            cards: vec!["A".to_owned()],
            ..LoadConfig::new(
                "http://h",
                Mode::Closed { concurrency: 1 },
                Stop::after_requests(1),
            )
        };
        let base = config.validate().expect("valid");
        let first = Plan::new(&config, &base).expect("a plan");
        let a = first.shot(0).idempotency_key;
        assert!(a.is_some());
        assert_ne!(a, first.shot(1).idempotency_key);
        config.seed = 0;
        let second = Plan::new(&config, &base).expect("a plan");
        assert_ne!(a, second.shot(0).idempotency_key);
    }
}
